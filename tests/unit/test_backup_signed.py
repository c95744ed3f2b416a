"""Authenticated backup sets: with ``backup_secret`` every set is signed when taken, and every
reader (verify, restore and the erasure ledgers it gathers, list, prune, the next incremental)
refuses a set that someone without the secret changed, renamed or added. The checksums alone
find damage, not a forger, who rewrites the manifest too: each attack below first passes the
checksums without a secret, then is refused with it."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
from pathlib import Path

import bson
import pytest
from backup_helpers import seed, state
from click.testing import CliRunner

from astro_db import Database, backup
from astro_db.backup.repository import MANIFEST, Repository
from astro_db.cli import cli
from astro_db.errors import BackupError, BackupIntegrityError, ConfigError

SECRET = "bk-7f3a9c2e5d1b8f40a6c3e9d2b7f1a5c8"  # 35 characters
OTHER = "bk-0000000000000000000000000000000000"
_dbs = iter(range(1_000_000))


def fresh(**options) -> Database:
    return Database(f"mongomock://localhost/backup_signed_{next(_dbs)}", **options).connect()


@pytest.fixture
def source():
    db = fresh()
    seed(db)
    yield db
    db.disconnect()


def only_set(repo: Path) -> Path:
    (directory,) = [p for p in repo.iterdir() if p.is_dir()]
    return directory


def manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text("utf-8"))


def write_manifest(directory: Path, data: dict) -> None:
    (directory / MANIFEST).write_text(json.dumps(data, indent=2), "utf-8")


def forge_file(directory: Path, name: str, docs: list[dict]) -> None:
    """Replace ``name`` with ``docs`` and make the manifest agree: the file's checksum, size
    and counts recomputed, as anyone who can write the repository can (its MAC left as it was)."""
    path = directory / name
    with gzip.open(path, "wb") as fh:
        for doc in docs:
            fh.write(bson.encode(doc))
    data = manifest(directory)
    data["files"][name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size,
                           "documents": len(docs)}
    for entry in data["collections"].values():
        if entry.get("file") == name:
            entry["count"] = len(docs)
    write_manifest(directory, data)


def read_file(directory: Path, name: str) -> list[dict]:
    with gzip.open(directory / name, "rb") as fh:
        return bson.decode_all(fh.read())


def target_is_empty(target: Database) -> bool:
    return all(target.mongo[c].count_documents({}) == 0 for c in ("users", "birthCharts", "planetaryInsights"))


def test_a_signed_set_carries_its_mac_verifies_and_restores_exactly(source, tmp_path):
    repo = tmp_path / "repo"
    backup.backup(source, repo, secret=SECRET)
    mac = manifest(only_set(repo))["mac"]
    assert mac.startswith("hmac-sha256:") and SECRET not in json.dumps(manifest(only_set(repo)))
    report = backup.verify(repo, secret=SECRET)
    assert report["signed"] and len(report["sets"]) == 1
    assert backup.verify(repo)["signed"] is False  # without the secret the MACs are not checked
    target = fresh()
    backup.restore(repo, target, secret=SECRET)
    assert state(target) == state(source)
    # the next set, incremental, is signed too and chains to the first
    source.update("User", {"email": source.find("User", {})[0].email}, {"name": "Annie"})
    assert backup.backup(source, repo, secret=SECRET)["kind"] == "incremental"
    assert backup.verify(repo, secret=SECRET)["signed"]


def test_a_forged_file_with_its_checksum_rewritten_passes_the_checksums_but_never_the_mac(source, tmp_path):
    repo = tmp_path / "repo"
    backup.backup(source, repo, secret=SECRET)
    directory = only_set(repo)
    users = read_file(directory, "users.bson.gz")
    users[0]["name"] = "Mallory"
    users[0]["role"] = "admin"
    forge_file(directory, "users.bson.gz", users)
    assert backup.verify(repo)["sets"]  # the checksums agree: without a secret the forgery passes
    with pytest.raises(BackupIntegrityError, match="MAC does not match") as refused:
        backup.verify(repo, secret=SECRET)
    assert refused.value.path == str(directory / MANIFEST)
    target = fresh()
    with pytest.raises(BackupIntegrityError, match="MAC does not match"):
        backup.restore(repo, target, secret=SECRET)
    assert target_is_empty(target)  # refused before anything was written
    # re-signing under a secret of the forger's own does not help
    data = manifest(directory)
    data["mac"] = "hmac-sha256:" + hashlib.sha256(b"guess").hexdigest()
    write_manifest(directory, data)
    with pytest.raises(BackupIntegrityError):
        backup.verify(repo, secret=SECRET)


def test_a_set_added_by_someone_without_the_secret_is_refused_by_every_reader(source, tmp_path):
    """The forged set is newer and its erasure ledger names every user: without a secret a
    restore takes it and keeps every user out; with the secret every reader refuses it."""
    repo = tmp_path / "repo"
    backup.backup(source, repo, secret=SECRET)
    real = only_set(repo)
    forged = repo / "29991231T000000000Z-full"
    shutil.copytree(real, forged)
    data = manifest(forged)
    data.pop("mac")
    data["id"] = forged.name
    data["window"]["to"] = "2999-12-31T00:00:00.000Z"
    write_manifest(forged, data)
    users = read_file(forged, "users.bson.gz")
    forge_file(forged, "astroErasures.bson.gz", [{"_id": u["_id"], "state": "done"} for u in users])
    unsigned_target = fresh()
    report = backup.restore(repo, unsigned_target)
    assert report["erased_users"] == len(users) and unsigned_target.mongo.users.count_documents({}) == 0
    target = fresh()
    with pytest.raises(BackupIntegrityError, match="not signed"):
        backup.restore(repo, target, secret=SECRET)
    with pytest.raises(BackupIntegrityError, match="not signed"):
        backup.restore(repo, target, set_id=real.name, secret=SECRET)  # its ledger would still be read
    assert target_is_empty(target)
    for refused in (lambda: backup.verify(repo, secret=SECRET), lambda: backup.list_sets(repo, secret=SECRET),
                    lambda: backup.prune(repo, keep_daily=1, secret=SECRET),
                    lambda: backup.backup(source, repo, secret=SECRET)):  # the next incremental's parent
        with pytest.raises(BackupIntegrityError, match="not signed"):
            refused()
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted([real.name, forged.name])


def test_a_signed_set_copied_under_another_name_is_refused(source, tmp_path):
    repo = tmp_path / "repo"
    backup.backup(source, repo, secret=SECRET)
    real = only_set(repo)
    shutil.copytree(real, repo / "29991231T000000000Z-full")
    with pytest.raises(BackupIntegrityError, match="lies in '29991231T000000000Z-full'"):
        backup.verify(repo, secret=SECRET)


def test_sets_taken_before_the_secret_are_refused_until_signed_and_signing_keeps_a_bad_mac_out(source, tmp_path):
    repo = tmp_path / "repo"
    backup.backup(source, repo)
    assert "mac" not in manifest(only_set(repo))
    with pytest.raises(BackupIntegrityError, match="not signed"):
        backup.verify(repo, secret=SECRET)
    with pytest.raises(BackupError, match="needs backup_secret"):
        backup.sign(repo)
    assert backup.sign(repo, secret=SECRET) == [only_set(repo).name]
    assert backup.verify(repo, secret=SECRET)["signed"]
    assert backup.sign(repo, secret=SECRET) == []  # signed once
    before = (only_set(repo) / MANIFEST).read_bytes()
    with pytest.raises(BackupIntegrityError, match="MAC does not match"):
        backup.sign(repo, secret=OTHER)  # a set signed under another secret is never re-signed
    assert (only_set(repo) / MANIFEST).read_bytes() == before


def test_the_secret_comes_from_the_database_or_the_environment_and_is_never_shown(source, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="astro_db")
    repo = tmp_path / "repo"
    keyed = fresh(backup_secret=SECRET)
    seed(keyed)
    backup.backup(keyed, repo)  # the Database's backup_secret
    assert manifest(only_set(repo))["mac"].startswith("hmac-sha256:")
    with pytest.raises(BackupIntegrityError):
        backup.verify(repo, secret=OTHER)
    monkeypatch.setenv("ASTRO_DB_BACKUP_SECRET", SECRET)
    assert backup.verify(repo)["signed"]  # ASTRO_DB_BACKUP_SECRET
    monkeypatch.setenv("ASTRO_DB_BACKUP_SECRET", OTHER)
    with pytest.raises(BackupIntegrityError) as wrong:
        backup.restore(repo, fresh())
    with pytest.raises(ConfigError, match="at least 32 characters") as short:
        backup.verify(repo, secret="short-secret")
    shown = [repr(Repository(repo, SECRET)), repr(keyed.config), str(wrong.value), str(short.value),
             *(r.getMessage() for r in caplog.records)]
    assert not any(s in text for text in shown for s in (SECRET, OTHER, "short-secret"))


def test_the_commands_read_the_secret_from_the_environment_and_sign_on_request(source, tmp_path, monkeypatch):
    url = "mongomock://localhost/backup_signed_cli"
    repo = str(tmp_path / "repo")
    run = CliRunner().invoke
    assert run(cli, ["--url", url, "backup", "--repo", repo]).exit_code == 0  # unsigned
    monkeypatch.setenv("ASTRO_DB_BACKUP_SECRET", SECRET)
    refused = run(cli, ["verify", "--repo", repo])
    assert refused.exit_code == 2 and "not signed" in refused.output
    signed = run(cli, ["backup", "sign", "--repo", repo])
    assert signed.exit_code == 0 and "signed 1 set(s)" in signed.output
    ok = run(cli, ["verify", "--repo", repo])
    assert ok.exit_code == 0 and "signature checked" in ok.output
    assert run(cli, ["--url", url, "backup", "--repo", repo]).exit_code == 0  # the incremental, signed
    assert all("mac" in manifest(d) for d in Path(repo).iterdir() if d.is_dir())


def test_a_set_whose_files_do_not_match_its_manifest_is_never_signed(source, tmp_path):
    repo = tmp_path / "repo"
    backup.backup(source, repo)
    backup.backup(source, repo, full=True)
    first, second = sorted(p for p in repo.iterdir() if p.is_dir())
    (second / "users.bson.gz").write_bytes(b"not what the manifest says")
    with pytest.raises(BackupIntegrityError, match="nothing signed") as refused:
        backup.sign(repo, secret=SECRET)
    assert refused.value.path == str(second / "users.bson.gz")
    assert all("mac" not in manifest(d) for d in (first, second))
