"""Step 10, hydrate: stored documents into model instances (``models.codec``), or left as
dicts for ``lean=True``; an answer served stale from the cache keeps its mark (``stale``).
"""

from __future__ import annotations

from typing import Any

from ...models import codec
from ...registry import ModelInfo
from ...stale import mark

__all__ = ["one", "many"]


def one(info: ModelInfo, doc: dict[str, Any] | None, *, lean: bool, age: float | None = None) -> Any:
    if doc is None or lean:
        return mark(doc, age)
    return mark(codec.hydrate(info.cls, doc), age)


def many(info: ModelInfo, docs: list[dict[str, Any]], *, lean: bool, age: float | None = None) -> Any:
    return mark(docs if lean else codec.hydrate_many(info.cls, docs), age)
