"""Inputs nested thousands of levels deep, or megabytes long, are a clear ``astro_db.errors``
error that names the place and costs no more to report than a short one: never Python's
``RecursionError`` (which a web integration would answer as a crash), never an error message
holding the whole value, and nothing written. A JSON body of a request can nest that deep.

The bound is MongoDB's own for a stored document, 100 levels (``filters.MAX_VALUE_DEPTH``),
checked without recursion before anything walks the value; operators keep their own, lower
bound (``MAX_QUERY_DEPTH``), ``$not`` and ``$elemMatch`` included."""

from __future__ import annotations

from typing import Any

import pytest

from astro_db.errors import AstroDBError, QueryError, ValidationError
from astro_db.query.filters import MAX_VALUE_DEPTH

DEEP = 5_000  # far past Python's recursion limit (1,000)


def nested_list(depth: int, leaf: Any = "x") -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def nested_dict(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


def nots(depth: int) -> Any:
    condition: Any = {"$eq": "A"}
    for _ in range(depth):
        condition = {"$not": condition}
    return condition


def elem_matches(depth: int) -> Any:
    condition: Any = {"$eq": "x"}
    for _ in range(depth):
        condition = {"$elemMatch": condition}
    return condition


CALLS = {
    "a filter's $not chain": (QueryError, lambda db, u: db.find("User", {"name": nots(DEEP)})),
    "a filter's $elemMatch chain": (QueryError, lambda db, u: db.find("PlanetaryInsight", {"recommendations": elem_matches(DEEP)})),
    "a filter's $in of nested lists": (QueryError, lambda db, u: db.find("User", {"name": {"$in": nested_list(DEEP)}})),
    "a filter's literal list": (QueryError, lambda db, u: db.find("User", {"name": nested_list(DEEP)})),
    "a filter's $eq object": (QueryError, lambda db, u: db.find("User", {"name": {"$eq": nested_dict(DEEP)}})),
    "a geo operator's argument": (QueryError, lambda db, u: db.find("BirthChart", {"birthData.location.coordinates": {
        "$near": nested_dict(DEEP)}})),
    "a pipeline's expression": (QueryError, lambda db, u: db.aggregate("User", [{"$project": {"x": nested_dict(DEEP)}}])),
    "a pipeline's $match": (QueryError, lambda db, u: db.aggregate("User", [{"$match": {"name": nots(DEEP)}}])),
    "a count": (QueryError, lambda db, u: db.count("User", {"name": {"$in": nested_list(DEEP)}})),
    "an update's value": (ValidationError, lambda db, u: db.update("User", {"id": u.id}, {"name": nested_dict(DEEP)})),
    "a $push": (ValidationError, lambda db, u: db.update("PlanetaryInsight", {"userId": u.id}, {
        "$push": {"recommendations": nested_list(DEEP)}})),
    "a new document's value": (ValidationError, lambda db, u: db.create("BirthChart", {"userId": u.id, "birthData": {
        "date": "1990-01-01T00:00:00Z", "timezone": "UTC", "location": {"name": "x", "coordinates": nested_dict(DEEP)}}})),
    "a new user's name": (ValidationError, lambda db, u: db.create("User", {"email": "b@example.com", "name": nested_list(DEEP)})),
}


def stored(db) -> dict[str, list]:
    return {c: list(db.mongo[c].find({}, sort=[("_id", 1)])) for c in ("users", "birthCharts", "planetaryInsights")}


@pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))
def test_a_value_nested_thousands_of_levels_deep_is_a_clear_error_and_writes_nothing(db, call):
    error, run = CALLS[call]
    user = db.create("User", {"email": "a@example.com", "name": "A"})
    db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 5,
                                   "recommendations": ["x"]})
    before = stored(db)
    with pytest.raises(error) as refused:
        run(db, user)
    assert len(str(refused.value)) < 400, str(refused.value)[:400]
    assert stored(db) == before


def test_many_values_nested_deep_in_a_batch_fail_one_by_one(db):
    result = db.create_many("User", [{"email": "c@example.com", "name": "C"},
                                     {"email": "d@example.com", "name": nested_list(DEEP)}])
    assert [u.email for u in result] == ["c@example.com"]
    assert [(i, type(e)) for i, e in result.failed] == [(1, ValidationError)]
    assert len(str(result.failed[0][1])) < 400


def test_the_bound_is_mongodbs_own_and_a_value_within_it_is_taken(db):
    db.create("User", {"email": "a@example.com", "name": "A"})
    assert db.find("User", {"name": nested_list(MAX_VALUE_DEPTH)}) == []  # within the bound: asked
    with pytest.raises(QueryError, match=f"deeper than {MAX_VALUE_DEPTH} levels"):
        db.find("User", {"name": nested_list(MAX_VALUE_DEPTH + 1)})
    assert [u.name for u in db.find("User", {"name": {"$not": {"$not": {"$eq": "A"}}}})] == ["A"]


@pytest.mark.parametrize("value", [["x" * 2_000_000], {"k" * 100_000: "v"}, "é" * 3_000_000], ids=["list", "key", "text"])
def test_a_megabyte_value_is_described_in_a_few_characters(db, value):
    user = db.create("User", {"email": "a@example.com", "name": "A"})
    with pytest.raises(AstroDBError) as refused:
        db.update("User", {"id": user.id}, {"status": value})
    assert len(str(refused.value)) < 400
