"""The live tier's own server: start, its patches (ObjectId filters, updated
datetimes, pushed sub-documents), kill -9 and restart.

With ASTRO_DB_TEST_URI set these run against that MongoDB; the fault test then
skips, and the stock-server test still runs (it starts its own nx-27017).
"""

from __future__ import annotations

import datetime as dt
import sys
import time

import pymongo
import pytest
from bson import ObjectId

from live.nxserver import NxServer, self_check


@pytest.fixture
def client(live_url):
    c = pymongo.MongoClient(live_url, serverSelectionTimeoutMS=5000)
    yield c
    c.close()


def test_server_answers_ping_and_round_trips(client):
    assert client.admin.command("ping")["ok"] == 1
    coll = client.get_default_database()["things"]
    oid = coll.insert_one({"name": "x", "n": 1}).inserted_id
    assert isinstance(oid, ObjectId)
    assert coll.find_one({"_id": oid})["name"] == "x"


def test_self_check_passes(live_url):
    self_check(live_url)


@pytest.fixture
def seeded(client):
    """Two users' documents; filters by userId must pick exactly one user's.

    No document holds an ObjectId's hex *string*: on nx-27017 (patched or not)
    an ObjectId and its hex string compare equal wherever neosqlite evaluates a
    filter in Python, which the patch uses for ObjectId filters. So on the live
    tier, check that a reference is stored as an ObjectId by reading it back
    (isinstance(doc["userId"], ObjectId)), not by "a string filter misses it".
    """
    coll = client.get_default_database()["insights"]
    ann, bob = ObjectId(), ObjectId()
    coll.insert_many([
        {"userId": ann, "n": 1, "refs": [ann], "owner": {"id": ann}},
        {"userId": ann, "n": 2, "refs": [bob, ann], "owner": {"id": ann}},
        {"userId": bob, "n": 3, "refs": [bob], "owner": {"id": bob}},
        {"userId": None, "n": 4},
    ])
    return coll, ann, bob


@pytest.mark.parametrize("make_filter, expected", [
    (lambda a, b: {"userId": a}, [1, 2]),
    (lambda a, b: {"userId": a, "n": {"$gt": 1}}, [2]),
    (lambda a, b: {"userId": {"$in": [a, b]}}, [1, 2, 3]),
    (lambda a, b: {"$or": [{"userId": b}, {"n": 1}]}, [1, 3]),
    (lambda a, b: {"refs": b}, [2, 3]),           # array contains
    (lambda a, b: {"owner.id": b}, [3]),          # dotted path
    (lambda a, b: {"userId": {"$eq": a}}, [1, 2]),
    (lambda a, b: {"userId": {"$ne": a}}, [3, 4]),
], ids=["eq", "eq+and", "in", "or", "array", "dotted", "$eq", "$ne"])
def test_objectid_filters(seeded, make_filter, expected):
    coll, ann, bob = seeded
    query = make_filter(ann, bob)
    assert sorted(d["n"] for d in coll.find(query)) == expected
    assert coll.count_documents(query) == len(expected)
    assert sorted(d["n"] for d in coll.aggregate([{"$match": query}])) == expected
    assert sorted(coll.distinct("n", query)) == expected


def test_objectid_filters_in_writes(seeded):
    coll, ann, bob = seeded
    assert isinstance(coll.find_one({"n": 1})["userId"], ObjectId)
    assert coll.update_many({"userId": ann}, {"$inc": {"n": 10}}).modified_count == 2
    assert coll.find_one_and_update({"userId": bob}, {"$set": {"x": 1}})["n"] == 3
    assert [d["n"] for d in coll.find({"userId": ann}).sort("n", -1).limit(1)] == [12]
    assert coll.delete_many({"userId": ann}).deleted_count == 2
    assert coll.count_documents({}) == 2


# Bugs 4-6 of tests/nx_launcher.py: datetimes written by an update must be stored
# as dates (as insert stores them), pushed sub-documents must stay documents.
UTC = dt.timezone.utc
BASE = dt.datetime(2026, 1, 10, 8, 30, 15, 123000, tzinfo=UTC)


@pytest.fixture
def tz_client(live_url):
    c = pymongo.MongoClient(live_url, serverSelectionTimeoutMS=5000, tz_aware=True)
    yield c
    c.close()


def _set_at(coll, doc_id, when, how):
    spec = {"$set": {"at": when, "meta": {"when": when, "tags": [when]}}}
    if how == "update_one":
        assert coll.update_one({"_id": doc_id}, spec).matched_count == 1
    elif how == "update_many":
        assert coll.update_many({"_id": doc_id}, spec).matched_count == 1
    else:
        assert coll.find_one_and_update({"_id": doc_id}, spec) is not None


@pytest.mark.parametrize("how", ["update_one", "update_many", "find_one_and_update"])
def test_set_datetime_is_stored_as_a_date(tz_client, how):
    coll = tz_client.get_default_database()["dates"]
    inserted, updated = [], []
    for n in range(5):
        when = BASE + dt.timedelta(days=n)
        inserted.append(coll.insert_one({"kind": "ins", "n": n, "at": when,
                                         "meta": {"when": when}}).inserted_id)
        doc_id = coll.insert_one({"kind": "upd", "n": n}).inserted_id
        _set_at(coll, doc_id, when, how)
        updated.append(doc_id)

    doc = coll.find_one({"_id": updated[2]})
    assert doc["at"] == BASE + dt.timedelta(days=2)
    assert doc["at"].tzinfo is not None  # tz_aware=True: a BSON date, not a string
    assert isinstance(doc["meta"]["when"], dt.datetime)
    assert isinstance(doc["meta"]["tags"][0], dt.datetime)

    lo, hi = BASE + dt.timedelta(days=1), BASE + dt.timedelta(days=3)
    for field in ("at", "meta.when"):
        for kind in ("ins", "upd"):  # $set dates behave like inserted ones
            query = {"kind": kind, field: {"$gte": lo, "$lt": hi}}
            assert sorted(d["n"] for d in coll.find(query)) == [1, 2], (field, kind)
            assert coll.count_documents(query) == 2
            assert coll.count_documents({"kind": kind, field: {"$gt": hi}}) == 1
            assert coll.count_documents({"kind": kind, field: lo}) == 1
    assert [d["n"] for d in coll.find({"kind": "upd"}).sort("at", -1)] == [4, 3, 2, 1, 0]


def test_array_and_other_update_operators_keep_datetimes(tz_client):
    coll = tz_client.get_default_database()["dates_ops"]
    later = BASE + dt.timedelta(days=1)
    doc_id = coll.insert_one({"log": [{"k": 0}], "flags": [True, False],
                              "lo": BASE, "hi": BASE}).inserted_id
    after = coll.find_one_and_update(
        {"_id": doc_id},
        {"$push": {"log": {"k": 1, "at": BASE}, "flags": True}},
        return_document=pymongo.ReturnDocument.AFTER,
    )
    # existing and pushed sub-documents stay documents; booleans stay booleans
    assert after["log"] == [{"k": 0}, {"k": 1, "at": BASE}]
    assert after["flags"] == [True, False, True]

    coll.update_one({"_id": doc_id}, {"$push": {"log": {"$each": [{"k": 2, "at": later}],
                                                          "$slice": -2}}})
    coll.update_one({"_id": doc_id}, {"$addToSet": {"days": BASE}})  # field missing
    coll.update_one({"_id": doc_id}, {"$addToSet": {"days": BASE}})  # duplicate
    coll.update_one({"_id": doc_id}, {"$addToSet": {"days": later}})
    coll.update_one({"_id": doc_id}, {"$min": {"lo": BASE - dt.timedelta(days=1)},
                                      "$max": {"hi": later}})
    doc = coll.find_one({"_id": doc_id})
    assert doc["log"] == [{"k": 1, "at": BASE}, {"k": 2, "at": later}]
    assert isinstance(doc["log"][1]["at"], dt.datetime)
    assert doc["days"] == [BASE, later]
    assert doc["lo"] == BASE - dt.timedelta(days=1) and doc["hi"] == later

    coll.update_one({"_id": doc_id}, {"$pull": {"days": BASE}})
    assert coll.find_one({"_id": doc_id})["days"] == [later]

    coll.update_one({"name": "new"}, {"$set": {"x": 1}, "$setOnInsert": {"created": BASE}},
                    upsert=True)
    assert coll.find_one({"name": "new"})["created"] == BASE


def test_binary_subtypes_and_binary_ids_round_trip(live_url):
    """Bug 7: a BSON binary keeps its subtype (UUID 4, encrypted 6) and a binary _id matches, in
    every command field-level encryption's key vault and values go through."""
    import uuid

    from bson import Binary
    from bson.binary import UuidRepresentation

    c = pymongo.MongoClient(live_url, serverSelectionTimeoutMS=5000, uuidRepresentation="standard")
    try:
        coll = c.get_default_database()["vault"]
        key_id, other_id = uuid.uuid4(), uuid.uuid4()
        sealed = Binary(b"\x02" + key_id.bytes + b"ciphertext", 6)
        coll.insert_many([
            {"_id": key_id, "keyAltNames": ["user:a"], "keyMaterial": b"wrapped", "vals": [sealed]},
            {"_id": other_id, "keyAltNames": ["user:b"], "keyMaterial": b"other"},
        ])
        doc = coll.find_one({"_id": key_id})
        assert doc is not None and doc["_id"] == key_id
        assert doc["vals"] == [sealed] and doc["vals"][0].subtype == 6
        assert isinstance(doc["keyMaterial"], bytes) and doc["keyMaterial"] == b"wrapped"  # subtype 0: bytes
        by_in = coll.find({"$or": [{"_id": {"$in": [key_id]}}, {"keyAltNames": {"$in": ["user:none"]}}]})
        assert [d["_id"] for d in by_in] == [key_id]
        assert coll.count_documents({"_id": key_id}) == 1
        assert coll.count_documents({"vals": sealed}) == 1
        assert coll.count_documents({"vals": Binary(bytes(sealed), 0)}) == 0  # the subtype is part of the value
        assert coll.update_one({"_id": key_id}, {"$set": {"one": sealed}, "$push": {"vals": sealed}}).matched_count == 1
        doc = coll.find_one_and_update({"_id": key_id}, {"$set": {"seen": True}}, return_document=True)
        assert doc["one"] == sealed and doc["vals"] == [sealed, sealed] and doc["one"].subtype == 6
        raw = c.get_database(coll.database.name, codec_options=coll.codec_options.with_options(
            uuid_representation=UuidRepresentation.UNSPECIFIED))["vault"].find_one({"_id": Binary(other_id.bytes, 4)})
        assert raw is not None and raw["_id"] == Binary(other_id.bytes, 4)
        assert coll.delete_one({"_id": key_id}).deleted_count == 1
        assert [d["_id"] for d in coll.find()] == [other_id]
    finally:
        c.close()


def test_count_documents_is_answered_without_the_python_tiers_copies(tmp_path, monkeypatch):
    """Slowness 9 of tests/nx_launcher.py, in process (neosqlite without a server): PyMongo's
    count_documents pipeline gives the Python aggregation tier's own answers without running
    that tier (which deep-copies every document of the collection first); a pipeline of another
    shape still runs it."""
    import neosqlite
    import neosqlite.collection.query_engine as query_engine
    import nx_launcher  # noqa: F401  (the patches)

    coll = neosqlite.Connection(str(tmp_path / "count.db"))["docs"]
    coll.insert_many([{"a": 1}, {"a": 2}, {"b": 1}, {"a": None}, {"a": [1, 2]}, {"a": "1"}, {"a": {"x": 1}}])
    group = {"$group": {"_id": 1, "n": {"$sum": 1}}}
    filters = [{}, {"a": 1}, {"a": {"$ne": 1}}, {"a": {"$exists": False}}, {"a": None}, {"a.x": 1}, {"zz": 3},
               {"$or": [{"b": 1}, {"a": {"$gt": 1}}]}]
    middles = [[], [{"$skip": 2}], [{"$limit": 3}], [{"$skip": 1}, {"$limit": 2}], [{"$skip": 20}]]
    runs = []
    tier = query_engine.execute_python_aggregation
    monkeypatch.setattr(query_engine, "execute_python_aggregation",
                        lambda engine, pipeline, session=None: runs.append(pipeline) or tier(engine, pipeline, session))
    for filt in filters:
        for middle in middles:
            expected = tier(coll.query_engine, [{"$match": filt}, *middle, group])
            assert list(coll.aggregate([{"$match": filt}, *middle, group])) == expected, (filt, middle)
    assert runs == []  # not once through the tier
    odd = [{"$match": {}}, {"$skip": 0}, group]  # a $skip PyMongo never sends: the original path
    assert list(coll.aggregate(odd)) == [{"_id": 1, "n": 7}] and runs == [odd]


def test_a_count_on_top_level_fields_decodes_only_them_with_the_tiers_answers(tmp_path, monkeypatch):
    """Slowness 9, its field path: a count whose filter names only top-level fields reads those
    fields in SQL (no whole document decoded: find() is not called) and answers as the Python
    aggregation tier does, whatever the values: missing, null, bools, numbers, strings, dates,
    ObjectIds, sub-documents, arrays of either. A dotted or _id filter still loads documents."""
    import datetime as dt

    import neosqlite
    import neosqlite.collection.query_engine as query_engine
    import nx_launcher  # noqa: F401  (the patches)
    from neosqlite.objectid import ObjectId as NeoObjectId

    coll = neosqlite.Connection(str(tmp_path / "fields.db"))["docs"]
    oid, when = NeoObjectId(), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    values = [1, 2, 2.5, 0, True, False, None, "1", "free", "", "é", when, oid, [1, 2], [], ["free", 3],
              {"x": 1}, {"x": [1, {"y": 2}]}, [{"x": 1}, {"x": 2}], [oid], [when]]
    coll.insert_many([{"a": v, "b": n % 3} for n, v in enumerate(values)] + [{"b": 1}, {}])
    group = {"$group": {"_id": 1, "n": {"$sum": 1}}}
    filters = [{"a": 1}, {"a": True}, {"a": None}, {"a": "free"}, {"a": oid}, {"a": when}, {"a": [1, 2]},
               {"a": {"$exists": False}}, {"a": {"$exists": True}, "b": 1}, {"a": {"$ne": 1}},
               {"a": {"$gt": 1}}, {"a": {"$gte": when}}, {"a": {"$in": [1, "free", None]}}, {"a": {"$nin": [2, oid]}},
               {"a": {"$type": "string"}}, {"a": {"$size": 2}}, {"a": {"$all": [1, 2]}},
               {"a": {"$elemMatch": {"x": 2}}}, {"a": {"$regex": "^fr"}},
               {"a": {"$mod": [2, 0]}}, {"b": 2}, {"zz": None}]
    finds: list[object] = []
    find = type(coll.query_engine).find
    monkeypatch.setattr(type(coll.query_engine), "find", lambda self, *a, **k: finds.append(a) or find(self, *a, **k))
    tier = query_engine.execute_python_aggregation
    for filt in filters:
        expected = tier(coll.query_engine, [{"$match": filt}, group])
        finds.clear()
        assert list(coll.aggregate([{"$match": filt}, group])) == expected, filt
        assert finds == [], filt
    for filt in ({"a.x": 1}, {"_id": {"$exists": True}}, {"$or": [{"a": 1}, {"b": 2}]}):
        finds.clear()
        assert list(coll.aggregate([{"$match": filt}, group])) == tier(coll.query_engine, [{"$match": filt}, group])
        assert len(finds) == 2  # the whole documents, here and in the tier itself


def test_a_write_command_commits_once_not_once_per_document(tmp_path):
    """Slowness 10 of tests/nx_launcher.py, in process: an insert of many documents and an
    update of many run in one SQLite transaction each (one SAVEPOINT, one RELEASE, none left
    open), with the per-document answers they had; a command of a client transaction is not
    wrapped (its session holds the transaction)."""
    import nx_launcher  # noqa: F401  (the patches)
    from nx_27017.handler import NeoSQLiteHandler

    handler = NeoSQLiteHandler(data_dir=str(tmp_path / "data"))
    conn = handler.get_database("t").db
    statements: list[str] = []
    conn.set_trace_callback(lambda sql: statements.append(sql.strip()))
    first = lambda word: [sql for sql in statements if sql.split()[0].upper() == word]  # noqa: E731

    def send(body: dict, insert: bool = False) -> dict:
        statements.clear()
        msg = {"request_id": 1, "sections": [("body", {**body, "$db": "t"})]}
        return (handler.handle_insert if insert else handler.handle_command)(msg)[1]

    docs = [{"_id": n, "n": n} for n in (0, 1, 2, 3, 4, 2, 7)]
    reply = send({"insert": "c", "documents": docs, "ordered": False}, insert=True)
    assert reply["n"] == 6 and [e["index"] for e in reply["writeErrors"]] == [5]
    assert len(first("INSERT")) == 7 and len(first("SAVEPOINT")) == len(first("RELEASE")) == 1
    assert not conn.in_transaction
    reply = send({"update": "c", "updates": [{"q": {"n": {"$lt": 4}}, "u": {"$inc": {"n": 10}}, "multi": True}]})
    assert reply["nModified"] == 4 and len(first("UPDATE")) == 4
    assert len(first("SAVEPOINT")) == len(first("RELEASE")) == 1 and not conn.in_transaction
    send({"find": "c", "filter": {}})
    assert first("SAVEPOINT") == []  # reads are not wrapped
    lsid = {"id": __import__("uuid").uuid4()}
    send({"insert": "c", "documents": [{"_id": 9}], "lsid": lsid, "txnNumber": 1, "startTransaction": True,
          "autocommit": False}, insert=True)
    assert first("INSERT") and not any("nx_launcher_write_command" in sql for sql in statements)
    assert conn.in_transaction  # the client transaction, still open until its commit
    send({"commitTransaction": 1, "lsid": lsid, "txnNumber": 1, "autocommit": False})
    assert not conn.in_transaction
    assert sorted(d["_id"] for d in send({"find": "c", "filter": {}})["cursor"]["firstBatch"]) == [0, 1, 2, 3, 4, 7, 9]


def test_an_insert_does_not_format_its_documents_for_a_debug_line(tmp_path):
    """Slowness 11 of tests/nx_launcher.py, in process: nx-27017's handle_insert builds a debug
    message of all its sections with an f-string; with the launcher, no document is formatted."""
    import nx_launcher  # noqa: F401  (the patches)
    from nx_27017.handler import NeoSQLiteHandler

    formatted: list[str] = []

    class Loud(str):
        def __repr__(self) -> str:
            formatted.append(str(self))
            return str.__repr__(self)

    handler = NeoSQLiteHandler(data_dir=str(tmp_path / "data"))
    body = {"insert": "c", "documents": [{"_id": n, "text": Loud(f"doc {n}")} for n in range(3)], "$db": "t"}
    reply = handler.handle_insert({"request_id": 1, "sections": [("body", body)]})[1]
    assert reply["n"] == 3 and formatted == []
    found = handler.handle_command({"request_id": 2, "sections": [("body", {"find": "c", "filter": {}, "$db": "t"})]})
    assert [d["text"] for d in found[1]["cursor"]["firstBatch"]] == ["doc 0", "doc 1", "doc 2"]


def test_a_set_of_an_object_id_is_written_by_the_first_sql_try(tmp_path, monkeypatch):
    """Slowness 12 of tests/nx_launcher.py, in process: the service's update (``$set`` of its op
    id, an ObjectId, with ``$inc`` and ``$currentDate``) is stored by neosqlite's first SQL
    update, not after two failed tries and the Python update; it reads back as an ObjectId."""
    import neosqlite
    import neosqlite.collection.query_helper.update_operations as update_operations
    import nx_launcher  # noqa: F401  (the patches)
    from neosqlite.objectid import ObjectId as NeoObjectId

    python_updates: list[object] = []
    python_update = update_operations.UpdateOperationsMixin._perform_python_update
    monkeypatch.setattr(update_operations.UpdateOperationsMixin, "_perform_python_update",
                        lambda self, doc_id, *rest: python_updates.append(doc_id) or python_update(self, doc_id, *rest))
    coll = neosqlite.Connection(str(tmp_path / "set.db"))["users"]
    coll.insert_many([{"_id": n, "__v": 0} for n in range(3)])
    op = NeoObjectId()
    result = coll.update_many({"plan": {"$exists": False}}, {"$set": {"plan": "free", "_op": op, "by": {"op": op}},
                                                             "$inc": {"_rev": 1}, "$currentDate": {"updatedAt": True}})
    assert result.modified_count == 3 and python_updates == []
    assert [(d["_op"], d["by"], d["_rev"]) for d in coll.find({"_op": op})] == [(op, {"op": op}, 1)] * 3


def test_an_update_many_by_object_ids_selects_them_in_sql_and_keeps_bools(tmp_path, monkeypatch):
    """Slowness 13 and Bug 14 of tests/nx_launcher.py, in process: a migration batch's
    update_many (`{<not migrated>, "_id": {"$in": [ObjectId...]}}`) finds its documents in SQL,
    not through find() and a row lookup per document, and changes only the listed ones; a $set
    of a bool stores true/false, not 1/0."""
    import neosqlite
    import nx_launcher  # noqa: F401  (the patches)
    from neosqlite.objectid import ObjectId as NeoObjectId

    coll = neosqlite.Connection(str(tmp_path / "in.db"))["users"]
    ids = [NeoObjectId() for _ in range(5)]
    coll.insert_many([{"_id": i, "n": n} for n, i in enumerate(ids)])
    engine = type(coll.query_engine)
    finds: list[object] = []
    find = engine.find
    monkeypatch.setattr(engine, "find", lambda self, *a, **k: finds.append(a) or find(self, *a, **k))
    result = coll.update_many({"plan": {"$exists": False}, "_id": {"$in": ids[1:4]}},
                              {"$set": {"plan": "free", "_op": ids[0], "active": True}})
    assert result.matched_count == result.modified_count == 3 and finds == []
    monkeypatch.setattr(engine, "find", find)
    assert [(d["_id"], d.get("plan"), d.get("active")) for d in coll.find()] == [
        (ids[0], None, None), (ids[1], "free", True), (ids[2], "free", True), (ids[3], "free", True), (ids[4], None, None)]
    assert all(type(d["active"]) is bool for d in coll.find({"plan": "free"}))


def test_an_insert_is_not_deep_copied_and_stores_what_it_did(tmp_path):
    """Slowness 15 of tests/nx_launcher.py, in process: neosqlite's insert no longer deep-copies
    the document (a value's __deepcopy__ is never called), stores the same document (nested
    dicts and lists, bytes, dates, ObjectIds) and sets a generated _id on the caller's dict."""
    import copy
    import datetime as dt

    import neosqlite
    import nx_launcher  # noqa: F401  (the patches)
    from neosqlite.binary import Binary
    from neosqlite.objectid import ObjectId as NeoObjectId

    copied: list[str] = []

    class Watched(str):
        def __deepcopy__(self, memo: object) -> str:
            copied.append(str(self))
            return str(self)

    coll = neosqlite.Connection(str(tmp_path / "ins.db"))["docs"]
    when, ref = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc), NeoObjectId()
    doc = {"s": Watched("w"), "nested": {"at": when, "refs": [ref, {"b": b"raw"}]}, "list": [1, [2, 3]]}
    expected = copy.deepcopy({**doc, "s": "w"})
    copied.clear()
    inserted = coll.insert_one(doc).inserted_id
    assert copied == [] and doc["_id"] == inserted
    stored = coll.find_one({"_id": inserted})
    assert stored == {**expected, "_id": inserted, "nested": {"at": when, "refs": [ref, {"b": Binary(b"raw")}]}}
    assert doc["nested"]["refs"][1]["b"] == b"raw" and type(doc["nested"]["refs"][1]["b"]) is bytes  # caller's untouched


def test_a_projected_find_does_not_deep_copy_what_it_loaded(tmp_path):
    """Slowness 16 of tests/nx_launcher.py, in process: a find with an inclusion or an exclusion
    projection no longer deep-copies each loaded document (a value's __deepcopy__ is never
    called) and projects as before."""
    import neosqlite
    import nx_launcher  # noqa: F401  (the patches)

    copied: list[str] = []

    class Watched(str):
        def __deepcopy__(self, memo: object) -> str:
            copied.append(str(self))
            return str(self)

    coll = neosqlite.Connection(str(tmp_path / "proj.db"))["docs"]
    coll.insert_many([{"_id": n, "a": n, "b": {"c": [n, {"d": n}]}, "e": f"e{n}"} for n in range(3)])
    load = coll._load_with_stored_id  # each loaded document gets a watched value
    coll._load_with_stored_id = lambda *a: {**load(*a), "w": Watched("w")}  # type: ignore[method-assign]
    assert list(coll.find({}, {"a": 1})) == [{"_id": n, "a": n} for n in range(3)]
    assert list(coll.find({"a": {"$gte": 1}}, {"b": 0, "w": 0})) == [{"_id": n, "a": n, "e": f"e{n}"} for n in (1, 2)]
    assert list(coll.find({}, {"b.c": 1, "_id": 0})) == [{"b.c": [n, {"d": n}]} for n in range(3)]  # flattened, as before
    assert copied == []


def test_a_keyset_reads_or_is_two_reads_and_the_python_tier_only_at_the_end(tmp_path, monkeypatch):
    """Slowness 18 of tests/nx_launcher.py, in process: a scan's keyset read (``$or`` of the
    ObjectIds past one and the ``bool`` and ``date`` brackets, sorted by _id, limited) reads a
    full batch of ObjectIds without the Python tier (no cursor sorts or loads in Python: the
    tier's full load is a ``find({})`` sorted in Python too), and only a batch that runs short
    reads the type brackets, after the ObjectIds, in MongoDB's order; a read of another shape (a
    skip) still takes the one Python read it took."""
    import neosqlite
    import nx_launcher  # noqa: F401  (the patches)
    from neosqlite.collection import cursor as neo_cursor
    from neosqlite.objectid import ObjectId as NeoObjectId

    coll = neosqlite.Connection(str(tmp_path / "keys.db"))["users"]
    ids = sorted(NeoObjectId() for _ in range(8))
    coll.insert_many([{"_id": i, "n": n, "plan": None if n % 3 else "old"} for n, i in enumerate(ids)])
    coll.insert_many([{"_id": True, "n": 8}, {"_id": False, "n": 9}, {"_id": 3, "n": 10}, {"_id": "s", "n": 11}])
    python_tier: list[object] = []
    tier = neo_cursor.Cursor._apply_sorting  # taken only when SQL did not sort (the Python tier)
    monkeypatch.setattr(neo_cursor.Cursor, "_apply_sorting", lambda self, docs: python_tier.append(self._filter) or tier(self, docs))

    def after(oid, limit, skip=0, **rest):
        later = [{"_id": {"$gt": oid}}, {"_id": {"$type": "bool"}}, {"_id": {"$type": "date"}}]
        return [d["_id"] for d in coll.find({**rest, "$or": later}).sort("_id", 1).skip(skip).limit(limit)]

    assert after(ids[0], 4) == ids[1:5] and python_tier == []  # a full batch: SQL alone
    assert after(ids[5], 4) == [ids[6], ids[7], False, True]  # short: the brackets after the ObjectIds
    typed = {"$or": [{"_id": {"$type": "bool"}}, {"_id": {"$type": "date"}}]}
    assert typed in python_tier and all(f in ({}, typed) for f in python_tier)  # the brackets' read (and its full load) alone
    assert after(ids[0], 10, plan=None) == [i for n, i in enumerate(ids) if n and n % 3] + [False, True]
    python_tier.clear()
    after(ids[0], 2, skip=1)  # (nx-27017's own Python sort puts a boolean before the ObjectIds there)
    assert any("$or" in f and {"_id": {"$gt": ids[0]}} in f["$or"] for f in python_tier)  # another shape: the one read, as before


def test_kill_9_and_restart_keep_acknowledged_writes(live_server, client):
    coll = client.get_default_database()["durable"]
    user = ObjectId()
    for i in range(50):
        coll.insert_one({"userId": user, "i": i})  # each acknowledged (w=1)

    live_server.kill()  # skips on an external MongoDB
    assert not live_server.alive()
    began = time.monotonic()
    live_server.restart()
    restart_seconds = time.monotonic() - began
    assert live_server.alive()

    # The pooled client reconnects by itself to the same port.
    assert coll.count_documents({}) == 50
    assert coll.count_documents({"userId": user}) == 50
    assert restart_seconds < 10, f"restart took {restart_seconds:.1f} s"


# ---------------------------------------------------------------------------
# Why tests/nx_launcher.py exists.
# The stock server (no patches) silently matches nothing for an ObjectId filter
# on a non-_id field, count_documents with any ObjectId returns 0, and updates
# store datetimes and pushed sub-documents as strings. If this
# test fails, upstream behaviour changed: the pins were bumped or the bug was
# fixed; revisit tests/nx_launcher.py (perhaps it is no longer needed).
# ---------------------------------------------------------------------------

def test_stock_nx27017_has_the_objectid_bugs(tmp_path):
    stock = NxServer(tmp_path / "stock", command=[sys.executable, "-m", "nx_27017.nx_27017"])
    stock.start()
    try:
        client = pymongo.MongoClient(stock.url("stock"), serverSelectionTimeoutMS=5000)
        try:
            coll = client.stock.docs
            user = ObjectId()
            doc_id = coll.insert_one({"userId": user}).inserted_id

            assert coll.find_one({"_id": doc_id}) is not None  # _id in find works
            assert list(coll.find({"userId": user})) == []           # bug 1 (neosqlite)
            assert coll.count_documents({"userId": user}) == 0       # bugs 1 and 2
            assert coll.count_documents({"_id": doc_id}) == 0        # bug 2 (nx-27017)
            assert coll.update_one({"userId": user}, {"$set": {"x": 1}}).matched_count == 0
            # bug 4 (neosqlite): an updated datetime is stored as a string;
            # bug 5 (neosqlite): a pushed sub-document is stored as a JSON string
            coll.update_one({"_id": doc_id}, {"$set": {"at": dt.datetime(2026, 1, 1)},
                                              "$push": {"log": {"k": 1}}})
            doc = coll.find_one({"_id": doc_id})
            assert isinstance(doc["at"], str) and isinstance(doc["log"][0], str)
            with pytest.raises(RuntimeError, match="patch .* no longer works"):
                self_check(stock.url("stock"))
        finally:
            client.close()
    finally:
        stock.stop()


def test_stock_nx27017_loses_binary_subtypes(tmp_path):
    """Bug 7 without the launcher: a UUID or encrypted value comes back as plain bytes and a
    binary _id matches nothing (if this fails, revisit Bug 7 in tests/nx_launcher.py)."""
    import uuid

    from bson import Binary

    stock = NxServer(tmp_path / "stock", command=[sys.executable, "-m", "nx_27017.nx_27017"])
    stock.start()
    try:
        client = pymongo.MongoClient(stock.url("stock"), serverSelectionTimeoutMS=5000,
                                     uuidRepresentation="standard")
        try:
            coll = client.stock.vault
            key_id = uuid.uuid4()
            coll.insert_one({"_id": key_id, "v": Binary(b"sealed", 6)})
            (doc,) = coll.find()
            assert doc == {"_id": key_id.bytes, "v": b"sealed"}
            assert coll.find_one({"_id": key_id}) is None
        finally:
            client.close()
    finally:
        stock.stop()
