"""The defaults' writes, astro_db's own client CPU: ``python benchmarks/record_own.py``.

A default create, update, nested create and nested update (audit and journal on: the change
records written) of ``Database`` on the embedded backend set up as a server would be (one-command
creates in one ``bulkWrite`` command, raw BSON inserts), every driver call answered at once:
the model's collection answers with its stored document decoded from BSON (``find_one_and_update``
as a server's reply is decoded), and every insert and ``bulkWrite``
(documents and change records) only encodes what it was handed, as the driver's C encoder does. What
is left is astro_db's own CPU per call with the BSON work the driver does for it, and none of the
driver's Python, the network or the server: the steadiest figure of the records' own cost on a
noisy machine (``profile_calls.py --records --no-driver`` still sends the records to a server).
Prints, per kind, the median client CPU per call (``time.process_time``) of ``--rounds`` batches
of ``--batch`` calls and the Python function calls per call (cProfile's count, C functions
included). Figures, never assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bson  # noqa: E402
from bson import ObjectId  # noqa: E402
from bson.binary import UuidRepresentation  # noqa: E402
from bson.codec_options import CodecOptions  # noqa: E402
from odm.data import load  # noqa: E402
from odm.models import LargeNested  # noqa: E402
from odm.tasks import stored as odm_stored  # noqa: E402
from odm.tasks import with_unique_ids  # noqa: E402
from pymongo.write_concern import WriteConcern  # noqa: E402
from workloads import stored_insight, user_input  # noqa: E402

from astro_db import Database  # noqa: E402
from astro_db.models import PlanetaryInsight, User  # noqa: E402

DECODE = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)  # as the client decodes


class Instant:
    """A collection answering at once: its stored document decoded from BSON, inserts encoded."""

    def __init__(self, doc: dict[str, Any], database: Any) -> None:
        self.doc, self.database, self.raw = doc, database, bson.encode(doc)
        self.name = "instant"

    def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return bson.decode(self.raw, DECODE)

    find_one_and_update = find_one

    def insert_one(self, doc: Any, *args: Any, **kwargs: Any) -> None:
        bson.encode(doc)

    def insert_many(self, docs: Any, *args: Any, **kwargs: Any) -> None:
        for doc in docs:
            bson.encode(doc)



class InstantGateway:
    """The gateway of the instant collections: the change collection and ``bulkWrite``."""

    name = "instant"

    def __init__(self) -> None:
        self.collections: dict[str, Any] = {}
        self.changes = Instant({}, self)

    def __getitem__(self, name: str) -> Instant:
        return self.changes

    write_concern = WriteConcern()

    def bulk_write_command(self, command: dict[str, Any], session: Any = None) -> dict[str, Any]:
        bson.encode(command)  # what the driver does with it: encoded in C, in one piece
        return {"ok": 1.0, "nErrors": 0, "cursor": {"id": 0, "ns": "admin.$cmd.bulkWrite", "firstBatch": []}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="batches per kind, median kept (default 15)")
    parser.add_argument("--batch", type=int, default=100, help="calls per batch (default 100)")
    args = parser.parse_args(argv)
    db = Database("mongomock://localhost/record_own", ensure_indexes=False, models=[LargeNested]).connect()
    rt = db.executor.runtime
    rt.one_command_writes, rt.bulk_write = True, True  # as on a server that speaks bulkWrite (nx-27017, MongoDB 8.0)
    rt.capabilities = dataclasses.replace(rt.capabilities, raw_bson_inserts=True)  # as a server's
    gateway = InstantGateway()
    insight = stored_insight(ObjectId(), 1)
    insight = {"_id": insight.pop("_id"), **insight, "_rev": 1}
    shape = load(None).nested.document
    nested = {"_id": ObjectId(), **odm_stored(with_unique_ids(shape)), "_rev": 1}
    handles = {"PlanetaryInsight": Instant(insight, gateway), "User": Instant({}, gateway),
               LargeNested.__name__: Instant(nested, gateway)}
    rt.coll = lambda info: handles[info.name]  # type: ignore[method-assign]
    calls = args.rounds * args.batch + args.batch * 2
    users = [user_input(i, "own", "active") for i in range(calls * 2)]
    nests = [with_unique_ids(shape) for _ in range(calls * 2)]
    kinds: dict[str, Callable[[int], Any]] = {
        "create": lambda i: db.create(User, users[i]),
        "update": lambda i: db.update(PlanetaryInsight, {"id": insight["_id"]}, {"energy_level": i % 101}),
        "nested_create": lambda i: db.create(LargeNested, nests[i]),
        "nested_update": lambda i: db.update(LargeNested, {"id": nested["_id"]}, {"embedded_str_doc_1.field1": f"v{i}"}),
    }
    print(f"# records on, every driver call answered at once (BSON encoded and decoded as the driver does); "
          f"{args.rounds} batches of {args.batch} calls: median client CPU per call, function calls per call")
    for kind, call in kinds.items():
        n = 0
        per_call = []
        for _ in range(args.rounds):
            started = time.process_time()
            for _ in range(args.batch):
                call(n)
                n += 1
            per_call.append((time.process_time() - started) / args.batch * 1e6)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.batch):
            call(n)
            n += 1
        profiler.disable()
        counted = pstats.Stats(profiler).total_calls / args.batch
        print(f"{kind:<15} {statistics.median(per_call):8.1f} µs {counted:6.0f} calls", flush=True)
    db.close()


if __name__ == "__main__":
    main()
