"""An app's model may declare its own primary key (``id = StringField(primary_key=True)``, an
``IntField``, ...): its ids are taken as that field's values on every path, and documents are
told apart by the server's equality of ``_id`` values, never Python's.

Before: a model with a string or integer primary key could be created but not read, updated,
deleted or traced (every ``_id`` in a filter was made an ObjectId: "not a valid ObjectId"); a
by-id read of such a model that first saw an ObjectId taught the compiled by-id form to make
every later string an ObjectId; ``audit_trail`` took ObjectIds only. The service's own sets and
maps of ids were keyed by Python's equality: ``True`` and ``1`` (two ``_id`` values to the
server) were one, so a create of ``_id: True`` continued the trail of a deleted ``_id: 1``, and
an embedded-document ``_id`` (a compound key) failed with "unhashable type: 'dict'".
"""

from __future__ import annotations

import uuid
from typing import Any

import mongoengine as me
import pytest
from bson import ObjectId
from pymongo import errors as pm

from astro_db import Database, errors
from astro_db.driver import gateway
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField


class Slug(AstroDocument):
    id = me.StringField(primary_key=True)
    user_id = UserRefField(db_field="userId")
    title = TextField()
    meta = {"collection": "slugs", "owner": "user_id"}


class Numbered(AstroDocument):
    id = me.IntField(primary_key=True)
    title = TextField()
    meta = {"collection": "numbered"}


class Keyed(AstroDocument):
    """Any BSON value as its ``_id``: a bool, a number, an embedded document."""

    id = me.DynamicField(primary_key=True)
    title = TextField()
    meta = {"collection": "keyed"}




@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def db(request: Any) -> Any:
    if request.param == "embedded":
        url = f"mongomock://localhost/t{uuid.uuid4().hex[:8]}"
    else:
        url = request.getfixturevalue("live_url")
    database = Database(url, models=MODELS, server_selection_timeout_ms=5000).connect()
    database.test_backend = "embedded" if request.param == "embedded" else "server"
    yield database
    database.disconnect()


def revisions(db: Any, model: Any, doc_id: Any) -> list[tuple[str, int]]:
    return [(e["action"], e["revision"]) for e in db.audit_trail(model, doc_id)]


@pytest.mark.parametrize(("model", "first", "second"), [(Slug, "alpha", "beta"), (Numbered, 7, 8)])
def test_a_declared_primary_key_reads_updates_deletes_and_traces_by_its_own_values(db: Any, model: Any, first: Any,
                                                                                   second: Any) -> None:
    db.create(model, {"_id": first, "title": "one"})
    db.create(model, {"id": second, "title": "two"})
    assert db.find_one(model, {"_id": first}).title == "one"
    assert db.find_one(model, {"id": second}).title == "two"
    assert [d.id for d in db.find(model, {"_id": {"$in": [first, second]}}, sort="_id")] == [first, second]
    assert db.update(model, {"_id": first}, {"title": "changed"}).title == "changed"
    assert db.delete(model, {"id": first}) is True
    assert db.find_one(model, {"_id": first}) is None
    db.create(model, {"_id": first, "title": "again"})  # a second life continues the first's revisions
    assert revisions(db, model, first) == [("create", 0), ("update", 1), ("delete", 2), ("create", 3)]
    assert [d.id for d in db.page(model, {}, sort="_id", limit=1).items] == [first]


def test_a_by_id_read_that_first_sees_an_object_id_does_not_make_later_slugs_object_ids(db: Any) -> None:
    db.create(Slug, {"_id": "alpha", "title": "one"})
    assert db.find_one(Slug, {"_id": ObjectId()}) is None  # the by-id form is judged on this first call
    assert db.find_one(Slug, {"_id": "alpha"}).title == "one"
    assert db.find_one(Slug, {"id": "alpha"}).title == "one"


def test_a_packed_create_many_of_slugs_is_traced_and_exported_per_document(db: Any) -> None:
    ann = db.create("User", {"email": f"ann-{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    made = db.create_many(Slug, [{"_id": f"s{n:02}", "userId": ann.id, "title": f"t{n}"} for n in range(40)])
    assert made.ids == [f"s{n:02}" for n in range(40)]
    assert revisions(db, Slug, "s07") == [("create", 0)]
    exported = db.export_user(ann.id)["models"]["Slug"]
    assert sorted(d["_id"] for d in exported["documents"]) == made.ids


@pytest.mark.parametrize("bad", [{"$ne": None}, ["alpha"], None, 5, {"_id": "alpha"}])
def test_audit_trail_takes_one_value_of_the_models_id_type(db: Any, bad: Any) -> None:
    db.create(Slug, {"_id": "alpha", "title": "one"})
    with pytest.raises(errors.ValidationError, match="id"):
        db.audit_trail(Slug, bad)
    with pytest.raises(errors.ValidationError, match="ObjectId"):
        db.audit_trail("User", "alpha")  # the default _id: an ObjectId, as before


@pytest.mark.parametrize("bad", [{"$ne": None}, {"user": {"$gt": 0}}, {"a.b": 1}, [1, 2], None])
def test_a_compound_id_in_audit_trail_is_a_value_never_a_condition(db: Any, bad: Any) -> None:
    """A model whose ``_id`` may be an embedded document (a compound key) takes one in
    ``audit_trail`` as stored data: an operator anywhere in it is refused, never sent as a
    condition on ``documentId`` that would match every trail."""
    with pytest.raises(errors.ValidationError, match="id"):
        db.audit_trail(Keyed, bad)
    assert db.audit_trail(Keyed, {"user": 1, "day": 2}) == []  # a compound value: taken, no trail yet


# nx-27017 answers {_id: true} with the document whose _id is 1, and {_id: 1.0} with none
@pytest.mark.mongodb
def test_true_and_one_are_two_ids_a_create_of_true_does_not_continue_ones_trail(db: Any) -> None:
    if db.test_backend == "embedded":
        pytest.skip("mongomock-ng holds True and 1 as one _id (its store is a Python dict); the server does not")
    db.create(Keyed, {"_id": 1, "title": "one"})
    db.update(Keyed, {"_id": 1}, {"title": "one again"})
    db.delete(Keyed, {"_id": 1})
    db.create(Keyed, {"_id": True, "title": "true"})
    assert revisions(db, Keyed, True) == [("create", 0)]  # a first life: not revision 3 after _id 1's
    assert revisions(db, Keyed, 1.0) == [("create", 0), ("update", 1), ("delete", 2)]  # 1.0 is 1 to the server


@pytest.mark.mongodb  # nx-27017 tells True from 1 on insert but not in a filter (above)
def test_a_create_many_of_true_and_one_whose_reply_was_lost_reports_both_created(db: Any,
                                                                                 monkeypatch: Any) -> None:
    """The write landed and its reply was lost: the retry reads back which documents are its own
    (``WriteRunner._stored_equals``), by the server's equality, not Python's."""
    if db.test_backend == "embedded":
        pytest.skip("mongomock-ng holds True and 1 as one _id (its store is a Python dict); the server does not")
    lost: list[str] = []
    for cls, name in ((gateway.Collection, "insert_many"), (gateway.Gateway, "bulk_write_command")):
        real = getattr(cls, name)

        def once(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            result = _real(*args, **kwargs)
            if not lost:
                lost.append(_name)
                raise pm.AutoReconnect("connection closed after the write was applied (injected)")
            return result
        monkeypatch.setattr(cls, name, once)
    made = db.create_many(Keyed, [{"_id": True, "title": "true"}, {"_id": 1, "title": "one"}])
    assert lost, "no write reply was lost: the test drove nothing"
    assert made.ids == [True, 1] and not made.failed
    assert sorted(d.title for d in db.find(Keyed, {})) == ["one", "true"]


@pytest.mark.mongodb  # neither test backend takes an embedded-document _id in a filter
def test_an_embedded_document_id_is_one_id_on_every_write_path(db: Any) -> None:
    db.create_many(Keyed, [{"_id": {"user": 1, "day": 1}, "title": "a"}, {"_id": {"user": 1, "day": 2}, "title": "b"}])
    assert db.update(Keyed, {"_id": {"user": 1, "day": 1.0}}, {"title": "changed"}).title == "changed"
    db.delete(Keyed, {"_id": {"user": 1, "day": 2}})
    db.create(Keyed, {"_id": {"user": 1, "day": 2.0}, "title": "b again"})
    assert revisions(db, Keyed, {"user": 1, "day": 2}) == [("create", 0), ("delete", 1), ("create", 2)]
    assert db.reconcile_changes()["rebuilt"]["Keyed"] == 0


class Rate(AstroDocument):
    """A unique key of any number type: 1 and 1.0 are one key to the server's unique index."""

    code = me.DynamicField(required=True)
    label = TextField()
    meta = {"collection": "rates", "indexes": [{"fields": ["code"], "unique": True, "name": "code_1"}]}


MODELS = [Slug, Numbered, Keyed, Rate]


def test_upsert_many_takes_one_and_one_point_zero_for_one_key(db: Any) -> None:
    """Two items whose keys the unique index holds equal are refused together (neither wins), and
    an item whose key equals a stored one in another number type replaces it, not inserts beside it."""
    result = db.upsert_many(Rate, [{"code": 1, "label": "int"}, {"code": 1.0, "label": "double"},
                                   {"code": 2, "label": "two"}], on="code")
    assert sorted(index for index, _ in result.failed) == [0, 1] and db.count(Rate, {}) == 1
    again = db.upsert_many(Rate, [{"code": 2.0, "label": "two again"}], on="code")
    assert not again.failed and db.count(Rate, {}) == 1
    assert db.find_one(Rate, {"code": 2}).label == "two again"


def test_a_compound_id_lives_twice_and_is_reconciled(db: Any) -> None:
    """A compound ``_id`` (an embedded document) through the writes the embedded backend can run
    with one: a batch, a single create, a delete, a second life whose trail continues the first's,
    a reconcile that finds every revision recorded. Before: "unhashable type: 'dict'" on every create."""
    if db.test_backend != "embedded":
        pytest.skip("nx-27017 takes no embedded-document _id in a filter (test_an_embedded_document_id_... on MongoDB)")
    made = db.create_many(Keyed, [{"_id": {"user": 1, "day": 1}, "title": "a"}, {"_id": {"user": 1, "day": 2}, "title": "b"}])
    assert made.ids == [{"user": 1, "day": 1}, {"user": 1, "day": 2}] and not made.failed
    assert db.delete(Keyed, {"_id": {"user": 1, "day": 2}}) is True
    db.create(Keyed, {"_id": {"user": 1, "day": 2}, "title": "b again"})
    assert revisions(db, Keyed, {"user": 1, "day": 2}) == [("create", 0), ("delete", 1), ("create", 2)]
    assert {e["documentId"] for e in db.audit_trail(Keyed, {"user": 1, "day": 2})} == {'{"user": 1, "day": 2}'}  # JSON
    assert db.reconcile_changes()["rebuilt"]["Keyed"] == 0


def test_a_create_many_of_compound_ids_whose_reply_was_lost_reports_them_created(db: Any, monkeypatch: Any) -> None:
    """The retry reads back which documents are its own (``_stored_equals``) keyed by the server's
    equality: an embedded-document ``_id`` included (before: ``TypeError``, the write reported failed)."""
    if db.test_backend != "embedded":
        pytest.skip("nx-27017 takes no embedded-document _id in a filter")
    lost: list[str] = []
    real = gateway.Collection.insert_many

    def once(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not lost:
            lost.append("insert_many")
            raise pm.AutoReconnect("connection closed after the write was applied (injected)")
        return result
    monkeypatch.setattr(gateway.Collection, "insert_many", once)
    items = [{"_id": {"user": 2, "day": day}, "title": f"d{day}"} for day in range(40)]  # a packed batch
    made = db.create_many(Keyed, items)
    assert lost and not made.failed and made.ids == [item["_id"] for item in items]
    assert db.count(Keyed, {}) == 40
