"""Every public call of ``Database`` declares its permission in one table, and is enforced by it.

The test enumerates ``Database``'s public names by introspection; each must have an entry in
``astro_db.ops.PERMISSIONS``, a sample call here and a line in ``ALLOWED``: the roles that may
make it, written out by hand (not computed from ``PERMISSIONS`` or the grants of
``security.access``, so a weakened table cannot weaken the expectation with it). Each sample
call is made by a view for every role (reader, writer, admin, self) and must be allowed or
refused exactly as ``ALLOWED`` says, so a new method without a declared permission fails the
suite, and so does a method whose permission is loosened (``collection``, ``explain``,
``advise`` or ``backup`` made to need nothing would hand raw collections, query plans or a full
backup to an end user).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from astro_db import Database, backup
from astro_db.errors import AstroDBError, PermissionDeniedError
from astro_db.ops import PERMISSIONS
from astro_db.ops.operation import MODEL_PERMISSIONS, Operation, permission_of
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
    "upsert_many": ("PlanetaryInsight", lambda w, v: v.upsert_many("PlanetaryInsight", [{
        "userId": w.user.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 50, "recommendations": ["Rest"]}],
        on=("userId", "date"))),
    "update": ("BirthChart", lambda w, v: v.update("BirthChart", {"id": w.chart.id}, {"houseSystem": "koch"})),
    "update_many": ("BirthChart", lambda w, v: v.update_many("BirthChart", {"userId": w.user.id}, {"houseSystem": "koch"})),
    "delete": ("BirthChart", lambda w, v: v.delete("BirthChart", {"id": w.chart.id})),
    "delete_many": ("BirthChart", lambda w, v: v.delete_many("BirthChart", {"userId": w.user.id})),
    "create_user_with_chart": ("User", lambda w, v: v.create_user_with_chart(user_data(), chart_data(w.user.id))),
    "delete_user_cascade": ("User", lambda w, v: v.delete_user_cascade(w.user.id)),
    "audit_trail": ("BirthChart", lambda w, v: v.audit_trail("BirthChart", w.chart.id)),
    "export_user": ("User", lambda w, v: v.export_user(w.user.id)),
    "erase_user": ("User", lambda w, v: v.erase_user(w.user.id)),
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
    "storage_stats": (None, lambda w, v: v.storage_stats()),
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


READERS = frozenset({"reader", "writer", "admin", "self"})  # every role
WRITERS = frozenset({"writer", "admin", "self"})  # ``self`` writes its own documents
STAFF = frozenset({"reader", "writer", "admin"})  # not an end user (``self``)
ADMIN = frozenset({"admin"})

# name -> the roles allowed to make the call; written out, never derived from the tables
ALLOWED: dict[str, frozenset[str]] = {
    # data (on BirthChart; the two account calls on User)
    "find": READERS, "find_one": READERS, "count": READERS, "aggregate": READERS, "iter_find": READERS, "page": READERS,
    "create": WRITERS, "create_many": WRITERS, "update": WRITERS, "update_many": WRITERS, "upsert_many": WRITERS,
    "delete": WRITERS, "delete_many": WRITERS,
    "create_user_with_chart": frozenset({"writer", "admin"}),  # the self scope never creates users
    "delete_user_cascade": ADMIN,  # deleting an account is an admin's decision
    "audit_trail": ADMIN,
    "export_user": frozenset({"admin", "self"}),  # the user her own data (arts. 15, 20); staff other than admins never
    "erase_user": ADMIN,  # art. 17 is a request to the controller, who verifies it and may have to keep data
    # transactions and lifecycle: every role
    "start_transaction": READERS, "commit_transaction": READERS, "rollback_transaction": READERS,
    "abort_transaction": READERS, "transaction": READERS, "with_transaction": READERS,
    "connect": READERS, "is_connected": READERS, "disconnect": READERS, "close": READERS,
    "config": READERS, "actor": READERS, "as_actor": READERS,
    # watching the service: staff, never an end user
    "health": STAFF, "storage_stats": STAFF, "metrics": STAFF, "metrics_registry": STAFF, "explain": STAFF, "advise": STAFF,
    # running the service, raw access, keys, backups: admin only
    "mongo": ADMIN, "collection": ADMIN, "executor": ADMIN, "sync_indexes": ADMIN, "cleanup": ADMIN,
    "reconcile_changes": ADMIN, "rotate_keys": ADMIN, "backup": ADMIN, "restore": ADMIN,
}


def expected(name: str, role: str, model: str | None) -> bool:
    """What the table and the role grants say: may ``role`` make the call ``name``?"""
    needed = PERMISSIONS[name]
    actor = access.Actor("6b0f3a20eb3979ac28081367", frozenset({role}))
    if needed in MODEL_PERMISSIONS and model is not None:
        if role == "self" and model == "User" and name.startswith("create"):
            return False  # the self scope never creates users
        if name == "export_user" and role != "self":
            return actor.grants(model, needed) and actor.grants(model, access.AUDIT)  # its records are audit data
        return actor.grants(model, needed)
    return actor.grants_global(needed)


def test_every_public_name_declares_a_permission_and_has_a_sample_call():
    assert [n for n in PUBLIC if n not in PERMISSIONS] == []
    assert [n for n in PUBLIC if n not in CALLS] == []
    assert sorted(ALLOWED) == sorted([*PUBLIC, "backup", "restore"]) == sorted(PERMISSIONS)


@pytest.mark.parametrize("name", sorted(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_the_tables_grant_exactly_the_written_matrix(name, role):
    """``PERMISSIONS`` with the role grants of ``security.access`` say what ``ALLOWED`` says."""
    assert expected(name, role, CALLS[name][0] if name in CALLS else None) is (role in ALLOWED[name])


@pytest.mark.parametrize("name", PUBLIC)
@pytest.mark.parametrize("role", ROLES)
def test_each_call_is_allowed_or_refused_as_the_table_says(name, role):
    model, call = CALLS[name]
    world = World()
    try:
        allowed = role in ALLOWED[name]
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
    ("reconcile_changes", "writer"), ("export_user", "reader"), ("export_user", "writer"), ("erase_user", "self"),
    ("erase_user", "writer"),
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


@pytest.mark.parametrize("role", ROLES)
def test_backup_and_restore_are_allowed_or_refused_as_written(role, tmp_path):
    """``astro_db.backup`` asks the authorize step of a Database view for ``backup`` (the restore
    target for ``restore``): a full copy of everyone's data, for an admin only. (A view reaches
    the step through ``Database.executor``, itself ``manage``: admin only too.)"""
    world = World()
    repo = tmp_path / "repo"
    target = new_db(ensure_indexes=False)
    try:
        backup.backup(world.db, repo)  # the trusted app always may
        actor = access.Actor(str(world.user.id), frozenset({role}))
        for call in ("backup", "restore"):
            if role in ALLOWED[call]:
                assert world.db.executor.authorize(actor, call).scope == {}
            else:
                with pytest.raises(PermissionDeniedError, match=f"may not {call}$"):
                    world.db.executor.authorize(actor, call)
        view, target_view = world.view(role), target.as_actor(str(world.user.id), roles=[role])
        if role in ALLOWED["backup"]:
            assert backup.backup(view, repo)["kind"] == "incremental"
            assert backup.restore(repo, target_view)["collections"]["birthCharts"] == 1
            assert target.count("BirthChart", {}) == 1
        else:
            with pytest.raises(PermissionDeniedError):
                backup.backup(view, repo)
            with pytest.raises(PermissionDeniedError):
                backup.restore(repo, target_view)
            assert [s["kind"] for s in backup.list_sets(repo)] == ["full"]
            assert target.count("BirthChart", {}) == 0
    finally:
        world.db.disconnect()
        target.disconnect()


@pytest.mark.parametrize("role", ROLES)
def test_deleting_every_document_of_a_model_is_an_admins_call(role):
    """``delete_many(model, {}, all=True)`` needs ``DELETE_ALL`` on the model: admin only."""
    world = World()
    try:
        view = world.view(role)
        if role == "admin":
            assert view.delete_many("BirthChart", {}, all=True) == 1
        else:
            with pytest.raises(PermissionDeniedError, match="may not delete_many BirthChart"):
                view.delete_many("BirthChart", {}, all=True)
            assert world.db.count("BirthChart", {}) == 1
    finally:
        world.db.disconnect()


def test_a_refusal_names_the_call_not_only_the_permission_it_needs():
    world = World()
    try:
        with pytest.raises(PermissionDeniedError, match=r"may not update_many BirthChart$"):
            world.view("reader").update_many("BirthChart", {}, {"houseSystem": "koch"})
        with pytest.raises(PermissionDeniedError, match=r"may not explain$"):
            world.view("self").explain("BirthChart", {})
        with pytest.raises(PermissionDeniedError, match=r"\(roles: self\) may not metrics_registry$"):
            world.view("self").metrics_registry()
    finally:
        world.db.disconnect()


def test_the_authorize_step_checks_a_global_call_globally_even_when_a_model_is_named():
    """``Executor.authorize(actor, name, model)``: a call needing a global permission (``explain``
    needs ``monitor``) is decided by the global grants, and gives an unscoped guard; a call
    needing a per-model permission with no model named is refused to every actor."""
    world = World()
    try:
        executor, me = world.db.executor, str(world.user.id)
        guard = executor.authorize(access.Actor(me, frozenset({"reader"})), "explain", "BirthChart")
        assert guard.scope == {}
        with pytest.raises(PermissionDeniedError, match=r"may not explain$"):
            executor.authorize(access.Actor(me, frozenset({"self"})), "explain", "BirthChart")
        for role in ROLES:
            with pytest.raises(PermissionDeniedError, match=r"may not find$"):
                executor.authorize(access.Actor(me, frozenset({role})), "find")
        assert executor.authorize(None, "find").scope == {}  # the trusted app
        assert executor.authorize(access.Actor(me, frozenset({"self"})), "find", "BirthChart").scope == {"userId": world.user.id}
    finally:
        world.db.disconnect()


def test_a_call_missing_from_the_table_is_named_in_the_error():
    with pytest.raises(KeyError, match=r"'drop_everything' declares no permission in astro_db\.ops\.operation\.PERMISSIONS"):
        permission_of("drop_everything")
    assert Operation("update_many").permission == "update"


def test_an_operation_reads_its_options_with_the_callers_default():
    op = Operation("find", "User", options={"lean": True, "strict": False})
    assert op.option("lean") is True and op.option("strict", True) is False
    assert op.option("sort") is None and op.option("sort", [("name", 1)]) == [("name", 1)]
