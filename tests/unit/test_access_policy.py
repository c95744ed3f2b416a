"""The access policy as a specification: every role x model x operation, the ``self`` scope's
filters, data and pipelines, and actors refused for bad shapes (checked through ``authorize``,
``Guard`` and ``Actor``, with no database)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from bson import ObjectId

from astro_db.errors import ConfigError, PermissionDeniedError
from astro_db.registry import default_registry
from astro_db.security.access import (
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
    Actor,
    Guard,
    authorize,
    authorize_global,
)

MODELS = ("User", "BirthChart", "PlanetaryInsight", "TimingRecommendation")
MODEL_OPERATIONS = {READ, CREATE, UPDATE, DELETE, DELETE_ALL, AUDIT, ROTATE}
GLOBAL_OPERATIONS = {OPEN, MONITOR, TRANSACT, MANAGE, BACKUP, ROTATE, AUDIT}


def allowed(role: str, model: str) -> set[str]:
    """The policy, written out: readers read; writers write but never delete an account;
    deleting everything, audit trails and key rotation are for admins."""
    if role == "reader":
        return {READ}
    if role == "writer":
        return {READ, CREATE, UPDATE} | (set() if model == "User" else {DELETE})
    return set(MODEL_OPERATIONS)


def allowed_global(roles: frozenset[str]) -> set[str]:
    """Watching the service is for every staff role; running, backing up and rotating it for
    admins; an end user (``self``) may only open the service and transactions."""
    if "self" in roles:
        return {OPEN, TRANSACT}
    return {OPEN, MONITOR, TRANSACT} | ({MANAGE, BACKUP, ROTATE, AUDIT} if "admin" in roles else set())


def info(model: str):
    return default_registry().resolve(model)


OWNER = ObjectId()
OTHER = ObjectId()


def scoped(model: str, *roles: str) -> Guard:
    return authorize(Actor(str(OWNER), frozenset({"self", *roles})), info(model), READ)


@pytest.mark.parametrize("role", ["reader", "writer", "admin"])
@pytest.mark.parametrize("model", MODELS)
def test_each_role_may_do_exactly_its_operations_on_each_model(role, model):
    actor = Actor("svc", frozenset({role}))
    for operation in sorted(MODEL_OPERATIONS):
        if operation in allowed(role, model):
            assert isinstance(authorize(actor, info(model), operation), Guard), (role, model, operation)
        else:
            with pytest.raises(PermissionDeniedError, match=f"may not {operation} {model}"):
                authorize(actor, info(model), operation)


@pytest.mark.parametrize("model", MODELS)
def test_self_alone_is_a_writer_on_its_own_documents(model):
    actor = Actor(str(OWNER), frozenset({"self"}))
    for operation in sorted(MODEL_OPERATIONS):
        if operation in allowed("writer", model):
            authorize(actor, info(model), operation)
        else:
            with pytest.raises(PermissionDeniedError):
                authorize(actor, info(model), operation)


def test_self_with_reader_only_reads():
    actor = Actor(str(OWNER), frozenset({"self", "reader"}))
    authorize(actor, info("BirthChart"), READ)
    with pytest.raises(PermissionDeniedError, match=r"roles: reader, self\) may not update_many BirthChart"):
        authorize(actor, info("BirthChart"), UPDATE, call="update_many")


@pytest.mark.parametrize("roles", [{"reader"}, {"writer"}, {"admin"}, {"reader", "admin"}, {"self"}, {"self", "admin"}])
def test_each_role_may_do_exactly_its_operations_on_the_service(roles):
    actor = Actor(str(OWNER), frozenset(roles))
    for operation in sorted(GLOBAL_OPERATIONS):
        if operation in allowed_global(actor.roles):
            authorize_global(actor, operation)
        else:
            with pytest.raises(PermissionDeniedError, match=f"may not {operation}$"):
                authorize_global(actor, operation)


def test_a_refusal_names_the_call_that_was_refused():
    with pytest.raises(PermissionDeniedError, match=r"actor svc \(roles: writer\) may not delete_many User$"):
        authorize(Actor("svc", frozenset({"writer"})), info("User"), DELETE, call="delete_many")
    with pytest.raises(PermissionDeniedError, match=r"actor svc \(roles: reader, writer\) may not backup_to_file$"):
        authorize_global(Actor("svc", frozenset({"writer", "reader"})), BACKUP, call="backup_to_file")


def test_without_an_actor_every_operation_is_allowed_and_nothing_is_scoped():
    for operation in sorted(GLOBAL_OPERATIONS):
        authorize_global(None, operation)
    for operation in sorted(MODEL_OPERATIONS):
        guard = authorize(None, info("User"), operation)
        filt = {"name": "Ann"}
        assert guard.filter(filt) is filt and guard.scope == {}
        assert guard.pipeline([{"$lookup": {}}]) == [{"$lookup": {}}]
        assert guard.data({"userId": OTHER}) == {"userId": OTHER}
        guard.update({"$set": {"userId": OTHER}})


# --- the self scope --------------------------------------------------------------------------


def test_the_self_scope_is_the_owner_field_or_the_users_own_id():
    assert scoped("BirthChart").scope == {"userId": OWNER}
    assert scoped("User").scope == {"_id": OWNER}
    assert scoped("PlanetaryInsight", "reader").scope == {"userId": OWNER}


def test_a_scoped_actor_is_refused_on_a_model_without_an_owner_field():
    with pytest.raises(PermissionDeniedError, match="Notes has no owner field"):
        Guard(Actor(str(OWNER), frozenset({"self"})), "Notes", has_user_id=False)


def test_an_unscoped_actor_gets_no_scope_even_without_an_owner_field():
    assert Guard(Actor("svc", frozenset({"admin"})), "Notes", has_user_id=False).scope == {}


def test_a_scoped_filter_keeps_the_callers_conditions_and_adds_the_owner():
    guard = scoped("BirthChart")
    assert guard.filter({}) == {"userId": OWNER}
    assert guard.filter({"houseSystem": "koch"}) == {"$and": [{"houseSystem": "koch"}, {"userId": OWNER}]}
    narrowed = guard.filter({})
    narrowed["userId"] = OTHER  # the scope handed out is a copy
    assert guard.filter({}) == {"userId": OWNER}


def test_an_unscoped_actor_filter_is_unchanged():
    filt = {"houseSystem": "koch"}
    assert authorize(Actor("svc", frozenset({"reader"})), info("BirthChart"), READ).filter(filt) is filt


def test_scoped_data_is_stamped_with_the_owner_whatever_key_it_came_in():
    guard = scoped("BirthChart")
    assert guard.data({"name": "x"}) == {"name": "x", "userId": OWNER}
    assert guard.data({"userId": str(OWNER)}) == {"userId": OWNER}
    assert guard.data({"user_id": OWNER, "userId": str(OWNER)}) == {"userId": OWNER}


@pytest.mark.parametrize("data", [{"userId": str(OTHER)}, {"user_id": OTHER}, {"userId": str(OWNER), "user_id": OTHER}])
def test_scoped_data_for_another_owner_is_refused(data):
    with pytest.raises(PermissionDeniedError, match="may only create BirthChart documents for itself"):
        scoped("BirthChart").data(data)


def test_scoped_data_that_is_not_a_mapping_is_left_for_validation_to_refuse():
    assert scoped("BirthChart").data(["not", "a", "dict"]) == ["not", "a", "dict"]  # type: ignore[arg-type]


def test_a_scoped_actor_cannot_create_users():
    with pytest.raises(PermissionDeniedError, match="cannot create users"):
        scoped("User").data({"email": "a@example.com"})


def test_a_scoped_update_may_set_the_owner_to_itself_only():
    guard = scoped("BirthChart")
    guard.update({"$set": {"userId": OWNER, "houseSystem": "koch"}})
    guard.update({"$unset": {"houseSystem": ""}})
    for update in ({"$set": {"userId": OTHER}}, {"$unset": {"userId": ""}}, {"$push": {"userId": OWNER}}):
        with pytest.raises(PermissionDeniedError, match="may not change userId of a BirthChart"):
            guard.update(update)


def test_a_scoped_update_may_not_replace_or_reach_into_a_nested_owner():
    """An owner inside a sub-document (``meta["owner"] = "author.user_id"``): setting the
    sub-document replaces the owner with it, so it must leave the actor's id there; a path into
    the owner or through a list position to it is refused too."""
    guard = Guard(Actor(str(OWNER), frozenset({"self"})), "Note", "author.userId")
    guard.update({"$set": {"author.userId": OWNER, "title": "t"}})
    guard.update({"$set": {"author": {"userId": OWNER, "label": "me"}}})
    guard.update({"$set": {"author.label": "me"}, "$unset": {"authorLabel": ""}})
    for update in ({"$set": {"author": {"userId": OTHER}}}, {"$set": {"author": {"label": "no owner"}}},
                   {"$set": {"author": [{"userId": OWNER}]}}, {"$unset": {"author": ""}},
                   {"$set": {"author.userId": OTHER}}, {"$set": {"author.0.userId": OWNER}},
                   {"$set": {"author.$[].userId": OWNER}}, {"$push": {"author": {"userId": OWNER}}},
                   {"$set": {"author.userId.x": OWNER}}):
        with pytest.raises(PermissionDeniedError, match="may not change author.userId of a Note"):
            guard.update(update)


def test_a_scoped_user_may_not_change_its_id():
    with pytest.raises(PermissionDeniedError, match="may not change _id of a User"):
        scoped("User").update({"$set": {"_id": OTHER}})


# --- pipelines -------------------------------------------------------------------------------


def test_a_scoped_pipeline_starts_with_the_owner_match():
    stages = [{"$group": {"_id": "$houseSystem"}}]
    assert scoped("BirthChart").pipeline(stages) == [{"$match": {"userId": OWNER}}, {"$group": {"_id": "$houseSystem"}}]
    assert scoped("BirthChart").pipeline([]) == [{"$match": {"userId": OWNER}}]


def test_a_scoped_pipeline_starting_with_geonear_keeps_geonear_first_and_filters_inside_it():
    near = {"near": {"type": "Point", "coordinates": [0, 0]}, "distanceField": "d"}
    out = scoped("BirthChart").pipeline([{"$geoNear": near}, {"$limit": 1}])
    assert out == [{"$geoNear": {**near, "query": {"userId": OWNER}}}, {"$limit": 1}]
    with_query = scoped("BirthChart").pipeline([{"$geoNear": {**near, "query": {"houseSystem": "koch"}}}])
    assert with_query[0]["$geoNear"]["query"] == {"$and": [{"houseSystem": "koch"}, {"userId": OWNER}]}
    assert "query" not in near  # the caller's stage is not modified


def walk(guard, stages, model="BirthChart"):
    """``stages`` walked as the service walks them: the checks, then the Guard as a rule."""
    from astro_db.query.pipeline import Checks
    from astro_db.query.walker import Walker

    return Walker((Checks(), guard)).pipeline(info(model).cls, stages)


@pytest.mark.parametrize(("stages", "refused"), [
    ([{"$lookup": {"from": "users", "as": "u"}}], "$lookup"),
    ([{"$facet": {"a": [{"$lookup": {"from": "users", "as": "u"}}]}}], "$lookup"),
    ([{"$match": {}}, {"$unionWith": {"coll": "users", "pipeline": [{"$lookup": {"from": "users", "as": "u"}}]}}],
     "$unionWith"),
    ([{"$facet": {"a": ({"$lookup": {"from": "users", "as": "u"}},)}}], "$lookup"),
    ([{"$facet": {"a": [{"$facet": {"b": [{"$graphLookup": {
        "from": "users", "startWith": "$userId", "connectFromField": "_id", "connectToField": "_id", "as": "g"}}]}}]}}],
     "$graphLookup"),
    ([{"$unionWith": "users"}], "$unionWith"),
])
def test_a_scoped_pipeline_refuses_other_collections_at_any_depth(stages, refused):
    with pytest.raises(PermissionDeniedError, match=rf"limited to its own documents; \{refused} is not allowed$"):
        walk(scoped("BirthChart"), stages)


def test_a_scoped_walk_narrows_the_calls_own_pipeline_once_and_nested_ones_not_at_all():
    out = walk(scoped("BirthChart"), [{"$facet": {"a": [{"$match": {"house_system": "koch"}}]}}])
    assert out == [{"$match": {"userId": OWNER}}, {"$facet": {"a": [{"$match": {"houseSystem": "koch"}}]}}]


def test_a_scoped_walk_narrows_the_calls_own_filter_only():
    from astro_db.query.pipeline import Checks
    from astro_db.query.walker import Walker

    walker = Walker((Checks(), scoped("BirthChart")))
    assert walker.filter(info("BirthChart").cls, {"house_system": "koch"}) == {
        "$and": [{"houseSystem": "koch"}, {"userId": OWNER}]}
    geo = {"near": [0, 0], "distanceField": "d", "query": {"house_system": "koch"}}
    assert walker.pipeline(info("BirthChart").cls, [{"$geoNear": geo}])[0]["$geoNear"]["query"] == {
        "$and": [{"houseSystem": "koch"}, {"userId": OWNER}]}


def test_a_scoped_walk_refuses_an_update_that_changes_the_owner():
    from astro_db.query.pipeline import Checks
    from astro_db.query.walker import Walker

    walker = Walker((Checks(), scoped("BirthChart")))
    assert walker.update(info("BirthChart").cls, {"houseSystem": "koch"}).update == {"$set": {"houseSystem": "koch"}}
    with pytest.raises(PermissionDeniedError, match="may not change userId of a BirthChart"):
        walker.update(info("BirthChart").cls, {"userId": OTHER})


def test_an_unscoped_actor_may_look_up():
    stages = [{"$lookup": {"from": "users", "as": "u"}}]
    guard = authorize(Actor("svc", frozenset({"reader"})), info("BirthChart"), READ)
    assert guard.pipeline(stages) == stages
    assert walk(guard, stages) == stages


# --- actors ----------------------------------------------------------------------------------


def test_roles_may_be_one_string_or_any_iterable():
    assert Actor("svc", "reader").roles == frozenset({"reader"})  # type: ignore[arg-type]
    assert Actor("svc", ["reader", "writer"]).roles == frozenset({"reader", "writer"})  # type: ignore[arg-type]
    assert Actor("svc", frozenset({"admin"})).scoped is False
    assert Actor(str(OWNER), frozenset({"self"})).scoped is True


@pytest.mark.parametrize("actor_id, roles, key, message", [
    (7, {"reader"}, "actor", "non-empty string, got int"),
    ("", {"reader"}, "actor", "non-empty string, got str"),
    ("svc", {"root", "god", "reader"}, "roles", "unknown role(s) god, root; roles are reader, writer, admin and self"),
    ("svc", set(), "roles", "actor 'svc' has no roles; give at least one of reader, writer, admin, self"),
    ("abc", {"self"}, "actor", "must be its User id"),
])
def test_a_bad_actor_is_a_config_error_naming_its_key(actor_id, roles, key, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        Actor(actor_id, frozenset(roles))
    assert raised.value.key == key


def test_actor_of_accepts_an_actor_a_dict_or_an_id():
    base = Actor("svc", frozenset({"reader"}), "req-1")
    assert Actor.of(base) is base
    assert Actor.of(base, roles=["writer"]) == Actor("svc", frozenset({"writer"}), "req-1")
    assert Actor.of(base, request_id="req-2") == Actor("svc", frozenset({"reader"}), "req-2")
    assert Actor.of({"id": "svc", "roles": ["admin"], "request_id": "r"}) == Actor("svc", frozenset({"admin"}), "r")
    assert Actor.of({"id": "svc", "roles": ["admin"], "requestId": "r"}).request_id == "r"
    assert Actor.of("svc", "reader") == Actor("svc", frozenset({"reader"}))
    assert Actor.of("svc", ["reader"], request_id="r") == Actor("svc", frozenset({"reader"}), "r")
    assert Actor.of(OWNER, ["self"]).id == str(OWNER)


@pytest.mark.parametrize("value, roles", [({"roles": ["reader"]}, None), ("svc", None), ({"id": "svc"}, None)])
def test_actor_of_without_an_id_or_roles_is_refused(value, roles):
    with pytest.raises(ConfigError):
        Actor.of(value, roles)


def test_actor_of_refuses_other_types():
    with pytest.raises(ConfigError, match="an Actor, a dict or an id string, got int") as raised:
        Actor.of(42)
    assert raised.value.key == "actor"


def test_a_model_missing_from_the_table_is_refused_to_every_role():
    notes = SimpleNamespace(name="Notes", cls=SimpleNamespace(_fields={"user_id": None}))
    for role in ("reader", "writer", "admin"):
        with pytest.raises(PermissionDeniedError, match="may not read Notes"):
            authorize(Actor("svc", frozenset({role})), notes, READ)


def test_the_trusted_guard_acts_for_nobody():
    assert authorize(None, info("User"), READ).actor is None


def test_an_actor_repr_shows_its_id_and_sorted_roles():
    assert repr(Actor("svc", frozenset({"writer", "reader"}))) == "Actor(id='svc', roles=['reader', 'writer'])"
