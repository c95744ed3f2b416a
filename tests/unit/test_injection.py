"""The injection corpus: request JSON that tries to run code, escape its model or widen a
literal match is refused with QueryError / ValidationError, and nothing is written."""

from __future__ import annotations

import re

import pytest
from bson.regex import Regex

from astro_db.errors import QueryError, ValidationError

from .security_data import chart_data, snapshot, user_data

REFUSED = (QueryError, ValidationError)


def _id(value, width: int) -> str:
    """A test id from a value's repr, without backslashes (pytest cannot select such an id by name)."""
    return repr(value)[:width].replace("\\", "/")


@pytest.fixture
def seeded(db):
    user = db.create("User", user_data())
    db.create("BirthChart", chart_data(user.id))
    return db


FILTERS = [
    {"$where": "this.email.length > 0"},
    {"$where": "function() { return true }"},
    {"email": {"$where": "1"}},
    {"$expr": {"$eq": ["$email", "$name"]}},
    {"$and": [{"$expr": {"$gt": ["$energyLevel", 0]}}]},
    {"$or": [{"name": "x"}, {"$where": "sleep(1000)"}]},
    {"$nor": [{"$and": [{"$expr": {"$eq": [1, 1]}}]}]},
    {"email": {"$not": {"$expr": {"$eq": [1, 1]}}}},
    {"email": {"$function": {"body": "return true", "args": [], "lang": "js"}}},
    {"email": {"$accumulator": {}}},
    {"email": {"$eq": {"$ne": None}}},
    {"email": {"$in": [{"$ne": None}]}},
    {"$jsonSchema": {}},
    {"$comment": "x"},
    {"__proto__": {"admin": True}},
    {"constructor": {"prototype": {}}},
    {"email.__proto__": "x"},
    {"name": {"$eq": {"__proto__": {"polluted": True}}}},
    {"$unknownOp": 1},
    {"email": {"$regex": "a" * 300}},
    {"email": {"$regex": "(a+)+$"}},
    {"email": {"$regex": "(\\w*)*@"}},
    {"email": {"$regex": "[unclosed"}},
    {"email": {"$regex": "^(a|a)*$"}},
    {"name": {"$regex": "^(\\w+\\s?)+$"}},
    {"name": {"$regex": "(a+) +", "$options": "x"}},
    {"name": {"$not": {"$regex": "(a|aa)+"}}},
    {"$or": [{"name": "x"}, {"name": {"$regex": "(x*)*"}}]},
    {"name": {"$regex": "(a)\\1"}},
    {"name": re.compile("^(a|a)*$")},
    {"name": Regex("^(\\w+\\s?)+$")},
    {"name": {"$not": re.compile("(a|aa)+")}},
    {"name": {"$regex": Regex("(a+) +", "x")}},
    {"email": {"$options": "e"}},
    {"email": {"$gt": 1, "plain": 2}},
]


@pytest.mark.parametrize("query", FILTERS, ids=[_id(q, 50) for q in FILTERS])
@pytest.mark.parametrize("method", ["find", "find_one", "count", "delete_many", "update_many"])
def test_a_hostile_filter_is_refused_by_every_method_and_writes_nothing(seeded, query, method):
    before = snapshot(seeded)
    calls = {
        "find": lambda: seeded.find("User", query),
        "find_one": lambda: seeded.find_one("User", query),
        "count": lambda: seeded.count("User", query),
        "delete_many": lambda: seeded.delete_many("User", query),
        "update_many": lambda: seeded.update_many("User", query, {"name": "Mallory"}),
    }
    with pytest.raises(REFUSED):
        calls[method]()
    assert snapshot(seeded) == before


def test_a_catastrophic_regex_inside_elem_match_is_refused(seeded):
    with pytest.raises(QueryError, match="'positions.body'"):
        seeded.find("BirthChart", {"positions": {"$elemMatch": {"body": {"$regex": "(x*)*"}}}})
    with pytest.raises(QueryError, match="refused"):
        seeded.find("BirthChart", {"positions.body": {"$elemMatch": {"$regex": "(a|aa)+"}}})
    assert seeded.find("BirthChart", {"positions": {"$elemMatch": {"body": {"$regex": "^Su"}}}}) == []  # accepted


def test_expr_nested_inside_elem_match_is_refused(seeded):
    with pytest.raises(QueryError):
        seeded.find("BirthChart", {"positions": {"$elemMatch": {"$expr": {"$eq": [1, 1]}}}})
    with pytest.raises(QueryError):
        seeded.find("BirthChart", {"positions": {"$elemMatch": {"body": "Sun", "$where": "1"}}})


@pytest.mark.parametrize("query", [
    {"email": {"$ne": None}},
    {"email": {"$gt": ""}},
    {"email": {"$regex": ".*"}},
    {"email": {"$exists": True}},
    {"email": {"$in": ["a@b.co"]}},
    {"$or": [{"email": "a@b.co"}, {"email": {"$ne": None}}]},
    {"$text": {"$search": "ann"}},
])
def test_strict_mode_refuses_any_operator_where_a_literal_is_expected(seeded, query):
    with pytest.raises(QueryError):
        seeded.find_one("User", query, strict=True)
    with pytest.raises(QueryError):
        seeded.count("User", query, strict=True)
    with pytest.raises(QueryError):
        seeded.delete("User", query, strict=True)


def test_strict_mode_still_matches_a_literal(seeded):
    email = seeded.find_one("User").email
    assert seeded.find_one("User", {"email": email}, strict=True).email == email


PIPELINES = [
    [{"$match": {"$where": "1"}}],
    [{"$match": {"$expr": {"$eq": [1, 1]}}}],
    [{"$project": {"x": {"$function": {"body": "return 1", "args": [], "lang": "js"}}}}],
    [{"$group": {"_id": None, "x": {"$accumulator": {"init": "function(){}"}}}}],
    [{"$addFields": {"x": {"$expr": 1}}}],
    [{"$out": "stolen"}],
    [{"$merge": {"into": "users"}}],
    [{"$unionWith": "auditLog"}],
    [{"$lookup": {"from": "auditLog", "localField": "_id", "foreignField": "documentId", "as": "a"}}],
    [{"$lookup": {"from": "users", "pipeline": [{"$out": "x"}], "as": "u"}}],
    [{"$lookup": {"from": "users", "pipeline": [{"$match": {"$expr": {"$eq": [1, 1]}}}], "as": "u"}}],
    [{"$facet": {"a": [{"$lookup": {"from": "system.users", "localField": "a", "foreignField": "b", "as": "c"}}]}}],
    [{"$facet": {"a": [{"$merge": {"into": "x"}}]}}],
    [{"$graphLookup": {"from": "users"}}],
    ["$match"],
    # nested pipelines: the same rules at every depth (issue #15.7)
    [{"$facet": {"a": [{"$match": {"positions.body": {"$regex": "^(a|a)*$"}}}]}}],
    [{"$facet": {"a": [{"$match": {"$unknownOp": 1}}]}}],
    [{"$facet": {"a": [{"$match": {"notAField": 1}}]}}],
    [{"$facet": {"a": [{"$match": {"userId": {"$in": ["x"] * 10_001}}}]}}],
    [{"$facet": {"a": [{"$facet": {"b": [{"$match": {"houseSystem": {"$regex": "(a+)+"}}}]}}]}}],
    [{"$lookup": {"from": "users", "pipeline": [{"$match": {"name": {"$regex": "(\\w+\\s?)+$"}}}], "as": "u"}}],
    [{"$lookup": {"from": "users", "pipeline": [{"$match": {"energyLevel": 1}}], "as": "u"}}],
    [{"$lookup": {"from": "users", "let": {"x": {"$function": {"body": "1", "args": [], "lang": "js"}}}, "pipeline": [], "as": "u"}}],
    [{"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": "u", "into": "x"}}],
    [{"$unionWith": {"coll": "users", "pipeline": [{"$match": {"email": {"$regex": "(a|aa)+"}}}]}}],
    [{"$unionWith": {"coll": "users", "pipeline": [{"$out": "x"}]}}],
    [{"$unionWith": {"coll": "auditLog", "pipeline": []}}],
    [{"$graphLookup": {"from": "users", "startWith": "$userId", "connectFromField": "_id", "connectToField": "_id",
                       "as": "g", "restrictSearchWithMatch": {"name": {"$regex": "(a*)*"}}}}],
    [{"$graphLookup": {"from": "auditLog", "startWith": "$userId", "connectFromField": "_id", "connectToField": "_id", "as": "g"}}],
    [{"$geoNear": {"near": [0, 0], "distanceField": "d", "query": {"houseSystem": {"$regex": "(a+)+"}}}}],
    [{"$facet": {"a": [{"$facet": {"b": [{"$facet": {"c": [{"$facet": {"d": [{"$facet": {"e": []}}]}}]}}]}}]}}],
    # regex-taking expression operators, at any depth
    [{"$addFields": {"m": {"$regexMatch": {"input": "$houseSystem", "regex": "^(a|a)*$"}}}}],
    [{"$project": {"m": {"$regexFind": {"input": "$houseSystem", "regex": "(\\w+\\s?)+"}}}}],
    [{"$project": {"m": {"$regexFindAll": {"input": "$houseSystem", "regex": "(a)\\1"}}}}],
    [{"$project": {"m": {"$regexMatch": {"input": "$houseSystem", "regex": "$houseSystem"}}}}],
    [{"$project": {"m": {"$regexMatch": {"input": "$houseSystem", "regex": "^p", "options": "e"}}}}],
    [{"$project": {"m": {"$regexMatch": {"input": "$houseSystem"}}}}],
    [{"$facet": {"a": [{"$project": {"m": {"$cond": [{"$regexMatch": {"input": "$houseSystem", "regex": "(a+)+"}}, 1, 0]}}}]}}],
    [{"$lookup": {
        "from": "users", "let": {"m": {"$regexMatch": {"input": "$houseSystem", "regex": "(a|aa)+"}}}, "pipeline": [], "as": "u"
    }}],
    [{"$group": {"_id": {"$regexFind": {"input": "$houseSystem", "regex": "(a*)*"}}}}],
]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=[_id(p, 50) for p in PIPELINES])
def test_a_hostile_pipeline_is_refused_and_writes_nothing(seeded, pipeline):
    before = snapshot(seeded)
    with pytest.raises(QueryError):
        seeded.aggregate("BirthChart", pipeline)
    assert snapshot(seeded) == before


def test_a_nested_match_is_compiled_against_the_model_it_reads(seeded):
    from astro_db.models import BirthChart
    from astro_db.query.pipeline import compile_pipeline

    compiled = compile_pipeline(BirthChart, [
        {"$facet": {"charts": [{"$match": {"house_system": "placidus"}}]}},
        {"$lookup": {
            "from": "users",
            "pipeline": [{"$match": {"id": "6b069ab89379ec754f0ebbf1", "name": {"$regex": "^ann", "$options": "i"}}}],
            "as": "u",
        }},
        {"$unionWith": {"coll": "users", "pipeline": [{"$match": {"last_active": {"$gte": "2024-01-01T00:00:00Z"}}}]}},
    ])
    assert compiled[0]["$facet"]["charts"] == [{"$match": {"houseSystem": "placidus"}}]
    lookup_match = compiled[1]["$lookup"]["pipeline"][0]["$match"]
    assert str(lookup_match["_id"]) == "6b069ab89379ec754f0ebbf1" and lookup_match["name"] == {"$regex": "^ann", "$options": "i"}
    assert "lastActive" in compiled[2]["$unionWith"]["pipeline"][0]["$match"]


def test_safe_regex_expressions_and_nested_pipelines_run(seeded):
    out = seeded.aggregate("BirthChart", [
        {"$facet": {"placidus": [{"$match": {"house_system": {"$regex": "^plac"}}}, {"$count": "n"}]}},
    ])
    assert out == [{"placidus": [{"n": 1}]}]


def test_a_lookup_into_a_model_collection_is_allowed(seeded):
    out = seeded.aggregate("BirthChart", [{"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": "u"}}])
    assert len(out[0]["u"]) == 1


CREATE_DATA = [
    {"email": "a@b.co", "name": "A", "$where": "1"},
    {"email": "a@b.co", "name": "A", "$set": {"status": "active"}},
    {"email": "a@b.co", "name": "A", "status.x": "active"},
    {"email": "a@b.co", "name": "A", "__proto__": {"admin": True}},
    {"email": "a@b.co", "name": "A", "constructor": {"prototype": {"admin": True}}},
    {"email": {"$ne": None}, "name": "A"},
    {"email": "a@b.co", "name": {"$gt": ""}},
]


@pytest.mark.parametrize("data", CREATE_DATA, ids=[_id(d, 60) for d in CREATE_DATA])
def test_create_refuses_dollar_dotted_and_prototype_keys(db, data):
    before = snapshot(db)
    with pytest.raises(REFUSED):
        db.create("User", data)
    result = db.create_many("User", [data])
    assert not result and len(result.failed) == 1
    assert snapshot(db) == before


@pytest.mark.parametrize("nested", [
    {"name": "x", "$where": "1"},
    {"name": "x", "a.b": 1},
    {"name": "x", "__proto__": {}},
    {"name": "x", "coordinates": {"type": "Point", "coordinates": [1, 2], "$where": "1"}},
])
def test_create_refuses_hostile_keys_inside_embedded_documents(db, nested):
    user = db.create("User", user_data())
    before = snapshot(db)
    data = chart_data(user.id)
    data["birthData"]["location"] = nested
    with pytest.raises(REFUSED):
        db.create("BirthChart", data)
    assert snapshot(db) == before


UPDATES = [
    {"$where": "1"},
    {"$rename": {"email": "x"}},
    {"$set": {"$where": "1"}},
    {"$set": {"email.$where": "1"}},
    {"$set": {"__proto__": {"admin": True}}},
    {"$set": {"_id": "6b069ab89379ec754f0ebbf1"}},
    {"$set": {"name": {"$function": {}}}},
    {"name": {"$ne": None}},
    {"$currentDate": {"lastActive": True}},
    {"name": "x", "$set": {"status": "active"}},
]


@pytest.mark.parametrize("update", UPDATES, ids=[_id(u, 60) for u in UPDATES])
def test_update_refuses_hostile_update_documents(seeded, update):
    before = snapshot(seeded)
    with pytest.raises(REFUSED):
        seeded.update("User", {}, update)
    with pytest.raises(REFUSED):
        seeded.update_many("User", {}, update, all=True)
    assert snapshot(seeded) == before


@pytest.mark.parametrize("update", [
    {"$set": {"birthData.location": {"name": "x", "$where": "1"}}},
    {"$set": {"birthData": {"date": "1990-01-01T00:00:00Z", "timezone": "UTC", "x.y": 1}}},
    {"$push": {"positions": {"$each": [{"body": "Sun", "sign": "Leo", "degree": 1}], "$position": 0}}},
    {"$pull": {"positions": {"$where": "1"}}},
    {"$pull": {"positions": {"body": {"$expr": 1}}}},
])
def test_update_refuses_hostile_values_in_embedded_and_list_updates(seeded, update):
    before = snapshot(seeded)
    with pytest.raises(REFUSED):
        seeded.update("BirthChart", {}, update)
    assert snapshot(seeded) == before


# --- regex cost: the issue's reproductions, refused on the compile path (no driver call) --------

COSTLY = [
    ("find", ("User", {"name": {"$regex": r"\w*\w*\w*\w*\w*\w*!"}})),  # User.name: at most 100 characters
    ("find", ("User", {"name": {"$regex": r"\w* \w* \w* !", "$options": "x"}})),  # verbose mode, same shape
    ("find", ("User", {"name": {"$not": {"$regex": r".*.*.*.*!"}}})),
    ("find", ("PlanetaryInsight", {"recommendations": {"$elemMatch": {"$regex": r".*.*.*!"}}})),  # items: 500
    ("aggregate", ("User", [{"$project": {"m": {"$regexMatch": {"input": "a" * 3000, "regex": ".*.*.*!"}}}}])),
    ("aggregate", ("User", [{"$project": {"m": {"$regexFind": {"input": {"$literal": "a" * 3000}, "regex": ".*.*!"}}}}])),
    ("aggregate", ("User", [{"$project": {"m": {"$regexMatch": {"input": "$name", "regex": "[a-z]+!"}}}}])),  # input length unknown
    ("aggregate", ("User", [{"$project": {"m": {"$regexFindAll": {"input": "a" * 3000, "regex": "^a.*b"}}}}])),  # every match
    ("aggregate", ("User", [{"$match": {"email": {"$regex": "(?i)a+A+a+A+a+!"}}}])),
    ("update", ("PlanetaryInsight", {}, {"$pull": {"recommendations": {"$regex": ".*.*.*!"}}})),
]


@pytest.fixture
def driver_calls(monkeypatch):
    """Every driver call the run step makes (the only place one is made from)."""
    from astro_db.ops.steps import run

    calls = []
    original = run.call
    monkeypatch.setattr(run, "call", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    return calls


@pytest.mark.parametrize(("method", "args"), COSTLY, ids=[f"costly{i}" for i in range(len(COSTLY))])
def test_a_costly_regex_is_refused_by_the_cost_rule_before_any_driver_call(seeded, driver_calls, method, args):
    with pytest.raises(QueryError, match="refused by the cost rule"):
        getattr(seeded, method)(*args)
    assert driver_calls == []


def test_a_literal_regex_input_longer_than_the_cap_is_refused(seeded, driver_calls):
    from astro_db.query.regex import MAX_REGEX_INPUT

    with pytest.raises(QueryError, match=f"literal of {MAX_REGEX_INPUT + 1} characters; at most {MAX_REGEX_INPUT}"):
        seeded.aggregate("User", [{"$project": {"m": {"$regexMatch": {"input": "a" * (MAX_REGEX_INPUT + 1), "regex": "^a"}}}}])
    assert driver_calls == []


def test_cheap_regexes_still_run_on_bounded_fields_and_inputs(seeded):
    assert len(seeded.find("User", {"name": {"$regex": "^ann", "$options": "i"}})) == 1
    assert len(seeded.find("User", {"name": {"$regex": "ample$"}})) == 1
    assert len(seeded.find("User", {"name": {"$regex": r"ann.*\w*e"}})) == 0  # case-sensitive
    assert len(seeded.find("User", {"email": {"$regex": r"^[a-z0-9.]+@[a-z0-9.-]+\.[a-z]{2,}$"}})) == 1
    out = seeded.aggregate("User", [{"$project": {"_id": 0, "m": {"$regexMatch": {"input": "a" * 3000, "regex": "^a.*b"}},
                                                   "f": {"$regexMatch": {"input": "$name", "regex": "^Ann"}}}}])
    assert out == [{"m": False, "f": True}]
