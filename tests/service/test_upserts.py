"""``upsert_many``: insert or replace by a declared unique key, on both backends.

The nightly insight batch (one insight per user and day, unique on ``(userId, date)``) is the
case: a re-run writes only what changed, with exactly one change record per document changed,
in one find and one bulk command per batch; invalid items are reported and the rest written;
the self scope holds; a key given twice is refused; a concurrent writer (driven by an injected
hook between the batch's read and its write) makes a compare-and-set miss that is retried.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from bson import Int64, ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import monitoring
from spies import LostReply, lose_first_reply

from astro_db import Database, errors
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField, UTCDateTimeField
from astro_db.ops import writes
from astro_db.ops.writes import WriteRunner
from astro_db.security.crypto import new_key

from .conftest import backend_name, insight_data

DAY0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
ON = ("userId", "date")


def insights(user_id: Any, days: range, **overrides: Any) -> list[dict[str, Any]]:
    return [insight_data(user_id, day, **overrides) for day in days]


def changes(db: Database, **query: Any) -> list[dict[str, Any]]:
    return list(db.mongo["astroChanges"].find({"model": "PlanetaryInsight", **query}).sort([("documentId", 1), ("rev", 1)]))


def records_of(db: Database, doc_id: Any) -> list[tuple[str, int]]:
    return [(e["action"], e["revision"]) for e in db.audit_trail("PlanetaryInsight", doc_id)]


class Commands(monitoring.CommandListener):
    """The commands a client sent, as (command name, collection)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def on(self, collection: str) -> list[str]:
        return [name for name, coll in self.sent if coll == collection]


def test_the_nightly_batch_writes_only_what_changed_with_one_record_each(db, user):
    first = db.upsert_many("PlanetaryInsight", insights(user.id, range(100)), on=ON)
    assert (first.inserted, first.updated, first.unchanged, first.failed) == (100, 0, 0, [])
    assert len(first.ids) == 100 and first.ids == first.inserted_ids
    before = {d["_id"]: d for d in db.find("PlanetaryInsight", {"userId": user.id}, lean=True)}
    records_before = {r["_id"] for r in changes(db)}

    rerun = insights(user.id, range(95)) + insights(user.id, range(100, 105))  # days 100-104 are new
    for item in rerun[:10]:
        item["energyLevel"] = 90  # 10 changed, 85 identical
    again = db.upsert_many("PlanetaryInsight", rerun, on=ON)

    assert (again.inserted, again.updated, again.unchanged, again.failed) == (5, 10, 85, [])
    assert again.ids[:95] == first.ids[:95]  # the same documents, replaced in place
    new = [r for r in changes(db) if r["_id"] not in records_before]
    assert len(new) == 15  # exactly one record per document changed
    assert sorted((r["action"], r["rev"]) for r in new) == [("create", 0)] * 5 + [("update", 1)] * 10
    assert {r["documentId"] for r in new} == set(again.inserted_ids) | set(again.updated_ids)
    for doc_id in again.updated_ids:
        assert records_of(db, doc_id) == [("create", 0), ("update", 1)]
    for doc_id in again.inserted_ids:
        assert records_of(db, doc_id) == [("create", 0)]
    stored = {d["_id"]: d for d in db.find("PlanetaryInsight", {"userId": user.id}, lean=True)}
    assert len(stored) == 105
    for doc_id in again.unchanged_ids:  # left alone: no revision, no new updatedAt
        assert stored[doc_id].get("_rev", 0) == 0 and stored[doc_id]["updatedAt"] == before[doc_id]["updatedAt"]
    for doc_id in again.updated_ids:
        doc = db.find_one("PlanetaryInsight", {"id": doc_id})
        assert doc.energy_level == 90 and doc.revision == 1 and doc.created_at == before[doc_id]["createdAt"].replace(
            tzinfo=dt.timezone.utc)


def test_a_rerun_with_nothing_changed_writes_nothing(db, user):
    db.upsert_many("PlanetaryInsight", insights(user.id, range(20)), on=ON)
    count = len(changes(db))
    result = db.upsert_many("PlanetaryInsight", insights(user.id, range(20)), on=ON)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 20)
    assert len(changes(db)) == count


def test_a_replace_replaces_the_whole_content_and_keeps_id_and_created_at(db, user):
    item = insight_data(user.id, 0, summary="first")
    [doc_id] = db.upsert_many("PlanetaryInsight", [item], on=ON).ids
    item = insight_data(user.id, 0, recommendations=["Walk", "Read"])
    del item["summary"]
    result = db.upsert_many("PlanetaryInsight", [item], on=ON)
    assert result.updated_ids == [doc_id]
    stored = db.find_one("PlanetaryInsight", {"id": doc_id}, lean=True)
    assert "summary" not in stored and stored["recommendations"] == ["Walk", "Read"]
    assert stored["_rev"] == 1 and stored["__v"] == 1  # a list changed: Mongoose's version key too


SERVICE = ("_id", "createdAt", "updatedAt", "__v", "_rev", "_op")


def as_stored(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document's content as BSON keeps it: service fields aside, a number by its BSON
    type and value (an int32, an int64 and a double are three values), a boolean as a boolean
    (never a number), a date by its milliseconds (the oracle of what "already holding exactly the
    item's content" means)."""
    def one(value: Any) -> Any:
        if isinstance(value, bool):
            return ("bool", value)
        if isinstance(value, Int64):
            return ("long", int(value))
        if isinstance(value, int):
            return ("int" if -(2**31) <= value < 2**31 else "long", value)
        if isinstance(value, float):
            return ("double", value)
        if isinstance(value, dt.datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
            return ("date", (aware - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1))
        if isinstance(value, dict):
            return ("object", sorted((k, one(v)) for k, v in value.items()))
        if isinstance(value, list):
            return ("array", [one(v) for v in value])
        return (type(value).__name__, value)
    return {k: one(v) for k, v in doc.items() if k not in SERVICE}


SUB_MS = st.sampled_from([0, 400, 500, 999, 1000, 1500, 2600])  # microseconds past a whole second


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stored_energy=st.sampled_from([True, False, 0, 1, 1.0, 2]), stored_at=st.one_of(st.none(), SUB_MS),
       energy=st.sampled_from([0, 1, 2]), at=st.one_of(st.none(), SUB_MS))
def test_unchanged_means_the_stored_document_already_holds_what_the_item_would_store(
        db, stored_energy, stored_at, energy, at):
    """Another client stored the insight (a ``true`` energy level, an expiry with sub-millisecond
    digits its driver cut); the nightly item says 1 and another expiry. ``unchanged`` only when
    the stored document already holds what writing the item stores (the oracle: the item created
    in another collection and read back), else ``updated`` to exactly that. A boolean is no
    number (``True == 1`` in Python), and a date is compared by the milliseconds BSON keeps
    (0.5 ms and 1.5 ms store as 0 and 1 ms, though less than 1 ms apart)."""
    owner = ObjectId()
    expires = dt.datetime(2036, 3, 1, tzinfo=dt.timezone.utc)  # ahead: expiresAt has a TTL index
    raw = {"_id": ObjectId(), "userId": owner, "date": DAY0, "energyLevel": stored_energy, "recommendations": ["Rest"]}
    if stored_at is not None:
        raw["expiresAt"] = expires + dt.timedelta(microseconds=stored_at)
    db.mongo["planetaryInsights"].insert_one(raw)
    item = {"userId": owner, "date": DAY0, "energyLevel": energy, "recommendations": ["Rest"]}
    if at is not None:
        item["expiresAt"] = expires + dt.timedelta(microseconds=at)
    with Database(f"mongomock://localhost/oracle{uuid.uuid4().hex[:8]}", audit=False, journal=False,
                  check_references=False, ensure_indexes=False) as scratch:
        made = scratch.create("PlanetaryInsight", item, lean=True)
        want = as_stored(scratch.mongo["planetaryInsights"].find_one({"_id": made["_id"]}))
    before = as_stored(db.mongo["planetaryInsights"].find_one({"_id": raw["_id"]}))
    result = db.upsert_many("PlanetaryInsight", [item], on=ON)
    assert not result.failed and result.ids == [raw["_id"]]
    assert (result.unchanged == 1) == (before == want), (before, want)
    assert as_stored(db.mongo["planetaryInsights"].find_one({"_id": raw["_id"]})) == want


@pytest.mark.live
def test_one_find_and_one_bulk_command_per_batch(live_url, monkeypatch):
    """Counted by a PyMongo command listener on the live server: 150 items, two batches (the
    batch size cut from 1,000 to 100: nx-27017 matches each upsert statement against the whole
    collection, and a 1,000-statement batch took 30 s of its CPU, the default budget, on a
    slower machine)."""
    monkeypatch.setattr(writes, "UPSERT_BATCH", 100)
    listener = Commands()
    db = Database(live_url, event_listeners=[listener], server_selection_timeout_ms=5000).connect()
    try:
        user = db.create("User", {"email": f"n{uuid.uuid4().hex[:6]}@example.com", "name": "Night"})
        listener.sent.clear()
        result = db.upsert_many("PlanetaryInsight", insights(user.id, range(150)), on=ON)
        assert result.inserted == 150
        # the unique index looked up once per Database, model and key (WriteRunner.require_unique)
        assert listener.on("planetaryInsights") == ["listIndexes", "find", "update", "find", "update"]
        listener.sent.clear()
        rerun = insights(user.id, range(150))
        for item in rerun[::10]:
            item["energyLevel"] = 1
        result = db.upsert_many("PlanetaryInsight", rerun, on=ON)
        assert (result.updated, result.unchanged, result.failed) == (15, 135, [])
        assert listener.on("planetaryInsights") == ["find", "update", "find", "update"]
        assert listener.on("astroChanges") == ["insert", "insert"]  # the records: one insert per batch
    finally:
        db.disconnect()


def test_invalid_items_are_reported_by_index_and_the_rest_written(db, user):
    items = [insight_data(user.id, 0), {"userId": user.id, "date": "not a date", "energyLevel": 5},
             insight_data(user.id, 2, energyLevel=500), insight_data(user.id, 3),
             insight_data(user.id, 4, id=str(user.id))]
    result = db.upsert_many("PlanetaryInsight", items, on=ON)
    assert [index for index, _ in result.failed] == [1, 2, 4]
    assert all(isinstance(error, errors.ValidationError) for _, error in result.failed)
    assert "date" in result.failed[0][1].errors and "energyLevel" in result.failed[1][1].errors
    assert "id" in result.failed[2][1].errors
    assert result.inserted == 2 and db.count("PlanetaryInsight", {"userId": user.id}) == 2


def test_a_key_given_twice_in_one_call_is_refused_for_both_items(db, user):
    items = [insight_data(user.id, 0, energyLevel=10), insight_data(user.id, 1), insight_data(user.id, 0, energyLevel=20)]
    result = db.upsert_many("PlanetaryInsight", items, on=ON)
    assert [index for index, _ in result.failed] == [0, 2]
    assert "same key as item(s) [2]" in str(result.failed[0][1])
    assert result.inserted == 1 and db.count("PlanetaryInsight", {"userId": user.id}) == 1


def test_a_key_that_is_no_declared_unique_index_is_refused(db, user):
    with pytest.raises(errors.QueryError, match="no unique index on exactly these fields"):
        db.upsert_many("PlanetaryInsight", [insight_data(user.id)], on=("userId",))
    with pytest.raises(errors.QueryError, match="no unique index"):
        db.upsert_many("PlanetaryInsight", [insight_data(user.id)], on=("userId", "date", "energyLevel"))
    with pytest.raises(errors.QueryError):
        db.upsert_many("PlanetaryInsight", [insight_data(user.id)], on=("userId", "nosuchfield"))
    with pytest.raises(errors.QueryError):
        db.upsert_many("PlanetaryInsight", [insight_data(user.id)], on=())
    # any spelling of the fields, in any order
    assert db.upsert_many("PlanetaryInsight", [insight_data(user.id)], on=("date", "user_id")).inserted == 1
    assert db.count("PlanetaryInsight", {}) == 1


def test_a_self_actor_upserts_only_her_own_documents(db, user):
    other = db.create("User", {"email": f"o{uuid.uuid4().hex[:6]}@example.com", "name": "Other"})
    others = db.upsert_many("PlanetaryInsight", [insight_data(other.id, 0)], on=ON).ids
    me = db.as_actor(str(user.id), roles=["self"])
    item = insight_data(user.id, 0)
    del item["userId"]  # forced to the actor, as create does
    result = me.upsert_many("PlanetaryInsight", [item], on=ON)
    assert result.inserted == 1
    assert db.find_one("PlanetaryInsight", {"id": result.ids[0]}).user_id == user.id
    with pytest.raises(errors.PermissionDeniedError):
        me.upsert_many("PlanetaryInsight", [insight_data(other.id, 0, energyLevel=1)], on=ON)
    assert db.find_one("PlanetaryInsight", {"id": others[0]}).energy_level == 50  # untouched
    with pytest.raises(errors.PermissionDeniedError):
        db.as_actor(str(user.id), roles=["reader"]).upsert_many("PlanetaryInsight", [insight_data(user.id, 1)], on=ON)


class Diary(AstroDocument):
    """An app model whose writers may create but not update: upsert_many needs both."""

    user_id = UserRefField(db_field="userId", required=True)
    day = UTCDateTimeField(required=True)
    text = TextField(sensitive=True)
    meta = {
        "collection": "diaryDays", "owner": "user_id",
        "indexes": [{"fields": ["user_id", "day"], "unique": True, "name": "userId_1_day_1"}],
        "permissions": {"writer": ["read", "create"], "admin": ["read", "create", "update", "delete"]},
    }


class Slot(AstroDocument):
    """An app model whose unique key leaves the owner out: one booking per day, whoever's."""

    user_id = UserRefField(db_field="userId", required=True)
    day = UTCDateTimeField(required=True)
    meta = {"collection": "daySlots", "owner": "user_id",
            "indexes": [{"fields": ["day"], "unique": True, "name": "day_1"}]}


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def diary_db(request):
    url = (f"mongomock://localhost/t{uuid.uuid4().hex[:8]}" if request.param == "embedded"
           else request.getfixturevalue("live_url"))
    database = Database(url, models=[Diary, Slot], encryption_key=new_key(), server_selection_timeout_ms=5000).connect()
    yield database
    database.disconnect()


def test_upsert_needs_create_and_update(diary_db):
    user = diary_db.create("User", {"email": f"d{uuid.uuid4().hex[:6]}@example.com", "name": "Di"})
    item = {"userId": user.id, "day": DAY0, "text": "dear diary"}
    with pytest.raises(errors.PermissionDeniedError, match="may not upsert_many"):
        diary_db.as_actor("someone", roles=["writer"]).upsert_many("Diary", [item], on=("userId", "day"))
    assert diary_db.as_actor("someone", roles=["admin"]).upsert_many("Diary", [item], on=("userId", "day")).inserted == 1


def test_sealed_fields_are_compared_as_plaintext_and_stored_sealed(diary_db):
    user = diary_db.create("User", {"email": f"d{uuid.uuid4().hex[:6]}@example.com", "name": "Di"})
    item = {"userId": user.id, "day": DAY0, "text": "dear diary"}
    [doc_id] = diary_db.upsert_many("Diary", [item], on=("userId", "day")).ids
    assert diary_db.collection("Diary").find_one({"_id": doc_id})["text"].subtype == 6
    assert diary_db.upsert_many("Diary", [item], on=("userId", "day")).unchanged == 1  # a fresh nonce is no change
    result = diary_db.upsert_many("Diary", [{**item, "text": "new page"}], on=("userId", "day"))
    assert result.updated == 1
    assert diary_db.find_one("Diary", {"id": doc_id}).text == "new page"
    assert diary_db.collection("Diary").find_one({"_id": doc_id})["text"].subtype == 6


def _between_read_and_write(monkeypatch, action) -> list[int]:
    """Run ``action()`` once, right after the first round's read of the stored documents (the
    moment a concurrent writer can slip in before the bulk write)."""
    original = WriteRunner._by_keys
    fired: list[int] = []

    def by_keys(self, *args, **kwargs):
        found = original(self, *args, **kwargs)
        if not fired:
            fired.append(1)
            action()
        return found

    monkeypatch.setattr(WriteRunner, "_by_keys", by_keys)
    return fired


def test_a_concurrent_update_makes_the_compare_and_set_miss_and_the_document_is_retried(db, user, monkeypatch):
    ids = db.upsert_many("PlanetaryInsight", insights(user.id, range(3)), on=ON).ids
    fired = _between_read_and_write(monkeypatch, lambda: db.update("PlanetaryInsight", {"id": ids[1]}, {"summary": "theirs"}))
    rerun = insights(user.id, range(3), energyLevel=77)
    result = db.upsert_many("PlanetaryInsight", rerun, on=ON)
    assert fired and (result.updated, result.inserted, result.failed) == (3, 0, [])
    doc = db.find_one("PlanetaryInsight", {"id": ids[1]})
    assert doc.energy_level == 77 and doc.summary == "calm day" and doc.revision == 2  # ours, after theirs
    assert records_of(db, ids[1]) == [("create", 0), ("update", 1), ("update", 2)]
    assert records_of(db, ids[0]) == [("create", 0), ("update", 1)]


def test_a_key_inserted_concurrently_is_replaced_not_duplicated(db, user, monkeypatch):
    theirs: list[Any] = []
    fired = _between_read_and_write(monkeypatch, lambda: theirs.append(db.create("PlanetaryInsight", insight_data(user.id, 0))))
    result = db.upsert_many("PlanetaryInsight", [insight_data(user.id, 0, energyLevel=11)], on=ON)
    assert fired and result.updated_ids == [theirs[0].id] and result.inserted == 0
    assert db.count("PlanetaryInsight", {"userId": user.id}) == 1
    assert records_of(db, theirs[0].id) == [("create", 0), ("update", 1)]


def test_a_key_held_by_a_document_out_of_a_self_actors_sight_is_a_duplicate_key(diary_db):
    """Her read cannot see another user's document; the unique index still refuses hers, and
    the item fails as a duplicate key (not retried as if it were a concurrent change)."""
    ann = diary_db.create("User", {"email": f"a{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    bob = diary_db.create("User", {"email": f"b{uuid.uuid4().hex[:6]}@example.com", "name": "Bob"})
    diary_db.create("Slot", {"userId": bob.id, "day": DAY0})
    me = diary_db.as_actor(str(ann.id), roles=["self"])
    result = me.upsert_many("Slot", [{"day": DAY0}, {"day": DAY0 + dt.timedelta(days=1)}], on="day")
    assert result.inserted == 1 and [index for index, _ in result.failed] == [0]
    assert isinstance(result.failed[0][1], errors.DuplicateKeyError) and result.failed[0][1].fields == ("day",)
    assert diary_db.find_one("Slot", {"day": DAY0}).user_id == bob.id  # untouched


def scripted_insights(db: Database) -> LostReply:
    """The insights' collection of ``db`` replaced by one whose first bulk write loses its reply."""
    return lose_first_reply(db, "PlanetaryInsight")


def test_a_batch_whose_reply_was_lost_is_retried_without_a_second_change(db, user):
    ids = db.upsert_many("PlanetaryInsight", insights(user.id, range(4)), on=ON).ids
    fake = scripted_insights(db)
    rerun = insights(user.id, range(6))
    rerun[0]["energyLevel"] = 1
    result = db.upsert_many("PlanetaryInsight", rerun, on=ON)
    assert fake.calls == 2  # the run step sent it again
    assert (result.inserted, result.updated, result.unchanged, result.failed) == (2, 1, 3, [])
    assert records_of(db, ids[0]) == [("create", 0), ("update", 1)]
    for doc_id in result.inserted_ids:
        assert records_of(db, doc_id) == [("create", 0)]
    assert db.count("PlanetaryInsight", {"userId": user.id}) == 6


def test_upserts_in_a_transaction_commit_or_abort_with_it(db, user):
    try:
        with db.transaction() as tx:
            db.upsert_many("PlanetaryInsight", insights(user.id, range(2)), on=ON, transaction=tx)
            raise RuntimeError("abort")
    except errors.TransactionNotSupportedError:
        pytest.skip("the server cannot run transactions")
    except RuntimeError:
        pass
    assert db.count("PlanetaryInsight", {"userId": user.id}) == 0
    assert changes(db) == []


def test_keys_across_users_and_days_are_each_found_exactly(db, user):
    """The batch's read groups keys by the field with fewer distinct values; a mixed batch of
    users and days still finds exactly its own documents (neighbours left untouched)."""
    users = [user] + [db.create("User", {"email": f"m{uuid.uuid4().hex[:6]}@example.com", "name": "M"}) for _ in range(2)]
    grid = [insight_data(u.id, d) for u in users for d in range(3)]
    db.upsert_many("PlanetaryInsight", grid, on=ON)
    mixed = [insight_data(users[0].id, 0, energyLevel=1), insight_data(users[1].id, 2, energyLevel=2),
             insight_data(users[2].id, 1), insight_data(users[2].id, 5)]
    result = db.upsert_many("PlanetaryInsight", mixed, on=ON)
    assert (result.updated, result.unchanged, result.inserted) == (2, 1, 1)
    energies = {(d["userId"], d["date"].day): d["energyLevel"] for d in db.find("PlanetaryInsight", {}, lean=True)}
    assert sorted(energies.values()).count(50) == len(energies) - 2 and len(energies) == 10
    assert energies[(users[0].id, 1)] == 1 and energies[(users[1].id, 3)] == 2


def test_the_read_of_a_batch_is_one_clause_for_one_day_or_one_user():
    sons = [{"userId": n, "date": "d"} for n in range(3)]
    assert writes._keys_filter(sons, ON) == {"date": "d", "userId": {"$in": [0, 1, 2]}}
    sons = [{"userId": "u", "date": n} for n in range(3)]
    assert writes._keys_filter(sons, ON) == {"userId": "u", "date": {"$in": [0, 1, 2]}}
    sons = [{"userId": "u", "date": 1}, {"userId": "v", "date": 2}]
    assert writes._keys_filter(sons, ON) == {"$or": [{"userId": "u", "date": {"$in": [1]}},
                                                     {"userId": "v", "date": {"$in": [2]}}]}


def test_an_upsert_drops_the_cached_reads_it_changed(db, user):
    db.upsert_many("PlanetaryInsight", insights(user.id, range(2)), on=ON)
    cache = db.executor.runtime.cache
    assert [d.energy_level for d in db.find("PlanetaryInsight", {"userId": user.id}, cache=True)] == [50, 50]
    hits = cache.stats()["hits"]
    assert len(db.find("PlanetaryInsight", {"userId": user.id}, cache=True)) == 2
    assert cache.stats()["hits"] == hits + 1  # served from the cache
    db.upsert_many("PlanetaryInsight", insights(user.id, range(1), energyLevel=5), on=ON)
    assert sorted(d.energy_level for d in db.find("PlanetaryInsight", {"userId": user.id}, cache=True)) == [5, 50]
    db.upsert_many("PlanetaryInsight", insights(user.id, range(2, 3)), on=ON)  # an insert too
    assert len(db.find("PlanetaryInsight", {"userId": user.id}, cache=True)) == 3


def test_a_batch_whose_reply_was_lost_and_not_retried_is_read_back_by_its_op_id(user, db):
    """No retry left (``retry_attempts=1``): the outcome is read back (``WriteRunner._write``),
    found landed, and what landed is told apart by the batch's op id."""
    one_try = Database(db.config.url, retry_attempts=1, server_selection_timeout_ms=5000).connect()
    try:
        ids = one_try.upsert_many("PlanetaryInsight", insights(user.id, range(2)), on=ON).ids
        fake = scripted_insights(one_try)
        rerun = insights(user.id, range(3))
        rerun[1]["energyLevel"] = 2
        result = one_try.upsert_many("PlanetaryInsight", rerun, on=ON)
        assert fake.calls == 1  # not sent again: read back
        assert (result.inserted, result.updated, result.unchanged, result.failed) == (1, 1, 1, [])
        assert records_of(one_try, ids[1]) == [("create", 0), ("update", 1)]
        assert records_of(one_try, result.inserted_ids[0]) == [("create", 0)]
    finally:
        one_try.disconnect()


# --- the unique index the key needs on the server --------------------------------------------------

@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def unindexed(request):
    """A Database with ``ensure_indexes=False`` on a fresh database: no index synced."""
    url = (f"mongomock://localhost/t{uuid.uuid4().hex[:8]}" if request.param == "embedded"
           else request.getfixturevalue("live_url"))
    database = Database(url, ensure_indexes=False, server_selection_timeout_ms=5000).connect()
    database.test_backend = backend_name(request.param)
    yield database
    database.disconnect()


def _day(db: Database, user_id: Any) -> list[int]:
    return sorted(d["energyLevel"] for d in db.mongo["planetaryInsights"].find({"userId": user_id}))


def test_without_its_unique_index_on_the_server_a_run_is_refused_not_duplicated(unindexed, monkeypatch):
    """Two runs at once (the second driven between the first's read and its write) both read the
    key as absent and both inserted it: only the unique index's duplicate key error makes the
    later one replace instead. Before, with ``ensure_indexes=False`` and no index synced, the
    key was stored twice."""
    db = unindexed
    user = db.create("User", {"email": f"u{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    fired = _between_read_and_write(
        monkeypatch, lambda: db.upsert_many("PlanetaryInsight", [insight_data(user.id, 0, energyLevel=2)], on=ON))
    refused = None
    try:
        db.upsert_many("PlanetaryInsight", [insight_data(user.id, 0, energyLevel=1)], on=ON)
    except errors.ConfigError as exc:
        refused = exc
    assert len(_day(db, user.id)) <= 1, _day(db, user.id)  # never the key twice
    assert refused is not None and not fired and _day(db, user.id) == []  # refused before anything is read
    assert "userId_1_date_1" in str(refused) and "sync_indexes" in str(refused) and refused.key == "ensure_indexes"
    db.sync_indexes()
    result = db.upsert_many("PlanetaryInsight", [insight_data(user.id, 0, energyLevel=1)], on=ON)
    assert fired and _day(db, user.id) == [1] and result.updated == 1  # the other run's insert, replaced


@pytest.mark.parametrize("options", [{}, {"unique": True, "partialFilterExpression": {"energyLevel": {"$gt": 0}}}],
                         ids=["not unique", "partial"])
def test_an_index_on_the_key_that_does_not_keep_it_unique_does_not_count(unindexed, options):
    db = unindexed
    if options and db.test_backend == "nx":
        pytest.skip("nx-27017 builds a partial unique index as a whole one, and lists it so: it does keep the key unique")
    db.mongo["planetaryInsights"].create_index([("userId", 1), ("date", 1)], name="userId_1_date_1", **options)
    user = db.create("User", {"email": f"u{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    with pytest.raises(errors.ConfigError, match="userId_1_date_1 the model declares.* on them, which is " +
                       ("partial" if options else "not unique")):
        db.upsert_many("PlanetaryInsight", [insight_data(user.id, 0)], on=ON)
    assert _day(db, user.id) == []


def test_a_key_held_twice_is_refused_and_the_index_looked_up_again(unindexed):
    """The index is looked up once per Database and kept; dropped afterwards, the keys it no
    longer guards may be stored twice: a batch that reads a key held by two documents refuses
    that item (it would replace one of them, at random) and forgets the lookup, so the next
    call is refused until the index is back."""
    db = unindexed
    db.sync_indexes()
    user = db.create("User", {"email": f"u{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    assert db.upsert_many("PlanetaryInsight", insights(user.id, range(2)), on=ON).inserted == 2
    coll = db.mongo["planetaryInsights"]
    coll.drop_index(next(ix["name"] for ix in coll.list_indexes() if set(ix["key"]) == {"userId", "date"}))
    twin = coll.find_one({"userId": user.id, "date": DAY0})
    coll.insert_one({**twin, "_id": ObjectId()})  # what two runs at once stored meanwhile
    result = db.upsert_many("PlanetaryInsight", insights(user.id, range(2), energyLevel=9), on=ON)
    assert [index for index, _ in result.failed] == [0] and isinstance(result.failed[0][1], errors.ConfigError)
    assert "several documents" in str(result.failed[0][1]) and result.updated == 1
    assert _day(db, user.id) == [9, 50, 50]  # neither twin replaced; the other day was
    with pytest.raises(errors.ConfigError, match="userId_1_date_1"):
        db.upsert_many("PlanetaryInsight", insights(user.id, range(3, 4)), on=ON)

