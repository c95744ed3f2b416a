"""The spec's models, twice: as astro_db app models and as plain MongoEngine documents.

Both declare the same stored shape: the spec document's keys as they are (``field1`` ...,
``embedded_str_doc_1`` ...), plus what astro_db keeps on every document (``__v``, ``createdAt``,
``updatedAt``; the MongoEngine peers set them when a document is built, as
``benchmarks/peers.py`` does). Each embedded string document has a ``unique_id`` (the spec's
find-nested tasks look documents up by it; the data files do not carry it, so it is made per
instance, before any timing). The models a task queries by a field declare an index on it
(``INDEXES``), but for the nested array's ``unique_id`` (see there).

astro_db's field types have no bytes field: the large flat document's ``image_field`` is
MongoEngine's ``BinaryField`` on the astro_db model (app models are MongoEngine documents).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import mongoengine
from mongoengine import fields as me

from astro_db.models import AstroDocument
from astro_db.models.embedded import AstroEmbeddedDocument
from astro_db.models.fields import EmbeddedDocumentField, NumberField, RuleListField, StrictObjectIdField, TextField

__all__ = ["ALIAS", "COLLECTIONS", "ASTRO_MODELS", "SmallFlat", "ForeignKey", "SmallFlatFk", "LargeFlat",
           "LargeNested", "PeerSmallFlat", "PeerForeignKey", "PeerSmallFlatFk", "PeerLargeFlat", "PeerLargeNested",
           "connect_peers", "disconnect_peers", "utcnow"]

ALIAS = "astro_odm_bench_mongoengine"
COLLECTIONS = {"small": "odmSmallFlat", "fk": "odmForeignKeys", "small_fk": "odmSmallFlatFk",
               "large": "odmLargeFlat", "nested": "odmLargeNested"}
SMALL_TEXT, SMALL_INTS = range(1, 8), range(8, 14)
LARGE_TEXT, LARGE_INTS = range(1, 126), range(126, 251)
SUB_FIELDS = range(1, 16)
STR_DOCS, INT_DOCS = range(1, 6), range(8, 15)
# No index on embedded_str_doc_array.unique_id: on nx-27017 0.8.1 an equality on a path through an
# array of documents matches nothing once that path is indexed (a server bug), so that find scans.
INDEXES = {"small_fk": ("field_fk", "field_fk_1"),
           "nested": [("embedded_str_doc_1.unique_id", "embedded_str_doc_1.unique_id_1")]}


def utcnow() -> _dt.datetime:
    """Now, in UTC at the millisecond (what BSON keeps)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _astro_meta(key: str, indexes: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    return {"collection": COLLECTIONS[key],
            "indexes": [{"fields": [path], "name": name} for path, name in indexes or []]}


def _flat_fields(text: range, ints: range, text_field: Any, int_field: Any) -> dict[str, Any]:
    attrs = {f"field{i}": text_field() for i in text}
    attrs.update({f"field{i}": int_field() for i in ints})
    return attrs


# --- astro_db ----------------------------------------------------------------------------------

def _text() -> Any:
    return TextField(max_length=1_000)


def _int() -> Any:
    return NumberField(integer=True)


StringEmbedded: Any = type("OdmStringEmbedded", (AstroEmbeddedDocument,), {
    **_flat_fields(SUB_FIELDS, range(0), _text, _int), "unique_id": TextField(max_length=64)})
IntegerEmbedded: Any = type("OdmIntegerEmbedded", (AstroEmbeddedDocument,), _flat_fields(range(0), SUB_FIELDS, _text, _int))

SmallFlat: Any = type("OdmSmallFlat", (AstroDocument,), {
    **_flat_fields(SMALL_TEXT, SMALL_INTS, _text, _int), "meta": _astro_meta("small")})
ForeignKey: Any = type("OdmForeignKey", (AstroDocument,), {"name": TextField(max_length=200), "meta": _astro_meta("fk")})
SmallFlatFk: Any = type("OdmSmallFlatFk", (AstroDocument,), {
    **_flat_fields(SMALL_TEXT, SMALL_INTS, _text, _int), "field_fk": StrictObjectIdField(),
    "meta": {**_astro_meta("small_fk", [INDEXES["small_fk"]]), "references": {"field_fk": "OdmForeignKey"}}})
LargeFlat: Any = type("OdmLargeFlat", (AstroDocument,), {
    **_flat_fields(LARGE_TEXT, LARGE_INTS, _text, _int), "image_field": me.BinaryField(), "meta": _astro_meta("large")})
LargeNested: Any = type("OdmLargeNested", (AstroDocument,), {
    **{f"embedded_str_doc_{n}": EmbeddedDocumentField(StringEmbedded) for n in STR_DOCS},
    "embedded_str_doc_array": RuleListField(EmbeddedDocumentField(StringEmbedded)),
    **{f"embedded_int_doc_{n}": EmbeddedDocumentField(IntegerEmbedded) for n in INT_DOCS},
    "meta": _astro_meta("nested", INDEXES["nested"])})

ASTRO_MODELS = [SmallFlat, ForeignKey, SmallFlatFk, LargeFlat, LargeNested]


# --- MongoEngine ---------------------------------------------------------------------------------

_PEER_META: dict[str, Any] = {"db_alias": ALIAS, "strict": False, "auto_create_index": False}


def _peer_base() -> dict[str, Any]:
    return {"created_at": me.DateTimeField(db_field="createdAt", default=utcnow),
            "updated_at": me.DateTimeField(db_field="updatedAt", default=utcnow),
            "version": me.IntField(db_field="__v", min_value=0, default=0)}


def _peer_meta(key: str) -> dict[str, Any]:
    return {**_PEER_META, "collection": COLLECTIONS[key]}


PeerStringEmbedded: Any = type("OdmPeerStringEmbedded", (mongoengine.EmbeddedDocument,), {
    **_flat_fields(SUB_FIELDS, range(0), lambda: me.StringField(max_length=1_000), me.IntField),
    "unique_id": me.StringField(max_length=64), "meta": {"strict": False}})
PeerIntegerEmbedded: Any = type("OdmPeerIntegerEmbedded", (mongoengine.EmbeddedDocument,), {
    **_flat_fields(range(0), SUB_FIELDS, me.StringField, me.IntField), "meta": {"strict": False}})

PeerSmallFlat: Any = type("OdmPeerSmallFlat", (mongoengine.Document,), {
    **_peer_base(), **_flat_fields(SMALL_TEXT, SMALL_INTS, lambda: me.StringField(max_length=1_000), me.IntField),
    "meta": _peer_meta("small")})
PeerForeignKey: Any = type("OdmPeerForeignKey", (mongoengine.Document,), {
    **_peer_base(), "name": me.StringField(max_length=200), "meta": _peer_meta("fk")})
PeerSmallFlatFk: Any = type("OdmPeerSmallFlatFk", (mongoengine.Document,), {
    **_peer_base(), **_flat_fields(SMALL_TEXT, SMALL_INTS, lambda: me.StringField(max_length=1_000), me.IntField),
    "field_fk": me.ReferenceField(PeerForeignKey), "meta": _peer_meta("small_fk")})
PeerLargeFlat: Any = type("OdmPeerLargeFlat", (mongoengine.Document,), {
    **_peer_base(), **_flat_fields(LARGE_TEXT, LARGE_INTS, lambda: me.StringField(max_length=1_000), me.IntField),
    "image_field": me.BinaryField(), "meta": _peer_meta("large")})
PeerLargeNested: Any = type("OdmPeerLargeNested", (mongoengine.Document,), {
    **_peer_base(), **{f"embedded_str_doc_{n}": me.EmbeddedDocumentField(PeerStringEmbedded) for n in STR_DOCS},
    "embedded_str_doc_array": me.ListField(me.EmbeddedDocumentField(PeerStringEmbedded)),
    **{f"embedded_int_doc_{n}": me.EmbeddedDocumentField(PeerIntegerEmbedded) for n in INT_DOCS},
    "meta": _peer_meta("nested")})


def connect_peers(url: str) -> None:
    """MongoEngine's own client (``tz_aware`` as the other sides) under ``ALIAS``."""
    mongoengine.connect(alias=ALIAS, host=url, tz_aware=True, uuidRepresentation="standard")


def disconnect_peers() -> None:
    mongoengine.disconnect(alias=ALIAS)
