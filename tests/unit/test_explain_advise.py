"""db.explain() across server kinds, and the query advisor."""

from __future__ import annotations

import pytest

from astro_db import Database
from astro_db.errors import QueryError
from astro_db.indexes import declared_indexes
from astro_db.monitoring.advisor import serving_index, suggest_key
from astro_db.monitoring.explain import parse_plan
from astro_db.registry import default_registry

MONGO_IXSCAN = {
    "queryPlanner": {"winningPlan": {"stage": "FETCH", "inputStage": {"stage": "IXSCAN", "indexName": "userId_1"}}},
    "executionStats": {"nReturned": 3, "totalKeysExamined": 3, "totalDocsExamined": 3},
}
MONGO_COLLSCAN = {
    "queryPlanner": {"winningPlan": {"stage": "COLLSCAN", "direction": "forward"}},
    "executionStats": {"nReturned": 1, "totalKeysExamined": 0, "totalDocsExamined": 500},
}
MONGO_SBE = {"queryPlanner": {"winningPlan": {"queryPlan": {"stage": "FETCH", "inputStage": {"stage": "IXSCAN", "indexName": "email_1"}}}}}
MONGO_IDHACK = {"queryPlanner": {"winningPlan": {"stage": "IDHACK"}}, "executionStats": {"nReturned": 1}}
NX_INDEX = {"queryPlanner": {"winningPlan": [{"detail": "SEARCH users USING INDEX idx_users_email (<expr>=?)"}]},
            "executionStats": {"nReturned": 0, "totalDocsExamined": 0}}
NX_SCAN = {"queryPlanner": {"winningPlan": [{"detail": "SCAN users"}]}}


def test_mongodb_index_plan_names_the_index_and_the_figures():
    plan = parse_plan(MONGO_IXSCAN)
    assert plan["index"] == "userId_1" and plan["used_index"] is True and plan["collection_scan"] is False
    assert (plan["docs_examined"], plan["keys_examined"], plan["n_returned"]) == (3, 3, 3)
    assert plan["summary"] == "FETCH <- IXSCAN userId_1" and plan["raw"] == MONGO_IXSCAN


def test_mongodb_collection_scan_uses_no_index():
    plan = parse_plan(MONGO_COLLSCAN)
    assert plan["index"] is None and plan["used_index"] is False and plan["collection_scan"] is True
    assert plan["docs_examined"] == 500


def test_slot_based_plans_and_id_lookups_are_understood():
    assert parse_plan(MONGO_SBE)["index"] == "email_1"
    idhack = parse_plan(MONGO_IDHACK)
    assert idhack["index"] == "_id_" and idhack["used_index"] is True


def test_nx_sqlite_plans_show_index_use_but_no_statistics():
    plan = parse_plan(NX_INDEX)
    assert plan["index"] == "idx_users_email" and plan["used_index"] is True
    assert plan["docs_examined"] is None and "no execution statistics" in plan["notes"][0]
    scan = parse_plan(NX_SCAN)
    assert scan["used_index"] is False and scan["collection_scan"] is True


def test_unknown_explain_output_is_reported_unavailable_not_a_crash():
    for raw in ({}, {"queryPlanner": {"winningPlan": "??"}}, {"queryPlanner": {"winningPlan": {"stage": "EOF"}}}):
        assert parse_plan(raw)["available"] is False


def test_explain_on_the_embedded_backend_says_what_is_unavailable():
    with Database("mongomock://localhost/explain") as db:
        plan = db.explain("User", {"email": "a@example.com"}, sort={"name": 1})
    assert plan["available"] is False and plan["index"] is None and plan["used_index"] is None
    assert "no query planner" in plan["notes"][0] and plan["sort"] == [("name", 1)]


def test_explain_validates_the_query_like_find():
    with Database("mongomock://localhost/explain") as db, pytest.raises(QueryError):
        db.explain("User", {"$where": "1"})


def test_suggested_keys_follow_equality_sort_range():
    key = suggest_key({"energyLevel": "range", "userId": "eq"}, [("date", -1)])
    assert key == [("userId", 1), ("date", -1), ("energyLevel", 1)]


def test_serving_index_is_a_declared_index_starting_with_a_queried_field():
    insight = default_registry().resolve("PlanetaryInsight")
    declared = declared_indexes(insight)
    assert serving_index({"userId": "eq", "date": "range"}, [], declared)["name"] == "userId_1_date_1"
    assert serving_index({"summary": "eq"}, [], declared) is None  # a text index does not serve equality
    assert serving_index({"$text": "text"}, [], declared)["name"].endswith("_text")
    assert serving_index({"_id": "eq"}, [], declared)["name"] == "_id_"


def test_advisor_lists_unindexed_shapes_seen_and_skips_indexed_ones():
    with Database("mongomock://localhost/advise") as db:
        db.find("User", {"name": "Ann"})
        db.find("User", {"name": "Bob"})  # same shape
        db.find("User", {"email": "a@example.com"})  # served by email_1
        db.count("PlanetaryInsight", {"summary": "x", "energyLevel": {"$gt": 5}})  # energyLevel_1 serves it
        db.find("User", {})  # a full read: no index helps
        advice = [a for a in db.advise() if a["kind"] == "index"]  # scatter-gather advice: test_scaling.py
    assert len(advice) == 1
    item = advice[0]
    assert item["model"] == "User" and item["operation"] == "find" and item["count"] == 2
    assert item["filter"] == {"name": "<str>"} and item["suggested_key"] == [["name", 1]] and item["index"] is None
    assert "explain unavailable" in item["basis"]
