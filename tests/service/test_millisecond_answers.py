"""A write's answer holds what the server stores: dates cut to the millisecond BSON keeps.

Before, a date given with microseconds (a Python ``datetime.now()``, an ISO string with six
digits) came back from ``create``, ``create_many`` and ``upsert_many`` with them, while every
later read returned the stored millisecond: the same document compared unequal to itself, and a
caller comparing the answer with a read (an optimistic check, a test, a cache key) saw a change
nobody made. Each backend is the oracle: the answer must equal what a read of the stored document
gives, instance and lean."""

from __future__ import annotations

import datetime as dt
import uuid

import bson
import pytest
from bson.codec_options import CodecOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongoengine.fields import DateTimeField, DictField

from astro_db import Database
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField, UTCDateTimeField

from .conftest import chart_data, insight_data

UTC = dt.timezone.utc
FINE = dt.datetime(2026, 3, 1, 10, 30, 0, 123456, tzinfo=UTC)  # microseconds BSON does not keep
CUT = FINE.replace(microsecond=123000)


class TimedNote(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    slug = TextField(required=True, max_length=40)
    at = UTCDateTimeField()
    stamped = DateTimeField()  # MongoEngine's own, as an app may declare it
    extra = DictField()

    meta = {"collection": "timedNotes", "owner": "user_id",
            "indexes": [{"fields": ["user_id", "slug"], "unique": True, "name": "userId_1_slug_1"}]}


def _stored(doc):
    return bson.decode(bson.encode(doc), codec_options=CodecOptions(tz_aware=True))  # what BSON keeps of a value


def test_a_created_insight_answers_the_date_the_server_stores_in_every_spelling(db):
    spellings = [FINE, FINE.replace(tzinfo=None), FINE.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))),
                 "2026-03-01T10:30:00.123456Z", "2026-03-01T16:00:00.123456+05:30"]
    for given_date in spellings:  # one instant: an owner each for the instance and the lean answer
        one, two = (db.create("User", {"email": f"u{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"}) for _ in "12")
        made = db.create("PlanetaryInsight", insight_data(one.id, date=given_date))
        lean = db.create("PlanetaryInsight", insight_data(two.id, date=given_date), lean=True)
        assert made.date == CUT and lean["date"] == CUT, given_date
        assert db.find_one("PlanetaryInsight", {"id": made.id}).date == made.date
        assert db.find_one("PlanetaryInsight", {"id": lean["_id"]}, lean=True)["date"] == lean["date"]


def test_an_embedded_date_and_a_batch_answer_what_is_stored(db, user):
    chart = db.create("BirthChart", chart_data(user.id, birthData={
        "date": FINE.replace(year=1990), "timezone": "UTC", "location": {"name": "X", "coordinates": [1.0, 2.0]}}))
    assert chart.birth_data.date == CUT.replace(year=1990)
    assert db.find_one("BirthChart", {"id": chart.id}).birth_data.date == chart.birth_data.date
    batch = db.create_many("PlanetaryInsight", [insight_data(user.id, 20 + i, date=FINE + dt.timedelta(days=i))
                                                for i in range(3)])
    assert not batch.failed
    for made in batch:
        assert made.date.microsecond == 123000
        assert db.find_one("PlanetaryInsight", {"id": made.id}).date == made.date


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def own(request):
    """A connected Database with TimedNote registered, on each backend in turn."""
    url = (f"mongomock://localhost/t{uuid.uuid4().hex[:8]}" if request.param == "embedded"
           else str(request.getfixturevalue("live_url")))
    with Database(url, models=[TimedNote], server_selection_timeout_ms=5000, allow_plaintext_sensitive=True) as database:
        yield database


def test_upserts_and_free_form_dates_answer_what_is_stored(own):
    user = own.create("User", {"email": f"u{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    if True:
        extra = {"seen": [FINE, {"deep": FINE}], "plain": 1}
        made = own.create(TimedNote, {"userId": user.id, "slug": "a", "at": FINE, "extra": extra,
                                      "stamped": FINE.replace(tzinfo=None)})
        read = own.find_one(TimedNote, {"id": made.id})
        assert made.at == read.at == CUT
        # MongoEngine's DateTimeField: the answer was naive with its microseconds, the read aware without
        assert made.stamped == read.stamped == CUT and made.stamped.utcoffset() == dt.timedelta(0)
        assert made.extra == read.extra == _stored(extra) == {"seen": [CUT, {"deep": CUT}], "plain": 1}
        result = own.upsert_many(TimedNote, [{"userId": user.id, "slug": "a", "at": FINE, "extra": extra,
                                              "stamped": FINE.replace(tzinfo=None)},
                                             {"userId": user.id, "slug": "b", "at": FINE + dt.timedelta(microseconds=1)}],
                                 on=("userId", "slug"))
        assert not result.failed and (result.unchanged, result.inserted) == (1, 1)  # the same stored values: unchanged
        assert own.find_one(TimedNote, {"slug": "b"}).at == CUT


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(when=st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1),
                         timezones=st.sampled_from([UTC, None, dt.timezone(dt.timedelta(hours=-7))])))
def test_any_date_comes_back_from_a_create_as_a_read_returns_it(db, user, when):
    made = db.create("PlanetaryInsight", insight_data(user.id, date=when), lean=True)
    assert made["date"] == db.find_one("PlanetaryInsight", {"id": made["_id"]}, lean=True)["date"]
    assert made["date"].microsecond % 1000 == 0
    db.delete("PlanetaryInsight", {"id": made["_id"]})
