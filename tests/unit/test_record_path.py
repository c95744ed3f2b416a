"""The change records' own path on the defaults (issue 27, the defaults' writes): what a
recorded write no longer builds or does again, and that its records are unchanged. Counts and
identities, never times."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import errors as pm
from pymongo.write_concern import WriteConcern

from astro_db import Database
from astro_db.changes import CHANGES_COLLECTION
from astro_db.changes import records as records_module
from astro_db.events import WriteEvent
from astro_db.models import User
from astro_db.ops.writes import WriteRunner


def stored_records(db: Database) -> list[dict[str, Any]]:
    return list(db.mongo[CHANGES_COLLECTION].find({}, sort=[("rev", 1)]))


def test_the_record_hook_alone_writes_the_same_records_without_an_event(monkeypatch):
    """A write the query cache has nothing to do for (it holds nothing of the model) leaves the
    change records as the one hook with work: they are written straight from what was written,
    no ``WriteEvent`` made; with an app hook added the event is made and the records are the
    same (but for the op id and the times each write makes)."""
    events: list[str] = []
    real = WriteEvent.__init__

    def counted(self: WriteEvent, *args: Any, **kwargs: Any) -> None:
        events.append(kwargs.get("action", ""))
        real(self, *args, **kwargs)

    monkeypatch.setattr(WriteEvent, "__init__", counted)

    def writes(db: Database, name: str) -> list[dict[str, Any]]:
        user = db.create(User, {"email": f"{name}@example.com", "name": name})
        db.update(User, {"id": user.id}, {"name": f"{name} 2"})
        return [r for r in stored_records(db) if r["documentId"] == user.id]

    with Database("mongomock://localhost/rp_direct", ensure_indexes=False) as db:
        direct = writes(db, "ann")
        assert events == []
        db.executor.runtime.hooks.append(lambda event: None)
        heard = writes(db, "bob")
        assert events == ["create", "update"]

    def shape(record: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in record.items() if k not in ("_id", "documentId", "time", "t", "doc")}
        kept["doc"] = sorted(record.get("doc", {}))
        return kept

    assert [shape(r) for r in direct] == [shape(r) for r in heard]
    assert [r["action"] for r in direct] == ["create", "update"] and [r["rev"] for r in direct] == [0, 1]
    assert direct[1]["fields"] == ["name"] and direct[1]["doc"]["name"] == "ann 2"


def test_a_records_field_names_are_worked_out_once_per_write_shape(monkeypatch):
    """``ChangeLog.build`` keeps the sorted names of a write's fields per field tuple: a second
    update of the same fields sorts nothing, and the records list the same names."""
    sorts: list[Any] = []
    real_sorted = sorted

    def counting(values: Any, *args: Any, **kwargs: Any) -> Any:
        sorts.append(values)
        return real_sorted(values, *args, **kwargs)

    with Database("mongomock://localhost/rp_names", ensure_indexes=False) as db:
        user = db.create(User, {"email": "cy@example.com", "name": "Cy"})
        log = db.executor.runtime.changes
        monkeypatch.setattr("builtins.sorted", counting)
        db.update(User, {"id": user.id}, {"name": "Cy 2"})
        first = len(sorts)
        db.update(User, {"id": user.id}, {"name": "Cy 3"})
        assert len(sorts) == first  # the names of ("name", ...) kept from the first update
        monkeypatch.setattr("builtins.sorted", real_sorted)
        kept = [names for fields, names in log._names.items() if "name" in fields and "createdAt" not in fields]
        assert kept == [["name", "updatedAt"]] or kept == [["name"]]
        updates = [r for r in stored_records(db) if r["action"] == "update"]
        assert [r["fields"] for r in updates] == [kept[0], kept[0]]


@pytest.mark.parametrize("ordered", [False, True])
def test_make_records_lists_the_names_sorted_whether_given_sorted_or_not(ordered):
    names = ["a", "b"] if ordered else ["b", "a"]
    [record] = records_module.make_records(model="User", collection="users", action="update",
                                           changes=[("x", 1, None, None)], actor=None, request_id=None, fields=names,
                                           audit=True, journal=False, op="op", ordered=ordered)
    assert record["fields"] == ["a", "b"] and record["fields"] is not names
    assert record["_id"] == records_module.record_id("users", "x", 1, "op")


class BulkClient:
    """A gateway whose ``bulkWrite`` command takes every op, or refuses the op at ``refuse``
    (its position in the first command) as a duplicate key: the server's reply, errors only."""

    write_concern = WriteConcern()

    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.sent: list[int] = []

    def bulk_write_command(self, command: dict[str, Any], session: Any = None) -> dict[str, Any]:
        self.sent.append(len(command["ops"]))
        if self.refuse is not None and len(self.sent) == 1:
            return {"ok": 1.0, "nErrors": 1, "nInserted": self.refuse,
                    "cursor": {"id": 0, "ns": "admin.$cmd.bulkWrite",
                               "firstBatch": [{"ok": 0.0, "idx": self.refuse, "code": 11000, "errmsg": "E11000 duplicate key"}]}}
        return {"ok": 1.0, "nErrors": 0, "nInserted": len(command["ops"]),
                "cursor": {"id": 0, "ns": "admin.$cmd.bulkWrite", "firstBatch": []}}


def test_a_one_command_create_the_server_takes_whole_makes_no_outcome_and_a_refusal_its_own():
    from astro_db.ops import bulk

    sons = [{"_id": n} for n in range(2)]
    records = [{"_id": f"r{n}"} for n in range(2)]
    assert bulk.insert_recorded(BulkClient(), "db", "users", sons, records) is bulk.CLEAN
    refused = bulk.insert_recorded(BulkClient(refuse=2), "db", "users", sons, records)  # the second document
    assert refused is not bulk.CLEAN and list(refused.refused) == [1] and refused.unrecorded == []
    assert (dict(bulk.CLEAN.refused), list(bulk.CLEAN.unrecorded)) == ({}, [])  # never changed


class Replying(BulkClient):
    """A gateway whose ``bulkWrite`` command answers ``reply`` and notes every command sent."""

    def __init__(self, reply: dict[str, Any], concern: WriteConcern | None = None) -> None:
        super().__init__()
        self.reply, self.commands = reply, []
        if concern is not None:
            self.write_concern = concern

    def bulk_write_command(self, command: dict[str, Any], session: Any = None) -> dict[str, Any]:
        self.commands.append(command)
        return self.reply


CLEAN_REPLY = {"ok": 1.0, "nErrors": 0, "cursor": {"id": 0, "ns": "admin.$cmd.bulkWrite", "firstBatch": []}}


class InTransaction:
    in_transaction = True


def test_the_bulk_write_command_is_ordered_errors_only_and_carries_the_clients_write_concern():
    """The command ``bulk.insert_recorded`` builds: each document then its record, by
    namespace index, ordered, errors only; the client's write concern when it is not the
    server's default, and never inside a transaction (the commit carries it)."""
    from astro_db.ops import bulk

    sons, records = [{"_id": 1}, {"_id": 2}], [{"_id": "r1"}, {"_id": "r2"}]
    plain = Replying(CLEAN_REPLY)
    bulk.insert_recorded(plain, "db", "users", sons, records)
    [command] = plain.commands
    assert list(command) == ["bulkWrite", "ops", "nsInfo", "ordered", "errorsOnly"]
    assert command["ops"] == [{"insert": 0, "document": {"_id": 1}}, {"insert": 1, "document": {"_id": "r1"}},
                              {"insert": 0, "document": {"_id": 2}}, {"insert": 1, "document": {"_id": "r2"}}]
    assert command["nsInfo"] == [{"ns": "db.users"}, {"ns": f"db.{CHANGES_COLLECTION}"}]
    assert command["ordered"] is True and command["errorsOnly"] is True
    majority = Replying(CLEAN_REPLY, WriteConcern(w="majority", wtimeout=500))
    bulk.insert_recorded(majority, "db", "users", sons, records, written={0}, recorded={"r1"})
    assert majority.commands[0]["writeConcern"] == {"w": "majority", "wtimeout": 500}
    assert [op["document"]["_id"] for op in majority.commands[0]["ops"]] == [2, "r2"]  # what an earlier attempt wrote: left out
    bulk.insert_recorded(majority, "db", "users", sons, records, session=InTransaction())
    assert "writeConcern" not in majority.commands[1]


def test_a_write_concern_error_or_an_unlisted_error_of_the_bulk_write_command_raises():
    """A write concern error in the reply raises the driver's ``WriteConcernError`` (as
    ``MongoClient.bulk_write`` would); a reply that counts an error it does not list is never
    read as a success."""
    from astro_db.ops import bulk

    concern = {**CLEAN_REPLY, "writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"}}
    with pytest.raises(pm.WriteConcernError, match="replication timed out") as raised:
        bulk.insert_recorded(Replying(concern), "db", "users", [{"_id": 1}], [{"_id": "r1"}])
    assert raised.value.code == 64
    unlisted = {**CLEAN_REPLY, "nErrors": 1}
    with pytest.raises(pm.OperationFailure, match="does not list"):
        bulk.insert_recorded(Replying(unlisted), "db", "users", [{"_id": 1}], [{"_id": "r1"}])


def test_a_single_delete_sends_its_intent_and_delete_whole_and_reads_its_count():
    """``bulk.delete_intended`` with one filter (a ``delete``): the intents not written yet, then
    the compare-and-set delete, in one ordered, errors-only command; whether it deleted is the
    reply's ``nDeleted``; a refused intent or a write concern error raises."""
    from astro_db.ops import bulk

    intents = [{"_id": "i1"}, {"_id": "i2"}]
    deleted = Replying({**CLEAN_REPLY, "nDeleted": 1}, WriteConcern(w="majority"))
    assert bulk.delete_intended(deleted, "db", "users", intents, [{"_id": 1, "_rev": 2}], intended={"i1"}) == [True]
    [command] = deleted.commands
    assert command["ops"] == [{"insert": 1, "document": {"_id": "i2"}}, {"delete": 0, "filter": {"_id": 1, "_rev": 2},
                                                                           "multi": False}]
    assert command["nsInfo"] == [{"ns": "db.users"}, {"ns": f"db.{CHANGES_COLLECTION}"}]
    assert command["ordered"] is True and command["errorsOnly"] is True and command["writeConcern"] == {"w": "majority"}
    assert bulk.delete_intended(Replying({**CLEAN_REPLY, "nDeleted": 0}), "db", "users", intents, [{"_id": 1}]) == [False]
    refused = {**CLEAN_REPLY, "nErrors": 1, "cursor": {"id": 0, "firstBatch": [
        {"ok": 0.0, "idx": 0, "code": 121, "errmsg": "Document failed validation"}]}}
    with pytest.raises(pm.OperationFailure, match="failed validation") as raised:
        bulk.delete_intended(Replying(refused), "db", "users", intents, [{"_id": 1}])
    assert raised.value.code == 121
    concern = {**CLEAN_REPLY, "nDeleted": 1, "writeConcernError": {"code": 64, "errmsg": "timed out"}}
    with pytest.raises(pm.WriteConcernError):
        bulk.delete_intended(Replying(concern), "db", "users", intents, [{"_id": 1}])


def test_the_shared_clean_outcome_cannot_be_changed():
    """``bulk.CLEAN`` is returned by every command the server takes whole: a change to it would
    be seen by every later call, so it refuses every change."""
    from astro_db.ops import bulk

    with pytest.raises(TypeError):
        bulk.CLEAN.refused[0] = {"code": 11000}  # type: ignore[index]
    with pytest.raises(AttributeError):
        bulk.CLEAN.unrecorded.append(0)  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        bulk.CLEAN.refused = {}
    assert not bulk.CLEAN.refused and not bulk.CLEAN.unrecorded


def test_a_create_looks_for_pending_records_without_the_lock(monkeypatch):
    """The one-command path asks whether records wait (``ChangeLog.waiting``: a look, no lock);
    with one waiting the create goes the long way, which settles it."""
    with Database("mongomock://localhost/rp_waiting", ensure_indexes=False) as db:
        log = db.executor.runtime.changes
        assert log.waiting is False

        class NoLock:
            def __enter__(self) -> None:
                raise AssertionError("the lock was taken")

            def __exit__(self, *exc: Any) -> None:
                pass

        real = log._lock
        log._lock = NoLock()  # type: ignore[assignment]
        db.executor.runtime.one_command_writes, db.executor.runtime.bulk_write = True, True
        writer_checks = WriteRunner(db.executor.runtime, db.executor.model("User"), None, None, None)
        assert writer_checks._one_command() is True
        log._lock = real
        log._keep([({"_id": "kept", "coll": "users", "documentId": 1, "rev": 1, "t": 0}, "insert")])
        assert log.waiting is True and writer_checks._one_command() is False


def test_the_record_own_benchmark_runs_every_kind(capsys):
    """``benchmarks/record_own.py`` (the defaults' writes' own CPU, no server) runs each kind."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import record_own

    record_own.main(["--rounds", "1", "--batch", "3"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["create", "update", "nested_create", "nested_update"]
    assert all(line.split()[-1] == "calls" for line in lines[1:])
