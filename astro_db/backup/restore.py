"""Restoring: a set exactly, or the state at any instant the repository's journals cover.

The plan for ``--until T``: the last full set ending at or before ``T``; each set after it in
the chain that ends at or before ``T`` (incrementals: upserts and deletions); then the journal
entries of the next set (or, past the newest set, of a live journal) with ``t <= T``: per
document the one with the highest revision, applied only over an older revision. Without
``--until`` the newest set, or the named one, is restored exactly. Data is loaded in batches of
raw BSON (no per-document decode), the declared indexes are created after the load, and the
target must be empty unless ``drop=True``. Nothing is written until every file of the plan has
passed the integrity checks ``verify`` runs (checksums, BSON, counts).

**Erased users stay erased.** Before loading, the restore gathers the erasure ledger
(``astroErasures``, ``astro_db.personal``) of every set in the repository (not only the ones it
restores), of the target, and of ``erasures_from`` (the live database, when given): no document
of an erased user is loaded from a set or replayed from a journal, and their change records are
loaded scrubbed (no post-image). The ledger itself is written into the target.

**Migrations stay applied once.** The migration ledger (``astroMigrations``) is not loaded as a
set saved it: the restore writes it as it stood at the instant restored (``as_of``: the set's
end, or ``until``), from the newest copies it reads: the newest set of its chain carrying one,
the set whose journal it replays, the live source past the newest set
(``migrations.ledger_as_of``). A migration finished at or before that instant is applied there,
one under way then is ``running`` (``up`` resumes it), the lease is left out. A plan whose sets
(and source) carry no ledger, sets taken by an earlier version, leaves the target's as it is.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import bson
from bson import json_util
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, IndexModel, ReplaceOne
from pymongo.errors import PyMongoError

from ..changes import CHANGES_COLLECTION
from ..changes.records import is_packed, restricted
from ..errors import AstroDBError, BackupError, translate
from ..migrations import MIGRATIONS_COLLECTION
from ..personal import ERASURES_COLLECTION, LEGACY_JOURNAL_COLLECTION, belongs_to, scrub_record
from ..query.order import identity
from .dump import REBUILT_LEDGERS
from .integrity import require_intact
from .journal import entry_keys, read_window, to_ms
from .repository import BackupSet, Repository, format_time, parse_time
from .stream import RAW, iter_raw

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB

__all__ = ["RestorePlan", "plan_restore", "run_restore", "load_file", "Loader"]

log = logging.getLogger(__name__)
_BATCH_DOCS = 1000
_BATCH_BYTES = 8 * 1024 * 1024


@dataclass
class RestorePlan:
    """What a restore applies, in order."""

    sets: list[BackupSet]  # a full set, then the incrementals after it
    tail: BackupSet | None = None  # the set whose journal is replayed up to ``until``
    until: _dt.datetime | None = None
    live_tail: bool = False  # replay the source's live journal past the newest set
    collections: list[str] = field(default_factory=list)

    @property
    def as_of(self) -> _dt.datetime:
        return self.until if self.until is not None else self.sets[-1].end


def plan_restore(repo: Repository, *, until: Any = None, set_id: str | None = None, live_journal: bool = False) -> RestorePlan:
    """Which sets (and which journal) rebuild the state at ``until``, or of set ``set_id``."""
    sets = repo.sets()
    if not sets:
        raise BackupError(f"the backup repository {repo.path} holds no backup sets")
    when = parse_time(until) if until is not None else None
    if set_id is not None:
        target = repo.get(set_id)
        candidates = [s for s in sets if s.end <= target.end]
    elif when is not None:
        candidates = [s for s in sets if s.end <= when]
    else:
        candidates = sets
    fulls = [s for s in candidates if s.kind == "full"]
    if not fulls:
        first = min((s for s in sets if s.kind == "full"), key=lambda s: s.end, default=None)
        shown = format_time(first.end) if first else "never"
        raise BackupError(f"no full backup set ends at or before {format_time(when) if when else set_id}; the first full ends {shown}")
    chain = [fulls[-1]]
    for s in sets:
        if s.end > chain[-1].end and s.kind == "incremental" and s.parent == chain[-1].id and s in candidates:
            chain.append(s)
    if set_id is not None and chain[-1].id != set_id:
        raise BackupError(f"set {set_id} does not chain back to a full set; run verify")
    plan = RestorePlan(chain, until=when)
    if when is not None and when > chain[-1].end:
        following = [s for s in sets if s.start is not None and s.start == chain[-1].end]
        if following:
            plan.tail = following[0]
        elif live_journal:
            plan.live_tail = True
        else:
            raise BackupError(
                f"{format_time(when)} is after the newest set this chain reaches ({chain[-1].id}, ending "
                f"{format_time(chain[-1].end)}); pass a source database whose change journal covers it, "
                "take a backup first, or restore without --until"
            )
    names: dict[str, None] = {}
    for s in chain + ([plan.tail] if plan.tail else []):
        names.update(dict.fromkeys(s.manifest["collections"]))
    plan.collections = list(names)
    return plan


class Loader:
    """Writes raw documents and journal entries into one target database, in batches."""

    def __init__(self, database: MongoDB, embedded: bool, progress: Callable[[str, int, int | None], None] | None = None,
                 *, erased: Iterable[Any] = (), owners: dict[str, str] | None = None) -> None:
        self.database = database
        self.embedded = embedded
        self.progress = progress or (lambda label, advance, total: None)
        # users erased (the ledger): none of their documents is loaded, their records are scrubbed
        self.erased = Ids(erased)
        self.owners = dict(owners or {})  # collection -> the stored field naming a document's user
        self.skipped: dict[str, int] = {}
        # (collection, identity(_id)) -> revision it was deleted at, over the whole restore: a
        # record that reached a later set late (or with a skewed clock) never brings a deleted
        # document back
        self.tombstones: dict[tuple[str, Any], int] = {}

    def _doc(self, raw: bytes | memoryview[int]) -> Any:
        # mongomock-ng cannot store RawBSONDocument; a real server takes the bytes as they are
        return bson.decode(raw, RAW.with_options(document_class=dict)) if self.embedded else RawBSONDocument(raw, RAW)

    def _admit(self, collection: str, doc: Any) -> Any:
        """``doc`` as it may be loaded, or ``None``: an erased user's document is skipped, a change
        record of one is scrubbed (``personal.scrub_record``)."""
        if not self.erased:
            return doc
        owner = self.owners.get(collection)
        if owner is not None:
            if belongs_to(doc, owner, self.erased):
                self.skipped[collection] = self.skipped.get(collection, 0) + 1
                return None
            return doc
        if collection not in (CHANGES_COLLECTION, LEGACY_JOURNAL_COLLECTION):
            return doc
        if is_packed(doc):  # a create_many's records: its erased users' images cut out
            owner = self.owners.get(doc.get("coll"))
            if owner is None or "docs" not in doc:
                return doc
            cut = restricted(doc, image=lambda image: not belongs_to(image, owner, self.erased))
            if cut is None or bytes(cut["docs"]) == bytes(doc["docs"]):
                return doc
            cut["erased"] = True
            return cut
        if self._erased_image(doc.get("coll"), doc.get("doc")):
            return scrub_record(dict(doc.items()))
        return doc

    def _erased_image(self, collection: Any, image: Any) -> bool:
        owner = self.owners.get(collection) if isinstance(collection, str) else None
        return owner is not None and image is not None and belongs_to(image, owner, self.erased)

    def insert(self, collection: str, raws: Iterable[bytes], total: int | None = None) -> int:
        coll = self.database[collection]

        def write(batch: list[bytes]) -> None:
            docs = [d for d in (self._admit(collection, self._doc(r)) for r in batch) if d is not None]
            if docs:
                coll.insert_many(docs, ordered=False)

        return self._batched(raws, write, collection, total)

    def upsert(self, collection: str, raws: Iterable[bytes]) -> int:
        coll = self.database[collection]

        def write(batch: list[bytes]) -> None:
            docs = [d for d in (self._admit(collection, self._doc(r)) for r in batch)
                    if d is not None and not self._buried(collection, d["_id"], d.get("_rev"))]
            if docs:
                _bulk(coll, [ReplaceOne(_at_most(d["_id"], d.get("_rev")), d, upsert=True) for d in docs])

        return self._batched(raws, write, collection, None)

    def delete(self, collection: str, raws: Iterable[bytes]) -> int:
        coll = self.database[collection]

        def ops(batch: list[bytes]) -> list[Any]:
            docs = list(map(bson.decode, batch))
            for d in docs:
                self._bury(collection, d["_id"], d.get("_rev"))
            return [DeleteOne(_at_most(d["_id"], d.get("_rev"))) for d in docs]

        return self._batched(raws, lambda batch: _bulk(coll, ops(batch)), collection, None)

    def replay(self, entries: Iterable[Any], until: _dt.datetime | None) -> int:
        """Apply journal entries with ``t <= until``: per document the highest revision (entries
        without one, of the older journal format, in file order); how many entries were read."""
        read = 0
        limit = None if until is None else to_ms(until)
        latest: dict[tuple[str, Any], tuple[tuple[int, int], Any]] = {}
        for raw in entries:
            entry = RawBSONDocument(raw, RAW) if isinstance(raw, (bytes, bytearray)) else raw  # type: ignore[arg-type]  # pymongo's annotation omits bytearray, which it reads
            if limit is not None and entry["t"] > limit:
                continue
            read += 1
            for key in entry_keys(entry):  # a packed record: each of its documents
                coll, doc_id, rev, _, _ = key
                rank = (rev if rev is not None else -1, read)
                slot = (coll, identity(doc_id))
                if slot not in latest or rank > latest[slot][0]:
                    latest[slot] = (rank, key)
        pending: dict[str, list[Any]] = {}
        for n, (_, (coll, doc_id, rev, action, doc)) in enumerate(latest.values(), 1):
            if action == "delete":
                self._bury(coll, doc_id, rev)
                op: Any = DeleteOne(_at_most(doc_id, rev))
            elif self._buried(coll, doc_id, rev) or (self.erased and self._erased_image(coll, doc)):
                continue
            else:
                doc = self._doc(doc.raw) if isinstance(doc, RawBSONDocument) else doc
                op = ReplaceOne(_at_most(doc_id, rev), doc, upsert=True)
            pending.setdefault(coll, []).append(op)
            if n % _BATCH_DOCS == 0:
                self._flush(pending)
        self._flush(pending)
        return read

    def _bury(self, collection: str, doc_id: Any, rev: int | None) -> None:
        if rev is not None:
            slot = (collection, identity(doc_id))
            self.tombstones[slot] = max(rev, self.tombstones.get(slot, rev))

    def _buried(self, collection: str, doc_id: Any, rev: int | None) -> bool:
        dead = self.tombstones.get((collection, identity(doc_id)))
        return dead is not None and (rev is None or rev < dead)

    def _flush(self, pending: dict[str, list[Any]]) -> None:
        # one operation per document, so order does not matter
        for coll, ops in pending.items():
            if ops:
                _bulk(self.database[coll], ops)
                self.progress("journal", len(ops), None)
        pending.clear()

    def _batched(self, raws: Iterable[bytes], write: Callable[[list[bytes]], Any], label: str, total: int | None) -> int:
        batch: list[bytes] = []
        size = done = 0
        for raw in raws:
            batch.append(raw)
            size += len(raw)
            if len(batch) >= _BATCH_DOCS or size >= _BATCH_BYTES:
                write(batch)
                done += len(batch)
                self.progress(label, len(batch), total)
                batch, size = [], 0
        if batch:
            write(batch)
            done += len(batch)
            self.progress(label, len(batch), total)
        return done


def _at_most(doc_id: Any, rev: Any) -> dict[str, Any]:
    """The filter of a document stored at revision ``rev`` or older (or with none)."""
    if rev is None:
        return {"_id": doc_id}
    # as $and: nx-27017 ignores a top-level _id beside $or (and has no $not)
    return {"$and": [{"_id": doc_id}, {"$or": [{"_rev": {"$lte": rev}}, {"_rev": {"$exists": False}}]}]}


def _bulk(coll: Any, ops: list[Any]) -> None:
    """Unordered; an upsert that meets a newer revision of its document (duplicate ``_id``:
    the filter did not match a newer document) leaves that newer one in place."""
    try:
        coll.bulk_write(ops, ordered=False)
    except (PyMongoError, AstroDBError) as exc:  # the run step's error carries the driver's as its cause
        errors = getattr(exc if isinstance(exc, PyMongoError) else exc.__cause__, "details", None) or {}
        if not errors.get("writeErrors") or any(e.get("code") != 11000 for e in errors["writeErrors"]):
            raise


class Ids:
    """A set of ``_id`` values as the server tells them apart (``query.order.identity``): ``1 in
    Ids([1.0])``, but not ``True in Ids([1])``."""

    __slots__ = ("_keys",)

    def __init__(self, values: Iterable[Any] = ()) -> None:
        self._keys = frozenset(map(identity, values))

    def __contains__(self, value: Any) -> bool:
        return identity(value) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)


def load_file(backup_set: BackupSet, relative: str) -> Iterator[bytes]:
    return iter_raw(backup_set.file(relative), shown=str(backup_set.file(relative)))


def run_restore(repo: Repository, database: MongoDB, plan: RestorePlan, *, decode: bool, owners: Any, drop: bool = False,
                live_journal: MongoDB | None = None, progress: Callable[[str, int, int | None], None] | None = None,
                erasures_from: MongoDB | None = None) -> dict[str, Any]:
    """Carry out ``plan`` into ``database`` (a gateway whose calls run through the run step:
    ``Executor.gateway``); ``decode``: the target cannot store raw BSON (the embedded backend);
    ``owners``: the models' owner paths (``personal.owner_paths``); ``live_journal``: the source
    whose change records cover ``until`` past the newest set; ``erasures_from``: a database
    whose erasure ledger is consulted too. A report of what was restored.

    Every file of the plan is checked against its manifest first (the checks of ``verify``): a
    changed file raises ``BackupIntegrityError`` naming it before anything is dropped or written.
    """
    require_intact(plan.sets + ([plan.tail] if plan.tail else []), "restore refused, the backup failed verification")
    try:
        ledger = _ledger(repo, database, erasures_from)
        copies = _ledger_copies(plan, live_journal)
        plan.collections += [name for name in copies if name not in plan.collections]
        _prepare_target(database, plan.collections, drop)
        loader = Loader(database, decode, progress, erased=[entry["_id"] for entry in ledger.values()], owners=owners)
        replayed = _apply(loader, plan, live_journal)
        for entry in ledger.values():  # the target knows whom it must never bring back
            database[ERASURES_COLLECTION].replace_one({"_id": entry["_id"]}, entry, upsert=True)
        rebuilt = {name: REBUILT_LEDGERS[name](found, plan.as_of) for name, found in copies.items()}
        for name, docs in rebuilt.items():  # as they stood at as_of (the collection was emptied above)
            if docs:
                database[name].insert_many(docs)
        indexes = {name: _create_indexes(database, name, _index_specs(plan, name)) for name in plan.collections}
        counts = {name: database[name].count_documents({}) for name in plan.collections}
    except AstroDBError:
        raise
    except PyMongoError as exc:
        raise translate(exc, operation="restore") from exc
    report = {
        "target": database.name, "as_of": format_time(plan.as_of), "sets": [s.id for s in plan.sets],
        "journal_from": plan.tail.id if plan.tail else ("live journal" if plan.live_tail else None),
        "journal_entries": replayed, "collections": counts, "indexes": indexes,
        "erased_users": len(ledger), "skipped": dict(loader.skipped),
        "migrations": ({f"{d['version']:04d}": d["status"] for d in rebuilt[MIGRATIONS_COLLECTION]
                        if isinstance(d.get("version"), int)} if MIGRATIONS_COLLECTION in rebuilt else None),
    }
    log.info("restored %s into %s as of %s: %s", report["sets"], database.name, report["as_of"], counts)
    return report


def _ledger(repo: Repository, target: MongoDB, source: MongoDB | None) -> dict[Any, dict[str, Any]]:
    """The erasure ledger (``astroErasures``) of every set in ``repo``, of the target and of
    ``source`` (a gateway, when given), by user id (its ``query.order.identity``: users ``true``
    and ``1`` are two entries)."""
    entries: dict[Any, dict[str, Any]] = {}
    for s in repo.sets():
        entry = s.manifest["collections"].get(ERASURES_COLLECTION)
        if entry is not None:
            for raw in load_file(s, entry["file"]):
                doc = bson.decode(raw)
                entries[identity(doc["_id"])] = doc
    for database in (target, source):
        if database is not None:
            entries.update({identity(doc["_id"]): doc for doc in database[ERASURES_COLLECTION].find({})})
    return entries


def _ledger_copies(plan: RestorePlan, live_journal: MongoDB | None) -> dict[str, list[list[dict[str, Any]]]]:
    """Per ledger a restore rebuilds (``REBUILT_LEDGERS``), the copies it reads, oldest first: the
    newest set of the chain carrying it, the set whose journal is replayed, the live source;
    ledgers none of them carries are left out (sets of an earlier version)."""
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for name in REBUILT_LEDGERS:
        found: list[list[dict[str, Any]]] = []
        newest = next((s for s in reversed(plan.sets) if name in s.manifest["collections"]), None)
        for s in (newest, plan.tail):
            if s is not None and name in s.manifest["collections"]:
                found.append([bson.decode(raw) for raw in load_file(s, s.manifest["collections"][name]["file"])])
        if plan.live_tail and live_journal is not None:
            found.append(list(live_journal[name].find({})))
        if found:
            out[name] = found
    return out


def _prepare_target(database: MongoDB, collections: list[str], drop: bool) -> None:
    busy = {name: n for name in collections if (n := database[name].estimated_document_count())}
    if busy and not drop:
        shown = ", ".join(f"{name} ({n} documents)" for name, n in busy.items())
        raise BackupError(
            f"refusing to restore into the non-empty database {database.name!r}: {shown}; "
            "pass --drop (drop=True) to replace these collections"
        )
    for name in collections:
        database.drop_collection(name)


def _apply(loader: Loader, plan: RestorePlan, live_journal: MongoDB | None) -> int:
    base, *incrementals = plan.sets
    for name, entry in base.manifest["collections"].items():
        if name not in REBUILT_LEDGERS:  # written as of the instant restored, after the load
            loader.insert(name, load_file(base, entry["file"]), entry["count"])
    replayed = loader.replay(load_file(base, base.manifest["journal"]["file"]), None)
    for s in incrementals:
        for name, entry in s.manifest["collections"].items():
            if name in REBUILT_LEDGERS:
                continue
            loader.upsert(name, load_file(s, entry["file"]))
            if entry.get("deleted_file"):
                loader.delete(name, load_file(s, entry["deleted_file"]))
    if plan.tail is not None:
        replayed += loader.replay(load_file(plan.tail, plan.tail.manifest["journal"]["file"]), plan.until)
    elif plan.live_tail:
        assert plan.until is not None and live_journal is not None
        replayed += loader.replay(read_window(live_journal, plan.sets[-1].end, plan.until), plan.until)
    return replayed


def _index_specs(plan: RestorePlan, name: str) -> dict[str, Any]:
    for s in reversed(plan.sets):
        if name in s.manifest["collections"]:
            specs: dict[str, Any] = s.manifest["collections"][name]["indexes"]
            return specs
    return {"declared": [], "server": []}


def _create_indexes(database: MongoDB, name: str, specs: dict[str, Any]) -> dict[str, Any]:
    """The declared indexes (model collections), else the ones the server listed at backup."""
    wanted = specs.get("declared") or [json_util.loads(json.dumps(s)) for s in specs.get("server", [])]
    created, failed = [], {}
    for spec in wanted:
        options = {k: v for k, v in spec.items() if k not in ("key",)}
        try:
            database[name].create_indexes([IndexModel([tuple(pair) for pair in spec["key"]], **options)])
            created.append(spec.get("name"))
        except (PyMongoError, AstroDBError) as exc:
            failed[spec.get("name", "?")] = str(exc).split(", full error")[0][:200]
            log.warning("restore: index %s on %s not created: %s", spec.get("name"), name, failed[spec.get("name", "?")])
    return {"created": created, "failed": failed}
