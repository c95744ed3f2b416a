"""What a create's (and a delete's) ``bulkWrite`` costs the client, by how it is sent: ``python benchmarks/bulk_command.py``.

A default create (audit and journal on) sends its document and its change record in one
``bulkWrite`` command where the server has it (``astro_db/ops/bulk.py``). This script times, in
raw PyMongo on a plain client of its own (``tz_aware=True``, no listener) against an nx-27017
server it starts (the tests' patched launcher) or ``--url``, four ways of writing one document
(a User's stored shape) and one record holding it again:

- ``insert_one``: the document alone (raw PyMongo's plain create, for scale);
- ``MongoClient.bulk_write``: the document and its record as two ``InsertOne`` models of the
  client-level ``bulk_write``, which PyMongo turns into the command in Python, op by op;
- ``the command sent whole``: the same ordered, errors-only ``bulkWrite`` command built as one
  document and sent by ``admin.command`` (the admin database made once), which PyMongo encodes
  in C: what astro_db sends;
- ``two insert_one``: the document, then its record, as a server without ``bulkWrite`` gets them;
- and a delete's one command (its record as an intent, then the compare-and-set delete of a
  document inserted before the timing): ``delete: MongoClient.bulk_write`` with
  ``verbose_results=True`` (each delete's count, as astro_db asks for a chunk of
  ``delete_many``) and ``delete: the command sent whole`` (errors only, the count in its
  ``nDeleted``, as astro_db sends a ``delete``).

Inputs are built before the timing; one warm-up batch per side, then ``--rounds`` batches of
``--calls`` writes per side, the side that goes first rotating every round. Printed: per side,
the median client CPU (``time.process_time``) and wall time per write, their spread over the
rounds, and the ratio to ``insert_one``. ``--image BYTES`` adds that much binary data to each
document (where the one command stops paying for a large create: ``astro_db/ops/sizes.py``),
``--sides`` runs a subset. ``--update`` times the ways of sending an update and its record
instead (``update_sides``), against ``update_one``: what a default update sends today, and what a
record without the post-image would cost, after the update or in one command with it. Figures,
never assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher

import bson  # noqa: E402
import pymongo  # noqa: E402
from bson import ObjectId  # noqa: E402
from pymongo import DeleteOne, InsertOne, ReturnDocument  # noqa: E402

DB = "astro_bulk_command"


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from live.nxserver import NxServer

    data_dir = tempfile.mkdtemp(prefix="astro_bulk_command_nx_")
    nx = NxServer(data_dir)
    try:
        nx.start()
        yield nx.url(DB)
    finally:
        nx.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def pair(image: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """A User's stored document and a create record holding it (the shapes astro_db writes);
    ``image``: that many bytes more in the document, as a binary ``image`` field."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    oid = ObjectId()
    doc = {"_id": oid, "email": f"{oid}@bench.test", "name": "Ann", "status": "active", "createdAt": now,
           "updatedAt": now, "__v": 0, "_rev": 0}
    if image:
        doc["image"] = bytes(image)
    record = {"_id": f"users/{oid}/0/{ObjectId()}", "model": "User", "coll": "users", "documentId": oid, "rev": 0,
              "action": "create", "time": now, "t": 0, "audit": True, "actor": None, "requestId": None,
              "fields": sorted(set(doc) - {"_id"}), "journal": True, "doc": doc}
    return doc, record


def sides(client: Any, inputs: dict[str, list[Any]]) -> dict[str, tuple[Callable[..., Any], Callable[[int], Any]]]:
    """Each side: (what makes one input from a document and its record, the write of input
    ``i`` of ``inputs[side]``), on one database."""
    db, admin = client[DB], client.admin
    users, changes = db["users"], db["astroChanges"]
    target, changes_ns = f"{DB}.users", f"{DB}.astroChanges"

    def command(doc: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        return {"bulkWrite": 1, "ops": [{"insert": 0, "document": doc}, {"insert": 1, "document": record}],
                "nsInfo": [{"ns": target}, {"ns": changes_ns}], "ordered": True, "errorsOnly": True}

    def two(i: int) -> None:
        doc, record = inputs["two insert_one"][i]
        users.insert_one(doc)
        changes.insert_one(record)

    def stored(doc: dict[str, Any]) -> Any:  # a delete's document, inserted before the timing
        users.insert_one(doc)
        return doc["_id"]

    def delete_ops(doc: dict[str, Any], record: dict[str, Any]) -> list[Any]:
        return [InsertOne({**record, "action": "delete", "intent": {"audit": True, "journal": True}}, namespace=changes_ns),
                DeleteOne({"_id": stored(doc), "_rev": 0}, namespace=target)]

    def delete_command(doc: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        return {"bulkWrite": 1, "ops": [{"insert": 1, "document": {**record, "action": "delete",
                                                                    "intent": {"audit": True, "journal": True}}},
                                        {"delete": 0, "filter": {"_id": stored(doc), "_rev": 0}, "multi": False}],
                "nsInfo": [{"ns": target}, {"ns": changes_ns}], "ordered": True, "errorsOnly": True}

    return {
        "insert_one": (lambda doc, record: doc, lambda i: users.insert_one(inputs["insert_one"][i])),
        "MongoClient.bulk_write": (
            lambda doc, record: [InsertOne(doc, namespace=target), InsertOne(record, namespace=changes_ns)],
            lambda i: client.bulk_write(inputs["MongoClient.bulk_write"][i], ordered=True)),
        "the command sent whole": (command, lambda i: admin.command(inputs["the command sent whole"][i])),
        "two insert_one": (lambda doc, record: (doc, record), two),
        "delete: MongoClient.bulk_write": (
            delete_ops, lambda i: client.bulk_write(inputs["delete: MongoClient.bulk_write"][i], ordered=True,
                                                    verbose_results=True)),
        "delete: the command sent whole": (delete_command,
                                           lambda i: admin.command(inputs["delete: the command sent whole"][i])),
    }


def update_sides(client: Any, inputs: dict[str, list[Any]]) -> dict[str, tuple[Callable[..., Any], Callable[[int], Any]]]:
    """``--update``: each way of updating one field of a stored document (inserted before the
    timing) with or without a change record, as ``sides``. ``findAndModify, then its record`` is
    what a default ``db.update`` sends (the record, built from the reply, carries the revision the
    write gave and the post-image); the two ``delta record`` sides are what a record without the
    post-image would cost: the fields set and the op id, keyed by the op id (the revision is not
    known before the reply), after the update or in one ``bulkWrite`` with it."""
    db, admin = client[DB], client.admin
    users, changes = db["users"], db["astroChanges"]
    target, changes_ns = f"{DB}.users", f"{DB}.astroChanges"

    def stored(doc: dict[str, Any], record: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        users.insert_one(doc)
        return doc["_id"], record

    def change(op: Any) -> dict[str, Any]:
        return {"$set": {"name": f"Ann {op}", "updatedAt": _dt.datetime.now(_dt.timezone.utc), "_op": op},
                "$inc": {"_rev": 1, "__v": 1}}

    def delta(oid: Any, op: Any, update: dict[str, Any]) -> dict[str, Any]:
        return {"_id": f"users/{oid}/{op}", "model": "User", "coll": "users", "documentId": oid, "op": op,
                "action": "update", "time": update["$set"]["updatedAt"], "audit": True, "journal": True,
                "set": {"name": update["$set"]["name"]}}

    def plain(i: int) -> None:
        oid, _ = inputs["update_one"][i]
        op = ObjectId()
        users.update_one({"_id": oid}, change(op))

    def returned(i: int) -> None:
        oid, record = inputs["findAndModify, then its record"][i]
        op = ObjectId()
        doc = users.find_one_and_update({"_id": oid}, change(op), return_document=ReturnDocument.AFTER)
        changes.insert_one({**record, "_id": f"users/{oid}/{doc['_rev']}/{op}", "action": "update",
                            "rev": doc["_rev"], "time": doc["updatedAt"], "fields": ["name", "updatedAt"], "doc": doc})

    def after(i: int) -> None:
        oid, _ = inputs["update_one, then a delta record"][i]
        op = ObjectId()
        update = change(op)
        users.update_one({"_id": oid}, update)
        changes.insert_one(delta(oid, op, update))

    def together(i: int) -> None:
        oid, _ = inputs["one command: update, delta record"][i]
        op = ObjectId()
        update = change(op)
        reply = admin.command({"bulkWrite": 1, "ops": [
            {"update": 0, "filter": {"_id": oid}, "updateMods": update, "multi": False},
            {"insert": 1, "document": delta(oid, op, update)}],
            "nsInfo": [{"ns": target}, {"ns": changes_ns}], "ordered": True, "errorsOnly": True})
        if (reply["nModified"], reply["nInserted"]) != (1, 1):  # the work was done (two lookups)
            raise RuntimeError(f"the update and its record were not both written: {reply}")

    return {"update_one": (stored, plain), "findAndModify, then its record": (stored, returned),
            "update_one, then a delta record": (stored, after), "one command: update, delta record": (stored, together)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="measured batches per side (default 15)")
    parser.add_argument("--calls", type=int, default=100, help="writes per batch (default 100)")
    parser.add_argument("--url", help="a MongoDB URL with bulkWrite (MongoDB 8.0+); default: an nx-27017 started here")
    parser.add_argument("--image", type=int, default=0,
                        help="bytes of binary data added to each document (a large create: where one command "
                             "stops paying, astro_db/ops/sizes.py); default 0")
    parser.add_argument("--sides", help="comma-separated subset of the sides (the scale, insert_one or update_one, "
                                        "is always run)")
    parser.add_argument("--update", action="store_true",
                        help="the ways of sending an update and its change record instead (update_sides), "
                             "against update_one")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1 or args.image < 0:
        parser.error("--rounds and --calls must be at least 1, --image at least 0")
    with server(args.url) as url:
        client: Any = pymongo.MongoClient(url, tz_aware=True)
        try:
            inputs: dict[str, list[Any]] = {}
            writes = (update_sides if args.update else sides)(client, inputs)
            scale = "update_one" if args.update else "insert_one"
            if args.sides:
                wanted = {scale, *(name.strip() for name in args.sides.split(","))}
                unknown = wanted - set(writes)
                if unknown:
                    parser.error(f"unknown sides {sorted(unknown)}; known: {list(writes)}")
                writes = {name: side for name, side in writes.items() if name in wanted}
            names = list(writes)
            cpu: dict[str, list[float]] = {name: [] for name in names}
            wall: dict[str, list[float]] = {name: [] for name in names}
            for rnd in range(args.rounds + 1):  # round 0: the warm-up, not kept
                order = names[rnd % len(names):] + names[:rnd % len(names)]
                for name in order:
                    build, write = writes[name]
                    inputs[name] = [build(*pair(args.image)) for _ in range(args.calls)]  # before the timing
                    c0, w0 = time.process_time(), time.perf_counter()
                    for i in range(args.calls):
                        write(i)
                    c1, w1 = time.process_time(), time.perf_counter()
                    if rnd:
                        cpu[name].append((c1 - c0) / args.calls * 1e6)
                        wall[name].append((w1 - w0) / args.calls * 1e6)
            base_cpu, base_wall = statistics.median(cpu[scale]), statistics.median(wall[scale])
            size = len(bson.encode(pair(args.image)[0]))
            print(f"# a document of {size:,} BSON bytes and its record, {args.rounds} rounds of {args.calls} writes per side (+1 warm-up), "
                  "rotated; medians per write, client CPU (time.process_time) and wall")
            versus = f"vs {scale}"
            print(f"{'side':34s} {'CPU':>9s} {'CPU min-max':>17s} {versus:>13s} {'wall':>9s} {versus:>13s}")
            for name in names:
                c, w = statistics.median(cpu[name]), statistics.median(wall[name])
                print(f"{name:34s} {c:7.1f}µs {min(cpu[name]):7.1f}-{max(cpu[name]):7.1f}µs {c / base_cpu:12.2f}x "
                      f"{w:7.1f}µs {w / base_wall:12.2f}x")
        finally:
            with contextlib.suppress(pymongo.errors.PyMongoError):
                client.drop_database(DB)
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
