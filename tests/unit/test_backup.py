"""Backup and recovery on the embedded backend: sets, journal, restore, verify, prune."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pytest
from backup_helpers import add_user, change_everything, instant_after_last_write, seed, state

from astro_db import Database, backup
from astro_db.backup import JOURNAL_COLLECTION
from astro_db.backup.repository import BackupSet, select_kept
from astro_db.errors import BackupError, BackupIntegrityError

_dbs = iter(range(1_000_000))


def fresh_db(**options) -> Database:
    return Database(f"mongomock://localhost/backup_unit_{next(_dbs)}", **options).connect()


@pytest.fixture
def db():
    database = fresh_db()
    yield database
    database.disconnect()


@pytest.fixture
def repo(tmp_path) -> Path:
    return tmp_path / "repo"


# --- the change journal ---------------------------------------------------------------------

def journal(db) -> list[dict]:
    return list(db.mongo[JOURNAL_COLLECTION].find({"journal": True}, sort=[("t", 1), ("rev", 1)]))


def test_journal_records_each_written_document_with_its_post_image(db):
    user = add_user(db)
    db.update("User", {"id": str(user.id)}, {"name": "Annie"})
    db.delete("User", {"id": str(user.id)})
    entries = journal(db)
    assert [e["action"] for e in entries] == ["create", "update", "delete"]
    assert all(e["coll"] == "users" and e["documentId"] == user.id for e in entries)
    assert entries[1]["doc"]["name"] == "Annie"
    assert "doc" not in entries[2]
    assert [e["rev"] for e in entries] == [0, 1, 2] and entries[1]["doc"]["_rev"] == 1


def test_journal_has_one_entry_per_document_of_a_bulk_write(db):
    db.create_many("User", [{"email": f"u{i}@example.com", "name": "U"} for i in range(5)])
    db.update_many("User", {"name": "U"}, {"status": "inactive"})
    entries = journal(db)
    assert [e["action"] for e in entries].count("update") == 5
    assert all(e["doc"]["status"] == "inactive" for e in entries if e["action"] == "update")


def test_journal_entries_of_an_aborted_transaction_vanish_with_it(db):
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            db.create("User", {"email": "t@example.com", "name": "T"}, transaction=tx)
            raise RuntimeError("abort")
    assert journal(db) == []


def test_journal_can_be_switched_off():
    database = fresh_db(journal=False)
    add_user(database)
    assert journal(database) == []


# --- backup and restore ---------------------------------------------------------------------

def test_first_backup_is_full_and_later_ones_incremental(db, repo):
    data = seed(db)
    first = backup.backup(db, repo)
    change_everything(db, data, "a")
    second = backup.backup(db, repo)
    assert first["kind"] == "full" and second["kind"] == "incremental"
    assert second["parent"] == first["id"] and second["from"] == first["to"]
    assert second["documents"]["users"] == 2 and second["deleted"] == {"users": 1}
    assert backup.backup(db, repo, full=True)["kind"] == "full"
    assert [s["kind"] for s in backup.list_sets(repo)] == ["full", "incremental", "full"]


def test_manifest_records_counts_checksums_indexes_and_version(db, repo):
    seed(db)
    summary = backup.backup(db, repo)
    manifest = json.loads((repo / summary["id"] / "manifest.json").read_text())
    users = manifest["collections"]["users"]
    assert users["count"] == 3 and len(users["content_hash"]) == 64
    assert any(ix["name"] == "email_1" and ix.get("unique") for ix in users["indexes"]["declared"])
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert manifest["astro_db_version"] and manifest["kind"] == "full"


def test_full_plus_incrementals_restore_the_exact_source_state(db, repo):
    data = seed(db)
    backup.backup(db, repo)
    change_everything(db, data, "a")
    backup.backup(db, repo)
    change_everything(db, data, "b")
    backup.backup(db, repo)
    target = fresh_db()
    report = backup.restore(repo, target)
    assert state(target) == state(db)
    assert report["collections"]["users"] == db.count("User", {})
    assert "email_1" in report["indexes"]["users"]["created"]


def test_restore_until_an_instant_between_backups_gives_the_state_then(db, repo):
    data = seed(db)
    backup.backup(db, repo)
    change_everything(db, data, "before")
    instant = instant_after_last_write()
    expected = state(db)
    change_everything(db, data, "after")
    backup.backup(db, repo)
    target = fresh_db()
    report = backup.restore(repo, target, until=instant.isoformat())
    assert state(target) == expected
    assert report["journal_entries"] > 0


def test_restore_until_past_the_newest_set_needs_the_live_journal(db, repo):
    data = seed(db)
    backup.backup(db, repo)
    change_everything(db, data, "late")
    instant = instant_after_last_write()
    with pytest.raises(BackupError, match="after the newest set"):
        backup.restore(repo, fresh_db(), until=instant)
    target = fresh_db()
    backup.restore(repo, target, until=instant, journal_source=db)
    assert state(target) == state(db)


def test_restore_refuses_a_non_empty_target_unless_drop(db, repo):
    seed(db)
    backup.backup(db, repo)
    target = fresh_db()
    add_user(target, "Squatter")
    with pytest.raises(BackupError, match="non-empty"):
        backup.restore(repo, target)
    assert target.count("User", {}) == 1  # nothing written
    backup.restore(repo, target, drop=True)
    assert state(target) == state(db)


def test_restore_before_the_first_full_set_is_refused(db, repo):
    seed(db)
    backup.backup(db, repo)
    with pytest.raises(BackupError, match="no full backup set"):
        backup.restore(repo, fresh_db(), until="2000-01-01T00:00:00Z")


def test_bad_until_is_a_clear_error(db, repo):
    seed(db)
    backup.backup(db, repo)
    with pytest.raises(BackupError, match="ISO-8601"):
        backup.restore(repo, fresh_db(), until="yesterday")


def test_progress_callback_sees_every_document(db, repo):
    seed(db)
    seen: dict[str, int] = {}
    backup.backup(db, repo, progress=lambda label, n, total: seen.__setitem__(label, seen.get(label, 0) + n))
    assert seen["users"] == 3 and seen["planetaryInsights"] == 2


# --- verify ---------------------------------------------------------------------------------

@pytest.fixture
def two_sets(db, repo):
    data = seed(db)
    backup.backup(db, repo)
    change_everything(db, data, "a")
    backup.backup(db, repo)
    return repo


def data_file(repo: Path, kind: str = "full") -> Path:
    set_dir = next(p for p in sorted(repo.iterdir()) if p.name.endswith(kind))
    return set_dir / "users.bson.gz"


def test_verify_passes_an_intact_repository_shallow_and_deep(db, two_sets):
    assert len(backup.verify(two_sets)["sets"]) == 2
    assert backup.verify(two_sets, deep=True, url=db)["deep"] is True


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_verify_names_a_damaged_file(two_sets, damage):
    path = data_file(two_sets)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        path.unlink()
    with pytest.raises(BackupIntegrityError) as err:
        backup.verify(two_sets)
    assert err.value.path == str(path)
    assert str(path) in str(err.value)


def test_verify_catches_a_broken_chain(two_sets):
    full = next(p for p in two_sets.iterdir() if p.name.endswith("full"))
    for f in full.iterdir():
        f.unlink()
    full.rmdir()
    with pytest.raises(BackupIntegrityError, match="parent"):
        backup.verify(two_sets)


def test_deep_verify_catches_a_manifest_hash_that_does_not_match(db, two_sets):
    full = next(p for p in two_sets.iterdir() if p.name.endswith("full"))
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["collections"]["users"]["content_hash"] = "0" * 64
    (full / "manifest.json").write_text(json.dumps(manifest))
    backup.verify(two_sets)  # shallow checks do not hash content
    with pytest.raises(BackupIntegrityError) as err:
        backup.verify(two_sets, deep=True, url=db)
    assert err.value.path == str(full / "users.bson.gz")


def test_verify_of_a_missing_repository_is_a_backup_error(tmp_path):
    with pytest.raises(BackupError, match="no backup repository"):
        backup.verify(tmp_path / "nowhere")


# --- prune ----------------------------------------------------------------------------------

def fake_set(day: int, kind: str, parent: str | None = None, hour: int = 2) -> BackupSet:
    end = _dt.datetime(2025, 3, day, hour, tzinfo=_dt.timezone.utc)
    sid = f"{day:02d}{hour:02d}-{kind}"
    return BackupSet(Path(sid), {"id": sid, "kind": kind, "parent": parent, "window": {"from": None, "to": end.isoformat()}})


def test_prune_keeps_daily_and_weekly_fulls_with_their_incrementals():
    sets = []
    for day in range(1, 15):  # 2025-03-01 is a Saturday
        full = fake_set(day, "full")
        sets += [full, fake_set(day, "incremental", parent=full.id, hour=14)]
    kept, deleted = select_kept(sets, keep_daily=3, keep_weekly=2)
    kept_fulls = sorted(s.id for s in kept if s.kind == "full")
    assert kept_fulls == ["0902-full", "1202-full", "1302-full", "1402-full"]
    assert len(kept) == 8 and len(deleted) == 20


def test_prune_deletes_sets_and_old_journal_entries(db, repo):
    data = seed(db)
    backup.backup(db, repo)
    change_everything(db, data, "a")
    backup.backup(db, repo, full=True)
    report = backup.prune(repo, keep_daily=1, keep_weekly=0, source=db)
    assert len(report["deleted"]) == 1 and len(backup.list_sets(repo)) == 1
    assert report["journal_entries_deleted"] > 0


def test_prune_rejects_negative_counts(repo, db):
    backup.backup(db, repo)
    with pytest.raises(BackupError):
        backup.prune(repo, keep_daily=-1, keep_weekly=0)


# --- restore checks its input first ----------------------------------------------------------

def _regzip_with_one_document_changed(path: Path) -> None:
    """Rewrite a data file with one document altered: still valid gzip and valid BSON."""
    import gzip

    import bson

    from astro_db.backup.stream import iter_raw

    docs = [bson.decode(raw) for raw in iter_raw(path)]
    docs[0]["name"] = "Mallory"
    path.write_bytes(gzip.compress(b"".join(bson.encode(d) for d in docs)))


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_restore_refuses_a_tampered_valid_gzip_file_and_writes_nothing(two_sets, kind):
    path = data_file(two_sets, kind)
    _regzip_with_one_document_changed(path)
    target = fresh_db()
    add_user(target, "Existing")
    before = {name: target.mongo[name].count_documents({}) for name in target.mongo.list_collection_names()}
    with pytest.raises(BackupIntegrityError) as err:
        backup.restore(two_sets, target, drop=True)
    assert err.value.path == str(path)
    assert "checksum mismatch" in str(err.value)
    after = {name: target.mongo[name].count_documents({}) for name in target.mongo.list_collection_names()}
    assert after == before
    assert target.find("User", {"name": "Mallory"}) == []


def test_restore_refuses_a_file_whose_manifest_count_was_edited_to_match(two_sets):
    full = next(p for p in two_sets.iterdir() if p.name.endswith("full"))
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["files"]["users.bson.gz"]["documents"] += 1
    manifest["collections"]["users"]["count"] += 1
    (full / "manifest.json").write_text(json.dumps(manifest))
    target = fresh_db()
    with pytest.raises(BackupIntegrityError, match="holds 3 documents"):
        backup.restore(two_sets, target)
    assert all(target.mongo[name].count_documents({}) == 0 for name in target.mongo.list_collection_names())


def test_a_document_upsert_many_replaced_restores_exactly_from_its_record(db, repo):
    """``upsert_many`` replaces a changed document: the server stores the replacement as sent,
    field order included, and its change record holds that same document, so an incremental
    set restores it byte for byte (a ``$set`` kept the stored order and moved ``_rev`` last)."""
    owner = add_user(db).id
    backup.backup(db, repo)
    for level in (30, 70):
        db.upsert_many("PlanetaryInsight", [{"userId": owner, "date": "2026-12-01", "energyLevel": level,
                                             "recommendations": ["Plan"]}], on=("userId", "date"))
    backup.backup(db, repo)
    target = fresh_db()
    backup.restore(repo, target)
    assert state(target) == state(db)
