"""Rate-limited logging: repeated errors of one kind are logged once per interval, with a count.

An outage repeats the same failure on every call (one ERROR line per write while Redis is down
was 442 lines in 12 s). ``RateLimitedLog`` logs the first record of each *kind* at once; the
next ones within ``interval_s`` are only counted, and the first one after the interval is
logged with how many were held back ("... (37 more like this in the last 10 s)"). ``flush``
logs what is still held back (when the condition ends). Records go to the stdlib logger it
wraps (under ``astro_db``), with the message and arguments the caller gives, so the log
masking filters still apply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """One logger's records, at most one per kind per ``interval_s`` (the others counted)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, list[float]] = {}  # kind -> [logged at, held back since]

    def log(self, level: int, kind: str, msg: str, *args: Any, stacklevel: int = 2) -> bool:
        """Log ``msg % args`` unless a record of ``kind`` was logged less than ``interval_s`` ago
        (then count it); True when it was logged."""
        now = self.clock()
        with self._lock:
            state = self._kinds.get(kind)
            if state is not None and now - state[0] < self.interval_s:
                state[1] += 1
                return False
            held, since = (int(state[1]), now - state[0]) if state is not None else (0, 0.0)
            self._kinds[kind] = [now, 0]
        if held:
            msg += " (%d more like this in the last %.0f s)"
            args = (*args, held, since)
        self.logger.log(level, msg, *args, stacklevel=stacklevel)
        return True

    def error(self, kind: str, msg: str, *args: Any) -> bool:
        return self.log(logging.ERROR, kind, msg, *args, stacklevel=3)

    def warning(self, kind: str, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, kind, msg, *args, stacklevel=3)

    def held(self, kind: str) -> int:
        """How many records of ``kind`` are held back now."""
        with self._lock:
            state = self._kinds.get(kind)
            return int(state[1]) if state is not None else 0

    def flush(self, kind: str, level: int, msg: str, *args: Any) -> None:
        """The condition of ``kind`` is over: log ``msg`` with the count still held back (if any),
        and let the next record of ``kind`` be logged at once."""
        with self._lock:
            state = self._kinds.pop(kind, None)
        if state is not None and state[1]:
            self.logger.log(level, msg + " (%d more like this were not logged)", *args, int(state[1]))
