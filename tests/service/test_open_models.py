"""Open models: an app's own model (examples/app_models.py's ``JournalEntry``) registered with
``Database(models=[...])`` gets every guarantee the built-in models get, on both backends:
validation, roles and the self scope, encryption, the query cache, change records, index sync,
backup and restore, references and the cascade. And a bad registration is a ``ConfigError``."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import sys
import uuid
from pathlib import Path

import pytest
from bson import ObjectId
from mongoengine import ListField

from astro_db import Database, backup, errors
from astro_db.models import AstroDocument, User
from astro_db.models.fields import TextField, UserRefField
from astro_db.security.crypto import key_id, new_key
from astro_db.security.vault import is_sealed

_PATH = Path(__file__).resolve().parents[2] / "examples" / "app_models.py"
_spec = importlib.util.spec_from_file_location("app_models_example", _PATH)
assert _spec is not None and _spec.loader is not None
app_models = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = app_models
_spec.loader.exec_module(app_models)
JournalEntry = app_models.JournalEntry

KEY = new_key()


class Note(AstroDocument):
    """An app model that declares no owner: a self actor may not touch it."""

    text = TextField(required=True)
    meta = {"collection": "appNotes"}


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "embedded":
        return f"mongomock://localhost/t{uuid.uuid4().hex[:8]}"
    return str(request.getfixturevalue("live_url"))


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def jdb(request):
    """A connected Database with JournalEntry registered, on each backend in turn; a real key,
    so sensitive values are stored as ciphertext on both."""
    database = Database(_url(request, request.param), models=[JournalEntry, Note], encryption_key=KEY,
                        server_selection_timeout_ms=5000)
    database.connect()
    database.test_backend = request.param
    yield database
    database.disconnect()


@pytest.fixture
def people(jdb):
    ann = jdb.create("User", {"email": f"ann{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    bo = jdb.create("User", {"email": f"bo{uuid.uuid4().hex[:6]}@example.com", "name": "Bo"})
    return ann, bo


def entry(user_id, **overrides):
    data = {"userId": str(user_id), "title": "Full moon", "text": "Slept badly.", "mood": "restless",
            "writtenAt": dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)}
    data.update(overrides)
    return data


# --- CRUD and validation ---------------------------------------------------------------------


def test_an_app_model_goes_through_create_find_update_delete(jdb, people):
    ann, bo = people
    created = jdb.create("JournalEntry", entry(ann.id))
    assert isinstance(created, JournalEntry) and created.user_id == ann.id and created.version == 0
    jdb.create(JournalEntry, entry(bo.id, title="Monday", mood="calm"))
    assert jdb.count("journal_entry") == 2  # every spelling: class, name, snake case, collection
    assert [e.title for e in jdb.find("journalEntries", {"userId": ann.id})] == ["Full moon"]
    assert jdb.update(JournalEntry, {"id": created.id}, {"title": "Full moon, again"}).title == "Full moon, again"
    assert jdb.find_one(JournalEntry, {"id": created.id}).title == "Full moon, again"
    assert jdb.delete(JournalEntry, {"id": created.id}) is True
    assert jdb.count(JournalEntry) == 1


def test_an_app_model_is_validated_like_the_built_in_ones(jdb, people):
    ann, _ = people
    with pytest.raises(errors.ValidationError) as missing:
        jdb.create(JournalEntry, {"userId": ann.id, "text": "no title"})
    assert "title" in missing.value.errors
    with pytest.raises(errors.ValidationError):
        jdb.create(JournalEntry, entry(ann.id, mood="furious"))  # not one of the choices
    with pytest.raises(errors.QueryError):
        jdb.find(JournalEntry, {"titel": "x"})  # unknown field
    assert jdb.count(JournalEntry) == 0  # nothing half-written


# --- roles and the self scope ------------------------------------------------------------------


def test_a_self_actor_sees_and_writes_only_her_own_entries(jdb, people):
    ann, bo = people
    jdb.create(JournalEntry, entry(ann.id))
    jdb.create(JournalEntry, entry(bo.id, title="Bo's"))
    as_ann = jdb.as_actor(str(ann.id), "self")
    assert [e.title for e in as_ann.find(JournalEntry, {})] == ["Full moon"]
    assert as_ann.count(JournalEntry, {"title": "Bo's"}) == 0
    mine = as_ann.create(JournalEntry, {"title": "Mine", "text": "x", "mood": "calm"})  # owner forced
    assert mine.user_id == ann.id
    with pytest.raises(errors.PermissionDeniedError):
        as_ann.create(JournalEntry, entry(bo.id, title="forged"))
    with pytest.raises(errors.PermissionDeniedError):
        as_ann.update(JournalEntry, {"id": mine.id}, {"userId": bo.id})
    assert as_ann.delete_many(JournalEntry, {"title": {"$ne": ""}}) == 2 and jdb.count(JournalEntry) == 1  # Bo's is left


def test_the_declared_permissions_decide_what_each_role_may_do(jdb, people):
    ann, _ = people
    reader = jdb.as_actor("svc-read", "reader")
    assert reader.count(JournalEntry) == 0
    with pytest.raises(errors.PermissionDeniedError, match="may not create JournalEntry"):
        reader.create(JournalEntry, entry(ann.id))
    writer = jdb.as_actor("svc-write", "writer")
    made = writer.create(JournalEntry, entry(ann.id))
    with pytest.raises(errors.PermissionDeniedError, match="JournalEntry"):
        writer.audit_trail(JournalEntry, made.id)  # audit is the admin's
    assert len(jdb.as_actor("ops", "admin").audit_trail(JournalEntry, made.id)) == 1


def test_a_model_without_an_owner_is_refused_to_a_self_actor_with_a_clear_error(jdb, people):
    ann, _ = people
    jdb.create(Note, {"text": "shared"})
    with pytest.raises(errors.PermissionDeniedError, match="Note has no owner field"):
        jdb.as_actor(str(ann.id), "self").find(Note, {})
    assert jdb.as_actor("svc", "reader").count(Note) == 1  # staff roles are not scoped


# --- encryption, cache, change records, indexes ----------------------------------------------


def test_sensitive_fields_are_stored_as_ciphertext_and_read_back_as_plaintext(jdb, people):
    ann, _ = people
    made = jdb.create(JournalEntry, entry(ann.id))
    raw = jdb.mongo["journalEntries"].find_one({"_id": made.id})
    assert is_sealed(raw["text"]) and b"Slept" not in raw["text"]  # field level encryption: Binary subtype 6
    # meta["queryable"]: sealed the same way, and a keyed blind index beside it for equality
    assert is_sealed(raw["mood"]) and b"restless" not in raw["mood"]
    assert isinstance(raw["moodIndex"], str) and "restless" not in raw["moodIndex"]
    assert raw["title"] == "Full moon"  # not sensitive
    assert jdb.find_one(JournalEntry, {"id": made.id}).text == "Slept badly."
    assert [e.id for e in jdb.find(JournalEntry, {"mood": "restless"})] == [made.id]  # equality on the blind index
    with pytest.raises(errors.QueryError):
        jdb.find(JournalEntry, {"text": "Slept badly."})  # random nonce: not queryable by value


def test_reads_are_cached_and_a_write_invalidates_them(jdb, people):
    ann, _ = people
    made = jdb.create(JournalEntry, entry(ann.id))
    cache = jdb.executor.runtime.cache
    before = cache.stats()["hits"]
    assert jdb.find(JournalEntry, {"mood": "restless"}, cache=True)[0].text == "Slept badly."
    assert jdb.find(JournalEntry, {"mood": "restless"}, cache=True)[0].text == "Slept badly."
    assert cache.stats()["hits"] == before + 1
    jdb.update(JournalEntry, {"id": made.id}, {"mood": "calm"})
    assert jdb.find(JournalEntry, {"mood": "restless"}, cache=True) == []


def test_every_write_leaves_a_change_record(jdb, people):
    ann, _ = people
    made = jdb.create(JournalEntry, entry(ann.id))
    jdb.update(JournalEntry, {"id": made.id}, {"title": "t2"})
    jdb.delete(JournalEntry, {"id": made.id})
    assert [e["action"] for e in jdb.audit_trail(JournalEntry, made.id)] == ["create", "update", "delete"]


def test_sync_indexes_creates_the_declared_indexes(jdb):
    reports = {r["model"]: r for r in jdb.sync_indexes()}
    assert set(reports["JournalEntry"]["created"]) | set(reports["JournalEntry"]["existing"]) == {
        "userId_1_writtenAt_-1", "mood_1", "moodIndex_1"}  # the queryable mood's index moves to its blind index too
    keys = {frozenset(index["key"]) for index in jdb.mongo["journalEntries"].list_indexes()}
    assert {frozenset({"userId", "writtenAt"}), frozenset({"mood"}), frozenset({"moodIndex"})} <= keys  # nx-27017 renames indexes


# --- backup and restore, references, the cascade, cleanup ------------------------------------


def test_backup_and_restore_carry_the_app_models_collection(jdb, people, tmp_path, request):
    ann, _ = people
    made = jdb.create(JournalEntry, entry(ann.id))
    summary = backup.backup(jdb, tmp_path / "repo")
    assert summary["documents"]["journalEntries"] == 1
    if jdb.test_backend == "embedded":
        url = _url(request, "embedded")
    else:  # a second fresh database on the live server, dropped after
        server, name = request.getfixturevalue("live_server"), f"astro_test_{uuid.uuid4().hex[:8]}"
        url = server.url(name)
        request.addfinalizer(lambda: jdb.mongo.client.drop_database(name))
    target = Database(url, models=[JournalEntry, Note], encryption_key=KEY, server_selection_timeout_ms=5000)
    if jdb.test_backend == "embedded":  # the key vault is the cluster's, not in the backup set; an embedded
        target.connect()               # store is private to its Database, so bring the vault over
        vault = jdb.mongo.client["encryption"]["__keyVault"]
        target.mongo.client["encryption"]["__keyVault"].insert_many(list(vault.find()))
    try:
        counts = backup.restore(tmp_path / "repo", target)
        assert counts["collections"]["journalEntries"] == 1
        back = target.find_one(JournalEntry, {"id": made.id})
        assert back.text == "Slept badly." and back.user_id == ann.id
        raw = target.mongo["journalEntries"].find_one({"_id": made.id})
        assert is_sealed(raw["text"])  # restored as stored: still ciphertext
    finally:
        target.disconnect()


def test_declared_references_are_checked_when_enabled(jdb):
    checked = Database(jdb.config.url, models=[JournalEntry, Note], encryption_key=KEY, check_references=True,
                       server_selection_timeout_ms=5000).connect()
    try:
        with pytest.raises(errors.ValidationError, match="no User with id"):
            checked.create(JournalEntry, entry(ObjectId()))
        assert checked.count(JournalEntry) == 0
    finally:
        checked.disconnect()


def test_the_cascade_and_cleanup_follow_the_declared_owner(jdb, people):
    ann, bo = people
    jdb.create(JournalEntry, entry(ann.id))
    jdb.create(JournalEntry, entry(bo.id))
    counts = jdb.delete_user_cascade(ann.id)
    assert counts["JournalEntry"] == 1 and counts["User"] == 1
    jdb.delete("User", {"id": bo.id})  # a plain delete leaves Bo's entry orphaned
    report = jdb.cleanup(dry_run=True)
    assert report.orphans["JournalEntry"] == 1 and report.orphaned_users == 1


# --- registration errors (no backend needed) -------------------------------------------------


def test_a_model_registered_twice_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="JournalEntry is registered twice"):
        Database("mongomock://localhost/twice", models=[JournalEntry, JournalEntry])
    with pytest.raises(errors.ConfigError, match="User is registered twice"):
        Database("mongomock://localhost/twice", models=[User])  # already built in


def test_a_colliding_collection_name_is_a_config_error():
    class Accounts(AstroDocument):
        email = TextField()
        meta = {"collection": "users"}

    class Changes(AstroDocument):
        meta = {"collection": "astroChanges"}

    with pytest.raises(errors.ConfigError, match="User and Accounts both use the collection 'users'"):
        Database("mongomock://localhost/collide", models=[Accounts])
    with pytest.raises(errors.ConfigError, match="the service's own"):
        Database("mongomock://localhost/collide", models=[Changes])


@pytest.mark.parametrize("collection", ["system.users", "system.js", "a$b", "", ".lead", "trail.", "nul\0name"])
def test_a_collection_name_mongodb_keeps_for_itself_or_refuses_is_a_config_error(collection):
    Model = type("Odd", (AstroDocument,), {"title": TextField(), "meta": {"collection": collection}, "__module__": __name__})
    with pytest.raises(errors.ConfigError, match="not a collection name for an app's data"):
        Database("mongomock://localhost/odd", models=[Model])


def test_a_stored_name_two_fields_share_the_services_own_or_a_prototype_key_is_a_config_error():
    """A second field stored as ``createdAt`` shadowed the service's in every query and update (the
    model registered, the stamp was lost); a field stored as ``_rev`` or ``__proto__`` could
    never be written (each write refused), nor one inside an embedded document stored as
    ``constructor``. (MongoEngine itself refuses two fields of one class under one name; the
    inherited ``createdAt`` it lets through.)"""
    from mongoengine import EmbeddedDocument, EmbeddedDocumentField, StringField

    class Place(EmbeddedDocument):
        name = StringField()
        label = StringField(db_field="constructor")

    def model(attrs):
        return type("Odd", (AstroDocument,), {**attrs, "meta": {"collection": "odd"}, "__module__": __name__})

    cases = [({"created": TextField(db_field="createdAt")}, "created_at and created are both stored as 'createdAt'"),
             ({"updated_at": TextField(db_field="updatedAt")}, "'updatedAt', which the service writes itself"),
             ({"revision": TextField(db_field="_rev")}, "'_rev', which the service writes itself"),
             ({"op": TextField(db_field="_op")}, "'_op', which the service writes itself"),
             ({"x": TextField(db_field="__proto__")}, "'__proto__', a key JavaScript readers take"),
             ({"place": EmbeddedDocumentField(Place)}, "field place.label is stored as 'place.constructor'"),
             ({"places": ListField(EmbeddedDocumentField(Place))}, "stored as 'places.constructor'")]
    for attrs, message in cases:
        with pytest.raises(errors.ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
            Database("mongomock://localhost/odd", models=[model(attrs)])


def test_a_users_model_with_ids_other_than_object_ids_is_a_config_error():
    """Owner fields, actors, export and erasure name a user by an ObjectId: a users' model keyed
    by an auth provider's string registered, but none of its users could own a document."""
    import mongoengine as me

    Members = type("Members", (AstroDocument,), {"id": me.StringField(primary_key=True), "name": TextField(),
                                                 "meta": {"collection": "members", "owner": "_id"}, "__module__": __name__})
    with pytest.raises(errors.ConfigError, match="Members is the users .* with a StringField _id"):
        Database("mongomock://localhost/members", models=[Members], builtin_models=False)


def test_a_unique_index_holding_a_sensitive_field_that_no_blind_index_keeps_unique_is_a_config_error():
    """A unique index on a sealed field (a fresh nonce each write) registered: with a key, two
    passports with one number were both stored. Alone and queryable it is kept unique by its
    blind index; not queryable, or beside other fields, it is refused."""
    def model(indexes, queryable=()):
        return type("Passport", (AstroDocument,), {
            "number": TextField(sensitive=True), "user_id": UserRefField(db_field="userId"), "__module__": __name__,
            "meta": {"collection": "passports", "indexes": indexes, "queryable": list(queryable)}})

    with pytest.raises(errors.ConfigError, match="number_1 holds the sensitive field.* declare it queryable"):
        Database("mongomock://localhost/pp", models=[model([{"fields": ["number"], "unique": True}])])
    with pytest.raises(errors.ConfigError, match="userId_1_number_1 holds the sensitive field.* holds a sensitive field alone"):
        Database("mongomock://localhost/pp", models=[model([{"fields": ["user_id", "number"], "unique": True}],
                                                          queryable=["number"])])
    kept = model([{"fields": ["number"], "unique": True}], queryable=["number"])
    with Database("mongomock://localhost/pp", models=[kept], encryption_key=KEY) as db:
        db.create(kept, {"number": "X1"})
        with pytest.raises(errors.DuplicateKeyError):
            db.create(kept, {"number": "X1"})
        assert db.count(kept, {}) == 1
    plain = model([{"fields": ["number"]}])  # not unique: nothing promised, nothing refused
    Database("mongomock://localhost/pp", models=[plain])


def test_a_ttl_index_on_a_sensitive_date_is_a_config_error():
    """Sealed, the date is ciphertext the server's TTL monitor never expires: the documents the
    index was declared to remove would be kept forever."""
    from mongoengine import DateTimeField

    Visit = type("Visit", (AstroDocument,), {
        "at": DateTimeField(sensitive=True), "__module__": __name__,
        "meta": {"collection": "visits", "indexes": [{"fields": ["at"], "expireAfterSeconds": 3600}]}})
    with pytest.raises(errors.ConfigError, match="index at_1 holds the sensitive field.* nothing would ever expire"):
        Database("mongomock://localhost/visits", models=[Visit])


def test_deleted_when_on_a_model_that_is_not_the_users_is_a_config_error():
    """It was ignored there, as if nothing were declared: it says which users count as deleted."""
    Note = type("Note", (AstroDocument,), {"status": TextField(), "__module__": __name__,
                                           "meta": {"collection": "notes", "deleted_when": {"status": "deleted"}}})
    with pytest.raises(errors.ConfigError, match="deleted_when'\\] is read on the users' model only"):
        Database("mongomock://localhost/notes", models=[Note])


def test_a_sensitive_primary_key_or_owner_is_a_config_error():
    """A sealed ``_id`` was stored (a fresh nonce each write), and the document could never be
    read by its id again; a sealed owner hid every document from its user's scope, export and
    erasure."""
    import mongoengine as me

    Secret = type("Secret", (AstroDocument,), {"id": TextField(primary_key=True, sensitive=True), "__module__": __name__,
                                               "meta": {"collection": "secrets"}})
    with pytest.raises(errors.ConfigError, match="Secret: its primary key is sensitive=True"):
        Database("mongomock://localhost/secrets", models=[Secret])
    Hidden = type("Hidden", (AstroDocument,), {"user_id": UserRefField(db_field="userId", sensitive=True),
                                               "note": me.StringField(), "__module__": __name__,
                                               "meta": {"collection": "hidden", "owner": "user_id"}})
    with pytest.raises(errors.ConfigError, match="Hidden: its owner field userId is sensitive=True"):
        Database("mongomock://localhost/hidden", models=[Hidden])


def test_an_owner_inside_a_list_is_a_config_error():
    """``authors.user_id`` through a list of authors registered: a ``self`` actor then read and
    wrote every paper she co-authored, and her erasure (``delete_user_cascade``) deleted them,
    others' work included. One owner per document, outside lists."""
    from mongoengine import EmbeddedDocument, EmbeddedDocumentField

    class Author(EmbeddedDocument):
        user_id = UserRefField(db_field="userId")

    Paper = type("Paper", (AstroDocument,), {"authors": ListField(EmbeddedDocumentField(Author)), "title": TextField(),
                                             "meta": {"collection": "papers", "owner": "authors.user_id"},
                                             "__module__": __name__})
    with pytest.raises(errors.ConfigError, match="names 'authors.userId', which is inside a list"):
        Database("mongomock://localhost/papers", models=[Paper])


def test_a_declaration_that_does_not_hold_is_a_config_error():
    class BadRole(AstroDocument):
        meta = {"collection": "badRole", "permissions": {"editor": ["read"]}}

    class BadOwner(AstroDocument):
        meta = {"collection": "badOwner", "owner": "nobody"}

    class BadRef(AstroDocument):
        owner_id = UserRefField()
        meta = {"collection": "badRef", "references": {"owner_id": "Account"}}

    class TextOwner(AstroDocument):
        owner_name = TextField()
        meta = {"collection": "textOwner", "owner": "owner_name"}

    class Plain(AstroDocument):
        secret = TextField()
        meta = {"collection": "plain", "queryable": ["secret"]}

    class Tags(AstroDocument):  # the list's items are sensitive, the list is not one value
        tags = ListField(TextField(sensitive=True))
        meta = {"collection": "tags", "queryable": ["tags"]}

    for model, message in ((BadRole, "role 'editor'"), (BadOwner, "unknown field 'nobody'"),
                           (TextOwner, "holds no user id"),
                           (BadRef, "names 'Account', which is not registered"), (Plain, "'secret', which is not sensitive=True"),
                           (Tags, "names 'tags', a list of sensitive values; a queryable field holds one value")):
        with pytest.raises(errors.ConfigError, match=message):
            Database("mongomock://localhost/bad", models=[model])
    class Owned(AstroDocument):
        owner_id = UserRefField()
        meta = {"collection": "owned", "owner": "owner_id"}

    with pytest.raises(errors.ConfigError, match="names 'User', which is not registered"):
        Database("mongomock://localhost/bad", models=[JournalEntry], builtin_models=False)
    with pytest.raises(errors.ConfigError, match="no registered model is the users"):
        Database("mongomock://localhost/bad", models=[Owned], builtin_models=False)
    with pytest.raises(errors.ConfigError, match="subclass of astro_db.models.AstroDocument"):
        Database("mongomock://localhost/bad", models=[dict])


def test_builtin_models_false_serves_only_the_apps_models():
    with Database("mongomock://localhost/only", models=[Note], builtin_models=False) as db:
        db.create(Note, {"text": "hi"})
        assert db.count("Note") == 1
        with pytest.raises(errors.UnknownModelError, match="valid models: Note"):
            db.find("User", {})
        with pytest.raises(errors.UnknownModelError, match="no registered model is the users"):
            db.delete_user_cascade(ObjectId())


def test_the_example_runs():
    report = app_models.main()
    assert report["ann_sees"] == ["Full moon"] and report["backed_up"] == 2
    assert report["deleted"]["JournalEntry"] == 1


def test_key_rotation_re_encrypts_the_app_models_fields(jdb, people):
    if jdb.test_backend == "embedded":
        pytest.skip("an embedded store is private to its Database: one opened with the new key cannot see it")
    ann, _ = people
    made = jdb.create(JournalEntry, entry(ann.id))
    old = jdb.mongo["journalEntries"].find_one({"_id": made.id})["text"]
    rotated = Database(jdb.config.url, models=[JournalEntry, Note], encryption_key=new_key(), encryption_keys=KEY,
                       server_selection_timeout_ms=5000).connect()
    try:
        report = rotated.rotate_keys()
        assert report["JournalEntry"] == 1  # its e2 mood, re-sealed under the new key
        assert report["dataKeys"] >= 1  # ann's data key (and any other test's under the old key) rewrapped
        raw = rotated.mongo["journalEntries"].find_one({"_id": made.id})
        assert raw["text"] == old  # field level encryption: the data key is rewrapped, the value not rewritten
        key = rotated.mongo.client["encryption"]["__keyVault"].find_one({"keyAltNames": {"$in": [f"user:{ann.id}"]}})
        assert key["masterKey"]["provider"] == f"local:{key_id(base64.b64decode(rotated.config.encryption_key))}"
        assert rotated.find_one(JournalEntry, {"id": made.id}).text == "Slept badly."
        assert rotated.find(JournalEntry, {"mood": "restless"})[0].id == made.id  # re-sealed deterministically
    finally:
        rotated.disconnect()
