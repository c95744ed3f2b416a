"""A server that hangs (SIGSTOP: it keeps its connections open and answers nothing) during a call.

README: "One budget per call: 30 s by default, 3 s in the Flask and Django integrations,
whatever the retries". The server is frozen from a command listener the moment the chosen
command is sent (never by timing), on a server of the test's own (``temporary_server``: the
session's server is not frozen under other tests), and the call must report within a bound far
above its 1 s budget (8 s), where waiting for the socket timeout takes 30 s or more.

Before the fix a transaction's commit and abort were sent outside any budget: with
``operation_timeout_ms=1000`` a commit to a frozen server waited for the 30 s socket timeout,
and PyMongo sent it again, for another 30 s.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import monitoring

from astro_db import Database, errors

BUDGET_MS = 1000
FAR_ABOVE_S = 8.0


class FreezeAt(monitoring.CommandListener):
    """SIGSTOPs ``pid`` when a command named ``name`` is sent (once armed), or, with ``nth``, at
    the nth command sent once armed."""

    def __init__(self, pid: int, name: str | None = None, nth: int | None = None) -> None:
        self.pid, self.name, self.nth, self.armed, self.frozen, self.seen = pid, name, nth, False, False, 0
        self.lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self.lock:
            if not self.armed or self.frozen:
                return
            self.seen += 1
            if event.command_name == self.name or self.seen == self.nth:
                self.frozen = True
                os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Disarm (no later command, of a background thread, freezes it again), then SIGCONT."""
        with self.lock:
            self.armed = False
            os.kill(self.pid, signal.SIGCONT)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


@pytest.fixture(scope="module")
def own_server(live_server) -> Iterator[Any]:
    if not hasattr(live_server, "start"):
        pytest.skip("needs the nx-27017 server (not ASTRO_DB_TEST_URI)")
    from live.nxserver import temporary_server

    with temporary_server("astro-hung-") as server:
        try:
            yield server
        finally:
            if server.proc is not None and server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("finish", ["commit", "abort"])
def test_a_transactions_commit_or_abort_to_a_frozen_server_reports_within_the_budget(own_server, finish):
    freeze = FreezeAt(own_server.proc.pid, "commitTransaction" if finish == "commit" else "abortTransaction")
    db = Database(own_server.url(f"astro_hung_tx_{finish}"), operation_timeout_ms=BUDGET_MS,
                  event_listeners=[freeze]).connect()
    try:
        tx = db.start_transaction()
        db.create("User", {"email": "ann@example.com", "name": "Ann"}, transaction=tx)
        freeze.armed = True
        began = time.monotonic()
        if finish == "commit":
            with pytest.raises(errors.AstroDBError) as info:
                db.commit_transaction(tx)
            # the commit may have landed before the server froze: never "nothing was done"
            assert getattr(info.value, "applied", False) is None, info.value
        else:
            db.rollback_transaction(tx)  # an abort that cannot reach the server still aborts (server-side at expiry)
        took = time.monotonic() - began
        assert freeze.frozen
        assert took < FAR_ABOVE_S, f"{finish} took {took:.1f}s against a {BUDGET_MS} ms budget"
    finally:
        freeze.thaw()
        db.disconnect()


CALLS = {
    "find_one": lambda db, s: db.find_one("PlanetaryInsight", {"id": s["insight"]}),
    "find": lambda db, s: db.find("PlanetaryInsight", {"userId": s["user"]}),
    "iter_find": lambda db, s: next(db.iter_find("PlanetaryInsight", {"userId": s["user"]})),
    "count": lambda db, s: db.count("PlanetaryInsight", {}),
    "create": lambda db, s: db.create("PlanetaryInsight", {"userId": s["user"], "date": "2026-12-20",
                                                           "energyLevel": 5, "recommendations": ["Rest"]}),
    "create_many": lambda db, s: db.create_many("PlanetaryInsight", [
        {"userId": s["user"], "date": f"2026-11-{d:02d}", "energyLevel": d, "recommendations": ["Rest"]}
        for d in range(1, 5)]),
    "update": lambda db, s: db.update("PlanetaryInsight", {"id": s["insight"]}, {"energyLevel": 9}),
    "update_many": lambda db, s: db.update_many("PlanetaryInsight", {"userId": s["user"]},
                                                {"$push": {"recommendations": "Walk"}}),
    "delete": lambda db, s: db.delete("PlanetaryInsight", {"id": s["insight"]}),
    "delete_many": lambda db, s: db.delete_many("PlanetaryInsight", {"userId": s["user"]}),
    "health": lambda db, s: db.health(),
}


@pytest.mark.parametrize("nth", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_call_to_a_server_that_hangs_at_any_of_its_commands_reports_within_its_budget(own_server, name, nth):
    """Each call, the server frozen at its first, second or third command: it reports (an
    astro_db error, or its answer when it had sent all its commands) within a bound far above
    the 1 s budget. A write whose outcome is unknown is read back under a fresh bound of the
    same length (docs/reliability.md), so a write may take two budgets, never the socket's 30 s."""
    freeze = FreezeAt(own_server.proc.pid, nth=nth)
    db = Database(own_server.url(f"astro_hung_{name}_{nth}"), operation_timeout_ms=BUDGET_MS,
                  event_listeners=[freeze]).connect()
    try:
        user = db.create("User", {"email": f"{name}.{nth}@example.com", "name": "Ann"})
        insight = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-12-01", "energyLevel": 60,
                                                 "recommendations": ["Rest"]})
        db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-12-02", "energyLevel": 70,
                                       "recommendations": ["Rest"]})
        freeze.armed = True
        began = time.monotonic()
        try:
            CALLS[name](db, {"user": user.id, "insight": insight.id})
        except errors.AstroDBError:
            pass
        took = time.monotonic() - began
        assert took < FAR_ABOVE_S, f"{name} with the server frozen at its command {nth} took {took:.1f}s"
    finally:
        freeze.thaw()
        db.disconnect()
