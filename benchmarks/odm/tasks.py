"""The spec's tasks as harness operations: one variant per side, the same documents for each.

Phases, as the spec lays them out: the task's *setup* (the seed a find or update task reads,
inserted once with raw PyMongo, and the models the MongoEngine update loads) runs before any
timing; each variant's ``setup`` is the spec's *before/after operation* (a create task empties
its collection) and builds that side's inputs, untimed; ``op(i)`` is one of the iteration's
operations, the only code timed; ``check`` proves the work was done, untimed.

The sides: **raw PyMongo** (a plain client: ``insert_one`` of the stored document built before
timing, ``update_one`` with ``$set``, ``find_one``, ``aggregate``), **astro_db** (``db.create`` of
the input dict, ``db.update`` by id, ``db.find_one``, ``db.aggregate``; returned as model
instances; the update tasks also run hooks off with ``returning=False``, which asks for no
document back as raw ``update_one`` does), and **MongoEngine** (``Model(**data).save()``, the loaded instance changed and
``save()``d, ``objects(...).first()``, ``objects(...).aggregate``). The write tasks add raw
PyMongo sending the commands astro_db sends (``benchmarks/wire.py``, on a plain client of its own
with astro_db's write concern): **raw PyMongo, astro_db's commands** (a create: the document and its
change record in one ``bulkWrite``; an update: astro_db's ``findAndModify`` and then the record's
``insert``) and, for the updates, **raw PyMongo, hooks off's commands** (the ``findAndModify``
alone); ``commands_check`` proves once per task, untimed, that they are astro_db's commands.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pymongo
from bson import ObjectId
from harness import Operation, Variant, WorkNotDone
from wire import Recorder, Writes, compare, describe

from astro_db import Database
from astro_db.errors import AstroDBError

from .data import UPDATED_VALUE, Dataset, Datasets
from .models import (
    COLLECTIONS,
    INDEXES,
    ForeignKey,
    LargeFlat,
    LargeNested,
    PeerLargeFlat,
    PeerLargeNested,
    PeerSmallFlat,
    PeerSmallFlatFk,
    SmallFlat,
    SmallFlatFk,
    connect_peers,
    disconnect_peers,
    utcnow,
)

__all__ = ["RAW", "DEFAULT", "HOOKS_OFF", "MONGOENGINE", "NO_RETURN", "WIRE", "WIRE_OFF", "SIDES", "SAME_COMMANDS",
           "ALL_SIDES", "Sides", "Task", "TASKS", "open_sides", "commands_check"]

RAW, DEFAULT, HOOKS_OFF, MONGOENGINE = "raw PyMongo", "astro_db default", "astro_db hooks off", "MongoEngine"
NO_RETURN = "astro_db hooks off, returning=False"  # the update tasks only: db.update(..., returning=False)
SIDES = (RAW, DEFAULT, HOOKS_OFF, MONGOENGINE, NO_RETURN)
# raw PyMongo sending astro_db's commands (the write tasks): the defaults', and hooks off's for the updates
WIRE, WIRE_OFF = "raw PyMongo, astro_db's commands", "raw PyMongo, hooks off's commands"
SAME_COMMANDS = ((DEFAULT, WIRE), (HOOKS_OFF, WIRE_OFF))  # (astro_db side, the raw side sending its commands)
ALL_SIDES = (*SIDES, WIRE, WIRE_OFF)
_ = ForeignKey  # registered with the Database (the $lookup task joins it)


@dataclass
class Sides:
    """The clients of one run, all on one fresh database of the server."""

    raw: Any  # a PyMongo Database on a plain client (no listeners)
    default: Database
    hooks_off: Database
    wire: Any = None  # a PyMongo Database on a plain client of its own (w="majority"): astro_db's commands
    url: str = ""  # the database's URL (the equivalence check's listening clients)
    models: tuple[Any, ...] = ()  # the astro_db models the Databases register

    def coll(self, key: str) -> Any:
        return self.raw[COLLECTIONS[key]]

    def ensure_indexes(self, key: str) -> None:
        """The indexes the models declare (created with raw PyMongo, the same names)."""
        spec = INDEXES.get(key)
        for path, name in ([spec] if isinstance(spec, tuple) else spec or []):
            self.coll(key).create_index([(path, 1)], name=name)

    def empty(self, key: str) -> None:
        self.coll(key).drop()
        self.ensure_indexes(key)


def _with_db(uri: str, name: str) -> str:
    base, sep, query = uri.partition("?")
    scheme, _, rest = base.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/{name}" + (f"?{query}" if sep else "")


@contextlib.contextmanager
def open_sides(server_url: str, models: list[Any]) -> Iterator[Sides]:
    """Every side on a client of its own, on a fresh database that is dropped afterwards."""
    name = f"astro_odm_{uuid.uuid4().hex[:8]}"
    url = _with_db(server_url, name)
    raw_client: Any = pymongo.MongoClient(url, tz_aware=True)
    wire_client: Any = pymongo.MongoClient(url, tz_aware=True, w="majority")  # astro_db's write concern
    connect_peers(url)
    default = Database(url, allow_plaintext_sensitive=True, models=models, connect_attempts=1).connect()
    hooks_off = Database(url, allow_plaintext_sensitive=True, models=models, connect_attempts=1, audit=False, journal=False,
                         ensure_indexes=False).connect()
    try:
        yield Sides(raw_client[name], default, hooks_off, wire_client[name], url, tuple(models))
    finally:
        default.close()
        hooks_off.close()
        disconnect_peers()
        with contextlib.suppress(pymongo.errors.PyMongoError):
            raw_client.drop_database(name)
        raw_client.close()
        wire_client.close()


@dataclass(frozen=True)
class Task:
    """One of the spec's tasks: its dataset, the bytes one operation counts for, and how to
    build its operation for a run (``ops`` operations an iteration)."""

    key: str
    title: str
    group: str  # "flat" or "nested"
    dataset: str  # "small", "large" or "nested"
    build: Callable[[Sides, Datasets, int], tuple[Operation, dict[str, str]]]
    update: bool = False  # scored on len(UPDATED_VALUE) a document, not the document's size
    writes: tuple[Any, str] | None = None  # a write task's astro_db model and the path an update sets ("" a create)

    def op_bytes(self, data: Datasets) -> int:
        return len(UPDATED_VALUE) if self.update else getattr(data, self.dataset).source_size


# --- documents ---------------------------------------------------------------------------------

def stored(document: dict[str, Any]) -> dict[str, Any]:
    """What astro_db stores for ``document``: the id first, the version key, the fields, the
    timestamps (raw PyMongo inserts exactly this)."""
    now = utcnow()
    return {"_id": ObjectId(), "__v": 0, **document, "createdAt": now, "updatedAt": now}


def with_unique_ids(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of LARGE_DOC_NESTED with a fresh ``unique_id`` in every embedded string document
    (the spec's find-nested tasks look documents up by it)."""
    doc = copy.deepcopy(document)
    for key, value in doc.items():
        if key.startswith("embedded_str_doc_array"):
            for item in value:
                item["unique_id"] = str(ObjectId())
        elif key.startswith("embedded_str_doc"):
            value["unique_id"] = str(ObjectId())
    return doc


def _inputs(dataset: Dataset) -> Callable[[], dict[str, Any]]:
    if dataset.name == "LARGE_DOC_NESTED":
        return lambda: with_unique_ids(dataset.document)
    return lambda: dict(dataset.document)


def _expect(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise WorkNotDone(f"{what}: expected {want!r}, got {got!r}")


def _seed(s: Sides, key: str, documents: Iterator[dict[str, Any]], chunk: int = 500) -> list[dict[str, Any]]:
    """Insert stored documents with raw PyMongo (the spec's per-task setup); what was inserted,
    the large document's image left out of what is kept."""
    s.empty(key)
    kept: list[dict[str, Any]] = []
    while batch := list(itertools.islice(documents, chunk)):
        s.coll(key).insert_many(batch, ordered=False)
        kept.extend({k: v for k, v in d.items() if k != "image_field"} for d in batch)
    return kept


class _Run:
    """A variant's inputs, rebuilt by each run's ``setup`` (untimed)."""

    def __init__(self, build: Callable[[], Any], before: Callable[[], None] | None = None) -> None:
        self.build, self.before, self.items = build, before, None

    def setup(self) -> None:
        if self.before:
            self.before()
        self.items = self.build()


def _variant(label: str, run: _Run, op: Callable[[Any, int], Any], check: Callable[[Any], None]) -> Variant:
    def checked() -> None:
        try:
            check(run.items)
        except WorkNotDone as exc:
            raise WorkNotDone(f"{label}: {exc}") from None
    return Variant(label, run.setup, lambda i: op(run.items, i), 1, checked)


# --- the tasks -----------------------------------------------------------------------------------

def _create(key: str, model: Any, peer: Any, dataset: str) -> Callable[[Sides, Datasets, int], Any]:
    """Create a model instance for the document and save it, ``ops`` times; the collection is
    emptied before each run (the spec drops it after each iteration)."""
    def build(s: Sides, data: Datasets, ops: int) -> tuple[Operation, dict[str, str]]:
        make = _inputs(getattr(data, dataset))
        coll = s.coll(key)

        def created(_: Any) -> None:
            _expect(f"{key}: documents created", coll.count_documents({}), ops)

        def run(build_one: Callable[[], Any]) -> _Run:
            return _Run(lambda: [build_one() for _ in range(ops)], lambda: s.empty(key))

        wire = Writes(s.wire, model.__name__, COLLECTIONS[key])
        variants = [
            _variant(RAW, run(lambda: stored(make())), lambda docs, i: coll.insert_one(docs[i]), created),
            _variant(DEFAULT, run(make), lambda items, i: s.default.create(model, items[i]), created),
            _variant(HOOKS_OFF, run(make), lambda items, i: s.hooks_off.create(model, items[i]), created),
            _variant(MONGOENGINE, run(make), lambda items, i: peer(**items[i]).save(), created),
            _variant(WIRE, _Run(lambda: wire.create_inputs(stored(make()) for _ in range(ops)), lambda: s.empty(key)),
                     lambda items, i: wire.create(items[i]), created),
        ]
        return Operation(key, ops, variants), {}
    return build


def _path_value(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _update(key: str, model: Any, peer: Any, dataset: str, path: str) -> Callable[[Sides, Datasets, int], Any]:
    """Set ``path`` to the update value on each of the ``ops`` seeded documents, one update a
    document (a new value every run, so each update changes the document)."""
    def build(s: Sides, data: Datasets, ops: int) -> tuple[Operation, dict[str, str]]:
        make = _inputs(getattr(data, dataset))
        docs = [stored(make()) for _ in range(ops)]  # kept whole: the records' post-images
        ids = [d["_id"] for d in _seed(s, key, iter(docs))]
        order = {oid: n for n, oid in enumerate(ids)}
        # the spec's setup: the saved models, loaded into memory (MongoEngine's update changes them)
        instances = sorted(peer.objects(id__in=ids), key=lambda m: order[m.id])
        coll = s.coll(key)
        values = (f"{UPDATED_VALUE}{n}" for n in itertools.count())
        head, _, leaf = path.rpartition(".")

        def updated(value: str) -> None:
            _expect(f"{key}: {path} after the update", _path_value(coll.find_one({"_id": ids[-1]}), path), value)

        def raw(value: str, i: int) -> Any:
            return coll.update_one({"_id": ids[i]}, {"$set": {path: value, "updatedAt": utcnow()}})

        def astro(db: Database, returning: bool = True) -> Callable[[str, int], Any]:
            if not returning:
                return lambda value, i: db.update(model, {"id": ids[i]}, {path: value}, returning=False)
            return lambda value, i: db.update(model, {"id": ids[i]}, {path: value})

        def mongoengine(value: str, i: int) -> Any:
            target = instances[i]
            owner = getattr(target, head) if head else target
            setattr(owner, leaf, value)
            target.updated_at = utcnow()
            return target.save()

        variants = [_variant(label, _Run(lambda: next(values)), op, updated)
                    for label, op in ((RAW, raw), (DEFAULT, astro(s.default)), (HOOKS_OFF, astro(s.hooks_off)),
                                      (MONGOENGINE, mongoengine), (NO_RETURN, astro(s.hooks_off, returning=False)))]
        wire = Writes(s.wire, model.__name__, COLLECTIONS[key])

        def wire_inputs(records: bool) -> Callable[[], Any]:
            def build_inputs() -> Any:
                value = next(values)
                return wire.update_inputs(docs, [{path: value}] * ops, wire.revisions(ids), records=records)
            return build_inputs

        def wire_updated(items: Any) -> None:
            updated(items[-1].update["$set"][path])

        variants += [_variant(label, _Run(wire_inputs(records)), lambda items, i: wire.update(items[i]), wire_updated)
                     for label, records in ((WIRE, True), (WIRE_OFF, False))]
        return Operation(key, ops, variants), {}
    return build


def _find(key: str, model: Any, peer: Any, dataset: str, path: str) -> Callable[[Sides, Datasets, int], Any]:
    """For each of the ``ops`` seeded documents' ``path`` values, find the document by it (a
    model instance, or the stored dict for raw PyMongo)."""
    def build(s: Sides, data: Datasets, ops: int) -> tuple[Operation, dict[str, str]]:
        make = _inputs(getattr(data, dataset))
        kept = _seed(s, key, (stored(make()) for _ in range(ops)))
        lookup = path.replace(".0.", ".")  # the first array item's value, matched in any item
        values = [_path_value(d, path) if "." in path else d["_id"] for d in kept]
        coll = s.coll(key)
        query = "id" if path == "_id" else lookup
        peer_query = "id" if path == "_id" else lookup.replace(".", "__")

        def found(op: Callable[[int], Any]) -> Callable[[Any], None]:
            return lambda _: _expect(f"{key}: found by {lookup}", op(ops - 1) is not None, True)

        ops_by_side: list[tuple[str, Callable[[int], Any]]] = [
            (RAW, lambda i: coll.find_one({lookup: values[i]})),
            (DEFAULT, lambda i: s.default.find_one(model, {query: values[i]})),
            (HOOKS_OFF, lambda i: s.hooks_off.find_one(model, {query: values[i]})),
            (MONGOENGINE, lambda i: peer.objects(**{peer_query: values[i]}).first()),
        ]
        variants = [_variant(label, _Run(lambda: None), lambda _, i, op=op: op(i), found(op))
                    for label, op in ops_by_side]
        return Operation(key, ops, variants), {}
    return build


def _lookup_stage() -> dict[str, Any]:
    return {"$lookup": {"from": COLLECTIONS["fk"], "localField": "field_fk", "foreignField": "_id",
                        "as": "field_fk_doc"}}


def _find_by_foreign_key(s: Sides, data: Datasets, ops: int) -> tuple[Operation, dict[str, str]]:
    """For each of the ``ops`` FOREIGN_KEY ids, the SMALL_DOC model that refers to it, with the
    FOREIGN_KEY document joined in by ``$lookup``."""
    fk_ids = [d["_id"] for d in _seed(s, "fk", (stored({"name": "foreign_key_name"}) for _ in range(ops)))]
    _seed(s, "small_fk", (stored({**data.small.document, "field_fk": fk}) for fk in fk_ids))
    coll = s.coll("small_fk")

    def pipeline(i: int) -> list[dict[str, Any]]:
        return [{"$match": {"field_fk": fk_ids[i]}}, _lookup_stage()]

    def joined(op: Callable[[int], Any]) -> Callable[[Any], None]:
        def check(_: Any) -> None:
            docs = list(op(ops - 1))
            _expect("small_fk_lookup: documents found", len(docs), 1)
            # the joined FOREIGN_KEY (by its name: nx-27017 0.8.1 leaves the joined documents' _id out)
            _expect("small_fk_lookup: foreign keys joined", [d.get("name") for d in docs[0]["field_fk_doc"]],
                    ["foreign_key_name"])
        return check

    ops_by_side: list[tuple[str, Callable[[int], Any]]] = [
        (RAW, lambda i: list(coll.aggregate(pipeline(i)))),
        (DEFAULT, lambda i: s.default.aggregate(SmallFlatFk, pipeline(i))),
        (HOOKS_OFF, lambda i: s.hooks_off.aggregate(SmallFlatFk, pipeline(i))),
        (MONGOENGINE, lambda i: list(PeerSmallFlatFk.objects(field_fk=fk_ids[i]).aggregate([_lookup_stage()]))),
    ]
    blocked: dict[str, str] = {}
    variants = []
    for label, op in ops_by_side:
        try:
            op(0)  # a side that cannot run the task at all is reported, not timed
        except AstroDBError as exc:
            blocked[label] = f"{type(exc).__name__}: {exc}"
            continue
        variants.append(_variant(label, _Run(lambda: None), lambda _, i, op=op: op(i), joined(op)))
    return Operation("small_fk_lookup", ops, variants), blocked


def commands_check(task: Task, s: Sides, data: Datasets) -> list[tuple[str, str, list[str]]]:
    """Untimed, once per write task (after its build, before its timing): one operation of each
    astro_db side that has a raw side sending its commands (``SAME_COMMANDS``), on a ``Database``
    of its own with a command listener, and one of that raw side on a listening PyMongo client of
    its own; ``(what, astro_db's commands, differences)``, no differences meaning the same
    commands. A create empties the collection after; an update changes two seeded documents."""
    if task.writes is None:
        return []
    model, path = task.writes
    key, make = task.dataset, _inputs(getattr(data, task.dataset))
    astro_seen, wire_seen = Recorder(), Recorder()
    client: Any = pymongo.MongoClient(s.url, tz_aware=True, w="majority", event_listeners=[wire_seen])
    writes = Writes(client[s.raw.name], model.__name__, COLLECTIONS[key])
    rows = []
    try:
        for side, wire_label in SAME_COMMANDS if path else SAME_COMMANDS[:1]:
            flags = {} if side == DEFAULT else {"audit": False, "journal": False}
            db = Database(s.url, allow_plaintext_sensitive=True, models=list(s.models), connect_attempts=1,
                          ensure_indexes=False, event_listeners=[astro_seen], **flags).connect()
            try:
                if path:
                    first, second = list(s.coll(key).find().limit(2))
                    astro_seen.take()
                    db.update(model, {"id": first["_id"]}, {path: UPDATED_VALUE})
                    inputs: Any = writes.update_inputs([second], [{path: UPDATED_VALUE}],
                                                       writes.revisions([second["_id"]]), records=side == DEFAULT)[0]
                    send: Callable[[Any], Any] = writes.update
                else:
                    s.empty(key)
                    astro_seen.take()
                    db.create(model, make())
                    s.empty(key)
                    inputs, send = writes.create_inputs([stored(make())])[0], writes.create
                astro = astro_seen.take()
                wire_seen.take()
                send(inputs)
                rows.append((f"{task.key}, {side} / {wire_label}", describe(astro), compare(astro, wire_seen.take())))
            finally:
                db.close()
        if not path:
            s.empty(key)
        return rows
    finally:
        client.close()


TASKS: list[Task] = [
    Task("small_create", "Small model creation", "flat", "small", _create("small", SmallFlat, PeerSmallFlat, "small"),
         writes=(SmallFlat, "")),
    Task("small_update", "Small model update (field1)", "flat", "small",
         _update("small", SmallFlat, PeerSmallFlat, "small", "field1"), update=True, writes=(SmallFlat, "field1")),
    Task("small_find", "Small model find by filter (_id)", "flat", "small",
         _find("small", SmallFlat, PeerSmallFlat, "small", "_id")),
    Task("small_fk_lookup", "Small model find foreign key by filter ($lookup)", "flat", "small", _find_by_foreign_key),
    Task("large_create", "Large model creation", "flat", "large", _create("large", LargeFlat, PeerLargeFlat, "large"),
         writes=(LargeFlat, "")),
    Task("large_update", "Large model update (field1)", "flat", "large",
         _update("large", LargeFlat, PeerLargeFlat, "large", "field1"), update=True, writes=(LargeFlat, "field1")),
    Task("nested_create", "Large nested model creation", "nested", "nested",
         _create("nested", LargeNested, PeerLargeNested, "nested"), writes=(LargeNested, "")),
    Task("nested_update", "Large nested model update (embedded_str_doc_1.field1)", "nested", "nested",
         _update("nested", LargeNested, PeerLargeNested, "nested", "embedded_str_doc_1.field1"), update=True,
         writes=(LargeNested, "embedded_str_doc_1.field1")),
    Task("nested_find", "Large nested model find nested by filter (embedded_str_doc_1.unique_id)", "nested", "nested",
         _find("nested", LargeNested, PeerLargeNested, "nested", "embedded_str_doc_1.unique_id")),
    Task("nested_array_find", "Large nested model find nested array by filter (embedded_str_doc_array.unique_id)",
         "nested", "nested", _find("nested", LargeNested, PeerLargeNested, "nested", "embedded_str_doc_array.0.unique_id")),
]
