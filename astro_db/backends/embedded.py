"""The embedded backend: an in-memory database in this process (mongomock-ng).

It is what ``Database()`` uses without a URL (with a visible ``EmbeddedDatabaseWarning``) and
what ``mongomock://host/NAME`` asks for on purpose: tests, notebooks, the quickstart. Each client
gets a store of its own, so two embedded Databases never share data. This is the only module
of astro_db that imports mongomock-ng; nothing in the service's data path depends on it.

mongomock-ng is a test double, not a production dependency: it comes with the ``embedded``
extra (``pip install 'astro_db[embedded]'``). Without it, choosing the embedded backend (no URL,
or ``mongomock://``) is a ``ConfigError`` naming the extra, raised by ``require()`` when the
``Database`` is made.
"""

from __future__ import annotations

import functools
import time
from collections.abc import MutableMapping
from typing import Any

import mongoengine

from ..errors import ConfigError

__all__ = ["connect", "require", "MISSING", "TTL_SWEEP_S"]

#: How often a collection's expired documents (TTL indexes) are removed: a server's TTL monitor
#: runs every 60 s (``ttlMonitorSleepSecs``); mongomock-ng would scan on every look at the collection.
TTL_SWEEP_S = 60.0

MISSING = (
    "the embedded in-memory backend (no URL, or a mongomock:// URL) needs mongomock-ng, which "
    "comes with the 'embedded' extra: pip install 'astro_db[embedded]' (from a checkout: "
    "pip install -e '.[embedded]'); or pass a mongodb:// URL (or set MONGODB_URL)"
)


def require() -> None:
    """``ConfigError`` naming the ``embedded`` extra when mongomock-ng is not installed."""
    try:
        import mongomock_ng  # noqa: F401
        import mongomock_ng.store  # noqa: F401
    except ImportError as exc:
        raise ConfigError(MISSING, key="url") from exc


def connect(database_name: str, alias: str) -> Any:
    """A MongoEngine-registered mongomock-ng client under ``alias``, with a private store."""
    require()
    import mongomock_ng
    import mongomock_ng.store

    _server_clock_dates()
    return mongoengine.connect(
        db=database_name,
        alias=alias,
        host=f"mongodb://localhost/{database_name}",
        mongo_client_class=mongomock_ng.MongoClient,
        tz_aware=True,
        uuidRepresentation="standard",
        _store=_store_classes()[0](),  # a store of its own, never shared
    )


@functools.cache
def _server_clock_dates() -> None:
    """``$currentDate`` stores what a server stores: a UTC date at the millisecond, in the form
    mongomock-ng keeps every other date (naive UTC; ``tz_aware`` clients read it aware).
    mongomock-ng 7.x stores ``datetime.now(UTC)`` there on Python 3.11+: an aware date at the
    microsecond beside the naive ones every insert and ``$set`` stores, so after any update a
    filter or a sort on ``updatedAt`` raised ``TypeError`` (comparing naive and aware dates) and
    the date kept six digits a server never keeps. Patched once per process, for every
    mongomock-ng client (the value is the one its own convention asks for)."""
    import datetime as _dt

    import mongomock_ng.collection as collection

    original = collection._current_date_updater

    def current_date(doc: Any, field_name: str, value: Any, codec_options: Any = None) -> None:
        if isinstance(doc, MutableMapping) and value != {"$type": "timestamp"}:
            now = _dt.datetime.now(_dt.timezone.utc)
            doc[field_name] = now.replace(tzinfo=None, microsecond=now.microsecond // 1000 * 1000)
            return
        original(doc, field_name, value, codec_options)  # type: ignore[no-untyped-call]

    collection._current_date_updater = current_date  # looked up by name at each update


@functools.cache
def _store_classes() -> tuple[type, type, type]:
    """mongomock-ng's server, database and collection stores, with the collection's TTL sweep run
    as a server's TTL monitor runs it: at most every ``TTL_SWEEP_S``. mongomock-ng sweeps on every
    look at a collection with a TTL index (every insert's duplicate ``_id`` check, every read):
    a scan of every document, so each change record written into ``astroChanges`` (TTL on
    ``time``) cost as much as the records already there (docs/migrations.md, "On the embedded
    backend"). A document past its expiry may so stay up to ``TTL_SWEEP_S``, as on a server."""
    import mongomock_ng.store as store

    class CollectionStore(store.CollectionStore):  # mongomock-ng is untyped: its calls are marked
        def __init__(self, name: str) -> None:
            super().__init__(name)  # type: ignore[no-untyped-call]
            self._swept_at: dict[str, float] = {}  # per TTL index (its field): the last sweep

        def _expire_documents(self, index: dict[str, Any]) -> None:
            # called per TTL index only: a collection without one passes nothing here
            field = str(index.get("key"))
            now = time.monotonic()
            last = self._swept_at.get(field)
            if last is not None and now - last < TTL_SWEEP_S:
                return
            self._swept_at[field] = now
            super()._expire_documents(index)  # type: ignore[no-untyped-call]

    # the stores find a collection or a database by a plain dict lookup (C, no frame here); only
    # a name seen for the first time reaches ``__missing__``, which makes the subclass's store
    class Collections(dict[str, Any]):
        def __missing__(self, name: str) -> Any:
            made = self[name] = CollectionStore(name)
            return made

    class DatabaseStore(store.DatabaseStore):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._collections = Collections()

        def rename(self, name: str, new_name: str) -> None:
            collection = self._collections.pop(name, None) or CollectionStore(new_name)
            collection.name = new_name
            self._collections[new_name] = collection

    class Databases(dict[str, Any]):
        def __missing__(self, name: str) -> Any:
            made = self[name] = DatabaseStore()
            return made

    class ServerStore(store.ServerStore):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._databases = Databases()

    return ServerStore, DatabaseStore, CollectionStore
