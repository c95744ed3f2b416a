"""``upsert_many(model, items, on="id")``: insert or replace by the document's own ``_id``.

The sync of an app model keyed by its own value (a slug, a number) or of documents exported
with their ids: each item names its ``id``; the ``_id`` index is the unique key (no declared
index needed). What must hold beside what ``test_upserts`` holds for declared keys:

- an ``_id`` stored already, even out of a self actor's sight, is a duplicate key for that item,
  never replaced (the insert's filter is its own op id, not the bare ``_id``);
- an ``_id`` with an earlier life continues its revisions, an erased user's id is refused, and a
  self actor may not take an id used before (the rules of ``create``: ``continue_lives``);
- an item without an ``id``, and ``id`` beside other key fields, are refused.
"""

from __future__ import annotations

import uuid
from typing import Any

import mongoengine as me
import pytest
from bson import ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spies import lose_first_reply

from astro_db import Database, errors
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField
from astro_db.ops.writes import WriteRunner

from .conftest import backend_name, insight_data


class Tag(AstroDocument):
    """An app model keyed by its own slug, owned by a user."""

    id = me.StringField(primary_key=True)
    user_id = UserRefField(db_field="userId")
    title = TextField()
    meta = {"collection": "tags", "owner": "user_id"}


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def db(request: Any) -> Any:
    url = (f"mongomock://localhost/t{uuid.uuid4().hex[:8]}" if request.param == "embedded"
           else request.getfixturevalue("live_url"))
    database = Database(url, models=[Tag], server_selection_timeout_ms=5000, allow_plaintext_sensitive=True).connect()
    database.test_backend = backend_name(request.param)
    yield database
    database.disconnect()


@pytest.fixture
def ann(db: Any) -> Any:
    return db.create("User", {"email": f"a{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})


def trail(db: Any, model: Any, doc_id: Any) -> list[tuple[str, int]]:
    return [(e["action"], e["revision"]) for e in db.audit_trail(model, doc_id)]


def test_items_keyed_by_their_own_ids_are_inserted_replaced_or_left(db: Any, ann: Any) -> None:
    first = db.upsert_many(Tag, [{"id": "moon", "userId": ann.id, "title": "Moon"},
                                 {"id": "sun", "userId": ann.id, "title": "Sun"}], on="id")
    assert (first.inserted, first.updated, first.unchanged, first.failed) == (2, 0, 0, [])
    assert first.ids == ["moon", "sun"]
    again = db.upsert_many(Tag, [{"_id": "moon", "userId": ann.id, "title": "Full moon"},
                                 {"id": "sun", "userId": ann.id, "title": "Sun"},
                                 {"id": "mars", "userId": ann.id}], on=("id",))
    assert (again.updated_ids, again.unchanged_ids, again.inserted_ids) == (["moon"], ["sun"], ["mars"])
    moon = db.find_one(Tag, {"id": "moon"})
    assert moon.title == "Full moon" and moon.revision == 1
    assert trail(db, Tag, "moon") == [("create", 0), ("update", 1)]
    assert trail(db, Tag, "sun") == [("create", 0)]
    assert db.count(Tag, {}) == 3


def test_the_service_models_take_their_object_ids_as_keys(db: Any, ann: Any) -> None:
    """Documents exported with their ids, upserted back: the ObjectId key of a stock model."""
    chosen = ObjectId()
    items = [insight_data(ann.id, 0, id=str(chosen)), insight_data(ann.id, 1, id=ObjectId())]
    result = db.upsert_many("PlanetaryInsight", items, on="_id")
    assert result.inserted == 2 and result.ids[0] == chosen
    items[0]["energyLevel"] = 9
    assert db.upsert_many("PlanetaryInsight", items, on="id").updated_ids == [chosen]
    assert db.find_one("PlanetaryInsight", {"id": chosen}).energy_level == 9
    bad = db.upsert_many("PlanetaryInsight", [insight_data(ann.id, 2, id="not-an-id"), insight_data(ann.id, 3, id=[chosen])],
                         on="id")
    assert [index for index, _ in bad.failed] == [0, 1] and bad.inserted == bad.updated == 0
    assert all(isinstance(error, errors.ValidationError) for _, error in bad.failed)
    assert db.count("PlanetaryInsight", {}) == 2


def test_another_unique_key_still_refuses_its_duplicate(db: Any, ann: Any) -> None:
    """A new user under a new id but Ann's email: the email's unique index refuses the item."""
    result = db.upsert_many("User", [{"id": ObjectId(), "email": ann.email, "name": "Twin"}], on="id")
    assert result.inserted == 0 and isinstance(result.failed[0][1], errors.DuplicateKeyError)
    assert result.failed[0][1].fields == ("email",)
    assert db.count("User", {}) == 1


def test_an_item_without_its_id_and_an_id_given_twice_are_refused(db: Any, ann: Any) -> None:
    result = db.upsert_many(Tag, [{"userId": ann.id, "title": "no id"},
                                  {"id": "twice", "title": "a"}, {"id": "twice", "title": "b"},
                                  {"id": "once", "title": "c"}], on="id")
    assert [index for index, _ in result.failed] == [0, 1, 2]
    assert all(isinstance(error, errors.ValidationError) for _, error in result.failed)
    assert set(result.failed[0][1].errors) == {"_id"}  # a slug is required by the model itself
    assert result.inserted_ids == ["once"] and db.count(Tag, {}) == 1
    made = db.upsert_many("PlanetaryInsight", [insight_data(ann.id, 0)], on="id")  # an id the service would make
    assert made.inserted == 0 and made.failed[0][1].errors == {"id": "required by upsert_many on id: the item's key"}
    assert db.count("PlanetaryInsight", {}) == 0


def test_an_id_is_a_key_alone(db: Any) -> None:
    with pytest.raises(errors.QueryError, match="the id is a key alone"):
        db.upsert_many(Tag, [{"id": "x", "title": "x"}], on=("id", "title"))


def test_an_id_with_an_earlier_life_continues_its_revisions(db: Any, ann: Any) -> None:
    db.create(Tag, {"id": "venus", "userId": ann.id, "title": "one"})
    db.update(Tag, {"id": "venus"}, {"title": "two"})
    assert db.delete(Tag, {"id": "venus"}) is True
    result = db.upsert_many(Tag, [{"id": "venus", "userId": ann.id, "title": "three"}], on="id")
    assert result.inserted_ids == ["venus"]
    assert db.find_one(Tag, {"id": "venus"}).revision == 3
    assert trail(db, Tag, "venus") == [("create", 0), ("update", 1), ("delete", 2), ("create", 3)]


@pytest.fixture(params=["records", "no-records"])
def either_db(request: Any, db: Any) -> Any:
    """``db``, and one on the same backend with the change records off (``audit=False,
    journal=False``): then nothing tells of an id's earlier life."""
    if request.param == "records":
        return db
    url = (f"mongomock://localhost/t{uuid.uuid4().hex[:8]}" if db.test_backend == "embedded"
           else request.getfixturevalue("live_url"))
    quiet = Database(url, models=[Tag], audit=False, journal=False, server_selection_timeout_ms=5000).connect()
    request.addfinalizer(quiet.disconnect)
    return quiet


def test_an_id_held_out_of_a_self_actors_sight_is_a_duplicate_key_and_left_untouched(either_db: Any) -> None:
    """Records or none, only the insert's own filter keeps Bob's document from being replaced."""
    db = either_db
    ann = db.create("User", {"email": f"a{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    bob = db.create("User", {"email": f"b{uuid.uuid4().hex[:6]}@example.com", "name": "Bob"})
    db.create(Tag, {"id": "bobs", "userId": bob.id, "title": "Bob's"})
    me = db.as_actor(str(ann.id), roles=["self"])
    result = me.upsert_many(Tag, [{"id": "bobs", "title": "mine now"}, {"id": "anns", "title": "mine"}], on="id")
    assert result.inserted_ids == ["anns"] and [index for index, _ in result.failed] == [0]
    assert isinstance(result.failed[0][1], errors.DuplicateKeyError)
    kept = db.find_one(Tag, {"id": "bobs"}, lean=True)
    assert (kept["userId"], kept["title"], kept.get("_rev", 0)) == (bob.id, "Bob's", 0)
    assert db.find_one(Tag, {"id": "anns"}).user_id == ann.id


def test_a_self_actor_takes_no_id_used_before(db: Any, ann: Any) -> None:
    db.create(Tag, {"id": "old", "userId": ann.id, "title": "x"})
    db.delete(Tag, {"id": "old"})
    me = db.as_actor(str(ann.id), roles=["self"])
    result = me.upsert_many(Tag, [{"id": "old", "title": "y"}], on="id")
    assert result.inserted == 0 and isinstance(result.failed[0][1], errors.DuplicateKeyError)
    assert db.find_one(Tag, {"id": "old"}) is None


def test_an_erased_users_id_is_not_given_to_a_new_user(db: Any, ann: Any) -> None:
    db.erase_user(ann.id)
    result = db.upsert_many("User", [{"id": ann.id, "email": "new@example.com", "name": "New"}], on="id")
    assert result.inserted == 0 and [index for index, _ in result.failed] == [0]
    assert db.find_one("User", {"id": ann.id}) is None


def test_an_id_inserted_between_the_read_and_the_write_is_replaced_not_duplicated(db: Any, ann: Any,
                                                                                   monkeypatch: Any) -> None:
    original = WriteRunner._by_keys
    fired: list[int] = []

    def by_keys(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        if not fired:
            fired.append(1)
            db.create(Tag, {"id": "race", "userId": ann.id, "title": "theirs"})
        return found

    monkeypatch.setattr(WriteRunner, "_by_keys", by_keys)
    result = db.upsert_many(Tag, [{"id": "race", "userId": ann.id, "title": "ours"}], on="id")
    assert fired and result.updated_ids == ["race"] and result.inserted == 0
    assert db.find_one(Tag, {"id": "race"}).title == "ours"
    assert trail(db, Tag, "race") == [("create", 0), ("update", 1)]


def test_a_batch_whose_reply_was_lost_is_retried_without_a_second_change(db: Any, ann: Any) -> None:
    db.upsert_many(Tag, [{"id": "a", "userId": ann.id, "title": "a"}], on="id")
    fake = lose_first_reply(db, "Tag")
    result = db.upsert_many(Tag, [{"id": "a", "userId": ann.id, "title": "A"},
                                  {"id": "b", "userId": ann.id, "title": "b"}], on="id")
    assert fake.calls == 2  # sent again: the insert met itself, the replace its own revision
    assert (result.updated_ids, result.inserted_ids, result.failed) == (["a"], ["b"], [])
    assert trail(db, Tag, "a") == [("create", 0), ("update", 1)]
    assert trail(db, Tag, "b") == [("create", 0)]


# --- a property: any sequence of upserts by id, creates and deletes --------------------------------

IDS = ["a", "b", "c"]
STEP = st.one_of(
    st.tuples(st.just("upsert"), st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(["x", "y"])),
                                          min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("create"), st.sampled_from(IDS)),
)


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_any_sequence_of_upserts_by_id_keeps_the_documents_and_their_trails_exact(db: Any, steps: list[Any]) -> None:
    """A model of what must hold, step by step: an upsert inserts an absent id (at the revision
    after its last life's), replaces a changed one (next revision), leaves an identical one (no
    record), refuses an id given twice in the batch; a delete's record takes the next revision.
    After every step the stored documents, and every id's whole trail, are the model's."""
    db.mongo["tags"].delete_many({})
    db.mongo["astroChanges"].delete_many({"model": "Tag"})
    stored: dict[str, tuple[str, int]] = {}  # id -> (title, revision)
    trails: dict[str, list[tuple[str, int]]] = {i: [] for i in IDS}

    def next_life(doc_id: str) -> int:
        return trails[doc_id][-1][1] + 1 if trails[doc_id] else 0

    for step in steps:
        if step[0] == "upsert":
            items = step[1]
            result = db.upsert_many(Tag, [{"id": i, "title": t} for i, t in items], on="id")
            counts = {i: sum(1 for j, _ in items if j == i) for i, _ in items}
            want_failed = [n for n, (i, _) in enumerate(items) if counts[i] > 1]
            assert [n for n, _ in result.failed] == want_failed
            want: dict[str, list[str]] = {"inserted": [], "updated": [], "unchanged": []}
            for doc_id, title in items:
                if counts[doc_id] > 1:
                    continue
                if doc_id not in stored:
                    stored[doc_id] = (title, next_life(doc_id))
                    trails[doc_id].append(("create", stored[doc_id][1]))
                    want["inserted"].append(doc_id)
                elif stored[doc_id][0] != title:
                    stored[doc_id] = (title, stored[doc_id][1] + 1)
                    trails[doc_id].append(("update", stored[doc_id][1]))
                    want["updated"].append(doc_id)
                else:
                    want["unchanged"].append(doc_id)
            assert (result.inserted_ids, result.updated_ids, result.unchanged_ids) == (
                want["inserted"], want["updated"], want["unchanged"])
        elif step[0] == "delete":
            doc_id = step[1]
            assert db.delete(Tag, {"id": doc_id}) is (doc_id in stored)
            if doc_id in stored:
                trails[doc_id].append(("delete", stored.pop(doc_id)[1] + 1))
        else:
            doc_id = step[1]
            if doc_id in stored:
                with pytest.raises(errors.DuplicateKeyError):
                    db.create(Tag, {"id": doc_id, "title": "x"})
            else:
                db.create(Tag, {"id": doc_id, "title": "x"})
                stored[doc_id] = ("x", next_life(doc_id))
                trails[doc_id].append(("create", stored[doc_id][1]))
        held = {d["_id"]: (d["title"], d.get("_rev", 0)) for d in db.mongo["tags"].find({})}
        assert held == stored
        for doc_id in IDS:
            assert trail(db, Tag, doc_id) == trails[doc_id], doc_id
