"""Collects the ```python blocks of README.md and docs/*.md as test items (tests/docs/codeblocks.py).

``test_code_blocks.py`` names the collection point (``test_pages = DocPages()``): one collector
per page, one item per block, ``tests/docs/test_code_blocks.py::docs/security.md::line 20``.
Each item runs its page's blocks up to itself: in order, continuing the page's run when the
block before it ran in this process (the usual case), else replaying the earlier ones in a fresh
run, so an item passes or fails the same under ``-k``, ``-n`` or alone. A no-run block is a skip
that names its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .codeblocks import ROOT, Block, EarlierBlockFailed, PageRun, pages, parse

_runs: dict[Path, PageRun] = {}


class DocPages:
    """The marker ``test_code_blocks.py`` assigns: collect the pages' blocks here."""


class DocPage(pytest.Collector):
    def __init__(self, *, page: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page = page

    def collect(self) -> list[pytest.Item]:
        blocks, _ = parse(self.page)
        return [BlockItem.from_parent(self, name=f"line {b.line}", blocks=blocks, index=i)
                for i, b in enumerate(blocks)]

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.page, 0, str(self.page.relative_to(ROOT))


class BlockItem(pytest.Item):
    def __init__(self, *, blocks: list[Block], index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blocks = blocks
        self.index = index
        self.block = blocks[index]

    def runtest(self) -> None:
        page, block = self.block.page, self.block
        run = _runs.get(page)
        if block.no_run is not None:
            if run is not None and run.done == self.index:
                self._advance(run)
            raise pytest.skip.Exception(f"no-run: {block.no_run}", _use_item_location=True)
        if run is None or run.done != self.index:
            if run is not None:
                run.close()
            run = _runs[page] = PageRun(page)
            for earlier in self.blocks[: self.index]:
                try:
                    run.run(earlier)
                except BaseException as exc:
                    run.close()
                    del _runs[page]
                    raise EarlierBlockFailed(f"{earlier.where} failed ({type(exc).__name__}: {exc}), "
                                             f"and {block.where} runs after it") from exc
        self._advance(run)

    def _advance(self, run: PageRun) -> None:
        """Run this block (a no-run one only counts) and close the run after the page's last."""
        try:
            run.run(self.block)
        finally:
            if run.done == len(self.blocks) or run.failed is not None:
                run.close()
                del _runs[self.block.page]

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, EarlierBlockFailed):
            return str(excinfo.value)
        # the traceback from the block's own frames on (the runner's are noise)
        tb = excinfo.traceback
        own = [i for i, entry in enumerate(tb) if entry.path == self.block.page]
        if own:
            excinfo.traceback = tb.cut(path=self.block.page)
        return str(super().repr_failure(excinfo, style="short"))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.block.page, self.block.line - 1, self.block.where


def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    if isinstance(obj, DocPages):
        return [DocPage.from_parent(collector, name=str(page.relative_to(ROOT)), page=page) for page in pages()]
    return None


def pytest_sessionfinish(session: pytest.Session) -> None:
    for run in _runs.values():
        run.close()
    _runs.clear()
