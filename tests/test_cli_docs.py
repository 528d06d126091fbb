"""docs/cli.md follows the parser and the registry: a command or option added without its
documentation, or an algorithm shipped without the `rl-sever list` sample, fails here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rl_sever import cli
from rl_sever.config import presets
from rl_sever.core.registry import registered

DOCS = Path(__file__).resolve().parents[1] / "docs"
CLI_PAGE = (DOCS / "cli.md").read_text(encoding="utf-8")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _synopsis_of(name: str) -> str:
    """The synopsis lines of one command (its `rl-sever NAME` lines and their continuations)."""
    lines, keep = [], False
    for line in CLI_PAGE.split("```", 2)[1].splitlines():
        if line.startswith("rl-sever "):
            keep = line.split()[1] == name
        if keep:
            lines.append(line)
    return "\n".join(lines)


def _shows(text: str, option: str) -> bool:
    """`option` as a word of its own (`--seed` is not shown by `--seeds`)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_the_synopsis_shows_every_command_and_option():
    commands = _commands()
    assert {"train", "eval", "export", "audit", "tune", "report", "config"} <= set(commands)
    missing = []
    for name, command in commands.items():
        shown = _synopsis_of(name)
        missing += [f"{name} {option}" for action in command._actions
                    for option in action.option_strings
                    if option.startswith("--") and option != "--help"
                    and not _shows(shown, option)]
        if not shown:
            missing.append(name)
    assert missing == []
    assert not _shows("rl-sever train --seeds 0-4", "--seed")


def test_the_list_sample_shows_every_shipped_algorithm():
    shipped = sorted(a for a, k in registered().items() if k.__module__.startswith("agents."))
    assert len(shipped) >= 8
    line = next(x for x in CLI_PAGE.splitlines() if x.startswith("algorithms: "))
    assert line == "algorithms: " + ", ".join(shipped)
    # The presets shown are real ones, in `rl-sever list`'s order.
    sample = CLI_PAGE.split(line, 1)[1].split("```", 1)[0]
    shown = [tuple(x.split()) for x in sample.splitlines()[2:] if x.strip() not in ("", "...")]
    available = presets.available()
    assert shown and all(pair in available for pair in shown)
    assert [available.index(pair) for pair in shown] == sorted(available.index(p) for p in shown)
