"""The paired workloads: each operation through astro_db and the same call on raw PyMongo.

Both sides run on the same backend, the same collection and the same data, interleaved in
rounds (best round kept), so the ratio measures astro_db's own cost: validation, compilation,
hydration, hooks. Raw writes send documents already in stored form (what astro_db sends).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

from bson import ObjectId
from pymongo import ReturnDocument

from astro_db import Database
from astro_db.models import codec
from astro_db.models import PlanetaryInsight, User

BASE_DAY = _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass
class Sizes:
    """How much work one run does (``--quick`` and ``--tiny`` shrink it)."""

    many: int = 10_000  # create_many batch, and documents per user for the find rows
    small_find: int = 1_000
    big_find: int = 10_000
    budget_s: float = 0.4  # time per measurement round
    rounds: int = 3
    scaling: tuple[int, ...] = (1_000, 10_000, 100_000)


@dataclass
class Row:
    name: str
    astro_s: float  # seconds per operation
    raw_s: float | None
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.astro_s / self.raw_s if self.raw_s else None


def per_op(fn: Callable[[], Any], budget_s: float, max_calls: int = 1_000_000) -> float:
    """Seconds per call of ``fn``, calling it until ``budget_s`` has passed (at least once)."""
    calls = 0
    start = time.perf_counter()
    deadline = start + budget_s
    while True:
        fn()
        calls += 1
        now = time.perf_counter()
        if now >= deadline or calls >= max_calls:
            return (now - start) / calls


def paired(astro: Callable[[], Any], raw: Callable[[], Any] | None, sizes: Sizes, max_calls: int = 1_000_000) -> tuple[float, float | None]:
    """Best-of-rounds seconds per call for both sides, interleaved to share the machine's noise."""
    best_a, best_r = float("inf"), float("inf")
    for _ in range(sizes.rounds):
        best_a = min(best_a, per_op(astro, sizes.budget_s, max_calls))
        if raw is not None:
            best_r = min(best_r, per_op(raw, sizes.budget_s, max_calls))
    return best_a, (best_r if raw is not None else None)


def insight_input(user_id: ObjectId, n: int) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "date": BASE_DAY + _dt.timedelta(minutes=n),
        "energy_level": n % 101,
        "recommendations": ["Take a walk", "Call a friend", f"Note {n % 7}"],
        "summary": "A bright day for steady work and honest talk.",
    }


def user_input(n: int, tag: str) -> dict[str, Any]:
    return {"email": f"{tag}{n}@example.com", "name": f"User {n}", "status": "inactive" if n % 100 == 0 else "active"}


def stored(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The stored form astro_db would send for ``data`` (service fields included)."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    son = codec.encode_new(model, data)
    son.update(_id=ObjectId(), createdAt=now, updatedAt=now, __v=0)
    return son


def run_service(db: Database, sizes: Sizes) -> list[Row]:
    """Every service-level row for one connected ``Database``."""
    mongo = db.mongo
    users, insights = mongo["users"], mongo["planetaryInsights"]
    rows: list[Row] = []
    counter = itertools.count()

    # create: one document per call
    a, r = paired(
        lambda: db.create("User", user_input(next(counter), "a")),
        lambda: users.insert_one(stored(User, user_input(next(counter), "r"))),
        sizes,
    )
    rows.append(Row("create (User)", a, r, "-"))

    # create_many: one batch per side, validation included on the astro_db side
    astro_user, raw_user = ObjectId(), ObjectId()
    items = [insight_input(astro_user, n) for n in range(sizes.many)]
    raw_docs = [stored(PlanetaryInsight, insight_input(raw_user, n)) for n in range(sizes.many)]
    t0 = time.perf_counter()
    created = db.create_many("PlanetaryInsight", items)
    a = time.perf_counter() - t0
    assert not created.failed, created.failed[:3]
    t0 = time.perf_counter()
    insights.insert_many(raw_docs, ordered=False)
    r = time.perf_counter() - t0
    rows.append(Row(f"create_many ({sizes.many:,})", a, r, "<= 1.2x", "per batch"))

    # find: lean and hydrated, small and big result sets (same index, same filter)
    for limit in (sizes.small_find, sizes.big_find):
        for lean in (True, False):
            a, r = paired(
                lambda: db.find("PlanetaryInsight", {"userId": astro_user}, limit=limit, lean=lean),
                lambda: list(insights.find({"userId": astro_user}, limit=limit)),
                sizes,
            )
            label = "lean" if lean else "hydrated"
            rows.append(Row(f"find {label} ({limit:,})", a, r, "<= 1.1x" if lean else "<= 1.25x"))

    # find_one by an indexed field (cycling over existing users)
    emails = itertools.cycle([f"a{n}@example.com" for n in range(min(200, next(counter)))][:200] or ["a0@example.com"])
    a, r = paired(
        lambda: db.find_one("User", {"email": next(emails)}),
        lambda: users.find_one({"email": next(emails)}),
        sizes,
    )
    rows.append(Row("find_one (indexed)", a, r, "<= 1.1x"))
    uncached = a

    # update: validated $set, the updated document returned (find_one_and_update both sides)
    ids = itertools.cycle([doc.id for doc in created[:500]])
    levels = itertools.count()
    a, r = paired(
        lambda: db.update("PlanetaryInsight", {"id": next(ids)}, {"energyLevel": next(levels) % 101}),
        lambda: insights.find_one_and_update(
            {"_id": next(ids)}, {"$set": {"energyLevel": next(levels) % 101, "updatedAt": _dt.datetime.now(_dt.timezone.utc)}},
            return_document=ReturnDocument.AFTER),
        sizes,
    )
    rows.append(Row("update", a, r, "<= 1.1x"))

    # cached find_one: a handful of hot keys
    hot = itertools.cycle([f"a{n}@example.com" for n in range(8)])
    a, r = paired(
        lambda: db.find_one("User", {"email": next(hot)}, cache=True),
        lambda: users.find_one({"email": next(hot)}),
        sizes,
    )
    rows.append(Row("find_one cached", a, r, ">= 20x uncached", f"{uncached / a:.0f}x faster than uncached"))

    # aggregate: $match on an indexed field + $group
    pipeline = [{"$match": {"userId": astro_user}}, {"$group": {"_id": None, "avg": {"$avg": "$energyLevel"}, "n": {"$sum": 1}}}]
    a, r = paired(
        lambda: db.aggregate("PlanetaryInsight", pipeline),
        lambda: list(insights.aggregate(pipeline)),
        sizes,
    )
    rows.append(Row("aggregate ($match+$group)", a, r, "-"))
    return rows


def run_hooked(db: Database, sizes: Sizes) -> list[Row]:
    """create and update with the default write hooks on (audit trail, change journal): each
    hook writes one more document, in the same session, per service write."""
    users = db.mongo["users"]
    counter = itertools.count(10_000_000)
    a, r = paired(
        lambda: db.create("User", user_input(next(counter), "h")),
        lambda: users.insert_one(stored(User, user_input(next(counter), "hr"))),
        sizes,
    )
    rows = [Row("create +audit +journal", a, r, "-", "default hooks on")]
    ids = itertools.cycle([d["_id"] for d in users.find({}, {"_id": 1}, limit=200)])
    names = itertools.count()
    a, r = paired(
        lambda: db.update("User", {"id": next(ids)}, {"name": f"N{next(names)}"}),
        lambda: users.find_one_and_update(
            {"_id": next(ids)}, {"$set": {"name": f"N{next(names)}", "updatedAt": _dt.datetime.now(_dt.timezone.utc)}},
            return_document=ReturnDocument.AFTER),
        sizes,
    )
    rows.append(Row("update +audit +journal", a, r, "-", "default hooks on"))
    return rows


def run_scaling(db: Database, sizes: Sizes) -> list[dict[str, Any]]:
    """find_one / find cost as ``users`` grows (raw inserts between steps). ``db``: a fresh database."""
    coll = db.mongo["users"]
    out = []
    have = 0
    budget = max(0.1, sizes.budget_s / 2)
    for size in sizes.scaling:
        docs = [stored(User, user_input(n, "s")) for n in range(have, size)]
        for start in range(0, len(docs), 10_000):
            coll.insert_many(docs[start:start + 10_000], ordered=False)
        have = size
        probe = itertools.cycle([f"s{(n * 7919) % size}@example.com" for n in range(64)])
        out.append({
            "size": size,
            "find_one_indexed": per_op(lambda: db.find_one("User", {"email": next(probe)}), budget),
            "raw_find_one_indexed": per_op(lambda: coll.find_one({"email": next(probe)}), budget),
            "find_one_unindexed": per_op(lambda: db.find_one("User", {"name": f"User {size // 2}"}), budget, 20),
            "find_100_lean_indexed": per_op(lambda: db.find("User", {"status": "inactive"}, limit=100, lean=True), budget),
        })
    return out
