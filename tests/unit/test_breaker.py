"""Graceful degradation: the circuit breaker, health() from its state, and stale_ok reads.

Broken on purpose here: the server, simulated by a collection proxy that raises the driver's
"no server" error (and a fake clock for the cool-down). Must hold: after ``breaker_threshold``
consecutive connection failures calls fail fast with ``DatabaseConnectionError`` without
touching the driver; after ``breaker_cooldown_s`` exactly one probe goes through; a busy pool or
a slow query never opens the breaker; ``health()`` says degraded while it is open; a
``stale_ok=True`` read answers from the last remembered result, clearly marked, only then.
"""

from __future__ import annotations

import uuid

import pytest
from pymongo import errors as pm
from spies import Clock

from astro_db import Database
from astro_db.driver.retry import CircuitBreaker
from astro_db.errors import (
    DatabaseConnectionError,
    DuplicateKeyError,
    OperationTimeoutError,
    PoolExhaustedError,
)
from astro_db.stale import StaleCount, StaleDocument, StaleResult, is_stale, stale_age

# --- the breaker alone ---------------------------------------------------------------------------

@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker(threshold=3, cooldown_s=10.0, clock=clock)


def down() -> pm.ServerSelectionTimeoutError:
    return pm.ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")


def test_the_breaker_opens_after_threshold_consecutive_connection_failures(breaker):
    for _ in range(2):
        breaker.record_failure(down())
    assert breaker.state == "closed"
    breaker.record_failure(pm.AutoReconnect("reset"))
    assert breaker.state == "open"
    with pytest.raises(DatabaseConnectionError, match="failing fast for another 10.0s"):
        breaker.before_call()


def test_a_success_resets_the_count_of_consecutive_failures(breaker):
    breaker.record_failure(down())
    breaker.record_failure(down())
    breaker.record_success()
    breaker.record_failure(down())
    assert breaker.state == "closed" and breaker.consecutive_failures == 1


@pytest.mark.parametrize("exc", [
    pm.WaitQueueTimeoutError("pool busy"),  # PyMongo 4 makes it a ConnectionFailure: our pool, not the server
    pm.NetworkTimeout("timed out"),  # a slow operation on a server that answered
    ValueError("a bug"),
], ids=["pool exhausted", "slow operation", "not a driver error"])
def test_a_busy_pool_or_a_slow_query_never_opens_the_breaker(breaker, exc):
    for _ in range(10):
        breaker.record_failure(exc)
    assert breaker.state == "closed"
    breaker.before_call()


def test_a_server_reply_proves_it_is_up(breaker):
    breaker.record_failure(down())
    breaker.record_failure(down())
    breaker.record_failure(pm.DuplicateKeyError("E11000", 11000))
    breaker.record_failure(down())
    assert breaker.state == "closed"


def test_after_the_cooldown_exactly_one_probe_goes_through_and_its_success_closes(breaker, clock):
    for _ in range(3):
        breaker.record_failure(down())
    clock.now += 10.0
    assert breaker.state == "half-open"
    breaker.before_call()  # the probe
    with pytest.raises(DatabaseConnectionError):
        breaker.before_call()  # everyone else still fails fast while it runs
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()


def test_a_failed_probe_opens_the_breaker_for_another_cooldown(breaker, clock):
    for _ in range(3):
        breaker.record_failure(down())
    clock.now += 10.0
    breaker.before_call()
    breaker.record_failure(down())
    assert breaker.state == "open"
    clock.now += 9.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half-open"


def test_a_probe_that_ends_without_news_lets_the_next_call_probe(breaker, clock):
    for _ in range(3):
        breaker.record_failure(down())
    clock.now += 10.0
    breaker.before_call()
    breaker.release_probe()  # e.g. the call raised ValidationError before reaching the server
    breaker.before_call()  # the next call may probe


# --- wired into the service ----------------------------------------------------------------------

class Outage:
    """A collection proxy: every driver call raises "no server" while ``down`` is true."""

    def __init__(self, real) -> None:
        self.real, self.down, self.calls = real, True, 0

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            if self.down:
                raise down()
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def db(clock):
    database = Database(f"mongomock://localhost/b{uuid.uuid4().hex[:8]}", retry_attempts=2,
                        breaker_threshold=3, breaker_cooldown_s=10.0, cache_ttl_s=30.0)
    database.connect()
    database.executor.runtime.retry.sleep = lambda s: None
    database.executor.runtime.breaker._clock = clock
    database.executor.runtime.cache._clock = clock
    yield database
    database.disconnect()


def outage(db, model: str = "User") -> Outage:
    info = db.executor.runtime.registry.resolve(model)
    proxy = Outage(db.executor.runtime.coll(info))
    db.executor.runtime.gateway.collections[info.collection] = proxy
    return proxy


def test_after_threshold_failed_calls_the_service_fails_fast_without_touching_the_driver(db):
    server = outage(db)
    for _ in range(3):
        with pytest.raises(DatabaseConnectionError, match="no MongoDB server answered"):
            db.find("User", {})
    sent = server.calls
    with pytest.raises(DatabaseConnectionError, match="failing fast"):
        db.find("User", {})
    with pytest.raises(DatabaseConnectionError, match="failing fast"):
        db.create("User", {"email": "a@b.co", "name": "Ann"})
    assert server.calls == sent
    assert db.metrics()["breaker"]["state"] == "open"


def test_after_the_cooldown_one_probe_reaches_the_recovered_server_and_closes_the_breaker(db, clock):
    server = outage(db)
    for _ in range(3):
        with pytest.raises(DatabaseConnectionError):
            db.count("User", {})
    server.down = False
    clock.now += 10.0
    assert db.count("User", {}) == 0  # the probe
    assert db.executor.runtime.breaker.state == "closed"
    db.create("User", {"email": "a@b.co", "name": "Ann"})


def test_health_reports_degraded_while_the_breaker_is_open(db):
    outage(db)
    for _ in range(3):
        with pytest.raises(DatabaseConnectionError):
            db.find("User", {})
    report = db.health()
    assert report["breaker"] == "open" and report["status"] == "degraded"  # the ping itself still answers


def test_pool_exhaustion_in_the_service_never_opens_the_breaker(db):
    info = db.executor.runtime.registry.resolve("User")
    for _ in range(5):
        with pytest.raises(PoolExhaustedError):
            db.executor.call(info, "find", lambda: (_ for _ in ()).throw(pm.WaitQueueTimeoutError("pool busy")))
    assert db.executor.runtime.breaker.state == "closed"


# --- stale reads ---------------------------------------------------------------------------------

def test_a_stale_ok_read_answers_fresh_while_the_server_is_up(db):
    db.create("User", {"email": "a@b.co", "name": "Ann"})
    first = db.find("User", {}, stale_ok=True)
    db.mongo["users"].insert_one({"email": "raw@b.co", "name": "Raw", "status": "active"})  # behind the cache's back
    again = db.find("User", {}, stale_ok=True)
    assert len(first) == 1 and len(again) == 2  # stale_ok never makes an answer staler while up
    assert not is_stale(again) and type(again) is list


def test_during_an_outage_stale_ok_reads_return_the_last_answer_marked_stale(db, clock):
    user = db.create("User", {"email": "a@b.co", "name": "Ann"})
    db.find("User", {"status": "active"}, stale_ok=True)
    db.find_one("User", {"id": user.id}, stale_ok=True)
    db.find_one("User", {"id": user.id}, lean=True, stale_ok=True)
    db.count("User", {}, stale_ok=True)
    outage(db)
    clock.now += 120.0  # well past the 30 s TTL: kept for stale reads all the same

    rows = db.find("User", {"status": "active"}, stale_ok=True)
    assert isinstance(rows, StaleResult) and rows.stale and rows.age_s == 120.0
    assert [u.email for u in rows] == ["a@b.co"]
    one = db.find_one("User", {"id": user.id}, stale_ok=True)
    assert one.email == "a@b.co" and is_stale(one) and stale_age(one) == 120.0
    lean = db.find_one("User", {"id": user.id}, lean=True, stale_ok=True)
    assert isinstance(lean, StaleDocument) and lean["email"] == "a@b.co"
    count = db.count("User", {}, stale_ok=True)
    assert isinstance(count, StaleCount) and count == 1 and count.stale


def test_a_stale_answer_is_logged_at_warning(db, caplog):
    db.count("User", {}, stale_ok=True)
    outage(db)
    with caplog.at_level("WARNING", logger="astro_db.stale"):
        db.count("User", {}, stale_ok=True)
    assert "count on User: serving a stale answer from the query cache" in caplog.text


def test_without_stale_ok_or_without_a_remembered_answer_the_outage_error_is_raised(db):
    db.find("User", {}, stale_ok=True)
    outage(db)
    with pytest.raises(DatabaseConnectionError):
        db.find("User", {})  # not opted in
    with pytest.raises(DatabaseConnectionError):
        db.find("User", {"name": "never read"}, stale_ok=True)  # nothing remembered for this query


def test_an_open_breaker_still_serves_stale_ok_reads(db):
    db.find("User", {}, stale_ok=True)
    outage(db)
    for _ in range(3):
        with pytest.raises(DatabaseConnectionError):
            db.count("User", {})
    assert db.executor.runtime.breaker.state == "open"
    assert is_stale(db.find("User", {}, stale_ok=True))


def test_a_write_through_the_service_drops_what_stale_reads_would_serve(db):
    db.find("User", {}, stale_ok=True)
    db.create("User", {"email": "a@b.co", "name": "Ann"})  # invalidates the model's entries
    outage(db)
    with pytest.raises(DatabaseConnectionError):
        db.find("User", {}, stale_ok=True)


def test_stale_answers_are_bounded_by_cache_stale_s(db, clock):
    db.find("User", {}, stale_ok=True)
    outage(db)
    clock.now += 30.0 + db.config.cache_stale_s  # TTL + the stale allowance
    with pytest.raises(DatabaseConnectionError):
        db.find("User", {}, stale_ok=True)


def test_a_timeout_is_an_outage_for_stale_ok(db):
    db.count("User", {}, stale_ok=True)
    info = db.executor.runtime.registry.resolve("User")
    db.executor.runtime.gateway.collections[info.collection] = type("Slow", (), {
        "count_documents": lambda self, *a, **k: (_ for _ in ()).throw(pm.ExecutionTimeout("time limit", 50))})()
    with pytest.raises(OperationTimeoutError):
        db.count("User", {})
    assert is_stale(db.count("User", {}, stale_ok=True))


def test_a_duplicate_key_is_not_an_outage(db):
    db.create("User", {"email": "a@b.co", "name": "Ann"})
    with pytest.raises(DuplicateKeyError):
        db.create("User", {"email": "a@b.co", "name": "Bob"})
    assert db.executor.runtime.breaker.state == "closed"
