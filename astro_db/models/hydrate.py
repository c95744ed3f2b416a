"""``hydrate``: build a model instance from a stored document, the read path.

It produces what ``Model._from_son(son)`` produces (same ``_data``, defaults, embedded
``_instance`` back-references, ``_initialised``, ``_created=False``, empty ``_changed_fields``,
unknown stored keys kept in ``_data``) but assigns the instance's slots directly instead of
going through ``__init__``'s per-field ``setattr`` machinery. When blinker signal receivers
are connected to ``pre_init`` / ``post_init`` it falls back to ``_from_son`` so they still fire.

Each class's read plan (``ReadPlan``) holds its builder (``ReadPlan.build``): straight-line code
compiled once per class (``compiled_builder``) for the common stored shape, which hands any
other shape to the plan's loop (``_build``), the reference both are held to.
"""

from __future__ import annotations

import gc
import linecache
import types
import weakref
from datetime import datetime, timezone
from functools import partial
from typing import Any

from bson import SON, ObjectId
from mongoengine import signals
from mongoengine.base import BaseDocument, ObjectIdField
from mongoengine.document import EmbeddedDocument

from .fields import (
    _BSON_EPOCH,
    _BSON_UTC,
    _EPOCH,
    ChoiceField,
    EmailField,
    StrictObjectIdField,
    TextField,
    UserRefField,
    UTCDateTimeField,
    to_utc,
)
from .plan import EMBEDDED, LEAF, DocPlan, FieldPlan, doc_plan

__all__ = ["hydrate", "hydrate_many", "hydrate_encoded", "read_plan", "encoded_plan", "ReadPlan", "compiled_builder"]

_set = object.__setattr__


def hydrate(model_cls: type[Any], son: dict[str, Any]) -> Any:
    """Return a ``model_cls`` instance for the stored document ``son`` (as ``_from_son``)."""
    # _signals_connected(), inlined; an exact dict (every read's) needs no isinstance, a planned
    # class no ``dict.get`` (``in`` and an index: no call): per call, not per value
    if (_PRE_INIT or _POST_INIT or (type(son) is not dict and not isinstance(son, dict))
            or ("_cls" in son and _inheritable(model_cls))):
        return model_cls._from_son(son)
    try:  # the class's compiled builder (or its plan's loop)
        return (_READ_PLANS[model_cls] if model_cls in _READ_PLANS else read_plan(model_cls)).build(son)
    except (AttributeError, ValueError):
        return model_cls._from_son(son)  # corrupt data: let MongoEngine raise its own error


def _inheritable(model_cls: Any) -> bool:
    """Whether ``model_cls`` allows inheritance: only then is a stored ``_cls`` MongoEngine's
    marker of the subclass to build (by ``_from_son``). The service's models do not, so for
    them a ``_cls`` the Node service or another writer stored is data, kept by the builder as any
    unknown key is (``base.from_son`` keeps it so in ``_from_son`` too)."""
    return bool(model_cls._meta.get("allow_inheritance"))


_GC_PAUSE_FROM = 256  # results this long are hydrated with the cyclic collector paused


def hydrate_many(model_cls: type[Any], sons: list[Any]) -> list[Any]:
    """``[hydrate(model_cls, son) for son in sons]``, with the cyclic garbage collector paused
    for long results: building thousands of instances otherwise triggers collections that scan
    the whole heap (a third of the time for 10,000 insights). The instances hold no cycles that
    need collecting; the collector is switched back on (if it was on) before returning.
    The signal check and the class's plan are looked up once for the whole result, not per
    document."""
    if _signals_connected():
        return [model_cls._from_son(son) for son in sons]
    plan = read_plan(model_cls)
    if len(sons) < _GC_PAUSE_FROM or not gc.isenabled():
        return _planned(plan, sons)
    gc.disable()
    try:
        return _planned(plan, sons)
    finally:
        gc.enable()


def _planned(plan: ReadPlan, sons: list[Any]) -> list[Any]:
    """``hydrate`` of each of ``sons``, the signals known quiet and the plan at hand (one loop,
    no call per document beyond its build)."""
    out: list[Any] = []
    append = out.append
    build = plan.build
    for son in sons:
        if (type(son) is dict or isinstance(son, dict)) and ("_cls" not in son or not _inheritable(plan.cls)):
            try:
                append(build(son))
                continue
            except (AttributeError, ValueError):
                pass  # corrupt data: MongoEngine raises its own error below
        append(plan.cls._from_son(son))
    return out


def _signals_connected() -> bool:
    """True when blinker is installed and someone listens to document construction."""
    return bool(_PRE_INIT or _POST_INIT)


# The receivers of MongoEngine's construction signals (blinker's dicts, changed in place when a
# receiver connects or disconnects; empty without blinker), read by identity, not looked up per call
def _receivers(signal: Any) -> dict[Any, Any]:
    found = getattr(signal, "receivers", None)
    return found if found is not None else {}  # the signal's own dict, even while empty


_PRE_INIT = _receivers(signals.pre_init)
_POST_INIT = _receivers(signals.post_init)


# How a stored value becomes an attribute's value (``ReadPlan.keys``): as read (``to_python``
# is the identity), through a one-argument converter, stripped (a ``TextField`` that strips: its
# ``to_python``, inlined for exact ``str`` values), or through ``_convert`` (containers).
_AS_IS, _CALL, _TEXT, _CONTAINER = 0, 1, 2, 3
# An id field: an exact ``ObjectId`` as read (what its ``to_python`` gives back for one: ``_ID_AS_IS``),
# anything else through its ``to_python``
_ID = 5
_ID_AS_IS = frozenset({ObjectIdField.to_python, StrictObjectIdField.to_python, UserRefField.to_python})
# A list of leaves (``ReadPlan.keys``' argument: the list field's plan, the item converter and
# whether items are stripped text): its items converted in ``_build`` itself, as ``_convert`` would
_LEAVES = 4
# An embedded document, and a list of them (argument: the field's plan and the embedded class's
# own ``ReadPlan``, resolved once): built in ``_build`` itself, each child's ``_instance`` a weak
# proxy of its owner (one per owner, as ``weakref.proxy`` gives back the same one), as ``_convert`` would
_DOC, _DOCS = 6, 7
# A class whose every field is stored under its attribute name and read as it is (``ReadPlan.uniform``
# ``_AS_IS``), or every one a stripping text field (``_TEXT``): a stored document of only its
# fields, none None (and, for text, only exact ``str`` values), is read in one step
_ONLY_STR = frozenset({str})


class ReadPlan:
    """What building an instance of one (embedded) document class needs, computed once per
    class from its ``DocPlan``: per stored key (every spelling) the attribute it fills and how
    its value is converted, the defaults in field order, and the class's constants. ``encoded``:
    the plan of a document the codec just encoded (``encoded_plan``), whose values of fields
    giving ``to_mongo`` as ``to_python`` are taken as they are."""

    __slots__ = ("cls", "class_name", "keys", "defaults", "embedded", "doc_plan", "uniform", "stored_keys", "size",
                 "build")

    def __init__(self, plan: DocPlan, encoded: bool = False) -> None:
        cls: Any = plan.cls
        self.cls = cls
        self.doc_plan = plan
        self.class_name = cls._class_name
        self.embedded = issubclass(cls, EmbeddedDocument)
        self.keys: dict[str, tuple[str, int, Any]] = {}
        for key, fp in plan.by_key.items():
            if fp.python_is_identity or (encoded and fp.mongo_is_python):
                how: tuple[str, int, Any] = (fp.name, _AS_IS, None)
            elif fp.kind is LEAF and type(fp.field).to_python in _ID_AS_IS:
                how = (fp.name, _ID, fp.to_python)
            elif fp.kind is LEAF:
                how = (fp.name, _TEXT if _strips(fp) else _CALL, _leaf_converter(fp))
            elif fp.item is not None and fp.item.kind is LEAF and not fp.item.python_is_identity:
                how = (fp.name, _LEAVES, (fp, _leaf_converter(fp.item), _strips(fp.item)))
            elif fp.kind is EMBEDDED:
                how = (fp.name, _DOC, (fp, _sub_plan(fp.sub.cls, encoded)))
            elif fp.item is not None and fp.item.kind is EMBEDDED:
                how = (fp.name, _DOCS, (fp, _sub_plan(fp.item.sub.cls, encoded)))
            else:
                how = (fp.name, _CONTAINER, fp)
            self.keys[key] = how
        # (attribute, default, whether the default is called): as ``FieldPlan.make_default``
        self.defaults = tuple((fp.name, fp.default, callable(fp.default)) for fp in plan.fields)
        self.size = len(plan.fields)
        self.stored_keys = frozenset(fp.stored for fp in plan.fields)
        kinds = {self.keys[fp.stored][1] for fp in plan.fields}
        self.uniform = None
        if (plan.stored_keys is not None and all(fp.name == fp.stored for fp in plan.fields)
                and len(kinds) == 1 and kinds <= {_AS_IS, _TEXT}):
            self.uniform = kinds.pop()
        # how a stored document of this class becomes an instance: its compiled builder
        # (``compiled_builder``, a read's or a create's answer's: the kinds above), else the
        # plan's loop (``_build``)
        compiled = compiled_builder(self)
        self.build: Any = compiled if compiled is not None else partial(_build, self)


def _sub_plan(cls: type[Any], encoded: bool) -> ReadPlan:
    """An embedded class's plan: a read's, or a create's answer's (``encoded_plan``: the codec
    encoded its embedded documents by the same rules as its top level)."""
    return encoded_plan(cls) if encoded else read_plan(cls)


def _strips(fp: FieldPlan) -> bool:
    """Whether ``fp.to_python`` is ``TextField``'s own with ``strip`` on: ``value.strip()`` for a str."""
    return type(fp.field).to_python is TextField.to_python and bool(fp.field.strip)


def _leaf_converter(fp: FieldPlan) -> Any:
    """A leaf field's ``to_python``; a UTC date field's is ``to_utc`` itself (one call less)."""
    if type(fp.field).to_python is UTCDateTimeField.to_python:
        return to_utc
    return fp.to_python


_READ_PLANS: dict[type, ReadPlan] = {}


def read_plan(cls: type[Any]) -> ReadPlan:
    """The (cached) read plan of a document class (thread-safe: published once built)."""
    plan = _READ_PLANS.get(cls)
    if plan is None:
        plan = _READ_PLANS.setdefault(cls, ReadPlan(doc_plan(cls)))
    return plan


_ENCODED_PLANS: dict[type, ReadPlan] = {}


def encoded_plan(cls: type[Any]) -> ReadPlan:
    """The (cached) plan of a create's answer: a document ``codec.encode_new`` just made (plus
    the service's ``_id``, dates and version). Its value of a field giving ``to_mongo`` as
    ``to_python`` (``FieldPlan.mongo_is_python``: ``to_python`` is idempotent), at the top level
    or in an embedded document (whose plan is the embedded class's encoded plan), is already
    what ``to_python`` would make of it, so it is taken as it is; the others convert as on a read."""
    plan = _ENCODED_PLANS.get(cls)
    if plan is None:
        plan = _ENCODED_PLANS.setdefault(cls, ReadPlan(doc_plan(cls), encoded=True))
    return plan


def hydrate_encoded(model_cls: type[Any], son: dict[str, Any]) -> Any:
    """``hydrate`` of a document the codec just encoded (``encoded_plan``): the same instance,
    without converting again what the codec already converted (a create's answer)."""
    if _PRE_INIT or _POST_INIT or ("_cls" in son and _inheritable(model_cls)):  # _signals_connected(), inlined
        return model_cls._from_son(son)
    try:
        return (_ENCODED_PLANS[model_cls] if model_cls in _ENCODED_PLANS else encoded_plan(model_cls)).build(son)
    except (AttributeError, ValueError):  # as ``hydrate``: MongoEngine raises its own error
        return model_cls._from_son(son)


def _build(plan: ReadPlan, son: dict[str, Any]) -> Any:
    cls: Any = plan.cls
    obj = cls.__new__(cls)
    data: Any = None
    uniform = plan.uniform
    if uniform is not None and plan.stored_keys.issuperset(son):  # only the class's fields, by attribute name (any dict's own keys())
        values = son.values()
        if uniform is _AS_IS:
            if None not in values:  # a None is left out (its default filled), in the loop below
                data = dict(son)
        elif _ONLY_STR.issuperset(map(type, values)):  # exact str only: TextField's to_python, a strip
            data = dict(zip(son, map(str.strip, values)))
    missing = data is None or len(data) != plan.size  # a field left out: its default, below
    if data is None:  # key by key by the plan, then the defaults of what is missing
        data = {}
        keys = plan.keys
        proxy = None  # the owner's weak proxy, made for its first embedded child
        for key, value in son.items():
            how = keys.get(key)
            if how is None:
                data[key] = value  # unknown stored key: kept, as strict=False MongoEngine does
            elif value is not None:
                name, kind, arg = how
                if kind is _AS_IS:
                    data[name] = value
                elif kind is _TEXT:
                    data[name] = value.strip() if value.__class__ is str else arg(value)
                elif kind is _ID:
                    data[name] = value if value.__class__ is ObjectId else arg(value)
                elif kind is _CALL:
                    data[name] = arg(value)
                elif kind is _DOC:
                    fp, sub = arg
                    if value.__class__ is not dict and not isinstance(value, dict):
                        data[name] = fp.to_python(value)
                        continue
                    child = _build(sub, value)
                    if proxy is None:
                        proxy = weakref.proxy(obj)
                    _set(child, "_instance", proxy)
                    data[name] = child
                elif kind is _DOCS:
                    fp, sub = arg
                    if not isinstance(value, list):
                        data[name] = fp.to_python(value)
                        continue
                    if proxy is None:
                        proxy = weakref.proxy(obj)
                    to_python = fp.item.to_python
                    items = []
                    for entry in value:
                        if isinstance(entry, dict):
                            child = _build(sub, entry)
                            _set(child, "_instance", proxy)
                        else:
                            child = to_python(entry)
                        items.append(child)
                    data[name] = items
                elif kind is _LEAVES:
                    fp, convert, strips = arg
                    if value.__class__ is not list and not isinstance(value, list):
                        data[name] = fp.to_python(value)
                    elif strips:
                        data[name] = [entry.strip() if entry.__class__ is str else convert(entry) for entry in value]
                    else:
                        data[name] = [convert(entry) for entry in value]
                else:
                    data[name] = _convert(arg, value)
    if missing:
        for name, default, made in plan.defaults:
            if name not in data:  # a declared field's None is never stored above
                data[name] = default() if made else default
    _set(obj, "_initialised", True)
    _set(obj, "_created", False)
    _set(obj, "_data", data)
    _set(obj, "_dynamic_fields", _new_son(SON))  # SON(): empty, without its __init__'s two updates
    _set(obj, "_changed_fields", [])
    obj.__dict__["_cls"] = plan.class_name
    if plan.embedded:
        _set(obj, "_instance", None)
    if plan.doc_plan.has_choices:
        _add_display_methods(obj, plan.doc_plan)
    return obj


_new_son = SON.__new__


def _convert(fp: FieldPlan, value: Any) -> Any:
    """A list's value (of items no other kind of ``ReadPlan.keys`` converts in ``_build``)."""
    item = fp.item
    if not isinstance(value, list):
        return fp.to_python(value)
    if item.python_is_identity:
        return list(value)
    if item.kind is not LEAF:
        return [item.to_python(entry) for entry in value]
    convert = _leaf_converter(item)
    if _strips(item):
        return [entry.strip() if entry.__class__ is str else convert(entry) for entry in value]
    return [convert(entry) for entry in value]


def _add_display_methods(obj: BaseDocument, plan: DocPlan) -> None:
    """MongoEngine gives fields with ``choices`` a ``get_<name>_display`` bound helper."""
    getter = obj._BaseDocument__get_field_display
    for fp in plan.fields:
        if fp.field.choices:
            obj.__dict__[f"get_{fp.name}_display"] = partial(getter, field=fp.field)


# --- the compiled builder --------------------------------------------------------------------

# An empty ``SON`` as ``SON.__new__`` makes it (a dict whose only attribute is its empty key
# list), without that Python ``__new__``'s frame: when this bson's ``SON`` is what that takes
# (checked here, once), ``dict.__new__(SON)`` and the key list; otherwise ``SON.__new__`` itself.
_PLAIN_SON = vars(SON.__new__(SON)) == {"_SON__keys": []}


def _slot_setter(cls: type[Any], name: str) -> Any:
    """The ``__set__`` of the slot ``object.__setattr__(instance, name, value)`` sets on an
    instance of ``cls`` (the first class of its MRO defining ``name``), or None when that is no
    slot (the builder then is not compiled)."""
    for klass in cls.__mro__:
        found = vars(klass).get(name)
        if found is not None:
            return found.__set__ if type(found) is types.MemberDescriptorType else None
    return None


# How a leaf value converts in the compiled builder (``_leaf_rule``), each inlined where it is the
# field's own ``to_python`` (by exact method) on the value's common type, the converter called
# otherwise: as read; an id (an exact ``ObjectId`` as read); text stripped (an exact ``str``);
# text kept (an exact ``str``: a choice that neither strips nor ignores case); a UTC date
# (``to_utc``'s two common cases: ``timezone.utc``, and PyMongo's UTC); an e-mail address
# (``canonical_email``'s ASCII case); anything else through the converter.
_R_AS_IS, _R_ID, _R_STRIP, _R_STR, _R_DATE, _R_EMAIL, _R_CALL = range(7)


def _leaf_rule(fp: FieldPlan) -> tuple[int, Any]:
    """``(rule, converter)`` of a leaf field's stored value for the compiled builder."""
    method = type(fp.field).to_python
    if fp.python_is_identity:
        return _R_AS_IS, None
    if method in _ID_AS_IS:
        return _R_ID, fp.to_python
    if method is UTCDateTimeField.to_python:
        return _R_DATE, to_utc
    if _strips(fp):
        return _R_STRIP, fp.to_python
    if method is EmailField.to_python:
        return _R_EMAIL, fp.to_python
    if method is ChoiceField.to_python and not fp.field.ignore_case:  # TextField's: a strip (if it strips)
        return (_R_STRIP if fp.field.strip else _R_STR), fp.to_python
    return _R_CALL, fp.to_python


def _leaf_lines(rule: int, target: str, conv: str) -> list[str]:
    """The lines setting ``target`` to what a leaf's ``to_python`` makes of ``v`` (``conv``: the
    converter's name in the namespace)."""
    if rule == _R_AS_IS:
        return [f"{target} = v"]
    if rule == _R_ID:
        return [f"{target} = v if v.__class__ is OID else {conv}(v)"]
    if rule == _R_STRIP:
        return [f"{target} = v.strip() if v.__class__ is str else {conv}(v)"]
    if rule == _R_STR:
        return [f"{target} = v if v.__class__ is str else {conv}(v)"]
    if rule == _R_DATE:  # fields.to_utc: UTC as it is, PyMongo's UTC as the same instant in timezone.utc
        return ["z = v.tzinfo if v.__class__ is DT else None",
                "if z is UTC:", f"    {target} = v",
                "elif z is BSON_UTC:", f"    {target} = EPOCH + (v - BSON_EPOCH)",
                "else:", f"    {target} = {conv}(v)"]
    if rule == _R_EMAIL:  # fields.canonical_email: ASCII is its own NFKC form, stripped and lower-cased
        return ["if v.__class__ is str and v.isascii():", "    f = v.strip().lower()",
                f"    {target} = v if f == v else f",
                "else:", f"    {target} = {conv}(v)"]
    return [f"{target} = {conv}(v)"]


def compiled_builder(plan: ReadPlan) -> Any:
    """A read plan's builder of an instance, compiled once per class into straight-line code: per
    field, its stored key looked at and its value converted in place (``_leaf_rule``), its
    default where the value is missing or None, embedded documents and lists of them by their
    class's own builder; then the instance's flags, as ``_build`` sets them.

    It takes a stored document whose keys are stored names of the class's fields, plus unknown
    keys (kept in ``_data`` as read, as ``_build`` keeps them: an updated document's ``_rev`` and
    ``_op``); on any other spelling of a field (``id``, an attribute name), a value of an
    unexpected container type (an embedded document that is no dict, a list that is no list) it
    hands the whole document to the plan's loop (``_build``), which makes the same instance as
    before. So the instance is ``_build``'s (``tests/models/test_hydrate.py``), with ``_data``'s
    keys in field order. A class the loop reads in one step (``ReadPlan.uniform``: an embedded
    document of only text, or only numbers) gets that one step compiled (``_uniform_lines``), the
    instance's flags set as here. None for a class it does not compile: a plan whose stored names
    are not each its field's only key, or a class whose instance state is not in slots. Names, keys, defaults and converters are
    constants of the function's namespace, never written into its source."""
    doc_plan = plan.doc_plan
    stored_keys = doc_plan.stored_keys
    cls: Any = plan.cls
    if stored_keys is None:
        return None
    slots = {name: _slot_setter(cls, name) for name in
             ("_initialised", "_created", "_data", "_dynamic_fields", "_changed_fields",
              *(("_instance",) if plan.embedded else ()))}
    if None in slots.values():
        return None
    names: dict[str, Any] = {
        "__name__": __name__, "LOOP": _build, "PLAN": plan, "CLS": cls, "NEW": cls.__new__, "SK": stored_keys,
        "OTHER": frozenset(plan.keys) - stored_keys, "OID": ObjectId, "DT": datetime, "UTC": timezone.utc,
        "BSON_UTC": _BSON_UTC, "BSON_EPOCH": _BSON_EPOCH, "EPOCH": _EPOCH, "PROXY": weakref.proxy, "CONVERT": _convert,
        "CLASS_NAME": plan.class_name, "SON": SON, "SON_NEW": _new_son, "DICT_NEW": dict.__new__, "DOC_PLAN": doc_plan,
        "DISPLAY": _add_display_methods, "SIZE": plan.size, "ONLY_STR": _ONLY_STR, "STRIP": str.strip,
        **{f"SET{name}": setter for name, setter in slots.items()},
    }
    if plan.uniform is not None:
        return _compile_builder(plan, _uniform_lines(plan.uniform), names)
    body: list[str] = []
    proxied = False
    for n, fp in enumerate(doc_plan.fields):
        attribute, kind, arg = plan.keys[fp.stored]
        names[f"k{n}"], names[f"a{n}"], names[f"d{n}"] = fp.stored, attribute, fp.default
        default = f"d{n}()" if callable(fp.default) else f"d{n}"
        if kind is _DOC or kind is _DOCS:
            sub: ReadPlan = arg[1]
            names[f"b{n}"], names[f"i{n}"] = sub.build, _slot_setter(sub.cls, "_instance")
            if names[f"i{n}"] is None:
                return None
            proxied = True
            if kind is _DOC:
                lines = ["if v.__class__ is not dict: return LOOP(PLAN, son)",
                         f"v = b{n}(v)",
                         "if proxy is None: proxy = PROXY(obj)",
                         f"i{n}(v, proxy)",
                         f"data[a{n}] = v"]
            else:
                lines = ["if v.__class__ is not list: return LOOP(PLAN, son)",
                         "if proxy is None: proxy = PROXY(obj)",
                         "items = []",
                         "for e in v:",
                         "    if e.__class__ is not dict: return LOOP(PLAN, son)",
                         f"    e = b{n}(e)",
                         f"    i{n}(e, proxy)",
                         "    items.append(e)",
                         f"data[a{n}] = items"]
        elif kind is _LEAVES:
            rule, names[f"c{n}"] = _leaf_rule(arg[0].item)
            lines = ["if v.__class__ is not list: return LOOP(PLAN, son)",
                     "items = []",
                     "entries = v",
                     "for v in entries:",
                     *("    " + line for line in _leaf_lines(rule, "e", f"c{n}")),
                     "    items.append(e)",
                     f"data[a{n}] = items"]
        elif kind is _CONTAINER:
            names[f"c{n}"] = arg
            lines = [f"data[a{n}] = CONVERT(c{n}, v)"]
        else:  # a leaf: as read, an id, stripped text, or through its converter
            rule, names[f"c{n}"] = _leaf_rule(fp) if kind is not _AS_IS else (_R_AS_IS, None)
            lines = _leaf_lines(rule, f"data[a{n}]", f"c{n}")
        body.extend([f"v = son[k{n}] if k{n} in son else None",
                     "if v is None:",
                     f"    data[a{n}] = {default}",
                     "else:",
                     *("    " + line for line in lines)])
    return _compile_builder(plan, [
        "    if SK.issuperset(son):",  # the keys looked at by iterating the document (a dict subclass's own keys() aside)
        "        extra = False",
        "    elif OTHER.isdisjoint(son):",  # unknown keys only: kept as read, after the fields
        "        extra = True",
        "    else:",  # another spelling of a field: the plan's loop
        "        return LOOP(PLAN, son)",
        "    obj = NEW(CLS)",
        *(["    proxy = None"] if proxied else []),
        "    data = {}",
        *("    " + line for line in body),
        "    if extra:",
        "        for key in son:",
        "            if key not in SK:",
        "                data[key] = son[key]",
    ], names)


def _uniform_lines(uniform: int) -> list[str]:
    """The head of a builder of a class the loop reads in one step (``ReadPlan.uniform``): a
    ``dict`` holding a value for each of the class's fields and nothing else, none None (and, for
    stripped text, each an exact ``str``) is copied in one step (stripped); any other document,
    the plan's loop (``_build``, whose own one-step read this is)."""
    if uniform == _AS_IS:
        take = ["    if None in son.values():", "        return LOOP(PLAN, son)", "    data = dict(son)"]
    else:  # _TEXT: every value an exact str, stripped
        take = ["    values = son.values()",
                "    if not ONLY_STR.issuperset(map(type, values)):", "        return LOOP(PLAN, son)",
                "    data = dict(zip(son, map(STRIP, values)))"]
    return ["    if son.__class__ is not dict or len(son) != SIZE or not SK.issuperset(son):",
            "        return LOOP(PLAN, son)",
            *take,
            "    obj = NEW(CLS)"]


def _compile_builder(plan: ReadPlan, head: list[str], names: dict[str, Any]) -> Any:
    """``build(son)`` of ``head`` (the lines that make ``obj`` and its ``data`` from ``son``, or
    hand ``son`` to the loop) and the instance's flags, as ``_build`` sets them."""
    cls: Any = plan.cls
    source_lines = [
        "def build(son):",
        *head,
        "    SET_initialised(obj, True)",
        "    SET_created(obj, False)",
        "    SET_data(obj, data)",
        *(["    s = DICT_NEW(SON)", "    s._SON__keys = []"] if _PLAIN_SON else ["    s = SON_NEW(SON)"]),
        "    SET_dynamic_fields(obj, s)",
        "    SET_changed_fields(obj, [])",
        "    obj.__dict__['_cls'] = CLASS_NAME",
        *(["    SET_instance(obj, None)"] if plan.embedded else []),
        *(["    DISPLAY(obj, DOC_PLAN)"] if plan.doc_plan.has_choices else []),
        "    return obj",
    ]
    source = "\n".join(source_lines) + "\n"
    filename = f"<astro_db hydrate: {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks, profilers show it
    exec(compile(source, filename, "exec"), names)  # noqa: S102 - fixed lines; every value is a namespace constant
    return names["build"]
