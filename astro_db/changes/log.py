"""Writing change records: idempotent, under the write's own retry and time bound, never a silent gap.

The failure policy of every write hook (one policy, the same for create, update and delete):

1. The records of a write are inserted right after it, through the same ``Runtime.run`` wrapper
   (breaker, time bound, retries). Their ``_id`` is derived from ``(document, revision)``, so a
   retry that meets its own duplicate key is success, and two callers can never record one
   revision twice.
2. Inside a transaction they go in the write's session: a failure fails the transaction, and the
   change aborts with its records.
3. Outside one, if they still cannot be written, the change stands (it was applied) and the call
   raises ``ChangeRecordError`` (``.applied is True``, ``.missing``: the ids whose records are
   missing), logged at ERROR. The records are kept in memory and written with the next
   successful write's records (same command), or by ``Database.reconcile_changes()`` /
   ``astro-db changes reconcile``, which also rebuilds the record of any document whose current
   revision has none (after a crash lost the memory). A late record counts, for backups and
   point-in-time cuts, from the moment it was written, so an incremental backup never skips it
   and a restore never silently undoes an acknowledged write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from pymongo import errors as pm

from ..errors import AstroDBError, ChangeRecordError
from .records import CHANGES_COLLECTION, make_record, ms_time, record_id, to_ms
from .revision import REV_FIELD, revision_of

__all__ = ["ChangeLog", "RECONCILE_ACTOR", "recorded"]

log = logging.getLogger(__name__)
RECONCILE_ACTOR = "astro-db:reconcile"
_PENDING_LIMIT = 100_000
_SCAN_BATCH = 1000
Runner = Callable[[Callable[[], Any]], Any]
"""``run(fn)``: ``fn()`` under the caller's retry / breaker / time-bound wrapper."""


class ChangeLog:
    """The change records of one Database (shared by its actor views): what to record, and the
    records a failed write left to be written."""

    def __init__(self, *, audit: bool, journal: bool) -> None:
        self.audit = audit
        self.journal = journal
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, Any]] = {}

    @property
    def enabled(self) -> bool:
        return self.audit or self.journal

    @property
    def pending(self) -> int:
        """How many records wait to be written (after a failure)."""
        with self._lock:
            return len(self._pending)

    def build(self, *, model: str, collection: str, action: str, changes: Iterable[tuple[Any, int, Any, dict[str, Any] | None]],
              fields: Iterable[str], actor: str | None, request_id: str | None) -> list[dict[str, Any]]:
        """Records of ``changes``: ``(documentId, rev, time, post-image or None)`` each."""
        names = tuple(f for f in fields if f not in ("_id", REV_FIELD, "_op"))
        return [
            make_record(model=model, collection=collection, document_id=doc_id, rev=rev, action=action, time=time,
                        actor=actor, request_id=request_id, fields=names, image=image if self.journal else None,
                        audit=self.audit, journal=self.journal)
            for doc_id, rev, time, image in changes
        ]

    def write(self, run: Runner, database: Any, records: list[dict[str, Any]], *, session: Any, in_transaction: bool,
              what: str) -> None:
        """Insert ``records`` (plus any left pending) under ``run``; see the module docstring."""
        if not records:
            return
        late = [] if in_transaction else self._take_pending()
        coll = database[CHANGES_COLLECTION]

        def write_all() -> None:
            _settle(database, late)
            _insert(coll, records + late, session)

        try:
            run(write_all)
        except AstroDBError as exc:
            if in_transaction:
                raise
            raise self.unwritten(records, what, exc, late=late) from exc

    def unwritten(self, records: list[dict[str, Any]], what: str, cause: object,
                  late: Iterable[dict[str, Any]] = ()) -> ChangeRecordError:
        """The records of an applied write that the server did not take: kept (with ``late``,
        records already pending) to be written later, logged; the ``ChangeRecordError`` to raise."""
        self._keep(records + list(late))
        missing = [r["documentId"] for r in records]
        kind = type(cause).__name__ if isinstance(cause, BaseException) else "refused by the server"
        log.error("%s was applied but its change record(s) for %d document(s) could not be written (%s); "
                  "they will be written with the next write or by reconcile_changes()", what, len(missing), kind)
        return ChangeRecordError(f"{what} was applied, but its audit/journal records could not be written: {cause}",
                                 missing=missing)

    def flush(self, run: Runner, database: Any) -> int:
        """Write the records left pending; how many were written (or already there)."""
        late = self._take_pending()
        if late:
            def write_late() -> None:
                _settle(database, late)
                _insert(database[CHANGES_COLLECTION], late, None)

            try:
                run(write_late)
            except AstroDBError:
                self._keep(late)
                raise
            log.info("%d pending change record(s) written", len(late))
        return len(late)

    def rebuild(self, run: Runner, database: Any, infos: Iterable[Any]) -> dict[str, int]:
        """Records for every document whose current revision has none (a crash lost them),
        scanning each model collection in ``_id`` order, a batch at a time."""
        rebuilt: dict[str, int] = {}
        for info in infos:
            count, last = 0, None
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

    def _lost(self, run: Runner, database: Any, info: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of the documents of ``batch`` whose current revision has none."""
        ids = [record_id(info.collection, d["_id"], revision_of(d)) for d in batch]
        have = run(partial(recorded, database, ids))
        lost = [d for d, rid in zip(batch, ids) if rid not in have]
        records = self.build(
            model=info.name, collection=info.collection, action="update",
            changes=[(d["_id"], revision_of(d), d.get("updatedAt"), {k: v for k, v in d.items() if k != "_id"}) for d in lost],
            fields=(), actor=RECONCILE_ACTOR, request_id=None,
        )
        for record in records:
            _mark_late(record)
        return records

    def _keep(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for record in records:
                if len(self._pending) >= _PENDING_LIMIT:
                    log.error("more than %d change records pending; the rest are left to reconcile_changes()", _PENDING_LIMIT)
                    return
                _mark_late(record)
                self._pending[record["_id"]] = record

    def _take_pending(self) -> list[dict[str, Any]]:
        with self._lock:
            late, self._pending = list(self._pending.values()), {}
        for record in late:
            _mark_late(record)
        return late


def _next_batch(coll: Any, after: Any) -> list[dict[str, Any]]:
    return list(coll.find({} if after is None else {"_id": {"$gt": after}}, sort=[("_id", 1)], limit=_SCAN_BATCH))


def recorded(database: Any, ids: list[str], session: Any = None) -> set[str]:
    """Which of the record ids ``ids`` are already in the change collection."""
    found = database[CHANGES_COLLECTION].find({"_id": {"$in": ids}}, {"_id": 1}, session=session)
    return {r["_id"] for r in found}


def _insert(coll: Any, records: list[dict[str, Any]], session: Any) -> None:
    """Insert unordered; a record already there (our retry, or the same revision recorded by a
    reconcile) is success. Anything else fails the call. One record is an ``insert_one`` (the
    driver's bulk machinery costs about 50 µs more CPU per call)."""
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


def _settle(database: Any, late: list[dict[str, Any]]) -> None:
    """Keep the post-image of a late record only while its revision is still the document's
    current one: a later write's record (or a delete) is the journal's truth by now, and a late
    image must never bring an older state into a later backup window. The audit part stays."""
    by_coll: dict[str, list[dict[str, Any]]] = {}
    for record in late:
        if "doc" in record:
            by_coll.setdefault(record["coll"], []).append(record)
    for name, records in by_coll.items():
        current = {d["_id"]: revision_of(d) for d in database[name].find(
            {"_id": {"$in": [r["documentId"] for r in records]}}, {REV_FIELD: 1})}
        for record in records:
            if current.get(record["documentId"]) != record["rev"]:
                del record["doc"]
                record.pop("journal", None)


def _mark_late(record: dict[str, Any]) -> None:
    """A late record counts from now for windows and cuts (``time`` keeps when it happened)."""
    now = ms_time(None)
    record["t"] = max(record.get("t", 0), to_ms(now))
    record["late"] = True
