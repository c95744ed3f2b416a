"""Step 7, run: one driver call under the breaker, the time bound, retries and translation.

This is the only place a driver call is made from: the circuit breaker is checked, the call is
put under PyMongo's client-side timeout for what is left of the call's one budget (``timeouts``:
``timeout_ms=``, else ``operation_timeout_ms``, 30 s by default; retries and server selection
included), retried by the policy (``retry``; never inside a transaction, never a
non-idempotent write: the caller says ``retry=False``; never the breaker's probe, which is sent
once), a failure is translated into the ``astro_db.errors`` tree,
and the monitor records the latency and error kind (and a read's query shape) in one call; the
operation's span, when one is recording, counts the call and its retries (``monitoring.tracing``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ...driver import timeouts
from ...errors import AstroDBError
from ...monitoring import tracing
from ...registry import ModelInfo
from ..runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from ..._types import MaybeTransaction

__all__ = ["call", "read_on", "END", "WRITE_OPERATIONS"]

T = TypeVar("T")
#: What ``read_on`` returns when a cursor is exhausted.
END: Any = object()
WRITE_OPERATIONS = frozenset({"create", "create_many", "update", "update_many", "delete", "delete_many"})


def call(rt: Runtime, info: ModelInfo | None, operation: str, fn: Callable[[], T], transaction: MaybeTransaction = None, *,
         retry: bool = True, query: tuple[Any, Any] | None = None) -> T:
    """Run ``fn`` (one driver call) as the module docstring says; its result or an AstroDBError.

    The short path: ``RetryPolicy.call`` runs ``fn`` directly unless it fails; the breaker takes
    no lock while closed. Only ``operation_timeout_ms=None`` (no bound) skips the timeout context."""
    name = f"{operation} on {info.name}" if info else operation
    model = info.name if info else None
    monitor = rt.monitor
    started = time.perf_counter()
    try:
        probe = rt.breaker.before_call()
        bound = timeouts.current_bound(rt.config.timeouts.operation_timeout_ms)
        retry = retry and transaction is None and not probe
        if tracing.AVAILABLE:  # the operation's span counts this driver call and its retries
            traced = tracing.current()
            if traced is not None:
                fn = traced.driver_call(fn)
        try:
            if bound is None:
                result = rt.retry.call(fn, operation=name, retry=retry)
            else:
                deadline = bound.deadline
                result = timeouts.call_within(bound, name, lambda: rt.retry.call(fn, operation=name, retry=retry,
                                                                                 deadline=deadline))
        except AstroDBError:
            rt.breaker.release_probe()
            raise
        except Exception as exc:
            rt.breaker.record_failure(exc)
            if info is not None and operation in WRITE_OPERATIONS:
                rt.cache.invalidate(info.name)  # the write may have landed before it failed
            raise timeouts.final_error(exc, bound, operation=operation, model=model,
                                       attempts=rt.retry.attempts if retry else 1) from exc
        except BaseException:
            rt.breaker.release_probe()
            raise
    except AstroDBError as exc:
        monitor.record_operation(model, operation, time.perf_counter() - started, type(exc).__name__, query=query)
        raise
    rt.breaker.record_success()
    monitor.record_operation(model, operation, time.perf_counter() - started, query=query)
    return result


def read_on(rt: Runtime, info: ModelInfo, operation: str, cursor: Any) -> Any:
    """The next document of a cursor ``call`` opened (``END`` when it is exhausted).

    A cursor is retried only before its first batch (inside ``call``, as the drivers' retryable
    reads do); reading on may send a ``getMore``, which is never retried (the server has moved
    the cursor on): a failure there is recorded by the breaker and the monitor and translated."""
    try:
        return next(cursor, END)
    except AstroDBError:
        raise
    except Exception as exc:
        rt.breaker.record_failure(exc)
        rt.monitor.record_operation(info.name, operation, 0.0, type(exc).__name__)
        raise timeouts.final_error(exc, None, operation=operation, model=info.name) from exc
