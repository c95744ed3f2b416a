"""``hydrate``: build a model instance from a stored document, the read path.

It produces what ``Model._from_son(son)`` produces (same ``_data``, defaults, embedded
``_instance`` back-references, ``_initialised``, ``_created=False``, empty ``_changed_fields``,
unknown stored keys kept in ``_data``) but assigns the instance's slots directly instead of
going through ``__init__``'s per-field ``setattr`` machinery. When blinker signal receivers
are connected to ``pre_init`` / ``post_init`` it falls back to ``_from_son`` so they still fire.
"""

from __future__ import annotations

import gc
import weakref
from functools import partial
from typing import Any

from bson import SON
from mongoengine import signals
from mongoengine.base import BaseDocument
from mongoengine.document import EmbeddedDocument

from .plan import EMBEDDED, LEAF, DocPlan, FieldPlan, doc_plan

__all__ = ["hydrate", "hydrate_many", "hydrate_encoded"]

_set = object.__setattr__


def hydrate(model_cls: type[Any], son: dict[str, Any]) -> Any:
    """Return a ``model_cls`` instance for the stored document ``son`` (as ``_from_son``)."""
    if _signals_connected() or not isinstance(son, dict) or "_cls" in son:
        return model_cls._from_son(son)
    try:
        return _build(doc_plan(model_cls), son, created=False)
    except (AttributeError, ValueError):
        return model_cls._from_son(son)  # corrupt data: let MongoEngine raise its own error


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
    plan = doc_plan(model_cls)
    if len(sons) < _GC_PAUSE_FROM or not gc.isenabled():
        return [_planned(plan, model_cls, son) for son in sons]
    gc.disable()
    try:
        return [_planned(plan, model_cls, son) for son in sons]
    finally:
        gc.enable()


def _planned(plan: DocPlan, model_cls: type[Any], son: Any) -> Any:
    """``hydrate`` once the signals are known quiet and the plan is at hand."""
    if not isinstance(son, dict) or "_cls" in son:
        return model_cls._from_son(son)
    try:
        return _build(plan, son, created=False)
    except (AttributeError, ValueError):
        return model_cls._from_son(son)  # corrupt data: let MongoEngine raise its own error


def _signals_connected() -> bool:
    """True when blinker is installed and someone listens to document construction."""
    return bool(getattr(signals.pre_init, "receivers", None)
                or getattr(signals.post_init, "receivers", None))


def hydrate_encoded(model_cls: type[Any], son: dict[str, Any]) -> Any:
    """``hydrate`` of a document the codec just encoded (``codec.encode_new``, plus the service's
    ``_id``, dates and version): the same instance, but a top-level value whose field gives
    ``to_mongo`` as ``to_python`` (``FieldPlan.mongo_is_python``: ``to_python`` is idempotent)
    is already what ``to_python`` would make of it, so it is taken as it is (a create's answer)."""
    if _signals_connected() or "_cls" in son:
        return model_cls._from_son(son)
    try:
        return _build(doc_plan(model_cls), son, created=False, encoded=True)
    except (AttributeError, ValueError):  # as ``hydrate``: MongoEngine raises its own error
        return model_cls._from_son(son)


def _build(plan: DocPlan, son: dict[str, Any], created: bool, encoded: bool = False) -> Any:
    cls: Any = plan.cls
    obj = cls.__new__(cls)
    data: dict[str, Any] = {}
    by_key = plan.by_key
    for key, value in son.items():
        fp = by_key.get(key)
        if fp is None:
            data[key] = value  # unknown stored key: kept, as strict=False MongoEngine does
        elif value is not None:
            data[fp.name] = (value if fp.python_is_identity or (encoded and fp.mongo_is_python)
                             else _convert(fp, value, obj))
    for fp in plan.fields:
        if data.get(fp.name) is None:
            data[fp.name] = fp.make_default()
    _set(obj, "_initialised", True)
    _set(obj, "_created", created)
    _set(obj, "_data", data)
    _set(obj, "_dynamic_fields", SON())
    _set(obj, "_changed_fields", [])
    obj.__dict__["_cls"] = cls._class_name
    if isinstance(obj, EmbeddedDocument):
        _set(obj, "_instance", None)
    if plan.has_choices:
        _add_display_methods(obj, plan)
    return obj


def _convert(fp: FieldPlan, value: Any, owner: BaseDocument) -> Any:
    kind = fp.kind
    if kind is LEAF:
        return fp.to_python(value)
    if kind is EMBEDDED:
        if type(value) is not dict and not isinstance(value, dict):
            return fp.to_python(value)
        child = _build(fp.sub, value, created=False)
        _set(child, "_instance", weakref.proxy(owner))
        return child
    item = fp.item
    if not isinstance(value, list):
        return fp.to_python(value)
    if item.kind is EMBEDDED:
        proxy = weakref.proxy(owner)
        out = []
        for entry in value:
            if isinstance(entry, dict):
                child = _build(item.sub, entry, created=False)
                _set(child, "_instance", proxy)
            else:
                child = item.to_python(entry)
            out.append(child)
        return out
    convert = item.to_python
    return [convert(entry) for entry in value]


def _add_display_methods(obj: BaseDocument, plan: DocPlan) -> None:
    """MongoEngine gives fields with ``choices`` a ``get_<name>_display`` bound helper."""
    getter = obj._BaseDocument__get_field_display
    for fp in plan.fields:
        if fp.field.choices:
            obj.__dict__[f"get_{fp.name}_display"] = partial(getter, field=fp.field)
