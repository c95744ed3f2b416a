"""Query validation as a specification: what ``compile_filter`` accepts (and how it rewrites it),
what it refuses, its limits at the boundary, and the sort/projection/find options and stored-key
checks beside it. Pure functions: no database."""

from __future__ import annotations

import datetime as dt
import re
import types
from collections.abc import Mapping

import pytest
from bson import ObjectId
from bson.regex import Regex

from astro_db.errors import QueryError, ValidationError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.query import (
    MAX_REGEX_LENGTH,
    check_document_keys,
    coerce_id,
    compile_filter,
    compile_projection,
    compile_sort,
    find_options,
)

HEX = "0123456789abcdef01234567"
OID = ObjectId(HEX)
JAN_1 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
FORBIDDEN = ["$where", "$function", "$accumulator", "$expr", "$jsonSchema", "$comment"]


def nested_and(levels: int) -> dict:
    query: dict = {"name": "Ann"}
    for _ in range(levels):
        query = {"$and": [query]}
    return query


# --- what is accepted, in stored form ----------------------------------------------------------


@pytest.mark.parametrize("logical", ["$and", "$or", "$nor"])
def test_a_legitimate_logical_query_is_compiled_clause_by_clause(logical):
    query = {logical: [{"id": HEX}, {"last_active": {"$gte": "2026-01-01T00:00:00Z"}}]}
    assert compile_filter(User, query) == {logical: [{"_id": OID}, {"lastActive": {"$gte": JAN_1}}]}


def test_none_is_the_empty_filter_and_names_become_stored_names():
    assert compile_filter(User, None) == {}
    assert compile_filter(BirthChart, {"user_id": HEX, "birth_data.location.name": "x"}) == {
        "userId": OID, "birthData.location.name": "x"}


def test_value_operators_coerce_their_literals_to_the_stored_type():
    assert compile_filter(PlanetaryInsight, {"date": {"$gt": "2026-01-01T00:00:00Z", "$lt": JAN_1}}) == {
        "date": {"$gt": JAN_1, "$lt": JAN_1}}
    assert compile_filter(User, {"id": {"$in": [HEX, OID], "$nin": []}}) == {"_id": {"$in": [OID, OID], "$nin": []}}
    assert compile_filter(User, {"id": None}) == {"_id": None}
    assert compile_filter(PlanetaryInsight, {"recommendations": {"$all": ["Rest", "Walk"]}}) == {
        "recommendations": {"$all": ["Rest", "Walk"]}}


def test_elem_match_compiles_item_fields_or_item_operators():
    assert compile_filter(TimingRecommendation, {"windows": {"$elemMatch": {"start": {"$gte": "2026-01-01T00:00:00Z"}}}}) == {
        "windows": {"$elemMatch": {"start": {"$gte": JAN_1}}}}
    assert compile_filter(PlanetaryInsight, {"recommendations": {"$elemMatch": {"$eq": "Rest"}}}) == {
        "recommendations": {"$elemMatch": {"$eq": "Rest"}}}


def test_the_remaining_field_operators_are_accepted_with_their_argument():
    assert compile_filter(User, {"status": {"$not": {"$in": ["banned"]}}, "name": {"$exists": 0}}) == {
        "status": {"$not": {"$in": ["banned"]}}, "name": {"$exists": False}}
    assert compile_filter(BirthChart, {"positions": {"$size": 2, "$exists": 1, "$type": "array"}}) == {
        "positions": {"$size": 2, "$exists": True, "$type": "array"}}
    assert compile_filter(PlanetaryInsight, {"energy_level": {"$mod": (5, 0), "$type": 16}}) == {
        "energyLevel": {"$mod": [5, 0], "$type": 16}}


def test_regexes_are_accepted_within_the_policy():
    pattern = re.compile("^an")
    assert compile_filter(User, {"name": pattern}) == {"name": pattern}
    assert compile_filter(User, {"name": Regex("^an", "i")})["name"].pattern == "^an"
    assert compile_filter(User, {"name": {"$regex": "^an", "$options": "imxs"}}) == {"name": {"$regex": "^an", "$options": "imxs"}}
    assert compile_filter(User, {"name": {"$regex": pattern}}) == {"name": {"$regex": pattern}}
    assert compile_filter(User, {"name": {"$not": pattern}}) == {"name": {"$not": pattern}}
    assert compile_filter(User, {"name": {"$regex": "a" * MAX_REGEX_LENGTH}})


def test_geo_arguments_pass_through_as_plain_data():
    query = {"birthData.location.coordinates": {"$geoWithin": {"$centerSphere": [[0, 0], 0.1]}}}
    assert compile_filter(BirthChart, query) == query


def test_text_search_is_accepted_with_its_options():
    text = {"$search": "calm", "$language": "en", "$caseSensitive": False, "$diacriticSensitive": False}
    assert compile_filter(PlanetaryInsight, {"$text": text}) == {"$text": text}
    assert compile_filter(PlanetaryInsight, {"$text": {"$search": "x" * 1000}})


def test_an_object_value_without_operators_is_an_exact_match_copy():
    value = {"name": "London", "coordinates": [1, 2]}
    out = compile_filter(BirthChart, {"birthData.location": value})
    assert out == {"birthData.location": value} and out["birthData.location"] is not value


def test_strict_mode_accepts_literals():
    assert compile_filter(User, {"email": "a@example.com", "id": HEX}, strict=True) == {"email": "a@example.com", "_id": OID}


# --- limits at the boundary ------------------------------------------------------------------


def test_queries_nest_up_to_twelve_levels_and_no_deeper():
    assert compile_filter(User, nested_and(12))
    with pytest.raises(QueryError, match="nested deeper than 12 levels"):
        compile_filter(User, nested_and(13))


def test_elem_match_counts_towards_the_depth():
    def query(levels: int) -> dict:  # $elemMatch is one level, its $and chain the others
        clause: dict = {"body": "Sun"}
        for _ in range(levels - 1):
            clause = {"$and": [clause]}
        return {"positions": {"$elemMatch": {"sign": "Leo", "$and": [clause]}}}

    assert compile_filter(BirthChart, query(11))
    with pytest.raises(QueryError, match="nested deeper than 12 levels"):
        compile_filter(BirthChart, query(12))


def test_in_takes_up_to_ten_thousand_values():
    assert len(compile_filter(User, {"name": {"$in": ["a"] * 10_000}})["name"]["$in"]) == 10_000
    for op in ("$in", "$nin", "$all"):
        with pytest.raises(QueryError, match="lists 10001 values; at most 10000"):
            compile_filter(User, {"name": {op: ["a"] * 10_001}})


def test_a_regex_is_at_most_256_characters():
    with pytest.raises(QueryError, match="is 257 characters; at most 256"):
        compile_filter(User, {"name": {"$regex": "a" * 257}})
    with pytest.raises(QueryError, match="at most 256"):
        compile_filter(User, {"name": re.compile("a" * 257)})


def test_a_text_search_is_at_most_a_thousand_characters():
    with pytest.raises(QueryError, match="longer than 1000"):
        compile_filter(PlanetaryInsight, {"$text": {"$search": "x" * 1001}})


def test_a_literal_string_is_at_most_16384_characters():
    assert compile_filter(User, {"name": "x" * 16_384})
    with pytest.raises(QueryError, match="longer than 16384"):
        compile_filter(User, {"name": "x" * 16_385})


# --- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", FORBIDDEN)
def test_a_forbidden_operator_is_refused_at_the_top_as_a_field_operator_and_inside_geo_arguments(op):
    with pytest.raises(QueryError, match=f"operator \\{op} is not allowed: it can run code"):
        compile_filter(User, {op: "x"})
    with pytest.raises(QueryError, match=f"operator \\{op} is not allowed: it can run code"):
        compile_filter(User, {"name": {op: "x"}})
    for argument in ({op: 1}, {"$geometry": {"coordinates": [{op: 1}]}}, [[0, 0], {"nested": [{op: "x"}]}]):
        with pytest.raises(QueryError, match=f"operator \\{op} is not allowed \\(in 'birthData"):
            compile_filter(BirthChart, {"birthData.location.coordinates": {"$geoWithin": argument}})


@pytest.mark.parametrize("query, message", [
    ({"$and": {"name": "x"}}, "$and takes a non-empty list"),
    ({"$or": []}, "$or takes a non-empty list"),
    ({"$nor": ["name"]}, "must be a dict, got str"),
    ({"$bogus": 1}, "unknown or unsupported query operator $bogus"),
    ({"name": {"$bogus": 1}}, "unknown or unsupported operator $bogus on field 'name'"),
    ({"name": {"$eq": "x", "plain": 1}}, "mixes operators and plain keys"),
    ({1: "x"}, "query keys must be strings"),
    ({"name": {"$in": "abc"}}, "$in on 'name' takes a list, got str"),
    ({"name": {"$exists": "yes"}}, "$exists on 'name' takes true or false"),
    ({"name": {"$regex": 5}}, "$regex on 'name' takes a string"),
    ({"name": {"$options": "g"}}, "may only hold the flags i, m, x, s"),
    ({"name": {"$regex": "(a+)+"}}, "a repeated group that itself holds a quantifier"),
    ({"name": {"$regex": r"(\w*){2,}"}}, "a repeated group that itself holds a quantifier"),
    ({"name": re.compile("(a*)*")}, "a repeated group that itself holds a quantifier"),
    ({"name": {"$not": re.compile("(a+)+")}}, "a repeated group that itself holds a quantifier"),
    ({"name": {"$regex": "(unclosed"}}, "invalid regex on 'name'"),
    ({"name": {"$not": "plain"}}, "$not on 'name' takes an operator object or a regex"),
    ({"name": {"$not": {"$where": "1"}}}, "$where is not allowed"),
    ({"positions": {"$elemMatch": [1]}}, "$elemMatch on 'positions' takes a query object"),
    ({"positions": {"$elemMatch": {"$where": "1"}}}, "$where is not allowed"),
    ({"positions": {"$size": -1}}, "$size on 'positions' takes a whole number >= 0"),
    ({"positions": {"$size": True}}, "$size"),
    ({"positions": {"$size": 1.5}}, "$size"),
    ({"positions": {"$type": True}}, "$type on 'positions' takes a BSON type name or number"),
    ({"positions": {"$type": 1.5}}, "$type"),
    ({"energy_level": {"$mod": [5]}}, "$mod on 'energyLevel' takes [divisor, remainder]"),
    ({"energy_level": {"$mod": [5, "0"]}}, "$mod"),
    ({"energy_level": {"$mod": "5,0"}}, "$mod"),
    ({"$text": "calm"}, '$text takes {"$search": "words"}'),
    ({"$text": {"$search": 5}}, "$text takes"),
    ({"$text": {"$search": "calm", "$where": "1", "$x": 1}}, "unknown $text option(s): $where, $x"),
    ({"name": b"bytes"}, "value for 'name' has unsupported type bytes"),
    ({"name": {"$eq": {1, 2}}}, "unsupported type set"),
])
def test_a_malformed_query_is_refused_with_a_message_naming_the_problem(query, message):
    model = PlanetaryInsight if ("$text" in query or "energy_level" in query) else BirthChart if "positions" in query else User
    with pytest.raises(QueryError, match=re.escape(message)):
        compile_filter(model, query)


@pytest.mark.parametrize("query", [{"$and": [{"name": "x"}]}, {"$text": {"$search": "x"}}, {"name": {"$ne": None}}, {"name": {}}])
def test_strict_mode_refuses_logical_text_and_operator_objects(query):
    with pytest.raises(QueryError, match="strict"):
        compile_filter(PlanetaryInsight if "$text" in query else User, query, strict=True)


KEY_IDS = ["dollar", "dotted", "nul", "__proto__", "constructor", "prototype", "not-a-string"]


@pytest.mark.parametrize("bad_key", ["$where", "a.b", "a\x00b", "__proto__", "constructor", "prototype", 5], ids=KEY_IDS)
@pytest.mark.parametrize("shape", ["value", "operator", "nested", "in_list"])
def test_hostile_keys_inside_object_values_are_refused(bad_key, shape):
    inner = {bad_key: 1}
    value = {
        "value": {"name": "London", "extra": inner},
        "operator": {"$eq": inner},
        "nested": {"$ne": {"a": {"b": inner}}},
        "in_list": {"$eq": {"a": [inner]}},
    }[shape]
    with pytest.raises(QueryError, match="is not allowed in a value"):
        compile_filter(BirthChart, {"birthData.location": value})


def test_ids_and_dates_that_do_not_parse_are_validation_errors_naming_the_field():
    with pytest.raises(ValidationError, match="_id: not a valid ObjectId") as raised:
        compile_filter(User, {"id": "nope"})
    assert set(raised.value.errors) == {"_id"}
    with pytest.raises(ValidationError, match="lastActive: not a valid ISO-8601"):
        compile_filter(User, {"last_active": "yesterday"})


def test_a_query_that_is_not_a_dict_is_refused():
    with pytest.raises(QueryError, match="a query must be a dict of field -> value, got list"):
        compile_filter(User, [("name", "x")])


# --- ids, sort, projection, find options ---------------------------------------------------


def test_coerce_id_takes_an_object_id_or_its_24_hex_string():
    assert coerce_id(OID) is OID and coerce_id(HEX) == OID
    for bad in (HEX[:-1], HEX + "0", "g" * 24, 12, OID.binary):
        with pytest.raises(ValidationError, match="not a valid ObjectId"):
            coerce_id(bad)
    with pytest.raises(ValidationError) as raised:
        coerce_id("x" * 200, "userId")
    assert raised.value.errors["userId"].endswith("...") and len(raised.value.errors["userId"]) < 120


def test_compile_sort_accepts_strings_dicts_and_pairs_in_stored_names():
    assert compile_sort(User, None) is None
    assert compile_sort(User, "-last_active") == [("lastActive", -1)]
    assert compile_sort(User, "+name") == [("name", 1)]
    assert compile_sort(User, {"last_active": -1, "name": 1}) == [("lastActive", -1), ("name", 1)]
    assert compile_sort(User, ["-name", ("id", 1), ["email", -1]]) == [("name", -1), ("_id", 1), ("email", -1)]


@pytest.mark.parametrize("sort, message", [(5, "sort takes a list of .* got int 5"), ([("name", 2)], "must be .field, 1 or -1."),
                                           ([("name",)], "must be"), ([("nope", 1)], "nope")])
def test_compile_sort_refuses_bad_directions_and_shapes(sort, message):
    with pytest.raises(QueryError, match=message):
        compile_sort(User, sort)


def test_compile_projection_accepts_names_or_flags_in_stored_names():
    assert compile_projection(User, None) is None
    assert compile_projection(User, ["last_active", "name"]) == {"lastActive": 1, "name": 1}
    assert compile_projection(User, {"email": 0, "name": True}) == {"email": 0, "name": 1}
    with pytest.raises(QueryError, match="projection of 'email' must be 0 or 1"):
        compile_projection(User, {"email": 2})
    with pytest.raises(QueryError, match="projection takes a list of fields or a dict, got str"):
        compile_projection(User, "email")


def test_find_options_keep_only_what_was_asked():
    assert find_options(User, None, 0, 0, None, None) == {}
    assert find_options(User, "-name", 5, 10, ["email"], 100) == {
        "limit": 5, "skip": 10, "sort": [("name", -1)], "projection": {"email": 1}, "batch_size": 100}


@pytest.mark.parametrize("sort", [[("energyLevel", 1), ("date", 1), ("energyLevel", -1)], ["id", "-_id"],
                                  [("user_id", 1), ("userId", -1)]])
def test_a_sort_naming_a_field_twice_is_refused(sort):
    """PyMongo sends a sort as a document: ``[("energyLevel", 1), ("date", 1), ("energyLevel", -1)]``
    went out as ``{energyLevel: -1, date: 1}``, another order than the one written (and a page's
    keyset, built for the list, then skipped or repeated documents on a server)."""
    with pytest.raises(QueryError, match="twice"):
        find_options(PlanetaryInsight, sort, 0, 0, None, None)


@pytest.mark.parametrize("limit, skip, batch, message", [
    (-1, 0, None, "limit must be a whole number >= 0, got -1"),
    (True, 0, None, "limit must be"),
    (1.5, 0, None, "limit must be"),
    (0, -3, None, "skip must be a whole number >= 0, got -3"),
    (0, 0, 0, "batch_size must be a whole number >= 1, got 0"),
    (0, 0, "10", "batch_size must be"),
    (0, 0, True, "batch_size must be"),
    # no BSON integer holds them: the driver failed to encode the command, after the call had begun
    (2**63, 0, None, "limit must be"),
    (0, 2**64, None, "skip must be"),
    (0, 0, 2**63, "batch_size must be"),
])
def test_find_options_refuse_negative_or_non_integer_numbers(limit, skip, batch, message):
    with pytest.raises(QueryError, match=message):
        find_options(User, None, limit, skip, None, batch)


# --- keys of data to be stored ---------------------------------------------------------------


@pytest.mark.parametrize("doc", [
    {"name": "x", "nested": {"ok": [1, {"fine_$key": "a$b", "proto": 1}]}},
    {"constructors": 1, "prototyped": 2, "__proto": 3, "x__proto__": 4},
    [{"a": 1}, [{"b": 2}]],
])
def test_stored_data_with_ordinary_keys_passes(doc):
    check_document_keys(doc)


@pytest.mark.parametrize("bad_key", ["$set", "a.b", "nul\x00", "__proto__", "constructor", "prototype", 7], ids=KEY_IDS)
def test_stored_data_with_a_hostile_key_at_any_depth_is_refused(bad_key):
    for doc in ({bad_key: 1}, {"a": {"b": {bad_key: 1}}}, {"a": [{"ok": 1}, {bad_key: 1}]}, [[{bad_key: 1}]],
                {"first": 1, bad_key: 2}):
        with pytest.raises(ValidationError, match="is not allowed in stored data") as raised:
            check_document_keys(doc, "birthData")
        assert list(raised.value.errors) == ["birthData"]
    with pytest.raises(ValidationError) as raised:
        check_document_keys({bad_key: 1})
    assert list(raised.value.errors) == ["__all__"]


# --- the operator and stage whitelists, element by element ---------------------------------


@pytest.mark.parametrize("op", ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])
def test_each_comparison_operator_coerces_its_literal(op):
    assert compile_filter(User, {"id": {op: HEX}}) == {"_id": {op: OID}}


@pytest.mark.parametrize("query", [
    {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": 10, "$minDistance": 1}},
    {"$nearSphere": [0, 0], "$maxDistance": 0.1, "$minDistance": 0},
    {"$geoIntersects": {"$geometry": {"type": "Point", "coordinates": [0, 0]}}},
    {"$geoWithin": {"$box": [[0, 0], [1, 1]]}},
], ids=["near", "nearSphere", "geoIntersects", "geoWithin"])
def test_each_geo_operator_is_accepted_with_plain_arguments(query):
    assert compile_filter(BirthChart, {"birthData.location.coordinates": query}) == {"birthData.location.coordinates": query}


READ_ONLY_STAGES = [
    {"$match": {"houseSystem": "koch"}}, {"$group": {"_id": "$houseSystem"}}, {"$sort": {"_id": 1}}, {"$limit": 5},
    {"$skip": 1}, {"$project": {"_id": 1}}, {"$unwind": "$positions"}, {"$count": "n"}, {"$addFields": {"x": 1}},
    {"$set": {"x": 1}}, {"$unset": "x"}, {"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": "u"}},
    {"$facet": {"a": [{"$limit": 1}]}}, {"$bucket": {"groupBy": "$x", "boundaries": [0, 1]}},
    {"$bucketAuto": {"groupBy": "$x", "buckets": 2}}, {"$sortByCount": "$houseSystem"}, {"$sample": {"size": 1}},
    {"$replaceRoot": {"newRoot": "$birthData"}}, {"$replaceWith": "$birthData"},
    {"$geoNear": {"near": {"type": "Point", "coordinates": [0, 0]}, "distanceField": "d"}},
]


@pytest.mark.parametrize("stage", READ_ONLY_STAGES, ids=[next(iter(s)) for s in READ_ONLY_STAGES])
def test_each_read_only_pipeline_stage_is_accepted(stage):
    from astro_db.query.pipeline import compile_pipeline

    assert compile_pipeline(BirthChart, [stage]) == [stage]


@pytest.mark.parametrize("stage", ["$out", "$merge"])
def test_pipeline_stages_that_write_are_refused_as_writes(stage):
    from astro_db.query.pipeline import compile_pipeline

    with pytest.raises(QueryError, match=f"stage \\{stage} writes to a collection and is not allowed"):
        compile_pipeline(BirthChart, [{stage: "elsewhere"}])


# --- exact messages and the edges of each check -----------------------------------------------


@pytest.mark.parametrize("model, query, strict, message", [
    (PlanetaryInsight, {"$text": {"$search": "x"}}, True, "operator $text is not allowed in a strict query"),
    (PlanetaryInsight, {"$text": "calm"}, False, '$text takes {"$search": "words"}'),
    (PlanetaryInsight, {"$text": {"$search": "x" * 1001}}, False, "$text search string longer than 1000 characters"),
    (User, {"name": {"$not": re.compile("(a+)+")}}, False,
     "regex on 'name' is refused: a repeated group that itself holds a quantifier (like (a+)+) (the regex policy "
     "refuses what can make matching take exponential time); match a prefix (^abc) or a simpler pattern"),
], ids=["strict-text", "text-shape", "text-length", "not-regex"])
def test_refusals_say_exactly_what_is_wrong(model, query, strict, message):
    with pytest.raises(QueryError) as raised:
        compile_filter(model, query, strict=strict)
    assert str(raised.value) == message


@pytest.mark.parametrize("value", [{"extra": {"$where": 1}}, {"a": [{"b": {"$where": 1}}]}], ids=["nested", "in-list"])
def test_a_hostile_key_in_a_value_is_reported_with_the_field_it_came_in(value):
    with pytest.raises(QueryError) as raised:
        compile_filter(BirthChart, {"birthData.location": {"$eq": value}})
    assert str(raised.value) == "field 'birthData.location': key '$where' is not allowed in a value"


def test_an_object_literal_under_a_comparison_operator_is_kept_as_a_copy():
    value = {"name": "London", "coordinates": [1, 2]}
    out = compile_filter(BirthChart, {"birthData.location": {"$eq": value, "$ne": {"name": "Paris"}}})
    assert out == {"birthData.location": {"$eq": value, "$ne": {"name": "Paris"}}}
    assert out["birthData.location"]["$eq"] is not value


def test_size_and_batch_size_accept_their_smallest_values():
    assert compile_filter(BirthChart, {"positions": {"$size": 0}}) == {"positions": {"$size": 0}}
    assert find_options(User, None, 0, 0, None, 1) == {"batch_size": 1}


def test_not_and_elem_match_compile_item_queries_of_the_model():
    assert compile_filter(TimingRecommendation, {"windows": {"$not": {"$elemMatch": {"start": {"$gte": "2026-01-01T00:00:00Z"}}}}}) == {
        "windows": {"$not": {"$elemMatch": {"start": {"$gte": JAN_1}}}}}


def _deep_item_query(levels: int) -> dict:
    clause: dict = {"body": "Sun"}
    for _ in range(levels - 1):
        clause = {"$and": [clause]}
    return {"sign": "Leo", "$and": [clause]}


def test_not_and_operator_elem_match_count_towards_the_depth():
    assert compile_filter(BirthChart, {"positions": {"$not": {"$elemMatch": _deep_item_query(10)}}})
    with pytest.raises(QueryError, match="nested deeper than 12 levels"):
        compile_filter(BirthChart, {"positions": {"$not": {"$elemMatch": _deep_item_query(11)}}})
    assert compile_filter(BirthChart, {"positions": {"$elemMatch": {"$not": {"$elemMatch": _deep_item_query(9)}}}})
    with pytest.raises(QueryError, match="nested deeper than 12 levels"):
        compile_filter(BirthChart, {"positions": {"$elemMatch": {"$not": {"$elemMatch": _deep_item_query(10)}}}})


def test_a_bad_id_or_date_message_names_the_field_and_shows_at_most_sixty_characters():
    with pytest.raises(ValidationError) as raised:
        coerce_id("nope")
    assert raised.value.errors == {"id": "not a valid ObjectId (24 hex characters), got 'nope'"}
    with pytest.raises(ValidationError) as raised:
        compile_filter(User, {"last_active": "y" * 100})
    assert raised.value.errors == {"lastActive": f"not a valid ISO-8601 date/time: {'y' * 60!r}"}


def test_sort_items_without_a_sign_ascend():
    assert compile_sort(User, ["name", "+email", "-id"]) == [("name", 1), ("email", 1), ("_id", -1)]


def test_a_bad_id_is_shown_whole_up_to_59_characters_of_repr_then_cut_to_57():
    for value, shown in (("x" * 57, "'" + "x" * 57 + "'"), ("x" * 58, "'" + "x" * 56 + "...")):
        with pytest.raises(ValidationError) as raised:
            coerce_id(value)
        assert raised.value.errors == {"id": f"not a valid ObjectId (24 hex characters), got {shown}"}


def test_an_array_literal_matches_exactly_with_each_item_coerced():
    assert compile_filter(PlanetaryInsight, {"recommendations": ["Rest", "Walk"]}) == {"recommendations": ["Rest", "Walk"]}
    assert compile_filter(TimingRecommendation, {"windows.start": ["2026-01-01T00:00:00Z"]}) == {"windows.start": [JAN_1]}


# --- $options wherever a $regex is, and filters that are not plain dicts -------------------------

# ``(a+) +`` is one group then spaces; in verbose mode (``x``) the space is ignored: ``(a+)+``
VERBOSE_REDOS = {"$regex": "(a+) +", "$options": "x"}


@pytest.mark.parametrize("model, query", [
    (User, {"name": VERBOSE_REDOS}),
    (User, {"name": {"$not": VERBOSE_REDOS}}),
    (PlanetaryInsight, {"recommendations": {"$elemMatch": VERBOSE_REDOS}}),
    (PlanetaryInsight, {"recommendations": {"$not": {"$elemMatch": VERBOSE_REDOS}}}),
    (BirthChart, {"positions": {"$elemMatch": {"sign": VERBOSE_REDOS}}}),
    (User, {"$or": [{"email": "a@example.com"}, {"name": {"$not": VERBOSE_REDOS}}]}),
], ids=["field", "not", "elemMatch-values", "not-elemMatch", "elemMatch-documents", "or-not"])
def test_the_options_of_a_regex_reach_the_regex_policy_at_any_depth(model, query):
    with pytest.raises(QueryError, match="quantifier"):
        compile_filter(model, query)
    # the same pattern without verbose mode is one group and literal spaces: accepted
    assert compile_filter(model, _with_options(query, "i"))


def _with_options(value, options: str):
    """``value`` with every ``$options`` set to ``options``."""
    if isinstance(value, dict):
        return {k: options if k == "$options" else _with_options(v, options) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_options(v, options) for v in value]
    return value


class ReadOnlyQuery(Mapping):
    """A filter that is a Mapping but not a dict (a ``MappingProxyType``, a framework's query
    dict): validated exactly as a dict is."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@pytest.mark.parametrize("wrap", [ReadOnlyQuery, types.MappingProxyType], ids=["mapping", "mappingproxy"])
def test_a_filter_that_is_a_mapping_but_not_a_dict_is_validated_and_compiled(wrap):
    assert compile_filter(BirthChart, wrap({"user_id": HEX})) == {"userId": OID}
    with pytest.raises(QueryError, match=r"\$where is not allowed"):
        compile_filter(User, wrap({"$where": "sleep(1000)"}))
    with pytest.raises(QueryError, match="quantifier"):
        compile_filter(User, wrap({"name": VERBOSE_REDOS}))
    with pytest.raises(QueryError, match="strict query"):
        compile_filter(User, wrap({"email": {"$ne": None}}), strict=True)
    assert compile_filter(User, wrap(nested_and(12)))  # the depth limit counts from the top, as for a dict
    with pytest.raises(QueryError, match="nested deeper than 12"):
        compile_filter(User, wrap(nested_and(13)))


@pytest.mark.parametrize("argument", ["$geometry", "$box", "$polygon", "$center", "$centerSphere"])
def test_a_geo_argument_is_not_a_field_operator(argument):
    """``$box``, ``$geometry``... are arguments of ``$geoWithin`` / ``$near``, refused where a
    field operator is expected (the server would refuse them there too, later)."""
    value = {"type": "Point", "coordinates": [0, 0]} if argument == "$geometry" else [[0, 0], [1, 1]]
    with pytest.raises(QueryError, match=f"unknown or unsupported operator \\{argument} on field 'birthData.location.coordinates'"):
        compile_filter(BirthChart, {"birthData.location.coordinates": {argument: value}})
    within = {"birthData.location.coordinates": {"$geoWithin": {argument: value}}}
    assert compile_filter(BirthChart, within) == within


@pytest.mark.parametrize("pattern", [re.compile("(a+) +"), Regex("(a+) +")], ids=["compiled", "bson"])
def test_options_given_beside_a_regex_object_are_judged_with_it(pattern):
    """The server applies ``$options`` to a regex object as to a string: ``x`` beside a compiled
    ``(a+) +`` makes it ``(a+)+``, refused; a regex object's own flags still count."""
    for query in ({"name": {"$regex": pattern, "$options": "x"}}, {"name": {"$not": {"$regex": pattern, "$options": "x"}}}):
        with pytest.raises(QueryError, match="quantifier"):
            compile_filter(User, query)
    assert compile_filter(User, {"name": {"$regex": pattern, "$options": "i"}}) == {"name": {"$regex": pattern, "$options": "i"}}
    assert compile_filter(User, {"name": {"$regex": pattern}}) == {"name": {"$regex": pattern}}
    with pytest.raises(QueryError, match="quantifier"):
        compile_filter(User, {"name": {"$regex": re.compile("(a+) +", re.X), "$options": "i"}})


# Every refusal names the field it is about (the messages a caller reads to fix the query)

EXPONENTIAL = ("is refused: a repeated group that itself holds a quantifier (like (a+)+) (the regex policy refuses "
               "what can make matching take exponential time); match a prefix (^abc) or a simpler pattern")


@pytest.mark.parametrize("query", [
    {"name": re.compile(r"(a+)+$")},
    {"name": Regex(r"(a+)+$")},
    {"name": {"$regex": re.compile(r"(a+)+$")}},
    {"name": {"$regex": Regex(r"(a+)+$")}},
], ids=["pattern", "bson-regex", "$regex-pattern", "$regex-bson-regex"])
def test_a_refused_regex_object_names_its_field(query):
    with pytest.raises(QueryError) as caught:
        compile_filter(User, query)
    assert str(caught.value) == f"regex on 'name' {EXPONENTIAL}"


def test_a_forbidden_key_inside_an_object_value_names_the_field_it_is_in():
    with pytest.raises(QueryError) as caught:
        compile_filter(BirthChart, {"birthData": {"location": {"a.b": 1}}})
    assert str(caught.value) == "field 'birthData': key 'a.b' is not allowed in a value"


def test_a_bad_id_names_its_field_on_the_first_call_of_a_shape_and_on_later_ones():
    compile_filter(BirthChart, {"userId": HEX})  # the shape is planned after a clean call
    for _ in range(2):
        with pytest.raises(ValidationError) as caught:
            compile_filter(BirthChart, {"userId": "not-an-id"})
        assert caught.value.errors == {"userId": "not a valid ObjectId (24 hex characters), got 'not-an-id'"}


def test_a_string_compared_with_a_field_that_is_no_email_keeps_its_case():
    for _ in range(2):  # the first call of the shape compiles it, the second uses its plan
        assert compile_filter(User, {"name": "Ann Example"}) == {"name": "Ann Example"}
        assert compile_filter(User, {"status": "Active"}) == {"status": "Active"}
    assert compile_filter(User, {"email": "Ann@Example.COM"}) == {"email": "ann@example.com"}


def test_a_bad_key_in_stored_data_is_named():
    with pytest.raises(ValidationError) as caught:
        check_document_keys({"a": {"b.c": 1}})
    assert caught.value.errors == {"__all__": "key 'b.c' is not allowed in stored data"}
