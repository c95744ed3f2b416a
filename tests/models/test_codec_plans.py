"""The codec's field plans: the shortcuts they take give what MongoEngine's full calls give."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pytest
from bson import ObjectId
from bson.tz_util import utc as bson_utc
from mongoengine.base import BaseField

from astro_db.models import MODELS
from astro_db.models.fields import (
    ChoiceField,
    EmailField,
    NumberField,
    StrictObjectIdField,
    TextField,
    UserRefField,
    UTCDateTimeField,
)
from astro_db.models.plan import EMBEDDED, LIST, FieldPlan, doc_plan, field_plan

SAMPLES: list[Any] = [
    "  Padded text  ", "plain", "", "MiXeD@Example.COM ", "5f0c2b9e8a1d4c3b2a190807", ObjectId(), 0, 7, -3.5, True,
    None, _dt.datetime(2020, 1, 1), _dt.datetime(2020, 1, 1, 3, tzinfo=_dt.timezone(_dt.timedelta(hours=2))),
    _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc), _dt.date(2021, 5, 6), "2021-05-06T10:00:00+02:00",
    "2021-05-06", "not a date", [1, 2], {"a": 1},
]


def every_leaf_plan() -> list[FieldPlan]:
    plans: list[FieldPlan] = []

    def walk(fp: FieldPlan) -> None:
        if fp.kind == EMBEDDED:
            for sub in fp.sub.fields:
                walk(sub)
        elif fp.kind == LIST:
            walk(fp.item)
        else:
            plans.append(fp)

    for model in MODELS.values():
        for fp in doc_plan(model).fields:
            walk(fp)
    return plans


def _name(fp: FieldPlan) -> str:
    return f"{type(fp.field).__name__}:{fp.stored}"


MONGO_IS_PYTHON = [fp for fp in every_leaf_plan() if fp.mongo_is_python]
PYTHON_IS_IDENTITY = [fp for fp in every_leaf_plan() if fp.python_is_identity]


def test_the_shortcuts_apply_to_the_models_common_fields() -> None:
    assert {type(fp.field).__name__ for fp in MONGO_IS_PYTHON} >= {"TextField", "NumberField", "UTCDateTimeField"}
    assert {type(fp.field).__name__ for fp in PYTHON_IS_IDENTITY} >= {"NumberField"}


@pytest.mark.parametrize("fp", MONGO_IS_PYTHON, ids=_name)
def test_skipping_to_mongo_after_to_python_changes_nothing(fp: FieldPlan) -> None:
    for sample in SAMPLES:
        python = fp.to_python(sample)
        assert fp.to_mongo(python) == python and type(fp.to_mongo(python)) is type(python), sample


def test_fields_that_change_values_in_to_mongo_are_not_skipped() -> None:
    # trusted by exact method: their own to_python is idempotent (the two tests below)
    assert field_plan(EmailField()).mongo_is_python and field_plan(ChoiceField(["a"])).mongo_is_python

    class Suffixed(EmailField):
        def to_python(self, value: Any) -> Any:
            return f"{value}x"

    assert not field_plan(Suffixed()).mongo_is_python  # a subclass overriding it is not trusted

    class Upper(TextField):
        def to_mongo(self, value: Any) -> Any:
            return str(value).upper()

    class Shouting(TextField):
        def to_python(self, value: Any) -> Any:
            return f"{value}!"

    assert not field_plan(Upper()).mongo_is_python and not field_plan(Shouting()).mongo_is_python
    assert field_plan(TextField()).mongo_is_python and field_plan(UTCDateTimeField()).mongo_is_python


def test_the_validate_shortcut_is_taken_only_without_choices_or_a_validation_callable() -> None:
    def no_sun(value: Any) -> None:
        if value == "Sun":
            raise ValueError("no")

    plain, with_choices, with_callable = TextField(), TextField(choices=["a"]), TextField(validation=no_sun)
    assert field_plan(plain).check == plain.validate
    assert field_plan(with_choices).check == with_choices._validate
    assert field_plan(with_callable).check == with_callable._validate
    assert BaseField._validate is not BaseField.validate


@pytest.mark.parametrize("fp", PYTHON_IS_IDENTITY, ids=_name)
def test_hydration_skips_to_python_only_where_it_is_the_identity(fp: FieldPlan) -> None:
    for sample in SAMPLES:
        assert fp.to_python(sample) is sample


def test_containers_and_converting_fields_are_never_taken_as_is() -> None:
    for model in MODELS.values():
        for fp in doc_plan(model).fields:
            if fp.kind in (EMBEDDED, LIST) or type(fp.field).to_python is not BaseField.to_python:
                assert not fp.python_is_identity, fp.stored


@pytest.mark.parametrize("field", [ChoiceField(["a", "B"]), ChoiceField(["Low", "LOW", "high", "Ärger", "ß"], ignore_case=True),
                                   ChoiceField([" padded ", "x"], ignore_case=True)], ids=["exact", "ignore-case", "padded"])
def test_a_choice_fields_to_python_is_idempotent_so_its_to_mongo_can_be_skipped(field: ChoiceField) -> None:
    samples = [*SAMPLES, "a", " A ", "b", "B", "low", " LOW ", "HIGH", "äRGER", "SS", "ẞ", "\u00df", " padded ", "PADDED", 5]
    for sample in samples:
        once = field.to_python(sample)
        assert field.to_python(once) == once and type(field.to_python(once)) is type(once), sample
        assert field.to_mongo(once) == once, sample


def test_an_email_fields_to_python_is_idempotent_for_every_code_point_it_changes() -> None:
    """``canonical_email`` (NFKC, lower case, strip, until nothing changes) gives a spelling it
    gives back: checked on every code point that NFKC or lower-casing changes, alone, in an
    address, doubled after ASCII, and upper-cased between spaces (the whole range was checked
    once, about 4.4 million strings, with no exception)."""
    import sys
    import unicodedata

    field = EmailField()
    changed = [chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF
               and (unicodedata.normalize("NFKC", chr(cp)) != chr(cp) or chr(cp).lower() != chr(cp))]
    assert len(changed) > 5000
    for c in changed:
        for sample in (c, c + "@Example.COM", "Ab" + c + c + "@x.y", " " + c.upper() + " "):
            once = field.to_python(sample)
            assert field.to_python(once) == once, (hex(ord(c)), sample)


# --- values accepted in place by a field's rule (plan.RULES: text, numbers, ids, emails, choices, dates) ----

class _Str(str):
    pass


class _Date(_dt.datetime):
    pass


RULE_SAMPLES: list[Any] = [
    *SAMPLES, " ", "\t x \n", "x" * 5, "x" * 300, "é" * 3, _Str(" sub "), 1, -1, 0.5, 100, 101, 99.999, 1e308,
    float("inf"), float("-inf"), float("nan"), 2**70, -(2**70), False, 360, 359.9999, -0.0, 12.0, 10, 10.0, 9.999, -1.0001,
    "ab", " ab ", "abcd", "abcde", "a",
    # emails (ASCII: the rule's; others: canonical_email's NFKC way) and choices
    "a@b.co", " A@B.Co ", "a@b", "a b@c.de", "@b.co", "x" * 250 + "@b.co", "x" * 244 + "@b.co", "ｊｏｓé＠ｅｘａｍｐｌｅ．ｃｏｍ",
    "josé@example.com", "active", " active ", "Active", "ACTIVE ", "deleted", "admin", "user", " User", "act\u0131ve",
    # dates: exact UTC ones (the rule's), before an earliest bound, other zones, PyMongo's UTC, subclasses
    _dt.datetime(1899, 12, 31, 23, 59, tzinfo=_dt.timezone.utc), _dt.datetime(1900, 1, 1, tzinfo=_dt.timezone.utc),
    _dt.datetime(2999, 1, 1, tzinfo=_dt.timezone.utc), _dt.datetime(2020, 1, 1, tzinfo=bson_utc),
    _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone(_dt.timedelta(0))), _Date(2020, 1, 1, tzinfo=_dt.timezone.utc),
]
def _named(field: Any) -> FieldPlan:
    field.name = field.db_field = "x"
    return FieldPlan(field)


# the models' plain fields, and shapes of them the models may not have (no bounds, below, no strip)
class _Oid(ObjectId):
    pass


RULE_SAMPLES.extend([_Oid(), ObjectId(), str(ObjectId())])
RULED = [fp for fp in every_leaf_plan() if fp.accept is not None] + [
    _named(StrictObjectIdField()), _named(UserRefField()),
    _named(NumberField()), _named(NumberField(integer=True)), _named(NumberField(min_value=-1, below=10)),
    _named(NumberField(max_value=0.5)), _named(TextField()), _named(TextField(min_length=2, max_length=4, strip=False)),
    _named(EmailField()), _named(EmailField(min_length=6, max_length=20)),
    _named(ChoiceField(("active", "user"))), _named(ChoiceField(("Active", "User"), ignore_case=True)),
    _named(ChoiceField((" active ",), strip=False)), _named(ChoiceField(("active",), ignore_case=True, strip=False)),
    _named(UTCDateTimeField()), _named(UTCDateTimeField(earliest=_dt.datetime(1900, 1, 1)))]


def _reference(fp: FieldPlan, raw: Any, converted: bool) -> tuple[str, Any]:
    """What ``_encode_field`` did before the rules: ``to_python``, ``check``, ``to_mongo``."""
    from mongoengine.errors import ValidationError as MEValidationError

    value = raw if converted else fp.to_python(raw)
    try:
        fp.check(value)
    except MEValidationError as error:
        return "error", str(error)
    return "ok", value if fp.mongo_is_python and (not converted or fp.python_is_identity) else fp.to_mongo(value)


def test_the_rules_cover_the_models_plain_text_number_id_email_choice_and_date_fields() -> None:
    ruled = {"TextField", "NumberField", "UserRefField", "StrictObjectIdField", "EmailField", "ChoiceField",
             "UTCDateTimeField"}
    assert {type(fp.field).__name__ for fp in RULED} == ruled
    assert {type(fp.field).__name__ for fp in every_leaf_plan() if fp.accept is not None} == ruled
    assert all(fp.rule is None or fp.rule[0] != "text" for fp in every_leaf_plan() if type(fp.field) is not TextField)
    assert field_plan(TextField(choices=("a",))).rule is None and field_plan(TextField(validation=bool)).rule is None
    # a date bounded by the clock, a choice of options that are not all exact strings: no rule
    assert field_plan(UTCDateTimeField(not_future=True)).rule is None
    assert field_plan(ChoiceField((_Str("a"),))).rule is None and field_plan(EmailField(validation=bool)).rule is None


def test_every_rule_is_one_definition_read_by_both_the_compiled_rule_and_the_compiled_encoders() -> None:
    """``plan.RULES`` is the only text of the rules: ``FieldPlan.accept`` is a rule's lines
    compiled alone and ``fast_encoder`` writes the same lines inline (a changed rule changes both)."""
    import linecache

    from astro_db.models import User
    from astro_db.models.plan import RULES

    assert {fp.rule[0] for fp in RULED} == set(RULES)
    plan = doc_plan(User)
    source = "".join(linecache.getlines(plan.fast.__code__.co_filename))
    for n, fp in enumerate(plan.fields):
        if fp.accept is not None:
            names: dict[str, Any] = {}
            lines = RULES[fp.rule[0]](fp.rule[1], n, names)
            assert all(line in source for line in lines), fp.stored  # inline in the class's encoder
            alone = "".join(linecache.getlines(fp.accept.__code__.co_filename))
            assert all(line in alone for line in RULES[fp.rule[0]](fp.rule[1], 0, {})), fp.stored
            # no name, bound or option in the source: constants of the namespace only
            assert repr(fp.stored) not in source and all(repr(v) not in source for v in names.values() if type(v) is str)
            assert all(repr(option) not in source for option in (fp.rule[1][2] if fp.rule[0] == "choice" else ()))


@pytest.mark.parametrize("fp", RULED, ids=_name)
@pytest.mark.parametrize("converted", [False, True])
def test_a_value_a_rule_accepts_in_place_is_what_the_field_makes_of_it_and_a_refusal_keeps_its_message(
        fp: FieldPlan, converted: bool) -> None:
    from astro_db.models.codec import _INVALID, _accepts, _encode_doc, _encode_field
    from astro_db.models.plan import DocPlan

    for raw in RULE_SAMPLES:
        if raw is None:
            continue
        want = _reference(fp, raw, converted)
        accepted = _accepts(fp, raw, converted)
        if accepted is not _INVALID:  # taken in place: exactly what the field would have stored
            assert want == ("ok", accepted) and type(want[1]) is type(accepted), raw
        errors: dict[str, str] = {}
        got = _encode_field(fp, raw, "f", errors, None, converted)
        assert (("error", errors["f"]) if got is _INVALID else ("ok", got)) == want, raw
        if not converted and fp.stored is not None:  # the inlined test of _encode_doc, on a document of this field
            plan = DocPlan(type("Doc", (), {}))
            plan.fields, plan.by_key = (fp,), {fp.name: fp, fp.stored: fp}
            plan.settle()
            errors = {}
            out = _encode_doc(plan, {fp.name: raw}, "", errors, None)
            assert (("error", errors[fp.stored]) if out is _INVALID else ("ok", out[fp.stored])) == want, raw


def test_a_list_of_plain_text_items_is_checked_in_place_with_the_same_results() -> None:
    from astro_db.models import PlanetaryInsight
    from astro_db.models.codec import _INVALID, _encode_list

    fp = doc_plan(PlanetaryInsight).by_key["recommendations"]
    assert fp.item.rule is not None and fp.item.rule[0] == "text"
    for items in (["  a  ", "b"], ["ok", ""], ["x" * 1000], ["fine", 3], [_Str(" s ")], []):
        errors: dict[str, str] = {}
        got = _encode_list(fp, items, "recommendations", errors, None, False)
        item_results = [_reference(fp.item, entry, False) for entry in items]
        failed = {f"recommendations.{i}": r[1] for i, r in enumerate(item_results) if r[0] == "error"}
        if failed:
            assert got is _INVALID and errors == failed, items
        elif got is not _INVALID:
            assert got == [r[1] for r in item_results], items


def test_a_rule_lists_length_is_accepted_in_place_with_the_same_results_as_validate_container() -> None:
    from astro_db.models import PlanetaryInsight
    from astro_db.models.codec import _INVALID, _encode_list
    from astro_db.models.fields import RuleListField

    bounded = RuleListField(TextField(), min_length=1, max_length=2)
    bounded.name = bounded.db_field = "x"
    for fp in (doc_plan(PlanetaryInsight).by_key["recommendations"], FieldPlan(bounded)):
        assert fp.list_bounds is not None
        slow = FieldPlan(fp.field)
        slow.list_bounds = None  # the way every list went before: validate_container
        for items in ([], ["a"], ["a", "b"], ["a", "b", "c"], ("a",), "ab", None, {"a": 1}, ["x"] * 1000):
            results = []
            for plan in (fp, slow):
                errors: dict[str, str] = {}
                got = _encode_list(plan, items, "f", errors, None, False)
                results.append(("error", errors) if got is _INVALID else ("ok", got))
            assert results[0] == results[1], items
