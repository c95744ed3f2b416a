"""Versioned migrations: an app's Python files, applied in order, once, in batches, resumably.

A migration is a file ``NNNN_name.py`` in the app's migrations directory (``--dir`` or
``ASTRO_DB_MIGRATIONS``) defining ``version`` (an int), ``description``, ``up(ctx)`` and
optionally ``down(ctx)``. ``Migrator(db, directory)`` applies them (``up``), reverts them
(``down``) and reports where the database stands (``status``); ``astro-db migrate`` is a shell
over it.

What it guarantees (docs/migrations.md):

- each applied migration is recorded in ``astroMigrations`` (version, description, the file's
  sha256, who ran it: actor, host, pid; started/finished times, status); a file changed after
  it was applied is refused (``MigrationError``) before anything runs;
- one process at a time: ``up`` and ``down`` hold a **lease** document (owner, token, expiry)
  taken by compare-and-set on the server, renewed after every batch and taken over only once
  expired; a second process gets ``MigrationLockedError`` and runs nothing;
- ``ctx.migrate`` works in batches in ``_id`` order, never one transaction over a collection; the
  position after each batch is stored in the migration's record, so a run killed at any point
  continues from it; each document is changed by a conditional update whose filter matches only
  documents not yet migrated, so re-running a batch changes nothing twice, and a final pass
  from the start catches documents written behind the position meanwhile;
- what a migration changes gets change records (actor ``astro-db:migrate:<version>``) through
  ``Executor.after_write``, the same step and records every write gets, so backups and point-in-time restore
  see it; a batch killed between its update and its records is recorded on resume (its
  documents carry the batch's op id, stored with the position before the batch runs);
- a value written into a sensitive field is sealed as the service seals it (``FieldCrypto.seal_update``,
  bound to each document); an operator that would put one there in clear (``$rename`` onto it,
  ``$min``...) is a ``MigrationError`` (``MigrationContext._sealed``);
- ``dry_run=True`` counts what would change and writes nothing (no lease, no record);
- each record keeps its ``history``: every transition (``running``, ``applied``, ``reverted``,
  ``failed``) with its time, direction and checksum; a finish is stamped no earlier than the
  newest ``updatedAt`` (the server's clock) of the documents its run recorded, so
  ``ledger_as_of`` (what a restore writes, docs/backup.md) never counts a migration finished
  at an instant some of its change records come after.

Every driver call goes through ``Executor.call`` (the run step). Progress is logged at INFO
every ``log_every`` batches under ``astro_db.migrations`` and passed to ``progress`` (the CLI
draws a line on stderr when it is a terminal).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import importlib.util
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pymongo import ReturnDocument, UpdateOne
from pymongo import errors as pm

from .changes import OP_FIELD, advance, new_op_id, revision_of
from .errors import ConfigError, MigrationError, MigrationLockedError
from .events import Change, Written
from .query.order import FROM_START, ids_after
from .security.fieldpaths import norm_path

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .ops import Executor
    from .registry import ModelInfo

__all__ = [
    "Migrator", "MigrationContext", "MigrationFile", "load_migrations", "MIGRATIONS_COLLECTION",
    "MIGRATIONS_ENV", "LEASE_ID", "migration_actor", "ledger_as_of",
]

log = logging.getLogger(__name__)

MIGRATIONS_COLLECTION = "astroMigrations"
MIGRATIONS_ENV = "ASTRO_DB_MIGRATIONS"
LEASE_ID = "lease"
_FILE = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.py$")
Hook = Callable[..., None]
"""``hook(event, **details)``: called at the named points of a run (tests drive races and
crashes with it): ``lease-read``, ``batch-start``, ``batch-updated``, ``batch-recorded``,
``batch-saved``, ``final-pass``."""
Progress = Callable[[dict[str, Any]], None]
Update = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any] | None]
"""An update document, or a function of the stored document returning one (``None``: leave it)."""


# update operators whose values ``FieldCrypto.seal_update`` seals (or that write no value)
_PASSES = 8  # final passes at most, while documents keep changing between a read and its write
_SEALED_OPS = frozenset({"$set", "$push", "$addToSet", "$unset", "$pull", "$pop"})


def _changed_fields(update: Mapping[str, Any]) -> set[str]:
    """The fields an update document changes: the paths its operators name, and for ``$rename``
    the new names too (a cached filter on the new name may match the renamed documents now)."""
    names: set[str] = set()
    for op, spec in update.items():
        names.update(str(path) for path in spec)
        if op == "$rename":
            names.update(str(target) for target in spec.values())
    return names


def _encrypted_at(fields: Any, path: Any) -> Any:
    """The sensitive field (of ``fields``) that ``path`` is, holds or lies inside; None."""
    norm = norm_path(str(path))
    return next((f for f in fields if f.path == norm or f.path.startswith(norm + ".") or norm.startswith(f.path + ".")),
                None)


def _among(filt: Mapping[str, Any], ids: Any) -> dict[str, Any]:
    """A batch's write filter: the migration's query, and the batch's ``_id`` (one, or ``$in``).
    Beside a top-level ``$or`` it goes into an ``$and``: the nx-27017 server's update applies a
    top-level ``$or`` and drops the keys beside it (it changed every match of the query, past the
    batch, and the documents outside it kept no change record)."""
    if "$or" in filt or "_id" in filt:
        return {"$and": [dict(filt), {"_id": ids}]}
    return {**filt, "_id": ids}


def _as_read(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document is still as it was read: the same revision (every write of the service
    advances it) and the same ``updatedAt`` (Mongoose's timestamps move it on every save of the
    Node service, which leaves ``_rev`` alone)."""
    rev = revision_of(dict(doc))
    at_rev: dict[str, Any] = {"_rev": rev} if rev else {"$or": [{"_rev": 0}, {"_rev": {"$exists": False}}]}
    stamp = {"updatedAt": doc["updatedAt"]} if "updatedAt" in doc else {"updatedAt": {"$exists": False}}
    return {"$and": [at_rev, stamp]}


def migration_actor(version: int) -> str:
    """The actor of the change records a migration writes."""
    return f"astro-db:migrate:{version:04d}"


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _utc(value: Any) -> _dt.datetime | None:
    """``value`` as an aware UTC datetime (naive = UTC, as BSON stores it); ``None`` if not a date."""
    if not isinstance(value, _dt.datetime):
        return None
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)


# --- the files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationFile:
    """One migration file, loaded: its version, description, checksum and functions."""

    version: int
    description: str
    path: Path
    checksum: str
    up: Callable[[MigrationContext], Any]
    down: Callable[[MigrationContext], Any] | None

    @property
    def name(self) -> str:
        return f"{self.version:04d}"


def load_migrations(directory: str | os.PathLike[str]) -> list[MigrationFile]:
    """The migrations of ``directory`` in version order; ``MigrationError`` names a bad file."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"the migrations directory {str(folder)!r} does not exist "
                          f"(pass --dir or set {MIGRATIONS_ENV})", key=MIGRATIONS_ENV)
    found: dict[int, MigrationFile] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix != ".py" or path.name.startswith(("_", ".")):
            continue
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: a migration file is named NNNN_name.py (e.g. 0001_add_status.py)")
        migration = _load(path)
        if migration.version != int(match.group(1)):
            raise MigrationError(f"{path.name}: its version is {migration.version}, its name says {int(match.group(1))}")
        if migration.version in found:
            raise MigrationError(f"{path.name}: version {migration.version} is also {found[migration.version].path.name}")
        found[migration.version] = migration
    return [found[v] for v in sorted(found)]


def _load(path: Path) -> MigrationFile:
    data = path.read_bytes()
    spec = importlib.util.spec_from_file_location(f"astro_db_migration_{path.stem}", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise MigrationError(f"{path.name}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise MigrationError(f"{path.name}: importing it failed: {type(exc).__name__}: {exc}") from exc
    version = getattr(module, "version", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MigrationError(f"{path.name}: defines no `version` (a positive int)")
    up = _function(module, "up", path)
    if up is None:
        raise MigrationError(f"{path.name}: defines no `up(ctx)`")
    description = getattr(module, "description", "") or (module.__doc__ or "").strip().split("\n")[0]
    return MigrationFile(version=version, description=str(description), path=path,
                         checksum=hashlib.sha256(data).hexdigest(), up=up, down=_function(module, "down", path))


def _function(module: ModuleType, name: str, path: Path) -> Callable[[MigrationContext], Any] | None:
    fn = getattr(module, name, None)
    if fn is not None and not callable(fn):
        raise MigrationError(f"{path.name}: `{name}` is not a function")
    return fn


# --- the lease ----------------------------------------------------------------------------------


class Lease:
    """The migrations lease: one document, taken and renewed by compare-and-set on its token."""

    def __init__(self, ex: Executor, owner: str, *, ttl_s: float, clock: Callable[[], float], hook: Hook) -> None:
        self.ex = ex
        self.owner = owner
        self.ttl_ms = int(ttl_s * 1000)
        self.clock = clock
        self.hook = hook
        self.token: str | None = None
        self.coll = ex.runtime.gateway[MIGRATIONS_COLLECTION]

    def _ms(self) -> int:
        return int(self.clock() * 1000)

    def take(self) -> None:
        current = self._call(lambda: self.coll.find_one({"_id": LEASE_ID}))
        self.hook("lease-read", lease=current, owner=self.owner)
        now = self._ms()
        token = uuid.uuid4().hex
        mine = {"owner": self.owner, "token": token, "expiresMs": now + self.ttl_ms, "takenAt": _now()}
        if current is None:
            try:
                self._call(lambda: self.coll.insert_one({"_id": LEASE_ID, **mine}))
            except Exception as exc:
                if not _duplicate(exc):
                    raise
                self._refuse(None)
        else:
            if current.get("token") and int(current.get("expiresMs") or 0) > now:
                self._refuse(current)
            taken = self._call(lambda: self.coll.find_one_and_update(
                {"_id": LEASE_ID, "token": current.get("token")}, {"$set": mine}, return_document=ReturnDocument.AFTER))
            if taken is None:
                self._refuse(None)
            if current.get("token"):
                log.warning("migrations: took over the lease of %s, expired", current.get("owner"))
        self.token = token

    def renew(self) -> None:
        """Extend the lease; ``MigrationLockedError`` when another process has taken it over."""
        expires = self._ms() + self.ttl_ms
        kept = self._call(lambda: self.coll.find_one_and_update(
            {"_id": LEASE_ID, "token": self.token}, {"$set": {"expiresMs": expires}}))
        if kept is None:
            holder = self._call(lambda: self.coll.find_one({"_id": LEASE_ID})) or {}
            self.token = None
            raise MigrationLockedError(f"the migrations lease expired and was taken over by {holder.get('owner')}; "
                                       "this run stops (its position is stored)", owner=holder.get("owner"))

    def release(self) -> None:
        if self.token is None:
            return
        token, self.token = self.token, None
        self._call(lambda: self.coll.update_one({"_id": LEASE_ID, "token": token},
                                                {"$set": {"token": None, "owner": None, "expiresMs": 0}}))

    def _refuse(self, current: Mapping[str, Any] | None) -> None:
        holder = current or self._call(lambda: self.coll.find_one({"_id": LEASE_ID})) or {}
        raise MigrationLockedError(f"migrations are being run by {holder.get('owner')} (lease until "
                                   f"{holder.get('expiresMs')} ms); nothing was run", owner=holder.get("owner"))

    def _call(self, fn: Callable[[], Any]) -> Any:
        return self.ex.call(None, "migrate lease", fn)


def _duplicate(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, pm.DuplicateKeyError) or type(exc).__name__ == "DuplicateKeyError":
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


# --- what a migration's up/down receives ---------------------------------------------------------


@dataclass
class Outcome:
    """What one ``ctx.migrate`` call did (or, in a dry run, would do)."""

    matched: int = 0
    changed: int = 0
    batches: int = 0
    final_pass: int = 0  # documents changed by the final pass (written behind the position)


class MigrationContext:
    """What ``up(ctx)`` / ``down(ctx)`` work with: batched, resumable, recorded helpers."""

    def __init__(self, migrator: Migrator, migration: MigrationFile, direction: str, record: dict[str, Any]) -> None:
        self._m = migrator
        self.db = migrator.db
        self.migration = migration
        self.direction = direction
        self.dry_run = migrator.dry_run
        self.batch_size = migrator.batch_size
        self.outcomes: dict[str, Outcome] = {}
        self._record = record
        self._ex = migrator.ex
        self.latest_write: _dt.datetime | None = None  # the newest updatedAt of the documents it recorded
        self.missed = 0  # function updates of the current pass not written: the document changed since its read

    # --- reading --------------------------------------------------------------------------

    def batches(self, model: Any, query: Mapping[str, Any] | None = None, *, key: str | None = None,
                batch_size: int | None = None, projection: Mapping[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Stored documents of ``model`` matching ``query`` (raw, stored form) in ``_id`` order, a
        list per batch, from the position stored under ``key``; the position advances (and is
        stored) when the next batch is asked for, i.e. once the caller has handled a batch."""
        info = self._ex.model(model)
        key = self._key(info, key)
        size = batch_size or self.batch_size
        position = self._position(key)
        # the position is an _id: read it even when the projection leaves it out, then drop it
        hide_id = projection is not None and "_id" in projection and not projection["_id"]
        shown = projection
        if hide_id and projection is not None:
            shown = {k: v for k, v in projection.items() if k != "_id"} or None  # {"_id": 0} alone: every field
        while True:
            batch = self._read(info, dict(query or {}), position, size, shown)
            if not batch:
                return
            yield [{k: v for k, v in d.items() if k != "_id"} for d in batch] if hide_id else batch
            position = batch[-1]["_id"]
            self._save(key, position, None)

    # --- writing --------------------------------------------------------------------------

    def migrate(self, model: Any, query: Mapping[str, Any], update: Update, *, key: str | None = None,
                batch_size: int | None = None) -> Outcome:
        """Change every document of ``model`` that matches ``query`` (the "not migrated yet"
        condition) with ``update`` (an update document, or a function of the stored document
        returning one, or ``None`` to leave it), batch by batch, resumably, recorded.

        Each write is conditional on ``query`` still matching, so re-running a batch changes
        nothing twice; a final pass from the start migrates documents written behind the
        position while the batches ran."""
        info = self._ex.model(model)
        key = self._key(info, key)
        filt = dict(query)
        size = batch_size or self.batch_size
        outcome = self.outcomes.setdefault(key, Outcome())
        if self.dry_run:
            outcome.matched = self._call(info, lambda: self._m.coll(info).count_documents(filt))
            log.info("migration %s (dry run): %s: %d document(s) would change", self.migration.name, info.name,
                     outcome.matched)
            return outcome
        total = self._call(info, lambda: self._m.coll(info).count_documents(filt))
        position = self._position(key)
        pending = self._pending_op(key)
        if pending is not None:
            self._record_op(info, pending)  # a run killed after its update, before its records
        op_id = pending
        if op_id is None:  # stored before the first batch runs, so a kill inside it is recorded on resume
            op_id = new_op_id()
            self._save(key, position, op_id)
        while True:
            self._m.hook("batch-start", key=key, batch=outcome.batches + 1, position=position)
            batch = self._read(info, filt, position, size, None)
            if not batch:
                break
            changed = self._apply(info, filt, update, batch, op_id, outcome)
            outcome.matched += len(batch)
            outcome.changed += changed
            outcome.batches += 1
            position, op_id = batch[-1]["_id"], new_op_id()
            self._save(key, position, op_id)  # the position and the next batch's op id, together
            self._m.hook("batch-saved", key=key, batch=outcome.batches, position=position)
            self._m.lease_renew()
            self._m.report(self.migration, info.name, outcome, total)
        # documents written behind the position (inserted with a smaller _id, or reverted): a
        # final pass from the start, with the same conditional filter; again while a function
        # update missed a document changed between its read and its write (it still matches)
        for _ in range(_PASSES):
            self._m.hook("final-pass", key=key)
            behind: Any = FROM_START
            self.missed = 0
            while True:
                batch = self._read(info, filt, behind, size, None)
                if not batch:
                    break
                changed = self._apply(info, filt, update, batch, op_id, outcome)
                outcome.final_pass += changed
                outcome.changed += changed
                behind, op_id = batch[-1]["_id"], new_op_id()
                self._save(key, position, op_id)
                self._m.lease_renew()
            if not self.missed:
                break
        else:
            raise MigrationError(f"migration {self.migration.name}: {self.missed} document(s) of {info.name} changed "
                                 f"between the read and the write of each of {_PASSES} passes; run it again")
        self._m.report(self.migration, info.name, outcome, total, done=True)
        return outcome

    def command(self, command: Mapping[str, Any]) -> Any:
        """Run a server command through the run step (skipped, and logged, in a dry run)."""
        if self.dry_run:
            log.info("migration %s (dry run): would run %s", self.migration.name, next(iter(command), "?"))
            return None
        database = self._ex.runtime.gateway
        return self._ex.call(None, "migrate command", lambda: database.command(dict(command)))

    def install_validators(self, action: str = "warn", *, level: str = "moderate") -> list[dict[str, Any]]:
        """Install the models' ``$jsonSchema`` validators (``astro_db.schema.install``)."""
        from .schema import install

        if self.dry_run:
            log.info("migration %s (dry run): would install the validators (action %s)", self.migration.name, action)
            return []
        return install(self.db, action=action, level=level)

    # --- internals ------------------------------------------------------------------------

    def _apply(self, info: ModelInfo, filt: dict[str, Any], update: Any, batch: list[dict[str, Any]], op_id: Any,
               outcome: Outcome) -> int:
        coll = self._m.coll(info)
        ids = [d["_id"] for d in batch]
        crypto = self._ex.runtime.crypto
        if callable(update):
            requests: list[UpdateOne] = []
            names: set[str] = set()
            for doc in batch:
                change = update(doc)
                if change:
                    sealed = crypto.bind_update(info, self._sealed(info, change), doc)
                    # the change is a function of the document as read: written only if it is
                    # still that one (a miss still matches the query: the final pass reads it again)
                    requests.append(UpdateOne({"$and": [_among(filt, doc["_id"]), _as_read(doc)]}, advance(sealed, op_id)))
                    names.update(_changed_fields(change))
            if not requests:
                return 0
            result = self._call(info, lambda: coll.bulk_write(requests, ordered=False))
            self.missed += len(requests) - int(result.matched_count)
            fields = sorted(names)
        else:
            sealed = self._sealed(info, update)
            if crypto.has_pending(sealed):  # a value sealed for each document: one update per document
                each = [UpdateOne(_among(filt, d["_id"]), advance(crypto.bind_update(info, sealed, d), op_id))
                        for d in batch]
                result = self._call(info, lambda: coll.bulk_write(each, ordered=False))
            else:
                change = advance(sealed, op_id)
                result = self._call(info, lambda: coll.update_many(_among(filt, {"$in": ids}), change))
            fields = sorted(_changed_fields(update))
        self._m.hook("batch-updated", batch=outcome.batches + 1, op=op_id)
        recorded = self._record_op(info, op_id, ids, fields)
        if recorded < result.modified_count:
            log.warning("migration %s: %d document(s) of %s were changed again before their records were read; their "
                        "later records carry the migrated state", self.migration.name,
                        result.modified_count - recorded, info.name)
        self._m.hook("batch-recorded", batch=outcome.batches + 1, op=op_id)
        return max(int(result.modified_count), recorded)

    def _sealed(self, info: ModelInfo, update: Mapping[str, Any]) -> dict[str, Any]:
        """``update`` with every value it writes into a sensitive field sealed, as a write of the
        service seals it (``FieldCrypto.seal_update``: ``$set`` of the field or of a parent,
        ``$push``/``$addToSet``, the blind index kept in step; a value to bind to its document
        is ``Pending`` until ``bind_update``). Where those fields hold ciphertext, an operator
        that would put a value there the client cannot seal (``$rename`` onto one, ``$min``,
        ``$max``, ``$setOnInsert``, ...) is a ``MigrationError``: it would store it in clear."""
        crypto = self._ex.runtime.crypto
        fields = crypto.fields.get(info.name, ())
        change = {op: dict(spec) if isinstance(spec, Mapping) else spec for op, spec in update.items()}
        if not fields:
            return change
        if crypto.moves_owner(info, change):
            raise MigrationError(
                f"migration {self.migration.name}: it sets the owner of {info.name} documents, whose values are sealed "
                "under their owner's data key; move them with db.update / update_many, which seals every value again "
                "under the new owner's key")
        if crypto.ordered_by_value():
            for op, spec in change.items():
                if op in _SEALED_OPS or not isinstance(spec, Mapping):
                    continue
                for path in (spec.values() if op == "$rename" else spec):
                    if (f := _encrypted_at(fields, path)) is not None:
                        raise MigrationError(
                            f"migration {self.migration.name}: {op} onto the encrypted field {info.name}.{f.path} "
                            "would store its value in clear; $set the value instead (it is sealed for you)")
                if op == "$rename":  # from an encrypted field: its ciphertext opens only at the path it was sealed for
                    for path in spec:
                        if (f := _encrypted_at(fields, path)) is not None:
                            raise MigrationError(
                                f"migration {self.migration.name}: $rename of the encrypted field {info.name}.{f.path} "
                                "would leave its ciphertext where it cannot be opened (a value opens only at the "
                                "path it was sealed for); read it and $set it with a function update instead")
        return crypto.seal_update(info, change)

    def record_left(self, ops: Mapping[str, Any]) -> None:
        """Record the batches a run in the other direction wrote and did not record (killed
        between a batch's write and its records: its op id is still stored, ``ops``), before
        this run starts afresh and the stored op ids are reset. A key names its collection
        unless the migration chose another (``key=``): then every model's is looked in."""
        models = list(self._ex.runtime.registry)
        for key, op_id in ops.items():
            name = key.split(":", 1)[-1]
            for info in [i for i in models if i.collection == name] or models:
                self._record_op(info, op_id)

    def _record_op(self, info: ModelInfo, op_id: Any, ids: list[Any] | None = None, fields: Any = ()) -> int:
        """Record the documents the batch ``op_id`` changed (read back by their op id)."""
        coll = self._m.coll(info)
        if ids is None:
            docs = self._call(info, lambda: list(coll.find({OP_FIELD: op_id})))
        else:  # by id, the op id compared here: a filter on both is far slower on some servers
            found = self._call(info, lambda: list(coll.find({"_id": {"$in": ids}})))
            docs = [d for d in found if d.get(OP_FIELD) == op_id]
        if not docs:
            return 0
        times = [t for t in (_utc(d.get("updatedAt")) for d in docs) if t is not None]
        if times and (self.latest_write is None or max(times) > self.latest_write):
            self.latest_write = max(times)
        # the after-write step, as every write of the service: the query cache drops them, and
        # their change records are written (ids made of the batch's op id: a resume re-records
        # the same ids, so a record is never written twice)
        self._ex.after_write(info, Written("update", tuple(d["_id"] for d in docs), tuple(fields),
                                           tuple(Change(d["_id"], revision_of(d), d.get("updatedAt"), d) for d in docs),
                                           op_id=op_id), actor=migration_actor(self.migration.version))
        return len(docs)

    def _read(self, info: ModelInfo, filt: dict[str, Any], after: Any, size: int,
              projection: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        if after is FROM_START:
            query = filt
        elif "_id" in filt or "$or" in filt:
            query = {"$and": [filt, ids_after(after)]}
        else:
            query = {**filt, **ids_after(after)}
        coll = self._m.coll(info)
        return self._call(info, lambda: list(coll.find(query, projection, sort=[("_id", 1)], limit=size)))  # type: ignore[no-any-return]

    def _key(self, info: ModelInfo, key: str | None) -> str:
        return f"{self.direction}:{key or info.collection}"

    def _position(self, key: str) -> Any:
        """Where the scan under ``key`` stopped: the last ``_id`` it handled (``None`` too: the
        ``_id`` null), ``FROM_START`` when none is stored."""
        positions = self._record.get("positions") or {}
        return positions[key] if key in positions else FROM_START

    def _pending_op(self, key: str) -> Any:
        return (self._record.get("ops") or {}).get(key)

    def _save(self, key: str, position: Any, op_id: Any) -> None:
        if self.dry_run:
            return
        self._record.setdefault("ops", {})[key] = op_id
        if position is FROM_START:  # nothing read yet: no position stored (``_position``)
            self._record.setdefault("positions", {}).pop(key, None)
            self._m.save(self.migration, {f"ops.{key}": op_id})
            return
        self._record.setdefault("positions", {})[key] = position
        self._m.save(self.migration, {f"positions.{key}": position, f"ops.{key}": op_id})

    def _call(self, info: ModelInfo | None, fn: Callable[[], Any]) -> Any:
        return self._ex.call(info, "migrate", fn)


# --- the runner ---------------------------------------------------------------------------------


@dataclass
class Report:
    """What ``up`` or ``down`` did: the versions run and their outcomes."""

    direction: str
    dry_run: bool
    ran: list[int] = field(default_factory=list)
    outcomes: dict[int, dict[str, dict[str, int]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "dry_run": self.dry_run, "ran": list(self.ran), "outcomes": self.outcomes}


class Migrator:
    """Apply, revert and report the migrations of ``directory`` on ``db``.

    ``hook`` and ``clock`` are for tests (races and crashes at chosen points, lease expiry
    without waiting); ``progress`` receives a dict after every batch."""

    def __init__(self, db: Database, directory: str | os.PathLike[str] | None = None, *, dry_run: bool = False,
                 batch_size: int = 1000, lease_ttl_s: float = 60.0, log_every: int = 10, owner: str | None = None,
                 hook: Hook | None = None, clock: Callable[[], float] = time.time, progress: Progress | None = None) -> None:
        directory = directory or os.environ.get(MIGRATIONS_ENV)
        if not directory:
            raise ConfigError(f"no migrations directory: pass --dir or set {MIGRATIONS_ENV}", key=MIGRATIONS_ENV)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}", key="batch_size")
        self.db = db
        self.ex = db.executor  # authorized: the executor is a MANAGE call
        self.directory = Path(directory)
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.log_every = max(1, log_every)
        self.hook: Hook = hook or (lambda event, **details: None)
        self.progress = progress
        actor = db.actor.id if db.actor is not None else None
        self.who = {"actor": str(actor) if actor is not None else _user(), "host": socket.gethostname(), "pid": os.getpid()}
        self.owner = owner or f"{self.who['actor']}@{self.who['host']}:{self.who['pid']}:{uuid.uuid4().hex[:6]}"
        self.lease = Lease(self.ex, self.owner, ttl_s=lease_ttl_s, clock=clock, hook=self.hook)
        self._records = self.ex.runtime.gateway[MIGRATIONS_COLLECTION]

    # --- the three commands -----------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Each migration (file or record) with its state: ``pending``, ``applied``, ``running``
        (a run stopped part-way: ``up`` resumes it), ``failed``, ``reverted``; ``changed`` when
        an applied file's checksum differs, ``missing`` when a record has no file."""
        files = {m.version: m for m in load_migrations(self.directory)}
        records = self._all_records()
        rows = []
        for version in sorted(set(files) | set(records)):
            m, r = files.get(version), records.get(version, {})
            state = r.get("status", "pending") if r else "pending"
            if state == "reverted":
                state = "pending"
            if m is None:
                state = "missing"
            elif r and r.get("status") == "applied" and r.get("checksum") != m.checksum:
                state = "changed"
            rows.append({"version": version, "description": (m.description if m else r.get("description", "")),
                         "state": state, "checksum": m.checksum if m else r.get("checksum"),
                         "applied_at": r.get("finishedAt"), "by": r.get("by"), "error": r.get("error")})
        return rows

    def up(self, *, to: int | None = None) -> Report:
        """Apply every pending migration up to version ``to`` (all by default), in order."""
        files = load_migrations(self.directory)
        records = self._all_records()
        self._refuse_changed(files, records)
        todo = [m for m in files if (to is None or m.version <= to)
                and records.get(m.version, {}).get("status") != "applied"]
        return self._run("up", todo, records)

    def down(self, *, to: int | None = None) -> Report:
        """Revert applied migrations, newest first: the last one, or all above version ``to``. A
        migration a run left part-way (``running``, ``failed``) counts as applied: its ``down``
        runs (a stopped ``down`` resumes) before any older migration is reverted."""
        files = {m.version: m for m in load_migrations(self.directory)}
        records = self._all_records()
        self._refuse_changed(list(files.values()), records)
        # a migration a run left part-way (running, failed: some of its documents migrated, or
        # not yet reverted) is reverted first too, newest first: its down resumes a down that
        # stopped, and an older migration is never reverted under one half applied
        applied = sorted((v for v, r in records.items() if r.get("status") in _STARTED), reverse=True)
        versions = applied[:1] if to is None else [v for v in applied if v > to]
        todo = []
        for version in versions:
            m = files.get(version)
            if m is None:
                raise MigrationError(f"migration {version:04d} is applied but its file is missing; cannot revert it")
            if m.down is None:
                raise MigrationError(f"migration {m.path.name} defines no down(ctx); it cannot be reverted")
            todo.append(m)
        return self._run("down", todo, records)

    # --- running ----------------------------------------------------------------------------

    def _run(self, direction: str, todo: list[MigrationFile], records: dict[int, dict[str, Any]]) -> Report:
        report = Report(direction, self.dry_run)
        if not todo:
            return report
        if not self.dry_run:
            self.lease.take()
            records = self._all_records()  # re-read under the lease: another run may have finished
        try:
            for m in todo:
                record = records.get(m.version, {})
                if direction == "up" and record.get("status") == "applied":
                    continue
                if direction == "down" and record.get("status") not in _STARTED:
                    continue
                if not self.dry_run and m is not todo[0]:
                    self.lease.renew()  # a run that lost its lease meanwhile starts no further migration
                report.outcomes[m.version] = self._one(m, direction, record)
                report.ran.append(m.version)
        finally:
            if not self.dry_run:
                self.lease.release()
        return report

    def _one(self, m: MigrationFile, direction: str, record: dict[str, Any]) -> dict[str, dict[str, int]]:
        resuming = record.get("status") in ("running", "failed") and record.get("direction", "up") == direction
        left = {} if resuming else {k: op for k, op in (record.get("ops") or {}).items() if op is not None}
        if not resuming:
            record = {"positions": {}, "ops": {}}
        ctx = MigrationContext(self, m, direction, record)
        if left and not self.dry_run:  # a run the other way stopped part-way: its last batch recorded first
            ctx.record_left(left)
        if not self.dry_run:
            started = _now()
            start: dict[str, Any] = {
                "version": m.version, "description": m.description, "checksum": m.checksum, "file": m.path.name,
                "status": "running", "direction": direction, "by": dict(self.who), "owner": self.owner,
                "lease": self.lease.token, "error": None, "finishedAt": None,
            }
            if not resuming:
                start.update(startedAt=started, positions={}, ops={})
            self._update(m.version, {"$set": start, "$push": {"history": self._transition(m, "running", direction, started)}},
                         upsert=True)
            log.info("migration %s %s: %s%s", m.name, direction, m.description, " (resuming)" if resuming else "")
        fn = m.up if direction == "up" else m.down
        assert fn is not None
        try:
            fn(ctx)
        except BaseException as exc:
            if not self.dry_run and not isinstance(exc, MigrationLockedError):
                error = f"{type(exc).__name__}: {exc}"[:500]
                failed = self._finish_time(ctx)
                try:
                    self._update(m.version, {"$set": {"status": "failed", "error": error},
                                             "$push": {"history": self._transition(m, "failed", direction, failed,
                                                                                   error=error)}})
                except MigrationLockedError:  # another run holds it now: its record is that run's
                    log.warning("migration %s: not recorded as failed: the lease was taken over", m.name)
            log.error("migration %s %s failed: %s", m.name, direction, type(exc).__name__)
            if isinstance(exc, Exception) and not isinstance(exc, MigrationError):
                raise MigrationError(f"migration {m.path.name} failed ({direction}): {type(exc).__name__}: {exc}; "
                                     "its position is stored, run it again to resume") from exc
            raise
        if not self.dry_run:
            final = "applied" if direction == "up" else "reverted"
            finished = self._finish_time(ctx)
            self._update(m.version, {"$set": {"status": final, "finishedAt": finished, "positions": {}, "ops": {}},
                                     "$push": {"history": self._transition(m, final, direction, finished)}})
            log.info("migration %s %s: %s", m.name, direction, final)
        return {key: {"matched": o.matched, "changed": o.changed, "batches": o.batches, "final_pass": o.final_pass}
                for key, o in ctx.outcomes.items()}

    def _transition(self, m: MigrationFile, status: str, direction: str, at: _dt.datetime,
                    error: str | None = None) -> dict[str, Any]:
        """One entry of a record's ``history`` (what ``ledger_as_of`` reads)."""
        entry: dict[str, Any] = {"status": status, "direction": direction, "at": at, "checksum": m.checksum,
                                 "by": dict(self.who)}
        if error is not None:
            entry["error"] = error
        return entry

    @staticmethod
    def _finish_time(ctx: MigrationContext) -> _dt.datetime:
        """Now by this process's clock, but never before the newest ``updatedAt`` (the server's
        clock) of the documents the run recorded: a run counted as finished at an instant has
        every change record it wrote at or before that instant, whatever the two clocks say."""
        now = _now()
        if ctx.latest_write is not None and ctx.latest_write > now:
            return ctx.latest_write
        return now

    # --- for the context --------------------------------------------------------------------

    def coll(self, info: ModelInfo) -> Any:
        return self.ex.runtime.coll(info)

    def save(self, m: MigrationFile, fields: dict[str, Any]) -> None:
        self._update(m.version, {"$set": fields})
        self.hook("saved", version=m.version, fields=fields)

    def lease_renew(self) -> None:
        if not self.dry_run:
            self.lease.renew()

    def report(self, m: MigrationFile, model: str, outcome: Outcome, total: int, *, done: bool = False) -> None:
        figures = {"version": m.version, "model": model, "batches": outcome.batches, "matched": outcome.matched,
                   "changed": outcome.changed, "total": total, "done": done}
        if self.progress is not None:
            self.progress(figures)
        if done or outcome.batches % self.log_every == 0:
            log.info("migration %s: %s: %d batch(es), %d/%d document(s) changed%s", m.name, model, outcome.batches,
                     outcome.changed, total, " (done)" if done else "")

    # --- records ----------------------------------------------------------------------------

    def _all_records(self) -> dict[int, dict[str, Any]]:
        rows = self.ex.call(None, "migrate status", lambda: list(self._records.find({"_id": {"$ne": LEASE_ID}})))
        return {int(r["version"]): r for r in rows if isinstance(r.get("version"), int)}

    def _update(self, version: int, update: dict[str, Any], *, upsert: bool = False) -> None:
        """Write a migration's record. The start of a run (``upsert``) stamps it with this run's
        lease token; every later write (a position, the op id of the next batch, the end) is
        fenced by that token: a run whose lease was taken over while it stalled never writes
        over the record of the run that took it over (its stored op id is what a resume after a
        crash records), it gets ``MigrationLockedError`` instead."""
        where: dict[str, Any] = {"_id": f"v{version:04d}"}
        if not upsert:
            where["lease"] = self.lease.token
        result = self.ex.call(None, "migrate record", lambda: self._records.update_one(where, update, upsert=upsert))
        if not upsert and not result.matched_count:
            holder = self.ex.call(None, "migrate record", lambda: self._records.find_one({"_id": LEASE_ID})) or {}
            raise MigrationLockedError(f"migration {version:04d}: the migrations lease was taken over by "
                                       f"{holder.get('owner')}; this run stops (the record is the new run's)",
                                       owner=holder.get("owner"))

    def _refuse_changed(self, files: list[MigrationFile], records: dict[int, dict[str, Any]]) -> None:
        for m in files:
            r = records.get(m.version)
            if r and r.get("status") in ("applied", "running", "failed") and r.get("checksum") != m.checksum:
                raise MigrationError(
                    f"migration {m.path.name} was changed after it was {r.get('status')} (checksum {r.get('checksum', '')[:12]} "
                    f"recorded, {m.checksum[:12]} now); restore the file, or write a new migration for the new change")


_STARTED = ("applied", "running", "failed")  # what ``down`` reverts


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"


# --- the ledger at an instant (what a restore writes) ---------------------------------------------

_FINISHED = ("applied", "reverted")


def ledger_as_of(snapshots: Iterable[Iterable[Mapping[str, Any]]], when: _dt.datetime) -> list[dict[str, Any]]:
    """The migration ledger as it stood at ``when``: the records to write into a restored
    database, the lease left out.

    ``snapshots`` are copies of ``astroMigrations`` read at successive times, oldest first (a
    backup set's, the live source's). Each migration's state is decided by the newest snapshot
    that knows it at ``when``:

    - a record's ``history`` holds every transition with its time: the last one at or before
      ``when`` (to the millisecond) is its state (``applied``, ``reverted``, ``running``,
      ``failed``); a record whose history starts after ``when`` is left to an older snapshot
      (none: the migration had not started, it is left out: pending);
    - a record without history (written before histories were kept) counts by ``finishedAt``
      and ``startedAt``: finished at or before ``when``, as recorded; started at or before it but
      finished later (or not at all), ``running``; started later, left to an older snapshot.

    A migration running (or failed) at ``when`` is written so, with no stored position: the next
    ``up`` (or ``down``, by its direction) resumes it from the start, and its conditional writes
    change only the documents not migrated yet. The lease is never written: no process holds it in the
    restored database, and ``up`` takes a fresh one.
    """
    cut = _ms(when)
    assert cut is not None
    layers = [{r["_id"]: r for r in snapshot if r.get("_id") != LEASE_ID} for snapshot in snapshots]
    ids = sorted({key for layer in layers for key in layer}, key=str)
    out = []
    for key in ids:
        for layer in reversed(layers):
            if key not in layer:
                continue
            decided, state = _record_at(layer[key], cut)
            if decided:
                if state is not None:
                    out.append(state)
                break
    return out


def _ms(value: Any) -> int | None:
    when = _utc(value)
    if when is None:
        return None
    return int((when - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)) // _dt.timedelta(milliseconds=1))


def _record_at(record: Mapping[str, Any], cut: int) -> tuple[bool, dict[str, Any] | None]:
    """``(decided, state)`` of one ledger record at ``cut`` (ms): ``state`` is the record to write,
    ``None`` if the migration had not started; undecided when this copy cannot tell."""
    history = record.get("history")
    if isinstance(history, list) and history:
        seen = [h for h in history if isinstance(h, Mapping) and (_ms(h.get("at")) or 0) <= cut]
        if not seen:
            return False, None
        last = seen[-1]
        started, before = record.get("startedAt"), None
        for h in seen:  # the start of the last run: its first "running" (a resume adds more)
            if h.get("status") == "running" and (before is None or before.get("status") in _FINISHED):
                started = h.get("at")
            before = h
        state = _as_state(record, str(last.get("status")), last.get("direction", record.get("direction")),
                          started=started, finished=last.get("at"), error=last.get("error"))
        state["checksum"] = last.get("checksum", record.get("checksum"))
        if last.get("by") is not None:
            state["by"] = last["by"]
        state["history"] = [dict(h) for h in seen]
        return True, state
    status = record.get("status")
    finished, started = _ms(record.get("finishedAt")), _ms(record.get("startedAt"))
    if status in _FINISHED and finished is not None and finished <= cut:
        return True, _as_state(record, str(status), record.get("direction"), started=record.get("startedAt"),
                               finished=record.get("finishedAt"))
    if started is not None and started <= cut:
        return True, _as_state(record, "failed" if status == "failed" else "running", record.get("direction"),
                               started=record.get("startedAt"), finished=None, error=record.get("error"))
    return False, None


def _as_state(record: Mapping[str, Any], status: str, direction: Any, *, started: Any, finished: Any,
              error: Any = None) -> dict[str, Any]:
    state = {k: v for k, v in record.items() if k not in ("history", "positions", "ops", "lease")}
    ended = status in _FINISHED
    state.update(status=status if ended or status == "failed" else "running", direction=direction, startedAt=started,
                 finishedAt=finished if ended else None, error=error if status == "failed" else None,
                 positions={}, ops={})
    return state
