"""The run step puts each bounded call, every attempt of it, under ``pymongo.timeout(remaining)``
(PyMongo's own, or whatever an application or a test put in its place), entered once per call,
and leaves every context variable as it found it.

What is looked at, per attempt (the first, and each retry), on a clock that moves by hand: the
three context variables PyMongo reads (``TIMEOUT``, ``DEADLINE``, ``RTT``: what it derives the
``maxTimeMS`` it sends, its socket timeout and its server selection wait from) and the call's
bound, with ``pymongo.timeout`` as PyMongo has it and wrapped by a pass-through (which counts
what it is handed). Counts and values, never times. (A direct way that set PyMongo's private
``_csot`` variables in place of entering its context manager measured 0.7 µs a call less and was
not kept: docs/reliability.md, "How the budget is applied".)
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from pymongo import _csot
from pymongo import errors as pm

from astro_db import Database
from astro_db.driver import timeouts
from astro_db.errors import DatabaseConnectionError, OperationTimeoutError
from astro_db.models import User
from astro_db.ops.steps import run

REAL_TIMEOUT = pymongo.timeout


class StepClock:
    """``time.monotonic`` moving ``step`` s at each read (PyMongo's and the bounds' clock: they
    read the ``time`` module's; the retry policy is handed it)."""

    def __init__(self, step: float = 0.25) -> None:
        self.now, self.step = 5000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Recorder:
    """A User collection handle whose ``method`` fails ``fail`` times (a retryable error), then
    answers; it records, per attempt, what PyMongo and the run step have in place."""

    def __init__(self, real: Any, method: str, fail: int) -> None:
        self.real, self.method, self.fail = real, method, fail
        self.seen: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = timeouts.CALL_BOUND.get()
            self.seen.append((_csot.TIMEOUT.get(), _csot.DEADLINE.get(), _csot.RTT.get(),
                              None if bound is None else (bound.ms, bound.deadline, bound.source)))
            if len(self.seen) <= self.fail:
                raise pm.AutoReconnect("connection reset")
            return attr(*args, **kwargs)

        return call


def wrapped_timeout(handed: list[float]) -> Any:
    def timeout(seconds: float | None) -> Any:  # a pass-through wrapper: the context manager's way
        handed.append(seconds)  # type: ignore[arg-type]
        return REAL_TIMEOUT(seconds)

    return timeout


def attempts(monkeypatch: pytest.MonkeyPatch, *, wrapped: bool, fail: int, call: str = "find_one",
             outer: float | None = None, **options: Any) -> tuple[list[tuple[Any, ...]], list[float], Any]:
    """Run one ``call`` on a fresh embedded Database whose User handle fails ``fail`` times, on a
    hand-moved clock: what each attempt saw, what ``pymongo.timeout`` was handed, the result."""
    db = Database("mongomock://localhost/csot", ensure_indexes=False, audit=False, journal=False, **options).connect()
    try:
        db.executor.runtime.retry.sleep = lambda s: None
        db.executor.runtime.retry.waits = lambda: iter([0.1] * 10)  # no jitter: the same waits both ways
        user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
        info = db.executor.runtime.registry.resolve("User")
        method = "find_one" if call == "find_one" else "insert_one"
        recorder = Recorder(db.executor.runtime.coll(info), method, fail)
        db.executor.runtime.gateway.collections[info.collection] = recorder
        handed: list[float] = []
        clock = StepClock()
        db.executor.runtime.retry.clock = clock  # the policy's own clock: the same hand-moved one
        with monkeypatch.context() as patch:
            patch.setattr(time, "monotonic", clock)
            if wrapped:
                patch.setattr(pymongo, "timeout", wrapped_timeout(handed))
            before = dict(contextvars.copy_context())

            def one() -> Any:
                if call == "find_one":
                    return db.find_one(User, {"id": user.id}, **({"timeout_ms": 4000} if outer == "call" else {}))
                return db.create(User, {"email": "bob@example.com", "name": "Bob"})

            try:
                if isinstance(outer, float):
                    with REAL_TIMEOUT(outer):  # the application's own, around the call
                        result: Any = one()
                else:
                    result = one()
            except Exception as exc:  # noqa: BLE001 - compared between the two ways
                result = exc
            assert dict(contextvars.copy_context()) == before  # every variable restored
        return recorder.seen, handed, result
    finally:
        db.disconnect()


@pytest.mark.parametrize("call", ["find_one", "create"])
def test_every_bounded_call_enters_pymongo_timeout_once_whatever_its_retries(monkeypatch, call):
    for fail in (0, 2):
        seen, handed, result = attempts(monkeypatch, wrapped=True, fail=fail, call=call)
        assert handed == [30.0] and len(seen) == fail + 1 and not isinstance(result, Exception)


@pytest.mark.parametrize("fail", [0, 1, 2])
@pytest.mark.parametrize("call", ["find_one", "create"])
def test_each_attempt_runs_under_the_state_pymongo_timeout_would_set(monkeypatch, fail, call):
    direct, handed_direct, result_direct = attempts(monkeypatch, wrapped=False, fail=fail, call=call)
    managed, handed_managed, result_managed = attempts(monkeypatch, wrapped=True, fail=fail, call=call)
    assert handed_direct == [] and handed_managed == [30.0]  # one timeout for the call, all attempts (counted when wrapped)
    assert len(direct) == fail + 1 and direct == managed
    timeout, deadline, rtt, bound = direct[0]
    assert (timeout, rtt) == (30.0, 0.0) and type(rtt) is float
    assert bound[0] == 30_000 and bound[2] == "operation_timeout_ms"
    # the bound starts at the run step's first read, PyMongo's deadline at the next (its own)
    assert deadline == pytest.approx(bound[1] + 0.25)
    assert all(seen == direct[0] for seen in direct[1:])  # a retry runs under the same deadline
    assert type(result_direct) is type(result_managed)


def test_a_retry_that_runs_out_of_budget_fails_the_same_way(monkeypatch):
    # 1 s budget, a clock moving 0.25 s a read: the retries stop at the deadline
    direct, _, error_direct = attempts(monkeypatch, wrapped=False, fail=5, operation_timeout_ms=1000)
    managed, _, error_managed = attempts(monkeypatch, wrapped=True, fail=5, operation_timeout_ms=1000)
    assert direct == managed and direct[0][0] == 1.0 and len(direct) < 6  # stopped by the budget
    assert isinstance(error_direct, (DatabaseConnectionError, OperationTimeoutError))
    assert type(error_direct) is type(error_managed) and str(error_direct) == str(error_managed)


@pytest.mark.parametrize("outer", [0.5, 3600.0, "call"])
def test_an_outer_deadline_and_a_call_budget_are_kept_as_pymongo_timeout_keeps_them(monkeypatch, outer):
    direct, _, _ = attempts(monkeypatch, wrapped=False, fail=1, outer=outer)
    managed, handed, _ = attempts(monkeypatch, wrapped=True, fail=1, outer=outer)
    assert direct == managed
    timeout, deadline, _, bound = direct[0]
    if outer == 0.5:  # the application's nearer deadline stays PyMongo's
        assert deadline < bound[1]
    elif outer == "call":
        assert bound[:1] == (4000,) and bound[2] == "timeout_ms" and timeout == handed[0] < 4.0


def test_operation_timeout_ms_none_sets_no_timeout(monkeypatch):
    direct, handed, result = attempts(monkeypatch, wrapped=True, fail=1, operation_timeout_ms=None)
    assert handed == [] and direct == [(None, float("inf"), 0.0, None)] * 2 and result.name == "Ann"


def test_a_failure_inside_restores_every_variable(monkeypatch):
    db = Database("mongomock://localhost/csot2", ensure_indexes=False, audit=False, journal=False).connect()
    try:
        rt = db.executor.runtime
        info = rt.registry.resolve("User")
        before = dict(contextvars.copy_context())

        def boom() -> Any:
            assert _csot.TIMEOUT.get() == 30.0
            raise KeyboardInterrupt  # not a driver error: not translated, not retried

        with pytest.raises(KeyboardInterrupt):
            run.call(rt, info, "find_one", boom)
        with pytest.raises(Exception, match="find_one on User"):
            run.call(rt, info, "find_one", lambda: (_ for _ in ()).throw(pm.OperationFailure("bad", code=2)))
        assert dict(contextvars.copy_context()) == before
        assert db.find_one(User, {"id": ObjectId()}) is None
    finally:
        db.disconnect()


def test_each_bounded_call_enters_one_pymongo_timeout_context(monkeypatch, db):
    entered: list[float] = []
    real_enter = _csot._TimeoutContext.__enter__

    def counting(self: Any) -> None:
        entered.append(self._timeout)
        real_enter(self)

    monkeypatch.setattr(_csot._TimeoutContext, "__enter__", counting)
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    entered.clear()
    assert db.find_one(User, {"id": user.id}).name == "Ann"
    assert entered == [30.0]
    monkeypatch.setattr(pymongo, "timeout", wrapped_timeout([]))  # wrapped: still one context
    assert db.find_one(User, {"id": user.id}).name == "Ann"
    assert entered == [30.0, 30.0]


@pytest.mark.parametrize("change", ["extra variable", "rtt", "deadline", "missing"])
def test_a_pymongo_timeout_that_sets_anything_else_has_it_in_place_during_the_driver_call(monkeypatch, change):
    """Whatever ``pymongo.timeout`` sets (another PyMongo, an instrumentation that replaced it,
    before or after astro_db's import), the driver call runs inside it: the run step never
    sets PyMongo's state itself."""
    extra: contextvars.ContextVar[int] = contextvars.ContextVar("extra", default=0)
    inside: list[tuple[Any, ...]] = []

    class Other:
        def __init__(self, seconds: float) -> None:
            self.inner = REAL_TIMEOUT(seconds)

        def __enter__(self) -> None:
            self.inner.__enter__()
            if change == "extra variable":
                self.token = extra.set(1)
            elif change == "rtt":
                self.token = _csot.RTT.set(0.001)
            elif change == "deadline":
                self.token = _csot.DEADLINE.set(_csot.DEADLINE.get() + 1.0)
            else:
                self.token = _csot.TIMEOUT.set(None)

        def __exit__(self, *exc: Any) -> None:
            token = self.token
            token.var.reset(token)
            self.inner.__exit__(*exc)

    db = Database("mongomock://localhost/csot3", ensure_indexes=False, audit=False, journal=False).connect()
    try:
        rt = db.executor.runtime
        info = rt.registry.resolve("User")
        monkeypatch.setattr(pymongo, "timeout", Other)
        before = dict(contextvars.copy_context())
        run.call(rt, info, "find_one", lambda: inside.append((extra.get(), _csot.RTT.get(), _csot.TIMEOUT.get())))
        assert dict(contextvars.copy_context()) == before
    finally:
        db.disconnect()
    [(extra_seen, rtt, timeout)] = inside
    assert extra_seen == (1 if change == "extra variable" else 0)
    assert rtt == (0.001 if change == "rtt" else 0.0)
    assert timeout == (None if change == "missing" else 30.0)
