"""The migration ledger in backups (embedded backend): every set carries ``astroMigrations``,
``verify`` checks it, a restore writes it as it stood at the instant restored (the lease left
out), so ``migrate`` after a restore applies only what the restored documents have not been
through; sets taken before sets carried it still restore and verify."""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import textwrap
from pathlib import Path

import bson
import pytest
from backup_helpers import add_user, instant_after_last_write
from click.testing import CliRunner

from astro_db import Database, backup
from astro_db.backup.stream import iter_raw
from astro_db.cli import cli
from astro_db.errors import BackupError, BackupIntegrityError
from astro_db.migrations import LEASE_ID, MIGRATIONS_COLLECTION, Migrator, ledger_as_of

_dbs = iter(range(1_000_000))

# each migration logs its calls beside itself: the count survives the file's re-import per run
PLAN = '''
from pathlib import Path

version = 1
description = "give every user a plan"


def up(ctx):
    with open(Path(__file__).with_name("calls.log"), "a") as log:
        log.write("1 up\\n")
    ctx.migrate("User", {"plan": {"$exists": False}}, {"$set": {"plan": "free"}, "$inc": {"applied": 1}})


def down(ctx):
    with open(Path(__file__).with_name("calls.log"), "a") as log:
        log.write("1 down\\n")
    ctx.migrate("User", {"plan": {"$exists": True}}, {"$unset": {"plan": ""}, "$inc": {"reverted": 1}})
'''

TIER = '''
from pathlib import Path

version = 2
description = "every user a tier"


def up(ctx):
    with open(Path(__file__).with_name("calls.log"), "a") as log:
        log.write("2 up\\n")
    ctx.migrate("User", {"tier": {"$exists": False}}, {"$set": {"tier": "basic"}, "$inc": {"tiered": 1}})
'''


def fresh_db() -> Database:
    return Database(f"mongomock://localhost/backup_migrations_{next(_dbs)}").connect()


@pytest.fixture
def db():
    database = fresh_db()
    for i in range(25):
        add_user(database, f"U{i}")
    yield database
    database.disconnect()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_plan.py").write_text(textwrap.dedent(PLAN))
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "repo"


def calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


def ledger(db: Database) -> dict:
    return {d["_id"]: d for d in db.mongo[MIGRATIONS_COLLECTION].find({})}


def states(db: Database, folder: Path) -> dict[int, str]:
    return {row["version"]: row["state"] for row in Migrator(db, folder).status()}


def set_dir(repo: Path, kind: str) -> Path:
    return next(p for p in sorted(repo.iterdir()) if p.name.endswith(kind))


def users(db: Database) -> list[dict]:
    return list(db.mongo["users"].find({}))


# --- every set carries the ledger; restore writes it; migrate runs nothing twice ------------------

@pytest.mark.parametrize("into", ["fresh", "wiped"])
@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_after_a_restore_migrate_applies_nothing_already_applied(db, folder, repo, kind, into):
    if kind == "incremental":
        backup.backup(db, repo)  # full, before the migration
    Migrator(db, folder, batch_size=10).up()
    summary = backup.backup(db, repo)
    assert summary["kind"] == kind and summary["documents"][MIGRATIONS_COLLECTION] == 2  # v0001 and the lease
    target = fresh_db() if into == "fresh" else db
    report = backup.restore(repo, target, drop=into == "wiped")
    assert report["migrations"] == {"0001": "applied"}
    assert states(target, folder) == {1: "applied"}
    assert Migrator(target, folder, batch_size=10).up().ran == []
    assert calls(folder) == ["1 up"]  # the migration function ran once, on the source
    assert sorted(u["applied"] for u in users(target)) == [1] * 25


def test_a_target_whose_ledger_holds_records_is_refused_without_drop(db, folder, repo):
    Migrator(db, folder).up()
    backup.backup(db, repo)
    target = fresh_db()
    target.mongo[MIGRATIONS_COLLECTION].insert_one({"_id": "v0007", "version": 7, "status": "applied"})
    with pytest.raises(BackupError, match=f"non-empty.*{MIGRATIONS_COLLECTION} .1 documents"):
        backup.restore(repo, target)
    assert target.count("User", {}) == 0  # nothing written
    backup.restore(repo, target, drop=True)
    assert set(ledger(target)) == {"v0001"}  # replaced by the set's


def test_a_set_taken_before_any_migration_carries_an_empty_ledger(db, folder, repo):
    summary = backup.backup(db, repo)
    assert summary["documents"][MIGRATIONS_COLLECTION] == 0  # carried, empty
    Migrator(db, folder).up()
    report = backup.restore(repo, db, drop=True)  # the migrated database back to before the migration
    assert report["migrations"] == {} and ledger(db) == {}
    assert users(db)[0].get("plan") is None
    assert Migrator(db, folder).up().ran == [1]  # it did not run on the restored documents: it runs
    assert sorted(u["applied"] for u in users(db)) == [1] * 25


def test_a_lease_held_when_the_set_was_taken_is_not_held_after_restore(db, folder, repo):
    taken = []

    def backup_mid_run(event, **details):  # a backup while the lease is held, the run under way
        if event == "batch-saved" and details["batch"] == 1 and not taken:
            taken.append(backup.backup(db, repo))

    Migrator(db, folder, batch_size=10, hook=backup_mid_run).up()
    saved = [bson.decode(raw) for raw in iter_raw(set_dir(repo, "full") / f"{MIGRATIONS_COLLECTION}.bson.gz")]
    held = next(d for d in saved if d["_id"] == LEASE_ID)
    assert held["token"] and held["owner"]  # the set holds the lease as it was: held
    assert next(d for d in saved if d["_id"] == "v0001")["status"] == "running"

    target = fresh_db()
    report = backup.restore(repo, target)
    assert report["migrations"] == {"0001": "running"}
    assert LEASE_ID not in ledger(target)  # left out: no process holds it there
    restored = ledger(target)["v0001"]
    assert restored["positions"] == {} and restored["ops"] == {} and restored["finishedAt"] is None
    assert sorted(u.get("applied", 0) for u in users(target)) == [0] * 15 + [1] * 10  # batch 1 was in the set
    assert states(target, folder) == {1: "running"}
    assert Migrator(target, folder, batch_size=10).up().ran == [1]  # not locked: resumed, and finished
    assert sorted(u["applied"] for u in users(target)) == [1] * 25  # batch 1's users not migrated twice
    assert states(target, folder) == {1: "applied"}
    assert LEASE_ID in ledger(target) and ledger(target)[LEASE_ID]["token"] is None  # taken afresh, released


# --- sets of an earlier version ------------------------------------------------------------------

def _as_taken_before(set_path: Path) -> None:
    """Make ``set_path`` what an earlier version wrote: no migration ledger in it."""
    manifest = json.loads((set_path / "manifest.json").read_text())
    entry = manifest["collections"].pop(MIGRATIONS_COLLECTION)
    for name in (entry["file"], entry.get("deleted_file")):
        if name:
            del manifest["files"][name]
            (set_path / name).unlink()
    (set_path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_a_set_without_the_ledger_restores_and_verifies_and_leaves_the_targets_ledger(db, folder, repo, kind):
    Migrator(db, folder).up()
    backup.backup(db, repo)
    if kind == "incremental":
        add_user(db, "Late")
        backup.backup(db, repo)
    for path in repo.iterdir():
        _as_taken_before(path)
    assert len(backup.verify(repo)["sets"]) == (2 if kind == "incremental" else 1)
    assert backup.verify(repo, deep=True, url=db)["deep"] is True

    shown = CliRunner().invoke(cli, ["--url", f"mongomock://localhost/backup_migrations_{next(_dbs)}", "restore",
                                     "--repo", str(repo)])
    assert shown.exit_code == 0 and "no migration ledger in these sets" in shown.output
    target = fresh_db()
    report = backup.restore(repo, target)
    assert report["migrations"] is None and MIGRATIONS_COLLECTION not in report["collections"]
    assert report["collections"]["users"] == db.count("User", {})
    assert ledger(target) == {}  # nothing known: the migration will run again, changing nothing twice
    assert Migrator(target, folder).up().ran == [1]
    assert sorted(u["applied"] for u in users(target))[:25] == [1] * 25

    before = ledger(db)
    backup.restore(repo, db, drop=True)  # into the migrated database itself: its ledger is kept
    assert ledger(db) == before and Migrator(db, folder).up().ran == []


def test_restore_until_with_a_replayed_set_without_the_ledger_uses_the_chains(db, folder, repo):
    backup.backup(db, repo)  # full, with the (empty) ledger
    Migrator(db, folder).up()
    until = instant_after_last_write()
    add_user(db, "Late")
    backup.backup(db, repo)
    _as_taken_before(set_dir(repo, "incremental"))  # the replayed set: an earlier version's
    target = fresh_db()
    report = backup.restore(repo, target, until=until)
    assert report["migrations"] == {}  # the chain's copy, from before the migration
    assert all(u["plan"] == "free" for u in users(target))  # the documents, replayed to `until`
    assert Migrator(target, folder).up().ran == [1]  # runs again...
    assert sorted(u["applied"] for u in users(target)) == [1] * 25  # ...changing nothing twice


# --- verify -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_verify_and_restore_detect_a_tampered_ledger(db, folder, repo, kind):
    backup.backup(db, repo)
    Migrator(db, folder).up()
    backup.backup(db, repo)
    assert len(backup.verify(repo, deep=True, url=db)["sets"]) == 2
    path = set_dir(repo, kind) / f"{MIGRATIONS_COLLECTION}.bson.gz"
    docs = [bson.decode(raw) for raw in iter_raw(path)]
    for d in docs:
        if d["_id"] == "v0001":
            d["status"] = "reverted"
    if not any(d["_id"] == "v0001" for d in docs):  # the full set's ledger was empty: add a record
        docs.append({"_id": "v0001", "version": 1, "status": "applied"})
    path.write_bytes(gzip.compress(b"".join(bson.encode(d) for d in docs)))
    with pytest.raises(BackupIntegrityError) as err:
        backup.verify(repo)
    assert err.value.path == str(path) and "checksum mismatch" in str(err.value)
    target = fresh_db()
    with pytest.raises(BackupIntegrityError):
        backup.restore(repo, target)
    assert all(target.mongo[name].count_documents({}) == 0 for name in target.mongo.list_collection_names())


def test_deep_verify_checks_the_ledgers_content_hash(db, folder, repo):
    Migrator(db, folder).up()
    backup.backup(db, repo)
    full = set_dir(repo, "full")
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["collections"][MIGRATIONS_COLLECTION]["content_hash"] = "0" * 64
    (full / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackupIntegrityError) as err:
        backup.verify(repo, deep=True, url=db)
    assert err.value.path == str(full / f"{MIGRATIONS_COLLECTION}.bson.gz")


# --- point-in-time recovery across a migration ----------------------------------------------------

@pytest.mark.parametrize("journal", ["next set", "live source"])
def test_restore_until_after_a_migration_has_it_applied_and_not_the_later_one(db, folder, repo, journal):
    backup.backup(db, repo)  # full, before any migration
    Migrator(db, folder, batch_size=10).up()
    until = instant_after_last_write()
    (folder / "0002_tier.py").write_text(textwrap.dedent(TIER))
    Migrator(db, folder, batch_size=10).up()  # after the instant
    if journal == "next set":
        backup.backup(db, repo)
    target = fresh_db()
    report = backup.restore(repo, target, until=until, journal_source=db if journal == "live source" else None)
    assert report["journal_entries"] >= 25  # the migration's change records were replayed
    assert report["migrations"] == {"0001": "applied"}
    assert all(u["plan"] == "free" and "tier" not in u for u in users(target))  # the documents at `until`
    assert states(target, folder) == {1: "applied", 2: "pending"}
    assert Migrator(target, folder, batch_size=10).up().ran == [2]
    assert calls(folder) == ["1 up", "2 up", "2 up"]  # 0001 never again
    assert sorted((u["applied"], u["tiered"]) for u in users(target)) == [(1, 1)] * 25


def test_restore_until_before_a_later_revert_has_the_migration_applied(db, folder, repo):
    backup.backup(db, repo)
    Migrator(db, folder).up()
    until = instant_after_last_write()
    Migrator(db, folder).down()  # after the instant: the next set's ledger says "reverted"
    backup.backup(db, repo)
    assert ledger(db)["v0001"]["status"] == "reverted"
    target = fresh_db()
    report = backup.restore(repo, target, until=until)
    assert report["migrations"] == {"0001": "applied"}  # by its history, as it stood at `until`
    assert all(u["plan"] == "free" for u in users(target))
    assert [h["status"] for h in ledger(target)["v0001"]["history"]] == ["running", "applied"]
    assert Migrator(target, folder).up().ran == []
    assert Migrator(target, folder).down().ran == [1]  # and it can be reverted there as it was here
    assert not any("plan" in u for u in users(target))


def test_restore_until_before_a_migration_leaves_it_pending(db, folder, repo):
    backup.backup(db, repo)
    add_user(db, "Before")
    until = instant_after_last_write()
    Migrator(db, folder).up()
    backup.backup(db, repo)
    target = fresh_db()
    assert backup.restore(repo, target, until=until)["migrations"] == {}
    assert states(target, folder) == {1: "pending"} and not any("plan" in u for u in users(target))


def test_restore_until_inside_a_migration_resumes_it(db, folder, repo):
    backup.backup(db, repo)
    instants = []

    def after_batch_1(event, **details):
        if event == "batch-saved" and details["batch"] == 1:
            instants.append(instant_after_last_write())

    Migrator(db, folder, batch_size=10, hook=after_batch_1).up()
    backup.backup(db, repo)
    target = fresh_db()
    report = backup.restore(repo, target, until=instants[0])
    assert report["migrations"] == {"0001": "running"}
    assert sorted(u.get("applied", 0) for u in users(target)) == [0] * 15 + [1] * 10  # batch 1 only
    assert Migrator(target, folder, batch_size=10).up().ran == [1]
    assert sorted(u["applied"] for u in users(target)) == [1] * 25


# --- the rule itself ------------------------------------------------------------------------------

T0 = _dt.datetime(2026, 1, 1, 12, 0, tzinfo=_dt.timezone.utc)


def at(minutes: float) -> _dt.datetime:
    return (T0 + _dt.timedelta(minutes=minutes)).replace(tzinfo=None)  # as BSON decodes it: naive UTC


def test_ledger_as_of_records_written_before_histories_were_kept():
    old = [
        {"_id": "v0001", "version": 1, "status": "applied", "startedAt": at(1), "finishedAt": at(2), "positions": {}},
        {"_id": "v0002", "version": 2, "status": "applied", "startedAt": at(3), "finishedAt": at(5),
         "positions": {"up:users": 7}, "ops": {"up:users": "x"}},
        {"_id": "v0003", "version": 3, "status": "running", "startedAt": at(6), "finishedAt": None},
        {"_id": LEASE_ID, "owner": "someone", "token": "t", "expiresMs": 10**15},
    ]
    got = {d["_id"]: d for d in ledger_as_of([old], T0 + _dt.timedelta(minutes=4))}
    assert set(got) == {"v0001", "v0002"}  # 0003 started later; the lease never
    assert got["v0001"]["status"] == "applied" and got["v0001"]["finishedAt"] == at(2)
    assert got["v0002"]["status"] == "running" and got["v0002"]["finishedAt"] is None
    assert got["v0002"]["positions"] == {} and got["v0002"]["ops"] == {}  # resumed from the start
    # an older copy decides what the newer one cannot tell (a record re-run after the instant)
    before = [{"_id": "v0003", "version": 3, "status": "applied", "startedAt": at(0), "finishedAt": at(0.5)}]
    assert {d["_id"]: d["status"] for d in ledger_as_of([before, old], T0 + _dt.timedelta(minutes=4))} == {
        "v0001": "applied", "v0002": "running", "v0003": "applied"}


def test_ledger_as_of_reads_the_history_to_the_millisecond():
    record = {"_id": "v0001", "version": 1, "status": "reverted", "checksum": "c2", "startedAt": at(3),
              "finishedAt": at(4), "history": [
                  {"status": "running", "direction": "up", "at": at(1), "checksum": "c1"},
                  {"status": "applied", "direction": "up", "at": at(2), "checksum": "c1"},
                  {"status": "running", "direction": "down", "at": at(3), "checksum": "c2"},
                  {"status": "reverted", "direction": "down", "at": at(4), "checksum": "c2"}]}

    resumed = dict(record, status="applied", history=[
        {"status": "running", "direction": "up", "at": at(1)}, {"status": "failed", "direction": "up", "at": at(2)},
        {"status": "running", "direction": "up", "at": at(3)}, {"status": "applied", "direction": "up", "at": at(4)}])
    (got,) = ledger_as_of([[resumed]], T0 + _dt.timedelta(minutes=5))
    assert (got["status"], got["startedAt"], got["finishedAt"]) == ("applied", at(1), at(4))  # its run began at 1
    (got,) = ledger_as_of([[resumed]], T0 + _dt.timedelta(minutes=2.5))
    assert (got["status"], got["startedAt"], got["finishedAt"]) == ("failed", at(1), None)

    def state(minutes: float) -> tuple | None:
        got = ledger_as_of([[record]], T0 + _dt.timedelta(minutes=minutes))
        return (got[0]["status"], got[0]["direction"], got[0]["checksum"], len(got[0]["history"])) if got else None

    assert state(0.5) is None
    assert state(1.5) == ("running", "up", "c1", 1)
    assert state(2) == ("applied", "up", "c1", 2)  # stamped in that very millisecond: at or before
    assert state(2 - 1 / 60_000) == ("running", "up", "c1", 1)  # a millisecond before it
    assert state(3.5) == ("running", "down", "c2", 3)
    assert state(9) == ("reverted", "down", "c2", 4)


def test_no_model_may_take_the_migration_ledgers_collection():
    from astro_db.errors import ConfigError
    from astro_db.models import AstroDocument

    class Squatter(AstroDocument):  # its documents would be dumped, and restored, as the ledger
        meta = {"collection": MIGRATIONS_COLLECTION}

    with pytest.raises(ConfigError, match="the service's own"):
        Database("mongomock://localhost/squat_migrations", models=[Squatter])
