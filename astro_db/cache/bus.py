"""The invalidation bus: how a write in one place drops the cached reads it may have changed elsewhere.

Every ``QueryCache`` (one per ``Database``) is a *listener*: ``apply(notice)`` removes the entries
a write may have changed (``Notice``: the written ids, as keyed digests, the top-level fields it
set, whether it created or deleted, and in this process its post-images), ``drop(model)``
removes every entry of the model (a write the bus knows nothing more of), ``drop_all(reason)``
expires every entry (kept only for ``stale_ok`` fallbacks). A bus
carries the writes to the listeners and says whether it can be trusted right now
(``connected``); a cache whose bus is not connected stores nothing and serves no hit.

- ``LocalBus`` (always there): a process-wide registry keyed by the server identity (hosts,
  replica set) and the database name, so every ``Database`` of one process on the same data
  drops what another one's write changed, synchronously, before that write's ``db.`` call
  returns; unrelated databases never cross. On its own it is the ``cache_bus="local"`` kind.
- ``RedisBus`` (``cache_bus="redis://..."``, ``astro_db.cache.redis_bus``): across processes.
- ``ChangeStreamBus`` (``cache_bus="changestream"``, ``astro_db.cache.change_streams``): the
  server's change streams, which also see writes made by other programs (the Node service).
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from ..backends.capabilities import capabilities

__all__ = ["InvalidationBus", "CacheListener", "BusFigures", "LocalBus", "Notice", "server_identity"]

MAX_NOTICE_IDS = 256  # a write of more documents is announced as "the whole model" (one small message)


@dataclass(frozen=True)
class Notice:
    """What one committed write (or several, merged) may have changed in ``model``.

    ``ids``: keyed digests of the written ``_id`` values (``QueryCache.digest``), ``None`` when
    they are not known (or too many): then every entry of the model is dropped. ``fields``: the
    top-level stored fields the write set (an update also sets ``_rev``, ``_op`` and
    ``updatedAt``). ``created`` / ``deleted``: whether a document may be new / may be gone.
    ``images``: the post-images in stored form, one per written document, only in the writing
    process (never sent over Redis); ``None`` when not known (then "matches after" is judged by
    the fields alone)."""

    model: str
    ids: frozenset[bytes] | None
    fields: frozenset[str] = frozenset()
    created: bool = False
    deleted: bool = False
    images: tuple[dict[str, Any], ...] | None = None

    @property
    def whole(self) -> bool:
        """Whether the notice drops every entry of its model (the written ids are not known)."""
        return self.ids is None

    def merged(self, other: Notice | None) -> Notice | None:
        """One notice covering this one and ``other`` (``None``: the whole model), without images."""
        if other is None or self.ids is None or other.ids is None:
            return None
        ids = self.ids | other.ids
        if len(ids) > MAX_NOTICE_IDS:
            return None
        return Notice(self.model, ids, self.fields | other.fields, self.created or other.created,
                      self.deleted or other.deleted)

    def bare(self) -> Notice | None:
        """This notice without its post-images (what ``merged(self)`` gives, with no set made)."""
        if self.ids is None:
            return None
        if self.images is None:
            return self
        return Notice(self.model, self.ids, self.fields, self.created, self.deleted)

    def to_wire(self) -> dict[str, Any]:
        """The message fields a remote process needs: ids (hex digests) and field names only."""
        assert self.ids is not None
        return {"i": sorted(d.hex() for d in self.ids), "f": sorted(self.fields), "c": self.created, "d": self.deleted}

    @classmethod
    def from_wire(cls, model: str, body: dict[str, Any]) -> Notice | None:
        """The notice of a received message (``None``: it names no ids, drop the model); raises
        ``ValueError`` / ``TypeError`` on a malformed one."""
        if "i" not in body:
            return None
        ids, fields, created, deleted = body["i"], body["f"], body["c"], body["d"]
        if not (isinstance(ids, list) and isinstance(fields, list) and isinstance(created, bool)
                and isinstance(deleted, bool) and all(isinstance(f, str) for f in fields)):
            raise ValueError("bad notice field types")
        return cls(model, frozenset(map(bytes.fromhex, ids)), frozenset(fields), created, deleted)


@runtime_checkable
class CacheListener(Protocol):
    """What a bus calls on the caches it serves."""

    def drop(self, model: str) -> int: ...

    def apply(self, notice: Notice) -> int: ...

    def drop_all(self, reason: str) -> int: ...


@runtime_checkable
class InvalidationBus(Protocol):
    """Carries committed writes to every cache that may hold what they changed."""

    kind: str

    @property
    def connected(self) -> bool:
        """Whether a cache on this bus may store and serve entries now."""
        ...

    def attach(self, listener: CacheListener) -> None:
        """Deliver drops to ``listener`` (held weakly)."""
        ...

    def publish(self, model: str, origin: CacheListener | None = None, notice: Notice | None = None) -> None:
        """Announce a committed write to ``model`` (never raises: a failure marks the bus down);
        ``notice`` says what it wrote (``None``: anything in the model)."""
        ...

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        """kind, connected, sent, received, last_message_age_s, full_drops, errors, reason."""
        ...


class BusFigures:
    """The counters every bus reports, thread-safe."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self.sent = 0
        self.unannounced = 0  # writes to a model no process caches: the generation advanced, nothing sent
        self.received = 0
        self.full_drops = 0
        self.errors = 0
        self.reconnects = 0
        self.last_message_at: float | None = None
        self.last_delay_s: float | None = None
        self.last_error: str | None = None

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def count_sent(self) -> None:
        """``count("sent")``, for the one message every write sends."""
        with self._lock:
            self.sent += 1

    def message(self, sent_at: float | None = None) -> None:
        """One message received (``sent_at``: the publisher's wall clock, for the delay)."""
        now = time.time()
        with self._lock:
            self.received += 1
            self.last_message_at = time.monotonic()
            if sent_at is not None:
                self.last_delay_s = max(0.0, now - sent_at)

    def error(self, text: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = text[:300]

    def as_dict(self, connected: bool, reason: str | None) -> dict[str, Any]:
        with self._lock:
            age = None if self.last_message_at is None else round(time.monotonic() - self.last_message_at, 3)
            return {
                "kind": self.kind, "connected": connected, "reason": reason, "sent": self.sent,
                "unannounced": self.unannounced,
                "received": self.received, "last_message_age_s": age,
                "last_delay_ms": None if self.last_delay_s is None else round(self.last_delay_s * 1000.0, 3),
                "full_drops": self.full_drops, "reconnects": self.reconnects, "errors": self.errors,
                "last_error": self.last_error,
            }


def server_identity(config: Any) -> tuple[str, ...]:
    """What makes two configs point at the same data: hosts (sorted, no credentials), replica
    set and database name. An embedded database is private to its ``Database``: a fresh token."""
    if not capabilities(config).shared_data:
        return ("embedded", uuid.uuid4().hex)
    parts = urlsplit(config.url)
    netloc = parts.netloc.rpartition("@")[2].lower()
    hosts = ",".join(sorted(h if ":" in h else f"{h}:27017" for h in netloc.split(",") if h))
    replica_set = config.replica_set or (parse_qs(parts.query).get("replicaSet") or [""])[0]
    return (config.scheme, hosts, replica_set, config.database_name)


class SubscribingBus:
    """What the buses that subscribe to others' writes (Redis, change streams) share: the one
    cache listener they feed, held weakly (a bus never keeps a closed cache alive), and the full
    drop they fall back on whenever a message may have been missed."""

    figures: BusFigures
    _listener: weakref.ReferenceType[Any] | None = None

    def listening(self) -> Any:
        """The listener fed by this bus, or None (none attached, or it was garbage-collected)."""
        return self._listener() if self._listener is not None else None

    def _drop_all(self, reason: str, *, count: bool = True) -> None:
        listener = self.listening()
        if listener is not None:
            listener.drop_all(reason)
        if count:
            self.figures.count("full_drops")


class LocalBus:
    """The in-process bus: the caches of every ``Database`` on the same data, in one process."""

    kind = "local"
    _shared: dict[tuple[str, ...], LocalBus] = {}
    _shared_lock = threading.Lock()

    def __init__(self, identity: tuple[str, ...] = ()) -> None:
        self.identity = identity
        self._listeners: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.figures = BusFigures(self.kind)
        # a weak reference per listener attached, dropped by the set's own discard (C, no code of
        # ours) when the listener is collected: its size is the number of caches alive
        self._alive: set[weakref.ReferenceType[Any]] = set()

    @classmethod
    def shared(cls, identity: tuple[str, ...]) -> LocalBus:
        """The one bus of the process for ``identity`` (made on first use)."""
        with cls._shared_lock:
            bus = cls._shared.get(identity)
            if bus is None:
                bus = cls._shared[identity] = cls(identity)
            return bus

    @property
    def connected(self) -> bool:
        return True

    def attach(self, listener: CacheListener) -> None:
        with self._lock:
            if listener in self._listeners:
                return
            self._listeners.add(listener)
            self._alive.add(weakref.ref(listener, self._alive.discard))

    @property
    def members(self) -> int:
        """How many caches are attached and alive."""
        return len(self._alive)

    def alone(self, listener: CacheListener) -> bool:
        """Whether ``listener``, attached, is the only cache attached: what it publishes reaches
        nobody (one size of a set: no lock, no walk of the listeners)."""
        return len(self._alive) == 1

    def quiet(self, model: str) -> bool:
        """Whether no cache of the process holds anything of ``model`` now, only looked at
        (``QueryCache.quiet``; ``unseen`` asks the same and acts on it)."""
        for ref in tuple(self._alive):
            listener = ref()
            if listener is None:
                continue
            holds = getattr(listener, "holds", None)
            if holds is None or holds(model):
                return False
        return True

    def unseen(self, model: str, origin: CacheListener) -> bool:
        """A write of ``origin``'s to ``model`` where no cache of the process holds anything of
        it: each cache's generation advanced, checked and advanced in one step under its own
        lock (``advance_unheld``: an entry stored after that step was read after the write), the
        message counted as sent and delivered, and True. False as soon as a cache holds an entry
        of the model (or cannot say): the caller publishes the write's notice as usual (the
        generations already advanced only keep reads under way from storing)."""
        others = -1  # the caches but origin
        for ref in tuple(self._alive):  # the live caches' references (no WeakSet iteration)
            listener = ref()
            if listener is None:
                continue
            advance = getattr(listener, "advance_unheld", None)
            if advance is None or not advance(model):
                return False
            others += 1
        self.figures.count("sent")
        for _ in range(others):
            self.figures.message()
        return True

    def publish(self, model: str, origin: CacheListener | None = None, notice: Notice | None = None) -> None:
        """Apply the write in every other cache of the process now (the origin applied it to
        its own): what ``notice`` may have changed, else every entry of ``model``."""
        with self._lock:
            listeners = self._listeners
            alone = len(listeners) == 1 and origin is not None and origin in listeners
            # a process with one cache (nearly every one) publishes to nobody: no WeakSet iteration
            others = [] if alone else [listener for listener in listeners if listener is not origin]
        self.figures.count("sent")
        for listener in others:
            if notice is None or notice.whole:
                listener.drop(model)
            else:
                listener.apply(notice)
            self.figures.message()

    def close(self) -> None:
        """Nothing to release: the registry holds its listeners weakly."""

    def stats(self) -> dict[str, Any]:
        out = self.figures.as_dict(True, None)
        with self._lock:
            out["listeners"] = len(self._listeners)
        return out

    def __repr__(self) -> str:
        return f"<LocalBus {len(self._listeners)} caches>"
