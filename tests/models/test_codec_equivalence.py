"""encode_new applies exactly MongoEngine's rules: same failing fields, same messages, same output."""

from __future__ import annotations

import copy

import pytest

from astro_db.errors import ValidationError
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.codec import encode_new

from .samples import chart_input, insight_input, me_errors, strip_sub_ids, timing_input, user_input


def _chart_birth(**over):
    data = chart_input()
    data["birth_data"] = {**data["birth_data"], **over}
    return data


def _chart_position(index, **over):
    data = chart_input()
    data["positions"][index] = {**data["positions"][index], **over}
    return data


def _window(index, **over):
    data = timing_input()
    data["windows"][index] = {**data["windows"][index], **over}
    return data


# (case id, model, input, the stored paths that must fail)
INVALID = [
    ("user-email-missing", User, {"name": "Ann"}, {"email"}),
    ("user-email-syntax", User, user_input(email="ann@"), {"email"}),
    ("user-email-not-string", User, user_input(email=42), {"email"}),
    ("user-name-blank", User, user_input(name="   "), {"name"}),
    ("user-name-101", User, user_input(name="x" * 101), {"name"}),
    ("user-status", User, user_input(status="banned"), {"status"}),
    ("user-last-active-junk", User, user_input(last_active="yesterday"), {"lastActive"}),
    ("user-bad-id", User, user_input(id="nope"), {"_id"}),
    ("chart-user-missing", BirthChart, {k: v for k, v in chart_input().items() if k != "user_id"}, {"userId"}),
    ("chart-user-malformed", BirthChart, chart_input(user_id="12345"), {"userId"}),
    ("chart-birth-missing", BirthChart, {k: v for k, v in chart_input().items() if k != "birth_data"}, {"birthData"}),
    ("chart-date-future", BirthChart, _chart_birth(date="2999-01-01T00:00:00Z"), {"birthData.date"}),
    ("chart-date-1799", BirthChart, _chart_birth(date="1799-12-31T23:59:59Z"), {"birthData.date"}),
    ("chart-date-garbage", BirthChart, _chart_birth(date="not a date"), {"birthData.date"}),
    ("chart-date-missing", BirthChart, _chart_birth(date=None), {"birthData.date"}),
    ("chart-timezone", BirthChart, _chart_birth(timezone="Mars/Olympus_Mons"), {"birthData.timezone"}),
    ("chart-timezone-missing", BirthChart, _chart_birth(timezone=None), {"birthData.timezone"}),
    ("chart-lng", BirthChart, _chart_birth(location={"coordinates": [181, 0]}), {"birthData.location.coordinates"}),
    ("chart-lat", BirthChart, _chart_birth(location={"coordinates": {"type": "Point", "coordinates": [0, -90.5]}}),
     {"birthData.location.coordinates"}),
    ("chart-point-type", BirthChart, _chart_birth(location={"coordinates": {"type": "Line", "coordinates": [0, 0]}}),
     {"birthData.location.coordinates"}),
    ("chart-location-name-long", BirthChart, _chart_birth(location={"name": "x" * 201}), {"birthData.location.name"}),
    ("chart-body", BirthChart, _chart_position(0, body="Vulcan"), {"positions.0.body"}),
    ("chart-sign", BirthChart, _chart_position(1, sign="Ophiuchus"), {"positions.1.sign"}),
    ("chart-degree-30", BirthChart, _chart_position(0, degree=30), {"positions.0.degree"}),
    ("chart-degree-negative", BirthChart, _chart_position(0, degree=-0.01), {"positions.0.degree"}),
    ("chart-degree-bool", BirthChart, _chart_position(0, degree=True), {"positions.0.degree"}),
    ("chart-house-0", BirthChart, _chart_position(0, house=0), {"positions.0.house"}),
    ("chart-house-13", BirthChart, _chart_position(1, house=13), {"positions.1.house"}),
    ("chart-house-float", BirthChart, _chart_position(1, house=2.5), {"positions.1.house"}),
    ("chart-retrograde", BirthChart, _chart_position(1, retrograde="yes"), {"positions.1.retrograde"}),
    ("chart-body-twice", BirthChart, _chart_position(1, body="sun"), {"positions"}),
    ("chart-positions-not-list", BirthChart, chart_input(positions="Sun"), {"positions"}),
    ("chart-house-system", BirthChart, chart_input(house_system="vedic"), {"houseSystem"}),
    ("chart-many", BirthChart, _chart_position(0, degree=31, sign="Nope", body=None),
     {"positions.0.degree", "positions.0.sign", "positions.0.body"}),
    ("insight-user-missing", PlanetaryInsight, {k: v for k, v in insight_input().items() if k != "user_id"}, {"userId"}),
    ("insight-date-missing", PlanetaryInsight, insight_input(date=None), {"date"}),
    ("insight-energy-150", PlanetaryInsight, insight_input(energy_level=150), {"energyLevel"}),
    ("insight-energy-negative", PlanetaryInsight, insight_input(energy_level=-1), {"energyLevel"}),
    ("insight-energy-string", PlanetaryInsight, insight_input(energy_level="70"), {"energyLevel"}),
    ("insight-energy-missing", PlanetaryInsight, insight_input(energy_level=None), {"energyLevel"}),
    ("insight-recs-empty", PlanetaryInsight, insight_input(recommendations=[]), {"recommendations"}),
    ("insight-recs-missing", PlanetaryInsight, insight_input(recommendations=None), {"recommendations"}),
    ("insight-recs-21", PlanetaryInsight, insight_input(recommendations=["ok"] * 21), {"recommendations"}),
    ("insight-rec-blank", PlanetaryInsight, insight_input(recommendations=["ok", "  "]), {"recommendations.1"}),
    ("insight-rec-501", PlanetaryInsight, insight_input(recommendations=["x" * 501]), {"recommendations.0"}),
    ("insight-rec-number", PlanetaryInsight, insight_input(recommendations=[3]), {"recommendations.0"}),
    ("insight-summary-2001", PlanetaryInsight, insight_input(summary="x" * 2001), {"summary"}),
    ("insight-expires-junk", PlanetaryInsight, insight_input(expires_at="soon"), {"expiresAt"}),
    ("timing-activity-missing", TimingRecommendation, timing_input(activity=None), {"activity"}),
    ("timing-activity-101", TimingRecommendation, timing_input(activity="a" * 101), {"activity"}),
    ("timing-score-101", TimingRecommendation, _window(0, score=101), {"windows.0.score"}),
    ("timing-start-missing", TimingRecommendation, _window(1, start=None), {"windows.1.start"}),
    ("timing-start-after-end", TimingRecommendation,
     _window(0, start="2024-03-01T11:00:00Z", end="2024-03-01T10:00:00Z"), {"windows"}),
    ("timing-unsorted", TimingRecommendation,
     _window(1, start="2024-03-01T07:00:00Z", end="2024-03-01T08:00:00Z"), {"windows"}),
    ("timing-overlap", TimingRecommendation, _window(1, start="2024-03-01T10:59:00Z"), {"windows"}),
    ("timing-risk-level", TimingRecommendation, timing_input(risks=[{"level": "extreme", "description": "x"}]),
     {"risks.0.level"}),
    ("timing-risk-description", TimingRecommendation, timing_input(risks=[{"level": "low", "description": " "}]),
     {"risks.0.description"}),
    ("timing-risk-description-missing", TimingRecommendation, timing_input(risks=[{"level": "low"}]),
     {"risks.0.description"}),
]

VALID = [
    ("user", User, user_input()),
    ("user-with-id", User, user_input(id="65f0c0ffee0000000000beef", status="suspended")),
    ("chart", BirthChart, chart_input()),
    ("chart-edges", BirthChart, chart_input(
        birth_data={"date": "1800-01-01", "timezone": "UTC", "location": {"coordinates": [-180, 90]}},
        positions=[{"body": "north node", "sign": "PISCES", "degree": 29.999, "house": 12},
                   {"body": "Midheaven", "sign": "aries", "degree": 0}])),
    ("insight", PlanetaryInsight, insight_input()),
    ("insight-edges", PlanetaryInsight, insight_input(energy_level=100.0, recommendations=["x" * 500] * 20,
                                                      expires_at="2024-04-01T00:00:00+02:00")),
    ("timing", TimingRecommendation, timing_input()),
    ("timing-empty-lists", TimingRecommendation, timing_input(windows=[], risks=[])),
]


def test_corpus_covers_at_least_25_invalid_documents():
    assert len(INVALID) >= 25


@pytest.mark.parametrize("case,model,data,failing", INVALID, ids=[c[0] for c in INVALID])
def test_encode_new_fails_on_the_same_fields_with_the_same_messages_as_mongoengine(case, model, data, failing):
    expected = me_errors(model, data)
    with pytest.raises(ValidationError) as caught:
        encode_new(model, copy.deepcopy(data))
    assert set(caught.value.errors) == failing
    assert caught.value.errors == expected


@pytest.mark.parametrize("case,model,data", VALID, ids=[c[0] for c in VALID])
def test_encode_new_stores_what_mongoengine_to_mongo_stores(case, model, data):
    assert me_errors(model, data) == {}
    mongo = model(**copy.deepcopy(data)).to_mongo().to_dict()
    mine = encode_new(model, copy.deepcopy(data))
    assert strip_sub_ids(mine) == strip_sub_ids(_plain(mongo))


@pytest.mark.parametrize("case,model,data", VALID, ids=[c[0] for c in VALID])
def test_encode_new_gives_every_array_sub_document_an_object_id(case, model, data):
    from bson import ObjectId

    stored = encode_new(model, copy.deepcopy(data))
    for key in ("positions", "windows", "risks"):
        for item in stored.get(key, []):
            assert isinstance(item["_id"], ObjectId)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
