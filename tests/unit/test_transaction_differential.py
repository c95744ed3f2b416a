"""Transactions on random sequences of writes: an abort leaves nothing, a commit leaves all.

Hypothesis draws writes of every kind, run inside one transaction that then commits or aborts
(by an exception in the ``with`` block). An aborted transaction must leave the model
collections and the change records exactly as they were and every cached answer still the
server's; a committed one must leave every cached answer the server's, and one change record
per document it created. Run on the embedded backend, which undoes an aborted transaction's
writes but does not isolate them (nx-27017 neither): nothing is read outside the transaction
while it runs (isolation is the ``mongodb`` tier's, ``tests/service/test_transactions.py``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from bson import ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database, errors
from astro_db.backup import content_hashes

UTC = dt.timezone.utc
DATES = [dt.datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3)]
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("User", {"status": "active"}), ("User", {"name": "Renamed"}),
    ("PlanetaryInsight", {"energyLevel": {"$gte": 50}}), ("PlanetaryInsight", {"recommendations": "Walk"}),
    ("PlanetaryInsight", {}),
]

move = st.one_of(
    st.tuples(st.just("create_user")),
    st.tuples(st.just("rename_user"), st.integers(0, 5)),
    st.tuples(st.just("delete_user"), st.integers(0, 5)),
    st.tuples(st.just("create_insight"), st.sampled_from(DATES), st.sampled_from([10, 50, 90])),
    st.tuples(st.just("push_insight"), st.integers(0, 5)),
    st.tuples(st.just("update_many_insights"), st.sampled_from([20, 60])),
    st.tuples(st.just("delete_many_insights"), st.sampled_from([10, 50, 20, 60])),
    st.tuples(st.just("create_many_users"), st.integers(1, 3)),
)


class Abort(Exception):
    pass


def _ids(db: Database, collection: str) -> list[Any]:
    return [d["_id"] for d in db.mongo[collection].find({}, {"_id": 1}, sort=[("_id", 1)])]


def _apply(db: Database, owner: Any, step: tuple[Any, ...], tx: Any, made: list[str]) -> None:
    name, users, insights = step[0], _ids(db, "users"), _ids(db, "planetaryInsights")
    if name == "create_user":
        made.append(str(db.create("User", {"email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "New"},
                                  transaction=tx).id))
    elif name == "rename_user":
        db.update("User", {"id": users[step[1] % len(users)]}, {"name": "Renamed"}, transaction=tx)
    elif name == "delete_user" and users[step[1] % len(users)] != owner:
        db.delete("User", {"id": users[step[1] % len(users)]}, transaction=tx)
    elif name == "create_insight":
        db.create("PlanetaryInsight", {"userId": owner, "date": step[1], "energyLevel": step[2],
                                       "recommendations": ["Rest"]}, transaction=tx)
    elif name == "push_insight" and insights:
        db.update("PlanetaryInsight", {"id": insights[step[1] % len(insights)]}, {"$push": {"recommendations": "Walk"}},
                  transaction=tx)
    elif name == "update_many_insights":
        db.update_many("PlanetaryInsight", {"userId": owner}, {"energyLevel": step[1]}, transaction=tx)
    elif name == "delete_many_insights":
        db.delete_many("PlanetaryInsight", {"energyLevel": step[1]}, transaction=tx)
    elif name == "create_many_users":
        db.create_many("User", [{"email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "Many"}
                                for _ in range(step[1])], transaction=tx)


def _cached_is_the_servers(db: Database) -> None:
    for model, filt in QUERIES:
        cached = sorted(d["_id"] for d in db.find(model, filt, lean=True))
        assert cached == sorted(d["_id"] for d in db.find(model, filt, lean=True, cache=False)), (model, filt)
        assert db.count(model, filt) == db.count(model, filt, cache=False), (model, filt)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(move, min_size=1, max_size=6), commit=st.booleans())
def test_an_abort_leaves_nothing_and_a_commit_leaves_everything(steps, commit):
    with Database(f"mongomock://localhost/tx{uuid.uuid4().hex[:8]}", cache_models=("User", "PlanetaryInsight"),
                  ensure_indexes=False) as db:
        owner = db.create("User", {"email": "owner@example.com", "name": "Owner"}).id
        db.create("PlanetaryInsight", {"userId": owner, "date": DATES[0], "energyLevel": 50, "recommendations": ["Rest"]})
        _cached_is_the_servers(db)  # the cache holds every query's answer
        before = content_hashes(db, ["users", "planetaryInsights", "astroChanges"])
        made: list[str] = []
        try:
            with db.transaction() as tx:
                for step in steps:
                    try:
                        _apply(db, owner, step, tx, made)
                    except errors.DuplicateKeyError:
                        raise Abort from None  # a refused write aborts the transaction
                if not commit:
                    raise Abort
        except Abort:
            committed = False
        else:
            committed = True
        _cached_is_the_servers(db)
        after = content_hashes(db, ["users", "planetaryInsights", "astroChanges"])
        if not committed:
            assert after == before
        records = db.mongo["astroChanges"]
        for user in made:  # each create committed once with its record, or neither
            stored = db.mongo["users"].find_one({"_id": ObjectId(user)})
            created = records.count_documents({"documentId": ObjectId(user), "action": "create"})
            deleted = records.count_documents({"documentId": ObjectId(user), "action": "delete"})
            assert created == (1 if committed else 0) and (stored is not None) == (committed and not deleted)
