"""How find_one / find cost grows with the collection: ``python benchmarks/growth.py [--sizes 1000,10000]``.

Starts an nx-27017 server (the test suite's patched launcher), grows ``users`` by raw inserts
between steps, and prints µs per call at each size: astro_db ``find_one`` on the unique email
index next to raw PyMongo's (its own client), an unindexed ``find_one`` (a scan), and a lean
``find`` of 100 documents on the status index. Medians of 7 rounds after a warm-up.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import pymongo  # noqa: E402
from workloads import stored_user  # noqa: E402

from astro_db import Database  # noqa: E402
from astro_db.models import User  # noqa: E402


def per_call(fn: Callable[[int], Any], calls: int, rounds: int = 7) -> float:
    """Median seconds per call over ``rounds`` (one warm-up round discarded)."""
    times = []
    for r in range(rounds + 1):
        start = time.perf_counter()
        for i in range(calls):
            fn(i)
        if r:
            times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def measure(url: str, sizes: list[int], calls: int) -> list[dict[str, Any]]:
    raw = pymongo.MongoClient(url, tz_aware=True).get_default_database()
    out, have = [], 0
    with Database(url, allow_plaintext_sensitive=True, audit=False, journal=False) as db:
        for size in sizes:
            docs = [stored_user(n, "s", "inactive" if n % 100 == 0 else "active") for n in range(have, size)]
            for start in range(0, len(docs), 10_000):
                raw["users"].insert_many(docs[start:start + 10_000], ordered=False)
            have = size
            probes = [f"s{(n * 7919) % size}@example.com" for n in range(calls)]
            out.append({
                "size": size,
                "astro_db find_one (email)": per_call(lambda i, p=probes: db.find_one(User, {"email": p[i]}), calls),
                "raw find_one (email)": per_call(lambda i, p=probes: raw["users"].find_one({"email": p[i]}), calls),
                "find_one (scan)": per_call(lambda i, n=size // 2: db.find_one(User, {"name": f"User {n}"}), 3),
                "find 100 lean (status)": per_call(
                    lambda i: db.find(User, {"status": "inactive"}, limit=100, lean=True), max(1, calls // 10)),
            })
    raw.client.drop_database(raw.name)
    raw.client.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="collection sizes, comma-separated")
    parser.add_argument("--calls", type=int, default=50, help="calls per round")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    from live.nxserver import NxServer

    data_dir = tempfile.mkdtemp(prefix="astro_bench_growth_")
    server = NxServer(data_dir)
    try:
        server.start()
        rows = measure(server.url("astro_growth"), sizes, args.calls)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    columns = [k for k in rows[0] if k != "size"]
    print(f"{'documents':>10}" + "".join(f"{c:>28}" for c in columns) + "   (µs per call, median)")
    for row in rows:
        print(f"{row['size']:>10,}" + "".join(f"{row[c] * 1e6:>28,.0f}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
