"""What a backend can do: the one place the embedded backend and a MongoDB server differ.

``capabilities(config)`` is computed from the configuration once (``Runtime.capabilities`` holds
it for a Database) and every module asks it a question by name — "does this backend publish
driver events?", "does ``explain`` exist?" — instead of testing which backend it is. A new
difference is a new field here, named for what it enables, never an ``is_embedded`` branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Capabilities", "capabilities", "EMBEDDED", "SERVER"]


@dataclass(frozen=True)
class Capabilities:
    """What one backend supports; each field is read where the behaviour differs."""

    name: str  # "embedded" or "server": reports only (health's ``backend``), never a branch
    #: a network server: pings and probes are bounded by PyMongo's client-side timeout, and a
    #: short-lived probe client tells an unreachable server from a slow one
    network: bool
    #: PyMongo publishes command, pool and heartbeat events (the monitor and tracing listen)
    driver_events: bool
    #: ``count_documents`` honours a session (mongomock-ng counts without one)
    session_counts: bool
    #: MongoDB 8.0's client-level ``bulkWrite`` may exist (asked of the server on first use)
    bulk_write: bool
    #: the ``explain``, ``dbStats`` and ``collStats`` commands answer
    explain: bool
    storage_stats: bool
    #: a topology description (replica set, sharded, ...) to report
    topology: bool
    #: two Databases on the same URL share the data, so they share a cache invalidation peer
    #: group; an embedded store is private to its Database
    shared_data: bool
    #: inserts take raw BSON documents (``RawBSONDocument``) as they come from a backup file
    raw_bson_inserts: bool
    #: sensitive fields may be written in clear when no key is configured (the default of
    #: ``allow_plaintext_sensitive``: throwaway development data only)
    plaintext_by_default: bool
    #: collections take ``$jsonSchema`` validators (``create`` / ``collMod``; ``astro_db.schema``)
    validators: bool
    #: the data lives in this process, in mongomock-ng: a test double that comes with the
    #: ``embedded`` extra (``Connection`` refuses to start without it, naming the extra)
    test_double: bool


EMBEDDED = Capabilities(
    name="embedded", network=False, driver_events=False, session_counts=False, bulk_write=False,
    explain=False, storage_stats=False, topology=False, shared_data=False, raw_bson_inserts=False,
    plaintext_by_default=True, validators=False, test_double=True,
)
SERVER = Capabilities(
    name="server", network=True, driver_events=True, session_counts=True, bulk_write=True,
    explain=True, storage_stats=True, topology=True, shared_data=True, raw_bson_inserts=True,
    plaintext_by_default=False, validators=True, test_double=False,
)


def capabilities(config: Any) -> Capabilities:
    """The capabilities of the backend ``config`` selects (``DatabaseConfig.is_embedded``: no URL
    or a ``mongomock://`` one is the embedded backend)."""
    return EMBEDDED if config.is_embedded else SERVER
