"""Per-class field plans: what the codec needs to know about each field, computed once.

A plan flattens MongoEngine's field metadata (stored name, default, required, whether the
field is an embedded document or a list, the bound methods to call) so the codec's hot loops
do plain attribute reads instead of ``isinstance`` chains and descriptor lookups.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from typing import Any

from bson import ObjectId
from mongoengine.base import BaseField, ObjectIdField
from mongoengine.fields import EmbeddedDocumentField, ListField, StringField

from .fields import (
    BoolField,
    ChoiceField,
    EmailField,
    NumberField,
    RuleListField,
    StrictObjectIdField,
    TextField,
    TimezoneField,
    UserRefField,
    UTCDateTimeField,
)

__all__ = ["LEAF", "EMBEDDED", "LIST", "FieldPlan", "DocPlan", "doc_plan", "field_plan", "fast_encoder", "STEP_LEAF",
           "STEP_LEAF_RULE", "STEP_EMBEDDED", "STEP_LIST"]

LEAF, EMBEDDED, LIST = "leaf", "embedded", "list"

_MONGO_IS_PYTHON = frozenset({BaseField.to_mongo, StrictObjectIdField.to_mongo, UTCDateTimeField.to_mongo})
# ChoiceField's: a strip, then (ignore_case) the one option of that lower-case spelling, whose own
# lower-case spelling gives it back; EmailField's: canonical_email folds until nothing changes
# (every code point checked, tests/models/test_codec_plans.py)
_IDEMPOTENT_TO_PYTHON = frozenset({BaseField.to_python, TextField.to_python, StrictObjectIdField.to_python,
                                   UserRefField.to_python, UTCDateTimeField.to_python, ChoiceField.to_python,
                                   EmailField.to_python})
# Fields whose stored value is never a dict or a list: each one's validate refuses anything but a
# string, number, boolean, ObjectId or datetime (and its to_mongo keeps it one). By exact class,
# so a subclass (which may override validate) is not trusted: its values are walked for keys.
_SCALAR_FIELDS = frozenset({TextField, EmailField, ChoiceField, TimezoneField, NumberField, BoolField,
                            StrictObjectIdField, UserRefField, UTCDateTimeField, ObjectIdField, StringField})


class FieldPlan:
    """One field: its names, kind, default and bound methods; ``sub``/``item`` for containers."""

    __slots__ = ("name", "stored", "field", "kind", "required", "default", "to_python",
                 "to_mongo", "mongo_is_python", "python_is_identity", "check", "sub", "item", "default_callable",
                 "text", "number", "object_id", "list_bounds")

    def __init__(self, field: BaseField, name: str | None = None) -> None:
        self.field = field
        self.name = name or field.name
        self.stored = field.db_field
        self.required = bool(field.required)
        self.default = field.default
        self.default_callable = callable(self.default)  # read once: the codec inlines make_default
        self.to_python: Callable[[Any], Any] = field.to_python
        self.to_mongo: Callable[[Any], Any] = field.to_mongo
        # to_mongo(to_python(x)) is to_python(x): the codec skips to_mongo after to_python
        self.mongo_is_python = _mongo_is_python(field)
        # to_python returns its argument (BaseField's own): hydration stores the value as read
        self.python_is_identity = type(field).to_python is BaseField.to_python
        # MongoEngine's _validate checks choices and a validation callable, then calls validate
        self.check: Callable[[Any], None] = (
            field._validate if field.choices or field.validation is not None else field.validate)
        # what the codec checks in place for a plain text or number field (``_text_rule``,
        # ``_number_rule``): a value they accept is taken without calling to_python and check
        self.text: tuple[bool, int | None, int | None] | None = _text_rule(field)
        self.number: tuple[bool, Any, Any, Any] | None = _number_rule(field)
        self.object_id = _object_id_rule(field)
        self.list_bounds = _list_bounds(field)
        self.sub: Any = None  # the DocPlan of an embedded document (EMBEDDED)
        self.item: Any = None  # the FieldPlan of a list's items (LIST)
        if isinstance(field, EmbeddedDocumentField):
            self.kind = EMBEDDED
            self.sub = doc_plan(field.document_type)
        elif isinstance(field, ListField):
            self.kind = LIST
            self.item = field_plan(field.field)
        else:
            self.kind = LEAF

    def make_default(self) -> Any:
        """The field's default (called if callable), as MongoEngine's ``__set__`` applies it."""
        default = self.default
        return default() if callable(default) else default


def _text_rule(field: BaseField) -> tuple[bool, int | None, int | None] | None:
    """``(strip, min_length, max_length)`` of a ``TextField`` (that exact class, with no
    ``choices`` or ``validation``: its own ``to_python`` and ``validate`` are what runs), whose
    accepting an exact ``str`` the codec decides in place: ``value.strip()`` (when it strips),
    then its length within the bounds. Anything it would refuse, or any other value, goes
    through ``to_python`` and ``check`` as before (the same messages). None for other fields."""
    if type(field) is not TextField or field.choices or field.validation is not None:
        return None
    return bool(field.strip), field.min_length, field.max_length


def _number_rule(field: BaseField) -> tuple[bool, Any, Any, Any] | None:
    """``(integer, min_value, max_value, below)`` of a ``NumberField`` (that exact class, no
    ``choices`` or ``validation``; its ``to_python`` and ``to_mongo`` are the identity), whose
    accepting an exact ``int`` (or a finite exact ``float`` where floats are allowed) within its
    bounds the codec decides in place; anything else goes through ``check``. None otherwise."""
    if type(field) is not NumberField or field.choices or field.validation is not None:
        return None
    if type(field).to_python is not BaseField.to_python or type(field).to_mongo is not BaseField.to_mongo:
        return None  # pragma: no cover - NumberField keeps BaseField's: checked by the test of these rules
    return bool(field.integer), field.min_value, field.max_value, field.below


def _object_id_rule(field: BaseField) -> bool:
    """Whether ``field`` is a ``StrictObjectIdField`` or ``UserRefField`` (those exact classes, no
    ``choices`` or ``validation``), whose ``to_python``, ``validate`` and ``to_mongo`` take an
    exact ``ObjectId`` as it is: the codec accepts one in place; anything else goes through them."""
    return type(field) in (StrictObjectIdField, UserRefField) and not field.choices and field.validation is None


def _list_bounds(field: BaseField) -> tuple[int | None, int | None] | None:
    """``(min_length, max_length)`` of a ``RuleListField`` whose ``validate_container`` is its own:
    the codec accepts an exact ``list`` of a length within them in place (anything else goes
    through ``validate_container``, which refuses it with its message). None otherwise."""
    if not isinstance(field, RuleListField) or type(field).validate_container is not RuleListField.validate_container:
        return None
    return field.min_length, field.max_length


def _mongo_is_python(field: BaseField) -> bool:
    """Whether ``field.to_mongo`` returns a value of ``field.to_python`` unchanged: its
    ``to_mongo`` is its ``to_python`` and that is idempotent (identity, a strip, an id parse, a
    UTC conversion). Only our own and MongoEngine's base classes are trusted, by exact method."""
    cls = type(field)
    return cls.to_mongo in _MONGO_IS_PYTHON and cls.to_python in _IDEMPOTENT_TO_PYTHON


class DocPlan:
    """A Document or EmbeddedDocument class: its field plans in order and every key spelling."""

    __slots__ = ("cls", "fields", "by_key", "known", "has_choices", "closed", "stored_keys", "steps", "fast")

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.fields: tuple[FieldPlan, ...] = ()
        self.by_key: dict[str, FieldPlan] = {}
        self.known = ""
        self.has_choices = False
        # every key of what the codec makes of a document is a stored name of a plan: its values
        # are scalars (``_SCALAR_FIELDS``), embedded documents and lists of these, nothing free-form
        self.closed = False
        # every field's stored name, when each one is the key ``by_key`` reads that field by: a
        # document whose keys are all in it has no unknown key and none given twice (None otherwise)
        self.stored_keys: frozenset[str] | None = None
        # per field, in order, how the codec encodes its value (``_steps``)
        self.steps: tuple[tuple[FieldPlan, str, str, DocPlan | None], ...] = ()
        # the codec's straight-line encoder of a valid document of this class (``fast_encoder``)
        self.fast: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None

    def build(self) -> None:
        cls = self.cls
        self.fields = tuple(FieldPlan(cls._fields[name], name) for name in cls._fields_ordered)
        for fp in self.fields:
            self.by_key[fp.name] = fp
            self.by_key[fp.stored] = fp
            if fp.stored == "_id":
                self.by_key["id"] = fp
        self.known = ", ".join(fp.stored for fp in self.fields)
        self.has_choices = any(fp.field.choices for fp in self.fields)
        self.closed = all(map(_closed, self.fields))
        self.settle()

    def settle(self) -> None:
        """``stored_keys`` and ``steps``, from ``fields`` and ``by_key`` (``build`` calls it)."""
        self.stored_keys = None
        if all(self.by_key.get(fp.stored) is fp for fp in self.fields):
            self.stored_keys = frozenset(fp.stored for fp in self.fields)
        self.steps = tuple(map(_step, self.fields))
        self.fast = fast_encoder(self)


# How the codec's document loop (``codec._encode_doc``) takes a field's value, by the field's plan:
# a text, number or ObjectId value its rule accepts as it is (``FieldPlan.text``, ``.number``,
# ``.object_id``: ``codec._accepts``, the one definition of those rules outside the compiled
# encoders), an embedded document or a list (their own encoders), or any other leaf
# (``to_python``, ``check``, ``to_mongo``).
STEP_LEAF, STEP_LEAF_RULE = "leaf", "leaf rule"
STEP_EMBEDDED, STEP_LIST = EMBEDDED, LIST


def _step(fp: FieldPlan) -> tuple[FieldPlan, str, str, DocPlan | None]:
    """``(plan, stored name, step, embedded document's DocPlan or None)``."""
    if fp.kind is EMBEDDED:
        return fp, fp.stored, STEP_EMBEDDED, fp.sub
    if fp.kind is LIST:
        return fp, fp.stored, STEP_LIST, None
    if fp.number is not None or fp.text is not None or fp.object_id:
        return fp, fp.stored, STEP_LEAF_RULE, None
    return fp, fp.stored, STEP_LEAF, None


def _closed(fp: FieldPlan) -> bool:
    """Whether every value the codec gives ``fp`` is a scalar or is built from plans only."""
    if fp.kind is LEAF:
        return type(fp.field) in _SCALAR_FIELDS
    if fp.kind is EMBEDDED:
        return bool(fp.sub.closed)
    return _closed(fp.item)


def fast_encoder(plan: DocPlan) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    """The codec's encoder of a document of ``plan`` whose every value its field's rule takes in
    place, compiled once per class into straight-line code (no loop, no dispatch, the rules'
    bounds as constants), or None when a field has no such rule (then the codec's loop serves).

    Given a ``dict`` whose keys are all stored names (``stored_keys``: the caller checks), it
    returns the stored document, fields in plan order, exactly as ``codec._encode_doc`` makes it,
    or None at the first value it does not take in place (a value of another type, out of its
    bounds, ``None`` or missing where the field is required or has a default other than a
    number's or an ObjectId's constant one, a list out of its bounds or required and empty, any
    value of a field with no in-place rule: such a field may only be missing), and the codec's
    loop then encodes the whole document, with its errors. It applies the rules of ``codec._accepts`` (text: an exact ``str``, stripped if
    the field strips, its length within bounds; numbers: an exact ``int``, or a finite exact
    ``float`` where floats are allowed, within bounds, ``below`` taking the place of
    ``max_value``; an exact ``ObjectId``), embedded documents by their own encoder, and lists of
    them (a ``RuleListField`` with no list rule) item by item. Values and names are never
    written into the source: each is a constant of the function's namespace.
    """
    if plan.stored_keys is None:
        return None
    names: dict[str, Any] = {"ObjectId": ObjectId, "__name__": __name__}  # its frames are this module's
    lines = ["def encode(data):", "    out = {}"]
    for n, fp in enumerate(plan.fields):
        names[f"k{n}"] = fp.stored
        optional = fp.default is None and not fp.required  # None or missing: left out, as the codec's loop does
        body = _fast_value(fp, n, names)
        if body is None:
            if not optional:
                return None
            # a field with no in-place rule, left out of most new documents (an id the service
            # makes, its dates): missing, left out; given, the loop encodes the document (looked
            # at first, before any value is taken)
            lines.insert(1, f"    if data.get(k{n}) is not None: return None")
            continue
        if optional:
            lines.extend([f"    v = data.get(k{n})", "    if v is not None:"])
            indent = "        "
        elif (fp.number is not None or fp.object_id) and fp.default is not None and not fp.default_callable:
            # a constant default, checked by the same rule as a given value (the loop takes a
            # number's or an ObjectId's default by its rule too: ``_accepts`` ignores ``converted``)
            names[f"d{n}"] = fp.default
            lines.extend([f"    v = data.get(k{n})", f"    if v is None: v = d{n}"])
            indent = "    "
        else:  # another default to apply, or a required field: when missing the codec's loop
            # decides (looked at first, before any value is taken)
            lines.insert(1, f"    if data.get(k{n}) is None: return None")
            lines.append(f"    v = data[k{n}]")
            indent = "    "
        lines.extend(indent + line for line in [*body, f"out[k{n}] = v"])
    lines.append("    return out")
    source, filename = "\n".join(lines) + "\n", f"<astro_db codec: {plan.cls.__module__}.{plan.cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks, profilers show it
    code = compile(source, filename, "exec")
    exec(code, names)  # noqa: S102 - source made here from fixed lines; every value is a namespace constant
    encode: Callable[[dict[str, Any]], dict[str, Any] | None] = names["encode"]
    return encode


def _fast_value(fp: FieldPlan, n: int, names: dict[str, Any]) -> list[str] | None:
    """The lines that take ``v`` in place for ``fast_encoder`` (``return None`` otherwise), or
    None when ``fp`` has no in-place rule."""
    if fp.text is not None:
        strip, low, high = fp.text
        names[f"lo{n}"], names[f"hi{n}"] = low, high
        return ["if v.__class__ is not str: return None",
                *(["v = v.strip()"] if strip else []),
                *([f"if not len(v) >= lo{n}: return None"] if low is not None else []),
                *([f"if not len(v) <= hi{n}: return None"] if high is not None else [])]
    if fp.number is not None:
        integer, low, high, below = fp.number
        names[f"lo{n}"], names[f"hi{n}"], names[f"be{n}"] = low, high, below
        return [("if v.__class__ is not int: return None" if integer else
                 "if v.__class__ is not int and (v.__class__ is not float or v - v != 0.0): return None"),
                *([f"if not v >= lo{n}: return None"] if low is not None else []),
                *([f"if not v < be{n}: return None"] if below is not None else
                  [f"if not v <= hi{n}: return None"] if high is not None else [])]
    if fp.object_id:
        return ["if v.__class__ is not ObjectId: return None"]
    if fp.kind is EMBEDDED:
        if fp.sub.fast is None:
            return None
        names[f"sk{n}"], names[f"f{n}"] = fp.sub.stored_keys, fp.sub.fast
        return [f"if v.__class__ is not dict or not v.keys() <= sk{n}: return None",
                f"v = f{n}(v)",
                "if v is None: return None"]
    item = fp.item
    if (fp.kind is not LIST or fp.list_bounds is None or getattr(fp.field, "rule", None) is not None
            or item.kind is not EMBEDDED or item.sub.fast is None):
        return None
    low, high = fp.list_bounds
    names[f"lo{n}"], names[f"hi{n}"], names[f"sk{n}"], names[f"f{n}"] = low, high, item.sub.stored_keys, item.sub.fast
    return ["if v.__class__ is not list: return None",
            *([f"if not len(v) >= lo{n}: return None"] if low is not None else []),
            *([f"if not len(v) <= hi{n}: return None"] if high is not None else []),
            *(["if not v: return None"] if fp.required else []),
            "items = []",
            "for e in v:",
            f"    if e.__class__ is not dict or not e.keys() <= sk{n}: return None",
            f"    e = f{n}(e)",
            "    if e is None: return None",
            "    items.append(e)",
            "v = items"]


_DOC_PLANS: dict[type, DocPlan] = {}
_FIELD_PLANS: dict[int, FieldPlan] = {}


def doc_plan(cls: type[Any]) -> DocPlan:
    """The (cached) plan of a document class, published only once fully built (thread-safe)."""
    plan = _DOC_PLANS.get(cls)
    if plan is None:
        plan = DocPlan(cls)
        plan.build()
        plan = _DOC_PLANS.setdefault(cls, plan)
    return plan


def field_plan(field: BaseField) -> FieldPlan:
    """The (cached) plan of a single field object, e.g. a list's item field."""
    plan = _FIELD_PLANS.get(id(field))
    if plan is None or plan.field is not field:
        plan = _FIELD_PLANS[id(field)] = FieldPlan(field)
    return plan
