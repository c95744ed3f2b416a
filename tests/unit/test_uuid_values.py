"""UUIDs the Node service stores (its driver's ``UUID``: binary subtype 4, which the client reads
as a ``uuid.UUID``) pass through every path that encodes stored values itself, against the
server's own answers.

Before, each of these encoded with PyMongo's default options, which refuse a ``uuid.UUID``, so
each raised a bare ``ValueError``: a cached read of documents with a UUID ``_id`` (the cache's id
digests), any write to them while the cache held their model, a backup on the embedded backend
of a collection holding one, an ``upsert_many`` keyed by a UUID, and a read opening a sealed
value of a document whose ``_id`` is a UUID (its binding's text)."""

from __future__ import annotations

import datetime as dt
import uuid

import bson
from bson import ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from mongoengine.fields import UUIDField

from astro_db import Database, backup
from astro_db.models import AstroDocument
from astro_db.models.fields import UserRefField

UTC = dt.timezone.utc
_OPTS: CodecOptions = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)


def _insight(_id, owner, day):
    return {"_id": _id, "userId": owner, "date": dt.datetime(2026, 12, day, tzinfo=UTC), "energyLevel": 10,
            "recommendations": ["Rest"], "__v": 0, "session": uuid.UUID(int=day)}


def _raw(db, name):
    return list(db.mongo.get_collection(name, codec_options=_OPTS).find({}, sort=[("date", 1)]))


def test_cached_reads_and_writes_of_documents_with_uuid_ids_answer_as_the_server():
    with Database("mongomock://localhost/uuid_cache", cache_ttl_s=60) as db:
        owner = ObjectId()
        db.mongo["planetaryInsights"].insert_many([_insight(uuid.UUID(int=n), owner, n) for n in (1, 2)])
        for level in (20, 30):
            cached = db.find("PlanetaryInsight", {"userId": owner}, cache=True, lean=True, sort=[("date", 1)])
            assert cached == _raw(db, "planetaryInsights")
            assert db.update_many("PlanetaryInsight", {"userId": owner}, {"energyLevel": level}) == 2
            assert db.find("PlanetaryInsight", {"userId": owner}, cache=True, lean=True,
                           sort=[("date", 1)]) == _raw(db, "planetaryInsights")


def test_a_backup_of_the_embedded_backend_restores_uuids_as_they_were(tmp_path):
    with Database("mongomock://localhost/uuid_backup") as db, \
            Database("mongomock://localhost/uuid_restored", ensure_indexes=False) as target:
        owner = ObjectId()
        db.mongo["planetaryInsights"].insert_many([_insight(uuid.UUID(int=n), owner, n) for n in (1, 2)])
        assert backup.backup(db, tmp_path)["kind"] == "full"
        db.update_many("PlanetaryInsight", {"userId": owner}, {"energyLevel": 40})
        assert backup.backup(db, tmp_path)["kind"] == "incremental"
        backup.restore(tmp_path, target)
        restored = _raw(target, "planetaryInsights")
        assert [bson.encode(d, codec_options=_OPTS) for d in restored] == [
            bson.encode(d, codec_options=_OPTS) for d in _raw(db, "planetaryInsights")]


class Device(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    serial = UUIDField(binary=True, required=True)

    meta = {"collection": "uuidDevices", "owner": "user_id",
            "indexes": [{"fields": ["serial"], "unique": True, "name": "serial_1"}]}


def test_upsert_many_keyed_by_a_uuid():
    with Database("mongomock://localhost/uuid_upsert", models=[Device]) as db:
        owner = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        items = [{"userId": owner.id, "serial": uuid.UUID(int=n)} for n in (1, 2)]
        first = db.upsert_many(Device, items, on=("serial",))
        assert (first.inserted, first.failed) == (2, [])
        again = db.upsert_many(Device, items, on=("serial",))
        assert (again.unchanged, again.inserted, again.failed) == (2, 0, [])
        assert sorted(d["serial"] for d in db.mongo["uuidDevices"].find({})) == [uuid.UUID(int=1), uuid.UUID(int=2)]


def test_a_sealed_value_of_a_document_with_a_uuid_id_opens():
    from astro_db.models.fields import TextField
    from astro_db.security.crypto import new_key

    class Ticket(AstroDocument):
        user_id = UserRefField(db_field="userId", required=True)
        note = TextField(sensitive=True)
        meta = {"collection": "uuidTickets", "owner": "user_id"}

    with Database("mongomock://localhost/uuid_sealed", models=[Ticket], encryption_key=new_key()) as db:
        owner = db.create("User", {"email": "bob@example.com", "name": "Bob"})
        made = db.create(Ticket, {"userId": owner.id, "note": "hello"})
        crypto = db.executor.runtime.crypto
        info = db.executor.runtime.registry.resolve("Ticket")
        ticket_id = uuid.UUID(int=7)  # as the Node service would seal it, bound to a UUID _id
        sealed = crypto.seal_document(info, {"_id": ticket_id, "userId": owner.id, "note": "hello"})
        db.mongo["uuidTickets"].insert_one(sealed)
        assert db.find_one(Ticket, {"userId": owner.id, "id": made.id}).note == "hello"
        notes = {repr(d["_id"]): d["note"] for d in db.find(Ticket, {"userId": owner.id}, lean=True)}
        assert notes == {repr(made.id): "hello", repr(ticket_id): "hello"}
