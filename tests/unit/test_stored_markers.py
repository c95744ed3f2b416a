"""Stored data shaped like MongoEngine's own markers is data: a ``_cls`` key the Node service (or
any other writer) stored, at the top of a document, in an embedded document, in a list item or
in a free-form value, never picks the class an instance is built as, and never fails a read.

Before: ``hydrate`` handed every document holding ``_cls`` to MongoEngine's ``_from_son``, which
builds the class the key names, so a birth chart stored with ``_cls: "User"`` was read as a
``User`` (its chart fields gone), a user stored with ``_cls: "BirthChart"`` as a ``BirthChart``,
and a ``_cls`` naming no class (or not a string) failed the read with MongoEngine's
``NotRegistered`` (or ``AttributeError``); reading a list or dict field of an instance ran
MongoEngine's dereferencing, which turned a stored ``{"_cls": "User", ...}`` item into a ``User``
and raised on one naming nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId
from mongoengine import signals
from mongoengine.fields import DictField, ListField

from astro_db import Database
from astro_db.models import AstroDocument, BirthChart, User
from astro_db.models.fields import UserRefField

UTC = dt.timezone.utc
MARKERS = ["User", "BirthChart", "Nope", 5, None, ["User"], {"_cls": "User"}]


class MarkedNote(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    extra = DictField()
    items = ListField()
    dicts = ListField(DictField())

    meta = {"collection": "markedNotes", "owner": "user_id"}


def _chart(uid, marker):
    return {"_id": ObjectId(), "userId": uid, "_cls": marker, "__t": "Chart",
            "birthData": {"_cls": marker, "date": dt.datetime(1990, 5, 1, tzinfo=UTC), "timezone": "Europe/London",
                          "location": {"_cls": marker, "name": "London"}},
            "positions": [{"_cls": marker, "body": "Sun", "sign": "Leo", "degree": 1, "_id": ObjectId()}],
            "__v": 0}


@pytest.fixture(params=[False, True], ids=["builder", "signals connected"])
def db(request):
    receiver = (lambda sender, **kwargs: None)
    if request.param:  # with a pre_init receiver every read goes through MongoEngine's _from_son
        pytest.importorskip("blinker", reason="MongoEngine's signals need blinker (in the dev extra, not the slim test one)")
        signals.pre_init.connect(receiver)
    try:
        with Database("mongomock://localhost/stored_markers", models=[MarkedNote]) as database:
            yield database
    finally:
        if request.param:
            signals.pre_init.disconnect(receiver)


@pytest.mark.parametrize("marker", MARKERS, ids=repr)
def test_a_stored_cls_never_picks_the_class_a_document_is_read_as(db, marker):
    uid = ObjectId()
    db.mongo["users"].insert_one({"_id": uid, "email": "node@example.com", "name": "Node", "_cls": marker})
    stored = _chart(uid, marker)
    db.mongo["birthCharts"].insert_one(stored)
    user = db.find_one(User, {"id": uid})
    assert type(user) is User and user.email == "node@example.com" and user.name == "Node"
    for chart in (db.find_one(BirthChart, {"id": stored["_id"]}), *db.find(BirthChart, {"userId": uid}),
                  *db.iter_find(BirthChart, {"userId": uid}), *db.page(BirthChart, {"userId": uid}, limit=5)):
        assert type(chart) is BirthChart and chart.user_id == uid
        assert type(chart.birth_data).__name__ == "BirthData" and chart.birth_data.timezone == "Europe/London"
        assert type(chart.birth_data.location).__name__ == "Location" and chart.birth_data.location.name == "London"
        assert type(chart.positions[0]).__name__ == "Position" and chart.positions[0].body == "Sun"
        assert chart.to_dict()["birthData"]["location"]["name"] == "London"
    updated = db.update(BirthChart, {"id": stored["_id"]}, {"$push": {"positions": {"body": "Moon", "sign": "Leo",
                                                                                     "degree": 2}}})
    assert type(updated) is BirthChart and [p.body for p in updated.positions] == ["Sun", "Moon"]
    raw = db.mongo["birthCharts"].find_one({"_id": stored["_id"]})
    assert raw["_cls"] == marker and raw["birthData"]["_cls"] == marker and raw["positions"][0]["_cls"] == marker


@pytest.mark.parametrize("marker", MARKERS, ids=repr)
def test_a_cls_inside_a_free_form_value_stays_data(db, marker):
    owner = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    value = {"_cls": marker, "email": "x@example.com"}
    note = db.create(MarkedNote, {"userId": owner.id, "extra": {"k": value, "_cls": marker}, "items": [value, [value]],
                                  "dicts": [value]})
    for read in (db.find_one(MarkedNote, {"id": note.id}), note):
        assert read.extra == {"k": value, "_cls": marker}
        assert read.items == [value, [value]] and read.dicts == [value]
        assert all(type(item) is not User for item in (*read.items, *read.dicts))
