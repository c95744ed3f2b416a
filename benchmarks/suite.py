"""The benchmark's operations, each as variants over the same seeded collections.

Every variant's ``setup`` resets the collections to the seeded size and builds its inputs (raw:
stored documents; astro_db: input dicts; MongoEngine: document instances), all outside the
timing. Every ``check`` proves the work was done, also outside the timing.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymongo
from harness import Operation, Variant, WorkNotDone
from peers import PeerInsight, PeerUser, peer_document, peer_insight, peer_user
from pymongo import ReturnDocument
from sides import NEW_STATUS, Sides
from wire import Recorder, Writes, compare, describe
from workloads import insight_input, stored_insight, stored_user, user_input

from astro_db import Database
from astro_db.models import PlanetaryInsight, User

__all__ = ["Sizes", "RAW", "DEFAULT", "HOOKS_OFF", "MONGOENGINE", "MONGOENGINE_DICTS", "CACHED", "RAW_NO_RETURN", "NO_RETURN",
           "WIRE", "WIRE_OFF", "RAW_BOUNDED", "PAIRS", "operations", "check_commands"]

RAW, DEFAULT, HOOKS_OFF, MONGOENGINE = "raw PyMongo", "astro_db default", "astro_db hooks off", "MongoEngine"
MONGOENGINE_DICTS = "MongoEngine from dicts"  # given the same input dicts as astro_db: builds its documents timed
CACHED = "astro_db cached"
# an update that does not want the document back: raw ``update_one``, and astro_db's ``returning=False``
RAW_NO_RETURN, NO_RETURN = "raw update_one", "astro_db hooks off, returning=False"
# raw PyMongo on a plain client of its own sending the commands astro_db sends (benchmarks/wire.py):
# the defaults' (the document and its change record) and, for the update, hooks off's
WIRE, WIRE_OFF = "raw PyMongo, astro_db's commands", "raw PyMongo, hooks off's commands"
# raw PyMongo with each call under astro_db's default budget, ``pymongo.timeout(30)``: what
# PyMongo's own client-side timeout costs it (its deadline checks, ``maxTimeMS``, socket timeouts)
RAW_BOUNDED = "raw PyMongo, pymongo.timeout(30)"
# (operation key, astro_db side, the raw side sending its commands): the "same commands" table
PAIRS = (("create", DEFAULT, WIRE), ("create_many", DEFAULT, WIRE), ("update", DEFAULT, WIRE),
         ("update", HOOKS_OFF, WIRE_OFF))


@dataclass(frozen=True)
class Sizes:
    """How much one round does (``--quick`` and ``--tiny`` shrink it)."""

    seed: int = 5_000  # insights in the collection for every variant; what the find rows read
    users: int = 1_000  # users in the collection for every variant
    calls: int = 500  # create / update / find_one calls per round
    many: int = 5_000  # the create_many batch
    hot: int = 50  # distinct ids the cached find_one cycles over


def _expect(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise WorkNotDone(f"{what}: expected {want!r}, got {got!r}")


class _Inputs:
    """A variant's inputs, rebuilt by each ``setup`` (a list indexed by call number)."""

    def __init__(self, sides: Sides, build: Callable[[], list[Any]]) -> None:
        self.sides, self.build, self.items = sides, build, []

    def setup(self) -> None:
        self.sides.reset()
        self.items = self.build()


def _variant(label: str, inputs: _Inputs, op: Callable[[list[Any], int], Any], docs_per_op: int = 1,
             check: Callable[[], None] | None = None) -> Variant:
    return Variant(label, inputs.setup, lambda i: op(inputs.items, i), docs_per_op, check)


def create(sizes: Sizes, s: Sides) -> Operation:
    n = sizes.calls

    def users_added(store: Any) -> Callable[[], None]:
        return lambda: _expect("users created", store["users"].count_documents({"status": NEW_STATUS}), n)

    def new_users(tag: str) -> list[dict[str, Any]]:
        return [user_input(i, tag, NEW_STATUS) for i in range(n)]

    users = s.raw["users"]
    wire = Writes(s.wire, "User", "users", owner="_id")
    return Operation(f"create x{n}", n, [
        _variant(RAW, _Inputs(s, lambda: [stored_user(i, "r", NEW_STATUS) for i in range(n)]),
                 lambda docs, i: users.insert_one(docs[i]), check=users_added(s.raw)),
        _variant(DEFAULT, _Inputs(s, lambda: new_users("d")),
                 lambda items, i: s.default.create(User, items[i]), check=users_added(s.default.mongo)),
        _variant(HOOKS_OFF, _Inputs(s, lambda: new_users("h")),
                 lambda items, i: s.hooks_off.create(User, items[i]), check=users_added(s.hooks_off.mongo)),
        _variant(MONGOENGINE, _Inputs(s, lambda: [peer_user(i, "m", NEW_STATUS) for i in range(n)]),
                 lambda docs, i: docs[i].save(), check=users_added(PeerUser._get_db())),
        _variant(MONGOENGINE_DICTS, _Inputs(s, lambda: new_users("md")),
                 lambda items, i: peer_document(PeerUser, items[i]).save(), check=users_added(PeerUser._get_db())),
        _variant(WIRE, _Inputs(s, lambda: wire.create_inputs(stored_user(i, "w", NEW_STATUS) for i in range(n))),
                 lambda items, i: wire.create(items[i]), check=users_added(s.wire)),
    ])


def create_many(sizes: Sizes, s: Sides) -> Operation:
    n, newcomer = sizes.many, s.seed.newcomer

    def added(store: Any) -> Callable[[], None]:
        return lambda: _expect("insights created", store["planetaryInsights"].count_documents({"userId": newcomer}), n)

    def astro(db: Any) -> Callable[[list[Any], int], Any]:
        def call(items: list[Any], _: int) -> Any:
            result = db.create_many(PlanetaryInsight, items)
            if result.failed:
                raise WorkNotDone(f"create_many refused {len(result.failed)} items: {result.failed[:2]}")
            return result
        return call

    def mongoengine_insert(docs: list[PeerInsight], _: int) -> Any:
        for doc in docs:  # MongoEngine's insert() does not validate: a validated batch is this
            doc.validate()
        return PeerInsight.objects.insert(docs, load_bulk=False)

    def mongoengine_from_dicts(items: list[dict[str, Any]], i: int) -> Any:
        return mongoengine_insert([peer_document(PeerInsight, item) for item in items], i)

    insights = s.raw["planetaryInsights"]
    wire = Writes(s.wire, "PlanetaryInsight", "planetaryInsights", owner="userId")
    return Operation(f"create_many {n:,}", 1, [
        _variant(RAW, _Inputs(s, lambda: [stored_insight(newcomer, i) for i in range(n)]),
                 lambda docs, _: insights.insert_many(docs, ordered=False), n, added(s.raw)),
        _variant(DEFAULT, _Inputs(s, lambda: [insight_input(newcomer, i) for i in range(n)]),
                 astro(s.default), n, added(s.default.mongo)),
        _variant(HOOKS_OFF, _Inputs(s, lambda: [insight_input(newcomer, i) for i in range(n)]),
                 astro(s.hooks_off), n, added(s.hooks_off.mongo)),
        _variant(MONGOENGINE, _Inputs(s, lambda: [peer_insight(newcomer, i) for i in range(n)]),
                 mongoengine_insert, n, added(PeerInsight._get_db())),
        _variant(MONGOENGINE_DICTS, _Inputs(s, lambda: [insight_input(newcomer, i) for i in range(n)]),
                 mongoengine_from_dicts, n, added(PeerInsight._get_db())),
        _variant(WIRE, _Inputs(s, lambda: [wire.create_many_inputs([stored_insight(newcomer, i) for i in range(n)])]),
                 lambda batches, _: wire.create_many(batches[0]), n, added(s.wire)),
    ])


def update(sizes: Sizes, s: Sides) -> Operation:
    """``$set`` of one field by id; astro_db returns the updated instance, so raw PyMongo asks
    for the updated document too (and sets ``updatedAt``, as astro_db does). Beside them, the
    form that wants no document back: raw ``update_one`` and astro_db's ``returning=False``
    (hooks off), compared with raw ``find_one_and_update`` (the baseline) like the others."""
    n = sizes.calls
    ids = s.seed.insight_ids[:n]
    generation = itertools.count(1)

    def levels() -> list[tuple[Any, int]]:
        g = next(generation)
        return [(ids[i % len(ids)], (g + i) % 101) for i in range(n)]

    def updated(store: Any, inputs: _Inputs) -> Callable[[], None]:
        def check() -> None:
            oid, level = inputs.items[-1]
            _expect("energyLevel after update", store["planetaryInsights"].find_one({"_id": oid})["energyLevel"], level)
        return check

    insights = s.raw["planetaryInsights"]

    def raw(items: list[Any], i: int) -> Any:
        oid, level = items[i]
        return insights.find_one_and_update(
            {"_id": oid}, {"$set": {"energyLevel": level, "updatedAt": _dt.datetime.now(_dt.timezone.utc)}},
            return_document=ReturnDocument.AFTER)

    def raw_no_return(items: list[Any], i: int) -> Any:
        oid, level = items[i]
        return insights.update_one(
            {"_id": oid}, {"$set": {"energyLevel": level, "updatedAt": _dt.datetime.now(_dt.timezone.utc)}})

    def astro(db: Any) -> Callable[[list[Any], int], Any]:
        return lambda items, i: db.update(PlanetaryInsight, {"id": items[i][0]}, {"energy_level": items[i][1]})

    def no_return(db: Any) -> Callable[[list[Any], int], Any]:
        return lambda items, i: db.update(PlanetaryInsight, {"id": items[i][0]}, {"energy_level": items[i][1]},
                                          returning=False)

    variants = []
    for label, op, store in ((RAW, raw, s.raw), (DEFAULT, astro(s.default), s.default.mongo),
                             (HOOKS_OFF, astro(s.hooks_off), s.hooks_off.mongo), (RAW_NO_RETURN, raw_no_return, s.raw),
                             (NO_RETURN, no_return(s.hooks_off), s.hooks_off.mongo)):
        inputs = _Inputs(s, levels)
        variants.append(_variant(label, inputs, op, check=updated(store, inputs)))
    wire = Writes(s.wire, "PlanetaryInsight", "planetaryInsights", owner="userId")
    stored = {d["_id"]: d for d in s.seed.insights}

    def wire_inputs(records: bool) -> Callable[[], list[Any]]:
        def build() -> list[Any]:
            pairs = levels()
            return wire.update_inputs([stored[oid] for oid, _ in pairs], [{"energyLevel": level} for _, level in pairs],
                                      wire.revisions(oid for oid, _ in pairs), records=records)
        return build

    def wire_updated(inputs: _Inputs) -> Callable[[], None]:
        def check() -> None:
            last = inputs.items[-1]
            _expect("energyLevel after update", s.wire["planetaryInsights"].find_one(last.filter)["energyLevel"],
                    last.update["$set"]["energyLevel"])
        return check

    for label, records in ((WIRE, True), (WIRE_OFF, False)):
        inputs = _Inputs(s, wire_inputs(records))
        variants.append(_variant(label, inputs, lambda items, i: wire.update(items[i]), check=wire_updated(inputs)))
    return Operation(f"update x{n}", n, variants)


def _found(label: str, run: Callable[[], Any], want: int) -> Callable[[], None]:
    return lambda: _expect(f"{label}: documents found", len(run()), want)


def _one(op: Callable[[int], Any], i: int) -> Callable[[], list[Any]]:
    return lambda: [doc for doc in [op(i)] if doc is not None]


def find_one(sizes: Sizes, s: Sides) -> Operation:
    n = sizes.calls
    ids = s.seed.insight_ids
    targets = [ids[(i * 7919) % len(ids)] for i in range(n)]
    insights = s.raw["planetaryInsights"]
    def bounded(i: int) -> Any:
        with pymongo.timeout(30):
            return insights.find_one({"_id": targets[i]})

    ops: list[tuple[str, Callable[[int], Any]]] = [
        (RAW, lambda i: insights.find_one({"_id": targets[i]})),
        (DEFAULT, lambda i: s.default.find_one(PlanetaryInsight, {"id": targets[i]})),
        (HOOKS_OFF, lambda i: s.hooks_off.find_one(PlanetaryInsight, {"id": targets[i]})),
        (MONGOENGINE, lambda i: PeerInsight.objects(id=targets[i]).first()),
        (RAW_BOUNDED, bounded),
    ]
    return Operation(f"find_one by id x{n}", n, [
        _variant(label, _Inputs(s, list), lambda _, i, op=op: op(i), check=_found(label, _one(op, n - 1), 1))
        for label, op in ops
    ])


def find(sizes: Sizes, s: Sides, lean: bool) -> Operation:
    n, owner = sizes.seed, s.seed.owner
    insights = s.raw["planetaryInsights"]
    ops: list[tuple[str, Callable[[], Any]]] = [
        (RAW, lambda: list(insights.find({"userId": owner}))),
        (DEFAULT, lambda: s.default.find(PlanetaryInsight, {"userId": owner}, lean=lean)),
        (HOOKS_OFF, lambda: s.hooks_off.find(PlanetaryInsight, {"userId": owner}, lean=lean)),
    ]
    if not lean:
        ops.append((MONGOENGINE, lambda: list(PeerInsight.objects(user_id=owner))))
    return Operation(f"find {'lean' if lean else 'hydrated'} {n:,} docs", 1, [
        _variant(label, _Inputs(s, list), lambda _, __, op=op: op(), n, _found(label, op, n)) for label, op in ops
    ])


def cached_find_one(sizes: Sizes, s: Sides) -> Operation:
    """find_one over a few hot ids: through the query cache (hits after the warm-up round)
    against the same call uncached, both in the default configuration."""
    n = sizes.calls
    ids = s.seed.insight_ids[:sizes.hot]
    targets = [ids[i % len(ids)] for i in range(n)]
    insights = s.raw["planetaryInsights"]
    ops: list[tuple[str, Callable[[int], Any]]] = [
        (RAW, lambda i: insights.find_one({"_id": targets[i]})),
        (DEFAULT, lambda i: s.default.find_one(PlanetaryInsight, {"id": targets[i]}, cache=False)),
        (CACHED, lambda i: s.default.find_one(PlanetaryInsight, {"id": targets[i]}, cache=True)),
    ]
    return Operation(f"find_one cached x{n}", n, [
        _variant(label, _Inputs(s, list), lambda _, i, op=op: op(i), check=_found(label, _one(op, n - 1), 1))
        for label, op in ops
    ])


def operations(sizes: Sizes, s: Sides) -> dict[str, Operation]:
    """Every operation of the benchmark by key, in the order it runs and prints."""
    return {"create": create(sizes, s), "create_many": create_many(sizes, s), "update": update(sizes, s),
            "find_one": find_one(sizes, s), "find_lean": find(sizes, s, lean=True),
            "find_hydrated": find(sizes, s, lean=False), "cached": cached_find_one(sizes, s)}


def check_commands(sizes: Sizes, s: Sides) -> list[tuple[str, str, list[str]]]:
    """Untimed, once per run: for each pair of ``PAIRS``, one operation of the astro_db side on a
    ``Database`` of its own with a command listener, and one of the raw side sending its commands
    on a listening PyMongo client of its own; ``(what, astro_db's commands, differences)`` (no
    differences: the same commands). Empty on the embedded backend (no command events)."""
    if s.url is None:
        return []
    astro_seen, wire_seen = Recorder(), Recorder()
    client: Any = pymongo.MongoClient(s.url, tz_aware=True, w="majority", event_listeners=[wire_seen])
    common = {"allow_plaintext_sensitive": True, "connect_attempts": 1, "ensure_indexes": False,
              "event_listeners": [astro_seen]}
    dbs = {DEFAULT: Database(s.url, **common).connect(), HOOKS_OFF: Database(s.url, audit=False, journal=False, **common).connect()}
    try:
        users = Writes(client[s.raw.name], "User", "users", owner="_id")
        insights = Writes(client[s.raw.name], "PlanetaryInsight", "planetaryInsights", owner="userId")
        ids, stored = s.seed.insight_ids, {d["_id"]: d for d in s.seed.insights}
        newcomer = s.seed.newcomer

        def update_inputs(records: bool) -> Callable[[], Any]:
            return lambda: insights.update_inputs([stored[ids[1]]], [{"energyLevel": 7}], insights.revisions([ids[1]]),
                                                  records=records)[0]

        # (the astro_db call; the raw side's inputs, built before its commands are recorded; its call)
        cases: dict[tuple[str, str], tuple[Callable[[Database], Any], Callable[[], Any], Callable[[Any], Any]]] = {
            ("create", DEFAULT): (lambda db: db.create(User, user_input(0, "check-a", NEW_STATUS)),
                                  lambda: users.create_inputs([stored_user(0, "check-w", NEW_STATUS)])[0], users.create),
            ("create_many", DEFAULT): (
                lambda db: db.create_many(PlanetaryInsight, [insight_input(newcomer, i) for i in range(sizes.many)]),
                lambda: insights.create_many_inputs([stored_insight(newcomer, i) for i in range(sizes.many)]),
                insights.create_many),
            ("update", DEFAULT): (lambda db: db.update(PlanetaryInsight, {"id": ids[0]}, {"energy_level": 7}),
                                  update_inputs(True), insights.update),
            ("update", HOOKS_OFF): (lambda db: db.update(PlanetaryInsight, {"id": ids[0]}, {"energy_level": 7}),
                                    update_inputs(False), insights.update),
        }
        rows = []
        for key, side, wire_label in PAIRS:
            astro_op, wire_inputs, wire_op = cases[(key, side)]
            s.reset()
            astro_seen.take()
            astro_op(dbs[side])
            astro = astro_seen.take()
            s.reset()
            inputs = wire_inputs()
            wire_seen.take()
            wire_op(inputs)
            rows.append((f"{key}, {side} / {wire_label}", describe(astro), compare(astro, wire_seen.take())))
        s.reset()
        return rows
    finally:
        for db in dbs.values():
            db.close()
        client.close()
