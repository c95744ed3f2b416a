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


def document(rt: Runtime, info: ModelInfo, doc: dict[str, Any] | None) -> dict[str, Any] | None:
    return rt.crypto.open_document(info, doc)


def documents(rt: Runtime, info: ModelInfo, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rt.crypto.open_documents(info, docs)  # in place, the model's plan looked up once


def output(rt: Runtime, info: ModelInfo, stages: list[dict[str, Any]], docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregation output: opened at the declared paths no stage could have rewritten."""
    return rt.crypto.open_output(info, stages, docs)
