"""hydrate builds exactly what MongoEngine's _from_son builds, from Node-shaped documents."""

from __future__ import annotations

import copy
import json
import random
import weakref

import pytest
from bson import ObjectId
from mongoengine.base import BaseDocument

from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.codec import hydrate

from .samples import node_chart, node_insight, node_timing, node_user

NODE_DOCS = [
    ("user", User, node_user),
    ("chart", BirthChart, node_chart),
    ("insight", PlanetaryInsight, node_insight),
    ("timing", TimingRecommendation, node_timing),
]
IDS = [case[0] for case in NODE_DOCS]


def _pair(model, make):
    son = make()
    return model._from_son(copy.deepcopy(son)), hydrate(model, copy.deepcopy(son)), son


def _assert_same_instance(a, b):
    assert type(a) is type(b)
    assert a._data == b._data
    assert set(a._data) == set(b._data)
    assert (a._initialised, a._created, a._changed_fields) == (b._initialised, b._created, b._changed_fields)
    assert a._dynamic_fields == b._dynamic_fields
    assert a.__dict__.keys() == b.__dict__.keys()
    for name, value in a._data.items():
        other = b._data[name]
        if isinstance(value, BaseDocument):
            _assert_same_instance(value, other)
            assert type(value._instance) is type(other._instance)
        elif isinstance(value, list):
            for x, y in zip(value, other):
                if isinstance(x, BaseDocument):
                    _assert_same_instance(x, y)
                    assert isinstance(y._instance, weakref.ProxyType)
                    assert y._instance == b
                else:
                    assert x == y


@pytest.mark.parametrize("case,model,make", NODE_DOCS, ids=IDS)
def test_hydrate_matches_from_son(case, model, make):
    a, b, _ = _pair(model, make)
    _assert_same_instance(a, b)
    assert a.to_mongo() == b.to_mongo()
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("case,model,make", NODE_DOCS, ids=IDS)
def test_node_document_hydrates_validates_and_keeps_version_and_sub_ids(case, model, make):
    son = make()
    doc = hydrate(model, copy.deepcopy(son))
    doc.validate()
    stored = doc.to_mongo()
    assert stored["__v"] == son["__v"]
    for key in ("positions", "windows", "risks"):
        if key in son:
            assert [item["_id"] for item in stored[key]] == [item["_id"] for item in son[key]]


@pytest.mark.parametrize("case,model,make", NODE_DOCS, ids=IDS)
def test_node_document_to_dict_is_json_ready(case, model, make):
    son = make()
    out = hydrate(model, son).to_dict()
    json.dumps(out)
    assert out["id"] == str(son["_id"])
    assert "__v" not in out and "_id" not in out
    assert out["createdAt"].endswith("Z")


def test_hydrated_node_dates_are_aware_utc():
    chart = hydrate(BirthChart, node_chart())
    assert chart.birth_data.date.tzinfo is not None
    assert chart.birth_data.date.utcoffset().total_seconds() == 0


def test_unknown_stored_key_is_kept_in_data_like_from_son():
    son = node_chart()
    assert hydrate(BirthChart, son)._data["legacyFlag"] is True
    assert "legacyFlag" not in hydrate(BirthChart, son).to_mongo()


def test_missing_defaults_are_filled_like_from_son():
    son = {"_id": ObjectId(), "email": "a@b.co", "name": "A"}
    a, b = User._from_son(dict(son)), hydrate(User, dict(son))
    assert a._data == b._data
    assert b.status == "active" and b.version == 0


def test_changes_are_tracked_after_hydrate_like_from_son():
    a, b, _ = _pair(BirthChart, node_chart)
    for doc in (a, b):
        doc.house_system = "equal"
        doc.positions[0].degree = 1.5
        doc.birth_data.timezone = "Asia/Tokyo"
    assert sorted(a._get_changed_fields()) == sorted(b._get_changed_fields())
    assert a._delta() == b._delta()


def test_list_append_is_tracked_after_hydrate():
    a, b, _ = _pair(PlanetaryInsight, node_insight)
    for doc in (a, b):
        doc.recommendations.append("New")
    assert a._get_changed_fields() == b._get_changed_fields() == ["recommendations"]


def test_hydrate_many_random_documents_matches_from_son():
    rng = random.Random(7)
    for _ in range(50):
        son = node_chart(rng)
        a, b = BirthChart._from_son(copy.deepcopy(son)), hydrate(BirthChart, copy.deepcopy(son))
        assert a.to_mongo() == b.to_mongo()


def test_hydrate_falls_back_to_from_son_for_corrupt_embedded_values():
    son = node_chart()
    son["birthData"] = "corrupt"
    with pytest.raises(Exception) as from_son:
        BirthChart._from_son(copy.deepcopy(son))
    with pytest.raises(type(from_son.value)):
        hydrate(BirthChart, copy.deepcopy(son))


def test_hydrated_instance_is_not_new():
    doc = hydrate(User, node_user())
    assert doc._created is False and doc._initialised is True
    assert doc.pk is not None


def test_hydrate_many_equals_hydrate_and_restores_the_collector():
    import gc

    from astro_db.models.codec import hydrate, hydrate_many

    sons = [node_insight(random.Random(i)) for i in range(300)]
    assert gc.isenabled()
    many = hydrate_many(PlanetaryInsight, sons)
    assert gc.isenabled()
    assert [m.to_mongo().to_dict() for m in many] == [hydrate(PlanetaryInsight, s).to_mongo().to_dict() for s in sons]
    gc.disable()
    try:
        hydrate_many(PlanetaryInsight, sons)
        assert not gc.isenabled()  # a collector the app switched off stays off
    finally:
        gc.enable()


@pytest.mark.parametrize("signal", ["pre_init", "post_init"])
def test_a_receiver_of_a_construction_signal_connected_at_any_time_hears_every_hydration(signal):
    """The signals' receivers are read in place (blinker's own dicts): one connected after
    import, after hydrations ran without it, still hears every hydration path (MongoEngine's
    ``_from_son`` fires it), and once disconnected the short way is back."""
    pytest.importorskip("blinker", reason="MongoEngine's signals need blinker (in the dev extra, not the slim test one)")
    from mongoengine import signals

    from astro_db.models.codec import hydrate_encoded, hydrate_many

    heard = []

    def receiver(sender, **kwargs):
        heard.append(sender)

    son = node_user()
    hydrate(User, copy.deepcopy(son))
    assert heard == []
    getattr(signals, signal).connect(receiver)
    try:
        hydrate(User, copy.deepcopy(son))
        hydrate_many(User, [copy.deepcopy(son)])
        hydrate_encoded(User, copy.deepcopy(son))
    finally:
        getattr(signals, signal).disconnect(receiver)
    assert heard == [User, User, User]
    hydrate(User, copy.deepcopy(son))
    assert len(heard) == 3


def test_id_fields_take_an_objectid_as_read_and_convert_anything_else_as_from_son(monkeypatch):
    """An exact ObjectId in an id field (``_id``, a user reference) is what its ``to_python``
    gives back, so it is taken as read, no converter called; any other value still goes through
    the field's ``to_python``, as ``_from_son`` does."""
    from astro_db.models.fields import UserRefField

    calls = []
    real = UserRefField.to_python
    monkeypatch.setattr(UserRefField, "to_python", lambda self, value: calls.append(value) or real(self, value))
    from astro_db.models import hydrate as hydration

    hydration._READ_PLANS.pop(PlanetaryInsight, None)  # planned again with the spy in place
    try:
        son = node_insight()
        assert type(son["userId"]) is ObjectId
        built = hydrate(PlanetaryInsight, copy.deepcopy(son))
        assert calls == [] and built.user_id == son["userId"]
        text_ids = {**copy.deepcopy(son), "_id": str(son["_id"]), "userId": str(son["userId"])}
        built, expected = hydrate(PlanetaryInsight, copy.deepcopy(text_ids)), PlanetaryInsight._from_son(copy.deepcopy(text_ids))
        assert calls[:1] == [str(son["userId"])] and built.user_id == expected.user_id == son["userId"]
        assert built.id == expected.id == son["_id"] and type(built.id) is type(expected.id)
    finally:
        hydration._READ_PLANS.pop(PlanetaryInsight, None)
