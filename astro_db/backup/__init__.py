"""Backup and recovery: full and incremental sets, point-in-time restore, verification.

The Python face of ``astro-db backup / restore / verify``::

    from astro_db import backup
    backup.backup("mongodb://db/astro", "/var/backups/astro")              # full first, then incremental
    backup.restore("/var/backups/astro", "mongodb://db/astro_restored", until="2025-03-01T12:00:00Z")
    backup.verify("/var/backups/astro", deep=True, url="mongodb://db/astro")
    backup.list_sets("/var/backups/astro"); backup.prune("/var/backups/astro", keep_daily=7, keep_weekly=4)

A source or target is a ``Database``, a URL or a ``DatabaseConfig``; ``progress(label, advance,
total)`` is called as documents stream. Failures raise ``BackupError`` / ``BackupIntegrityError``.

``secret`` (every function; else the given ``Database``'s ``backup_secret``, else
``ASTRO_DB_BACKUP_SECRET``) signs the sets written and makes every read refuse a set that is not
signed under it (``repository``, "Authenticated sets"); ``sign`` signs the sets taken before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import BackupError
from ..personal import owner_paths
from .dump import APPEND_ONLY_COLLECTIONS, LEDGER_COLLECTIONS, Progress, take_backup
from .integrity import Problems, check_set_files
from .journal import JOURNAL_COLLECTION, prune_journal
from .repository import MAC_KEY, BackupSet, Repository, select_kept
from .restore import plan_restore, run_restore
from .stream import RAW, ContentHash
from .verify import run_verify

if TYPE_CHECKING:  # pragma: no cover
    from ..database import Database

__all__ = [
    "backup", "restore", "verify", "list_sets", "prune", "sign", "content_hashes",
    "Repository", "BackupSet", "JOURNAL_COLLECTION", "APPEND_ONLY_COLLECTIONS", "LEDGER_COLLECTIONS", "Progress",
]



@contextlib.contextmanager
def _connected(source: Any) -> Iterator[Any]:
    """A connected ``Database`` for a Database, URL or config; ones we open are closed after."""
    from ..database import Database

    if isinstance(source, Database):
        source.executor.authorize(source.actor, "backup")
        if not source.executor.runtime.connection.connected:
            source.connect()
        yield source
        return
    if source is None:
        raise BackupError("no database given: pass a URL (--url) or a Database")
    db = Database(source, ensure_indexes=False, journal=False)
    db.connect()
    try:
        yield db
    finally:
        db.disconnect()


def _repository(repo: str | os.PathLike[str], secret: str | None, source: Any = None) -> Repository:
    """``repo`` opened with the backup secret: ``secret``, else ``source``'s (a ``Database`` or
    ``DatabaseConfig``) ``backup_secret``, else ``ASTRO_DB_BACKUP_SECRET`` (a URL source's
    ``Database`` would read the same variable)."""
    from ..config import ENV_PREFIX, DatabaseConfig
    from ..database import Database

    if secret is None:
        config = source.config if isinstance(source, Database) else source if isinstance(source, DatabaseConfig) else None
        secret = config.backup_secret if config is not None else os.environ.get(ENV_PREFIX + "BACKUP_SECRET") or None
    if secret is not None:
        DatabaseConfig(backup_secret=secret)  # the same rule as the setting's (ConfigError, the value masked)
    return Repository(repo, secret)


def _decodes(db: Database) -> bool:
    """Whether ``db``'s backend cannot store raw BSON documents (the embedded one)."""
    return not db.executor.runtime.capabilities.raw_bson_inserts


def backup(source: Any, repo: str | os.PathLike[str], *, full: bool = False, progress: Progress | None = None,
           secret: str | None = None) -> dict[str, Any]:
    """Take a backup set of ``source`` into ``repo``: full the first time or with ``full=True``,
    else incremental (what changed since the previous set). Returns the set's summary."""
    with _connected(source) as db:
        return take_backup(db.executor.gateway("backup"), db.executor.runtime.registry, _repository(repo, secret, db),
                           full=full, progress=progress).summary()


def list_sets(repo: str | os.PathLike[str], *, secret: str | None = None) -> list[dict[str, Any]]:
    """Every set in ``repo``, oldest first: id, kind, parent, window, counts, bytes."""
    return [s.summary() for s in _repository(repo, secret).sets()]


def sign(repo: str | os.PathLike[str], *, secret: str | None = None) -> list[str]:
    """Sign the sets of ``repo`` that carry no MAC (taken before ``backup_secret`` was set);
    the ids signed. A MAC vouches for what it signs: each set is checked as ``verify`` checks it
    first (its files against its manifest), and a set already signed must match its MAC; else
    ``BackupIntegrityError`` and nothing is signed."""
    repository = _repository(repo, secret)
    if not repository.signed:
        raise BackupError("signing needs backup_secret: pass secret= or set ASTRO_DB_BACKUP_SECRET")
    problems = Problems()  # a set whose files do not match its manifest is never signed: nothing is
    unsigned = Repository(repository.path)
    for directory in repository.set_dirs():
        found = unsigned.load(directory)
        if MAC_KEY not in found.manifest:
            check_set_files(found, problems)
    problems.raise_if_any("backup sign refused, nothing signed")
    return repository.sign()


def prune(repo: str | os.PathLike[str], *, keep_daily: int | None = None, keep_weekly: int | None = None,
          source: Any = None, dry_run: bool = False, secret: str | None = None) -> dict[str, Any]:
    """Delete the sets a daily/weekly retention does not keep (with their incrementals); with
    ``source``, also delete its change-journal entries older than the oldest kept full set.
    Give ``keep_daily``, ``keep_weekly`` or both; the newest full set is always kept."""
    repository = _repository(repo, secret, source)
    kept, deleted = select_kept(repository.sets(), keep_daily, keep_weekly)
    journal_pruned = 0
    if not dry_run:
        for s in deleted:
            repository.delete(s)
        oldest_full = min((s.end for s in kept if s.kind == "full"), default=None)
        if source is not None and oldest_full is not None:
            with _connected(source) as db:
                journal_pruned = prune_journal(db.executor.gateway("backup prune"), oldest_full)
    return {"kept": [s.id for s in kept], "deleted": [s.id for s in deleted], "journal_entries_deleted": journal_pruned, "dry_run": dry_run}


def restore(repo: str | os.PathLike[str], target: Any, *, until: Any = None, set_id: str | None = None, drop: bool = False,
            journal_source: Any = None, progress: Progress | None = None, erasures_from: Any = None,
            secret: str | None = None) -> dict[str, Any]:
    """Rebuild ``target`` from ``repo``: the newest set (or ``set_id``) exactly, or with ``until``
    (a datetime or ISO-8601 string) the state at that instant. ``journal_source`` (the live
    source database) lets ``until`` go past the newest set. Refuses a non-empty target unless
    ``drop=True``. Returns counts per collection and what was applied.

    Users erased (``Database.erase_user``) stay erased: the erasure ledger of every set in
    ``repo``, of the target and of ``erasures_from`` (a Database or URL: the live database;
    ``journal_source`` when not given) is consulted, and none of their documents is restored.

    The migration ledger (``astroMigrations``) is written as it stood at the instant restored
    (``report["migrations"]``: version -> state), the lease left out, so ``migrate`` afterwards
    applies only what the restored documents have not been through (docs/backup.md)."""
    repository = _repository(repo, secret, target)
    plan = plan_restore(repository, until=until, set_id=set_id, live_journal=journal_source is not None)
    erasures_from = erasures_from if erasures_from is not None else journal_source
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(_connected(target))
        live = stack.enter_context(_connected(journal_source)) if journal_source is not None and plan.live_tail else None
        ledger = (live if live is not None and erasures_from is journal_source
                  else stack.enter_context(_connected(erasures_from)) if erasures_from is not None else None)
        try:
            return run_restore(repository, db.executor.gateway("restore", retry=False), plan, decode=_decodes(db),
                               owners=owner_paths(db.executor.runtime.registry), drop=drop,
                               live_journal=live.executor.gateway("restore journal") if live is not None else None,
                               progress=progress,
                               erasures_from=ledger.executor.gateway("restore erasures") if ledger is not None else None)
        finally:
            _announce_restored(db)


def _announce_restored(db: Database) -> None:
    """A restore rewrote every model collection of the target (or some of them, if it failed
    midway): each model is announced as wholly changed, as a write of the service announces
    what it changed, so every cache that can hear of it (this ``Database``'s, the others of the
    process on the same data, every process on its bus) drops the model's entries, and a read
    under way stores nothing."""
    cache = db.executor.runtime.cache
    for info in db.executor.runtime.registry:
        cache.invalidate(info.name)


def verify(repo: str | os.PathLike[str], *, deep: bool = False, url: Any = None, progress: Progress | None = None,
           secret: str | None = None) -> dict[str, Any]:
    """Check checksums, BSON parsing, counts and chaining, and with a backup secret every set's
    MAC; ``deep`` also loads every set into a scratch database on ``url``'s server and compares
    content hashes. Raises ``BackupIntegrityError`` (``.path`` = the bad file) on any mismatch."""
    repository = _repository(repo, secret, url).require()
    if not deep:
        return run_verify(repository, progress=progress)
    with _connected(url) as db:
        return run_verify(repository, deep=True, database=db.executor.gateway("deep verify", retry=False),
                          decode=_decodes(db), progress=progress)


def content_hashes(source: Any, collections: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{collection: {"count", "content_hash"}}``: order-independent hashes of each collection's
    documents (the model collections unless named), to prove two databases hold the same data."""
    with _connected(source) as db:
        names = collections or [info.collection for info in db.executor.runtime.registry]
        out = {}
        for name in names:
            h = ContentHash.of(db.executor.gateway("content hashes").get_collection(name, codec_options=RAW).find({}, batch_size=1000))
            out[name] = {"count": h.count, "content_hash": h.hexdigest()}
        return out
