"""Step 7, run: one driver call under the breaker, the time bound, retries and translation.

This is the only place a driver call is made from: the circuit breaker is checked, the call is
put under PyMongo's client-side timeout for what is left of the call's one budget (``timeouts``:
``timeout_ms=``, else ``operation_timeout_ms``, 30 s by default; retries and server selection
included: ``pymongo.timeout(remaining)``), retried by the policy (``retry``; never inside a transaction, never a
non-idempotent write: the caller says ``retry=False``; never the breaker's probe, which is sent
once), a failure is translated into the ``astro_db.errors`` tree,
and the monitor records the latency and error kind (and a read's query shape) in one call and
counts the call while it is in flight (two lock-free counters: the pool's ``checked_out`` when
no PyMongo pool listener is registered, the default); the operation's span, when one is
recording, counts the call and its retries (``monitoring.tracing``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pymongo
from pymongo import errors as pm

from ...driver import timeouts
from ...errors import AstroDBError
from ...monitoring import tracing
from ...registry import ModelInfo

if TYPE_CHECKING:  # pragma: no cover
    from ..._types import MaybeTransaction
    from ..runtime import Runtime  # which imports this module: it hands the run step to the key vault

__all__ = ["call", "listed", "read_on", "END", "WRITE_OPERATIONS"]

T = TypeVar("T")
#: What ``read_on`` returns when a cursor is exhausted.
END: Any = object()
WRITE_OPERATIONS = frozenset({"create", "create_many", "update", "update_many", "delete", "delete_many"})
#: Whether the monotonic clock is fine enough to time a driver call (Linux and macOS: 1 ns; the
#: same clock as ``perf_counter`` on Linux): then one read of it starts both the latency and the
#: call's default bound. On a coarse one (Windows before Python 3.13: about 16 ms steps) the
#: latency is timed by ``perf_counter`` as before, and the bound reads the monotonic clock itself.
_ONE_CLOCK = time.get_clock_info("monotonic").resolution <= 1e-6


def call(rt: Runtime, info: ModelInfo | None, operation: str, fn: Callable[[], T], transaction: MaybeTransaction = None, *,
         retry: bool = True, query: tuple[Any, Any] | None = None) -> T:
    """Run ``fn`` (one driver call) as the module docstring says; its result or an AstroDBError.

    The short path: the breaker is looked at by its ``idle`` flag (no call while closed with no
    failure counted), one clock read starts the latency and the default bound,
    ``timeouts.enter`` gives the bound (one look), and ``fn`` is called here, bare, under
    ``pymongo.timeout`` for what is left of it; only a failure hands
    it to the retry policy (``RetryPolicy.call(failed=...)``). ``fn`` is best a
    ``functools.partial`` of the driver's method (or of ``listed``), so that the driver is
    called from here and no closure calls back into the module that asked. Only
    ``operation_timeout_ms=None`` (no bound) skips the timeout context."""
    model = info.name if info is not None else None
    monitor = rt.monitor
    breaker = rt.breaker
    if _ONE_CLOCK:  # one read: the latency's start and the default bound's
        clock = timeouts.time.monotonic  # the bounds' clock (``timeouts.time``; a test moves it by hand)
        started = now = clock()
    else:  # a coarse monotonic clock: latencies by perf_counter, the bound reads its own clock
        clock, now = time.perf_counter, None
        started = clock()
    bound = None
    try:
        probe = False if breaker.idle else breaker.before_call()  # idle: closed, nothing to check
        retry = retry and transaction is None and not probe
        if tracing.AVAILABLE:  # the operation's span counts this driver call and its retries
            traced = tracing.current()
            if traced is not None:
                fn = traced.driver_call(fn)
        try:
            bound, remaining, token = timeouts.enter(rt.config.timeouts.operation_timeout_ms, operation, model, now)
            next(monitor.calls_started)  # in flight until it returns or raises (the pool's checked_out)
            try:
                if token is None:
                    result = _attempts(rt, fn, operation, model, retry, None)
                else:
                    try:
                        with pymongo.timeout(remaining):
                            if rt.selection_s is not None and remaining > rt.selection_s:  # selection's own bound
                                result = _selecting(rt, fn, operation, model, retry, bound.deadline)  # type: ignore[union-attr]
                            else:
                                try:  # _attempts, inlined: the first attempt, bare
                                    result = fn()
                                except pm.PyMongoError as exc:
                                    if not retry:
                                        raise
                                    result = rt.retry.call(fn, operation=_name(operation, model), retry=True,
                                                           deadline=bound.deadline, failed=exc)  # type: ignore[union-attr]
                    finally:
                        if token is not timeouts.KEPT:  # KEPT: the call's budget, started here for all its driver calls
                            timeouts.CALL_BOUND.reset(token)
            finally:
                next(monitor.calls_finished)
        except AstroDBError:
            breaker.release_probe()
            raise
        except Exception as exc:
            breaker.record_failure(exc)
            if info is not None and operation in WRITE_OPERATIONS:
                rt.cache.invalidate(info.name)  # the write may have landed before it failed
            raise timeouts.final_error(exc, bound, operation=operation, model=model,
                                       attempts=rt.retry.attempts if retry else 1,
                                       names=rt.crypto.blind_sources.get(model) if model else None) from exc
        except BaseException:
            breaker.release_probe()
            raise
    except AstroDBError as exc:
        monitor.record_operation(model, operation, clock() - started, type(exc).__name__, query=query)
        raise
    if not breaker.idle:  # record_success's own first look, without the call
        breaker.record_success()
    monitor.record_operation(model, operation, clock() - started, query=query)
    return result


def _name(operation: str, model: str | None) -> str:
    """The call's name in the retry policy's log lines: ``find_one on User``."""
    return f"{operation} on {model}" if model else operation


def _attempts(rt: Runtime, fn: Callable[[], T], operation: str, model: str | None, retry: bool,
              deadline: float | None) -> T:
    """The first attempt, bare; after a driver error, the retry policy takes over."""
    try:
        return fn()
    except pm.PyMongoError as exc:
        if not retry:
            raise
        return rt.retry.call(fn, operation=_name(operation, model), retry=True, deadline=deadline, failed=exc)


def _selecting(rt: Runtime, fn: Callable[[], T], operation: str, model: str | None, retry: bool, deadline: float) -> T:
    """``_attempts`` for a budget longer than ``server_selection_timeout_ms``: before each attempt,
    a server is waited for within that bound (``timeouts.await_server``) when none is known."""
    selection_s, client = rt.selection_s, rt.connection.client
    assert selection_s is not None

    def attempt() -> T:
        timeouts.await_server(client, selection_s, deadline)
        return fn()

    return _attempts(rt, attempt, operation, model, retry, deadline)


def listed(method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> list[Any]:
    """``list(method(*args, **kwargs))``: a ``find`` read to its end inside the attempt, so a
    retry sends the query again. Hand it to ``call`` as ``functools.partial(listed, coll.find, ...)``."""
    return list(method(*args, **kwargs))


def read_on(rt: Runtime, info: ModelInfo, operation: str, cursor: Any) -> Any:
    """The next document of a cursor ``call`` opened (``END`` when it is exhausted).

    A cursor is retried only before its first batch (inside ``call``, as the drivers' retryable
    reads do); reading on may send a ``getMore``, which is never retried (the server has moved
    the cursor on): a failure there is recorded by the breaker and the monitor and translated.
    While it reads, it is a call in flight (the pool's ``checked_out`` by default): a ``getMore``
    holds a connection, as PyMongo's pool events count it with ``command_monitoring``."""
    monitor = rt.monitor
    next(monitor.calls_started)
    try:
        return next(cursor, END)
    except AstroDBError:
        raise
    except Exception as exc:
        rt.breaker.record_failure(exc)
        monitor.record_operation(info.name, operation, 0.0, type(exc).__name__)
        raise timeouts.final_error(exc, None, operation=operation, model=info.name,
                                   names=rt.crypto.blind_sources.get(info.name)) from exc
    finally:
        next(monitor.calls_finished)
