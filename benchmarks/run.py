"""astro_db against raw PyMongo, per backend: ``python benchmarks/run.py [--quick | --tiny]``.

Backends: the embedded one (mongomock-ng), an nx-27017 server this script starts (through the
test suite's patched launcher, on a temporary data directory), and ``ASTRO_DB_TEST_URI`` when
set (a fresh database there, dropped afterwards). Prints, per backend, astro_db ops/s, raw
PyMongo ops/s on the same data in the same run and the ratio (astro_db time / raw time; 1.10
means 10% slower); then the per-document CPU cost of the write and read paths with no server;
then how find_one / find cost grows with the collection. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher

from astro_db import Database  # noqa: E402

import codec_cost  # noqa: E402
from workloads import Row, Sizes, run_hooked, run_scaling, run_service  # noqa: E402

# mongomock-ng checks unique and text indexes by scanning (inserts are quadratic) and filters by
# full scans: the embedded backend gets small data sets (its figures are for the smoke test).
EMBEDDED_CAP = 1_000
EMBEDDED_MANY = 300
PRESETS = {
    "full": Sizes(),
    "quick": Sizes(many=10_000, budget_s=0.25, rounds=2, scaling=(1_000, 10_000)),
    "tiny": Sizes(many=200, small_find=50, big_find=200, budget_s=0.02, rounds=1, scaling=(100, 300)),
}


def _with_db(uri: str, name: str) -> str:
    base, sep, query = uri.partition("?")
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/{name}" + (f"?{query}" if sep else "")


def backends(which: list[str]) -> Iterator[tuple[str, Callable[[str], str], Callable[[], None]]]:
    """(label, url_for(dbname), stop) for each backend asked for and available."""
    if "embedded" in which:
        yield "embedded (mongomock-ng)", lambda name: f"mongomock://localhost/{name}", lambda: None
    if "nx" in which:
        from live.nxserver import NxServer

        data_dir = tempfile.mkdtemp(prefix="astro_bench_nx_")
        server = NxServer(data_dir)

        def stop() -> None:
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)

        server.start()
        yield "nx-27017 (local, patched)", server.url, stop
    uri = os.environ.get("ASTRO_DB_TEST_URI")
    if "uri" in which and uri:
        yield "ASTRO_DB_TEST_URI", lambda name: _with_db(uri, name), lambda: None


def _ops(seconds: float | None) -> str:
    return f"{1 / seconds:>12,.1f}" if seconds else f"{'-':>12}"


def print_service(label: str, rows: list[Row]) -> None:
    print(f"\n## {label}")
    print(f"{'operation':<26}{'astro_db ops/s':>15}{'PyMongo ops/s':>15}{'ratio':>8}  {'target':<16}note")
    for row in rows:
        ratio = f"{row.ratio:>7.2f}x" if row.ratio else f"{'-':>8}"
        print(f"{row.name:<26}{_ops(row.astro_s):>15}{_ops(row.raw_s):>15}{ratio}  {row.target:<16}{row.note}")


def print_scaling(label: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {label}: cost as the users collection grows (µs per call)")
    print(f"{'documents':>10}{'find_one idx':>14}{'raw idx':>10}{'find_one scan':>15}{'find 100 lean':>15}")
    for r in rows:
        print(f"{r['size']:>10,}{r['find_one_indexed'] * 1e6:>14,.0f}{r['raw_find_one_indexed'] * 1e6:>10,.0f}"
              f"{r['find_one_unindexed'] * 1e6:>15,.0f}{r['find_100_lean_indexed'] * 1e6:>15,.0f}")


def print_codec(rows: list[dict[str, Any]], n: int) -> None:
    print(f"\n## per-document CPU cost, no server ({n:,} documents, µs per document, best of 3)")
    print(f"{'model':<18}{'path':<30}{'MongoEngine':>12}{'astro_db':>10}{'bson':>8}{'speed-up':>10}  target")
    for r in rows:
        speedup = r["mongoengine"] / r["astro_db"]
        print(f"{r['model']:<18}{r['path']:<30}{r['mongoengine']:>12.1f}{r['astro_db']:>10.1f}{r['bson']:>8.1f}"
              f"{speedup:>9.1f}x  >= 3x")
    print("write: MongoEngine = Model(**data).validate() + to_mongo(); bson = bson.encode of the stored document")
    print("read:  MongoEngine = Model._from_son(son); bson = bson.decode of the stored bytes")


def run_backend(label: str, url_for: Callable[[str], str], sizes: Sizes) -> None:
    if label.startswith("embedded"):
        sizes = dataclasses.replace(sizes, many=min(sizes.many, EMBEDDED_MANY), big_find=min(sizes.big_find, EMBEDDED_MANY),
                                    small_find=min(sizes.small_find, EMBEDDED_MANY // 3),
                                    scaling=tuple(sorted({min(n, EMBEDDED_CAP) for n in sizes.scaling})))
        print(f"\n(embedded backend: at most {EMBEDDED_MANY:,} documents per batch and {EMBEDDED_CAP:,} in a collection)")
    name = f"astro_bench_{uuid.uuid4().hex[:8]}"
    scale_name = name + "_s"
    try:
        with Database(url_for(name), connect_attempts=1, audit=False, journal=False) as db:
            rows = run_service(db, sizes)
            if not label.startswith("embedded"):  # a new embedded Database would start empty
                with Database(url_for(name), connect_attempts=1, ensure_indexes=False) as hooked:
                    rows += run_hooked(hooked, sizes)
        print_service(label, rows)
        with Database(url_for(scale_name), connect_attempts=1, audit=False, journal=False) as db:
            rows = run_scaling(db, sizes)
        print_scaling(label, rows)
    finally:
        if not label.startswith("embedded"):
            _drop(url_for(name), name, scale_name)


def _drop(url: str, *names: str) -> None:
    import pymongo

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=2000)
    try:
        for name in names:
            client.drop_database(name)
    except Exception:  # best effort: a temporary nx-27017 data directory goes anyway
        pass
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter rounds; collection sizes up to 10k (a minute or two)")
    mode.add_argument("--tiny", action="store_true", help="a few hundred documents: checks the benchmark runs")
    parser.add_argument("--backend", action="append", choices=["embedded", "nx", "uri"],
                        help="run only these backends (repeatable; default: all available)")
    parser.add_argument("--no-codec", action="store_true", help="skip the per-document CPU table")
    args = parser.parse_args(argv)
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    sizes = PRESETS[preset]
    logging.basicConfig(level=logging.ERROR)
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as each backend finishes
    began = time.perf_counter()
    print(f"# astro_db benchmark ({preset}); ratio = astro_db time / raw PyMongo time (lower is better)")
    print("# write hooks off (audit=False, journal=False) except in the rows marked +audit +journal")
    for label, url_for, stop in backends(args.backend or ["embedded", "nx", "uri"]):
        try:
            run_backend(label, url_for, sizes)
        finally:
            stop()
    if not args.no_codec:
        n = 200 if args.tiny else 2_000
        print_codec(codec_cost.measure(n), n)
    print(f"\n(total {time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
