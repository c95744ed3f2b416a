"""Sharding: the models' shard keys, ``astro-db shard plan``, unique-index checks, scatter-gather advice."""

from __future__ import annotations

import inspect
import json

import pytest
from click.testing import CliRunner

from astro_db import Database
from astro_db.cli import cli
from astro_db.errors import ConfigError, QueryError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.registry import default_registry
from astro_db.sharding import is_targeted, parse_key, render_plan, shard_key, shard_plan

EXPECTED_PLAN = """// astro-db shard plan for database "astro": run in mongosh connected to a mongos.
// Hashed keys spread each user's documents evenly and route every query that names the user
// to one shard. On a non-empty collection the shard-key index must exist first.
sh.enableSharding("astro")

// users (User): not sharded; it stays on the database's primary shard.
// It is small (1.8 GB of documents, 1.5 GB of indexes at 10 million users: docs/scaling.md),
// its unique email index stays enforced, and lookups by id and by email go to one shard.

// birthCharts (BirthChart): shard key { userId: "hashed" }
db.getSiblingDB("astro").birthCharts.createIndex({ userId: "hashed" }, { name: "userId_hashed" })
sh.shardCollection("astro.birthCharts", { userId: "hashed" })

// planetaryInsights (PlanetaryInsight): shard key { userId: "hashed" }
// unique index userId_1_date_1 stays enforced: the shard key's fields are its prefix.
db.getSiblingDB("astro").planetaryInsights.createIndex({ userId: "hashed" }, { name: "userId_hashed" })
sh.shardCollection("astro.planetaryInsights", { userId: "hashed" })

// timingRecommendations (TimingRecommendation): shard key { userId: "hashed" }
db.getSiblingDB("astro").timingRecommendations.createIndex({ userId: "hashed" }, { name: "userId_hashed" })
sh.shardCollection("astro.timingRecommendations", { userId: "hashed" })"""


def run(*args: str):
    return CliRunner().invoke(cli, ["--url", "mongomock://localhost/astro", *args])


# --- declared keys --------------------------------------------------------------------------

def test_per_user_models_shard_on_hashed_user_id_and_users_stays_unsharded():
    registry = default_registry()
    keys = {info.name: shard_key(info) for info in registry}
    assert keys == {"User": None, "BirthChart": {"userId": "hashed"}, "PlanetaryInsight": {"userId": "hashed"},
                    "TimingRecommendation": {"userId": "hashed"}}


def test_the_shard_meta_leaves_mongoengine_behaviour_alone():
    # MongoEngine's own meta['shard_key'] makes the field immutable on loaded documents; ours must not.
    for cls in (User, BirthChart, PlanetaryInsight, TimingRecommendation):
        assert not cls._meta.get("shard_key")
    with Database("mongomock://localhost/shardmeta", ensure_indexes=False) as db:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        other = db.create("User", {"email": "bob@example.com", "name": "Bob"})
        insight = db.create("PlanetaryInsight", {"userId": user.id, "date": "2024-03-01T00:00:00Z", "energyLevel": 50,
                                                  "recommendations": ["Rest"]})
        loaded = db.find_one("PlanetaryInsight", {"id": insight.id})
        loaded.user_id = other.id  # no "Shard Keys are immutable" error
        loaded.validate()
        moved = db.update("PlanetaryInsight", {"id": insight.id}, {"userId": other.id})
    assert moved.user_id == other.id


# --- the plan -------------------------------------------------------------------------------

def test_shard_plan_prints_the_exact_commands_for_the_four_models():
    result = run("shard", "plan")
    assert result.exit_code == 0, result.output
    assert result.output.rstrip("\n") == EXPECTED_PLAN


def test_shard_plan_takes_the_database_name_from_the_option():
    result = run("shard", "plan", "--database", "prod")
    assert 'sh.enableSharding("prod")' in result.output
    assert 'sh.shardCollection("prod.planetaryInsights", { userId: "hashed" })' in result.output


def test_shard_plan_json_lists_keys_indexes_and_unique_checks():
    data = json.loads(run("--json", "shard", "plan").output)
    by_model = {c["model"]: c for c in data["collections"]}
    assert data["database"] == "astro"
    assert by_model["User"]["key"] is None and not by_model["User"]["blocked"]
    insights = by_model["PlanetaryInsight"]
    assert insights["key"] == {"userId": "hashed"}
    assert insights["key_index"] == {"name": "userId_hashed", "key": {"userId": "hashed"}, "exists": False}
    assert insights["unique_ok"] == ["userId_1_date_1"] and insights["blocking"] == []


def test_users_sharded_on_hashed_id_is_blocked_by_the_unique_email_with_the_remedy():
    plan = shard_plan(default_registry(), "astro", {"User": {"id": "hashed"}})
    users = plan.collections[0]
    assert users.key == {"_id": "hashed"} and users.blocked
    block, blind = users.blocking  # the email's unique index, and its blind index's (security.blind)
    assert block["index"] == "email_1" and "userEmails" in block["remedy"]
    assert blind["index"] == "emailIndex_1"
    text = render_plan(plan)
    assert "// BLOCKED: unique index email_1 { email: 1 } is not prefixed by the shard key;" in text
    assert '// sh.shardCollection("astro.users", { _id: "hashed" })' in text  # commented out: it would fail
    assert '\nsh.shardCollection("astro.users"' not in text


def test_users_sharded_on_hashed_email_keeps_the_unique_email():
    users = shard_plan(default_registry(), "astro", {"users": {"email": "hashed"}}).collections[0]
    # the plain email_1 is kept; with a key uniqueness is the blind index's, which this key does not prefix
    assert users.unique_ok == ["email_1"] and [b["index"] for b in users.blocking] == ["emailIndex_1"]


def test_a_unique_index_not_prefixed_by_a_ranged_key_is_called_out():
    insights = shard_plan(default_registry(), "astro", {"PlanetaryInsight": {"date": 1}}).collections[2]
    assert [b["index"] for b in insights.blocking] == ["userId_1_date_1"]
    assert insights.key_index == {"name": "date_1", "key": {"date": 1}, "exists": True}  # a declared index serves it


def test_shard_plan_key_option_tries_another_key():
    result = run("shard", "plan", "--key", "User=_id:hashed")
    assert result.exit_code == 0 and "BLOCKED: unique index email_1" in result.output


@pytest.mark.parametrize("text, error", [
    ("User", ConfigError), ("User=_id:ranged", ConfigError), ("=x:1", ConfigError),
    ("User=a:hashed,b:hashed", ConfigError), ("User=nosuchfield:hashed", QueryError),
])
def test_a_bad_key_option_is_one_line_and_exit_2(text, error):
    result = run("shard", "plan", "--key", text)
    assert result.exit_code == 2 and result.output.startswith("error:")
    with pytest.raises(error):
        model, key = parse_key(text)
        shard_plan(default_registry(), "astro", {model: key})


def test_parse_key_reads_hashed_ranged_and_none():
    assert parse_key("User=_id:hashed") == ("User", {"_id": "hashed"})
    assert parse_key("Insight=userId:1,date") == ("Insight", {"userId": 1, "date": 1})
    assert parse_key("User=none") == ("User", None)


@pytest.mark.parametrize("fields, key, targeted", [
    ({"userId": "eq"}, {"userId": "hashed"}, True),
    ({"userId": "eq", "date": "range"}, {"userId": "hashed"}, True),
    ({"userId": "range"}, {"userId": "hashed"}, False),
    ({"energyLevel": "range"}, {"userId": "hashed"}, False),
    ({}, {"userId": "hashed"}, False),
    ({"userId": "range"}, {"userId": 1}, True),
    ({"userId": "eq"}, {"userId": 1, "date": 1}, False),
])
def test_is_targeted(fields, key, targeted):
    assert is_targeted(fields, key) is targeted


# --- the advisor ----------------------------------------------------------------------------

def test_the_advisor_flags_a_query_without_the_shard_key_with_its_call_site():
    with Database("mongomock://localhost/scatter", ensure_indexes=False) as db:
        line = inspect.currentframe().f_lineno + 1
        db.find("PlanetaryInsight", {"energyLevel": {"$gte": 70}})
        db.find("PlanetaryInsight", {"energyLevel": {"$gte": 80}})  # same shape: the first call site stays
        db.find("PlanetaryInsight", {"userId": "0" * 24, "date": {"$gte": "2024-03-01T00:00:00Z"}})  # targeted
        db.find("User", {"status": "active"})  # users is not sharded
        advice = [a for a in db.advise() if a["kind"] == "scatter_gather"]
    (item,) = advice
    assert item["model"] == "PlanetaryInsight" and item["operation"] == "find" and item["count"] == 2
    assert item["filter"] == {"energyLevel": {"$gte": "<int>"}} and item["shard_key"] == {"userId": "hashed"}
    assert item["call_site"] == f"{__file__}:{line}"
    assert "scatter-gather" in item["basis"] and "userId" in item["remedy"]


def test_the_advisor_flags_aggregations_and_full_reads_of_sharded_models():
    with Database("mongomock://localhost/scatter2", ensure_indexes=False) as db:
        db.aggregate("TimingRecommendation", [{"$match": {"activity": "travel"}}, {"$count": "n"}])
        db.count("BirthChart", {})
        db.aggregate("TimingRecommendation", [{"$match": {"userId": "0" * 24}}])
        flagged = {(a["model"], a["operation"]) for a in db.advise() if a["kind"] == "scatter_gather"}
    assert flagged == {("TimingRecommendation", "aggregate"), ("BirthChart", "count")}
