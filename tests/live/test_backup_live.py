"""Backup and recovery against a real wire-protocol server (nx-27017, or ASTRO_DB_TEST_URI)."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pymongo
import pytest
from backup_helpers import add_user, change_everything, instant_after_last_write, seed, state
from click.testing import CliRunner

from astro_db import Database, backup
from astro_db.cli import cli
from astro_db.errors import BackupError, BackupIntegrityError
from astro_db.migrations import LEASE_ID, MIGRATIONS_COLLECTION, Migrator


@pytest.fixture
def source(live_url):
    # throwaway data, kept in plaintext so restores can be compared as stored
    with Database(live_url, server_selection_timeout_ms=2000, allow_plaintext_sensitive=True) as db:
        yield db


@pytest.fixture
def target_url(live_server):
    name = f"astro_restore_{uuid.uuid4().hex[:8]}"
    yield live_server.url(name)
    client = pymongo.MongoClient(live_server.url(name), serverSelectionTimeoutMS=2000)
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def target(target_url):
    with Database(target_url, server_selection_timeout_ms=2000, ensure_indexes=False) as db:
        yield db


def test_full_plus_incremental_restores_exactly_the_source(source, target, tmp_path):
    data = seed(source)
    assert backup.backup(source, tmp_path)["kind"] == "full"
    change_everything(source, data, "a")
    assert backup.backup(source, tmp_path)["kind"] == "incremental"
    report = backup.restore(tmp_path, target)
    assert state(target) == state(source)
    assert report["collections"]["users"] == source.count("User", {})


def test_restore_until_gives_exactly_the_state_at_that_instant(source, target, tmp_path):
    data = seed(source)
    backup.backup(source, tmp_path)
    change_everything(source, data, "before")
    instant = instant_after_last_write()
    expected = state(source)
    change_everything(source, data, "after")
    backup.backup(source, tmp_path)
    backup.restore(tmp_path, target, until=instant)
    assert state(target) == expected
    assert state(target) != state(source)


def test_restore_into_a_non_empty_target_is_refused_without_drop(source, target, tmp_path):
    seed(source)
    backup.backup(source, tmp_path)
    add_user(target, "Squatter")
    with pytest.raises(BackupError, match="non-empty"):
        backup.restore(tmp_path, target)
    assert target.count("User", {}) == 1
    backup.restore(tmp_path, target, drop=True)
    assert state(target) == state(source)


def test_a_restore_by_url_drops_what_the_apps_caches_hold_of_the_target(source, target_url, tmp_path):
    seed(source)
    backup.backup(source, tmp_path)
    with Database(target_url, server_selection_timeout_ms=2000, ensure_indexes=False, cache_models=("User",)) as app:
        add_user(app, "Squatter")
        assert [u.name for u in app.find("User", {})] == ["Squatter"]  # cached by the app
        backup.restore(tmp_path, target_url, drop=True)  # a Database of its own, on the same data
        names = sorted(u.name for u in app.find("User", {}))
        assert names == sorted(u.name for u in app.find("User", {}, cache=False)) and "Squatter" not in names


@pytest.fixture
def repo(source, tmp_path) -> Path:
    data = seed(source)
    backup.backup(source, tmp_path)
    change_everything(source, data, "a")
    backup.backup(source, tmp_path)
    return tmp_path


def test_deep_verify_loads_every_set_and_drops_its_scratch_database(source, repo):
    before = set(source.mongo.client.list_database_names())
    assert backup.verify(repo, deep=True, url=source)["deep"] is True
    assert set(source.mongo.client.list_database_names()) <= before | {source.mongo.name}


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing"])
def test_a_damaged_file_fails_verify_naming_it(repo, damage):
    path = next(p for p in sorted(repo.iterdir()) if p.name.endswith("-full")) / "planetaryInsights.bson.gz"
    raw = bytearray(path.read_bytes())
    if damage == "flipped byte":
        raw[-12] ^= 0x40
        path.write_bytes(bytes(raw))
    elif damage == "truncated":
        path.write_bytes(bytes(raw[:-10]))
    else:
        path.unlink()
    with pytest.raises(BackupIntegrityError) as err:
        backup.verify(repo)
    assert err.value.path == str(path)
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo)])
    assert result.exit_code == 2 and str(path) in result.output


def test_cli_backup_list_verify_restore_round_trip(source, target_url, tmp_path, live_url):
    seed(source)
    runner = CliRunner()
    first = runner.invoke(cli, ["--url", live_url, "backup", "--repo", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert "full backup set" in first.output
    add_user(source, "Late")
    second = runner.invoke(cli, ["--json", "backup", "--url", live_url, "--repo", str(tmp_path)])
    assert second.exit_code == 0, second.output
    listed = runner.invoke(cli, ["--json", "backup", "list", "--repo", str(tmp_path)])
    assert [s["kind"] for s in json.loads(listed.stdout)] == ["full", "incremental"]
    assert runner.invoke(cli, ["verify", "--repo", str(tmp_path), "--deep", "--url", live_url]).exit_code == 0
    restored = runner.invoke(cli, ["--url", target_url, "restore", "--repo", str(tmp_path)])
    assert restored.exit_code == 0, restored.output
    assert "users" in restored.output
    with Database(target_url, ensure_indexes=False) as target:
        assert state(target) == state(source)
    again = runner.invoke(cli, ["--url", target_url, "restore", "--repo", str(tmp_path)])
    assert again.exit_code == 2 and "--drop" in again.output


# --- the migration ledger ------------------------------------------------------------------------

MIGRATION = '''
from pathlib import Path

version = {version}
description = "mark every user {field}"


def up(ctx):
    with open(Path(__file__).with_name("calls.log"), "a") as log:
        log.write("{version} up\\n")
    ctx.migrate("User", {{"{field}": {{"$exists": False}}}}, {{"$set": {{"{field}": 1}}}})
'''


def _migration(folder: Path, version: int, field: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{version:04d}_{field}.py").write_text(textwrap.dedent(MIGRATION.format(version=version, field=field)))


def test_restore_writes_the_migration_ledger_without_the_lease_and_migrate_runs_nothing_twice(
        source, target_url, tmp_path, live_url):
    for i in range(6):
        add_user(source, f"M{i}")
    folder, repo = tmp_path / "migrations", tmp_path / "repo"
    _migration(folder, 1, "planned")
    Migrator(source, folder, batch_size=2).up()
    _migration(folder, 2, "tiered")

    def backup_mid_run(event, **details):  # the set is taken while 0002 runs, its lease held
        if event == "batch-saved" and details["batch"] == 1 and not repo.exists():
            backup.backup(source, repo)

    Migrator(source, folder, batch_size=2, hook=backup_mid_run).up()
    restored = CliRunner().invoke(cli, ["--url", target_url, "restore", "--repo", str(repo)])
    assert restored.exit_code == 0, restored.output
    assert "migrations: 0001 applied, 0002 running" in restored.output
    with Database(target_url, ensure_indexes=False) as target:
        ledger = {d["_id"]: d for d in target.mongo[MIGRATIONS_COLLECTION].find({})}
        assert set(ledger) == {"v0001", "v0002"}  # no lease: none is held there
        assert ledger["v0002"]["status"] == "running" and ledger["v0002"]["positions"] == {}
        assert target.mongo["users"].count_documents({"tiered": 1}) == 2  # batch 1 was in the set
        assert Migrator(target, folder, batch_size=2).up().ran == [2]  # not locked; 0001 not again
        users = list(target.mongo["users"].find({}))
        assert [u.get("planned") for u in users] == [1] * 6 and [u.get("tiered") for u in users] == [1] * 6
        assert target.mongo[MIGRATIONS_COLLECTION].find_one({"_id": LEASE_ID})["token"] is None
    assert (folder / "calls.log").read_text().split() == ["1", "up", "2", "up", "2", "up"]


def test_restore_until_after_a_migration_counts_it_applied(source, target, tmp_path):
    seed(source)
    folder, repo = tmp_path / "migrations", tmp_path / "repo"
    backup.backup(source, repo)
    _migration(folder, 1, "planned")
    Migrator(source, folder).up()
    until = instant_after_last_write()
    _migration(folder, 2, "tiered")
    Migrator(source, folder).up()
    backup.backup(source, repo)
    report = backup.restore(repo, target, until=until)
    assert report["migrations"] == {"0001": "applied"}
    assert all(u.get("planned") == 1 and "tiered" not in u for u in target.mongo["users"].find({}))
    assert Migrator(target, folder).up().ran == [2]
    assert (folder / "calls.log").read_text().split() == ["1", "up", "2", "up", "2", "up"]


def _created(coll: str, doc_id, name: str, later_ms: int = 0) -> dict:
    """A create's change record (journal on) of a document ``{_id, name}``, stamped now (and
    ``later_ms`` more)."""
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=later_ms)
    return {"_id": f"{coll}/{json.dumps(repr(doc_id))}/0/{uuid.uuid4().hex}", "model": "User", "coll": coll,
            "documentId": doc_id, "rev": 0, "action": "create", "time": now, "t": int(now.timestamp() * 1000),
            "journal": True, "doc": {"_id": doc_id, "name": name}}


def test_documents_true_and_1_both_come_back_from_a_replay_and_an_incremental(source, target, tmp_path):
    """``_id: true`` and ``_id: 1`` are two documents (a bool is no number), and nx-27017 keeps
    them apart as MongoDB does. Before, a backup keyed documents by Python's ``==`` (``True ==
    1``): the full set's replay and the incremental each kept one of the two. No model takes
    such an ``_id``, so their change records are written directly. nx-27017 stores the two
    apart but matches a filter ``{_id: true}`` against a stored ``1`` (not the reverse): the
    bool's record is stamped first, so its upsert is applied first, as the restore applies
    records in their order."""
    repo = tmp_path / "repo"
    records = source.mongo["astroChanges"]
    records.insert_many([_created("users", True, "replayed true"), _created("users", 1, "replayed 1", later_ms=1)])
    backup.backup(source, repo, full=True)  # the records in its window: replayed by a restore
    records.insert_many([_created("users", False, "incremental false"), _created("users", 0, "incremental 0", later_ms=1)])
    assert backup.backup(source, repo)["kind"] == "incremental"
    backup.restore(repo, target)
    names = {d["name"]: d["_id"] for d in target.mongo["users"].find({"name": {"$regex": "^(replayed|incremental) "}})}
    assert sorted(names) == ["incremental 0", "incremental false", "replayed 1", "replayed true"], names
    assert [type(names[n]) for n in sorted(names)] == [int, bool, int, bool]

