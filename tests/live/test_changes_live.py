"""Change records against a real wire-protocol server: ordering, round trips, a kill -9 mid-write.

1. 8 threads and a second process update the same 12 users; for each user a PyMongo command
   listener holds the first update's record insert until a later update of that user has been
   applied and recorded (the later-applied write's record is written first). A point-in-time
   restore to just after that phase, and a restore of the final incremental, reproduce the
   source exactly.
2. With the default configuration a create costs one command (its document and record in one
   ``bulkWrite``, which nx-27017 has) and an update two; without ``one_command_writes``, two each.
3. The server is killed (SIGKILL) from a command listener right after an update's
   ``findAndModify`` was applied: the call raises ``ChangeRecordError`` (applied, which ids are
   missing), and after the restart the next write writes the missing record, so an incremental
   backup and restore keep the update.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from backup_helpers import instant_after_last_write, state
from pymongo import monitoring

from astro_db import Database, backup
from astro_db.errors import ChangeRecordError
from astro_db.ops.writes import ONE_COMMAND_BATCH

RECORD_COLLECTIONS = {"astroChanges", "changeJournal"}  # the journal's name before change records
USERS, THREADS = 12, 8


def wait_for(condition, what: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within_s}s")
        time.sleep(0.005)


class HoldFirstRecord(monitoring.CommandListener):
    """Holds the record insert of the first update of each armed document until released."""

    def __init__(self) -> None:
        self.armed: set = set()
        self.holding: dict = {}
        self.release: dict = {}

    def arm(self, doc_id) -> None:
        self.holding[doc_id], self.release[doc_id] = threading.Event(), threading.Event()
        self.armed.add(doc_id)

    def started(self, event) -> None:
        if event.command_name != "insert" or event.command.get("insert") not in RECORD_COLLECTIONS:
            return
        first = event.command["documents"][0]
        doc_id = first.get("documentId", first.get("docId"))
        if first.get("action", first.get("op")) == "update" and doc_id in self.armed:
            self.armed.discard(doc_id)
            self.holding[doc_id].set()
            self.release[doc_id].wait(30)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


SECOND_PROCESS = textwrap.dedent("""
    import json, sys, pathlib, random
    from astro_db import Database
    url, ids, stop = sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])
    db = Database(url, allow_plaintext_sensitive=True).connect()  # no key: personal fields in clear
    print("ready", flush=True)
    n = 0
    while n < 40 or not stop.exists():
        db.update("User", {"id": random.choice(ids)}, {"name": f"process-{n}"})
        n += 1
    print(n, flush=True)
""")


def test_restores_follow_revisions_whoever_recorded_first(live_url, tmp_path):
    listener = HoldFirstRecord()
    db = Database(live_url, event_listeners=[listener]).connect()
    users = [db.create("User", {"email": f"u{i}@order.test", "name": f"start-{i}"}) for i in range(USERS)]
    ids = [u.id for u in users]
    repo = tmp_path / "repo"
    backup.backup(db, repo)

    # Phase 1: per user, the first update's record waits until a second update landed and was recorded.
    for doc_id in ids:
        listener.arm(doc_id)
    with ThreadPoolExecutor(THREADS) as pool:
        firsts = [pool.submit(db.update, "User", {"id": doc_id}, {"name": f"first-{i}"}) for i, doc_id in enumerate(ids)]
        for i, doc_id in enumerate(ids):
            wait_for(listener.holding[doc_id].is_set, f"the first update of user {i} being held")
            db.update("User", {"id": doc_id}, {"name": f"second-{i}"})
            listener.release[doc_id].set()
        for future in firsts:
            future.result()
    instant = instant_after_last_write()
    wait_for(lambda: time.time() * 1000 > instant.timestamp() * 1000 + 1, "the clock passing the instant")
    after_phase_one = state(db)
    assert {u.id: u.name for u in db.find("User", {})} == {doc_id: f"second-{i}" for i, doc_id in enumerate(ids)}

    # Phase 2: 8 threads and a second process update the same users with no holds.
    stop = tmp_path / "stop"
    other = subprocess.Popen([sys.executable, "-c", SECOND_PROCESS, live_url, json.dumps([str(i) for i in ids]), str(stop)],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    assert other.stdout.readline().strip() == "ready"

    def hammer(t: int) -> None:
        for round_ in range(5):
            for i, doc_id in enumerate(ids):
                db.update("User", {"id": doc_id}, {"name": f"t{t}-r{round_}-{i}"})

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(hammer, range(THREADS)))
    stop.touch()
    assert int(other.communicate(timeout=60)[0].strip()) >= 40 and other.returncode == 0
    backup.backup(db, repo)

    for until, expected in ((instant, after_phase_one), (None, state(db))):
        target = Database(live_url.rsplit("/", 1)[0] + f"/restore_{id(expected)}", ensure_indexes=False).connect()
        try:
            backup.restore(repo, target, until=until, drop=True)
            assert state(target) == expected
        finally:
            target.mongo.client.drop_database(target.mongo.name)
            target.disconnect()
    db.disconnect()


class Counter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event) -> None:
        name = event.command_name
        if name == "bulkWrite":  # the client-level command names its collections in nsInfo
            spaces = sorted({entry["ns"].split(".", 1)[1] for entry in event.command["nsInfo"]})
            self.commands.append(f"bulkWrite {'+'.join(spaces)} x{len(event.command['ops'])}")
        elif name not in ("hello", "isMaster", "ping", "endSessions"):
            self.commands.append(f"{name} {event.command.get(name)}")

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def test_a_create_costs_one_command_and_an_update_two_by_default(live_url):
    """On a server with MongoDB 8.0's bulkWrite (nx-27017 has it), a create sends the document
    and its change record in one command; an update needs the document's new revision for its
    record, so it is a findAndModify then the record."""
    counter = Counter()
    with Database(live_url, event_listeners=[counter]) as db:
        db.create("User", {"email": "warm@count.test", "name": "Warm"})  # first call: indexes etc.
        counter.commands.clear()
        user = db.create("User", {"email": "c@count.test", "name": "C"})
        assert counter.commands == ["bulkWrite astroChanges+users x2"]
        counter.commands.clear()
        db.update("User", {"id": user.id}, {"name": "D"})
        assert counter.commands == ["findAndModify users", "insert astroChanges"]
        counter.commands.clear()
        few = db.create_many("User", [{"email": f"f{i}@count.test", "name": "F"} for i in range(ONE_COMMAND_BATCH)])
        assert len(few) == ONE_COMMAND_BATCH
        assert counter.commands == [f"bulkWrite astroChanges+users x{2 * ONE_COMMAND_BATCH}"]
        counter.commands.clear()  # a larger batch: one insert_many of documents, one of records
        many = db.create_many("User", [{"email": f"m{i}@count.test", "name": "M"} for i in range(50)])
        assert len(many) == 50 and counter.commands == ["insert users", "insert astroChanges"]
        trail = db.audit_trail("User", user.id)
        assert [(e["action"], e["revision"]) for e in trail] == [("create", 0), ("update", 1)]


def test_without_one_command_writes_a_create_costs_two_commands(live_url):
    counter = Counter()
    with Database(live_url, event_listeners=[counter], one_command_writes=False) as db:
        db.create("User", {"email": "warm@count.test", "name": "Warm"})
        counter.commands.clear()
        db.create("User", {"email": "c@count.test", "name": "C"})
        assert counter.commands == ["insert users", "insert astroChanges"]
        counter.commands.clear()
        many = db.create_many("User", [{"email": f"m{i}@count.test", "name": "M"} for i in range(50)])
        assert len(many) == 50 and counter.commands == ["insert users", "insert astroChanges"]


def test_a_delete_writes_its_intent_with_it_and_confirms_it_after(live_url):
    """A delete needs the document's revision before it is deleted (its record is written
    first, as an intent: a crash after the delete leaves no gap), so it reads it, sends the
    intent and the compare-and-set delete in one bulkWrite, then confirms the intent: three
    commands (before intents: findAndModify + the record, two). delete_many does the same per
    chunk of documents, whatever their number; without one-command writes the intents, each
    delete and the confirmation are separate commands."""
    counter = Counter()
    with Database(live_url, event_listeners=[counter]) as db:
        users = [db.create("User", {"email": f"d{i}@count.test", "name": "D"}) for i in range(6)]
        counter.commands.clear()
        assert db.delete("User", {"id": users[0].id}) is True
        assert counter.commands == ["find users", "bulkWrite astroChanges+users x2", "update astroChanges"]
        counter.commands.clear()
        assert db.delete_many("User", {"name": "D"}) == 5
        assert counter.commands == ["find users", "bulkWrite astroChanges+users x10", "update astroChanges"]
        assert db.mongo["astroChanges"].count_documents({"action": "delete", "audit": True}) == 6
        assert db.mongo["astroChanges"].count_documents({"intent": {"$exists": True}}) == 0
    counter = Counter()
    with Database(live_url, event_listeners=[counter], one_command_writes=False) as db:
        users = [db.create("User", {"email": f"e{i}@count.test", "name": "E"}) for i in range(4)]
        counter.commands.clear()
        assert db.delete("User", {"id": users[0].id}) is True
        assert counter.commands == ["find users", "insert astroChanges", "delete users", "update astroChanges"]
        counter.commands.clear()
        assert db.delete_many("User", {"name": "E"}) == 3
        assert counter.commands == ["find users", "insert astroChanges"] + ["delete users"] * 3 + ["update astroChanges"]


class KillAfterUpdate(monitoring.CommandListener):
    """SIGKILLs the server as soon as an armed ``findAndModify`` has been applied."""

    def __init__(self, server) -> None:
        self.server = server
        self.armed = False

    def started(self, event) -> None:
        pass

    def succeeded(self, event) -> None:
        if self.armed and event.command_name == "findAndModify":
            self.armed = False
            self.server.kill()

    def failed(self, event) -> None:
        pass


@pytest.fixture
def server_up(live_server):
    if not hasattr(live_server, "start"):
        pytest.skip("needs the nx-27017 server (not ASTRO_DB_TEST_URI)")
    yield live_server
    if not live_server.alive():
        live_server.start()


def test_a_kill_right_after_the_update_raises_applied_and_the_record_catches_up(server_up, live_url, tmp_path):
    killer = KillAfterUpdate(server_up)
    db = Database(live_url, event_listeners=[killer], server_selection_timeout_ms=300, connect_timeout_ms=300,
                  retry_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02, breaker_threshold=10_000).connect()
    user, friend = (db.create("User", {"email": f"{n}@kill.test", "name": n}) for n in ("ann", "bob"))
    repo = tmp_path / "repo"
    backup.backup(db, repo)
    killer.armed = True
    with pytest.raises(ChangeRecordError) as err:  # its record's insert waits for the server to the end of
        # the call's budget: 5 s, not the default 30 s (the findAndModify itself was applied at once)
        db.update("User", {"id": user.id}, {"name": "Applied before the kill"}, timeout_ms=5000)
    assert err.value.applied is True and err.value.missing == [user.id]
    server_up.start()
    assert db.find_one("User", {"id": user.id}).name == "Applied before the kill"
    assert db.executor.runtime.changes.pending == 1
    db.update("User", {"id": friend.id}, {"name": "After the restart"})
    assert db.executor.runtime.changes.pending == 0
    trail = db.audit_trail("User", user.id)
    assert [(e["action"], e["revision"]) for e in trail] == [("create", 0), ("update", 1)]
    backup.backup(db, repo)
    target = Database(live_url.rsplit("/", 1)[0] + "/restore_kill", ensure_indexes=False).connect()
    try:
        backup.restore(repo, target, drop=True)
        assert target.find_one("User", {"id": user.id}).name == "Applied before the kill"
        assert state(target) == state(db)
    finally:
        target.mongo.client.drop_database(target.mongo.name)
        target.disconnect()
        db.disconnect()
