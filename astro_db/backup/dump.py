"""Taking backup sets: a full dump, or an incremental one built from the change journal.

Full: every backed-up collection is streamed as raw BSON into its data file (no per-document
decode), then the journal entries of the set's window are saved with it, so restoring the set
replays the writes that raced the dump and lands exactly on ``window.to``.
Incremental: the journal entries of ``(previous set's to, now]`` are saved, and from them each
touched document's last state: its post-image in ``<coll>.bson.gz``, or its id in
``<coll>.deleted.bson.gz`` when it was deleted. Append-only service collections (the change
records ``astroChanges``, the older ``auditLog``) contribute their entries newer than the window.
A document's last state is its record with the highest revision (``journal.entry_key``); a
document is its collection and its ``_id`` as the server tells ``_id`` values apart
(``query.order.identity``: ``true`` and ``1`` two documents, ``1`` and ``1.0`` one).
Every set, full or incremental, carries the service's ledgers whole (``LEDGER_COLLECTIONS``),
copied once its window is closed.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bson
from bson import ObjectId, json_util
from pymongo.errors import PyMongoError

from ..changes import CHANGES_COLLECTION
from ..changes.reader import WINDOW_MARGIN
from ..changes.records import to_ms
from ..errors import AstroDBError, BackupError, translate
from ..indexes import declared_indexes
from ..migrations import MIGRATIONS_COLLECTION, ledger_as_of
from ..personal import ERASURES_COLLECTION
from ..query.order import identity
from .journal import ensure_journal_index, entry_keys, journal_clock, read_window
from .repository import FORMAT, BackupSet, Repository, format_time
from .stream import RAW, BsonWriter, iter_raw

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB
    from ..registry import ModelInfo

__all__ = ["take_backup", "APPEND_ONLY_COLLECTIONS", "LEDGER_COLLECTIONS", "REBUILT_LEDGERS", "Progress", "Rebuild"]

log = logging.getLogger(__name__)
Progress = Callable[[str, int, "int | None"], None]
"""``progress(label, advance, total)``: ``advance`` more documents done of ``total`` (if known)."""

APPEND_ONLY_COLLECTIONS = (CHANGES_COLLECTION, "auditLog")
"""Service collections backed up besides the models': written only by appending, never through
the journaled write path. Fulls copy them whole; incrementals copy recent ObjectIds."""
LEDGER_COLLECTIONS = (ERASURES_COLLECTION, MIGRATIONS_COLLECTION)
"""Service collections every set (full and incremental) copies whole, even when empty, once its
window is closed: the erasure ledger (user ids, times, counts; no personal data), so a restore of
any later set knows who was erased (``astro_db.personal``); and the migration ledger (each
version's record and history, the lease), so a restore knows which migrations its documents
have been through (``astro_db.migrations``). ``verify`` checks their files like any other; a set
without them was taken by an earlier version."""
Rebuild = Callable[[list[list[dict[str, Any]]], _dt.datetime], list[dict[str, Any]]]
REBUILT_LEDGERS: dict[str, Rebuild] = {MIGRATIONS_COLLECTION: ledger_as_of}
"""The ledgers a restore does not load as saved: it writes them as they stood at the instant it
restores (``rebuild(copies, as_of)``, the copies it reads oldest first: the newest set of its
chain carrying one, the set whose journal it replays, the live source). The erasure ledger is
loaded and merged over every set instead (``restore``)."""

_BATCH = 1000
_APPEND_MARGIN = _dt.timedelta(minutes=5)  # ObjectIds carry whole seconds of a client's clock


def take_backup(database: MongoDB, models: Iterable[ModelInfo], repo: Repository, *, full: bool = False,
                progress: Progress | None = None) -> BackupSet:
    """Take the next set of ``database`` (a gateway whose calls run through the run step:
    ``Executor.gateway``) and the ``models``' collections: full when asked or when the
    repository has none yet, else incremental."""
    repo.ensure()
    sets = repo.sets()
    previous = sets[-1] if sets else None
    kind = "full" if full or previous is None else "incremental"
    ensure_journal_index(database)
    started = journal_clock.now()
    staging = repo.staging(f"{started.strftime('%Y%m%dT%H%M%S%f')}-{kind}")
    try:
        manifest = _Dump(database, models, staging, progress).run(kind, previous, started, sets)
        backup_set = repo.commit(staging, manifest)
    except AstroDBError:
        repo.discard(staging)
        raise
    except PyMongoError as exc:
        repo.discard(staging)
        raise translate(exc, operation=f"{kind} backup") from exc
    except OSError as exc:
        repo.discard(staging)
        raise BackupError(f"{kind} backup: cannot write to {repo.path}: {exc}") from exc
    log.info("backup set %s taken: %s", backup_set.id, backup_set.summary()["documents"])
    return backup_set


class _Dump:
    """The work of writing one set into a staging directory."""

    def __init__(self, database: MongoDB, models: Iterable[ModelInfo], staging: Path, progress: Progress | None) -> None:
        self.database = database
        self.staging = staging
        self.progress = progress or (lambda label, advance, total: None)
        self.models = {info.collection: info for info in models}
        self.files: dict[str, dict[str, Any]] = {}
        self.collections: dict[str, dict[str, Any]] = {}

    def run(self, kind: str, previous: BackupSet | None, started: _dt.datetime, sets: list[BackupSet]) -> dict[str, Any]:
        names = self._collection_names()
        if kind == "full":
            for name in names:
                if name not in LEDGER_COLLECTIONS:
                    self._dump_collection(name)
            end = _after(journal_clock.barrier(), previous)
            for name in LEDGER_COLLECTIONS:  # after the window closed: a ledger never lags its documents
                self._dump_collection(name)
            start = previous.end if previous is not None else started
            journal_count = self._save_journal(start, end, keep=None, seen=_saved_ids(sets, start))
        else:
            assert previous is not None
            end = _after(journal_clock.barrier(), previous)
            start = previous.end
            latest: dict[tuple[str, Any], Any] = {}
            journal_count = self._save_journal(start, end, keep=latest, seen=_saved_ids(sets, start))
            for name in sorted({coll for coll, _ in latest} | set(names)):
                recent = (self._recent(name, start - _APPEND_MARGIN)
                          if name in APPEND_ONLY_COLLECTIONS or name in LEDGER_COLLECTIONS else ())
                self._write_changes(name, [e for (coll, _), e in latest.items() if coll == name], recent)
        set_id = f"{format_time(end).replace(':', '').replace('-', '').replace('.', '')}-{kind}"
        return {
            "format": FORMAT,
            "id": set_id,
            "kind": kind,
            "parent": previous.id if (kind == "incremental" and previous is not None) else None,
            "previous": previous.id if previous is not None else None,
            "window": {"from": format_time(start), "to": format_time(end)},
            "started": format_time(started),
            "finished": format_time(_dt.datetime.now(_dt.timezone.utc)),
            "database": self.database.name,
            "astro_db_version": _version(),
            "collections": self.collections,
            "journal": {"file": "journal.bson.gz", "count": journal_count},
            "files": self.files,
        }

    # --- collections -------------------------------------------------------------------------

    def _collection_names(self) -> list[str]:
        present = set(self.database.list_collection_names())
        extras = [name for name in APPEND_ONLY_COLLECTIONS if name in present]
        return list(self.models) + extras + list(LEDGER_COLLECTIONS)  # the ledgers even when empty

    def _entry(self, name: str) -> dict[str, Any]:
        if name not in self.collections:
            info = self.models.get(name)
            self.collections[name] = {
                "model": info.name if info else None,
                "file": f"{name}.bson.gz",
                "count": 0,
                "content_hash": None,
                "indexes": {"declared": _declared(info), "server": self._server_indexes(name)},
            }
        return self.collections[name]

    def _writer(self, filename: str) -> BsonWriter:
        return BsonWriter(self.staging / filename)

    def _record(self, writer: BsonWriter) -> None:
        self.files[writer.path.name] = {"sha256": writer.sha256, "bytes": writer.size, "documents": writer.count}

    def _dump_collection(self, name: str) -> None:
        entry = self._entry(name)
        coll = self.database.get_collection(name, codec_options=RAW)
        total = coll.estimated_document_count()
        with self._writer(entry["file"]) as writer:
            self._copy(coll.find({}, batch_size=_BATCH), writer, name, total)
        self._record(writer)
        entry.update(count=writer.count, content_hash=writer.content.hexdigest())

    def _copy(self, docs: Iterable[Any], writer: BsonWriter, label: str, total: int | None) -> None:
        pending = 0
        for doc in docs:
            writer.write(doc)
            pending += 1
            if pending == _BATCH:
                self.progress(label, pending, total)
                pending = 0
        self.progress(label, pending, total)

    def _write_changes(self, name: str, last_entries: list[Any], recent: Iterable[Any] = ()) -> None:
        entry = self._entry(name)
        deleted_file = f"{name}.deleted.bson.gz"
        with self._writer(entry["file"]) as upserts, self._writer(deleted_file) as deletions:
            for item in last_entries:  # ``entry_key`` tuples, one per document (``_save_journal``)
                _, doc_id, rev, action, doc = item
                if action == "delete":
                    deletions.write({"_id": doc_id} if rev is None else {"_id": doc_id, "_rev": rev})
                elif doc is not None:
                    upserts.write(doc)
            self.progress(name, len(last_entries), None)
            self._copy(recent, upserts, name, None)
        self._record(upserts)
        self._record(deletions)
        entry.update(count=upserts.count, content_hash=upserts.content.hexdigest(), deleted_file=deleted_file, deleted=deletions.count)

    def _recent(self, name: str, since: _dt.datetime) -> Iterable[Any]:
        """Documents of an append-only collection whose ObjectId is newer than ``since``."""
        coll = self.database.get_collection(name, codec_options=RAW)
        if name in LEDGER_COLLECTIONS:  # small, and updated in place: whole
            whole: Iterable[Any] = coll.find({}, batch_size=_BATCH)
            return whole
        if name == CHANGES_COLLECTION:  # keyed by (document, revision): select on their time
            recent: Iterable[Any] = coll.find({"t": {"$gt": to_ms(since)}}, batch_size=_BATCH)
            return recent
        newer: Iterable[Any] = coll.find({"_id": {"$gte": ObjectId.from_datetime(since)}}, batch_size=_BATCH)
        return newer

    def _save_journal(self, start: _dt.datetime, end: _dt.datetime, keep: dict[tuple[str, Any], Any] | None, seen: set[Any]) -> int:
        """Save the records of the window (re-read a margin before ``start``, minus the records
        the previous set already saved: what is left of the margin arrived late)."""
        with self._writer("journal.bson.gz") as writer:
            for raw in read_window(self.database, start, end):
                if identity(raw["_id"]) in seen:
                    continue
                writer.write(raw)
                if keep is not None:
                    for entry in entry_keys(raw):  # a packed record holds many documents
                        coll, doc_id, rev, _, _ = entry
                        key = (coll, identity(doc_id))  # True and 1 are two documents, 1 and 1.0 one
                        kept_rev = keep[key][2] if key in keep else None
                        if rev is None or kept_rev is None or rev >= kept_rev:
                            keep[key] = entry  # the highest revision wins, whichever record came first
        self._record(writer)
        return writer.count

    def _server_indexes(self, name: str) -> list[dict[str, Any]]:
        try:
            listed = list(self.database[name].list_indexes())
        except (PyMongoError, AstroDBError):
            return []
        out = []
        for ix in listed:
            if ix.get("name") == "_id_":
                continue
            spec = {k: v for k, v in dict(ix).items() if k not in ("v", "ns")}
            spec["key"] = [[k, v] for k, v in dict(spec.get("key", {})).items()]
            out.append(json.loads(json_util.dumps(spec)))  # extended JSON: dates etc. survive
        return out


def _saved_ids(sets: list[BackupSet], start: _dt.datetime) -> set[Any]:
    """The ``_id`` of every journal record the sets ending inside the re-read margin saved (as
    ``query.order.identity`` keys)."""
    seen: set[Any] = set()
    for s in sets:
        if s.end > start - WINDOW_MARGIN:
            path = s.file(s.manifest["journal"]["file"])
            seen.update(identity(bson.decode(raw)["_id"]) for raw in iter_raw(path, shown=str(path)))
    return seen


def _declared(info: Any) -> list[dict[str, Any]]:
    if info is None:
        return []
    return [{**spec, "key": [list(pair) for pair in spec["key"]]} for spec in declared_indexes(info)]


def _after(now: _dt.datetime, previous: BackupSet | None) -> _dt.datetime:
    """``now``, or just after the previous set's end if the clock says otherwise."""
    if previous is not None and now <= previous.end:
        return previous.end + _dt.timedelta(milliseconds=1)
    return now


def _version() -> str:
    from .. import __version__

    return __version__
