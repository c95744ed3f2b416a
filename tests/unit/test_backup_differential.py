"""Point-in-time restore against the states it must rebuild, on random histories.

Hypothesis draws a history: writes of every kind through the service (creates, updates by
several operators, ``update_many``, deletes, ``delete_many``, ``upsert_many``, ``create_many``),
backup sets taken between them (the first full, later ones incremental or full), and instants
marked between writes, where the source's content is recorded. Restoring the repository into an
empty database ``until`` each marked instant must give exactly the content recorded then, and
restoring it whole the content after the last set."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

from backup_helpers import instant_after_last_write, state
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database, backup, errors

UTC = dt.timezone.utc
DATES = [dt.datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3)]
_names = itertools.count()

step = st.one_of(
    st.tuples(st.just("create_user")),
    st.tuples(st.just("rename_user"), st.integers(0, 9)),
    st.tuples(st.just("delete_user"), st.integers(0, 9)),
    st.tuples(st.just("create_insight"), st.sampled_from(DATES), st.sampled_from([10, 50])),
    st.tuples(st.just("inc_insight"), st.integers(0, 9)),
    st.tuples(st.just("push_insight"), st.integers(0, 9)),
    st.tuples(st.just("update_many_insights"), st.sampled_from([20, 60])),
    st.tuples(st.just("delete_many_insights"), st.sampled_from([10, 50, 20, 60])),
    st.tuples(st.just("upsert_insights"), st.lists(st.sampled_from(DATES), min_size=1, max_size=3, unique=True),
              st.sampled_from([30, 70])),
    st.tuples(st.just("create_many_users"), st.integers(1, 3)),
    st.tuples(st.just("backup"), st.booleans()),
    st.tuples(st.just("mark")),
)


def _ids(db: Database, model: str) -> list:
    return [d["_id"] for d in db.mongo[db.executor.runtime.registry.resolve(model).collection].find({}, {"_id": 1},
                                                                                                 sort=[("_id", 1)])]


def _apply(db: Database, owner, move) -> None:
    name = move[0]
    users, insights = _ids(db, "User"), _ids(db, "PlanetaryInsight")
    if name == "create_user":
        db.create("User", {"email": f"n{next(_names)}@example.com", "name": "New"})
    elif name == "rename_user" and users:
        db.update("User", {"id": users[move[1] % len(users)]}, {"name": f"R{next(_names)}"})
    elif name == "delete_user" and len(users) > 1:
        target = users[move[1] % len(users)]
        if target != owner:
            db.delete("User", {"id": target})
    elif name == "create_insight":
        db.create("PlanetaryInsight", {"userId": owner, "date": move[1], "energyLevel": move[2],
                                       "recommendations": ["Rest"]})
    elif name == "inc_insight" and insights:
        db.update("PlanetaryInsight", {"id": insights[move[1] % len(insights)]}, {"$inc": {"energyLevel": 1}})
    elif name == "push_insight" and insights:
        db.update("PlanetaryInsight", {"id": insights[move[1] % len(insights)]}, {"$push": {"recommendations": "Walk"}})
    elif name == "update_many_insights":
        db.update_many("PlanetaryInsight", {"userId": owner}, {"energyLevel": move[1]})
    elif name == "delete_many_insights":
        db.delete_many("PlanetaryInsight", {"energyLevel": move[1]})
    elif name == "upsert_insights":
        db.upsert_many("PlanetaryInsight", [{"userId": owner, "date": d, "energyLevel": move[2],
                                             "recommendations": ["Plan"]} for d in move[1]], on=("userId", "date"))
    elif name == "create_many_users":
        db.create_many("User", [{"email": f"m{next(_names)}@example.com", "name": "Many"} for _ in range(move[1])])


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(step, min_size=1, max_size=10))
def test_a_restore_until_any_instant_gives_the_content_then(tmp_path_factory, history):
    repo = tmp_path_factory.mktemp("repo")
    with Database(f"mongomock://localhost/pitr{uuid.uuid4().hex[:8]}") as db:
        owner = db.create("User", {"email": "owner@example.com", "name": "Owner"}).id
        backup.backup(db, repo)  # the first set: full
        marks: list[tuple[dt.datetime, dict]] = []
        last_set: dict | None = state(db)
        for move in history:
            if move[0] == "backup":
                backup.backup(db, repo, full=move[1])
                last_set = state(db)
            elif move[0] == "mark":
                marks.append((instant_after_last_write(), state(db)))
            else:
                try:
                    _apply(db, owner, move)
                except (errors.ValidationError, errors.DuplicateKeyError):
                    pass  # refused (an $inc past the bound, a date the owner has an insight for): nothing written
        for instant, expected in marks:
            if instant > _newest_set_end(repo):
                with Database(f"mongomock://localhost/t{uuid.uuid4().hex[:8]}") as target:
                    backup.restore(repo, target, until=instant, journal_source=db)
                    assert state(target) == expected, f"until {instant} (past the newest set, with the live journal)"
                continue
            with Database(f"mongomock://localhost/t{uuid.uuid4().hex[:8]}") as target:
                backup.restore(repo, target, until=instant)
                assert state(target) == expected, f"until {instant}"
        with Database(f"mongomock://localhost/t{uuid.uuid4().hex[:8]}") as target:
            backup.restore(repo, target)
            assert state(target) == last_set, "the newest set"


def _newest_set_end(repo) -> dt.datetime:
    from astro_db.backup.repository import Repository

    sets = Repository(repo).sets()
    return max(s.end for s in sets)


MODELS = ("users", "planetaryInsights")


def _documents(db: Database) -> dict[str, dict]:
    return {name: {d["_id"]: d for d in db.mongo[name].find({})} for name in MODELS}


def _without(documents: dict[str, dict], erased: set) -> dict[str, dict]:
    return {"users": {i: d for i, d in documents["users"].items() if i not in erased},
            "planetaryInsights": {i: d for i, d in documents["planetaryInsights"].items() if d["userId"] not in erased}}


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(st.one_of(step, st.tuples(st.just("erase"), st.booleans())), min_size=1, max_size=10))
def test_no_restore_brings_back_a_user_erased_since(tmp_path_factory, history):
    """Whatever was backed up before or after, a restore (newest set, or until any instant)
    consulting the live erasure ledger gives what was stored then, less every user erased by
    now and everything they owned; nothing of theirs is left in the change records."""
    repo = tmp_path_factory.mktemp("repo")
    with Database(f"mongomock://localhost/erase{uuid.uuid4().hex[:8]}") as db:
        owners = [db.create("User", {"email": f"owner{i}@example.com", "name": "Owner"}).id for i in range(2)]
        backup.backup(db, repo)
        marks: list[tuple[dt.datetime, dict]] = []
        erased: set = set()
        for n, move in enumerate(history):
            if move[0] == "backup":
                backup.backup(db, repo, full=move[1])
            elif move[0] == "mark":
                marks.append((instant_after_last_write(), _documents(db)))
            elif move[0] == "erase":
                who = owners[1] if move[1] else None
                if who is None:  # a user without insights, if any is left
                    others = [u for u in _ids(db, "User") if u not in owners]
                    who = others[0] if others else owners[1]
                if who not in erased:
                    try:
                        db.erase_user(who)
                    except errors.NotFoundError:  # deleted before: nothing to erase
                        continue
                    erased.add(who)
            else:
                try:
                    _apply(db, owners[n % 2] if owners[n % 2] not in erased else owners[0], move)
                except (errors.ValidationError, errors.DuplicateKeyError):
                    pass
        newest = _newest_set_end(repo)
        for instant, then in marks:
            with Database(f"mongomock://localhost/t{uuid.uuid4().hex[:8]}") as target:
                backup.restore(repo, target, until=instant, journal_source=db if instant > newest else None,
                               erasures_from=db)
                assert _documents(target) == _without(then, erased), f"until {instant}"
        with Database(f"mongomock://localhost/t{uuid.uuid4().hex[:8]}") as target:
            backup.restore(repo, target, erasures_from=db)
            assert not erased & set(_documents(target)["users"])
            assert not erased & {d["userId"] for d in _documents(target)["planetaryInsights"].values()}
        for record in db.mongo["astroChanges"].find({"doc": {"$exists": True}}):
            doc = record["doc"]
            assert doc.get("_id") not in erased and doc.get("userId") not in erased, record["_id"]
