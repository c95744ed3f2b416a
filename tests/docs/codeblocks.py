"""The ```python blocks of README.md and docs/*.md: found, and run as a reader pastes them.

A page's blocks run in order in one namespace (a later block may use what an earlier one
defined, as in one interpreter session), in a page environment of their own: a fresh temporary
directory as the working directory, a fresh field-encryption key in ``ASTRO_DB_ENCRYPTION_KEY``
and no ``MONGODB_URL`` (a block names its database: the embedded ``mongomock://`` backend where it
can run here). That environment is swapped in around each block, so nothing leaks into the tests
that run between two blocks, and the page's ``Database`` objects are closed when it ends.

Two HTML comments (which MkDocs and GitHub do not show) change how the next block runs:

- ``<!-- no-run: the reason -->``: the block is not run (it needs a real server, or shows a
  fragment); the reason is required.
- ``<!-- raises: QueryError -->``: the block's last statement must raise that exception (a
  class of that name in the raised one's MRO); the statements before it run as usual.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>no-run|raises)\b\s*:?\s*(?P<reason>.*?)\s*-->\s*$")
KEY_VARIABLE = "ASTRO_DB_ENCRYPTION_KEY"
CLEARED_VARIABLES = ("MONGODB_URL", "ASTRO_DB_URL", "ASTRO_DB_ENCRYPTION_KEYS")


def pages() -> list[Path]:
    """README.md, then the docs pages in name order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One ```python block: where it is, its code, and why it does not run (if it does not)."""

    page: Path
    line: int  # the line of the opening fence, 1-based
    code: str
    indent: str = ""  # the opening fence's indentation (MkDocs renders only unindented fences)
    no_run: str | None = None  # the reason given in the no-run comment ("" when none is given)
    raises: str | None = None  # the exception the last statement must raise

    @property
    def where(self) -> str:
        shown = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{shown}:{self.line}"


@dataclass(frozen=True)
class Marker:
    """A no-run or raises comment, and whether a ```python block follows it."""

    page: Path
    line: int
    kind: str  # "no-run" or "raises"
    reason: str  # the reason, or the exception's name
    attached: bool


def parse(page: Path) -> tuple[list[Block], list[Marker]]:
    """The ```python blocks of ``page`` and its marker comments (attached: the next non-blank
    line opens a ```python block)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    markers: list[Marker] = []
    pending: list[Marker] = []  # comments waiting for their block

    def settle(attached: bool) -> dict[str, str]:
        found = {m.kind: m.reason for m in pending}
        markers.extend(Marker(m.page, m.line, m.kind, m.reason, attached) for m in pending)
        pending.clear()
        return found

    i = 0
    while i < len(lines):
        text = lines[i]
        marker = MARKER.match(text)
        opening = FENCE_OPEN.match(text)
        if marker:
            pending.append(Marker(page, i + 1, marker.group("kind"), marker.group("reason"), False))
        elif opening:
            fence, indent = opening.group("fence"), opening.group("indent")
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(fence):
                end += 1
            python = opening.group("lang") == "python"
            found = settle(attached=python)
            if python:
                blocks.append(Block(page, i + 1, "\n".join(lines[i + 1:end]) + "\n", indent,
                                    found.get("no-run"), found.get("raises")))
            i = end
        elif text.strip():
            settle(attached=False)
        i += 1
    settle(attached=False)
    return blocks, markers


def compile_block(block: Block) -> tuple[Any, Any]:
    """The block's code, compiled so a traceback names the page and its own line numbers: all
    of it, or (for a ``raises`` block) all but the last statement, and the last statement."""
    tree = ast.parse("\n" * block.line + block.code, str(block.page))
    if block.raises is None or not tree.body:
        return compile(tree, str(block.page), "exec"), None
    head = ast.Module(body=tree.body[:-1], type_ignores=[])
    last = ast.Module(body=tree.body[-1:], type_ignores=[])
    return compile(head, str(block.page), "exec"), compile(last, str(block.page), "exec")


def raised_as_documented(block: Block, exc: BaseException) -> bool:
    """``exc`` is an instance of the class the block's ``raises`` comment names."""
    return any(cls.__name__ == block.raises for cls in type(exc).__mro__)


class EarlierBlockFailed(Exception):
    """A block cannot run because one before it on its page failed."""


@dataclass
class PageRun:
    """One page's namespace and environment, advanced one block at a time."""

    page: Path
    namespace: dict[str, Any] = field(default_factory=dict)
    done: int = 0  # how many of the page's blocks have run (no-run ones counted)
    failed: str | None = None  # where an earlier block failed
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _otel: Any = None  # OpenTelemetry's global tracer provider before the page ran (restored by close())
    _env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from astro_db.security.crypto import new_key

        self._otel = _otel_globals()
        self._tmp = tempfile.TemporaryDirectory(prefix="astro-docs-")
        self._env = {k: v for k, v in os.environ.items() if k not in CLEARED_VARIABLES}
        self._env[KEY_VARIABLE] = new_key()
        self.namespace = {"__name__": "__main__", "__file__": str(Path(self._tmp.name) / "page.py")}

    @property
    def cwd(self) -> str:
        assert self._tmp is not None
        return self._tmp.name

    def run(self, block: Block) -> None:
        """Run ``block`` (the page's next one) in the page's namespace and environment."""
        if self.failed is not None:
            raise EarlierBlockFailed(f"{self.failed} failed, and {block.where} runs after it")
        self.done += 1
        if block.no_run is not None:
            return
        code, last = compile_block(block)
        with self._swapped_in():
            try:
                exec(code, self.namespace)
                if last is not None:
                    try:
                        exec(last, self.namespace)
                    except Exception as exc:
                        if not raised_as_documented(block, exc):
                            raise
                    else:
                        raise AssertionError(f"{block.where}: the last statement raised nothing, "
                                             f"the page says it raises {block.raises}")
            except BaseException:
                self.failed = block.where
                raise

    @contextlib.contextmanager
    def _swapped_in(self) -> Iterator[None]:
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        os.environ.clear()
        os.environ.update(self._env)
        os.chdir(self.cwd)
        try:
            yield
        finally:
            self._env = dict(os.environ)
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)

    def close(self) -> None:
        """Close the page's databases and remove its directory."""
        from astro_db import Database

        for value in list(self.namespace.values()):
            if isinstance(value, Database):
                try:
                    value.close()
                except Exception:  # a block may have closed it already
                    traceback.print_exc()
        self.namespace.clear()
        _restore_otel_globals(self._otel)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _otel_globals() -> Any:
    """OpenTelemetry's process-wide tracer provider as it is now (``None`` without the SDK)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done


def _restore_otel_globals(saved: Any) -> None:
    """Undo a page's ``trace.set_tracer_provider(...)`` (monitoring.md sets one "once, at start-up"):
    the global can be set only once per process, so left in place it would decide the sampling
    and export of every later test (tests/unit/test_tracing.py's own provider among them)."""
    if saved is None:
        return
    from opentelemetry import trace

    provider = trace._TRACER_PROVIDER
    if provider is not saved[0]:
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done = saved
        from astro_db.monitoring import tracing

        if hasattr(tracing._tracer, "_real_tracer"):  # the API's proxy bound itself to the page's provider
            tracing._tracer._real_tracer = None

