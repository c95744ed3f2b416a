"""Index tooling: what the models declare, what the server has, and syncing the two.

Declared indexes come from each model's MongoEngine ``meta['indexes']`` and carry MongoDB's own
default names (``userId_1_date_1``), the names Mongoose gives the same indexes, so both services
see one set. Syncing creates what is missing, never rebuilds what exists, and drops what the
models do not declare only when asked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pymongo import IndexModel
from pymongo.errors import OperationFailure, PyMongoError

from .errors import translate
from .security.blind import blind_path

if TYPE_CHECKING:  # pragma: no cover
    from ._types import MongoDB, Session
    from .registry import ModelInfo  # the registry checks a model's indexes when it is made (``declared_indexes``)

__all__ = ["declared_indexes", "IndexReport", "sync_model_indexes", "list_model_indexes", "index_usage",
           "INDEX_STATS_UNAVAILABLE", "unlisted_kinds"]

log = logging.getLogger(__name__)
INDEX_STATS_UNAVAILABLE = (
    "this server does not report index usage ($indexStats): the embedded backend and nx-27017 lack it; "
    "run against a real MongoDB (3.2 or later)"
)
_OPTION_KEYS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression", "default_language", "weights")


@dataclass
class IndexReport:
    """The outcome of syncing one collection's indexes."""

    model: str
    collection: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # what this server cannot do, per index: not a failure

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "collection": self.collection, "created": self.created,
            "existing": self.existing, "extra": self.extra, "dropped": self.dropped, "failed": self.failed,
            "notes": self.notes,
        }


def unlisted_kinds(database: MongoDB) -> dict[str, str]:
    """Index kinds this server builds but never lists (``listIndexes`` leaves them out), each
    with the note to show instead of "created" or "failed": nx-27017 (``buildInfo.process``
    ``nx_27017``) keeps text indexes out of the list and refuses to build one twice ("constraint
    failed"), so whether one exists cannot be checked there. Empty for MongoDB."""
    try:
        process = str(database.admin_command("buildInfo").get("process", ""))
    except Exception:  # the embedded backend, or no answer: nothing is known to be missing
        return {}
    if process.replace("-", "_") == "nx_27017":
        return {"text": "this server (nx-27017) leaves text indexes out of listIndexes, so whether it exists "
                        "cannot be checked here; it is asked for on every sync and counted neither as created nor as failed"}
    return {}


def _kind(key: Iterable[Any]) -> str | None:
    """``"text"`` for a text index key, else None (the only kind a server is known to hide)."""
    return "text" if any(len(pair) > 1 and pair[1] == "text" for pair in key) else None


def declared_indexes(info: ModelInfo) -> list[dict[str, Any]]:
    """The model's index specs: ``{"name", "key": [(field, direction)], **options}``; an index
    declared without a name has MongoDB's default one (``default_name``)."""
    specs = info.cls._meta.get("index_specs")
    if specs is None:  # MongoEngine builds them when the class is made; a model may declare none
        specs = info.cls._build_index_specs(info.cls._meta.get("indexes") or [])
    out = []
    queryable: frozenset[str] = getattr(getattr(info, "declaration", None), "queryable", frozenset())
    blind: list[dict[str, Any]] = []
    for spec in specs:
        key = [tuple(pair) for pair in spec["fields"]]
        entry = {"name": spec.get("name") or default_name(key), "key": key}
        entry.update({k: spec[k] for k in _OPTION_KEYS if k in spec})
        out.append(entry)
        if len(entry["key"]) == 1 and entry["key"][0][0] in queryable:
            blind.append(_blind_twin(entry))
    return out + blind


def default_name(key: Iterable[Any]) -> str:
    """The name MongoDB gives an index created without one: each field and its direction (or
    kind), joined by ``_`` (``userId_1_date_-1``, ``profile.handle_1``, ``title_text``). A model
    may declare an index without a name (MongoEngine allows it); it is synced, listed and matched
    under this one."""
    return "_".join(f"{field}_{direction}" for field, direction in key)


def _blind_twin(entry: dict[str, Any]) -> dict[str, Any]:
    """The index a queryable encrypted field's index becomes on its blind index
    (``security.blind``): same direction and uniqueness, sparse (the index is stored only with a
    key configured, so documents written without one are left out rather than colliding on
    null). ``email_1`` unique gives ``emailIndex_1`` unique sparse."""
    field, direction = entry["key"][0]
    twin = blind_path(field)
    return {"name": f"{twin}_{direction}", "key": [(twin, direction)], "sparse": True,
            **({"unique": True} if entry.get("unique") else {})}


def _field_set(key: Iterable[Any]) -> frozenset[str]:
    return frozenset(name for name, *_ in key if not name.startswith("_fts")) or frozenset(
        name for name, *_ in key
    )


def _existing(collection: Any, session: Session = None) -> dict[str, Any]:
    """name -> key pairs of the indexes the server reports (``_id_`` excluded)."""
    out = {}
    for index in collection.list_indexes(session=session):
        if index["name"] == "_id_":
            continue
        key = index.get("key", {})
        if "_fts" in key and "weights" in index:  # a text index reads back as _fts/_ftsx + weights
            key = {name: "text" for name in index["weights"]}
        out[index["name"]] = list(key.items())
    return out


def sync_model_indexes(database: MongoDB, info: ModelInfo, *, drop_extra: bool = False) -> IndexReport:
    """Create the declared indexes missing on the server; report (or drop) undeclared ones."""
    collection = database[info.collection]
    report = IndexReport(info.name, info.collection)
    existing = _existing(collection)
    by_fields = {_field_set(key): name for name, key in existing.items()}
    declared = declared_indexes(info)
    unlisted = unlisted_kinds(database) if any(_kind(spec["key"]) for spec in declared) else {}
    matched: set[str] = set()
    for spec in declared:
        name = spec["name"]
        twin = name if name in existing else by_fields.get(_field_set(spec["key"]))
        if twin is not None:
            report.existing.append(name)
            matched.add(twin)
            continue
        options = {k: v for k, v in spec.items() if k not in ("key",)}
        note = unlisted.get(_kind(spec["key"]) or "")
        try:
            collection.create_indexes([IndexModel(spec["key"], **options)])
            if note is None:
                report.created.append(name)
                log.info("created index %s on %s", name, info.collection)
        except (OperationFailure, PyMongoError) as exc:
            if note is None:
                report.failed[name] = str(exc).split(", full error")[0][:300]
                log.warning("could not create index %s on %s: %s", name, info.collection, report.failed[name])
        if note is not None:  # built or already there, the server cannot say: a note, not an outcome
            report.notes[name] = note
            log.info("index %s on %s: %s", name, info.collection, note)
    shard = list((info.cls._meta.get("shard") or {}).items())
    for name, key in existing.items():
        if name in matched:
            continue
        if shard and [tuple(pair) for pair in key] == shard:
            report.existing.append(name)  # the shard-key index: MongoDB needs it, never drop it
            continue
        report.extra.append(name)
        if drop_extra:
            try:
                collection.drop_index(name)
                report.dropped.append(name)
                log.info("dropped undeclared index %s on %s", name, info.collection)
            except PyMongoError as exc:
                report.failed[name] = str(exc)[:300]
    return report


def _match(declared: list[dict[str, Any]], existing: dict[str, Any]) -> dict[str, str | None]:
    """Declared name -> the server index serving it (same name, else same fields), or ``None``."""
    by_fields = {_field_set(key): name for name, key in existing.items()}
    return {
        spec["name"]: spec["name"] if spec["name"] in existing else by_fields.get(_field_set(spec["key"]))
        for spec in declared
    }


def list_model_indexes(database: MongoDB, info: ModelInfo) -> dict[str, Any]:
    """Declared indexes (each with ``on_server``: the server index that serves it, or ``None``)
    and ``extra``: server indexes no model declares. Read-only."""
    collection = database[info.collection]
    try:
        existing = _existing(collection)
    except PyMongoError as exc:
        raise translate(exc, operation="list_indexes", model=info.name) from exc
    declared = declared_indexes(info)
    matched = _match(declared, existing)
    unlisted = unlisted_kinds(database) if any(_kind(spec["key"]) for spec in declared) else {}
    rows = [{**spec, "key": [list(pair) for pair in spec["key"]], "on_server": matched[spec["name"]]} for spec in declared]
    for row, spec in zip(rows, declared):
        note = unlisted.get(_kind(spec["key"]) or "")
        if note is not None and row["on_server"] is None:
            row["note"] = note
    served = set(matched.values())
    extra = [{"name": name, "key": [list(pair) for pair in key]} for name, key in existing.items() if name not in served]
    return {"model": info.name, "collection": info.collection, "declared": rows, "extra": extra}


def index_usage(database: MongoDB, info: ModelInfo) -> dict[str, Any]:
    """Per index: operations served since the server started tracking (``$indexStats``).

    ``supported`` is ``False`` (with ``reason``) on servers without ``$indexStats``."""
    collection = database[info.collection]
    out: dict[str, Any] = {"model": info.name, "collection": info.collection, "supported": True, "indexes": []}
    try:
        stats = list(collection.aggregate([{"$indexStats": {}}]))
    except (NotImplementedError, OperationFailure) as exc:
        if isinstance(exc, OperationFailure) and exc.code in (13, 8000):  # Unauthorized / AtlasError
            raise translate(exc, operation="index_usage", model=info.name) from exc
        return {**out, "supported": False, "reason": INDEX_STATS_UNAVAILABLE}
    except PyMongoError as exc:
        raise translate(exc, operation="index_usage", model=info.name) from exc
    for row in sorted(stats, key=lambda r: r.get("name", "")):
        accesses = row.get("accesses") or {}
        out["indexes"].append({
            "name": row.get("name"), "key": [list(pair) for pair in (row.get("key") or {}).items()],
            "ops": int(accesses.get("ops", 0)), "since": accesses.get("since"),
        })
    return out
