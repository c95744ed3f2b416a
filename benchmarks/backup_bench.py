"""Backup and restore throughput against a raw cursor scan, on an nx-27017 server.

    python benchmarks/backup_bench.py [--docs 100000]

Starts a private nx-27017 server (tests/live/nxserver.py) on a temporary data directory, loads
``--docs`` PlanetaryInsight-shaped documents with raw PyMongo, then times in the same run: a raw
cursor scan of the collection, a full backup of it, and a restore into an empty database. Prints
documents/s and each figure's ratio to the raw scan. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path

from bson import ObjectId

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from live.nxserver import NxServer  # noqa: E402

from astro_db import Database, backup  # noqa: E402


def load(db: Database, n: int) -> None:
    coll = db.mongo["planetaryInsights"]
    now = _dt.datetime.now(_dt.timezone.utc)
    batch = []
    for i in range(n):
        batch.append({
            "_id": ObjectId(), "__v": 0, "userId": ObjectId(), "date": now - _dt.timedelta(days=i % 365),
            "energyLevel": i % 101, "recommendations": ["Take a walk", "Call a friend", f"Rest {i}"],
            "summary": f"Day {i}: a balanced, bright day with room for reflection.", "createdAt": now, "updatedAt": now,
        })
        if len(batch) == 5000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)


def timed(fn):
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = NxServer(Path(tmp) / "nx").start()
        try:
            opts = {"ensure_indexes": False, "journal": False, "audit": False, "allow_plaintext_sensitive": True}
            with Database(server.url("bench_src"), **opts) as src, Database(server.url("bench_dst"), **opts) as dst:
                _, load_s = timed(lambda: load(src, args.docs))
                n = src.mongo["planetaryInsights"].estimated_document_count()
                from astro_db.backup.stream import RAW

                raw = src.mongo.get_collection("planetaryInsights", codec_options=RAW)
                _, scan_s = timed(lambda: sum(1 for _ in raw.find({}, batch_size=1000)))
                summary, backup_s = timed(lambda: backup.backup(src, Path(tmp) / "repo", full=True))
                report, restore_s = timed(lambda: backup.restore(Path(tmp) / "repo", dst))
                assert report["collections"]["planetaryInsights"] == n
            rows = [("raw cursor scan", scan_s), ("backup (full)", backup_s), ("restore", restore_s)]
            print(f"nx-27017, {n} documents (load {n / load_s:,.0f} docs/s); backup set {summary['bytes'] / 1e6:.1f} MB")
            print(f"{'operation':<18} {'seconds':>9} {'docs/s':>10} {'vs scan':>8}")
            for name, secs in rows:
                print(f"{name:<18} {secs:>9.2f} {n / secs:>10,.0f} {secs / scan_s:>7.2f}x")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
