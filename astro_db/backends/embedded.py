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

from typing import Any

import mongoengine

from ..errors import ConfigError

__all__ = ["connect", "require", "MISSING"]

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

    return mongoengine.connect(
        db=database_name,
        alias=alias,
        host=f"mongodb://localhost/{database_name}",
        mongo_client_class=mongomock_ng.MongoClient,
        tz_aware=True,
        uuidRepresentation="standard",
        _store=mongomock_ng.store.ServerStore(),  # type: ignore[no-untyped-call]  # untyped library; a store of its own, never shared
    )
