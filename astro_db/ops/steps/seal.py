"""Step 4, seal: encrypt what goes to the server (``security.crypto``).

New documents and update values of sensitive fields are encrypted; conditions on them are made
to match ciphertext; ``$match`` stages of pipelines likewise. Without a key nothing changes.
"""

from __future__ import annotations

from typing import Any

from ...registry import ModelInfo
from ...query.updates import CompiledUpdate
from ..runtime import Runtime

__all__ = ["filter", "update", "document", "pipeline"]


def filter(rt: Runtime, info: ModelInfo, filt: dict[str, Any]) -> dict[str, Any]:  # noqa: A001
    return rt.crypto.seal_filter(info, filt)


def update(rt: Runtime, info: ModelInfo, compiled: CompiledUpdate) -> CompiledUpdate:
    compiled.update = rt.crypto.seal_update(info, compiled.update)
    return compiled


def document(rt: Runtime, info: ModelInfo, son: dict[str, Any]) -> dict[str, Any]:
    return rt.crypto.seal_document(info, son)


def pipeline(rt: Runtime, info: ModelInfo, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"$match": rt.crypto.seal_filter(info, s["$match"])} if "$match" in s else s for s in stages]
