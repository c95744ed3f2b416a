"""The change-stream invalidation bus: the server itself announces every change to the models.

``cache_bus="changestream"`` watches every model's collection (``collection.watch()``, one
daemon thread each; a database-level stream is not used, as some servers accept one and then
deliver nothing); each change drops what it may have changed (``notice_of``: the document's
id and the fields an update set or removed, judged by ``QueryCache.apply`` like any write; an
event without them drops the model). Unlike Redis this also
sees writes made by other programs (the Node service) and through ``db.mongo``. After an
``invalidate`` / ``drop`` event or any error the cache drops everything and the stream is opened
afresh from now (resuming would save nothing: nothing cached survives the drop); while it is
not open nothing is cached.

Change streams need a replica set or a sharded cluster (or nx-27017, which has them on
collections; mongomock-ng has none). ``Database.connect()`` opens one at once and raises a
``ConfigError`` when the server refuses, rather than caching with no invalidation.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .bus import BusFigures, CacheListener, Notice, SubscribingBus

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB
    from ..driver.gateway import ChangeStream

__all__ = ["ChangeStreamBus"]

log = logging.getLogger(__name__)

_FULL_DROP_EVENTS = frozenset({"invalidate", "drop", "dropDatabase", "rename"})
_BACKOFF_S = (0.05, 2.0)


class ChangeStreamBus(SubscribingBus):
    """Invalidations from the server's change streams, one per model collection (a thread each)."""

    kind = "changestream"

    def __init__(self, collections: dict[str, str], *, max_await_ms: int = 500) -> None:
        self.collections = dict(collections)  # collection name -> model name
        self._max_await_ms = max_await_ms
        self.figures = BusFigures(self.kind)
        self._listener: weakref.ReferenceType[Any] | None = None
        self._database: MongoDB | None = None
        self._open: set[str] = set()  # collections whose stream is open now
        self._reason: str | None = "not connected yet (opened by Database.connect())"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # the monitor's calls-in-flight counters (``open`` hands them); counted nowhere until then
        self._in_flight: tuple[Iterator[int], Iterator[int]] = (itertools.count(), itertools.count())

    @property
    def connected(self) -> bool:
        """True while every collection's stream is open."""
        return bool(self.collections) and len(self._open) == len(self.collections)

    def attach(self, listener: CacheListener) -> None:
        self._listener = weakref.ref(listener)

    def open(self, database: MongoDB, in_flight: tuple[Iterator[int], Iterator[int]] | None = None) -> None:
        """Check the server has change streams (a ``ConfigError`` if not), then start watching.
        ``in_flight``: the monitor's counters of calls in flight (``calls_started``,
        ``calls_finished``), advanced around each command a stream sends (its opening
        ``aggregate``, each ``getMore`` long poll): each holds a connection of the pool."""
        if in_flight is not None:
            self._in_flight = in_flight
        name = min(self.collections)
        try:
            with self._watch(database, name) as stream:
                self._poll(stream)
        except Exception as exc:  # mongomock-ng: TypeError / NotImplementedError; a standalone: OperationFailure
            first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise ConfigError(
                "cache_bus='changestream' needs a server with change streams (a replica set or a sharded "
                f"cluster); this one refused: {type(exc).__name__}: {first_line}", key="cache_bus") from None
        with self._lock:
            self._database = database
            if any(thread.is_alive() for thread in self._threads):
                return
            self._stop.clear()
            self._threads = [threading.Thread(target=self._run, args=(name,), daemon=True,
                                              name=f"astro_db-cache-changestream-{name}") for name in sorted(self.collections)]
            for thread in self._threads:
                thread.start()

    def _watch(self, database: MongoDB, collection: str) -> ChangeStream:
        started, finished = self._in_flight
        next(started)
        try:
            return database[collection].watch(max_await_time_ms=self._max_await_ms)
        finally:
            next(finished)

    def _poll(self, stream: ChangeStream) -> Any:
        """The stream's next change, or None after its await (a ``getMore`` in flight meanwhile)."""
        started, finished = self._in_flight
        next(started)
        try:
            return stream.try_next()
        finally:
            next(finished)

    def publish(self, model: str, origin: CacheListener | None = None, notice: Notice | None = None) -> None:
        """Nothing to send: the server announces the write itself."""
        self.figures.count("sent")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._open.clear()
        self._reason = "closed"

    def _run(self, collection: str) -> None:
        database = self._database
        assert database is not None, "open() sets the database before the watcher threads start"
        delay, first = _BACKOFF_S[0], True
        while not self._stop.is_set():
            try:
                with self._watch(database, collection) as stream:
                    self._drop_all(f"change stream on {collection} opened", count=not first)
                    if not first:
                        self.figures.count("reconnects")
                    first, delay = False, _BACKOFF_S[0]
                    self._open.add(collection)
                    if self.connected:
                        self._reason = None
                    while not self._stop.is_set() and stream.alive:
                        if self._listener is not None and self.listening() is None:
                            self._stop.set()  # the cache (its Database) was garbage-collected
                            break
                        change = self._poll(stream)
                        if change is not None and not self._deliver(change, collection):
                            break  # an invalidating event: reopen afresh
            except Exception as exc:  # noqa: BLE001 - any failure of the stream means "reopen and drop"
                self.figures.error(f"{collection}: {type(exc).__name__}: {exc}")
                self._reason = f"change stream on {collection}: {type(exc).__name__}: {str(exc)[:200]}"
                if collection in self._open:
                    log.warning("cache change stream on %s lost (%s): caching is off until it is reopened",
                                collection, type(exc).__name__)
            finally:
                if collection in self._open:
                    self._open.discard(collection)
                    self._drop_all(f"change stream on {collection} closed", count=False)
            self._stop.wait(delay)
            delay = min(delay * 2, _BACKOFF_S[1])

    def _deliver(self, change: dict[str, Any], collection: str) -> bool:
        """Drop the changed model; ``False`` for an event after which the stream must reopen."""
        self.figures.message(None)
        operation = change.get("operationType")
        if operation in _FULL_DROP_EVENTS:
            self._drop_all(f"change stream {operation} on {collection}")
            return False
        listener = self.listening()
        if listener is not None:
            model = self.collections[collection]
            notice = notice_of(change, model, listener)
            if notice is None:
                listener.drop(model)
            else:
                listener.apply(notice)
        return True

    def stats(self) -> dict[str, Any]:
        connected = self.connected
        out = self.figures.as_dict(connected, None if connected else self._reason)
        out["collections"] = sorted(self.collections)
        out["open"] = sorted(self._open)
        return out


def notice_of(change: dict[str, Any], model: str, listener: Any) -> Notice | None:
    """What a change event may have changed in ``model`` (``None``: anything): the document's id
    and the top-level fields an update set or removed. An insert or a replace is a create
    judged without a post-image (every filter entry not pinned to other ids is dropped): the
    event's ``fullDocument`` is not trusted as one (nx-27017 reports its ObjectIds in a form of
    its own). A replace may also have made the document stop matching: it is a delete too."""
    key, digest = change.get("documentKey"), getattr(listener, "digest", None)
    if not isinstance(key, dict) or "_id" not in key or digest is None:
        return None
    ids = frozenset({digest(key["_id"])})
    operation = change.get("operationType")
    if operation == "delete":
        return Notice(model, ids, deleted=True)
    if operation in ("insert", "replace"):
        return Notice(model, ids, created=True, deleted=operation == "replace")
    if operation == "update":
        description = change.get("updateDescription")
        if not isinstance(description, dict):
            return None
        updated, removed = description.get("updatedFields"), description.get("removedFields")
        truncated = description.get("truncatedArrays") or []
        if not isinstance(updated, dict) or not isinstance(removed, list) or not isinstance(truncated, list):
            return None
        names = [*updated, *removed, *(t.get("field", "") if isinstance(t, dict) else "" for t in truncated)]
        if not all(isinstance(name, str) and name for name in names):
            return None
        return Notice(model, ids, frozenset(name.split(".", 1)[0] for name in names))
    return None
