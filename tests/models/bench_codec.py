"""Micro-benchmark of the model codec (a script, not a test): prints µs per document.

    python tests/models/bench_codec.py [N]

Write path: MongoEngine ``Model(**data); validate(); to_mongo()`` vs ``encode_new`` vs
``bson.encode`` of the result. Read path: ``Model._from_son`` vs ``hydrate`` vs ``bson.decode``.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from pathlib import Path

import bson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astro_db.models import BirthChart, PlanetaryInsight  # noqa: E402
from astro_db.models.codec import encode_new, hydrate  # noqa: E402
from models.samples import chart_input, insight_input, node_chart, node_insight  # noqa: E402


def _per_doc(fn, docs) -> float:
    best = float("inf")
    for _ in range(3):
        batch = [copy.copy(d) for d in docs] if isinstance(docs[0], dict) else docs
        start = time.perf_counter()
        for doc in batch:
            fn(doc)
        best = min(best, time.perf_counter() - start)
    return best / len(docs) * 1e6


def _inputs(model, make, n, rng):
    out = []
    for i in range(n):
        data = make()
        if model is PlanetaryInsight:
            data["energy_level"] = rng.random() * 100
            data["date"] = f"2024-01-{1 + i % 28:02d}T00:00:00Z"
        out.append(data)
    return out


def main(n: int = 5000) -> None:
    rng = random.Random(42)
    rows = []
    for label, model, make_input, make_son in (
        ("insight", PlanetaryInsight, insight_input, node_insight),
        ("chart", BirthChart, chart_input, node_chart),
    ):
        inputs = _inputs(model, make_input, n, rng)
        me = _per_doc(lambda d, model=model: _me_write(model, d), inputs)
        mine = _per_doc(lambda d, model=model: encode_new(model, d), inputs)
        stored = [encode_new(model, d) for d in inputs]
        raw = _per_doc(bson.encode, stored)
        rows.append((f"{label} write", me, mine, raw))

        sons = [make_son(random.Random(i)) for i in range(n)]
        blobs = [bson.encode(s) for s in sons]
        decoded = [bson.decode(b) for b in blobs]
        me = _per_doc(lambda s, model=model: model._from_son(s), decoded)
        mine = _per_doc(lambda s, model=model: hydrate(model, s), decoded)
        raw = _per_doc(bson.decode, blobs)
        rows.append((f"{label} read", me, mine, raw))

    print(f"{n} documents each; µs per document (best of 3)")
    print(f"{'':16}{'MongoEngine':>13}{'codec':>10}{'bson':>9}{'speed-up':>10}")
    for name, me, mine, raw in rows:
        print(f"{name:16}{me:13.1f}{mine:10.1f}{raw:9.1f}{me / mine:9.1f}x")
    print("write: MongoEngine = Model(**data).validate() + to_mongo(); codec = encode_new; bson = bson.encode")
    print("read:  MongoEngine = Model._from_son(son); codec = hydrate; bson = bson.decode")


def _me_write(model, data):
    doc = model(**data)
    doc.validate()
    return doc.to_mongo()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
