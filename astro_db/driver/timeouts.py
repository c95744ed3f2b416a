"""Operation time bounds: ``timeout_ms=`` per call, ``operation_timeout_ms`` by default.

Every call has one: ``operation_timeout_ms`` is 30 s by default (``None`` turns it off). A bound
covers the whole service call, retries, server selection and backoff waits included: the public method
(``@bounded``) opens the bound, and the run step (``ops.steps.run.call``) puts each driver call under
``pymongo.timeout(remaining)`` (PyMongo's client-side operation timeout, CSOT) and stops
retrying when the next wait would pass the deadline. A call that runs out of time raises
``OperationTimeoutError``; a busy pool still raises ``PoolExhaustedError`` (more telling).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import time as time  # re-exported: the bounds' clock is ``timeouts.time.monotonic`` (the run step reads it; tests move it)
from collections.abc import Iterator, Mapping
from typing import Any

import pymongo
from pymongo import errors as pm

from ..errors import AstroDBError, ConfigError, OperationTimeoutError, translate
from . import gateway
from .connection import summarise

__all__ = ["Bound", "CALL_BOUND", "NOT_STARTED", "KEPT", "current_bound", "enter", "under", "under_call_bound", "final_error",
           "afresh", "await_server"]


class Bound:
    """A time bound: ``ms`` as given and the ``deadline`` (a ``time.monotonic()`` value).

    A plain slotted class: every call makes one (``operation_timeout_ms`` is on by default)."""

    __slots__ = ("ms", "deadline", "source")

    def __init__(self, ms: float, deadline: float, source: str) -> None:
        self.ms = ms
        self.deadline = deadline
        self.source = source  # "timeout_ms" (this call) or "operation_timeout_ms" (the config default)

    @classmethod
    def starting_now(cls, ms: float, source: str) -> Bound:
        return cls(ms, time.monotonic() + ms / 1000.0, source)

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def __repr__(self) -> str:
        return f"Bound({self.ms:g} ms, {self.source})"


#: The deadline of a call's default budget until its first driver call starts it (``enter``): a
#: ``Database`` call opens a ``Bound`` of ``operation_timeout_ms`` with it, so that every driver
#: call it makes shares that one budget, with no clock read of its own.
NOT_STARTED = float("inf")
#: The token ``enter`` returns for the bound it started for the rest of a call: nothing to reset.
KEPT: Any = object()

_call_bound: contextvars.ContextVar[Bound | None] = contextvars.ContextVar("astro_db_call_bound", default=None)
#: The bound of the call in progress; ``enter`` sets it, its caller resets it with the token.
CALL_BOUND = _call_bound


def check_timeout_ms(value: Any) -> float:
    """``timeout_ms`` as a positive number, or ``ConfigError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"timeout_ms must be a positive number of milliseconds, got {value!r}", key="timeout_ms")
    return float(value)


@contextlib.contextmanager
def under_call_bound(timeout_ms: float) -> Iterator[None]:
    """The call in the block is bounded by ``timeout_ms`` (``Database``'s ``bounded`` uses it for
    every public call); a nested call never outlives its caller's bound."""
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


def enter(default_ms: float | None, operation: str, model: str | None, now: float | None = None,
          ) -> tuple[Bound | None, float, contextvars.Token[Bound | None] | None]:
    """The run step's one look at the time bound of a driver call: ``(bound, remaining_s, token)``.

    The bound is the call's (``timeout_ms=``), else one of ``default_ms`` starting ``now`` (a
    ``time.monotonic()`` value the caller already read: the run step's start, so no clock is
    read here; read now when not given), else None (no bound: remaining 0, no token). A bound
    already out of time raises ``OperationTimeoutError`` (naming ``operation`` on ``model``: the
    name is built only then). A call's default budget not started yet (``NOT_STARTED``: opened by
    ``Database`` for a call without ``timeout_ms=``) is started ``now`` and left current for the
    call's later driver calls (the token is ``KEPT``: the caller resets nothing). Otherwise the
    bound is made current for whatever the driver call
    runs (hooks, nested reads); the caller puts the call under ``pymongo.timeout(remaining_s)``
    and then resets ``CALL_BOUND`` with the token. One function, so the run step's hot path passes this
    module once per driver call and is never called back from it."""
    bound = _call_bound.get()
    if now is None:
        now = time.monotonic()
    if bound is None:
        if not default_ms:
            return None, 0.0, None
        remaining = default_ms / 1000.0  # the deadline is now + remaining: nothing spent of it yet
        bound = Bound(default_ms, now + remaining, "operation_timeout_ms")
        return bound, remaining, _call_bound.set(bound)
    if bound.deadline == NOT_STARTED:  # a call's default budget (``Runtime.call_budget``): this driver call starts it
        remaining = bound.ms / 1000.0
        bound = Bound(bound.ms, now + remaining, bound.source)
        _call_bound.set(bound)  # kept for the call's later driver calls: the call's own reset ends it
        return bound, remaining, KEPT
    remaining = bound.deadline - now
    if remaining <= 0:
        raise expired_error(bound, f"{operation} on {model}" if model else operation)
    return bound, remaining, _call_bound.set(bound)


def await_server(client: Any, selection_s: float, deadline: float) -> None:
    """Before an attempt whose budget outlasts ``server_selection_timeout_ms``: when no server of
    the deployment is known (it went away, or was never found), wait for one for at most
    ``selection_s`` (never past ``deadline``), as the drivers' CSOT rule says server selection
    waits ``min(serverSelectionTimeoutMS, remaining timeoutMS)``: PyMongo inside
    ``pymongo.timeout`` waits for what is left of the timeout and ignores the former. The look
    is the client's public, immutable topology description (no lock, no I/O); only when it
    knows no server is a ping sent (``primaryPreferred``: any data-bearing server), under the
    shorter bound, raising PyMongo's ``ServerSelectionTimeoutError`` when none is found."""
    if client.topology_description.has_known_servers:
        return
    with pymongo.timeout(max(0.001, min(selection_s, deadline - time.monotonic()))):
        gateway.ping_any(client)


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


def expired_error(bound: Bound, where: str, cause: BaseException | None = None, tries: str = "") -> OperationTimeoutError:
    why = f"; last failure: {summarise(cause)}" if cause is not None else ""
    return OperationTimeoutError(f"{where} did not finish within {bound.ms:g} ms ({bound.source}){tries}{why}")


_CONFIGURED = re.compile(r" ?\(configured timeouts: [^)]*\)")


def final_error(exc: BaseException, bound: Bound | None, *, operation: str, model: str | None,
                attempts: int = 1, names: Mapping[str, str] | None = None) -> AstroDBError:
    """The astro_db error a failed driver call ends in: ``OperationTimeoutError`` when its bound
    ran out on a timeout, else ``translate``'s. The message names the attempts really made out of
    the ``attempts`` allowed, and the budget they shared (``timeout_ms`` / ``operation_timeout_ms``)
    in place of the driver's per-socket "configured timeouts"."""
    where = f"{operation} on {model}" if model else operation
    made = getattr(exc, "astro_attempts", 1)
    stopped = getattr(exc, "astro_stopped", None)
    budget = f"the {bound.ms:g} ms budget ({bound.source})" if bound is not None else "no time budget (operation_timeout_ms=None)"
    timed_out = getattr(exc, "timeout", False) and not isinstance(exc, pm.WaitQueueTimeoutError)
    if bound is not None and timed_out and bound.expired():
        tries = f" after {made} of {attempts} attempt{'s' if attempts > 1 else ''}" if attempts > 1 else ""
        error: AstroDBError = expired_error(bound, where, exc, tries)
    else:
        error = translate(exc, operation=operation, model=model, names=names)
        if error.args and isinstance(error.args[0], str):
            text = _CONFIGURED.sub("", error.args[0])
            if stopped == "deadline":
                text += (f" (gave up after {made} of {attempts} attempts: another would have started past {budget})")
            elif made > 1:
                text += f" (gave up after {made} attempts, within {budget})"
            error.args = (text, *error.args[1:])
    error.attempts = made  # type: ignore[attr-defined]
    return error
