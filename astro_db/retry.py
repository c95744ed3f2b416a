"""What is retried, how (the ``backoff`` library), and the circuit breaker.

Retried: network errors, ``AutoReconnect``, not-primary, server-selection timeouts and errors
labelled ``RetryableWriteError``. Never retried: validation, duplicate keys, auth, bad queries,
anything inside a transaction (the whole unit is retried by ``with_transaction``), and
non-idempotent updates (``$inc``/``$push``), which rely on the driver's own retryable writes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, TypeVar

import backoff
from pymongo import errors as pm

from .config import DatabaseConfig
from .errors import DatabaseConnectionError

__all__ = ["is_retryable", "RetryPolicy", "CircuitBreaker"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_NOT_PRIMARY_CODES = {10107, 13435, 13436, 11600, 11602, 189, 91, 7, 6, 89, 9001, 262}


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed operation may be sent again as it is."""
    if isinstance(exc, (pm.DuplicateKeyError, pm.WaitQueueTimeoutError)):
        return False
    if isinstance(exc, pm.PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, (pm.AutoReconnect, pm.ServerSelectionTimeoutError, pm.NetworkTimeout)):
        return True
    if isinstance(exc, pm.ConnectionFailure):
        return True
    if isinstance(exc, pm.OperationFailure):
        return exc.code in _NOT_PRIMARY_CODES
    return False


def is_connection_failure(exc: BaseException) -> bool:
    """Failures that say the server is unreachable (these feed the circuit breaker)."""
    return isinstance(exc, (pm.ConnectionFailure, pm.ServerSelectionTimeoutError)) and not isinstance(
        exc, pm.WaitQueueTimeoutError
    )


class RetryPolicy:
    """Retries retryable failures with exponential backoff and full jitter."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.attempts = config.retry_attempts
        self.base_s = config.backoff_base_s
        self.max_s = config.backoff_max_s
        self.jitter = backoff.full_jitter if config.backoff_jitter else None

    def call(self, fn: Callable[[], T], *, operation: str, retry: bool = True) -> T:
        """Run ``fn``; on a retryable failure wait and run it again, up to ``attempts`` times."""
        if not retry or self.attempts <= 1:
            return fn()
        try:  # the first attempt runs bare: building the backoff wrapper costs ~30 µs a call
            return fn()
        except pm.PyMongoError as exc:
            if not is_retryable(exc):
                raise
            first: list[BaseException] = [exc]

        def attempt() -> T:
            if first:
                raise first.pop()  # replay the first failure so backoff logs and waits for it
            return fn()

        def log_retry(details: dict[str, Any]) -> None:
            exc = details["exception"]
            log.warning(
                "%s failed on attempt %d/%d (%s: %s); retrying in %.2fs",
                operation, details["tries"], self.attempts, type(exc).__name__,
                str(exc).split(",")[0][:200], details["wait"],
            )

        wrapped = backoff.on_exception(
            backoff.expo,
            pm.PyMongoError,
            max_tries=self.attempts,
            giveup=lambda exc: not is_retryable(exc),
            base=2,
            factor=self.base_s,
            max_value=self.max_s,
            jitter=self.jitter,
            on_backoff=log_retry,
            logger=None,
        )(attempt)
        return wrapped()


class CircuitBreaker:
    """Fail fast after ``threshold`` consecutive connection failures, for ``cooldown_s``.

    closed -> (threshold failures) -> open -> (cool-down over) -> half-open: one probe call
    goes through; its success closes the breaker, its failure opens it again.
    """

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise ``DatabaseConnectionError`` at once while open; let one probe through after."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half-open" and not self._probing:
                self._probing = True
                return
            remaining = max(0.0, self.cooldown_s - (self._clock() - (self._opened_at or 0)))
        raise DatabaseConnectionError(
            f"MongoDB is unreachable ({self.threshold} consecutive connection failures); failing fast "
            f"for another {remaining:.1f}s before probing again"
        )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self, exc: BaseException) -> None:
        if not is_connection_failure(exc):
            with self._lock:
                self._probing = False
            return
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                if self._opened_at is None or self._probing:
                    log.error("circuit breaker open after %d connection failures", self._failures)
                self._opened_at = self._clock()
            self._probing = False

    @property
    def consecutive_failures(self) -> int:
        return self._failures
