"""Every ```python block of README.md and docs/*.md runs (collected by tests/docs/conftest.py).

``test_pages`` below is where the blocks are collected, one item per block; the tests after it
hold the rules of the pages (every no-run block says why, no marker is stray, fences MkDocs
renders) and the runner's own behaviour.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .codeblocks import CLEARED_VARIABLES, KEY_VARIABLE, ROOT, Block, EarlierBlockFailed, PageRun, pages, parse
from .conftest import DocPages

test_pages = DocPages()

# The blocks that do not run here, per page: a new one must be counted here on purpose.
NO_RUN_PER_PAGE = {
    "docs/backup.md": 1,       # a real server
    "docs/caching.md": 2,      # a Redis server
    "docs/integrations.md": 2,  # Django project fragments and a Django test module
    "docs/scaling.md": 1,      # a replica set
    "docs/security.md": 1,     # a TLS replica set
}


def _all() -> tuple[list[Block], list]:
    blocks, markers = [], []
    for page in pages():
        b, m = parse(page)
        blocks += b
        markers += m
    return blocks, markers


def test_every_no_run_block_gives_its_reason_and_is_counted():
    blocks, _ = _all()
    no_run = [b for b in blocks if b.no_run is not None]
    assert [b.where for b in no_run if not b.no_run.strip()] == []  # each has a reason
    counted: dict[str, int] = {}
    for b in no_run:
        page = str(b.page.relative_to(ROOT))
        counted[page] = counted.get(page, 0) + 1
    assert counted == NO_RUN_PER_PAGE
    assert len(blocks) - len(no_run) >= 15  # most blocks run


def test_every_marker_comment_sits_on_a_python_block():
    _, markers = _all()
    assert [f"{m.page.relative_to(ROOT)}:{m.line}" for m in markers if not m.attached] == []
    assert [m.reason for m in markers if m.kind == "raises" and not m.reason.isidentifier()] == []


def test_every_python_fence_starts_at_column_0_and_is_found():
    """MkDocs' fenced_code renders only unindented fences (one in a list item shows as text);
    and the parser misses none: as many blocks as lines opening a ```python fence."""
    blocks, _ = _all()
    assert [b.where for b in blocks if b.indent] == []
    openings = sum(line.lstrip().startswith("```python") for page in pages()
                   for line in page.read_text(encoding="utf-8").splitlines())
    assert len(blocks) == openings


# --- the parser and the runner ------------------------------------------------------------------

PAGE = """# A page

```python
x = 1
```

<!-- no-run: needs a server -->
```python
connect_to_a_server()
```

<!-- no-run -->
```python
also_not_run()
```

<!-- no-run: stray -->
Some text.

```bash
echo not python
```

  ```python
  indented = True
  ```

<!-- raises: ZeroDivisionError -->
```python
y = x + 1
y / 0
```
"""


def test_the_parser_reads_blocks_markers_and_reasons(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    blocks, markers = parse(page)
    assert [(b.line, b.code, b.no_run, b.raises, b.indent) for b in blocks] == [
        (3, "x = 1\n", None, None, ""),
        (8, "connect_to_a_server()\n", "needs a server", None, ""),
        (13, "also_not_run()\n", "", None, ""),
        (24, "  indented = True\n", None, None, "  "),
        (29, "y = x + 1\ny / 0\n", None, "ZeroDivisionError", ""),
    ]
    assert [(m.line, m.kind, m.reason, m.attached) for m in markers] == [
        (7, "no-run", "needs a server", True),
        (12, "no-run", "", True),
        (17, "no-run", "stray", False),
        (28, "raises", "ZeroDivisionError", True),
    ]


def test_a_page_runs_in_one_namespace_in_its_own_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MONGODB_URL", "mongodb://outside:27017/x")
    page = tmp_path / "page.md"
    page.write_text("```python\nimport os\nstart = os.getcwd()\nos.environ['SET_BY_BLOCK'] = '1'\n```\n\n"
                    "```python\nseen = (os.getcwd(), os.environ.get('SET_BY_BLOCK'), os.environ.get('MONGODB_URL'),\n"
                    "        os.environ['ASTRO_DB_ENCRYPTION_KEY'])\n```\n")
    blocks, _ = parse(page)
    before_env, before_cwd = dict(os.environ), os.getcwd()
    run = PageRun(page)
    try:
        run.run(blocks[0])
        assert dict(os.environ) == before_env and os.getcwd() == before_cwd  # swapped out between blocks
        run.run(blocks[1])
        cwd, set_by_block, url, key = run.namespace["seen"]
        assert cwd == run.namespace["start"] == run.cwd != before_cwd
        assert set_by_block == "1" and url is None and "MONGODB_URL" in CLEARED_VARIABLES
        assert key and key != os.environ.get(KEY_VARIABLE)
        directory = Path(run.cwd)
    finally:
        run.close()
    assert not directory.exists()
    assert dict(os.environ) == before_env and os.getcwd() == before_cwd


def test_a_failing_block_names_its_page_line_and_stops_the_page(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n\nundefined_name\n```\n\n```python\nx\n```\n")
    blocks, _ = parse(page)
    run = PageRun(page)
    try:
        with pytest.raises(NameError) as failed:
            run.run(blocks[0])
        assert failed.traceback[-1].path == page and failed.traceback[-1].lineno + 1 == 4  # the page's line
        with pytest.raises(EarlierBlockFailed, match=r"page.md:1 failed, and .*page.md:7 runs after it"):
            run.run(blocks[1])
    finally:
        run.close()


@pytest.mark.parametrize(("code", "error"), [
    ("y = 1\ny / 0\n", None),  # the last statement raises what the page says
    ("y = 1\n", "the last statement raised nothing, the page says it raises ZeroDivisionError"),
    ("1 / 0\ny = 1\n", "division by zero"),  # raised, but not by the last statement
    ("y = 1\nint('x')\n", "invalid literal"),  # another exception
])
def test_a_raises_block_must_raise_that_exception_from_its_last_statement(tmp_path, code, error):
    page = tmp_path / "page.md"
    page.write_text(f"<!-- raises: ZeroDivisionError -->\n```python\n{code}```\n")
    blocks, _ = parse(page)
    run = PageRun(page)
    try:
        if error is None:
            run.run(blocks[0])
            assert run.namespace["y"] == 1 and run.failed is None
        else:
            with pytest.raises(Exception, match=error):
                run.run(blocks[0])
            assert run.failed == blocks[0].where
    finally:
        run.close()


def test_a_block_selected_alone_replays_the_blocks_before_it():
    """The first block in the docs that fails on its own (it uses an earlier block's names)
    passes when it is the only item run: the earlier blocks of its page are replayed first."""
    alone = None
    for page in pages():
        blocks, _ = parse(page)
        for block in blocks[1:]:
            if block.no_run is not None:
                continue
            run = PageRun(page)
            try:
                run.run(block)
            except NameError:
                alone = block
            finally:
                run.close()
            if alone:
                break
        if alone:
            break
    assert alone is not None
    node = f"tests/docs/test_code_blocks.py::{alone.page.relative_to(ROOT)}::line {alone.line}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", node],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 passed" in done.stdout
