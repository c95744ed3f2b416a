"""Writing change records: idempotent, under the write's own retry and time bound, never a silent gap; delete intents and their settling.

The failure policy of every write hook (one policy, the same for create, update and delete):

1. The records of a write are inserted right after it, by the change-record write hook
   (``ops.steps.hooks``), through the run step (breaker, time bound, retries). Their ``_id`` is
   made of the document, its revision and the writing operation's id (made once, on the
   client), so a retry that meets its own duplicate key is success, and no other write (not even
   one of a later life of the same ``_id``) can be taken for it.
2. Inside a transaction they go in the write's session: a failure fails the transaction, and the
   change aborts with its records.
3. Outside one, if they still cannot be written, the change stands (it was applied) and the call
   raises ``ChangeRecordError`` (``.applied is True``, ``.missing``: the ids whose records are
   missing), logged at ERROR. The records are kept in memory and written with the next
   successful write's records (same command), or by ``Database.reconcile_changes()`` /
   ``astro-db reconcile-changes``, which also rebuilds the record of any document whose current
   revision has none (after a crash lost the memory). A late record counts, for backups and
   point-in-time cuts, from the moment it was written, so an incremental backup never skips it
   and a restore never silently undoes an acknowledged write.
4. A delete leaves no document to rebuild a record from, so its record is written *before* it,
   as an intent (``intend``), and confirmed after (``confirm``); a process killed in between
   leaves the intent, which ``reconcile_changes()`` confirms if the document is gone (and no
   other write took that revision) or drops if it is still there (``resolve_intents``).
5. A write whose outcome is unknown (its time bound ran out after the connection was lost, and
   reading it back failed too) keeps its records as *uncertain*: written later only if the
   document shows the write landed (``_settle``), dropped otherwise.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from pymongo import ReplaceOne
from pymongo import errors as pm

from ..errors import AstroDBError, ChangeRecordError
from ..query.order import FROM_START, identity, ids_after
from .records import (
    CHANGES_COLLECTION,
    PACK_FROM,
    as_intent,
    confirmed,
    document_ids,
    is_packed,
    make_records,
    ms_time,
    pack_records,
    restricted,
    to_ms,
)
from .revision import OP_FIELD, REV_FIELD, revision_of

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB, Session

__all__ = ["ChangeLog", "RECONCILE_ACTOR", "REBUILT_OP", "last_revisions", "recorded"]

log = logging.getLogger(__name__)
RECONCILE_ACTOR = "astro-db:reconcile"
_PENDING_LIMIT = 100_000
_SCAN_BATCH = 1000
_NAMES_LIMIT = 1024  # field tuples whose record names ``ChangeLog.build`` keeps
REBUILT_OP = "reconcile"  # the op of a rebuilt record whose document names none (a create)
_SERVICE_FIELDS = frozenset({"_id", REV_FIELD, OP_FIELD})  # never listed in a record's ``fields``
INSERT, REPLACE, UNCERTAIN = "insert", "replace", "uncertain"  # how a pending record is to be written
Runner = Callable[[Callable[[], Any]], Any]
"""``run(fn)``: ``fn()`` under the caller's retry / breaker / time-bound wrapper."""


class ChangeLog:
    """The change records of one Database (shared by its actor views): what to record, and the
    records a failed write left to be written."""

    def __init__(self, *, audit: bool, journal: bool) -> None:
        self.audit = audit
        self.journal = journal
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[dict[str, Any], str]] = {}  # _id -> (record, INSERT | REPLACE | UNCERTAIN)
        self._names: dict[tuple[str, ...], list[str]] = {}  # a write's fields -> a record's ``fields`` (``build``)

    @property
    def enabled(self) -> bool:
        return self.audit or self.journal

    @property
    def pending(self) -> int:
        """How many records wait to be written (after a failure)."""
        with self._lock:
            return len(self._pending)

    @property
    def waiting(self) -> bool:
        """Whether any record waits to be written, looked at without the lock (a write's
        question before it picks its path: a record kept meanwhile goes with a later write)."""
        return bool(self._pending)

    def build(self, *, model: str, collection: str, action: str, changes: Iterable[tuple[Any, int, Any, dict[str, Any] | None]],
              fields: Iterable[str], actor: str | None, request_id: str | None, op: Any,
              owner: str | None = None, database: MongoDB | None = None, pack: bool = True) -> list[dict[str, Any]]:
        """Records of ``changes``: ``(documentId, rev, time, post-image or None)`` each, written by
        the operation ``op`` (its id is part of theirs). A write's field names (a tuple: an
        update's compiled fields, a create's keys) are listed in a record as worked out once per
        tuple (the service's own left out, sorted: ``_names``), not again per write. A create of
        ``PACK_FROM`` documents or more is recorded packed (``records.pack_records``: ``owner``, the
        model's stored owner path, gives its ``owners``; ``database`` the images' encoding, its codec options),
        unless ``pack`` is false (the one-command create pairs each document with its own record)."""
        names: list[str] | None = None
        if self.audit:
            names = self._names.get(fields) if fields.__class__ is tuple else None
            if names is None:
                names = self._sorted_names(fields)
        if pack and action == "create" and isinstance(changes, (tuple, list)) and len(changes) >= PACK_FROM:
            return pack_records(model=model, collection=collection, changes=changes, actor=actor, request_id=request_id,
                                fields=names or [], audit=self.audit, journal=self.journal, op=op, owner=owner,
                                **({"codec_options": database.codec_options} if database is not None else {}))
        return make_records(model=model, collection=collection, action=action, changes=changes, actor=actor,
                            request_id=request_id, fields=names if names is not None else (), audit=self.audit,
                            journal=self.journal, op=op, ordered=True)

    def _sorted_names(self, fields: Iterable[str]) -> list[str]:
        """The field names a record of a write of ``fields`` lists; for a tuple, kept for the
        next write of the same fields (a few shapes per model; the table is emptied if it ever
        grows large)."""
        names = sorted(f for f in fields if f not in _SERVICE_FIELDS)
        if fields.__class__ is tuple:
            if len(self._names) >= _NAMES_LIMIT:
                self._names.clear()
            self._names[fields] = names
        return names

    def insertion(self, database: MongoDB, records: list[dict[str, Any]], *, session: Session,
                  in_transaction: bool) -> tuple[Callable[[], object], list[tuple[dict[str, Any], str]]]:
        """The driver call that inserts ``records`` with those left pending (none inside a
        transaction), for the caller to make through the run step (the change-record hook,
        ``ops.steps.hooks.ChangeRecords``: nothing calls back into this module), and the pending
        ones taken: ``failed`` needs them back if the call fails."""
        # nothing pending (read without the lock: a record kept meanwhile goes with the next write)
        late = [] if in_transaction or not self._pending else self._take_pending()
        if not late:  # a write's own records alone: ``_write_late`` with nothing late to settle
            return partial(_insert, database[CHANGES_COLLECTION], records, session), late
        return partial(_write_late, database, late, records, session), late

    def failed(self, records: list[dict[str, Any]], what: str, exc: AstroDBError, *,
               late: list[tuple[dict[str, Any], str]], in_transaction: bool) -> AstroDBError:
        """What a failed insertion of ``records`` raises: in a transaction the error itself (the
        transaction fails and the change aborts with its records); outside one the records (and
        ``late``) are kept pending and a ``ChangeRecordError`` says so (``unwritten``)."""
        if in_transaction:
            return exc
        return self.unwritten(records, what, exc, late=late)

    def unwritten(self, records: list[dict[str, Any]], what: str, cause: object,
                  late: Iterable[tuple[dict[str, Any], str]] = (), how: str = INSERT) -> ChangeRecordError:
        """The records of an applied write that the server did not take: kept (with ``late``,
        records already pending) to be written later, logged; the ``ChangeRecordError`` to raise."""
        self._keep([(r, how) for r in records] + list(late))
        missing = [i for r in records for i in document_ids(r)]
        kind = type(cause).__name__ if isinstance(cause, BaseException) else "refused by the server"
        log.error("%s was applied but its change record(s) for %d document(s) could not be written (%s); "
                  "they will be written with the next write or by reconcile_changes()", what, len(missing), kind)
        return ChangeRecordError(f"{what} was applied, but its audit/journal records could not be written: {cause}",
                                 missing=missing)

    def keep_uncertain(self, records: list[dict[str, Any]]) -> None:
        """The records of a write whose outcome is unknown: written later if it landed."""
        self._keep([(r, UNCERTAIN) for r in records])

    def flush(self, run: Runner, database: MongoDB) -> int:
        """Write the records left pending; how many were written (or already there)."""
        late = self._take_pending()
        written = 0
        if late:
            try:
                written = run(partial(_write_late, database, late))
            except AstroDBError:
                self._keep(late)
                raise
            log.info("%d pending change record(s) written", written)
        return written

    # --- deletes: intent, then confirmation ---------------------------------------------------------

    def intend(self, run: Runner, database: MongoDB, records: list[dict[str, Any]], session: Session) -> None:
        """Write ``records`` as intents, before their delete (a failure fails the call: nothing
        was deleted)."""
        if records:
            run(partial(_insert, database[CHANGES_COLLECTION], [as_intent(r) for r in records], session))

    def confirm(self, run: Runner, database: MongoDB, records: list[dict[str, Any]], *, what: str) -> None:
        """Turn the intents of ``records`` (their delete was applied) into the records themselves:
        one command, idempotent; an intent a reconcile dropped meanwhile is written again.
        Records left pending by an earlier failure are written with them."""
        if not records:
            return
        finals = [confirmed(r) for r in records]
        late = self._take_pending()  # records left pending go with it, as with any write's records

        def confirm_all() -> None:
            _replace(database[CHANGES_COLLECTION], finals)
            if late:
                _write_late(database, late)

        try:
            run(confirm_all)
        except AstroDBError as exc:
            raise self.unwritten(finals, what, exc, late=late, how=REPLACE) from exc

    def drop(self, run: Runner, database: MongoDB, records: list[dict[str, Any]]) -> None:
        """Remove the intents of deletes that deleted nothing (another caller got there first).
        A failure is logged, not raised: reconcile drops an intent whose document still exists."""
        if not records:
            return
        try:
            run(partial(_drop, database[CHANGES_COLLECTION], [r["_id"] for r in records]))
        except AstroDBError as exc:
            log.warning("%d delete intent(s) that deleted nothing could not be removed (%s); reconcile_changes() "
                        "drops them", len(records), type(exc).__name__)

    def resolve_intents(self, run: Runner, database: MongoDB, deleted: set[str] | None = None) -> dict[str, int]:
        """Settle every intent left unconfirmed (a process died between its delete and the
        confirmation, or before the delete): confirmed if the document is gone, or lives on past
        the intent's revision with no other write recorded at it (deleted, then created again);
        dropped otherwise. ``{"confirmed": n, "dropped": m}``; the models of the confirmed ones
        are added to ``deleted`` (their deletes may never have been announced to any cache)."""
        counts = {"confirmed": 0, "dropped": 0}
        intents = run(partial(_intents, database[CHANGES_COLLECTION]))
        for intent in intents:
            if run(partial(_happened, database, intent)):
                run(partial(_replace, database[CHANGES_COLLECTION], [confirmed(intent)]))
                counts["confirmed"] += 1
                if deleted is not None and isinstance(intent.get("model"), str):
                    deleted.add(intent["model"])
            else:
                run(partial(_drop, database[CHANGES_COLLECTION], [intent["_id"]]))
                counts["dropped"] += 1
        if intents:
            log.warning("reconcile: %d delete intent(s) confirmed, %d dropped", counts["confirmed"], counts["dropped"])
        return counts

    def rebuild(self, run: Runner, database: MongoDB, infos: Iterable[Any]) -> dict[str, int]:
        """Records for every document whose current revision has none (a crash lost them),
        scanning each model collection in ``_id`` order, a batch at a time."""
        rebuilt: dict[str, int] = {}
        for info in infos:
            count, last = 0, FROM_START
            while True:
                batch = run(partial(_next_batch, database[info.collection], last))
                if not batch:
                    break
                last = batch[-1]["_id"]
                records = self._lost(run, database, info, batch)
                if records:
                    run(partial(_insert, database[CHANGES_COLLECTION], records, None))
                count += len(records)
            if count:
                log.warning("reconcile: %d %s document(s) had no record of their current revision; recorded now", count, info.name)
            rebuilt[info.name] = count
        return rebuilt

    def _lost(self, run: Runner, database: MongoDB, info: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of the documents of ``batch`` whose current revision has none. A rebuilt
        record's op is the one the document names (``_op``: the write whose record was lost, so
        a late copy of that record is the same record), else ``REBUILT_OP``."""
        have = run(partial(_revisions_recorded, database, info.name, batch))
        records = []
        for d in batch:
            if (identity(d["_id"]), revision_of(d)) in have:
                continue
            [record] = self.build(
                model=info.name, collection=info.collection, action="update",
                changes=[(d["_id"], revision_of(d), d.get("updatedAt"), {k: v for k, v in d.items() if k != "_id"})],
                fields=(), actor=RECONCILE_ACTOR, request_id=None, op=d.get(OP_FIELD) or REBUILT_OP,
            )
            _mark_late(record)
            records.append(record)
        return records

    def _keep(self, records: list[tuple[dict[str, Any], str]]) -> None:
        """Keep ``records`` to be written later. A record's post-image may be the very document
        its write sent (``records.make_records``), which the caller still holds: a record kept
        for the first time keeps a copy of its own."""
        with self._lock:
            for record, how in records:
                if len(self._pending) >= _PENDING_LIMIT:
                    log.error("more than %d change records pending; the rest are left to reconcile_changes()", _PENDING_LIMIT)
                    return
                if "doc" in record and not record.get("late"):
                    record["doc"] = copy.deepcopy(record["doc"])
                _mark_late(record)
                self._pending[record["_id"]] = (record, how)

    def _take_pending(self) -> list[tuple[dict[str, Any], str]]:
        with self._lock:
            late, self._pending = list(self._pending.values()), {}
        for record, _ in late:
            _mark_late(record)
        return late


def _next_batch(coll: Any, after: Any) -> list[dict[str, Any]]:
    return list(coll.find(ids_after(after), sort=[("_id", 1)], limit=_SCAN_BATCH))


def last_revisions(database: MongoDB, model: str, ids: list[Any], session: Session = None) -> dict[Hashable, int]:
    """The highest revision recorded for each of ``ids`` (an intent included: a delete under
    way), for the documents that had an earlier life, keyed by ``query.order.identity`` of the
    id (the server's equality: ``True`` and ``1`` are two ids, ``{a: 1}`` and ``{a: 1.0}`` one,
    and an embedded document is an id too); the others are absent."""
    coll = database[CHANGES_COLLECTION]
    if len(ids) == 1:
        last = coll.find_one({"model": model, "documentId": ids[0]}, {"rev": 1}, sort=[("rev", -1)], session=session)
        return {identity(ids[0]): int(last["rev"])} if last is not None and "rev" in last else {}
    out: dict[Hashable, int] = {}
    for record in coll.find({"model": model, "documentId": {"$in": ids}}, {"documentId": 1, "rev": 1}, session=session):
        if "rev" in record:
            for document_id in document_ids(record):
                key = identity(document_id)
                out[key] = max(int(record["rev"]), out.get(key, 0))
    return out


def recorded(database: MongoDB, ids: list[str], session: Session = None) -> set[str]:
    """Which of the record ids ``ids`` are already in the change collection."""
    found = database[CHANGES_COLLECTION].find({"_id": {"$in": ids}}, {"_id": 1}, session=session)
    return {r["_id"] for r in found}


def _insert(coll: Any, records: list[dict[str, Any]], session: Session) -> None:
    """Insert unordered; a record already there (our retry, or the same revision recorded by a
    reconcile) is success. Anything else fails the call. One record is an ``insert_one`` (the
    driver's bulk machinery costs about 50 µs more CPU per call)."""
    if not records:
        return
    if len(records) == 1:
        try:
            coll.insert_one(records[0], session=session)
        except pm.DuplicateKeyError:
            pass
        return
    try:
        coll.insert_many(records, ordered=False, session=session)
    except pm.BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if exc.details.get("writeConcernErrors") or any(e.get("code") != 11000 for e in errors):
            raise


def _write_late(database: MongoDB, late: list[tuple[dict[str, Any], str]], fresh: Iterable[dict[str, Any]] = (),
                session: Session = None) -> int:
    """Write records left pending, settled first (``_settle``), inserted in the same command as
    ``fresh`` (a write's own records), or, a delete's confirmation, put in place of its intent;
    how many late records were written."""
    records = _settle(database, late) if late else []
    coll = database[CHANGES_COLLECTION]
    _insert(coll, list(fresh) + [r for r, how in records if how != REPLACE], session)
    _replace(coll, [r for r, how in records if how == REPLACE])
    return len(records)


def _settle(database: MongoDB, late: list[tuple[dict[str, Any], str]]) -> list[tuple[dict[str, Any], str]]:
    """Keep the post-image of a late record only while its revision is still the document's
    current one: a later write's record (or a delete) is the journal's truth by now, and a late
    image must never bring an older state into a later backup window. The audit part stays.
    An uncertain record (its write's outcome was unknown) is kept only if its write landed: the
    document exists at its revision or past it (a create, an update), or is gone (a delete)."""
    by_coll: dict[str, list[Any]] = {}
    for record, how in late:
        if "doc" in record or "docs" in record or how == UNCERTAIN:
            by_coll.setdefault(record["coll"], []).extend(document_ids(record))
    current: dict[tuple[str, Hashable], int] = {}  # (collection, identity(_id)): the server's equality
    for name, ids in by_coll.items():
        current.update(((name, identity(d["_id"])), revision_of(d)) for d in database[name].find(
            {"_id": {"$in": ids}}, {REV_FIELD: 1}))
    kept = []
    for record, how in late:
        if is_packed(record):
            pack = _settled_pack(record, how, current)
            if pack is not None:
                kept.append((pack, INSERT if how == UNCERTAIN else how))
            continue
        rev = current.get((record["coll"], identity(record["documentId"])))
        if how == UNCERTAIN:
            landed = rev is None if record["action"] == "delete" else rev is not None and rev >= record["rev"]
            if not landed:
                log.info("an uncertain %s of %s did not land; its record is dropped", record["action"], record["documentId"])
                continue
            how = INSERT
        if "doc" in record and rev != record["rev"]:
            del record["doc"]
            record.pop("journal", None)
        kept.append((record, how))
    return kept


def _settled_pack(record: dict[str, Any], how: str, current: dict[tuple[str, Hashable], int]) -> dict[str, Any] | None:
    """``_settle`` of a packed record (a create's): an uncertain one keeps only the documents
    that landed (none: dropped), and every one keeps only the post-images of documents still at
    its revision; None when no document is left. ``current``: (collection, ``identity`` of the
    ``_id``) -> the document's revision now."""
    coll, rev = record["coll"], record["rev"]
    # by the server's equality: an image's ``_id`` comes raw (a UUID as binary subtype 4)
    revisions = {key: now for (name, key), now in current.items() if name == coll}

    def landed(document_id: Any) -> bool:
        now = revisions.get(identity(document_id))
        return now is not None and now >= int(rev)

    def still(image: Any) -> bool:
        return bool(revisions.get(identity(image["_id"])) == rev)

    pack = restricted(record, keep=landed if how == UNCERTAIN else None, image=still)
    if pack is None:
        log.info("an uncertain create of %d document(s) did not land; its record is dropped", len(record["documentId"]))
    return pack


def _replace(coll: Any, records: list[dict[str, Any]]) -> None:
    """Put each record in place of its intent (inserted if the intent is gone): one command."""
    if len(records) == 1:
        coll.replace_one({"_id": records[0]["_id"]}, records[0], upsert=True)
    elif records:
        coll.bulk_write([ReplaceOne({"_id": r["_id"]}, r, upsert=True) for r in records], ordered=False)


def _drop(coll: Any, ids: list[str]) -> None:
    coll.delete_many({"_id": {"$in": ids}, "intent": {"$exists": True}})


def _intents(coll: Any) -> list[dict[str, Any]]:
    return list(coll.find({"intent": {"$exists": True}}, sort=[("t", 1)]))


def _happened(database: MongoDB, intent: dict[str, Any]) -> bool:
    """Whether the delete of an unconfirmed intent was applied (see ``resolve_intents``)."""
    rev = intent["rev"]
    taken = database[CHANGES_COLLECTION].find_one(
        {"model": intent["model"], "documentId": intent["documentId"], "rev": rev, "_id": {"$ne": intent["_id"]},
         "intent": {"$exists": False}}, {"_id": 1})
    if taken is not None:
        return False  # another write (an update, or the delete that won) made that revision
    doc = database[intent["coll"]].find_one({"_id": intent["documentId"]}, {REV_FIELD: 1})
    return doc is None or revision_of(doc) > rev


def _revisions_recorded(database: MongoDB, model: str, batch: list[dict[str, Any]]) -> set[tuple[Hashable, int]]:
    """Which ``(identity(documentId), rev)`` of ``batch``'s documents at their current revision
    have a record (an unconfirmed intent is none), of either ``_id`` format."""
    found = database[CHANGES_COLLECTION].find(
        {"model": model, "documentId": {"$in": [d["_id"] for d in batch]},
         "rev": {"$in": sorted({revision_of(d) for d in batch})}, "intent": {"$exists": False}},
        {"documentId": 1, "rev": 1})
    return {(identity(i), r["rev"]) for r in found for i in document_ids(r)}


def _mark_late(record: dict[str, Any]) -> None:
    """A late record counts from now for windows and cuts (``time`` keeps when it happened)."""
    now = ms_time(None)
    record["t"] = max(record.get("t", 0), to_ms(now))
    record["late"] = True
