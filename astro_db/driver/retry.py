"""What is retried, how (``backoff``'s wait generators), and the circuit breaker.

Retried (``is_retryable``): network errors and ``AutoReconnect``, not-primary and
shutting-down replies, server-selection timeouts, and any error the driver labels
``RetryableWriteError``. Never retried: validation, duplicate keys, auth, bad queries,
pool exhaustion (more attempts would only lengthen the queue), anything inside a transaction
(the whole unit is retried by ``with_transaction``), and non-idempotent updates
(``$inc``/``$push``), which rely on the driver's own retryable writes instead.

The circuit breaker counts *unreachable-server* failures only (``is_connection_failure``): a
slow query timing out or a busy pool says nothing about the server being down. While it is
open, any sign that the server answers again (a successful driver heartbeat, or the breaker's
own cheap ping every ``probe_interval_s``: ``BreakerHeartbeats``, ``CircuitBreaker.watch``)
ends the cool-down at once, so the next call probes within a second of the server's return.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import backoff
from pymongo import errors as pm
from pymongo import monitoring

from ..config import RetryConfig
from ..errors import DatabaseConnectionError, scrub

__all__ = ["is_retryable", "is_connection_failure", "RetryPolicy", "CircuitBreaker", "BreakerHeartbeats"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Server codes the retryable-reads/writes specifications list as safe to send again:
# not primary / node recovering / shutting down / host unreachable / socket and time-limit trouble.
_RETRYABLE_CODES = frozenset({6, 7, 89, 91, 134, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed operation may be sent again as it is."""
    if isinstance(exc, (pm.DuplicateKeyError, pm.WaitQueueTimeoutError)):
        return False
    if isinstance(exc, pm.PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, pm.ConnectionFailure):  # AutoReconnect, NotPrimary, selection and network timeouts
        return True
    if isinstance(exc, pm.OperationFailure):  # auth, bad query, validation: codes not listed
        return exc.code in _RETRYABLE_CODES
    return False


def is_connection_failure(exc: BaseException) -> bool:
    """Failures that say the server cannot be reached (these feed the circuit breaker).

    Not counted: ``WaitQueueTimeoutError`` (PyMongo 4 makes it a ``ConnectionFailure``, but it
    means our own pool is busy) and ``NetworkTimeout`` (an operation outran its time bound on a
    server that did answer the connection)."""
    if isinstance(exc, (pm.WaitQueueTimeoutError, pm.NetworkTimeout)):
        return False
    return isinstance(exc, pm.ConnectionFailure)


def describe(exc: BaseException) -> str:
    """A one-line cause for a log line: type and the first clause of the message, scrubbed."""
    return f"{type(exc).__name__}: {scrub(str(exc)).split(',')[0][:200]}"


class RetryPolicy:
    """Retries retryable failures with exponential backoff and full jitter.

    Waits come from ``backoff.expo`` (base 2, ``backoff_base_s`` x 2^n, capped at
    ``backoff_max_s``) through ``backoff.full_jitter``; ``sleep`` and ``clock`` are injectable
    so tests never wait. ``retries`` / ``exhausted`` count retries made and calls that gave up.
    """

    def __init__(self, config: RetryConfig, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = config.retry_attempts
        self.base_s = config.backoff_base_s
        self.max_s = config.backoff_max_s
        self.jitter: Callable[[float], float] | None = backoff.full_jitter if config.backoff_jitter else None
        self.sleep = sleep
        self.clock = clock
        self._retries = itertools.count()
        self._exhausted = itertools.count()
        self.retries = 0
        self.exhausted = 0

    def waits(self) -> Iterator[float]:
        """The waits between attempts, in seconds (jittered when configured)."""
        gen = backoff.expo(base=2, factor=self.base_s, max_value=self.max_s)
        next(gen)  # backoff's generators are primed with one send(None)
        for value in gen:
            yield self.jitter(value) if self.jitter else value

    def call(self, fn: Callable[[], T], *, operation: str, retry: bool = True, deadline: float | None = None,
             failed: BaseException | None = None) -> T:
        """Run ``fn``; on a retryable failure wait and run it again, up to ``attempts`` times.

        ``deadline`` (a ``clock()`` value: the call's one budget) stops retrying when the next
        wait would pass it, so no attempt starts past the deadline and each one gets what is left.
        ``failed``: the first attempt was already made, bare, by the caller (the run step, whose
        hot path makes the driver call itself) and failed with this error; the policy goes on
        from there, as if its own first attempt had failed so.
        The last failure is raised as it is (the caller translates it); its ``astro_attempts``
        attribute says how many attempts were made, ``astro_stopped`` why they stopped
        (``"attempts"``: all made, ``"deadline"``: the budget would have run out first).
        """
        if not retry or self.attempts <= 1:
            if failed is not None:
                raise failed
            return fn()
        waits: Iterator[float] | None = None
        for attempt in itertools.count(1):
            try:
                if failed is not None:
                    first, failed = failed, None
                    raise first
                return fn()
            except pm.PyMongoError as exc:
                if not is_retryable(exc):
                    if attempt > 1:
                        exc.astro_attempts = attempt  # type: ignore[attr-defined]
                    raise
                if waits is None:  # built on the first failure only: the fast path stays bare
                    waits = self.waits()
                wait = next(waits)
                out_of_time = deadline is not None and self.clock() + wait >= deadline
                if attempt >= self.attempts or out_of_time:
                    exc.astro_attempts = attempt  # type: ignore[attr-defined]
                    exc.astro_stopped = "attempts" if attempt >= self.attempts else "deadline"  # type: ignore[attr-defined]
                    if attempt > 1:
                        self.exhausted = next(self._exhausted) + 1
                    raise
                self.retries = next(self._retries) + 1
                log.warning("%s failed on attempt %d/%d (%s); retrying in %.2fs",
                            operation, attempt, self.attempts, describe(exc), wait)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def stats(self) -> dict[str, int]:
        """``{"attempts": configured, "retries": made so far, "exhausted": calls that gave up}``."""
        return {"attempts": self.attempts, "retries": self.retries, "exhausted": self.exhausted}


class CircuitBreaker:
    """Fail fast after ``threshold`` consecutive connection failures, for ``cooldown_s``.

    closed -> (threshold failures) -> open -> (cool-down over, or the server seen answering:
    ``server_seen``) -> half-open: one probe call goes through (``before_call`` returns True
    for it: the run step sends it once, without retries, under the call's budget); its success
    closes the breaker, its connection failure opens it again, any other outcome (the server
    answered, or the call never reached it) leaves it half-open for the next call to probe.

    ``watch(ping)`` makes the breaker look for the server itself while open: a daemon thread
    calls ``ping()`` (a cheap bounded ping: True when the server answered, False when not,
    None when there is nothing to ask any more) every ``probe_interval_s`` and ends the
    cool-down as soon as it answers, so calls resume within about a second of its return.
    """

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic,
                 *, probe_interval_s: float = 0.5) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        #: no failure counted, not open, no probe out: what the run step looks at, with no call,
        #: before and after every driver call (``before_call`` and ``record_success`` are called
        #: only when it is False). Set wherever those three change, under the lock.
        self.idle = True
        self._lock = threading.Lock()
        self._ping: Callable[[], bool | None] | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.seen_early = 0  # cool-downs ended early because the server answered again

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` (failing fast) or ``"half-open"`` (the next call probes)."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def before_call(self) -> bool:
        """Raise ``DatabaseConnectionError`` at once while open; let one probe through after.

        Returns True when this call is the probe (send it once: its outcome decides)."""
        if self._opened_at is None:  # closed: no lock (a failure racing this call opens it for the next)
            return False
        with self._lock:
            state = self._state()
            if state == "closed":
                return False
            if state == "half-open" and not self._probing:
                self._probing = True
                self.idle = False
                return True
            remaining = max(0.0, self.cooldown_s - (self._clock() - (self._opened_at or 0)))
        raise DatabaseConnectionError(
            f"MongoDB is unreachable ({self._failures} consecutive connection failures); failing fast "
            f"for another {remaining:.1f}s before probing again"
        )

    def record_success(self) -> None:
        """The server answered: close the breaker and forget past failures."""
        if self._failures == 0 and self._opened_at is None and not self._probing:
            return  # nothing to forget: the common case takes no lock
        with self._lock:
            if self._opened_at is not None:
                log.warning("circuit breaker closed: MongoDB answers again")
            self._failures = 0
            self._opened_at = None
            self._probing = False
            self.idle = True

    def record_failure(self, exc: BaseException) -> None:
        """A call failed with ``exc``; connection failures count towards opening the breaker,
        a server's own reply (``OperationFailure``: duplicate key, bad query...) proves it is up."""
        if isinstance(exc, pm.OperationFailure):
            self.record_success()
            return
        if not is_connection_failure(exc):
            self.release_probe()
            return
        with self._lock:
            self._failures += 1
            self.idle = False
            if self._probing or self._failures >= self.threshold:
                if self._opened_at is None or self._probing:
                    log.error("circuit breaker open after %d consecutive connection failures; failing fast for %.1fs "
                              "or until the server answers again", self._failures, self.cooldown_s)
                self._opened_at = self._clock()
                self._start_watching()
            self._probing = False

    def release_probe(self) -> None:
        """A call ended without saying anything about the server: let the next call probe."""
        with self._lock:
            self._probing = False
            self.idle = self._failures == 0 and self._opened_at is None

    def server_seen(self) -> bool:
        """The server answered (a heartbeat, a ping): end the cool-down now, so the next call
        probes. True when that shortened an open breaker's cool-down."""
        if self._opened_at is None:  # closed: nothing to shorten (no lock: heartbeats are frequent)
            return False
        with self._lock:
            if self._opened_at is None or self._state() != "open":
                return False
            self._opened_at = self._clock() - self.cooldown_s
            self.seen_early += 1
        log.info("circuit breaker: MongoDB answers again; the next call probes it")
        return True

    # --- looking for the server while open ---------------------------------------------------

    def watch(self, ping: Callable[[], bool | None] | None) -> None:
        """While open, ``ping()`` every ``probe_interval_s`` and end the cool-down when it says
        True (None: stop looking). ``watch(None)`` stops."""
        self._ping = ping
        if ping is None:
            self._stop.set()
            return
        self._stop.clear()
        with self._lock:
            if self._opened_at is not None:
                self._start_watching()

    def _start_watching(self) -> None:  # called with the lock held
        if self._ping is None or self._stop.is_set() or (self._watcher is not None and self._watcher.is_alive()):
            return
        self._watcher = threading.Thread(target=self._look_for_the_server, name="astro_db-breaker-watch", daemon=True)
        self._watcher.start()

    def _look_for_the_server(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._opened_at is None or self._state() != "open":
                    self._watcher = None
                    return
            ping = self._ping
            try:
                answered = ping() if ping is not None else None
            except Exception:  # noqa: BLE001 - a failed ping is a "not yet"
                answered = False
            if answered is None:
                break
            if answered:
                self.server_seen()
                continue
            self._stop.wait(self.probe_interval_s)
        with self._lock:
            self._watcher = None

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def stats(self) -> dict[str, Any]:
        """``{"state", "consecutive_failures", "threshold", "cooldown_s", "seen_early"}`` for metrics."""
        return {"state": self.state, "consecutive_failures": self._failures,
                "threshold": self.threshold, "cooldown_s": self.cooldown_s, "seen_early": self.seen_early}


class BreakerHeartbeats(monitoring.ServerHeartbeatListener):
    """The driver's server monitor feeding the breaker: a successful heartbeat from a server that
    can take writes ends an open breaker's cool-down (``CircuitBreaker.server_seen``)."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        if self.breaker._opened_at is not None and getattr(event.reply, "is_writable", True):
            self.breaker.server_seen()

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        pass
