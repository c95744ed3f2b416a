"""Where a ``create_many``'s client CPU goes, per document: ``python benchmarks/bulk_cost.py``.

A batch of ``--n`` insights (default 5,000), as ``benchmarks/run.py``'s create_many, through
``Database(url)`` (the defaults: change records with audit and journal, no encryption key) and
``audit=False, journal=False`` (hooks off), on an nx-27017 server this script starts (the patched
launcher, as ``run.py``) or ``--backend embedded``. Printed, each a median over ``--rounds``
interleaved rounds of client CPU (``time.process_time``) per document:

- the whole call, both configurations (and raw PyMongo's ``insert_many`` of the stored form);
  with ``--no-driver`` the model's and the change collection's driver collections do nothing
  (no encoding, no I/O): what is left is astro_db's own CPU;
- its phases, each timed alone on the same batch with the functions the pipeline calls:
  validation and the codec (``codec.encode_new`` and the key check), the service fields and the
  client-made ``_id`` (the rest of ``writes.new_document``), sealing (``FieldCrypto.seal_document``;
  no key here), building the change records (``ChangeLog.build``) and BSON encoding of the
  documents and of their records (what the driver does in C);
- with ``--top N``: the Python function calls per document of each configuration (cProfile's
  count, C functions included: it does not depend on the machine's load) and its N costliest
  functions.

Figures, never assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # live/nxserver.py: the patched nx-27017 launcher

import bson  # noqa: E402
from bson import ObjectId  # noqa: E402
from bson.codec_options import CodecOptions  # noqa: E402
from workloads import insight_input, stored_insight  # noqa: E402

from astro_db import Database  # noqa: E402
from astro_db.models import PlanetaryInsight, codec  # noqa: E402
from astro_db.ops.writes import _created, new_document  # noqa: E402
from astro_db.query.filters import check_document_keys  # noqa: E402

MODEL, COLLECTION = "PlanetaryInsight", "planetaryInsights"


class Nothing:
    """A collection handle whose inserts do nothing (``--no-driver``); the rest is the real one's."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def insert_many(self, *args: Any, **kwargs: Any) -> None:
        return None

    insert_one = insert_many

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def no_driver(db: Database) -> None:
    gateway = db.executor.runtime.gateway
    for name in (COLLECTION, "astroChanges"):
        gateway.collections[name] = Nothing(gateway[name])  # type: ignore[assignment]


def cpu(fn: Callable[[], Any]) -> float:
    gc.collect()
    started = time.process_time()
    fn()
    return time.process_time() - started


@contextmanager
def server(kind: str) -> Iterator[str]:
    if kind == "embedded":
        yield f"mongomock://localhost/bulk_{uuid.uuid4().hex[:8]}"
        return
    from live.nxserver import temporary_server

    with temporary_server("astro_bulk_nx_") as nx:
        yield nx.url(f"bulk_{uuid.uuid4().hex[:8]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", default="nx", choices=("nx", "embedded"))
    parser.add_argument("--n", type=int, default=5_000, help="documents per create_many (default 5,000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved measured rounds (default 7)")
    parser.add_argument("--no-driver", action="store_true", help="inserts that do nothing: astro_db's own CPU")
    parser.add_argument("--top", type=int, default=0, help="function calls per document and the N costliest functions")
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    args = parser.parse_args(argv)
    n = args.n
    with server(args.backend) as url:
        dbs = {"default": Database(url, allow_plaintext_sensitive=True, connect_attempts=1).connect(),
               "hooks off": Database(url, allow_plaintext_sensitive=True, connect_attempts=1, audit=False, journal=False,
                                     ensure_indexes=False).connect()}
        try:
            run_all(args, n, dbs)
        finally:
            for db in dbs.values():
                db.close()


def run_all(args: argparse.Namespace, n: int, dbs: dict[str, Database]) -> None:
    default = dbs["default"]
    store = default.mongo[COLLECTION]  # the raw escape hatch: resets between rounds, untimed
    raw = None if args.no_driver or args.backend == "embedded" else store
    if args.no_driver:
        for db in dbs.values():
            no_driver(db)
    owner = ObjectId()
    rt = default.executor.runtime
    info = rt.registry.resolve(MODEL)
    options = store.codec_options if isinstance(store.codec_options, CodecOptions) else CodecOptions(tz_aware=True)

    def batch() -> list[dict[str, Any]]:
        return [insight_input(owner, i) for i in range(n)]

    def whole(db: Database) -> Callable[[], float]:
        def one() -> float:
            items = batch()
            spent = cpu(lambda: db.create_many(PlanetaryInsight, items))
            store.delete_many({"userId": owner})
            return spent
        return one

    def raw_insert() -> float:
        docs = [stored_insight(owner, i) for i in range(n)]
        assert raw is not None
        spent = cpu(lambda: raw.insert_many(docs, ordered=False))
        store.delete_many({"userId": owner})
        return spent

    def phases() -> dict[str, float]:
        items = batch()
        out = {"validation and codec": cpu(lambda: [check_document_keys(codec.encode_new(info.cls, d)) for d in items])}
        sons: list[dict[str, Any]] = []
        out["service fields and _id"] = max(cpu(lambda: sons.extend(new_document(info, d) for d in items))
                                            - out["validation and codec"], 0.0)
        out["sealing (no key)"] = cpu(lambda: [rt.crypto.seal_document(info, s) for s in sons])
        fields = tuple(sorted(set().union(*sons) - {"_id"}))
        records: list[dict[str, Any]] = []
        out["change records: build"] = cpu(lambda: records.extend(rt.changes.build(
            model=MODEL, collection=COLLECTION, action="create", changes=[_created(s) for s in sons], fields=fields,
            actor=None, request_id=None, op=ObjectId())))
        out["BSON: documents"] = cpu(lambda: [bson.encode(s, codec_options=options) for s in sons])
        out["BSON: change records"] = cpu(lambda: [bson.encode(r, codec_options=options) for r in records])
        return out

    sides: dict[str, Callable[[], float]] = {name: whole(db) for name, db in dbs.items()}
    if raw is not None:
        sides["raw insert_many"] = raw_insert
    for side in sides.values():  # warm-up
        side()
    spent: dict[str, list[float]] = {name: [] for name in sides}
    parts: list[dict[str, float]] = []
    names = list(sides)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            spent[name].append(sides[name]())
        parts.append(phases())
    mode = "no driver (astro_db's own CPU)" if args.no_driver else args.backend
    print(f"# create_many of {n:,} insights, {mode}: client CPU per document, median of {args.rounds} interleaved rounds")
    for name, values in spent.items():
        print(f"{name:<28} {statistics.median(values) / n * 1e6:7.2f} µs   (min {min(values) / n * 1e6:.2f}, "
              f"max {max(values) / n * 1e6:.2f})")
    print("# phases, each alone on the same batch")
    for phase in parts[0]:
        print(f"  {phase:<26} {statistics.median(p[phase] for p in parts) / n * 1e6:7.2f} µs")
    if args.top:
        for name, db in dbs.items():
            items = batch()
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            db.create_many(PlanetaryInsight, items)
            profiler.disable()
            store.delete_many({"userId": owner})
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats(args.sort).print_stats(args.top)
            print(f"\n## {name}: {stats.total_calls / n:.1f} function calls per document")  # type: ignore[attr-defined]
            print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


if __name__ == "__main__":
    main()
