"""What one change record holds, its idempotent ``_id``, and the indexes its readers use.

One record per document a write changed, in ``astroChanges``::

    {"_id": "users/<documentId>/<rev>",                       # one record per revision, ever
     "model": "User", "coll": "users", "documentId": <_id>, "rev": <int>,
     "action": "create" | "update" | "delete",
     "time": <UTC date>, "t": <time in ms since 1970>,        # when the change happened
     "audit": true, "actor": ..., "requestId": ..., "fields": [...],   # when config.audit
     "journal": true, "doc": <post-image, stored (sealed) form>}       # when config.journal

``rev`` is the document's ``_rev`` after the write (a delete: the last revision plus one), so
the records of one document order by ``rev`` whichever client wrote its record first. ``time``
is the post-image's ``updatedAt`` (the server's clock for an update, the creating client's for
a create) or, for a delete, the client's clock when the delete returned. ``t`` selects backup
windows and point-in-time cuts; a record that could only be written late (see ``log``) gets
the ``t`` of the moment it was written, so no backup window has already gone past it.
"""

from __future__ import annotations

import datetime as _dt
import logging
from typing import Any, Iterable

from pymongo import IndexModel
from pymongo import errors as pm

__all__ = ["CHANGES_COLLECTION", "record_id", "make_record", "to_ms", "ms_time", "ensure_change_indexes"]

log = logging.getLogger(__name__)
CHANGES_COLLECTION = "astroChanges"
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def record_id(collection: str, document_id: Any, rev: int) -> str:
    """The record's ``_id``: a retried insert of the same change meets its own duplicate key."""
    return f"{collection}/{document_id}/{int(rev)}"


def ms_time(value: Any) -> _dt.datetime:
    """``value`` (a datetime, naive = UTC; anything else: now) as an aware UTC datetime cut to
    milliseconds."""
    if not isinstance(value, _dt.datetime):
        value = _dt.datetime.now(_dt.timezone.utc)
    when: _dt.datetime = value
    when = when.replace(tzinfo=_dt.timezone.utc) if when.tzinfo is None else when.astimezone(_dt.timezone.utc)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def to_ms(when: _dt.datetime) -> int:
    """Milliseconds since 1970 (UTC) of a datetime (naive = UTC), rounded down."""
    return (ms_time(when) - _EPOCH) // _dt.timedelta(milliseconds=1)


def make_record(*, model: str, collection: str, document_id: Any, rev: int, action: str, time: Any,
                actor: str | None, request_id: str | None, fields: Iterable[str], image: dict[str, Any] | None,
                audit: bool, journal: bool) -> dict[str, Any]:
    """One change record (see the module docstring for its fields)."""
    when = ms_time(time)
    record: dict[str, Any] = {
        "_id": record_id(collection, document_id, rev), "model": model, "coll": collection,
        "documentId": document_id, "rev": rev, "action": action, "time": when, "t": to_ms(when),
    }
    if audit:
        record.update(audit=True, actor=actor, requestId=request_id, fields=sorted(fields))
    if journal:
        record["journal"] = True
        if action != "delete" and image is not None:
            record["doc"] = {"_id": document_id, **image}  # stored as the server stores it: _id first
    return record


def ensure_change_indexes(database: Any, retention_days: int | None) -> None:
    """The trail's ``(model, documentId, rev)`` index, the windows' ``t`` index, and a TTL index
    on ``time`` when a retention is set (records older than it expire, trail and journal alike)."""
    coll = database[CHANGES_COLLECTION]
    wanted = [IndexModel([("model", 1), ("documentId", 1), ("rev", 1)], name="model_1_documentId_1_rev_1"),
              IndexModel([("t", 1)], name="t_1")]
    seconds = None if retention_days is None else int(retention_days) * 86_400
    if seconds is not None:
        wanted.append(IndexModel([("time", 1)], name="time_1", expireAfterSeconds=seconds))
    try:
        coll.create_indexes(wanted)  # one command
    except pm.OperationFailure as exc:
        if exc.code not in (85, 86):  # IndexOptionsConflict / IndexKeySpecsConflict: retention changed
            raise
        coll.create_indexes(wanted[:2])
        database.command("collMod", CHANGES_COLLECTION, index={"keyPattern": {"time": 1}, "expireAfterSeconds": seconds})
        log.info("change record retention changed to %d days", retention_days)
