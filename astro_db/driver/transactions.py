"""Transactions on PyMongo client sessions: explicit, context manager, and retried units of work.

A ``Transaction`` wraps one ``ClientSession`` with an open transaction. Service calls given
``transaction=tx`` run in it (reads included, so it reads its own writes). Work to do only if
it commits (query-cache invalidation) is queued with ``after_commit``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pymongo
from pymongo import ReadPreference
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from ..config import TopologyConfig
from ..errors import AstroDBError, TransactionError, translate
from . import gateway, timeouts

__all__ = ["Transaction", "has_error_label", "run_with_retry", "transaction_options", "DEFAULT_TIMEOUT_S"]

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_TIMEOUT_S = 120.0  # the drivers' with_transaction bound
_ids = itertools.count(1)
_READ_PREFS = {
    "primary": ReadPreference.PRIMARY,
    "primaryPreferred": ReadPreference.PRIMARY_PREFERRED,
    "secondary": ReadPreference.SECONDARY,
    "secondaryPreferred": ReadPreference.SECONDARY_PREFERRED,
    "nearest": ReadPreference.NEAREST,
}


class Transaction:
    """An open transaction; finish it with ``db.commit_transaction`` or ``db.rollback_transaction``."""

    def __init__(
        self,
        client: Any,
        *,
        read_concern: str = "majority",
        write_concern: str | int = "majority",
        read_preference: str = "primary",
        max_commit_time_ms: int | None = None,
        owner: Any = None,
        timeout_ms: float | None = None,
    ) -> None:
        """``timeout_ms``: the budget of each commit and abort (``operation_timeout_ms``; a longer
        ``max_commit_time_ms`` is the commit's instead), as every call of the run step has one."""
        if read_preference != "primary":
            raise TransactionError(
                f"transactions read from the primary; read_preference={read_preference!r} is not allowed"
            )
        self.id = next(_ids)
        self.state = "active"
        self.owner = owner
        self._after_commit: list[Callable[[], None]] = []
        self._budget_s = None if timeout_ms is None else timeout_ms / 1000.0
        self._commit_s = (None if self._budget_s is None
                          else max(self._budget_s, (max_commit_time_ms or 0) / 1000.0))
        try:
            self.session = gateway.start_session(client)
            gateway.start_transaction(
                self.session,
                read_concern=ReadConcern(read_concern),
                write_concern=WriteConcern(w=write_concern),
                read_preference=_READ_PREFS[read_preference],
                max_commit_time_ms=max_commit_time_ms,
            )
        except PyMongoError as exc:
            raise translate(exc, operation="start_transaction") from exc

    def __repr__(self) -> str:
        return f"<Transaction #{self.id} {self.state}>"

    @property
    def active(self) -> bool:
        return self.state == "active"

    def require_active(self) -> Any:
        """The session, or ``TransactionError`` if this transaction has finished."""
        if self.state != "active":
            raise TransactionError(f"transaction #{self.id} is already {self.state}; start a new one")
        return self.session

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once this transaction commits (never if it aborts)."""
        self._after_commit.append(fn)

    def commit(self) -> None:
        """Commit. A commit whose outcome is unknown (``UnknownTransactionCommitResult``: the
        connection was lost or its time ran out after the server may have committed) raises its
        error with ``applied = None``, never as a plain outage (the web integrations' 503
        "retry"), and runs the after-commit steps anyway: they drop cached answers, which is
        right whether or not it committed, and a commit that landed must not leave them served.
        The transaction stays open, so the commit can be sent again (``with_transaction`` does)."""
        session = self.require_active()
        try:
            with _bounded(self._commit_s):
                gateway.commit_transaction(session)
        except PyMongoError as exc:
            error = translate(exc, operation="commit_transaction")
            if has_error_label(exc, "UnknownTransactionCommitResult"):
                error.applied = None  # type: ignore[attr-defined]
                if error.args and isinstance(error.args[0], str):
                    error.args = (f"{error.args[0]}; the commit may or may not have been applied: read the data back "
                                  "before running the transaction again", *error.args[1:])
                log.error("transaction #%d: commit outcome unknown (%s)", self.id, type(exc).__name__)
                self._run_after_commit()
                raise error from exc
            self._finish("aborted")
            raise error from exc
        self._finish("committed")
        self._run_after_commit()

    def _run_after_commit(self) -> None:
        for fn in self._after_commit:
            try:
                fn()
            except Exception:  # an after-commit step must not turn a commit into a failure
                log.exception("after-commit step of transaction #%d failed", self.id)

    def abort(self) -> None:
        if self.state != "active":
            raise TransactionError(f"transaction #{self.id} is already {self.state}; nothing to roll back")
        try:
            with _bounded(self._budget_s):
                gateway.abort_transaction(self.session)
        except PyMongoError as exc:  # the server aborts on its own when the session goes
            log.warning("abort of transaction #%d reported %s; it is aborted", self.id, type(exc).__name__)
        finally:
            self._finish("aborted")

    def _finish(self, state: str) -> None:
        self.state = state
        try:
            gateway.end_session(self.session)
        except Exception:  # pragma: no cover - ending a session never matters to the caller
            pass


def _bounded(seconds: float | None) -> contextlib.AbstractContextManager[Any]:
    """PyMongo's client-side timeout for a commit or an abort (none: ``operation_timeout_ms=None``).
    Without it they waited for the socket timeout (30 s by default, and PyMongo sends a commit
    again once), whatever the call's budget: a web request's 3 s commit could take a minute."""
    bound = timeouts.CALL_BOUND.get()  # within a call's budget (``with_transaction``'s): never past its deadline
    if bound is not None and bound.deadline != timeouts.NOT_STARTED:
        left = max(bound.deadline - timeouts.time.monotonic(), 0.001)
        seconds = left if seconds is None else min(seconds, left)
    return pymongo.timeout(seconds) if seconds is not None else contextlib.nullcontext()


def has_error_label(exc: BaseException | None, label: str) -> bool:
    """Whether ``exc`` or any exception on its ``__cause__`` chain carries ``label``."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, PyMongoError) and exc.has_error_label(label):
            return True
        exc = exc.__cause__
        seen += 1
    return False


def _code_chain(exc: BaseException | None) -> set[int]:
    """The server error codes on ``exc`` and its ``__cause__`` chain."""
    codes: set[int] = set()
    seen = 0
    while exc is not None and seen < 10:
        code = getattr(exc, "code", None)
        if isinstance(code, int):
            codes.add(code)
        exc = exc.__cause__
        seen += 1
    return codes


MAX_TIME_MS_EXPIRED = 50  # the server's MaxTimeMSExpired: a commit that ran out of its maxTimeMS
BACKOFF_INITIAL_S = 0.005  # the convenient transaction API's backoff between whole-unit retries
BACKOFF_MAX_S = 0.5


def run_with_retry(
    start: Callable[[], Transaction],
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``fn(tx, *args, **kwargs)`` in a transaction, as the MongoDB drivers specify
    (transactions-convenient-api): the whole unit retried on ``TransientTransactionError``,
    after a backoff with jitter (``jitter() * min(5 ms * 1.5 ** attempt, 500 ms)``), and the
    commit alone on ``UnknownTransactionCommitResult`` unless the server ran out of its
    ``maxTimeMS`` (MaxTimeMSExpired), until ``timeout_s`` has passed; no retry starts, nor
    backoff is slept, past it: the last error is raised. ``clock`` and ``sleep``: the bounds'
    clock's (``timeouts.time``, which tests move) unless given."""
    clock = clock or timeouts.time.monotonic
    sleep = sleep or timeouts.time.sleep
    began = clock()
    deadline = began + timeout_s
    attempt = 0
    last: BaseException | None = None  # the transient error the next attempt retries
    while True:
        if last is not None:
            backoff = jitter() * min(BACKOFF_INITIAL_S * 1.5 ** attempt, BACKOFF_MAX_S)
            if clock() + backoff >= deadline:
                raise last
            sleep(backoff)
        attempt += 1
        tx = start()
        try:
            result = fn(tx, *args, **kwargs)
        except BaseException as exc:
            if tx.active:
                tx.abort()
            if has_error_label(exc, "TransientTransactionError") and clock() < deadline:
                log.warning("transaction attempt %d hit a transient error (%s); retrying", attempt, exc)
                last = exc
                continue
            raise
        if not tx.active:
            return result  # fn committed or rolled back itself
        while True:
            try:
                tx.commit()
                return result
            except AstroDBError as exc:
                if (has_error_label(exc, "UnknownTransactionCommitResult") and clock() < deadline
                        and MAX_TIME_MS_EXPIRED not in _code_chain(exc)):
                    log.warning("commit result unknown (%s); retrying the commit", exc)
                    continue
                if has_error_label(exc, "TransientTransactionError") and clock() < deadline:
                    last = exc
                    break
                if tx.active:
                    tx.abort()
                raise
        log.warning("transaction attempt %d failed to commit transiently; retrying the unit", attempt)


def transaction_options(config: TopologyConfig, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``start_transaction``, checked, with the config's write concern as default."""
    allowed = {"read_concern", "write_concern", "read_preference", "max_commit_time_ms"}
    unknown = set(options) - allowed
    if unknown:
        raise TransactionError(f"unknown transaction option(s): {', '.join(sorted(unknown))}")
    out = {"write_concern": config.write_concern}
    out.update(options)
    return out
