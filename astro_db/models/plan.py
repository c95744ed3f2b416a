"""Per-class field plans: what the codec needs to know about each field, computed once.

A plan flattens MongoEngine's field metadata (stored name, default, required, whether the
field is an embedded document or a list, the bound methods to call) so the codec's hot loops
do plain attribute reads instead of ``isinstance`` chains and descriptor lookups.
"""

from __future__ import annotations

import itertools
import linecache
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bson import Binary, ObjectId
from mongoengine.base import BaseField, ComplexBaseField, ObjectIdField
from mongoengine.fields import BinaryField, DateTimeField, EmbeddedDocumentField, ListField, StringField

from .fields import _EMAIL as _EMAIL_PATTERN
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
    to_millisecond,
    to_utc,
)

__all__ = ["LEAF", "EMBEDDED", "LIST", "FieldPlan", "DocPlan", "doc_plan", "field_plan", "fast_encoder", "STEP_LEAF",
           "STEP_LEAF_RULE", "STEP_EMBEDDED", "STEP_LIST", "INVALID", "RULES"]

LEAF, EMBEDDED, LIST = "leaf", "embedded", "list"
# kept by the service on every write (timestamps, Mongoose's version key, the change records'
# revision and operation: astro_db.changes): never taken from a caller (``codec.encode_new``)
SERVICE_FIELDS = frozenset({"createdAt", "updatedAt", "__v", "_rev", "_op"})
# what a field's in-place rule (``FieldPlan.accept``) and the codec give back for a value they
# do not take: the field's own calls then decide, with their message
INVALID: Any = type("Invalid", (), {"__repr__": lambda self: "<invalid>", "__slots__": ()})()

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
                 "rule", "accept", "accept_converted", "list_bounds")

    def __init__(self, field: BaseField, name: str | None = None) -> None:
        self.field = field
        self.name = name or field.name
        self.stored = field.db_field
        self.required = bool(field.required)
        self.default = field.default
        self.default_callable = callable(self.default)  # read once: the codec inlines make_default
        keep_stored_forms(field)  # a BinaryField's, a DateTimeField's (at any depth of a container)
        self.to_python: Callable[[Any], Any] = field.to_python
        self.to_mongo: Callable[[Any], Any] = field.to_mongo
        if _free_form(field):  # a DictField, an untyped ListField: binary data kept as it is
            self.to_python, self.to_mongo = _keeping_bytes(field.to_python), _keeping_bytes(field.to_mongo)
        # to_mongo(to_python(x)) is to_python(x): the codec skips to_mongo after to_python
        self.mongo_is_python = _mongo_is_python(field)
        # to_python returns its argument (BaseField's own): hydration stores the value as read
        self.python_is_identity = type(field).to_python is BaseField.to_python and not isinstance(field, BinaryField)
        # MongoEngine's _validate checks choices and a validation callable, then calls validate
        self.check: Callable[[Any], None] = (
            field._validate if field.choices or field.validation is not None else field.validate)
        # the field's in-place rule (``RULES``): ``(kind, parameters)``, and ``accept``, its lines
        # compiled alone: the stored value of a value the rule takes as it is (without calling
        # to_python and check), else ``INVALID``; ``accept_converted``: it also decides a default
        # (which MongoEngine assigns without to_python: only rules that convert nothing)
        self.rule: tuple[str, tuple[Any, ...]] | None = _rule_of(field)
        self.accept: Callable[[Any], Any] | None = _compile_accept(self)
        self.accept_converted = self.rule is not None and self.rule[0] in _KEEPS_VALUE
        self.list_bounds = _list_bounds(field)
        self.sub: Any = None  # the DocPlan of an embedded document (EMBEDDED)
        self.item: Any = None  # the FieldPlan of a list's items (LIST)
        if isinstance(field, EmbeddedDocumentField):
            self.kind = EMBEDDED
            self.sub = doc_plan(field.document_type)
        elif isinstance(field, ListField) and field.field is not None:
            self.kind = LIST
            self.item = field_plan(field.field)
        else:
            self.kind = LEAF

    def make_default(self) -> Any:
        """The field's default (called if callable), as MongoEngine's ``__set__`` applies it."""
        default = self.default
        return default() if callable(default) else default


def keep_stored_forms(field: Any) -> None:
    """Make the MongoEngine fields in ``field`` (itself, or its items' field at any depth of a
    list or map) give values as BSON stores them, on the field object itself, so that every
    call of it (the codec's, hydration's, a container's ``to_mongo``/``to_python`` of its
    items, MongoEngine's own) does:

    - a ``BinaryField`` keeps a value's binary subtype. MongoEngine's ``to_mongo`` is
      ``Binary(value)``, which makes a ``Binary`` of any subtype a subtype 0: a value the Node
      service stored as a ``Buffer`` of subtype 0x80, or a UUID (subtype 4), came back changed
      once written through the service;
    - a ``DateTimeField`` (MongoEngine's own, as an app's model may declare it) gives a date as
      a read returns it: aware UTC, cut to the millisecond (``_as_stored_date``)."""
    while field is not None:
        if isinstance(field, BinaryField) and field.__dict__.get("to_mongo") is not _binary_to_mongo:
            field.to_mongo = _binary_to_mongo
            field.to_python = _binary_to_python
        elif type(field) is DateTimeField and not hasattr(field.__dict__.get("to_mongo"), "__wrapped__"):
            field.to_mongo = _as_stored_date(field.to_mongo)
            field.to_python = _as_stored_date(field.to_python)
        field = getattr(field, "field", None) if isinstance(field, ComplexBaseField) else None


def _binary_to_mongo(value: Any) -> Any:
    """A ``BinaryField``'s stored value: a ``Binary`` as it is (its subtype kept), a UUID as the
    Node driver's (subtype 4, the client's ``uuidRepresentation=standard``), ``bytes`` as they
    are (PyMongo sends them as subtype 0, the BSON ``Binary(value)`` makes, without its two
    copies of the data: docs/performance.md, "Large documents")."""
    if type(value) is bytes or isinstance(value, Binary):
        return value
    if isinstance(value, uuid.UUID):
        return Binary.from_uuid(value)
    return Binary(value)


def _binary_to_python(value: Any) -> Any:
    """A ``BinaryField``'s value as read, on every backend alike: ``bytes`` for subtype 0 (what
    PyMongo decodes it to), a ``Binary`` of its subtype for any other (a UUID, which PyMongo
    decodes subtype 4 to, as ``Binary.from_uuid``: the same bytes and subtype)."""
    if isinstance(value, Binary):
        return bytes(value) if value.subtype == 0 else value
    if isinstance(value, uuid.UUID):
        return Binary.from_uuid(value)
    return value


def _free_form(field: Any) -> bool:
    """Whether ``field`` is a container whose values are free-form, at every depth (``DictField()``,
    ``ListField()``, ``MapField(DictField())``): MongoEngine converts them by iterating whatever
    is not a string, so its own ``to_python`` and ``to_mongo`` would make a list of ints of bytes."""
    return isinstance(field, ComplexBaseField) and (field.field is None or _free_form(field.field))


class _Held:
    """Binary data inside a free-form value, out of the way of MongoEngine's conversion: neither
    iterable nor a mapping, so it is taken as it is (``_keeping_bytes``)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value


def _has_bytes(value: Any) -> bool:
    """Whether a free-form value holds bytes, or a datetime finer than the millisecond BSON
    stores (each taken care of by ``_hold``)."""
    if isinstance(value, bytes):
        return True
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_bytes(v) for v in value)
    return value.__class__ is datetime and value.microsecond % 1000 != 0


def _hold(value: Any) -> Any:
    if isinstance(value, bytes):
        return _Held(value)
    if value.__class__ is datetime:
        return to_millisecond(value)
    if isinstance(value, dict):
        return {k: _hold(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hold(v) for v in value]
    return value


def _release(value: Any) -> Any:
    if isinstance(value, _Held):
        return value.value
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (_Held, dict, list)):
                value[k] = _release(v)
    elif isinstance(value, list):
        for n, v in enumerate(value):
            if isinstance(v, (_Held, dict, list)):
                value[n] = _release(v)
    return value


def _as_stored_date(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` (MongoEngine ``DateTimeField``'s ``to_python`` or ``to_mongo``) with a date it
    gives back as the server stores and a read returns it: aware UTC, cut to the millisecond
    (``fields.to_utc``); anything else (a value it could not parse, for ``validate`` to refuse)
    as it gave it. Before, a create's answer held the naive value with its microseconds, a
    read the aware one without."""
    def as_stored(value: Any) -> Any:
        out = convert(value)
        return to_utc(out) if out.__class__ is datetime else out
    as_stored.__wrapped__ = convert  # type: ignore[attr-defined]
    return as_stored


def _keeping_bytes(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` (a free-form container's ``to_python`` or ``to_mongo``) with every ``bytes``
    value (a ``bson.Binary`` of any subtype included) given back as it is, not as a list of its
    byte values: the value the caller wrote, or the Node service stored, comes back as it was;
    and every datetime cut to the millisecond, as BSON stores it (``fields.to_millisecond``)."""
    def keeping(value: Any) -> Any:
        if not _has_bytes(value):
            return convert(value)
        return _release(convert(_hold(value)))
    keeping.__wrapped__ = convert  # type: ignore[attr-defined]
    return keeping


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


def _email_rule(field: BaseField) -> tuple[int | None, int | None] | None:
    """``(min_length, max_length)`` of an ``EmailField`` (that exact class, no ``choices`` or
    ``validation``), whose accepting an exact ASCII ``str`` the codec decides in place: its
    canonical form (``fields.canonical_email``'s ASCII way: stripped, lower-cased) within the
    bounds and matching the address pattern. Any other value (a non-ASCII one: NFKC folding) goes
    through ``to_python`` and ``check``. None for other fields."""
    if type(field) is not EmailField or field.choices or field.validation is not None:
        return None
    return field.min_length, field.max_length


def _choice_rule(field: BaseField) -> tuple[bool, bool, frozenset[str], dict[str, str]] | None:
    """``(strip, ignore_case, options, canonical spellings)`` of a ``ChoiceField`` (that exact
    class, no ``choices`` or ``validation``, options all exact ``str``): an exact ``str`` is
    stripped (when it strips), given its option's spelling (``ignore_case``) and taken when it is
    one of the options. None for other fields."""
    if type(field) is not ChoiceField or field.choices or field.validation is not None:
        return None
    if not all(type(option) is str for option in field.options):
        return None
    return bool(field.strip), bool(field.ignore_case), frozenset(field.options), dict(field._canonical)


def _date_rule(field: BaseField) -> tuple[datetime | None] | None:
    """``(earliest,)`` of a ``UTCDateTimeField`` (that exact class, no ``choices``,
    ``validation`` or ``not_future``, which depends on the clock): an exact ``datetime`` in
    ``timezone.utc`` (what ``to_utc`` gives back as it is) on or after ``earliest``. Any other
    (naive, another zone, PyMongo's UTC, a string, a time finer than the millisecond BSON keeps)
    goes through ``to_python`` and ``check``."""
    if type(field) is not UTCDateTimeField or field.choices or field.validation is not None or field.not_future:
        return None
    return (field.earliest,)


def _rule_of(field: BaseField) -> tuple[str, tuple[Any, ...]] | None:
    """The field's in-place rule as ``(kind, parameters)`` (a kind of ``RULES``), or None."""
    for kind, find in _FINDERS:
        found = find(field)
        if found is not None and found is not False:
            return kind, (() if found is True else found)
    return None


# The in-place rules, ONE definition each: the straight-line lines that take a value ``v`` as
# the field would store it (``v`` rebound to that) or ``return R`` (refused: the field's own
# ``to_python`` and ``check`` then decide, with their message). Both users read these lines:
# ``FieldPlan.accept`` is one rule's lines compiled alone (``R``: ``INVALID``), and
# ``fast_encoder`` writes them inline per field of a class (``R``: None, the codec's loop then
# encodes the whole document). A rule's parameters (bounds, options, patterns) are constants of
# the compiled function's namespace, named by kind and the field's position ``n``: never text in
# the source. tests/models/test_codec_plans.py holds every rule to the field's own calls.
def _text_lines(params: tuple[Any, ...], n: int | str, names: dict[str, Any]) -> list[str]:
    strip, low, high = params
    names[f"lo{n}"], names[f"hi{n}"] = low, high
    return ["if v.__class__ is not str: return R",
            *(["v = v.strip()"] if strip else []),
            *_length_lines(low, high, n)]


def _length_lines(low: int | None, high: int | None, n: int | str) -> list[str]:
    """``len(v)`` within ``lo{n}``..``hi{n}`` (one ``len`` for both bounds)."""
    if low is not None and high is not None:
        return [f"if not lo{n} <= len(v) <= hi{n}: return R"]
    return [*([f"if not len(v) >= lo{n}: return R"] if low is not None else []),
            *([f"if not len(v) <= hi{n}: return R"] if high is not None else [])]


def _number_lines(params: tuple[Any, ...], n: int | str, names: dict[str, Any]) -> list[str]:
    integer, low, high, below = params
    names[f"lo{n}"], names[f"hi{n}"], names[f"be{n}"] = low, high, below
    kind = ("if v.__class__ is not int: return R" if integer else
            "if v.__class__ is not int and (v.__class__ is not float or v - v != 0.0): return R")
    top, over = (f"be{n}", "<") if below is not None else (f"hi{n}", "<=") if high is not None else (None, None)
    if low is not None and top is not None:  # one chained comparison (the value is a finite number here)
        return [kind, f"if not lo{n} <= v {over} {top}: return R"]
    return [kind, *([f"if not v >= lo{n}: return R"] if low is not None else []),
            *([f"if not v {over} {top}: return R"] if top is not None else [])]


def _object_id_lines(params: tuple[Any, ...], n: int | str, names: dict[str, Any]) -> list[str]:
    return ["if v.__class__ is not ObjectId: return R"]


def _email_lines(params: tuple[Any, ...], n: int | str, names: dict[str, Any]) -> list[str]:
    low, high = params
    names[f"lo{n}"], names[f"hi{n}"], names[f"em{n}"] = low, high, _EMAIL_PATTERN.match
    return ["if v.__class__ is not str or not v.isascii(): return R",
            "v = v.strip().lower()",
            *_length_lines(low, high, n),
            f"if em{n}(v) is None: return R"]


def _choice_lines(params: tuple[Any, ...], n: int | str, names: dict[str, Any]) -> list[str]:
    strip, ignore_case, options, canonical = params
    names[f"op{n}"], names[f"ca{n}"] = options, canonical
    return ["if v.__class__ is not str: return R",
            *(["v = v.strip()"] if strip else []),
            *([f"v = ca{n}.get(v.lower(), v)"] if ignore_case else []),
            f"if v not in op{n}: return R"]


def _date_lines(params: tuple[Any, ...], n: int | str, names: dict[str, Any]) -> list[str]:
    (earliest,) = params
    names["datetime"], names["UTC"], names[f"lo{n}"] = datetime, timezone.utc, earliest
    return ["if v.__class__ is not datetime or v.tzinfo is not UTC or v.microsecond % 1000: return R",
            *([f"if v < lo{n}: return R"] if earliest is not None else [])]


RULES: dict[str, Callable[[tuple[Any, ...], int | str, dict[str, Any]], list[str]]] = {
    "text": _text_lines, "number": _number_lines, "object_id": _object_id_lines, "email": _email_lines,
    "choice": _choice_lines, "date": _date_lines}
_FINDERS: tuple[tuple[str, Callable[[BaseField], Any]], ...] = (
    ("text", _text_rule), ("number", _number_rule), ("object_id", _object_id_rule), ("email", _email_rule),
    ("choice", _choice_rule), ("date", _date_rule))
# rules whose accepted value is the value given (no strip, no case folding): they decide a
# default too, which MongoEngine assigns without to_python (``FieldPlan.accept_converted``)
_KEEPS_VALUE = frozenset({"number", "object_id", "date"})


def _rule_lines(fp: FieldPlan, n: int | str, names: dict[str, Any]) -> list[str] | None:
    """``fp``'s rule's lines (``RULES``), its constants put in ``names``; None without a rule."""
    rule = fp.rule
    if rule is None:
        return None
    return RULES[rule[0]](rule[1], n, names)


_COMPILED = itertools.count(1)


def _compile(lines: list[str], names: dict[str, Any], label: str, name: str) -> Any:
    """The function ``name`` of ``lines`` (fixed text; every value a constant of ``names``)."""
    names["__name__"] = __name__  # its frames are this module's
    source, filename = "\n".join(lines) + "\n", f"<astro_db codec: {label} #{next(_COMPILED)}>"  # one each
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks, profilers show it
    code = compile(source, filename, "exec")
    exec(code, names)  # noqa: S102 - source made here from fixed lines; every value is a namespace constant
    return names[name]


def _compile_accept(fp: FieldPlan) -> Callable[[Any], Any] | None:
    """``fp``'s rule compiled alone: ``accept(v)`` is the stored value, or ``INVALID``."""
    names: dict[str, Any] = {"ObjectId": ObjectId, "R": INVALID}
    lines = _rule_lines(fp, 0, names)
    if lines is None:
        return None
    source = ["def accept(v):", *("    " + line for line in lines), "    return v"]
    accept: Callable[[Any], Any] = _compile(source, names, f"rule {fp.rule[0]} of {fp.stored!s:.40}", "accept")  # type: ignore[index]
    return accept


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

    __slots__ = ("cls", "fields", "by_key", "known", "has_choices", "closed", "stored_keys", "steps", "fast",
                 "fast_keys", "named_keys", "fast_named", "new_keys", "new_named_keys")

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
        # the keys a document given to ``fast`` may hold (the stored names of the fields it takes)
        # and, for ``fast_named``, the same encoder reading attribute names, theirs; ``new_keys``,
        # ``new_named_keys``: the same without the service's fields (a caller's new document)
        self.fast_keys: frozenset[str] = frozenset()
        self.named_keys: frozenset[str] = frozenset()
        self.fast_named: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
        self.new_keys: frozenset[str] = frozenset()
        self.new_named_keys: frozenset[str] = frozenset()

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
        self.fast_named = fast_encoder(self, by_name=True) if self.fast is not None else None
        taken = [fp for fp in self.fields if _fast_value(fp, 0, {}) is not None] if self.fast is not None else []
        self.fast_keys = frozenset(fp.stored for fp in taken)
        self.named_keys = frozenset(fp.name for fp in taken) if self.fast_named is not None else frozenset()
        self.new_keys = frozenset(fp.stored for fp in taken if fp.stored not in SERVICE_FIELDS)
        self.new_named_keys = frozenset(fp.name for fp in taken if fp.stored not in SERVICE_FIELDS
                                        ) if self.fast_named is not None else frozenset()


# How the codec's document loop (``codec._encode_doc``) takes a field's value, by the field's plan:
# a value its in-place rule accepts as it is (``FieldPlan.accept``, the rule's lines of ``RULES``,
# which the compiled encoders inline), an embedded document or a list (their own encoders), or
# any other leaf (``to_python``, ``check``, ``to_mongo``).
STEP_LEAF, STEP_LEAF_RULE = "leaf", "leaf rule"
STEP_EMBEDDED, STEP_LIST = EMBEDDED, LIST


def _step(fp: FieldPlan) -> tuple[FieldPlan, str, str, DocPlan | None]:
    """``(plan, stored name, step, embedded document's DocPlan or None)``."""
    if fp.kind is EMBEDDED:
        return fp, fp.stored, STEP_EMBEDDED, fp.sub
    if fp.kind is LIST:
        return fp, fp.stored, STEP_LIST, None
    if fp.accept is not None:
        return fp, fp.stored, STEP_LEAF_RULE, None
    return fp, fp.stored, STEP_LEAF, None


def _closed(fp: FieldPlan) -> bool:
    """Whether every value the codec gives ``fp`` is a scalar or is built from plans only."""
    if fp.kind is LEAF:
        return type(fp.field) in _SCALAR_FIELDS
    if fp.kind is EMBEDDED:
        return bool(fp.sub.closed)
    return _closed(fp.item)


def fast_encoder(plan: DocPlan, by_name: bool = False) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    """The codec's encoder of a document of ``plan`` whose every value its field's rule takes in
    place, compiled once per class into straight-line code (no loop, no dispatch, the rules'
    bounds as constants), or None when a field that needs a value (required, or with a default)
    has no in-place rule (then the codec's loop serves).

    Given a ``dict`` whose keys are all in ``plan.fast_keys`` (the stored names of the fields it
    takes; ``by_name``: ``plan.named_keys``, their attribute names: the caller checks, so no key is
    unknown, given twice or of a field it does not take), it returns the stored document, fields in
    plan order, exactly as ``codec._encode_doc`` makes it, or None at the first value it does not
    take in place (a value a rule refuses, ``None`` or missing where the field is required or has
    a default the loop must work out: a callable one, or one its field refuses), and the codec's
    loop then encodes the whole document, with its errors. Each leaf is taken by its rule's lines
    (``RULES``, the one definition ``FieldPlan.accept`` compiles too); a left-out field with a
    constant default gets what the loop stores for it (``_stored_default``, worked out once);
    embedded documents go through their own encoder, lists of them or of ruled leaves (a
    ``RuleListField`` with no list rule) item by item. Values and names are never written into the
    source: each is a constant of the function's namespace.
    """
    if plan.stored_keys is None:
        return None
    names: dict[str, Any] = {"ObjectId": ObjectId, "R": None}
    lines = ["def encode(data):", "    out = {}"]
    for n, fp in enumerate(plan.fields):
        if by_name and plan.by_key.get(fp.name) is not fp:
            return None  # an attribute name that reads another field: the loop spells it out
        names[f"k{n}"], names[f"o{n}"] = (fp.name if by_name else fp.stored), fp.stored
        optional = fp.default is None and not fp.required  # None or missing: left out, as the codec's loop does
        body = _fast_value(fp, n, names)
        if body is None:
            if not optional:
                return None
            continue  # not in fast_keys: a document holding it goes to the loop
        lines.append(f"    v = data.get(k{n})")
        indent = "        "
        if optional:
            lines.append("    if v is not None:")
        else:
            default = _stored_default(fp)
            if default is _NO_DEFAULT:  # required, or a default the loop works out: missing, the loop decides
                lines.append("    if v is None: return R")
                indent = "    "
            else:
                names[f"d{n}"] = default
                lines.extend(["    if v is None:", f"        out[o{n}] = d{n}", "    else:"])
        lines.extend(indent + line for line in [*body, f"out[o{n}] = v"])
    lines.append("    return out")
    label = f"{plan.cls.__module__}.{plan.cls.__qualname__}{' by attribute name' if by_name else ''}"
    encode: Callable[[dict[str, Any]], dict[str, Any] | None] = _compile(lines, names, label, "encode")
    return encode


_NO_DEFAULT: Any = object()


def _stored_default(fp: FieldPlan) -> Any:
    """What the codec's loop stores for a left-out ``fp`` whose default is a constant scalar and
    whose field has an in-place rule (every call of such a field is the library's own, no clock:
    the same each time), worked out once by the loop's own steps: the rule's value when it decides
    a default (``accept_converted``), else ``check`` then ``to_mongo`` unless it gives the value
    back. ``_NO_DEFAULT`` for anything else (a callable default, a mutable one, one its field
    refuses): the loop then decides, with its error."""
    default = fp.default
    if fp.accept is None or fp.default_callable or type(default) not in _CONSTANT_DEFAULTS:
        return _NO_DEFAULT
    if fp.accept_converted:
        value = fp.accept(default)
        if value is not INVALID:
            return value
    try:
        fp.check(default)
    except Exception:  # noqa: BLE001 - refused (any error): left to the loop, which reports it
        return _NO_DEFAULT
    return default if fp.mongo_is_python and fp.python_is_identity else fp.to_mongo(default)


_CONSTANT_DEFAULTS = frozenset({str, int, float, bool, ObjectId, datetime})


def _fast_value(fp: FieldPlan, n: int, names: dict[str, Any]) -> list[str] | None:
    """The lines that take ``v`` in place for ``fast_encoder`` (``return R`` otherwise), or
    None when ``fp`` has no in-place rule."""
    if fp.kind is LEAF:
        return _rule_lines(fp, n, names)
    if fp.kind is EMBEDDED:
        if fp.sub.fast is None:
            return None
        names[f"sk{n}"], names[f"f{n}"] = fp.sub.fast_keys, fp.sub.fast
        return [f"if v.__class__ is not dict or not v.keys() <= sk{n}: return R",
                f"v = f{n}(v)",
                "if v is None: return R"]
    item = fp.item
    if fp.list_bounds is None or getattr(fp.field, "rule", None) is not None:
        return None
    low, high = fp.list_bounds
    names[f"lo{n}"], names[f"hi{n}"] = low, high
    head = ["if v.__class__ is not list: return R",
            *_length_lines(low, high, n),
            *(["if not v: return R"] if fp.required else [])]
    if item.kind is LEAF and item.accept is not None:  # each item by its rule's lines, inline (``v`` the item)
        return [*head, "items = []", "w = v", "for v in w:",
                *("    " + line for line in _rule_lines(item, f"{n}i", names) or ()),
                "    items.append(v)",
                "v = items"]
    if item.kind is not EMBEDDED or item.sub.fast is None:
        return None
    names[f"sk{n}"], names[f"f{n}"] = item.sub.fast_keys, item.sub.fast
    return [*head,
            "items = []",
            "for e in v:",
            f"    if e.__class__ is not dict or not e.keys() <= sk{n}: return R",
            f"    e = f{n}(e)",
            "    if e is None: return R",
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
