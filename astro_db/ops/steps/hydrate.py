"""Step 10, hydrate: stored documents into model instances (``models.codec``), or left as
dicts for ``lean=True``; an answer served stale from the cache keeps its mark (``stale``).
"""

from __future__ import annotations

from typing import Any

from ...models import codec
from ...registry import ModelInfo
from ...stale import mark

__all__ = ["one", "many", "created"]


def one(info: ModelInfo, doc: dict[str, Any] | None, *, lean: bool, age: float | None = None) -> Any:
    out = doc if doc is None or lean else codec.hydrate(info.cls, doc)
    return out if age is None else mark(out, age)  # a fresh answer (nearly every one) needs no mark


def many(info: ModelInfo, docs: list[dict[str, Any]], *, lean: bool, age: float | None = None) -> Any:
    out = docs if lean else codec.hydrate_many(info.cls, docs)
    return out if age is None else mark(out, age)


def created(info: ModelInfo, son: dict[str, Any], *, lean: bool) -> Any:
    """A create's answer: the document it validated and stored (plaintext), as an instance built
    without converting again what the codec already converted (``codec.hydrate_encoded``)."""
    return son if lean else codec.hydrate_encoded(info.cls, son)
