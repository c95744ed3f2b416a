"""astro_db against raw PyMongo and MongoEngine: ``python benchmarks/run.py [--quick] [--markdown]``.

Every operation runs as four variants on the same seeded collections: raw PyMongo on a client of
its own (stored documents built before timing, no astro_db code timed), astro_db in its default
configuration (audit trail and change journal on), astro_db with those hooks off, and
MongoEngine on its own connection. One warm-up round, then ``--rounds`` (default 7) measured
rounds in rotated order; printed: median and min-max of wall time and of this process's CPU time
per call and per document, and each figure's ratio to raw PyMongo, then the issue's targets.

Backends: an nx-27017 server this script starts (the test suite's patched launcher, on a
temporary data directory), ``ASTRO_DB_TEST_URI`` when set (a fresh database, dropped after),
and on request the embedded backend (mongomock-ng: in-process, so its CPU figures include the
"server"; for the smoke test). Figures, never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher

import report  # noqa: E402
from harness import Result, run_operation  # noqa: E402
from sides import Seed, open_sides  # noqa: E402
from suite import Sizes, check_commands, operations  # noqa: E402

PRESETS = {
    "full": Sizes(),
    "quick": Sizes(seed=2_000, users=500, calls=200, many=2_000),
    "tiny": Sizes(seed=40, users=20, calls=10, many=30, hot=4),
}
# mongomock-ng checks unique indexes and filters by scanning: the embedded backend gets small sets.
EMBEDDED_CAP = Sizes(seed=1_000, users=300, calls=100, many=300, hot=20)


@dataclasses.dataclass(frozen=True)
class Backend:
    label: str
    url: str | None  # None: the embedded backend


@contextlib.contextmanager
def nx_server() -> Iterator[Backend]:
    from live.nxserver import temporary_server

    with temporary_server("astro_bench_nx_") as server:
        yield Backend(f"nx-27017 {version('nx-27017')} (local process, patched launcher)", server.url("bench"))


@contextlib.contextmanager
def backend(kind: str) -> Iterator[Backend]:
    if kind == "embedded":
        yield Backend("embedded (mongomock-ng, in this process)", None)
    elif kind == "nx":
        with nx_server() as nx:
            yield nx
    else:
        uri = os.environ.get("ASTRO_DB_TEST_URI")
        if not uri:
            raise SystemExit("--backend uri needs ASTRO_DB_TEST_URI (a MongoDB URL; a fresh database is used and dropped)")
        yield Backend("mongodb (ASTRO_DB_TEST_URI)", uri)


def cap(sizes: Sizes, limit: Sizes) -> Sizes:
    return Sizes(**{f.name: min(getattr(sizes, f.name), getattr(limit, f.name)) for f in dataclasses.fields(Sizes)})


def server_kind(label: str, url: str | None) -> str:
    if url is None:
        return label
    import pymongo

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5_000)
    try:
        return f"{label}, reports version {client.admin.command('buildInfo').get('version', '?')}"
    finally:
        client.close()


def run_backend(b: Backend, sizes: Sizes, rounds: int, markdown: bool) -> None:
    if b.url is None:
        sizes = cap(sizes, EMBEDDED_CAP)
    versions = {name: version(name) for name in ("astro_db", "pymongo", "mongoengine")}
    lines = report.machine(server_kind(b.label, b.url), versions)
    began = time.perf_counter()
    results: dict[str, Result] = {}
    with open_sides(b.url, Seed.build(sizes.users, sizes.seed)) as sides:
        checked = check_commands(sizes, sides)  # untimed: the raw side sends astro_db's commands
        for key, operation in operations(sizes, sides).items():
            results[key] = run_operation(operation, rounds, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    bullet = "- " if markdown else "# "
    print(f"\n{'##' if markdown else '==='} {b.label}")
    for line in lines:
        print(bullet + line)
    print(f"{bullet}collection sizes: {sizes.seed:,} insights and {sizes.users:,} users for every variant; "
          f"1 warm-up + {rounds} rounds in rotated order; {time.perf_counter() - began:.0f} s")
    print()
    print("\n".join(report.variants_table(list(results.values()), markdown)))
    print()
    print("\n".join(report.targets_table(results, markdown)))
    print()
    print("raw PyMongo sending astro_db's commands (benchmarks/wire.py): the commands of one operation of each side, "
          "astro_db's captured on a listening client of its own, compared untimed:")
    print("\n".join(report.commands_check(checked, markdown)))
    print()
    print("\n".join(report.same_commands_table(results, markdown)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sets (2,000 documents, 200 calls)")
    mode.add_argument("--tiny", action="store_true", help="a few dozen documents: checks the benchmark runs")
    parser.add_argument("--backend", action="append", choices=["embedded", "nx", "uri"],
                        help="repeatable; default: nx, and uri when ASTRO_DB_TEST_URI is set")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds after the warm-up (default 7)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown (for the README)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    kinds = args.backend or ["nx", *(["uri"] if os.environ.get("ASTRO_DB_TEST_URI") else [])]
    logging.basicConfig(level=logging.ERROR)
    print(f"# astro_db benchmark ({preset}): wall and client CPU (this process's "
          "time.process_time) per call; ratios are to raw PyMongo, medians over the measured rounds")
    for kind in kinds:
        with backend(kind) as b:
            run_backend(b, PRESETS[preset], args.rounds, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
