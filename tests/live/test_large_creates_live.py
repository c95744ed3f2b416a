"""Large creates go in two commands, small ones in one ``bulkWrite`` (``astro_db.ops.sizes``), live.

nx-27017 speaks MongoDB 8.0's client-level ``bulkWrite``, so a default create (records on)
sends its document and its change record in one command there; above ``LARGE_DOCUMENT`` bytes
it sends an ``insert`` of the document, then one of its record (past a few megabytes the one
command no longer costs less, and past 8 MB it would not fit in one BSON document). A create
whose one command PyMongo refuses as too large before sending it goes the two-command way.
Both paths leave the same record. A process SIGKILLed between the two commands (at the acknowledgement of
the document's ``insert``, from a PyMongo command listener) leaves a document without a record,
which ``reconcile_changes()`` rebuilds, post-image included, as it does for any create written
the two-command way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kill_at import CHILD_PATH
from spies import CommandSpy

from astro_db import Database
from astro_db.errors import ValidationError
from astro_db.ops import bulk, sizes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from large_model import LARGE, Scan  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = ("hello", "isMaster", "ping", "endSessions")


@pytest.fixture
def commands() -> CommandSpy:
    """(command name, its target collection) of every command sent (``.sent``), but the handshake's and pings."""
    return CommandSpy(skip=SKIPPED)


@pytest.fixture
def db(live_url: str, commands: CommandSpy):
    with Database(live_url, models=[Scan], event_listeners=[commands]) as database:
        if not bulk.supported(database.mongo.client):
            pytest.skip("the server has no client-level bulkWrite: every create is two commands")
        database.create(Scan, {"title": "warm", "data": b"w"})  # indexes, topology known
        commands.clear()
        yield database


def records_of(db: Database, doc_id: Any) -> list[dict[str, Any]]:
    return list(db.mongo["astroChanges"].find({"documentId": doc_id}))


def test_a_large_create_is_two_inserts_and_a_small_one_a_bulk_write(db: Database, commands: CommandSpy) -> None:
    small = db.create(Scan, {"title": "small", "data": b"s" * 1000})
    assert [name for name, _ in commands.sent] == ["bulkWrite"]
    commands.clear()
    big = db.create(Scan, {"title": "big", "data": b"b" * LARGE})
    assert commands.sent == [("insert", "scans"), ("insert", "astroChanges")]
    for created in (small, big):  # the same record either way: one, the stored document its post-image
        [record] = records_of(db, created.id)
        stored = db.mongo["scans"].find_one({"_id": created.id})
        assert (record["action"], record["rev"], record["doc"]) == ("create", 0, stored)
        assert record["fields"] == sorted(k for k in stored if k != "_id")
    keys = {tuple(sorted(r)) for r in db.mongo["astroChanges"].find({"documentId": {"$in": [small.id, big.id]}})}
    assert len(keys) == 1


def test_the_threshold_is_the_documents_size(db: Database, commands: CommandSpy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Just under it: one command; the model's bound alone never decides (``data`` is measured)."""
    db.create(Scan, {"title": "under", "data": b"u" * (sizes.LARGE_DOCUMENT - 8 * 1024)})
    assert [name for name, _ in commands.sent] == ["bulkWrite"]


def test_a_create_many_of_large_documents_is_two_insert_many(db: Database, commands: CommandSpy) -> None:
    """Two documents of half the threshold each: small alone, large together."""
    half = sizes.LARGE_DOCUMENT // 2 + 1024
    made = db.create_many(Scan, [{"title": f"part {n}", "data": bytes([n]) * half} for n in range(2)])
    assert commands.sent == [("insert", "scans"), ("insert", "astroChanges")]
    for doc in made:
        assert [r["action"] for r in records_of(db, doc.id)] == ["create"]


def test_a_command_the_driver_finds_too_large_goes_as_two_commands(db: Database, commands: CommandSpy,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With the threshold out of the way, a 9 MB document and its post-image make a command past
    the server's 16 MiB (and 16 KiB): PyMongo refuses it before sending, nothing is written, and
    the create goes as its document's ``insert``, then its record's, with the same record. A
    ``create_many`` of two 5 MB documents the same way, as two ``insert_many``."""
    monkeypatch.setattr(sizes, "LARGE_DOCUMENT", 1 << 40)
    nine = 9 * 1024 * 1024
    big = db.create(Scan, {"title": "too large together", "data": b"9" * nine})
    assert commands.sent == [("insert", "scans"), ("insert", "astroChanges")]  # no bulkWrite reached the server
    stored = db.mongo["scans"].find_one({"_id": big.id})
    assert len(stored["data"]) == nine
    [record] = records_of(db, big.id)
    assert (record["action"], record["rev"], record["doc"]) == ("create", 0, stored)
    commands.clear()
    five = 5 * 1024 * 1024
    made = db.create_many(Scan, [{"title": f"half {n}", "data": bytes([n + 1]) * five} for n in range(2)])
    assert commands.sent == [("insert", "scans"), ("insert", "astroChanges")]
    for doc in made:
        assert len(db.mongo["scans"].find_one({"_id": doc.id})["data"]) == five
        assert [r["action"] for r in records_of(db, doc.id)] == ["create"]
    assert db.count(Scan, {}) == 4  # the warm-up's, the 9 MB one, the two halves: nothing twice
    commands.clear()
    with pytest.raises(ValidationError, match="too large"):  # a document past 16 MiB alone: refused, whichever way
        db.create(Scan, {"title": "past the server's limit", "data": b"x" * (17 * 1024 * 1024)})
    assert commands.sent == [] and db.count(Scan, {}) == 4
    assert db.mongo["astroChanges"].count_documents({"action": "create", "coll": "scans"}) == 4
    commands.clear()
    db.create(Scan, {"title": "small after", "data": b"s"})
    assert [name for name, _ in commands.sent] == ["bulkWrite"]  # a refusal changes nothing for the next create


CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from astro_db import Database
    from kill_at import KillAt
    from large_model import LARGE, Scan

    def chosen(name, cmd):  # the insert of the scan itself: its record's insert is never sent
        return name == "insert" and cmd.get("insert") == "scans"

    db = Database(sys.argv[1], models=[Scan], event_listeners=[KillAt(chosen)]).connect()
    print("ready", flush=True)
    db.create(Scan, {"title": "doomed", "data": b"d" * LARGE})
    print("survived", flush=True)
""")


def test_a_process_killed_between_the_two_commands_is_repaired_by_reconcile(live_url: str) -> None:
    with Database(live_url, models=[Scan]) as db:
        if not bulk.supported(db.mongo.client):
            pytest.skip("the server has no client-level bulkWrite")
        child = subprocess.Popen([sys.executable, "-c", CHILD, live_url, str(Path(__file__).resolve().parent), CHILD_PATH],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        out, _ = child.communicate(timeout=120)
        assert child.returncode == -signal.SIGKILL and "ready" in out and "survived" not in out
        [stored] = list(db.mongo["scans"].find({"title": "doomed"}))  # the document landed...
        assert records_of(db, stored["_id"]) == []  # ...its record did not: the crash's gap
        report = db.reconcile_changes()
        assert report["rebuilt"]["Scan"] == 1
        [record] = records_of(db, stored["_id"])
        assert (record["rev"], record["doc"], record["journal"]) == (0, stored, True)
        assert db.reconcile_changes()["rebuilt"]["Scan"] == 0  # closed: nothing left to rebuild

