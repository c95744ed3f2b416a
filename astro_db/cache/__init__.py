"""The query cache (``store``) and the invalidation buses that keep it coherent (``bus``:
in-process; ``redis_bus``: across processes; ``change_streams``: from the server itself)."""

from __future__ import annotations

from .bus import CacheListener, InvalidationBus, LocalBus
from .store import QueryCache, cache_key, copy_stored

__all__ = ["QueryCache", "cache_key", "copy_stored", "InvalidationBus", "CacheListener", "LocalBus"]
