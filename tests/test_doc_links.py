"""Links into the docs resolve: `docs/PAGE.md#anchor` in the code (help texts, error messages,
docstrings) and relative links with anchors between the Markdown pages. A renamed heading or
a moved page fails here instead of sending a user nowhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = [p for d in ("rl_sever", "agents", "envs", "bench", "examples")
        for p in sorted((ROOT / d).rglob("*.py"))]


def prose(text: str) -> str:
    """`text` without its fenced code blocks (a `#` comment there is no heading)."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    out = set()
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6} (.*)", line)
        if heading:
            title = heading[1].strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_the_anchor_rule_matches_known_headings():
    assert "goal-conditioned-envs-and-hindsight-experience-replay" in anchors(
        ROOT / "docs" / "spaces.md")
    assert "off-policy-agents-sac-td3-ddpg-tqc-crossq" in anchors(ROOT / "docs" / "custom_losses.md")
    assert "by-hand" not in anchors(ROOT / "docs" / "isolation.md")  # a comment in a code block


def test_docs_links_in_the_code_resolve():
    found, broken = 0, []
    for path in CODE:
        for page, anchor in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?",
                                       path.read_text(encoding="utf-8")):
            found += 1
            target = ROOT / "docs" / page
            if not target.is_file() or (anchor and anchor not in anchors(target)):
                broken.append(f"{path.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert found > 20 and broken == []


def test_links_between_pages_resolve():
    found, broken = 0, []
    for page in PAGES:
        for link in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", link):  # https:, mailto:
                continue
            found += 1
            file, _, anchor = link.partition("#")
            target = (page.parent / file).resolve() if file else page
            if not target.exists() or (anchor and target.suffix == ".md"
                                       and anchor not in anchors(target)):
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert found > 20 and broken == []
