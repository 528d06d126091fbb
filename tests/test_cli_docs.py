"""docs/cli.md follows the parser and the registry: a command or option added without its
documentation, or an algorithm shipped without the `rl-sever list` sample, fails here."""

from __future__ import annotations

import argparse
from pathlib import Path

from rl_sever import cli
from rl_sever.config import presets
from rl_sever.core.registry import registered

DOCS = Path(__file__).resolve().parents[1] / "docs"
CLI_PAGE = (DOCS / "cli.md").read_text(encoding="utf-8")
# The pages a command's options may be described on (tune and report have pages of their own).
PAGES = CLI_PAGE + "".join((DOCS / name).read_text(encoding="utf-8")
                           for name in ("tuning.md", "reporting.md"))


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_synopsis_names_every_command_and_the_pages_every_option():
    synopsis = CLI_PAGE.split("```", 2)[1]
    commands = _commands()
    assert {"train", "eval", "export", "audit", "tune", "report"} <= set(commands)
    missing = [f"{name} {option}" for name, command in commands.items()
               for action in command._actions for option in action.option_strings
               if option.startswith("--") and option != "--help" and option not in PAGES]
    assert missing == []
    assert [name for name in commands if f"rl-sever {name}" not in synopsis] == []


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
