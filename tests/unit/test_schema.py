"""The ``$jsonSchema`` validators generated from the models: what they accept (everything the Node
service and astro_db write), what they refuse, diff and install (embedded backend)."""

from __future__ import annotations

import copy
import json
import random

import pytest
from bson import Binary, ObjectId
from bson_schema import problems
from click.testing import CliRunner
from models.samples import (
    chart_input,
    insight_input,
    node_chart,
    node_insight,
    node_timing,
    node_user,
    timing_input,
    user_input,
)

from astro_db import schema
from astro_db.cli import cli
from astro_db.errors import ConfigError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User

from .security_data import KEY_A, new_db

MODELS = {"users": User, "birthCharts": BirthChart, "planetaryInsights": PlanetaryInsight,
          "timingRecommendations": TimingRecommendation}


def check(model, document) -> list[str]:
    return problems(schema.collection_schema(model), document)


@pytest.mark.parametrize("seed", range(5))
def test_node_shaped_documents_pass(seed):
    rng = random.Random(seed)
    assert check(User, node_user()) == []
    assert check(BirthChart, node_chart(rng)) == []
    assert check(PlanetaryInsight, node_insight(rng)) == []
    assert check(TimingRecommendation, node_timing(rng)) == []


@pytest.mark.parametrize("encrypted", [False, True])
def test_what_astro_db_writes_passes(encrypted):
    """Every document the service stores (created, then updated), with and without encryption
    (a sensitive value is field level encryption ciphertext, longer than the plain value's limit)."""
    db = new_db(encryption_key=KEY_A) if encrypted else new_db()
    try:
        user = db.create("User", user_input(email=f"a{ObjectId()}@example.com"), lean=True)
        db.create("BirthChart", chart_input(user_id=user["_id"], birth_data={
            **chart_input()["birth_data"], "location": {"name": "P" * 200, "coordinates": [2.35, 48.86]}}))
        db.create("PlanetaryInsight", insight_input(user_id=user["_id"], expires_at="2030-01-01T00:00:00Z"))
        db.create("TimingRecommendation", timing_input(user_id=user["_id"]))
        db.update("User", {"id": user["_id"]}, {"status": "suspended", "last_active": "2024-01-01T00:00:00Z"})
        db.update("PlanetaryInsight", {"user_id": user["_id"]}, {"$push": {"recommendations": "Rest"}})
        for collection, model in MODELS.items():
            stored = list(db.mongo[collection].find())
            assert stored, collection
            for document in stored:
                assert check(model, document) == [], (collection, document)
        if encrypted:
            chart = db.mongo["birthCharts"].find_one()
            name = chart["birthData"]["location"]["name"]
            # field level encryption (Binary subtype 6), longer than the 200 characters of the
            # plain value: the validator above accepted it, and the sealed birth date (binData, not a date)
            assert isinstance(name, Binary) and name.subtype == 6 and len(name) > 200
            assert isinstance(chart["birthData"]["date"], Binary)
            assert isinstance(db.mongo["users"].find_one()["email"], Binary)
    finally:
        db.disconnect()


def _broken(base, path, value):
    document = copy.deepcopy(base)
    *parents, last = path
    target = document
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return document


_DELETE = object()

BAD = [
    (User, node_user, ("email",), _DELETE, "email"),
    (User, node_user, ("email",), 42, "email"),
    # a personal (encrypted) text: any string or binary (its envelope), no length to check
    (User, node_user, ("name",), _DELETE, "name"),
    (User, node_user, ("name",), 42, "name"),
    (User, node_user, ("emailIndex",), "short", "emailIndex"),
    (User, node_user, ("status",), "banned", "status"),
    (User, node_user, ("lastActive",), "2024-01-01", "lastActive"),
    (User, node_user, ("__v",), -1, "__v"),
    (BirthChart, node_chart, ("userId",), str(ObjectId()), "userId"),
    (BirthChart, node_chart, ("birthData",), _DELETE, "birthData"),
    (BirthChart, node_chart, ("birthData", "timezone"), _DELETE, "birthData"),
    (BirthChart, node_chart, ("birthData", "location", "coordinates", "coordinates"), [200, 10], "coordinates.0"),
    (BirthChart, node_chart, ("birthData", "location", "coordinates", "type"), "Polygon", "type"),
    (BirthChart, node_chart, ("positions", 0, "degree"), 30, "degree"),
    (BirthChart, node_chart, ("positions", 0, "house"), 13, "house"),
    (BirthChart, node_chart, ("positions", 0, "retrograde"), "no", "retrograde"),
    (BirthChart, node_chart, ("houseSystem",), "topocentric", "houseSystem"),
    (PlanetaryInsight, node_insight, ("energyLevel",), 101, "energyLevel"),
    (PlanetaryInsight, node_insight, ("energyLevel",), "high", "energyLevel"),
    (PlanetaryInsight, node_insight, ("recommendations",), [], "recommendations"),
    (PlanetaryInsight, node_insight, ("recommendations",), ["ok"] * 21, "recommendations"),
    (PlanetaryInsight, node_insight, ("recommendations",), [42], "recommendations.0"),
    (PlanetaryInsight, node_insight, ("summary",), 42, "summary"),
    (TimingRecommendation, node_timing, ("activity",), _DELETE, "activity"),
    (TimingRecommendation, node_timing, ("windows", 0, "score"), 101, "score"),
    (TimingRecommendation, node_timing, ("windows", 0, "end"), _DELETE, "windows.0"),
    (TimingRecommendation, node_timing, ("risks", 0, "level"), "extreme", "level"),
]


@pytest.mark.parametrize("model, sample, path, value, where", BAD,
                         ids=[f"{m.__name__}.{'.'.join(map(str, p))}" for m, _, p, _, _ in BAD])
def test_bad_documents_are_refused(model, sample, path, value, where):
    found = check(model, _broken(sample(), path, value))
    assert found and any(where in line for line in found), found


def test_the_schema_says_what_the_fields_say():
    chart = schema.collection_schema(BirthChart)
    assert chart["required"] == ["birthData", "userId"]
    position = chart["properties"]["positions"]["items"]
    assert position["properties"]["degree"] == {"bsonType": "number", "minimum": 0, "maximum": 30, "exclusiveMaximum": True}
    assert position["properties"]["house"] == {"bsonType": ["number", "null"], "minimum": 1, "maximum": 12}
    assert position["properties"]["body"] == {"bsonType": "string"}  # ignore_case: Mongoose may store any spelling
    user = schema.collection_schema(User)
    assert user["properties"]["status"]["enum"] == ["active", "inactive", "suspended", "deleted", None]
    assert "additionalProperties" not in user  # open: __v, timestamps, _rev, the Node service's own keys
    insight = schema.collection_schema(PlanetaryInsight)["properties"]["recommendations"]
    assert insight["minItems"] == 1 and insight["maxItems"] == 20
    assert insight["items"] == {"bsonType": ["string", "binData"]}  # sensitive: an envelope, or CSFLE's binData
    birth = schema.collection_schema(BirthChart)["properties"]["birthData"]["properties"]
    assert birth["location"]["properties"]["name"] == {"bsonType": ["string", "binData", "null"]}
    assert birth["location"]["properties"]["nameIndex"] == {"bsonType": "string", "minLength": 43, "maxLength": 43}
    assert birth["date"] == {"bsonType": ["string", "binData", "date"]}  # a date until rotate-key seals it
    assert user["properties"]["emailIndex"] == {"bsonType": "string", "minLength": 43, "maxLength": 43}
    assert user["properties"]["email"] == {"bsonType": ["string", "binData"]}


def test_diff_reports_missing_same_and_different(monkeypatch):
    db = new_db()
    try:
        assert {r["state"] for r in schema.diff(db)} == {"missing"}  # the embedded backend keeps none
        stored = json.loads(json.dumps(schema.validator(User)))  # as the server gives it back
        changed = copy.deepcopy(stored)
        changed["$jsonSchema"]["properties"]["lastActive"]["bsonType"] = "string"
        del changed["$jsonSchema"]["properties"]["status"]
        monkeypatch.setattr(schema, "server_validators", lambda db: {
            "users": {"validator": stored, "validationAction": "warn", "validationLevel": "moderate"},
            "birthCharts": {"validator": changed},
        })
        rows = {r["collection"]: r for r in schema.diff(db)}
        assert rows["users"]["state"] == "same" and rows["users"]["action"] == "warn"
        assert rows["birthCharts"]["state"] == "different"
        assert rows["planetaryInsights"]["state"] == "missing"
        monkeypatch.setattr(schema, "server_validators", lambda db: {"users": {"validator": changed}})
        differences = {r["collection"]: r for r in schema.diff(db)}["users"]["differences"]
        assert differences == ['$jsonSchema.properties.lastActive.bsonType: models say ["date", "null"], server has "string"',
                               "$jsonSchema.properties.status: missing on the server"]
    finally:
        db.disconnect()


def test_install_refuses_the_embedded_backend_and_bad_actions():
    db = new_db()
    try:
        with pytest.raises(ConfigError, match="embedded backend has no server-side validators"):
            schema.install(db)
        with pytest.raises(ConfigError, match="validationAction must be one of warn, error"):
            schema.install(db, action="block")
    finally:
        db.disconnect()


def test_the_cli_shows_and_diffs():
    runner = CliRunner()
    result = runner.invoke(cli, ["schema", "show", "User"])
    assert result.exit_code == 0 and json.loads(result.output) == {"users": schema.validator(User)}
    result = runner.invoke(cli, ["--url", "mongomock://localhost/s", "schema", "diff"])
    assert result.exit_code == 1 and "users                    MISSING" in result.output
    result = runner.invoke(cli, ["--url", "mongomock://localhost/s", "schema", "install", "--action", "error"])
    assert result.exit_code == 2 and "no server-side validators" in result.output


def test_an_app_models_plain_mongoengine_fields():
    import mongoengine as me

    class Note(me.EmbeddedDocument):
        text = me.StringField(required=True)
        stars = me.IntField()
        when = me.DateTimeField()
        anything = me.GenericReferenceField()

    got = schema.collection_schema(Note)
    assert got["required"] == ["text"]
    assert got["properties"]["text"] == {"bsonType": "string"}
    assert got["properties"]["stars"] == {"bsonType": ["number", "null"]}
    assert got["properties"]["when"] == {"bsonType": ["date", "null"]}
    assert got["properties"]["anything"] == {}  # no rule for it: any value
