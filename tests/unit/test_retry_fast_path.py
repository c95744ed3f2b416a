"""RetryPolicy runs the first attempt bare; failures still retry exactly as before."""

from __future__ import annotations

import pytest
from pymongo import errors as pm

from astro_db.config import DatabaseConfig
from astro_db.driver.retry import RetryPolicy


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(DatabaseConfig(retry_attempts=3, backoff_base_s=0.001, backoff_max_s=0.001, backoff_jitter=False).retry)


def flaky(failures: list[BaseException]):
    calls = []

    def fn():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    return fn, calls


def test_a_first_success_calls_once(policy):
    fn, calls = flaky([])
    assert policy.call(fn, operation="find") == "ok" and len(calls) == 1


def test_a_retryable_first_failure_is_retried_up_to_the_attempts(policy):
    fn, calls = flaky([pm.AutoReconnect("a"), pm.AutoReconnect("b")])
    assert policy.call(fn, operation="find") == "ok" and len(calls) == 3
    fn, calls = flaky([pm.AutoReconnect(str(n)) for n in range(5)])
    with pytest.raises(pm.AutoReconnect):
        policy.call(fn, operation="find")
    assert len(calls) == 3


def test_a_non_retryable_failure_is_raised_at_once(policy):
    fn, calls = flaky([pm.OperationFailure("bad", 2)])
    with pytest.raises(pm.OperationFailure):
        policy.call(fn, operation="find")
    assert len(calls) == 1


def test_the_first_retry_is_logged_like_any_other(policy, caplog):
    fn, _ = flaky([pm.AutoReconnect("link down")])
    with caplog.at_level("WARNING", logger="astro_db.driver.retry"):
        policy.call(fn, operation="find on User")
    assert "find on User failed on attempt 1/3 (AutoReconnect: link down)" in caplog.text
