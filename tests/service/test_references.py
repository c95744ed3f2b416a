"""check_references: a userId must name a User, when the config asks for it (off by default)."""

from __future__ import annotations

import datetime as _dt

import pytest
from bson import ObjectId

from astro_db import Database, DatabaseConfig
from astro_db.errors import ValidationError

GHOST = "0123456789abcdef01234567"


def insight(user_id, day: int = 1) -> dict:
    return {"userId": user_id, "date": _dt.datetime(2025, 1, day, tzinfo=_dt.timezone.utc),
            "energyLevel": 50, "recommendations": ["rest"]}


@pytest.fixture
def checked():
    with Database("mongomock://localhost/refs", check_references=True) as db:
        db.user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        yield db


def finds_of_users(db) -> list:
    """Spy: every users-collection find the reference check sends (counts round trips)."""
    calls: list = []
    coll = db.mongo["users"]
    original = coll.find

    def spy(filt=None, *args, **kwargs):
        calls.append(filt)
        return original(filt, *args, **kwargs)

    coll.find = spy  # the check looks the collection up on db.mongo each time: same object
    return calls


def test_off_by_default_an_orphan_user_id_is_accepted():
    assert DatabaseConfig().check_references is False
    with Database("mongomock://localhost/refs_off") as db:
        assert db.create("PlanetaryInsight", insight(GHOST)).user_id == ObjectId(GHOST)


def test_the_environment_turns_it_on(monkeypatch):
    monkeypatch.setenv("ASTRO_DB_CHECK_REFERENCES", "1")
    assert DatabaseConfig.from_env().check_references is True


def test_create_refuses_a_user_id_that_names_no_user_and_writes_nothing(checked):
    with pytest.raises(ValidationError) as info:
        checked.create("PlanetaryInsight", insight(GHOST))
    assert info.value.errors == {"userId": f"no User with id {GHOST}"}
    assert checked.count("PlanetaryInsight") == 0
    assert checked.create("PlanetaryInsight", insight(checked.user.id)).user_id == checked.user.id


def test_create_many_checks_the_batch_in_one_query_and_reports_orphans(checked):
    calls = finds_of_users(checked)
    result = checked.create_many("PlanetaryInsight", [insight(checked.user.id, 1), insight(GHOST, 2), insight(checked.user.id, 3)])
    assert [r.date.day for r in result] == [1, 3]
    assert [(i, e.errors) for i, e in result.failed] == [(1, {"userId": f"no User with id {GHOST}"})]
    assert len(calls) == 1 and set(calls[0]["_id"]["$in"]) == {checked.user.id, ObjectId(GHOST)}
    assert checked.count("PlanetaryInsight") == 2


def test_update_refuses_to_point_a_document_at_no_user(checked):
    row = checked.create("TimingRecommendation", {"userId": checked.user.id, "activity": "travel"})
    for call in (lambda: checked.update("TimingRecommendation", {"id": row.id}, {"userId": GHOST}),
                 lambda: checked.update_many("TimingRecommendation", {}, {"$set": {"userId": GHOST}}, all=True)):
        with pytest.raises(ValidationError, match="no User with id"):
            call()
    assert checked.find_one("TimingRecommendation", {"id": row.id}).user_id == checked.user.id
    assert checked.update("TimingRecommendation", {"id": row.id}, {"activity": "rest"}).activity == "rest"


def test_users_themselves_are_not_checked(checked):
    assert checked.create("User", {"email": "bo@example.com", "name": "Bo"}).email == "bo@example.com"


def test_inside_a_transaction_the_check_sees_the_user_created_in_it(checked):
    with checked.transaction() as tx:
        bo = checked.create("User", {"email": "bo@example.com", "name": "Bo"}, transaction=tx)
        assert checked.create("PlanetaryInsight", insight(bo.id), transaction=tx).user_id == bo.id


def test_a_user_deleted_after_the_check_still_leaves_an_orphan_without_a_transaction(checked, monkeypatch):
    """The documented limit: outside a transaction the check is advisory. A hook deletes the
    User between the check and the insert (the interleaving of two callers)."""
    import astro_db.ops.references as references

    original = references.missing

    def check_then_concurrent_delete(rt, target, ids, transaction=None):
        missing = original(rt, target, ids, transaction)
        checked.delete("User", {"id": checked.user.id})
        return missing

    monkeypatch.setattr(references, "missing", check_then_concurrent_delete)
    orphan = checked.create("PlanetaryInsight", insight(checked.user.id))
    assert checked.count("User", {"id": checked.user.id}) == 0 and orphan.id is not None
