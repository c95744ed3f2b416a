"""Scores and tables: MB/s from the median iteration, the spec's percentiles, the targets.

A task's score for a side is the task's dataset size (bytes an operation counts for, times the
operations of an iteration) over the median wall time of its measured iterations, in MB/s (SI:
10^6 bytes); the median is the spec's, its nearest-rank 50th percentile (for an even count, the
lower of the two middle times). The percentiles are the spec's nearest rank: ``A[int(N * p / 100) - 1]`` of the
sorted iteration times (an index below 0, which the spec's formula gives for fewer than
100/p iterations, is taken as 0: the fastest). Nothing here asserts a time.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import Result

__all__ = ["PERCENTILES", "TARGETS", "Score", "TaskResult", "percentile", "score", "tables", "as_json",
           "same_commands_table", "commands_lines"]

PERCENTILES = (10, 25, 50, 75, 90, 95, 98, 99)
RAW, DEFAULT, HOOKS_OFF, MONGOENGINE = "raw PyMongo", "astro_db default", "astro_db hooks off", "MongoEngine"
# (label, numerator, denominator, bound): the targets, each a ratio of MB/s
TARGETS = (("hooks off / raw", HOOKS_OFF, RAW, 0.85), ("default / raw", DEFAULT, RAW, 0.6),
           ("default / MongoEngine", DEFAULT, MONGOENGINE, 1.0))


def percentile(times: Sequence[float], p: float) -> float:
    """The spec's nearest-rank percentile of iteration times (seconds)."""
    if not times:
        raise ValueError("no measured iterations")
    ordered = sorted(times)
    return ordered[max(0, int(len(ordered) * p / 100) - 1)]


@dataclass(frozen=True)
class Score:
    """One side of one task: MB/s from the median, the iteration-time percentiles, client CPU."""

    mb_per_s: float
    median_s: float
    percentiles: dict[int, float]  # p -> seconds per iteration
    cpu_per_op_s: float  # median client CPU (time.process_time) per operation
    iterations: int


def score(result: Result, label: str, task_bytes: int) -> Score:
    samples = result.samples[label]
    walls = [s.wall_s for s in samples]
    ranks = {p: percentile(walls, p) for p in PERCENTILES}
    median = ranks[50]  # the spec's median: its nearest-rank 50th percentile (the lower middle)
    return Score(task_bytes / median / 1e6, median, ranks,
                 statistics.median(s.cpu_s for s in samples) / result.operation.calls, len(samples))


@dataclass
class TaskResult:
    key: str
    title: str
    ops: int
    op_bytes: int
    scores: dict[str, Score] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)  # side -> why it could not run the task
    # the equivalence check: (what, astro_db's commands, differences; none: the raw side sends the same)
    commands: list[tuple[str, str, list[str]]] = field(default_factory=list)

    @property
    def task_bytes(self) -> int:
        return self.op_bytes * self.ops

    def ratio(self, top: str, bottom: str) -> float | None:
        if top in self.scores and bottom in self.scores:
            return self.scores[top].mb_per_s / self.scores[bottom].mb_per_s
        return None


def _mbs(value: float) -> str:
    """Three significant figures (an update task scores thousandths of a MB/s)."""
    return f"{value:.3g}" if value < 1_000 else f"{value:,.0f}"


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _render(header: Sequence[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return [f"| {' | '.join(r)} |" for r in (list(header), ["---"] + ["---:"] * (len(header) - 1), *rows)]
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in (list(header), *rows)]


def tables(results: Sequence[TaskResult], sides: Sequence[str], markdown: bool = False) -> list[str]:
    """The score table (MB/s per side, the targets' ratios), then the percentiles table."""
    header = ["task", "ops", *[f"{s} MB/s" for s in sides], *[f"{name} (>= {bound:g}x)" for name, *_, bound in TARGETS]]
    rows = []
    for r in results:
        row = [r.key, f"{r.ops:,}"]
        row += [_mbs(r.scores[s].mb_per_s) if s in r.scores else "blocked" if s in r.blocked else "-" for s in sides]
        for _, top, bottom, bound in TARGETS:
            ratio = r.ratio(top, bottom)
            row.append("-" if ratio is None else f"{ratio:.2f}x {'met' if ratio >= bound else 'MISSED'}")
        rows.append(row)
    out = _render(header, rows, markdown)
    blocked = [f"- {r.key}, {side}: {why}" for r in results for side, why in r.blocked.items()]
    if blocked:
        out += ["", "blocked (the side could not run the task; nothing timed):", *blocked]
    pheader = ["task", "side", "iterations", "CPU/op", *[f"p{p}" for p in PERCENTILES]]
    prow = [[r.key, side, str(sc.iterations), _time(sc.cpu_per_op_s), *[_time(sc.percentiles[p]) for p in PERCENTILES]]
            for r in results for side, sc in r.scores.items()]
    out += ["", "iteration wall time percentiles (nearest rank) and median client CPU per operation:", ""]
    return out + _render(pheader, prow, markdown)


def as_json(results: Sequence[TaskResult], about: dict[str, Any]) -> dict[str, Any]:
    return {"about": about, "tasks": [
        {"task": r.key, "title": r.title, "ops": r.ops, "bytes_per_op": r.op_bytes, "task_bytes": r.task_bytes,
         "blocked": r.blocked,
         "commands_check": [{"pair": what, "commands": sent, "differences": problems} for what, sent, problems in r.commands],
         "sides": {side: {"mb_per_s": sc.mb_per_s, "median_s": sc.median_s, "cpu_per_op_s": sc.cpu_per_op_s,
                          "iterations": sc.iterations, "percentiles_s": {f"p{p}": v for p, v in sc.percentiles.items()}}
                   for side, sc in r.scores.items()},
         "ratios": {name: r.ratio(top, bottom) for name, top, bottom, _ in TARGETS}} for r in results]}


def _share(astro: float, same: float, raw: float) -> str:
    """Of astro_db's excess over raw (times), the part the raw side sending its commands pays too."""
    gap = astro - raw
    return "no gap" if gap <= 0.05 * raw else f"{(same - raw) / gap:.0%}"  # within 5% of raw: nothing to split


def same_commands_table(results: Sequence[TaskResult], pairs: Sequence[tuple[str, str]],
                        markdown: bool = False) -> list[str]:
    """Each write task's astro_db sides against raw PyMongo sending exactly their commands (``pairs``:
    astro_db side, raw side), beside their ratio to plain raw PyMongo (the targets' baseline): MB/s
    ratios (the raw side sending astro_db's commands against plain raw: the best a client with no
    cost of its own could score with those commands), client CPU per operation, and the share of astro_db's excess over raw (iteration wall
    time, CPU) that the raw side sending the same commands pays too (the server's work and the
    driver's for those commands; the rest is astro_db's client). Empty if no task ran such a side."""
    header = ["task", "astro_db side", "/ raw MB/s", "same commands / raw MB/s", "/ same commands MB/s",
              "commands' share of the wall gap",
              "CPU/op raw", "CPU/op same commands", "CPU/op astro_db", "CPU / same commands", "commands' share of the CPU gap"]
    rows = []
    for r in results:
        for side, same in pairs:
            if side not in r.scores or same not in r.scores or RAW not in r.scores:
                continue
            a, w, raw = r.scores[side], r.scores[same], r.scores[RAW]
            rows.append([r.key, side, f"{a.mb_per_s / raw.mb_per_s:.2f}x", f"{w.mb_per_s / raw.mb_per_s:.2f}x",
                         f"{a.mb_per_s / w.mb_per_s:.2f}x",
                         _share(a.median_s, w.median_s, raw.median_s), _time(raw.cpu_per_op_s), _time(w.cpu_per_op_s),
                         _time(a.cpu_per_op_s), f"{a.cpu_per_op_s / w.cpu_per_op_s:.2f}x",
                         _share(a.cpu_per_op_s, w.cpu_per_op_s, raw.cpu_per_op_s)])
    return _render(header, rows, markdown) if rows else []


def commands_lines(results: Sequence[TaskResult], markdown: bool = False) -> list[str]:
    """The equivalence check of every write task: "same commands" or a WARNING with the differences."""
    bullet = "- " if markdown else "  "
    out = []
    for r in results:
        for what, sent, problems in r.commands:
            out.append(f"{bullet}WARNING {what}: the commands differ: " + "; ".join(problems) if problems
                       else f"{bullet}{what}: same commands ({sent})")
    return out
