"""``BinaryField`` values of every subtype through every write and read of the service, one check
both tiers run (``tests/unit/test_binary_subtypes_differential.py`` on the embedded backend,
``tests/live/test_binary_subtypes_live.py`` on nx-27017); the oracle is the BSON the server
stores.

MongoEngine's ``BinaryField.to_mongo`` is ``Binary(value)``, which makes a ``Binary`` of any
subtype a subtype 0: a value of subtype 0x80 (a Node ``Buffer`` of a user-defined subtype), 4 (a
UUID), 3 or 5 was stored as subtype 0 by ``create``, ``update``'s ``$set`` and ``$push`` (inside
embedded documents and lists of ``BinaryField`` too) and ``upsert_many``: a document another
client stored came back changed once written through the service."""

from __future__ import annotations

import uuid
from typing import Any

import bson
from bson import Binary, ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from hypothesis import strategies as st
from mongoengine import EmbeddedDocument
from mongoengine.fields import BinaryField, EmbeddedDocumentField, ListField, MapField

from astro_db import Database
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField

OPTS: CodecOptions[Any] = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)
FIELDS = ("data", "blobs", "part", "parts", "mapped")


class BlobPart(EmbeddedDocument):
    blob = BinaryField()


class Scan(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    slug = TextField(required=True, max_length=40)
    title = TextField(max_length=40)
    data = BinaryField()
    blobs = ListField(BinaryField())
    part = EmbeddedDocumentField(BlobPart)
    parts = ListField(EmbeddedDocumentField(BlobPart))
    mapped = MapField(BinaryField())

    meta = {"collection": "binaryScans", "owner": "user_id",
            "indexes": [{"fields": ["user_id", "slug"], "unique": True, "name": "userId_1_slug_1"}]}


# plain bytes (stored as subtype 0), a Binary of the subtypes other clients write (5: MD5, 0x80:
# user-defined, 3: a legacy UUID), a UUID's (4) and a uuid.UUID (the Node driver's UUID)
others = st.one_of(st.binary(max_size=6), st.builds(Binary, st.binary(max_size=6), st.sampled_from([0, 3, 5, 0x80, 0x8F])))
uuids = st.one_of(st.builds(Binary, st.binary(min_size=16, max_size=16), st.just(4)), st.uuids())
binary = st.one_of(others, uuids)


def contents_of(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A ``Scan``'s binary fields, each holding ``values``."""
    return st.fixed_dictionaries({"data": values, "blobs": st.lists(values, max_size=3),
                                  "part": st.fixed_dictionaries({"blob": values}),
                                  "parts": st.lists(st.fixed_dictionaries({"blob": values}), max_size=2),
                                  "mapped": st.dictionaries(st.sampled_from(["a", "b"]), values, max_size=2)})


contents = contents_of(binary)


# what the Node service stores: Buffers of a user-defined subtype, and UUIDs
_BUFFER, _UUID = Binary(b"\x00\xffnode", 0x80), uuid.UUID("7f000000-0000-4000-8000-000000000001")
NODE_BUFFERS = {"data": _BUFFER, "blobs": [_BUFFER, b"plain"], "part": {"blob": _BUFFER}, "parts": [{"blob": _BUFFER}],
                "mapped": {"a": _BUFFER}}
NODE_UUIDS = {"data": _UUID, "blobs": [_UUID], "part": {"blob": Binary.from_uuid(_UUID)}, "parts": [{"blob": _UUID}],
              "mapped": {"b": _UUID}}


def _bson(value: Any) -> bytes:
    return bson.encode({"v": value}, codec_options=OPTS)


def _read_form(value: Any) -> bool:
    """A value a read gives for a ``BinaryField``: ``bytes`` for subtype 0, a ``Binary`` of its
    subtype for any other (a UUID included), on every backend alike."""
    if isinstance(value, Binary):
        return value.subtype != 0
    return type(value) is bytes


def _fields(doc: Any) -> dict[str, Any]:
    """A read instance's binary fields as plain values (embedded documents as dicts)."""
    return {"data": doc.data, "blobs": list(doc.blobs), "part": {"blob": doc.part.blob} if doc.part else None,
            "parts": [{"blob": p.blob} for p in doc.parts], "mapped": dict(doc.mapped)}


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def holds(db: Database, doc_id: Any, expected: dict[str, Any]) -> None:
    """The server holds ``expected`` (its subtypes) and every read gives it back."""
    raw = db.mongo.get_collection("binaryScans", codec_options=OPTS).find_one({"_id": doc_id})
    for name in FIELDS:
        assert _bson(raw.get(name)) == _bson(expected[name]), f"stored {name}: {raw.get(name)!r} != {expected[name]!r}"
    read = db.find_one(Scan, {"id": doc_id})
    got = _fields(read)
    for name in FIELDS:
        assert _bson(got[name]) == _bson(expected[name]), f"read {name}: {got[name]!r} != {expected[name]!r}"
        assert all(_read_form(v) for v in _leaves(got[name])), f"read {name}: {got[name]!r}"
    lean = db.find_one(Scan, {"id": doc_id}, lean=True)
    for name in FIELDS:
        assert _bson(lean.get(name)) == _bson(expected[name]), f"lean {name}"


def check_binary_round_trips(db: Database, first: dict[str, Any], second: dict[str, Any], value: Any, *,
                             replaces: bool = True) -> None:
    """Every write of the service keeps each value's subtype: create, create_many, ``$set`` of
    whole fields and of paths inside them, ``$push``, ``$addToSet``, ``update_many``, ``upsert_many`` (an insert, then, with
    ``replaces``, a replacement); and a document another client stored keeps its subtypes
    through an update of another field and a ``$push``."""
    owner = db.create("User", {"email": f"b{uuid.uuid4().hex[:8]}@example.com", "name": "Bo"})
    created = db.create(Scan, {"userId": owner.id, "slug": uuid.uuid4().hex, **first})
    holds(db, created.id, first)
    assert all(_read_form(v) for name in FIELDS for v in _leaves(_fields(created)[name])), "create's answer"
    many = db.create_many(Scan, [{"userId": owner.id, "slug": uuid.uuid4().hex, **second}], lean=True)
    assert not many.failed
    holds(db, many.ids[0], second)

    db.update(Scan, {"id": created.id}, second)
    holds(db, created.id, second)
    db.update(Scan, {"id": created.id}, {"$set": {"part.blob": value}})
    holds(db, created.id, {**second, "part": {"blob": value}})
    db.update(Scan, {"id": created.id}, {"$set": {"data": value}, "$push": {"blobs": value, "parts": {"blob": value}}})
    pushed = {**second, "data": value, "part": {"blob": value},
              "blobs": [*second["blobs"], value], "parts": [*second["parts"], {"blob": value}]}
    holds(db, created.id, pushed)
    db.update(Scan, {"id": created.id}, {"$set": {"blobs.0": first["data"], "parts.0.blob": first["data"]}})
    positioned = {**pushed, "blobs": [first["data"], *pushed["blobs"][1:]],
                  "parts": [{"blob": first["data"]}, *pushed["parts"][1:]]}
    holds(db, created.id, positioned)
    marker = Binary(b"\x7fset", 0x81)  # in no drawn value: $addToSet adds it once
    db.update(Scan, {"id": created.id}, {"$addToSet": {"blobs": {"$each": [marker, marker]}}})
    assert db.update_many(Scan, {"id": created.id}, {"$set": {"data": marker}}) == 1
    holds(db, created.id, {**positioned, "data": marker, "blobs": [*positioned["blobs"], marker]})

    slug = uuid.uuid4().hex
    assert not db.upsert_many(Scan, [{"userId": owner.id, "slug": slug, **first}], on=("userId", "slug")).failed
    holds(db, db.find_one(Scan, {"slug": slug}, lean=True)["_id"], first)
    # the same content again changes nothing (the stored values compared as BSON: bytes, a
    # Binary and a UUID as the binary data and subtype each stands for)
    again = db.upsert_many(Scan, [{"userId": owner.id, "slug": slug, **first}], on=("userId", "slug"))
    assert (again.unchanged, again.updated) == (1, 0), again
    if replaces:
        assert not db.upsert_many(Scan, [{"userId": owner.id, "slug": slug, **second}], on=("userId", "slug")).failed
        holds(db, db.find_one(Scan, {"slug": slug}, lean=True)["_id"], second)

    foreign = ObjectId()  # stored by the Node service: its Buffers and UUIDs as they are
    db.mongo.get_collection("binaryScans", codec_options=OPTS).insert_one(
        {"_id": foreign, "userId": owner.id, "slug": uuid.uuid4().hex, "__v": 0, **first})
    holds(db, foreign, first)
    db.update(Scan, {"id": foreign}, {"title": "seen"})
    holds(db, foreign, first)
    db.update(Scan, {"id": foreign}, {"$push": {"blobs": value}})
    holds(db, foreign, {**first, "blobs": [*first["blobs"], value]})
