"""Reading change records: a document's audit trail, and the journal windows backups replay.

``read_trail`` also reads the entries of the ``auditLog`` collection that earlier versions
wrote (they stay readable, untouched; new entries go to ``astroChanges`` only). The old
``changeJournal`` collection is not read: take a full backup after upgrading (docs/backup.md).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bson import json_util
from bson.binary import UuidRepresentation
from bson.json_util import RELAXED_JSON_OPTIONS
from pymongo import ASCENDING
from pymongo.errors import PyMongoError

from ..errors import translate
from .records import CHANGES_COLLECTION, to_ms

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB, Session

__all__ = ["read_trail", "read_window", "prune_images", "LEGACY_AUDIT_COLLECTION", "WINDOW_MARGIN"]

LEGACY_AUDIT_COLLECTION = "auditLog"  # security.audit.AUDIT_COLLECTION (not imported: no cycle)
WINDOW_MARGIN = _dt.timedelta(minutes=5)
"""Backup windows re-read this much before their start: a record stamped with its write's time
but inserted a moment later (another client, a retry) is still picked up. Records are applied
by revision, so reading one twice changes nothing."""


def read_trail(database: MongoDB, model: str, document_id: Any, session: Session = None, *,
               legacy: bool | None = None) -> list[dict[str, Any]]:
    """The audit entries of one document, oldest first (by revision), as JSON-ready dicts: those
    earlier versions wrote to ``auditLog``, then the change records'. ``legacy=True`` / ``False``
    reads only the first / the second part (one driver call each, so that a caller can run each
    under its own check of the call's deadline)."""
    entries: list[dict[str, Any]] = []
    if legacy is not False:
        entries += [_entry(e) for e in database[LEGACY_AUDIT_COLLECTION].find(
            {"model": model, "documentId": document_id}, sort=[("time", 1), ("_id", 1)], session=session)]
    if legacy is not True:
        entries += [_entry(e, document_id) for e in database[CHANGES_COLLECTION].find(
            {"model": model, "documentId": document_id, "audit": True}, sort=[("rev", 1), ("t", 1)], session=session)]
    return entries


def _entry(entry: dict[str, Any], asked: Any = None) -> dict[str, Any]:
    """A trail entry of a record (``asked``: the document the trail is of, named in place of a
    packed record's list of documents)."""
    document_id = entry.get("documentId")
    return {
        "time": _utc(entry.get("time")),
        "actor": entry.get("actor"),
        "action": entry.get("action"),
        "model": entry.get("model"),
        "documentId": _shown(asked if isinstance(document_id, list) else document_id),
        "fields": list(entry.get("fields") or ()),
        "requestId": entry.get("requestId"),
        **({"revision": entry["rev"]} if "rev" in entry else {}),
    }


_SHOWN_JSON = RELAXED_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD)


def _shown(document_id: Any) -> str:
    """A trail entry's ``documentId``: an ObjectId's hex, a string id itself, a number as its
    digits; a compound key (an embedded document) or a boolean as JSON (``{"user": 1, "day": 2}``,
    ``true``), not Python's spelling of it."""
    if isinstance(document_id, (Mapping, bool)):
        return json_util.dumps(document_id, json_options=_SHOWN_JSON)
    return str(document_id)


def read_window(database: MongoDB, start: _dt.datetime | None, end: _dt.datetime, *, codec_options: Any = None,
                margin: _dt.timedelta = WINDOW_MARGIN) -> Iterator[Any]:
    """Journal records with ``start - margin < t <= end``, by ``t`` (a packed record as it is
    stored: ``backup.journal.entry_keys`` reads its documents)."""
    window: dict[str, Any] = {"$lte": to_ms(end)}
    if start is not None:
        window["$gt"] = to_ms(start - margin)
    coll = database.get_collection(CHANGES_COLLECTION, codec_options=codec_options) if codec_options else database[CHANGES_COLLECTION]
    try:
        yield from coll.find({"journal": True, "t": window}, sort=[("t", ASCENDING)], batch_size=1000)
    except PyMongoError as exc:
        raise translate(exc, operation="read change records") from exc


def prune_images(database: MongoDB, before: _dt.datetime) -> int:
    """Drop the post-images of records at or before ``before`` (the audit part stays until its
    retention); how many records were thinned."""
    try:
        result = database[CHANGES_COLLECTION].update_many(
            {"t": {"$lte": to_ms(before)}, "journal": True},
            {"$unset": {"doc": "", "docs": "", "owners": ""}, "$set": {"journal": False}})  # a packed record's too
        return int(result.modified_count)
    except PyMongoError as exc:
        raise translate(exc, operation="prune change records") from exc


def _utc(value: Any) -> Any:
    if isinstance(value, _dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value
