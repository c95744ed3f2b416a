"""Actors against the stored state, on random data and random calls: no scope is ever crossed.

Hypothesis draws three users' documents and a sequence of calls, each made by a random actor (a
``self`` actor alone or narrowing ``reader``, ``writer`` or ``admin``, or one of those unscoped),
or by the trusted app (so the query cache, on for every model, holds entries of several actors
and sees writes it must drop). Every call is judged against the raw stored state, read through
``db.mongo``, never through the service:

- a read (``find``, ``find_one``, ``count``, ``iter_find``, every ``page`` of a query, with a
  projection or not,
  ``aggregate`` with stages that rewrite or drop the owner field, ``$facet``, ``$group``,
  ``$lookup`` / ``$unionWith`` / ``$graphLookup``; through the cache or not) must answer what
  the trusted app answers on a scratch database holding only the documents in the actor's
  scope: so every document and every count is computable from the actor's documents alone;
- a write (``update``, ``update_many``, ``delete``, ``delete_many``, ``create``,
  ``create_many``, ``upsert_many``, ``delete_user_cascade``, ``erase_user``) may change,
  delete or create only documents in the actor's scope before and after, exactly the ones its
  filter matches there, and says how many it changed;
- a refused call (any ``astro_db.errors`` exception) changes nothing at all: every collection,
  change records included, is as it was (but a many-document write the server refused part-way
  for a unique key, which keeps what it applied: in the scope, as above);
- ``export_user`` of someone else is refused to a ``self`` actor, and her own export holds
  exactly her documents.

Filters use ``$or``/``$and``/``$nor``/``$not``/``$elemMatch``/``$in``/``$exists`` and name other
users' ids and documents; stored values are shaped like the library's own markers (an owner's
id as text, ``$``-prefixed strings, a scope filter's text). The suite draws 250 examples (about
5 s); for thousands, call ``run_steps`` under your own ``@given`` with the same strategies
(``seed``, ``st.lists(step)``) and a larger ``max_examples``."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import bson
import pytest
from bson import ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database, errors

UTC = dt.timezone.utc
DATES = [dt.datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3, 4)]
LEVELS = [10, 50, 90]
WORDS = ["a", "b", "$userId", "userId"]
# stored values shaped like the library's markers: a field path, a scope filter's text, an id
SUMMARIES = ["$userId", "{'userId': 'U1'}", "$$ROOT", "U1", "plain"]
BIRTH = {"date": "1990-01-01T00:00:00Z", "timezone": "UTC"}
MODELS = {"PlanetaryInsight": "planetaryInsights", "BirthChart": "birthCharts", "User": "users"}
OWNED = ("PlanetaryInsight", "BirthChart")
USERS = 3
ROLES = [("self",), ("self", "reader"), ("self", "writer"), ("self", "admin"), ("reader",), ("writer",), ("admin",)]

# --- what is drawn ---------------------------------------------------------------------------
# A user is "U0".."U2" and a stored document "D<n>" (the n-th of the model's documents, any owner,
# modulo how many there are): both replaced by their ids when the call is made (``_bind``).

user = st.sampled_from(["ME", "ME", *(f"U{i}" for i in range(USERS))])  # ME: the acting user (U0 for the app)
doc_ref = st.integers(0, 20).map(lambda n: f"D{n}")

insight_atom = st.one_of(
    st.builds(lambda u: {"userId": u}, user),
    st.builds(lambda u: {"user_id": u}, user),
    st.builds(lambda u: {"userId": {"$ne": u}}, user),
    st.builds(lambda us: {"userId": {"$in": us}}, st.lists(user, min_size=1, max_size=2)),
    st.builds(lambda us: {"userId": {"$nin": us}}, st.lists(user, min_size=1, max_size=2)),
    st.builds(lambda b: {"userId": {"$exists": b}}, st.booleans()),
    st.builds(lambda v: {"energyLevel": {"$gte": v}}, st.sampled_from(LEVELS)),
    st.builds(lambda v: {"energyLevel": {"$not": {"$gt": v}}}, st.sampled_from(LEVELS)),
    st.builds(lambda w: {"recommendations": w}, st.sampled_from(WORDS)),
    st.builds(lambda w: {"recommendations": {"$elemMatch": {"$eq": w}}}, st.sampled_from(WORDS)),
    st.builds(lambda s: {"summary": s}, st.sampled_from(SUMMARIES)),
    st.builds(lambda d: {"_id": d}, doc_ref),
    st.builds(lambda d: {"id": {"$in": [d]}}, doc_ref),
    st.builds(lambda d: {"date": d}, st.sampled_from(DATES)),
)
chart_atom = st.one_of(
    st.builds(lambda u: {"userId": u}, user),
    st.builds(lambda u: {"userId": {"$ne": u}}, user),
    st.builds(lambda h: {"houseSystem": h}, st.sampled_from(["placidus", "koch"])),
    st.builds(lambda d: {"_id": d}, doc_ref),
    st.builds(lambda h: {"positions": {"$elemMatch": {"house": {"$gte": h}}}}, st.integers(1, 12)),
    st.just({"positions.body": "Sun"}),
)
user_atom = st.one_of(
    st.builds(lambda u: {"_id": u}, user),
    st.builds(lambda u: {"id": {"$ne": u}}, user),
    st.builds(lambda us: {"_id": {"$in": us}}, st.lists(user, min_size=1, max_size=3)),
    st.builds(lambda s: {"status": s}, st.sampled_from(["active", "suspended"])),
    st.builds(lambda n: {"name": n}, st.sampled_from(["U0", "U1", "$userId"])),
)


def _filters(atom: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def combined(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        parts = st.lists(inner, min_size=1, max_size=3)
        return st.one_of(st.builds(lambda p: {"$or": p}, parts), st.builds(lambda p: {"$and": p}, parts),
                         st.builds(lambda p: {"$nor": p}, parts))
    return st.one_of(st.just({}), st.recursive(atom, combined, max_leaves=5))


FILTERS = {"PlanetaryInsight": _filters(insight_atom), "BirthChart": _filters(chart_atom), "User": _filters(user_atom)}


def _stages(model: str) -> st.SearchStrategy[dict[str, Any]]:
    """One stage on ``model``: the ones that rewrite or drop the owner field, and the ones that read
    another collection (refused to a ``self`` actor)."""
    coll = MODELS[model]
    simple = st.one_of(
        st.builds(lambda f: {"$match": f}, FILTERS[model]),
        st.builds(lambda u: {"$addFields": {"userId": u}}, user),
        st.builds(lambda u: {"$set": {"userId": u, "_id": u}}, user),
        st.just({"$project": {"userId": 1}}),
        st.just({"$unset": "userId"}),
        st.just({"$group": {"_id": "$userId", "n": {"$sum": 1}}}),
        st.just({"$group": {"_id": None, "n": {"$sum": 1}}}),
        st.builds(lambda u: {"$replaceRoot": {"newRoot": {"userId": u, "was": "$userId"}}}, user),
        st.just({"$sortByCount": "$userId"}),
        st.just({"$count": "n"}),
        st.just({"$sort": {"_id": 1}}),
        st.builds(lambda n: {"$limit": n}, st.integers(1, 3)),
    )
    other = st.sampled_from(list(MODELS.values()))
    reading = st.one_of(
        st.builds(lambda c: {"$lookup": {"from": c, "localField": "userId", "foreignField": "userId", "as": "x"}}, other),
        st.builds(lambda c: {"$lookup": {"from": c, "pipeline": [{"$match": {}}], "as": "x"}}, other),
        st.builds(lambda c: {"$unionWith": c}, other),
        st.builds(lambda c: {"$unionWith": {"coll": c, "pipeline": [{"$project": {"userId": 1}}]}}, other),
        st.builds(lambda c: {"$graphLookup": {"from": c, "startWith": "$userId", "connectFromField": "userId",
                                               "connectToField": "userId", "as": "x"}}, other),
    )
    facet = st.builds(lambda a, b: {"$facet": {"a": a, "b": b}},
                      st.lists(st.one_of(simple, reading), max_size=2), st.lists(simple, max_size=2))
    return st.one_of(simple, simple, reading, facet, st.just({"$unionWith": coll}))


def _update(model: str) -> st.SearchStrategy[dict[str, Any]]:
    if model == "User":
        return st.one_of(st.builds(lambda s: {"status": s}, st.sampled_from(["active", "suspended"])),
                         st.builds(lambda n: {"name": n}, st.sampled_from(["U1", "$userId", "Ann"])),
                         st.builds(lambda u: {"_id": u}, user))
    owner = st.one_of(st.builds(lambda u: {"userId": u}, user), st.builds(lambda u: {"user_id": u}, user),
                      st.builds(lambda u: {"$set": {"userId": u}}, user),
                      st.just({"$unset": {"userId": ""}}))
    if model == "BirthChart":
        return st.one_of(owner, st.builds(lambda h: {"houseSystem": h}, st.sampled_from(["placidus", "koch"])))
    return st.one_of(
        owner,
        st.builds(lambda v: {"energyLevel": v}, st.sampled_from(LEVELS)),
        st.builds(lambda v: {"$inc": {"energyLevel": v}}, st.sampled_from([-60, 5])),
        st.builds(lambda w: {"$push": {"recommendations": w}}, st.sampled_from(WORDS)),
        st.builds(lambda s: {"summary": s}, st.sampled_from(SUMMARIES)),
        st.just({"$unset": {"summary": ""}}),
    )


insight_data = st.fixed_dictionaries(
    {"userId": user, "date": st.sampled_from(DATES), "energyLevel": st.sampled_from(LEVELS),
     "recommendations": st.lists(st.sampled_from(WORDS), min_size=1, max_size=2)},
    optional={"summary": st.sampled_from(SUMMARIES)})
chart_data = st.fixed_dictionaries(
    {"userId": user, "birthData": st.just(BIRTH), "houseSystem": st.sampled_from(["placidus", "koch"])},
    optional={"positions": st.lists(st.fixed_dictionaries({"body": st.sampled_from(["Sun", "Moon"]), "sign": st.just("Leo"),
                                                          "degree": st.integers(0, 29), "house": st.integers(1, 12)}),
                                    max_size=2, unique_by=lambda p: p["body"])})
DATA = {"PlanetaryInsight": insight_data, "BirthChart": chart_data}

owned_model = st.sampled_from(OWNED)
any_model = st.sampled_from(list(MODELS))


@st.composite
def call(draw: Any) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["find", "find_one", "count", "iter_find", "page", "aggregate", "update",
                                 "update_many", "delete", "delete_many", "create", "create_many", "upsert_many",
                                 "export_user", "erase_user", "delete_user_cascade", "audit_trail"]))
    model = draw(owned_model if kind in ("create", "create_many", "upsert_many", "delete", "delete_many") else any_model)
    filt = draw(FILTERS[model])
    if kind in ("find", "find_one", "count", "iter_find", "page"):
        sort = draw(st.sampled_from([None, [("_id", -1)], [("userId", 1), ("_id", 1)]])) if model != "User" else None
        projection = draw(st.sampled_from([None, {"userId": 0}, {"_id": 1}] if model != "User" else [None, {"status": 1}]))
        return kind, model, filt, {"sort": sort, "cache": draw(st.booleans()), "limit": draw(st.integers(1, 4)),
                                   "projection": projection}
    if kind == "aggregate":
        return kind, model, draw(st.lists(_stages(model), max_size=4))
    if kind in ("update", "update_many"):
        return kind, model, filt, draw(_update(model))
    if kind in ("delete", "delete_many"):
        return kind, model, filt
    if kind in ("create", "create_many", "upsert_many"):
        items = draw(st.lists(DATA[model], min_size=1, max_size=3))
        if kind == "upsert_many":
            model, items = "PlanetaryInsight", draw(st.lists(insight_data, min_size=1, max_size=3))
        return kind, model, items
    if kind == "audit_trail":
        return kind, model, draw(doc_ref)
    return kind, "User", draw(user)


actor = st.tuples(st.integers(0, USERS - 1), st.sampled_from(ROLES)) | st.none()  # None: the trusted app
step = st.tuples(actor, call())
seed = st.tuples(st.lists(insight_data, max_size=6), st.lists(chart_data, max_size=3))


# --- the oracle -------------------------------------------------------------------------------

def _state(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every collection as stored (change records included), read raw."""
    return {name: list(db.mongo[name].find()) for name in sorted(db.mongo.list_collection_names())}


def _models(db: Database) -> dict[str, dict[Any, dict[str, Any]]]:
    return {model: {d["_id"]: d for d in db.mongo[coll].find()} for model, coll in MODELS.items()}


def _in_scope(model: str, doc: dict[str, Any], me: ObjectId | None) -> bool:
    if me is None:
        return True
    return doc.get("_id" if model == "User" else "userId") == me


def _canon(value: Any) -> Any:
    """A comparable form of an answer: dicts as BSON bytes, lists kept in order."""
    if isinstance(value, list):
        return [_canon(v) for v in value]
    if isinstance(value, dict):
        return bson.encode({"v": value})
    return value


def _unordered(value: Any) -> Any:
    return sorted(_canon(value)) if isinstance(value, list) else _canon(value)


class Scratch:
    """A second embedded database for the oracle: the trusted app's answer over the documents of
    one scope only (copied raw), so an actor's answer must be computable from them alone."""

    def __init__(self) -> None:
        self.db = Database(f"mongomock://localhost/scratch{uuid.uuid4().hex[:8]}", ensure_indexes=False).connect()

    def load(self, stored: dict[str, dict[Any, dict[str, Any]]], me: ObjectId | None) -> Database:
        for model, coll in MODELS.items():
            self.db.mongo[coll].delete_many({})
            docs = [d for d in stored[model].values() if _in_scope(model, d, me)]
            if docs:
                self.db.mongo[coll].insert_many(docs)
        return self.db


def _bind(value: Any, users: list[ObjectId], docs: list[Any], me: int = 0) -> Any:
    if value == "ME":
        return users[me]
    if isinstance(value, str) and value[:1] == "U" and value[1:].isdigit():
        return users[int(value[1:])]
    if isinstance(value, str) and value[:1] == "D" and value[1:].isdigit():
        return docs[int(value[1:]) % len(docs)] if docs else ObjectId(b"nothing-here")
    if isinstance(value, dict):
        return {k: _bind(v, users, docs, me) for k, v in value.items()}
    if isinstance(value, list):
        return [_bind(v, users, docs, me) for v in value]
    if isinstance(value, tuple):
        return tuple(_bind(v, users, docs, me) for v in value)
    return value


def _read(db: Database, kind: str, model: str, args: tuple[Any, ...], *, oracle: bool = False) -> Any:
    """The answer of a read, in a comparable form (unordered where the call sets no order); the
    ``oracle``'s never through its cache (its documents are replaced raw, unseen by its cache)."""
    if kind == "aggregate":
        return _unordered(db.aggregate(model, args[0]))
    filt, opts = args
    sort, cache, projection = opts["sort"], opts["cache"] and not oracle, opts.get("projection")
    if kind == "count":
        return db.count(model, filt, cache=cache)
    if kind == "find_one":
        found = db.find_one(model, filt, lean=True, cache=cache, sort=sort, projection=projection)
        return _canon(found) if sort else found is not None  # without a sort, which one is the server's choice
    if kind == "find":
        found = db.find(model, filt, lean=True, cache=cache, sort=sort, projection=projection)
        return _canon(found) if sort else _unordered(found)
    if kind == "iter_find":
        return _unordered(list(db.iter_find(model, filt, lean=True, batch_size=2, projection=projection)))
    pages, after = [], None  # page: every page of the query, which ends (each page holds a document)
    bound = db.mongo[db.executor.model(model).collection].count_documents({}) + 2
    while True:
        page = db.page(model, filt, limit=opts["limit"], after=after, lean=True, sort=sort, projection=projection)
        pages.append(_canon(page.items))
        if page.next is None:
            return pages
        assert len(pages) <= bound, f"page() went on past every document: {pages[-3:]}"
        after = page.next


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except errors.AstroDBError as exc:
        return "refused", exc


def _judge_read(db: Database, scratch: Scratch, who: Database, me: ObjectId | None, kind: str, model: str,
                args: tuple[Any, ...]) -> None:
    before = _state(db)
    got = _outcome(lambda: _read(who, kind, model, args))
    assert _state(db) == before, f"a read changed the stored state: {kind} {model} {args}"
    if got[0] == "refused" and isinstance(got[1], errors.PermissionDeniedError):
        return  # refusing is always within the scope
    oracle = _outcome(lambda: _read(scratch.load(_models(db), me), kind, model, args, oracle=True))
    if got[0] == "refused" or oracle[0] == "refused":
        assert type(got[1]) is type(oracle[1]), f"{kind} {model} {args}: {got} / the scope's own data: {oracle}"
        return
    assert got[1] == oracle[1], f"{kind} {model} {args} answered more than the actor's documents give"


def _matched(scratch: Scratch, stored: dict[str, dict[Any, dict[str, Any]]], me: ObjectId | None, model: str,
             filt: Any) -> set[Any] | None:
    """The ids ``filt`` matches among the documents in the scope (None: the filter is refused)."""
    try:
        return {d["_id"] for d in scratch.load(stored, me).find(model, filt, lean=True, cache=False)}
    except errors.AstroDBError:
        return None


def _judge_write(db: Database, scratch: Scratch, who: Database, me: ObjectId | None, users: list[ObjectId],
                 kind: str, model: str, args: tuple[Any, ...]) -> None:
    state, stored = _state(db), _models(db)
    matched = _matched(scratch, stored, me, model, args[0]) if kind in ("update", "update_many", "delete",
                                                                            "delete_many") else None
    outcome = _outcome(lambda: _write(who, kind, model, args))
    refused = outcome[0] == "refused"
    if refused and not isinstance(outcome[1], errors.DuplicateKeyError):
        assert _state(db) == state, f"refused {kind} {model} {args} ({outcome[1]!r}) changed the stored state"
        return
    # a write refused by the server part-way (a unique key taken: a many-document write is not
    # atomic) keeps what it applied, which must be in the scope all the same
    after = _models(db)
    touched: dict[str, set[Any]] = {}
    for name in MODELS:
        old, new = stored[name], after[name]
        gone = set(old) - set(new)
        made = set(new) - set(old)
        changed = {i for i in set(old) & set(new) if old[i] != new[i]}
        for i in gone | changed:
            assert _in_scope(name, old[i], me), f"{kind} {model} {args} changed or deleted {name} {i} outside the scope"
        for i in made | changed:
            assert _in_scope(name, new[i], me), f"{kind} {model} {args} left {name} {i} outside the scope: {new[i]}"
        touched[name] = gone | made | changed
    result = outcome[1]
    if refused:
        return
    if matched is not None:
        hit = touched[model]
        assert hit <= matched, f"{kind} {model} {args} changed {hit - matched}, which its filter does not match in the scope"
        if kind == "update_many":
            assert result == len(hit) == len(matched), (kind, model, args, result, hit, matched)
        elif kind == "delete_many":
            assert result == len(hit) == len(matched), (kind, model, args, result, hit, matched)
        elif kind == "delete":
            assert result is bool(hit) is bool(matched) and len(hit) <= 1, (kind, model, args, result, hit, matched)
        elif kind == "update":
            assert (result is not None) is bool(hit) is bool(matched) and len(hit) <= 1, (kind, model, args, result)
            if result is not None:
                assert result["_id"] in hit
    if kind == "export_user":
        owner = args[0]
        assert me is None or owner == me, f"export_user of {owner} answered to a self actor {me}"
        for name in OWNED:
            exported = {d["_id"]["$oid"] for d in result["models"][name]["documents"]}
            assert exported == {str(i) for i, d in stored[name].items() if d["userId"] == owner}, name


def _write(db: Database, kind: str, model: str, args: tuple[Any, ...]) -> Any:
    if kind == "update":
        return db.update(model, args[0], args[1], lean=True)
    if kind == "update_many":
        return db.update_many(model, args[0], args[1], all=True)
    if kind == "delete":
        return db.delete(model, args[0]) if args[0] else db.delete(model, {"_id": {"$exists": True}})
    if kind == "delete_many":
        return db.delete_many(model, args[0], all=True)
    if kind == "create":
        return db.create(model, args[0][0], lean=True)
    if kind == "create_many":
        return db.create_many(model, args[0], lean=True)
    if kind == "upsert_many":
        return db.upsert_many(model, list({(i["userId"], i["date"]): i for i in args[0]}.values()), on=("userId", "date"))
    if kind == "export_user":
        return db.export_user(args[0])
    if kind == "erase_user":
        return db.erase_user(args[0])
    if kind == "delete_user_cascade":
        return db.delete_user_cascade(args[0])
    assert kind == "audit_trail"
    return db.audit_trail(model, args[0])


READS = frozenset({"find", "find_one", "count", "iter_find", "page", "aggregate"})


def run_steps(seeded: tuple[list[dict[str, Any]], list[dict[str, Any]]], steps: list[tuple[Any, ...]]) -> None:
    scratch = Scratch()
    with Database(f"mongomock://localhost/scope{uuid.uuid4().hex[:8]}", cache_models=tuple(MODELS)) as db:
        users = [db.create("User", {"email": f"u{i}@example.com", "name": f"U{i}"}).id for i in range(USERS)]
        insights, charts = seeded
        db.upsert_many("PlanetaryInsight", list({(i["userId"], i["date"]): _bind(i, users, [])
                                                 for i in insights}.values()), on=("userId", "date"))
        db.create_many("BirthChart", [_bind(c, users, []) for c in charts])
        for who_is, (kind, model, *args) in steps:
            docs = sorted(_models(db)[model])
            index, roles = who_is if who_is is not None else (0, ())
            bound = tuple(_bind(a, users, docs, index) for a in args)
            if who_is is None:
                who, me = db, None
            else:
                who = db.as_actor(str(users[index]), roles=list(roles))
                me = users[index] if "self" in roles else None
            if kind in READS:
                _judge_read(db, scratch, who, me, kind, model, bound)
            else:
                _judge_write(db, scratch, who, me, users, kind, model, bound)
    scratch.db.disconnect()


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeded=seed, steps=st.lists(step, min_size=2, max_size=10))
def test_no_actor_reads_or_writes_outside_its_scope(seeded, steps):
    run_steps(seeded, steps)


@pytest.mark.parametrize("roles", [("self",), ("self", "admin")])
def test_the_oracle_sees_a_scope_crossed(roles, monkeypatch):
    """The judge itself: with the scope rule turned off, a self actor's read is caught."""
    from astro_db.security import access

    monkeypatch.setattr(access.Guard, "filter", lambda self, filt: filt)
    with pytest.raises(AssertionError, match="answered more than"):
        run_steps(([{"userId": "U1", "date": DATES[0], "energyLevel": 50, "recommendations": ["a"]}], []),
                  [((0, roles), ("count", "PlanetaryInsight", {}, {"sort": None, "cache": False, "limit": 1}))])
