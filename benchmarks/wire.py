"""Raw PyMongo sending astro_db's commands: the change records, updates and batches astro_db sends, built by hand.

astro_db's default writes send more than raw PyMongo's plain calls: a create sends its document
and its change record (with the document as post-image) in one ``bulkWrite`` command; an
update sends a ``findAndModify`` that advances the revision (``$inc _rev``, ``$set _op``,
``$currentDate updatedAt``) and returns the document, then an ``insert`` of its record; a
``create_many`` of more than 16 documents sends one ``insert`` of the documents and one of their
records (from 32 documents on, packed: one record per 1,000 documents, their post-images as BSON
bytes). This module builds those same commands for a plain PyMongo client, so the benchmarks can
time raw PyMongo doing exactly what astro_db makes the server do: what is left between astro_db
and that side is astro_db's own client work; what is between that side and plain raw PyMongo is
the extra commands (the server's work for them, and the driver's for encoding them).

Everything is built before the timing (``Record`` and the update documents), in the form
``astro_db/changes/records.py`` gives them (the same keys in the same order, aware UTC datetimes
cut to the millisecond, the same post-image); ``tests/unit/test_wire_commands.py`` compares a built
record with one astro_db wrote. The timed calls (``create``, ``update``, ``create_many``) are
PyMongo calls and nothing else.

``Recorder`` (a PyMongo ``CommandListener``) and ``compare`` check the equivalence once per run,
untimed: the commands astro_db sent for one operation (captured on a client of its own) against
the ones this side sent for the same operation (on another listening client), by name, order,
target collection, ordering, write concern, the update's operators and fields, and each document's
keys (a record's post-image and field names too) and BSON size. The timed clients have no listener.

This module imports nothing of astro_db.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import ObjectId
from pymongo import ReturnDocument, monitoring

__all__ = ["CHANGES", "ONE_COMMAND_BATCH", "IGNORED", "Shape", "Recorder", "compare", "describe", "record",
           "create_record", "packed_records", "advance", "post_image", "speaks_bulk_write", "Create", "Update", "Writes"]

CHANGES = "astroChanges"  # astro_db.changes.records.CHANGES_COLLECTION
ONE_COMMAND_BATCH = 16  # astro_db.ops.writes.ONE_COMMAND_BATCH: up to it, a create_many is one bulkWrite
PACK_FROM = 32  # astro_db.changes.records.PACK_FROM: from it on, a create_many's records are packed
PACK_DOCS = 1000  # astro_db.changes.records.PACK_DOCS: documents per packed record
# astro_db.ops.sizes.LARGE_DOCUMENT: above it (BSON bytes), a create is an insert of the
# document(s), then one of the record(s), not a bulkWrite
LARGE_DOCUMENT = 2 * 1024 * 1024
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)
# what a client sends on its own (handshakes, monitoring, sessions): not the operation's commands
IGNORED = frozenset({"hello", "ismaster", "isMaster", "ping", "buildInfo", "endSessions", "killCursors", "getMore"})


def _ms(when: _dt.datetime) -> _dt.datetime:
    when = when.astimezone(_dt.timezone.utc) if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def record(*, model: str, coll: str, document_id: Any, rev: int, action: str, when: _dt.datetime,
           fields: Sequence[str], doc: dict[str, Any] | None, op: Any, audit: bool = True,
           journal: bool = True) -> dict[str, Any]:
    """One change record as ``changes.records.make_records`` builds it (no actor, no request id:
    the benchmarks' trusted app); ``doc`` is the post-image, kept as it is (not copied)."""
    when = _ms(when)
    out: dict[str, Any] = {"_id": f"{coll}/{document_id}/{int(rev)}/{op}", "model": model, "coll": coll,
                           "documentId": document_id, "rev": rev, "action": action, "time": when,
                           "t": (when - _EPOCH) // _MS}
    if audit:
        out.update(audit=True, actor=None, requestId=None, fields=sorted(fields))
    if journal:
        out["journal"] = True
        if doc is not None and action != "delete":
            out["doc"] = doc
    return out


def create_record(model: str, coll: str, doc: dict[str, Any], op: Any) -> dict[str, Any]:
    """A create's record: revision 0, every stored field named, the document as sent its post-image."""
    return record(model=model, coll=coll, document_id=doc["_id"], rev=0, action="create", when=doc["updatedAt"],
                  fields=[k for k in doc if k != "_id"], doc=doc, op=op)


def packed_records(model: str, coll: str, docs: Sequence[dict[str, Any]], op: Any, owner: str | None,
                   pack_docs: int = PACK_DOCS) -> list[dict[str, Any]]:
    """A large create's records as ``changes.records.pack_records`` builds them: per run of
    ``pack_docs`` documents (fresh ones: one revision, 0), the documents' ids, the shared audit
    part, their post-images as stored BSON one after another, and their owners (``owner``: the
    stored owner field, ``_id`` for the users; None: the model has none)."""
    out = []
    for start in range(0, len(docs), pack_docs):
        part = docs[start:start + pack_docs]
        when = _ms(part[-1]["updatedAt"])
        rec: dict[str, Any] = {
            "_id": f"{coll}/{part[0]['_id']}+{len(part)}/0/{op}", "model": model, "coll": coll,
            "documentId": [d["_id"] for d in part], "rev": 0, "action": "create", "time": when,
            "t": (when - _EPOCH) // _MS, "audit": True, "actor": None, "requestId": None,
            "fields": sorted(set().union(*part).difference(("_id",))), "journal": True,
            "docs": bson.Binary(b"".join(bson.encode(d) for d in part)),
        }
        if owner is not None:
            rec["owners"] = list(dict.fromkeys(d.get(owner) for d in part if d.get(owner) is not None))
        out.append(rec)
    return out


def advance(sets: dict[str, Any], op: Any) -> dict[str, Any]:
    """An update's document as astro_db sends it (``changes.revision.advance`` of a ``$set``):
    the fields, the operation's id, the revision advanced, ``updatedAt`` by the server's clock."""
    return {"$set": {**sets, "_op": op}, "$inc": {"_rev": 1}, "$currentDate": {"updatedAt": True}}


def post_image(stored: dict[str, Any], sets: dict[str, Any], op: Any, rev: int, when: _dt.datetime) -> dict[str, Any]:
    """The document a ``findAndModify`` returns after ``advance(sets, op)`` on ``stored`` (dotted
    paths set in copies of the embedded documents they go through), for an update's record."""
    image = dict(stored)
    for path, value in sets.items():
        *heads, leaf = path.split(".")
        owner = image
        for head in heads:
            owner[head] = owner = dict(owner[head])
        owner[leaf] = value
    image["updatedAt"] = _ms(when)
    image["_op"], image["_rev"] = op, rev
    return image


@dataclass
class Create:
    """One create's inputs, all built before the timing."""

    doc: dict[str, Any]
    record: dict[str, Any]
    command: dict[str, Any] | None  # None: a large document, sent as two inserts as astro_db sends it


@dataclass
class Update:
    """One update's inputs, all built before the timing."""

    filter: dict[str, Any]
    update: dict[str, Any]
    record: dict[str, Any] | None


class Writes:
    """The commands astro_db sends, on one PyMongo database handle (``db``): a plain client's for
    the timed side, a listening client's for the equivalence check. ``model``/``coll``: the model's
    class name and collection, as the records name them."""

    def __init__(self, db: Any, model: str, coll: str, owner: str | None = None) -> None:
        self.db, self.model, self.coll_name, self.owner = db, model, coll, owner
        self.coll, self.changes = db[coll], db[CHANGES]
        self.client = db.client
        self.target, self.changes_ns = f"{db.name}.{coll}", f"{db.name}.{CHANGES}"
        self.one_command = speaks_bulk_write(self.client)
        # made once: ``client.admin`` builds a new Database object each time (the embedded backend: never used)
        self.admin = self.client.admin if self.one_command else None

    # -- inputs (untimed) --
    def create_inputs(self, docs: Iterable[dict[str, Any]]) -> list[Create]:
        """For each stored document, a default create's inputs: the document, its record, and the
        ``bulkWrite`` command that carries them (none for a document above ``LARGE_DOCUMENT``, or
        where the server has no ``bulkWrite``: two inserts)."""
        out = []
        for doc in docs:
            rec = create_record(self.model, self.coll_name, doc, ObjectId())
            out.append(Create(doc, rec, self.bulk_command([doc], [rec]) if self.one_command and not large([doc]) else None))
        return out

    def bulk_command(self, docs: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The ``bulkWrite`` command astro_db sends (``astro_db.ops.bulk``): each document then its
        record, ordered, errors only, with the client's write concern (as ``MongoClient.bulk_write``
        adds it), sent as one command (``admin.command``)."""
        command = {"bulkWrite": 1,
                   "ops": [op for pair in zip(docs, records, strict=True)
                           for op in ({"insert": 0, "document": pair[0]}, {"insert": 1, "document": pair[1]})],
                   "nsInfo": [{"ns": self.target}, {"ns": self.changes_ns}], "ordered": True, "errorsOnly": True}
        concern = self.client.write_concern
        if not concern.is_server_default:
            command["writeConcern"] = concern.document
        return command

    def create_many_inputs(self, docs: list[dict[str, Any]], pack: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """A default ``create_many``'s documents, their records (one operation id for the batch;
        packed from ``PACK_FROM`` documents on, unless ``pack`` is false: one per document, the
        layout before packing) and whether they go in one ``bulkWrite`` (at most
        ``ONE_COMMAND_BATCH``, not ``large``)."""
        op = ObjectId()
        one = len(docs) <= ONE_COMMAND_BATCH and self.one_command and not large(docs)
        if pack and not one and len(docs) >= PACK_FROM:
            return docs, packed_records(self.model, self.coll_name, docs, op, self.owner), one
        return docs, [create_record(self.model, self.coll_name, doc, op) for doc in docs], one

    def update_inputs(self, stored: Sequence[dict[str, Any]], sets: Sequence[dict[str, Any]],
                      revs: dict[Any, int], records: bool = True) -> list[Update]:
        """For each update (``stored[i]``, as the server holds it, gets ``sets[i]``): the filter,
        astro_db's update document and, with ``records``, the record of the post-image the server
        will return (its time: now, when it is built). ``revs``: each document's ``_rev`` now
        (``revisions``), advanced here as the updates will advance it."""
        revs = dict(revs)
        out = []
        for doc, change in zip(stored, sets, strict=True):
            op, now = ObjectId(), _dt.datetime.now(_dt.timezone.utc)
            rev = revs[doc["_id"]] = revs.get(doc["_id"], 0) + 1
            rec = None
            if records:
                rec = record(model=self.model, coll=self.coll_name, document_id=doc["_id"], rev=rev, action="update",
                             when=now, fields=list(change), doc=post_image(doc, change, op, rev, now), op=op)
            out.append(Update({"_id": doc["_id"]}, advance(change, op), rec))
        return out

    def revisions(self, ids: Iterable[Any]) -> dict[Any, int]:
        """The documents' current ``_rev`` (0 when absent), read before the timing."""
        return {d["_id"]: int(d.get("_rev") or 0) for d in self.coll.find({"_id": {"$in": list(set(ids))}}, {"_rev": 1})}

    # -- the timed calls: PyMongo only --
    def create(self, c: Create) -> Any:
        if self.one_command and c.command is not None:
            return self.admin.command(c.command)
        result = self.coll.insert_one(c.doc)  # a server without bulkWrite: the document, then its record
        self.changes.insert_one(c.record)
        return result

    def update(self, u: Update) -> Any:
        after = self.coll.find_one_and_update(u.filter, u.update, return_document=ReturnDocument.AFTER)
        if u.record is not None:
            self.changes.insert_one(u.record)
        return after

    def create_many(self, batch: tuple[list[dict[str, Any]], list[dict[str, Any]], bool]) -> Any:
        docs, records, one = batch
        if one:
            return self.admin.command(self.bulk_command(docs, records))
        result = self.coll.insert_many(docs, ordered=False)
        self.changes.insert_many(records, ordered=False)
        return result


def large(docs: Iterable[dict[str, Any]]) -> bool:
    """Whether ``docs`` together take more than ``LARGE_DOCUMENT`` BSON bytes (astro_db
    estimates it from its models' bounds; the documents this module times are far from it or
    far past it)."""
    return sum(len(bson.encode(doc)) for doc in docs) > LARGE_DOCUMENT


def speaks_bulk_write(client: Any) -> bool:
    """Whether the server has MongoDB 8.0's client-level ``bulkWrite`` (wire version 25, as
    astro_db's ``ops.bulk.supported`` asks); not the embedded backend."""
    try:
        return int(client.admin.command("hello").get("maxWireVersion", 0)) >= 25
    except Exception:  # noqa: BLE001 - mongomock-ng: no hello, no bulkWrite
        return False


# --- the equivalence check (untimed) ---------------------------------------------------------------

@dataclass(frozen=True)
class Doc:
    """What one sent document looks like: where it went, its keys, its post-image's keys, its
    field names (a record's), its BSON size."""

    coll: str
    keys: tuple[str, ...]
    image_keys: tuple[str, ...] | None
    fields: tuple[str, ...] | None
    size: int


@dataclass(frozen=True)
class Shape:
    """One command as the check compares it (values aside)."""

    name: str
    target: str
    options: tuple[tuple[str, Any], ...]
    docs: tuple[Doc, ...] = field(default=())

    def line(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options)
        by: dict[str, int] = {}
        for d in self.docs:
            by[d.coll] = by.get(d.coll, 0) + 1
        docs = ", ".join(f"{n} to {c}" for c, n in by.items())
        return f"{self.name} {self.target}" + (f" ({opts})" if opts else "") + (f": {docs}" if docs else "")


def _doc(coll: str, doc: Any) -> Doc:
    image = doc.get("doc")
    fields = doc.get("fields") if coll == CHANGES else None
    # a record's post-image may be the server's raw BSON (a default update's, embedded as it came back)
    return Doc(coll, tuple(doc), tuple(sorted(image)) if isinstance(image, Mapping) else None,
               tuple(fields) if isinstance(fields, list) else None, len(bson.encode(doc)))


def _coll(ns: str) -> str:
    return ns.split(".", 1)[1]


def shape(name: str, command: dict[str, Any]) -> Shape:
    """The comparable form of a started command (``CommandStartedEvent.command``)."""
    wc = (command.get("writeConcern") or {}).get("w")
    if name == "bulkWrite":
        spaces = [_coll(ns["ns"]) for ns in command.get("nsInfo", [])]
        docs = tuple(_doc(spaces[op["insert"]], op["document"]) for op in command.get("ops", []) if "insert" in op)
        kinds = sorted({next(iter(op)) for op in command.get("ops", [])})
        return Shape(name, "+".join(spaces), (("ordered", command.get("ordered", True)), ("w", wc),
                                               ("errorsOnly", command.get("errorsOnly", False)),
                                               ("ops", ",".join(kinds))), docs)
    target = str(command.get(name, ""))
    if name == "insert":
        return Shape(name, target, (("ordered", command.get("ordered", True)), ("w", wc)),
                     tuple(_doc(target, d) for d in command.get("documents", [])))
    if name == "findAndModify":
        update = command.get("update") or {}
        ops = tuple((op, tuple(sorted(spec))) for op, spec in sorted(update.items())) if isinstance(update, dict) else ()
        return Shape(name, target, (("new", bool(command.get("new"))), ("w", wc), ("query", tuple(command.get("query", {}))),
                                    ("update", ops), ("fields", tuple(command.get("fields") or ()))))
    if name == "update":
        updates = command.get("updates", [])
        ops = tuple(tuple((op, tuple(sorted(spec))) for op, spec in sorted(u.get("u", {}).items())) for u in updates)
        return Shape(name, target, (("w", wc), ("updates", ops)))
    return Shape(name, target, (("w", wc),))


class Recorder(monitoring.CommandListener):
    """The shapes of the commands a listening client started (not its handshakes or heartbeats)."""

    def __init__(self) -> None:
        self.shapes: list[Shape] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in IGNORED:
            self.shapes.append(shape(event.command_name, event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[Shape]:
        out, self.shapes = self.shapes, []
        return out


def _close(a: int, b: int) -> bool:
    """BSON sizes that differ only by the values' own lengths (an email's tag, a counter's digits)."""
    return abs(a - b) <= max(32, 0.02 * max(a, b))


def compare(astro: Sequence[Shape], wire: Sequence[Shape]) -> list[str]:
    """Where the raw side's commands differ from astro_db's (empty: the same commands)."""
    problems = []
    if [s.name for s in astro] != [s.name for s in wire]:
        return [f"commands: astro_db sent {describe(astro)}; raw sent {describe(wire)}"]
    for n, (a, w) in enumerate(zip(astro, wire, strict=True)):
        what = f"command {n + 1} ({a.name})"
        if (a.target, a.options) != (w.target, w.options):
            problems.append(f"{what}: astro_db {a.line()}; raw {w.line()}")
        if len(a.docs) != len(w.docs):
            problems.append(f"{what}: {len(a.docs)} documents from astro_db, {len(w.docs)} from raw")
            continue
        for i, (da, dw) in enumerate(zip(a.docs, w.docs, strict=True)):
            if (da.coll, da.keys, da.image_keys, da.fields) != (dw.coll, dw.keys, dw.image_keys, dw.fields):
                problems.append(f"{what}, document {i + 1}: astro_db {da}; raw {dw}")
            elif not _close(da.size, dw.size):
                problems.append(f"{what}, document {i + 1}: {da.size} bytes from astro_db, {dw.size} from raw")
        if len(problems) > 5:
            break
    return problems


def describe(shapes: Sequence[Shape]) -> str:
    """``bulkWrite x1, insert x2``: the commands in order, runs of one name counted."""
    return ", ".join(f"{name} x{len(list(run))}" for name, run in itertools.groupby(s.name for s in shapes)) or "nothing"


def sizes(shapes: Sequence[Shape]) -> int:
    """The BSON bytes of every document the commands carried."""
    return sum(d.size for s in shapes for d in s.docs)
