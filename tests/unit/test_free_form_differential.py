"""Free-form values (a ``DictField``, an untyped ``ListField``, a ``MapField`` of dicts) come back
exactly as written, binary data included, through every write and read of the service; the
oracle is the BSON the server stores.

Before, MongoEngine's container conversion, which the codec and hydration call for these fields,
turned every ``bytes`` value (a ``bson.Binary`` of any subtype, a sealed value's subtype 6
included) into a list of its byte values: ``{"k": Binary(b"ab", 6)}`` was stored as
``{"k": [97, 98]}`` by ``create``, ``update`` and ``upsert_many``, and a document the Node
service stored with binary data in such a field was read as lists of ints. An untyped
``ListField()`` failed every call with an ``AttributeError``."""

from __future__ import annotations

import datetime as dt
import itertools

import bson
from bson import Binary, Int64, ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongoengine.fields import DictField, ListField, MapField

from astro_db import Database
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField

UTC = dt.timezone.utc
_OPTS: CodecOptions = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)
_runs = itertools.count()


class LooseNote(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    slug = TextField(required=True, max_length=40)
    extra = DictField()
    items = ListField()
    mapped = MapField(DictField())

    meta = {"collection": "looseNotes", "owner": "user_id",
            "indexes": [{"fields": ["user_id", "slug"], "unique": True, "name": "userId_1_slug_1"}]}


FIELDS = ("extra", "items", "mapped")


def _bytes(value):
    return bson.encode({"v": value}, codec_options=_OPTS)


binary = st.one_of(st.binary(max_size=6), st.builds(Binary, st.binary(max_size=6), st.sampled_from([0, 5, 6, 0x80])))
scalars = st.one_of(binary, st.sampled_from([True, 1, 1.0, Int64(1), None, "", "enc:v2:x", "<unreadable>"]),
                    st.text(max_size=3), st.builds(ObjectId),
                    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                                 timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)))
keys = st.one_of(st.sampled_from(["k", "_id", "_rev", "_op", "__v", "_cls", "__t", "v", "b"]), st.text("xyz", min_size=1, max_size=2))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
                      max_leaves=6)
contents = st.fixed_dictionaries({"extra": st.dictionaries(keys, values, max_size=3),
                                  "items": st.lists(values, max_size=3),
                                  "mapped": st.dictionaries(keys, st.dictionaries(keys, values, max_size=2), max_size=2)})


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=contents, second=contents, third=contents)
def test_free_form_values_come_back_exactly_as_written_through_every_write_and_read(first, second, third):
    with Database(f"mongomock://localhost/free_form_{next(_runs)}", models=[LooseNote]) as db:
        owner = ObjectId()
        db.mongo["users"].insert_one({"_id": owner, "email": "ann@example.com", "name": "Ann"})
        raw = db.mongo["looseNotes"]

        def holds(doc_id, content):
            stored = raw.find_one({"_id": doc_id})
            for name in FIELDS:
                assert _bytes(stored[name]) == _bytes(content[name]), name  # the server holds what was written
            read = db.find_one(LooseNote, {"id": doc_id})
            lean = db.find_one(LooseNote, {"id": doc_id}, lean=True)
            for name in FIELDS:
                assert _bytes(getattr(read, name)) == _bytes(content[name]), name  # and it reads back as it
                assert _bytes(lean[name]) == _bytes(content[name]), name

        created = db.create(LooseNote, {"userId": owner, "slug": "n", **first})
        holds(created.id, first)
        db.update(LooseNote, {"id": created.id}, second)
        holds(created.id, second)
        result = db.upsert_many(LooseNote, [{"userId": owner, "slug": "n", **third}], on=("userId", "slug"))
        assert not result.failed
        holds(created.id, third)


def test_binary_data_the_node_service_stored_in_a_free_form_field_reads_and_survives_an_update():
    with Database("mongomock://localhost/free_form_node", models=[LooseNote]) as db:
        owner, doc_id = ObjectId(), ObjectId()
        extra = {"sealed": Binary(b"\x01\x02", 6), "raw": b"ab", "deep": {"list": [Binary(b"c", 0x80)]}}
        raw = db.mongo["looseNotes"]
        raw.insert_one({"_id": doc_id, "userId": owner, "slug": "node", "extra": extra, "__v": 0})
        read = db.find_one(LooseNote, {"id": doc_id})
        assert _bytes(read.extra) == _bytes(extra) and read.to_dict()["extra"]["raw"] == b"ab"
        db.update(LooseNote, {"id": doc_id}, {"slug": "renamed", "items": [b"x", {"y": b"z"}]})
        stored = raw.find_one({"_id": doc_id})
        assert _bytes(stored["extra"]) == _bytes(extra) and stored["items"] == [b"x", {"y": b"z"}]
