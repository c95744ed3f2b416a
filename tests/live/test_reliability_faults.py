"""Fault tests: the server is broken on purpose and nothing acknowledged may be lost or doubled.

What is broken: the session's nx-27017 server is killed with SIGKILL and restarted on the same
data directory (``live_server.kill()`` / ``.start()``), or the connection pool is held busy.
What must hold:
  1. creates racing five kill/restart cycles: every call that returned has its document stored
     exactly once; every call that raised an ``AstroDBError`` has its document absent or stored
     once, and re-running the very same call converges to "stored exactly once";
  2. a read during an outage fails with an astro_db error within its configured bound, the
     breaker then fails fast, and after the restart the same ``Database`` recovers by itself;
  3. an exhausted pool gives ``PoolExhaustedError`` (no hang, the breaker stays closed) and
     recovers as soon as connections come back.
Each test leaves the server running (``server_up``). Figures are printed for the CI log (-s).
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from bson import ObjectId
from pymongo import monitoring

from astro_db import Database
from astro_db.errors import (
    AstroDBError,
    DatabaseConnectionError,
    DuplicateKeyError,
    OperationTimeoutError,
    PoolExhaustedError,
)
from astro_db.stale import is_stale


@pytest.fixture
def server_up(live_server):
    """The fault-capable server, guaranteed running again after the test whatever happened."""
    if not hasattr(live_server, "start"):
        pytest.skip("fault tests need the nx-27017 server (not ASTRO_DB_TEST_URI)")
    yield live_server
    if not live_server.alive():
        live_server.start()


def eventually(fn, *, within_s: float = 15.0, what: str = "the condition"):
    """Poll ``fn()`` until it returns without raising an AstroDBError; its result."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return fn()
        except AstroDBError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {within_s}s") from None
            time.sleep(0.05)


# --- 1. creates while the server is killed and restarted ----------------------------------------

CALLS, THREADS, KILLS = 2000, 4, 5


def test_creates_racing_kill_and_restart_lose_nothing_acknowledged_and_duplicate_nothing(server_up, live_url):
    # Three attempts span about 1.2 s of outage, so some calls outlast an outage and some fail;
    # the breaker is set out of reach so that this test is about retries and idempotency
    # (test 2 covers the breaker).
    db = Database(live_url, server_selection_timeout_ms=500, connect_timeout_ms=500, socket_timeout_ms=3000,
                  retry_attempts=3, backoff_base_s=0.05, backoff_max_s=0.2, breaker_threshold=10_000,
                  audit=False, journal=False)
    db.connect()
    # Each call's data is fixed up front, a client-chosen _id and a unique email included, so
    # that re-running a call sends exactly what the first run sent.
    calls = [{"id": ObjectId(), "email": f"c{i}@fault.test", "name": f"call {i}"} for i in range(CALLS)]
    outcome: dict[int, str] = {}  # call number -> "returned" | error type name
    returned_ids: dict[int, ObjectId] = {}
    done = [0]
    lock = threading.Lock()

    def worker(numbers: list[int]) -> None:
        for n in numbers:
            try:
                user = db.create("User", calls[n])
                result = "returned"
                returned_ids[n] = user.id
            except AstroDBError as exc:
                result = type(exc).__name__
            with lock:
                outcome[n] = result
                done[0] += 1

    kill_points = sorted(random.sample(range(100, CALLS - 100), KILLS))
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(list(range(t, CALLS, THREADS)),)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    # The test's own thread kills and restarts the server: it must outlive the server process,
    # whose launcher asks Linux to SIGKILL it when the thread that started it ends.
    for point in kill_points:  # kill when this many calls have completed; down for a random while
        while done[0] < point and any(t.is_alive() for t in threads):
            time.sleep(0.001)
        server_up.kill()
        time.sleep(random.uniform(0.0, 1.5))  # an outage some retries outlast and some do not
        server_up.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "a create hung"

    # Count what is stored, per call (by its email), through a fresh view of the data.
    stored = eventually(lambda: db.aggregate("User", [{"$group": {"_id": "$email", "n": {"$sum": 1}}}]),
                        what="reading back after the last restart")
    per_email = {row["_id"]: row["n"] for row in stored}
    failed = [n for n, result in outcome.items() if result != "returned"]
    failed_present = [n for n in failed if per_email.get(calls[n]["email"], 0) == 1]

    # Re-run every failed call with the same data. Convergence means: afterwards its document
    # is stored exactly once. The re-run either returns (the first run never landed) or raises
    # DuplicateKeyError (the first run did land: its own _id / email, unique to this call, is
    # taken); any other error is retried the same way until one of those two answers comes.
    rerun_duplicates = 0
    for n in failed:
        def rerun(n=n):
            try:
                db.create("User", calls[n])
                return "returned"
            except DuplicateKeyError:
                return "duplicate"
        rerun_duplicates += eventually(rerun, what=f"re-running call {n}") == "duplicate"
    final = {row["_id"]: row["n"] for row in db.aggregate("User", [{"$group": {"_id": "$email", "n": {"$sum": 1}}}])}

    lost = [n for n in returned_ids if per_email.get(calls[n]["email"], 0) != 1]
    duplicated = [email for email, count in {**per_email, **final}.items() if count > 1]
    not_converged = [n for n in range(CALLS) if final.get(calls[n]["email"], 0) != 1]
    wrong_id = [n for n, oid in returned_ids.items() if oid != calls[n]["id"]]
    errors_by_type: dict[str, int] = {}
    for n in failed:
        errors_by_type[outcome[n]] = errors_by_type.get(outcome[n], 0) + 1
    print(f"\n[faults] {CALLS} creates, {THREADS} threads, {KILLS} kill -9/restart cycles in {elapsed:.1f}s: "
          f"returned={len(returned_ids)} failed={len(failed)} {errors_by_type} retried={db.executor.runtime.retry.retries} "
          f"present-after-failure={len(failed_present)} rerun-met-own-write={rerun_duplicates} "
          f"present={sum(per_email.values())} final={sum(final.values())} "
          f"lost={len(lost)} duplicates={len(duplicated)}")

    assert len(outcome) == CALLS
    assert lost == [], "acknowledged creates missing"
    assert duplicated == [], "documents stored more than once"
    assert wrong_id == []
    assert all(per_email.get(calls[n]["email"], 0) in (0, 1) for n in failed)
    assert not_converged == [], "re-runs did not converge to exactly one document"
    assert sum(final.values()) == CALLS
    db.disconnect()


# --- 2. a read during an outage, then recovery -----------------------------------------------------

def test_a_read_during_an_outage_fails_within_its_bound_and_the_same_database_recovers(server_up, live_url):
    # The fail-fast knob is the call's one budget (operation_timeout_ms): within it PyMongo waits
    # for a server and retries by itself, and astro_db starts no attempt past it.
    db = Database(live_url, operation_timeout_ms=1000, connect_timeout_ms=500, retry_attempts=2,
                  backoff_base_s=0.05, backoff_max_s=0.1, backoff_jitter=False, breaker_threshold=3,
                  breaker_cooldown_s=0.5)
    db.connect()
    db.create("User", {"email": "outage@fault.test", "name": "Ann"})
    remembered = db.find("User", {}, stale_ok=True)
    server_up.kill()
    try:
        bound_s = 1.0  # the budget of one call, attempts, waits and server selection included
        began = time.monotonic()
        with pytest.raises((DatabaseConnectionError, OperationTimeoutError)) as failure:
            db.find("User", {})
        outage_read_s = time.monotonic() - began
        assert "1000 ms" in str(failure.value) and "(operation_timeout_ms)" in str(failure.value)
        assert 1 <= failure.value.attempts <= 2

        began = time.monotonic()
        with pytest.raises(OperationTimeoutError, match=r"within 300 ms \(timeout_ms\)"):
            db.count("User", {}, timeout_ms=300)
        timeout_read_s = time.monotonic() - began

        with pytest.raises((DatabaseConnectionError, OperationTimeoutError)):
            db.count("User", {})  # the third consecutive connection failure opens the breaker
        began = time.monotonic()
        with pytest.raises(DatabaseConnectionError, match="failing fast"):
            db.find("User", {})
        fail_fast_s = time.monotonic() - began

        stale = db.find("User", {}, stale_ok=True)
        health = db.health(timeout_s=0.3)
    finally:
        server_up.start()

    assert "configured timeouts" not in str(failure.value)
    assert is_stale(stale) and [u.email for u in stale] == [u.email for u in remembered]
    assert health["status"] == "down" and health["breaker"] in ("open", "half-open")
    recovered_after = time.monotonic()
    assert eventually(lambda: db.count("User", {}), what="recovery of the same Database") == 1
    recovered_after = time.monotonic() - recovered_after
    assert db.executor.runtime.breaker.state == "closed" and db.health()["status"] in ("ok", "degraded")
    assert not is_stale(db.find("User", {}, stale_ok=True))
    print(f"\n[faults] outage read failed after {outage_read_s * 1000:.0f} ms (bound {bound_s * 1000:.0f} ms), "
          f"timeout_ms=300 read after {timeout_read_s * 1000:.0f} ms, breaker fail-fast {fail_fast_s * 1000:.1f} ms, "
          f"recovered {recovered_after * 1000:.0f} ms after the restart")
    db.disconnect()


# --- 3. pool exhaustion ----------------------------------------------------------------------------

class Gate(monitoring.CommandListener):
    """Holds a pooled connection checked out: PyMongo announces a command (``started``) in the
    calling thread after checking the connection out and before sending, so a thread marked
    ``hold`` blocks there with the connection in hand until ``release`` is set. This holds
    connections deterministically, where a "slow query" would depend on the server's speed."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.release = threading.Event()
        self.holding = 0
        self._lock = threading.Lock()

    def started(self, event) -> None:
        if getattr(self.local, "hold", False):
            with self._lock:
                self.holding += 1
            self.release.wait(timeout=30)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def test_an_exhausted_pool_raises_pool_exhausted_without_hanging_and_recovers(server_up, live_url):
    # Under the call's budget (PyMongo's client-side timeout) a checkout waits for what is left of
    # the budget, not wait_queue_timeout_ms: the waiters get a 500 ms budget, the holders a long one.
    pool, threads, wait_ms = 2, 16, 500
    db = Database(live_url, max_pool_size=pool, min_pool_size=0, wait_queue_timeout_ms=wait_ms,
                  operation_timeout_ms=wait_ms, breaker_threshold=3, retry_attempts=3,
                  event_listeners=[gate := Gate()])
    db.connect()
    db.create("User", {"email": "pool@fault.test", "name": "Ann"}, timeout_ms=30_000)
    results: dict[int, object] = {}

    def read(n: int, hold: bool, timeout_ms: float | None = None) -> None:
        gate.local.hold = hold
        try:
            results[n] = len(db.find("User", {}, timeout_ms=60_000 if hold else timeout_ms))
        except AstroDBError as exc:
            results[n] = exc

    holders = [threading.Thread(target=read, args=(n, True)) for n in range(pool)]
    for thread in holders:
        thread.start()
    deadline = time.monotonic() + 10
    while gate.holding < pool and time.monotonic() < deadline:
        time.sleep(0.005)
    assert gate.holding == pool, "could not hold the pool's connections"

    began = time.monotonic()
    waiters = [threading.Thread(target=read, args=(n, False)) for n in range(pool, threads)]
    for thread in waiters:
        thread.start()
    for thread in waiters:
        thread.join(timeout=20)
    waited_s = time.monotonic() - began
    hung = [t for t in waiters if t.is_alive()]
    gate.release.set()
    for thread in holders:
        thread.join(timeout=20)

    exhausted = [r for n, r in results.items() if n >= pool and isinstance(r, PoolExhaustedError)]
    print(f"\n[faults] pool of {pool}, {threads} threads: {len(exhausted)} PoolExhaustedError after "
          f"{waited_s * 1000:.0f} ms (wait_queue_timeout_ms={wait_ms}), holders read {[results[n] for n in range(pool)]}")
    assert hung == []
    assert len(exhausted) == threads - pool, results
    assert all("no pooled connection became free in time" in str(e) for e in exhausted)
    assert [results[n] for n in range(pool)] == [1] * pool
    assert db.executor.runtime.breaker.state == "closed"  # a busy pool is not a dead server

    for n in range(100, 100 + threads):  # the pool recovered: every later call gets a connection
        read(n, hold=False, timeout_ms=30_000)
    assert [results[n] for n in range(100, 100 + threads)] == [1] * threads
    db.disconnect()


# --- 4. one budget per call, a bounded probe, prompt recovery ---------------------------------------
# The server is killed (SIGKILL). Bounds asserted here are generous, far below what the same
# call took before a call had one budget (3 attempts x the 30 s server selection: 90 s).

def test_a_call_during_an_outage_reports_within_its_one_budget_whatever_its_retries(server_up, live_url, monkeypatch):
    import pymongo

    db = Database(live_url)  # the defaults: a 30 s budget, 3 attempts, 30 s server selection
    db.connect()
    # What the run step hands PyMongo is recorded; the real deadline is scaled down 20 times so
    # the test does not wait 30 s: the driver sees one deadline for the whole call, all attempts.
    handed: list[float] = []
    real_timeout = pymongo.timeout

    def scaled(seconds):
        handed.append(seconds)
        return real_timeout(seconds / 20)

    monkeypatch.setattr(pymongo, "timeout", scaled)
    server_up.kill()
    try:
        began = time.monotonic()
        with pytest.raises((DatabaseConnectionError, OperationTimeoutError)) as failure:
            db.find_one("User", {})
        spent = time.monotonic() - began
    finally:
        server_up.start()
    print(f"\n[faults] find_one during an outage, defaults (budget scaled 1/20): raised after {spent * 1000:.0f} ms, "
          f"{failure.value.attempts} attempt(s): {failure.value}")
    assert len(handed) == 1 and 29.0 < handed[0] <= 30.0  # one 30 s deadline for the call, not one per attempt
    assert spent < 15.0  # 1.5 s scaled; it was 90 s with one 30 s server selection per attempt
    assert 1 <= failure.value.attempts <= 3
    assert "30000 ms" in str(failure.value) and "operation_timeout_ms" in str(failure.value)
    db.disconnect()


def test_the_breakers_probe_is_sent_once_within_the_budget(server_up, live_url):
    from spies import Clock

    db = Database(live_url, operation_timeout_ms=1500, breaker_threshold=1, breaker_cooldown_s=60.0)
    db.connect()
    breaker = db.executor.runtime.breaker
    breaker.watch(None)  # this test moves the cool-down by hand
    breaker._clock = clock = Clock()
    server_up.kill()
    try:
        with pytest.raises((DatabaseConnectionError, OperationTimeoutError)):
            db.count("User", {})
        assert breaker.state == "open"
        clock.now += 60.0
        began = time.monotonic()
        with pytest.raises((DatabaseConnectionError, OperationTimeoutError)) as probe:
            db.count("User", {})  # the probe
        spent = time.monotonic() - began
    finally:
        server_up.start()
    print(f"\n[faults] breaker probe during an outage: {spent * 1000:.0f} ms")
    assert spent < 15.0 and probe.value.attempts == 1  # was 3 x 30 s
    assert breaker.state == "open"
    db.disconnect()


def test_calls_resume_as_soon_as_the_server_is_back_not_after_the_cool_down(server_up, live_url):
    db = Database(live_url, operation_timeout_ms=1500, breaker_threshold=1, breaker_cooldown_s=120.0)
    db.connect()
    db.create("User", {"email": "back@fault.test", "name": "Ann"})
    breaker = db.executor.runtime.breaker
    server_up.kill()
    try:
        with pytest.raises((DatabaseConnectionError, OperationTimeoutError)):
            db.count("User", {})
        with pytest.raises(DatabaseConnectionError, match="failing fast"):
            db.count("User", {})
    finally:
        server_up.start()
    back = time.monotonic()
    assert eventually(lambda: db.count("User", {}), within_s=20.0, what="service after the restart") == 1
    resumed_s = time.monotonic() - back
    print(f"\n[faults] calls resumed {resumed_s * 1000:.0f} ms after the server was back (cool-down 120 s)")
    assert breaker.state == "closed" and breaker.seen_early >= 1  # not the 120 s cool-down
    db.disconnect()


def test_a_flask_request_during_an_outage_gets_its_503_within_the_web_budget(server_up, live_url):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    try:
        import flask_app
    finally:
        sys.path.pop(0)
    from astro_db.security import new_key

    # a server: the example wants an encryption key (it refuses to start without one)
    app = flask_app.create_app({"ASTRO_DB_URL": live_url, "ASTRO_DB_EAGER_CONNECT": True,
                                "ASTRO_DB_OPTIONS": {"encryption_key": new_key()}})
    client = app.test_client()
    with app.app_context():
        db = app.extensions["astro_db"].database
    assert db.config.operation_timeout_ms == 3000  # the web-sized default budget
    assert client.get("/users/5f0000000000000000000000").status_code == 404
    server_up.kill()
    try:
        began = time.monotonic()
        response = client.get("/users/5f0000000000000000000000")
        spent = time.monotonic() - began
    finally:
        server_up.start()
    print(f"\n[faults] Flask request during an outage: {response.status_code} after {spent * 1000:.0f} ms")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert spent < 15.0  # was 91 s with the library's defaults
    db.disconnect()


def test_a_call_while_no_server_is_known_waits_server_selection_timeout_ms_not_its_budget(server_up, live_url):
    """The drivers' CSOT rule (docs/reliability.md, "Server selection inside the budget"): with
    the server killed, each attempt waits for one for at most ``server_selection_timeout_ms``
    (0.3 s), not the 20 s left of the call's budget; asserted by the bound PyMongo's selection
    names in its error, not by the clock."""
    import re

    from pymongo.errors import ServerSelectionTimeoutError

    db = Database(live_url, server_selection_timeout_ms=300, operation_timeout_ms=20_000, min_pool_size=0,
                  retry_reads=False, retry_attempts=2, backoff_base_s=0.01, backoff_max_s=0.01)
    db.connect()
    db.find_one("User", {})  # a pooled connection
    server_up.kill()
    try:
        with pytest.raises(AstroDBError):
            db.find_one("User", {})  # on the dead connection: the server is now unknown
        with pytest.raises(AstroDBError) as caught:
            db.find_one("User", {})
    finally:
        server_up.start()
        db.disconnect()
    bounds, seen = [], caught.value
    while seen is not None:
        if isinstance(seen, ServerSelectionTimeoutError):
            bounds += [float(t) for t in re.findall(r"Timeout: ([0-9.]+)s", str(seen))]
        seen = seen.__cause__ or seen.__context__
    assert bounds and max(bounds) <= 0.3
    assert caught.value.attempts == 2  # each attempt bounded, so the retry had time to happen
