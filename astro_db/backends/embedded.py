"""The embedded backend: an in-memory database in this process (mongomock-ng).

It is what ``Database()`` uses without a URL (with a visible ``EmbeddedDatabaseWarning``) and
what ``mongomock://host/NAME`` asks for on purpose: tests, notebooks, the quickstart. Each client
gets a store of its own, so two embedded Databases never share data. This is the only module
of astro_db that imports mongomock-ng; nothing in the service's data path depends on it.
"""

from __future__ import annotations

from typing import Any

import mongoengine
import mongomock_ng

__all__ = ["connect"]


def connect(database_name: str, alias: str) -> Any:
    """A MongoEngine-registered mongomock-ng client under ``alias``, with a private store."""
    return mongoengine.connect(
        db=database_name,
        alias=alias,
        host=f"mongodb://localhost/{database_name}",
        mongo_client_class=mongomock_ng.MongoClient,
        tz_aware=True,
        uuidRepresentation="standard",
        _store=mongomock_ng.store.ServerStore(),  # a store of its own, never shared
    )
