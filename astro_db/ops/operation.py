"""What one call of the service is, and the permission every public call needs.

An ``Operation`` is the data of a call: its name (the ``Database`` method), the model as the
caller named it, the actor it is made for, its transaction and arguments. ``PERMISSIONS`` is
the one table saying which permission each public method of ``Database`` needs; the executor's
authorize step reads it, and ``tests/unit/test_permissions.py`` checks every public method of
``Database`` against it for every role, so a method without an entry fails the suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..security.access import (
    AUDIT,
    BACKUP,
    CREATE,
    DELETE,
    DELETE_ALL,
    MANAGE,
    MONITOR,
    OPEN,
    READ,
    ROTATE,
    TRANSACT,
    UPDATE,
)

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MaybeActor, MaybeTransaction

__all__ = ["Operation", "PERMISSIONS", "MODEL_PERMISSIONS", "permission_of"]

# Permissions granted per model (``access.PERMISSIONS``); the others are global
# (``access.GLOBAL_PERMISSIONS``): they concern no single model.
MODEL_PERMISSIONS = frozenset({READ, CREATE, UPDATE, DELETE, DELETE_ALL, AUDIT})

# Every public name of ``Database`` -> the permission it needs.
PERMISSIONS: dict[str, str] = {
    # data
    "find": READ, "find_one": READ, "count": READ, "aggregate": READ, "iter_find": READ, "page": READ,
    "create": CREATE, "create_many": CREATE,
    "upsert_many": CREATE,  # and UPDATE, checked by the executor: it inserts and replaces
    "update": UPDATE, "update_many": UPDATE,
    "delete": DELETE, "delete_many": DELETE,
    "create_user_with_chart": CREATE, "delete_user_cascade": DELETE,
    "audit_trail": AUDIT,
    # personal data (astro_db.personal): export needs read on the users (and audit, unless the
    # actor exports itself); erasure is a delete of the user, an admin's by the User model's table
    "export_user": READ, "erase_user": DELETE,
    # transactions
    "start_transaction": TRANSACT, "commit_transaction": TRANSACT, "rollback_transaction": TRANSACT,
    "abort_transaction": TRANSACT, "transaction": TRANSACT, "with_transaction": TRANSACT,
    # lifecycle and identity: no data touched (a view's disconnect closes the shared pool: the
    # app made the view, and actors limit access to data, not the app's control of its handle)
    "connect": OPEN, "is_connected": OPEN, "disconnect": OPEN, "close": OPEN,
    "config": OPEN, "actor": OPEN, "as_actor": OPEN,
    # watching the service
    "health": MONITOR, "metrics": MONITOR, "metrics_registry": MONITOR, "explain": MONITOR, "advise": MONITOR,
    "storage_stats": MONITOR,
    # running the service: raw access (no checks, no hooks), indexes, maintenance, keys
    "mongo": MANAGE, "collection": MANAGE, "executor": MANAGE,
    "sync_indexes": MANAGE, "cleanup": MANAGE, "reconcile_changes": MANAGE, "rotate_keys": ROTATE,
    # backup and restore (``astro_db.backup`` takes a Database and asks for this)
    "backup": BACKUP, "restore": BACKUP,
}


def permission_of(name: str) -> str:
    """The permission the call ``name`` needs; a ``KeyError`` names a call missing from the table."""
    try:
        return PERMISSIONS[name]
    except KeyError:
        raise KeyError(f"{name!r} declares no permission in astro_db.ops.operation.PERMISSIONS") from None


@dataclass(frozen=True, init=False)
class Operation:
    """One call: ``name`` (the Database method), the model as given, and its arguments."""

    name: str
    model: Any = None
    actor: MaybeActor = None  # an ``access.Actor``, or None for the trusted app
    transaction: MaybeTransaction = None  # an ``astro_db.Transaction``
    query: Mapping[str, Any] | None = None  # a filter, as the caller wrote it
    data: Any = None  # the document(s), the update, or the pipeline
    options: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, name: str, model: Any = None, actor: MaybeActor = None, transaction: MaybeTransaction = None,
                 query: Mapping[str, Any] | None = None, data: Any = None,
                 options: Mapping[str, Any] | None = None) -> None:
        # the dataclass's own __init__ (same fields, order and defaults; ``options``: a new dict),
        # as one dict update: a frozen dataclass sets each field through object.__setattr__, and
        # every call makes one Operation (as events.WriteEvent)
        self.__dict__.update(name=name, model=model, actor=actor, transaction=transaction, query=query, data=data,
                             options={} if options is None else options)

    @property
    def permission(self) -> str:
        return permission_of(self.name)

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)
