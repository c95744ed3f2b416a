"""Bounded latency figures: a fixed-bucket histogram and a sliding rate window.

Both use a fixed amount of memory whatever the traffic, so a long-running process can keep
them for ever. Percentiles are estimated from the buckets (within one bucket's width, about
25 %), which is what latency percentiles need; count, sum, min and max are exact.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable

__all__ = ["LatencyHistogram", "RateWindow", "BUCKET_BOUNDS_MS", "EXPORT_BOUNDS_MS"]

_MANTISSAS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8)
#: Upper bounds of the buckets, in milliseconds: 10 per decade from 10 µs to 800 s.
BUCKET_BOUNDS_MS: tuple[float, ...] = tuple(
    round(m * 10.0**e, 6) for e in range(-2, 6) for m in _MANTISSAS
)
#: The coarser subset exported to Prometheus (1-2.5-5 per decade, from 0.1 ms to 100 s).
EXPORT_BOUNDS_MS: tuple[float, ...] = tuple(
    b for b in BUCKET_BOUNDS_MS if 0.1 <= b <= 100_000 and round(b / 10 ** math.floor(math.log10(b)), 6) in (1, 2.5, 5)
)


class LatencyHistogram:
    """Counts of latencies per bucket (``len(BUCKET_BOUNDS_MS) + 1`` integers), not samples.

    Not locked: the owner (``Monitor``) serialises access.
    """

    __slots__ = ("counts", "count", "sum_ms", "min_ms", "max_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKET_BOUNDS_MS) + 1)  # the last bucket is +Inf
        self.count = 0
        self.sum_ms = 0.0
        self.min_ms = math.inf
        self.max_ms = 0.0

    def record(self, ms: float) -> None:
        if not ms > 0.0:  # max(0.0, ms) without the call, exactly (a NaN or -0.0 as 0.0 too)
            ms = 0.0
        self.counts[bisect.bisect_left(BUCKET_BOUNDS_MS, ms)] += 1
        self.count += 1
        self.sum_ms += ms
        if ms < self.min_ms:
            self.min_ms = ms
        if ms > self.max_ms:
            self.max_ms = ms

    def record_many(self, values_ms: list[float]) -> None:
        """``record`` each of ``values_ms`` (the folding of queued events: one call per batch)."""
        if not values_ms:
            return
        counts, bounds, find = self.counts, BUCKET_BOUNDS_MS, bisect.bisect_left
        total, low, high = 0.0, self.min_ms, self.max_ms
        for ms in values_ms:
            if not ms > 0.0:  # as ``record``: a negative, -0.0 or NaN latency is 0.0
                ms = 0.0
            counts[find(bounds, ms)] += 1
            total += ms
            if ms < low:
                low = ms
            if ms > high:
                high = ms
        self.count += len(values_ms)
        self.sum_ms += total
        self.min_ms, self.max_ms = low, high

    def percentile(self, p: float) -> float | None:
        """The estimated ``p``-th percentile (0-100) in ms, or ``None`` with no samples."""
        if self.count == 0:
            return None
        rank = p / 100.0 * self.count
        seen = 0
        for index, n in enumerate(self.counts):
            if n and seen + n >= rank:
                low = BUCKET_BOUNDS_MS[index - 1] if index > 0 else 0.0
                high = BUCKET_BOUNDS_MS[index] if index < len(BUCKET_BOUNDS_MS) else self.max_ms
                value = low + (high - low) * max(0.0, rank - seen) / n
                return min(max(value, self.min_ms), self.max_ms)
            seen += n
        return self.max_ms  # pragma: no cover - rank never exceeds count

    def cumulative(self, bounds_ms: tuple[float, ...] = EXPORT_BOUNDS_MS) -> list[tuple[float, int]]:
        """``[(upper_bound_ms, samples <= bound), ...]`` for bounds that are bucket bounds."""
        out, running, index = [], 0, 0
        for bound in bounds_ms:
            while index < len(BUCKET_BOUNDS_MS) and BUCKET_BOUNDS_MS[index] <= bound:
                running += self.counts[index]
                index += 1
            out.append((bound, running))
        return out

    def summary(self) -> dict[str, float | int | None]:
        """``{"count", "mean", "p50", "p95", "p99", "max"}`` in ms (rounded to µs)."""
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "count": self.count,
            "mean": r(self.sum_ms / self.count) if self.count else None,
            "p50": r(self.percentile(50)),
            "p95": r(self.percentile(95)),
            "p99": r(self.percentile(99)),
            "max": r(self.max_ms) if self.count else None,
        }


class RateWindow:
    """Operations, errors and slow operations over the last ``seconds`` (one slot per second)."""

    __slots__ = ("seconds", "clock", "slots")

    def __init__(self, seconds: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = max(1, int(seconds))
        self.clock = clock
        self.slots = [[-1, 0, 0, 0] for _ in range(self.seconds)]  # [second, ops, errors, slow]

    def record(self, *, error: bool = False, slow: bool = False) -> None:
        """One operation (``Monitor.record_operation`` does the same in place, under its lock)."""
        second = int(self.clock())
        slot = self.slots[second % self.seconds]
        if slot[0] != second:
            slot[0], slot[1], slot[2], slot[3] = second, 0, 0, 0
        slot[1] += 1
        slot[2] += error
        slot[3] += slow

    def totals(self) -> dict[str, float | int]:
        """``{"seconds", "operations", "errors", "slow", "error_rate", "slow_rate"}``."""
        now = int(self.clock())
        ops = errors = slow = 0
        for second, n, e, s in self.slots:
            if now - self.seconds < second <= now:
                ops, errors, slow = ops + n, errors + e, slow + s
        return {
            "seconds": self.seconds,
            "operations": ops,
            "errors": errors,
            "slow": slow,
            "error_rate": round(errors / ops, 4) if ops else 0.0,
            "slow_rate": round(slow / ops, 4) if ops else 0.0,
        }
