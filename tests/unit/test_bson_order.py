"""``astro_db.query.order``: a scan in ``_id`` order reaches every type of ``_id``, in the
server's order (the embedded backend orders types as MongoDB does)."""

from __future__ import annotations

import datetime as dt

import mongomock_ng
import pytest
from bson import Binary, ObjectId

from astro_db.query.order import beyond, ids_after

IDS = [7, 2.5, "a", "b", {"k": 1}, Binary(b"x"), ObjectId("6b1640000000000000000001"), ObjectId("6b1640000000000000000002"),
       False, True, dt.datetime(2026, 1, 1)]


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_a_scan_in_id_order_reaches_every_type(batch):
    coll = mongomock_ng.MongoClient().db.scan
    coll.insert_many([{"_id": i} for i in IDS])
    seen, after = [], None
    while True:
        found = list(coll.find({} if after is None else ids_after(after), sort=[("_id", 1)], limit=batch))
        seen += [d["_id"] for d in found]
        if len(found) < batch:
            break
        after = found[-1]["_id"]
    assert seen == [d["_id"] for d in coll.find({}, sort=[("_id", 1)])] and len(seen) == len(IDS)


def test_beyond_names_the_later_types_and_descending_null_last():
    assert beyond("k", 1, ObjectId()) == [{"k": {"$type": "bool"}}, {"k": {"$type": "date"}}]
    assert beyond("k", -1, "s") == [{"k": {"$type": "number"}}, {"k": None}]
    assert beyond("k", 1, True) == [{"k": {"$type": "date"}}]  # a bool is not a number
    assert beyond("k", 1, dt.datetime(2026, 1, 1)) == [] and beyond("k", 1, None) == []
    assert ids_after(dt.datetime(2026, 1, 1)) == {"_id": {"$gt": dt.datetime(2026, 1, 1)}}


def test_key_rotation_reads_every_document_whatever_the_type_of_its_id():
    """Key rotation has no final pass: a document its scan skipped would stay under the old key."""
    from astro_db.security.rotation import _in_batches

    coll = mongomock_ng.MongoClient().db.rotate
    coll.insert_many([{"_id": f"legacy-{i}"} for i in range(4)] + [{"_id": ObjectId()} for _ in range(3)])
    assert len(list(_in_batches(lambda fn: fn(), coll, {"_id": 1}, 2))) == 7
