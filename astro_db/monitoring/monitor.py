"""The Monitor: per model and operation counts, errors and latency; pool, heartbeats, slow queries.

One ``Monitor`` per ``Database`` (created in ``ops.runtime.Runtime`` before the client, so its
PyMongo listeners are registered on it). It is fed from two levels:

- the service: the executor's run step (``ops.steps.run.call``) calls ``record_operation`` for every driver call it makes
  (so the embedded backend, which has no driver events, still shows figures) and counts the
  calls it has in flight (``calls_started`` / ``calls_finished``: two ``itertools.count``, no
  lock), and a read's filter and sort come with its ``record_operation`` (``query=``), recorded
  as a masked *shape* for the advisor (with the ``file:line`` outside astro_db that first made
  it: ``call_site``) and shown by the slow log; ``note_query`` counts a shape alone;
- the driver: ``listeners.py`` turns PyMongo heartbeat events (on the driver's monitor thread,
  no per-call cost) into calls here, and with ``command_monitoring=True`` its command and pool
  events too (the per-command table, the CMAP pool figures). By default no per-call listener is
  registered: PyMongo builds and times an event object for every command and every pool
  check-out once any such listener exists, a cost every call would pay; the pool's
  ``checked_out`` is then the calls in flight (the run step's, ``iter_find``'s later reads
  and the change-stream bus's commands, on the same two counters), and the figures only pool
  events can give are ``None``.

Everything is bounded (fixed-bucket histograms, a per-second rate window, capped tables, queues
folded at a fixed length) and guarded by one lock; no literal query value is ever kept or
logged, only shapes. What runs on every call is kept short: a read's shape is masked once per
distinct shape (later calls find it by ``shapes.shape_key``), and the run step's record of a
call and the driver's per-call events (a command's outcome, the pool's check-out and check-in)
are appended to queues without the lock and folded into the figures when they are read (or
every ``OPERATION_FOLD_AT`` / ``POOL_FOLD_AT`` / ``COMMAND_FOLD_AT`` of them), so a calling
thread never waits on the monitor nor updates a histogram (but the one whose event fills a
queue, which folds it). Only a slow call or command and a read of a shape seen for the first
time are looked at on the spot.
"""

from __future__ import annotations

import collections
import datetime as _dt
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import Any

from ..config import HealthConfig
from ..errors import scrub
from .histogram import LatencyHistogram, RateWindow
from .listeners import _CHECKED_IN, COMMAND_FOLD_AT, MAX_INFLIGHT, POOL_FOLD_AT
from .shapes import command_shape, mask, shape_key, shape_text

__all__ = ["Monitor", "CLIENT_ERRORS"]

log = logging.getLogger("astro_db.monitoring")

#: Error kinds caused by the caller's input, not by the database: left out of the error rate.
CLIENT_ERRORS = frozenset({"ValidationError", "DuplicateKeyError", "QueryError", "UnknownModelError", "PermissionDeniedError"})
MAX_KEYS = 1000  # distinct (model, operation) pairs kept per table; more fold into "(other)"
MAX_SHAPES = 500  # distinct query shapes kept for the advisor
OPERATION_FOLD_AT = 1024  # queued calls folded into the operation figures at the latest
RECENT_SLOW = 50  # slow queries kept in metrics()["slow_queries"]["recent"]
NO_MODEL = "-"  # commands that name no collection (ping, endSessions, commitTransaction...)


class _Stats:
    __slots__ = ("count", "errors", "latency")

    def __init__(self) -> None:
        self.count = 0
        self.errors: dict[str, int] = {}
        self.latency = LatencyHistogram()

    def record(self, ms: float, error: str | None) -> None:
        self.count += 1
        self.latency.record(ms)
        if error:
            self.errors[error] = self.errors.get(error, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "error_count": sum(self.errors.values()),
            "errors": dict(self.errors),
            "latency_ms": self.latency.summary(),
        }


class Monitor:
    """Thread-safe figures of one Database; ``snapshot()`` is the JSON-ready view."""

    def __init__(self, config: HealthConfig, registry: Iterable[Any], *, max_pool_size: int) -> None:
        """``config``: the slow-query threshold and the health window; ``max_pool_size`` is what
        the pool's saturation is measured against."""
        self.slow_ms = float(config.slow_query_ms)
        self.slow_micros = self.slow_ms * 1000.0
        self.max_pool_size = max_pool_size
        self.driver_events = False  # set when PyMongo listeners are registered (heartbeats at least)
        self.command_monitoring = False  # set when the per-call command and pool listeners are
        # the run step's driver calls, started and finished: their difference is the calls in
        # flight (``next`` on a count is atomic under the GIL: no lock on the hot path)
        self.calls_started = itertools.count()
        self.calls_finished = itertools.count()
        self._collections = {info.collection: info.name for info in registry}
        self._lock = threading.Lock()
        self._started = time.time()
        self._operations: dict[tuple[str, str], _Stats] = {}
        self._commands: dict[tuple[str, str], _Stats] = {}
        self._window = RateWindow(config.health_window_s)
        self._slow: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_SLOW)
        self._slow_count = 0
        self._shapes: dict[tuple[Any, ...], dict[str, Any]] = {}  # (model, operation, shape_key, sort key)
        # the run step's calls (model, operation, ms, error kind, second, shape entry, time),
        # appended lock-free by ``record_operation``; folded into ``_operations`` when read
        self._operation_pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._inflight: dict[Any, Any] = {}  # request id -> the command started
        self._pool: dict[str, Any] = {"open": 0, "checked_out": 0, "created": 0, "closed": 0, "checkouts": 0, "cleared": 0}
        # check-out waits (a float, or None when the driver gave none) and check-ins (_CHECKED_IN),
        # appended lock-free by the pool listener; deque.append and popleft are atomic
        self._pool_pending: collections.deque[Any] = collections.deque()
        # finished commands (command or None, name, duration in µs, error kind), appended lock-free
        # by the command listener; folded into ``_commands`` when read
        self._command_pending: collections.deque[tuple[Any, str, int, str | None]] = collections.deque()
        self._pool_failures: dict[str, int] = {}
        self._pool_wait = LatencyHistogram()
        self._beats: dict[str, Any] = {
            "successes": 0, "failures": 0, "consecutive_failures": 0, "last_latency_ms": None, "last_failure": None
        }

    def listeners(self, *, commands: bool = False) -> list[Any]:
        """The PyMongo event listeners feeding this monitor (register them on the client): the
        heartbeat listener, and with ``commands`` the per-call command and pool listeners
        (``command_monitoring=True``)."""
        from .listeners import CommandEvents, HeartbeatEvents, PoolEvents

        self.driver_events = True
        if not commands:
            return [HeartbeatEvents(self)]
        self.command_monitoring = True
        return [CommandEvents(self), PoolEvents(self), HeartbeatEvents(self)]

    def in_flight(self) -> int:
        """The driver calls in flight now (the run step's, a stream's later reads, the change-stream
        bus's commands; called under the lock, so two readers
        never interleave; each reading advances both counts by one, which leaves their
        difference as it was)."""
        started = next(self.calls_started)
        return max(0, started - next(self.calls_finished))

    def model_of(self, collection: str | None) -> str:
        if not collection:
            return NO_MODEL
        return str(self._collections.get(collection, collection))

    # --- service level ----------------------------------------------------------------------

    def note_query(self, model: str | None, operation: str, filt: Mapping[str, Any] | None, sort: Any = None) -> None:
        """Count the shape of a read's filter (and sort) for the advisor, apart from any call's
        figures. The run step passes a read's query to ``record_operation`` instead (one lock
        per call), which also shows the shape in the slow log."""
        key, entry, shape = self._shape_of(model, operation, filt, sort)
        now = time.time()
        with self._lock:
            self._count_shape(key, entry, shape, sort, now)

    def record_operation(self, model: str | None, operation: str, seconds: float, error: str | None = None, *,
                         query: tuple[Mapping[str, Any] | None, Any] | None = None) -> None:
        """One service-level driver call: latency, error kind (an astro_db error class name),
        and with ``query`` (a read's ``(filter, sort)``) its shape.

        Appended to a queue without the lock (``deque.append`` is atomic) and folded into the
        figures when they are read, or every ``OPERATION_FOLD_AT`` calls (``_fold_operations``),
        as the driver's command events are: the calling thread takes no lock, looks up no table
        and updates no histogram. The call's second of the rate window is read now, so a late
        fold counts it where it happened. Only a shape seen for the first time is counted on the
        spot, under the lock (it is masked once, and its ``call_site`` is the stack of this call),
        and a slow call is logged on the spot."""
        ms = seconds * 1000.0
        if query is None:  # a write, a count...: no shape
            entry = shape = now = None
        else:  # _shape_of, inlined (every read passes here)
            filt, sort = query
            key = (model, operation, shape_key(filt or {}), shape_key(sort) if sort else "")
            entry = self._shapes.get(key)
            now = time.time()
            if entry is None:  # a new shape (or one the full table does not keep): counted now
                shape = mask(filt or {})
                with self._lock:
                    self._count_shape(key, None, shape, sort, now)
            else:
                shape = entry["filter"]
        pending = self._operation_pending
        pending.append((model, operation, ms, error, int(self._window.clock()), entry, now))
        if ms >= self.slow_ms and not self.command_monitoring:  # with command monitoring the command listener logs it
            self._log_slow(model or NO_MODEL, operation, ms, None if shape is None else shape_text(shape))
        if len(pending) >= OPERATION_FOLD_AT:
            with self._lock:
                self._fold_operations()

    def _shape_of(self, model: str | None, operation: str, filt: Mapping[str, Any] | None,
                  sort: Any) -> tuple[Any, dict[str, Any] | None, Any]:
        """``(key, recorded entry or None, masked shape)`` of a read: the filter is masked only
        the first time its shape is seen (later calls find the entry by ``shape_key``)."""
        key = (model, operation, shape_key(filt or {}), shape_key(sort) if sort else "")
        entry = self._shapes.get(key)
        return key, entry, entry["filter"] if entry is not None else mask(filt or {})

    def _count_shape(self, key: Any, entry: dict[str, Any] | None, shape: Any, sort: Any, now: float) -> None:
        """Count one read of a shape (under the lock); a new shape is kept while there is room."""
        if entry is None:
            entry = self._shapes.get(key)
            if entry is None:
                if len(self._shapes) >= MAX_SHAPES:
                    return
                sort_keys = [[str(k), int(d)] for k, d in (sort or [])]
                entry = self._shapes[key] = {"model": key[0], "operation": key[1], "filter": shape, "sort": sort_keys,
                                             "count": 0, "call_site": _call_site()}
        entry["count"] += 1
        entry["last_seen"] = now

    # --- driver level (called by listeners.py) ---------------------------------------------

    def command_started(self, key: Any, command_name: str, command: Mapping[str, Any]) -> None:
        if len(self._inflight) >= MAX_INFLIGHT:
            self._inflight.clear()
        self._inflight[key] = command  # the model is looked up when its figures are folded

    def command_finished(self, key: Any, command_name: str, duration_micros: int, error: str | None) -> None:
        """A command's outcome (lock-free: queued, folded on reading); a slow one is logged now."""
        command = self._inflight.pop(key, None)
        pending = self._command_pending
        pending.append((command, command_name, duration_micros, error))
        if duration_micros >= self.slow_micros and command is not None:
            self.slow_command(command, command_name, duration_micros)
        if len(pending) >= COMMAND_FOLD_AT:
            self.fold()

    def slow_command(self, command: Mapping[str, Any], name: str, duration_micros: int) -> None:
        """Log and keep a slow command, by its masked shape."""
        self._log_slow(self.model_of(_collection_of(command, name)), name, duration_micros / 1000.0,
                       shape_text(command_shape(command, name)))

    def fold(self) -> None:
        """Fold every queued call and driver event into the figures (the listeners call it every
        ``COMMAND_FOLD_AT`` / ``POOL_FOLD_AT`` events; reading the figures does too)."""
        with self._lock:
            self._fold_operations()
            self._fold_commands()
            self._fold_pool()

    def checked_out(self, wait_s: float | None) -> None:
        """A connection was checked out after waiting ``wait_s`` (lock-free; folded on reading)."""
        self._pool_pending.append(wait_s)
        if len(self._pool_pending) >= POOL_FOLD_AT:
            with self._lock:
                self._fold_pool()

    def checked_in(self) -> None:
        """A connection went back to the pool (lock-free; folded on reading)."""
        self._pool_pending.append(_CHECKED_IN)
        if len(self._pool_pending) >= POOL_FOLD_AT:
            with self._lock:
                self._fold_pool()

    def pool_event(self, kind: str, wait_s: float | None = None, reason: str | None = None) -> None:
        """A pool event by kind (``created``, ``closed``, ``cleared``, ``check_out_failed``, and
        ``checked_out`` / ``checked_in``, which the listener reports through the lock-free
        ``checked_out`` / ``checked_in``)."""
        if kind == "checked_out":
            self.checked_out(wait_s)
            return
        if kind == "checked_in":
            self.checked_in()
            return
        with self._lock:
            pool = self._pool
            if kind == "created":
                pool["created"] += 1
                pool["open"] += 1
            elif kind == "closed":
                pool["closed"] += 1
                pool["open"] = max(0, pool["open"] - 1)
            elif kind == "check_out_failed":
                name = str(reason or "unknown")
                self._pool_failures[name] = self._pool_failures.get(name, 0) + 1
                if wait_s is not None:
                    self._pool_wait.record(wait_s * 1000.0)
            elif kind == "cleared":
                pool["cleared"] += 1

    def heartbeat(self, ok: bool, duration_s: float, awaited: bool = False, failure: BaseException | None = None) -> None:
        with self._lock:
            beats = self._beats
            if ok:
                beats["successes"] += 1
                beats["consecutive_failures"] = 0
                if not awaited:  # an awaited (streaming) heartbeat's duration is a wait, not a round trip
                    beats["last_latency_ms"] = round(duration_s * 1000.0, 3)
            else:
                beats["failures"] += 1
                beats["consecutive_failures"] += 1
                beats["last_failure"] = _describe_failure(failure)

    # --- reading ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every figure as a JSON-ready dict (see docs/monitoring.md)."""
        with self._lock:
            self._fold_operations()
            self._fold_pool()
            self._fold_commands()
            return {
                "since": _dt.datetime.fromtimestamp(self._started, _dt.timezone.utc).isoformat(),
                "uptime_s": round(time.time() - self._started, 3),
                "driver_events": self.driver_events,
                "command_monitoring": self.command_monitoring,
                "operations": _nest(self._operations),
                "commands": _nest(self._commands),
                "pool": self._pool_figures(),
                "heartbeats": dict(self._beats),
                "slow_queries": {"threshold_ms": self.slow_ms, "count": self._slow_count, "recent": list(self._slow)},
                "window": self._window.totals(),
                "query_shapes": len(self._shapes),
            }

    def pool_figures(self) -> dict[str, Any]:
        with self._lock:
            self._fold_pool()
            return self._pool_figures()

    def heartbeat_figures(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._beats)

    def window(self) -> dict[str, Any]:
        with self._lock:
            self._fold_operations()
            return self._window.totals()

    def query_shapes(self) -> list[dict[str, Any]]:
        """The recorded read shapes, most frequent first (copies)."""
        with self._lock:
            self._fold_operations()
            shapes = [dict(entry) for entry in self._shapes.values()]
        return sorted(shapes, key=lambda e: -e["count"])

    def raw(self) -> dict[str, Any]:
        """Copies of the histograms and counters (for exporters such as Prometheus)."""
        def copy(table: dict[tuple[str, str], _Stats]) -> dict[tuple[str, str], Any]:
            out = {}
            for key, stats in table.items():
                hist = LatencyHistogram()
                hist.counts, hist.count, hist.sum_ms = list(stats.latency.counts), stats.latency.count, stats.latency.sum_ms
                out[key] = (stats.count, dict(stats.errors), hist)
            return out

        with self._lock:
            self._fold_operations()
            self._fold_pool()
            self._fold_commands()
            wait = LatencyHistogram()
            wait.counts, wait.count, wait.sum_ms = list(self._pool_wait.counts), self._pool_wait.count, self._pool_wait.sum_ms
            cmap = self.command_monitoring
            return {
                "command_monitoring": cmap,
                "operations": copy(self._operations),
                "commands": copy(self._commands),
                "pool": self._pool_counts(),
                "pool_failures": dict(self._pool_failures) if cmap else None,
                "pool_wait": wait if cmap else None,
                "heartbeats": dict(self._beats),
                "slow_count": self._slow_count,
            }

    # --- internals --------------------------------------------------------------------------

    def _stats(self, table: dict[tuple[str, str], _Stats], model: str, operation: str) -> _Stats:
        stats = table.get((model, operation))
        if stats is None:
            if len(table) >= MAX_KEYS:
                model = "(other)"
                stats = table.get((model, operation))
            if stats is None:
                stats = table[(model, operation)] = _Stats()
        return stats

    def _fold_operations(self) -> None:
        """Fold the calls ``record_operation`` queued into the operation figures, the rate window
        and the shapes' counts (under the lock). A call is counted in the window's slot of its
        own second while that second is still in the slot; a call whose slot a later second has
        taken over is past the window and is left out of it (never resetting the newer count)."""
        pending = self._operation_pending
        window = self._window
        slots, span = window.slots, window.seconds
        groups: dict[tuple[str, str], tuple[list[float], dict[str, int]]] = {}  # as ``_fold_commands``
        for _ in range(len(pending)):
            model, operation, ms, error, second, entry, now = pending.popleft()
            _group(groups, (model or NO_MODEL, operation), ms, error)
            if entry is not None:  # a read of a shape already kept
                entry["count"] += 1
                if now > entry.get("last_seen", 0.0):
                    entry["last_seen"] = now
            slot = slots[second % span]  # RateWindow.record, at the call's own second
            if slot[0] != second:
                if slot[0] > second:  # the slot holds a later second: this call is past the window
                    continue
                slot[0], slot[1], slot[2], slot[3] = second, 0, 0, 0
            slot[1] += 1
            if error and error not in CLIENT_ERRORS:
                slot[2] += 1
            if ms >= self.slow_ms:
                slot[3] += 1
        for (model, operation), (latencies, errors) in groups.items():
            self._add(self._operations, model, operation, latencies, errors)

    def _fold_commands(self) -> None:
        """Fold the finished commands queued by the listener into the command figures (under the lock)."""
        pending, table = self._command_pending, self._commands
        # grouped by (collection, command) first: one histogram update per group, not per event
        groups: dict[tuple[str | None, str], tuple[list[float], dict[str, int]]] = {}
        for _ in range(len(pending)):
            command, name, micros, error = pending.popleft()
            if command is None:
                collection = None
            else:
                value = command.get(name)
                collection = value if isinstance(value, str) else _collection_of(command, name)
            _group(groups, (collection, name), micros / 1000.0, error)
        for (collection, name), (latencies, errors) in groups.items():
            self._add(table, NO_MODEL if collection is None else self.model_of(collection), name, latencies, errors)

    def _add(self, table: dict[tuple[str, str], _Stats], model: str, name: str, latencies: list[float],
             errors: dict[str, int]) -> None:
        """One group of folded calls or commands into ``table``'s figures (under the lock)."""
        stats = self._stats(table, model, name)
        stats.count += len(latencies)
        stats.latency.record_many(latencies)
        for kind, n in errors.items():
            stats.errors[kind] = stats.errors.get(kind, 0) + n

    def _fold_pool(self) -> None:
        """Fold the pending check-outs and check-ins into the pool figures (under the lock)."""
        pending, pool = self._pool_pending, self._pool
        checked_out, checkouts, waits = pool["checked_out"], 0, []
        for _ in range(len(pending)):
            event = pending.popleft()
            if event is _CHECKED_IN:
                if checked_out > 0:
                    checked_out -= 1
                continue
            checkouts += 1
            checked_out += 1
            if event is not None:
                waits.append(event * 1000.0)
        pool["checked_out"] = checked_out
        pool["checkouts"] += checkouts
        self._pool_wait.record_many(waits)

    def _pool_counts(self) -> dict[str, Any]:
        """The pool's counts (under the lock): PyMongo's pool events' with command monitoring;
        else ``checked_out`` is the run step's calls in flight and the rest ``None`` (unknown)."""
        if self.command_monitoring:
            return dict(self._pool)
        return {**dict.fromkeys(self._pool), "checked_out": self.in_flight()}

    def _pool_figures(self) -> dict[str, Any]:
        """The pool figures (under the lock): from PyMongo's pool events with command monitoring;
        else ``checked_out`` is the run step's calls in flight and the rest is ``None`` (unknown)."""
        figures = self._pool_counts()
        if self.command_monitoring:
            figures["source"] = "pool_events"
            figures["checkout_failures"] = dict(self._pool_failures)
            figures["wait_ms"] = self._pool_wait.summary()
        else:
            figures["source"] = "run_step"
            figures["checkout_failures"] = None
            figures["wait_ms"] = None
        figures["max_size"] = self.max_pool_size
        figures["saturation"] = round(figures["checked_out"] / self.max_pool_size, 4) if self.max_pool_size else 0.0
        return figures

    def _log_slow(self, model: str, operation: str, ms: float, shape: str | None) -> None:
        entry = {
            "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "model": model,
            "operation": operation,
            "ms": round(ms, 3),
            "shape": shape,
        }
        with self._lock:
            self._slow_count += 1
            self._slow.append(entry)
        what = operation if model == NO_MODEL else f"{operation} on {model}"  # a call of no model (the key vault's)
        log.warning("slow query: %s took %.1f ms (threshold %.0f ms); shape: %s",
                    what, ms, self.slow_ms, shape or "(not recorded)")


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _call_site() -> str | None:
    """``file:line`` of the nearest caller outside astro_db (the app line that made the read);
    taken once per new query shape, so its cost (a short frame walk) does not recur."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR) and not filename.startswith("<frozen"):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _group(groups: dict[Any, tuple[list[float], dict[str, int]]], key: Any, ms: float, error: str | None) -> None:
    """Add one queued call or command to its group of a fold: its latency, its error kind."""
    group = groups.get(key)
    if group is None:
        group = groups[key] = ([], {})
    group[0].append(ms)
    if error:
        group[1][error] = group[1].get(error, 0) + 1


def _collection_of(command: Mapping[str, Any], command_name: str) -> str | None:
    value = command.get(command_name)
    if isinstance(value, str):
        return value
    if command_name == "getMore":
        return command.get("collection")
    if command_name == "bulkWrite":  # client-level: counted under its first namespace (a create's model)
        spaces = command.get("nsInfo") or ()
        return str(spaces[0].get("ns", "")).partition(".")[2] or None if spaces else None
    return None


def _nest(table: dict[tuple[str, str], _Stats]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for (model, operation), stats in sorted(table.items()):
        out.setdefault(model, {})[operation] = stats.as_dict()
    return out


def _describe_failure(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    return f"{type(exc).__name__}: {scrub(str(exc)).split(',')[0][:200]}"
