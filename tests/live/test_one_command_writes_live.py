"""A create and its change records in one ``bulkWrite`` command (``astro_db.ops.bulk``), on a live server.

nx-27017 speaks MongoDB 8.0's client-level ``bulkWrite`` (it reports wire version 25), so the
default write path is the one-command path there. Faults are injected at the driver call
(``Gateway.bulk_write_command``): the command really runs against the server (all of it, or the
first ``k`` operations), then the reply is replaced by the error, or the reply, a real server or
network would give. Every test checks the
exactness the change log promises: each created document has exactly one record, a refused
document none, and nothing is written twice.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import errors as pm
from pymongo import monitoring
from spies import BulkCommandFault

from astro_db import Database
from astro_db.driver import gateway
from astro_db.errors import ChangeRecordError, DuplicateKeyError
from astro_db.ops import bulk


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: Any) -> None:
        if event.command_name not in ("hello", "isMaster", "ping", "endSessions"):
            self.names.append(event.command_name)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


@pytest.fixture
def commands() -> Commands:
    return Commands()


@pytest.fixture
def db(live_url: str, commands: Commands):
    with Database(live_url, event_listeners=[commands]) as database:
        database.create("User", {"email": "warm@one.test", "name": "Warm"})  # indexes, topology known
        commands.names.clear()
        yield database


def records_of(db: Database, doc_id: Any) -> list[dict[str, Any]]:
    return list(db.mongo["astroChanges"].find({"documentId": doc_id}))


def every_user_recorded_once(db: Database) -> None:
    users = list(db.mongo["users"].find({}, {"_id": 1}))
    for user in users:
        assert len(records_of(db, user["_id"])) == 1, user
    assert db.mongo["astroChanges"].count_documents({}) == len(users)


def install(monkeypatch: pytest.MonkeyPatch, db: Database, fault: BulkCommandFault) -> BulkCommandFault:
    monkeypatch.setattr(gateway.Gateway, "bulk_write_command", fault)
    return fault


def test_the_server_is_known_to_have_the_command(db: Database, live_server: Any) -> None:
    if not hasattr(live_server, "start"):
        pytest.skip("the mongodb tier asks its own server (test_a_create_is_one_command_where_the_server_has_it)")
    assert bulk.supported(db.mongo.client)  # nx-27017 reports wire version 25


def test_a_create_is_one_command_where_the_server_has_it(db: Database, commands: Commands) -> None:
    """One round trip per create on a server with bulkWrite (MongoDB 8.0+), two elsewhere."""
    user = db.create("User", {"email": "one@one.test", "name": "One"})
    expected = ["bulkWrite"] if bulk.supported(db.mongo.client) else ["insert", "insert"]
    assert commands.names == expected
    assert [r["action"] for r in records_of(db, user.id)] == ["create"]


def test_a_refused_document_gets_no_record_and_the_rest_still_go_in(db: Database, commands: Commands) -> None:
    db.create("User", {"email": "taken@one.test", "name": "Taken"})
    commands.names.clear()
    items = [{"email": f"m{i}@one.test", "name": "M"} for i in range(8)]
    items[2] = items[5] = {"email": "taken@one.test", "name": "Again"}
    result = db.create_many("User", items)
    assert [index for index, _ in result.failed] == [2, 5]
    assert all(isinstance(error, DuplicateKeyError) and "email" in str(error) for _, error in result.failed)
    assert len(result) == 6 and db.count("User", {"email": "taken@one.test"}) == 1
    every_user_recorded_once(db)
    assert commands.names.count("bulkWrite") == 3  # the batch, then once more after each refusal


def test_a_refused_single_create_raises_and_records_nothing(db: Database) -> None:
    before = db.mongo["astroChanges"].count_documents({})
    with pytest.raises(DuplicateKeyError, match="email"):
        db.create("User", {"email": "warm@one.test", "name": "Twin"})
    assert db.mongo["astroChanges"].count_documents({}) == before
    every_user_recorded_once(db)


def test_a_lost_reply_is_retried_without_writing_anything_twice(db: Database, monkeypatch: pytest.MonkeyPatch,
                                                                 commands: Commands) -> None:
    fault = install(monkeypatch, db, BulkCommandFault(lambda ops: pm.AutoReconnect("reply lost")))
    user = db.create("User", {"email": "lost@one.test", "name": "Lost"})
    assert fault.fired == 1
    assert db.count("User", {"email": "lost@one.test"}) == 1
    assert len(records_of(db, user.id)) == 1
    every_user_recorded_once(db)
    assert commands.names.count("bulkWrite") == 1  # the retry found both written and sent nothing


def test_a_batch_cut_off_half_way_is_completed_exactly_once(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # 7 of the 20 operations ran: 4 documents, 3 of their records; then the connection dropped
    fault = install(monkeypatch, db, BulkCommandFault(lambda ops: pm.AutoReconnect("connection reset"), keep=7))
    result = db.create_many("User", [{"email": f"cut{i}@one.test", "name": "Cut"} for i in range(10)])
    assert fault.fired == 1
    assert len(result) == 10 and not result.failed
    assert db.count("User", {"name": "Cut"}) == 10
    every_user_recorded_once(db)


def refused_record(ops: list[Any]) -> dict[str, Any]:
    """What MongoDB answers when a validator on the change collection refuses the record (op 1)."""
    return {"ok": 1.0, "nErrors": 1, "nInserted": 1, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nDeleted": 0,
            "cursor": {"id": 0, "ns": "admin.$cmd.bulkWrite",
                       "firstBatch": [{"ok": 0.0, "idx": 1, "code": 121, "errmsg": "Document failed validation"}]}}


def test_a_refused_record_is_reported_as_applied_and_written_later(db: Database, monkeypatch: pytest.MonkeyPatch,
                                                                   commands: Commands) -> None:
    install(monkeypatch, db, BulkCommandFault(refused_record, keep=1))
    with pytest.raises(ChangeRecordError) as caught:
        db.create("User", {"email": "norecord@one.test", "name": "NoRecord"})
    user = db.find_one("User", {"email": "norecord@one.test"}, lean=True)
    assert caught.value.applied and caught.value.missing == [user["_id"]]
    assert records_of(db, user["_id"]) == []
    assert db.executor.runtime.changes.pending == 1
    commands.names.clear()
    db.create("User", {"email": "next@one.test", "name": "Next"})  # the long way: it settles the late record
    assert commands.names[:2] == ["insert", "find"] and commands.names.count("bulkWrite") == 0
    assert db.executor.runtime.changes.pending == 0
    every_user_recorded_once(db)
    commands.names.clear()
    db.create("User", {"email": "after@one.test", "name": "After"})
    assert commands.names == ["bulkWrite"]


def no_such_command(ops: list[Any]) -> pm.OperationFailure:
    return pm.OperationFailure("no such command: 'bulkWrite'", 59)


def test_a_server_without_the_command_is_written_the_long_way(db: Database, monkeypatch: pytest.MonkeyPatch,
                                                               commands: Commands) -> None:
    install(monkeypatch, db, BulkCommandFault(no_such_command, keep=0))
    user = db.create("User", {"email": "old@one.test", "name": "Old"})
    assert db.executor.runtime.bulk_write is False
    assert commands.names == ["insert", "insert"] and len(records_of(db, user.id)) == 1
    commands.names.clear()
    db.create_many("User", [{"email": f"old{i}@one.test", "name": "Old"} for i in range(3)])
    assert commands.names == ["insert", "insert"]
    every_user_recorded_once(db)


def test_creates_in_a_transaction_go_in_its_session(db: Database, commands: Commands) -> None:
    with db.transaction() as tx:
        db.create("User", {"email": "tx@one.test", "name": "Tx"}, transaction=tx)
    assert commands.names == ["insert", "insert", "commitTransaction"]
    every_user_recorded_once(db)


def test_hooks_off_a_create_is_the_plain_insert(live_url: str, commands: Commands) -> None:
    with Database(live_url, event_listeners=[commands], audit=False, journal=False) as db:
        db.create("User", {"email": "warm@one.test", "name": "Warm"})
        commands.names.clear()
        db.create("User", {"email": "plain@one.test", "name": "Plain"})
        assert commands.names == ["insert"]

