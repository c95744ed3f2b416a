"""A large ``create_many``'s change records, packed (``changes.records``), read per document by every reader.

From ``PACK_FROM`` documents on, a create's records go as one record per ``PACK_DOCS``
documents, their post-images as BSON bytes. Each reader of ``astroChanges`` must see exactly what
one record per document gave it: the audit trail, revisions of an ``_id``'s later life,
reconcile's rebuild, backups (full, incremental, point in time), pruning, export (only the
user's own documents of a pack shared with others) and erasure (only the user's images cut out,
in the live records and in any restore of an older set), and the failure paths (records kept
after a failed insert, an unknown outcome). ``PACK_DOCS`` is set small so one call makes several
packs. Each test runs on the embedded backend and on the live server (whose multikey matching
of ``documentId`` and ``owners`` arrays the readers rely on).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import pytest
from backup_helpers import instant_after_last_write, state
from bson import ObjectId
from pymongo import errors as pm

from astro_db import Database, backup
from astro_db.changes import CHANGES_COLLECTION, records
from astro_db.changes.records import PACK_FROM, images, is_packed, unpack
from astro_db.errors import ChangeRecordError
from astro_db.query.order import identity

_dbs = itertools.count()
N = PACK_FROM + 8  # 40 documents: three packs of 16, 16 and 8
DAY = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def small_packs(monkeypatch: Any) -> None:
    monkeypatch.setattr(records, "PACK_DOCS", 16)


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def fresh(request: Any) -> Any:
    """Fresh connected Databases on one backend: the embedded one, or databases of their own on
    the live server (dropped after)."""
    made: list[Database] = []

    def make() -> Database:
        if request.param == "embedded":
            url = f"mongomock://localhost/packed_{next(_dbs)}"
        else:
            server, name = request.getfixturevalue("live_server"), f"astro_test_{uuid.uuid4().hex[:8]}"
            url = server.url(name)
        db = Database(url, allow_plaintext_sensitive=True, server_selection_timeout_ms=5000).connect()
        made.append(db)
        return db

    yield make
    for db in made:
        if request.param == "live":
            db.mongo.client.drop_database(db.mongo.name)
        db.disconnect()


def insights(owners: list[Any], tag: str = "note") -> list[dict[str, Any]]:
    """``N`` insights, the i-th owned by ``owners[i % len(owners)]``, each summary naming its owner."""
    return [{"userId": owners[i % len(owners)], "date": DAY + dt.timedelta(days=i), "energyLevel": 5,
             "recommendations": ["r"], "summary": f"{tag}-{owners[i % len(owners)]}-{i}"} for i in range(N)]


def packs(db: Database) -> list[dict[str, Any]]:
    return [r for r in db.mongo[CHANGES_COLLECTION].find({}) if is_packed(r)]


def per_document(db: Database) -> list[dict[str, Any]]:
    return [one for r in db.mongo[CHANGES_COLLECTION].find({}) for one in unpack(r)]


def raw_changes(db: Database) -> bytes:
    """The change records as stored bytes: a packed image's strings are in them, as on a disk."""
    import bson

    return b"".join(bson.encode(r) for r in db.mongo[CHANGES_COLLECTION].find({}))


def test_a_large_create_many_is_recorded_in_packs_that_every_trail_reads_per_document(fresh):
    db = fresh()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    made = list(db.create_many("PlanetaryInsight", insights([ann.id])))
    assert [len(p["documentId"]) for p in packs(db)] == [16, 16, 8]
    assert all(p["owners"] == [ann.id] and p["rev"] == 0 and p["action"] == "create" for p in packs(db))
    assert [image["_id"] for p in packs(db) for image in images(p)] == [m.id for m in made]
    one = made[20]
    db.update("PlanetaryInsight", {"id": one.id}, {"energyLevel": 9})
    trail = db.audit_trail("PlanetaryInsight", one.id)
    assert [(e["action"], e["documentId"], e["revision"]) for e in trail] == [("create", str(one.id), 0),
                                                                               ("update", str(one.id), 1)]
    assert trail[0]["fields"] == sorted(set(trail[0]["fields"]))
    # reconcile finds a record of every document's current revision: it rebuilds none
    assert db.reconcile_changes()["rebuilt"] == {"User": 0, "BirthChart": 0, "PlanetaryInsight": 0,
                                                 "TimingRecommendation": 0}


def test_an_id_created_again_continues_the_revisions_its_pack_recorded(fresh):
    db = fresh()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    data = insights([ann.id])
    chosen = [ObjectId() for _ in data]
    db.create_many("PlanetaryInsight", [{**d, "_id": i} for d, i in zip(data, chosen)])
    assert [len(p["documentId"]) for p in packs(db)] == [16, 16, 8]
    db.delete("PlanetaryInsight", {"id": chosen[17]})  # its delete record: revision 1
    again = db.create("PlanetaryInsight", {**data[17], "_id": chosen[17]})
    assert db.mongo.planetaryInsights.find_one({"_id": again.id})["_rev"] == 2
    assert [e["revision"] for e in db.audit_trail("PlanetaryInsight", chosen[17])] == [0, 1, 2]
    for i in (3, 30):  # two at once: one lookup of both ids' revisions
        db.delete("PlanetaryInsight", {"id": chosen[i]})
    db.create_many("PlanetaryInsight", [{**data[i], "_id": chosen[i]} for i in (3, 30)])
    assert [db.mongo.planetaryInsights.find_one({"_id": chosen[i]})["_rev"] for i in (3, 30)] == [2, 2]


def test_backups_and_point_in_time_restores_replay_packed_records(fresh, tmp_path):
    db = fresh()
    repo = tmp_path / "repo"
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    backup.backup(db, repo)  # full, before the packs
    made = list(db.create_many("PlanetaryInsight", insights([ann.id])))
    instant = instant_after_last_write()
    then = state(db)
    db.update("PlanetaryInsight", {"id": made[3].id}, {"energyLevel": 7})
    db.update("PlanetaryInsight", {"id": made[30].id}, {"energyLevel": 8})
    backup.backup(db, repo)  # incremental: the packs and the updates after them
    whole = fresh()
    backup.restore(repo, whole)
    assert state(whole) == state(db)
    assert whole.find_one("PlanetaryInsight", {"id": made[30].id}).energy_level == 8
    cut = fresh()
    report = backup.restore(repo, cut, until=instant.isoformat())
    assert state(cut) == then and report["journal_entries"] > 0
    assert cut.count("PlanetaryInsight", {}) == N and cut.find_one("PlanetaryInsight", {"id": made[3].id}).energy_level == 5


def test_pruning_drops_a_packs_images_and_keeps_its_audit_part(fresh):
    db = fresh()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    made = list(db.create_many("PlanetaryInsight", insights([ann.id])))
    assert backup.journal.prune_journal(db.mongo, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)) >= 3
    assert all("docs" not in p and "owners" not in p and p["journal"] is False for p in packs(db))
    assert [e["action"] for e in db.audit_trail("PlanetaryInsight", made[0].id)] == ["create"]


def test_export_takes_only_the_users_own_documents_of_a_shared_pack_and_erasure_cuts_only_hers(fresh, tmp_path):
    db = fresh()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    bob = db.create("User", {"email": "bob@example.com", "name": "Bob"})
    made = list(db.create_many("PlanetaryInsight", insights([ann.id, bob.id])))
    assert all(p["owners"] == [ann.id, bob.id] for p in packs(db))
    hers = {str(m.id) for m in made if m.user_id == ann.id}
    db.delete("PlanetaryInsight", {"id": made[0].id})  # hers, gone since: its records are still hers
    exported = db.export_user(ann.id)["models"]["PlanetaryInsight"]
    changes = exported["changes"]
    assert {c["documentId"]["$oid"] for c in changes} == hers
    assert sorted(c["action"] for c in changes if c["documentId"]["$oid"] == str(made[0].id)) == ["create", "delete"]
    assert all(c["doc"]["summary"].startswith(f"note-{ann.id}-") for c in changes if "doc" in c)
    assert len([c for c in changes if c["action"] == "create"]) == N // 2
    repo = tmp_path / "repo"
    backup.backup(db, repo)  # before the erasure: the packs hold both users' images
    assert f"note-{ann.id}".encode() in raw_changes(db)
    db.erase_user(ann.id)
    assert f"note-{ann.id}".encode() not in raw_changes(db)
    assert raw_changes(db).count(f"note-{bob.id}".encode()) == N // 2
    assert all(p["owners"] == [bob.id] and p["erased"] is True for p in packs(db))
    assert sorted(len(p["documentId"]) for p in packs(db)) == [8, 16, 16]  # that the writes happened stays
    assert db.export_user(bob.id)["models"]["PlanetaryInsight"]["changes"]
    # a restore of the set taken before the erasure: her images cut from the packs it loads
    target = fresh()
    report = backup.restore(repo, target, erasures_from=db)
    assert report["erased_users"] == 1
    assert f"note-{ann.id}".encode() not in raw_changes(target)
    assert raw_changes(target).count(f"note-{bob.id}".encode()) == N // 2
    assert target.count("PlanetaryInsight", {}) == N // 2


def test_an_erasure_scrubbing_a_pack_that_changes_meanwhile_reads_it_again_and_overwrites_nothing(fresh):
    """Two writers at once: between the scrub's read of a pack and its compare-and-set, the
    journal is pruned (the images dropped). The scrub's update matches nothing, it reads the
    pack again, and leaves it pruned: no image comes back."""
    db = fresh()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    bob = db.create("User", {"email": "bob@example.com", "name": "Bob"})
    db.create_many("PlanetaryInsight", insights([ann.id, bob.id]))
    gateway = db.executor.runtime.gateway
    real = gateway[CHANGES_COLLECTION]
    interleaved: list[str] = []

    class Racing:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def update_one(self, filt: Any, change: Any, **kwargs: Any) -> Any:
            if "docs" in filt and not interleaved:  # the scrub's compare-and-set of a pack: prune first
                interleaved.append(str(filt["_id"]))
                db.mongo[CHANGES_COLLECTION].update_one({"_id": filt["_id"]},
                                                        {"$unset": {"docs": "", "owners": ""}, "$set": {"journal": False}})
            return real.update_one(filt, change, **kwargs)

    gateway.collections[CHANGES_COLLECTION] = Racing()  # type: ignore[assignment]
    db.erase_user(ann.id)
    gateway.collections[CHANGES_COLLECTION] = real
    [raced] = interleaved
    pruned = db.mongo[CHANGES_COLLECTION].find_one({"_id": raced})
    assert "docs" not in pruned and pruned["journal"] is False  # the scrub did not write its images back
    assert f"note-{ann.id}".encode() not in raw_changes(db)
    assert all(p["owners"] == [bob.id] for p in packs(db) if p["_id"] != raced)


def test_a_failed_insert_of_packs_keeps_them_and_a_later_write_settles_them_per_document(fresh):
    """The records could not be written: ``ChangeRecordError`` names every document; the packs
    are written with the next write, and a document updated meanwhile loses its image from them
    (its later record is the journal's truth), the others keep theirs."""
    db = fresh()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    gateway = db.executor.runtime.gateway
    real = gateway[CHANGES_COLLECTION]

    class Refusing:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def insert_many(self, docs: Any, **kwargs: Any) -> Any:
            raise pm.OperationFailure("not now", 8000)

    gateway.collections[CHANGES_COLLECTION] = Refusing()  # type: ignore[assignment]
    data = insights([ann.id])
    with pytest.raises(ChangeRecordError) as caught:
        db.create_many("PlanetaryInsight", data)
    gateway.collections[CHANGES_COLLECTION] = real
    assert caught.value.applied is True and len(caught.value.missing) == N
    assert packs(db) == [] and db.executor.runtime.changes.pending == 3
    moved = db.find_one("PlanetaryInsight", {"summary": data[5]["summary"]})
    db.update("PlanetaryInsight", {"id": moved.id}, {"energyLevel": 6})  # writes the packs with its own record
    assert db.executor.runtime.changes.pending == 0
    assert sorted(len(p["documentId"]) for p in packs(db)) == [8, 16, 16]
    imaged = {image["_id"] for p in packs(db) for image in images(p)}
    assert moved.id not in imaged and len(imaged) == N - 1
    assert all(p.get("late") is True for p in packs(db))
    per_rev = [(r["documentId"], r["rev"]) for r in per_document(db) if r["coll"] == "planetaryInsights"]
    assert sorted(per_rev, key=str) == sorted({*per_rev}, key=str)  # one record per revision
    assert (moved.id, 1) in per_rev


def test_an_unknown_outcome_keeps_only_the_documents_that_landed_in_the_packs(fresh):
    """A create_many whose outcome stayed unknown keeps its packs as uncertain: written later cut
    down to the documents that are there (here, half the batch landed)."""
    from astro_db.ops import writes

    db = fresh()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    data = insights([ann.id])

    made = [writes.new_document(db.executor.model("PlanetaryInsight"), d) for d in data]
    landed = made[: N // 2]
    db.mongo.planetaryInsights.insert_many([dict(d) for d in landed])  # half of it reached the server
    log = db.executor.runtime.changes
    packed = log.build(model="PlanetaryInsight", collection="planetaryInsights", action="create",
                       changes=[(d["_id"], 0, d["updatedAt"], d) for d in made], fields=("summary",), actor=None,
                       request_id=None, op="op1", owner="userId", database=db.mongo)
    assert len(packed) == 3
    log.keep_uncertain(packed)
    log.flush(lambda fn: fn(), db.executor.runtime.gateway)
    written = packs(db)
    assert sorted(len(p["documentId"]) for p in written) == [4, 16]  # 20 landed: 16 + 4; the third pack is dropped
    assert {i for p in written for i in p["documentId"]} == {d["_id"] for d in landed}


def test_a_user_created_in_a_pack_of_users_is_exported_and_erased_alone(fresh):
    """The users' own model: a pack's owners are its users' ids (the owner field is ``_id``)."""
    db = fresh()
    made = list(db.create_many("User", [{"email": f"p{i}@example.com", "name": f"Person {i}"} for i in range(N)]))
    assert [len(p["documentId"]) for p in packs(db)] == [16, 16, 8]
    assert packs(db)[0]["owners"] == packs(db)[0]["documentId"]
    one = made[20]
    changes = db.export_user(one.id)["models"]["User"]["changes"]
    assert [(c["action"], c["documentId"]["$oid"], c["doc"]["name"]) for c in changes] == [("create", str(one.id), "Person 20")]
    db.erase_user(one.id)
    assert b"Person 20" not in raw_changes(db) and b"p20@example.com" not in raw_changes(db)
    assert raw_changes(db).count(b"@example.com") == N - 1
    assert db.export_user(made[21].id)["models"]["User"]["changes"][0]["doc"]["name"] == "Person 21"


def test_a_pack_of_uuid_ids_is_settled_by_the_servers_equality():
    """A late pack's images come back raw (a UUID ``_id`` as binary subtype 4) while the
    documents' revisions are read decoded (``uuid.UUID``): settling compares them as the server
    does, so a document still at the pack's revision keeps its image."""
    import uuid as _uuid

    from astro_db.changes import log as change_log

    ids = [_uuid.uuid4() for _ in range(3)]
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    [pack] = records.pack_records(model="M", collection="ms", changes=[(i, 0, now, {"_id": i, "n": n}) for n, i in enumerate(ids)],
                                  actor=None, request_id=None, fields=["n"], audit=True, journal=True, op="op")
    # the documents' revisions now, keyed as _settle keys them (by identity: the server's equality)
    current = {("ms", identity(ids[0])): 0, ("ms", identity(ids[1])): 1, ("ms", identity(ids[2])): 0}  # the second one updated since
    settled = change_log._settled_pack(pack, change_log.INSERT, current)
    assert settled is not None and settled["documentId"] == ids
    assert [image["_id"] for image in images(settled)] == [ids[0], ids[2]]
    uncertain = change_log._settled_pack(pack, change_log.UNCERTAIN, {("ms", identity(ids[1])): 0})
    assert uncertain is not None and uncertain["documentId"] == [ids[1]]
