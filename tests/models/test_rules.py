"""Every model rule accepts its edge-good value and rejects its edge-bad one, naming field and value."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from astro_db.errors import ValidationError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.codec import encode_new

from .samples import chart_input, insight_input, me_errors, timing_input, user_input


def _set(data, path, value):
    data = copy.deepcopy(data)
    target = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    target[int(last) if last.isdigit() else last] = value
    return data


_SOON = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
_RECENT = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()

# (model, base input, attribute path, good value, bad value, stored error key, text the message must contain)
RULES = [
    (User, user_input(), "email", "a@b.co", "a@b", "email", "'a@b'"),
    (User, user_input(), "name", "x" * 100, "x" * 101, "name", "101"),
    (User, user_input(), "name", "A", "", "name", "''"),
    (User, user_input(), "status", "deleted", "gone", "status", "'gone'"),
    (User, user_input(), "last_active", "2024-01-01", "01/02/2024", "lastActive", "'01/02/2024'"),
    (BirthChart, chart_input(), "user_id", "65f0c0ffee0000000000abcd", "65f0c0ffee0000000000abcz", "userId",
     "65f0c0ffee0000000000abcz"),
    (BirthChart, chart_input(), "birth_data.date", "1800-01-01T00:00:00Z", "1799-12-31T23:59:59Z",
     "birthData.date", "1799-12-31T23:59:59"),
    (BirthChart, chart_input(), "birth_data.date", _RECENT, _SOON, "birthData.date", "future"),
    (BirthChart, chart_input(), "birth_data.timezone", "America/Argentina/Buenos_Aires", "EST5EDT_X",
     "birthData.timezone", "'EST5EDT_X'"),
    (BirthChart, chart_input(), "birth_data.location.coordinates", [180, -90], [180.01, 0],
     "birthData.location.coordinates", "180.01"),
    (BirthChart, chart_input(), "birth_data.location.coordinates", [-180, 90], [0, 90.5],
     "birthData.location.coordinates", "90.5"),
    (BirthChart, chart_input(), "positions.0.body", "SOUTH node", "Earth", "positions.0.body", "'Earth'"),
    (BirthChart, chart_input(), "positions.0.sign", "capricorn", "Capricornus", "positions.0.sign", "'Capricornus'"),
    (BirthChart, chart_input(), "positions.0.degree", 0, -1e-9, "positions.0.degree", "-1e-09"),
    (BirthChart, chart_input(), "positions.0.degree", 29.999999, 30.0, "positions.0.degree", "30.0"),
    (BirthChart, chart_input(), "positions.0.house", 12, 13, "positions.0.house", "13"),
    (BirthChart, chart_input(), "positions.0.house", 1, 0, "positions.0.house", "0"),
    (BirthChart, chart_input(), "positions.0.retrograde", True, 1, "positions.0.retrograde", "1"),
    (BirthChart, chart_input(), "positions.1.body", "Mars", "Sun", "positions", "'Sun'"),
    (BirthChart, chart_input(), "house_system", "whole-sign", "whole sign", "houseSystem", "'whole sign'"),
    (PlanetaryInsight, insight_input(), "energy_level", 100, 100.5, "energyLevel", "100.5"),
    (PlanetaryInsight, insight_input(), "energy_level", 0, -0.5, "energyLevel", "-0.5"),
    (PlanetaryInsight, insight_input(), "energy_level", 50.25, False, "energyLevel", "False"),
    (PlanetaryInsight, insight_input(), "recommendations", ["a"] * 20, ["a"] * 21, "recommendations", "21"),
    (PlanetaryInsight, insight_input(), "recommendations", ["a"], [], "recommendations", "0"),
    (PlanetaryInsight, insight_input(), "recommendations.0", "x" * 500, "x" * 501, "recommendations.0", "501"),
    (PlanetaryInsight, insight_input(), "recommendations.0", " a ", " \t", "recommendations.0", "''"),
    (PlanetaryInsight, insight_input(), "summary", "s" * 2000, "s" * 2001, "summary", "2001"),
    (PlanetaryInsight, insight_input(), "expires_at", "2030-01-01T00:00:00+05:30", "2030-13-01",
     "expiresAt", "'2030-13-01'"),
    (TimingRecommendation, timing_input(), "activity", "a" * 100, "a" * 101, "activity", "101"),
    (TimingRecommendation, timing_input(), "windows.0.score", 100, 100.1, "windows.0.score", "100.1"),
    (TimingRecommendation, timing_input(), "windows.0.end", "2024-03-01T09:00:01Z", "2024-03-01T09:00:00Z",
     "windows", "2024-03-01T09:00:00.000Z"),
    (TimingRecommendation, timing_input(), "windows.1.start", "2024-03-01T11:00:00Z", "2024-03-01T10:59:59Z",
     "windows", "overlap"),
    (TimingRecommendation, timing_input(), "risks.0.level", "medium", "Medium", "risks.0.level", "'Medium'"),
    (TimingRecommendation, timing_input(), "risks.0.description", "d", "", "risks.0.description", "''"),
]
# the ids name the time-relative values, not their text: every pytest-xdist worker (and a re-run)
# must collect the same ids, and the clock moves between collections
_SHOWN = {_SOON: "'in two days'", _RECENT: "'a minute ago'"}
IDS = [f"{m.__name__}-{path}-{_SHOWN.get(bad, repr(bad)) if isinstance(bad, str) else bad!r}"[:60]
       for m, _, path, _, bad, _, _ in RULES]


@pytest.mark.parametrize("model,base,path,good,bad,key,shown", RULES, ids=IDS)
def test_rule_accepts_the_edge_good_value(model, base, path, good, bad, key, shown):
    data = _set(base, path, good)
    encode_new(model, data)
    assert me_errors(model, data) == {}


@pytest.mark.parametrize("model,base,path,good,bad,key,shown", RULES, ids=IDS)
def test_rule_rejects_the_edge_bad_value_naming_field_and_value(model, base, path, good, bad, key, shown):
    data = _set(base, path, bad)
    with pytest.raises(ValidationError) as caught:
        encode_new(model, data)
    assert list(caught.value.errors) == [key]
    assert shown in caught.value.errors[key]
    assert str(caught.value).startswith(f"{key}: ")
    assert me_errors(model, data) == caught.value.errors


def test_email_is_stored_stripped_and_lower_cased():
    assert encode_new(User, user_input(email="  Ann.Lee@Example.COM "))["email"] == "ann.lee@example.com"
    assert User(**user_input(email=" X@Y.Org")).email == "x@y.org"


def test_name_is_stripped_before_the_length_check():
    assert encode_new(User, user_input(name="  " + "x" * 100 + " "))["name"] == "x" * 100


def test_status_defaults_to_active_and_version_to_zero():
    stored = encode_new(User, user_input())
    assert stored["status"] == "active" and stored["__v"] == 0


def test_house_system_defaults_to_placidus_and_retrograde_to_false():
    stored = encode_new(BirthChart, chart_input(house_system=None))
    assert stored["houseSystem"] == "placidus"
    assert stored["positions"][0]["retrograde"] is False


@pytest.mark.parametrize("text,expected", [
    ("2024-03-01", datetime(2024, 3, 1, tzinfo=timezone.utc)),
    ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
    ("2024-03-01T10:00:00.123Z", datetime(2024, 3, 1, 10, 0, 0, 123000, tzinfo=timezone.utc)),
    ("2024-03-01T12:00:00+02:00", datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
    ("2024-03-01T05:00:00-05:00", datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
    ("2024-03-01T10:00:00", datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
])
def test_iso_strings_are_coerced_to_aware_utc(text, expected):
    stored = encode_new(PlanetaryInsight, insight_input(date=text))
    assert stored["date"] == expected
    assert stored["date"].utcoffset() == timedelta(0)


def test_naive_datetimes_are_utc_and_aware_ones_are_converted():
    naive = encode_new(PlanetaryInsight, insight_input(date=datetime(2024, 1, 1, 9)))
    aware = encode_new(PlanetaryInsight, insight_input(
        date=datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=1)))))
    assert naive["date"] == aware["date"] == datetime(2024, 1, 1, 9, tzinfo=timezone.utc)


def test_geo_point_list_form_is_stored_as_geojson():
    stored = encode_new(BirthChart, _set(chart_input(), "birth_data.location.coordinates", [2.35, 48.86]))
    assert stored["birthData"]["location"]["coordinates"] == {"type": "Point", "coordinates": [2.35, 48.86]}


def test_location_name_is_declared_sensitive():
    from astro_db.models.embedded import Location

    assert Location._fields["name"].sensitive is True


def test_user_ref_accepts_a_saved_user_instance():
    from bson import ObjectId

    user = User(**user_input())
    user.id = ObjectId()
    assert encode_new(BirthChart, chart_input(user_id=user))["userId"] == user.id


def test_a_utc_datetime_is_passed_through_and_others_are_converted_to_utc():
    import datetime as dt

    from astro_db.models.fields import to_utc

    utc = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert to_utc(utc) is utc  # no conversion, no copy
    paris = dt.datetime(2026, 12, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert to_utc(paris) == utc and to_utc(paris).tzinfo is dt.timezone.utc
    assert to_utc(dt.datetime(2026, 12, 1, 12, 0)) == utc  # naive means UTC
    assert to_utc("2026-12-01T12:00:00Z") == utc
