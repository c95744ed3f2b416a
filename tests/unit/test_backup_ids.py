"""Document identity in backups and restores: a document is its collection and its ``_id`` as
the server tells ``_id`` values apart (``query.order.identity``), not as Python's ``==`` and
``hash`` do.

Before, the incremental dump (``dump._key``), the restore's replay and its tombstones
(``restore._hashable``) and the erasure ledger (a ``frozenset``, a dict by ``_id``) keyed
documents by the Python value: ``True == 1`` and ``hash(True) == hash(1)``, so of two documents
``_id: true`` and ``_id: 1`` (two documents to MongoDB: a bool is no number) an incremental set
kept one, a replay applied one, a deletion of ``1`` buried ``true``, an erased user ``1`` took
user ``true``'s documents out of every restore; and ``Decimal128("1")`` (one ``_id`` with ``1``
to MongoDB) was another key. The target's erasure ledger was also read through ``sorted(ids)``,
which raised ``TypeError`` when it held ids of two types (an ObjectId and a string).

Neither test server can hold such ``_id`` values side by side (mongomock-ng stores ``true`` and
``1`` as one ``_id`` and cannot hash a ``Decimal128`` one; nx-27017 stores ``1`` and ``1.0`` as
two and ``"1"`` and ``1`` as one), so these tests feed the keying code change records (which
the server stores whatever their ``documentId``) and look at what a set holds or what a
restore sends. ``identity`` itself is held to MongoDB's comparison order in
``tests/unit/test_bson_order.py``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools

import bson
import pytest
from bson import Decimal128, Int64, ObjectId
from pymongo import DeleteOne, ReplaceOne

from astro_db import Database, backup
from astro_db.backup.restore import Loader
from astro_db.changes import CHANGES_COLLECTION
from astro_db.personal import ERASURES_COLLECTION

UTC = dt.timezone.utc
_dbs = itertools.count()
_ops = itertools.count()

# --- incremental sets: one last state per document ------------------------------------------------

def fresh_db() -> Database:
    return Database(f"mongomock://localhost/backup_ids_{next(_dbs)}").connect()


def _record(coll: str, doc_id, rev: int, action: str, doc=None, *, t: int) -> dict:
    record = {"_id": f"{coll}/{bson.json_util.dumps(doc_id)}/{rev}/{next(_ops)}", "model": "User", "coll": coll,
              "documentId": doc_id, "rev": rev, "action": action, "time": dt.datetime.fromtimestamp(t / 1000, UTC),
              "t": t, "journal": True}
    if doc is not None:
        record["doc"] = doc
    return record


def _now_ms() -> int:
    return int(dt.datetime.now(UTC).timestamp() * 1000)


def _read(path) -> list[dict]:
    data = gzip.decompress(path.read_bytes())
    return bson.decode_all(data)


def _incremental(db: Database, repo, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The users' upserts and deletions of an incremental set taken over ``records``."""
    backup.backup(db, repo, full=True)
    db.mongo[CHANGES_COLLECTION].insert_many(records)
    summary = backup.backup(db, repo)
    assert summary["kind"] == "incremental"
    directory = next(p for p in sorted(repo.iterdir()) if p.name.endswith("-incremental"))
    return _read(directory / "users.bson.gz"), _read(directory / "users.deleted.bson.gz")


def test_an_incremental_set_keeps_documents_true_and_1_apart(tmp_path):
    db = fresh_db()
    t = _now_ms() + 5
    upserts, deleted = _incremental(db, tmp_path / "repo", [
        _record("users", True, 0, "create", {"_id": True, "name": "bool"}, t=t),
        _record("users", 1, 0, "create", {"_id": 1, "name": "int"}, t=t),
        _record("users", "1", 0, "create", {"_id": "1", "name": "str"}, t=t),
    ])
    assert sorted(d["name"] for d in upserts) == ["bool", "int", "str"] and deleted == []
    db.disconnect()


def test_an_incremental_set_takes_1_and_decimal_and_embedded_numbers_for_one_document(tmp_path):
    """Over-split the other way: a second life of ``_id: 1`` created as ``Decimal128("1")`` and
    ``{k: 1}`` deleted as ``{k: 1.0}`` are one document each, at its highest revision."""
    db = fresh_db()
    t = _now_ms() + 5
    upserts, deleted = _incremental(db, tmp_path / "repo", [
        _record("users", 1, 0, "create", {"_id": 1, "name": "first"}, t=t),
        _record("users", 1.0, 1, "delete", t=t),
        _record("users", Decimal128("1"), 2, "create", {"_id": Decimal128("1"), "name": "second"}, t=t),
        _record("users", {"k": 1}, 0, "create", {"_id": {"k": 1}, "name": "embedded"}, t=t),
        _record("users", {"k": 1.0}, 1, "delete", t=t),
    ])
    assert [d["name"] for d in upserts] == ["second"]
    assert [(d["_id"], d["_rev"]) for d in deleted] == [({"k": 1.0}, 1)]
    db.disconnect()


# --- restores: the replay, tombstones, erased users ---------------------------------------------

class Target:
    """A target database that keeps what a restore sends it: the servers at hand conflate
    ``_id: true`` and ``_id: 1`` (mongomock-ng), so the writes themselves are what is checked."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, object]] = []

    def __getitem__(self, name: str) -> Target._Coll:
        return Target._Coll(self, name)

    class _Coll:
        def __init__(self, target: Target, name: str) -> None:
            self.target, self.name = target, name

        def bulk_write(self, ops, ordered=True):
            self.target.ops += [(self.name, op) for op in ops]

        def insert_many(self, docs, ordered=True):
            self.target.ops += [(self.name, ("insert", doc)) for doc in docs]


def _ids(target: Target, kind) -> list:
    out = []
    for _, op in target.ops:
        if isinstance(op, kind):
            found = op._filter if "_id" in op._filter else op._filter["$and"][0]
            out.append(found["_id"])
    return out


def test_a_replay_applies_documents_true_and_1_both():
    target = Target()
    t = _now_ms()
    entries = [bson.encode(r) for r in (
        _record("users", True, 0, "create", {"_id": True, "name": "bool"}, t=t),
        _record("users", 1, 0, "create", {"_id": 1, "name": "int"}, t=t),
    )]
    assert Loader(target, embedded=True).replay(entries, None) == 2
    assert sorted(map(repr, _ids(target, ReplaceOne))) == ["1", "True"]


def test_a_replay_takes_1_and_its_decimal_and_double_for_one_document():
    target = Target()
    t = _now_ms()
    entries = [bson.encode(r) for r in (
        _record("users", Decimal128("1"), 2, "create", {"_id": Decimal128("1"), "name": "second"}, t=t),
        _record("users", Int64(1), 3, "update", {"_id": Int64(1), "name": "renamed"}, t=t),
        _record("users", 1.0, 4, "delete", t=t),
    )]
    Loader(target, embedded=True).replay(entries, None)
    assert [type(op) for _, op in target.ops] == [DeleteOne] and _ids(target, DeleteOne) == [1.0]


def test_a_deletion_of_1_does_not_bury_document_true():
    target = Target()
    loader = Loader(target, embedded=True)
    loader.delete("users", [bson.encode({"_id": 1, "_rev": 1})])
    loader.upsert("users", [bson.encode({"_id": True, "_rev": 0, "name": "bool"}),
                            bson.encode({"_id": Decimal128("1"), "_rev": 0, "name": "gone"})])
    assert _ids(target, ReplaceOne) == [True]  # the decimal 1 is the deleted document: buried


def test_an_erased_user_1_keeps_user_true_in_the_restore(tmp_path):
    source, target = fresh_db(), fresh_db()
    source.mongo["users"].insert_one({"_id": True, "email": "bool@example.com", "name": "Bool"})
    source.mongo["birthCharts"].insert_many([{"_id": ObjectId(), "userId": True}, {"_id": ObjectId(), "userId": 1}])
    source.mongo[ERASURES_COLLECTION].insert_one({"_id": 1, "state": "done"})
    backup.backup(source, tmp_path / "repo", full=True)
    report = backup.restore(tmp_path / "repo", target)
    assert report["skipped"] == {"birthCharts": 1}
    assert [u["_id"] for u in target.mongo["users"].find()] == [True]
    assert [c["userId"] for c in target.mongo["birthCharts"].find()] == [True]
    source.disconnect(), target.disconnect()


def test_a_target_ledger_of_ids_of_two_types_is_read_and_kept(tmp_path):
    """The ledger was read as ``{"_id": {"$in": sorted(ids)}}``: an ObjectId and a string
    cannot be sorted, and the restore failed with a ``TypeError``."""
    source, target = fresh_db(), fresh_db()
    source.mongo["users"].insert_many([{"_id": "legacy-7", "email": "l@example.com"}, {"_id": ObjectId(), "email": "m@example.com"}])
    backup.backup(source, tmp_path / "repo", full=True)
    erased = [{"_id": ObjectId(), "state": "done"}, {"_id": "legacy-7", "state": "done"}]
    target.mongo[ERASURES_COLLECTION].insert_many(erased)
    report = backup.restore(tmp_path / "repo", target, drop=True)
    assert report["erased_users"] == 2 and report["skipped"] == {"users": 1}
    assert sorted(map(repr, (e["_id"] for e in target.mongo[ERASURES_COLLECTION].find()))) == sorted(
        repr(e["_id"]) for e in erased)
    source.disconnect(), target.disconnect()


@pytest.mark.parametrize("other", [True, 1.0, Int64(1), "1"])
def test_the_ledger_of_a_restore_keeps_user_1_beside_ids_of_other_types(tmp_path, other):
    from astro_db.backup.repository import Repository
    from astro_db.backup.restore import _ledger

    source = fresh_db()
    source.mongo[ERASURES_COLLECTION].insert_one({"_id": 1, "state": "done"})
    backup.backup(source, tmp_path / "repo", full=True)
    ledger = _ledger(Repository(tmp_path / "repo"), _LedgerOf([{"_id": other, "state": "done"}]), None)
    assert len(ledger) == (1 if isinstance(other, (int, float)) and not isinstance(other, bool) else 2), ledger
    source.disconnect()


class _LedgerOf:
    """A target whose erasure ledger holds ``docs`` (read with ``find``)."""

    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs

    def __getitem__(self, name: str):
        assert name == ERASURES_COLLECTION
        docs = self.docs

        class _Coll:
            def find(self, *args, **kwargs):
                return list(docs)

        return _Coll()


def test_reconcile_scrubs_the_records_of_erased_users_whose_ids_are_of_two_types():
    """A restore writes the ledger it gathered into the target, ids of every type; then
    ``reconcile_changes()`` sorted them in Python to scrub their records and failed with a
    ``TypeError`` (an ObjectId and a string)."""
    db = fresh_db()
    db.mongo[ERASURES_COLLECTION].insert_many([{"_id": ObjectId(), "state": "done"}, {"_id": "legacy-7", "state": "done"}])
    chart = {"_id": ObjectId(), "userId": "legacy-7"}
    db.mongo[CHANGES_COLLECTION].insert_one(_record("birthCharts", chart["_id"], 0, "create", chart, t=_now_ms()))
    assert db.reconcile_changes()["erasures"]["scrubbed"] == 1
    assert "doc" not in db.mongo[CHANGES_COLLECTION].find_one({"documentId": chart["_id"]})
    db.disconnect()


@pytest.mark.parametrize("owner", [["u1", "u2"], {"id": "u1"}], ids=["list", "document"])
def test_a_document_whose_owner_is_no_scalar_is_restored_beside_an_erasure(tmp_path, owner):
    """Another client stored a chart whose ``userId`` is a list or a document; with any user
    erased, the restore asked whether it belonged to one with ``value in frozenset(...)``, which
    raised ``TypeError`` (unhashable) and failed the whole restore."""
    source, target = fresh_db(), fresh_db()
    source.mongo["birthCharts"].insert_one({"_id": ObjectId(), "userId": owner})
    source.mongo[ERASURES_COLLECTION].insert_one({"_id": ObjectId(), "state": "done"})
    backup.backup(source, tmp_path / "repo", full=True)
    report = backup.restore(tmp_path / "repo", target)
    assert report["skipped"] == {} and [c["userId"] for c in target.mongo["birthCharts"].find()] == [owner]
    source.disconnect(), target.disconnect()
