"""The change journal: the post-images carried by the change records (``astro_db.changes``).

Since change records replaced the separate ``changeJournal`` collection, a journal entry is a
change record with ``journal: true``: ``coll``, ``documentId``, ``rev`` (the document's
revision, advanced by the write itself on the server), ``action`` and, for a create or update,
``doc`` (the post-image in stored form), or a packed record of many creates (``entry_keys`` reads
its documents one by one). Backups save the records of their window; restores
apply, per document, the record with the highest revision whose ``t`` is at or before the cut,
and only over an older revision (``Loader``), so the order in which clients wrote their records
does not matter. ``journal_clock`` gives backup windows their ends; ``prune_journal`` drops the
post-images the repository no longer needs (the audit part of the records stays).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pymongo.errors import PyMongoError

from ..changes import CHANGES_COLLECTION, prune_images
from ..changes import read_window as _read_records
from ..changes.records import images, is_packed, to_ms
from ..errors import AstroDBError
from .stream import RAW

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB

__all__ = ["JOURNAL_COLLECTION", "read_window", "ensure_journal_index", "prune_journal", "journal_clock", "to_ms",
           "entry_keys", "entry_key"]

log = logging.getLogger(__name__)
JOURNAL_COLLECTION = CHANGES_COLLECTION


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


def entry_keys(entry: Any) -> Iterator[tuple[str, Any, int | None, str, Any]]:
    """``entry_key`` of each document a journal entry holds: one for a record, one per
    post-image for a packed record (``changes.records.is_packed``: a ``create_many``'s; its
    documents whose image was scrubbed or pruned have none, as a record without ``doc`` is no
    journal entry)."""
    if not is_packed(entry):
        yield entry_key(entry)
        return
    for image in images(entry, RAW):
        yield entry["coll"], image["_id"], entry["rev"], entry["action"], image


def entry_key(entry: Any) -> tuple[str, Any, int | None, str, Any]:
    """``(coll, documentId, rev, action, doc)`` of a journal entry, of either format: a change
    record, or an entry of the older ``changeJournal`` (no revision: applied in file order)."""
    if "documentId" in entry:
        return entry["coll"], entry["documentId"], entry["rev"], entry["action"], entry.get("doc")
    action = {"insert": "create"}.get(entry["op"], entry["op"])
    return entry["coll"], entry["docId"], None, action, entry.get("doc")


def ensure_journal_index(database: MongoDB, collection: str = JOURNAL_COLLECTION) -> None:
    """The ``t`` index window reads and pruning use (created once, failures logged)."""
    try:
        database[collection].create_index([("t", 1)], name="t_1")
    except (PyMongoError, AstroDBError) as exc:
        log.warning("change records: could not create their t index: %s", type(exc).__name__)


def read_window(database: MongoDB, start: _dt.datetime | None, end: _dt.datetime) -> Iterator[Any]:
    """Journal records with ``t`` in ``(start - margin, end]``, by ``t``, as raw documents."""
    return _read_records(database, start, end, codec_options=RAW)


def prune_journal(database: MongoDB, before: _dt.datetime) -> int:
    """Drop the post-images of records at or before ``before``; how many records were thinned."""
    return prune_images(database, before)
