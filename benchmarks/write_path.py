"""The default write path against raw PyMongo on nx-27017: ``python benchmarks/write_path.py``.

create x500, update x500 and create_many of 5,000 users, each through astro_db (default
configuration: audit and journal on; and with both off) and the same work on raw PyMongo, on a
server this script starts. Prints the median over 7 runs of astro_db time / raw time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher

import pymongo  # noqa: E402
from pymongo import ReturnDocument  # noqa: E402

from astro_db import Database  # noqa: E402
from astro_db.ops.writes import new_document  # noqa: E402

RUNS, CALLS, MANY = 7, 500, 5_000


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def user(n: int, tag: str) -> dict[str, Any]:
    return {"email": f"{tag}{n}@bench.test", "name": f"User {n}"}


def one_run(url: str, **options: Any) -> dict[str, float]:
    db = Database(url, **{"allow_plaintext_sensitive": True, **options}).connect()  # no key: as before encryption
    raw = pymongo.MongoClient(url)[db.mongo.name]["users"]
    info = db.executor.runtime.registry.resolve("User")
    tag = uuid.uuid4().hex[:6]
    out = {}
    raw_docs = [new_document(info, user(n, f"r{tag}")) for n in range(CALLS)]
    t_raw = timed(lambda: [raw.insert_one(d) for d in raw_docs])
    made = []
    t_db = timed(lambda: [made.append(db.create("User", user(n, f"a{tag}"))) for n in range(CALLS)])
    out["create x500"] = t_db / t_raw
    t_raw = timed(lambda: [raw.find_one_and_update({"_id": d["_id"]}, {"$set": {"name": "x", "updatedAt": d["updatedAt"]}},
                                                   return_document=ReturnDocument.AFTER) for d in raw_docs])
    t_db = timed(lambda: [db.update("User", {"id": u.id}, {"name": "x"}) for u in made])
    out["update x500"] = t_db / t_raw
    many_raw = [new_document(info, user(n, f"mr{tag}")) for n in range(MANY)]
    t_raw = timed(lambda: raw.insert_many(many_raw, ordered=False))
    t_db = timed(lambda: db.create_many("User", [user(n, f"ma{tag}") for n in range(MANY)]))
    out["create_many 5,000"] = t_db / t_raw
    raw.database.client.drop_database(raw.database.name)
    raw.database.client.close()
    db.disconnect()
    return out


def main() -> None:
    from live.nxserver import NxServer

    server = NxServer(tempfile.mkdtemp(prefix="astro_bench_"))
    server.start()
    try:
        for label, options in (("default (audit + journal)", {}), ("hooks off", {"audit": False, "journal": False})):
            runs = [one_run(server.url(f"bench_{uuid.uuid4().hex[:6]}"), **options) for _ in range(RUNS)]
            for name in runs[0]:
                print(f"{label:<26} {name:<18} {statistics.median(r[name] for r in runs):.2f}x raw")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
