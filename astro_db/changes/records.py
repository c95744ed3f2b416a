"""What one change record holds, its ``_id`` (unique per write), intents, and the indexes its readers use.

One record per document a write changed, in ``astroChanges``::

    {"_id": "users/<documentId>/<rev>/<op>",                  # one record per write, ever
     "model": "User", "coll": "users", "documentId": <_id>, "rev": <int>,
     "action": "create" | "update" | "delete",
     "time": <UTC date>, "t": <time in ms since 1970>,        # when the change happened
     "audit": true, "actor": ..., "requestId": ..., "fields": [...],   # when config.audit
     "journal": true, "doc": <post-image, stored (sealed) form>}       # when config.journal

``rev`` is the document's ``_rev`` after the write (a delete: the last revision plus one), so
the records of one document order by ``rev`` whichever client wrote its record first. A
document created again under an ``_id`` that had an earlier life continues that ``_id``'s
revisions (``ops.writes``: it starts one past the highest recorded), so its lives order too.
The ``_id`` names the write: ``<op>`` is the id the writing operation made once, on the client
(the ``_op`` an update stamps on the document), so a retried write meets its own record and
no other write, not even one of a later life of the same ``_id``, can take it. Records written
before this format (``<coll>/<documentId>/<rev>``) read the same: nothing parses an ``_id``.
``<documentId>`` is an ObjectId's hex digits, any other ``_id`` its canonical Extended JSON
(``id_text``: ``1`` and ``"1"`` are two documents, and two ``_id``s).

A delete writes its record first as an **intent** (``intent: {audit, journal}`` in place of
the ``audit`` / ``journal`` flags, so neither the trail nor a backup window sees it), deletes,
then confirms it (``confirmed``: the flags set, ``t`` now); a crash in between leaves the
intent for ``reconcile_changes()`` to confirm or drop (``changes.log``). ``time``
is the post-image's ``updatedAt`` (the server's clock for an update, the creating client's for
a create) or, for a delete, the client's clock when the delete returned. ``t`` selects backup
windows and point-in-time cuts; a record that could only be written late (see ``log``) gets
the ``t`` of the moment it was written, so no backup window has already gone past it.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bson import ObjectId, json_util
from bson.binary import UuidRepresentation
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.tz_util import utc as _BSON_UTC
from pymongo import IndexModel
from pymongo import errors as pm

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB

__all__ = ["CHANGES_COLLECTION", "as_intent", "confirmed", "record_id", "id_text", "make_records", "to_ms", "ms_time",
           "ensure_change_indexes"]

log = logging.getLogger(__name__)
CHANGES_COLLECTION = "astroChanges"
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)


def record_id(collection: str, document_id: Any, rev: int, op: Any) -> str:
    """The record's ``_id``: the document, its revision and the id of the operation that wrote
    it, so a retried insert of the same change meets its own duplicate key and nothing else."""
    head, tail = _id_ends(collection, op)
    return f"{head}{id_text(document_id)}/{int(rev)}{tail}"


_ID_JSON = CANONICAL_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD)


def id_text(document_id: Any) -> str:
    """A document's ``_id`` as it is written in its records' ``_id``: an ObjectId as its 24 hex
    digits (as ever), any other value as its canonical Extended JSON (a string in quotes, a
    number with its type), so two documents whose ``_id`` values print alike (``1`` and
    ``"1"``, an ObjectId and its hex string) never share a record ``_id``. Before, they did: an
    ``update_many`` over both wrote one record and took the other's duplicate key for its own
    (a silent gap), and ``reconcile_changes()`` could not rebuild it either."""
    if document_id.__class__ is ObjectId:
        return str(document_id)
    return json_util.dumps(document_id, json_options=_ID_JSON)


def _id_ends(collection: str, op: Any) -> tuple[str, str]:
    """What the ``_id`` of every record of one write on one collection starts and ends with."""
    return f"{collection}/", f"/{op}"


def as_intent(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as an intent: written before its write, invisible to readers until confirmed."""
    intent = dict(record)
    intent["intent"] = {"audit": bool(intent.pop("audit", False)), "journal": bool(intent.pop("journal", False))}
    return intent


def confirmed(record: dict[str, Any], when: Any = None) -> dict[str, Any]:
    """The final form of an intent (or of ``record`` itself): visible from ``when`` (now)."""
    final = dict(record)
    flags = final.pop("intent", None)
    if flags is not None:
        final.update({k: True for k, on in flags.items() if on})
    final["t"] = max(final.get("t", 0), to_ms(ms_time(when)))
    return final


def ms_time(value: Any) -> _dt.datetime:
    """``value`` (a datetime, naive = UTC; anything else: now) as an aware UTC datetime cut to
    milliseconds."""
    if not isinstance(value, _dt.datetime):
        value = _dt.datetime.now(_dt.timezone.utc)
    when: _dt.datetime = value
    if not when.microsecond % 1000:
        if when.tzinfo is _dt.timezone.utc:
            return when  # already what BSON keeps (the service's own clock: ``runtime.utcnow``)
        if when.tzinfo is _BSON_UTC:  # as the driver decodes a stored date (an update's post-image): the same instant
            return when.replace(tzinfo=_dt.timezone.utc)
    when = when.replace(tzinfo=_dt.timezone.utc) if when.tzinfo is None else when.astimezone(_dt.timezone.utc)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def to_ms(when: _dt.datetime) -> int:
    """Milliseconds since 1970 (UTC) of a datetime (naive = UTC), rounded down."""
    return (ms_time(when) - _EPOCH) // _MS


def make_records(*, model: str, collection: str, action: str, changes: Iterable[tuple[Any, int, Any, dict[str, Any] | None]],
                 actor: str | None, request_id: str | None, fields: Iterable[str], audit: bool, journal: bool,
                 op: Any, ordered: bool = False) -> list[dict[str, Any]]:
    """The records of one write: ``changes`` are ``(documentId, rev, time, post-image or None)``.

    What they share is worked out once (the sorted field names, the ``_id``'s ends, the time of
    consecutive changes made in the same millisecond), and a post-image that already starts
    with the document's ``_id`` (a create's new document, as sent) is the record's ``doc``
    itself, not a copy: nothing changes a record between its building and its insertion, and a
    record kept for later is copied then (``changes.log``). ``ordered``: ``fields`` is a list
    already sorted (``ChangeLog.build`` keeps one per write shape), listed as it is."""
    names = (fields if ordered and fields.__class__ is list else sorted(fields)) if audit else []
    head, tail = _id_ends(collection, op)  # record_id's format
    images = journal and action != "delete"
    records: list[dict[str, Any]] = []
    last: Any = None
    when: _dt.datetime | None = None
    t = 0
    for document_id, rev, time, image in changes:
        if when is None or time is None or time != last:
            when = ms_time(time)
            t = (when - _EPOCH) // _MS
            last = time
        record: dict[str, Any] = {
            "_id": f"{head}{document_id if document_id.__class__ is ObjectId else id_text(document_id)}/{int(rev)}{tail}",
            "model": model, "coll": collection,
            "documentId": document_id, "rev": rev, "action": action, "time": when, "t": t,
        }
        if audit:
            record["audit"] = True
            record["actor"] = actor
            record["requestId"] = request_id
            record["fields"] = names[:]
        if journal:
            record["journal"] = True
            if images and image is not None:
                first = None
                for first in image:  # noqa: B007 - its first key (no iterator call per record)
                    break
                # stored as the server stores it: _id first
                record["doc"] = image if first == "_id" and image["_id"] is document_id else {"_id": document_id, **image}
        records.append(record)
    return records


def ensure_change_indexes(database: MongoDB, retention_days: int | None) -> None:
    """The trail's ``(model, documentId, rev)`` index, the windows' ``t`` index, the sparse
    ``intent`` index reconcile finds unconfirmed intents by, and a TTL index on ``time`` when a
    retention is set (records older than it expire, trail and journal alike)."""
    coll = database[CHANGES_COLLECTION]
    wanted = [IndexModel([("model", 1), ("documentId", 1), ("rev", 1)], name="model_1_documentId_1_rev_1"),
              IndexModel([("t", 1)], name="t_1"), IndexModel([("intent", 1)], name="intent_1", sparse=True)]
    seconds = None if retention_days is None else int(retention_days) * 86_400
    if seconds is not None:
        wanted.append(IndexModel([("time", 1)], name="time_1", expireAfterSeconds=seconds))
    try:
        coll.create_indexes(wanted)  # one command
    except pm.OperationFailure as exc:
        if exc.code not in (85, 86):  # IndexOptionsConflict / IndexKeySpecsConflict: retention changed
            raise
        coll.create_indexes(wanted[:3])
        database.command("collMod", CHANGES_COLLECTION, index={"keyPattern": {"time": 1}, "expireAfterSeconds": seconds})
        log.info("change record retention changed to %d days", retention_days)
