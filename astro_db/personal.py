"""Personal data of one user (GDPR arts. 15, 17 and 20): ``export_user`` and ``erase_user``, and the erasure ledger.

**Export** (``Database.export_user``): every document a registered model holds for the user (the
users' model by ``_id``, every owned model by its declared owner field, ``meta["owner"]``),
read through the pipeline (``iter_find``: authorized, scoped, decrypted, streamed), in stored
field names, plus the change records about those documents (``astroChanges``, the older
``auditLog``), their post-images decrypted. Encoded as MongoDB Extended JSON v2, relaxed
(``bson.json_util``): an ObjectId is ``{"$oid": hex}``, a date ``{"$date": ISO-8601}``.

**Erasure** (``Database.erase_user``), exactly once and resumable:

1. an intent is written first to the ledger ``astroErasures`` (``_id`` = the user's id, state
   ``started``, the time, the actor, the counts of what is to be erased; no personal data);
2. the user's live documents are deleted by the cascade (``workflows.delete_user_cascade``, one
   transaction, through the pipeline: the deletes get their own change records);
3. the change records of the user's documents are scrubbed (their post-images removed: the
   audit part, *that* a write happened, by whom, which fields, stays) (``scrub_record``; a
   ``create_many``'s packed record loses the user's images, the other users' stay);
4. the user's data keys are shredded (``_forget_keys``; the key vault's delete goes through the
   run step: retried while the failure is transient, else ``ErasureIncompleteError``, the
   erasure left ``started`` for a rerun);
5. an ``erase`` change record is written (user id, time, actor, counts), and the ledger entry
   is marked ``done``.

Each step is idempotent (deleting what is gone, scrubbing what is scrubbed, records and the
ledger keyed by the user's id), so a rerun of ``erase_user``, or ``reconcile_changes()``
(``resume_erasures``), finishes an erasure a crash interrupted, and a done erasure is never
done again. Backups keep the ledger (ids and counts only); a restore skips every document of
an erased user it finds in a set or a journal, and scrubs their records (``backup.restore``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Container, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from bson import ObjectId, json_util
from bson.binary import UuidRepresentation
from bson.json_util import RELAXED_JSON_OPTIONS

from .changes import CHANGES_COLLECTION, record_id
from .changes.reader import LEGACY_AUDIT_COLLECTION
from .changes.records import images, is_packed, ms_time, restricted, to_ms, unpack
from .errors import AstroDBError, DuplicateKeyError, ErasureIncompleteError, NotFoundError, PermissionDeniedError
from .query.filters import coerce_id
from .query.order import identity
from .security import access
from .security.crypto import FieldCrypto
from .security.fieldpaths import value_at
from .workflows import delete_user_cascade

if TYPE_CHECKING:  # pragma: no cover
    from ._types import MongoDB, Session
    from .database import Database
    from .ops import Executor
    from .registry import ModelInfo, ModelRegistry

__all__ = [
    "ERASURES_COLLECTION", "EXPORT_FORMAT", "LEGACY_JOURNAL_COLLECTION", "export_user", "export_stream", "write_export",
    "erase_user", "resume_erasures",
    "erased_ids", "owner_paths", "belongs_to", "scrub_record",
]

log = logging.getLogger(__name__)

ERASURES_COLLECTION = "astroErasures"
"""The erasure ledger: one document per erased user, ``_id`` = the user's id; no personal data."""
LEGACY_JOURNAL_COLLECTION = "changeJournal"  # the journal of versions before change records (post-images)
EXPORT_FORMAT = "astro_db.export/1"
ERASE_ACTION = "erase"
STARTED, DONE = "started", "done"
_CHUNK = 500  # document ids per records query
_SCRUB_ATTEMPTS = 5  # reads of one packed record an erasure's scrub makes while others change it


# --- what belongs to a user -----------------------------------------------------------------------

def _models(registry: ModelRegistry) -> list[ModelInfo]:
    """The users' model, then every model owned through an owner field."""
    return [registry.users(), *registry.owned]


def _owner(info: ModelInfo) -> str:
    """The stored field of a document of ``info`` holding its user's id (``_id`` for the users)."""
    return "_id" if info.declaration.is_user else str(info.declaration.owner)


def owner_paths(registry: ModelRegistry) -> dict[str, str]:
    """``{collection: stored owner field}`` of every model holding documents of a user."""
    return {info.collection: _owner(info) for info in _models(registry)}


def belongs_to(doc: Mapping[str, Any], owner: str, users: Container[Any]) -> bool:
    """Whether a stored document (its ``owner`` field) belongs to one of ``users``."""
    value = value_at(doc, owner)  # an owner may sit in an embedded document (``sender.userId``)
    return value is not None and value in users


def scrub_record(record: dict[str, Any]) -> dict[str, Any]:
    """A change record without its post-image: still says *that* a write happened (action, time,
    revision, actor, field names), no longer *what* it wrote."""
    out = {k: v for k, v in record.items() if k != "doc"}
    out["journal"] = False
    if isinstance(out.get("intent"), Mapping):
        out["intent"] = {**out["intent"], "journal": False}
    out["erased"] = True
    return out


_SCRUB = {"$unset": {"doc": ""}, "$set": {"journal": False, "erased": True}}


def erased_ids(database: MongoDB, among: list[Any] | None = None, session: Session = None) -> set[Any]:
    """The ids of the users the ledger of ``database`` holds (started or done), or which of
    ``among`` it holds: an erased user's id is never given to a new user (a create under it
    would be dropped by every restore, which skips an erased user's documents)."""
    filt = {} if among is None else {"_id": {"$in": among}}
    return {e["_id"] for e in database[ERASURES_COLLECTION].find(filt, {"_id": 1}, session=session)}


# --- export ----------------------------------------------------------------------------------------

def export_user(db: Database, ex: Executor, user_id: Any) -> dict[str, Any]:
    """Everything stored about ``user_id`` as one JSON-ready document (see the module docstring).

    The user may export her own data (a ``self`` actor, art. 15/20); any other actor needs,
    besides ``read``, ``audit`` on every model read (the change records are the audit trail):
    an admin's call. ``NotFoundError`` when nothing is stored about that id."""
    export: dict[str, Any] = {}
    current: dict[str, Any] = {}
    for kind, name, value in export_stream(db, ex, user_id):
        if kind == "head":
            export[name] = value
        elif kind == "model":
            current = export.setdefault("models", {})[name] = {**value, "documents": [], "changes": []}
        elif kind == "document":
            current["documents"].append(value)
        elif kind == "change":
            current["changes"].append(value)
    return export


def write_export(db: Database, ex: Executor, user_id: Any, write: Callable[[str], Any]) -> None:
    """The document ``export_user`` returns, written as JSON text to ``write`` piece by piece,
    one document or record at a time (``astro-db export-user``: flat memory, however much the
    user has). Nothing is written when the call is refused or the user unknown."""
    state = "top"  # "top", or inside a model's "documents" / "changes" list
    top_sep = model_sep = item_sep = ""
    for kind, name, value in export_stream(db, ex, user_id):
        if kind == "head":
            if state != "top":
                write("]}}")  # the list, the model, the models
                state = "top"
            write(("{" if not top_sep else top_sep) + f"\n  {json.dumps(name)}: {_text(value)}")
            top_sep = ","
        elif kind == "model":
            if state == "top":
                write(f'{top_sep}\n  "models": {{')
                top_sep = ","
            else:
                write("]}")
            meta = json.dumps(value)[:-1]
            write(f"{model_sep}\n    {json.dumps(name)}: {meta}{', ' if value else ''}\"documents\": [")
            model_sep, item_sep, state = ",", "", "documents"
        elif kind == "changes":
            write('], "changes": [')
            item_sep, state = "", "changes"
        else:
            write(f"{item_sep}\n      {_text(value)}")
            item_sep = ","
    if state != "top":
        write("]}}")
    write("\n}\n")


def export_stream(db: Database, ex: Executor, user_id: Any) -> Iterator[tuple[str, str, Any]]:
    """The export as a stream of ``(kind, name, value)``, JSON-ready values: ``head`` items
    (format, encoding, userId, exportedAt), then per model ``model`` (its collection and owner
    field), its ``document`` items, ``changes`` (the records follow) and its ``change`` items,
    then the ``head`` item ``erasure``. Authorized and checked before the first item."""
    rt = ex.runtime
    registry = rt.registry
    users = registry.users()
    ex.authorize(db.actor, "export_user", users)
    uid = coerce_id(user_id, f"{users.name} id")
    _may_export(db.actor, uid, registry)
    database = rt.gateway
    erasure = ex.call(users, "export_user", partial(database[ERASURES_COLLECTION].find_one, {"_id": uid}))
    if erasure is None and not _known(db, ex, users, uid):
        raise NotFoundError(f"nothing is stored about {users.name} {uid}")
    legacy_log = LEGACY_AUDIT_COLLECTION in ex.call(None, "export_user", database.list_collection_names)
    yield "head", "format", EXPORT_FORMAT
    yield "head", "encoding", "MongoDB Extended JSON v2, relaxed (bson.json_util)"
    yield "head", "userId", str(uid)
    yield "head", "exportedAt", _now().isoformat().replace("+00:00", "Z")
    for info in _models(registry):
        owner = _owner(info)
        yield "model", info.name, {"collection": info.collection, "owner": owner}
        ids: list[Any] = []  # the user's documents: bounded by what she has, not by the database
        for doc in db.iter_find(info.name, {owner: uid}, lean=True, batch_size=_CHUNK):  # the pipeline: scoped, opened
            ids.append(doc["_id"])
            yield "document", info.name, _json(doc)
        seen = set(ids)
        earlier_ids = ex.call(info, "export_user", partial(database[CHANGES_COLLECTION].distinct, "documentId",
                                                           {"coll": info.collection, f"doc.{owner}": uid}))
        earlier_ids += ex.call(info, "export_user", partial(_packed_ids, database, info.collection, owner, uid))
        for earlier in earlier_ids:
            if earlier not in seen:  # a document of the user deleted since: its records are still hers
                seen.add(earlier)
                ids.append(earlier)
        yield "changes", info.name, None
        for record in _records(ex, info, ids, legacy_log=legacy_log, owner=owner, uid=uid):
            yield "change", info.name, _json(record)
    yield "head", "erasure", _json(erasure) if erasure is not None else None


def _packed_ids(database: MongoDB, collection: str, owner: str, uid: Any) -> list[Any]:
    """The ids of the documents of ``collection`` whose post-image in a packed record (a
    ``create_many``'s, ``changes.records``) was ``uid``'s: the packs listing her among their
    ``owners``, read image by image (a pack holds other users' documents too)."""
    found = []
    for pack in database[CHANGES_COLLECTION].find({"coll": collection, "owners": uid}, {"docs": 1}):
        found += [image["_id"] for image in images(pack) if value_at(image, owner) == uid]
    return found


def _known(db: Database, ex: Executor, users: ModelInfo, uid: ObjectId) -> bool:
    """Whether anything is stored about ``uid``: the user, or change records of the user."""
    if db.count(users.name, {"_id": uid}):
        return True
    database = ex.runtime.gateway
    return bool(ex.call(users, "export_user", partial(database[CHANGES_COLLECTION].count_documents,
                                                      {"coll": users.collection, "documentId": uid}, limit=1)))


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _may_export(actor: access.Actor | None, uid: ObjectId, registry: ModelRegistry) -> None:
    if actor is None:
        return
    if actor.scoped:
        if actor.id != str(uid):
            raise PermissionDeniedError(f"actor {actor.id} may export only its own data, not {registry.users().name} {uid}")
        return
    for info in _models(registry):  # the change records are the audit trail: an admin's
        access.authorize(actor, info, access.AUDIT, call="export_user")


def _records(ex: Executor, info: ModelInfo, ids: list[Any], *, legacy_log: bool, owner: str,
             uid: ObjectId) -> Iterator[dict[str, Any]]:
    """The confirmed change records (and older ``auditLog`` entries, when ``legacy_log``: that
    collection exists) of the documents ``ids`` of ``info`` while they were ``uid``'s, post-images
    opened; one query per chunk of ids.

    A document can change hands (an update of its owner field): the records of the revisions
    another user owned, their post-images that user's data, are not this user's and are left
    out. A record without a post-image (a delete, the audit trail alone) belongs to whoever
    owned the revision before it; with no post-image before it either, it is kept."""
    rt = ex.runtime
    database = rt.gateway
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        legacy = ex.call(info, "export_user", partial(_listed, database[LEGACY_AUDIT_COLLECTION],
                                                      {"model": info.name, "documentId": {"$in": chunk}}, [("time", 1), ("_id", 1)])
                         ) if legacy_log else []
        current = ex.call(info, "export_user", partial(
            _listed, database[CHANGES_COLLECTION],
            {"coll": info.collection, "documentId": {"$in": chunk}, "intent": {"$exists": False}},
            [("documentId", 1), ("rev", 1)]))
        if any(is_packed(r) for r in current):
            current = _by_document(current, chunk)
        yield from legacy
        held: dict[Any, bool] = {}  # documentId -> whether its latest post-image so far was uid's
        for record in current:
            image = record.get("doc")
            if isinstance(image, Mapping):
                held[record.get("documentId")] = value_at(image, owner) == uid
            if not held.get(record.get("documentId"), True):
                continue  # a revision another user owned
            if isinstance(image, Mapping):
                record["doc"] = rt.crypto.open_document(info, dict(image))
            yield record


def _by_document(records: list[dict[str, Any]], ids: list[Any]) -> list[dict[str, Any]]:
    """``records`` (sorted by document and revision) with each packed one as the records of
    those of its documents in ``ids`` (``changes.records.unpack``), in the same order: each
    document's records together, by revision."""
    wanted = {identity(i) for i in ids}
    groups: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        for one in unpack(record):
            key = identity(one["documentId"])
            if key in wanted:
                groups.setdefault(key, []).append(one)
    return [r for group in groups.values() for r in sorted(group, key=lambda r: r.get("rev", 0))]


def _listed(coll: Any, filt: dict[str, Any], sort: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return list(coll.find(filt, sort=sort))


# relaxed Extended JSON, with UUIDs as the client reads them (config: ``uuidRepresentation=standard``):
# a UUID (the Node driver's, an app's ``UUIDField``) is binary subtype 4, never an error
_EXPORT_JSON = RELAXED_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD)


def _json(doc: Any) -> Any:
    """``doc`` in relaxed Extended JSON, as plain JSON-ready Python values."""
    return json.loads(json_util.dumps(doc, json_options=_EXPORT_JSON))


def _now() -> _dt.datetime:
    return ms_time(None)


# --- erasure ---------------------------------------------------------------------------------------

def erase_user(db: Database, ex: Executor, user_id: Any, *, actor: access.Actor | None = None) -> dict[str, Any]:
    """Erase ``user_id`` (``db``: the trusted view; ``actor``: who asks, authorized here, the
    ``self`` scope included: a self-scoped admin erases only herself); the report.

    ``{"userId", "state": "done", "erased": {model: documents}, "keys_shredded", "resumed",
    "already"}``: ``resumed`` when an interrupted erasure was finished, ``already`` when it was
    done before (nothing is done again). ``NotFoundError`` for a user that does not exist and
    was never erased (nothing written); ``ValidationError`` for a malformed id."""
    rt = ex.runtime
    registry = rt.registry
    users = registry.users()
    guard = ex.authorize(actor, "erase_user", users)  # here, for every path (as the export's)
    uid = coerce_id(user_id, f"{users.name} id")
    if not guard.admits({"_id": uid}):  # a self-scoped admin erases only herself: ``db`` is the trusted view
        raise PermissionDeniedError(f"actor {guard.actor.id if guard.actor else '?'} is limited to its own documents; "
                                    f"it may erase only its own data, not {users.name} {uid}")
    ledger = rt.gateway[ERASURES_COLLECTION]
    entry = ex.call(users, "erase_user", lambda: ledger.find_one({"_id": uid}))
    if entry is not None and entry.get("state") == DONE:
        return _report(entry, resumed=False, already=True)
    resumed = entry is not None
    if entry is None:
        if db.count(users.name, {"_id": uid}) == 0:
            raise NotFoundError(f"{users.name} {uid} does not exist (and was never erased): nothing to erase")
        counts = {info.name: db.count(info.name, {_owner(info): uid}) for info in registry.owned}
        counts[users.name] = 1
        entry = {"_id": uid, "state": STARTED, "model": users.name, "started": _now(),
                 "actor": actor.id if actor is not None else None,
                 "requestId": actor.request_id if actor is not None else None, "counts": counts}
        try:
            ex.call(users, "erase_user", lambda: ledger.insert_one(dict(entry)))
        except DuplicateKeyError:  # another process began it (or our retried insert landed): go on from there
            entry = ex.call(users, "erase_user", lambda: ledger.find_one({"_id": uid}))
            if entry is None:  # pragma: no cover - the ledger is never deleted from
                raise
            resumed = True
            if entry.get("state") == DONE:
                return _report(entry, resumed=False, already=True)
        log.info("erasure of %s %s begun", users.name, uid)
    done = _complete(db, ex, entry)
    if resumed:
        log.info("erasure of %s %s resumed and finished", users.name, uid)
    return _report(done, resumed=resumed, already=False)


def resume_erasures(db: Database, ex: Executor) -> dict[str, int]:
    """``reconcile_changes()``'s part: finish every erasure a crash left ``started``, then scrub
    again the records of every erased user (a record another process held in memory after a
    failed write may have been written since, post-image and all). ``{"finished": n,
    "scrubbed": <records scrubbed>}``; one update per model per 1,000 erased users."""
    rt = ex.runtime
    database = rt.gateway
    pending = ex.call(None, "resume erasures", partial(_listed, database[ERASURES_COLLECTION], {"state": STARTED},
                                                       [("_id", 1)]))
    for entry in pending:
        _complete(db, ex, entry)
        log.info("erasure of user %s resumed and finished", entry["_id"])
    # in the server's _id order: Python cannot sort ids of two types (an ObjectId and a string),
    # and a set takes user true and user 1 for one
    erased = [entry["_id"] for entry in ex.call(None, "resume erasures", partial(
        _listed, database[ERASURES_COLLECTION], {}, [("_id", 1)]))]
    scrubbed = 0
    for start in range(0, len(erased), 1000):
        scrubbed += _scrub(ex, rt.registry, erased[start:start + 1000])
    if scrubbed:
        log.warning("%d change record(s) of erased users written after their erasure were scrubbed", scrubbed)
    return {"finished": len(pending), "scrubbed": scrubbed}


def _scrub(ex: Executor, registry: ModelRegistry, users: list[ObjectId]) -> int:
    """Step 3: the post-images of the records of ``users``' documents removed (in
    ``astroChanges`` and the older ``changeJournal``); how many records were scrubbed."""
    database = ex.runtime.gateway
    present = set(ex.call(None, "erase_user", database.list_collection_names))
    scrubbed = 0
    for info in _models(registry):
        owner = {"$in": users} if len(users) > 1 else users[0]
        where = {"coll": info.collection, f"doc.{_owner(info)}": owner}
        for name in (CHANGES_COLLECTION, LEGACY_JOURNAL_COLLECTION):
            if name in present:
                result = ex.call(info, "erase_user", partial(database[name].update_many, where, _SCRUB))
                scrubbed += int(result.modified_count)
        if CHANGES_COLLECTION in present:
            scrubbed += ex.call(info, "erase_user", partial(_scrub_packs, database, info.collection, _owner(info), users))
    return scrubbed


def _scrub_packs(database: MongoDB, collection: str, owner: str, users: list[ObjectId]) -> int:
    """Step 3 for the packed records (a ``create_many``'s, ``changes.records``) listing one of
    ``users`` among their ``owners``: each rewritten without those users' post-images (the
    other documents' stay), compared and set on the images it read, so a pruning or another
    scrub meanwhile is read again, never overwritten; how many packs were scrubbed."""
    erased = {identity(u) for u in users}

    def kept(image: Any) -> bool:
        return identity(value_at(image, owner)) not in erased

    def owner_of(image: Any) -> Any:
        return value_at(image, owner)

    coll = database[CHANGES_COLLECTION]
    scrubbed = 0
    for pack in list(coll.find({"coll": collection, "owners": {"$in": users}})):
        for _ in range(_SCRUB_ATTEMPTS):
            if "docs" not in pack:
                break
            cut = restricted(pack, image=kept, owner_of=owner_of)
            assert cut is not None  # no document is left out, only images
            change: dict[str, Any] = {"$set": {"erased": True, "owners": cut.get("owners", [])}}
            if cut["docs"]:
                change["$set"]["docs"] = cut["docs"]
            else:
                change["$set"]["journal"] = False
                change["$unset"] = {"docs": ""}
            if coll.update_one({"_id": pack["_id"], "docs": pack["docs"]}, change).modified_count:
                scrubbed += 1
                break
            pack = coll.find_one({"_id": pack["_id"]})  # changed meanwhile: read again
            if pack is None:
                break
    return scrubbed


def _complete(db: Database, ex: Executor, entry: dict[str, Any]) -> dict[str, Any]:
    """Steps 2 to 5 of an erasure (each idempotent); the ledger entry as done."""
    rt = ex.runtime
    registry = rt.registry
    users = registry.users()
    database = rt.gateway
    uid = entry["_id"]
    delete_user_cascade(db, uid, models=registry)  # 2. the live documents (their delete records hold no data)

    def run(fn: Any) -> Any:
        return ex.call(None, "erase_user", fn)

    rt.changes.flush(run, database)  # records held in memory would bring post-images back after the scrub
    _scrub(ex, registry, [uid])  # 3. the records of the user's documents: post-images removed
    try:
        keys = _forget_keys(ex, rt.crypto, entry)  # 4. the user's data keys
    except AstroDBError as exc:  # the key vault's delete, as the run step gave up on it (retried when transient)
        raise ErasureIncompleteError(
            f"erase_user {users.name} {uid}: its documents are deleted and their change records scrubbed, but its "
            f"data keys could not be deleted ({exc}); the erasure stays 'started' in {ERASURES_COLLECTION}: call "
            "erase_user again, or reconcile_changes(), once the key vault can be written", user_id=uid,
            pending=("data keys", "erase record")) from exc
    finished = _now()
    record = {  # 5. the erasure itself, recorded without personal data
        "_id": record_id(users.collection, uid, 0, ERASE_ACTION), "model": users.name, "coll": users.collection,
        "documentId": uid, "rev": _next_rev(ex, users, uid), "action": ERASE_ACTION, "time": finished,
        "t": to_ms(finished), "audit": True, "actor": entry.get("actor"), "requestId": entry.get("requestId"),
        "fields": [], "counts": dict(entry.get("counts") or {}), "keysShredded": keys,
    }
    try:
        ex.call(users, "erase_user", lambda: database[CHANGES_COLLECTION].insert_one(record))
    except DuplicateKeyError:
        pass  # written by the run a crash interrupted
    update = {"state": DONE, "finished": finished}
    ex.call(users, "erase_user", lambda: database[ERASURES_COLLECTION].update_one(
        {"_id": uid, "state": STARTED}, {"$set": update, "$max": {"keysShredded": keys}}))
    done = ex.call(users, "erase_user", lambda: database[ERASURES_COLLECTION].find_one({"_id": uid}))
    return dict(done or {**entry, **update, "keysShredded": keys})


def _next_rev(ex: Executor, users: ModelInfo, uid: ObjectId) -> int:
    """One past the highest revision recorded for the user's document: the erase orders last."""
    database = ex.runtime.gateway
    last = ex.call(users, "erase_user", lambda: database[CHANGES_COLLECTION].find_one(
        {"coll": users.collection, "documentId": uid, "action": {"$ne": ERASE_ACTION}}, {"rev": 1}, sort=[("rev", -1)]))
    return int(last["rev"]) + 1 if last is not None and isinstance(last.get("rev"), int) else 0


def _forget_keys(ex: Executor, crypto: FieldCrypto, entry: Mapping[str, Any]) -> int:
    """Step 4: delete the user's data keys (``FieldCrypto.shred``: MongoDB's client-side field
    level encryption keeps one per user), so every value sealed under them, in live documents,
    change records and backup sets, reads as ``UNREADABLE`` forever; how many keys the erasure
    shredded. The count found is kept in the ledger entry before the deletion, so a rerun after
    a deletion whose every reply was lost (the keys gone, the call failed) still reports them.
    Without field encryption configured nothing was sealed and there is no key to delete: 0."""
    if crypto.vault is None:
        return 0
    uid = entry["_id"]
    users = ex.runtime.registry.users()
    ledger = ex.runtime.gateway[ERASURES_COLLECTION]

    def noted(found: int) -> None:
        if found:
            ex.call(users, "erase_user", lambda: ledger.update_one(
                {"_id": uid, "state": STARTED}, {"$max": {"keysShredded": found}}))

    found = crypto.shred(uid, noted)
    return max(found, int(entry.get("keysShredded") or 0))


def _report(entry: Mapping[str, Any], *, resumed: bool, already: bool) -> dict[str, Any]:
    finished = entry.get("finished")
    return {
        "userId": str(entry["_id"]), "state": entry.get("state"), "erased": dict(entry.get("counts") or {}),
        "keys_shredded": int(entry.get("keysShredded") or 0),
        "finished": finished.isoformat() if isinstance(finished, _dt.datetime) else None,
        "resumed": resumed, "already": already,
    }
