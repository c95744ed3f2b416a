"""One budget per call: with the defaults every call has one 30 s deadline, retries included.

What is checked (no wall-clock limits): the bound the run step hands PyMongo (its client-side
timeout, ``pymongo.timeout``: the deadline each attempt runs under), the attempts made, why
they stopped, and the error's message; the retry policy's clock is injected where the budget
has to run out.
"""

from __future__ import annotations

import time
import uuid

import pytest
from pymongo import _csot
from pymongo import errors as pm

from astro_db import Database
from astro_db.config import DatabaseConfig
from astro_db.errors import DatabaseConnectionError, OperationTimeoutError


class Recorder:
    """A collection proxy: ``method`` fails with ``exc()`` every time and records, per attempt,
    the PyMongo deadline and remaining time it was sent under."""

    def __init__(self, real, method: str, exc) -> None:
        self.real, self.method, self.exc = real, method, exc
        self.deadlines: list[float] = []
        self.remaining: list[float | None] = []

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            self.deadlines.append(_csot.get_deadline())
            self.remaining.append(_csot.remaining())
            raise self.exc()

        return call


def failing(db, method: str, exc=lambda: pm.AutoReconnect("connection refused")) -> Recorder:
    info = db.executor.runtime.registry.resolve("User")
    recorder = Recorder(db.executor.runtime.coll(info), method, exc)
    db.executor.runtime.gateway.collections[info.collection] = recorder
    return recorder


def database(**options) -> Database:
    db = Database(f"mongomock://localhost/t{uuid.uuid4().hex[:8]}", **options)
    db.connect()
    db.executor.runtime.retry.sleep = lambda s: None  # no real waiting
    return db


def test_the_default_budget_is_30_s_per_call_and_not_a_client_wide_timeout():
    config = DatabaseConfig()
    assert config.operation_timeout_ms == 30_000
    assert config.retry_attempts == 3 and config.server_selection_timeout_ms == 30_000
    # the run step bounds each call; cursors and change streams opened outside it are not cut at 30 s
    assert "timeoutMS" not in DatabaseConfig(url="mongodb://h/astro").client_options()


def test_with_the_defaults_every_attempt_of_a_call_runs_under_one_30_s_deadline():
    db = database()
    recorder = failing(db, "find_one")
    began = time.monotonic()
    with pytest.raises(DatabaseConnectionError) as info:
        db.find_one("User", {})
    assert len(recorder.deadlines) == 3  # retry_attempts=3, all made: nothing ran out
    assert len(set(recorder.deadlines)) == 1  # one deadline for the whole call, not one per attempt
    assert began + 29.0 < recorder.deadlines[0] <= began + 30.0 + 1.0
    assert all(r is not None and 0 < r <= 30.0 for r in recorder.remaining)
    assert "gave up after 3 attempts, within the 30000 ms budget (operation_timeout_ms)" in str(info.value)
    assert info.value.attempts == 3
    db.disconnect()


def test_no_retry_starts_past_the_deadline_and_the_message_names_the_real_attempts_and_budget():
    db = database(backoff_base_s=10.0, backoff_max_s=40.0, backoff_jitter=False)
    policy = db.executor.runtime.retry
    skipped = [0.0]  # the waits "slept" move the policy's clock on: no real waiting
    policy.clock = lambda: time.monotonic() + skipped[0]
    policy.sleep = lambda s: skipped.__setitem__(0, skipped[0] + s)
    recorder = failing(db, "count_documents")
    with pytest.raises(DatabaseConnectionError) as info:
        db.count("User", {})
    # attempt 1, wait 10 s, attempt 2; a 20 s wait would pass the 30 s deadline: no attempt 3
    assert len(recorder.deadlines) == 2 and skipped == [10.0]
    message = str(info.value)
    assert "gave up after 2 of 3 attempts: another would have started past the 30000 ms budget " \
           "(operation_timeout_ms)" in message
    assert "configured timeouts" not in message
    db.disconnect()


def test_a_bound_that_runs_out_names_the_attempts_made_out_of_those_allowed():
    db = database(operation_timeout_ms=1000)

    def spent() -> pm.ServerSelectionTimeoutError:
        while _csot.remaining() > 0:  # what PyMongo's server selection does until the deadline
            time.sleep(0.001)
        exc = pm.ServerSelectionTimeoutError("localhost:1: [Errno 111] Connection refused (configured timeouts: "
                                             "timeoutMS: 1000.0ms, connectTimeoutMS: 20000.0ms)")
        return exc

    recorder = failing(db, "find_one", spent)
    with pytest.raises(OperationTimeoutError) as info:
        db.find_one("User", {})
    assert len(recorder.deadlines) == 1
    assert str(info.value).startswith("find_one on User did not finish within 1000 ms (operation_timeout_ms) "
                                      "after 1 of 3 attempts; last failure: ServerSelectionTimeoutError")
    db.disconnect()


def test_timeout_ms_per_call_replaces_the_default_budget():
    db = database()
    recorder = failing(db, "find_one")
    began = time.monotonic()
    with pytest.raises(DatabaseConnectionError, match=r"within the 500 ms budget \(timeout_ms\)"):
        db.find_one("User", {}, timeout_ms=500)
    assert recorder.deadlines[0] <= began + 0.5 + 0.5


def test_operation_timeout_ms_none_leaves_calls_unbounded():
    db = database(operation_timeout_ms=None)
    recorder = failing(db, "find_one")
    with pytest.raises(DatabaseConnectionError, match=r"gave up after 3 attempts, within no time budget"):
        db.find_one("User", {})
    assert recorder.remaining == [None, None, None]


def test_a_timeout_ms_in_the_url_is_the_budget_unless_operation_timeout_ms_is_given():
    assert DatabaseConfig(url="mongodb://h/astro?timeoutMS=2500").operation_timeout_ms == 2500
    assert DatabaseConfig(url="mongodb://h/astro?timeoutMS=0").operation_timeout_ms is None
    assert DatabaseConfig(url="mongodb://h/astro?timeoutMS=2500", operation_timeout_ms=900).operation_timeout_ms == 900
