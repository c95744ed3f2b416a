"""Filters and updates planned once per shape: values are still validated on every call.

A plan is cached by the model and the field names (and operators) of a filter or update, never
by its values. These tests compile a shape once with good values, so the plan is cached, then
send bad values, other shapes and operators through the cached path.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pytest
from bson import ObjectId

from astro_db.errors import PermissionDeniedError, QueryError, ValidationError
from astro_db.models import BirthChart, PlanetaryInsight, User
from astro_db.ops.steps import compile as compile_step
from astro_db.query import filters, updates
from astro_db.query.filters import compile_filter
from astro_db.query.updates import compile_update
from astro_db.registry import default_registry
from astro_db.security.access import Actor, Guard


@pytest.fixture(autouse=True)
def fresh_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(updates, "_PLANS", {})
    monkeypatch.setattr(updates, "_PLAIN_PLANS", {})
    monkeypatch.setattr(filters, "_FILTER_PLANS", {})


def planned_update(data: Any) -> Any:
    """Compile ``data`` once so its shape is planned; the test then calls it again."""
    return compile_update(PlanetaryInsight, data)


# --- updates ------------------------------------------------------------------------------------

def test_an_update_shape_is_planned_once_and_gives_the_same_result() -> None:
    first = planned_update({"energy_level": 5})
    assert len(updates._PLANS) == 1
    second = compile_update(PlanetaryInsight, {"energy_level": 7})
    assert len(updates._PLANS) == 1
    assert first.update == {"$set": {"energyLevel": 5}} and second.update == {"$set": {"energyLevel": 7}}
    assert second.fields == ["energyLevel"] and second.list_roots == () and second.guards == {}


@pytest.mark.parametrize("bad, message", [
    ("high", "energyLevel"),  # a string for a number
    (101, "energyLevel"),  # past max_value
    (-1, "energyLevel"),
    (None, "required"),  # a required field
    (True, "energyLevel"),  # a bool is not a number here
])
def test_a_planned_update_shape_still_refuses_bad_values(bad: Any, message: str) -> None:
    planned_update({"energy_level": 5})
    with pytest.raises(ValidationError) as planned:
        compile_update(PlanetaryInsight, {"energy_level": bad})
    assert message in str(planned.value)
    updates._PLANS.clear()
    updates._PLAIN_PLANS.clear()
    with pytest.raises(ValidationError) as unplanned:
        compile_update(PlanetaryInsight, {"energy_level": bad})
    assert planned.value.errors == unplanned.value.errors  # the same rule, the same message


def test_every_bad_value_of_a_planned_update_is_reported() -> None:
    planned_update({"energy_level": 5, "summary": "fine"})
    with pytest.raises(ValidationError) as exc:
        compile_update(PlanetaryInsight, {"energy_level": 500, "summary": "x" * 3000})
    assert set(exc.value.errors) == {"energyLevel", "summary"}


def test_a_planned_inc_computes_its_range_guard_from_each_value() -> None:
    assert planned_update({"$inc": {"energy_level": 5}}).guards == {"energyLevel": {"$lte": 95, "$gte": -5}}
    assert compile_update(PlanetaryInsight, {"$inc": {"energy_level": 30}}).guards == {
        "energyLevel": {"$lte": 70, "$gte": -30}}
    with pytest.raises(ValidationError):
        compile_update(PlanetaryInsight, {"$inc": {"energy_level": "1"}})


def test_a_planned_list_update_still_checks_its_items_and_stays_a_list_update() -> None:
    planned = planned_update({"$push": {"recommendations": "Walk"}})
    assert planned.list_roots == ("recommendations",)
    again = compile_update(PlanetaryInsight, {"$push": {"recommendations": "Read"}})
    assert again.touches_lists and again.update == {"$push": {"recommendations": "Read"}}
    with pytest.raises(ValidationError):
        compile_update(PlanetaryInsight, {"$push": {"recommendations": ""}})  # min_length 1
    with pytest.raises(ValidationError):
        compile_update(PlanetaryInsight, {"$push": {"recommendations": None}})


def test_another_shape_is_not_served_a_cached_plan() -> None:
    planned_update({"energy_level": 5})
    assert compile_update(PlanetaryInsight, {"summary": "x"}).update == {"$set": {"summary": "x"}}
    inc = compile_update(PlanetaryInsight, {"$inc": {"energy_level": 1}})
    assert inc.update == {"$inc": {"energyLevel": 1}} and inc.guards == {"energyLevel": {"$lte": 99, "$gte": -1}}
    both = compile_update(PlanetaryInsight, {"energy_level": 5, "summary": "y"})
    assert both.update == {"$set": {"energyLevel": 5, "summary": "y"}}
    with pytest.raises(QueryError):
        compile_update(User, {"energy_level": 5})  # another model: its own plan, and no such field
    assert len(updates._PLANS) == 4


def test_a_plain_form_update_is_found_by_its_field_names_and_compiles_as_its_set_form(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain-form update (``{field: value}``) planned once is found from the caller's dict by
    its model and field names, with no operator scan or shape built, and gives exactly what its
    ``$set`` form gives; its values are still validated."""
    first = planned_update({"energy_level": 5, "summary": " fine "})
    assert list(updates._PLAIN_PLANS) == [(PlanetaryInsight, "energy_level", "summary")]
    monkeypatch.setattr(updates, "_shape", lambda *a: pytest.fail("the shape was built for a planned plain form"))
    again = compile_update(PlanetaryInsight, {"energy_level": 7, "summary": "ok"})
    assert again.update == {"$set": {"energyLevel": 7, "summary": "ok"}} and again.fields == first.fields == [
        "energyLevel", "summary"]
    with pytest.raises(ValidationError) as bad:
        compile_update(PlanetaryInsight, {"energy_level": 500, "summary": "ok"})
    assert set(bad.value.errors) == {"energyLevel"}
    monkeypatch.undo()
    assert compile_update(PlanetaryInsight, {"$set": {"energy_level": 7, "summary": "ok"}}).update == again.update
    assert compile_update(PlanetaryInsight, {"summary": "ok", "energy_level": 7}).update == {  # another order:
        "$set": {"summary": "ok", "energyLevel": 7}}  # another shape
    with pytest.raises(QueryError, match="mixes"):  # never planned: refused as before
        compile_update(PlanetaryInsight, {"energy_level": 5, "$inc": {"energy_level": 1}})


def test_refusals_that_follow_from_the_names_are_never_planned_away() -> None:
    for _ in range(2):
        with pytest.raises(QueryError, match="_id"):
            compile_update(PlanetaryInsight, {"_id": ObjectId()})
        with pytest.raises(ValidationError, match="set by the service"):
            compile_update(PlanetaryInsight, {"createdAt": _dt.datetime.now(_dt.timezone.utc)})
        with pytest.raises(QueryError, match="change the same field"):
            compile_update(PlanetaryInsight, {"$set": {"recommendations": ["a"]}, "$push": {"recommendations": "b"}})
    assert updates._PLANS == {}


def test_a_bad_value_on_the_first_call_plans_nothing() -> None:
    with pytest.raises(ValidationError):
        compile_update(PlanetaryInsight, {"energy_level": "high"})
    assert updates._PLANS == {}
    assert compile_update(PlanetaryInsight, {"energy_level": 3}).update == {"$set": {"energyLevel": 3}}


def test_the_update_plan_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(updates, "MAX_PLANS", 2)
    planned_update({"energy_level": 1})
    planned_update({"summary": "a"})
    planned_update({"expires_at": None})
    assert len(updates._PLANS) == 2
    with pytest.raises(ValidationError):  # a shape past the bound is still compiled and checked
        compile_update(PlanetaryInsight, {"expires_at": "not a date"})


def test_operator_objects_in_a_planned_set_are_still_refused(db) -> None:
    rt = db.executor.runtime
    info = default_registry().resolve(PlanetaryInsight)
    guard = Guard(None, info.name, True)
    compile_step.update(rt, info, guard, {"summary": "fine"})
    with pytest.raises((ValidationError, QueryError)):
        compile_step.update(rt, info, guard, {"summary": {"$where": "sleep(1000)"}})


def test_a_planned_update_keeps_the_actors_scope(db) -> None:
    rt = db.executor.runtime
    info = default_registry().resolve(PlanetaryInsight)
    me = ObjectId()
    guard = Guard(Actor(str(me), frozenset({"self"})), info.name, True)
    compile_step.update(rt, info, guard, {"user_id": me})
    with pytest.raises(PermissionDeniedError):
        compile_step.update(rt, info, guard, {"user_id": ObjectId()})


# --- filters ------------------------------------------------------------------------------------

def test_a_filter_shape_is_planned_and_its_values_are_still_coerced_and_checked() -> None:
    oid = ObjectId()
    assert compile_filter(PlanetaryInsight, {"id": oid}) == {"_id": oid}
    assert len(filters._FILTER_PLANS) == 1
    assert compile_filter(PlanetaryInsight, {"id": str(oid)}) == {"_id": oid}  # hex string coerced
    with pytest.raises(ValidationError, match="ObjectId"):
        compile_filter(PlanetaryInsight, {"id": "not-an-id"})
    with pytest.raises(ValidationError, match="ObjectId"):
        compile_filter(PlanetaryInsight, {"id": 12})


def test_a_planned_filter_parses_dates_and_refuses_bad_ones() -> None:
    day = _dt.datetime(2024, 5, 1, tzinfo=_dt.timezone.utc)
    compile_filter(PlanetaryInsight, {"date": day})
    assert compile_filter(PlanetaryInsight, {"date": "2024-05-01T00:00:00Z"}) == {"date": day}
    with pytest.raises(ValidationError):
        compile_filter(PlanetaryInsight, {"date": "yesterday"})


def test_operators_on_a_planned_filter_shape_take_the_full_compile() -> None:
    compile_filter(PlanetaryInsight, {"summary": "x"})
    with pytest.raises(QueryError, match=r"\$where"):
        compile_filter(PlanetaryInsight, {"summary": {"$where": "sleep(1000)"}})
    with pytest.raises(QueryError, match="strict"):
        compile_filter(PlanetaryInsight, {"summary": {"$ne": None}}, strict=True)
    assert compile_filter(PlanetaryInsight, {"summary": {"$in": ["a", "b"]}}) == {"summary": {"$in": ["a", "b"]}}
    with pytest.raises(QueryError, match="unsupported type"):
        compile_filter(PlanetaryInsight, {"summary": b"bytes"})


def test_filter_values_shaped_like_operators_stay_values() -> None:
    compile_filter(User, {"email": "a@example.com"})
    assert compile_filter(User, {"email": "$where"}) == {"email": "$where"}  # a string, not an operator
    with pytest.raises(QueryError, match="16384"):
        compile_filter(User, {"email": "x" * 20_000})


def test_another_filter_shape_is_not_served_a_cached_plan() -> None:
    oid = ObjectId()
    compile_filter(PlanetaryInsight, {"id": oid})
    assert compile_filter(PlanetaryInsight, {"user_id": str(oid)}) == {"userId": oid}
    assert compile_filter(PlanetaryInsight, {"id": oid, "energy_level": 3}) == {"_id": oid, "energyLevel": 3}
    assert compile_filter(User, {"id": oid}) == {"_id": oid}
    with pytest.raises(QueryError):
        compile_filter(User, {"energy_level": 3})
    assert len(filters._FILTER_PLANS) == 4


def test_operator_keys_are_never_planned() -> None:
    compile_filter(PlanetaryInsight, {"$or": [{"summary": "a"}, {"summary": "b"}]})
    assert filters._FILTER_PLANS == {}
    with pytest.raises(QueryError):
        compile_filter(PlanetaryInsight, {"$where": "1"})


def test_the_filter_plan_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filters, "MAX_FILTER_PLANS", 2)
    for key in ("summary", "energy_level", "date"):
        compile_filter(PlanetaryInsight, {key: None})
    assert len(filters._FILTER_PLANS) == 2
    with pytest.raises(ValidationError):
        compile_filter(PlanetaryInsight, {"date": "never"})


@pytest.mark.parametrize("model, key, first, value, expected", [
    (User, "name", "Ann", "Bob", {"name": "Bob"}),
    (PlanetaryInsight, "energy_level", 5, 7, {"energyLevel": 7}),
    (PlanetaryInsight, "energy_level", 5, 7.5, {"energyLevel": 7.5}),
    (BirthChart, "positions.retrograde", False, True, {"positions.retrograde": True}),
    (PlanetaryInsight, "summary", "a", None, {"summary": None}),
    (PlanetaryInsight, "id", ObjectId("0123456789abcdef01234567"), ObjectId("76543210fedcba9876543210"),
     {"_id": ObjectId("76543210fedcba9876543210")}),
    (PlanetaryInsight, "date", "2024-05-01T00:00:00Z", _dt.datetime(2024, 5, 2, tzinfo=_dt.timezone.utc),
     {"date": _dt.datetime(2024, 5, 2, tzinfo=_dt.timezone.utc)}),
], ids=["str", "int", "float", "bool", "None", "ObjectId", "datetime"])
def test_a_plain_literal_of_each_type_is_served_from_the_plan(monkeypatch: pytest.MonkeyPatch, model: Any, key: str,
                                                               first: Any, value: Any, expected: dict[str, Any]) -> None:
    """Once a shape is planned, a filter of it whose values are plain literals (str, int, float,
    bool, None, ObjectId, datetime) is only coerced and checked: the full compile is not run."""
    compile_filter(model, {key: first})

    def full_compile(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the full compile ran for a planned shape")

    monkeypatch.setattr(filters, "_compile_mapping", full_compile)
    assert compile_filter(model, {key: value}) == expected
    with pytest.raises(AssertionError, match="full compile"):  # anything else still takes it
        compile_filter(model, {key: {"$in": [value]}})


def test_the_plan_caches_hold_at_most_1024_shapes_by_default() -> None:
    """Each distinct shape (here: one per list index) is planned until 1024 are held; past it,
    new shapes are compiled unplanned and still compile correctly."""
    for i in range(1030):
        assert compile_filter(BirthChart, {f"positions.{i}.degree": 5}) == {f"positions.{i}.degree": 5}
        assert compile_update(BirthChart, {"$set": {f"positions.{i}.degree": 5}}).update == {
            "$set": {f"positions.{i}.degree": 5}}
    assert len(filters._FILTER_PLANS) == 1024 and len(updates._PLANS) == 1024


def test_a_planned_update_shape_is_served_from_its_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a shape compiled cleanly, a later update of that shape takes its plan (a ``$set``
    value is checked by its field's codec plan); another shape is compiled name by name again."""
    first = planned_update({"$set": {"energy_level": 5, "summary": "a"}})
    assert first.fields == ["energyLevel", "summary"]

    def unplanned(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled name by name")

    monkeypatch.setattr(updates, "_compile_unplanned", unplanned)
    monkeypatch.setattr(updates, "_compile_update_value", unplanned)  # a planned $set encodes by its field plan
    again = compile_update(PlanetaryInsight, {"$set": {"energy_level": 7, "summary": "b"}})
    assert again.update == {"$set": {"energyLevel": 7, "summary": "b"}} and again.fields == ["energyLevel", "summary"]
    with pytest.raises(ValidationError, match="energyLevel"):
        compile_update(PlanetaryInsight, {"$set": {"energy_level": 500, "summary": "b"}})
    with pytest.raises(AssertionError, match="name by name"):
        compile_update(PlanetaryInsight, {"$set": {"summary": "b", "energy_level": 7}})


def test_a_planned_inc_inside_a_list_is_still_left_to_the_post_image() -> None:
    """A range guard is a filter on the stored value: only for a field outside a list. Inside a
    list the post-image check bounds it, whether the shape was planned or not."""
    for amount in (5, 7):  # the second update of this shape takes its plan
        compiled = compile_update(BirthChart, {"$inc": {"positions.1.degree": amount, "positions.0.house": 1}})
        assert compiled.guards == {} and compiled.list_roots == ("positions",)
    assert len(updates._PLANS) == 1
    for amount in (5, 7):
        assert compile_update(PlanetaryInsight, {"$inc": {"energyLevel": amount}}).guards == {
            "energyLevel": {"$lte": 100 - amount, "$gte": -amount}}


_LITERALS = [ObjectId("0123456789abcdef01234567"), "0123456789abcdef01234567", "Ann", " MiXed@Example.COM ", "2024-05-01",
             "not a date", 7, 7.5, True, None, _dt.datetime(2024, 5, 2, tzinfo=_dt.timezone.utc), "x" * 16_385]


@pytest.mark.parametrize("model, key", [(User, "id"), (User, "email"), (User, "name"), (PlanetaryInsight, "user_id"),
                                        (PlanetaryInsight, "date"), (PlanetaryInsight, "energy_level")])
def test_a_planned_filter_gives_what_the_full_compile_gives_for_every_literal(model: Any, key: str) -> None:
    """The planned path takes an ObjectId, and a non-string literal for a field that is no id, as
    it is, and coerces the rest as before: the same filter or the same refusal as the full compile."""
    from astro_db.errors import AstroDBError

    def outcome(fn: Any) -> Any:
        try:
            return "ok", fn()
        except AstroDBError as exc:
            return type(exc).__name__, str(exc)

    compile_filter(model, {key: _LITERALS[0] if key in ("id", "user_id") else "2024-05-01" if key == "date" else 1
                           if key == "energy_level" else "a@example.com"})  # planned
    for value in _LITERALS:
        planned = outcome(lambda value=value: compile_filter(model, {key: value}))
        full = outcome(lambda value=value: filters._compile_mapping(model, {key: value}, False, depth=0, prefix=""))
        assert planned == full, value


# --- a by-id filter's compiled form (Runtime.by_id_shapes) --------------------------------------------

from astro_db.query.pipeline import Checks  # noqa: E402
from astro_db.query.walker import Walker  # noqa: E402
from astro_db.security.access import TRUSTED  # noqa: E402
from astro_db.security.fieldpaths import Sensitive  # noqa: E402
from astro_db.security.filters import SealRule  # noqa: E402


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every filter a ``Walker`` walks (the full walk), in order (each test's Database is new: its
    runtime's by-id shapes start unknown)."""
    seen: list[Any] = []
    real = Walker.filter

    def filter(self: Walker, model: Any, query: Any) -> Any:  # noqa: A001
        seen.append(query)
        return real(self, model, query)

    monkeypatch.setattr(Walker, "filter", filter)
    return seen


def full_walk(db: Any, model: Any, query: Any, guard: Any = TRUSTED) -> Any:
    info = db.executor.model(model)
    return compile_step.walker(db.executor.runtime, guard).filter(info.cls, query)


def test_a_by_id_filter_of_the_trusted_app_takes_its_compiled_form_after_one_full_walk(db, walks) -> None:
    """The first by-id filter of a shape (the model and its key, never the value) is walked; later
    ones of that shape, with any id (an ObjectId or its hex text), are what the walk gives
    (``{"_id": <the id>}``) without it, through ``find_one``, ``find``, ``update``, ``count`` and
    ``delete`` alike."""
    rt, info = db.executor.runtime, db.executor.model("User")
    ann = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    bob = db.create(User, {"email": "bob@example.com", "name": "Bob"})
    walks.clear()
    assert db.find_one(User, {"id": ann.id}).name == "Ann"
    assert len(walks) == 1 and rt.by_id_shapes == {(rt.crypto, User, "id"): True}
    assert db.find_one(User, {"id": bob.id}).name == "Bob"
    assert db.find_one(User, {"id": str(ann.id)}).name == "Ann"
    assert [u.name for u in db.find(User, {"id": bob.id})] == ["Bob"]
    assert db.update(User, {"id": bob.id}, {"name": "Rob"}).name == "Rob"
    assert db.find_one(User, {"id": ObjectId()}) is None
    assert db.count(User, {"id": str(bob.id)}) == 1
    assert db.delete(User, {"id": bob.id}) and db.find_one(User, {"id": bob.id}) is None
    assert walks == [{"id": ann.id}]  # the update's own walk is of its update, not of its filter
    for value in (ann.id, str(ann.id), ObjectId(), "0" * 24):
        assert compile_step.filter(rt, info, TRUSTED, {"id": value}) == full_walk(db, User, {"id": value})
    compile_step.filter(rt, info, TRUSTED, {"_id": ann.id})  # another key: another shape, walked once
    assert compile_step.filter(rt, info, TRUSTED, {"_id": str(bob.id)}) == {"_id": bob.id}
    assert len(walks) == 2 + 4 and rt.by_id_shapes == {(rt.crypto, User, "id"): True, (rt.crypto, User, "_id"): True}
    assert compile_step.read(rt, info, TRUSTED, {"id": ann.id}, {"strict": True}, one=True) == ({"_id": ann.id}, {}, ())


@pytest.mark.parametrize("bad", ["zz", "", "0" * 23, "g" * 24, "ann@example.com"])
def test_a_bad_id_is_refused_as_the_full_walk_refuses_it(db, walks, bad: str) -> None:
    rt, info = db.executor.runtime, db.executor.model("User")
    compile_step.filter(rt, info, TRUSTED, {"id": ObjectId()})
    with pytest.raises(ValidationError) as walked:
        full_walk(db, User, {"id": bad})
    walks.clear()
    with pytest.raises(ValidationError) as compiled:
        compile_step.filter(rt, info, TRUSTED, {"id": bad})
    assert walks == [] and compiled.value.errors == walked.value.errors and str(compiled.value) == str(walked.value)


def test_an_actors_by_id_filter_always_takes_the_full_walk_and_keeps_its_scope(db, walks) -> None:
    """An actor's walk adds the scope (and the reads rule): its by-id filters are walked every
    time, and never teach the trusted app's shapes."""
    ann = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    bob = db.create(User, {"email": "bob@example.com", "name": "Bob"})
    me = db.as_actor(str(ann.id), ["self"])
    walks.clear()
    assert me.find_one(User, {"id": ann.id}).name == "Ann"
    assert me.find_one(User, {"id": bob.id}) is None  # outside the scope
    assert me.find_one(User, {"id": str(ann.id)}).name == "Ann"
    rt, info = db.executor.runtime, db.executor.model("User")
    assert len(walks) == 3 and rt.by_id_shapes == {}
    guard = Guard(Actor(str(ann.id), frozenset({"self"})), info.name, "_id")
    scoped = compile_step.filter(rt, info, guard, {"id": bob.id})
    assert scoped == full_walk(db, User, {"id": bob.id}, guard) != {"_id": bob.id}
    db.find_one(User, {"id": bob.id})  # the trusted app learns its shape...
    walks.clear()
    assert compile_step.filter(rt, info, guard, {"id": bob.id}) == scoped and len(walks) == 1  # ...the actor still walks


@pytest.mark.parametrize("query", [
    {"id": {"$ne": None}},  # an operator object
    {"id": {"$in": [ObjectId()]}},
    {"$where": "sleep(1000)"},  # refused by the walk, every time
    {"id": [ObjectId()]},
    {"id": 5},  # neither an ObjectId nor text
    {"status": "active"},  # text, but no id
    {"email": "Ann@Example.com"},  # a personal field: canonicalised (and with a key, sealed) by the walk
    {"id": ObjectId(), "status": "active"},  # two keys
    {"lastActive": "2024-01-01T00:00:00Z"},
])
def test_other_filters_take_the_full_walk_every_time(db, walks, query: Any) -> None:
    rt, info = db.executor.runtime, db.executor.model("User")
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(compile_step.filter(rt, info, TRUSTED, query))
        except (QueryError, ValidationError) as refused:
            outcomes.append(str(refused))
    assert len(walks) == 3 and True not in rt.by_id_shapes.values()
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_a_shape_that_is_no_by_id_filter_is_judged_once(db, walks, monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-key filter of an id value on another field (a reference) is judged once per shape,
    then walked with no second judgement."""
    rt, info = db.executor.runtime, db.executor.model("PlanetaryInsight")
    judged = []
    real = compile_step._by_id_form
    monkeypatch.setattr(compile_step, "_by_id_form", lambda *args: judged.append(args[3]) or real(*args))
    for _ in range(3):
        compile_step.filter(rt, info, TRUSTED, {"userId": ObjectId()})
        compile_step.filter(rt, info, TRUSTED, {"summary": "calm"})
    assert judged == ["userId", "summary"] and len(walks) == 6


def test_a_reference_to_another_model_by_id_is_no_by_id_filter(db, walks) -> None:
    """``{"userId": <ObjectId>}`` on an insight names another document's id: walked every time."""
    rt, info = db.executor.runtime, db.executor.model("PlanetaryInsight")
    for _ in range(3):
        assert compile_step.filter(rt, info, TRUSTED, {"userId": UID}) == {"userId": UID}
    assert len(walks) == 3 and rt.by_id_shapes == {(rt.crypto, PlanetaryInsight, "userId"): False}


UID = ObjectId()


def test_with_a_key_a_by_id_filter_is_still_the_walks_answer(walks) -> None:
    """With an encryption key the seal rule has work on the user's email, none on its ``_id``."""
    from .security_data import KEY_A, new_db

    keyed = new_db(encryption_key=KEY_A)
    try:
        rt, info = keyed.executor.runtime, keyed.executor.model("User")
        ann = keyed.create(User, {"email": "ann@example.com", "name": "Ann"})
        assert keyed.find_one(User, {"email": "ANN@example.com"}).id == ann.id  # the blind index, walked
        for _ in range(2):
            assert keyed.find_one(User, {"id": ann.id}).email == "ann@example.com"
        assert compile_step.filter(rt, info, TRUSTED, {"id": ann.id}) == full_walk(keyed, User, {"id": ann.id})
        assert rt.by_id_shapes == {(rt.crypto, User, "id"): True, (rt.crypto, User, "email"): False}
    finally:
        keyed.disconnect()


def test_a_sealed_id_or_a_walk_with_another_rule_is_never_compiled(db, walks, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the seal rule has a say on ``_id`` (a model that declared it sensitive) or the trusted
    walk has a rule besides the checks and the seal rule, every by-id filter is walked."""
    rt, info = db.executor.runtime, db.executor.model("User")
    monkeypatch.setitem(rt.crypto.fields, info.name, (*rt.crypto.fields[info.name], Sensitive("_id", False)))
    for _ in range(2):
        compile_step.filter(rt, info, TRUSTED, {"id": ObjectId()})
    assert len(walks) == 2 and rt.by_id_shapes == {(rt.crypto, User, "id"): False}
    monkeypatch.undo()
    rt.by_id_shapes.clear()

    class Audit:
        seen = 0

        def visit(self, node: Any, value: Any) -> Any:
            Audit.seen += 1
            return value

    walker = Walker((Checks(), SealRule(rt.crypto, rt.registry), Audit()))
    monkeypatch.setattr(compile_step, "walker", lambda rt, guard, strict=False: walker)
    for _ in range(3):
        assert compile_step.filter(rt, info, TRUSTED, {"id": UID}) == {"_id": UID}
    assert Audit.seen == 3 and rt.by_id_shapes == {(rt.crypto, User, "id"): False}
