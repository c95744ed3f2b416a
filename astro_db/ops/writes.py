"""The write path of one service call: idempotent inserts, guarded updates, hooked deletes.

Inserts carry a client-generated ``_id``, so a retried insert that meets its own ``_id`` (the
first attempt reached the server but its reply was lost) counts as success, never a duplicate.
Updates validated by ``updates.compile_update`` are applied atomically on the server; ``$inc`` on a
bounded field carries a guard in the filter, and list operators whose list rules (length,
order, uniqueness) depend on the current list are checked by read, validate, compare-and-set on
the Mongoose version key ``__v`` (which they increment, as Mongoose does for array changes).
Every successful write is announced to the write hooks (audit, journal, cache) with its session.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Iterable

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo import errors as pm

from ..errors import AstroDBError, ValidationError, translate
from ..events import WriteEvent
from ..models import codec
from ..query import check_document_keys
from ..security.masking import masked_errors
from ..updates import CompiledUpdate
from .runtime import Runtime, utcnow
from .steps import hooks, run

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import ModelInfo
    from ..transactions import Transaction

__all__ = ["WriteRunner", "new_document"]

_CAS_ATTEMPTS = 8
_INDEX_NAME = re.compile(r"index[:\s]+'?([^\s']+)'?")
_ID_CHUNK = 10_000


def new_document(info: ModelInfo, data: Any) -> dict[str, Any]:
    """Validate ``data`` as a new document of the model and give it what the service keeps:
    a client-generated ``_id`` (so a retried insert can be recognised), ``createdAt`` /
    ``updatedAt`` and the Mongoose version key ``__v``."""
    if not isinstance(data, Mapping):
        raise ValidationError(errors={"data": f"must be a dict of field -> value, got {type(data).__name__}"})
    with masked_errors(info.cls):
        son = codec.encode_new(info.cls, data)
        check_document_keys(son)
    now = utcnow()
    son.setdefault("_id", ObjectId())
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
        attempts = 0

        def op() -> None:
            nonlocal attempts
            attempts += 1
            try:
                self.coll.insert_one(son, session=self.session)
            except pm.DuplicateKeyError as exc:
                self._name_key(exc.details)
                # A retry that finds our exact document under our own client-made _id met our
                # earlier attempt, whichever unique index (_id or e.g. email) the server named.
                if attempts > 1 and self._stored_equals([son]) == {0}:
                    return  # our own earlier attempt landed
                raise

        run.call(self.rt, self.info, "create", op, self.tx)
        self._emit("create", [son["_id"]], tuple(k for k in son if k != "_id"), documents=(son,))

    def insert_many(self, sons: list[dict[str, Any]]) -> dict[int, AstroDBError]:
        """Insert unordered; returns ``{position: error}`` for the documents the server refused."""
        if not sons:
            return {}
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
                for err in errors:
                    if err.get("code") == 11000:
                        self._name_key(err)
                own = self._stored_equals([sons[e["index"]] for e in errors]) if attempts > 1 else set()
                for n, err in enumerate(errors):
                    if n in own and err.get("code") == 11000:  # our own earlier attempt (see insert_one)
                        continue
                    refused[err["index"]] = translate(
                        pm.DuplicateKeyError(err.get("errmsg", ""), err.get("code"), err)
                        if err.get("code") == 11000 else pm.OperationFailure(err.get("errmsg", ""), err.get("code"), err),
                        operation="create_many", model=self.info.name,
                    )
                if exc.details.get("writeConcernErrors"):
                    raise

        run.call(self.rt, self.info, "create_many", op, self.tx)
        written = [son for i, son in enumerate(sons) if i not in refused]
        if written:
            fields = tuple(sorted({k for son in written for k in son if k != "_id"}))
            self._emit("create", [s["_id"] for s in written], fields, documents=tuple(written))
        return refused

    def _stored_equals(self, sons: list[dict[str, Any]]) -> set[int]:
        """Positions of ``sons`` whose exact document is already stored (our own landed write)."""
        if not sons:
            return set()
        stored = {d["_id"]: d for d in self.coll.find({"_id": {"$in": [s["_id"] for s in sons]}}, session=self.session)}
        return {i for i, son in enumerate(sons) if _same(stored.get(son["_id"]), son)}

    # --- updates -----------------------------------------------------------------------------

    def update_one(self, filt: dict[str, Any], compiled: CompiledUpdate) -> dict[str, Any] | None:
        update = _with_timestamp(compiled.update)
        if compiled.list_ops:
            return self._update_list_cas(filt, compiled, update)
        guarded = _merge(filt, compiled.guards)
        idempotent = not ({"$inc", "$push", "$addToSet"} & set(update))
        doc = run.call(self.rt, 
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
        return doc

    def update_many(self, filt: dict[str, Any], compiled: CompiledUpdate) -> int:
        if compiled.list_ops:
            ids = self._ids(filt)
            return sum(self._update_list_cas({"_id": i}, compiled, _with_timestamp(compiled.update)) is not None for i in ids)
        if compiled.guards:
            total = run.call(self.rt, self.info, "update_many", lambda: self.coll.count_documents(filt, session=self.session), self.tx)
            inside = run.call(self.rt, 
                self.info, "update_many",
                lambda: self.coll.count_documents(_merge(filt, compiled.guards), session=self.session), self.tx,
            )
            if inside != total:
                raise _out_of_range(compiled, total - inside)
        update = _with_timestamp(compiled.update)
        idempotent = not ({"$inc", "$push", "$addToSet"} & set(update))
        modified = 0
        for chunk in _chunks(self._ids(filt), _ID_CHUNK):
            scoped = _merge({"_id": {"$in": chunk}}, _merge(filt, compiled.guards))
            result = run.call(self.rt, 
                self.info, "update_many",
                self._naming(lambda scoped=scoped: self.coll.update_many(scoped, update, session=self.session)),
                self.tx, retry=idempotent,
            )
            modified += result.modified_count
            self._emit("update", chunk, tuple(compiled.fields))
        return modified

    def _update_list_cas(self, filt: dict[str, Any], compiled: CompiledUpdate, update: dict) -> dict[str, Any] | None:
        """Read the lists an update changes, validate the result, write if they are unchanged."""
        paths = sorted({path for _, path in compiled.list_ops})
        for _ in range(_CAS_ATTEMPTS):
            current = run.call(self.rt, self.info, "update", lambda: self.coll.find_one(filt, session=self.session), self.tx)
            if current is None:
                return None
            errors: dict[str, str] = {}
            for path in paths:
                try:
                    codec.encode_value(self.info.cls, path, _apply_list_ops(current, path, compiled.update))
                except ValidationError as exc:
                    errors.update(exc.errors)
            if errors:
                raise ValidationError(errors=errors)
            # Compare-and-set on the Mongoose version key, which Mongoose itself bumps on
            # array changes: the write lands only if nobody changed the document meanwhile.
            cas = {"_id": current["_id"], "__v": current.get("__v")}
            versioned = {**update, "$inc": {**update.get("$inc", {}), "__v": 1}}
            doc = run.call(self.rt, 
                self.info, "update",
                self._naming(lambda: self.coll.find_one_and_update(
                    _merge(cas, compiled.guards), versioned, return_document=ReturnDocument.AFTER, session=self.session
                )),
                self.tx, retry=False,
            )
            if doc is not None:
                self._emit("update", [doc["_id"]], tuple(compiled.fields), documents=(doc,))
                return doc
            if compiled.guards and self._exists(cas):
                raise _out_of_range(compiled)
        raise AstroDBError(f"update on {self.info.name}: the list changed concurrently {_CAS_ATTEMPTS} times; try again")

    # --- deletes -----------------------------------------------------------------------------

    def delete_one(self, filt: dict[str, Any]) -> bool:
        doc = run.call(self.rt, 
            self.info, "delete",
            lambda: self.coll.find_one_and_delete(filt, projection={"_id": 1}, session=self.session),
            self.tx,
        )
        if doc is None:
            return False
        self._emit("delete", [doc["_id"]], ())
        return True

    def delete_many(self, filt: dict[str, Any]) -> int:
        deleted = 0
        for chunk in _chunks(self._ids(filt), _ID_CHUNK):
            scoped = _merge({"_id": {"$in": chunk}}, filt)
            result = run.call(self.rt, 
                self.info, "delete_many", lambda scoped=scoped: self.coll.delete_many(scoped, session=self.session), self.tx
            )
            deleted += result.deleted_count
            self._emit("delete", chunk, ())
        return deleted

    # --- helpers -----------------------------------------------------------------------------

    def _naming(self, fn: Any) -> Any:
        """``fn`` with duplicate-key errors given their field names (see ``_name_key``)."""

        def call() -> Any:
            try:
                return fn()
            except pm.DuplicateKeyError as exc:
                self._name_key(exc.details)
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

    def _emit(self, action: str, ids: Iterable[Any], fields: tuple[str, ...], documents: tuple | None = None) -> None:
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


def _same(stored: dict | None, son: dict) -> bool:
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
    return a == b


def _with_timestamp(update: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {op: dict(spec) for op, spec in update.items()}
    out.setdefault("$set", {})["updatedAt"] = utcnow()
    return out


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


def _get(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _apply_list_ops(doc: dict[str, Any], path: str, update: dict[str, dict[str, Any]]) -> list[Any]:
    """The list at ``path`` after this update's $push / $addToSet / $pull, computed locally."""
    from mongomock_ng.filtering import filter_applies

    items = list(_get(doc, path) or [])
    for op in ("$pull", "$push", "$addToSet"):
        if path not in update.get(op, {}):
            continue
        arg = update[op][path]
        if op == "$pull":
            if isinstance(arg, dict) and arg and all(not k.startswith("$") for k in arg):
                items = [i for i in items if not (isinstance(i, dict) and filter_applies(arg, i))]
            elif isinstance(arg, dict):
                items = [i for i in items if not filter_applies({"v": arg}, {"v": i})]
            else:
                items = [i for i in items if i != arg]
            continue
        new = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
        for value in new:
            if op == "$push" or value not in items:
                items.append(value)
    return items


def _out_of_range(compiled: CompiledUpdate, count: int = 1) -> ValidationError:
    which = "the document" if count == 1 else f"{count} documents"
    message = f"$inc would leave {which} outside the field's range; nothing was changed"
    return ValidationError(errors={field: message for field in compiled.guards})
