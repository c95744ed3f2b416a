"""Operation time bounds: ``timeout_ms=`` per call, ``operation_timeout_ms`` by default.

A bound covers the whole service call, retries and backoff waits included: the public method
(``@bounded``) opens the bound, and the run step (``ops.steps.run.call``) puts each driver call under
``pymongo.timeout(remaining)`` (PyMongo's client-side operation timeout, CSOT) and stops
retrying when the next wait would pass the deadline. A call that runs out of time raises
``OperationTimeoutError``; a busy pool still raises ``PoolExhaustedError`` (more telling).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pymongo
from pymongo import errors as pm

from ..errors import AstroDBError, ConfigError, OperationTimeoutError, scrub, translate

__all__ = ["Bound", "bounded", "current_bound", "under", "final_error", "afresh"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Bound:
    """A time bound: ``ms`` as given and the ``deadline`` (a ``time.monotonic()`` value)."""

    ms: float
    deadline: float
    source: str  # "timeout_ms" (this call) or "operation_timeout_ms" (the config default)

    @classmethod
    def starting_now(cls, ms: float, source: str) -> Bound:
        return cls(ms, time.monotonic() + ms / 1000.0, source)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


_call_bound: contextvars.ContextVar[Bound | None] = contextvars.ContextVar("astro_db_call_bound", default=None)


def check_timeout_ms(value: Any) -> float:
    """``timeout_ms`` as a positive number, or ``ConfigError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"timeout_ms must be a positive number of milliseconds, got {value!r}", key="timeout_ms")
    return float(value)


def bounded(method: F) -> F:
    """Give a public ``Database`` method a keyword-only ``timeout_ms=None`` bounding the call."""

    @functools.wraps(method)
    def wrapper(*args: Any, timeout_ms: float | None = None, **kwargs: Any) -> Any:
        if timeout_ms is None:
            return method(*args, **kwargs)
        bound = Bound.starting_now(check_timeout_ms(timeout_ms), "timeout_ms")
        outer = _call_bound.get()
        if outer is not None and outer.deadline < bound.deadline:
            bound = outer  # a nested call never outlives its caller's bound
        token = _call_bound.set(bound)
        try:
            return method(*args, **kwargs)
        finally:
            _call_bound.reset(token)

    signature = inspect.signature(method)
    extra = inspect.Parameter("timeout_ms", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="float | None")
    params = list(signature.parameters.values())
    at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    wrapper.__signature__ = signature.replace(parameters=[*params[:at], extra, *params[at:]])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def under_call_bound(timeout_ms: float) -> Iterator[None]:
    """What ``bounded`` does for one call, as a context (a nested bound never outlives its caller's)."""
    bound = Bound.starting_now(check_timeout_ms(timeout_ms), "timeout_ms")
    outer = _call_bound.get()
    if outer is not None and outer.deadline < bound.deadline:
        bound = outer
    token = _call_bound.set(bound)
    try:
        yield
    finally:
        _call_bound.reset(token)


def current_bound(default_ms: float | None) -> Bound | None:
    """The bound of the call in progress, else one of ``default_ms`` starting now, else None."""
    bound = _call_bound.get()
    if bound is None and default_ms:
        bound = Bound.starting_now(default_ms, "operation_timeout_ms")
    return bound


@contextlib.contextmanager
def afresh(ms: float | None, source: str) -> Iterator[None]:
    """Run the block under a new bound of ``ms`` (none: the configured default), whatever is left
    of the call's: for the one read that finds out whether a write whose bound ran out landed."""
    token = _call_bound.set(Bound.starting_now(ms, source) if ms else None)
    try:
        yield
    finally:
        _call_bound.reset(token)


@contextlib.contextmanager
def under(bound: Bound | None, where: str) -> Iterator[None]:
    """Run the block under PyMongo's client-side timeout for what is left of ``bound``."""
    if bound is None:
        yield
        return
    remaining = bound.remaining_s()
    if remaining <= 0:
        raise expired_error(bound, where)
    token = _call_bound.set(bound)  # visible to anything the driver call runs (hooks, nested reads)
    try:
        with pymongo.timeout(remaining):
            yield
    finally:
        _call_bound.reset(token)


def expired_error(bound: Bound, where: str, cause: BaseException | None = None) -> OperationTimeoutError:
    why = f"; last failure: {type(cause).__name__}: {scrub(str(cause)).split(',')[0][:200]}" if cause is not None else ""
    return OperationTimeoutError(f"{where} did not finish within {bound.ms:g} ms ({bound.source}){why}")


def final_error(exc: BaseException, bound: Bound | None, *, operation: str, model: str | None) -> AstroDBError:
    """The astro_db error a failed driver call ends in: ``OperationTimeoutError`` when its bound
    ran out on a timeout, else ``translate``'s; the message says how many attempts were made."""
    where = f"{operation} on {model}" if model else operation
    timed_out = getattr(exc, "timeout", False) and not isinstance(exc, pm.WaitQueueTimeoutError)
    if bound is not None and timed_out and bound.expired():
        error: AstroDBError = expired_error(bound, where, exc)
    else:
        error = translate(exc, operation=operation, model=model)
    attempts = getattr(exc, "astro_attempts", 1)
    if attempts > 1 and error.args:
        error.args = (f"{error.args[0]} (gave up after {attempts} attempts)", *error.args[1:])
    error.attempts = attempts  # type: ignore[attr-defined]
    return error
