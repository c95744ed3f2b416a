"""The breaker's probe is bounded, and service resumes as soon as the server answers again.

Driven by an injected clock (the cool-down never passes by itself here) and a collection proxy
that says "no server" while ``down``: a heartbeat or the breaker's own ping that sees the
server ends the cool-down at once, so the very next call probes; the probe is sent once (no
retries) under the call's one budget.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from pymongo import _csot
from pymongo import errors as pm
from spies import Clock

from astro_db import Database
from astro_db.driver.retry import BreakerHeartbeats, CircuitBreaker
from astro_db.errors import DatabaseConnectionError


def down() -> pm.ServerSelectionTimeoutError:
    return pm.ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")


@pytest.fixture
def clock():
    return Clock()


def opened(clock, **kw) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold=2, cooldown_s=60.0, clock=clock, **kw)
    breaker.record_failure(down())
    breaker.record_failure(down())
    assert breaker.state == "open"
    return breaker


def test_the_server_seen_answering_ends_the_cool_down_and_the_next_call_is_the_probe(clock):
    breaker = opened(clock)
    assert breaker.server_seen() is True  # no time has passed: 60 s of cool-down were left
    assert breaker.state == "half-open" and breaker.seen_early == 1
    assert breaker.before_call() is True  # the probe
    with pytest.raises(DatabaseConnectionError, match="failing fast"):
        breaker.before_call()  # everyone else still waits for its answer
    breaker.record_success()
    assert breaker.state == "closed" and breaker.before_call() is False


def test_seeing_the_server_does_nothing_to_a_closed_or_already_half_open_breaker(clock):
    breaker = CircuitBreaker(threshold=2, cooldown_s=60.0, clock=clock)
    assert breaker.server_seen() is False and breaker.state == "closed"
    breaker = opened(clock)
    clock.now += 60.0
    assert breaker.server_seen() is False and breaker.seen_early == 0


def test_a_heartbeat_from_a_writable_server_ends_the_cool_down_one_from_a_secondary_does_not(clock):
    class Event:
        def __init__(self, writable: bool) -> None:
            self.reply = type("Hello", (), {"is_writable": writable})()

    breaker = opened(clock)
    listener = BreakerHeartbeats(breaker)
    listener.succeeded(Event(writable=False))  # a secondary answering says nothing about writes
    assert breaker.state == "open"
    listener.succeeded(Event(writable=True))
    assert breaker.state == "half-open"


def test_while_open_the_breaker_pings_until_the_server_answers(clock):
    answers = iter([False, False, True])
    pinged = []
    seen = threading.Event()

    def ping() -> bool:
        answer = next(answers)
        pinged.append(answer)
        if answer:
            seen.set()
        return answer

    breaker = CircuitBreaker(threshold=1, cooldown_s=60.0, clock=clock, probe_interval_s=0.001)
    breaker.watch(ping)
    breaker.record_failure(down())  # opens it: the watcher starts
    assert seen.wait(10)
    watcher = breaker._watcher
    if watcher is not None:
        watcher.join(10)
    assert pinged == [False, False, True]
    assert breaker.state == "half-open" and breaker.seen_early == 1  # the clock never moved


def test_the_watcher_stops_when_there_is_nothing_to_ask(clock):
    calls = []
    breaker = CircuitBreaker(threshold=1, cooldown_s=60.0, clock=clock, probe_interval_s=0.001)
    breaker.watch(lambda: calls.append(1))  # returns None: disconnected
    breaker.record_failure(down())
    watcher = breaker._watcher
    if watcher is not None:
        watcher.join(10)
    assert calls == [1] and breaker.state == "open"


# --- in the service ---------------------------------------------------------------------------

class Outage:
    """A collection proxy: every driver call raises "no server" while ``down`` is true, and
    records the PyMongo deadline it was sent under."""

    def __init__(self, real) -> None:
        self.real, self.down, self.calls, self.deadlines = real, True, 0, []

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            self.deadlines.append(_csot.get_deadline())
            if self.down:
                raise down()
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def db(clock):
    database = Database(f"mongomock://localhost/b{uuid.uuid4().hex[:8]}", retry_attempts=3,
                        breaker_threshold=2, breaker_cooldown_s=60.0)
    database.connect()
    database.executor.runtime.retry.sleep = lambda s: None
    database.executor.runtime.breaker._clock = clock
    yield database
    database.disconnect()


def outage(db) -> Outage:
    info = db.executor.runtime.registry.resolve("User")
    proxy = Outage(db.executor.runtime.coll(info))
    db.executor.runtime.gateway.collections[info.collection] = proxy
    return proxy


def test_the_probe_is_sent_once_under_the_calls_budget(db, clock):
    server = outage(db)
    for _ in range(2):
        with pytest.raises(DatabaseConnectionError, match="gave up after 3 attempts"):
            db.count("User", {})
    assert server.calls == 6
    clock.now += 60.0
    with pytest.raises(DatabaseConnectionError) as info:
        db.count("User", {})  # the probe
    assert server.calls == 7  # one attempt, not retry_attempts: its outcome decides
    assert server.deadlines[-1] is not None and server.deadlines[-1] != float("inf")  # under the budget
    assert "gave up after" not in str(info.value) and info.value.attempts == 1
    assert db.executor.runtime.breaker.state == "open"


def test_service_resumes_as_soon_as_the_server_is_seen_not_after_the_cool_down(db, clock):
    server = outage(db)
    for _ in range(2):
        with pytest.raises(DatabaseConnectionError):
            db.count("User", {})
    with pytest.raises(DatabaseConnectionError, match="failing fast for another 60.0s"):
        db.count("User", {})
    server.down = False
    db.executor.runtime.breaker.server_seen()  # what a heartbeat or the breaker's ping reports
    assert db.count("User", {}) == 0  # the probe, with the clock not moved at all
    assert db.executor.runtime.breaker.state == "closed"
    assert db.metrics()["breaker"]["seen_early"] == 1


def test_a_server_database_feeds_heartbeats_to_the_breaker_and_watches_while_open():
    db = Database("mongodb://127.0.0.1:1/astro")  # never connected: nothing is sent
    rt = db.executor.runtime
    assert any(isinstance(listener, BreakerHeartbeats) and listener.breaker is rt.breaker
               for listener in rt.listeners)
    assert rt.server_answers() is None and rt.breaker._ping() is None  # not connected: nothing to ask
    asked = []
    rt.server_answers = lambda: asked.append(1) or True
    assert rt.breaker._ping() is True and asked == [1]  # the breaker looks through the runtime
