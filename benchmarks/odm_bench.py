"""The MongoDB ODM Performance Benchmark: ``python benchmarks/odm_bench.py [--quick] [--ops N] [--url URL]``.

The drivers' specification ``odm-benchmarking.md`` (github.com/mongodb/specifications,
``source/benchmarking/``): flat models (small and large) and a large nested model; create,
update, find by filter, find by foreign key through ``$lookup``, find by a nested field and by a
nested array field; each task scored in MB/s from the median of its iterations, percentiles
recorded. Four sides in one run, in rotated order, one warm-up iteration discarded: raw PyMongo
on a plain client, astro_db as shipped, astro_db with ``audit=False, journal=False``, and
MongoEngine with documents of the same shapes; the update tasks add a fifth, astro_db hooks off
with ``db.update(..., returning=False)`` (no document back, as raw ``update_one``), and the write
tasks raw PyMongo sending the commands astro_db sends (``benchmarks/wire.py``: its change records,
its ``findAndModify``), checked once per task against astro_db's own and tabled beside it. Against an nx-27017 server started for the run
(the test suite's patched launcher), or ``--url``. The spec's data files are read from ``--data``
(or ``ASTRO_DB_ODM_DATA``); without them, documents of their shapes and sizes are generated.
Figures, never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from harness import Operation, run_operation  # noqa: E402
from odm import data as odm_data  # noqa: E402
from odm.models import ASTRO_MODELS  # noqa: E402
from odm.score import TaskResult, as_json, commands_lines, same_commands_table, score, tables  # noqa: E402
from odm.tasks import ALL_SIDES, DEFAULT, SAME_COMMANDS, SIDES, TASKS, commands_check, open_sides  # noqa: E402

SPEC_OPS = 10_000  # operations an iteration, the spec's count for every task
QUICK = {"ops": 10, "large_ops": 2, "iterations": 2}


@contextlib.contextmanager
def server(url: str | None) -> Iterator[tuple[str, str]]:
    """(label, url): the given server, or an nx-27017 started for the run."""
    if url:
        yield "server at --url", url
        return
    from live.nxserver import NxServer

    data_dir = tempfile.mkdtemp(prefix="astro_odm_nx_")
    nx = NxServer(data_dir)
    try:
        nx.start()
        yield f"nx-27017 {version('nx-27017')} (local process, patched launcher)", nx.url("bench")
    finally:
        nx.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def profile(operation: Operation, label: str, top: int) -> str:
    """One more untimed run of ``label``'s variant under cProfile: its ``top`` functions by own time."""
    variant = next((v for v in operation.variants if v.label == label), None)
    if variant is None:
        return f"profile of {operation.name}, {label}: the side did not run"
    variant.setup()
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(operation.calls):
        variant.op(i)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"total {stats.total_tt * 1e3:.1f} ms of profiled time; astro_db's functions by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats("astro_db", top)
    lines = [line for line in out.getvalue().strip().splitlines() if line.strip()]
    return "\n".join([f"## profile of {operation.name}, {label} ({operation.calls:,} operations)",
                      lines[0], *[line for line in lines[1:] if "function calls" not in line and "Ordered by" not in line]])


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny counts ({QUICK['ops']} operations, {QUICK['large_ops']} for the large flat "
                             f"model, {QUICK['iterations']} iterations): checks the benchmark runs")
    parser.add_argument("--ops", type=int, help=f"operations per iteration (default: the spec's {SPEC_OPS:,})")
    parser.add_argument("--large-ops", type=int,
                        help="operations per iteration of the large flat model's tasks (default: --ops; a LARGE_DOC "
                             "is 3.2 MB, so the spec's 10,000 write 32 GB an iteration)")
    parser.add_argument("--iterations", type=int, help="measured iterations per task and side (default 10)")
    parser.add_argument("--tasks", help="comma-separated task keys (default: all): " + ", ".join(t.key for t in TASKS))
    parser.add_argument("--url", help="a MongoDB URL (a fresh database is used and dropped); default: nx-27017")
    parser.add_argument("--data", help="the spec's extracted odm-data directory (default: ASTRO_DB_ODM_DATA, "
                                       "else generated documents)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--json", help="also write every figure (percentiles included) to this file")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="after the measured run, run each task's astro_db default side once more under "
                             "cProfile and print astro_db's N most expensive functions (cumulative); not in the figures")
    args = parser.parse_args(argv)
    if args.ops is None:
        args.ops = QUICK["ops"] if args.quick else SPEC_OPS
    if args.large_ops is None:
        args.large_ops = QUICK["large_ops"] if args.quick else args.ops
    if args.iterations is None:
        args.iterations = QUICK["iterations"] if args.quick else 10
    for name in ("ops", "large_ops", "iterations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    keys = [t.key for t in TASKS]
    args.tasks = args.tasks.split(",") if args.tasks else keys
    unknown = [k for k in args.tasks if k not in keys]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(keys)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.ERROR)
    datasets = odm_data.load(args.data)
    versions = {name: version(name) for name in ("astro_db", "pymongo", "mongoengine")}
    began = time.perf_counter()
    results: list[TaskResult] = []
    profiles: list[str] = []
    with server(args.url) as (label, url):
        about = report.machine(label, versions)
        with open_sides(url, ASTRO_MODELS) as sides:
            for task in (t for t in TASKS if t.key in args.tasks):
                ops = args.large_ops if task.dataset == "large" else args.ops
                built, blocked = task.build(sides, datasets, ops)
                checked = commands_check(task, sides, datasets)  # untimed: the raw side sends astro_db's commands
                operation = Operation(task.key, built.calls, built.variants)
                result = run_operation(operation, args.iterations,
                                       progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
                done = TaskResult(task.key, task.title, ops, task.op_bytes(datasets), blocked=blocked, commands=checked)
                done.scores = {side: score(result, side, done.task_bytes) for side in ALL_SIDES if side in result.samples}
                results.append(done)
                if args.profile:
                    profiles.append(profile(operation, DEFAULT, args.profile))
    elapsed = time.perf_counter() - began
    bullet = "- " if args.markdown else "# "
    print("# MongoDB ODM Performance Benchmark (odm-benchmarking.md): MB/s of documents processed, from the "
          "median iteration (higher is better); ratios are of MB/s")
    for line in [*about, f"data: {datasets.origin}",
                 f"{args.ops:,} operations an iteration ({args.large_ops:,} for the large flat model), 1 warm-up + "
                 f"{args.iterations} iterations per side in rotated order; {elapsed:.0f} s (load average after the run: "
                 f"{', '.join(f'{x:.2f}' for x in os.getloadavg())})"]:
        print(bullet + line)
    print()
    print("\n".join(tables(results, SIDES, args.markdown)))
    same = same_commands_table(results, SAME_COMMANDS, args.markdown)
    if same:
        print("\nraw PyMongo sending astro_db's commands (benchmarks/wire.py): the commands of one operation of each "
              "side, astro_db's captured on a listening client of its own, compared untimed:")
        print("\n".join(commands_lines(results, args.markdown)))
        print()
        print("\n".join(same))
    for text in profiles:
        print("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(results, {"lines": about, "data": datasets.origin,
                                                                   "iterations": args.iterations}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
