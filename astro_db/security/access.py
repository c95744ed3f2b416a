"""Role-based access: who may do what to which model, and the ``self`` scope.

An ``Actor`` is an id plus roles. The roles ``reader``, ``writer`` and ``admin`` grant the
operations of ``PERMISSIONS`` per model; the role ``self`` narrows every grant to the actor's own
documents (those whose ``userId`` is the actor's id, and the User whose ``_id`` it is). ``self``
alone means ``writer`` on one's own documents. A call is checked by ``authorize`` before any
I/O: a denied call raises ``PermissionDeniedError``; an allowed one gets a ``Guard`` that adds
the scope to filters and pipelines and forces or checks ``userId`` on written data. Without an
actor the app is trusted and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from ..errors import ConfigError, PermissionDeniedError

__all__ = [
    "Actor", "Guard", "PERMISSIONS", "GLOBAL_PERMISSIONS", "ROLES", "SELF", "authorize", "authorize_global",
    "READ", "CREATE", "UPDATE", "DELETE", "DELETE_ALL", "AUDIT", "ROTATE", "MONITOR", "MANAGE", "TRANSACT",
    "BACKUP", "OPEN",
]

READ, CREATE, UPDATE, DELETE = "read", "create", "update", "delete"
DELETE_ALL, AUDIT, ROTATE = "delete_all", "audit", "rotate_key"  # admin-only operations
# Operations on no single model: watching the service, running it, backing it up.
MONITOR, TRANSACT = "monitor", "transact"  # health, metrics, explain, advise / open a transaction
MANAGE, BACKUP = "manage", "backup"  # indexes, maintenance, raw access, closing the pool / backup and restore
OPEN = "open"  # no data is touched (lifecycle, the actor's own identity): every role
SELF = "self"
ROLES = ("reader", "writer", "admin")
_MODELS = ("User", "BirthChart", "PlanetaryInsight", "TimingRecommendation")
_EVERYTHING = frozenset({READ, CREATE, UPDATE, DELETE})

# role -> model -> operations. Deleting an account is an admin's decision; writers delete data.
PERMISSIONS: dict[str, dict[str, frozenset[str]]] = {
    "reader": {m: frozenset({READ}) for m in _MODELS},
    "writer": {m: (frozenset({READ, CREATE, UPDATE}) if m == "User" else _EVERYTHING) for m in _MODELS},
    "admin": {m: _EVERYTHING | {DELETE_ALL, AUDIT, ROTATE} for m in _MODELS},
}

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

    def grants(self, model: str, operation: str) -> bool:
        """Whether the roles allow ``operation`` on ``model`` (the ``self`` scope is applied apart)."""
        base = self.roles - {SELF} or {"writer"}
        return any(operation in PERMISSIONS[role].get(model, ()) for role in base)

    def grants_global(self, operation: str) -> bool:
        """Whether the roles allow an operation on no single model (``GLOBAL_PERMISSIONS``)."""
        if self.scoped:
            return operation in _SELF_GLOBAL
        return any(operation in GLOBAL_PERMISSIONS[role] for role in self.roles)

    def __repr__(self) -> str:
        return f"Actor(id={self.id!r}, roles={sorted(self.roles)})"


class Guard:
    """What one allowed call must add: the actor's scope on filters, pipelines and data."""

    def __init__(self, actor: Actor | None, model: str, has_user_id: bool) -> None:
        self.actor = actor
        self.model = model
        self.scope: dict[str, Any] = {}
        if actor is not None and actor.scoped:
            oid = ObjectId(actor.id)
            if model == "User":
                self.scope = {"_id": oid}
            elif has_user_id:
                self.scope = {"userId": oid}
            else:
                raise PermissionDeniedError(f"actor {actor.id} is limited to its own documents; {model} has no owner field")

    def filter(self, filt: dict[str, Any]) -> dict[str, Any]:
        """``filt`` narrowed to the actor's own documents."""
        if not self.scope:
            return filt
        if not filt:
            return dict(self.scope)
        return {"$and": [filt, dict(self.scope)]}

    def data(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """New-document data with ``userId`` set to the actor (a different owner is refused)."""
        if "_id" in self.scope:
            raise PermissionDeniedError(f"actor {self.actor.id} is limited to its own User; it cannot create users")  # type: ignore[union-attr]
        if "userId" not in self.scope or not isinstance(data, Mapping):
            return data
        out = dict(data)
        given = [out.pop(k) for k in ("userId", "user_id") if k in out]
        if any(str(v) != self.actor.id for v in given):  # type: ignore[union-attr]
            raise PermissionDeniedError(f"actor {self.actor.id} may only create {self.model} documents for itself")  # type: ignore[union-attr]
        out["userId"] = self.scope["userId"]
        return out

    def update(self, update: Mapping[str, Mapping[str, Any]]) -> None:
        """Refuse an update that would hand a document to another owner."""
        if not self.scope:
            return
        for op, spec in update.items():
            for key in spec:
                if key in self.scope and (op != "$set" or spec[key] != self.scope[key]):
                    raise PermissionDeniedError(f"actor {self.actor.id} may not change {key} of a {self.model}")  # type: ignore[union-attr]

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
                    if key in doc and doc[key] != value:
                        return False
        return True

    def pipeline(self, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A pipeline that first narrows to the actor's documents; stages that read another
        collection (``$lookup``, ``$unionWith``, ``$graphLookup``) are refused at any depth."""
        if not self.scope:
            return stages
        for stage in _CROSS_COLLECTION_STAGES:
            if _mentions(stages, stage):
                raise PermissionDeniedError(f"actor {self.actor.id} is limited to its own documents; {stage} is not allowed")  # type: ignore[union-attr]
        if stages and "$geoNear" in stages[0]:
            near = dict(stages[0]["$geoNear"])
            near["query"] = self.filter(near.get("query") or {})
            return [{"$geoNear": near}, *stages[1:]]
        return [{"$match": dict(self.scope)}, *stages]


def authorize(actor: Actor | None, info: Any, operation: str, call: str | None = None) -> Guard:
    """Check ``operation`` (``READ``, ``CREATE``, ...) on the model ``info``; a Guard or raise.
    ``call`` names the service call in the refusal (defaults to the operation)."""
    if actor is None:
        return _TRUSTED
    if not actor.grants(info.name, operation):
        raise PermissionDeniedError(
            f"actor {actor.id} (roles: {', '.join(sorted(actor.roles))}) may not {call or operation} {info.name}"
        )
    return Guard(actor, info.name, "user_id" in info.cls._fields)


def authorize_global(actor: Actor | None, operation: str, call: str | None = None) -> None:
    """Check an operation on no single model (``GLOBAL_PERMISSIONS``); raise if denied."""
    if actor is not None and not actor.grants_global(operation):
        raise PermissionDeniedError(
            f"actor {actor.id} (roles: {', '.join(sorted(actor.roles))}) may not {call or operation}"
        )


_CROSS_COLLECTION_STAGES = ("$lookup", "$unionWith", "$graphLookup")


def _mentions(value: Any, key: str) -> bool:
    if isinstance(value, Mapping):
        return key in value or any(_mentions(v, key) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_mentions(v, key) for v in value)
    return False


class _Trusted(Guard):
    def __init__(self) -> None:
        self.actor = None
        self.model = ""
        self.scope = {}


_TRUSTED = _Trusted()
