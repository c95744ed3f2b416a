"""``astro_db.query.order``: a scan in ``_id`` order reaches every type of ``_id``, in the
server's order (the embedded backend orders types as MongoDB does)."""

from __future__ import annotations

import datetime as dt

import bson
import mongomock_ng
import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db.query.evaluate import bson_equal
from astro_db.query.order import beyond, identity, ids_after

UTC = dt.timezone.utc

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


# --- identity: MongoDB's equality as a key (backups and restores key documents by it) -----------
# Before, backups keyed documents by Python's ``==``/``hash``: ``True == 1``, ``Decimal128("1") != 1``
# (tests/unit/test_backup_ids.py). No test server is an oracle here (mongomock-ng takes ``true``
# and ``1`` for one ``_id``, nx-27017 ``1`` and ``1.0`` for two): the local evaluator's
# ``bson_equal``, MongoDB's comparison order, is.

ONE = [1, 1.0, Int64(1), Decimal128("1"), Decimal128("1.000")]


def test_numbers_are_one_id_by_value_and_bools_strings_are_not_numbers():
    assert len({identity(v) for v in ONE}) == 1
    assert len({identity(v) for v in [True, 1, "1", b"1"]}) == 4
    assert identity(False) != identity(0) and identity(None) != identity(False)
    assert identity(0.0) == identity(-0.0) == identity(Decimal128("-0"))
    assert identity(float("nan")) == identity(Decimal128("NaN"))  # every NaN is one value
    assert identity(Decimal128("0.1")) != identity(0.1)  # the double is not exactly 0.1
    assert identity(2**53 + 1) != identity(float(2**53))
    assert identity({"a": 1}) == identity({"a": Decimal128("1.0")}) != identity({"a": True})
    assert identity({"a": 1, "b": 2}) != identity({"b": 2, "a": 1})  # key order counts
    assert identity(dt.datetime(2026, 1, 1, 0, 0, 0, 1500)) == identity(dt.datetime(2026, 1, 1, 0, 0, 0, 1999, tzinfo=UTC))
    assert identity(b"x") == identity(Binary(b"x", 0)) != identity(Binary(b"x", 5))
    assert identity(Timestamp(1, 2)) != identity(dt.datetime.fromtimestamp(1, UTC))
    raw = bson.decode(bson.encode({"v": {"a": Int64(1)}}), codec_options=bson.CodecOptions(
        document_class=bson.raw_bson.RawBSONDocument))["v"]
    assert identity(raw) == identity({"a": 1.0})  # an embedded _id read as raw BSON


scalars = st.one_of(
    st.sampled_from([True, False, 0, 1, -1, 0.0, -0.0, 1.0, 0.5, Int64(0), Int64(1), Decimal128("1"), Decimal128("1.0"),
                     Decimal128("0"), Decimal128("-0"), Decimal128("0.5"), float("nan"), Decimal128("NaN"), float("inf"),
                     Decimal128("Infinity"), 2**53, 2**53 + 1, float(2**53), None, "", "1", "a", b"", b"1",
                     Binary(b"1", 5), ObjectId("6b1640000000000000000001"), ObjectId("6b1640000000000000000002"),
                     Timestamp(1, 1), Timestamp(1, 2)]),
    st.integers(-3, 3), st.floats(-3, 3).map(lambda f: round(f * 2) / 2),
    st.decimals(-3, 3, places=1, allow_nan=False).map(lambda d: Decimal128(str(d))),
    st.datetimes(min_value=dt.datetime(1969, 12, 31, 23, 59, 59), max_value=dt.datetime(1970, 1, 1, 0, 0, 0, 3000),
                 timezones=st.sampled_from([None, UTC])),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=2),
                                                        st.dictionaries(st.sampled_from("ab"), inner, max_size=2)),
                      max_leaves=4)


@settings(max_examples=3000, deadline=None)
@given(values, values)
def test_identity_is_the_servers_equality(a, b):
    """Same key exactly when the server's comparison order holds the two values equal."""
    assert (identity(a) == identity(b)) == bson_equal(a, b), (a, b)
    if identity(a) == identity(b):
        assert hash(identity(a)) == hash(identity(b))
