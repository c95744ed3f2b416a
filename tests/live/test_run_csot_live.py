"""The run step's client-side timeout, on a real wire-protocol server (nx-27017, or
ASTRO_DB_TEST_URI): the ``maxTimeMS`` PyMongo derives from it and sends with each command is
there, within the call's budget, whether ``pymongo.timeout`` is PyMongo's own or wrapped (an
instrumentation's: it is handed one timeout per call); a streamed read's later ``getMore``
carries none either way, as before (it runs outside the call). Bounds handed to the driver, never times."""

from __future__ import annotations

import uuid
from typing import Any

import pymongo
import pytest
from spies import CommandSpy

from astro_db import Database
from astro_db.models import User

REAL_TIMEOUT = pymongo.timeout


def sent(live_server: Any, monkeypatch: pytest.MonkeyPatch, *, wrapped: bool) -> dict[str, list[Any]]:
    """``maxTimeMS`` of each command (by name) of a create, a find_one, an update, a find_one
    under an application's 2 s ``pymongo.timeout``, one with ``timeout_ms=1500`` and a streamed
    read of three batches, with ``operation_timeout_ms=4000``."""
    name = f"astro_csot_{uuid.uuid4().hex[:8]}"
    spy = CommandSpy(skip=("hello", "isMaster", "endSessions", "ping"))
    db = Database(live_server.url(name), server_selection_timeout_ms=2000, operation_timeout_ms=4000,
                  audit=False, journal=False, event_listeners=[spy]).connect()
    handed: list[float] = []
    if wrapped:
        monkeypatch.setattr(pymongo, "timeout", lambda s: handed.append(s) or REAL_TIMEOUT(s))
    out: dict[str, list[Any]] = {}
    try:
        for i in range(5):
            db.create(User, {"email": f"u{i}@example.com", "name": f"U {i}"})
        ann = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        spy.clear()
        handed.clear()
        assert db.find_one(User, {"id": ann.id}).name == "Ann"
        db.update(User, {"id": ann.id}, {"name": "Ann B"})
        out["plain"] = [(n, c.get("maxTimeMS")) for n, c in zip(spy.names, spy.commands)]
        spy.clear()
        with REAL_TIMEOUT(2.0):
            db.find_one(User, {"id": ann.id})
        db.find_one(User, {"id": ann.id}, timeout_ms=1500)
        out["nearer"] = [(n, c.get("maxTimeMS")) for n, c in zip(spy.names, spy.commands)]
        spy.clear()
        assert len(list(db.iter_find(User, {}, batch_size=2))) == 6
        out["stream"] = [(n, c.get("maxTimeMS")) for n, c in zip(spy.names, spy.commands)]
    finally:
        monkeypatch.setattr(pymongo, "timeout", REAL_TIMEOUT)
        db.disconnect()
        client = pymongo.MongoClient(live_server.url("admin"), serverSelectionTimeoutMS=2000)
        client.drop_database(name)
        client.close()
    out["handed"] = handed
    return out


def test_the_commands_carry_the_calls_bounds_whether_pymongo_timeout_is_wrapped_or_not(live_server, monkeypatch):
    for wrapped in (False, True):
        seen = sent(live_server, monkeypatch, wrapped=wrapped)
        plain = dict(seen["plain"])
        assert set(plain) >= {"find"} and ({"update", "findAndModify"} & set(plain)), seen["plain"]
        assert all(0 < ms <= 4000 for _, ms in seen["plain"]), seen["plain"]
        (first, ms_outer), (second, ms_call) = seen["nearer"]
        assert first == second == "find" and 0 < ms_outer <= 2000 and 0 < ms_call <= 1500, seen["nearer"]
        stream = seen["stream"]
        assert [n for n, _ in stream] == ["find", "getMore", "getMore"], stream
        assert 0 < stream[0][1] <= 4000 and [ms for _, ms in stream[1:]] == [None, None], stream
        # the wrapper is handed one timeout per call (find_one, update, the two bounded find_ones,
        # the stream's first batch); unwrapped, nothing counts
        assert len(seen["handed"]) == (5 if wrapped else 0), seen["handed"]
