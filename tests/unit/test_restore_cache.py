"""A restore announces every model of its target as wholly changed (astro_db.backup.restore):
every query cache that can hear of it drops the model's entries, as after a write of the
service, and a read under way stores nothing; also when the restore fails midway. Before, a
cached answer outlived a ``restore(..., drop=True)`` into a live database."""

from __future__ import annotations

import pytest

from astro_db import Database, backup
from astro_db.errors import BackupError


@pytest.fixture
def db():
    with Database("mongomock://localhost/restore-cache", cache_models=("User",), ensure_indexes=False) as database:
        yield database


def _hits(db: Database) -> int:
    return int(db.executor.runtime.cache.stats()["hits"])


def test_a_restore_drops_what_the_cache_held_of_the_target(db, tmp_path):
    db.create("User", {"email": "a@example.com", "name": "A"})
    backup.backup(db, tmp_path, full=True)
    db.create("User", {"email": "b@example.com", "name": "B"})
    assert len(db.find("User", {})) == 2 and db.count("User", {}) == 2  # cached
    hits = _hits(db)
    assert len(db.find("User", {})) == 2 and _hits(db) == hits + 1
    backup.restore(tmp_path, db, drop=True)
    assert [u.email for u in db.find("User", {})] == ["a@example.com"] and db.count("User", {}) == 1
    assert _hits(db) == hits + 1  # both read from the server again


def test_a_restore_that_fails_midway_drops_them_too(db, tmp_path, monkeypatch):
    db.create("User", {"email": "a@example.com", "name": "A"})
    backup.backup(db, tmp_path, full=True)
    assert db.count("User", {}) == 1  # cached
    restore_run = backup.run_restore

    def failing(repo, gateway, plan, **options):
        gateway["users"].delete_many({})  # the restore's first writes landed, then it failed
        raise BackupError("the repository went away midway")

    monkeypatch.setattr(backup, "run_restore", failing)
    with pytest.raises(BackupError, match="midway"):
        backup.restore(tmp_path, db, drop=True)
    assert db.count("User", {}) == 0 == db.count("User", {}, cache=False)
    monkeypatch.setattr(backup, "run_restore", restore_run)
    backup.restore(tmp_path, db, drop=True)
    assert db.count("User", {}) == 1
