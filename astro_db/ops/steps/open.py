"""Step 9, open: decrypt what came back (``security.crypto``), by the model's declared
sensitive paths only; the same rule for ``find``, ``find_one``, lean reads, updates and
aggregation (where a path a stage may have rewritten stays sealed). A value that does not open
comes back as ``UNREADABLE`` (logged and counted), never failing the read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...registry import ModelInfo
from ...security.fieldpaths import pop_at
from ..runtime import Runtime

__all__ = ["document", "documents", "output"]


def document(rt: Runtime, info: ModelInfo, doc: dict[str, Any] | None, *, drop: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """``doc`` opened in place; ``drop``: stored paths fetched only to open it (``compile.fetch_to_open``:
    ``_id``, the owner field), removed after."""
    rt.crypto.open_document(info, doc)
    if drop and doc is not None:
        for path in drop:
            pop_at(doc, path)
    return doc


def documents(rt: Runtime, info: ModelInfo, docs: list[dict[str, Any]], *, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``docs`` opened in place, the model's plan looked up once; ``drop`` as for ``document``."""
    rt.crypto.open_documents(info, docs)
    if drop:
        for doc in docs:
            for path in drop:
                pop_at(doc, path)
    return docs


def output(rt: Runtime, info: ModelInfo, stages: list[dict[str, Any]], docs: list[dict[str, Any]],
           owners_of: Callable[[list[Any]], Iterable[Mapping[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Aggregation output: opened at the declared paths no stage could have rewritten; the
    owner of a document whose output left it out read back by ``_id`` (``owners_of``)."""
    return rt.crypto.open_output(info, stages, docs, owners_of)
