"""Every public call of ``Database`` declares its permission in one table, and is enforced by it.

The test enumerates ``Database``'s public names by introspection; each must have an entry in
``astro_db.ops.PERMISSIONS`` and a sample call here. Each sample call is made by a view for
every role (reader, writer, admin, self) and must be allowed or refused exactly as the table and
the role grants say, so a new method without a declared permission fails the suite.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from astro_db import Database
from astro_db.errors import AstroDBError, PermissionDeniedError
from astro_db.ops import PERMISSIONS
from astro_db.ops.operation import MODEL_PERMISSIONS
from astro_db.security import access

from .security_data import chart_data, new_db, user_data

ROLES = ("reader", "writer", "admin", "self")
PUBLIC = sorted(name for name, _ in inspect.getmembers(Database) if not name.startswith("_"))


class World:
    """A fresh embedded database with one user (the ``self`` actor) and their chart."""

    def __init__(self) -> None:
        self.db = new_db(ensure_indexes=False)
        self.user = self.db.create("User", user_data())
        self.chart = self.db.create("BirthChart", chart_data(self.user.id))

    def view(self, role: str) -> Database:
        return self.db.as_actor(str(self.user.id), roles=[role])


def _transaction(world: World, view: Database, finish: str) -> Any:
    tx = world.db.start_transaction()
    try:
        return getattr(view, finish)(tx)
    finally:
        if tx.active:
            tx.abort()


def _in_transaction(view: Database) -> None:
    with view.transaction():
        pass


# name -> (model the call touches or None, the call)
CALLS: dict[str, tuple[str | None, Callable[[World, Database], Any]]] = {
    "find": ("BirthChart", lambda w, v: v.find("BirthChart", {})),
    "find_one": ("BirthChart", lambda w, v: v.find_one("BirthChart", {"id": w.chart.id})),
    "count": ("BirthChart", lambda w, v: v.count("BirthChart", {})),
    "iter_find": ("BirthChart", lambda w, v: list(v.iter_find("BirthChart", {}))),
    "page": ("BirthChart", lambda w, v: v.page("BirthChart", {}, limit=5)),
    "aggregate": ("BirthChart", lambda w, v: v.aggregate("BirthChart", [{"$match": {}}])),
    "create": ("BirthChart", lambda w, v: v.create("BirthChart", chart_data(w.user.id))),
    "create_many": ("BirthChart", lambda w, v: v.create_many("BirthChart", [chart_data(w.user.id)])),
    "update": ("BirthChart", lambda w, v: v.update("BirthChart", {"id": w.chart.id}, {"houseSystem": "koch"})),
    "update_many": ("BirthChart", lambda w, v: v.update_many("BirthChart", {"userId": w.user.id}, {"houseSystem": "koch"})),
    "delete": ("BirthChart", lambda w, v: v.delete("BirthChart", {"id": w.chart.id})),
    "delete_many": ("BirthChart", lambda w, v: v.delete_many("BirthChart", {"userId": w.user.id})),
    "create_user_with_chart": ("User", lambda w, v: v.create_user_with_chart(user_data(), chart_data(w.user.id))),
    "delete_user_cascade": ("User", lambda w, v: v.delete_user_cascade(w.user.id)),
    "audit_trail": ("BirthChart", lambda w, v: v.audit_trail("BirthChart", w.chart.id)),
    "start_transaction": (None, lambda w, v: v.start_transaction().abort()),
    "commit_transaction": (None, lambda w, v: _transaction(w, v, "commit_transaction")),
    "rollback_transaction": (None, lambda w, v: _transaction(w, v, "rollback_transaction")),
    "abort_transaction": (None, lambda w, v: _transaction(w, v, "abort_transaction")),
    "transaction": (None, lambda w, v: _in_transaction(v)),
    "with_transaction": (None, lambda w, v: v.with_transaction(lambda tx: None)),
    "connect": (None, lambda w, v: v.connect()),
    "is_connected": (None, lambda w, v: v.is_connected()),
    "disconnect": (None, lambda w, v: v.disconnect()),
    "close": (None, lambda w, v: v.close()),
    "config": (None, lambda w, v: v.config),
    "actor": (None, lambda w, v: v.actor),
    "as_actor": (None, lambda w, v: v.as_actor("someone", roles=["reader"])),
    "health": (None, lambda w, v: v.health()),
    "metrics": (None, lambda w, v: v.metrics()),
    "metrics_registry": (None, lambda w, v: v.metrics_registry()),
    "explain": (None, lambda w, v: v.explain("BirthChart", {})),
    "advise": (None, lambda w, v: v.advise(explain=False)),
    "mongo": (None, lambda w, v: v.mongo),
    "collection": (None, lambda w, v: v.collection("User")),
    "executor": (None, lambda w, v: v.executor),
    "sync_indexes": (None, lambda w, v: v.sync_indexes()),
    "cleanup": (None, lambda w, v: v.cleanup(dry_run=True)),
    "rotate_keys": (None, lambda w, v: v.rotate_keys(dry_run=True)),
    "reconcile_changes": (None, lambda w, v: v.reconcile_changes()),
}


def expected(name: str, role: str, model: str | None) -> bool:
    """What the table and the role grants say: may ``role`` make the call ``name``?"""
    needed = PERMISSIONS[name]
    actor = access.Actor("6b0f3a20eb3979ac28081367", frozenset({role}))
    if needed in MODEL_PERMISSIONS and model is not None:
        if role == "self" and model == "User" and name.startswith("create"):
            return False  # the self scope never creates users
        return actor.grants(model, needed)
    return actor.grants_global(needed)


def test_every_public_name_declares_a_permission_and_has_a_sample_call():
    assert [n for n in PUBLIC if n not in PERMISSIONS] == []
    assert [n for n in PUBLIC if n not in CALLS] == []


@pytest.mark.parametrize("name", PUBLIC)
@pytest.mark.parametrize("role", ROLES)
def test_each_call_is_allowed_or_refused_as_the_table_says(name, role):
    model, call = CALLS[name]
    world = World()
    try:
        allowed = expected(name, role, model)
        if allowed:
            try:
                call(world, world.view(role))
            except PermissionDeniedError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{role} was refused {name}: {exc}")
            except AstroDBError:
                pass  # allowed, then failed for another reason (e.g. no encryption key to rotate)
        else:
            with pytest.raises(PermissionDeniedError):
                call(world, world.view(role))
    finally:
        world.db.disconnect()


@pytest.mark.parametrize("name, role", [
    ("rotate_keys", "reader"), ("rotate_keys", "writer"), ("sync_indexes", "reader"), ("sync_indexes", "writer"),
    ("audit_trail", "writer"), ("delete_user_cascade", "writer"), ("mongo", "writer"), ("executor", "reader"),
    ("metrics", "self"), ("health", "self"), ("create", "reader"), ("delete", "reader"), ("cleanup", "writer"),
    ("reconcile_changes", "writer"),
])
def test_pinned_refusals(name, role):
    """A few refusals written out, so weakening the table itself is caught too."""
    assert expected(name, role, CALLS[name][0]) is False


@pytest.mark.parametrize("name, role", [
    ("find", "reader"), ("create", "self"), ("delete", "writer"), ("rotate_keys", "admin"),
    ("metrics", "reader"), ("start_transaction", "self"), ("connect", "self"), ("audit_trail", "admin"),
])
def test_pinned_grants(name, role):
    assert expected(name, role, CALLS[name][0]) is True


def test_a_self_scoped_admin_sees_only_the_trails_of_its_own_documents():
    world = World()
    other = world.db.create("User", user_data())
    others_chart = world.db.create("BirthChart", chart_data(other.id))
    view = world.db.as_actor(str(world.user.id), roles=["self", "admin"])
    assert [e["action"] for e in view.audit_trail("BirthChart", world.chart.id)] == ["create"]
    with pytest.raises(PermissionDeniedError):
        view.audit_trail("BirthChart", others_chart.id)
    with pytest.raises(PermissionDeniedError):
        view.audit_trail("User", other.id)
    world.db.disconnect()
