"""Step 9, open: decrypt what came back (``security.crypto``), by the model's declared
sensitive paths only; the same rule for ``find``, ``find_one``, lean reads, updates and
aggregation (where a path a stage may have rewritten stays sealed). A value that does not open
comes back as ``UNREADABLE`` (logged and counted), never failing the read.
"""

from __future__ import annotations

from typing import Any

from ...registry import ModelInfo
from ..runtime import Runtime

__all__ = ["document", "documents", "output"]


def document(rt: Runtime, info: ModelInfo, doc: dict[str, Any] | None, *, drop_id: bool = False) -> dict[str, Any] | None:
    """``doc`` opened in place; ``drop_id``: its ``_id``, fetched only to open it (``compile.fetch_id``), removed after."""
    rt.crypto.open_document(info, doc)
    if drop_id and doc is not None:
        doc.pop("_id", None)
    return doc


def documents(rt: Runtime, info: ModelInfo, docs: list[dict[str, Any]], *, drop_id: bool = False) -> list[dict[str, Any]]:
    """``docs`` opened in place, the model's plan looked up once; ``drop_id`` as for ``document``."""
    rt.crypto.open_documents(info, docs)
    if drop_id:
        for doc in docs:
            doc.pop("_id", None)
    return docs


def output(rt: Runtime, info: ModelInfo, stages: list[dict[str, Any]], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregation output: opened at the declared paths no stage could have rewritten."""
    return rt.crypto.open_output(info, stages, docs)
