"""encode_new / encode_value: spelling, coercion, unknown fields, single-value updates, junk input."""

from __future__ import annotations

import pytest
from bson import ObjectId
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db.errors import QueryError, ValidationError
from astro_db.models import MODELS, BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.codec import encode_new, encode_value

from .samples import UID, chart_input, insight_input, user_input, utc


def test_encode_new_accepts_stored_names_and_attribute_names_alike():
    by_attr = encode_new(PlanetaryInsight, insight_input())
    by_stored = encode_new(PlanetaryInsight, {"userId": str(UID), "date": "2024-03-01", "energyLevel": 72,
                                              "recommendations": ["Take a walk", "Call a friend"],
                                              "summary": "A bright day."})
    assert by_attr == by_stored


def test_encode_new_returns_bson_ready_stored_form_with_defaults():
    stored = encode_new(User, user_input())
    assert stored == {"__v": 0, "email": "ann@example.com", "name": "Ann", "status": "active"}


def test_encode_new_converts_iso_strings_and_hex_ids():
    stored = encode_new(BirthChart, chart_input())
    assert stored["userId"] == UID
    assert stored["birthData"]["date"] == utc(1990, 5, 17, 8, 30)
    assert stored["birthData"]["date"].tzinfo is not None
    assert stored["houseSystem"] == "placidus"


def test_encode_new_keeps_an_explicit_id_only():
    assert "_id" not in encode_new(User, user_input())
    oid = ObjectId()
    assert encode_new(User, user_input(id=str(oid)))["_id"] == oid
    assert encode_new(User, {**user_input(), "_id": oid})["_id"] == oid


def test_encode_new_canonicalises_body_and_sign_spelling():
    stored = encode_new(BirthChart, chart_input(positions=[{"body": "north NODE", "sign": "sagittarius", "degree": 1}]))
    assert stored["positions"][0]["body"] == "North Node"
    assert stored["positions"][0]["sign"] == "Sagittarius"


def test_encode_new_rejects_unknown_fields_naming_them():
    with pytest.raises(ValidationError) as caught:
        encode_new(User, user_input(nickname="A", role="x"))
    assert set(caught.value.errors) == {"nickname", "role"}
    assert "unknown field 'nickname'" in caught.value.errors["nickname"]


def test_encode_new_rejects_unknown_nested_fields_by_path():
    data = chart_input()
    data["birth_data"]["planet"] = "Mars"
    with pytest.raises(ValidationError) as caught:
        encode_new(BirthChart, data)
    assert set(caught.value.errors) == {"birthData.planet"}


def test_encode_new_rejects_a_field_given_in_both_spellings():
    with pytest.raises(ValidationError) as caught:
        encode_new(PlanetaryInsight, insight_input(energyLevel=5))
    assert "energyLevel" in caught.value.errors


def test_encode_new_reports_a_non_object_embedded_document_at_its_path():
    with pytest.raises(ValidationError) as caught:
        encode_new(BirthChart, chart_input(birth_data="1990-01-01"))
    assert caught.value.errors == {"birthData": "must be an object, got '1990-01-01'"}


def test_encode_new_rejects_a_non_mapping_document():
    with pytest.raises(ValidationError):
        encode_new(User, ["email"])


def test_encode_new_error_message_names_field_and_value():
    with pytest.raises(ValidationError) as caught:
        encode_new(PlanetaryInsight, insight_input(energy_level=150))
    assert str(caught.value) == "energyLevel: must be 0-100, got 150"


# --- encode_value ------------------------------------------------------------------------------


def test_encode_value_converts_a_set_value_in_either_spelling():
    assert encode_value(PlanetaryInsight, "energyLevel", 85) == 85
    assert encode_value(PlanetaryInsight, "energy_level", 85.5) == 85.5
    assert encode_value(User, "email", " Bob@X.COM ") == "bob@x.com"
    assert encode_value(User, "lastActive", "2024-01-01T01:00:00+01:00") == utc(2024, 1, 1)


def test_encode_value_rejects_out_of_range_keyed_by_stored_path():
    with pytest.raises(ValidationError) as caught:
        encode_value(PlanetaryInsight, "energy_level", 150)
    assert caught.value.errors == {"energyLevel": "must be 0-100, got 150"}


def test_encode_value_into_embedded_and_array_positions():
    assert encode_value(BirthChart, "birth_data.timezone", "Asia/Tokyo") == "Asia/Tokyo"
    assert encode_value(BirthChart, "positions.0.degree", 12) == 12
    with pytest.raises(ValidationError) as caught:
        encode_value(BirthChart, "positions.$.degree", 30)
    assert set(caught.value.errors) == {"positions.$.degree"}


def test_encode_value_for_a_whole_list_reruns_the_list_rule():
    windows = [{"start": "2024-01-01T10:00:00Z", "end": "2024-01-01T11:00:00Z"},
               {"start": "2024-01-01T09:00:00Z", "end": "2024-01-01T09:30:00Z"}]
    with pytest.raises(ValidationError) as caught:
        encode_value(TimingRecommendation, "windows", windows)
    assert set(caught.value.errors) == {"windows"}
    stored = encode_value(TimingRecommendation, "windows", list(reversed(windows)))
    assert [w["start"].hour for w in stored] == [9, 10]


def test_encode_value_for_an_embedded_document_checks_all_its_rules():
    with pytest.raises(ValidationError) as caught:
        encode_value(BirthChart, "birthData", {"date": "1700-01-01", "timezone": "Nowhere"})
    assert set(caught.value.errors) == {"birthData.date", "birthData.timezone"}


def test_encode_value_for_item_validates_one_push_item():
    item = encode_value(BirthChart, "positions", {"body": "venus", "sign": "libra", "degree": 4}, for_item=True)
    assert item["body"] == "Venus" and isinstance(item["_id"], ObjectId)
    assert encode_value(PlanetaryInsight, "recommendations", "  Rest ", for_item=True) == "Rest"
    with pytest.raises(ValidationError) as caught:
        encode_value(PlanetaryInsight, "recommendations", "", for_item=True)
    assert set(caught.value.errors) == {"recommendations"}


def test_encode_value_for_item_refuses_a_null_item():
    with pytest.raises(ValidationError) as caught:
        encode_value(BirthChart, "positions", None, for_item=True)
    assert set(caught.value.errors) == {"positions"}


def test_encode_value_for_item_on_a_scalar_field_is_a_query_error():
    with pytest.raises(QueryError):
        encode_value(User, "email", "a@b.co", for_item=True)


def test_encode_value_none_only_for_optional_fields():
    assert encode_value(PlanetaryInsight, "summary", None) is None
    with pytest.raises(ValidationError) as caught:
        encode_value(PlanetaryInsight, "energyLevel", None)
    assert caught.value.errors == {"energyLevel": "Field is required"}


def test_encode_value_unknown_path_is_a_query_error():
    with pytest.raises(QueryError, match="unknown field 'energy' on PlanetaryInsight"):
        encode_value(PlanetaryInsight, "energy", 1)


def test_encode_value_malformed_user_id_is_a_validation_error():
    with pytest.raises(ValidationError) as caught:
        encode_value(BirthChart, "userId", "xyz")
    assert caught.value.errors == {"userId": "not a valid ObjectId: 'xyz'"}


# --- junk never crashes ---------------------------------------------------------------------------

_KEYS = st.sampled_from(["email", "name", "status", "userId", "user_id", "birthData", "birth_data", "positions",
                         "date", "energyLevel", "recommendations", "windows", "risks", "activity", "id", "_id",
                         "expiresAt", "lastActive", "houseSystem", "summary", "__v", "createdAt", "junk", "$set", "a.b"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                     st.datetimes(), st.datetimes(timezones=st.timezones()), st.just("2024-01-01T00:00:00Z"),
                     st.just(str(UID)), st.just(UID), st.binary(max_size=12),
                     st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "Sun", "Aries"]))
_JUNK = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(_KEYS, st.text(max_size=8)), inner, max_size=5)),
    max_leaves=25)


@settings(max_examples=examples(300), deadline=None)
@given(model=st.sampled_from(sorted(MODELS)), data=st.dictionaries(_KEYS, _JUNK, max_size=8))
def test_encode_new_on_junk_raises_only_astro_db_errors_or_succeeds(model, data):
    try:
        encode_new(MODELS[model], data)
    except (ValidationError, QueryError):
        pass


@settings(max_examples=examples(200), deadline=None)
@given(path=st.sampled_from(["energyLevel", "positions", "windows", "birthData", "positions.0", "userId",
                             "recommendations", "birth_data.location", "risks.$.level", "email"]),
       value=_JUNK, for_item=st.booleans())
def test_encode_value_on_junk_raises_only_astro_db_errors_or_succeeds(path, value, for_item):
    model = next(m for m in MODELS.values() if path.split(".")[0] in m._fields or
                 path.split(".")[0] in m._reverse_db_field_map)
    try:
        encode_value(model, path, value, for_item=for_item)
    except (ValidationError, QueryError):
        pass


# --- service fields are the service's ---------------------------------------------------------

@pytest.mark.parametrize("key, stored", [("createdAt", "createdAt"), ("created_at", "createdAt"),
                                         ("updatedAt", "updatedAt"), ("updated_at", "updatedAt"),
                                         ("__v", "__v"), ("version", "__v")])
def test_encode_new_refuses_a_service_field_in_either_spelling(key, stored):
    data = {**user_input(), key: 3 if stored == "__v" else utc(2001, 1, 1)}
    with pytest.raises(ValidationError) as caught:
        encode_new(User, data)
    assert caught.value.errors == {stored: "is set by the service; leave it out"}


def test_encode_new_reports_a_service_field_with_the_other_errors():
    with pytest.raises(ValidationError) as caught:
        encode_new(User, {**user_input(), "email": "nope", "__v": 1})
    assert set(caught.value.errors) == {"email", "__v"}


def test_encode_new_keeps_a_caller_id_for_idempotent_retries():
    assert encode_new(User, {**user_input(), "_id": UID})["_id"] == UID
