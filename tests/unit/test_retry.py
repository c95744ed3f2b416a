"""The retry policy: what is retried, how long it waits, what it logs, and what nothing duplicates.

Broken on purpose here: driver calls, through fakes that fail a scripted number of times (a
"reply lost" fake lets the write reach the store and then raises, as a dropped connection does).
Must hold: retryable failures are retried up to ``retry_attempts`` with exponential backoff and
jitter, each retry logged at WARNING without secrets; the rest fail at once; the final failure is
an ``astro_db`` error; a replayed insert never duplicates; ``$inc`` is never replayed.
No test waits: the policy's ``sleep`` records the waits instead.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from mongoengine.errors import ValidationError as MEValidationError
from pymongo import errors as pm

from astro_db import Database, DatabaseConfig
from astro_db.database import bounded
from astro_db.driver import timeouts
from astro_db.driver.retry import RetryPolicy, is_retryable
from astro_db.errors import (
    AstroDBError,
    DatabaseConnectionError,
    DuplicateKeyError,
    OperationTimeoutError,
    PoolExhaustedError,
    QueryError,
)


def labelled(exc: pm.PyMongoError, label: str) -> pm.PyMongoError:
    exc._add_error_label(label)
    return exc


RETRYABLE = {
    "AutoReconnect": pm.AutoReconnect("connection reset"),
    "NotPrimaryError": pm.NotPrimaryError("not primary"),
    "ServerSelectionTimeoutError": pm.ServerSelectionTimeoutError("no server"),
    "NetworkTimeout": pm.NetworkTimeout("timed out"),
    "ConnectionFailure": pm.ConnectionFailure("refused"),
    "RetryableWriteError label": labelled(pm.OperationFailure("write failed", 11602), "RetryableWriteError"),
    "not primary (10107)": pm.OperationFailure("not writable primary", 10107),
    "shutting down (91)": pm.OperationFailure("shutdown in progress", 91),
}
NEVER_RETRIED = {
    "duplicate key": pm.DuplicateKeyError("E11000 duplicate key", 11000),
    "pool exhausted": pm.WaitQueueTimeoutError("timed out checking out a connection"),
    "authentication failed (18)": pm.OperationFailure("auth failed", 18),
    "unauthorized (13)": pm.OperationFailure("not authorized", 13),
    "bad query (2)": pm.OperationFailure("unknown operator $foo", 2),
    "server validation (121)": pm.OperationFailure("document failed validation", 121),
    "time limit (50)": pm.ExecutionTimeout("operation exceeded time limit", 50),
    "model validation": MEValidationError("email: invalid"),
    "a bug": ValueError("not a driver error"),
}


@pytest.mark.parametrize("exc", RETRYABLE.values(), ids=RETRYABLE.keys())
def test_network_not_primary_selection_and_labelled_failures_are_retryable(exc):
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", NEVER_RETRIED.values(), ids=NEVER_RETRIED.keys())
def test_validation_duplicate_auth_query_and_pool_failures_are_never_retried(exc):
    assert not is_retryable(exc)


# --- the policy alone ----------------------------------------------------------------------------

def make_policy(attempts=3, jitter=False, base=0.25, cap=8.0):
    waits: list[float] = []
    config = DatabaseConfig(retry_attempts=attempts, backoff_base_s=base, backoff_max_s=cap, backoff_jitter=jitter)
    return RetryPolicy(config.retry, sleep=waits.append), waits


def failing(times: int, exc_factory=lambda n: pm.AutoReconnect(f"reset {n}")):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= times:
            raise exc_factory(len(calls))
        return "ok"

    return fn, calls


def test_waits_grow_exponentially_up_to_the_cap():
    policy, _ = make_policy(base=0.25, cap=1.0)
    waits = policy.waits()
    assert [next(waits) for _ in range(5)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_jitter_draws_each_wait_between_zero_and_the_exponential_value():
    policy, _ = make_policy(base=0.25, cap=8.0, jitter=True)
    waits = policy.waits()
    for ceiling in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0):
        assert 0.0 <= next(waits) <= ceiling


def test_a_retryable_failure_is_retried_with_the_backoff_waits():
    policy, waits = make_policy(attempts=4)
    fn, calls = failing(3)
    assert policy.call(fn, operation="find on User") == "ok"
    assert len(calls) == 4 and waits == [0.25, 0.5, 1.0]
    assert policy.stats() == {"attempts": 4, "retries": 3, "exhausted": 0}


def test_after_the_last_attempt_the_failure_is_raised_with_the_attempt_count():
    policy, waits = make_policy(attempts=3)
    fn, calls = failing(10)
    with pytest.raises(pm.AutoReconnect) as info:
        policy.call(fn, operation="find on User")
    assert len(calls) == 3 and len(waits) == 2 and info.value.astro_attempts == 3
    assert policy.stats()["exhausted"] == 1


def test_retry_false_sends_once():
    policy, waits = make_policy()
    fn, calls = failing(1)
    with pytest.raises(pm.AutoReconnect):
        policy.call(fn, operation="update on User", retry=False)
    assert len(calls) == 1 and waits == []


def test_no_retry_starts_when_its_wait_would_pass_the_deadline():
    now = [100.0]
    policy, waits = make_policy(attempts=5, base=1.0)
    policy.clock = lambda: now[0]
    policy.sleep = lambda s: (waits.append(s), now.__setitem__(0, now[0] + s))
    fn, calls = failing(10)
    with pytest.raises(pm.AutoReconnect):
        policy.call(fn, operation="find on User", deadline=101.5)  # a 1 s wait fits, then 2 s does not
    assert len(calls) == 2 and waits == [1.0]


def test_each_retry_is_logged_at_warning_with_operation_attempt_and_cause_but_no_secret(caplog):
    policy, _ = make_policy(attempts=3)
    fn, _ = failing(2, lambda n: pm.AutoReconnect(f"mongodb://app:s3cret@db.example.com:27017 reset {n}"))
    with caplog.at_level(logging.WARNING, logger="astro_db.driver.retry"):
        policy.call(fn, operation="find on User")
    lines = [r for r in caplog.records if r.name == "astro_db.driver.retry"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.WARNING]
    assert "find on User failed on attempt 1/3 (AutoReconnect:" in lines[0].getMessage()
    assert "attempt 2/3" in lines[1].getMessage()
    assert "s3cret" not in caplog.text


# --- through the service -------------------------------------------------------------------------

class Flaky:
    """A collection proxy whose named methods fail on their first ``times`` calls.

    ``landed=True`` runs the real call first and then raises: the write reached the server but
    its reply was lost, the case that could duplicate an insert or double an ``$inc``."""

    def __init__(self, real, method: str, exc_factory, times: int = 1, landed: bool = False):
        self.real, self.method, self.exc_factory = real, method, exc_factory
        self.times, self.landed, self.calls = times, landed, 0

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls > self.times:
                return attr(*args, **kwargs)
            if self.landed:
                attr(*args, **kwargs)
            raise self.exc_factory()

        return call


@pytest.fixture
def db():
    database = Database(f"mongomock://localhost/r{uuid.uuid4().hex[:8]}", retry_attempts=3)
    database.connect()
    database.waits = []
    database.executor.runtime.retry.sleep = database.waits.append  # no real waiting
    yield database
    database.disconnect()


def make_flaky(db, model: str, method: str, exc_factory=lambda: pm.AutoReconnect("connection reset"), **kw) -> Flaky:
    info = db.executor.runtime.registry.resolve(model)
    flaky = Flaky(db.executor.runtime.coll(info), method, exc_factory, **kw)
    db.executor.runtime.gateway.collections[info.collection] = flaky
    return flaky


def test_a_read_is_retried_through_the_service_and_succeeds(db):
    db.create("User", {"email": "a@b.co", "name": "Ann"})
    flaky = make_flaky(db, "User", "find", times=2)
    assert [u.email for u in db.find("User", {})] == ["a@b.co"]
    assert flaky.calls == 3 and len(db.waits) == 2
    assert db.metrics()["retries"]["retries"] == 2


def test_the_final_failure_is_a_clear_astro_db_error_naming_the_attempts(db):
    make_flaky(db, "User", "count_documents", lambda: pm.ServerSelectionTimeoutError("no server"), times=99)
    with pytest.raises(DatabaseConnectionError) as info:
        db.count("User", {})
    assert "count on User" in str(info.value) and "gave up after 3 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, pm.ServerSelectionTimeoutError)


def test_a_non_retryable_failure_is_raised_at_once_as_its_astro_db_type(db):
    flaky = make_flaky(db, "User", "find", lambda: pm.OperationFailure("unknown operator", 2), times=99)
    with pytest.raises(QueryError):
        db.find("User", {})
    assert flaky.calls == 1 and db.waits == []


def test_pool_exhaustion_is_not_retried_and_raises_pool_exhausted(db):
    flaky = make_flaky(db, "User", "find", lambda: pm.WaitQueueTimeoutError("pool busy"), times=99)
    with pytest.raises(PoolExhaustedError, match="pooled connection"):
        db.find("User", {})
    assert flaky.calls == 1


def test_an_insert_whose_reply_was_lost_is_retried_and_stored_exactly_once(db):
    flaky = make_flaky(db, "User", "insert_one", landed=True)
    user = db.create("User", {"email": "once@b.co", "name": "Ann"})
    assert flaky.calls == 2  # the retry met its own _id: success, not a duplicate
    assert db.count("User", {"email": "once@b.co"}) == 1 and db.find_one("User", {"id": user.id}) is not None


def test_create_many_whose_reply_was_lost_stores_each_document_once(db):
    make_flaky(db, "User", "insert_many", landed=True)
    result = db.create_many("User", [{"email": f"m{i}@b.co", "name": "M"} for i in range(5)])
    assert len(result) == 5 and result.failed == []
    assert db.count("User", {}) == 5


def test_a_retried_insert_meeting_another_documents_email_is_still_a_duplicate(db):
    db.create("User", {"email": "taken@b.co", "name": "Ann"})
    with pytest.raises(DuplicateKeyError):
        db.create("User", {"email": "taken@b.co", "name": "Bob"})
    assert db.count("User", {}) == 1


def test_an_inc_whose_reply_was_lost_is_not_replayed_but_found_out(db):
    user = db.create("User", {"email": "inc@b.co", "name": "Ann"})
    insight = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 50,
                                             "recommendations": ["Rest"], "summary": "calm"})
    flaky = make_flaky(db, "PlanetaryInsight", "find_one_and_update", landed=True)
    # the reply was lost: the outcome is read back by the op id the update stamped, not guessed
    assert db.update("PlanetaryInsight", {"id": insight.id}, {"$inc": {"energyLevel": 5}}).energy_level == 55
    assert flaky.calls == 1  # sent once: the app layer never replays $inc blindly
    assert db.find_one("PlanetaryInsight", {"id": insight.id}).energy_level == 55
    assert [e["action"] for e in db.audit_trail("PlanetaryInsight", insight.id)] == ["create", "update"]


def test_an_inc_lost_before_it_landed_is_reported_failed(db):
    user = db.create("User", {"email": "inc2@b.co", "name": "Ann"})
    insight = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 50,
                                             "recommendations": ["Rest"], "summary": "calm"})
    flaky = make_flaky(db, "PlanetaryInsight", "find_one_and_update")
    with pytest.raises(DatabaseConnectionError):
        db.update("PlanetaryInsight", {"id": insight.id}, {"$inc": {"energyLevel": 5}})
    assert flaky.calls == 1
    assert db.find_one("PlanetaryInsight", {"id": insight.id}).energy_level == 50


def test_a_set_update_is_idempotent_and_retried(db):
    user = db.create("User", {"email": "set@b.co", "name": "Ann"})
    flaky = make_flaky(db, "User", "find_one_and_update", landed=True)
    assert db.update("User", {"id": user.id}, {"name": "Bea"}).name == "Bea"
    assert flaky.calls == 2


# --- timeouts ------------------------------------------------------------------------------------

PUBLIC_METHODS = ["create", "create_many", "find", "find_one", "update", "update_many", "delete",
                  "delete_many", "count", "aggregate"]


@pytest.mark.parametrize("name", PUBLIC_METHODS)
def test_every_service_method_takes_timeout_ms(name):
    import inspect

    param = inspect.signature(getattr(Database, name)).parameters["timeout_ms"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None


@pytest.mark.parametrize("bad", [0, -5, "100", True])
def test_a_bad_timeout_ms_is_refused_before_anything_is_sent(db, bad):
    with pytest.raises(AstroDBError, match="timeout_ms"):
        db.create("User", {"email": "t@b.co", "name": "Ann"}, timeout_ms=bad)
    assert db.count("User", {}) == 0


class BoundClock:
    """The clock the time bounds read (``timeouts.time.monotonic``) and the retry policy's
    injected ``clock`` (``uses(db)``), moved by hand: a bound runs out when a test says so,
    never by waiting for it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def uses(self, db: Database) -> Database:
        db.executor.runtime.retry.clock = self.monotonic
        return db


@pytest.fixture
def bound_clock(monkeypatch):
    clock = BoundClock()
    monkeypatch.setattr(timeouts, "time", clock)
    return clock


def wait_out_the_bound(clock: BoundClock) -> None:
    """Move the bounds' clock past the running call's deadline (no waiting)."""
    bound = timeouts.current_bound(None)
    clock.now = bound.deadline + 0.001
    assert bound.expired()


def test_an_expired_per_call_timeout_raises_operation_timeout_error_without_retrying(db, bound_clock):
    # What PyMongo raises when its client-side deadline (pymongo.timeout) passes mid-call.
    bound_clock.uses(db)
    flaky = make_flaky(db, "User", "find", lambda: (wait_out_the_bound(bound_clock), pm.NetworkTimeout("timed out"))[1], times=99)
    with pytest.raises(OperationTimeoutError, match=r"find on User did not finish within 1000 ms \(timeout_ms\)"):
        db.find("User", {}, timeout_ms=1000)
    assert flaky.calls == 1 and db.waits == []  # no retry once the bound is spent


def test_the_config_default_operation_timeout_bounds_calls_without_timeout_ms(bound_clock):
    with Database(f"mongomock://localhost/r{uuid.uuid4().hex[:8]}", operation_timeout_ms=1000) as db:
        bound_clock.uses(db)
        make_flaky(db, "User", "count_documents",
                   lambda: (wait_out_the_bound(bound_clock), pm.ExecutionTimeout("operation exceeded time limit", 50))[1], times=99)
        with pytest.raises(OperationTimeoutError, match=r"1000 ms \(operation_timeout_ms\)"):
            db.count("User", {})


def test_a_bound_spent_by_earlier_steps_fails_the_next_step_before_it_is_sent(db, bound_clock):
    bound_clock.uses(db)
    info = db.executor.runtime.registry.resolve("User")
    sent = []

    def two_steps():
        db.executor.call(info, "find", lambda: (sent.append(1), wait_out_the_bound(bound_clock)))
        db.executor.call(info, "find", lambda: sent.append(2))

    with pytest.raises(OperationTimeoutError):
        bounded(two_steps)(timeout_ms=1000)
    assert sent == [1]
