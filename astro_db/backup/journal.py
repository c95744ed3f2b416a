"""The change journal: one entry per document written through the service.

``JournalHook`` is a write hook (``events.WriteEvent``) that the Database registers when
``DatabaseConfig.journal`` is on. For every document a create, update or delete touches it
appends to the ``changeJournal`` collection::

    {"ts": <UTC date>, "t": <ts in ms since 1970>, "seq": <int>, "coll": "users", "docId": <_id>, "op": "insert"|"update"|"delete",
     "doc": <the document after the write; absent for a delete>}

It writes in the write's own session, so inside a transaction the entries commit or abort with
the change. Update post-images are read back in that session, so replaying entries in
``(t, seq)`` order rebuilds each document exactly. ``ts`` is this process's UTC clock made
monotonic; ``t`` is the same instant as an integer, which windows are selected and sorted on
(integers compare exactly on every server), and ``seq`` orders entries within one millisecond. Incremental backups and point-in-time
restores read the journal; ``prune_journal`` removes entries the repository no longer needs.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import threading
from typing import Any, Iterator

from pymongo import ASCENDING
from pymongo.errors import PyMongoError

from ..errors import translate
from ..events import WriteEvent
from .stream import RAW

__all__ = ["JOURNAL_COLLECTION", "JournalHook", "read_window", "ensure_journal_index", "prune_journal", "journal_clock", "to_ms"]

log = logging.getLogger(__name__)
JOURNAL_COLLECTION = "changeJournal"
_OPS = {"create": "insert", "update": "update", "delete": "delete"}
_CHUNK = 1000
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class _Clock:
    """UTC milliseconds that never go backwards in this process, plus a sequence number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
        self._seq = itertools.count(1)

    def tick(self) -> tuple[_dt.datetime, int]:
        now = _dt.datetime.now(_dt.timezone.utc)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        with self._lock:
            if now < self._last:
                now = self._last
            self._last = now
            return now, next(self._seq)

    def now(self) -> _dt.datetime:
        return self.tick()[0]

    def barrier(self) -> _dt.datetime:
        """Now, with every later tick of this process strictly after it (a window's end)."""
        now = self.now()
        with self._lock:
            self._last = max(self._last, now + _dt.timedelta(milliseconds=1))
        return now


journal_clock = _Clock()


class JournalHook:
    """Write hook that appends the journal entries of one write (see the module docstring)."""

    def __init__(self, collection: str = JOURNAL_COLLECTION) -> None:
        self.collection = collection

    def __call__(self, event: WriteEvent) -> None:
        if event.collection == self.collection or event.action not in _OPS:
            return
        try:
            entries = list(self._entries(event))
            for start in range(0, len(entries), _CHUNK):
                event.database[self.collection].insert_many(entries[start:start + _CHUNK], ordered=True, session=event.session)
        except PyMongoError as exc:
            if event.session is not None:  # inside a transaction: fail it, so change and entry go together
                raise translate(exc, operation="journal", model=event.model) from exc
            log.error(
                "change journal: could not record %s of %d %s document(s) (%s); point-in-time restore "
                "will miss them until the next full backup", event.action, len(event.document_ids),
                event.model, type(exc).__name__,
            )

    def _entries(self, event: WriteEvent) -> Iterator[dict[str, Any]]:
        op = _OPS[event.action]
        if op == "insert":
            # stored as the server stores it: ``_id`` first, whatever order the service sent
            images = {d["_id"]: {"_id": d["_id"], **d} for d in event.documents or ()}
        elif op == "update":
            # a single update hands over the post-image its findAndModify returned; saves a read
            images = {d["_id"]: d for d in event.documents} if event.documents is not None else self._post_images(event)
        else:
            images = {}
        for doc_id in event.document_ids:
            ts, seq = journal_clock.tick()
            entry: dict[str, Any] = {"ts": ts, "t": to_ms(ts), "seq": seq, "coll": event.collection, "docId": doc_id, "op": op}
            image = images.get(doc_id)
            if op != "delete":
                if image is None:  # gone again before we could read it: record what is true now
                    entry["op"] = "delete"
                else:
                    entry["doc"] = image
            yield entry

    def _post_images(self, event: WriteEvent) -> dict[Any, Any]:
        coll = event.database[event.collection]
        ids = list(event.document_ids)
        images: dict[Any, Any] = {}
        for start in range(0, len(ids), _CHUNK):
            for doc in coll.find({"_id": {"$in": ids[start:start + _CHUNK]}}, session=event.session):
                images[doc["_id"]] = doc
        return images


def to_ms(when: _dt.datetime) -> int:
    """Milliseconds since 1970 (UTC) of an aware datetime, rounded down."""
    return (when - _EPOCH) // _dt.timedelta(milliseconds=1)


def ensure_journal_index(database: Any, collection: str = JOURNAL_COLLECTION) -> None:
    """The ``(t, seq)`` index window reads and pruning use (created once, failures logged)."""
    try:
        existing = [list(ix.get("key", {})) for ix in database[collection].list_indexes()]
        if ["t", "seq"] not in existing and ["t"] not in existing:
            database[collection].create_index([("t", ASCENDING), ("seq", ASCENDING)], name="t_1_seq_1")
    except PyMongoError as exc:
        log.warning("change journal: could not create its (t, seq) index: %s", type(exc).__name__)


def read_window(database: Any, start: _dt.datetime | None, end: _dt.datetime, collection: str = JOURNAL_COLLECTION) -> Iterator[Any]:
    """Journal entries with ``start < ts <= end``, oldest first, as raw documents."""
    window: dict[str, Any] = {"$lte": to_ms(end)}
    if start is not None:
        window["$gt"] = to_ms(start)
    coll = database.get_collection(collection, codec_options=RAW)
    try:
        yield from coll.find({"t": window}, sort=[("t", ASCENDING), ("seq", ASCENDING)], batch_size=1000)
    except PyMongoError as exc:
        raise translate(exc, operation="read change journal") from exc


def prune_journal(database: Any, before: _dt.datetime, collection: str = JOURNAL_COLLECTION) -> int:
    """Delete journal entries at or before ``before``; how many went."""
    try:
        return database[collection].delete_many({"t": {"$lte": to_ms(before)}}).deleted_count
    except PyMongoError as exc:
        raise translate(exc, operation="prune change journal") from exc
