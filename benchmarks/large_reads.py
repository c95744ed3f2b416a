"""Reading large results: ``python benchmarks/large_reads.py [--documents N] [--url URL]``.

Two figures, printed, never asserted (docs/reading.md):

1. **Streaming memory.** The peak Python memory (``tracemalloc``) of iterating ``--documents``
   insights with ``db.iter_find(..., lean=True)`` and hydrated, against iterating raw PyMongo's
   cursor on a plain client of its own and against ``db.find`` (the whole list), each from a
   fresh start, with the same ``batch_size``.
2. **Keyset page cost.** The time of ``db.page`` at page 1 and deep in the order (page
   ``--deep``), against ``db.find`` with ``skip`` to the same depth: median of ``--rounds``
   rounds in rotated order, client CPU and wall per page.

Runs against an nx-27017 server it starts (the tests' patched launcher) unless ``--url`` names a
MongoDB server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher


def peak_of(fn: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def seed(db: Any, n: int) -> None:
    user = db.create("User", {"email": f"bench-{uuid.uuid4().hex[:8]}@example.com", "name": "Bench"})
    start = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    batch: list[dict[str, Any]] = []
    for i in range(n):
        batch.append({"userId": user.id, "date": start + dt.timedelta(minutes=i), "energyLevel": i % 100,
                      "recommendations": ["Walk", "Read a book", "Call a friend"]})
        if len(batch) == 2000:
            failed = db.create_many("PlanetaryInsight", batch, lean=True).failed
            assert not failed, failed[:2]
            batch = []
    if batch:
        failed = db.create_many("PlanetaryInsight", batch, lean=True).failed
        assert not failed, failed[:2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=20)
    parser.add_argument("--deep", type=int, default=1000, help="the deep page's number")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--url", default=None)
    args = parser.parse_args(argv)

    import pymongo

    from astro_db import Database

    server = None
    url = args.url
    if url is None:
        from live.nxserver import NxServer

        server = NxServer(tempfile.mkdtemp(prefix="astro-large-reads-")).start()
        url = server.url(f"large_reads_{uuid.uuid4().hex[:6]}")
    try:
        db = Database(url, allow_plaintext_sensitive=True, audit=False, journal=False, monitoring=False).connect()
        raw = pymongo.MongoClient(url, tz_aware=True)
        coll = raw.get_default_database()["planetaryInsights"]
        started = time.perf_counter()
        seed(db, args.documents)
        print(f"seeded {args.documents} insights in {time.perf_counter() - started:.1f} s")

        def count(it: Any) -> int:
            n = 0
            for _ in it:
                n += 1
            return n

        sides: list[tuple[str, Callable[[], Any]]] = [
            ("raw PyMongo cursor", lambda: count(coll.find({}, batch_size=args.batch_size))),
            ("iter_find lean", lambda: count(db.iter_find("PlanetaryInsight", {}, lean=True, batch_size=args.batch_size))),
            ("iter_find hydrated", lambda: count(db.iter_find("PlanetaryInsight", {}, batch_size=args.batch_size))),
            ("find lean (a list)", lambda: len(db.find("PlanetaryInsight", {}, lean=True, batch_size=args.batch_size))),
        ]
        print(f"\npeak Python memory while reading {args.documents} documents (tracemalloc):")
        base = None
        for name, fn in sides:
            peak, n = peak_of(fn)
            assert n == args.documents, (name, n)
            base = base or peak
            print(f"  {name:<22} {peak / 1e6:8.2f} MB   {peak / base:6.2f}x raw")

        def page_at(depth: int) -> Callable[[], Any]:
            token = None
            for _ in range(depth - 1):  # walk to the page before (untimed), keep its token
                token = db.page("PlanetaryInsight", {}, sort="date", limit=args.page_size, after=token, lean=True).next
            return lambda: db.page("PlanetaryInsight", {}, sort="date", limit=args.page_size, after=token, lean=True)

        def skip_at(depth: int) -> Callable[[], Any]:
            return lambda: db.find("PlanetaryInsight", {}, sort="date", limit=args.page_size,
                                   skip=(depth - 1) * args.page_size, lean=True)

        db.sync_indexes()
        cases = {"page 1 (keyset)": page_at(1), f"page {args.deep} (keyset)": page_at(args.deep),
                 "page 1 (skip)": skip_at(1), f"page {args.deep} (skip)": skip_at(args.deep)}
        for fn in cases.values():  # warm-up
            fn()
        wall: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        names = list(cases)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(10):
                    cases[name]()
                wall[name].append((time.perf_counter() - w0) / 10)
                cpu[name].append((time.process_time() - c0) / 10)
        print(f"\none page of {args.page_size}: median of {args.rounds} rounds x 10 calls (spread = max-min)")
        for name in names:
            print(f"  {name:<20} wall {statistics.median(wall[name]) * 1e3:8.2f} ms (±{(max(wall[name]) - min(wall[name])) * 1e3:.2f})"
                  f"   client CPU {statistics.median(cpu[name]) * 1e3:7.2f} ms")
        db.disconnect()
        raw.close()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
