"""``with_transaction`` as the drivers' convenient transaction API specifies it.

transactions-convenient-api: the whole unit is retried on ``TransientTransactionError`` after
a backoff with jitter (``jitter * min(5 ms * 1.5 ** attempt, 500 ms)``), never past the retry
limit (no retry starts, no backoff is slept, once it would end past it: the last error is
raised); the commit alone is retried on ``UnknownTransactionCommitResult`` unless the server
ran out of its ``maxTimeMS`` (MaxTimeMSExpired, code 50). client-side-operations-timeout: with
``timeoutMS`` set (astro_db's ``operation_timeout_ms``: 30 s by default, 3 s in the web
integrations), it bounds the entire ``with_transaction`` call, the callback's operations
included; without it, retries stop after 120 s. Before, ``with_transaction`` retried at once
(no backoff) for 120 s whatever the budget, each call of the callback with a budget of its own,
and retried a commit that had run out of its ``maxTimeMS``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from astro_db import Database, errors
from astro_db.driver import gateway, timeouts
from astro_db.driver.transactions import run_with_retry


def transient(message: str = "conflict") -> errors.TransactionError:
    cause = OperationFailure("WriteConflict", 112)
    cause._error_labels = {"TransientTransactionError"}
    try:
        raise cause
    except OperationFailure:
        try:
            raise errors.TransactionError(message) from cause
        except errors.TransactionError as exc:
            return exc


class Clock:
    def __init__(self) -> None:
        self.now = 500.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeTx:
    def __init__(self, commits: list[BaseException | None]) -> None:
        self.active = True
        self.commits = commits
        self.aborted = False

    def commit(self) -> None:
        outcome = self.commits.pop(0) if self.commits else None
        if outcome is not None:
            raise outcome
        self.active = False

    def abort(self) -> None:
        self.active, self.aborted = False, True


def test_retries_back_off_with_jitter_as_the_specification_computes_it():
    clock = Clock()
    calls = []

    def unit(tx: Any) -> str:
        calls.append(tx)
        if len(calls) <= 4:
            raise transient()
        return "done"

    result = run_with_retry(lambda: FakeTx([]), unit, (), {}, timeout_s=120.0, clock=clock.monotonic,
                            sleep=clock.sleep, jitter=lambda: 0.5)
    assert result == "done" and len(calls) == 5
    # before attempt n (n = 1, 2, ...): jitter * min(5 ms * 1.5 ** n, 500 ms)
    assert clock.slept == pytest.approx([0.5 * 0.005 * 1.5 ** n for n in range(1, 5)])
    assert all(tx.aborted for tx in calls[:4])


def test_the_backoff_is_capped_at_half_a_second():
    clock = Clock()
    attempts = []

    def unit(tx: Any) -> None:
        attempts.append(1)
        if len(attempts) < 20:
            raise transient()

    run_with_retry(lambda: FakeTx([]), unit, (), {}, timeout_s=120.0, clock=clock.monotonic, sleep=clock.sleep,
                   jitter=lambda: 1.0)
    assert max(clock.slept) == pytest.approx(0.5) and clock.slept[-1] == pytest.approx(0.5)


def test_no_retry_starts_nor_backoff_is_slept_past_the_limit_the_last_error_is_raised():
    clock = Clock()
    errors_raised: list[BaseException] = []

    def unit(tx: Any) -> None:
        clock.now += 0.3  # each attempt takes 0.3 s
        errors_raised.append(transient(f"attempt {len(errors_raised) + 1}"))
        raise errors_raised[-1]

    with pytest.raises(errors.TransactionError) as caught:
        run_with_retry(lambda: FakeTx([]), unit, (), {}, timeout_s=1.0, clock=clock.monotonic, sleep=clock.sleep,
                       jitter=lambda: 1.0)
    assert caught.value is errors_raised[-1]
    assert clock.now - 500.0 <= 1.0 + 0.3  # the last attempt started before the limit
    # attempts end at 0.3, 0.6075, 0.91875 (each backoff 1.0 * 5 ms * 1.5 ** n before the next), the
    # fourth starts at 0.935625 and ends past 1 s: no fifth
    assert len(errors_raised) == 4 and clock.slept == pytest.approx([0.005 * 1.5 ** n for n in range(1, 4)])


def commit_error(*codes_and_labels: Any) -> errors.AstroDBError:
    code, labels = codes_and_labels
    cause = OperationFailure("commit", code)
    cause._error_labels = set(labels)
    error = errors.DatabaseConnectionError("commit")
    error.__cause__ = cause
    return error


def test_an_unknown_commit_result_is_sent_again_but_not_one_that_ran_out_of_its_max_time_ms():
    clock = Clock()
    unknown = commit_error(91, {"UnknownTransactionCommitResult"})  # ShutdownInProgress: sent again
    tx = FakeTx([unknown, None])
    assert run_with_retry(lambda: tx, lambda t: "ok", (), {}, clock=clock.monotonic, sleep=clock.sleep) == "ok"
    assert tx.commits == []

    expired = commit_error(50, {"UnknownTransactionCommitResult"})  # MaxTimeMSExpired: not sent again
    tx = FakeTx([expired, None])
    with pytest.raises(errors.DatabaseConnectionError) as caught:
        run_with_retry(lambda: tx, lambda t: "ok", (), {}, clock=clock.monotonic, sleep=clock.sleep)
    assert caught.value is expired and tx.commits == [None]


class SlowServer:
    """Every driver call through the gateway takes ``step`` seconds of the bounds' clock."""

    def __init__(self, monkeypatch: Any, clock: Clock, step: float) -> None:
        self.clock, self.step = clock, step
        for name in ("find_one", "find", "insert_one", "find_one_and_update", "count_documents"):
            monkeypatch.setattr(gateway.Collection, name, self._slow(getattr(gateway.Collection, name)))

    def _slow(self, real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.clock.now += self.step
            return real(*args, **kwargs)
        return call


@pytest.fixture
def clocked(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timeouts, "time", clock)
    return clock


def open_db(**options: Any) -> Database:
    return Database(f"mongomock://localhost/w{uuid.uuid4().hex[:10]}", **options).connect()


def test_the_call_budget_bounds_the_whole_call_the_callbacks_calls_included(monkeypatch, clocked):
    db = open_db(operation_timeout_ms=1000)
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    SlowServer(monkeypatch, clocked, 0.4)
    reads = []

    def unit(tx: Any) -> None:
        for _ in range(4):  # four reads of 0.4 s each: the third ends past the 1 s budget
            reads.append(db.find_one("User", {"id": user.id}, transaction=tx))

    with pytest.raises(errors.OperationTimeoutError):
        db.with_transaction(unit)
    assert len(reads) <= 3  # before: each read had 1 s of its own, all four ran
    db.disconnect()


def test_transient_errors_are_retried_only_within_the_call_budget(monkeypatch, clocked):
    db = open_db(operation_timeout_ms=1000)
    attempts = []

    def unit(tx: Any) -> None:
        clocked.now += 0.2
        attempts.append(1)
        raise transient()

    with pytest.raises(errors.TransactionError):
        db.with_transaction(unit)
    assert 1 < len(attempts) <= 5  # before: retried for 120 s (600 attempts of 0.2 s)
    assert clocked.now - 500.0 <= 1.0 + 0.2
    db.disconnect()


def test_an_explicit_timeout_s_is_the_bound_and_no_budget_means_the_drivers_120_s(monkeypatch, clocked):
    for options, timeout_s, limit in (({"operation_timeout_ms": 1000}, 3.0, 3.0), ({"operation_timeout_ms": None}, None, 120.0)):
        db = open_db(**options)
        start, attempts = clocked.now, []

        def unit(tx: Any, attempts: list[int] = attempts) -> None:
            clocked.now += 0.5
            attempts.append(1)
            raise transient()

        with pytest.raises(errors.TransactionError):
            db.with_transaction(unit, timeout_s=timeout_s) if timeout_s else db.with_transaction(unit)
        assert limit - 0.5 <= clocked.now - start <= limit + 0.5, (options, clocked.now - start)
        db.disconnect()
