"""Change records across crashes, re-created documents, racing writers and unknown outcomes, live.

1. A child process deletes a user and SIGKILLs itself from a PyMongo command listener the
   moment the server acknowledges the command that deleted it (the ``bulkWrite`` carrying its
   intent and its delete, or, without one-command writes, its ``delete``) or, in the last case,
   its intent record:
   ``reconcile_changes()`` then confirms the intent (or drops it), the trail shows the delete
   (or not), and a full + incremental restore does not bring the deleted document back.
2. Create X, delete X, create X again under its ``_id``, update X: the trail shows all four and
   a full + incremental restore returns the edited second life.
3. ``update_many`` with a list change: right after it has listed the matching documents, a
   second client changes one so that it no longer matches (a command listener on the listing
   ``find``); the list change is not pushed into it.
4. A create whose ``bulkWrite`` the server applied while the client lost the reply, and whose
   retry ran out of its time bound, is read back and reported done with one record; with the
   server killed right after applying it (and still down for the read-back), the call raises
   ``WriteOutcomeUnknown`` and the record is written once the server is back.
5. A ``create_many`` of 40, its records packed, SIGKILLed right after the server took its
   documents (no record yet) or its packed record: reconcile records each document's revision
   exactly once, and a full + incremental restore is the source.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pymongo
import pytest
from backup_helpers import state
from kill_at import CHILD_PATH
from pymongo import errors as pm
from pymongo import monitoring
from spies import BulkCommandFault, poll

from astro_db import Database, backup
from astro_db.driver import gateway, timeouts
from astro_db.errors import WriteOutcomeUnknown

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[5])
    from astro_db import Database
    from kill_at import KillAt

    url, doc_id, at, one_command = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

    def chosen(name, cmd):
        if at == "delete":
            return (name == "delete" and cmd.get("delete") == "users") or (
                name == "findAndModify" and cmd.get("findAndModify") == "users" and cmd.get("remove")) or (
                name == "bulkWrite" and any(
                    "delete" in op and cmd["nsInfo"][op["delete"]]["ns"].endswith(".users") for op in cmd["ops"]))
        return at == "intent" and name == "insert" and cmd.get("insert") == "astroChanges" and any(
            "intent" in d for d in cmd.get("documents", ()))

    db = Database(url, event_listeners=[KillAt(chosen)], one_command_writes=one_command).connect()
    print("ready", flush=True)
    db.delete("User", {"id": doc_id})
    print("survived", flush=True)
""")


def restore_into(live_url: str, repo: Path, name: str) -> Database:
    target = Database(live_url.rsplit("/", 1)[0] + f"/{name}", ensure_indexes=False).connect()
    backup.restore(repo, target, drop=True)
    return target


def dropped(target: Database) -> None:
    target.mongo.client.drop_database(target.mongo.name)
    target.disconnect()


def trail(db: Database, doc_id: Any) -> list[tuple[str, int]]:
    return [(e["action"], e["revision"]) for e in db.audit_trail("User", doc_id)]


@pytest.mark.parametrize(("at", "one_command"), [("delete", True), ("delete", False), ("intent", False)],
                         ids=["at the bulkWrite of intent and delete", "at the delete", "at the intent"])
def test_a_process_killed_at_its_delete_leaves_a_gap_reconcile_closes(live_url: str, tmp_path: Path, at: str,
                                                                      one_command: bool) -> None:
    with Database(live_url) as db:
        user = db.create("User", {"email": "doomed@crash.test", "name": "Doomed"})
        keep = db.create("User", {"email": "kept@crash.test", "name": "Kept"})
        repo = tmp_path / "repo"
        backup.backup(db, repo)
        child = subprocess.Popen([sys.executable, "-c", CHILD, live_url, str(user.id), at, "1" if one_command else "0",
                                  CHILD_PATH],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        out, _ = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL and "survived" not in out
        assert trail(db, user.id) == [("create", 0)]  # the crash left the delete unrecorded (so far)
        deleted = at == "delete"
        assert (db.find_one("User", {"id": user.id}) is None) is deleted
        report = db.reconcile_changes()
        assert report["intents"] == ({"confirmed": 1, "dropped": 0} if deleted else {"confirmed": 0, "dropped": 1})
        assert trail(db, user.id) == ([("create", 0), ("delete", 1)] if deleted else [("create", 0)])
        assert db.mongo["astroChanges"].count_documents({"intent": {"$exists": True}}) == 0
        backup.backup(db, repo)  # incremental
        target = restore_into(live_url, repo, f"restore_crash_{at}_{int(one_command)}")
        try:
            assert (target.find_one("User", {"id": user.id}) is None) is deleted
            assert target.find_one("User", {"id": keep.id}) is not None
            assert state(target) == state(db)
        finally:
            dropped(target)


def test_a_document_created_again_after_a_killed_delete_keeps_both_lives_in_order(live_url: str, tmp_path: Path) -> None:
    """The delete's process is SIGKILLed at its acknowledgement (its intent unconfirmed); the
    document is created again under its _id and edited before anyone reconciles. The new life
    continues past the intent's revision, so reconcile confirms the delete and the trail and a
    restore have both lives in order."""
    with Database(live_url) as db:
        x = db.create("User", {"email": "twice@crash.test", "name": "First"}).id
        repo = tmp_path / "repo"
        backup.backup(db, repo)
        child = subprocess.Popen([sys.executable, "-c", CHILD, live_url, str(x), "delete", "1", CHILD_PATH],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        db.create("User", {"_id": x, "email": "twice@crash.test", "name": "Second"})
        db.update("User", {"id": x}, {"name": "Second, edited"})
        assert db.reconcile_changes()["intents"] == {"confirmed": 1, "dropped": 0}
        assert trail(db, x) == [("create", 0), ("delete", 1), ("create", 2), ("update", 3)]
        backup.backup(db, repo)
        target = restore_into(live_url, repo, "restore_twice")
        try:
            assert target.find_one("User", {"id": x}).name == "Second, edited"
            assert state(target) == state(db)
        finally:
            dropped(target)


def test_a_document_created_again_under_its_id_keeps_its_second_life_in_a_restore(live_url: str, tmp_path: Path) -> None:
    with Database(live_url) as db:
        x = db.create("User", {"email": "life@again.test", "name": "First"}).id
        repo = tmp_path / "repo"
        backup.backup(db, repo)
        db.delete("User", {"id": x})
        db.create("User", {"_id": x, "email": "life@again.test", "name": "Second"})
        db.update("User", {"id": x}, {"name": "Second, edited"})
        assert trail(db, x) == [("create", 0), ("delete", 1), ("create", 2), ("update", 3)]
        backup.backup(db, repo)
        target = restore_into(live_url, repo, "restore_again")
        try:
            assert target.find_one("User", {"id": x}).name == "Second, edited"
            assert state(target) == state(db)
        finally:
            dropped(target)


class ChangeAfterListing(monitoring.CommandListener):
    """When the armed listing ``find`` (``_id`` and revision of the matching charts) has been
    answered, moves one chart out of the filter through a second client."""

    def __init__(self, url: str) -> None:
        self.url, self.target, self.listing, self.fired = url, None, set(), 0

    def started(self, event: Any) -> None:
        cmd = event.command
        if (self.target is not None and event.command_name == "find" and cmd.get("find") == "birthCharts"
                and cmd.get("projection") == {"_id": 1, "_rev": 1}):
            self.listing.add(event.request_id)

    def succeeded(self, event: Any) -> None:
        if event.request_id in self.listing and not self.fired:
            self.fired += 1
            with pymongo.MongoClient(self.url) as other:
                other.get_default_database().birthCharts.update_one(
                    {"_id": self.target}, {"$set": {"houseSystem": "whole-sign"}})

    def failed(self, event: Any) -> None:
        pass


def test_update_many_list_change_skips_a_chart_changed_after_it_was_listed(live_url: str) -> None:
    listener = ChangeAfterListing(live_url)
    with Database(live_url, event_listeners=[listener], allow_plaintext_sensitive=True) as db:
        user = db.create("User", {"email": "charts@race.test", "name": "Charts"})
        charts = [db.create("BirthChart", {"userId": str(user.id), "houseSystem": "placidus", "birthData": {
            "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
            "location": {"name": "London", "coordinates": [-0.1276, 51.5072]}}}) for _ in range(3)]
        listener.target = charts[1].id
        push = {"$push": {"positions": {"body": "Sun", "sign": "Aries", "degree": 1.0}}}
        assert db.update_many("BirthChart", {"houseSystem": "placidus"}, push) == 2
        assert listener.fired == 1
        moved = db.find_one("BirthChart", {"id": charts[1].id})
        assert moved.house_system == "whole-sign" and moved.positions == []
        assert all(len(db.find_one("BirthChart", {"id": c.id}).positions) == 1 for c in (charts[0], charts[2]))


def lose_reply(after: Any = lambda: None) -> BulkCommandFault:
    """``Gateway.bulk_write_command`` replaced once: the command runs on the server for real,
    then ``after()`` (e.g. the server is killed) and the reply is lost."""
    return BulkCommandFault(lambda ops: pm.AutoReconnect("connection reset after the server applied the command"),
                            after=after)


class ExpireFirstFind:
    """The users collection, whose first ``find`` (the retry's look for what its first attempt
    wrote) waits out the call's time bound and times out."""

    def __init__(self, real: Any) -> None:
        self.real, self.finds = real, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != "find":
            return attr

        def find(*args: Any, **kwargs: Any) -> Any:
            self.finds += 1
            if self.finds == 1:
                bound = timeouts.current_bound(None)
                assert bound is not None
                while not bound.expired():
                    time.sleep(0.001)
                raise pm.NetworkTimeout("timed out")
            return attr(*args, **kwargs)

        return find


def test_a_create_applied_while_its_retry_ran_out_is_read_back_and_recorded_once(live_url: str,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with Database(live_url, backoff_base_s=0.001, backoff_max_s=0.002) as db:
        db.create("User", {"email": "warm@unknown.test", "name": "Warm"})
        fault = lose_reply()
        monkeypatch.setattr(gateway.Gateway, "bulk_write_command", fault)
        rt = db.executor.runtime
        users = ExpireFirstFind(rt.coll(rt.registry.resolve("User")))
        rt.gateway.collections["users"] = users
        # 1 s: a loaded nx-27017 may take 300 ms on the first bulkWrite alone, leaving the retry none
        user = db.create("User", {"email": "landed@unknown.test", "name": "Landed"}, timeout_ms=1000)
        assert fault.calls == 1 and users.finds == 2  # the retry's look ran out; the read-back found it
        assert db.count("User", {"email": "landed@unknown.test"}) == 1
        assert trail(db, user.id) == [("create", 0)]
        assert db.mongo["astroChanges"].count_documents({"documentId": user.id}) == 1
        assert db.executor.runtime.changes.pending == 0


@pytest.fixture
def server_up(live_server: Any) -> Any:
    if not hasattr(live_server, "start"):
        pytest.skip("needs the nx-27017 server (not ASTRO_DB_TEST_URI)")
    yield live_server
    if not live_server.alive():
        live_server.start()


def _answers(client: Any) -> bool:
    """Whether the server answers a ping (a server selection, which asks the client's monitor to
    look again at once)."""
    try:
        client.admin.command("ping")
    except pm.PyMongoError:
        return False
    return True


def test_a_create_applied_just_before_the_server_died_is_reported_unknown_then_recorded(
        server_up: Any, live_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(live_url, server_selection_timeout_ms=300, connect_timeout_ms=300,
                  retry_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02, breaker_threshold=10_000).connect()
    try:
        db.create("User", {"email": "warm@died.test", "name": "Warm"})
        real = gateway.Gateway.bulk_write_command
        monkeypatch.setattr(gateway.Gateway, "bulk_write_command", lose_reply(after=server_up.kill))
        with pytest.raises(WriteOutcomeUnknown) as caught:
            db.create("User", {"email": "stored@died.test", "name": "Stored"}, timeout_ms=2000)
        assert caught.value.applied is None and len(caught.value.ids) == 1
        assert db.executor.runtime.changes.pending == 1
        monkeypatch.setattr(gateway.Gateway, "bulk_write_command", real)
        server_up.start()
        # the client finds the server again at its next heartbeat (PyMongo checks an unknown one
        # every 500 ms at most), which on a loaded machine can outlast this Database's two 300 ms
        # server selections: wait for it, as the reads below are not what this test is about
        poll(lambda: _answers(db.mongo.client), timeout_s=10)
        [doc_id] = caught.value.ids
        assert db.find_one("User", {"id": doc_id}).email == "stored@died.test"
        assert db.reconcile_changes()["pending"] == 1
        assert trail(db, doc_id) == [("create", 0)]
    finally:
        db.disconnect()


def test_a_server_without_bulkwrite_deletes_the_long_way(live_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Database(live_url) as db:
        users = [db.create("User", {"email": f"old{i}@nobulk.test", "name": "Old"}) for i in range(3)]

        def no_such_command(ops: list[Any], **kwargs: Any) -> Any:
            raise pm.OperationFailure("no such command: 'bulkWrite'", 59)

        def no_such_command_whole(handle: Any, command: Any, session: Any = None) -> Any:
            raise pm.OperationFailure("no such command: 'bulkWrite'", 59)

        monkeypatch.setattr(db.mongo.client, "bulk_write", no_such_command)  # a chunk of delete_many
        monkeypatch.setattr(gateway.Gateway, "bulk_write_command", no_such_command_whole)  # a delete: sent whole
        assert db.delete("User", {"id": users[0].id}) is True
        assert db.executor.runtime.bulk_write is False
        assert db.delete_many("User", {"name": "Old"}) == 2
        for user in users:
            assert trail(db, user.id) == [("create", 0), ("delete", 1)]
        assert db.mongo["astroChanges"].count_documents({"intent": {"$exists": True}}) == 0


PACK_CHILD = textwrap.dedent("""
    import datetime as dt
    import sys
    sys.path.insert(0, sys.argv[4])
    from bson import ObjectId
    from astro_db import Database
    from kill_at import KillAt

    url, owner, at = sys.argv[1], ObjectId(sys.argv[2]), sys.argv[3]

    def chosen(name, cmd):
        return name == "insert" and cmd.get("insert") == ("planetaryInsights" if at == "documents" else "astroChanges")

    db = Database(url, event_listeners=[KillAt(chosen)], allow_plaintext_sensitive=True).connect()
    print("ready", flush=True)
    day = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    db.create_many("PlanetaryInsight", [{"userId": owner, "date": day + dt.timedelta(days=i), "energyLevel": 5,
                                         "recommendations": ["r"], "summary": f"s{i}"} for i in range(40)])
    print("survived", flush=True)
""")


@pytest.mark.parametrize("at", ["documents", "records"], ids=["after the documents", "after the packed records"])
def test_a_process_killed_around_a_packed_create_many_leaves_a_gap_reconcile_closes(
        live_url: str, tmp_path: Path, at: str) -> None:
    """A create_many of 40 (its records packed: ``changes.records``) SIGKILLed the moment the
    server acknowledged its documents (no pack written yet) or its pack: reconcile records every
    document's current revision exactly once, and a full + incremental restore is the source."""
    with Database(live_url, allow_plaintext_sensitive=True) as db:
        owner = db.create("User", {"email": "pack@crash.test", "name": "Packer"})
        repo = tmp_path / "repo"
        backup.backup(db, repo)
        child = subprocess.Popen([sys.executable, "-c", PACK_CHILD, live_url, str(owner.id), at, CHILD_PATH],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        out, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL and "survived" not in out, err[-2000:]
        assert db.count("PlanetaryInsight", {}) == 40
        packs = [r for r in db.mongo["astroChanges"].find({"coll": "planetaryInsights"}) if isinstance(r["documentId"], list)]
        assert len(packs) == (0 if at == "documents" else 1)
        report = db.reconcile_changes()
        assert report["rebuilt"]["PlanetaryInsight"] == (40 if at == "documents" else 0)
        ids = [d["_id"] for d in db.mongo["planetaryInsights"].find({}, {"_id": 1})]
        for doc_id in ids:
            assert [e["revision"] for e in db.audit_trail("PlanetaryInsight", doc_id)] == [0]
        assert db.reconcile_changes()["rebuilt"]["PlanetaryInsight"] == 0  # settled: nothing left
        backup.backup(db, repo)  # incremental: the documents come from the records (packed or rebuilt)
        target = restore_into(live_url, repo, f"restore_pack_{at}")
        try:
            assert target.count("PlanetaryInsight", {}) == 40
            assert state(target) == state(db)
        finally:
            dropped(target)
