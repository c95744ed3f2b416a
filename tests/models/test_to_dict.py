"""to_dict: stored names, string ids at every level, ISO Z dates, no __v; masked variant."""

from __future__ import annotations

import json

import pytest

from astro_db.models import BirthChart, User
from astro_db.models.base import mask_value
from astro_db.models.codec import hydrate
from astro_db.models.masking import field_mask_kind

from .samples import node_chart, node_user


def test_to_dict_uses_stored_names_and_string_ids_at_every_level():
    son = node_chart()
    out = hydrate(BirthChart, son).to_dict()
    assert out["id"] == str(son["_id"])
    assert out["userId"] == str(son["userId"])
    assert out["houseSystem"] == "koch"
    assert [p["id"] for p in out["positions"]] == [str(p["_id"]) for p in son["positions"]]
    assert "_id" not in json.dumps(out) and "__v" not in out


def test_to_dict_dates_are_iso_utc_with_z():
    out = hydrate(User, node_user()).to_dict()
    assert out["lastActive"] == "2024-02-02T00:00:00.000Z"
    assert out["createdAt"] == "2023-01-01T00:00:00.000Z"


def test_to_dict_geojson_and_nested_values_are_json_ready():
    out = hydrate(BirthChart, node_chart()).to_dict()
    assert out["birthData"]["location"]["coordinates"] == {"type": "Point", "coordinates": [-71.06, 42.36]}
    json.dumps(out)


def test_to_dict_omits_fields_without_a_value():
    out = User(email="a@b.co", name="Ann").to_dict()
    assert out == {"email": "a@b.co", "name": "Ann", "status": "active"}


def test_masked_to_dict_masks_email_name_and_sensitive_fields():
    user = hydrate(User, node_user()).to_dict(masked=True)
    assert user["email"] == "b***@example.com"
    assert user["name"] == "B***"
    chart = hydrate(BirthChart, node_chart()).to_dict(masked=True)
    assert chart["birthData"]["location"]["name"] == "***"
    assert chart["birthData"]["timezone"] == "America/New_York"
    json.dumps(chart)


@pytest.mark.parametrize("kind,value,expected", [
    ("email", "ann@example.com", "a***@example.com"),
    ("email", "not-an-email", "***"),
    ("name", "Ann", "A***"),
    ("name", "", "***"),
    ("secret", "Paris", "***"),
    ("secret", None, None),
])
def test_mask_value_is_a_pure_function(kind, value, expected):
    assert mask_value(kind, value) == expected


def test_field_mask_kinds_are_declared_on_fields():
    from astro_db.models.embedded import Location

    assert field_mask_kind(User._fields["email"]) == "email"
    assert field_mask_kind(User._fields["name"]) == "name"
    assert field_mask_kind(Location._fields["name"]) == "secret"
    assert field_mask_kind(User._fields["status"]) is None
