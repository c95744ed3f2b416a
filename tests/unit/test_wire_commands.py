"""benchmarks/wire.py: raw PyMongo sending astro_db's commands builds what astro_db builds.

The raw side's change records, update documents and post-images are built by hand (no astro_db
code in the benchmark's raw sides); these tests compare them with what astro_db itself writes,
and check that the equivalence check (``wire.compare``) sees a difference where there is one.
No test here asserts a time.
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

import pytest
from bson import ObjectId

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import wire  # noqa: E402
from workloads import insight_input, stored_insight, stored_user, user_input  # noqa: E402

from astro_db import Database  # noqa: E402
from astro_db.changes import revision  # noqa: E402
from astro_db.changes.records import CHANGES_COLLECTION, PACK_DOCS, PACK_FROM, images, make_records  # noqa: E402
from astro_db.models import PlanetaryInsight, User  # noqa: E402
from astro_db.ops.sizes import LARGE_DOCUMENT  # noqa: E402
from astro_db.ops.writes import ONE_COMMAND_BATCH  # noqa: E402


def test_the_constants_are_astro_dbs():
    assert wire.CHANGES == CHANGES_COLLECTION
    assert wire.ONE_COMMAND_BATCH == ONE_COMMAND_BATCH
    assert (wire.PACK_FROM, wire.PACK_DOCS) == (PACK_FROM, PACK_DOCS)
    assert wire.LARGE_DOCUMENT == LARGE_DOCUMENT


def _record_written(db: Database, action: str) -> dict:
    return db.mongo[CHANGES_COLLECTION].find_one({"action": action}, sort=[("t", -1)])


def test_a_built_create_record_is_the_one_astro_db_writes():
    with Database("mongomock://localhost/wire_create", allow_plaintext_sensitive=True, ensure_indexes=False) as db:
        created = db.create(User, user_input(3, "ann"), lean=True)
        ours = _record_written(db, "create")
    doc = stored_user(3, "ann")
    built = wire.create_record("User", "users", doc, ObjectId())
    assert list(built) == list(ours)  # the same keys in the same order
    for key in ("model", "coll", "rev", "action", "audit", "actor", "requestId", "fields", "journal"):
        assert built[key] == ours[key], key
    assert built["doc"] is doc and list(built["doc"]) == list(ours["doc"])  # the document as sent, uncopied
    assert built["documentId"] is doc["_id"] and built["_id"].startswith(f"users/{doc['_id']}/0/")
    assert built["time"] == doc["updatedAt"] and built["time"].tzinfo is not None
    assert built["t"] == (doc["updatedAt"] - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)) // _dt.timedelta(milliseconds=1)
    assert ours["documentId"] == created["_id"]


@pytest.mark.parametrize(("model", "coll", "owner"), [("User", "users", "_id"), ("PlanetaryInsight", "planetaryInsights", "userId")])
def test_built_packed_records_are_the_ones_astro_db_writes(model, coll, owner, monkeypatch):
    """A large create_many's packed records (``changes.records.pack_records``): the same keys in
    the same order, the same shared part, ids, owners, and post-images byte for byte."""
    monkeypatch.setattr(wire, "PACK_DOCS", 40)
    monkeypatch.setattr("astro_db.changes.records.PACK_DOCS", 40)
    person = ObjectId()
    n = PACK_FROM + 50
    with Database("mongomock://localhost/wire_packed", allow_plaintext_sensitive=True, ensure_indexes=False) as db:
        data = ([user_input(i, f"u{i}") for i in range(n)] if model == "User" else [insight_input(person, i) for i in range(n)])
        made = list(db.create_many(model, data, lean=True))
        ours = list(db.mongo[CHANGES_COLLECTION].find({"action": "create"}, sort=[("_id", 1)]))
    built = wire.packed_records(model, coll, made, ObjectId(), owner, pack_docs=wire.PACK_DOCS)
    ours.sort(key=lambda r: [d["_id"] for d in made].index(r["documentId"][0]))
    assert [len(r["documentId"]) for r in built] == [len(r["documentId"]) for r in ours] == [40, 40, n - 80]
    for mine, theirs in zip(built, ours):
        assert list(mine) == list(theirs)
        for key in ("model", "coll", "rev", "action", "audit", "actor", "requestId", "fields", "journal", "documentId",
                    "owners", "time", "t"):
            assert mine[key] == theirs[key], key
        assert bytes(mine["docs"]) == bytes(theirs["docs"])
        assert mine["_id"].rsplit("/", 1)[0] == theirs["_id"].rsplit("/", 1)[0]  # but the operation's id
        assert images(mine)[0]["_id"] == mine["documentId"][0]


def test_a_built_update_record_and_update_document_are_astro_dbs():
    with Database("mongomock://localhost/wire_update", allow_plaintext_sensitive=True, ensure_indexes=False) as db:
        owner = ObjectId()
        created = db.create(PlanetaryInsight, insight_input(owner, 4), lean=True)
        db.update(PlanetaryInsight, {"id": created["_id"]}, {"energy_level": 9})
        ours = _record_written(db, "update")
    stored = stored_insight(owner, 4)
    writes = wire.Writes.__new__(wire.Writes)  # the builders only: no client
    writes.model, writes.coll_name = "PlanetaryInsight", "planetaryInsights"
    [update] = writes.update_inputs([stored], [{"energyLevel": 9}], {stored["_id"]: 0})
    built = update.record
    assert list(built) == list(ours)
    for key in ("model", "coll", "rev", "action", "audit", "actor", "requestId", "fields", "journal"):
        assert built[key] == ours[key], key
    assert sorted(built["doc"]) == sorted(ours["doc"])  # the post-image: _rev and _op too
    assert built["doc"]["energyLevel"] == 9 and built["doc"]["_rev"] == 1 and built["doc"]["_op"] == update.update["$set"]["_op"]
    assert built["time"].tzinfo is not None and built["time"].microsecond % 1000 == 0
    assert update.filter == {"_id": stored["_id"]}
    op = update.update["$set"]["_op"]
    assert update.update == revision.advance({"$set": {"energyLevel": 9}}, op)  # what astro_db sends
    assert stored["energyLevel"] == 4  # the seeded document is left as it was


def test_a_dotted_update_sets_a_copy_of_the_embedded_document_in_the_post_image():
    stored = {"_id": ObjectId(), "__v": 0, "inner": {"a": "x", "b": "y"}, "updatedAt": None}
    now = _dt.datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=_dt.timezone.utc)
    image = wire.post_image(stored, {"inner.a": "new"}, "op", 3, now)
    assert image["inner"] == {"a": "new", "b": "y"} and stored["inner"] == {"a": "x", "b": "y"}
    assert image["updatedAt"] == now.replace(microsecond=678_000) and image["_rev"] == 3 and image["_op"] == "op"


def test_the_revisions_carry_on_across_repeated_documents_of_one_round():
    writes = wire.Writes.__new__(wire.Writes)
    writes.model, writes.coll_name = "M", "m"
    doc = {"_id": ObjectId(), "updatedAt": None}
    updates = writes.update_inputs([doc, doc], [{"f": 1}, {"f": 2}], {doc["_id"]: 5}, records=True)
    assert [u.record["rev"] for u in updates] == [6, 7]
    assert [u.record for u in writes.update_inputs([doc], [{"f": 1}], {}, records=False)] == [None]


def test_make_records_and_the_built_records_agree_key_for_key():
    doc = stored_insight(ObjectId(), 1)
    op = ObjectId()
    [theirs] = make_records(model="PlanetaryInsight", collection="planetaryInsights", action="create",
                            changes=[(doc["_id"], 0, doc["updatedAt"], doc)], actor=None, request_id=None,
                            fields=[k for k in doc if k != "_id"], audit=True, journal=True, op=op)
    assert wire.create_record("PlanetaryInsight", "planetaryInsights", doc, op) == theirs


# --- the equivalence check ---------------------------------------------------------------------

def _insert(coll: str, docs: list[dict], ordered: bool = True) -> wire.Shape:
    return wire.shape("insert", {"insert": coll, "ordered": ordered, "writeConcern": {"w": "majority"}, "documents": docs})


def test_the_same_commands_compare_equal_and_different_ones_are_named():
    doc = stored_user(1, "a")
    record = wire.create_record("User", "users", doc, ObjectId())
    same = [_insert("users", [doc]), _insert(wire.CHANGES, [record])]
    other_doc = stored_user(1, "b")
    assert wire.compare(same, [_insert("users", [other_doc]), _insert(wire.CHANGES, [wire.create_record(
        "User", "users", other_doc, ObjectId())])]) == []
    assert wire.describe(same) == "insert x2"
    # a command missing
    assert "astro_db sent insert x2; raw sent insert x1" in wire.compare(same, same[:1])[0]
    # the record's keys differ (no post-image)
    bare = {k: v for k, v in record.items() if k != "doc"}
    assert "document 1" in wire.compare(same, [same[0], _insert(wire.CHANGES, [bare])])[0]
    # unordered against ordered
    assert "ordered=False" in wire.compare(same, [_insert("users", [doc], ordered=False), same[1]])[0]
    # a document of another size
    big = {**doc, "name": "x" * 500}
    assert "bytes" in wire.compare(same, [_insert("users", [big]), same[1]])[0]


def test_a_bulk_write_shape_names_its_namespaces_and_documents():
    doc = stored_user(1, "a")
    record = wire.create_record("User", "users", doc, ObjectId())
    command = {"bulkWrite": 1, "ordered": True, "errorsOnly": True, "writeConcern": {"w": "majority"},
               "nsInfo": [{"ns": "db.users"}, {"ns": "db.astroChanges"}],
               "ops": [{"insert": 0, "document": doc}, {"insert": 1, "document": record}]}
    got = wire.shape("bulkWrite", command)
    assert got.target == "users+astroChanges" and [d.coll for d in got.docs] == ["users", wire.CHANGES]
    assert got.docs[1].image_keys == tuple(sorted(doc)) and got.docs[1].fields == tuple(sorted(set(doc) - {"_id"}))
    assert got.line() == ("bulkWrite users+astroChanges (ordered=True, w=majority, errorsOnly=True, ops=insert): "
                          "1 to users, 1 to astroChanges")


def test_a_find_and_modify_shape_holds_its_operators_and_fields():
    update = wire.advance({"energyLevel": 3}, ObjectId())
    a = wire.shape("findAndModify", {"findAndModify": "c", "query": {"_id": 1}, "update": update, "new": True})
    b = wire.shape("findAndModify", {"findAndModify": "c", "query": {"_id": 2},
                                     "update": {"$set": {"energyLevel": 3, "updatedAt": 1}}, "new": True})
    assert wire.compare([a], [a]) == []
    assert wire.compare([a], [b])  # no $inc _rev / $currentDate: not astro_db's update


def test_the_recorder_leaves_out_handshakes():
    class Event:
        def __init__(self, name, command):
            self.command_name, self.command = name, command

    recorder = wire.Recorder()
    recorder.started(Event("hello", {"hello": 1}))
    recorder.started(Event("insert", {"insert": "c", "documents": [{"_id": 1}]}))
    assert [s.name for s in recorder.take()] == ["insert"] and recorder.take() == []


@pytest.mark.parametrize("n", [3, ONE_COMMAND_BATCH + 1])
def test_without_bulk_write_the_documents_and_records_go_in_inserts(n):
    """The embedded backend (mongomock-ng) has no client-level bulkWrite: astro_db sends the
    documents then the records, and so does the raw side."""
    import mongomock_ng

    client = mongomock_ng.MongoClient(tz_aware=True)
    writes = wire.Writes(client["wire_embedded"], "PlanetaryInsight", "planetaryInsights")
    assert writes.one_command is False
    owner = ObjectId()
    writes.create_many(writes.create_many_inputs([stored_insight(owner, i) for i in range(n)]))
    assert writes.coll.count_documents({}) == n and writes.changes.count_documents({"action": "create"}) == n
    writes.create(writes.create_inputs([stored_insight(owner, n)])[0])
    assert writes.coll.count_documents({}) == n + 1 and writes.changes.count_documents({}) == n + 1


def test_the_time_budget_and_session_are_not_compared():
    """astro_db's ``maxTimeMS`` (its per-call time budget, client work) and the session ids are
    not part of a command's shape: the raw side does not send them."""
    doc = stored_user(1, "a")
    ours = {"insert": "users", "ordered": True, "writeConcern": {"w": "majority"}, "documents": [doc],
            "maxTimeMS": 29_999, "lsid": {"id": b"x"}, "$db": "d"}
    raw = {"insert": "users", "ordered": True, "writeConcern": {"w": "majority"}, "documents": [doc]}
    assert wire.compare([wire.shape("insert", ours)], [wire.shape("insert", raw)]) == []
    plain = {k: v for k, v in raw.items() if k != "writeConcern"}  # the write concern is compared
    assert wire.compare([wire.shape("insert", ours)], [wire.shape("insert", plain)])


def test_a_record_whose_post_image_is_raw_bson_has_the_shape_of_its_dict_form():
    """A record's post-image in any mapping form (raw BSON, as a backup file holds one) gives the
    check the same keys, post-image keys and size as its dict form."""
    import bson
    from bson.raw_bson import RawBSONDocument

    doc = stored_user(2, "b")
    record = wire.create_record("User", "users", doc, ObjectId())
    raw = dict(record, doc=RawBSONDocument(bson.encode(record["doc"])))
    command = {"insert": "astroChanges", "ordered": True, "documents": [record]}
    assert wire.shape("insert", command) == wire.shape("insert", dict(command, documents=[raw]))
