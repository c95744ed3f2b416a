"""Embedded documents: the codec's in-place path is held to the fields' own validation path, and
hydration builds what MongoEngine's ``_from_son`` builds.

``_encode_doc`` takes a plain text, number or ObjectId value its field's rule accepts in place at
every depth (embedded documents, lists of them, documents in documents) and reads a document whose
keys are all stored names as it is. The reference here is the same codec with both shortcuts off
(every leaf through its field's ``to_python``, ``check`` and ``to_mongo``; every document's keys
spelled out one by one, as before the in-place path): for every case of the table (wrong types,
unknown keys, ``None``, bools for integers, huge and non-finite numbers, text at and past its
bounds, values and keys shaped like the library's own markers) both give the same stored document
(values, types, key order) or the same errors (paths, messages, order), and a valid document is
what MongoEngine's ``to_mongo`` stores.
"""

from __future__ import annotations

import copy
import datetime as _dt
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from bson import ObjectId
from bson.tz_util import utc as bson_utc
from mongoengine.base import BaseDocument
from spies import calls_in

from astro_db.errors import ValidationError
from astro_db.models import AstroDocument, codec
from astro_db.models import hydrate as hydration
from astro_db.models.embedded import AstroEmbeddedDocument
from astro_db.models.fields import (
    ChoiceField,
    EmailField,
    EmbeddedDocumentField,
    NumberField,
    RuleListField,
    StrictObjectIdField,
    TextField,
    UserRefField,
    UTCDateTimeField,
)
from astro_db.models.plan import STEP_LEAF, STEP_LEAF_RULE, DocPlan, doc_plan

from .samples import me_errors


class NestLeaves(AstroEmbeddedDocument):
    text = TextField(max_length=10)
    short = TextField(min_length=2, max_length=4, strip=False)
    count = NumberField(integer=True, min_value=0, max_value=100)
    ratio = NumberField(below=1)
    ref = StrictObjectIdField()
    must = TextField(required=True)
    dflt = NumberField(integer=True, default=7)
    when = UTCDateTimeField()


class NestInts(AstroEmbeddedDocument):
    a = NumberField(integer=True)
    b = NumberField(integer=True)


class NestTexts(AstroEmbeddedDocument):
    a = TextField(max_length=1_000)
    b = TextField(max_length=1_000)


class NestPlain(AstroEmbeddedDocument):
    """Only fields with an in-place rule, none required or defaulted: a compiled encoder's class."""

    text = TextField(max_length=10)
    short = TextField(min_length=2, max_length=4, strip=False)
    count = NumberField(integer=True, min_value=0, max_value=100)
    ratio = NumberField(below=1)
    ref = StrictObjectIdField()


class NestDeep(AstroEmbeddedDocument):
    label = TextField(max_length=5)
    plain = EmbeddedDocumentField(NestPlain)
    plains = RuleListField(EmbeddedDocumentField(NestPlain), max_length=2)


class NestInner(AstroEmbeddedDocument):
    name = TextField(db_field="nm", max_length=20)
    leaves = EmbeddedDocumentField(NestLeaves)


class NestDoc(AstroDocument):
    one = EmbeddedDocumentField(NestLeaves)
    many = RuleListField(EmbeddedDocumentField(NestLeaves), max_length=3)
    inner = EmbeddedDocumentField(NestInner)
    ints = EmbeddedDocumentField(NestInts)
    texts = EmbeddedDocumentField(NestTexts)
    plain = EmbeddedDocumentField(NestPlain)
    plains = RuleListField(EmbeddedDocumentField(NestPlain), max_length=3)
    deep = EmbeddedDocumentField(NestDeep)
    meta = {"collection": "nestDocs"}


REF = ObjectId("65f0c0ffee0000000000abcd")


class _Oid(ObjectId):
    pass


class _Str(str):
    pass


def leaves(**over: Any) -> dict[str, Any]:
    return {"text": " hello ", "short": "abc", "count": 5, "ratio": 0.5, "ref": REF, "must": "x", **over}


def plain(**over: Any) -> dict[str, Any]:
    return {"text": " hello ", "short": "abc", "count": 5, "ratio": 0.5, "ref": REF, **over}


def base() -> dict[str, Any]:
    return {"one": leaves(), "many": [leaves(count=1), leaves(count=2)], "inner": {"nm": "in", "leaves": leaves()},
            "ints": {"a": 1, "b": 2}, "texts": {"a": " t ", "b": "u"}, "plain": plain(),
            "plains": [plain(count=1), plain(count=2)],
            "deep": {"label": "d", "plain": plain(), "plains": [plain(), plain(text="x")]}}


def _at(path: str, value: Any) -> Callable[[], dict[str, Any]]:
    """The base document with ``path`` (dotted, list indexes as numbers) set to ``value``."""
    def make() -> dict[str, Any]:
        doc = base()
        *head, last = path.split(".")
        node: Any = doc
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return doc
    return make


def _without(path: str) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        doc = base()
        *head, last = path.split(".")
        node: Any = doc
        for part in head:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]
        return doc
    return make


LEAF_VALUES: list[tuple[str, list[Any]]] = [
    ("text", [" hello ", "x" * 10, " " + "x" * 10 + "\t", "x" * 11, "", "   ", 5, True, None, _Str(" s "), ["a"], {"a": 1},
              "enc:v1:0011aabb:QUJD", "<unreadable>", "é" * 10, 10**30]),
    ("short", ["ab", "abcd", " ab ", "a", "abcde", " a ", 12, None]),
    ("count", [0, 100, 101, -1, 5.0, 5.5, True, False, 2**70, -(2**70), "5", None, float("nan"), float("inf"),
               _dt.datetime(2020, 1, 1)]),
    ("ratio", [0, 0.5, 0.999999, 1, 1.0, -1e308, float("inf"), float("-inf"), float("nan"), 10**400, -(10**30), True,
               "0.5", None, -0.0]),
    ("ref", [REF, _Oid("65f0c0ffee0000000000abce"), str(REF), "nope", 5, None, b"123456789012", {"$oid": str(REF)}]),
    ("must", ["x", "", "  ", None, 3, False]),
    ("dflt", [None, 8, -3, "7", True]),
    ("when", ["2021-01-01", "2021-01-01T10:00:00+02:00", "junk", _dt.datetime(2020, 1, 1), 5, None]),
]


def _cases() -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    yield "valid", base
    for where in ("one", "many.1", "inner.leaves"):
        for field, values in LEAF_VALUES:
            for n, value in enumerate(values):
                yield f"{where}.{field}[{n}:{type(value).__name__}]", _at(f"{where}.{field}", value)
        yield f"{where}.must-missing", _without(f"{where}.must")
        yield f"{where}.text-missing", _without(f"{where}.text")
        yield f"{where}.unknown-key", _at(f"{where}.extra", 1)
        yield f"{where}.marker-key-$set", _at(f"{where}.$set", {"count": 1})
        yield f"{where}.marker-key-_cls", _at(f"{where}._cls", "NestLeaves")
        yield f"{where}.marker-key-_id", _at(f"{where}._id", ObjectId())
    for where in ("plain", "plains.1", "deep.plain", "deep.plains.0"):  # compiled encoders' classes
        for field, values in LEAF_VALUES[:5]:
            for n, value in enumerate(values):
                yield f"{where}.{field}[{n}:{type(value).__name__}]", _at(f"{where}.{field}", value)
        yield f"{where}.text-missing", _without(f"{where}.text")
        yield f"{where}.unknown-key", _at(f"{where}.extra", 1)
        yield f"{where}.marker-key-$set", _at(f"{where}.$set", {"count": 1})
        yield f"{where}.marker-key-_cls", _at(f"{where}._cls", "NestPlain")
    yield "plains-too-long", _at("plains", [plain()] * 4)
    yield "deep-plains-too-long", _at("deep.plains", [plain()] * 3)
    yield "deep-plains-empty", _at("deep.plains", [])
    yield "deep-plains-tuple", _at("deep.plains", (plain(),))
    yield "deep-plains-none-item", _at("deep.plains", [plain(), None])
    yield "deep-plains-item-not-a-dict", _at("deep.plains", [plain(), "x"])
    yield "deep-label-too-long", _at("deep.label", "abcdef")
    yield "plain-as-instance", _at("plain", NestPlain(**plain()))
    yield "plain-empty", _at("plain", {})
    for where in ("one", "many.0", "inner", "inner.leaves", "ints", "texts", "plain", "plains.0", "deep", "deep.plain"):
        for n, value in enumerate(["text", 5, None, [], [leaves()], True, {}]):
            yield f"{where}=[{n}:{type(value).__name__}]", _at(where, value)
    yield "many-too-long", _at("many", [leaves()] * 4)
    yield "many-empty", _at("many", [])
    yield "many-tuple", _at("many", (leaves(),))
    yield "many-not-list", _at("many", leaves())
    yield "many-none-item", _at("many", [leaves(), None])
    yield "inner-by-attribute-name", _at("inner", {"name": "in", "leaves": leaves()})
    yield "inner-both-spellings", _at("inner", {"name": "in", "nm": "in2", "leaves": leaves()})
    yield "inner-name-too-long", _at("inner.nm", "y" * 21)
    yield "ints-bool", _at("ints.a", True)
    yield "ints-float", _at("ints.b", 2.0)
    yield "ints-huge", _at("ints.a", 10**100)
    yield "texts-int", _at("texts.a", 1)
    yield "texts-envelope", _at("texts.b", "enc:v2:deadbeef:QUJD")
    yield "one-as-instance", _at("one", NestLeaves(**leaves()))
    yield "top-unknown-key", _at("nope", 1)
    yield "top-attribute-and-stored-id", _at("id", str(REF))
    yield "many-errors-at-once", _at("many", [leaves(count=-1, text=5), leaves(short="z", extra=1)])


CASES = list(_cases())


@contextmanager
def fields_own_path(*classes: type) -> Iterator[None]:
    """Every document of ``classes`` (and the plans they reach) encoded with no in-place rule:
    no compiled encoder, each leaf through its field's calls, each document's keys spelled out
    one by one."""
    saved: dict[DocPlan, tuple[Any, Any, Any]] = {}

    def strip(plan: DocPlan) -> None:
        if plan in saved:
            return
        saved[plan] = (plan.steps, plan.stored_keys, plan.fast)
        plan.steps = tuple((s[0], s[1], STEP_LEAF, None) if s[2] is STEP_LEAF_RULE else s for s in plan.steps)
        plan.stored_keys = plan.fast = None
        for fp in plan.fields:
            if fp.sub is not None:
                strip(fp.sub)
            if fp.item is not None and fp.item.sub is not None:
                strip(fp.item.sub)

    for cls in classes:
        strip(doc_plan(cls))
    try:
        yield
    finally:
        for plan, (steps, keys, fast) in saved.items():
            plan.steps, plan.stored_keys, plan.fast = steps, keys, fast


def _plans_from(*classes: type) -> list[DocPlan]:
    """The plans of ``classes`` and of every embedded class they reach."""
    found: list[DocPlan] = []

    def walk(plan: DocPlan) -> None:
        if plan in found:
            return
        found.append(plan)
        for fp in plan.fields:
            for sub in (fp.sub, fp.item.sub if fp.item is not None else None):
                if sub is not None:
                    walk(sub)

    for cls in classes:
        walk(doc_plan(cls))
    return found


@contextmanager
def without_compiled(*classes: type) -> Iterator[None]:
    """The codec's loop (its in-place steps included) for every document: no compiled encoder."""
    plans = _plans_from(*classes)
    saved = [plan.fast for plan in plans]
    for plan in plans:
        plan.fast = None
    try:
        yield
    finally:
        for plan, fast in zip(plans, saved):
            plan.fast = fast


COMPILED = (NestDoc, NestLeaves, NestInner, NestPlain, NestDeep, NestInts, NestTexts)


def test_a_class_of_fields_with_in_place_rules_gets_a_compiled_encoder():
    from astro_db.models import BirthChart, PlanetaryInsight, User
    from astro_db.models.embedded import Position

    # text, numbers (one with a default), ObjectIds, embedded documents and lists of them, and
    # fields with no rule that a new document leaves out (the id)
    assert all(doc_plan(cls).fast is not None for cls in COMPILED)
    # top-level classes: an email, a choice with its default, dates, a list of ruled texts
    assert doc_plan(User).fast is not None and doc_plan(PlanetaryInsight).fast is not None
    assert doc_plan(User).new_keys == {"email", "name", "status", "lastActive"}  # no service field, no id
    # a field with no in-place rule that needs a value (a required time zone), a list with a list rule
    assert doc_plan(Position).fast is None and doc_plan(BirthChart).fast is None


def _encode(data: dict[str, Any]) -> tuple[str, Any]:
    try:
        out = codec.encode_new(NestDoc, copy.deepcopy(data))
    except ValidationError as error:
        return "error", list(error.errors.items())
    return "ok", out


def _shape(value: Any) -> Any:
    """A stored value with its types and key order, to compare exactly."""
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return ["list", *map(_shape, value)]
    return type(value), repr(value)


@pytest.mark.parametrize("case,make", CASES, ids=[c[0] for c in CASES])
def test_an_embedded_value_taken_in_place_is_what_the_fields_own_path_makes_of_it(case, make):
    data = make()
    fast = _encode(data)
    with without_compiled(*COMPILED):
        loop = _encode(data)
    with fields_own_path(NestDoc):
        slow = _encode(data)
    for got in (fast, loop):
        assert got[0] == slow[0], (got, slow)
        if got[0] == "ok":
            assert _shape(got[1]) == _shape(slow[1])
        else:
            assert got[1] == slow[1]  # the same paths (e.g. ``many.1.count``), messages and order


def test_the_table_covers_acceptance_and_refusal_at_every_depth():
    outcomes = {case: _encode(make())[0] for case, make in CASES}
    for where in ("one", "many.1", "inner.leaves"):
        assert {outcomes[c] for c in outcomes if c.startswith(f"{where}.count[")} == {"ok", "error"}
        assert {outcomes[c] for c in outcomes if c.startswith(f"{where}.text[")} == {"ok", "error"}
    for where in ("plain", "plains.1", "deep.plain", "deep.plains.0"):
        assert {outcomes[c] for c in outcomes if c.startswith(f"{where}.ratio[")} == {"ok", "error"}
    assert len(CASES) > 400


# the cases of a leaf's value (the codec's own refusals of a document's shape, unknown keys and
# spellings are its rules, not MongoEngine's: held above to the fields' own path only)
LEAF_CASES = [c for c in CASES if c[0] == "valid" or ("[" in c[0] and "=" not in c[0])
              or c[0] in ("ints-bool", "ints-float", "ints-huge", "texts-int", "texts-envelope", "inner-name-too-long")]


@pytest.mark.parametrize("case,make", LEAF_CASES, ids=[c[0] for c in LEAF_CASES])
def test_an_embedded_leaf_stores_what_mongoengine_stores_or_fails_with_its_message(case, make):
    data = make()
    kind, got = _encode(data)
    expected = me_errors(NestDoc, copy.deepcopy(data))
    if kind == "ok":
        assert expected == {}
        assert _plain(got) == _plain(NestDoc(**copy.deepcopy(data)).to_mongo().to_dict())
    else:
        assert dict(got) == expected


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_embedded_leaves_are_taken_in_place_without_calling_their_fields(monkeypatch):
    """The structural change: a valid nested document's text, number and ObjectId leaves, at
    every depth, call no field method: the compiled encoder calls neither ``_accepts`` nor a
    field method, the loop (without it) one ``_accepts`` per leaf and no field method."""
    asked = []
    real_accepts = codec._accepts
    monkeypatch.setattr(codec, "_accepts", lambda *a: asked.append(a) or codec._INVALID)
    called = []
    for cls in (NestLeaves, NestInts, NestTexts, NestInner, NestPlain, NestDeep):
        for fp in doc_plan(cls).fields:
            if fp.accept is not None:
                monkeypatch.setattr(fp, "to_python", lambda v, _n=fp.stored: called.append(_n) or v)
                monkeypatch.setattr(fp, "check", lambda v, _n=fp.stored: called.append(_n))
    data = base()
    for doc in (data["one"], *data["many"], data["inner"]["leaves"]):
        doc.pop("dflt", None)  # a default is not the caller's value: it goes through the field
    entered = []
    real_loop = codec._encode_doc
    monkeypatch.setattr(codec, "_encode_doc", lambda plan, *a: entered.append(plan.cls) or real_loop(plan, *a))
    doc_plan(NestDoc)
    out = codec.encode_new(NestDoc, data)
    assert asked == [] and called == []
    assert entered == []  # the whole document by its class's compiled encoder, the embedded ones by theirs
    entered.clear()
    monkeypatch.setattr(codec, "_accepts", lambda *a: asked.append(a) or real_accepts(*a))
    with without_compiled(NestDoc):
        assert codec.encode_new(NestDoc, base()) == out
    assert len(entered) == 1 + 14 and called == []  # the loop: entered per document, leaves in place
    assert len(asked) >= 14 and all(real_accepts(*a) is not codec._INVALID for a in asked)  # each by the one rule
    assert out["one"] == {"text": "hello", "short": "abc", "count": 5, "ratio": 0.5, "ref": REF, "must": "x", "dflt": 7}
    assert out["inner"]["nm"] == "in" and out["many"][1]["count"] == 2


# --- hydration -----------------------------------------------------------------------------------

def _stored() -> dict[str, Any]:
    son = codec.encode_new(NestDoc, base())
    return {"_id": ObjectId(), "__v": 0, **son, "createdAt": _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)}


def _state(doc: Any) -> Any:
    """Everything an instance holds: class, ``_data`` (embedded instances by their state; compared
    as a dict, as tests/models/test_hydrate.py does), flags, back-references."""
    if isinstance(doc, BaseDocument):
        instance = getattr(doc, "_instance", "none")
        return (type(doc), {k: _state(v) for k, v in doc._data.items()},
                doc._initialised, doc._created, doc._changed_fields, dict(doc._dynamic_fields),
                sorted(doc.__dict__), type(instance).__name__)
    if isinstance(doc, list):
        return ["list", *map(_state, doc)]
    return type(doc), repr(doc)


STORED_VARIANTS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("as-stored", lambda son: None),
    ("padded-text", lambda son: son["texts"].update(a="  padded  ")),
    ("text-not-str", lambda son: son["texts"].update(a=5)),
    ("text-str-subclass", lambda son: son["texts"].update(b=_Str(" sub "))),
    ("text-none", lambda son: son["texts"].update(a=None)),
    ("text-missing", lambda son: son["texts"].pop("b")),
    ("text-unknown-key", lambda son: son["texts"].update(z=" kept ")),
    ("ints-none", lambda son: son["ints"].update(a=None)),
    ("ints-missing", lambda son: son["ints"].pop("a")),
    ("ints-str", lambda son: son["ints"].update(b="7")),
    ("ints-unknown-key", lambda son: son["ints"].update(zz=[1])),
    ("ints-empty", lambda son: son.update(ints={})),
    ("texts-empty", lambda son: son.update(texts={})),
    ("embedded-not-a-dict", lambda son: son.update(ints=[1, 2])),
    ("list-item-not-a-dict", lambda son: son["many"].append("x")),
    ("list-not-a-list", lambda son: son.update(many={"text": "a"})),
    ("padded-leaf-in-list", lambda son: son["many"][0].update(text="  x  ")),
    ("unreadable-marker", lambda son: son["texts"].update(a="<unreadable>")),
]


@pytest.mark.parametrize("case,change", STORED_VARIANTS, ids=[c[0] for c in STORED_VARIANTS])
def test_a_hydrated_nested_document_is_what_from_son_builds(case, change):
    son = _stored()
    change(son)
    try:
        expected = NestDoc._from_son(copy.deepcopy(son))
    except Exception as error:  # corrupt data: hydrate lets MongoEngine raise its own error
        with pytest.raises(type(error)):
            hydration.hydrate(NestDoc, copy.deepcopy(son))
        return
    built = hydration.hydrate(NestDoc, copy.deepcopy(son))
    assert _state(built) == _state(expected)
    assert built == expected and built.to_mongo() == expected.to_mongo()
    assert built.to_dict() == expected.to_dict() and built.to_dict(masked=True) == expected.to_dict(masked=True)
    for child in (built.ints, built.texts, built.one, built.inner, *(built.many or [])):
        if isinstance(child, BaseDocument):
            assert isinstance(child._instance, weakref.ProxyType) and child._instance == built


def test_a_creates_answer_hydrates_its_embedded_documents_as_encoded_and_equals_a_read():
    data = base()
    data["texts"]["a"] = "  spaced  "
    son = {"_id": ObjectId(), **codec.encode_new(NestDoc, data), "__v": 0}
    created = hydration.hydrate_encoded(NestDoc, copy.deepcopy(son))
    read = hydration.hydrate(NestDoc, copy.deepcopy(son))
    assert _state(created) == _state(read) == _state(NestDoc._from_son(copy.deepcopy(son)))
    assert created.texts.a == "spaced"
    plan = hydration.encoded_plan(NestDoc)
    assert plan.keys["texts"][2][1] is hydration.encoded_plan(NestTexts)  # the embedded class's encoded plan
    assert hydration.encoded_plan(NestTexts).uniform == hydration._AS_IS  # its text taken as the codec left it
    assert hydration.read_plan(NestTexts).uniform == hydration._TEXT  # a read strips it


def test_hydrating_a_nested_document_stays_within_its_function_call_budget():
    """Each embedded document is built by its class's plan, resolved once, in ``_build`` itself;
    one of only its own fields, all read as they are or all stripped text, in one step. Function
    calls per document (cProfile's count, C functions included): for this one (twelve embedded
    documents, mostly of mixed field kinds, read key by key) 245 before, 203 after; for the ODM
    benchmark's LARGE_DOC_NESTED 479 before, 134 after (tests/unit/test_odm_benchmark.py)."""
    son = _stored()
    copies = [copy.deepcopy(son) for _ in range(20)]
    expected = [NestDoc._from_son(copy.deepcopy(son)) for _ in range(2)]
    hydration.hydrate(NestDoc, copy.deepcopy(son))  # plans built outside the count
    calls, built = calls_in(lambda: [hydration.hydrate(NestDoc, doc) for doc in copies])
    assert calls / len(copies) <= 205
    assert _state(built[0]) == _state(expected[0])


def test_a_mapping_that_is_not_a_dict_is_read_by_its_items_with_the_same_result():
    from collections.abc import Mapping

    class Odd(Mapping):  # type: ignore[type-arg]
        """A Mapping whose ``keys`` is a list: read by ``items``, never compared as a set."""

        def __init__(self, data: dict[str, Any]) -> None:
            self.data = data

        def __getitem__(self, key: str) -> Any:
            return self.data[key]

        def __iter__(self) -> Any:
            return iter(self.data)

        def __len__(self) -> int:
            return len(self.data)

        def keys(self) -> Any:  # type: ignore[override]
            return list(self.data)

    data = base()
    data["texts"], data["plain"] = Odd(data["texts"]), Odd(data["plain"])
    assert codec.encode_new(NestDoc, Odd(data)) == codec.encode_new(NestDoc, base())
    with pytest.raises(ValidationError) as caught:
        codec.encode_new(NestDoc, Odd({**base(), "plain": Odd({**plain(), "count": -1, "zz": 1})}))
    assert caught.value.errors == {"plain.zz": "unknown field 'zz'; known fields: text, short, count, ratio, ref",
                                   "plain.count": _me_message(NestPlain, "count", -1)}


def _me_message(cls: type, name: str, value: Any) -> str:
    from mongoengine.errors import ValidationError as MEValidationError

    try:
        cls._fields[name].validate(value)
    except MEValidationError as error:
        return str(error)
    raise AssertionError("valid")


# --- through a Database: what the caller gets ---------------------------------------------------

class NestSecret(AstroEmbeddedDocument):
    note = TextField(max_length=50, sensitive=True)
    score = NumberField(integer=True)


class NestVault(AstroDocument):
    """Embedded documents of only in-place fields, one of them with a sealed (personal) field."""

    plain = EmbeddedDocumentField(NestPlain)
    plains = RuleListField(EmbeddedDocumentField(NestPlain), max_length=3)
    ints = EmbeddedDocumentField(NestInts)
    secret = EmbeddedDocumentField(NestSecret)
    meta = {"collection": "nestVaults"}


@pytest.mark.parametrize("keyed", [False, True], ids=["no-key", "sealed"])
def test_create_find_and_update_return_what_from_son_makes_of_the_stored_document(keyed):
    import base64
    import uuid

    from astro_db import Database

    options: dict[str, Any] = {"encryption_key": base64.b64encode(b"k" * 32).decode()} if keyed else {"allow_plaintext_sensitive": True}
    db = Database(f"mongomock://localhost/nest{uuid.uuid4().hex[:8]}", models=[NestVault], audit=False, journal=False,
                  **options).connect()
    try:
        data = {"plain": plain(), "plains": [plain(count=1), plain(text=" y ")], "ints": {"a": 1, "b": 2},
                "secret": {"note": "  private  ", "score": 3}}
        created = db.create(NestVault, copy.deepcopy(data))
        stored = db.collection(NestVault).find_one({"_id": created.id})
        assert (stored["secret"]["note"] != "private") is keyed  # sealed at rest with a key
        lean = db.find_one(NestVault, {"id": created.id}, lean=True)  # opened, as a dict
        found = db.find_one(NestVault, {"id": created.id})
        expected = NestVault._from_son(copy.deepcopy(lean))
        for got in (created, found):
            assert _state(got) == _state(expected)
            assert got == expected and got.to_dict() == expected.to_dict()
            assert got.to_dict(masked=True) == expected.to_dict(masked=True)
            assert type(got.plain) is NestPlain and type(got.plains[1]) is NestPlain and type(got.secret) is NestSecret
            assert got.secret.note == "private" and got.plains[1].text == "y" and got.plain._instance == got
        updated = db.update(NestVault, {"id": created.id}, {"plain.count": 9})
        lean = db.find_one(NestVault, {"id": created.id}, lean=True)
        assert _state(updated) == _state(NestVault._from_son(copy.deepcopy(lean))) and updated.plain.count == 9
    finally:
        db.disconnect()


# --- top-level documents: a class's compiled encoder, by stored or by attribute names ----------------

class TopDoc(AstroDocument):
    """Every kind of in-place rule at the top level, spelled apart (stored names differ)."""

    mail = EmailField(db_field="eMail", required=True, min_length=6)
    role = ChoiceField(("Admin", "User"), ignore_case=True, default="user")  # a default its check refuses
    kind = ChoiceField(("a", "b"), default="b")
    label = TextField(max_length=5, default=" pad ")  # stored stripped (to_mongo), checked unstripped
    since = UTCDateTimeField(db_field="sinceAt", earliest=_dt.datetime(2000, 1, 1))
    stamp = UTCDateTimeField(default=_dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc))
    level = NumberField(integer=True, min_value=0, default=3)
    scores = RuleListField(NumberField(min_value=0, max_value=10), max_length=3)
    tags = RuleListField(TextField(min_length=1, max_length=4), min_length=1, max_length=3, required=True)
    owner = UserRefField(db_field="ownerId")
    meta = {"collection": "topDocs"}


class _Date(_dt.datetime):
    pass


UTC = _dt.timezone.utc
SINCE = _dt.datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


def top(**over: Any) -> dict[str, Any]:
    return {"eMail": " Ann@Example.COM ", "role": "admin", "sinceAt": SINCE, "tags": [" a ", "bb"], "ownerId": REF, **over}


_ATTRIBUTE = {"eMail": "mail", "sinceAt": "since", "ownerId": "owner"}

TOP_VALUES: list[tuple[str, list[Any]]] = [
    ("eMail", ["a@b.co", " A@B.Co ", "a@b.c", "a@b", "a b@c.de", "@b.co", "x" * 250 + "@b.co", "x" * 244 + "@b.co",
               "ｊｏｓé＠ｅｘａｍｐｌｅ．ｃｏｍ", "josé@example.com", _Str("a@b.co"), 5, None, ""]),
    ("role", ["Admin", "user", " USER ", "admin ", "root", "", 1, None, _Str("Admin"), "adm\u0131n"]),
    ("kind", ["a", " b ", "A", "c", None, 0]),
    ("label", ["", "abcde", " abcdef ", "abcdef", 3, None]),
    ("sinceAt", [_dt.datetime(2000, 1, 1, tzinfo=UTC), _dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
                 _dt.datetime(2001, 1, 1), _dt.datetime(2001, 1, 1, tzinfo=_dt.timezone(_dt.timedelta(hours=2))),
                 _dt.datetime(2001, 1, 1, tzinfo=bson_utc), _Date(2001, 1, 1, tzinfo=UTC), "2001-01-01T00:00:00Z",
                 "1999-01-01", _dt.date(2001, 1, 1), "junk", 5, None]),
    ("stamp", [_dt.datetime(2021, 1, 1, tzinfo=UTC), "2021-01-01", None, 5]),
    ("level", [0, 7, -1, 2.0, True, "3", None, 2**70]),
    ("scores", [[], [0, 10, 5.5], [11], [1, 2, 3, 4], [True], [1, "2"], [float("nan")], (1, 2), "12", None, [None]]),
    ("tags", [["a"], [], ["a", "b", "c", "d"], ["toolong"], [""], ["  "], [1], ["a", None], ("a",), "a", None,
              [_Str("a")], [" abcd "]]),
    ("ownerId", [_Oid("65f0c0ffee0000000000abce"), str(REF), "nope", None, 5]),
]


def _top_cases() -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    for spelling in ("stored", "attribute"):
        def spelled(doc: dict[str, Any], _s: str = spelling) -> dict[str, Any]:
            return {(_ATTRIBUTE.get(k, k) if _s == "attribute" else k): v for k, v in doc.items()}

        yield f"{spelling}:valid", lambda s=spelled: s(top())
        for field, values in TOP_VALUES:
            for n, value in enumerate(values):
                yield (f"{spelling}:{field}[{n}:{type(value).__name__}]",
                       lambda s=spelled, f=field, v=value: s(top(**{f: v})))
            yield f"{spelling}:{field}-missing", lambda s=spelled, f=field: s({k: v for k, v in top().items() if k != f})
    yield "mixed-spellings", lambda: {**top(), "mail": "b@c.de", "eMail": "b@c.de"}
    yield "one-by-each-spelling", lambda: {"mail": "b@c.de", **{k: v for k, v in top().items() if k != "eMail"}}
    yield "service-field", lambda: top(createdAt=SINCE)
    yield "service-field-by-attribute", lambda: top(created_at=SINCE)
    yield "version-key", lambda: top(__v=0)
    yield "chosen-id", lambda: top(_id=REF)
    yield "chosen-id-by-id", lambda: top(id=str(REF))
    yield "unknown-key", lambda: top(extra=1)


TOP_CASES = list(_top_cases())


def _encode_top_doc(cls: type, data: dict[str, Any]) -> tuple[str, Any]:
    try:
        out = codec.encode_new(cls, copy.deepcopy(data))
    except ValidationError as error:
        return "error", list(error.errors.items())
    return "ok", out


@pytest.mark.parametrize("case,make", TOP_CASES, ids=[c[0] for c in TOP_CASES])
def test_a_top_level_document_taken_in_place_is_what_the_fields_own_path_makes_of_it(case, make):
    data = make()
    fast = _encode_top_doc(TopDoc, data)
    with without_compiled(TopDoc):
        loop = _encode_top_doc(TopDoc, data)
    with fields_own_path(TopDoc):
        slow = _encode_top_doc(TopDoc, data)
    for got in (fast, loop):
        assert got[0] == slow[0], (got, slow)
        if got[0] == "ok":
            assert _shape(got[1]) == _shape(slow[1])  # values, types and key order
        else:
            assert got[1] == slow[1]
    if case.startswith("attribute:"):  # MongoEngine's own: the same stored document, or the same errors
        expected = me_errors(TopDoc, copy.deepcopy(data))
        if fast[0] == "ok":
            assert expected == {}
            assert _plain(fast[1]) == _plain(TopDoc(**copy.deepcopy(data)).to_mongo().to_dict())
        else:
            assert dict(fast[1]) == expected


def test_the_top_level_table_covers_acceptance_and_refusal_of_every_field_by_both_spellings():
    outcomes = {case: _encode_top_doc(TopDoc, make())[0] for case, make in TOP_CASES}
    for spelling in ("stored", "attribute"):
        for field, _ in TOP_VALUES:
            assert {outcomes[c] for c in outcomes if c.startswith(f"{spelling}:{field}[")} == {"ok", "error"}, field
    assert outcomes["stored:valid"] == outcomes["attribute:valid"] == "ok"
    assert outcomes["stored:role-missing"] == "error"  # the default its check refuses: the loop's error


def test_a_valid_top_level_document_calls_no_field_method_by_either_spelling(monkeypatch):
    """The structural change: a valid new document of a class whose fields all have an in-place
    rule is encoded by the class's compiled encoder straight from ``encode_new`` (no loop, no
    field call, no ``FieldPlan.accept`` call), by stored names or attribute names."""
    from astro_db.models import PlanetaryInsight, User

    plan = doc_plan(TopDoc)
    entered: list[type] = []
    real_loop = codec._encode_doc
    monkeypatch.setattr(codec, "_encode_doc", lambda p, *a: entered.append(p.cls) or real_loop(p, *a))
    called: list[str] = []
    for fp in [*plan.fields, plan.by_key["scores"].item, plan.by_key["tags"].item]:
        for method in ("to_python", "check", "to_mongo"):
            monkeypatch.setattr(fp, method, lambda v, _n=fp.stored, _m=method: called.append(f"{_n}.{_m}") or v)
    by_stored = codec.encode_new(TopDoc, top(scores=[1, 2.5]))
    by_name = codec.encode_new(TopDoc, {_ATTRIBUTE.get(k, k): v for k, v in top(scores=[1, 2.5]).items()})
    assert entered == [] and called == []
    assert by_stored == by_name == {"__v": 0, "eMail": "ann@example.com", "role": "Admin", "kind": "b", "label": "pad",
                                    "sinceAt": SINCE, "stamp": _dt.datetime(2020, 1, 1, tzinfo=UTC), "level": 3,
                                    "scores": [1, 2.5], "tags": ["a", "bb"], "ownerId": REF}
    assert list(by_stored) == [fp.stored for fp in plan.fields if fp.stored in by_stored]  # plan order
    monkeypatch.undo()
    # the models: a User and an insight, as the service's creates give them
    user = {"email": "Ann@Example.com", "name": " Ann ", "status": "inactive"}
    insight = {"user_id": REF, "date": SINCE, "energy_level": 72, "recommendations": [" a "], "summary": "s"}
    with without_compiled(User, PlanetaryInsight):
        expected = (codec.encode_new(User, user), codec.encode_new(PlanetaryInsight, insight))
    monkeypatch.setattr(codec, "_encode_doc", lambda p, *a: entered.append(p.cls) or real_loop(p, *a))
    assert (codec.encode_new(User, user), codec.encode_new(PlanetaryInsight, insight)) == expected
    assert entered == [] and expected[0] == {"__v": 0, "email": "ann@example.com", "name": "Ann", "status": "inactive"}
