"""The live tier's own server: start, ObjectId patches, kill -9 and restart.

With ASTRO_DB_TEST_URI set these run against that MongoDB; the fault test then
skips, and the stock-server test still runs (it starts its own nx-27017).
"""

from __future__ import annotations

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
# on a non-_id field, and count_documents with any ObjectId returns 0. If this
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
            with pytest.raises(RuntimeError, match="patch .* no longer works"):
                self_check(stock.url("stock"))
        finally:
            client.close()
    finally:
        stock.stop()
