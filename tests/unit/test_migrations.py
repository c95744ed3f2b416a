"""Versioned migrations on the embedded backend: status, up, down, dry runs, the lease, checksums,
resuming after a crash, documents written behind the position, records, the CLI."""

from __future__ import annotations

import datetime
import json
import logging
import textwrap
import uuid
from pathlib import Path

import pytest
from bson import ObjectId
from click.testing import CliRunner
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database
from astro_db.changes import CHANGES_COLLECTION
from astro_db.cli import cli
from astro_db.errors import ConfigError, MigrationError, MigrationLockedError
from astro_db.migrations import LEASE_ID, MIGRATIONS_COLLECTION, Migrator, load_migrations, migration_actor

ADD_PLAN = '''
version = 1
description = "give every user a plan"


def up(ctx):
    ctx.migrate("User", {"plan": {"$exists": False}}, {"$set": {"plan": "free"}, "$inc": {"applied": 1}})


def down(ctx):
    ctx.migrate("User", {"plan": {"$exists": True}}, {"$unset": {"plan": ""}, "$inc": {"reverted": 1}})
'''

TIER = '''
version = 2
description = "a tier from the plan, per document"


def up(ctx):
    ctx.migrate("User", {"tier": {"$exists": False}},
                lambda doc: {"$set": {"tier": doc["plan"].upper()}} if doc.get("plan") else None)
'''


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path, "0001_add_plan.py", ADD_PLAN)
    return tmp_path


@pytest.fixture
def users(db: Database) -> list[ObjectId]:
    made = db.create_many("User", [{"email": f"u{i}@example.com", "name": f"U {i}"} for i in range(25)], lean=True)
    return [d["_id"] for d in made]


def raw(db: Database, name: str = "users"):
    return db.mongo[name]


def records_of(db: Database, version: int = 1) -> list[dict]:
    return list(raw(db, CHANGES_COLLECTION).find({"actor": migration_actor(version)}))


def test_status_up_down_and_the_record(db, folder, users):
    m = Migrator(db, folder, batch_size=10)
    assert [(r["version"], r["state"]) for r in m.status()] == [(1, "pending")]

    report = m.up()
    assert report.ran == [1]
    assert report.outcomes[1]["up:users"] == {"matched": 25, "changed": 25, "batches": 3, "final_pass": 0}
    assert raw(db).count_documents({"plan": "free", "applied": 1}) == 25
    record = raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})
    assert record["status"] == "applied" and record["description"] == "give every user a plan"
    assert record["checksum"] == load_migrations(folder)[0].checksum
    assert set(record["by"]) == {"actor", "host", "pid"} and record["startedAt"] <= record["finishedAt"]
    # one change record per changed document, with the post-image (backups see the change)
    recs = records_of(db)
    assert sorted(r["documentId"] for r in recs) == sorted(users)
    assert all(r["doc"]["plan"] == "free" and r["action"] == "update" for r in recs)
    assert [r["state"] for r in m.status()] == ["applied"]
    assert m.up().ran == []  # applied: nothing to do

    assert m.down().ran == [1]
    assert raw(db).count_documents({"plan": {"$exists": True}}) == 0
    assert raw(db).count_documents({"reverted": 1}) == 25
    assert [r["state"] for r in m.status()] == ["pending"]


def test_a_dry_run_counts_and_writes_nothing(db, folder, users):
    before = raw(db, CHANGES_COLLECTION).count_documents({})
    report = Migrator(db, folder, dry_run=True).up()
    assert report.dry_run and report.outcomes[1]["up:users"]["matched"] == 25
    assert raw(db).count_documents({"plan": {"$exists": True}}) == 0
    assert raw(db, MIGRATIONS_COLLECTION).count_documents({}) == 0  # no record, no lease
    assert raw(db, CHANGES_COLLECTION).count_documents({}) == before


def test_up_to_a_version_and_down_to_a_version(db, folder, users):
    write(folder, "0002_tier.py", TIER)
    m = Migrator(db, folder)
    assert m.up(to=1).ran == [1]
    assert [r["state"] for r in m.status()] == ["applied", "pending"]
    assert m.up().ran == [2]
    assert raw(db).count_documents({"tier": "FREE"}) == 25  # the per-document form
    assert len(records_of(db, 2)) == 25
    with pytest.raises(MigrationError, match="defines no down"):
        m.down()  # 0002 has no down(): refused before anything is reverted
    assert [r["state"] for r in m.status()] == ["applied", "applied"]


def test_a_file_changed_after_it_was_applied_is_refused(db, folder, users):
    m = Migrator(db, folder)
    m.up()
    write(folder, "0001_add_plan.py", ADD_PLAN.replace('"free"', '"basic"'))
    write(folder, "0002_tier.py", TIER)
    with pytest.raises(MigrationError, match=r"0001_add_plan.py was changed after it was applied"):
        m.up()
    assert raw(db).count_documents({"tier": {"$exists": True}}) == 0  # 0002 did not run either
    assert [r["state"] for r in m.status()] == ["changed", "pending"]
    result = CliRunner().invoke(cli, ["--url", "mongomock://localhost/x", "migrate", "status", "--dir", str(folder)])
    assert result.exit_code == 0  # a fresh embedded database: nothing applied there


@pytest.mark.parametrize("bad, message", [
    ("version = 'one'\ndef up(ctx): pass\n", "defines no `version`"),
    ("version = 1\n", r"defines no `up\(ctx\)`"),
    ("version = 3\ndef up(ctx): pass\n", "its version is 3, its name says 1"),
    ("version = 1\nraise RuntimeError('boom')\n", "importing it failed: RuntimeError: boom"),
])
def test_bad_files_are_refused_by_name(tmp_path, bad, message):
    write(tmp_path, "0001_x.py", bad)
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_a_badly_named_file_and_a_missing_directory(tmp_path, db):
    write(tmp_path, "add_plan.py", ADD_PLAN)
    with pytest.raises(MigrationError, match="NNNN_name.py"):
        load_migrations(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_migrations(tmp_path / "nope")
    with pytest.raises(ConfigError, match="ASTRO_DB_MIGRATIONS"):
        Migrator(db, None)


def test_a_failing_migration_is_recorded_failed_and_resumes(db, tmp_path, users, monkeypatch):
    monkeypatch.setenv("MIGRATION_FAILS", "1")
    write(tmp_path, "0001_fails.py", '''
        import os

        version = 1
        description = "fails on the second batch"
        calls = []

        def up(ctx):
            def change(doc):
                calls.append(doc["_id"])
                if len(calls) == 15 and os.environ.get("MIGRATION_FAILS"):
                    raise ValueError("bad data")
                return {"$set": {"plan": "free"}, "$inc": {"applied": 1}}
            ctx.migrate("User", {"plan": {"$exists": False}}, change)
        ''')
    m = Migrator(db, tmp_path, batch_size=10)
    with pytest.raises(MigrationError, match="failed .up.: ValueError: bad data"):
        m.up()
    (row,) = m.status()
    assert row["state"] == "failed" and "bad data" in row["error"]
    assert raw(db).count_documents({"applied": 1}) == 10  # the first batch stands
    # the next run (a fresh import of the file) resumes from the stored position
    monkeypatch.delenv("MIGRATION_FAILS")
    assert Migrator(db, tmp_path, batch_size=10).up().outcomes[1]["up:users"]["matched"] == 15
    assert raw(db).count_documents({"applied": 1}) == 25
    history = raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})["history"]
    assert [h["status"] for h in history] == ["running", "failed", "running", "applied"]
    assert "bad data" in history[1]["error"] and history[0]["at"] <= history[1]["at"] <= history[2]["at"]


UNTIER = TIER + '''

def down(ctx):
    import os

    def undo(doc):
        undone.append(doc["_id"])
        if len(undone) == 15 and os.environ.get("DOWN_FAILS"):
            raise ValueError("bad data")
        return {"$unset": {"tier": ""}}

    undone = []
    ctx.migrate("User", {"tier": {"$exists": True}}, undo)
'''


@pytest.mark.parametrize("stopped", ["failed", "killed"])
def test_a_down_that_stopped_part_way_is_resumed_before_an_older_migration_is_reverted(
        db, folder, users, monkeypatch, stopped):
    """``down`` of 2 fails (or is killed) after its first batch: "run it again to resume". The
    next ``down`` resumes 2 (newest first), never reverts 1 under a half-reverted 2."""
    write(folder, "0002_tier.py", UNTIER)
    Migrator(db, folder, batch_size=10).up()
    monkeypatch.setenv("DOWN_FAILS", "1")
    if stopped == "failed":
        with pytest.raises(MigrationError, match="run it again to resume"):
            Migrator(db, folder, batch_size=10).down()
    else:
        def kill(event, **details):
            if event == "batch-saved" and details["batch"] == 1:
                raise Crash()
        with pytest.raises(Crash):
            Migrator(db, folder, batch_size=10, hook=kill).down()
        # what a SIGKILL leaves: the record as the run left it, still "running" (no failure written)
        raw(db, MIGRATIONS_COLLECTION).update_one({"version": 2}, {"$set": {"status": "running", "error": None}})
    monkeypatch.delenv("DOWN_FAILS")
    assert raw(db).count_documents({"tier": {"$exists": True}}) == 15  # 2 is half reverted
    report = Migrator(db, folder, batch_size=10).down()
    assert report.ran == [2] and report.outcomes[2]["down:users"]["matched"] == 15  # resumed at its position
    assert raw(db).count_documents({"tier": {"$exists": True}}) == 0
    assert raw(db).count_documents({"plan": "free"}) == 25  # 1 stays applied
    assert [(r["version"], r["state"]) for r in Migrator(db, folder).status()] == [(1, "applied"), (2, "pending")]


class Crash(BaseException):
    """A process dying mid-batch (no cleanup code may catch it as an error)."""


def test_a_run_killed_between_update_and_records_resumes_exactly_once(db, folder, users):
    def kill_in_batch_2(event, **details):
        if event == "batch-updated" and details["batch"] == 2:
            raise Crash()

    with pytest.raises(Crash):
        Migrator(db, folder, batch_size=10, hook=kill_in_batch_2).up()
    assert raw(db).count_documents({"applied": 1}) == 20  # batch 2 was written...
    assert len(records_of(db)) == 10  # ...but not recorded
    stored = raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})
    assert stored["positions"]["up:users"] == sorted(users)[9] and stored["ops"]["up:users"] is not None

    report = Migrator(db, folder, batch_size=10).up()
    assert report.outcomes[1]["up:users"]["matched"] == 5  # resumed after batch 1's position
    assert raw(db).count_documents({"applied": 1}) == 25 and raw(db).count_documents({"applied": {"$gt": 1}}) == 0
    recs = records_of(db)  # batch 2's records written on resume; one per document, no duplicate
    assert sorted(r["documentId"] for r in recs) == sorted(users)


def every_change_recorded(db: Database, ids: list[ObjectId]) -> None:
    """Each user's change records are one per revision it went through: 0 (created) to now."""
    for doc in raw(db).find({"_id": {"$in": ids}}):
        revs = sorted(r["rev"] for r in raw(db, CHANGES_COLLECTION).find({"documentId": doc["_id"]}))
        assert revs == list(range(doc.get("_rev", 0) + 1)), (doc["_id"], revs, doc.get("_rev"))


@pytest.mark.parametrize("first, then", [("down", "up"), ("up", "down")])
def test_a_run_killed_before_its_records_is_recorded_by_a_run_in_the_other_direction(db, folder, users, first, then):
    """A run killed between a batch's write and its records leaves that batch's op id in the
    record; the next run may go the other way (``up`` after a killed ``down``, ``down`` after a
    killed ``up``), starting afresh: it records the batch first, so no change goes unrecorded."""
    if first == "down":
        Migrator(db, folder, batch_size=10).up()

    def kill_in_batch_2(event, **details):
        if event == "batch-updated" and details["batch"] == 2:
            raise Crash()

    with pytest.raises(Crash):
        getattr(Migrator(db, folder, batch_size=10, hook=kill_in_batch_2), first)()
    # what a SIGKILL leaves: the record as the run left it, still "running" (no failure written)
    raw(db, MIGRATIONS_COLLECTION).update_one({"version": 1}, {"$set": {"status": "running", "error": None}})
    assert getattr(Migrator(db, folder, batch_size=10), then)().ran == [1]
    every_change_recorded(db, users)


def test_documents_written_behind_the_position_are_migrated_once(db, folder, users):
    behind = ObjectId.from_datetime(datetime.datetime(2001, 1, 1))  # sorts before every user
    ahead = sorted(users)[-1]

    def writer(event, **details):
        if event == "batch-saved" and details["batch"] == 1:
            raw(db).insert_one({"_id": behind, "email": "late@example.com", "name": "Late"})
            db.update("User", {"id": ahead}, {"name": "Changed meanwhile"})

    report = Migrator(db, folder, batch_size=10, hook=writer).up()
    outcome = report.outcomes[1]["up:users"]
    assert outcome["final_pass"] == 1 and outcome["changed"] == 26
    assert raw(db).count_documents({"applied": 1}) == 26 and raw(db).count_documents({"applied": {"$gt": 1}}) == 0
    assert raw(db).find_one({"_id": ahead})["name"] == "Changed meanwhile"


STATUS_TIER = '''
import datetime
import os

from bson import ObjectId

version = 1
description = "a tier from the status, per document"
done = []


def up(ctx):
    target, writer = ObjectId(os.environ["SUSPEND"]), os.environ["WRITER"]

    def tier(doc):
        if doc["_id"] == target and not done:  # the app suspends her right after the batch's read
            done.append(1)
            if writer == "service":
                ctx.db.update("User", {"id": target}, {"status": "suspended"})
            else:  # the Node service's Mongoose: a $set with its timestamp, no revision
                ctx.db.mongo["users"].update_one({"_id": target}, {"$set": {
                    "status": "suspended", "updatedAt": datetime.datetime.now(datetime.timezone.utc)}})
        return {"$set": {"tier": doc["status"].upper()}}

    ctx.migrate("User", {"tier": {"$exists": False}}, tier)
'''


@pytest.mark.parametrize("writer", ["service", "node"])
def test_a_function_update_never_writes_what_it_computed_from_a_document_changed_since(
        db, tmp_path, users, writer, monkeypatch):
    """The app (through the service, or the Node service) suspends a user between the batch's
    read and its write. The tier computed from the read says ACTIVE; written, it would contradict
    the stored status for good (she no longer matches "not migrated yet"). It is written only if
    the document is still as read (its revision and ``updatedAt``); the final pass reads it again."""
    write(tmp_path, "0001_tier.py", STATUS_TIER)
    monkeypatch.setenv("SUSPEND", str(sorted(users)[3]))
    monkeypatch.setenv("WRITER", writer)
    report = Migrator(db, tmp_path, batch_size=10).up()
    for doc in raw(db).find():
        assert doc["tier"] == doc["status"].upper(), doc
    assert report.outcomes[1]["up:users"]["final_pass"] == 1  # the changed user, read again
    every_change_recorded(db, users)


def test_two_runs_at_once_run_the_migration_once(db, folder, users):
    """A reads the (absent) lease; before it takes it, B takes it and runs: A's take fails."""
    b = Migrator(db, folder, owner="B")
    ran_b = []

    def race(event, **details):
        if event == "lease-read" and not ran_b:
            ran_b.append(b.up())

    a = Migrator(db, folder, owner="A", hook=race)
    with pytest.raises(MigrationLockedError):
        a.up()
    assert ran_b[0].ran == [1]
    assert raw(db).count_documents({"applied": 1}) == 25 and raw(db).count_documents({"applied": {"$gt": 1}}) == 0
    assert a.up().ran == []  # afterwards: applied, nothing to run


def test_the_lease_is_compare_and_set_on_an_existing_document(db, folder, users):
    write(folder, "0002_tier.py", TIER)
    Migrator(db, folder).up(to=1)  # the lease document exists now (released)
    b = Migrator(db, folder, owner="B")
    taken = []

    def race(event, **details):
        if event == "lease-read" and not taken:
            b.lease.take()  # B takes the free lease between A's read and A's take
            taken.append(True)

    with pytest.raises(MigrationLockedError) as caught:
        Migrator(db, folder, owner="A", hook=race).up()
    assert caught.value.owner == "B"
    assert raw(db).count_documents({"tier": {"$exists": True}}) == 0


def test_a_held_lease_is_taken_over_only_once_expired(db, folder, users):
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    holder = Migrator(db, folder, owner="holder", clock=clock, lease_ttl_s=60)
    holder.lease.take()
    with pytest.raises(MigrationLockedError, match="being run by holder"):
        Migrator(db, folder, owner="other", clock=clock).up()
    now[0] += 59
    with pytest.raises(MigrationLockedError):
        Migrator(db, folder, owner="other", clock=clock).up()
    now[0] += 2  # expired
    assert Migrator(db, folder, owner="other", clock=clock).up().ran == [1]
    with pytest.raises(MigrationLockedError, match="taken over"):
        holder.lease.renew()  # the old holder learns it lost the lease at its next renewal
    assert raw(db, MIGRATIONS_COLLECTION).find_one({"_id": LEASE_ID})["owner"] is None  # released


def test_progress_is_reported_and_logged_every_n_batches(db, folder, users, caplog):
    seen = []
    caplog.set_level(logging.INFO, logger="astro_db")
    Migrator(db, folder, batch_size=5, log_every=2, progress=seen.append).up()
    assert [f["batches"] for f in seen] == [1, 2, 3, 4, 5, 5]
    assert seen[-1]["done"] and seen[-1]["changed"] == seen[-1]["total"] == 25
    lines = [r.getMessage() for r in caplog.records if "batch(es)" in r.getMessage()]
    assert len(lines) == 3 and "(done)" in lines[-1]  # batches 2 and 4, then the end


def test_batches_and_commands_from_a_migration(db, tmp_path, users):
    write(tmp_path, "0001_scan.py", '''
        version = 1
        seen = []

        def up(ctx):
            for batch in ctx.batches("User", {}, batch_size=10, projection={"email": 1}):
                seen.append(len(batch))
            ctx.command({"ping": 1})
        ''')
    m = Migrator(db, tmp_path)
    m.up()
    assert m.status()[0]["state"] == "applied"


def test_the_cli_runs_up_and_status(tmp_path, monkeypatch):
    write(tmp_path, "0001_add_plan.py", ADD_PLAN)
    monkeypatch.setenv("ASTRO_DB_MIGRATIONS", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(cli, ["--url", "mongomock://localhost/x", "--json", "migrate", "status"])
    assert result.exit_code == 0 and json.loads(result.output)[0]["state"] == "pending"
    result = runner.invoke(cli, ["--url", "mongomock://localhost/x", "migrate", "up", "--dry-run"])
    assert result.exit_code == 0 and "0001 would be applied (users: 0 document(s))" in result.output
    result = runner.invoke(cli, ["--url", "mongomock://localhost/x", "migrate", "up"])
    assert result.exit_code == 0 and "0001 applied" in result.output
    result = runner.invoke(cli, ["--url", "mongomock://localhost/x", "migrate", "down"])
    assert result.exit_code == 0 and "nothing to do" in result.output  # a fresh embedded database
    write(tmp_path, "0002_bad.py", "version = 2\n")
    result = runner.invoke(cli, ["--url", "mongomock://localhost/x", "migrate", "status"])
    assert result.exit_code == 2 and "defines no `up(ctx)`" in result.output


def test_only_an_admin_runs_migrations(db, folder):
    from astro_db.errors import PermissionDeniedError

    with pytest.raises(PermissionDeniedError):
        Migrator(db.as_actor("w1", roles=["writer"]), folder)
    assert Migrator(db.as_actor("a1", roles=["admin"]), folder).up().ran == [1]
    assert raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})["by"]["actor"] == "a1"


def test_commands_and_validators_from_a_migration_are_skipped_in_a_dry_run(db, tmp_path, monkeypatch):
    from astro_db import schema

    installed = []
    monkeypatch.setattr(schema, "install", lambda db, action, level: installed.append((action, level)) or [])
    write(tmp_path, "0001_validators.py", '''
        version = 1
        description = "validators at warn"

        def up(ctx):
            ctx.install_validators("warn")
            ctx.command({"noSuchCommand": 1})  # would fail if it were sent
        ''')
    Migrator(db, tmp_path, dry_run=True).up()
    assert installed == []
    with pytest.raises(MigrationError, match="noSuchCommand|not implemented|no such"):
        Migrator(db, tmp_path).up()
    assert installed == [("warn", "moderate")]


def test_what_a_migration_changes_drops_cached_reads(db, folder, users):
    before = db.find("User", {"email": "u1@example.com"}, cache=True, lean=True)
    assert "plan" not in before[0]
    assert db.find("User", {"email": "u1@example.com"}, cache=True, lean=True) == before  # served from the cache
    Migrator(db, folder).up()
    assert db.find("User", {"email": "u1@example.com"}, cache=True, lean=True)[0]["plan"] == "free"


def test_a_run_whose_lease_was_taken_over_stops_at_its_next_batch(db, folder, users):
    now = [1000.0]
    rival = Migrator(db, folder, owner="rival", clock=lambda: now[0])

    def expire_and_take(event, **details):
        if event == "batch-saved" and details["batch"] == 1:
            now[0] += 3600  # the run stalled past its lease; the rival takes it over
            rival.lease.take()

    with pytest.raises(MigrationLockedError, match="taken over by rival"):
        Migrator(db, folder, batch_size=10, owner="slow", clock=lambda: now[0], hook=expire_and_take).up()
    assert raw(db).count_documents({"applied": 1}) == 10  # one batch, then it stopped
    assert raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})["status"] == "running"  # resumable


def test_a_stalled_run_never_writes_over_the_record_of_the_run_that_took_its_lease_over(db, folder, users):
    """``slow`` stalls past its lease right after batch 1's records; ``rival`` takes the lease over,
    resumes, and is killed between its batch's write and that batch's records. ``slow`` wakes up
    and would store its position and its next op id in the record: over the op id of rival's
    unrecorded batch, so the run that resumes after the kill would never record that batch.
    The record is fenced by the lease: slow stops there; the resume records every document."""
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731

    def kill_after_update(event, **details):
        if event == "batch-updated":
            raise Crash()

    def stall(event, **details):
        if event == "batch-recorded" and details["batch"] == 1 and now[0] == 1000.0:
            now[0] += 3600  # slow's lease has expired
            with pytest.raises(Crash):
                Migrator(db, folder, batch_size=10, owner="rival", clock=clock, hook=kill_after_update).up()

    with pytest.raises(MigrationLockedError, match="taken over"):
        Migrator(db, folder, batch_size=10, owner="slow", clock=clock, hook=stall).up()
    assert raw(db).count_documents({"applied": 1}) == 20  # slow's batch and rival's (unrecorded)
    now[0] += 3600  # rival's lease has expired too
    assert Migrator(db, folder, batch_size=10, owner="third", clock=clock).up().ran == [1]
    assert raw(db).count_documents({"applied": 1}) == 25 and raw(db).count_documents({"applied": {"$gt": 1}}) == 0
    recorded = sorted(r["documentId"] for r in records_of(db))
    assert recorded == sorted(users)  # one change record per migrated user: rival's batch included


def test_a_run_that_lost_its_lease_starts_no_further_migration(db, folder, users):
    """The lease is taken over while ``slow`` finishes migration 1: it records 1 (its own work,
    done) but does not start 2, which the run holding the lease now will run."""
    write(folder, "0002_tier.py", TIER)
    now = [1000.0]
    rival = Migrator(db, folder, owner="rival", clock=lambda: now[0])

    def take_over(figures):
        if figures["version"] == 1 and figures["done"]:
            now[0] += 3600
            rival.lease.take()

    with pytest.raises(MigrationLockedError, match="taken over by rival"):
        Migrator(db, folder, owner="slow", clock=lambda: now[0], progress=take_over).up()
    assert raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})["status"] == "applied"
    assert raw(db, MIGRATIONS_COLLECTION).find_one({"version": 2}) is None
    assert raw(db).count_documents({"tier": {"$exists": True}}) == 0


def test_the_progress_line(capsys):
    from astro_db.cli.migrate import _progress_line

    _progress_line({"version": 1, "model": "User", "batches": 3, "changed": 30, "total": 50, "done": False})
    _progress_line({"version": 1, "model": "User", "batches": 5, "changed": 50, "total": 50, "done": True})
    assert capsys.readouterr().err == "\r0001 User: batch 3, 30/50 changed  60%\r0001 User: batch 5, 50/50 changed 100%\n"


@pytest.mark.parametrize("projection, fields", [({"_id": 0, "email": 1}, {"email"}),
                                                ({"_id": 0}, {"email", "name", "status"}),
                                                ({"email": 1}, {"_id", "email"})])
def test_ctx_batches_with_a_projection_leaving_out_the_id(db, tmp_path, users, monkeypatch, projection, fields):
    """The position is the last document's ``_id``: a projection leaving it out was a KeyError
    after the first batch (the migration failed); the id is read and dropped from what is handed."""
    monkeypatch.setenv("PROJECTION", json.dumps(projection))
    write(tmp_path, "0001_scan.py", '''
        import json
        import os

        version = 1

        def up(ctx):
            for batch in ctx.batches("User", {}, batch_size=10, projection=json.loads(os.environ["PROJECTION"])):
                ctx.db.mongo["seen"].insert_many([{"keys": sorted(d)} for d in batch])
        ''')
    assert Migrator(db, tmp_path).up().ran == [1]
    seen = list(raw(db, "seen").find())
    assert len(seen) == len(users)
    assert all(fields <= set(d["keys"]) and ("_id" in d["keys"]) == ("_id" in fields) for d in seen)


def test_ctx_batches_resume_from_the_last_handled_batch(db, tmp_path, users, monkeypatch):
    write(tmp_path, "0001_scan.py", '''
        import os

        version = 1

        def up(ctx):
            for n, batch in enumerate(ctx.batches("User", {}, batch_size=10), 1):
                ctx.db.mongo["seen"].insert_many([{"id": d["_id"]} for d in batch])
                if n == 2 and os.environ.get("SCAN_FAILS"):
                    raise RuntimeError("stop after two batches")
        ''')
    monkeypatch.setenv("SCAN_FAILS", "1")
    with pytest.raises(MigrationError, match="stop after two batches"):
        Migrator(db, tmp_path).up()
    monkeypatch.delenv("SCAN_FAILS")
    Migrator(db, tmp_path).up()
    seen = [d["id"] for d in raw(db, "seen").find()]
    # batch 2 had not been handed back when the run stopped: it is read again, nothing else
    assert sorted(seen) == sorted(sorted(users) + sorted(users)[10:20])


def test_the_history_of_a_record_and_a_finish_never_before_its_change_records(db, folder, users, monkeypatch):
    from astro_db import migrations
    from astro_db.changes.records import to_ms

    real = migrations._now
    monkeypatch.setattr(migrations, "_now", lambda: real() - datetime.timedelta(hours=1))  # this host's clock 1 h slow
    Migrator(db, folder, batch_size=10).up()
    record = raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})
    assert [(h["status"], h["direction"]) for h in record["history"]] == [("running", "up"), ("applied", "up")]
    assert {h["checksum"] for h in record["history"]} == {record["checksum"]} and record["history"][0]["by"] == record["by"]
    newest = max(r["t"] for r in records_of(db))  # the server's clock (the documents' updatedAt)
    assert to_ms(record["startedAt"]) < newest  # the start: this host's clock
    assert to_ms(record["finishedAt"]) == to_ms(record["history"][-1]["at"]) >= newest  # never before its records
    Migrator(db, folder, batch_size=10).down()
    history = raw(db, MIGRATIONS_COLLECTION).find_one({"version": 1})["history"]
    assert [(h["status"], h["direction"]) for h in history][2:] == [("running", "down"), ("reverted", "down")]
    assert to_ms(history[-1]["at"]) >= max(r["t"] for r in records_of(db))


def test_documents_under_an_id_of_another_type_are_migrated_too(db, folder, users):
    """Another client stored users under string ``_id``s: MongoDB sorts strings before ObjectIds
    and ``$gt: <string>`` never matches an ObjectId. The batches go on past the last string into
    the later types (before, only the final pass from the start found the ObjectIds)."""
    raw(db).insert_many([{"_id": f"legacy-{i:02d}", "email": f"l{i}@example.com", "name": f"L {i}"} for i in range(20)])
    report = Migrator(db, folder, batch_size=10).up()
    assert report.outcomes[1]["up:users"] == {"matched": 45, "changed": 45, "batches": 5, "final_pass": 0}
    assert raw(db).count_documents({"plan": "free"}) == 45



RENAME = '''
version = 1
description = "lastSeen, as an older client stored it, becomes lastActive"


def up(ctx):
    ctx.migrate("User", {"lastSeen": {"$exists": True}}, {"$rename": {"lastSeen": "lastActive"}})


def down(ctx):
    pass
'''


def test_a_rename_drops_cached_reads_of_the_new_name_too(tmp_path):
    """A migration's ``$rename`` changes the new field as well as the old: a read cached on the
    new name before the migration (nobody has ``lastActive`` yet) must not outlive it."""
    write(tmp_path, "0001_rename.py", RENAME)
    with Database("mongomock://localhost/rename", cache_models=("User",)) as db:
        seen = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
        raw(db).insert_one({"_id": ObjectId(), "email": "old@example.com", "name": "Old", "status": "active",
                            "lastSeen": seen})
        assert db.find("User", {"lastActive": {"$exists": True}}) == []  # cached
        Migrator(db, tmp_path).up()
        assert [u.email for u in db.find("User", {"lastActive": {"$exists": True}})] == ["old@example.com"]


SEAL_NAMES = '''
version = 1
description = "a display name for every user, and a birth place per chart"


def up(ctx):
    ctx.migrate("User", {"named": {"$exists": False}}, {"$set": {"name": "Qz-MIGRATED-NAME", "named": True}})
    ctx.migrate("BirthChart", {"placed": {"$exists": False}},
                lambda doc: {"$set": {"birthData.location": {"name": "Qz-MIGRATED-PLACE", "coordinates": [1.0, 2.0]},
                                      "placed": True}})
'''

RENAME_INTO_NAME = '''
version = 1
description = "fullName, as an older client stored it, becomes name"


def up(ctx):
    ctx.migrate("User", {"fullName": {"$exists": True}}, {"$rename": {"fullName": "name"}})
'''


def test_with_a_key_what_a_migration_writes_into_a_personal_field_is_sealed(tmp_path):
    """A migration's ``$set`` of a personal field (or of its parent), by an update document or a
    function of the stored document, is sealed as a write of the service: ciphertext in the
    collection and in the change records, plaintext through the service, the blind index kept in
    step. Before, it was stored and journalled in clear."""
    from astro_db.security.crypto import new_key

    write(tmp_path, "0001_seal.py", SEAL_NAMES)
    with Database("mongomock://localhost/migrate_sealed", encryption_key=new_key()) as db:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        chart = db.create("BirthChart", {"userId": user.id, "birthData": {
            "date": "1990-05-01T10:30:00Z", "timezone": "UTC", "location": {"name": "Lyon", "coordinates": [4.8, 45.7]}}})
        Migrator(db, tmp_path).up()
        stored = [*db.mongo["users"].find(), *db.mongo["birthCharts"].find(), *db.mongo[CHANGES_COLLECTION].find()]
        assert "Qz-MIGRATED" not in repr(stored)
        assert db.find_one("User", {"id": user.id}).name == "Qz-MIGRATED-NAME"
        assert db.find_one("BirthChart", {"id": chart.id}).birth_data.location.name == "Qz-MIGRATED-PLACE"
        assert db.find_one("BirthChart", {"birthData.location.name": "Qz-MIGRATED-PLACE"}).id == chart.id


def test_with_a_key_a_rename_onto_a_personal_field_is_refused(tmp_path):
    """A ``$rename`` moves the value on the server, where it cannot be sealed: onto an encrypted
    field it would store it in clear, so the migration fails and writes nothing."""
    from astro_db.security.crypto import new_key

    write(tmp_path, "0001_rename.py", RENAME_INTO_NAME)
    with Database("mongomock://localhost/migrate_rename", encryption_key=new_key()) as db:
        raw(db).insert_one({"_id": ObjectId(), "email": "old@example.com", "fullName": "Qz-OLD-NAME", "status": "active"})
        with pytest.raises(MigrationError, match=r"\$rename onto the encrypted field User.name"):
            Migrator(db, tmp_path).up()
        assert raw(db).find_one()["fullName"] == "Qz-OLD-NAME" and "name" not in raw(db).find_one()


RENAME_FROM_NAME = '''
version = 1
description = "name moves to displayName"


def up(ctx):
    ctx.migrate("User", {"name": {"$exists": True}}, {"$rename": {"name": "displayName"}})
'''


def test_with_a_key_a_rename_of_a_personal_field_is_refused_as_its_value_would_never_open_again(tmp_path):
    """A sealed value opens only at the path it was sealed for: moved by a ``$rename`` it would
    read ``UNREADABLE`` for ever (the data lost), so the migration fails and writes nothing."""
    from astro_db.security.crypto import new_key

    write(tmp_path, "0001_rename.py", RENAME_FROM_NAME)
    with Database("mongomock://localhost/migrate_rename_from", encryption_key=new_key()) as db:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        before = raw(db).find_one({"_id": user.id})
        with pytest.raises(MigrationError, match=r"\$rename of the encrypted field User.name"):
            Migrator(db, tmp_path).up()
        assert raw(db).find_one({"_id": user.id}) == before
        assert db.find_one("User", {"id": user.id}).name == "Ann"


MOVE_OWNER = '''
version = 1
description = "every insight of the old account goes to the new one"


def up(ctx):
    ctx.migrate("PlanetaryInsight", {}, {"$set": {"userId": NEW_OWNER}})
'''


def test_with_a_key_a_migration_that_moves_documents_to_another_owner_is_refused(tmp_path):
    """Their values are sealed under their owner's data key; a migration sends its updates as
    given and would leave them under the previous owner's (lost with her erasure, outliving the
    new owner's): the migration fails, nothing written, and says to move them with db.update."""
    from astro_db.security.crypto import new_key

    with Database("mongomock://localhost/migrate_move", encryption_key=new_key()) as db:
        ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        bob = db.create("User", {"email": "bob@example.com", "name": "Bob"})
        write(tmp_path, "0001_move.py", MOVE_OWNER.replace("NEW_OWNER", f"__import__('bson').ObjectId('{bob.id}')"))
        insight = db.create("PlanetaryInsight", {"userId": ann.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 5,
                                                 "recommendations": ["x"], "summary": "Ann's"})
        before = db.mongo.planetaryInsights.find_one({"_id": insight.id})
        with pytest.raises(MigrationError, match="sets the owner of PlanetaryInsight documents"):
            Migrator(db, tmp_path).up()
        assert db.mongo.planetaryInsights.find_one({"_id": insight.id}) == before


EVENTS = ["batch-start", "batch-updated", "batch-recorded", "batch-saved", "final-pass", "saved"]


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(["up", "down"]),
                                st.one_of(st.none(), st.tuples(st.sampled_from(EVENTS), st.integers(1, 4)))),
                      max_size=4))
def test_runs_killed_anywhere_in_either_direction_change_each_user_once_per_run_and_record_it(tmp_path_factory, steps):
    """Any sequence of ``up`` and ``down`` runs, each maybe killed at any point of any batch
    (what a SIGKILL leaves: the record "running", the lease held until it expires), then ``up``
    to the end: each user is migrated once more than it was reverted, ends migrated, and has one
    change record per revision it went through."""
    folder = tmp_path_factory.mktemp("migrations")
    write(folder, "0001_add_plan.py", ADD_PLAN)
    with Database(f"mongomock://localhost/mk{uuid.uuid4().hex[:8]}", ensure_indexes=False) as db:
        ids = [d["_id"] for d in db.create_many("User", [{"email": f"k{i}@example.com", "name": "K"}
                                                         for i in range(23)], lean=True)]
        now = [1000.0]
        for direction, kill in steps:
            seen: dict[str, int] = {}

            def hook(event, _kill=kill, _seen=seen, **details):
                _seen[event] = _seen.get(event, 0) + 1
                if _kill is not None and event == _kill[0] and _seen[event] == _kill[1]:
                    raise Crash()

            try:
                getattr(Migrator(db, folder, batch_size=5, clock=lambda: now[0], hook=hook), direction)()
            except Crash:
                raw(db, MIGRATIONS_COLLECTION).update_one({"version": 1}, {"$set": {"status": "running", "error": None}})
                raw(db, MIGRATIONS_COLLECTION).update_one({"_id": LEASE_ID}, {"$set": {"token": "dead", "owner": "dead",
                                                                                      "expiresMs": now[0] * 1000 + 1}})
            now[0] += 3600  # a killed run's lease has expired
        Migrator(db, folder, batch_size=5, clock=lambda: now[0]).up()
        for doc in raw(db).find({"_id": {"$in": ids}}):
            assert doc["plan"] == "free" and doc.get("applied", 0) - doc.get("reverted", 0) == 1, doc
        every_change_recorded(db, ids)
