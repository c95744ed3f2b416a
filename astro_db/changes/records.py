"""What one change record holds, its ``_id`` (unique per write), intents, packed records, and the indexes its readers use.

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

A ``create_many`` of ``PACK_FROM`` documents or more writes its records **packed**: one record
per run of up to ``PACK_DOCS`` documents of the same revision (and ``PACK_BYTES`` of
post-images), in place of one record per document::

    {"_id": "users/<first documentId>+<count>/<rev>/<op>",
     "model": ..., "coll": ..., "documentId": [<_id>, ...], "rev": <int>, "action": "create",
     "time": <the last document's time>, "t": ...,
     "audit": true, ... (as above),
     "journal": true, "docs": <Binary: the post-images' BSON, one after another>,
     "owners": [<owner id>, ...]}                             # when the model has an owner field

``documentId`` is an array (a MongoDB ``_id`` never is: this is what tells a packed record
apart, ``is_packed``), so every query by ``documentId`` (the trail's, ``last_revisions``, a
reconcile's) matches it with the same filter and index (multikey); each post-image names its own
document (``_id`` first), so the images need no positions, and ``owners`` lets an erasure find
the records holding a user's images without reading into the bytes. A pack's documents share
its ``time`` and ``t``: a point-in-time cut takes a ``create_many`` whole or not at all. On
nx-27017 this is what brings ``create_many``'s records within reach of the bound
(docs/performance.md): the server pays per record and per embedded document it decodes, not per
byte. ``unpack`` gives a packed record's per-document records, ``restricted`` a pack cut to
some of its documents (an erasure's scrub, a restore's, a late record's settling).

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
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import bson
from bson import Binary, ObjectId, json_util
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument
from bson.tz_util import utc as _BSON_UTC
from pymongo import IndexModel
from pymongo import errors as pm

from ..query.order import identity

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB

__all__ = ["CHANGES_COLLECTION", "PACK_BYTES", "PACK_DOCS", "PACK_FROM", "as_intent", "confirmed", "record_id", "id_text",
           "document_ids", "is_packed", "make_records", "pack_records", "restricted", "to_ms", "ms_time", "unpack", "ensure_change_indexes"]

log = logging.getLogger(__name__)
CHANGES_COLLECTION = "astroChanges"
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)
_RAW: CodecOptions[Any] = CodecOptions(document_class=RawBSONDocument)
_STANDARD: CodecOptions[Any] = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)
PACK_FROM = 32
"""A create of this many documents or more writes its records packed (see the module's docstring);
fewer go one record per document, as a single create always does (the one-command ``bulkWrite``
of a small batch pairs each document with its own record)."""
PACK_DOCS = 1000
"""Documents per packed record at most."""
PACK_BYTES = 4 * 1024 * 1024
"""Post-image bytes per packed record at most (a record stays far below BSON's 16 MiB)."""


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


def is_packed(record: Any) -> bool:
    """Whether ``record`` (a dict or a raw document) is a packed record: its ``documentId`` is
    an array, which no document's ``_id`` can be."""
    return isinstance(record.get("documentId"), list)


def document_ids(record: Any) -> list[Any]:
    """The ids of the documents a record is about: a packed record's array, else its one id."""
    ids = record.get("documentId")
    return ids if isinstance(ids, list) else [ids]


def pack_records(*, model: str, collection: str, changes: Sequence[tuple[Any, int, Any, dict[str, Any] | None]],
                 actor: str | None, request_id: str | None, fields: list[str], audit: bool, journal: bool, op: Any,
                 owner: str | None = None, codec_options: Any = None) -> list[dict[str, Any]]:
    """The packed records of one create of many documents (``changes`` as ``make_records``
    takes them, each with its post-image): consecutive changes of the same revision, up to
    ``PACK_DOCS`` documents and ``PACK_BYTES`` of images each. ``fields``: the sorted names
    (``audit``); ``owner``: the stored path of the model's owner field (``_id`` for the users),
    whose values the ``owners`` list; ``codec_options``: how the images are encoded (the
    database's: the form the server stores)."""
    from ..security.fieldpaths import value_at  # noqa: PLC0415 - security imports the models, which import this package

    owner_of = None if owner is None else partial(value_at, path=owner)
    if not isinstance(codec_options, CodecOptions):  # mongomock's own (the embedded backend): the service's UUIDs
        codec_options = _STANDARD
    records: list[dict[str, Any]] = []
    head, tail = _id_ends(collection, op)
    ids: list[Any] = []
    blobs: list[bytes] = []
    owners: list[Any] = []
    size = 0
    rev: Any = None
    last_time: Any = None

    def close() -> None:
        nonlocal size
        if not ids:
            return
        when = ms_time(last_time)
        record: dict[str, Any] = {
            "_id": f"{head}{id_text(ids[0])}+{len(ids)}/{int(rev)}{tail}", "model": model, "coll": collection,
            "documentId": ids[:], "rev": rev, "action": "create", "time": when, "t": (when - _EPOCH) // _MS,
        }
        if audit:
            record.update(audit=True, actor=actor, requestId=request_id, fields=fields[:])
        if journal:
            record["journal"] = True
            record["docs"] = Binary(b"".join(blobs))
            if owner_of is not None:
                record["owners"] = _distinct(owners)
        records.append(record)
        ids.clear()
        blobs.clear()
        owners.clear()
        size = 0

    for document_id, change_rev, time, image in changes:
        blob, owner = b"", None
        if journal and image is not None:
            first = next(iter(image), None)
            stored = image if first == "_id" and image["_id"] is document_id else {"_id": document_id, **image}
            blob = bson.encode(stored, codec_options=codec_options)
            if owner_of is not None:
                owner = owner_of(stored)
        if ids and (change_rev != rev or len(ids) >= PACK_DOCS or size + len(blob) > PACK_BYTES):
            close()
        ids.append(document_id)
        rev = change_rev
        last_time = time if time is not None else last_time
        blobs.append(blob)
        owners.append(owner)
        size += len(blob)
    close()
    return records


def _distinct(values: Iterable[Any]) -> list[Any]:
    """``values`` without repeats (as the server tells them apart), ``None`` left out, in order."""
    seen: set[Any] = set()
    out = []
    for value in values:
        key = identity(value)
        if value is not None and key not in seen:
            seen.add(key)
            out.append(value)
    return out


def images(record: Any, codec_options: CodecOptions[Any] | None = None) -> list[Any]:
    """The post-images of a packed record (none once pruned or scrubbed), decoded with
    ``codec_options`` (``RAW``: raw documents, as backups read them; by default as the
    service's client decodes: aware UTC dates, UUIDs as ``uuid.UUID``)."""
    blob = record.get("docs")
    if blob is None:
        return []
    return list(bson.decode_all(bytes(blob), codec_options or _STANDARD))


def unpack(record: Any, codec_options: CodecOptions[Any] | None = None) -> list[dict[str, Any]]:
    """A record as its per-document records (a record that is not packed: itself, as a dict):
    each with its ``documentId``, the pack's revision, time and audit part, and its own
    post-image as ``doc`` while the pack holds it (``journal`` then; else no ``journal``)."""
    if not is_packed(record):
        return [record if isinstance(record, dict) else dict(record.items())]
    shared = {k: v for k, v in record.items() if k not in ("_id", "documentId", "docs", "owners", "journal")}
    by_id = {identity(image["_id"]): image for image in images(record, codec_options)}
    out = []
    for document_id in record["documentId"]:
        one = {"_id": f"{record['_id']}#{id_text(document_id)}", **shared, "documentId": document_id}
        image = by_id.get(identity(document_id))
        if image is not None and record.get("journal"):
            one["journal"] = True
            one["doc"] = image
        out.append(one)
    return out


def restricted(record: Any, keep: Callable[[Any], bool] | None = None,
               image: Callable[[Any], bool] | None = None,
               owner_of: Callable[[Any], Any] | None = None) -> dict[str, Any] | None:
    """A packed record (a dict or a raw document) cut down, as a dict: only the documents
    ``keep(documentId)`` accepts (None when none is left), and of their post-images only those
    ``image(raw image)`` accepts. ``owners`` lists the owners of the images left when
    ``owner_of`` (a raw image's owner value) is given; else it stays as it was (a finder's hint: a
    pack listed under an owner it no longer holds an image of is read and passed over). The
    ``_id`` stays: the cut is the same record, written once."""
    ids = [i for i in record["documentId"] if keep is None or keep(i)]
    if not ids:
        return None
    wanted = {identity(i) for i in ids}
    out = {k: v for k, v in record.items()}
    out["documentId"] = ids
    if "docs" in record:
        kept = [raw for raw in bson.decode_all(bytes(record["docs"]), _RAW)
                if identity(raw["_id"]) in wanted and (image is None or image(raw))]
        out["docs"] = Binary(b"".join(raw.raw for raw in kept))
        if owner_of is not None and "owners" in record:
            out["owners"] = _distinct(owner_of(raw) for raw in kept)
    return out


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
