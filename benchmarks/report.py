"""Printing a benchmark run: where it ran, every variant's figures, and the issue's targets.

Figures only: nothing here asserts a time. ``markdown=True`` prints the same tables as GitHub
Markdown (the README's table comes from one such run, with its date and machine).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness import Result, Stat
from suite import CACHED, DEFAULT, HOOKS_OFF, MONGOENGINE, MONGOENGINE_DICTS, PAIRS, RAW, RAW_BOUNDED

__all__ = ["machine", "variants_table", "targets_table", "same_commands_table", "commands_check", "Target", "TARGETS"]

COLUMNS = ("operation", "variant", "wall/op", "wall min-max", "wall vs raw",
           "CPU/op", "CPU/doc", "CPU/doc min-max", "CPU/doc vs raw")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(server: str, versions: dict[str, str]) -> list[str]:
    """Where and when the figures were measured, one fact a line."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "-"
    return [
        f"date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"CPU: {cpu_model()}, {os.cpu_count()} cores (load average before the run: {load})",
        f"Python {platform.python_version()}, " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"server: {server}",
    ]


def fmt_time(seconds: float) -> str:
    """µs under a millisecond, ms under a second, else s; three significant figures."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale or unit == "µs":
            value = seconds / scale
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    raise AssertionError("unreachable")


def _spread(low: float, high: float) -> str:
    return f"{fmt_time(low)} - {fmt_time(high)}"


def _rows(results: Sequence[Result]) -> list[list[str]]:
    rows = []
    for result in results:
        for variant in result.operation.variants:
            label = variant.label
            wall, cpu_op, cpu_doc = result.wall_per_op(label), result.cpu_per_op(label), result.cpu_per_doc(label)
            baseline = label == result.baseline
            rows.append([result.operation.name, label, fmt_time(wall.median), _spread(wall.low, wall.high),
                         "1.00x" if baseline else f"{result.wall_ratio(label):.2f}x",
                         fmt_time(cpu_op.median), fmt_time(cpu_doc.median), _spread(cpu_doc.low, cpu_doc.high),
                         "1.00x" if baseline else f"{result.cpu_ratio(label):.2f}x"])
    return rows


def _table(header: Sequence[str], rows: list[list[str]], markdown: bool, numeric_from: int) -> list[str]:
    if markdown:
        align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
        return [f"| {' | '.join(line)} |" for line in (list(header), align, *rows)]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    out = []
    for line in (list(header), *rows):
        cells = [c.ljust(w) if i < numeric_from else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def variants_table(results: Sequence[Result], markdown: bool = False) -> list[str]:
    """One row per operation and variant: medians, spreads and ratios to raw PyMongo."""
    return _table(COLUMNS, _rows(results), markdown, numeric_from=2)


@dataclass(frozen=True)
class Target:
    """One line of the issue's targets: a measured figure against a bound."""

    what: str
    measure: Callable[[dict[str, Result]], float]
    bound: float | None  # None: a figure for comparison, with no bound
    at_most: bool = True  # False: the figure must be at least ``bound``
    rounds: Callable[[dict[str, Result]], Stat] | None = None  # the same ratio taken within each round

    def row(self, results: dict[str, Result]) -> list[str]:
        try:
            value = self.measure(results)
            paired = self._paired(results)
        except KeyError:
            return [self.what, "-", "-", self._bound(), "not run"]
        if self.bound is None:
            return [self.what, f"{value:.2f}x", paired, "-", "reference"]
        met = value <= self.bound if self.at_most else value >= self.bound
        return [self.what, f"{value:.2f}x", paired, self._bound(), "met" if met else "MISSED"]

    def _paired(self, results: dict[str, Result]) -> str:
        if self.rounds is None:
            return "-"
        stat = self.rounds(results)
        return f"{stat.median:.2f}x ({stat.low:.2f}-{stat.high:.2f})"

    def _bound(self) -> str:
        return "-" if self.bound is None else f"{'<=' if self.at_most else '>='} {self.bound:g}x"


def _wall(key: str, label: str, to: str = RAW) -> Callable[[dict[str, Result]], float]:
    return lambda r: r[key].wall_ratio(label, to)


def _cpu_op(key: str, label: str, to: str = RAW) -> Callable[[dict[str, Result]], float]:
    return lambda r: r[key].cpu_per_op(label).median / r[key].cpu_per_op(to).median


def _rounds(key: str, label: str, figure: str = "cpu", to: str = RAW) -> Callable[[dict[str, Result]], Stat]:
    return lambda r: r[key].round_ratios(label, to, figure)


def _cpu_doc(key: str, label: str, to: str = RAW) -> Callable[[dict[str, Result]], float]:
    return lambda r: r[key].cpu_ratio(label, to)


# issue 27's bounds (hooks-off update: 1.25x wall, 1.5x CPU; the default find_one and lean find
# by client CPU), then the earlier rounds' bounds it keeps (hooks off, 1.1x wall, 1.3x CPU)
TARGETS = [
    Target("default create, wall vs raw", _wall("create", DEFAULT), 2.0, rounds=_rounds("create", DEFAULT, "wall")),
    Target("default update, wall vs raw", _wall("update", DEFAULT), 2.0, rounds=_rounds("update", DEFAULT, "wall")),
    Target("default create_many, wall vs raw", _wall("create_many", DEFAULT), 1.5,
           rounds=_rounds("create_many", DEFAULT, "wall")),
    *(Target(f"hooks off {name}, wall vs raw", _wall(key, HOOKS_OFF), 1.1, rounds=_rounds(key, HOOKS_OFF, "wall"))
      for key, name in (("create", "create"), ("create_many", "create_many"),
                        ("find_one", "find_one"), ("find_lean", "find lean"))),
    Target("hooks off update, wall vs raw", _wall("update", HOOKS_OFF), 1.25, rounds=_rounds("update", HOOKS_OFF, "wall")),
    *(Target(f"hooks off {key}, client CPU per call vs raw", _cpu_op(key, HOOKS_OFF), 1.3,
             rounds=_rounds(key, HOOKS_OFF, "cpu_op"))
      for key in ("create", "find_one")),
    Target("hooks off update, client CPU per call vs raw", _cpu_op("update", HOOKS_OFF), 1.5,
           rounds=_rounds("update", HOOKS_OFF, "cpu_op")),
    Target("default find_one, client CPU per call vs raw", _cpu_op("find_one", DEFAULT), 1.3,
           rounds=_rounds("find_one", DEFAULT, "cpu_op")),
    Target("raw find_one under pymongo.timeout(30), CPU per call vs raw", _cpu_op("find_one", RAW_BOUNDED), None,
           rounds=_rounds("find_one", RAW_BOUNDED, "cpu_op")),
    Target("default find_one, CPU per call vs raw under pymongo.timeout(30)",
           _cpu_op("find_one", DEFAULT, RAW_BOUNDED), None,
           rounds=_rounds("find_one", DEFAULT, "cpu_op", to=RAW_BOUNDED)),
    Target("find lean, client CPU per doc vs raw", _cpu_doc("find_lean", DEFAULT), 1.2, rounds=_rounds("find_lean", DEFAULT)),
    Target("find hydrated, client CPU per doc vs raw", _cpu_doc("find_hydrated", DEFAULT), 2.0,
           rounds=_rounds("find_hydrated", DEFAULT)),
    Target("MongoEngine find hydrated, CPU per doc vs raw", _cpu_doc("find_hydrated", MONGOENGINE), None,
           rounds=_rounds("find_hydrated", MONGOENGINE)),
    Target("create_many, MongoEngine from dicts CPU per doc / default's", _cpu_doc("create_many", MONGOENGINE_DICTS, DEFAULT),
           3.0, at_most=False, rounds=_rounds("create_many", MONGOENGINE_DICTS, to=DEFAULT)),
    Target("create_many, MongoEngine prebuilt CPU per doc / default's", _cpu_doc("create_many", MONGOENGINE, DEFAULT), None,
           rounds=_rounds("create_many", MONGOENGINE, to=DEFAULT)),
    Target("cached find_one, times faster than uncached", lambda r: 1 / r["cached"].wall_ratio(CACHED, DEFAULT), 20.0,
           at_most=False),
]


def targets_table(results: dict[str, Result], markdown: bool = False) -> list[str]:
    """The issue's targets against this run's medians ("met" / "MISSED": a figure, not a test)."""
    return _table(("target", "measured", "per round (median, min-max)", "bound", ""), [t.row(results) for t in TARGETS],
                  markdown, numeric_from=1)


SAME_COLUMNS = ("operation", "astro_db side", "wall vs raw", "same commands' wall vs raw", "wall vs same commands",
                "the commands' share of the wall gap",
                "CPU/doc vs raw", "CPU/doc vs same commands", "the commands' share of the CPU gap")


def _share(astro: float, same: float, raw: float) -> str:
    """Of astro_db's excess over raw PyMongo, the part the raw side sending astro_db's commands
    also pays: the server's work and the driver's for those commands (the rest is astro_db's client)."""
    gap = astro - raw
    return "no gap" if gap <= 0.05 * raw else f"{(same - raw) / gap:.0%}"  # within 5% of raw: nothing to split


def same_commands_table(results: dict[str, Result], markdown: bool = False) -> list[str]:
    """Each astro_db write side against raw PyMongo sending exactly its commands (``suite.PAIRS``),
    beside its ratios to plain raw PyMongo (the targets' baseline); "same commands' wall vs raw"
    is the floor those commands put under any client on this server."""
    rows = []
    for key, side, same in PAIRS:
        result = results.get(key)
        if result is None or same not in result.samples or side not in result.samples:
            continue
        wall = {label: result.wall_per_op(label).median for label in (RAW, side, same)}
        cpu = {label: result.cpu_per_doc(label).median for label in (RAW, side, same)}
        rows.append([result.operation.name, side, f"{result.wall_ratio(side):.2f}x", f"{result.wall_ratio(same):.2f}x",
                     f"{result.wall_ratio(side, same):.2f}x",
                     _share(wall[side], wall[same], wall[RAW]), f"{result.cpu_ratio(side):.2f}x",
                     f"{result.cpu_ratio(side, same):.2f}x", _share(cpu[side], cpu[same], cpu[RAW])])
    return _table(SAME_COLUMNS, rows, markdown, numeric_from=2)


def commands_check(rows: Sequence[tuple[str, str, list[str]]], markdown: bool = False) -> list[str]:
    """The equivalence check's lines: each pair's commands, "same" or a WARNING with the differences."""
    bullet = "- " if markdown else "  "
    if not rows:
        return [f"{bullet}not checked: the embedded backend reports no commands (no command events)"]
    out = []
    for what, commands, problems in rows:
        if problems:
            out.append(f"{bullet}WARNING {what}: the commands differ: " + "; ".join(problems))
        else:
            out.append(f"{bullet}{what}: same commands ({commands})")
    return out
