"""The query cache against the server, on random sequences of writes: no answer it keeps is stale.

Hypothesis draws a sequence of writes through the service (creates, updates by every operator
the service takes, ``returning=False``, ``update_many``, deletes, ``upsert_many``) on two cached
models. Before the first write and after each one, every query of a fixed pool is asked twice:
through the cache (a hit whenever the entry was kept) and with ``cache=False`` (the server).
The two answers must be the same: an entry the write may have changed and that selective
invalidation kept would differ here. The pool covers the shapes ``QueryCache.apply`` judges
differently: id lookups, keyed equalities, ranges, ``$in``/``$ne``/``$exists``/null tests,
list fields and paths through lists of documents, ``$elemMatch``/``$size``/``$all``, regexes,
``$or``, sorted and limited reads, counts and projections."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database, errors
from astro_db.cache import QueryCache
from astro_db.cache.redis_store import ANY, write_dependencies
from astro_db.cache.store import _Shape
from astro_db.security.crypto import new_key

UTC = dt.timezone.utc
DATES = [dt.datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3)]
WORDS = ["a", "b", "c"]
BODIES = ["Sun", "Moon", "Mars"]
BIRTH = {"date": "1990-01-01T00:00:00Z", "timezone": "UTC"}
KEY = new_key()

# (model, kind, filter, options): filters name users as "U0"/"U1" (replaced by their ids)
INSIGHT_QUERIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("find", {"energyLevel": {"$gte": 50}}, {}),
    ("find", {"energyLevel": 50}, {}),
    ("find", {"energyLevel": {"$in": [10, 90]}}, {}),
    ("find", {"energyLevel": {"$ne": 50}}, {}),
    ("find", {"recommendations": "a"}, {}),
    ("find", {"recommendations": {"$size": 2}}, {}),
    ("find", {"recommendations": {"$all": ["a", "b"]}}, {}),
    ("find", {"recommendations.0": "b"}, {}),
    ("find", {"summary": None}, {}),
    ("find", {"summary": {"$exists": True}}, {}),
    ("find", {"summary": re.compile("^s")}, {}),
    ("find", {"expiresAt": {"$gt": DATES[1]}}, {}),
    ("find", {"userId": "U0"}, {}),
    ("find", {"userId": "U1", "energyLevel": {"$gt": 30}}, {}),
    ("find", {"$or": [{"energyLevel": {"$lt": 20}}, {"recommendations": "c"}]}, {}),
    ("find", {}, {"sort": [("energyLevel", -1), ("_id", 1)], "limit": 2}),
    ("find", {"userId": "U0"}, {"projection": {"energyLevel": 1}}),
    ("find_one", {"userId": "U1"}, {"sort": [("date", 1), ("_id", 1)]}),
    ("count", {"energyLevel": {"$gte": 50}}, {}),
    ("count", {"recommendations": "b"}, {}),
]
USER_QUERIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("find", {"email": "x@example.com"}, {}),
    ("find_one", {"email": "u1@example.com"}, {}),
    ("find", {"status": "active"}, {}),
    ("find", {"lastActive": {"$gte": DATES[1]}}, {}),
    ("find", {"lastActive": None}, {}),
    ("find_one", {"_id": "U0"}, {}),
    ("count", {"status": "suspended"}, {}),
    ("count", {"email": "x@example.com"}, {}),
]
CHART_QUERIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("find", {"positions.house": None}, {}),
    ("find", {"positions.house": {"$gte": 6}}, {}),
    ("find", {"positions": {"$elemMatch": {"body": "Sun", "house": 1}}}, {}),
    ("find", {"positions.body": "Moon"}, {}),
    ("find", {"positions": {"$size": 0}}, {}),
    ("find", {"houseSystem": "placidus"}, {}),
    ("count", {"positions.retrograde": True}, {}),
]

position = st.fixed_dictionaries({"body": st.sampled_from(BODIES), "sign": st.just("Leo"),
                                  "degree": st.integers(0, 29)},
                                 optional={"house": st.integers(1, 12), "retrograde": st.booleans()})
positions = st.lists(position, max_size=3, unique_by=lambda p: p["body"])
insight = st.fixed_dictionaries(
    {"owner": st.integers(0, 1), "date": st.sampled_from(DATES), "energyLevel": st.sampled_from([10, 30, 50, 90]),
     "recommendations": st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)},
    optional={"summary": st.sampled_from(["sunny", "grey"]), "expiresAt": st.sampled_from(DATES)})
insight_update = st.one_of(
    st.fixed_dictionaries({"energyLevel": st.sampled_from([10, 30, 50, 90])}),
    st.fixed_dictionaries({"$inc": st.fixed_dictionaries({"energyLevel": st.sampled_from([-5, 5])})}),
    st.fixed_dictionaries({"$push": st.fixed_dictionaries({"recommendations": st.sampled_from(WORDS)})}),
    st.fixed_dictionaries({"$pull": st.fixed_dictionaries({"recommendations": st.sampled_from(WORDS)})}),
    st.fixed_dictionaries({"$unset": st.fixed_dictionaries({"summary": st.just("")})}),
    st.fixed_dictionaries({"summary": st.sampled_from(["sunny", "grey"])}),
    st.fixed_dictionaries({"expiresAt": st.sampled_from(DATES)}),
    st.fixed_dictionaries({"recommendations": st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)}),
    st.fixed_dictionaries({"$set": st.fixed_dictionaries({"recommendations.0": st.sampled_from(WORDS)})}),
    st.fixed_dictionaries({"$addToSet": st.fixed_dictionaries({"recommendations": st.fixed_dictionaries(
        {"$each": st.lists(st.sampled_from(WORDS), min_size=1, max_size=2)})})}),
    st.fixed_dictionaries({"$pull": st.fixed_dictionaries({"recommendations": st.fixed_dictionaries(
        {"$in": st.lists(st.sampled_from(WORDS), min_size=1, max_size=2)})})}),
)
chart_update = st.one_of(
    st.fixed_dictionaries({"positions": positions}),
    st.fixed_dictionaries({"$set": st.fixed_dictionaries({"positions.0.house": st.integers(1, 12)})}),
    st.fixed_dictionaries({"$unset": st.fixed_dictionaries({"positions.0.house": st.just("")})}),
    st.fixed_dictionaries({"houseSystem": st.sampled_from(["placidus", "whole_sign"])}),
    st.fixed_dictionaries({"$set": st.fixed_dictionaries({"positions.$[].house": st.integers(1, 12)})}),
    st.fixed_dictionaries({"$push": st.fixed_dictionaries({"positions": position})}),
    st.fixed_dictionaries({"$pull": st.fixed_dictionaries({"positions": st.fixed_dictionaries(
        {"body": st.sampled_from(BODIES)})})}),
)
user_update = st.one_of(
    st.fixed_dictionaries({"email": st.sampled_from(["u0@example.com", "u1@example.com", "x@example.com"])}),
    st.fixed_dictionaries({"status": st.sampled_from(["active", "suspended"])}),
    st.fixed_dictionaries({"lastActive": st.sampled_from(DATES)}),
    st.fixed_dictionaries({"$unset": st.fixed_dictionaries({"lastActive": st.just("")})}),
    st.fixed_dictionaries({"name": st.sampled_from(["Ann", "Bob"])}),
)
write = st.one_of(
    st.tuples(st.just("create_insight"), insight),
    st.tuples(st.just("update_insight"), st.integers(0, 9), insight_update, st.booleans()),
    st.tuples(st.just("update_many_insights"), st.integers(0, 1), st.sampled_from([10, 50, 90])),
    st.tuples(st.just("delete_insight"), st.integers(0, 9)),
    st.tuples(st.just("delete_many_insights"), st.sampled_from([10, 30, 50, 90])),
    st.tuples(st.just("upsert_insights"), st.lists(insight, min_size=1, max_size=3)),
    st.tuples(st.just("create_chart"), st.integers(0, 1), positions),
    st.tuples(st.just("update_chart"), st.integers(0, 9), chart_update, st.booleans()),
    st.tuples(st.just("delete_chart"), st.integers(0, 9)),
    st.tuples(st.just("create_user"), st.sampled_from(["x@example.com", "y@example.com"]),
              st.sampled_from(["active", "suspended"])),
    st.tuples(st.just("update_user"), st.integers(0, 3), user_update, st.booleans()),
    st.tuples(st.just("delete_user"), st.integers(2, 3)),  # never the two owners
)


def _bound(value: Any, users: list[Any]) -> Any:
    if value in ("U0", "U1"):
        return users[int(value[1])]
    if isinstance(value, dict):
        return {k: _bound(v, users) for k, v in value.items()}
    if isinstance(value, list):
        return [_bound(v, users) for v in value]
    return value


def _insight(data: dict[str, Any], users: list[Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k != "owner"}
    out["userId"] = users[data["owner"]]
    return out


def _ask(db: Database, model: str, kind: str, filt: dict[str, Any], options: dict[str, Any], cache: bool) -> Any:
    try:
        return _asked(db, model, kind, filt, options, cache)
    except errors.QueryError as exc:  # an encrypted field queried by value: refused alike, cached or not
        return f"refused: {exc}"


def _asked(db: Database, model: str, kind: str, filt: dict[str, Any], options: dict[str, Any], cache: bool) -> Any:
    if kind == "count":
        return db.count(model, filt, cache=cache)
    answer = getattr(db, kind)(model, filt, lean=True, cache=cache, **options)
    if kind == "find" and "sort" not in options:
        return sorted(answer, key=lambda d: d["_id"])  # an unsorted answer's order is the server's choice
    return answer


def _same_answers(db: Database, users: list[Any], step: str) -> None:
    for model, pool in (("PlanetaryInsight", INSIGHT_QUERIES), ("BirthChart", CHART_QUERIES), ("User", USER_QUERIES)):
        for kind, filt, options in pool:
            filt = _bound(filt, users)
            cached = _ask(db, model, kind, filt, options, True)
            fresh = _ask(db, model, kind, filt, options, False)
            assert cached == fresh, f"stale after {step}: {model}.{kind}({filt}, {options})"


def _apply(db: Database, users: list[Any], step: tuple[Any, ...]) -> None:
    insights = [d["_id"] for d in db.find("PlanetaryInsight", {}, lean=True, cache=False, sort=[("_id", 1)])]
    charts = [d["_id"] for d in db.find("BirthChart", {}, lean=True, cache=False, sort=[("_id", 1)])]
    name = step[0]
    if name == "create_insight":
        db.create("PlanetaryInsight", _insight(step[1], users))
    elif name == "update_insight" and insights:
        target = {"id": insights[step[1] % len(insights)]}
        db.update("PlanetaryInsight", target, step[2], returning=step[3])
    elif name == "update_many_insights":
        db.update_many("PlanetaryInsight", {"userId": users[step[1]]}, {"energyLevel": step[2]})
    elif name == "delete_insight" and insights:
        db.delete("PlanetaryInsight", {"id": insights[step[1] % len(insights)]})
    elif name == "delete_many_insights":
        db.delete_many("PlanetaryInsight", {"energyLevel": step[1]})
    elif name == "upsert_insights":
        items = {(d["owner"], d["date"]): _insight(d, users) for d in step[1]}  # one item per key
        db.upsert_many("PlanetaryInsight", list(items.values()), on=("userId", "date"))
    elif name == "create_chart":
        db.create("BirthChart", {"userId": users[step[1]], "birthData": BIRTH, "positions": step[2]})
    elif name == "update_chart" and charts:
        db.update("BirthChart", {"id": charts[step[1] % len(charts)]}, step[2], returning=step[3])
    elif name == "delete_chart" and charts:
        db.delete("BirthChart", {"id": charts[step[1] % len(charts)]})
    elif name == "create_user":
        db.create("User", {"email": step[1], "name": "New", "status": step[2]})
    elif name in ("update_user", "delete_user"):
        people = [d["_id"] for d in db.find("User", {}, lean=True, cache=False, sort=[("_id", 1)])]
        if step[1] < len(people):
            if name == "update_user":
                db.update("User", {"id": people[step[1]]}, step[2], returning=step[3])
            else:
                db.delete("User", {"id": people[step[1]]})


@pytest.fixture(params=["images", "no images"])
def heard(request, monkeypatch):
    """How the cache hears of a write: with its post-images, as in the writing process, or, as
    every other process hears it over Redis, by its ids and field names alone."""
    if request.param == "no images":
        made = QueryCache.notice
        monkeypatch.setattr(QueryCache, "notice", lambda self, event: dataclasses.replace(made(self, event), images=None))
        judged = _Shape.may_change

        def also_in_the_shared_store(shape: _Shape, notice: Any) -> bool:
            """The shared result store in Redis judges an entry by the dependency keys a write
            sets: every entry dropped here must depend on one of them there too."""
            verdict = judged(shape, notice)
            if verdict:
                depends, sets = set(shape.dependencies()), set(write_dependencies(notice))
                assert ANY in depends or depends & sets, (shape.filt, sorted(depends), sorted(sets))
            return verdict

        monkeypatch.setattr(_Shape, "may_change", also_in_the_shared_store)
    return request.param


@pytest.mark.parametrize("key", [None, KEY], ids=["plaintext", "encrypted"])
@settings(max_examples=examples(100), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(write, min_size=1, max_size=8))
def test_no_answer_the_cache_keeps_differs_from_the_servers(heard, key, steps):
    """With an encryption key the users' emails are sealed and matched on their blind index."""
    url = f"mongomock://localhost/diff{uuid.uuid4().hex[:8]}"
    with Database(url, cache_models=("PlanetaryInsight", "BirthChart", "User"), ensure_indexes=False,
                  encryption_key=key, allow_plaintext_sensitive=key is None) as db:
        db.sync_indexes()  # upsert_many needs its unique index on the server
        users = [db.create("User", {"email": f"u{i}@example.com", "name": f"U{i}"}).id for i in range(2)]
        _same_answers(db, users, "the start")
        for step in steps:
            try:
                _apply(db, users, step)
            except (errors.ValidationError, errors.DuplicateKeyError, errors.QueryError):
                pass  # refused (a $inc out of range, a position rule, a key taken): nothing written
            _same_answers(db, users, repr(step))
        assert db.executor.runtime.cache.stats()["hits"] > 0  # the cache answered: kept entries were compared
