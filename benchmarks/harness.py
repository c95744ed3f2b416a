"""The measuring loop: variants of one operation, timed in rotated rounds, summarised by median.

A ``Variant`` is one side of an operation (raw PyMongo, astro_db, MongoEngine): ``setup()`` puts
its collection back to the seeded size and builds its inputs, outside the timing; ``op(i)`` is
the i-th call, the only code inside the timing. Every round runs every variant once, the first
variant of round ``r`` being variant ``r mod n`` (so no side always runs first, on a cold cache
or right after another side's garbage); round 0 is a warm-up and is thrown away.

Two clocks per run: wall time (``time.perf_counter``) and the CPU time of this process
(``time.process_time``): the client's cost, with the server's own work excluded whenever the
server runs in another process. This module imports nothing of astro_db.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Variant", "Operation", "Stat", "Sample", "Result", "WorkNotDone", "rotation", "run_operation", "thread_cpu"]


class WorkNotDone(AssertionError):
    """A variant's check found its work missing: its timing would be meaningless."""


@dataclass(frozen=True)
class Variant:
    """One side of an operation: ``op(i)`` runs ``calls`` times per round after ``setup()``;
    ``check()`` then proves it did the work (the documents are there, the result has its size)."""

    label: str
    setup: Callable[[], None]
    op: Callable[[int], Any]
    docs_per_op: int = 1
    check: Callable[[], None] | None = None  # after each run, untimed: raises if the work was not done


@dataclass(frozen=True)
class Operation:
    """A workload and its variants; the first variant is the baseline the ratios divide by."""

    name: str
    calls: int
    variants: Sequence[Variant]

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError(f"{self.name}: calls must be at least 1, not {self.calls}")
        if not self.variants:
            raise ValueError(f"{self.name}: no variants")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self.name}: variant labels repeat: {labels}")


@dataclass(frozen=True)
class Stat:
    """Median and spread (min, max) of per-round figures, in seconds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        if not values:
            raise ValueError("no measured rounds")
        return cls(statistics.median(values), min(values), max(values))

    def scaled(self, factor: float) -> Stat:
        return Stat(self.median * factor, self.low * factor, self.high * factor)


@dataclass(frozen=True)
class Sample:
    """One timed run of a variant: totals over its ``calls``."""

    wall_s: float
    cpu_s: float


@dataclass
class Result:
    """The measured rounds of every variant of one operation."""

    operation: Operation
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        return self.operation.variants[0].label

    def _variant(self, label: str) -> Variant:
        return next(v for v in self.operation.variants if v.label == label)

    def wall_per_op(self, label: str) -> Stat:
        return Stat.of([s.wall_s / self.operation.calls for s in self.samples[label]])

    def cpu_per_op(self, label: str) -> Stat:
        return Stat.of([s.cpu_s / self.operation.calls for s in self.samples[label]])

    def cpu_per_doc(self, label: str) -> Stat:
        return self.cpu_per_op(label).scaled(1 / self._variant(label).docs_per_op)

    def wall_ratio(self, label: str, to: str | None = None) -> float:
        """Median wall time of ``label`` over that of ``to`` (default: the baseline)."""
        return self.wall_per_op(label).median / self.wall_per_op(to or self.baseline).median

    def cpu_ratio(self, label: str, to: str | None = None) -> float:
        """Median client CPU per document of ``label`` over that of ``to`` (default: the baseline)."""
        return self.cpu_per_doc(label).median / self.cpu_per_doc(to or self.baseline).median

    def round_ratios(self, label: str, to: str | None = None, figure: str = "cpu") -> Stat:
        """Median and spread of ``label``'s figure over ``to``'s **within each round** (``figure``:
        ``"cpu"`` per document, ``"cpu_op"`` per call or ``"wall"`` per call): the two ran seconds
        apart in the same round, so a change of the machine's load between rounds, which moves
        both, cancels out of each ratio (the medians of the two sides' rounds, taken apart, do not
        pair them)."""
        if figure not in ("cpu", "cpu_op", "wall"):
            raise ValueError(f"figure is 'cpu', 'cpu_op' or 'wall', not {figure!r}")
        to = to or self.baseline
        scale = self._variant(to).docs_per_op / self._variant(label).docs_per_op if figure == "cpu" else 1.0
        attr = "wall_s" if figure == "wall" else "cpu_s"
        return Stat.of([getattr(a, attr) / getattr(b, attr) * scale
                        for a, b in zip(self.samples[label], self.samples[to], strict=True)])


def thread_cpu(thread: Any) -> float:
    """A thread's own CPU seconds so far (its clock, read from any thread); 0 once it is gone or
    before it started (the bus threads' CPU in ``bus_cost.py`` and ``web_mix.py``)."""
    if thread is None or thread.ident is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (OSError, ProcessLookupError):
        return 0.0


def rotation(variants: Sequence[Variant], round_no: int) -> list[Variant]:
    """The order of one round: starts with variant ``round_no mod n``, then the rest in turn."""
    start = round_no % len(variants)
    return [*variants[start:], *variants[:start]]


def _timed(variant: Variant, calls: int) -> Sample:
    variant.setup()
    gc.collect()  # the previous variant's garbage is not charged to this one
    op = variant.op
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(calls):
        op(i)
    sample = Sample(time.perf_counter() - wall0, time.process_time() - cpu0)
    if variant.check:
        variant.check()
    return sample


def run_operation(operation: Operation, rounds: int, warmup: int = 1,
                  progress: Callable[[str], None] | None = None) -> Result:
    """``warmup`` discarded rounds, then ``rounds`` measured ones, each in rotated order."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    result = Result(operation, {v.label: [] for v in operation.variants})
    for round_no in range(warmup + rounds):
        for variant in rotation(operation.variants, round_no):
            sample = _timed(variant, operation.calls)
            if round_no >= warmup:
                result.samples[variant.label].append(sample)
        if progress:
            progress(f"{operation.name}: round {round_no + 1 - warmup}/{rounds}" if round_no >= warmup
                     else f"{operation.name}: warm-up")
    return result
