"""The write path of one service call: idempotent inserts, guarded updates, hooked deletes.

Inserts carry a client-generated ``_id``, so a retried insert that meets its own ``_id`` (the
first attempt reached the server but its reply was lost) counts as success, never a duplicate.
Updates validated by ``updates.compile_update`` are applied atomically on the server; ``$inc`` on a
bounded field carries a guard in the filter. An update that touches a list (whose rules: length,
order, uniqueness, item bounds, depend on the stored list) is read, applied locally
(``evaluate.apply_update``), validated as a whole document and written by compare-and-set on the
Mongoose version key ``__v`` (which it increments, as Mongoose does for array changes).
Every write advances the document's revision (``changes.revision``) in the same atomic command,
and records one change record per document it actually changed (``changes``: the audit trail and
the journal in one), under the same retry and time bound as the write itself. The write hooks
(the query cache) are told of every successful write, with its session.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo import errors as pm

from ..changes import OP_FIELD, REV_FIELD, advance, new_op_id, recorded, revision_of
from ..errors import AstroDBError, ChangeRecordError, ValidationError, translate
from ..events import WriteEvent
from ..models import codec
from ..query.evaluate import apply_update
from ..query.filters import check_document_keys
from ..query.updates import CompiledUpdate
from ..security.audit import current_request_id
from ..security.masking import masked_errors
from . import bulk
from .runtime import Runtime, utcnow
from .steps import hooks, run

if TYPE_CHECKING:  # pragma: no cover
    from ..driver.transactions import Transaction
    from ..registry import ModelInfo

__all__ = ["WriteRunner", "new_document"]

log = logging.getLogger(__name__)
_CAS_ATTEMPTS = 8
_INDEX_NAME = re.compile(r"index[:\s]+'?([^\s']+)'?")
_ID_CHUNK = 10_000
# Batches up to this size send their records in the same bulkWrite (ops.bulk); larger ones send
# one insert_many of documents and one of records: PyMongo encodes a client-level bulkWrite op by
# op in Python (about 30 µs per document more client CPU than insert_many on this machine), which
# outweighs one round trip saved per batch of more than a few dozen documents.
ONE_COMMAND_BATCH = 16


def new_document(info: ModelInfo, data: Any) -> dict[str, Any]:
    """Validate ``data`` as a new document of the model and give it what the service keeps:
    a client-generated ``_id`` (so a retried insert can be recognised), ``createdAt`` /
    ``updatedAt`` and the Mongoose version key ``__v`` (its revision, 0, is implied: ``changes.revision``)."""
    if not isinstance(data, Mapping):
        raise ValidationError(errors={"data": f"must be a dict of field -> value, got {type(data).__name__}"})
    with masked_errors(info.cls):
        son = codec.encode_new(info.cls, data)
        check_document_keys(son)
    now = utcnow()
    # _id first, as the server stores it (MongoDB moves it first on insert; the journal's image,
    # and a server that does not move it in every insert path, must see the same order)
    son = {"_id": son.pop("_id") if "_id" in son else ObjectId(), **son}
    son.setdefault("createdAt", now)
    son["updatedAt"] = now
    son.setdefault("__v", 0)
    return son


class WriteRunner:
    """Carries out the writes of one call on one model, inside ``transaction`` if given."""

    def __init__(self, rt: Runtime, info: ModelInfo, transaction: Transaction | None, session: Any, actor: Any) -> None:
        self.rt = rt
        self.info = info
        self.tx = transaction
        self.session = session
        self.actor = actor
        self.coll = rt.coll(info)

    # --- inserts -----------------------------------------------------------------------------

    def insert_one(self, son: dict[str, Any]) -> None:
        fields = tuple(k for k in son if k != "_id")
        if self._one_command():
            self._insert_recorded("create", [son], fields)
            return
        attempts = 0

        def op() -> None:
            nonlocal attempts
            attempts += 1
            try:
                self.coll.insert_one(son, session=self.session)
            except pm.DuplicateKeyError as exc:
                self._name_key(cast("dict[str, Any] | None", exc.details))  # a dict at runtime; filled in place
                # A retry that finds our exact document under our own client-made _id met our
                # earlier attempt, whichever unique index (_id or e.g. email) the server named.
                if attempts > 1 and self._stored_equals([son]) == {0}:
                    return  # our own earlier attempt landed
                raise

        run.call(self.rt, self.info, "create", op, self.tx)
        self._emit("create", [son["_id"]], fields, documents=(son,))
        self.record("create", [_created(son)], fields)

    def insert_many(self, sons: list[dict[str, Any]]) -> dict[int, AstroDBError]:
        """Insert unordered; returns ``{position: error}`` for the documents the server refused."""
        if not sons:
            return {}
        if len(sons) <= ONE_COMMAND_BATCH and self._one_command():
            fields = tuple(sorted({k for son in sons for k in son if k != "_id"}))
            return self._insert_recorded("create_many", sons, fields)
        attempts = 0
        refused: dict[int, AstroDBError] = {}

        def op() -> None:
            nonlocal attempts
            attempts += 1
            refused.clear()
            try:
                self.coll.insert_many(sons, ordered=False, session=self.session)
            except pm.BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                own = self._stored_equals([sons[e["index"]] for e in errors]) if attempts > 1 else set()
                for n, err in enumerate(errors):
                    if n in own and err.get("code") == 11000:  # our own earlier attempt (see insert_one)
                        continue
                    refused[err["index"]] = translate(self._driver_error(err), operation="create_many", model=self.info.name)
                if exc.details.get("writeConcernErrors"):
                    raise

        run.call(self.rt, self.info, "create_many", op, self.tx)
        written = [son for i, son in enumerate(sons) if i not in refused]
        if written:
            fields = tuple(sorted({k for son in written for k in son if k != "_id"}))
            self._emit("create", [s["_id"] for s in written], fields, documents=tuple(written))
            self.record("create", [_created(son) for son in written], fields)
        return refused

    def _one_command(self) -> bool:
        """Whether this create sends its documents and their change records in one command
        (``ops.bulk``): records on, outside a transaction (whose writes commit together anyway),
        none left pending from an earlier failure (those go the long way, which settles them),
        and a server that has the command."""
        rt = self.rt
        if not (rt.one_command_writes and rt.changes.enabled) or self.tx is not None or rt.changes.pending:
            return False
        if rt.bulk_write is None:  # asked until the client knows a server; then settled
            rt.bulk_write = bulk.supported(rt.connection.client)
        return bool(rt.bulk_write)

    def _insert_recorded(self, operation: str, sons: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[int, AstroDBError]:
        """Insert ``sons`` with their change records in one ``bulkWrite`` (``ops.bulk``); returns
        ``{position: error}`` for the documents the server refused (a single create raises its
        refusal, as ``insert_one`` does). A retry leaves out what the first attempt wrote (the
        documents stored as sent, the records already there)."""
        records = self._records("create", [_created(son) for son in sons], fields)
        database = self.coll.database
        attempts = 0
        outcome = bulk.Outcome()

        def op() -> None:
            nonlocal attempts, outcome
            attempts += 1
            written, there = ((self._stored_equals(sons), recorded(database, [r["_id"] for r in records], self.session))
                              if attempts > 1 else (set(), set()))
            outcome = bulk.insert_recorded(database.client, database.name, self.coll.name, sons, records,
                                           session=self.session, written=written, recorded=there)
            if operation == "create" and outcome.refused:
                raise self._driver_error(outcome.refused[0])

        try:
            run.call(self.rt, self.info, operation, op, self.tx)
        except AstroDBError as exc:
            if not bulk.not_supported(exc.__cause__ or exc):
                raise
            log.warning("the server has no bulkWrite command; creates send their change records separately")
            self.rt.bulk_write = False
            if operation == "create_many":
                return self.insert_many(sons)
            self.insert_one(sons[0])
            return {}
        refused = {position: translate(self._driver_error(error), operation=operation, model=self.info.name)
                   for position, error in sorted(outcome.refused.items())}
        written = [son for i, son in enumerate(sons) if i not in refused]
        if written:
            self._emit("create", [s["_id"] for s in written], fields, documents=tuple(written))
        if outcome.unrecorded:
            lost = [records[i] for i in outcome.unrecorded]
            raise self.rt.changes.unwritten(lost, f"{operation} on {self.info.name}", "the server refused the record")
        return refused

    def _driver_error(self, error: dict[str, Any]) -> pm.OperationFailure:
        """A per-document write error of a batch as the driver error a single write raises
        (a duplicate key named by its fields, see ``_name_key``)."""
        code = error.get("code")
        if code == 11000:
            self._name_key(error)
            return pm.DuplicateKeyError(error.get("errmsg", ""), code, error)
        return pm.OperationFailure(error.get("errmsg", ""), code, error)

    def _stored_equals(self, sons: list[dict[str, Any]]) -> set[int]:
        """Positions of ``sons`` whose exact document is already stored (our own landed write)."""
        if not sons:
            return set()
        stored = {d["_id"]: d for d in self.coll.find({"_id": {"$in": [s["_id"] for s in sons]}}, session=self.session)}
        return {i for i, son in enumerate(sons) if _same(stored.get(son["_id"]), son)}

    # --- updates -----------------------------------------------------------------------------

    def update_one(self, filt: dict[str, Any], compiled: CompiledUpdate) -> dict[str, Any] | None:
        update = advance(compiled.update, new_op_id())
        if compiled.touches_lists:
            return self._update_list_cas(filt, compiled, update)
        guarded = _merge(filt, compiled.guards)
        idempotent = not ({"$inc", "$push", "$addToSet"} & set(compiled.update))
        doc: dict[str, Any] | None = run.call(self.rt,
            self.info, "update",
            self._naming(lambda: self.coll.find_one_and_update(
                guarded, update, return_document=ReturnDocument.AFTER, session=self.session)),
            self.tx, retry=idempotent,
        )
        if doc is None:
            if compiled.guards and self._exists(filt):
                raise _out_of_range(compiled)
            return None
        self._emit("update", [doc["_id"]], tuple(compiled.fields), documents=(doc,))
        self.record("update", [_updated(doc)], compiled.fields)
        return doc

    def update_many(self, filt: dict[str, Any], compiled: CompiledUpdate) -> int:
        if compiled.touches_lists:
            ids = self._ids(filt)
            return sum(self._update_list_cas({"_id": i}, compiled, advance(compiled.update, new_op_id())) is not None for i in ids)
        if compiled.guards:
            total = run.call(self.rt, self.info, "update_many", lambda: self.coll.count_documents(filt, session=self.session), self.tx)
            inside = run.call(self.rt,
                self.info, "update_many",
                lambda: self.coll.count_documents(_merge(filt, compiled.guards), session=self.session), self.tx,
            )
            if inside != total:
                raise _out_of_range(compiled, total - inside)
        # Tagged with this call's op id, so it can read back exactly the documents it changed
        # (never one that another caller deleted or changed first); a retry skips its own.
        op_id = new_op_id()
        update = advance(compiled.update, op_id)
        idempotent = not ({"$inc", "$push", "$addToSet"} & set(compiled.update))
        changes = self.rt.changes
        projection = None if changes.journal else {"_id": 1, REV_FIELD: 1, "updatedAt": 1}
        modified = 0
        for chunk in _chunks(self._ids(filt), _ID_CHUNK):
            scoped = _merge({"_id": {"$in": chunk}, OP_FIELD: {"$ne": op_id}}, _merge(filt, compiled.guards))
            result = run.call(self.rt,
                self.info, "update_many",
                self._naming(lambda scoped=scoped: self.coll.update_many(scoped, update, session=self.session)),
                self.tx, retry=idempotent,
            )
            mine = self._read_back({"_id": {"$in": chunk}, OP_FIELD: op_id}, projection, chunk) if changes.enabled else []
            if changes.enabled and len(mine) < result.modified_count:
                log.warning("update_many on %s: %d document(s) were changed again before their records were read; "
                            "their later records carry the state", self.info.name, result.modified_count - len(mine))
            modified += max(result.modified_count, len(mine))
            self._emit("update", [d["_id"] for d in mine] if changes.enabled else chunk, tuple(compiled.fields))
            self.record("update", [_updated(d) for d in mine], compiled.fields)
        return modified

    def _read_back(self, filt: dict[str, Any], projection: dict[str, Any] | None, chunk: list[Any]) -> list[dict[str, Any]]:
        """The documents this call changed (tagged with its op id), for their records."""
        try:
            return run.call(self.rt,
                self.info, "update_many",
                lambda: list(self.coll.find(filt, projection, session=self.session)), self.tx,
            )
        except AstroDBError as exc:
            if self.tx is not None:
                raise
            log.error("update_many on %s was applied but its changed documents could not be read back for their "
                      "records (%s); run reconcile_changes()", self.info.name, type(exc).__name__)
            raise ChangeRecordError(f"update_many on {self.info.name} was applied, but which documents it changed could "
                                    f"not be read for their records: {exc}; run reconcile_changes()", missing=chunk) from exc

    def _update_list_cas(self, filt: dict[str, Any], compiled: CompiledUpdate, update: dict[str, Any]) -> dict[str, Any] | None:
        """Read the document, validate the whole document the update makes of it, and write the
        update only if the document is still the one read: a compare-and-set on the Mongoose
        version key ``__v``, which every list-touching update increments (as Mongoose does for
        array changes), so a write validated against a stale list never lands."""
        for _ in range(_CAS_ATTEMPTS):
            current = run.call(self.rt, self.info, "update", lambda: self.coll.find_one(filt, session=self.session), self.tx)
            if current is None:
                return None
            after = self._checked_post_image(current, update)
            cas = _merge(filt, {"_id": current["_id"], "__v": current.get("__v")})
            versioned = _lists_as_validated(update, after, compiled.list_roots)
            doc: dict[str, Any] | None = run.call(self.rt,
                self.info, "update",
                self._naming(lambda cas=cas, versioned=versioned: self.coll.find_one_and_update(
                    _merge(cas, compiled.guards), versioned, return_document=ReturnDocument.AFTER, session=self.session
                )),
                self.tx, retry=False,
            )
            if doc is not None:
                self._emit("update", [doc["_id"]], tuple(compiled.fields), documents=(doc,))
                self.record("update", [_updated(doc)], compiled.fields)
                return doc
            if compiled.guards and self._exists(cas):
                raise _out_of_range(compiled)
        raise AstroDBError(f"update on {self.info.name}: the document changed concurrently {_CAS_ATTEMPTS} times; try again")

    def _checked_post_image(self, current: dict[str, Any], update: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The document ``update`` makes of ``current``, validated as a new one is (list rules and
        bounds included); raises, having written nothing, if it does not pass."""
        after = apply_update(current, update)
        plain = after
        crypto = self.rt.crypto
        if crypto.enabled:
            plain = copy.deepcopy(after)
            crypto.open_document(self.info, plain)  # validated as plaintext, written sealed
        with masked_errors(self.info.cls):
            codec.validate_stored(self.info.cls, plain)
        return after

    # --- deletes -----------------------------------------------------------------------------

    def delete_one(self, filt: dict[str, Any]) -> bool:
        doc = self._delete_one("delete", filt)
        if doc is None:
            return False
        self._emit("delete", [doc["_id"]], ())
        self.record("delete", [_deleted(doc)], ())
        return True

    def delete_many(self, filt: dict[str, Any]) -> int:
        """Delete document by document (``findAndModify`` each), so the caller records exactly the
        documents it deleted, even when other callers delete the same ones at the same time.
        Costs one round trip per document (see docs/security.md)."""
        deleted = 0
        for chunk in _chunks(self._ids(filt), _ID_CHUNK):
            gone: list[dict[str, Any]] = []
            try:
                for doc_id in chunk:
                    doc = self._delete_one("delete_many", _merge({"_id": doc_id}, filt))
                    if doc is not None:
                        gone.append(doc)
            finally:  # what was deleted is recorded, even if a later delete of the chunk failed
                if gone:
                    deleted += len(gone)
                    self._emit("delete", [d["_id"] for d in gone], ())
                    self.record("delete", [_deleted(d) for d in gone], ())
        return deleted

    def _delete_one(self, operation: str, filt: dict[str, Any]) -> dict[str, Any] | None:
        """Delete one document; its ``_id`` and last revision, or None if none matched."""
        doc: dict[str, Any] | None = run.call(self.rt,
            self.info, operation,
            lambda: self.coll.find_one_and_delete(filt, projection={"_id": 1, REV_FIELD: 1}, session=self.session),
            self.tx,
        )
        return doc

    # --- change records ----------------------------------------------------------------------

    def record(self, action: str, changes: list[tuple[Any, int, Any, dict[str, Any] | None]], fields: Iterable[str],
               actor: str | None = None) -> None:
        """Write the change records of ``changes`` (``(documentId, rev, time, post-image)``)
        under this call's retry and time bound (see ``changes.log`` for the failure policy)."""
        log_ = self.rt.changes
        if not changes or not log_.enabled:
            return
        records = self._records(action, changes, fields, actor)
        log_.write(
            lambda fn: run.call(self.rt, self.info, f"record {action}", fn, self.tx), self.coll.database, records,
            session=self.session, in_transaction=self.tx is not None, what=f"{action} on {self.info.name}",
        )

    def _records(self, action: str, changes: list[tuple[Any, int, Any, dict[str, Any] | None]], fields: Iterable[str],
                 actor: str | None = None) -> list[dict[str, Any]]:
        """The change records of ``changes``, by this call's actor (or ``actor``, a tool's name)."""
        who = self.actor
        return self.rt.changes.build(
            model=self.info.name, collection=self.info.collection, action=action, changes=changes, fields=fields,
            actor=actor or (who.id if who is not None else None),
            request_id=(who.request_id if who is not None else None) or current_request_id(),
        )

    # --- helpers -----------------------------------------------------------------------------

    def _naming(self, fn: Any) -> Any:
        """``fn`` with duplicate-key errors given their field names (see ``_name_key``)."""

        def call() -> Any:
            try:
                return fn()
            except pm.DuplicateKeyError as exc:
                self._name_key(cast("dict[str, Any] | None", exc.details))  # a dict at runtime; filled in place
                raise

        return call

    def _name_key(self, details: dict[str, Any] | None) -> None:
        """Add ``keyPattern`` to a duplicate-key error that names only its index (some servers
        and emulators do), by looking the index up, so the error can name its fields."""
        if not details or details.get("keyPattern"):
            return
        match = _INDEX_NAME.search(str(details.get("errmsg", "")))
        if not match:
            return
        try:
            for index in self.coll.list_indexes(session=self.session):
                if index["name"] == match.group(1):
                    details["keyPattern"] = dict(index["key"])
                    return
        except pm.PyMongoError:  # the error stays as it is, without field names
            return

    def _ids(self, filt: dict[str, Any]) -> list[Any]:
        return run.call(self.rt,
            self.info, "find_ids",
            lambda: [d["_id"] for d in self.coll.find(filt, {"_id": 1}, session=self.session)],
            self.tx,
        )

    def _exists(self, filt: dict[str, Any]) -> bool:
        return run.call(self.rt,
            self.info, "find_one", lambda: self.coll.find_one(filt, {"_id": 1}, session=self.session), self.tx
        ) is not None

    def _emit(self, action: str, ids: Iterable[Any], fields: tuple[str, ...], documents: tuple[Any, ...] | None = None) -> None:
        actor = self.actor
        hooks.emit(self.rt,
            WriteEvent(
                model=self.info.name,
                collection=self.info.collection,
                action=action,
                document_ids=tuple(ids),
                fields=fields,
                database=self.coll.database,
                session=self.session,
                transaction=self.tx,
                actor=getattr(actor, "id", actor),
                request_id=getattr(actor, "request_id", None),
                documents=documents,
            )
        )


def _created(son: dict[str, Any]) -> tuple[Any, int, Any, dict[str, Any]]:
    return son["_id"], revision_of(son), son.get("updatedAt"), son


def _updated(doc: dict[str, Any]) -> tuple[Any, int, Any, dict[str, Any]]:
    return doc["_id"], revision_of(doc), doc.get("updatedAt"), doc


def _deleted(doc: dict[str, Any]) -> tuple[Any, int, Any, None]:
    return doc["_id"], revision_of(doc) + 1, utcnow(), None


def _same(stored: dict[str, Any] | None, son: dict[str, Any]) -> bool:
    return stored is not None and _eq(stored, son)


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)


def _eq(a: Any, b: Any) -> bool:
    """Equality of a stored document and the one we sent (BSON dates keep milliseconds only)."""
    if isinstance(a, _dt.datetime) and isinstance(b, _dt.datetime):
        return abs(_utc(a) - _utc(b)) < _dt.timedelta(milliseconds=1)
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    same: bool = a == b
    return same


def _merge(filt: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    if not extra:
        return filt
    if not filt:
        return dict(extra)
    if set(filt) & set(extra):
        return {"$and": [filt, extra]}
    return {**filt, **extra}


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _lists_as_validated(update: dict[str, dict[str, Any]], after: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """The update to send under the compare-and-set: each top-level field whose list it changes is
    set to its validated post-image value (so the server stores exactly what was validated, whatever
    its own array-path support), every other path keeps its atomic operator; ``__v`` is bumped."""
    out: dict[str, dict[str, Any]] = {}
    for op, spec in update.items():
        kept = {path: value for path, value in spec.items() if path.split(".")[0] not in roots}
        if kept:
            out[op] = kept
    for root in roots:
        if root in after:
            out.setdefault("$set", {})[root] = after[root]
        else:
            out.setdefault("$unset", {})[root] = ""
    out["$inc"] = {**out.get("$inc", {}), "__v": 1}
    return out


def _out_of_range(compiled: CompiledUpdate, count: int = 1) -> ValidationError:
    which = "the document" if count == 1 else f"{count} documents"
    message = f"$inc would leave {which} outside the field's range; nothing was changed"
    return ValidationError(errors={field: message for field in compiled.guards})
