"""The query cache: an in-process TTL + LRU cache of ``find`` / ``find_one`` / ``count`` results.

Opt-in per call (``cache=True``) or per model (``DatabaseConfig.cache_models``). Entries are
keyed by model, read kind, the compiled (stored-form) filter and the options that change the
result (sort, limit, skip, projection) and the read preference (a secondary may lag). They hold stored-form
documents, so lean and hydrated reads share an entry: every hit returns fresh copies (lean) or
fresh instances hydrated from fresh copies, and a caller can never alter what is cached.

Invalidation: every write through the service to a model drops the entries of that model it
may have changed (a write hook; inside a transaction only once it commits, never on abort) and
is announced on the invalidation bus (``astro_db.cache.bus``): every other ``Database`` of the
process on the same data applies it too, and with ``cache_bus="redis://..."`` every other
process, with ``cache_bus="changestream"`` the server announces every change itself (those drop
the whole model). What a write may have changed (``QueryCache.apply``, one place for every
path): an entry whose answer holds a written document or whose filter pins ``_id`` to a written
id (the document matched before); an entry whose filter the written document matches now
(judged on the post-image with ``query.evaluate`` where the write has one, else "the write set a
field the filter or sort names", else "a document was created"); a ``count`` entry on any
delete and on an update of a field it names (it cannot tell whether the document matched
before); and whatever cannot be judged (``skip``, a projection without ``_id``, a top-level
``$``-operator, an operator the evaluator does not know, a write whose ids are not known): the
whole model, as before. A per-model generation counter (and an epoch for full drops) keeps a
read that raced a write from storing its (possibly older) result afterwards. While the bus is
not connected the cache stores and serves nothing.
Memory is bounded by ``cache_max_entries`` and by ``cache_max_documents`` (documents held over
all entries); a result larger than that is never cached.

Stale answers (docs/reliability.md): an expired entry is no longer a hit, but it is kept
for ``cache_stale_s`` past its TTL (still within the entry and document bounds, evicted
first as the least recently used) so that a read with ``stale_ok=True`` can fall back to it
while the server is unavailable (``get_stale``). Invalidation by a write drops it as well.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import bson
from bson import Decimal128, ObjectId

from ..errors import AstroDBError, ConfigError
from ..events import WriteEvent
from ..ids import BSON_CODEC
from ..query.evaluate import matches
from ..query.order import identity_bytes, number_text
from .bus import MAX_NOTICE_IDS, InvalidationBus, LocalBus, Notice
from .redis_store import (
    ANY,
    CREATED,
    DELETED,
    MAX_DEPENDENCY_IDS,
    MAX_ENTRY_DEPENDENCIES,
    WHOLE,
    RedisStore,
    field_dependency,
    id_dependency,
)
from .redis_store import MISSING as _SHARED_MISSING

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB
    from ..config import CacheConfig

log = logging.getLogger(__name__)

__all__ = ["QueryCache", "cache_key", "copy_stored"]

_MISSING = object()
_LOGICAL = ("$and", "$or", "$nor")
CacheKey = tuple[Any, ...]  # (model, kind, read preference, BSON of filter and options)


def copy_stored(value: Any) -> Any:
    """A copy of a stored-form value deep enough that no dict or list is shared (BSON scalars
    are immutable); several times cheaper than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: copy_stored(v) if isinstance(v, (dict, list)) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_stored(v) if isinstance(v, (dict, list)) else v for v in value]
    return value


# values a filter compares with that are never mappings: told apart without the ``Mapping`` ABC's
# Python-level ``__instancecheck__`` (an id lookup's ObjectId, an email's string)
_NOT_MAPPINGS = (str, ObjectId, int, float, bytes, list, type(None))
_SHOWN = ("sort", "limit", "skip", "projection")  # the options that change a read's answer


def _canonical(filt: Mapping[str, Any]) -> dict[str, Any]:
    """The filter with the key order that does not change its meaning made canonical: field
    clauses and operator documents are sorted; values compared for equality are left as given
    (``{"a": {"x": 1, "y": 2}}`` is not the same query as ``{"a": {"y": 2, "x": 1}}``)."""
    out = {}
    for key in sorted(filt):
        value = filt[key]
        if key in _LOGICAL and isinstance(value, list):
            value = [_canonical(v) if isinstance(v, Mapping) else v for v in value]
        elif (not isinstance(value, _NOT_MAPPINGS) and isinstance(value, Mapping) and value
              and all(str(k).startswith("$") for k in value)):
            value = _canonical(value)
        out[key] = value
    return out


def cache_key(model: str, kind: str, filt: Mapping[str, Any], options: Mapping[str, Any] | None = None,
              read_preference: str | None = None) -> CacheKey:
    """The key of one read: model, kind (find / find_one / count), the canonical stored-form
    filter and the result-changing options, BSON-encoded (exact for ObjectIds, dates, regexes)."""
    shown = {k: v for k, v in options.items() if k in _SHOWN} if options else None
    body = bson.encode({"f": _canonical(filt), "o": _canonical(shown) if shown else {}})
    return (model, kind, read_preference, body)


# what every update sets besides its own fields (``changes.revision.advance``)
_SERVICE_FIELDS = frozenset({"_rev", "_op", "updatedAt"})


class _Shape:
    """What a write needs to know of one entry to judge whether it may have changed it.

    ``pinned``: digests of the only ``_id`` values the filter can match (``{"_id": x}``,
    ``{"_id": {"$in": [...]}}``), else ``None``; ``ids``: digests of the ``_id`` of every document
    the answer holds; ``fields``: the top-level fields the filter and sort name; ``fragile``: the
    entry cannot be judged (any write to its model drops it); ``keyed``: ``(field, digest)`` of
    a top-level equality on a string or ObjectId the filter requires (``{"email": "a@b"}``), so a
    post-image can match it only if its ``field`` holds that value (``QueryCache.apply`` looks
    such entries up by the post-image's values instead of evaluating each)."""

    __slots__ = ("filt", "fields", "pinned", "ids", "fragile", "count", "keyed")

    def __init__(self, filt: Mapping[str, Any], fields: frozenset[str], pinned: frozenset[bytes] | None,
                 ids: frozenset[bytes], fragile: bool, count: bool, keyed: tuple[str, bytes] | None = None) -> None:
        self.filt = filt
        self.fields = fields
        self.pinned = pinned
        self.ids = ids
        self.fragile = fragile
        self.count = count
        self.keyed = keyed

    def may_change(self, notice: Notice) -> bool:
        """Whether a write no id of which this entry holds or pins may have changed its answer."""
        if self.fragile:
            return True
        if self.pinned is not None:
            return False  # the filter can only match the ids it names, none of them written
        touched = not self.fields.isdisjoint(notice.fields)
        if self.count and (notice.deleted or (touched and not notice.created)):
            return True  # a count cannot tell whether the document matched before
        if not (notice.created or touched):
            return False  # its match and its place in the order are unchanged, and it is not in the answer
        if notice.images is None:
            return True
        return any(_may_match(self.filt, image) for image in notice.images)

    def dependencies(self) -> tuple[str, ...]:
        """What this entry depends on in the shared store (``redis_store``): the writes
        ``may_change`` drops it for when the notice carries no post-images (another process's),
        as the dependency keys such a write sets. An entry holding or pinning an id depends on
        it; a filter that does not pin ids also on the fields it names and on creates, a count
        on deletes too; every one on the whole model; one that cannot be judged (or holds more
        than ``MAX_DEPENDENCY_IDS`` ids) on every write (``ANY``)."""
        if self.fragile:
            return (ANY,)
        held = self.ids if self.pinned is None else self.ids | self.pinned
        if len(held) > MAX_DEPENDENCY_IDS:
            return (ANY,)
        names = [WHOLE, *(id_dependency(digest) for digest in sorted(held))]
        if self.pinned is None:  # it may match a document it does not hold
            names += [field_dependency(name) for name in sorted(self.fields)]
            names.append(CREATED)
            if self.count:
                names.append(DELETED)
        if len(names) > MAX_ENTRY_DEPENDENCIES or any("\0" in name for name in names):
            return (ANY,)
        return tuple(names)


def _may_match(filt: Mapping[str, Any], image: Mapping[str, Any]) -> bool:
    """Whether ``image`` matches ``filt`` (True when the evaluator cannot say)."""
    try:
        return matches(filt, dict(image))
    except Exception:  # noqa: BLE001 - an operator or a value the local evaluator cannot judge: assume it may
        return True


def _top_fields(names: tuple[Any, ...]) -> frozenset[str]:
    """The top-level fields of a write's field names (``a.b`` -> ``a``): the names themselves
    when none is dotted (one ``join`` to tell, instead of a split per name)."""
    try:
        if "." not in "\x00".join(names):
            return frozenset(names)
    except TypeError:  # a name that is not a string: the general way below
        pass
    return frozenset(str(f).split(".", 1)[0] for f in names)


def _named_fields(filt: Any, out: set[str]) -> bool:
    """Add the top-level fields ``filt`` names to ``out``; False when it cannot be judged locally
    (a top-level operator such as ``$expr``, ``$where``, ``$text``)."""
    if not isinstance(filt, Mapping):
        return False
    for key, value in filt.items():
        if not isinstance(key, str):
            return False
        if key in _LOGICAL:
            if not isinstance(value, list) or not all(_named_fields(sub, out) for sub in value):
                return False
        elif key.startswith("$"):
            return False
        else:
            out.add(key.split(".", 1)[0])
    return True


def _sort_fields(sort: Any) -> list[str] | None:
    if sort is None:
        return []
    if isinstance(sort, Mapping):
        return [str(k) for k in sort]
    if isinstance(sort, list) and all(isinstance(p, list) and p for p in sort):
        return [str(p[0]) for p in sort]
    return None


class _Entry:
    __slots__ = ("value", "expires", "weight", "shape")

    def __init__(self, value: Any, expires: float, weight: int, shape: _Shape) -> None:
        self.value = value
        self.expires = expires
        self.weight = weight
        self.shape = shape


class QueryCache:
    """Thread-safe TTL + LRU cache of read results, with per-model invalidation and counters."""

    def __init__(self, ttl_s: float = 60.0, max_entries: int = 1024, max_documents: int = 100_000,
                 models: frozenset[str] = frozenset(), clock: Callable[[], float] = time.monotonic,
                 stale_s: float = 0.0, bus: InvalidationBus | None = None, peers: LocalBus | None = None,
                 shared: RedisStore | None = None, id_key: bytes = b"") -> None:
        self.ttl_s = ttl_s
        self.stale_s = stale_s  # how long past its TTL an entry stays available to get_stale
        self.max_entries = max_entries
        self.max_documents = max_documents
        self.models = frozenset(models)  # models cached without cache=True
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        # the keys of each model's entries: a write drops its model's entries without a scan
        self._by_model: dict[str, set[CacheKey]] = {}
        # (model, id digest) -> the entries holding or pinning that id: "matched before" without a scan
        self._by_id: dict[tuple[str, bytes], set[CacheKey]] = {}
        # the entries of each model whose filter does not pin ids: judged one by one on a write
        # (those with a ``_Shape.keyed`` equality are in ``_keyed`` instead)
        self._open: dict[str, set[CacheKey]] = {}
        self._keyed: dict[str, set[CacheKey]] = {}
        # (model, field, value digest) -> the keyed entries requiring field == value
        self._by_value: dict[tuple[str, str, bytes], set[CacheKey]] = {}
        self._keyed_fields: dict[str, dict[str, int]] = {}  # model -> keyed field -> entries keyed on it
        self._id_key = hashlib.blake2b(id_key, digest_size=32).digest()  # the key of the id digests
        self._generation: dict[str, int] = {}
        self._epoch = 0  # advanced by every full drop: a read begun before one stores nothing
        self._documents = 0
        self._counts = {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0, "invalidations": 0, "uncacheable": 0,
                        "stale_hits": 0, "full_drops": 0, "kept": 0}
        self.peers = peers if peers is not None else LocalBus()  # the other caches of the process
        self.bus: InvalidationBus = bus if bus is not None else self.peers  # the configured bus
        self.peers.attach(self)
        self.shared = shared  # a RedisStore (cache_store=): entries other processes stored
        if self.bus is not self.peers:
            self.bus.attach(self)

    @classmethod
    def from_config(cls, config: CacheConfig, registry: Any, *, identity: tuple[str, ...], namespace: str,
                    shared_data: bool, encryption_key: str | None = None) -> QueryCache:
        """The cache ``config`` describes; ``cache_models`` names resolve in ``registry``.

        Where it caches for: ``identity`` (``bus.server_identity``: the caches of one process
        reading the same data share invalidations when ``shared_data``) and ``namespace``
        (``redis_namespace``: its keys on a Redis bus or store); ``encryption_key`` is the
        fallback key of the shared store's MACs (``store_secret``)."""
        try:
            models = frozenset(registry.resolve(name).name for name in config.cache_models)
        except AstroDBError as exc:
            raise ConfigError(f"cache_models: {exc}", key="cache_models") from exc
        peers = LocalBus.shared(identity) if shared_data else LocalBus(identity)
        shared = None
        if config.cache_store and config.cache_ttl_s > 0:
            shared = RedisStore(config.cache_store, namespace, config.cache_ttl_s,
                                secret=store_secret(config, encryption_key))
        secret = store_secret(config, encryption_key) if (config.cache_secret or encryption_key) else b""
        return cls(config.cache_ttl_s, config.cache_max_entries, config.cache_max_documents, models,
                   stale_s=config.cache_stale_s, bus=_make_bus(config, registry, namespace),
                   peers=peers, shared=shared, id_key=hashlib.sha256(b"astro_db:cache-ids\0" + secret + b"\0"
                                                                     + namespace.encode()).digest())

    def open(self, database: MongoDB, in_flight: tuple[Iterator[int], Iterator[int]] | None = None) -> None:
        """Called once the Database is connected: a change-stream bus opens its stream here
        (a ``ConfigError`` when the server has none). ``in_flight``: the monitor's two counters
        of calls in flight, which a change-stream bus advances around each of its commands."""
        opener = getattr(self.bus, "open", None)
        if opener is not None and self.enabled:
            opener(database, in_flight)

    def close(self) -> None:
        """Stop the bus's subscriber (nothing is cached after this)."""
        if self.bus is not self.peers:
            self.bus.close()
        if self.shared is not None:
            self.shared.close()

    # --- policy ------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    @property
    def trusted(self) -> bool:
        """Whether the bus is connected, so an entry cannot miss an invalidation."""
        return self.bus.connected

    def wanted(self, model: str, cache: bool | None) -> bool:
        """Whether a read of ``model`` uses the cache: ``cache`` if given, else the model
        setting; never while the bus is down (reads go to the server)."""
        if not (model in self.models if cache is None else cache):
            return False  # nearly every read: its model not cached and no cache=True
        return self.ttl_s > 0 and self.bus.connected  # ``enabled``, inlined

    # --- reads -------------------------------------------------------------------------------

    def get_or_fetch(self, key: CacheKey, fetch: Callable[[], Any]) -> Any:
        """The cached result for ``key`` (a private copy), else ``fetch()``'s, stored for later.

        The fetched result is returned as is (the caller owns it); a copy is what gets stored,
        and only if no write invalidated the model while it was being fetched."""
        model = key[0]
        with self._lock:
            value = self._get_locked(key)
            generation = (self._epoch, self._generation.get(model, 0))
        if value is not _MISSING:
            return copy_stored(value)
        if not self._watch(model):
            return fetch()  # the bus could not register the model: nothing is stored
        shared, token = self.shared, None
        if shared is not None and self._unsent(model):
            shared = None  # this process wrote the model and has not announced it yet: Redis's copy may be older
        if shared is not None:
            found, token = shared.get(key)
            if found is not _SHARED_MISSING:  # decoded afresh: the caller may own it
                self.put(key, found, generation)
                return found
        result = fetch()
        shape = self._store(key, result, generation)
        if shape is not None and shared is not None:
            shared.put(key, result, token, shape.dependencies())
        return result

    def _unsent(self, model: str) -> bool:
        unsent = getattr(self.bus, "unsent", None)
        return bool(unsent(model)) if unsent is not None else False

    def _get_locked(self, key: CacheKey) -> Any:
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

    def _watch(self, model: str) -> bool:
        """Tell the bus this process caches ``model`` (before a fetch whose answer is stored)."""
        watch = getattr(self.bus, "watch", None)
        return bool(watch(model)) if watch is not None else True

    def _watching(self, model: str) -> bool:
        watching = getattr(self.bus, "watching", None)
        return bool(watching(model)) if watching is not None else True

    def generation(self, model: str) -> tuple[int, int]:
        """The model's invalidation generation now (pass it to ``put`` after fetching); the
        model is registered with the bus first (a Redis bus announces only registered models)."""
        self._watch(model)
        with self._lock:
            return (self._epoch, self._generation.get(model, 0))

    def get_stale(self, key: CacheKey) -> tuple[Any, float] | None:
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

    def put(self, key: CacheKey, value: Any, generation: tuple[int, int] | None = None) -> bool:
        """Store ``value`` (copied) under ``key``; refused (``False``) when ``generation`` is no
        longer the model's current one, the value alone exceeds the document bound, or the bus
        is down (an entry stored then could miss an invalidation)."""
        return self._store(key, value, generation) is not None

    def _store(self, key: CacheKey, value: Any, generation: tuple[int, int] | None = None) -> _Shape | None:
        """``put``: the stored entry's shape (what the shared store's entry depends on), or ``None``."""
        weight = len(value) if isinstance(value, list) else 1
        if not self.enabled or weight > self.max_documents:
            with self._lock:
                self._counts["uncacheable"] += 1
            return None
        if not self.bus.connected or not self._watching(key[0]):
            return None  # down, or the model's writes are not announced to this process yet
        stored = copy_stored(value)
        shape = self._shape(key, value)
        model = key[0]
        with self._lock:
            if generation is not None and (self._epoch, self._generation.get(model, 0)) != generation:
                return None
            if key in self._entries:
                self._remove_locked(key)
            self._entries[key] = _Entry(stored, self._clock() + self.ttl_s, weight, shape)
            self._by_model.setdefault(model, set()).add(key)
            for digest in shape.ids if shape.pinned is None else shape.ids | shape.pinned:
                self._by_id.setdefault((model, digest), set()).add(key)
            if shape.keyed is not None:
                self._keyed.setdefault(model, set()).add(key)
                self._by_value.setdefault((model, *shape.keyed), set()).add(key)
                counts = self._keyed_fields.setdefault(model, {})
                counts[shape.keyed[0]] = counts.get(shape.keyed[0], 0) + 1
            elif shape.pinned is None:
                self._open.setdefault(model, set()).add(key)
            self._documents += weight
            while len(self._entries) > self.max_entries or self._documents > self.max_documents:
                oldest = next(iter(self._entries))
                self._remove_locked(oldest)
                self._counts["evictions"] += 1
        return shape

    def _remove_locked(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self._documents -= entry.weight
        model, shape = key[0], entry.shape
        _discard(self._by_model, model, key)
        if shape.keyed is not None:
            _discard(self._keyed, model, key)
            _discard(self._by_value, (model, *shape.keyed), key)
            counts = self._keyed_fields[model]
            counts[shape.keyed[0]] -= 1
            if not counts[shape.keyed[0]]:
                del counts[shape.keyed[0]]
                if not counts:
                    del self._keyed_fields[model]
        elif shape.pinned is None:
            _discard(self._open, model, key)
        for digest in shape.ids if shape.pinned is None else shape.ids | shape.pinned:
            _discard(self._by_id, (model, digest), key)

    def digest(self, value: Any) -> bytes:
        """The keyed digest of an ``_id`` value: what entries are indexed by and what a write's
        notice carries (over Redis too: the ids themselves never leave the process)."""
        if isinstance(value, ObjectId):
            data = b"o" + value.binary
        elif isinstance(value, (int, float, Decimal128)) and not isinstance(value, bool):
            # by exact value, as the server compares: 5, 5.0 and Decimal128("5") are one _id
            data = b"n" + number_text(value.to_decimal() if isinstance(value, Decimal128) else value).encode()
        elif isinstance(value, (Mapping, list, tuple)):  # by the server's equality: {a: 1} is {a: 1.0}
            data = b"i" + identity_bytes(value)
        else:
            data = bson.encode({"": value}, codec_options=BSON_CODEC)  # a UUID _id too
        return hashlib.blake2b(data, key=self._id_key, digest_size=16).digest()

    def _shape(self, key: CacheKey, value: Any) -> _Shape:
        """How a write judges the entry ``key`` holding ``value`` (see ``_Shape``)."""
        kind, body = key[1], key[3]
        try:
            decoded = bson.decode(body)
            filt, options = decoded["f"], decoded["o"]
        except Exception:  # noqa: BLE001 - a key not made by cache_key: judged fragile
            return _Shape({}, frozenset(), None, frozenset(), True, False)
        fields: set[str] = set()
        fragile = not _named_fields(filt, fields) or bool(options.get("skip"))
        sort = _sort_fields(options.get("sort"))
        if sort is None:
            fragile = True
        else:
            fields.update(name.split(".", 1)[0] for name in sort)
        projection = options.get("projection")
        if isinstance(projection, Mapping) and "_id" in projection and not projection["_id"]:
            fragile = True  # the answer does not show which documents it holds
        ids: set[bytes] = set()
        count = kind == "count"
        if not count:
            docs = value if isinstance(value, list) else [] if value is None else [value]
            for doc in docs:
                if isinstance(doc, Mapping) and "_id" in doc:
                    ids.add(self.digest(doc["_id"]))
                else:
                    fragile = True
        elif not isinstance(value, int):
            fragile = True
        pinned = None if fragile else self._pinned(filt)
        keyed = None
        if not (fragile or count) and pinned is None:
            for name in sorted(filt):  # the first top-level equality on a string or an ObjectId
                value = filt[name]
                if not name.startswith("$") and "." not in name and isinstance(value, (str, ObjectId)):
                    keyed = (name, self.digest(value))
                    break
        return _Shape(filt, frozenset(fields), pinned, frozenset(ids), fragile, count, keyed)

    def _pinned(self, filt: Mapping[str, Any]) -> frozenset[bytes] | None:
        """Digests of the only ``_id`` values ``filt`` can match, or None (any)."""
        if "_id" not in filt:
            return None
        target = filt["_id"]
        if isinstance(target, Mapping) and target and all(str(k).startswith("$") for k in target):
            if set(target) == {"$eq"}:
                return frozenset({self.digest(target["$eq"])})
            if set(target) == {"$in"} and isinstance(target["$in"], list) and len(target["$in"]) <= MAX_NOTICE_IDS:
                if any(isinstance(v, (Mapping, list)) or hasattr(v, "pattern") for v in target["$in"]):
                    return None  # a regex or a document in $in: not a plain list of ids
                return frozenset(self.digest(v) for v in target["$in"])
            return None
        if isinstance(target, (Mapping, list)) or hasattr(target, "pattern"):
            return None  # a document, a list or a regex compared with _id: judged by the filter
        return frozenset({self.digest(target)})

    # --- invalidation ------------------------------------------------------------------------

    def invalidate(self, model: str | None = None, notice: Notice | None = None) -> int:
        """Drop what a write to ``model`` may have changed here (``notice``; every entry of the
        model without one) and announce it on the bus (every entry, here only, when ``model`` is
        ``None``); the number dropped here."""
        if model is None:
            return self._drop_locally(None)
        dropped = self.apply(notice) if notice is not None else self.drop(model)
        self.peers.publish(model, origin=self, notice=notice)
        if self.bus is not self.peers:
            self.bus.publish(model, origin=self, notice=notice)
        return dropped

    def apply(self, notice: Notice) -> int:
        """Drop the entries of ``notice.model`` the write it describes may have changed (the
        module docstring says which), keep the others; the number dropped. The generation
        advances either way: a read under way may have been answered before the write."""
        model = notice.model
        if notice.ids is None:
            return self._drop_locally(model)
        with self._lock:
            self._generation[model] = self._generation.get(model, 0) + 1
            if model not in self._by_model:  # nothing of the model is held here: none to drop, none kept
                return 0
            doomed: set[CacheKey] = set()
            for digest in notice.ids:
                doomed.update(self._by_id.get((model, digest), ()))
            entries = self._entries
            for key in (*self._open.get(model, ()), *self._candidates(notice)):
                if key not in doomed and entries[key].shape.may_change(notice):
                    doomed.add(key)
            held = len(self._by_model.get(model, ()))
            for key in doomed:
                self._remove_locked(key)
            self._counts["invalidations"] += len(doomed)
            self._counts["kept"] += held - len(doomed)  # entries of the model the write left in place
        return len(doomed)

    def _candidates(self, notice: Notice) -> set[CacheKey]:
        """The keyed entries ``notice`` may have changed without holding its ids: every one when
        it has no post-images; else those whose required value a post-image holds (the others
        cannot match it after the write, and did not hold it before)."""
        model = notice.model
        if notice.images is None:
            return set(self._keyed.get(model, ()))
        found: set[CacheKey] = set()
        for name in self._keyed_fields.get(model, ()):
            for image in notice.images:
                value = image.get(name, _MISSING)
                if value is _MISSING:
                    continue
                for item in (value, *value) if isinstance(value, list) else (value,):
                    if isinstance(item, (str, ObjectId)):
                        found.update(self._by_value.get((model, name, self.digest(item)), ()))
        return found

    def notice(self, event: WriteEvent) -> Notice:
        """What ``event`` may have changed, as the buses carry it."""
        ids = event.document_ids
        if not ids or len(ids) > MAX_NOTICE_IDS or event.action not in ("create", "update", "delete"):
            return Notice(event.model, None)
        fields = _top_fields(event.fields)
        if event.action == "update":
            fields |= _SERVICE_FIELDS
        images = event.documents
        if event.action == "delete" or images is None or len(images) != len(ids):
            images = None
        return Notice(event.model, frozenset(self.digest(i) for i in ids), fields, created=event.action == "create",
                      deleted=event.action == "delete", images=images)

    def drop(self, model: str) -> int:
        """Drop the entries of ``model`` (a write elsewhere changed it); the number dropped."""
        return self._drop_locally(model)

    def drop_all(self, reason: str) -> int:
        """Expire every entry: the bus lost messages or may have. Expired entries stay
        available to ``stale_ok`` fallbacks (marked stale), never as hits."""
        now = self._clock()
        with self._lock:
            self._epoch += 1
            for entry in self._entries.values():
                entry.expires = min(entry.expires, now)
            self._counts["full_drops"] += 1
            count = len(self._entries)
        log.debug("query cache: every entry expired (%s)", reason)
        return count

    def _drop_locally(self, model: str | None) -> int:
        with self._lock:
            if model is None:
                for name in list(self._by_model):
                    self._generation[name] = self._generation.get(name, 0) + 1
                keys = list(self._entries)
            else:
                self._generation[model] = self._generation.get(model, 0) + 1
                keys = list(self._by_model.get(model, ()))
            for key in keys:
                self._remove_locked(key)
            self._counts["invalidations"] += len(keys)
        return len(keys)

    def clear(self) -> int:
        """Drop every entry."""
        return self.invalidate(None)

    def on_write(self, event: WriteEvent) -> None:
        """The write hook: drop what the write may have changed now, or when its transaction commits.

        A write outside a transaction to a model this cache holds nothing of, in a process where
        no other cache hears the local bus and no other bus is configured, has nobody to tell and
        nothing to judge: its generation advances (a read under way stores nothing) and the
        message is counted as sent, with no ``Notice`` built (``apply`` and ``publish`` would do
        exactly that with one)."""
        model = event.model
        if event.transaction is None and self.unseen_write(model):
            return
        notice = self.notice(event)
        if event.transaction is not None:

            def drop() -> None:
                self.invalidate(model, notice)

            event.transaction.after_commit(drop)
        else:
            self.invalidate(model, notice)

    def unseen_write(self, model: str) -> bool:
        """``on_write``'s short way for a write outside a transaction: True when no cache that
        can hear of the write holds anything of ``model`` (this one, and the other caches of the
        process on the local bus, ``LocalBus.unseen``; never with another bus): the generation
        of each is advanced (a read under way stores nothing) and the message counted as sent,
        and that is all the write needs. False: nothing was done, the
        write is judged by ``on_write`` with its event. The after-write step calls it itself
        when this cache is the only write hook with anything to do (``steps.hooks.after_write``),
        so such a write builds no event."""
        if self.bus is not self.peers:
            return False
        if not self.peers.alone(self):  # other caches of the process on this bus: quiet if none holds the model
            return self.peers.unseen(model, self)
        with self._lock:
            quiet = model not in self._by_model
            if quiet:
                self._generation[model] = self._generation.get(model, 0) + 1
        if quiet:
            self.peers.figures.count_sent()
            return True
        return False

    def quiet(self, model: str) -> bool:
        """What ``unseen_write`` would answer now, only looked at: no generation advanced,
        nothing counted. A hint taken before a write (``steps.hooks.stampless``): a cache may
        begin to hold the model while the write is under way, so ``unseen_write`` still decides
        after it."""
        if self.bus is not self.peers:
            return False
        if self.peers.alone(self):
            return model not in self._by_model
        return self.peers.quiet(model)

    def holds(self, model: str) -> bool:
        """Whether this cache holds an entry of ``model`` now (no lock: a hint, see ``quiet``)."""
        return model in self._by_model

    def advance_unheld(self, model: str) -> bool:
        """If this cache holds nothing of ``model``: advance its generation (a read under way
        stores nothing) and say True, in one step under the lock; False (nothing done) if it
        holds an entry of it. ``LocalBus.unseen`` asks every cache of the process."""
        with self._lock:
            if model in self._by_model:
                return False
            self._generation[model] = self._generation.get(model, 0) + 1
            return True

    # --- figures -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and sizes: hits, misses, hit_ratio, evictions, expirations, invalidations,
        uncacheable, entries, documents, and the configured bounds."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            out["entries"] = len(self._entries)
            out["documents"] = self._documents
        out["bus"] = self.bus.kind
        out["trusted"] = self.bus.connected
        looked = out["hits"] + out["misses"]
        out["hit_ratio"] = round(out["hits"] / looked, 4) if looked else 0.0
        out.update(ttl_s=self.ttl_s, max_entries=self.max_entries, max_documents=self.max_documents)
        return out

    def __len__(self) -> int:
        return len(self._entries)

    def bus_stats(self) -> dict[str, Any]:
        """The bus's figures (``metrics()["cache_bus"]``)."""
        out = self.bus.stats()
        if self.bus is not self.peers:
            out["local"] = self.peers.stats()
        out["shared_store"] = self.shared.stats() if self.shared is not None else None
        return out

    def __repr__(self) -> str:
        return f"<QueryCache {len(self._entries)}/{self.max_entries} entries, ttl {self.ttl_s}s>"


def _discard(index: dict[Any, set[CacheKey]], name: Any, key: CacheKey) -> None:
    keys = index.get(name)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[name]


def redis_namespace(config: Any, identity: tuple[str, ...]) -> str:
    """The Redis key namespace of one deployment: the database name (readable in ``redis-cli``)
    and a digest of the server's identity (hosts, replica set, database), so two servers whose
    databases share a name never share entries or generations on one Redis."""
    digest = hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]
    return f"{config.database_name}:{digest}"


def store_secret(config: CacheConfig, encryption_key: str | None = None) -> bytes:
    """The key the shared store's MACs are made with: ``cache_secret``, else one derived from
    ``encryption_key`` (config validation refuses a ``cache_store`` with neither)."""
    if config.cache_secret:
        return hashlib.sha256(b"astro_db:cache-secret\0" + config.cache_secret.encode()).digest()
    if encryption_key:
        return hmac.new(encryption_key.strip().encode(), b"astro_db:cache-store-key", hashlib.sha256).digest()
    raise ConfigError("cache_store needs cache_secret (or encryption_key) for the MAC of its entries", key="cache_secret")


def _make_bus(config: CacheConfig, registry: Any, namespace: str) -> InvalidationBus | None:
    """The bus ``config.cache_bus`` selects (``None``: the local one is enough)."""
    choice = config.cache_bus
    if choice == "local" or config.cache_ttl_s <= 0:
        return None
    if choice == "changestream":
        from .change_streams import ChangeStreamBus

        return ChangeStreamBus({info.collection: info.name for info in registry})
    from .redis_bus import RedisBus

    return RedisBus(choice, namespace)
