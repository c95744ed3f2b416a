"""Values the Node service stores, on the live server (nx-27017): what the embedded backend
cannot hold as a server does (a UUID is BSON binary of subtype 4 on the wire) or keeps in Python
form, held against the server's own BSON.

- ``page`` over documents whose ``_id`` or sort key is a UUID (the Node driver's ``UUID``):
  before, the token of a page ending on one could not be made and ``page`` raised ``ValueError``.
- free-form values with binary data and a ``_cls`` key, written and read by the service, and a
  document the Node service stored with ``_cls`` at the top: as they were stored
  (tests/unit/test_free_form_differential.py and test_stored_markers.py on the embedded backend).
"""

from __future__ import annotations

import datetime as dt
import uuid

import bson
from bson import Binary, ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from mongoengine.fields import DictField, ListField

from astro_db import Database
from astro_db.models import AstroDocument, BirthChart
from astro_db.models.fields import UserRefField

UTC = dt.timezone.utc
_OPTS: CodecOptions = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)


class LiveLoose(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    extra = DictField()
    items = ListField()

    meta = {"collection": "liveLoose", "owner": "user_id"}


def test_pages_over_uuid_ids_and_sort_keys_reach_every_document(live_url):
    with Database(live_url, audit=False, journal=False, ensure_indexes=False) as db:
        keys = [uuid.UUID(int=n) for n in (3, 1, 2, 4)]  # no ties: nx-27017 orders UUID _ids a way of its own
        docs = [{"_id": uuid.uuid4(), "date": dt.datetime(2026, 12, 1, tzinfo=UTC), "summary": key} for key in keys]
        db.mongo["planetaryInsights"].insert_many(docs)
        stored = db.mongo["planetaryInsights"].find_one({"_id": docs[0]["_id"]})
        assert isinstance(stored["summary"], uuid.UUID)
        # (a page's token carries the last UUID and its UUID _id; a page by _id alone is left out:
        # nx-27017 sorts UUID _ids in an order of its own, not the one its $gt compares by)
        for order in ([("summary", 1)], [("summary", -1)]):
            expected = [d["_id"] for d in db.mongo["planetaryInsights"].find({}, sort=[*order, ("_id", order[-1][1])])]
            got, token = [], None
            while True:
                page = db.page("PlanetaryInsight", {}, sort=order, limit=1, after=token, lean=True)
                got += [d["_id"] for d in page]
                token = page.next
                if token is None:
                    break
            assert got == expected


def test_binary_data_and_cls_keys_come_back_as_stored(live_url):
    with Database(live_url, models=[LiveLoose]) as db:
        owner = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        extra = {"sealed": Binary(b"\x01\x02", 6), "raw": b"ab", "who": {"_cls": "User", "email": "x@example.com"}}
        note = db.create(LiveLoose, {"userId": owner.id, "extra": extra, "items": [b"x", {"_cls": "Nope"}]})
        raw = db.mongo.get_collection("liveLoose", codec_options=_OPTS).find_one({"_id": note.id})
        assert bson.encode(raw["extra"], codec_options=_OPTS) == bson.encode(extra, codec_options=_OPTS)
        assert raw["items"] == [b"x", {"_cls": "Nope"}]
        read = db.find_one(LiveLoose, {"id": note.id})
        assert read.extra == extra and read.items == [b"x", {"_cls": "Nope"}]
        chart_id = ObjectId()
        db.mongo["birthCharts"].insert_one({
            "_id": chart_id, "userId": owner.id, "_cls": "User", "__v": 0,
            "birthData": {"date": dt.datetime(1990, 5, 1, tzinfo=UTC), "timezone": "Europe/London"}})
        chart = db.find_one(BirthChart, {"id": chart_id})
        assert type(chart) is BirthChart and chart.birth_data.timezone == "Europe/London"
