"""Per-document CPU cost of the write and read paths, with no server: ``python benchmarks/codec_cost.py``.

write: MongoEngine ``Model(**data); validate(); to_mongo()`` vs astro_db ``codec.encode_new``
       vs ``bson.encode`` of the stored document.
read:  MongoEngine ``Model._from_son(son)`` vs astro_db ``codec.hydrate`` vs ``bson.decode``.
Both paths apply the same validation rules with the same messages (tests/models/
test_codec_equivalence.py runs every invalid case through both).
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from collections.abc import Callable
from typing import Any

import bson
from bson import ObjectId
from workloads import insight_input

from astro_db.models import BirthChart, PlanetaryInsight, codec

SIGNS = ["Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo"]
BODIES = ["Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto"]


def chart_input(n: int) -> dict[str, Any]:
    return {
        "user_id": ObjectId(),
        "birth_data": {
            "date": _dt.datetime(1950, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(days=n % 20000),
            "timezone": "Europe/Paris",
            "location": {"name": "Paris", "coordinates": {"type": "Point", "coordinates": [2.35, 48.86]}},
        },
        "positions": [
            {"body": body, "sign": SIGNS[(n + i) % 6], "degree": (n * 7 + i) % 30 * 0.99, "house": 1 + (n + i) % 12}
            for i, body in enumerate(BODIES)
        ],
        "house_system": "placidus",
    }


def _per_doc(fn: Callable[[Any], Any], items: list[Any], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def _me_write(model: Any, data: dict[str, Any]) -> Any:
    doc = model(**data)
    doc.validate()
    return doc.to_mongo()


def measure(n: int = 2000) -> list[dict[str, Any]]:
    """One row per (model, path): µs per document for MongoEngine, astro_db and bson."""
    rows = []
    for label, model, make in (
        ("PlanetaryInsight", PlanetaryInsight, lambda i: insight_input(ObjectId(), i)),
        ("BirthChart", BirthChart, chart_input),
    ):
        inputs = [make(i) for i in range(n)]
        sons = [codec.encode_new(model, d) for d in inputs]
        for son in sons:
            son.update(_id=ObjectId(), createdAt=_dt.datetime(2024, 1, 1), updatedAt=_dt.datetime(2024, 1, 1), __v=0)
        rows.append({
            "model": label, "path": "write (validate + serialise)",
            "mongoengine": _per_doc(lambda d, m=model: _me_write(m, d), inputs),
            "astro_db": _per_doc(lambda d, m=model: codec.encode_new(m, d), inputs),
            "bson": _per_doc(bson.encode, sons),
        })
        blobs = [bson.encode(s) for s in sons]
        decoded = [bson.decode(b) for b in blobs]
        rows.append({
            "model": label, "path": "read (hydrate)",
            "mongoengine": _per_doc(model._from_son, decoded),
            "astro_db": _per_doc(lambda s, m=model: codec.hydrate(m, s), decoded),
            "bson": _per_doc(bson.decode, blobs),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the table (``--tiny``: 200 documents instead of 2,000)."""
    n = 200 if "--tiny" in (argv if argv is not None else sys.argv[1:]) else 2_000
    print(f"per-document CPU cost, no server ({n:,} documents, µs per document, best of 3)")
    print(f"{'model':<18}{'path':<30}{'MongoEngine':>12}{'astro_db':>10}{'bson':>8}{'speed-up':>10}")
    for r in measure(n):
        print(f"{r['model']:<18}{r['path']:<30}{r['mongoengine']:>12.1f}{r['astro_db']:>10.1f}{r['bson']:>8.1f}"
              f"{r['mongoengine'] / r['astro_db']:>9.1f}x")
    print("write: MongoEngine = Model(**data).validate() + to_mongo(); bson = bson.encode of the stored document")
    print("read:  MongoEngine = Model._from_son(son); bson = bson.decode of the stored bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
