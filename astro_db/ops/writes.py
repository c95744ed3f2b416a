"""The write strategies of one service call: inserts, guarded updates, expected revisions, bulk upserts, deletes, each returning its writes.

Inserts carry a client-generated ``_id``, so a retried insert that meets its own ``_id`` (the
first attempt reached the server but its reply was lost) counts as success, never a duplicate.
Updates validated by ``updates.compile_update`` are applied atomically on the server; ``$inc`` on a
bounded field carries a guard in the filter. An update that touches a list (whose rules: length,
order, uniqueness, item bounds, depend on the stored list) is read, applied locally
(``evaluate.apply_update``), validated as a whole document and written by compare-and-set on the
Mongoose version key ``__v`` (which it increments, as Mongoose does for array changes).
Every write advances the document's revision (``changes.revision``) in the same atomic command.
An update or delete given ``expected_revision`` carries that revision in its own filter and
tells a miss apart afterwards (``ConflictError``, nothing there, or its own landed write). A bulk
upsert (``upsert_many``) reads a batch's stored documents by key once, compares, and writes only
what changed in one unordered ``bulk_write`` (inserts by a client-made ``_id``, replaces by
compare-and-set on the revision), retrying the items a concurrent writer got to first; it
needs the server to hold a unique index on its key (``WriteRunner.require_unique``: looked up
once per model and key, then kept), which is what makes a key inserted meanwhile a duplicate.
Each strategy returns what it wrote (``events.Written``) to the after-write step
(``steps.hooks.after_write``), which tells the write hooks with the write's session: the query
cache, and the change records (``changes``: one record per document the write actually changed,
under the same retry and time bound as the write). A delete, which leaves nothing to rebuild a
record from, writes its record first as an intent and confirms it after. A write whose outcome
is unknown (a lost connection, a bound run out) is read back before it is reported, never
reported as simply failed (``WriteRunner._write``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import logging
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import bson
from pymongo import ReplaceOne, ReturnDocument
from pymongo import errors as pm

from ..changes import OP_FIELD, REV_FIELD, advance, last_revisions, new_op_id, recorded, revision_of
from ..changes.records import as_intent
from ..driver import timeouts
from ..errors import (
    AstroDBError,
    ChangeRecordError,
    ConfigError,
    ConflictError,
    DatabaseConnectionError,
    DuplicateKeyError,
    NotConnectedError,
    OperationTimeoutError,
    ValidationError,
    WriteOutcomeUnknown,
    translate,
)
from ..events import Change, Written, changes_of
from ..ids import new_id
from ..indexes import declared_indexes
from ..models import codec
from ..models.plan import DocPlan, doc_plan
from ..personal import erased_ids
from ..query.evaluate import apply_update
from ..query.filters import check_document_keys
from ..query.order import identity
from ..query.updates import CompiledUpdate
from ..security.audit import current_request_id
from ..security.fieldpaths import value_at
from ..security.masking import masked_errors
from . import bulk, sizes
from .runtime import Runtime, utcnow
from .steps import hooks, run

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MaybeActor, Session
    from ..driver.transactions import Transaction
    from ..registry import ModelInfo

__all__ = ["WriteRunner", "new_document", "UPSERT_BATCH", "Upserted"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_CAS_ATTEMPTS = 8
_INDEX_NAME = re.compile(r"index[:\s]+'?([^\s']+)'?")
_ID_CHUNK = 10_000
# Batches up to this size send their records in the same bulkWrite (ops.bulk); larger ones send
# one insert_many of documents and one of records: PyMongo encodes a client-level bulkWrite op by
# op in Python (about 30 µs per document more client CPU than insert_many on this machine), which
# outweighs one round trip saved per batch of more than a few dozen documents.
ONE_COMMAND_BATCH = 16
# Items per upsert_many batch: one find of the stored documents by key, one bulk write (one
# ``update`` command: well under the server's 100,000 writes and 48 MB per command).
UPSERT_BATCH = 1000
# Update operators a second application would apply again: such an update is not retried by us.
_NOT_IDEMPOTENT = frozenset({"$inc", "$push", "$addToSet"})
# what one upsert_many item wrote: its action, its image and the stored fields the image dropped
Mine = tuple[str, dict[str, Any], tuple[str, ...]]
# Mongoose's version key: every list-changing update advances it (the compare-and-set of lists).
VERSION_FIELD = "__v"
# Service fields: never part of what an upsert compares (the caller's content is).
_KEPT = frozenset({"_id", "createdAt", "updatedAt", VERSION_FIELD, REV_FIELD, OP_FIELD})


def new_document(info: ModelInfo, data: Any, made_id: Any = None) -> dict[str, Any]:
    """Validate ``data`` as a new document of the model and give it what the service keeps:
    a client-generated ``_id`` (so a retried insert can be recognised: ``made_id`` when given,
    one of a batch's ``ids.new_ids``, else a fresh ``ids.new_id``), ``createdAt`` / ``updatedAt``
    and the Mongoose version key ``__v`` (its revision, 0, is implied: ``changes.revision``)."""
    if type(data) is not dict and not isinstance(data, Mapping):  # a plain dict skips the ABC's check
        raise ValidationError(errors={"data": f"must be a dict of field -> value, got {type(data).__name__}"})
    try:
        cls = info.cls
        son = codec.encode_new(cls, data)
        closed = _KEYS_CLOSED.get(cls)  # _keys_closed, read in place once settled
        if not (closed if closed is not None else _keys_closed(cls)):  # free-form values (a GeoJSON dict) may carry any key
            check_document_keys(son)
    except ValidationError:
        with masked_errors(info.cls):  # masks the messages and re-raises (no context manager per valid call)
            raise
    now = utcnow()
    # _id first, as the server stores it (MongoDB moves it first on insert; the journal's image,
    # and a server that does not move it in every insert path, must see the same order)
    chosen = "_id" in son
    son = {"_id": son.pop("_id") if chosen else made_id if made_id is not None else new_id(), **son}
    son.setdefault("createdAt", now)
    son["updatedAt"] = now
    son.setdefault(VERSION_FIELD, 0)
    if chosen:  # an _id the caller chose may have had an earlier life (WriteRunner.continue_lives)
        son[REV_FIELD] = CONTINUED
    return son


_KEYS_CLOSED: dict[type, bool] = {}


def _keys_closed(cls: type) -> bool:
    """Whether a new document of ``cls`` as the codec makes it can hold no key but its plan's
    stored names (``DocPlan.closed``), and each of those passes ``check_document_keys``: then
    walking it for keys finds nothing. Settled once per class."""
    closed = _KEYS_CLOSED.get(cls)
    if closed is None:
        plan = doc_plan(cls)
        try:
            check_document_keys(_key_skeleton(plan))
            closed = plan.closed
        except ValidationError:
            closed = False
        closed = _KEYS_CLOSED.setdefault(cls, closed)
    return closed


def _key_skeleton(plan: DocPlan) -> dict[str, Any]:
    """Every key a document of ``plan`` can hold, at its depth (lists of documents as lists)."""
    out: dict[str, Any] = {}
    for fp in plan.fields:
        item = fp
        while item.item is not None:  # a list (of lists) of...
            item = item.item
        out[fp.stored] = _key_skeleton(item.sub) if item.sub is not None else None
        if fp.item is not None:
            out[fp.stored] = [out[fp.stored]]
    return out


class WriteRunner:
    """Carries out the writes of one call on one model, inside ``transaction`` if given.

    Each strategy (insert, update, list compare-and-set, delete) returns what it wrote, an
    ``events.Written``, to ``_after``: the after-write step (``steps.hooks.after_write``) that
    tells the write hooks, the change records among them. No strategy writes a record itself,
    except where the record must travel with the write: a create's one-command ``bulkWrite``
    and a delete's intent, written before the delete and confirmed after."""

    def __init__(self, rt: Runtime, info: ModelInfo, transaction: Transaction | None, session: Session, actor: MaybeActor) -> None:
        self.rt = rt
        self.info = info
        self.tx = transaction
        self.session = session
        self.actor = actor
        self.coll = rt.coll(info)
        self._found_out: tuple[float | None] | None = None  # a fresh bound's ms, once an unknown outcome was read back
        self._sent = 0  # attempts of a single update's driver call (a replay that matches nothing looks for its op id)
        #: whether any write of this call is applied (told to the after-write step outside a
        #: transaction): an error ending the call then says so (``stopped``), never "nothing was done"
        self.applied = False

    def _after(self, written: Written | None) -> None:
        """The one after-write step of every strategy (nothing written, nothing told). After a
        write whose outcome had to be read back, its records get a fresh bound too."""
        if written is None or not written.ids:
            return
        self._tell(written)

    def _tell(self, written: Written | Callable[[], Written | None]) -> None:
        """``written`` to the after-write step (``hooks.after_write``), under a fresh bound when
        the write's outcome had to be read back. ``_after`` calls it for a write with ids; an
        update sent as a plain ``update`` command, which knows none, calls it directly."""
        if self.tx is None:  # applied now (in a transaction, only its commit applies anything)
            self.applied = True
        if self._found_out is None:  # the call's own bound (no context manager to enter)
            hooks.after_write(self.rt, self.info, written, database=self.coll.database, session=self.session,
                              transaction=self.tx, actor=self.actor)
            return
        with self._bound_after():
            hooks.after_write(self.rt, self.info, written, database=self.coll.database, session=self.session,
                              transaction=self.tx, actor=self.actor)

    def stopped(self, error: AstroDBError) -> None:
        """``error`` ends the call: once any of its write was applied (a chunk of ``update_many``
        or ``delete_many``, the documents a list change updated before the next one failed, the
        write itself before what follows it), the error says ``applied = True``, as a
        ``ChangeRecordError`` does, whatever its class: an outage's ``DatabaseConnectionError``
        would otherwise read as "nothing was done, send it again" (the web integrations' 503 with
        ``Retry-After``), and a repeated ``$inc`` or ``$push`` would be applied twice. So does
        an error saying ``applied = None`` (the outcome of the part that failed is unknown, a
        ``WriteOutcomeUnknown``): what was applied before it is known, and the call did change
        data, so "do not send it again" (True), not "it may have been applied" (None)."""
        if self.applied and getattr(error, "applied", False) is not True:
            error.applied = True  # type: ignore[attr-defined]

    # --- inserts -----------------------------------------------------------------------------

    def continue_lives(self, sons: list[dict[str, Any]]) -> dict[Any, DuplicateKeyError]:
        """Give each new document whose ``_id`` the caller chose (``new_document`` marked it) the
        revision after the highest one recorded for that ``_id``: a document created again
        after a delete continues its ``_id``'s revisions, so its records order after its earlier
        life's (and a backup or restore never takes the second life for an old state). A fresh
        client-made ``_id`` has no past: no lookup (creates keep their one-command path).

        Returns the chosen ids that may not live again (keyed by ``query.order.identity``), each
        with the error the caller raises
        (or reports for that item): for the users' model, those of users erased (the erasure
        ledger, ``personal.erased_ids``: every restore skips an erased user's documents, so a
        new user under that id would be lost from every backup); for a ``self`` actor, any id
        with an earlier life (its trail would continue the earlier document's, whoever owned it,
        and her ``audit_trail`` would show it)."""
        chosen = []
        for son in sons:  # a loop, not a comprehension: a create's one document costs no call here
            if REV_FIELD in son and isinstance(son[REV_FIELD], _Continued):
                chosen.append(son["_id"])
        if not chosen:
            return {}
        database = self.coll.database
        refused: dict[Hashable, DuplicateKeyError] = {}  # by identity(_id), the server's equality
        if self.info is self.rt.registry.user_model:
            erased = run.call(self.rt, self.info, "create lookup", lambda: erased_ids(database, chosen, self.session),
                              self.tx)
            refused.update((identity(doc_id), _erased_id_error(self.info, doc_id)) for doc_id in erased)
        last: dict[Hashable, int] = {}
        if self.rt.changes.enabled:
            last = run.call(self.rt, self.info, "create lookup", lambda: last_revisions(database, self.info.name, chosen, self.session),
                            self.tx)
        scoped = self.actor is not None and self.actor.scoped
        for son in sons:
            if isinstance(son.get(REV_FIELD), _Continued):
                key = identity(son["_id"])
                before = last.get(key)
                if before is None:
                    del son[REV_FIELD]  # a first life: stored exactly as before (revision 0)
                else:
                    son[REV_FIELD] = before + 1
                    if scoped and key not in refused:
                        refused[key] = DuplicateKeyError(
                            f"{self.info.name} {son['_id']} was used by a document deleted since: a self actor's new "
                            "document takes an id of its own (its trail would continue the earlier one's)",
                            fields=("_id",))
        return refused

    def insert_one(self, son: dict[str, Any]) -> None:
        written = self._insert_one(son, later=True)
        if written is not None and (written.__class__ is partial or written.ids):  # ``_after``, inlined
            self._tell(written)

    def _insert_one(self, son: dict[str, Any], later: bool = False, whole: bool = True) -> Any:
        """What a single create wrote (``Written``, or None); ``later``: for a create sent alone
        (no records with it), the ``partial`` that makes it, so that the after-write step builds
        it only when a hook hears of the write (``hooks.after_write``: none does with change
        records off and a cache holding nothing of the model). ``whole=False``: never in one
        command with its record (the driver found that command too large)."""
        keys = tuple(son)  # ``_fields_of``, inlined: new_document puts ``_id`` first
        fields = keys[1:] if keys and keys[0] == "_id" else _fields_of(son)
        op_id = new_op_id()
        rt = self.rt
        if (whole and rt.one_command_writes and (rt.changes.audit or rt.changes.journal)  # records off: not asked
                and self._one_command()
                and not sizes.large(self.info.cls, [son])):  # a large one: two commands cost less (``ops.sizes``)
            return self._insert_recorded("create", [son], fields, op_id)[0]
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

        try:
            self._write("create", op, [son["_id"]], landed=lambda: bool(self._stored_equals([son])),
                        uncertain=lambda: self._records("create", [_created(son)], fields, op_id))
        except _Partly:
            pass  # it landed: recorded as any create
        if later:
            return partial(Written.one, "create", son, fields, op_id)
        return Written.one("create", son, fields, op_id)

    def insert_many(self, sons: list[dict[str, Any]]) -> dict[int, AstroDBError]:
        """Insert unordered; returns ``{position: error}`` for the documents the server refused."""
        if not sons:
            return {}
        written, refused = self._insert_many(sons)
        self._after(written)
        return refused

    def _insert_many(self, sons: list[dict[str, Any]],
                     whole: bool = True) -> tuple[Written | None, dict[int, AstroDBError]]:
        op_id = new_op_id()
        if whole and len(sons) <= ONE_COMMAND_BATCH and self._one_command() and not sizes.large(self.info.cls, sons):
            return self._insert_recorded("create_many", sons, self._fields(sons), op_id)
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
                    refused[err["index"]] = self._refusal(err, "create_many")
                if exc.details.get("writeConcernErrors"):
                    raise

        stored: set[int] = set()

        def landed() -> bool:
            stored.update(self._stored_equals(sons))
            return bool(stored)

        try:
            self._write("create_many", op, [s["_id"] for s in sons], landed=landed, uncertain=lambda: self._records(
                "create", [_created(son) for son in sons], self._fields(sons), op_id))
        except _Partly as partly:  # the outcome was found out: these landed, the others did not
            refused = {i: partly.error for i in range(len(sons)) if i not in stored}
        written = [son for i, son in enumerate(sons) if i not in refused] if refused else sons
        return _written("create", written, self._fields(written), op_id), refused

    @staticmethod
    def _fields(sons: list[dict[str, Any]]) -> tuple[str, ...]:
        """Every field name the documents hold but ``_id``, sorted (the keys gathered in C)."""
        return tuple(sorted(set().union(*sons).difference(("_id",))))

    def _one_command(self) -> bool:
        """Whether this create sends its documents and their change records in one command
        (``ops.bulk``): records on, outside a transaction (whose writes commit together anyway),
        none left pending from an earlier failure (those go the long way, which settles them),
        and a server that has the command."""
        rt = self.rt
        log = rt.changes
        if not (rt.one_command_writes and (log.audit or log.journal)) or self.tx is not None or log.waiting:
            return False
        if rt.bulk_write is None:  # asked until the client knows a server; then settled
            rt.bulk_write = bulk.supported(rt.gateway)
        return bool(rt.bulk_write)

    def _insert_recorded(self, operation: str, sons: list[dict[str, Any]], fields: tuple[str, ...],
                         op_id: Any) -> tuple[Written | None, dict[int, AstroDBError]]:
        """Insert ``sons`` with their change records in one ``bulkWrite`` (``ops.bulk``); returns
        what was written and ``{position: error}`` for the documents the server refused (a single
        create raises its refusal, as ``insert_one`` does). A retry leaves out what the first
        attempt wrote (the documents stored as sent, the records already there)."""
        changes = changes_of(sons)  # made once: for the records and for what was written
        records = self._records("create", changes, fields, op_id, pack=False)  # one record per document: ``bulk`` pairs them
        database = self.coll.database
        attempts = 0
        outcome = bulk.CLEAN  # what an attempt that ran sets
        too_large = False

        def op() -> None:
            nonlocal attempts, outcome, too_large
            attempts += 1
            written, there = ((self._stored_equals(sons), recorded(database, [r["_id"] for r in records], self.session))
                              if attempts > 1 else (set(), set()))
            try:
                outcome = bulk.insert_recorded(database, database.name, self.coll.name, sons, records,
                                               session=self.session, written=written, recorded=there)
            except pm.DocumentTooLarge:
                # Refused by PyMongo before sending (past the server's size for one command:
                # ``ops.sizes``). Only the first command of a first attempt can be: every later
                # one (after a refusal, or a retry's) carries a part of it. Nothing was written.
                if attempts > 1:
                    raise
                too_large = True
                return
            if operation == "create" and outcome.refused:
                raise self._driver_error(outcome.refused[0])

        stored: set[int] = set()

        def landed() -> bool:
            stored.update(self._stored_equals(sons))
            return bool(stored)

        try:
            self._write(operation, op, [s["_id"] for s in sons], landed=landed, uncertain=lambda: records)
        except _Partly as partly:  # found out after an unknown outcome: the records go the usual way
            refused = {i: partly.error for i in range(len(sons)) if i not in stored}
            written = [son for i, son in enumerate(sons) if i not in refused]
            return _written("create", written, fields, op_id), refused
        except AstroDBError as exc:
            if not bulk.not_supported(exc.__cause__ or exc):
                raise
            log.warning("the server has no bulkWrite command; creates send their change records separately")
            self.rt.bulk_write = False
            return self._in_two_commands(operation, sons)
        if too_large:
            log.debug("%s on %s: one bulkWrite with the change records would be too large; sent as two commands",
                      operation, self.info.name)
            return self._in_two_commands(operation, sons)
        if not outcome.refused and not outcome.unrecorded:  # all of it written (``_written``, with the changes made above)
            return Written("create", tuple([c[0] for c in changes]), fields, changes, tuple(sons), True, op_id), {}
        refused = {position: self._refusal(error, operation)
                   for position, error in sorted(outcome.refused.items())}
        written = [son for i, son in enumerate(sons) if i not in refused]
        if outcome.unrecorded:
            self._after(_written("create", written, fields, op_id, recorded=True))  # the write stands: announce it
            lost = [records[i] for i in outcome.unrecorded]
            raise self.rt.changes.unwritten(lost, f"{operation} on {self.info.name}", "the server refused the record")
        return _written("create", written, fields, op_id, recorded=True), refused

    def _in_two_commands(self, operation: str, sons: list[dict[str, Any]]) -> tuple[Written | None, dict[int, AstroDBError]]:
        """``_insert_recorded``'s answer when its one command cannot be sent (nothing was
        written): the documents, then their records, the path a large create takes."""
        if operation == "create_many":
            return self._insert_many(sons, whole=False)
        return self._insert_one(sons[0], whole=False), {}

    def _refusal(self, error: dict[str, Any], operation: str) -> AstroDBError:
        """A batch's per-document write error as the astro_db error a single write raises: a
        duplicate key names the caller's fields (a blind index's, ``emailIndex``, is ``email``)."""
        return translate(self._driver_error(error), operation=operation, model=self.info.name,
                         names=self.rt.crypto.blind_sources.get(self.info.name))

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
        stored = {identity(d["_id"]): d for d in self.coll.find({"_id": {"$in": [s["_id"] for s in sons]}},
                                                                session=self.session)}
        return {i for i, son in enumerate(sons) if _same(stored.get(identity(son["_id"])), son)}

    # --- upserts -----------------------------------------------------------------------------

    def upsert_many(self, items: list[tuple[dict[str, Any], dict[str, Any]]], on: tuple[str, ...],
                    scope: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[dict[int, Upserted], dict[int, AstroDBError]]:
        """Insert or replace each item by its unique key ``on`` (``items``: ``(plain, sealed)``
        new documents, keys distinct); returns ``{position: Upserted}`` and ``{position: error}``.

        Per batch of ``UPSERT_BATCH``: one ``find`` of the stored documents by key (``scope``
        narrows it to the actor's), a comparison in memory, then one unordered ``bulk_write`` of
        only what changed: a new key is a ``ReplaceOne`` by a fresh ``_id`` with ``upsert=True``
        (revision 0), a changed document a ``ReplaceOne`` by ``_id`` and compare-and-set on its
        revision (``_rev``: next revision), an identical one nothing at all. Every document
        written carries the batch's op id (``_op``), so a shortfall (a compare-and-set missed by a
        concurrent writer, a key inserted meanwhile, a retried command) is read back by it and
        the missed items are planned again from what is stored then. Each batch's creates and
        updates go to the after-write step (one change record per document changed)."""
        done: dict[int, Upserted] = {}
        refused: dict[int, AstroDBError] = {}
        if items:
            self.require_unique(on)
        positions = list(range(len(items)))
        for chunk in _chunks(positions, UPSERT_BATCH):
            self._upsert_batch(items, chunk, on, scope, done, refused)
        return done, refused

    def require_unique(self, on: tuple[str, ...]) -> None:
        """Refuse (``ConfigError``) unless the server holds a unique index ensuring ``on``: a
        unique index, not partial, on ``on``'s fields or some of them. Without one, two runs at
        once both read the key as absent and both insert it, and nothing tells them apart: the
        duplicate key error that makes a run retry the item as a replace never comes. Looked up
        (one ``listIndexes``, outside any transaction: the server refuses it inside one) on the
        first upsert of a model and key in this ``Database``, then kept (``Runtime.unique_keys``);
        forgotten when a batch finds two documents holding one key (``_by_keys``)."""
        seen = (self.info.collection, frozenset(on))
        if seen in self.rt.unique_keys or on == ("_id",):  # the _id index: on every collection, always unique
            return
        listed = run.call(self.rt, self.info, "upsert_many", lambda: list(self.coll.list_indexes()), None)
        if not any(_ensures(index, on) for index in listed):
            declared = next((spec["name"] for spec in declared_indexes(self.info)
                             if spec.get("unique") and {f for f, _ in spec["key"]} == set(on)), "?")
            twin = next((index for index in listed if set(index.get("key", {})) == set(on)), None)
            found = ("has none on these fields" if twin is None else
                     f"has {twin.get('name')} on them, which is {'partial' if twin.get('unique') else 'not unique'} "
                     f"(drop it first: sync_indexes takes it for the declared one)")
            raise ConfigError(
                f"upsert_many on {self.info.name} by ({', '.join(on)}) needs the unique index {declared} the model "
                f"declares, and the server's {self.info.collection} collection {found}: without it two runs at once "
                f"could both insert the same key; create it with db.sync_indexes() or `astro-db indexes sync` (with "
                f"ensure_indexes=True, the default, connect() does)", key="ensure_indexes")
        self.rt.unique_keys.add(seen)

    def _upsert_batch(self, items: list[tuple[dict[str, Any], dict[str, Any]]], chunk: list[int], on: tuple[str, ...],
                      scope: Callable[[dict[str, Any]], dict[str, Any]], done: dict[int, Upserted],
                      refused: dict[int, AstroDBError]) -> None:
        op_id = new_op_id()
        mine: dict[int, Mine] = {}  # written by this batch: position -> (action, image, fields it removed)
        taken: set[int] = set()  # inserts refused because the key was inserted meanwhile
        pending = list(chunk)
        try:
            for _ in range(_CAS_ATTEMPTS):
                if not pending:
                    break
                pending = self._upsert_round(items, pending, on, scope, op_id, mine, taken, done, refused)
            for position in pending:
                refused[position] = AstroDBError(
                    f"upsert_many on {self.info.name}: the document of item {position} changed concurrently "
                    f"{_CAS_ATTEMPTS} times; try again")
        finally:  # what landed is announced (and recorded) even if a later round failed
            for action in ("create", "update"):
                written = [(image, gone) for act, image, gone in mine.values() if act == action]
                images = [image for image, _ in written]
                removed = set().union(*(gone for _, gone in written))  # a replacement changes what it drops too
                self._after(_written(action, images, tuple(sorted(removed.union(self._fields(images)))), op_id))

    def _upsert_round(self, items: list[tuple[dict[str, Any], dict[str, Any]]], pending: list[int], on: tuple[str, ...],
                      scope: Callable[[dict[str, Any]], dict[str, Any]], op_id: Any,
                      mine: dict[int, Mine], taken: set[int], done: dict[int, Upserted],
                      refused: dict[int, AstroDBError]) -> list[int]:
        """One round: read the pending items' documents by key, write what changed; the
        positions to try again (a compare-and-set missed, a key inserted meanwhile)."""
        stored = self._by_keys([items[p][1] for p in pending], on, scope)
        ops: list[Any] = []
        planned: list[tuple[int, str, dict[str, Any]]] = []
        removing: dict[int, tuple[str, ...]] = {}  # an update's stored fields its replacement drops
        new: list[tuple[int, dict[str, Any]]] = []  # the inserts, written after the replacements
        for position in pending:
            plain, sealed = items[position]
            current = stored.get(_key(sealed, on))
            if current is _SEVERAL:
                refused[position] = ConfigError(
                    f"upsert_many on {self.info.name}: several documents hold this item's {', '.join(on)}: the unique "
                    f"index on them was missing when they were written; remove the duplicates, then create it "
                    f"(db.sync_indexes() or `astro-db indexes sync`)", key="ensure_indexes")
                continue
            if current is None:
                if position in taken:  # inserted meanwhile by a document this actor may not see
                    refused[position] = DuplicateKeyError(
                        f"upsert_many on {self.info.name}: a document with the same {', '.join(on)} already exists",
                        fields=on)
                    continue
                new.append((position, {**sealed, OP_FIELD: op_id}))
            elif _same_content(self._opened(current), plain):
                done[position] = Upserted("unchanged", current["_id"], current)
            else:
                if current["_id"] != sealed.get("_id") and self.rt.crypto.vault is not None:
                    sealed = self.rt.crypto.seal_document(self.info, {**plain, "_id": current["_id"]})  # bound to the stored _id
                image = _replacement(current, sealed, op_id)
                # a replacement, not $set/$unset: the server stores the image as it is, field
                # order included, so its change record (and a restore from it) holds what is stored
                ops.append(ReplaceOne(scope({"$and": [{"_id": current["_id"]}, _at_rev(revision_of(current))]}), image))
                planned.append((position, "update", image))
                removing[position] = tuple(k for k in current if k not in image)
        if new and on == ("_id",):  # an id the caller chose: its earlier lives (revisions, erasure, a self actor)
            lives = self.continue_lives([image for _, image in new])
            if lives:
                for position, image in new:
                    error = lives.get(identity(image["_id"]))
                    if error is not None:
                        refused[position] = error
                new = [(position, image) for position, image in new if position not in refused]
        for position, image in new:
            if not isinstance(image.get(REV_FIELD), int):
                image.pop(REV_FIELD, None)  # a first life: revision 0, implied
            # matched only by this batch's own insert (a retry replaces it with itself): an _id
            # stored already, even out of the actor's sight, makes it a duplicate key, never a replace
            ops.append(ReplaceOne({"_id": image["_id"], OP_FIELD: op_id}, image, upsert=True))
            planned.append((position, "create", image))
        if not ops:
            return []
        details = self._bulk_replace(ops, planned, op_id)
        creates = sum(1 for _, action, _ in planned if action == "create")
        errors = {e["index"]: e for e in (details or {}).get("writeErrors", [])}
        upserted = {u["index"] for u in (details or {}).get("upserted", [])}
        if details is not None and not errors and len(upserted) == creates and details.get("nMatched", 0) == len(ops) - creates:
            landed = {p for p, _, _ in planned}  # every write applied as planned: nothing to read
        else:  # a shortfall: which writes landed is read back by the op id they carry
            ids = [image["_id"] for _, _, image in planned]
            there = run.call(self.rt, self.info, "upsert_many", lambda: {
                identity(d["_id"]) for d in self.coll.find({"_id": {"$in": ids}, OP_FIELD: op_id}, {"_id": 1},
                                                           session=self.session)},
                self.tx)
            landed = {p for p, _, image in planned if identity(image["_id"]) in there}
        again: list[int] = []
        for n, (position, action, image) in enumerate(planned):
            if position in landed:
                mine[position] = (action, image, removing.get(position, ()))
                done[position] = Upserted("inserted" if action == "create" else "updated", image["_id"], image)
                continue
            error = errors.get(n)
            if error is not None and error.get("code") != 11000:
                refused[position] = self._refusal(error, "upsert_many")
                continue
            if error is not None:
                self._name_key(error)
                dup = self._refusal(error, "upsert_many")
                fields = set(getattr(dup, "fields", ()))
                if fields and fields not in ({"_id"}, set(on)):  # another unique index refused it
                    refused[position] = dup
                    continue
                taken.add(position)
            again.append(position)  # a compare-and-set missed, or the key was inserted meanwhile
        return again

    def _by_keys(self, sons: list[dict[str, Any]], on: tuple[str, ...],
                 scope: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[Hashable, dict[str, Any]]:
        """The stored documents (in the actor's scope) holding the keys of ``sons``, by key."""
        filt = _keys_filter(sons, on)
        found = run.call(self.rt, self.info, "upsert_many",
                         lambda: list(self.coll.find(scope(filt), session=self.session)), self.tx)
        stored = {_key(doc, on): doc for doc in found}
        if len(stored) < len(found):  # a key held twice: the unique index is gone (or was, for a while)
            self.rt.unique_keys.discard((self.info.collection, frozenset(on)))  # looked up again next call
            for key in {k for k, n in Counter(_key(doc, on) for doc in found).items() if n > 1}:
                stored[key] = _SEVERAL
        return stored

    def _bulk_replace(self, ops: list[Any], planned: list[tuple[int, str, dict[str, Any]]],
                      op_id: Any) -> dict[str, Any] | None:
        """The round's writes in one unordered ``bulk_write``; the server's answer (``nMatched``,
        ``upserted``, ``writeErrors``), or None when its outcome had to be read back. A retry
        sends the same writes: a replace already applied misses its compare-and-set, an insert
        already applied replaces itself with itself; the op-id read-back tells both apart."""
        def op() -> dict[str, Any]:
            try:
                return dict(self.coll.bulk_write(ops, ordered=False, session=self.session).bulk_api_result)
            except pm.BulkWriteError as exc:
                if exc.details.get("writeConcernErrors"):
                    raise
                return dict(exc.details)

        ids = [image["_id"] for _, _, image in planned]

        def landed() -> bool:
            return self.coll.find_one({"_id": {"$in": ids}, OP_FIELD: op_id}, {"_id": 1}, session=self.session) is not None

        def uncertain() -> list[dict[str, Any]]:
            return [*self._records("create", [_created(i) for _, a, i in planned if a == "create"], (), op_id),
                    *self._records("update", [_created(i) for _, a, i in planned if a == "update"], (), op_id)]

        try:
            return self._write("upsert_many", op, ids, landed=landed, uncertain=uncertain)
        except _Partly:
            return None

    def _opened(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A stored document with its sensitive values opened (compared as plaintext: a random
        nonce makes two sealings of one value differ)."""
        crypto = self.rt.crypto
        if not crypto.enabled or not crypto.fields.get(self.info.name):
            return doc
        plain = copy.deepcopy(doc)
        crypto.open_document(self.info, plain)
        return plain

    # --- updates -----------------------------------------------------------------------------

    def update_one(self, filt: dict[str, Any], compiled: CompiledUpdate, *,
                   expected_revision: int | None = None, returning: bool = True) -> dict[str, Any] | None:
        """Update the first document matching ``filt``; its post-image, or None. With
        ``expected_revision``, only if that document is still at that revision: the revision is
        part of the write's own filter (one atomic compare-and-set, nothing read first), and a
        miss is told apart afterwards: ``ConflictError`` (it is at another revision, read back),
        None (nothing matches), or our own write found landed (a retried call). With
        ``returning=False`` the caller does not want the document: what is read back is what
        the write hooks need (``hooks.post_image``), so the document returned may be only its
        ``_id``, revision, op id and ``updatedAt``; when they need nothing (``hooks.stampless``)
        a plain ``update`` command is sent and the document returned is empty (``{}``)."""
        op_id = new_op_id()
        if expected_revision is not None:
            pinned = self._pinned("update", filt)
            if pinned is None:
                return None
            filt = pinned
        at = filt if expected_revision is None else {"$and": [filt, _at_rev(expected_revision)]}
        if returning:
            projection = None
            written, doc = self._update_one(at, compiled, op_id)
        else:
            projection = hooks.post_image(self.rt)
            bare = projection is not None and hooks.stampless(self.rt, self.info, self.tx)
            written, doc = self._update_one(at, compiled, op_id, projection, bare)
        if doc is None and expected_revision is not None:
            doc = self._own_or_conflict("update", filt, expected_revision, op_id, projection)
            if doc is not None:
                written = (_written("update", [doc], tuple(compiled.fields), op_id) if projection is None
                           else self._unimaged(doc, tuple(compiled.fields), op_id))
        if written is not None:  # one with no ids (a plain update command's) is told too: ``_tell``
            self._tell(written)
        return doc

    def _pinned(self, operation: str, filt: dict[str, Any]) -> dict[str, Any] | None:
        """The filter of a write at an expected revision, narrowed to one document: a revision is
        one document's, the one the write would change (the first match of ``filt``). A filter
        that names an ``_id`` or a unique key is that already (nothing is read); any other is matched first and
        the write is pinned to its first match's ``_id`` (None: nothing matches). Else the
        compare-and-set would change whichever match is still at that revision: another
        document than the one read, while the one read had changed."""
        if _names_one(filt, self.info):
            return filt
        first = run.call(self.rt, self.info, f"{operation} revision check",
                         lambda: self.coll.find_one(filt, {"_id": 1}, session=self.session), self.tx)
        if first is None:
            return None
        return {"$and": [{"_id": first["_id"]}, filt]}

    def _own_or_conflict(self, operation: str, filt: dict[str, Any], expected: int, op_id: Any,
                         projection: dict[str, int] | None = None) -> dict[str, Any] | None:
        """After a write at ``expected`` revision matched nothing: the document the write itself
        changed (its op id is on it: an earlier attempt of this call landed), or None if nothing
        matches ``filt`` at all; else ``ConflictError`` naming the revision it is at now.
        ``projection``: what of it to read (it must hold the revision and op id)."""
        current: dict[str, Any] | None = run.call(
            self.rt, self.info, f"{operation} revision check",
            lambda: self.coll.find_one(filt, projection, session=self.session), self.tx)
        if current is None:
            return None
        if op_id is not None and current.get(OP_FIELD) == op_id:
            return current
        now = revision_of(current)
        raise ConflictError(
            f"{operation} on {self.info.name}: document {current['_id']} is at revision {now}, not the expected "
            f"revision {expected} (it was changed since it was read); nothing was written. Read it again and retry "
            f"with expected_revision={now}", current_revision=now, expected_revision=expected)

    def _update_one(self, filt: dict[str, Any], compiled: CompiledUpdate, op_id: Any = None,
                    projection: dict[str, int] | None = None, bare: bool = False,
                    ) -> tuple[Written | None, dict[str, Any] | None]:
        """``projection``: what of the post-image to read back (None: all of it, and the write
        hooks are told it); a list change or a per-document seal reads the whole document anyway.
        ``bare`` (``hooks.stampless``; ``projection`` is then ``STAMP``): nothing is read back, an
        ``update`` command is sent and answered by its matched count; what it wrote has no ids (a
        lost reply is still read back by the op id, in ``projection``)."""
        op_id = op_id if op_id is not None else new_op_id()
        update = advance(compiled.update, op_id)
        # list_roots: touches_lists, read in place; a per-document seal needs a key vault (no call without one)
        if compiled.list_roots or (self.rt.crypto.vault is not None and (
                self._per_document(compiled) or self.rt.crypto.moves_owner(self.info, compiled.update))):
            return self._update_list_cas(filt, compiled, update, op_id)
        guarded = _merge(filt, compiled.guards) if compiled.guards else filt
        idempotent = _NOT_IDEMPOTENT.isdisjoint(compiled.update)
        found: list[dict[str, Any]] = []  # _stamped, without a closure or a call: the read-back is a partial
        landed = partial(self._landed_by_op, op_id, projection, found)
        try:
            if bare:
                if self._write("update", partial(self._update_command, guarded, update), [], retry=idempotent,
                               landed=landed):
                    return Written("update", (), tuple(compiled.fields), (), None, False, op_id), {}
                doc: dict[str, Any] | None = None
            else:
                doc = self._write(
                    "update", partial(self._find_and_update, guarded, update, projection), [], retry=idempotent,
                    landed=landed)
        except _Partly:
            doc = found[0]
        if doc is None:
            # a replay (a lost reply, the run step's retry) that matched nothing: the first attempt may
            # have landed and moved the document out of the filter; its op id tells
            if self._sent > 1 and run.call(self.rt, self.info, "update outcome check", landed):
                doc = found[0]
            elif compiled.guards and self._exists(filt):
                raise _out_of_range(compiled)
            else:
                return None, None
        if projection is not None:
            return self._unimaged(doc, tuple(compiled.fields), op_id), doc
        return Written.one("update", doc, tuple(compiled.fields), op_id), doc  # ``_written`` of one document

    def _find_and_update(self, filt: dict[str, Any], update: dict[str, Any],
                         projection: dict[str, int] | None = None) -> dict[str, Any] | None:
        """An update's driver call (its attempt is a ``partial`` of it): the post-image (what
        ``projection`` keeps of it), or None; a duplicate key named by its fields (``_naming``,
        without a closure per call)."""
        self._sent += 1
        try:
            doc: dict[str, Any] | None = self.coll.find_one_and_update(
                filt, update, projection=projection, return_document=ReturnDocument.AFTER, session=self.session)
        except pm.DuplicateKeyError as exc:
            self._name_key(cast("dict[str, Any] | None", exc.details))  # a dict at runtime; filled in place
            raise
        return doc

    def _update_command(self, filt: dict[str, Any], update: dict[str, Any]) -> bool:
        """The driver call of an update that reads nothing back (``update_one``: an ``update``
        command): whether it matched a document; a duplicate key named by its fields."""
        self._sent += 1
        try:
            matched: int = self.coll.update_one(filt, update, session=self.session).matched_count
        except pm.DuplicateKeyError as exc:
            self._name_key(cast("dict[str, Any] | None", exc.details))  # a dict at runtime; filled in place
            raise
        return matched > 0

    def _stamped(self, op_id: Any, projection: dict[str, int] | None = None,
                 ) -> tuple[Callable[[], bool], list[dict[str, Any]]]:
        """The read-back of an update whose outcome is unknown: every update stamps its op id
        (``_op``), so a document carrying it is the update's post-image (put in the list;
        ``projection``: what of it)."""
        found: list[dict[str, Any]] = []
        return partial(self._landed_by_op, op_id, projection, found), found

    def _landed_by_op(self, op_id: Any, projection: dict[str, int] | None, found: list[dict[str, Any]]) -> bool:
        """``_stamped``'s read-back: whether a document carries ``op_id`` (put in ``found``)."""
        doc = self.coll.find_one({OP_FIELD: op_id}, projection, session=self.session)
        if doc is None:
            return False
        found.append(doc)
        return True

    @staticmethod
    def _unimaged(doc: dict[str, Any], fields: tuple[str, ...], op_id: Any) -> Written:
        """What a single update wrote when ``doc`` holds only what ``hooks.STAMP`` reads back:
        the write hooks are told its revision and time, and no post-image."""
        return Written("update", (doc["_id"],), fields, (Change(doc["_id"], revision_of(doc), doc.get("updatedAt"), None),),
                       None, False, op_id)

    def _per_document(self, compiled: CompiledUpdate) -> bool:
        """Whether the update sets a randomly encrypted field: its value is sealed for each
        document (bound to that document's ``_id``, under its owner's data key), so the write
        reads the document first and goes by compare-and-set, as a list change does."""
        return self.rt.crypto.vault is not None and self.rt.crypto.has_pending(compiled.update)

    def update_many(self, filt: dict[str, Any], compiled: CompiledUpdate) -> int:
        if compiled.touches_lists or self._per_document(compiled) or self.rt.crypto.moves_owner(self.info, compiled.update):
            modified = 0
            for listed in self._ids(filt):
                # the caller's filter stays in the compare-and-set: a document that stopped
                # matching after it was listed is left alone
                try:
                    written, doc = self._update_list_cas(_merge(filt, {"_id": listed["_id"]}), compiled,
                                                         *_advanced(compiled))
                except AstroDBError as stopped:
                    if modified and self.tx is None:  # each one before is written and recorded: say so
                        stopped.args = (f"{stopped.args[0] if stopped.args else stopped}; {modified} document(s) were "
                                        "updated before it failed (their change records are written), the others were not",
                                        *stopped.args[1:])
                    raise
                self._after(written)
                modified += doc is not None
            return modified
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
        update, op_id = _advanced(compiled)
        idempotent = _NOT_IDEMPOTENT.isdisjoint(compiled.update)
        changes = self.rt.changes
        projection = None if changes.journal else hooks.STAMP  # the journal needs post-images; the rest, the stamp
        modified = 0
        for chunk in _chunks([d["_id"] for d in self._ids(filt)], _ID_CHUNK):
            scoped = _merge({"_id": {"$in": chunk}, OP_FIELD: {"$ne": op_id}}, _merge(filt, compiled.guards))
            tagged = {"_id": {"$in": chunk}, OP_FIELD: op_id}
            found: list[dict[str, Any]] = []

            def landed(tagged: dict[str, Any] = tagged, found: list[dict[str, Any]] = found) -> bool:  # stamped with our op id
                found.extend(self.coll.find(tagged, projection, session=self.session))
                return bool(found)

            try:
                result = self._write(
                    "update_many", self._naming(lambda scoped=scoped: self.coll.update_many(scoped, update, session=self.session)),
                    chunk, retry=idempotent, landed=landed, partial=True)
            except _Partly as partly:  # some landed before it failed: they are recorded, the call still fails
                self._after(Written("update", tuple(d["_id"] for d in found), tuple(compiled.fields),
                                    tuple(_updated(d) for d in found), op_id=op_id))
                error = partly.error
                error.args = (f"{error.args[0] if error.args else error}; {modified + len(found)} document(s) were updated "
                              "before it failed (their change records are written), the others were not", *error.args[1:])
                raise error from error.__cause__
            mine = self._read_back({"_id": {"$in": chunk}, OP_FIELD: op_id}, projection, chunk) if changes.enabled else []
            if changes.enabled and len(mine) < result.modified_count:
                log.warning("update_many on %s: %d document(s) were changed again before their records were read; "
                            "their later records carry the state", self.info.name, result.modified_count - len(mine))
            modified += max(result.modified_count, len(mine))
            ids = tuple(d["_id"] for d in mine) or (tuple(chunk) if result.modified_count else ())
            self._after(Written("update", ids, tuple(compiled.fields), tuple(_updated(d) for d in mine), op_id=op_id))
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

    def _update_list_cas(self, filt: dict[str, Any], compiled: CompiledUpdate, update: dict[str, Any],
                         op_id: Any) -> tuple[Written | None, dict[str, Any] | None]:
        """Read the document, validate the whole document the update makes of it, and write the
        update only if the document is still the one read and still matches ``filt`` (the
        caller's filter, which stays in the compare-and-set): a compare-and-set on the Mongoose
        version key ``__v``, which every list-touching update increments (as Mongoose does for
        array changes), so a write validated against a stale list never lands.

        An update that moves the document to another owner (``FieldCrypto.moves_owner``) sets
        every field holding a sealed value to its value sealed again under the new owner's data
        key (``FieldCrypto.seal_for_owner``), as the lists are set: a value left under the previous
        owner's key would be lost with that owner's erasure and outlive the new owner's. Its
        compare-and-set is on the revision too, which every write advances."""
        crypto = self.rt.crypto
        moving = crypto.vault is not None and crypto.moves_owner(self.info, compiled.update)
        roots = (*compiled.list_roots, *(sorted(crypto.roots(self.info) - set(compiled.list_roots)) if moving else ()))
        fields = (*compiled.fields, VERSION_FIELD, *(roots if moving else ()))
        for _ in range(_CAS_ATTEMPTS):
            current = run.call(self.rt, self.info, "update", lambda: self.coll.find_one(filt, session=self.session), self.tx)
            if current is None:
                return None, None
            bound = self._bound(update, current)
            after = self._checked_post_image(current, bound)
            cas = _merge(filt, {"_id": current["_id"], VERSION_FIELD: current.get(VERSION_FIELD)})
            if moving:
                after = crypto.seal_for_owner(self.info, after, current)
                cas[REV_FIELD] = current.get(REV_FIELD)
            versioned = _lists_as_validated(bound, after, roots)
            landed, found = self._stamped(op_id)
            try:
                doc: dict[str, Any] | None = self._write(
                    "update", self._naming(lambda cas=cas, versioned=versioned: self.coll.find_one_and_update(
                        _merge(cas, compiled.guards), versioned, return_document=ReturnDocument.AFTER, session=self.session
                    )), [current["_id"]], retry=False, landed=landed)
            except _Partly:
                doc = found[0]
            if doc is not None:  # the compare-and-set advanced the version key too
                return _written("update", [doc], fields, op_id), doc
            if compiled.guards and self._exists(cas):
                raise _out_of_range(compiled)
        raise AstroDBError(f"update on {self.info.name}: the document changed concurrently {_CAS_ATTEMPTS} times; try again")

    def _bound(self, update: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """``update`` with its values for encrypted fields sealed for ``current`` (its ``_id`` and
        owner; an update moving the document to another owner seals under the new owner's key)."""
        crypto = self.rt.crypto
        if crypto.vault is None or not crypto.has_pending(update):
            return update
        owner = crypto.owners.get(self.info.name)
        target = current
        if owner and owner != "_id" and crypto.moves_owner(self.info, update):
            target = apply_update(current, {"$set": {k: v for k, v in update["$set"].items()
                                                     if k == owner or owner.startswith(k + ".")}})
        bound: dict[str, Any] = crypto.bind_update(self.info, update, target)
        return bound

    def _checked_post_image(self, current: dict[str, Any], update: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The document ``update`` makes of ``current``, validated as a new one is (list rules and
        bounds included); raises, having written nothing, if it does not pass."""
        after = apply_update(current, update)
        plain = after
        crypto = self.rt.crypto
        if crypto.enabled:
            plain = copy.deepcopy(after)
            crypto.open_document(self.info, plain, moved_from=current)  # validated as plaintext, written sealed
        with masked_errors(self.info.cls):
            codec.validate_stored(self.info.cls, plain)
        return after

    # --- deletes -----------------------------------------------------------------------------

    def delete_one(self, filt: dict[str, Any], *, expected_revision: int | None = None) -> bool:
        """Delete the first document matching ``filt``; whether one was deleted. With
        ``expected_revision``, only if it is still at that revision (``ConflictError`` if it is
        at another; False if nothing matches)."""
        if expected_revision is not None:
            pinned = self._pinned("delete", filt)
            if pinned is None:
                return False
            filt = pinned
        at = filt if expected_revision is None else {"$and": [filt, _at_rev(expected_revision)]}
        written = self._delete_one("delete", at)
        if written is None and expected_revision is not None:
            self._own_or_conflict("delete", filt, expected_revision, None)
        self._after(written)
        return written is not None

    def delete_many(self, filt: dict[str, Any]) -> int:
        """Delete document by document, so the caller records exactly the documents it deleted,
        even when other callers delete the same ones at the same time. Costs one round trip per
        document (see docs/security.md), plus, with change records on and outside a
        transaction, one for the chunk's intents and one for their confirmation."""
        deleted = 0
        for chunk in _chunks(self._ids(filt), _ID_CHUNK):
            written: Written | None = None
            if self._intents():
                written = self._delete_intended("delete_many", filt, chunk)
                self._after(written)
            else:
                gone: list[dict[str, Any]] = []
                try:
                    for listed in chunk:
                        doc = self._find_and_delete("delete_many", _merge({"_id": listed["_id"]}, filt))
                        if doc is not None:
                            gone.append(doc)
                finally:  # what was deleted is announced (and recorded, in a transaction) even if a later delete failed
                    written = _deleted_all(gone, new_op_id())
                    self._after(written)
            deleted += len(written.ids) if written is not None else 0
        return deleted

    def _intents(self) -> bool:
        """Whether deletes write their records as intents first: records on, outside a
        transaction (in one, the delete and its record commit or abort together)."""
        return self.rt.changes.enabled and self.tx is None

    def _delete_one(self, operation: str, filt: dict[str, Any]) -> Written | None:
        """Delete one document matching ``filt``; what was deleted, or None if nothing matched."""
        if not self._intents():
            doc = self._find_and_delete(operation, filt)
            return _deleted_all([doc] if doc is not None else [], new_op_id())
        for _ in range(_CAS_ATTEMPTS):
            current = run.call(self.rt, self.info, "find_ids",
                                lambda: self.coll.find_one(filt, {"_id": 1, REV_FIELD: 1}, session=self.session), self.tx)
            if current is None:
                return None
            written = self._delete_intended(operation, filt, [current])
            if written is not None:
                return written
        raise AstroDBError(f"delete on {self.info.name}: the document changed concurrently {_CAS_ATTEMPTS} times; try again")

    def _delete_intended(self, operation: str, filt: dict[str, Any], listed: list[dict[str, Any]]) -> Written | None:
        """Delete the ``listed`` documents (``_id`` and revision, as read) that still match
        ``filt`` at that revision, each record written first as an intent and confirmed once its
        delete is applied (``changes.log``): a process killed in between leaves an intent
        ``reconcile_changes()`` settles, never a delete without a record. A document changed
        since it was listed is deleted by ``_delete_one`` (read again, its own intent)."""
        changes, database = self.rt.changes, self.coll.database
        op_id = new_op_id()
        records = self._records("delete", [_deleting(d) for d in listed], (), op_id)
        done: list[int] = []
        one_command = self._one_command()
        if one_command:  # the intents and the deletes in one command (ops.bulk)
            try:
                done = self._delete_in_one_command(operation, filt, listed, records)
            except WriteOutcomeUnknown:
                raise  # the intents stay: reconcile settles them
            except AstroDBError as exc:
                if not bulk.not_supported(exc.__cause__ or exc):
                    self._settle_intents(operation, listed, records, [], range(len(listed)), op_id)
                    raise
                log.warning("the server has no bulkWrite command; deletes send their intents separately")
                self.rt.bulk_write = one_command = False  # nothing was written: the long way
        if not one_command:
            changes.intend(self._runner("delete intent"), database, records, self.session)
            at = 0
            try:
                for at, doc in enumerate(listed):
                    if self._cas_delete(operation, filt, doc):
                        done.append(at)
                at = len(listed)
            except Exception:
                # the one that failed keeps its intent (reconcile settles it); those not tried drop theirs
                self._settle_intents(operation, listed, records, done, range(at + 1, len(listed)), op_id, announce=True)
                raise
        missed = [i for i in range(len(listed)) if i not in done]
        self._settle_intents(operation, listed, records, done, missed, op_id)
        again: list[Written] = []
        if len(listed) > 1:
            for i in missed:  # changed since it was listed: deleted if it still matches, read again
                w = self._delete_one(operation, _merge({"_id": listed[i]["_id"]}, filt))
                if w is not None:
                    again.append(w)
        if not done and not again:
            return None
        ids = tuple(listed[i]["_id"] for i in done) + tuple(x for w in again for x in w.ids)
        chg = tuple(_deleting(listed[i]) for i in done) + tuple(c for w in again for c in w.changes)
        return Written("delete", ids, (), chg, recorded=True, op_id=op_id)

    def _settle_intents(self, operation: str, listed: list[dict[str, Any]], records: list[dict[str, Any]],
                        done: list[int], missed: Iterable[int], op_id: Any, *, announce: bool = False) -> None:
        """Confirm the intents of the deletes applied, drop those of the deletes that deleted
        nothing; with ``announce`` (a later delete failed), tell the hooks of those applied, as
        when the confirmation fails (``ChangeRecordError``: the deletes stand)."""
        changes, database, run_ = self.rt.changes, self.coll.database, self._runner("delete intent")
        changes.drop(run_, database, [records[i] for i in missed])
        if not done:
            return
        written = Written("delete", tuple(listed[i]["_id"] for i in done), (), tuple(_deleting(listed[i]) for i in done),
                          recorded=True, op_id=op_id)
        if announce:
            self._after(written)
        try:
            changes.confirm(run_, database, [records[i] for i in done], what=f"{operation} on {self.info.name}")
        except ChangeRecordError:
            if not announce:
                self._after(written)
            raise

    def _delete_in_one_command(self, operation: str, filt: dict[str, Any], listed: list[dict[str, Any]],
                               records: list[dict[str, Any]]) -> list[int]:
        """The intents of ``records`` and the compare-and-set deletes of ``listed`` in one
        ``bulkWrite``; the positions deleted. A retry leaves out the intents already there and
        counts a document its first attempt deleted (gone now) as deleted."""
        database = self.coll.database
        filters = [{"$and": [filt, {"_id": doc["_id"]}, _at_rev(revision_of(doc))]} for doc in listed]
        intents = [as_intent(r) for r in records]
        attempts = 0

        def gone() -> set[int]:
            ids = [doc["_id"] for doc in listed]
            there = {identity(d["_id"]) for d in self.coll.find({"_id": {"$in": ids}}, {"_id": 1}, session=self.session)}
            return {i for i, doc in enumerate(listed) if identity(doc["_id"]) not in there}

        def op() -> list[int]:
            nonlocal attempts
            attempts += 1
            intended = recorded(database, [r["_id"] for r in intents], self.session) if attempts > 1 else set()
            flags = bulk.delete_intended(database, database.name, self.coll.name, intents, filters,
                                         session=self.session, intended=intended)
            if attempts > 1 and not all(flags):
                away = gone()
                flags = [f or i in away for i, f in enumerate(flags)]
            return [i for i, deleted in enumerate(flags) if deleted]

        found: set[int] = set()

        def landed() -> bool:
            found.update(gone())
            return bool(found)

        try:
            return self._write(operation, op, [doc["_id"] for doc in listed], landed=landed, intent=True)
        except _Partly:
            return sorted(found)

    def _cas_delete(self, operation: str, filt: dict[str, Any], doc: dict[str, Any]) -> bool:
        """Delete ``doc`` if it still matches ``filt`` at the revision it was read at; whether it
        did. A retry that finds it gone met its own first attempt."""
        cas = {"$and": [filt, {"_id": doc["_id"]}, _at_rev(revision_of(doc))]}
        attempts = 0

        def op() -> bool:
            nonlocal attempts
            attempts += 1
            if self.coll.delete_one(cas, session=self.session).deleted_count == 1:
                return True
            return attempts > 1 and self.coll.find_one({"_id": doc["_id"]}, {"_id": 1}, session=self.session) is None

        def landed() -> bool:
            return self.coll.find_one({"_id": doc["_id"]}, {"_id": 1}, session=self.session) is None

        try:
            return bool(self._write(operation, op, [doc["_id"]], landed=landed, intent=True))
        except _Partly:
            return True

    def _find_and_delete(self, operation: str, filt: dict[str, Any]) -> dict[str, Any] | None:
        """Delete one document; its ``_id`` and last revision, or None if none matched."""
        doc: dict[str, Any] | None = run.call(self.rt,
            self.info, operation,
            lambda: self.coll.find_one_and_delete(filt, projection={"_id": 1, REV_FIELD: 1}, session=self.session),
            self.tx,
        )
        return doc

    # --- outcomes and records ----------------------------------------------------------------

    def _write(self, operation: str, fn: Callable[[], T], ids: list[Any], *, landed: Callable[[], bool],
               retry: bool = True, uncertain: Callable[[], list[dict[str, Any]]] | None = None,
               intent: bool = False, partial: bool = False) -> T:
        """``fn`` (the write's driver call) through the run step. If it fails in a way that says
        nothing of whether the server applied it (a lost connection, a time bound run out),
        the outcome is found out, never guessed: ``landed()`` reads it back under a fresh bound;
        if it landed, ``_Partly`` tells the strategy to go on as for a success; if not, the
        error is raised as it is (nothing was written); if the read fails too, the write's
        records are kept as uncertain (``uncertain()``; a delete's intent stays where it is) and
        ``WriteOutcomeUnknown`` says what to do. ``partial``: a write of many documents, which
        the server applies one document at a time and stops at the first it refuses (a
        duplicate key, its schema validator): after any error the server answered, the documents
        it wrote before are read back the same way (``_Partly`` when there are some). Inside a
        transaction the error stands: the transaction aborts, or its retry runs the whole unit
        again."""
        error: AstroDBError
        try:
            return run.call(self.rt, self.info, operation, fn, self.tx, retry=retry)
        except (DatabaseConnectionError, OperationTimeoutError) as exc:
            if self.tx is not None or not _maybe_applied(exc):
                raise
            error = exc
        except AstroDBError as exc:
            # a refusal of one document (a taken key, the schema validator, an operator that does
            # not apply to its value) the server answered; not one of the whole command (its
            # permissions, its query), which it refuses before writing anything
            if (not partial or self.tx is not None or exc.__cause__ is None
                    or type(exc) not in (DuplicateKeyError, ValidationError, AstroDBError)):
                raise
            error = exc
        bound = timeouts.current_bound(self.rt.config.timeouts.operation_timeout_ms)
        try:
            with timeouts.afresh(bound.ms if bound is not None else None, f"{operation} outcome check"):
                found = run.call(self.rt, self.info, f"{operation} outcome check", landed)
        except AstroDBError as check:
            if not isinstance(error, (DatabaseConnectionError, OperationTimeoutError)):  # the server did answer
                log.error("%s on %s stopped (%s) and which documents it had updated could not be read back (%s); "
                          "run reconcile_changes()", operation, self.info.name, type(error).__name__, type(check).__name__)
                error.args = (f"{error.args[0] if error.args else error}; which documents were updated before it "
                              f"stopped could not be read back ({type(check).__name__}): run reconcile_changes()",
                              *error.args[1:])
                raise error from check
            records = uncertain() if uncertain is not None else []
            if records and self.rt.changes.enabled:
                self.rt.changes.keep_uncertain(records)
            log.error("%s on %s: outcome unknown (%s, then the read-back failed: %s); %s", operation, self.info.name,
                      type(error).__name__, type(check).__name__,
                      "its delete intent is left to reconcile_changes()" if intent else
                      "its change records are kept for reconcile_changes()")
            raise WriteOutcomeUnknown(
                f"{operation} on {self.info.name}: the server may or may not have applied it ({error}); reading it back "
                f"failed too ({type(check).__name__}). Do not repeat a write that is not idempotent: read the document "
                "back by its id once the server answers; reconcile_changes() records it if it landed",
                ids=ids) from error
        if found:
            self._found_out = (bound.ms if bound is not None else None,)
            log.warning("%s on %s: the call failed (%s) but the write had landed, in part or in whole; what "
                        "landed is recorded", operation, self.info.name, type(error).__name__)
            raise _Partly(error)
        raise error

    def _runner(self, what: str) -> Callable[[Callable[[], Any]], Any]:
        def run_(fn: Callable[[], Any]) -> Any:
            with self._bound_after():
                return run.call(self.rt, self.info, what, fn, self.tx)

        return run_

    def _bound_after(self) -> contextlib.AbstractContextManager[None]:
        """The bound of what follows a write: the call's, or, once an unknown outcome had to be
        read back (the call's bound ran out), a fresh one of the same length."""
        return timeouts.afresh(self._found_out[0], "after-write") if self._found_out else contextlib.nullcontext()

    def _records(self, action: str, changes: Sequence[Change], fields: Iterable[str], op_id: Any,
                 pack: bool = True) -> list[dict[str, Any]]:
        """The change records of ``changes``, by this call's actor, written by operation ``op_id``
        (``pack``: a large create's packed, as the change-record hook writes them)."""
        who = self.actor
        return self.rt.changes.build(
            model=self.info.name, collection=self.info.collection, action=action, changes=changes, fields=fields,
            actor=who.id if who is not None else None,
            request_id=(who.request_id if who is not None else None) or current_request_id(), op=op_id,
            owner=self.info.declaration.owner, database=self.coll.database, pack=pack,
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

    def _ids(self, filt: dict[str, Any]) -> list[dict[str, Any]]:
        """The documents ``filt`` matches now: ``_id`` and revision each."""
        return run.call(self.rt,
            self.info, "find_ids",
            lambda: list(self.coll.find(filt, {"_id": 1, REV_FIELD: 1}, session=self.session)),
            self.tx,
        )

    def _exists(self, filt: dict[str, Any]) -> bool:
        return run.call(self.rt,
            self.info, "find_one", lambda: self.coll.find_one(filt, {"_id": 1}, session=self.session), self.tx
        ) is not None


def _erased_id_error(info: ModelInfo, doc_id: Any) -> DuplicateKeyError:
    """The refusal of a new user under the ``_id`` of a user erased (``continue_lives``)."""
    return DuplicateKeyError(f"{info.name} {doc_id} was erased (erase_user): an erased user's id is never given to "
                             "a new user; let the new user have an id of its own", fields=("_id",))


def _maybe_applied(exc: AstroDBError) -> bool:
    """Whether a failed write may have reached the server: not when it never left the client
    (the breaker was open, the bound had run out, no connection: no driver error behind it), nor
    when its one attempt found no server to send it to."""
    if isinstance(exc, (ChangeRecordError, NotConnectedError)) or exc.__cause__ is None:
        return False
    return not (isinstance(exc.__cause__, pm.ServerSelectionTimeoutError) and getattr(exc, "attempts", 1) == 1)


class Upserted(NamedTuple):
    """What ``upsert_many`` did with one item: ``"inserted"``, ``"updated"`` or ``"unchanged"``,
    the document's ``_id`` and its stored form now (sealed)."""

    outcome: str
    id: Any
    document: dict[str, Any]


_SEVERAL: dict[str, Any] = {}  # ``_by_keys``: the stored documents holding a key are more than one


def _ensures(index: Mapping[str, Any], on: tuple[str, ...]) -> bool:
    """Whether a listed index keeps ``on`` unique: unique, not partial (its uniqueness holds only
    among the documents its filter matches), on ``on``'s fields or some of them (a pair unique
    on one of its fields is unique)."""
    fields = set(index.get("key", {}))
    return bool(index.get("unique")) and "partialFilterExpression" not in index and bool(fields) and fields <= set(on)


def _key(doc: Mapping[str, Any], on: tuple[str, ...]) -> Hashable:
    """A document's unique-key value, comparable between a new document and a stored one as the
    server's unique index compares them (``identity``: ``1`` and ``1.0`` one key, ``True`` and ``1`` two)."""
    return identity([value_at(doc, f) for f in on])


def _keys_filter(sons: list[dict[str, Any]], on: tuple[str, ...]) -> dict[str, Any]:
    """The filter of the documents holding exactly the keys of ``sons``, compact for the index:
    one ``$in``; for two fields, grouped by the one with fewer distinct values (the nightly
    batch's one date, or one user's days: a single clause); else one clause per key."""
    if len(on) == 1:
        return {on[0]: {"$in": [value_at(son, on[0]) for son in sons]}}
    if len(on) == 2:
        groups: list[dict[Hashable, tuple[Any, list[Any]]]] = [{}, {}]
        for son in sons:
            for n, (f, g) in enumerate(((on[0], on[1]), (on[1], on[0]))):
                value = value_at(son, f)
                groups[n].setdefault(identity(value), (value, []))[1].append(value_at(son, g))
        n = 0 if len(groups[0]) <= len(groups[1]) else 1
        by, other = (on[0], on[1]) if n == 0 else (on[1], on[0])
        clauses = [{by: value, other: {"$in": values}} for value, values in groups[n].values()]
        return clauses[0] if len(clauses) == 1 else {"$or": clauses}
    return {"$or": [{f: value_at(son, f) for f in on} for son in sons]}


def _same_content(stored: dict[str, Any], son: dict[str, Any]) -> bool:
    """Whether a stored document already holds exactly the caller's content (service fields aside)."""
    return _eq({k: v for k, v in stored.items() if k not in _KEPT}, {k: v for k, v in son.items() if k not in _KEPT})


def _replacement(current: dict[str, Any], sealed: dict[str, Any], op_id: Any) -> dict[str, Any]:
    """The document that replaces ``current``: the caller's content under the stored ``_id`` and
    ``createdAt``, the next revision, this operation's id; ``__v`` (Mongoose's version key) bumped
    when a list changes, as every list change through the service does."""
    image = {"_id": current["_id"], **{k: v for k, v in sealed.items() if k not in ("_id", REV_FIELD, OP_FIELD)}}
    image["createdAt"] = current.get("createdAt", sealed.get("createdAt"))
    version = current.get(VERSION_FIELD) or 0
    lists = {k for k, v in image.items() if isinstance(v, list)} | {k for k, v in current.items() if isinstance(v, list)}
    if any(not _eq(current.get(k), image.get(k)) for k in lists):
        version += 1
    image[VERSION_FIELD] = version
    image[REV_FIELD] = revision_of(current) + 1
    image[OP_FIELD] = op_id
    return image


class _Partly(Exception):
    """Raised by ``WriteRunner._write`` when a failed write is found to have landed after all:
    the strategy carries on as for a success (``error`` for what did not land)."""

    def __init__(self, error: AstroDBError) -> None:
        super().__init__(str(error))
        self.error = error


class _Continued:
    """``_rev`` of a new document whose ``_id`` the caller chose: to be continued from that
    ``_id``'s earlier lives (``WriteRunner.continue_lives``). Not BSON: never stored by mistake."""

    def __deepcopy__(self, memo: Any) -> _Continued:
        return self


CONTINUED = _Continued()


def _advanced(compiled: CompiledUpdate) -> tuple[dict[str, Any], Any]:
    op_id = new_op_id()
    return advance(compiled.update, op_id), op_id


def _written(action: str, docs: list[dict[str, Any]], fields: tuple[str, ...], op_id: Any, *,
             recorded: bool = False) -> Written | None:
    """What a create or a single update wrote (None: nothing)."""
    if not docs:
        return None
    if not docs[1:]:  # one document (a create, a single update)
        return Written.one(action, docs[0], fields, op_id, recorded)
    return Written(action, tuple([d["_id"] for d in docs]), fields, changes_of(docs),
                   documents=tuple(docs), recorded=recorded, op_id=op_id)


def _fields_of(son: dict[str, Any]) -> tuple[str, ...]:
    """The fields a new document sets: its keys but ``_id`` (first, as ``new_document`` puts it)."""
    keys = tuple(son)
    if keys and keys[0] == "_id":
        return keys[1:]
    return tuple(k for k in keys if k != "_id")


def _deleted_all(docs: list[dict[str, Any]], op_id: Any) -> Written | None:
    if not docs:
        return None
    return Written("delete", tuple(d["_id"] for d in docs), (), tuple(_deleting(d) for d in docs), op_id=op_id)


def _names_one(filt: Mapping[str, Any], info: ModelInfo) -> bool:
    """Whether ``filt`` matches at most one document: it sets ``_id``, or every field of a unique
    index the model declares (no partial one), to one value (at its top or in its ``$and``
    clauses; not null, which matches every document missing the field)."""
    equal: set[str] = set()

    def collect(part: Mapping[str, Any]) -> None:
        for key, value in part.items():
            if key == "$and" and isinstance(value, list):
                for clause in value:
                    if isinstance(clause, Mapping):
                        collect(clause)
            elif not key.startswith("$") and value is not None and not isinstance(
                    value, (Mapping, list, bson.regex.Regex, re.Pattern)):
                equal.add(key)

    collect(filt)
    if "_id" in equal:
        return True
    return any(spec.get("unique") and "partialFilterExpression" not in spec and {f for f, _ in spec["key"]} <= equal
               for spec in declared_indexes(info))


def _at_rev(rev: int) -> dict[str, Any]:
    """The filter of a document stored at revision ``rev`` (0: no ``_rev`` stored). Always
    combined with ``$and``, never merged beside other top-level keys: the nx-27017 test server's
    update and findAndModify apply a top-level ``$or`` and drop the keys beside it (they change
    another document), while its find and count do not."""
    if rev:
        return {REV_FIELD: rev}
    return {"$or": [{REV_FIELD: 0}, {REV_FIELD: {"$exists": False}}]}


def _created(son: dict[str, Any]) -> Change:
    """The change a create or an update made: the post-image at its revision."""
    return Change(son["_id"], revision_of(son), son.get("updatedAt"), son)


_updated = _created


def _deleting(doc: dict[str, Any]) -> Change:
    """The change a delete of ``doc`` (``_id`` and revision, as read) makes: the next revision."""
    return Change(doc["_id"], revision_of(doc) + 1, utcnow(), None)


def _same(stored: dict[str, Any] | None, son: dict[str, Any]) -> bool:
    return stored is not None and _eq(stored, son)


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _stored_ms(value: _dt.datetime) -> int:
    """The milliseconds since the epoch BSON stores for ``value`` (PyMongo cuts the rest)."""
    return (_utc(value) - _EPOCH) // _dt.timedelta(milliseconds=1)


def _eq(a: Any, b: Any, top: bool = True) -> bool:
    """Equality of a stored document and the one we sent, as BSON values: of the same BSON type
    (Python's ``True == 1 == 1.0`` is not: a boolean, an int32, an int64 and a double are four
    values; another client's ``true`` is not the item's 1) and, below the top level, with their
    keys in the same order (``{"a": 1, "b": 2}`` is not ``{"b": 2, "a": 1}`` to the server); a
    date by the milliseconds BSON keeps (cut, not rounded: 0.5 ms stores as 0, 1.5 ms as 1)."""
    if isinstance(a, _dt.datetime) and isinstance(b, _dt.datetime):
        return _stored_ms(a) == _stored_ms(b)
    if isinstance(a, dict) and isinstance(b, dict):
        if top:
            return set(a) == set(b) and all(_eq(a[k], b[k], False) for k in a)
        return list(a) == list(b) and all(_eq(a[k], b[k], False) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_eq(x, y, False) for x, y in zip(a, b))
    if isinstance(a, _BINARY) and isinstance(b, _BINARY):
        # binary data by its subtype and bytes (query.order.identity): PyMongo reads subtype 0 as
        # bytes and 4 as a uuid.UUID, the codec sends a Binary as it is, and Binary(b, 0) == b is
        # False in Python, so an unchanged value read as changed
        return identity(a) == identity(b)
    if a.__class__ is not b.__class__ and _number_kind(a) != _number_kind(b):
        return False
    if a.__class__ is float and b.__class__ is float:  # -0.0 is stored as itself; NaN is one value
        return (a == b and math.copysign(1.0, a) == math.copysign(1.0, b)) or (a != a and b != b)
    same: bool = a == b
    return same


_INT32 = range(-(2**31), 2**31)
_BINARY = (bytes, uuid.UUID)  # a bson.Binary is bytes


def _number_kind(value: Any) -> str | None:
    """The BSON type a number is stored as (``int`` by its size, as PyMongo encodes it, so an
    ``int`` and the ``Int64`` the driver reads back for it are one), None for anything else."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, bson.int64.Int64):
        return "long"
    if isinstance(value, int):
        return "int" if value in _INT32 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, bson.decimal128.Decimal128):
        return "decimal"
    return None


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
    out["$inc"] = {**out.get("$inc", {}), VERSION_FIELD: 1}
    return out


def _out_of_range(compiled: CompiledUpdate, count: int = 1) -> ValidationError:
    which = "the document" if count == 1 else f"{count} documents"
    message = f"$inc would leave {which} outside the field's range; nothing was changed"
    return ValidationError(errors={field: message for field in compiled.guards})
