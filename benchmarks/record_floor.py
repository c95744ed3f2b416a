"""The floor under a default update: ``python benchmarks/record_floor.py``.

A default ``db.update`` sends two commands: the ``findAndModify`` of the update, then the
``insert`` of its change record (which carries the revision only the update's reply tells). This
runs, in raw PyMongo on a plain client of its own (``tz_aware=True``, no listeners) against an
nx-27017 server started as ``benchmarks/run.py`` starts it, a ``find_one_and_update`` of one field
by id (advancing ``_rev``, stamping ``_op`` and ``updatedAt``, as astro_db's does) alone, and the
same followed by an ``insert_one`` of a change-record-shaped document holding its post-image, in
interleaved rounds (``--rounds`` of ``--calls`` each, the order alternated), and prints the median
wall time and client CPU (``time.process_time``) per call of both and their ratio: what no
client code can go below while the record is a command of its own. Figures, never assertions.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher

import pymongo  # noqa: E402
from bson import ObjectId  # noqa: E402
from pymongo import ReturnDocument  # noqa: E402
from workloads import stored_insight  # noqa: E402


def calls(db: Any, ids: list[Any]) -> dict[str, Callable[[int], Any]]:
    """The two sides: the update alone, and the update followed by its record's insert."""

    def update(i: int) -> Any:
        return db.planetaryInsights.find_one_and_update(
            {"_id": ids[i % len(ids)]},
            {"$set": {"energyLevel": i % 101, "_op": ObjectId()}, "$inc": {"_rev": 1},
             "$currentDate": {"updatedAt": True}},
            return_document=ReturnDocument.AFTER)

    def recorded(i: int) -> None:
        doc = update(i)
        db.astroChanges.insert_one({
            "_id": f"planetaryInsights/{doc['_id']}/{doc['_rev']}/{ObjectId()}", "time": _dt.datetime.now(_dt.timezone.utc),
            "actor": None, "action": "update", "model": "PlanetaryInsight", "documentId": str(doc["_id"]),
            "fields": ["energyLevel"], "requestId": None, "rev": doc["_rev"], "collection": "planetaryInsights",
            "image": doc})

    return {"update": update, "update + record": recorded}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds per side (default 20)")
    parser.add_argument("--calls", type=int, default=30, help="calls per round (default 30)")
    args = parser.parse_args(argv)

    from live.nxserver import temporary_server

    with temporary_server("astro_record_floor_") as server:
        measure(server.url(f"astro_floor_{uuid.uuid4().hex[:8]}"), args.rounds, args.calls)


def measure(url: str, rounds: int, calls_per_round: int) -> None:
    """The interleaved rounds on a fresh database at ``url`` (dropped after)."""
    name = url.rsplit("/", 1)[1]
    client: Any = pymongo.MongoClient(url, tz_aware=True)
    try:
        db = client[name]
        seed = [stored_insight(ObjectId(), n) for n in range(200)]
        db.planetaryInsights.insert_many(seed)
        sides = calls(db, [d["_id"] for d in seed])
        for fn in sides.values():  # warm-up
            for i in range(calls_per_round):
                fn(i)
        walls: dict[str, list[float]] = {k: [] for k in sides}
        cpus: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(rounds):
            for label in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                wall, cpu = time.perf_counter(), time.process_time()
                for i in range(calls_per_round):
                    sides[label](i)
                walls[label].append((time.perf_counter() - wall) / calls_per_round * 1e6)
                cpus[label].append((time.process_time() - cpu) / calls_per_round * 1e6)
        base_wall, base_cpu = statistics.median(walls["update"]), statistics.median(cpus["update"])
        print(f"# nx-27017, raw PyMongo; {rounds} interleaved rounds of {calls_per_round} calls: medians per call")
        print(f"{'side':<16} {'wall':>10} {'ratio':>6} {'client CPU':>11} {'ratio':>6}")
        for label in sides:
            wall, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
            print(f"{label:<16} {wall:>8.1f}us {wall / base_wall:>5.2f}x {cpu:>9.1f}us {cpu / base_cpu:>5.2f}x", flush=True)
    finally:
        client.drop_database(name)
        client.close()

if __name__ == "__main__":
    main()
