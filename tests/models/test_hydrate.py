"""hydrate builds exactly what MongoEngine's _from_son builds, from Node-shaped documents."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import random
import weakref

import pytest
from bson import ObjectId
from mongoengine.base import BaseDocument

from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.codec import hydrate

from .samples import node_chart, node_insight, node_timing, node_user

NODE_DOCS = [
    ("user", User, node_user),
    ("chart", BirthChart, node_chart),
    ("insight", PlanetaryInsight, node_insight),
    ("timing", TimingRecommendation, node_timing),
]
IDS = [case[0] for case in NODE_DOCS]


def _pair(model, make):
    son = make()
    return model._from_son(copy.deepcopy(son)), hydrate(model, copy.deepcopy(son)), son


def _assert_same_instance(a, b):
    assert type(a) is type(b)
    assert a._data == b._data
    assert set(a._data) == set(b._data)
    assert (a._initialised, a._created, a._changed_fields) == (b._initialised, b._created, b._changed_fields)
    assert a._dynamic_fields == b._dynamic_fields
    assert a.__dict__.keys() == b.__dict__.keys()
    for name, value in a._data.items():
        other = b._data[name]
        if isinstance(value, BaseDocument):
            _assert_same_instance(value, other)
            assert type(value._instance) is type(other._instance)
        elif isinstance(value, list):
            for x, y in zip(value, other):
                if isinstance(x, BaseDocument):
                    _assert_same_instance(x, y)
                    assert isinstance(y._instance, weakref.ProxyType)
                    assert y._instance == b
                else:
                    assert x == y


@pytest.mark.parametrize("case,model,make", NODE_DOCS, ids=IDS)
def test_hydrate_matches_from_son(case, model, make):
    a, b, _ = _pair(model, make)
    _assert_same_instance(a, b)
    assert a.to_mongo() == b.to_mongo()
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("case,model,make", NODE_DOCS, ids=IDS)
def test_node_document_hydrates_validates_and_keeps_version_and_sub_ids(case, model, make):
    son = make()
    doc = hydrate(model, copy.deepcopy(son))
    doc.validate()
    stored = doc.to_mongo()
    assert stored["__v"] == son["__v"]
    for key in ("positions", "windows", "risks"):
        if key in son:
            assert [item["_id"] for item in stored[key]] == [item["_id"] for item in son[key]]


@pytest.mark.parametrize("case,model,make", NODE_DOCS, ids=IDS)
def test_node_document_to_dict_is_json_ready(case, model, make):
    son = make()
    out = hydrate(model, son).to_dict()
    json.dumps(out)
    assert out["id"] == str(son["_id"])
    assert "__v" not in out and "_id" not in out
    assert out["createdAt"].endswith("Z")


def test_hydrated_node_dates_are_aware_utc():
    chart = hydrate(BirthChart, node_chart())
    assert chart.birth_data.date.tzinfo is not None
    assert chart.birth_data.date.utcoffset().total_seconds() == 0


def test_unknown_stored_key_is_kept_in_data_like_from_son():
    son = node_chart()
    assert hydrate(BirthChart, son)._data["legacyFlag"] is True
    assert "legacyFlag" not in hydrate(BirthChart, son).to_mongo()


def test_missing_defaults_are_filled_like_from_son():
    son = {"_id": ObjectId(), "email": "a@b.co", "name": "A"}
    a, b = User._from_son(dict(son)), hydrate(User, dict(son))
    assert a._data == b._data
    assert b.status == "active" and b.version == 0


def test_changes_are_tracked_after_hydrate_like_from_son():
    a, b, _ = _pair(BirthChart, node_chart)
    for doc in (a, b):
        doc.house_system = "equal"
        doc.positions[0].degree = 1.5
        doc.birth_data.timezone = "Asia/Tokyo"
    assert sorted(a._get_changed_fields()) == sorted(b._get_changed_fields())
    assert a._delta() == b._delta()


def test_list_append_is_tracked_after_hydrate():
    a, b, _ = _pair(PlanetaryInsight, node_insight)
    for doc in (a, b):
        doc.recommendations.append("New")
    assert a._get_changed_fields() == b._get_changed_fields() == ["recommendations"]


def test_hydrate_many_random_documents_matches_from_son():
    rng = random.Random(7)
    for _ in range(50):
        son = node_chart(rng)
        a, b = BirthChart._from_son(copy.deepcopy(son)), hydrate(BirthChart, copy.deepcopy(son))
        assert a.to_mongo() == b.to_mongo()


def test_hydrate_falls_back_to_from_son_for_corrupt_embedded_values():
    son = node_chart()
    son["birthData"] = "corrupt"
    with pytest.raises(Exception) as from_son:
        BirthChart._from_son(copy.deepcopy(son))
    with pytest.raises(type(from_son.value)):
        hydrate(BirthChart, copy.deepcopy(son))


def test_hydrated_instance_is_not_new():
    doc = hydrate(User, node_user())
    assert doc._created is False and doc._initialised is True
    assert doc.pk is not None


def test_hydrate_many_equals_hydrate_and_restores_the_collector():
    import gc

    from astro_db.models.codec import hydrate, hydrate_many

    sons = [node_insight(random.Random(i)) for i in range(300)]
    assert gc.isenabled()
    many = hydrate_many(PlanetaryInsight, sons)
    assert gc.isenabled()
    assert [m.to_mongo().to_dict() for m in many] == [hydrate(PlanetaryInsight, s).to_mongo().to_dict() for s in sons]
    gc.disable()
    try:
        hydrate_many(PlanetaryInsight, sons)
        assert not gc.isenabled()  # a collector the app switched off stays off
    finally:
        gc.enable()


@pytest.mark.parametrize("signal", ["pre_init", "post_init"])
def test_a_receiver_of_a_construction_signal_connected_at_any_time_hears_every_hydration(signal):
    """The signals' receivers are read in place (blinker's own dicts): one connected after
    import, after hydrations ran without it, still hears every hydration path (MongoEngine's
    ``_from_son`` fires it), and once disconnected the short way is back."""
    pytest.importorskip("blinker", reason="MongoEngine's signals need blinker (in the dev extra, not the slim test one)")
    from mongoengine import signals

    from astro_db.models.codec import hydrate_encoded, hydrate_many

    heard = []

    def receiver(sender, **kwargs):
        heard.append(sender)

    son = node_user()
    hydrate(User, copy.deepcopy(son))
    assert heard == []
    getattr(signals, signal).connect(receiver)
    try:
        hydrate(User, copy.deepcopy(son))
        hydrate_many(User, [copy.deepcopy(son)])
        hydrate_encoded(User, copy.deepcopy(son))
    finally:
        getattr(signals, signal).disconnect(receiver)
    assert heard == [User, User, User]
    hydrate(User, copy.deepcopy(son))
    assert len(heard) == 3


def test_id_fields_take_an_objectid_as_read_and_convert_anything_else_as_from_son(monkeypatch):
    """An exact ObjectId in an id field (``_id``, a user reference) is what its ``to_python``
    gives back, so it is taken as read, no converter called; any other value still goes through
    the field's ``to_python``, as ``_from_son`` does."""
    from astro_db.models.fields import UserRefField

    calls = []
    real = UserRefField.to_python
    monkeypatch.setattr(UserRefField, "to_python", lambda self, value: calls.append(value) or real(self, value))
    from astro_db.models import hydrate as hydration

    hydration._READ_PLANS.pop(PlanetaryInsight, None)  # planned again with the spy in place
    try:
        son = node_insight()
        assert type(son["userId"]) is ObjectId
        built = hydrate(PlanetaryInsight, copy.deepcopy(son))
        assert calls == [] and built.user_id == son["userId"]
        text_ids = {**copy.deepcopy(son), "_id": str(son["_id"]), "userId": str(son["userId"])}
        built, expected = hydrate(PlanetaryInsight, copy.deepcopy(text_ids)), PlanetaryInsight._from_son(copy.deepcopy(text_ids))
        assert calls[:1] == [str(son["userId"])] and built.user_id == expected.user_id == son["userId"]
        assert built.id == expected.id == son["_id"] and type(built.id) is type(expected.id)
    finally:
        hydration._READ_PLANS.pop(PlanetaryInsight, None)


# --- the compiled builder (models.hydrate.compiled_builder) ----------------------------------

import datetime as _dt  # noqa: E402

from bson import SON  # noqa: E402
from bson.tz_util import utc as bson_utc  # noqa: E402
from mongoengine.fields import DictField, StringField  # noqa: E402

from astro_db.models import AstroDocument  # noqa: E402
from astro_db.models import hydrate as hydration  # noqa: E402
from astro_db.models.embedded import AstroEmbeddedDocument  # noqa: E402
from astro_db.models.fields import (  # noqa: E402
    ChoiceField,
    EmbeddedDocumentField,
    ListField,
    NumberField,
    TextField,
    UTCDateTimeField,
)

PLUS_TWO = _dt.timezone(_dt.timedelta(hours=2))
AWARE = _dt.datetime(2024, 2, 2, 10, 30, tzinfo=_dt.timezone.utc)


class CompiledTexts(AstroEmbeddedDocument):
    """Every field stripped text under its own name: read by the loop in one step (not compiled)."""

    a = TextField()
    b = TextField()


class CompiledApp(AstroDocument):
    """An app's model with what the built-in ones lack: a choice kept as given, a choice that
    ignores case, a callable default, a free-form dict, a list of dates, MongoEngine's own
    string, an embedded class the loop reads in one step and a list of them."""

    kept = ChoiceField(("A", " B "), strip=False)
    folded = ChoiceField(("Low", "High"), ignore_case=True, db_field="foldedLevel")
    tags = ListField(TextField(), default=list)
    loose = DictField()
    moments = ListField(UTCDateTimeField())
    plain = StringField()
    texts = EmbeddedDocumentField(CompiledTexts)
    many = ListField(EmbeddedDocumentField(CompiledTexts))
    count = NumberField(integer=True, default=3)

    meta = {"collection": "compiledApps"}


def _copy(son):
    """A deep copy keeping PyMongo's UTC object itself (as every date a tz-aware client reads
    holds it), which the compiled builder recognises by identity."""
    return copy.deepcopy(son, {id(bson_utc): bson_utc})


def _user(**over):
    son = node_user()
    son.update(over)
    return {k: v for k, v in son.items() if v is not _GONE}


_GONE = object()


class ListKeys(dict):
    def keys(self):  # type: ignore[override]
        return list(super().keys())
_OID = ObjectId()

# (id, model, stored document): the common shapes and every kind of unusual one
COMPILED_CASES = [
    ("user node", User, node_user),
    ("user aware", User, lambda: _user(createdAt=AWARE, updatedAt=AWARE, lastActive=AWARE)),
    ("user as pymongo reads", User, lambda: _user(createdAt=AWARE.replace(tzinfo=bson_utc), lastActive=AWARE.astimezone(bson_utc))),
    ("user other zone", User, lambda: _user(createdAt=AWARE.astimezone(PLUS_TWO))),
    ("user iso and day", User, lambda: _user(createdAt="2024-02-02T10:30:00+01:00", updatedAt=_dt.date(2024, 2, 2),
                                             lastActive="not a date")),
    ("user missing optional", User, lambda: _user(lastActive=_GONE, status=_GONE, __v=_GONE)),
    ("user missing required", User, lambda: {"_id": _OID}),
    ("user empty", User, dict),
    ("user none values", User, lambda: _user(status=None, __v=None, name=None, lastActive=None)),
    ("user email spellings", User, lambda: _user(email="  Ann@Example.COM ", name="  Ann  ")),
    ("user email unicode", User, lambda: _user(email="ｊｏｓé＠ｅｘａｍｐｌｅ．ｃｏｍ")),
    ("user email not text", User, lambda: _user(email=5, name=7, status=8)),
    ("user status spaced", User, lambda: _user(status=" active ")),
    ("user text ids", User, lambda: _user(_id=str(_OID))),
    ("user bad id", User, lambda: _user(_id="zz")),
    ("user revision keys", User, lambda: _user(_rev=3, _op=ObjectId(), legacy=None)),
    ("user only unknown keys", User, lambda: {"legacy": 1, "_rev": 0}),
    ("user mongoose id", User, lambda: {**{k: v for k, v in node_user().items() if k != "_id"}, "id": _OID}),
    ("user attribute names", User, lambda: _user(created_at=AWARE, last_active=AWARE)),
    ("user str subclass", User, lambda: _user(name=type("Text", (str,), {})(" Ann "))),
    ("user dict subclass", User, lambda: ListKeys(node_user())),  # its own keys(): a list
    ("insight node", PlanetaryInsight, node_insight),
    ("insight as pymongo reads", PlanetaryInsight, lambda: {**node_insight(), "date": AWARE.astimezone(bson_utc)}),
    ("insight list items", PlanetaryInsight, lambda: {**node_insight(), "recommendations": [" a ", 5, None, "b"]}),
    ("insight list empty", PlanetaryInsight, lambda: {**node_insight(), "recommendations": []}),
    ("insight list not a list", PlanetaryInsight, lambda: {**node_insight(), "recommendations": "solo"}),
    ("insight list a tuple", PlanetaryInsight, lambda: {**node_insight(), "recommendations": (" b ",)}),
    ("insight text user id", PlanetaryInsight, lambda: {**node_insight(), "userId": str(_OID), "summary": None}),
    ("chart node", BirthChart, node_chart),
    ("chart spaced choice", BirthChart, lambda: {**node_chart(), "houseSystem": " koch "}),
    ("chart embedded son", BirthChart, lambda: {**node_chart(), "birthData": SON(node_chart()["birthData"])}),
    ("chart position not a dict", BirthChart, lambda: {**node_chart(), "positions": [node_chart()["positions"][0], "x"]}),
    ("chart positions not a list", BirthChart, lambda: {**node_chart(), "positions": node_chart()["positions"][0]}),
    ("chart no positions", BirthChart, lambda: {k: v for k, v in node_chart().items() if k != "positions"}),
    ("timing node", TimingRecommendation, node_timing),
    ("timing as pymongo reads", TimingRecommendation, lambda: {**node_timing(), "windows": [
        {**w, "start": AWARE.astimezone(bson_utc)} for w in node_timing()["windows"]]}),
    ("app full", CompiledApp, lambda: {"_id": _OID, "kept": " B ", "foldedLevel": "high", "tags": [" x "],
                                       "loose": {"a": {"b": 1}}, "moments": [AWARE.astimezone(bson_utc), _dt.datetime(2020, 1, 1)],
                                       "plain": "p", "texts": {"a": " x ", "b": "y"},
                                       "many": [{"a": " 1 ", "b": "2"}, {"a": 3}], "count": 4}),
    ("app defaults", CompiledApp, lambda: {"_id": _OID}),
    ("app odd values", CompiledApp, lambda: {"_id": _OID, "kept": 1, "foldedLevel": "LOW ", "tags": "t", "moments": ["2020-01-01"],
                                             "plain": b"bytes", "texts": {"a": 5, "c": " z "}, "many": []}),
]
COMPILED_IDS = [case[0] for case in COMPILED_CASES]


def _same_values(a, b, path="") -> None:
    """``a`` and ``b`` hold the same values of the same types (dates in the same zone object)."""
    assert type(a) is type(b), path
    if isinstance(a, BaseDocument):
        _assert_same_instance(a, b)
        assert a._data.keys() == b._data.keys(), path
        for key in a._data:
            _same_values(a._data[key], b._data[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for n, (x, y) in enumerate(zip(a, b)):
            _same_values(x, y, f"{path}[{n}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _same_values(a[key], b[key], f"{path}.{key}")
    else:
        assert a == b and repr(a) == repr(b), path
        if isinstance(a, _dt.datetime):
            assert a.tzinfo is b.tzinfo, path


@pytest.mark.parametrize("case,model,make", COMPILED_CASES, ids=COMPILED_IDS)
def test_the_compiled_builder_makes_the_instance_the_plans_loop_and_from_son_make(case, model, make):
    """Each class's compiled builder (``ReadPlan.build``) gives the instance the read plan's
    loop (``_build``) gives, value for value (types, dates' zone objects, embedded documents
    and their back-references, unknown keys kept), and ``_from_son``'s ``_data``: for the common
    stored shape and for every unusual one it hands to the loop."""
    plan = hydration.read_plan(model)
    assert plan.build.__code__.co_filename.startswith("<astro_db hydrate:")
    son = make()

    def by_the_loop(son):  # ``hydrate`` before the compiled builder: the loop, MongoEngine on corrupt data
        try:
            return hydration._build(plan, son)
        except (AttributeError, ValueError):
            return model._from_son(son)

    try:
        loop = by_the_loop(_copy(son))
    except Exception as refused:  # noqa: BLE001 - corrupt data: the same refusal either way
        with pytest.raises(type(refused)) as raised:
            hydrate(model, _copy(son))
        assert str(raised.value) == str(refused)
        return
    compiled = hydrate(model, _copy(son))
    _same_values(compiled, loop)
    try:
        reference = model._from_son(_copy(son))
    except Exception:  # noqa: BLE001 - MongoEngine refuses some corrupt values the plans keep
        return
    assert compiled._data == reference._data
    assert compiled.to_dict() == reference.to_dict()


# the unusual shapes the compiled builder hands to the plan's loop; every other case it builds itself
TO_THE_LOOP = {"user mongoose id", "user attribute names", "chart embedded son", "chart position not a dict",
               "chart positions not a list", "insight list not a list", "insight list a tuple", "app odd values"}


@pytest.mark.parametrize("case,model,make", COMPILED_CASES, ids=COMPILED_IDS)
def test_the_compiled_builder_hands_only_unusual_shapes_to_the_loop(case, model, make, monkeypatch):
    """Unknown keys, missing fields, None values, dates in any zone, ids as text, values to
    convert: built in place; another spelling of a field or a container of another type: the
    whole document through the loop (``_build``), once."""
    build = hydration.read_plan(model).build
    handed = []
    monkeypatch.setitem(build.__globals__, "LOOP", lambda plan, son: handed.append(son) or hydration._build(plan, son))
    with contextlib.suppress(Exception):  # corrupt data: refused after the loop, as the first test holds
        hydrate(model, make())
    assert len(handed) == (1 if case in TO_THE_LOOP else 0)


class CompiledNumbers(AstroEmbeddedDocument):
    """Every field a number under its own name: read as it is, in one step."""

    x = NumberField(integer=True)
    y = NumberField(integer=True, default=7)


_Text = type("Text", (str,), {})
# (id, class, stored document, whether the one-step builder hands it to the plan's loop: always, or
# only on a read ("read"), whose text is stripped)
ONE_STEP_CASES = [
    ("texts", CompiledTexts, lambda: {"a": " x ", "b": "y"}, False),
    ("texts a none", CompiledTexts, lambda: {"a": None, "b": "y"}, True),
    ("texts missing", CompiledTexts, lambda: {"a": " x "}, True),
    ("texts empty", CompiledTexts, dict, True),
    ("texts not text", CompiledTexts, lambda: {"a": 5, "b": "y"}, "read"),  # a create's answer: as the codec left it
    ("texts str subclass", CompiledTexts, lambda: {"a": _Text(" x "), "b": "y"}, "read"),
    ("texts unknown key", CompiledTexts, lambda: {"a": "x", "b": "y", "c": " z "}, True),
    ("texts unknown key for one", CompiledTexts, lambda: {"a": "x", "c": " z "}, True),
    ("texts son", CompiledTexts, lambda: SON([("a", " x "), ("b", "y")]), True),
    ("texts dict subclass", CompiledTexts, lambda: ListKeys({"a": " x ", "b": "y"}), True),
    ("numbers", CompiledNumbers, lambda: {"x": 1, "y": 2}, False),
    ("numbers a none", CompiledNumbers, lambda: {"x": 1, "y": None}, True),
    ("numbers missing", CompiledNumbers, lambda: {"x": 1}, True),
    ("numbers text", CompiledNumbers, lambda: {"x": "1", "y": 2.5}, False),  # as read: to_python is the identity
]


@pytest.mark.parametrize("encoded", [False, True], ids=["read", "created"])
@pytest.mark.parametrize("case,model,make,handed", ONE_STEP_CASES, ids=[c[0] for c in ONE_STEP_CASES])
def test_classes_the_loop_reads_in_one_step_get_that_step_compiled(case, model, make, handed, encoded, monkeypatch):
    """An embedded class of only stripped text, or only numbers, under its own names
    (``ReadPlan.uniform``) gets the loop's one-step read compiled (``_uniform_lines``). It makes
    the instance the plan's loop (``_build``) makes, value for value, and ``_from_son``'s
    ``_data``; every other shape (a None, a field missing, a value not an exact ``str``, another
    key, a ``SON`` or another dict subclass) it hands to the loop, once. Read and as a create's
    answer (``encoded_plan``: text taken as the codec left it)."""
    plan = hydration.encoded_plan(model) if encoded else hydration.read_plan(model)
    assert plan.uniform is not None
    build = plan.build
    assert build.__code__.co_filename.startswith("<astro_db hydrate:")
    loop = hydration._build(plan, make())
    loops = []
    monkeypatch.setitem(build.__globals__, "LOOP", lambda plan, son: loops.append(son) or hydration._build(plan, son))
    built = build(make())
    assert len(loops) == (1 if handed is True or (handed == "read" and not encoded) else 0)
    _same_values(built, loop)
    assert built._instance is None and built._initialised and not built._created
    if not encoded:
        assert built._data == model._from_son(make())._data


def test_a_creates_answer_is_compiled_from_its_own_kinds():
    """A create's answer (``encoded_plan``) is compiled from its own kinds (more values as they
    are: the codec converted them), and makes the instance the loop makes
    (``tests/unit/test_write_path.py::test_a_creates_answer_is_the_instance_...``)."""
    encoded = hydration.encoded_plan(User)
    assert not isinstance(encoded.build, functools.partial)
    assert encoded.build is not hydration.read_plan(User).build
    assert hydration.encoded_plan(CompiledTexts).uniform == hydration._AS_IS
    assert hydration.read_plan(CompiledTexts).uniform == hydration._TEXT


def test_the_compiled_builders_source_holds_no_name_key_or_default():
    """Names, stored keys, defaults and converters are namespace constants: the source is the
    same for any spelling of them."""
    import linecache

    build = hydration.read_plan(CompiledApp).build
    source = "".join(linecache.getlines(build.__code__.co_filename))
    for word in ("kept", "foldedLevel", "loose", "moments", "texts", "count", "Low", "compiledApps"):
        assert word not in source


def test_a_compiled_instance_behaves_as_from_sons():
    """Change tracking, list tracking, ``_dynamic_fields`` (an empty ``SON``, its own per
    instance) and the embedded back-references of a compiled instance."""
    son = node_chart()
    a, b = BirthChart._from_son(_copy(son)), hydrate(BirthChart, _copy(son))
    assert type(b._dynamic_fields) is SON and b._dynamic_fields == SON() and vars(b._dynamic_fields) == vars(SON())
    assert b._dynamic_fields is not hydrate(BirthChart, _copy(son))._dynamic_fields
    b._dynamic_fields["x"] = 1
    assert list(b._dynamic_fields.keys()) == ["x"]
    assert b.positions[0]._instance == b and b.birth_data._instance == b
    for doc in (a, b):
        doc.house_system = "equal"
        doc.positions[0].degree = 1.5
    assert sorted(a._get_changed_fields()) == sorted(b._get_changed_fields())
    assert a._delta() == b._delta()
