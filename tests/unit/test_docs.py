"""The README and the docs pages: every relative link resolves, and the README's tour runs.

Fast and offline: links are checked against the files in the repository and the headings
they name (anchors are slugged as MkDocs' ``toc`` extension slugs them). The site itself is
built with ``mkdocs build --strict`` in ``.ci/run``.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def slug(heading: str) -> str:
    """The anchor MkDocs' toc extension gives a heading (GitHub's agrees on these pages)."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    found = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            found.add(slug(match.group(1)))
    return found


def links(page: Path) -> list[str]:
    """Relative link targets on a page (code blocks and inline code are not links)."""
    targets = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        targets += LINK.findall(INLINE_CODE.sub("", line))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    """Each link on ``page`` whose file or heading does not exist, with the reason."""
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_checker_reports_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Running the `mongodb` tier\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#running-the-mongodb-tier) [self](#page) [web](https://example.com/x.md)\n"
        "`[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](other.md#no-such-heading)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#no-such-heading: no heading with that anchor in other.md",
    ]


def test_the_readme_links_every_docs_page():
    readme = set(links(ROOT / "README.md"))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= {t.partition("#")[0] for t in readme}


def test_the_mkdocs_nav_lists_every_docs_page():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w./-]+\.md)\s*$", nav, flags=re.M))
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}


def _tour(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    block = text.split("## A tour\n", 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_tour_runs_on_the_embedded_backend_and_the_docs_index_shows_the_same(capsys):
    tour = _tour(ROOT / "README.md")
    assert tour == _tour(ROOT / "docs" / "index.md")
    assert len(tour.splitlines()) <= 22
    exec(compile(tour, "README.md tour", "exec"), {})
    found, validation = capsys.readouterr().out.splitlines()
    assert found == "1 2026-12-01T00:00:00.000Z"  # the updated insight, its JSON-ready date
    assert validation.startswith("{'email': ")  # the field named, the bad value masked


def test_every_test_the_threat_model_names_exists():
    """docs/security.md's threat model names the tests that hold each guarantee: each must exist
    (a renamed or deleted test would leave a guarantee the page says is held by nothing)."""
    import re

    page = (ROOT / "docs" / "security.md").read_text()
    table = page[page.index("## Threat model"):page.index("## Safe queries")]
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    named = set(re.findall(r"`(?:[\w/]+\.py)?(?:::)?(test_\w+)`", table))
    named |= set(re.findall(r"::(test_\w+)", table))
    assert len(named) >= 30
    missing = sorted(name for name in named if f"def {name}(" not in sources)
    assert missing == []
    files = set(re.findall(r"`(tests/[\w/]+\.py)", table))
    assert files and all((ROOT / f).is_file() for f in files)
