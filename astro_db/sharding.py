"""Sharding: each model's shard key, the commands that shard a database, and what they break.

A model declares its shard key in its MongoEngine meta under ``"shard"`` (stored field names,
``{"userId": "hashed"}``), or ``None`` to stay unsharded. Not MongoEngine's own ``shard_key``:
that one makes MongoEngine refuse to change the field on loaded documents and rewrites the
filters of ``save()``, neither of which this package wants.

``shard_plan(registry, database)`` turns the declarations into the exact mongosh commands
(``sh.enableSharding``, the shard-key index, ``sh.shardCollection``) and checks every unique
index against the key: MongoDB enforces a unique index on a sharded collection only when the
shard key's fields are its prefix (or it starts with ``_id``), so any other unique index blocks
``shardCollection``. Such a collection's command is printed commented out, with the remedy.
``is_targeted(filter_fields, key)`` tells whether a query can be routed to one shard: the
advisor (``db.advise()``) uses it to flag scatter-gather queries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .indexes import declared_indexes
from .models.paths import resolve
from .registry import ModelInfo

__all__ = ["shard_key", "key_text", "is_targeted", "ShardPlan", "CollectionPlan", "shard_plan", "render_plan", "parse_key"]

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_KINDS = ("hashed", 1)


def shard_key(info: ModelInfo) -> dict[str, Any] | None:
    """The model's declared shard key (``{"userId": "hashed"}``), or ``None`` when it stays unsharded."""
    key = info.cls._meta.get("shard")
    return dict(key) if key else None


def is_targeted(fields: Mapping[str, str], key: Mapping[str, Any]) -> bool:
    """Whether a filter whose constrained fields are ``fields`` (``shapes.filter_fields``) goes
    to the shards owning its key values only: every shard-key field needs an equality (or
    ``$in``) for a hashed key; a ranged key also routes on a range of its first field."""
    names = list(key)
    if all(fields.get(name) == "eq" for name in names):
        return True
    first = names[0]
    return key[first] != "hashed" and fields.get(first) == "range"


def parse_key(text: str) -> tuple[str, dict[str, Any] | None]:
    """``"User=_id:hashed"`` -> ``("User", {"_id": "hashed"})``; ``"User=none"`` -> unsharded.
    Fields are comma-separated, each ``field:hashed`` or ``field:1`` (ranged)."""
    model, sep, spec = text.partition("=")
    if not sep or not model.strip() or not spec.strip():
        raise ConfigError(f"a shard key override looks like Model=field:hashed[,field:1], got {text!r}", key="shard")
    if spec.strip().lower() == "none":
        return model.strip(), None
    key: dict[str, Any] = {}
    for part in spec.split(","):
        name, _, kind = part.strip().partition(":")
        kind = kind.strip() or "1"
        if not name or kind not in ("hashed", "1"):
            raise ConfigError(f"shard key field {part.strip()!r}: use field:hashed or field:1", key="shard")
        key[name.strip()] = "hashed" if kind == "hashed" else 1
    if sum(1 for v in key.values() if v == "hashed") > 1:
        raise ConfigError(f"a shard key has at most one hashed field, got {spec!r}", key="shard")
    return model.strip(), key


@dataclass
class CollectionPlan:
    """What sharding one model's collection takes, and what it would break."""

    model: str
    collection: str
    key: dict[str, Any] | None
    key_index: dict[str, Any] | None = None  # the index the shard key needs
    unique_ok: list[str] = field(default_factory=list)  # unique indexes the key keeps enforceable
    blocking: list[dict[str, Any]] = field(default_factory=list)  # unique indexes that block sharding
    users: bool = False  # the model whose documents are the users (its declaration's owner "_id")

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "collection": self.collection, "key": self.key, "key_index": self.key_index,
                "unique_ok": self.unique_ok, "blocking": self.blocking, "blocked": self.blocked}


@dataclass
class ShardPlan:
    """The plan for one database: ``collections`` in registry order; ``render_plan`` prints it."""

    database: str
    collections: list[CollectionPlan]

    def as_dict(self) -> dict[str, Any]:
        return {"database": self.database, "collections": [c.as_dict() for c in self.collections]}


def shard_plan(registry: Iterable[ModelInfo], database: str, overrides: Mapping[str, dict[str, Any] | None] | None = None) -> ShardPlan:
    """The sharding plan of every model in ``registry`` for ``database``; ``overrides`` maps a
    model name (resolved as the service resolves it) to another key, or ``None``, to try it."""
    infos = list(registry)
    chosen = {info.name: shard_key(info) for info in infos}
    for name, key in (overrides or {}).items():
        info = _resolve(infos, name)
        chosen[info.name] = {resolve(info.cls, field).stored: kind for field, kind in key.items()} if key else None
    return ShardPlan(database, [_plan_one(info, chosen[info.name]) for info in infos])


def _resolve(infos: list[ModelInfo], name: str) -> ModelInfo:
    from .registry import ModelRegistry

    return ModelRegistry(info.cls for info in infos).resolve(name)


def _plan_one(info: ModelInfo, key: dict[str, Any] | None) -> CollectionPlan:
    plan = CollectionPlan(info.name, info.collection, key, users=info.declaration.is_user)
    if key is None:
        return plan
    declared = declared_indexes(info)
    plan.key_index = _key_index(key, declared)
    names = list(key)
    for spec in declared:
        if not spec.get("unique"):
            continue
        fields = [name for name, _ in spec["key"]]
        if fields[0] == "_id" or fields[: len(names)] == names:
            plan.unique_ok.append(spec["name"])
        else:
            plan.blocking.append({"index": spec["name"], "key": dict(spec["key"]), "remedy": _remedy(info, fields, key)})
    return plan


def _key_index(key: dict[str, Any], declared: list[dict[str, Any]]) -> dict[str, Any]:
    """The index supporting ``key``: a declared one it prefixes (ranged keys), else a new one."""
    wanted = list(key.items())
    if "hashed" not in key.values():
        for spec in declared:
            prefix_matches = [tuple(p) for p in spec["key"][: len(wanted)]] == wanted
            if prefix_matches and not spec.get("sparse") and "partialFilterExpression" not in spec:
                return {"name": spec["name"], "key": dict(spec["key"]), "exists": True}
    name = "_".join(f"{k}_{v}" for k, v in wanted)
    return {"name": name, "key": dict(key), "exists": False}


def _remedy(info: ModelInfo, fields: list[str], key: dict[str, Any]) -> str:
    unique = ", ".join(fields)
    if info.collection == "users" and fields == ["email"]:
        return ("keep users unsharded (the default plan: it is small, see docs/scaling.md), or move email "
                "uniqueness into a 'userEmails' collection ({_id: <email>, userId}) written in the same "
                "transaction as the user and sharded on { _id: \"hashed\" }, then drop email_1's unique option")
    return (f"shard on a key whose fields prefix ({unique}) (e.g. {{ {fields[0]}: \"hashed\" }}), or enforce "
            f"the uniqueness of ({unique}) in a lookup collection keyed by it, then drop the unique option")


# --- rendering --------------------------------------------------------------------------------

def render_plan(plan: ShardPlan) -> str:
    """The plan as mongosh commands (run them connected to a mongos), comments saying why."""
    db = plan.database
    lines = [
        f"// astro-db shard plan for database {_js(db)}: run in mongosh connected to a mongos.",
        "// Hashed keys spread each user's documents evenly and route every query that names the user",
        "// to one shard. On a non-empty collection the shard-key index must exist first.",
        f"sh.enableSharding({_js(db)})",
    ]
    for c in plan.collections:
        ns = f"{db}.{c.collection}"
        lines.append("")
        if c.key is None:
            lines.append(f"// {c.collection} ({c.model}): not sharded; it stays on the database's primary shard.")
            if c.users:
                lines.append("// It is small (1.8 GB of documents, 1.5 GB of indexes at 10 million users: docs/scaling.md),")
                lines.append("// its unique email index stays enforced, and lookups by id and by email go to one shard.")
            continue
        lines.append(f"// {c.collection} ({c.model}): shard key {_js(c.key)}")
        for name in c.unique_ok:
            lines.append(f"// unique index {name} stays enforced: the shard key's fields are its prefix.")
        for block in c.blocking:
            lines.append(f"// BLOCKED: unique index {block['index']} {_js(block['key'])} is not prefixed by the shard key;")
            lines.append("// MongoDB refuses shardCollection while it exists and could not enforce it across shards.")
            lines.append(f"// Remedy: {block['remedy']}.")
        index = c.key_index
        prefix = "// " if c.blocked else ""
        if index and not index["exists"]:
            lines.append(
                f"{prefix}db.getSiblingDB({_js(db)}).{c.collection}.createIndex({_js(index['key'])}, {{ name: {_js(index['name'])} }})"
            )
        elif index:
            lines.append(f"// the shard key uses the existing index {index['name']}")
        lines.append(f"{prefix}sh.shardCollection({_js(ns)}, {_js(c.key)})")
    return "\n".join(lines)


def key_text(key: Mapping[str, Any]) -> str:
    """A shard key as mongosh writes it: ``{ userId: "hashed" }``."""
    return _js(key)


def _js(value: Any) -> str:
    """mongosh literal: ``{ userId: "hashed" }``, quoted keys only where needed."""
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{k if _IDENT.match(k) else json.dumps(k)}: {_js(v)}" for k, v in value.items())
        return "{ " + items + " }"
    return json.dumps(value)
