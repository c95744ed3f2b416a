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
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import monitoring

from astro_db import Database, errors

BUDGET_MS = 1000
FAR_ABOVE_S = 8.0


class FreezeAt(monitoring.CommandListener):
    """SIGSTOPs ``pid`` when a command named ``name`` is sent (once armed)."""

    def __init__(self, pid: int, name: str) -> None:
        self.pid, self.name, self.armed, self.frozen = pid, name, False, False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.armed and event.command_name == self.name and not self.frozen:
            self.frozen = True
            os.kill(self.pid, signal.SIGSTOP)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


@pytest.fixture
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
    db = Database(own_server.url("astro_hung"), operation_timeout_ms=BUDGET_MS, event_listeners=[freeze]).connect()
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
        os.kill(own_server.proc.pid, signal.SIGCONT)
        db.disconnect()
