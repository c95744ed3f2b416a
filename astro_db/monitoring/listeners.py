"""PyMongo event listeners that feed a ``Monitor``: heartbeats; commands and the pool with ``command_monitoring``.

``Monitor.listeners`` hands out the heartbeat listener, and the command and pool listeners only
with ``command_monitoring=True``: once either kind is registered PyMongo builds and times an
event for every command and every check-out, a cost each call pays (docs/monitoring.md).
They only translate events into ``Monitor`` calls; PyMongo runs them on the calling thread
(commands, pool) or its monitor thread (heartbeats), so they do as little as possible: a
command's start is one dict store, its outcome and the pool's check-out / check-in one append
to a lock-free queue each (``Monitor`` folds them into its figures when they are read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pymongo import monitoring

if TYPE_CHECKING:  # pragma: no cover
    pass

_WRITE_ERROR_KINDS = {11000: "DuplicateKey", 121: "DocumentValidationFailure", 50: "MaxTimeMSExpired"}
MAX_INFLIGHT = 10_000  # started commands awaiting their outcome (a leak guard)
POOL_FOLD_AT = 1024  # pending check-out/check-in events folded into the pool figures at the latest
COMMAND_FOLD_AT = 1024  # finished commands folded into the command figures at the latest
_CHECKED_IN = object()  # a check-in in ``Monitor._pool_pending`` (check-outs are their wait)
_MAYBE_ERRORS = frozenset({"writeErrors", "nErrors", "writeConcernError"})  # a reply without them has none

__all__ = ["CommandEvents", "PoolEvents", "HeartbeatEvents"]


class CommandEvents(monitoring.CommandListener):
    """Counts, latency and errors per collection and command; slow commands logged by shape.

    The per-call work of ``Monitor.command_started`` / ``command_finished``, inlined: a started
    command is kept by its request id (PyMongo's are random 32-bit numbers: two commands in flight
    sharing one is a one-in-billions chance, and would only misfile one command's figures)."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._inflight = monitor._inflight
        self._pending = monitor._command_pending

    def started(self, event: Any) -> None:
        inflight = self._inflight
        if len(inflight) >= MAX_INFLIGHT:
            inflight.clear()
        inflight[event.request_id] = event.command

    def succeeded(self, event: Any) -> None:
        reply = event.reply
        error = None if not reply or _MAYBE_ERRORS.isdisjoint(reply) else write_error_kind(reply)
        self._finish(event, error)

    def failed(self, event: Any) -> None:
        self._finish(event, failure_kind(event.failure))

    def _finish(self, event: Any, error: str | None) -> None:
        command = self._inflight.pop(event.request_id, None)
        name, micros, pending = event.command_name, event.duration_micros, self._pending
        pending.append((command, name, micros, error))
        if micros >= self.monitor.slow_micros and command is not None:
            self.monitor.slow_command(command, name, micros)
        if len(pending) >= COMMAND_FOLD_AT:
            self.monitor.fold()


class PoolEvents(monitoring.ConnectionPoolListener):
    """Open and checked-out connections, check-out waits and failures by reason."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._pending = monitor._pool_pending  # Monitor.checked_out / checked_in, inlined

    def pool_created(self, event: Any) -> None:
        pass

    def pool_ready(self, event: Any) -> None:
        pass

    def pool_cleared(self, event: Any) -> None:
        self.monitor.pool_event("cleared")

    def pool_closed(self, event: Any) -> None:
        pass

    def connection_created(self, event: Any) -> None:
        self.monitor.pool_event("created")

    def connection_ready(self, event: Any) -> None:
        pass

    def connection_closed(self, event: Any) -> None:
        self.monitor.pool_event("closed")

    def connection_check_out_started(self, event: Any) -> None:
        pass

    def connection_check_out_failed(self, event: Any) -> None:
        self.monitor.pool_event("check_out_failed", getattr(event, "duration", None), reason=event.reason)

    def connection_checked_out(self, event: Any) -> None:
        pending = self._pending  # lock-free: two of these per call
        pending.append(getattr(event, "duration", None))
        if len(pending) >= POOL_FOLD_AT:
            self.monitor.fold()

    def connection_checked_in(self, event: Any) -> None:
        pending = self._pending
        pending.append(_CHECKED_IN)
        if len(pending) >= POOL_FOLD_AT:
            self.monitor.fold()


class HeartbeatEvents(monitoring.ServerHeartbeatListener):
    """The last heartbeat round trip and the failures of the driver's server monitor."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor

    def started(self, event: Any) -> None:
        pass

    def succeeded(self, event: Any) -> None:
        self.monitor.heartbeat(True, event.duration, awaited=getattr(event, "awaited", False))

    def failed(self, event: Any) -> None:
        self.monitor.heartbeat(False, event.duration, awaited=getattr(event, "awaited", False), failure=event.reply)


def write_error_kind(reply: Mapping[str, Any] | None) -> str | None:
    """The error kind of a command that succeeded with write errors (e.g. a duplicate key)."""
    if not reply:
        return None
    errors = reply.get("writeErrors")
    if not errors and reply.get("nErrors"):  # client-level bulkWrite: the errors are in its cursor
        batch = (reply.get("cursor") or {}).get("firstBatch") or ()
        errors = [entry for entry in batch if not entry.get("ok")]
    if errors:
        code = errors[0].get("code")
        return _WRITE_ERROR_KINDS.get(code, f"WriteError {code}")
    if reply.get("writeConcernError"):
        return "WriteConcernError"
    return None


def failure_kind(failure: Any) -> str:
    """The error kind of a failed command: the server's codeName, else the driver's error type."""
    if isinstance(failure, Mapping):
        if failure.get("codeName"):
            return str(failure["codeName"])
        if failure.get("code") in _WRITE_ERROR_KINDS:
            return _WRITE_ERROR_KINDS[failure["code"]]
        if failure.get("errtype"):
            return str(failure["errtype"])
        if failure.get("code") is not None:
            return f"code {failure['code']}"
    return "CommandFailed"
