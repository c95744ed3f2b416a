"""PyMongo event listeners that feed a ``Monitor``: commands, the connection pool, heartbeats.

They only translate events into ``Monitor`` calls; PyMongo runs them on the calling thread
(commands, pool) or its monitor thread (heartbeats), so they do as little as possible: a
command's start is one dict store, its outcome and the pool's check-out / check-in one append
to a lock-free queue each (``Monitor`` folds them into its figures when they are read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pymongo import monitoring

from .monitor import MAX_INFLIGHT

if TYPE_CHECKING:  # pragma: no cover
    pass

_WRITE_ERROR_KINDS = {11000: "DuplicateKey", 121: "DocumentValidationFailure", 50: "MaxTimeMSExpired"}
_MAYBE_ERRORS = frozenset({"writeErrors", "nErrors", "writeConcernError"})  # a reply without them has none

__all__ = ["CommandEvents", "PoolEvents", "HeartbeatEvents"]


def _key(event: Any) -> tuple[Any, Any]:
    """A command in flight: its connection and request id (unique among the connection's)."""
    return (event.connection_id, event.request_id)


class CommandEvents(monitoring.CommandListener):
    """Counts, latency and errors per collection and command; slow commands logged by shape."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._inflight = monitor._inflight
        self._finished = monitor.command_finished

    def started(self, event: Any) -> None:
        inflight = self._inflight
        if len(inflight) >= MAX_INFLIGHT:
            inflight.clear()
        inflight[(event.connection_id, event.request_id)] = (event.command_name, event.command)

    def succeeded(self, event: Any) -> None:
        reply = event.reply
        error = None if not reply or _MAYBE_ERRORS.isdisjoint(reply) else write_error_kind(reply)
        self._finished((event.connection_id, event.request_id), event.command_name, event.duration_micros, error)

    def failed(self, event: Any) -> None:
        self._finished(_key(event), event.command_name, event.duration_micros, failure_kind(event.failure))


class PoolEvents(monitoring.ConnectionPoolListener):
    """Open and checked-out connections, check-out waits and failures by reason."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._checked_out = monitor.checked_out
        self._checked_in = monitor.checked_in

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
        self._checked_out(getattr(event, "duration", None))  # lock-free: two of these per call

    def connection_checked_in(self, event: Any) -> None:
        self._checked_in()


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
