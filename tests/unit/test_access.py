"""Role-based access: the permission table, the ``self`` scope, and denied calls writing nothing."""

from __future__ import annotations

import pytest
from bson import ObjectId

from astro_db import Database
from astro_db.errors import ConfigError, PermissionDeniedError
from astro_db.security import PERMISSIONS, Actor

from .security_data import chart_data, snapshot, user_data


@pytest.fixture
def two_users(db):
    ann = db.create("User", user_data(name="Ann"))
    bob = db.create("User", user_data(name="Bob"))
    return ann, bob, db.create("BirthChart", chart_data(ann.id)), db.create("BirthChart", chart_data(bob.id))


def test_as_actor_is_a_view_of_the_same_database(db):
    view = db.as_actor("svc", roles=["reader"])
    admin = db.as_actor("ops", roles=["admin"])
    assert admin.executor is db.executor and view is not db and view.actor.roles == {"reader"}
    assert view.actor == Actor("svc", frozenset({"reader"})) and db.actor is None
    created = db.create("User", user_data())
    assert view.find_one("User", {"id": created.id}).id == created.id


def test_database_accepts_an_actor_at_construction():
    database = Database("mongomock://localhost/actor_ctor", actor={"id": "svc", "roles": ["reader"]}).connect()
    with pytest.raises(PermissionDeniedError):
        database.create("User", user_data())
    database.disconnect()


@pytest.mark.parametrize("actor_id, roles", [("svc", []), ("svc", ["root"]), ("", ["reader"]), ("not-an-oid", ["self"])])
def test_an_actor_needs_known_roles_and_a_user_id_for_the_self_scope(db, actor_id, roles):
    with pytest.raises(ConfigError):
        db.as_actor(actor_id, roles=roles)


def test_a_reader_can_read_but_not_write(db, two_users):
    ann, _, chart, _ = two_users
    reader = db.as_actor("analytics", roles=["reader"])
    assert reader.count("BirthChart") == 2
    before = snapshot(db)
    for call in (
        lambda: reader.create("User", user_data()),
        lambda: reader.create_many("BirthChart", [chart_data(ann.id)]),
        lambda: reader.update("User", {"id": ann.id}, {"name": "Mallory"}),
        lambda: reader.update_many("User", {}, {"name": "Mallory"}),
        lambda: reader.delete("BirthChart", {"id": chart.id}),
        lambda: reader.delete_many("BirthChart", {"userId": ann.id}),
    ):
        with pytest.raises(PermissionDeniedError):
            call()
    assert snapshot(db) == before


def test_a_writer_writes_but_deleting_accounts_and_everything_is_for_admins(db, two_users):
    ann, bob, chart, _ = two_users
    writer = db.as_actor("app", roles=["writer"])
    assert writer.update("BirthChart", {"id": chart.id}, {"houseSystem": "koch"}).house_system == "koch"
    with pytest.raises(PermissionDeniedError):
        writer.delete("User", {"id": bob.id})
    with pytest.raises(PermissionDeniedError):
        writer.delete_many("BirthChart", {}, all=True)
    with pytest.raises(PermissionDeniedError):
        writer.audit_trail("User", ann.id)
    admin = db.as_actor("ops", roles=["admin"])
    assert admin.delete("User", {"id": bob.id}) is True
    assert admin.delete_many("BirthChart", {}, all=True) == 2


def test_the_permission_table_covers_every_role_and_model():
    assert set(PERMISSIONS) == {"reader", "writer", "admin"}
    for table in PERMISSIONS.values():
        assert set(table) == {"User", "BirthChart", "PlanetaryInsight", "TimingRecommendation"}


def test_a_user_scoped_actor_sees_only_its_own_charts(db, two_users):
    ann, bob, ann_chart, bob_chart = two_users
    me = db.as_actor(str(ann.id), roles=["self"])
    assert [c.id for c in me.find("BirthChart")] == [ann_chart.id]
    assert me.find_one("BirthChart", {"id": bob_chart.id}) is None
    assert me.find("BirthChart", {"userId": bob.id}) == []
    assert me.count("BirthChart") == 1
    assert [d["_id"] for d in me.aggregate("BirthChart", [{"$project": {"_id": 1}}])] == [ann_chart.id]
    assert me.find_one("User").id == ann.id
    assert me.find_one("User", {"id": bob.id}) is None


def test_a_user_scoped_actor_cannot_update_or_delete_another_users_chart(db, two_users):
    ann, bob, _, bob_chart = two_users
    me = db.as_actor(str(ann.id), roles=["self"])
    before = snapshot(db)
    assert me.update("BirthChart", {"id": bob_chart.id}, {"houseSystem": "koch"}) is None
    assert me.update_many("BirthChart", {"userId": bob.id}, {"houseSystem": "koch"}) == 0
    assert me.delete("BirthChart", {"id": bob_chart.id}) is False
    assert me.update("User", {"id": bob.id}, {"name": "Mallory"}) is None
    assert snapshot(db) == before


def test_a_user_scoped_actor_cannot_give_a_chart_to_someone_else(db, two_users):
    ann, bob, ann_chart, _ = two_users
    me = db.as_actor(str(ann.id), roles=["self"])
    before = snapshot(db)
    with pytest.raises(PermissionDeniedError):
        me.create("BirthChart", chart_data(bob.id))
    with pytest.raises(PermissionDeniedError):
        me.create_many("BirthChart", [chart_data(ann.id), chart_data(bob.id)])
    with pytest.raises(PermissionDeniedError):
        me.update("BirthChart", {"id": ann_chart.id}, {"userId": bob.id})
    with pytest.raises(PermissionDeniedError):
        me.create("User", user_data())
    with pytest.raises(PermissionDeniedError):
        me.aggregate("BirthChart", [{"$lookup": {"from": "users", "localField": "userId", "foreignField": "_id", "as": "u"}}])
    assert snapshot(db) == before


@pytest.mark.parametrize("pipeline", [
    [{"$unionWith": "users"}],
    [{"$unionWith": {"coll": "birthCharts", "pipeline": []}}],
    [{"$facet": {"all": [{"$unionWith": {"coll": "users"}}]}}],
    [{"$graphLookup": {"from": "users", "startWith": "$userId", "connectFromField": "_id",
                       "connectToField": "_id", "as": "g"}}],
])
def test_a_user_scoped_actor_cannot_read_other_collections_through_a_pipeline(db, two_users, pipeline):
    ann = two_users[0]
    me = db.as_actor(str(ann.id), roles=["self"])
    with pytest.raises(PermissionDeniedError, match="is not allowed"):
        me.aggregate("BirthChart", pipeline)


def test_a_user_scoped_actor_creates_its_own_documents_with_its_id(db, two_users):
    ann = two_users[0]
    me = db.as_actor(str(ann.id), roles=["self"])
    data = chart_data(ann.id)
    del data["userId"]
    assert me.create("BirthChart", data).user_id == ann.id
    assert me.update("User", {"id": ann.id}, {"name": "Annie"}).name == "Annie"


def test_self_with_reader_is_read_only_on_own_documents(db, two_users):
    ann, _, ann_chart, _ = two_users
    me = db.as_actor(str(ann.id), roles=["reader", "self"])
    assert me.find_one("BirthChart").id == ann_chart.id
    with pytest.raises(PermissionDeniedError):
        me.update("BirthChart", {"id": ann_chart.id}, {"houseSystem": "koch"})


def test_without_an_actor_the_app_is_trusted(db, two_users):
    assert db.count("BirthChart") == 2
    assert db.delete_many("BirthChart", {}, all=True) == 2


def test_a_denied_call_does_no_io(db, two_users, monkeypatch):
    from astro_db.ops.steps import run

    reader = db.as_actor("r", roles=["reader"])
    calls = []
    original = run.call
    monkeypatch.setattr(run, "call", lambda *a, **k: calls.append(a) or original(*a, **k))
    reader.find("User", {})
    assert len(calls) == 1  # the spy sees the run step
    with pytest.raises(PermissionDeniedError):
        reader.update("User", {"id": ObjectId()}, {"name": "x"})
    assert len(calls) == 1


def test_astro_db_roles_prints_a_least_privilege_role_and_user():
    import json

    from click.testing import CliRunner

    from astro_db.cli import cli

    out = CliRunner().invoke(cli, ["--url", "mongomock://localhost/astro", "--json", "roles"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    create_role, create_user = printed["app"]
    (vault_role, grant) = printed["keyVault"]
    # the key vault: read, create keys, its index; never update or remove (a renamed data key
    # would pass the owner check of a read: docs/security.md)
    assert vault_role["db"] == "encryption" and vault_role["command"]["privileges"] == [
        {"resource": {"db": "encryption", "collection": "__keyVault"}, "actions": ["find", "insert", "createIndex"]}]
    assert grant == {"db": "astro", "command": {"grantRolesToUser": create_user["createUser"], "roles": [
        {"role": vault_role["command"]["createRole"], "db": "encryption"}]}}
    grants = {p["resource"]["collection"]: set(p["actions"]) for p in create_role["privileges"]}
    assert set(grants) == {"users", "birthCharts", "planetaryInsights", "timingRecommendations", "auditLog", "astroChanges",
                           "astroErasures"}
    assert grants["astroErasures"] & {"insert", "update", "remove"} == set()  # the erasure ledger: read only
    assert all(p["resource"]["db"] == "astro" for p in create_role["privileges"])
    assert grants["users"] >= {"find", "insert", "update", "remove"}
    assert grants["auditLog"] & {"update", "remove"} == set()
    assert grants["astroChanges"] & {"update", "remove"} == set()
    assert not any(a in actions for actions in grants.values() for a in ("dropCollection", "dropDatabase", "createUser"))
    assert create_user["roles"] == [{"role": create_role["createRole"], "db": "astro"}]
    script = CliRunner().invoke(cli, ["--url", "mongomock://localhost/astro", "roles"]).output
    assert script.startswith("use astro") and "passwordPrompt()" in script
    assert 'db.getSiblingDB("encryption").runCommand({' in script and '"grantRolesToUser": "astro_app"' in script


def test_without_index_management_the_app_may_still_list_the_models_indexes():
    """``upsert_many`` looks up its key's unique index (``listIndexes``) and refuses without one:
    a role made with ``--no-index-management`` left it out, so every upsert failed unauthorized."""
    from astro_db.security.mongo_roles import role_commands

    grants = {p["resource"]["collection"]: p["actions"] for p in role_commands("astro", manage_indexes=False)[0]["privileges"]}
    for name in ("users", "birthCharts", "planetaryInsights", "timingRecommendations"):
        assert grants[name] == ["find", "insert", "update", "remove", "listIndexes"], name
    assert not any("createIndex" in actions for actions in grants.values())


_NESTED: list[type] = []


def nested_owner_model() -> type:
    """An app model whose owner sits in an embedded document (``author.user_id``), made once."""
    if not _NESTED:
        from astro_db.models import AstroDocument
        from astro_db.models.embedded import AstroEmbeddedDocument
        from astro_db.models.fields import EmbeddedDocumentField, TextField, UserRefField

        class Author(AstroEmbeddedDocument):
            user_id = UserRefField(db_field="userId", required=True)
            label = TextField(max_length=20)

        class Note(AstroDocument):
            author = EmbeddedDocumentField(Author, required=True)
            title = TextField(required=True, max_length=50)
            meta = {"collection": "scopedNotes", "owner": "author.user_id"}

        _NESTED.append(Note)
    return _NESTED[0]


def test_a_self_actor_cannot_hand_over_a_document_whose_owner_sits_in_a_sub_document():
    """An app model whose owner is ``author.user_id``: replacing ``author`` with another user's
    id is the same hand-over as setting ``author.userId``, refused with nothing written."""
    Note = nested_owner_model()
    database = Database("mongomock://localhost/nested_owner", models=[Note]).connect()
    ann = database.create("User", user_data(name="Ann"))
    bob = database.create("User", user_data(name="Bob"))
    note = database.create(Note, {"author": {"userId": ann.id}, "title": "mine"})
    me = database.as_actor(str(ann.id), roles=["self"])
    before = snapshot(database)
    for update in ({"author": {"userId": bob.id}}, {"$set": {"author": {"userId": bob.id, "label": "x"}}},
                   {"$set": {"author.userId": bob.id}}):
        with pytest.raises(PermissionDeniedError):
            me.update(Note, {"id": note.id}, update)
    assert snapshot(database) == before
    assert me.update(Note, {"id": note.id}, {"author": {"userId": ann.id, "label": "me"}}).author.label == "me"
    assert me.count(Note, {}) == 1 and database.count(Note, {"author.userId": bob.id}) == 0
    database.disconnect()


def test_a_self_actor_creates_documents_whose_owner_sits_in_a_sub_document_for_herself_only():
    """The same app model: a self actor's create gets her id at ``author.userId`` whether the
    data names it or not (the caller's data left as given), another user's id there is refused,
    and an answer holding another owner there is never served to her."""
    from astro_db.security.access import Actor, Guard

    Draft = nested_owner_model()
    database = Database("mongomock://localhost/nested_owner_create", models=[Draft]).connect()
    ann = database.create("User", user_data(name="Ann"))
    bob = database.create("User", user_data(name="Bob"))
    me = database.as_actor(str(ann.id), roles=["self"])
    data = {"author": {"label": "pen name"}, "title": "no owner given"}
    assert me.create(Draft, data).author.user_id == ann.id
    assert data == {"author": {"label": "pen name"}, "title": "no owner given"}
    assert me.create(Draft, {"author": {"user_id": str(ann.id)}, "title": "mine, by attribute"}).author.user_id == ann.id
    assert me.create(Draft, {"title": "no author at all"}).author.user_id == ann.id
    before = snapshot(database)
    for theirs in ({"author": {"userId": bob.id}, "title": "x"}, {"author": {"user_id": str(bob.id)}, "title": "x"}):
        with pytest.raises(PermissionDeniedError):
            me.create(Draft, theirs)
    with pytest.raises(PermissionDeniedError):
        me.create(Draft, {"author": "not an object", "title": "x"})
    assert snapshot(database) == before
    assert me.count(Draft, {}) == 3 and database.count(Draft, {"author.userId": bob.id}) == 0
    guard = Guard(Actor(str(ann.id), ["self"]), "Draft", "author.userId", owner_names=("author.userId",))
    assert guard.admits({"author": {"userId": ann.id}}) and guard.admits({"title": "no author"})
    assert not guard.admits([{"author": {"userId": ann.id}}, {"author": {"userId": bob.id}}])
    database.disconnect()


def test_a_self_actor_may_not_give_a_new_document_the_id_of_a_deleted_one():
    """A document created again under an id continues that id's trail; made by a self actor
    over another user's deleted document, her audit trail would show that user's writes (when,
    by whom, which fields). Her new document takes an id of its own; a fresh id of her choosing
    is still hers to give, and the app may create a document again under its id."""
    from astro_db.errors import DuplicateKeyError

    database = Database("mongomock://localhost/reused_ids").connect()
    ann = database.create("User", user_data(name="Ann"))
    bob = database.create("User", user_data(name="Bob"))
    theirs = database.create("BirthChart", chart_data(bob.id))
    database.update("BirthChart", {"id": theirs.id}, {"houseSystem": "koch"})
    database.delete("BirthChart", {"id": theirs.id})
    me = database.as_actor(str(ann.id), roles=["self"])
    before = snapshot(database)
    with pytest.raises(DuplicateKeyError, match="was used by a document deleted since") as refused:
        me.create("BirthChart", {**chart_data(ann.id), "_id": theirs.id})
    assert refused.value.fields == ("_id",)
    batch = me.create_many("BirthChart", [{**chart_data(ann.id), "_id": theirs.id}, chart_data(ann.id)])
    assert len(batch) == 1 and [(i, type(e)) for i, e in batch.failed] == [(0, DuplicateKeyError)]
    assert database.mongo.birthCharts.count_documents({"_id": theirs.id}) == 0
    assert snapshot(database)["astroChanges"] != before["astroChanges"]  # only the batch's one create
    fresh = ObjectId()
    assert me.create("BirthChart", {**chart_data(ann.id), "_id": fresh}).id == fresh
    again = database.create("BirthChart", {**chart_data(bob.id), "_id": theirs.id})  # the app: trusted
    assert [e["revision"] for e in database.audit_trail("BirthChart", again.id)] == [0, 1, 2, 3]
    database.disconnect()
