"""Role-based access: who may do what to which model, and the ``self`` scope.

An ``Actor`` is an id plus roles. The roles ``reader``, ``writer`` and ``admin`` grant the
operations each model declares (``meta["permissions"]``, ``DEFAULT_PERMISSIONS`` when it declares
none); the role ``self`` narrows every grant to the actor's own documents (those whose declared
owner field, ``meta["owner"]``, holds the actor's id, and the user document whose ``_id`` it is).
``self`` alone means ``writer`` on one's own documents. A call is checked by ``authorize`` before
any I/O: a denied call raises ``PermissionDeniedError``; an allowed one gets a ``Guard`` that adds
the scope to filters and pipelines and forces or checks the owner field on written data. Without
an actor the app is trusted and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from ..errors import ConfigError, PermissionDeniedError
from ..query import walker

__all__ = [
    "Actor", "Guard", "PERMISSIONS", "GLOBAL_PERMISSIONS", "ROLES", "SELF", "authorize", "authorize_global",
    "READ", "CREATE", "UPDATE", "DELETE", "DELETE_ALL", "AUDIT", "ROTATE", "MONITOR", "MANAGE", "TRANSACT",
    "BACKUP", "OPEN", "DEFAULT_PERMISSIONS", "MODEL_OPERATIONS", "model_permissions", "ReadsRule", "TRUSTED",
]

READ, CREATE, UPDATE, DELETE = "read", "create", "update", "delete"
DELETE_ALL, AUDIT, ROTATE = "delete_all", "audit", "rotate_key"  # admin-only operations
# Operations on no single model: watching the service, running it, backing it up.
MONITOR, TRANSACT = "monitor", "transact"  # health, metrics, explain, advise / open a transaction
MANAGE, BACKUP = "manage", "backup"  # indexes, maintenance, raw access, closing the pool / backup and restore
OPEN = "open"  # no data is touched (lifecycle, the actor's own identity): every role
SELF = "self"
ROLES = ("reader", "writer", "admin")
_EVERYTHING = frozenset({READ, CREATE, UPDATE, DELETE})
#: every operation a model's permissions may grant
MODEL_OPERATIONS = _EVERYTHING | {DELETE_ALL, AUDIT, ROTATE}

#: role -> operations, for a model that declares no ``meta["permissions"]``: readers read, writers
#: read and write, admins also delete everything, read audit trails and rotate keys.
DEFAULT_PERMISSIONS: dict[str, frozenset[str]] = {
    "reader": frozenset({READ}),
    "writer": _EVERYTHING,
    "admin": MODEL_OPERATIONS,
}


def model_permissions(model: str, declared: Any = None) -> dict[str, frozenset[str]]:
    """A model's role -> operations from its ``meta["permissions"]`` (``DEFAULT_PERMISSIONS``
    for ``None``); a role left out grants nothing. ``ConfigError`` for an unknown role or operation."""
    if declared is None:
        return dict(DEFAULT_PERMISSIONS)
    if not isinstance(declared, Mapping):
        raise ConfigError(f"{model}: meta['permissions'] maps a role to its operations, got {type(declared).__name__}",
                          key="permissions")
    out: dict[str, frozenset[str]] = {role: frozenset() for role in ROLES}
    for role, operations in declared.items():
        if role not in ROLES:
            raise ConfigError(f"{model}: meta['permissions'] names the role {role!r}; roles are {', '.join(ROLES)} "
                              f"({SELF} narrows the others)", key="permissions")
        ops = frozenset([operations] if isinstance(operations, str) else operations)
        unknown = ops - MODEL_OPERATIONS
        if unknown:
            raise ConfigError(f"{model}: meta['permissions'][{role!r}] has unknown operation(s) "
                              f"{', '.join(sorted(unknown))}; operations are {', '.join(sorted(MODEL_OPERATIONS))}",
                              key="permissions")
        out[role] = ops
    return out


# role -> operations on no single model. A self-scoped actor (an end user) gets only OPEN and
# TRANSACT: the service's figures and tooling describe everyone's data.
GLOBAL_PERMISSIONS: dict[str, frozenset[str]] = {
    "reader": frozenset({OPEN, MONITOR, TRANSACT}),
    "writer": frozenset({OPEN, MONITOR, TRANSACT}),
    "admin": frozenset({OPEN, MONITOR, TRANSACT, MANAGE, BACKUP, ROTATE, AUDIT}),
}
_SELF_GLOBAL = frozenset({OPEN, TRANSACT})


@dataclass(frozen=True)
class Actor:
    """Who a Database view acts for: an id, roles, and the request id its audit entries carry."""

    id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"an actor id must be a non-empty string, got {type(self.id).__name__}", key="actor")
        roles = frozenset([self.roles] if isinstance(self.roles, str) else self.roles)
        unknown = roles - set(ROLES) - {SELF}
        if unknown:
            raise ConfigError(f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)} and {SELF}", key="roles")
        if not roles:
            raise ConfigError(f"actor {self.id!r} has no roles; give at least one of {', '.join(ROLES)}, {SELF}", key="roles")
        object.__setattr__(self, "roles", roles)
        if SELF in roles and not ObjectId.is_valid(self.id):
            raise ConfigError(f"a '{SELF}'-scoped actor's id must be its User id (24 hex characters), got {self.id!r}", key="actor")

    @classmethod
    def of(cls, value: Any, roles: Iterable[str] | str | None = None, request_id: str | None = None) -> Actor:
        """An Actor from an Actor, ``{"id", "roles", "request_id"}``, or an id with ``roles``."""
        if isinstance(value, Actor):
            if roles is None and request_id is None:
                return value
            return cls(value.id, frozenset(roles) if roles is not None else value.roles, request_id or value.request_id)
        if isinstance(value, Mapping):
            return cls(str(value.get("id", "")), frozenset(value.get("roles", ())), value.get("request_id") or value.get("requestId"))
        if isinstance(value, (str, ObjectId)):
            return cls(str(value), frozenset([roles] if isinstance(roles, str) else roles or ()), request_id)
        raise ConfigError(f"an actor is an Actor, a dict or an id string, got {type(value).__name__}", key="actor")

    @property
    def scoped(self) -> bool:
        return SELF in self.roles

    def grants(self, model: Any, operation: str) -> bool:
        """Whether the roles allow ``operation`` on ``model`` (the ``self`` scope is applied apart):
        a registry ``ModelInfo`` (its declared permissions) or a built-in model's name."""
        base = self.roles - {SELF} or {"writer"}
        declaration = getattr(model, "declaration", None)
        table: Mapping[str, frozenset[str]] = (
            declaration.permissions if declaration is not None
            else {role: _builtin_permissions()[role].get(str(getattr(model, "name", model)), frozenset()) for role in ROLES})
        return any(operation in table.get(role, ()) for role in base)

    def grants_global(self, operation: str) -> bool:
        """Whether the roles allow an operation on no single model (``GLOBAL_PERMISSIONS``)."""
        if self.scoped:
            return operation in _SELF_GLOBAL
        return any(operation in GLOBAL_PERMISSIONS[role] for role in self.roles)

    def __repr__(self) -> str:
        return f"Actor(id={self.id!r}, roles={sorted(self.roles)})"


class Guard:
    """What one allowed call must add: the actor's scope on filters, pipelines and data."""

    def __init__(self, actor: Actor | None, model: str, owner: str | bool | None = None, *,
                 has_user_id: bool | None = None, owner_names: Sequence[str] = ()) -> None:
        """``owner``: the model's declared owner field (stored name), ``"_id"`` for the users'
        own model, ``None`` for no owner. ``True`` (or ``has_user_id=True``) is the built-in
        models' ``userId``, as the older signature said."""
        if has_user_id is not None:
            owner = has_user_id
        if owner is True:
            owner, owner_names = "userId", (*owner_names, "userId", "user_id")
        self.actor = actor
        self.model = model
        self.owner: str | None = owner or None
        self.owner_names: tuple[str, ...] = tuple(dict.fromkeys((*owner_names, self.owner))) if self.owner else ()
        self.scope: dict[str, Any] = {}
        if actor is not None and actor.scoped:
            if self.owner is None:
                raise PermissionDeniedError(
                    f"actor {actor.id} is limited to its own documents; {model} has no owner field "
                    "(a model declares one with meta['owner'])")
            self.scope = {self.owner: ObjectId(actor.id)}

    def filter(self, filt: dict[str, Any]) -> dict[str, Any]:
        """``filt`` narrowed to the actor's own documents."""
        if not self.scope:
            return filt
        if not filt:
            return dict(self.scope)
        return {"$and": [filt, dict(self.scope)]}

    def data(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """New-document data with the owner field set to the actor (a different owner is refused)."""
        if "_id" in self.scope:
            raise PermissionDeniedError(f"actor {self.actor.id} is limited to its own {self.model}; "  # type: ignore[union-attr]
                                        "it cannot create users")
        if self.owner is None or self.owner not in self.scope or not isinstance(data, Mapping):
            return data
        out = dict(data)
        if "." not in self.owner:  # the common case: a top-level owner field
            given = [out.pop(k) for k in self.owner_names if k in out]
        else:  # an owner inside a sub-document (``author.userId``): looked for and set there, copied on the way
            given = [v for k in self.owner_names if (v := _pop_path(out, k.split("."))) is not _MISSING]
        if any(str(v) != self.actor.id for v in given):  # type: ignore[union-attr]
            raise PermissionDeniedError(f"actor {self.actor.id} may only create {self.model} documents for itself")  # type: ignore[union-attr]
        if "." not in self.owner:
            out[self.owner] = self.scope[self.owner]
        else:
            *parents, leaf = self.owner.split(".")
            holder = out
            for part in parents:
                child = holder.get(part)
                if child is None:
                    child = {}
                elif not isinstance(child, Mapping):
                    raise PermissionDeniedError(f"{self.model}.{part} holds the owner {self.owner}: it must be an object")
                holder[part] = child = dict(child)
                holder = child
            holder[leaf] = self.scope[self.owner]
        return out

    def update(self, update: Mapping[str, Mapping[str, Any]]) -> None:
        """Refuse an update that would hand a document to another owner: one that touches the
        owner field, a field holding it (``author`` of an owner ``author.userId``: a ``$set`` of
        it replaces the owner too) or a path into it, unless it is a ``$set`` leaving the actor's
        id there. Paths are compared with their list positions (``0``, ``$[]``) left out."""
        if not self.scope:
            return
        for op, spec in update.items():
            for key in spec:
                path = _unpositioned(key)
                for owner, mine in self.scope.items():
                    if path == owner:
                        kept = key == owner and _held(spec[key], ()) == mine
                    elif owner.startswith(path + "."):
                        kept = key == path and _held(spec[key], tuple(owner[len(path) + 1:].split("."))) == mine
                    elif path.startswith(owner + "."):
                        kept = False
                    else:
                        continue
                    if op != "$set" or not kept:
                        raise PermissionDeniedError(f"actor {self.actor.id} may not change {owner} of a {self.model}")  # type: ignore[union-attr]

    def admits(self, answer: Any) -> bool:
        """Whether a read's answer (a stored document, a list of them, a count) holds nothing
        outside the actor's scope: every document that carries a scope field carries the actor's
        value there. Checked on every answer, whatever its source (server, cache, shared store)."""
        if not self.scope:
            return True
        docs = answer if isinstance(answer, list) else [answer]
        for doc in docs:
            if isinstance(doc, Mapping):
                for key, value in self.scope.items():
                    if key in doc:
                        if doc[key] != value:
                            return False
                    elif "." in key and (held := _held(doc, tuple(key.split(".")))) is not _MISSING and held != value:
                        return False  # an owner inside a sub-document
        return True

    def pipeline(self, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The call's own pipeline, first narrowed to the actor's documents (inside a leading
        ``$geoNear``, which must stay first). The walker's ``STAGE`` nodes refuse the stages
        that read another collection (``visit``)."""
        if not self.scope:
            return stages
        if stages and "$geoNear" in stages[0]:
            near = dict(stages[0]["$geoNear"])
            near["query"] = self.filter(near.get("query") or {})
            return [{"$geoNear": near}, *stages[1:]]
        return [{"$match": dict(self.scope)}, *stages]

    def visit(self, node: walker.Node, value: Any) -> Any:
        """The scope as a rule of the query walker: the call's own filter and pipeline narrowed,
        its update checked; a stage reading another collection refused at any depth."""
        if not self.scope:
            return value
        kind = node.kind
        if kind == walker.STAGE:
            if node.key in _CROSS_COLLECTION_STAGES:
                raise PermissionDeniedError(f"actor {self.actor.id} is limited to its own documents; {node.key} is not allowed")  # type: ignore[union-attr]
        elif node.top:
            if kind == walker.FILTER:
                return self.filter(value)
            if kind == walker.PIPELINE:
                return self.pipeline(value)
            if kind == walker.UPDATE:
                self.update(value.update)
        return value


class ReadsRule:
    """The query walker's rule for the other collections a pipeline reads (``$lookup``,
    ``$unionWith``, ``$graphLookup``): the actor must be allowed to read each one's model, by
    that model's own permissions (``registry`` resolves a node's model class to its
    ``ModelInfo``). Without an actor the app is trusted."""

    __slots__ = ("actor", "registry")

    def __init__(self, actor: Actor | None, registry: Any) -> None:
        self.actor = actor
        self.registry = registry

    def visit(self, node: walker.Node, value: Any) -> Any:
        if node.kind == walker.READS and self.actor is not None:
            authorize(self.actor, self.registry.resolve(node.model), READ, call=node.key)
        return value


def authorize(actor: Actor | None, info: Any, operation: str, call: str | None = None) -> Guard:
    """Check ``operation`` (``READ``, ``CREATE``, ...) on the model ``info``; a Guard or raise.
    ``call`` names the service call in the refusal (defaults to the operation)."""
    if actor is None:
        return _TRUSTED
    if not actor.grants(info, operation):
        raise PermissionDeniedError(
            f"actor {actor.id} (roles: {', '.join(sorted(actor.roles))}) may not {call or operation} {info.name}"
        )
    declaration = info.declaration
    return Guard(actor, info.name, declaration.owner, owner_names=declaration.owner_names)


def authorize_global(actor: Actor | None, operation: str, call: str | None = None) -> None:
    """Check an operation on no single model (``GLOBAL_PERMISSIONS``); raise if denied."""
    if actor is not None and not actor.grants_global(operation):
        raise PermissionDeniedError(
            f"actor {actor.id} (roles: {', '.join(sorted(actor.roles))}) may not {call or operation}"
        )


_CROSS_COLLECTION_STAGES = frozenset({"$lookup", "$unionWith", "$graphLookup"})
_MISSING = object()


def _unpositioned(path: str) -> str:
    """An update path without its list positions (``authors.0.userId``, ``authors.$[].userId``:
    ``authors.userId``), to compare it with the owner field's stored path."""
    return ".".join(part for part in path.split(".") if not (part.isdigit() or part.startswith("$")))


def _pop_path(data: dict[str, Any], parts: list[str]) -> Any:
    """Remove and return the value at ``parts`` of ``data`` (``_MISSING`` when absent), copying
    each sub-document on the way so that the caller's data is never changed."""
    holder = data
    for part in parts[:-1]:
        child = holder.get(part)
        if not isinstance(child, Mapping):
            return _MISSING
        holder[part] = child = dict(child)
        holder = child
    return holder.pop(parts[-1], _MISSING)


def _held(value: Any, rest: tuple[str, ...]) -> Any:
    """The value at ``rest`` inside a value an update sets (``_MISSING`` where no plain
    sub-document leads there: a list on the way holds any number of owners)."""
    for part in rest:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


class _Trusted(Guard):
    def __init__(self) -> None:
        self.actor = None
        self.model = ""
        self.owner = None
        self.owner_names = ()
        self.scope = {}


_BUILTIN: dict[str, dict[str, frozenset[str]]] | None = None


def _builtin_permissions() -> dict[str, dict[str, frozenset[str]]]:
    """role -> built-in model name -> operations, from the built-in models' declarations."""
    global _BUILTIN
    if _BUILTIN is None:
        from ..models import MODELS

        declared = {name: model_permissions(name, cls._meta.get("permissions")) for name, cls in MODELS.items()}
        _BUILTIN = {role: {name: table.get(role, frozenset()) for name, table in declared.items()} for role in ROLES}
    return _BUILTIN


class _BuiltinTable(Mapping[str, Mapping[str, frozenset[str]]]):
    """role -> model -> operations of the four built-in models, read from their declarations on
    first use (the models are imported late: no import cycle)."""

    def __getitem__(self, role: str) -> Mapping[str, frozenset[str]]:
        return _builtin_permissions()[role]

    def __iter__(self) -> Iterator[str]:
        return iter(_builtin_permissions())

    def __len__(self) -> int:
        return len(_builtin_permissions())

    def __repr__(self) -> str:
        return repr(_builtin_permissions())


#: role -> model -> operations of the built-in models (kept for callers of earlier versions; a
#: Database reads each registered model's own ``Declaration.permissions``)
PERMISSIONS: Mapping[str, Mapping[str, frozenset[str]]] = _BuiltinTable()


_TRUSTED = _Trusted()
#: The trusted app's Guard (no actor, no scope): what ``authorize`` gives a call with no actor.
TRUSTED: Guard = _TRUSTED
