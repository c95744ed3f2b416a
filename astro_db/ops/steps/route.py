"""Step 5, route: which collection object a read goes to (``routing``: read preference).

A per-call ``read_preference`` derives the collection for another replica-set member; inside a
transaction only the primary is allowed. The route is part of the cache key (a secondary lags).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...registry import ModelInfo
from ..runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from ..._types import MaybeTransaction

__all__ = ["read", "write"]


def read(rt: Runtime, info: ModelInfo, read_preference: Any, transaction: MaybeTransaction) -> tuple[Any, str]:
    """The model's collection routed by ``read_preference``, and the route's cache-key part."""
    return rt.router.route(rt.coll(info), read_preference, transaction)


def write(rt: Runtime, info: ModelInfo) -> Any:
    """Writes always go to the primary: the model's collection as configured."""
    return rt.coll(info)
