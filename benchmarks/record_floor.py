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

``--many N`` measures the same floor under a default ``create_many`` of ``N`` insights (run.py's
5,000): ``insert_many`` of the documents alone; the documents and then one change record per
document (the layout astro_db wrote before it packed a large create's records, built as
``wire.create_record`` builds them); and the documents and then the same records packed ``--pack``
to a record document (one record per batch, its per-document part in an array of embedded
documents, under the same audit fields, with a multikey index on the array's ``documentId`` in
place of the per-record one); one record per document without its post-image (``journal=False``, the
audit trail only); those records packed the same way (ids and revisions only: a layout
astro_db does not have, measured as the one that could meet ``create_many``'s bound); and packed
records keeping the post-images as one binary value of the documents' BSON, each document encoded
once in the timed section for both its insert and its record (``packed_blob``: the same question
with the images kept); and the records as astro_db writes them now (``wire.Writes.create_many``
with ``wire.packed_records``: one record per 1,000 documents, ids in an array, images as BSON
bytes, on astro_db's own change-record indexes). Each side on
emptied collections carrying astro_db's change-record indexes, inputs built before the timing,
interleaved rounds: what the server's work for the records costs, and what a batch layout would
cost instead.
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

import bson  # noqa: E402
import pymongo  # noqa: E402
from bson import ObjectId  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import ReturnDocument  # noqa: E402
from wire import CHANGES, Writes  # noqa: E402
from workloads import stored_insight  # noqa: E402

# the change-record indexes astro_db creates (changes.records.ensure_change_indexes), and the
# packed layout's counterpart of the trail's
RECORD_INDEXES = [pymongo.IndexModel([("model", 1), ("documentId", 1), ("rev", 1)]), pymongo.IndexModel([("t", 1)]),
                  pymongo.IndexModel([("intent", 1)], sparse=True)]
PACKED_INDEXES = [pymongo.IndexModel([("model", 1), ("docs.documentId", 1)]), pymongo.IndexModel([("t", 1)]),
                  pymongo.IndexModel([("intent", 1)], sparse=True)]


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
    parser.add_argument("--many", type=int, default=0,
                        help="instead: a create_many of this many insights, with and without its records")
    parser.add_argument("--pack", type=int, default=1000, help="with --many: records per packed record document")
    args = parser.parse_args(argv)

    from live.nxserver import temporary_server

    with temporary_server("astro_record_floor_") as server:
        url = server.url(f"astro_floor_{uuid.uuid4().hex[:8]}")
        if args.many:
            measure_many(url, args.rounds, args.many, args.pack)
        else:
            measure(url, args.rounds, args.calls)


def packed(records: list[dict[str, Any]], per: int) -> list[dict[str, Any]]:
    """``records`` (one create_many's, one operation) as documents of ``per`` records each: what
    they share once, each document's own part (its id, revision and post-image) in ``docs``."""
    out = []
    for start in range(0, len(records), per):
        part = records[start:start + per]
        head = {k: v for k, v in part[0].items() if k not in ("_id", "documentId", "rev", "doc")}
        out.append({"_id": f"{part[0]['_id']}/{start}", **head,
                    "docs": [{"documentId": r["documentId"], "rev": r["rev"], **({"doc": r["doc"]} if "doc" in r else {})}
                             for r in part]})
    return out


def packed_blob(records: list[dict[str, Any]], per: int) -> list[dict[str, Any]]:
    """``packed`` with the post-images out of ``docs``: each record document carries its
    documents' ids and revisions, and their stored BSON concatenated in one binary value
    (``images``), filled in by the timed section from the bytes the insert sends."""
    return [{**rec, "docs": [{k: v for k, v in d.items() if k != "doc"} for d in rec["docs"]]}
            for rec in packed(records, per)]


def with_images(docs: list[dict[str, Any]], records: list[dict[str, Any]], per: int) -> list[Any]:
    """``docs`` each encoded once (``RawBSONDocument``, what the insert sends as is), and each of
    ``packed_blob``'s ``records`` given its ``per`` documents' bytes, concatenated, as ``images``."""
    raw = [RawBSONDocument(bson.encode(d)) for d in docs]
    for i, rec in enumerate(records):
        rec["images"] = bson.Binary(b"".join(d.raw for d in raw[i * per:(i + 1) * per]))
    return raw


def measure_many(url: str, rounds: int, n: int, per: int) -> None:
    """The three create_many sides in interleaved rounds on a fresh database at ``url`` (dropped after)."""
    name = url.rsplit("/", 1)[1]
    client: Any = pymongo.MongoClient(url, tz_aware=True)
    try:
        db = client[name]
        writes = Writes(db, "PlanetaryInsight", "planetaryInsights", owner="userId")
        owner = ObjectId()

        def inputs(layout: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            if layout == "astro_db":  # the records as astro_db writes them now: packed (changes.records.pack_records)
                docs, records, _ = writes.create_many_inputs([stored_insight(owner, i) for i in range(n)])
                return docs, records
            docs, records, _ = writes.create_many_inputs([stored_insight(owner, i) for i in range(n)], pack=False)
            if layout in ("audit", "packed audit"):  # journal=False: the records without their post-image
                records = [{k: v for k, v in rec.items() if k not in ("journal", "doc")} for rec in records]
            if layout == "packed blob":
                return docs, packed_blob(records, per)
            return docs, (records if layout in ("records", "audit") else packed(records, per) if "packed" in layout else [])

        def reset(layout: str) -> None:
            db.planetaryInsights.drop()
            db[CHANGES].drop()
            db[CHANGES].create_indexes(PACKED_INDEXES if "packed" in layout else RECORD_INDEXES)

        sides = {"documents": "none", "documents + records": "records", f"documents + records packed {per}": "packed",
                 "documents + records, journal off": "audit", f"documents + packed {per}, journal off": "packed audit",
                 f"documents + packed {per}, images as bytes": "packed blob",
                 "documents + records as astro_db packs them": "astro_db"}
        walls: dict[str, list[float]] = {k: [] for k in sides}
        cpus: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(rounds + 1):  # the first round is the warm-up
            labels = list(sides)
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                layout = sides[label]
                docs, records = inputs(layout)
                reset(layout)
                wall, cpu = time.perf_counter(), time.process_time()
                if layout == "packed blob":
                    docs = with_images(docs, records, per)
                db.planetaryInsights.insert_many(docs, ordered=False)
                if records:
                    db[CHANGES].insert_many(records, ordered=False)
                if r:
                    walls[label].append(time.perf_counter() - wall)
                    cpus[label].append(time.process_time() - cpu)
                if db.planetaryInsights.count_documents({}) != n:
                    raise RuntimeError(f"{label}: not every document was written")
        base = statistics.median(walls["documents"])
        print(f"# nx-27017, raw PyMongo; a create_many of {n:,} insights, {rounds} rotated rounds: medians (min-max)")
        print(f"{'side':<34} {'wall':>18} {'ratio':>6} {'per-round ratio':>18} {'client CPU':>10}")
        for label in sides:
            wall = statistics.median(walls[label])
            paired = [a / b for a, b in zip(walls[label], walls["documents"])]
            print(f"{label:<34} {wall * 1e3:>7.0f} ms ({min(walls[label]) * 1e3:.0f}-{max(walls[label]) * 1e3:.0f}) "
                  f"{wall / base:>5.2f}x {statistics.median(paired):>5.2f}x ({min(paired):.2f}-{max(paired):.2f}) "
                  f"{statistics.median(cpus[label]) * 1e3:>7.0f} ms", flush=True)
    finally:
        client.drop_database(name)
        client.close()


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
