"""The query cache: an in-process TTL + LRU cache of ``find`` / ``find_one`` / ``count`` results.

Opt-in per call (``cache=True``) or per model (``DatabaseConfig.cache_models``). Entries are
keyed by model, read kind, the compiled (stored-form) filter and the options that change the
result (sort, limit, skip, projection) and the read preference (a secondary may lag). They hold stored-form
documents, so lean and hydrated reads share an entry: every hit returns fresh copies (lean) or
fresh instances hydrated from fresh copies, and a caller can never alter what is cached.

Invalidation: every write through the service to a model drops that model's entries (a write
hook; inside a transaction only once it commits, never on abort). A per-model generation
counter keeps a read that raced a write from storing its (older) result afterwards. The cache
is per process: writes by other processes, by the Node service or through ``db.mongo`` are
seen only once an entry's TTL has passed, so ``cache_ttl_s`` bounds staleness across processes.
Memory is bounded by ``cache_max_entries`` and by ``cache_max_documents`` (documents held over
all entries); a result larger than that is never cached.

Stale answers (docs/reliability.md): an expired entry is no longer a hit, but it is kept
for ``cache_stale_s`` past its TTL (still within the entry and document bounds, evicted
first as the least recently used) so that a read with ``stale_ok=True`` can fall back to it
while the server is unavailable (``get_stale``). Invalidation by a write drops it as well.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from functools import partial
from typing import Any, Callable, Hashable

import bson

from .errors import AstroDBError, ConfigError
from .events import WriteEvent

__all__ = ["QueryCache", "cache_key", "copy_stored"]

_MISSING = object()
_LOGICAL = ("$and", "$or", "$nor")


def copy_stored(value: Any) -> Any:
    """A copy of a stored-form value deep enough that no dict or list is shared (BSON scalars
    are immutable); several times cheaper than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: copy_stored(v) if isinstance(v, (dict, list)) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_stored(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


def _canonical(filt: Mapping[str, Any]) -> dict[str, Any]:
    """The filter with the key order that does not change its meaning made canonical: field
    clauses and operator documents are sorted; values compared for equality are left as given
    (``{"a": {"x": 1, "y": 2}}`` is not the same query as ``{"a": {"y": 2, "x": 1}}``)."""
    out = {}
    for key in sorted(filt):
        value = filt[key]
        if key in _LOGICAL and isinstance(value, list):
            value = [_canonical(v) if isinstance(v, Mapping) else v for v in value]
        elif isinstance(value, Mapping) and value and all(str(k).startswith("$") for k in value):
            value = _canonical(value)
        out[key] = value
    return out


def cache_key(model: str, kind: str, filt: Mapping[str, Any], options: Mapping[str, Any] | None = None,
              read_preference: str | None = None) -> tuple[Hashable, ...]:
    """The key of one read: model, kind (find / find_one / count), the canonical stored-form
    filter and the result-changing options, BSON-encoded (exact for ObjectIds, dates, regexes)."""
    shown = {k: v for k, v in (options or {}).items() if k in ("sort", "limit", "skip", "projection")}
    body = bson.encode({"f": _canonical(filt), "o": _canonical(shown)})
    return (model, kind, read_preference, body)


class _Entry:
    __slots__ = ("value", "expires", "weight")

    def __init__(self, value: Any, expires: float, weight: int) -> None:
        self.value = value
        self.expires = expires
        self.weight = weight


class QueryCache:
    """Thread-safe TTL + LRU cache of read results, with per-model invalidation and counters."""

    def __init__(self, ttl_s: float = 60.0, max_entries: int = 1024, max_documents: int = 100_000,
                 models: frozenset[str] = frozenset(), clock: Callable[[], float] = time.monotonic,
                 stale_s: float = 0.0) -> None:
        self.ttl_s = ttl_s
        self.stale_s = stale_s  # how long past its TTL an entry stays available to get_stale
        self.max_entries = max_entries
        self.max_documents = max_documents
        self.models = frozenset(models)  # models cached without cache=True
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._generation: dict[str, int] = {}
        self._documents = 0
        self._counts = {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0, "invalidations": 0, "uncacheable": 0,
                        "stale_hits": 0}

    @classmethod
    def from_config(cls, config: Any, registry: Any) -> QueryCache:
        """The cache a ``DatabaseConfig`` describes; ``cache_models`` names resolve in ``registry``."""
        try:
            models = frozenset(registry.resolve(name).name for name in config.cache_models)
        except AstroDBError as exc:
            raise ConfigError(f"cache_models: {exc}", key="cache_models") from exc
        return cls(config.cache_ttl_s, config.cache_max_entries, config.cache_max_documents, models,
                   stale_s=getattr(config, "cache_stale_s", 0.0))

    # --- policy ------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def wanted(self, model: str, cache: bool | None) -> bool:
        """Whether a read of ``model`` uses the cache: ``cache`` if given, else the model setting."""
        if not self.enabled:
            return False
        return model in self.models if cache is None else bool(cache)

    # --- reads -------------------------------------------------------------------------------

    def get_or_fetch(self, key: tuple, fetch: Callable[[], Any]) -> Any:
        """The cached result for ``key`` (a private copy), else ``fetch()``'s, stored for later.

        The fetched result is returned as is (the caller owns it); a copy is what gets stored,
        and only if no write invalidated the model while it was being fetched."""
        model = key[0]
        with self._lock:
            value = self._get_locked(key)
            generation = self._generation.get(model, 0)
        if value is not _MISSING:
            return copy_stored(value)
        result = fetch()
        self.put(key, result, generation)
        return result

    def _get_locked(self, key: tuple) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            self._counts["misses"] += 1
            return _MISSING
        if self._clock() >= entry.expires:
            if self._clock() >= entry.expires + self.stale_s:
                self._remove_locked(key)
            self._counts["expirations"] += 1
            self._counts["misses"] += 1
            return _MISSING
        self._entries.move_to_end(key)
        self._counts["hits"] += 1
        return entry.value

    def generation(self, model: str) -> int:
        """The model's invalidation generation now (pass it to ``put`` after fetching)."""
        with self._lock:
            return self._generation.get(model, 0)

    def get_stale(self, key: tuple) -> tuple[Any, float] | None:
        """``(a private copy of the last value stored for key, its age in seconds)``, even past
        its TTL (up to ``stale_s`` past it), or ``None``: the fallback of ``stale_ok`` reads."""
        with self._lock:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is None or now >= entry.expires + self.stale_s:
                return None
            self._counts["stale_hits"] += 1
            value, age = entry.value, now - (entry.expires - self.ttl_s)
        return copy_stored(value), max(0.0, age)

    def put(self, key: tuple, value: Any, generation: int | None = None) -> bool:
        """Store ``value`` (copied) under ``key``; refused (``False``) when ``generation`` is no
        longer the model's current one or the value alone exceeds the document bound."""
        weight = len(value) if isinstance(value, list) else 1
        if not self.enabled or weight > self.max_documents:
            with self._lock:
                self._counts["uncacheable"] += 1
            return False
        stored = copy_stored(value)
        with self._lock:
            if generation is not None and self._generation.get(key[0], 0) != generation:
                return False
            if key in self._entries:
                self._remove_locked(key)
            self._entries[key] = _Entry(stored, self._clock() + self.ttl_s, weight)
            self._documents += weight
            while len(self._entries) > self.max_entries or self._documents > self.max_documents:
                oldest = next(iter(self._entries))
                self._remove_locked(oldest)
                self._counts["evictions"] += 1
        return True

    def _remove_locked(self, key: tuple) -> None:
        entry = self._entries.pop(key)
        self._documents -= entry.weight

    # --- invalidation ------------------------------------------------------------------------

    def invalidate(self, model: str | None = None) -> int:
        """Drop the entries of ``model`` (every entry when ``None``); the number dropped."""
        with self._lock:
            if model is None:
                for name in {k[0] for k in self._entries}:
                    self._generation[name] = self._generation.get(name, 0) + 1
                keys = list(self._entries)
            else:
                self._generation[model] = self._generation.get(model, 0) + 1
                keys = [k for k in self._entries if k[0] == model]
            for key in keys:
                self._remove_locked(key)
            self._counts["invalidations"] += len(keys)
        return len(keys)

    def clear(self) -> int:
        """Drop every entry."""
        return self.invalidate(None)

    def on_write(self, event: WriteEvent) -> None:
        """The write hook: invalidate the written model now, or when its transaction commits."""
        if event.transaction is not None:
            event.transaction.after_commit(partial(self.invalidate, event.model))
        else:
            self.invalidate(event.model)

    # --- figures -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and sizes: hits, misses, hit_ratio, evictions, expirations, invalidations,
        uncacheable, entries, documents, and the configured bounds."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["entries"] = len(self._entries)
            out["documents"] = self._documents
        looked = out["hits"] + out["misses"]
        out["hit_ratio"] = round(out["hits"] / looked, 4) if looked else 0.0
        out.update(ttl_s=self.ttl_s, max_entries=self.max_entries, max_documents=self.max_documents)
        return out

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<QueryCache {len(self._entries)}/{self.max_entries} entries, ttl {self.ttl_s}s>"
