"""Index meta is exactly DESIGN §3, named, and creatable with pymongo-style create_index."""

from __future__ import annotations

import mongomock_ng as mongomock  # the package mongomock-ng imports as mongomock_ng
import pytest

from astro_db.models import MODELS, BirthChart, PlanetaryInsight, TimingRecommendation, User

EXPECTED = {
    User: [
        {"fields": [("email", 1)], "unique": True, "name": "email_1"},
        {"fields": [("status", 1)], "name": "status_1"},
        {"fields": [("lastActive", 1)], "name": "lastActive_1"},
        {"fields": [("status", 1), ("lastActive", -1)], "name": "status_1_lastActive_-1"},
    ],
    BirthChart: [
        {"fields": [("userId", 1)], "name": "userId_1"},
        {"fields": [("birthData.date", 1)], "name": "birthData.date_1"},
        {"fields": [("birthData.location.coordinates", "2dsphere")],
         "name": "birthData.location.coordinates_2dsphere"},
    ],
    PlanetaryInsight: [
        {"fields": [("userId", 1)], "name": "userId_1"},
        {"fields": [("date", 1)], "name": "date_1"},
        {"fields": [("energyLevel", 1)], "name": "energyLevel_1"},
        {"fields": [("userId", 1), ("date", 1)], "unique": True, "name": "userId_1_date_1"},
        {"fields": [("summary", "text"), ("recommendations", "text")], "name": "summary_text_recommendations_text"},
        {"fields": [("expiresAt", 1)], "expireAfterSeconds": 0, "name": "expiresAt_1"},
    ],
    TimingRecommendation: [
        {"fields": [("userId", 1)], "name": "userId_1"},
        {"fields": [("activity", 1)], "name": "activity_1"},
        {"fields": [("windows.start", 1)], "name": "windows.start_1"},
        {"fields": [("userId", 1), ("activity", 1), ("windows.start", 1)],
         "name": "userId_1_activity_1_windows.start_1"},
    ],
}
COLLECTIONS = {User: "users", BirthChart: "birthCharts", PlanetaryInsight: "planetaryInsights",
               TimingRecommendation: "timingRecommendations"}
MODEL_LIST = list(EXPECTED)


@pytest.mark.parametrize("model", MODEL_LIST, ids=lambda m: m.__name__)
def test_index_specs_are_exactly_the_design(model):
    assert model._meta["index_specs"] == EXPECTED[model]


@pytest.mark.parametrize("model", MODEL_LIST, ids=lambda m: m.__name__)
def test_list_indexes_has_the_design_keys_plus_id(model):
    assert model.list_indexes() == [spec["fields"] for spec in EXPECTED[model]] + [[("_id", 1)]]


@pytest.mark.parametrize("model", MODEL_LIST, ids=lambda m: m.__name__)
def test_collection_names_and_meta(model):
    assert model._get_collection_name() == COLLECTIONS[model]
    assert model._meta["auto_create_index"] is False
    assert model._meta["strict"] is False


def test_models_registry_lists_the_four_models():
    assert MODELS == {m.__name__: m for m in MODEL_LIST}


@pytest.mark.parametrize("model", MODEL_LIST, ids=lambda m: m.__name__)
def test_index_specs_can_be_created_on_mongomock(model):
    collection = mongomock.MongoClient().db[model._get_collection_name()]
    for spec in model._meta["index_specs"]:
        options = {k: v for k, v in spec.items() if k != "fields"}
        collection.create_index(spec["fields"], **options)
    info = collection.index_information()
    for spec in EXPECTED[model]:
        assert spec["name"] in info
        assert info[spec["name"]].get("unique", False) == spec.get("unique", False)
    if model is PlanetaryInsight:
        assert info["expiresAt_1"]["expireAfterSeconds"] == 0


def test_unique_email_index_refuses_a_duplicate_on_mongomock():
    from pymongo.errors import DuplicateKeyError

    collection = mongomock.MongoClient().db.users
    for spec in User._meta["index_specs"]:
        collection.create_index(spec["fields"], **{k: v for k, v in spec.items() if k != "fields"})
    collection.insert_one({"email": "a@b.co", "name": "A"})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"email": "a@b.co", "name": "B"})
