"""Declared indexes reach the server, re-syncing is harmless, unique ones refuse duplicates."""

from __future__ import annotations

import pytest

from astro_db import errors
from astro_db.indexes import declared_indexes

from .conftest import insight_data


def _field_sets(collection):
    out = []
    for index in collection.list_indexes():
        key = index["key"]
        if "_fts" in key and "weights" in index:
            key = dict.fromkeys(index["weights"])
        out.append(frozenset(key))
    return out


def _is_text(spec):
    return any(kind == "text" for _, kind in spec["key"])


def test_every_declared_index_exists_on_the_server(db):
    for info in db.executor.runtime.registry:
        present = _field_sets(db.collection(info.name))
        for spec in declared_indexes(info):
            if _is_text(spec) and db.test_backend == "nx":
                continue  # nx-27017 keeps text indexes in SQLite FTS and does not list them
            assert frozenset(name for name, _ in spec["key"]) in present, (info.name, spec["name"])


def test_text_index_serves_text_search(db, user):
    if db.test_backend == "embedded":
        pytest.skip("mongomock-ng has no $text search")
    db.create("PlanetaryInsight", insight_data(user.id, summary="Venus brings harmony"))
    db.create("PlanetaryInsight", insight_data(user.id, day=1, summary="Mars brings drive"))
    found = db.find("PlanetaryInsight", {"$text": {"$search": "harmony"}})
    assert [i.summary for i in found] == ["Venus brings harmony"]


def test_sync_again_creates_nothing_and_fails_nothing(db, user):
    db.create("PlanetaryInsight", insight_data(user.id))  # with data, nx-27017 refuses a second text index
    for report in db.sync_indexes():
        assert report["created"] == [] and report["failed"] == {}, report
        if db.test_backend == "nx" and report["model"] == "PlanetaryInsight":
            # what the server cannot do is a note, not a created or FAILED line
            assert list(report["notes"]) == ["summary_text_recommendations_text"]
            assert "leaves text indexes out of listIndexes" in report["notes"]["summary_text_recommendations_text"]
        else:
            assert report["notes"] == {}, report


def test_connecting_again_logs_no_failed_index_creation(db, user, caplog):
    import logging

    from astro_db import Database

    db.create("PlanetaryInsight", insight_data(user.id))
    with caplog.at_level(logging.INFO, logger="astro_db"):
        again = Database(db.config).connect()
        again.disconnect()
    problems = [r.getMessage() for r in caplog.records if r.name == "astro_db.indexes" and r.levelno >= logging.WARNING]
    assert problems == []


def test_sync_reports_undeclared_indexes_and_drops_them_on_request(db):
    db.collection("User").create_index("name", name="name_1")
    report = next(r for r in db.sync_indexes() if r["model"] == "User")
    assert any("name" in n for n in report["extra"])
    dropped = next(r for r in db.sync_indexes(drop_extra=True) if r["model"] == "User")
    assert dropped["dropped"] == dropped["extra"] and dropped["dropped"]


def test_unique_email_rejects_duplicates(db):
    db.create("User", {"email": "dup@example.com", "name": "A"})
    with pytest.raises(errors.DuplicateKeyError) as info:
        db.create("User", {"email": "DUP@example.com", "name": "B"})
    assert info.value.fields == ("email",)
    assert db.count("User") == 1


def test_unique_user_and_date_rejects_a_second_insight_for_the_day(db, user):
    db.create("PlanetaryInsight", insight_data(user.id))
    with pytest.raises(errors.DuplicateKeyError) as info:
        db.create("PlanetaryInsight", insight_data(user.id, energyLevel=99))
    assert set(info.value.fields) == {"userId", "date"}


def test_declared_specs_are_exactly_the_data_model():
    from astro_db.registry import default_registry

    specs = {info.name: [(s["key"], s.get("unique", False), s.get("expireAfterSeconds"))
                         for s in declared_indexes(info)] for info in default_registry()}
    assert specs["User"] == [([("email", 1)], True, None), ([("status", 1)], False, None),
                             ([("lastActive", 1)], False, None), ([("status", 1), ("lastActive", -1)], False, None),
                             ([("emailIndex", 1)], True, None)]  # the email's blind index (security.blind)
    assert specs["BirthChart"] == [([("userId", 1)], False, None), ([("birthData.date", 1)], False, None),
                                   ([("birthData.location.coordinates", "2dsphere")], False, None)]
    assert specs["PlanetaryInsight"] == [
        ([("userId", 1)], False, None), ([("date", 1)], False, None), ([("energyLevel", 1)], False, None),
        ([("userId", 1), ("date", 1)], True, None), ([("summary", "text"), ("recommendations", "text")], False, None),
        ([("expiresAt", 1)], False, 0)]
    assert specs["TimingRecommendation"] == [
        ([("userId", 1)], False, None), ([("activity", 1)], False, None), ([("windows.start", 1)], False, None),
        ([("userId", 1), ("activity", 1), ("windows.start", 1)], False, None)]


def test_the_shard_key_index_is_never_reported_extra_or_dropped(db):
    if db.test_backend == "nx":
        pytest.skip("nx-27017 drops index names and types: a hashed index reads back as a plain one")
    db.collection("BirthChart").create_index([("userId", "hashed")], name="userId_hashed")
    report = next(r for r in db.sync_indexes(drop_extra=True) if r["model"] == "BirthChart")
    assert "userId_hashed" not in report["extra"] and "userId_hashed" not in report["dropped"]
    assert "userId_hashed" in [i["name"] for i in db.collection("BirthChart").list_indexes()]


def test_without_ensure_indexes_connect_warns_of_each_missing_unique_index_and_says_how_to_create_it(request, caplog):
    """``ensure_indexes=False`` leaves the indexes to the operator; a unique index the models
    declare that the server lacks means nothing keeps that value unique (two users with one
    email), so ``connect()`` says so once, naming the index and the command that creates it.
    Once the indexes are there, it says nothing."""
    import logging
    import uuid

    from astro_db import Database

    url = f"mongomock://localhost/noidx{uuid.uuid4().hex[:6]}"
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        db = Database(url, ensure_indexes=False).connect()
    try:
        warned = [r.getMessage() for r in caplog.records if "unique index" in r.getMessage()]
        assert any("users: the unique index email_1" in m and "db.sync_indexes()" in m for m in warned), warned
        assert any("planetaryInsights: the unique index userId_1_date_1" in m for m in warned), warned
        db.sync_indexes()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="astro_db"):
            db._warn_missing_unique()
        assert not [r for r in caplog.records if "unique index" in r.getMessage()]
    finally:
        db.disconnect()
