"""Server selection inside a call's budget (docs/reliability.md, "Server selection"): the
drivers' CSOT rule is that selection waits ``min(serverSelectionTimeoutMS, remaining
timeoutMS)``; PyMongo inside ``pymongo.timeout`` waits for what is left of the timeout and
ignores ``serverSelectionTimeoutMS``. The run step holds the rule: when no server of the
deployment is known, each attempt waits for one for at most ``server_selection_timeout_ms``.

No wall-clock limits: what is asserted is the bound the driver's selection ran under, which
PyMongo's ``ServerSelectionTimeoutError`` names (``Timeout: 0.2s``), and the attempts made.
"""

from __future__ import annotations

import re

import pytest
from fake_mongos import FakeMongos
from pymongo import _csot
from pymongo import errors as pm

from astro_db import Database
from astro_db.driver import timeouts
from astro_db.errors import AstroDBError


def selection_bounds(error: BaseException) -> list[float]:
    """The selection timeouts (s) named by the driver errors an astro_db error was raised from."""
    found = []
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, pm.ServerSelectionTimeoutError):
            found += [float(t) for t in re.findall(r"Timeout: ([0-9.]+)s", str(seen))]
        seen = seen.__cause__ or seen.__context__
    return found


def gone_away(server: FakeMongos, **settings) -> Database:
    """A Database connected to ``server``, which then goes away; its first call fails on the
    dead connection (PyMongo's own read retry off), which leaves the deployment with no known
    server, as a server that died does."""
    db = Database(server.url("astro"), ensure_indexes=False, min_pool_size=0, retry_reads=False,
                  retry_writes=False, **settings)
    db.connect()
    db.find("User", {})  # a pooled connection
    server.down()
    with pytest.raises(AstroDBError):
        db.find("User", {})
    return db


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_call_waits_for_a_server_within_server_selection_timeout_ms_not_its_whole_budget(attempts):
    with FakeMongos() as server:
        db = gone_away(server, server_selection_timeout_ms=200, operation_timeout_ms=8000,
                       retry_attempts=attempts, backoff_base_s=0.01, backoff_max_s=0.01)
        try:
            with pytest.raises(AstroDBError) as caught:
                db.find("User", {})
        finally:
            db.close()
    bounds = selection_bounds(caught.value)
    assert bounds and max(bounds) <= 0.2  # not the 8 s left of the call's budget
    assert caught.value.attempts == attempts  # each attempt's wait bounded, so the retries happen


def test_the_budget_still_bounds_selection_when_it_is_the_shorter(monkeypatch):
    """``timeout_ms`` below ``server_selection_timeout_ms``: PyMongo's remaining timeout is the
    bound already; the run step adds no look of its own."""
    looked = []
    with FakeMongos() as server:
        db = gone_away(server, server_selection_timeout_ms=5000, retry_attempts=1)
        monkeypatch.setattr(timeouts, "await_server", lambda *a: looked.append(a))
        try:
            with pytest.raises(AstroDBError) as caught:
                db.find("User", {}, timeout_ms=150)
        finally:
            db.close()
    assert looked == []
    assert max(selection_bounds(caught.value) or [0.0]) <= 0.15


def test_a_known_server_costs_one_look_and_no_command(monkeypatch):
    """The normal path under a long budget: the topology description is looked at, no ping sent."""
    pings = []
    monkeypatch.setattr(timeouts.gateway, "ping_any", lambda client: pings.append(client))
    with FakeMongos() as server:
        db = Database(server.url("astro"), ensure_indexes=False, min_pool_size=0,
                      server_selection_timeout_ms=200, operation_timeout_ms=8000)
        with db:
            server.clear()
            db.find("User", {})
            db.find("User", {})
            sent = [next(iter(c)) for c in server.commands]
    assert pings == [] and sent == ["find", "find"]


def test_the_wait_is_bounded_by_the_shorter_of_the_two(monkeypatch):
    """``await_server`` pings under min(selection bound, what is left of the deadline), and only
    when the topology knows no server."""
    seen = []
    monkeypatch.setattr(timeouts.gateway, "ping_any", lambda client: seen.append(_csot.get_timeout()))

    class Client:
        def __init__(self, known: bool) -> None:
            self.topology_description = type("Description", (), {"has_known_servers": known})()

    now = timeouts.time.monotonic()
    timeouts.await_server(Client(known=True), 0.2, now + 60)
    assert seen == []
    timeouts.await_server(Client(known=False), 0.2, now + 60)
    timeouts.await_server(Client(known=False), 30.0, now + 5)
    assert seen[0] == 0.2 and 4.5 < seen[1] <= 5.0
