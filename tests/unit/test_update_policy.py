"""Update validation as a specification: the accepted operators and what each compiles to, the
guards ``$inc`` needs, what is refused, and a few of them carried out on the embedded backend."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from bson import ObjectId

from astro_db.errors import QueryError, ValidationError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.query.updates import CompiledUpdate, compile_update

from .security_data import chart_data, user_data

JAN_1 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_a_plain_dict_is_a_set_of_validated_stored_values():
    assert compile_update(User, {"name": "Bo", "last_active": "2026-01-01T00:00:00Z"}) == CompiledUpdate(
        {"$set": {"name": "Bo", "lastActive": JAN_1}}, ["name", "lastActive"], {}, ())


def test_unset_of_an_optional_field_compiles_to_an_empty_value():
    assert compile_update(PlanetaryInsight, {"$unset": {"summary": 1}}) == CompiledUpdate(
        {"$unset": {"summary": ""}}, ["summary"], {}, ())


def test_unset_of_a_required_field_is_refused():
    with pytest.raises(ValidationError, match="energyLevel: is required and cannot be unset"):
        compile_update(PlanetaryInsight, {"$unset": {"energy_level": ""}})


def test_inc_on_a_bounded_field_guards_both_bounds_of_the_result():
    assert compile_update(PlanetaryInsight, {"$inc": {"energy_level": 5}}) == CompiledUpdate(
        {"$inc": {"energyLevel": 5}}, ["energyLevel"], {"energyLevel": {"$lte": 95, "$gte": -5}}, ())
    assert compile_update(PlanetaryInsight, {"$inc": {"energy_level": -7.5}}).guards == {
        "energyLevel": {"$lte": 107.5, "$gte": 7.5}}


def test_inc_inside_a_list_is_left_to_the_post_image_check():
    compiled = compile_update(BirthChart, {"$inc": {"positions.0.degree": 2}})
    assert (compiled.guards, compiled.list_roots, compiled.touches_lists) == ({}, ("positions",), True)


@pytest.mark.parametrize("model, update", [
    (PlanetaryInsight, {"$inc": {"energy_level": True}}),
    (PlanetaryInsight, {"$inc": {"energy_level": "5"}}),
    (PlanetaryInsight, {"$inc": {"summary": 1}}),
    (TimingRecommendation, {"$inc": {"windows": 1}}),
])
def test_inc_needs_a_number_field_and_a_number(model, update):
    with pytest.raises(ValidationError, match=r"\$inc needs a number field and a number"):
        compile_update(model, update)


def test_push_and_add_to_set_encode_items_and_mark_the_list():
    compiled = compile_update(PlanetaryInsight, {"$push": {"recommendations": {"$each": ["Rest", "Walk"]}}})
    assert compiled.update == {"$push": {"recommendations": {"$each": ["Rest", "Walk"]}}}
    assert (compiled.list_roots, compiled.guards) == (("recommendations",), {})
    compiled = compile_update(PlanetaryInsight, {"$addToSet": {"recommendations": "Sleep"}})
    assert (compiled.update, compiled.list_roots) == ({"$addToSet": {"recommendations": "Sleep"}}, ("recommendations",))


def test_pull_takes_a_value_an_operator_condition_or_a_condition_on_item_fields():
    assert compile_update(PlanetaryInsight, {"$pull": {"recommendations": "Rest"}}).update == {
        "$pull": {"recommendations": "Rest"}}
    assert compile_update(PlanetaryInsight, {"$pull": {"recommendations": {"$in": ["Rest"]}}}).update == {
        "$pull": {"recommendations": {"$in": ["Rest"]}}}
    compiled = compile_update(TimingRecommendation, {"$pull": {"windows": {"start": {"$lt": "2026-01-01T00:00:00Z"}}}})
    assert compiled.update == {"$pull": {"windows": {"start": {"$lt": JAN_1}}}}
    assert compiled.list_roots == ("windows",)


@pytest.mark.parametrize("update", [
    {"$pull": {"windows": {"start": {"$where": "1"}}}},
    {"$pull": {"recommendations": {"$where": "1"}}},
    {"$pull": {"windows": {"$expr": {"$eq": [1, 1]}}}},
])
def test_pull_conditions_are_held_to_the_query_policy(update):
    with pytest.raises(QueryError, match="not allowed"):
        compile_update(TimingRecommendation if "windows" in update["$pull"] else PlanetaryInsight, update)


@pytest.mark.parametrize("op", ["$push", "$addToSet", "$pull"])
def test_list_operators_need_a_list_field(op):
    with pytest.raises(ValidationError, match=f"summary: \\{op} needs a list field"):
        compile_update(PlanetaryInsight, {op: {"summary": "x"}})


@pytest.mark.parametrize("value", [{"$each": "Rest"}, {"$each": ["Rest"], "$slice": 1}])
def test_push_each_takes_only_a_list(value):
    with pytest.raises(QueryError, match=r"takes a value or \{'\$each': \[values\]\}"):
        compile_update(PlanetaryInsight, {"$push": {"recommendations": value}})


@pytest.mark.parametrize("value, shown", [
    ("x" * 57, "str '" + "x" * 57 + "'"),  # a repr of 59 characters is shown whole
    ("x" * 58, "str '" + "x" * 56 + "..."),  # from 60 on, its first 57 and an ellipsis
    (list(range(40)), "list [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16..."),
], ids=["59", "60", "list"])
def test_a_refused_update_shows_a_short_description_of_what_it_got(value, shown):
    with pytest.raises(QueryError) as raised:
        compile_update(User, value)
    assert str(raised.value) == f"an update must be a non-empty dict, got {shown}"


def test_mixing_operators_and_fields_is_refused_with_one_exact_message():
    with pytest.raises(QueryError) as raised:
        compile_update(User, {"$set": {"name": "x"}, "name": "y"})
    assert str(raised.value) == "an update mixes operators ($set ...) and plain fields; use one form"


def test_every_invalid_value_is_reported_at_once():
    with pytest.raises(ValidationError) as raised:
        compile_update(PlanetaryInsight, {"$set": {"energy_level": 500}, "$inc": {"summary": 1}})
    assert set(raised.value.errors) == {"energyLevel", "summary"}


@pytest.mark.parametrize("update, message", [
    ({}, "an update must be a non-empty dict, got dict {}"),
    ([("name", "x")], "an update must be a non-empty dict, got list"),
    ({"$set": {"name": "x"}, "name": "y"}, "mixes operators"),
    ({"$rename": {"name": "n"}}, "update operator $rename is not allowed; use $addToSet, $inc, $pull, $push, $set, $unset"),
    ({"$where": {"name": "n"}}, "$where is not allowed"),
    ({"$set": {}}, "$set takes a non-empty dict"),
    ({"$set": [("name", "x")]}, "$set takes a non-empty dict"),
    ({"$set": {"$where": "x"}}, "$set: '$where' is not a field name"),
    ({"$set": {1: "x"}}, "$set: 1 is not a field name"),
    ({"$set": {"nope": 1}}, "nope"),
])
def test_a_malformed_update_is_refused(update, message):
    with pytest.raises(QueryError, match=re.escape(message)):
        compile_update(User, update)


@pytest.mark.parametrize("name", ["id", "_id"])
@pytest.mark.parametrize("op", ["$set", "$unset", "$inc"])
def test_the_id_cannot_be_changed(name, op):
    with pytest.raises(QueryError, match=re.escape(f"{op}: field '_id' is the document's identity and cannot be changed")):
        compile_update(User, {op: {name: 1}})


@pytest.mark.parametrize("name", ["created_at", "createdAt", "updated_at", "updatedAt", "__v"])
@pytest.mark.parametrize("op", ["$set", "$unset", "$inc"])
def test_fields_kept_by_the_service_cannot_be_changed(name, op):
    with pytest.raises(ValidationError, match=re.escape(f"is set by the service; leave it out ({op} refused)")):
        compile_update(User, {op: {name: 1}})


# --- carried out -----------------------------------------------------------------------------


@pytest.fixture
def insight(db):
    user = db.create("User", user_data())
    return db.create("PlanetaryInsight", {"userId": user.id, "date": JAN_1, "energyLevel": 5,
                                          "recommendations": ["Rest"], "summary": "calm"})


def test_a_successful_unset_removes_the_field(db, insight):
    assert db.update("PlanetaryInsight", {"id": insight.id}, {"$unset": {"summary": ""}}).summary is None
    assert "summary" not in db.mongo["planetaryInsights"].find_one({"_id": insight.id})


def test_an_inc_below_the_lower_bound_is_refused_and_changes_nothing(db, insight):
    with pytest.raises(ValidationError, match="energyLevel"):
        db.update("PlanetaryInsight", {"id": insight.id}, {"$inc": {"energyLevel": -6}})
    assert db.mongo["planetaryInsights"].find_one({"_id": insight.id})["energyLevel"] == 5
    assert db.update("PlanetaryInsight", {"id": insight.id}, {"$inc": {"energyLevel": -5}}).energy_level == 0


def test_an_inc_above_the_upper_bound_is_refused(db, insight):
    with pytest.raises(ValidationError, match="energyLevel"):
        db.update("PlanetaryInsight", {"id": insight.id}, {"$inc": {"energyLevel": 96}})
    assert db.update("PlanetaryInsight", {"id": insight.id}, {"$inc": {"energyLevel": 95}}).energy_level == 100


def test_a_valid_push_with_each_appends_every_item(db, insight):
    updated = db.update("PlanetaryInsight", {"id": insight.id}, {"$push": {"recommendations": {"$each": ["Walk", "Read"]}}})
    assert updated.recommendations == ["Rest", "Walk", "Read"]


def test_a_pull_on_item_fields_removes_matching_items(db):
    user = db.create("User", user_data())
    chart = db.create("BirthChart", chart_data(user.id, positions=[
        {"body": "Sun", "sign": "Leo", "degree": 1}, {"body": "Moon", "sign": "Leo", "degree": 2}]))
    updated = db.update("BirthChart", {"id": chart.id}, {"$pull": {"positions": {"body": "Sun"}}})
    assert [p.body for p in updated.positions] == ["Moon"]
    assert ObjectId.is_valid(str(updated.id))


# --- exact refusals and depth of $pull conditions ---------------------------------------------


@pytest.mark.parametrize("model, update, message", [
    (BirthChart, {"$set": {"positions.1.body": "Sun"}, "$unset": {"positions.1": ""}},
     "$unset 'positions.1' and $set 'positions.1.body' change the same field; split them into two updates"),
    (BirthChart, {"$pull": {"positions": {"$or": [{"body": "Sun"}]}}},
     "$pull on 'positions': a condition of only $and/$or/$nor is not supported (backends disagree on it); "
     "name a field, e.g. {'body': {'$in': ['Sun', 'Moon']}}"),
    (PlanetaryInsight, {"$pull": {"recommendations": {"$size": 1}}},
     "$pull on 'recommendations': operator $size is not supported in a condition; use $and, $elemMatch, $eq, "
     "$exists, $gt, $gte, $in, $lt, $lte, $ne, $nin, $nor, $not, $or, $regex"),
], ids=["overlap", "only-logical", "unsupported-operator"])
def test_refused_updates_say_exactly_why(model, update, message):
    with pytest.raises(QueryError) as raised:
        compile_update(model, update)
    assert str(raised.value) == message


def _chain(levels: int) -> dict:
    clause: dict = {"score": 1}
    for _ in range(levels - 1):
        clause = {"$and": [clause]}
    return clause


def test_pull_item_queries_count_their_own_level_towards_the_depth():
    assert compile_update(TimingRecommendation, {"$pull": {"windows": {"score": 2, "$and": [_chain(11)]}}})
    with pytest.raises(QueryError, match="nested deeper than 12 levels"):
        compile_update(TimingRecommendation, {"$pull": {"windows": {"score": 2, "$and": [_chain(12)]}}})


def test_pull_elem_match_conditions_compile_item_fields_within_the_depth():
    compiled = compile_update(TimingRecommendation, {"$pull": {"windows": {"$elemMatch": {"start": {"$lt": "2026-01-01T00:00:00Z"}}}}})
    assert compiled.update == {"$pull": {"windows": {"$elemMatch": {"start": {"$lt": JAN_1}}}}}
    assert compile_update(TimingRecommendation, {"$pull": {"windows": {"$elemMatch": {"score": 2, "$and": [_chain(11)]}}}})
    with pytest.raises(QueryError, match="nested deeper than 12 levels"):
        compile_update(TimingRecommendation, {"$pull": {"windows": {"$elemMatch": {"score": 2, "$and": [_chain(12)]}}}})


def test_a_field_of_every_list_item_without_an_index_is_refused_with_the_forms_to_use():
    with pytest.raises(QueryError) as raised:
        compile_update(BirthChart, {"$set": {"positions.body": "Sun"}})
    assert str(raised.value) == (
        "$set: 'positions.body' names a field of every item of the list 'positions' without saying which; "
        "use a numeric index (positions.1.body) or $[] for every item (positions.$[].body)")


@pytest.mark.parametrize("model, update, errors", [
    (PlanetaryInsight, {"$inc": {"energy_level": "5"}}, {"energyLevel": "$inc needs a number field and a number, got str '5'"}),
    (BirthChart, {"$inc": {"positions.0.house": 1.5}},
     {"positions.0.house": "$inc on an integer field needs an integer, got float 1.5"}),
], ids=["not-a-number", "integer-field"])
def test_inc_refusals_show_the_value_they_got(model, update, errors):
    with pytest.raises(ValidationError) as raised:
        compile_update(model, update)
    assert raised.value.errors == errors


def test_inc_by_a_float_is_allowed_on_a_field_that_is_not_integer_only():
    assert compile_update(PlanetaryInsight, {"$inc": {"energy_level": 1.5}}).update == {"$inc": {"energyLevel": 1.5}}


@pytest.mark.parametrize("logical", ["$and", "$or", "$nor"])
def test_a_pull_condition_of_only_logical_operators_is_refused_whichever_it_is(logical):
    with pytest.raises(QueryError, match="a condition of only [$]and/[$]or/[$]nor is not supported"):
        compile_update(BirthChart, {"$pull": {"positions": {logical: [{"body": "Sun"}]}}})


@pytest.mark.parametrize("logical", ["$and", "$or", "$nor"])
def test_a_pull_condition_puts_field_conditions_before_each_logical_operator(logical):
    compiled = compile_update(BirthChart, {"$pull": {"positions": {logical: [{"sign": "Leo"}], "body": "Sun"}}})
    assert list(compiled.update["$pull"]["positions"]) == ["body", logical]


def test_a_pull_regex_condition_may_carry_its_options():
    update = {"$pull": {"recommendations": {"$regex": "^r", "$options": "i"}}}
    assert compile_update(PlanetaryInsight, update).update == update


def test_a_list_inside_an_embedded_document_is_named_by_its_whole_path():
    """An app's model may keep a list inside an embedded document: the refusal names that list
    by its whole path, not by its first part."""
    from mongoengine import Document, EmbeddedDocument, EmbeddedDocumentField, ListField, StringField

    class Item(EmbeddedDocument):
        name = StringField()

    class Profile(EmbeddedDocument):
        items = ListField(EmbeddedDocumentField(Item))

    class Card(Document):
        meta = {"collection": "updatePolicyCards"}
        profile = EmbeddedDocumentField(Profile)

    with pytest.raises(QueryError) as raised:
        compile_update(Card, {"$set": {"profile.items.name": "x"}})
    assert str(raised.value) == (
        "$set: 'profile.items.name' names a field of every item of the list 'profile.items' without saying which; "
        "use a numeric index (positions.1.body) or $[] for every item (positions.$[].body)")
