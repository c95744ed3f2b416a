"""The codec: validate and serialise writes, hydrate reads, without MongoEngine's slow paths.

``encode_new`` turns a new document given as a dict (keys in either spelling, ISO dates, hex
ids) into its stored, BSON-ready form, applying exactly the rules MongoEngine applies in
``Model(**data).validate(); to_mongo()`` (it calls the same field objects' ``to_python``,
``_validate`` and ``to_mongo``) but without building Document instances. ``encode_value`` does
the same for one ``$set`` / ``$push`` value. Errors are one ``astro_db.errors.ValidationError``
keyed by stored dotted path (``birthData.date``, ``positions.2.degree``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mongoengine.base import BaseDocument
from mongoengine.errors import ValidationError as MEValidationError
from mongoengine.fields import ListField

from ..errors import QueryError, ValidationError
from .fields import RuleListField, describe
from .hydrate import hydrate, hydrate_encoded, hydrate_many
from .paths import resolve
from .plan import (
    _DOC_PLANS,
    EMBEDDED,
    INVALID,
    LEAF,
    SERVICE_FIELDS,
    STEP_EMBEDDED,
    STEP_LEAF_RULE,
    STEP_LIST,
    DocPlan,
    FieldPlan,
    doc_plan,
    field_plan,
)

__all__ = ["encode_new", "encode_value", "value_plan", "encode_planned", "validate_stored", "hydrate", "hydrate_many", "hydrate_encoded",
           "REQUIRED", "SERVICE_FIELDS"]

REQUIRED = "Field is required"  # MongoEngine's wording, kept so both paths say the same
REQUIRED_NOT_EMPTY = "Field is required and cannot be empty"
_INVALID = INVALID
SET_BY_SERVICE = "is set by the service; leave it out"


def encode_new(model_cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a complete new document and return its stored form (``_id`` only if given).

    ``createdAt``, ``updatedAt`` and ``__v`` (in either spelling) are refused: they are the
    service's record of the document's history, so a caller cannot backdate or re-version it.
    """
    plan = _DOC_PLANS.get(model_cls)  # doc_plan, read in place once built (every create passes here)
    if plan is None or type(data) is not dict:
        return _encode_whole(model_cls, data, from_caller=True)
    fast = plan.fast
    if fast is not None:  # keys all of fields the compiled encoder takes, none the service's: no key to refuse
        keys = data.keys()
        done = (fast(data) if keys <= plan.new_keys else
                plan.fast_named(data) if keys <= plan.new_named_keys and plan.fast_named is not None else None)
        if done is not None:
            return done
    return _encode_top(plan, data, True)


def _encode_whole(model_cls: type, data: Any, *, from_caller: bool) -> dict[str, Any]:
    if type(data) is not dict and not isinstance(data, Mapping):  # a plain dict skips the ABC's check
        raise ValidationError(errors={"__all__": f"a document must be an object, got {describe(data)}"})
    return _encode_top(doc_plan(model_cls), data, from_caller)


def _encode_top(plan: DocPlan, data: Mapping[str, Any], from_caller: bool) -> dict[str, Any]:
    """A whole document by ``plan``; ``from_caller``: the service's own fields refused in it."""
    errors: dict[str, str] = {}
    if from_caller:
        by_key = plan.by_key
        for key in data:
            fp = by_key.get(key)
            if fp is not None and fp.stored in SERVICE_FIELDS:
                errors[fp.stored] = SET_BY_SERVICE
    out: dict[str, Any] = _encode_doc(plan, data, "", errors, None)
    if errors:
        raise ValidationError(errors=errors)
    return out


def validate_stored(model_cls: type, doc: Mapping[str, Any]) -> None:
    """Validate a whole stored-form document (an update's post-image) by ``encode_new``'s rules
    (its service fields, which the service itself keeps, included).

    Keys the model does not declare are left out first: a document written by the Node service
    may carry its own, and reading tolerates them (``strict: False``). Everything declared must
    pass, list rules and bounds included.
    """
    _encode_whole(model_cls, _declared(doc_plan(model_cls), doc), from_caller=False)


def _declared(plan: DocPlan, data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    out = {}
    for key, value in data.items():
        fp = plan.by_key.get(key)
        if fp is None:
            continue
        if fp.kind is EMBEDDED:
            value = _declared(fp.sub, value)
        elif fp.item is not None and fp.item.kind is EMBEDDED and isinstance(value, list):
            value = [_declared(fp.item.sub, item) for item in value]
        out[key] = value
    return out


def encode_value(model_cls: type, stored_path: str, value: Any, for_item: bool = False) -> Any:
    """Validate and convert one value for ``$set`` (or a list item, ``for_item=True``).

    Setting an embedded document or a whole list re-runs all of its rules; ``None`` is allowed
    only for fields that are not required. Raises ``ValidationError`` keyed by the stored path.
    """
    return encode_planned(value_plan(model_cls, stored_path, for_item), value, for_item)


def value_plan(model_cls: type, stored_path: str, for_item: bool = False) -> tuple[FieldPlan, str]:
    """What ``encode_value`` needs to know about a path, independent of the value: the field
    plan the value is checked against and the stored path errors are keyed by. ``QueryError``
    when the path cannot be set (or is not a list, ``for_item=True``)."""
    resolved = resolve(model_cls, stored_path)
    if resolved.field is None:
        raise QueryError(f"cannot set {stored_path!r} on {model_cls.__name__}")
    fp = field_plan(resolved.field)
    if for_item:
        if fp.item is None:
            if isinstance(fp.field, ListField):  # untyped: its items are free-form (plan._free_form)
                raise QueryError(f"{resolved.stored!r} on {model_cls.__name__} is a list of untyped items; "
                                 "set the whole list instead")
            raise QueryError(f"{resolved.stored!r} on {model_cls.__name__} is not a list")
        fp = fp.item
    return fp, resolved.stored


def encode_planned(plan: tuple[FieldPlan, str], value: Any, for_item: bool = False) -> Any:
    """``encode_value`` with the path already planned (``value_plan``): every value is still
    checked against every rule of its field."""
    fp, stored = plan
    if value is None:
        if for_item:
            raise ValidationError(errors={stored: "a list item must not be null"})
        if fp.required:
            raise ValidationError(errors={stored: REQUIRED})
        return None
    accept = fp.accept
    if accept is not None:  # a plain value its field's rule accepts: as it is
        accepted = accept(value)
        if accepted is not _INVALID:
            return accepted
    errors: dict[str, str] = {}
    out = _encode_field(fp, value, stored, errors, None, converted=False)
    if errors:
        raise ValidationError(errors=errors)
    return out


def _encode_doc(plan: DocPlan, data: Any, prefix: str, errors: dict[str, str], py: dict[str, Any] | None) -> Any:
    """Encode one (embedded) document; ``py`` collects attribute → Python value for list rules.

    A document whose keys are all of fields the plan's compiled encoder takes (``fast_keys``, or
    ``named_keys`` by attribute name) and whose every value its field's rule takes in place is
    encoded by that encoder (``plan.fast_encoder``, the same rules); any other,
    or one it gives back, by one loop over the plan's ``steps``: a value its field's in-place rule
    accepts is taken in place (``_accepts``, no field call), an embedded
    document is encoded here by its own plan, a list by ``_encode_list``, anything else by the
    field's ``to_python``, ``check`` and ``to_mongo``. A document whose keys are all stored names
    (``DocPlan.stored_keys``: then none is unknown or given twice) is read as it is; any other is
    first spelled out by stored name, with those errors."""
    if type(data) is dict:  # the common case: neither a document instance nor another Mapping to check for
        fast = plan.fast
        if fast is not None and py is None:  # every value taken in place (plan.fast_encoder), else the loop below
            keys = data.keys()
            done = (fast(data) if keys <= plan.fast_keys else
                    plan.fast_named(data) if keys <= plan.named_keys and plan.fast_named is not None else None)
            if done is not None:
                return done
    elif isinstance(data, BaseDocument):
        data = data._data
    if type(data) is not dict and not isinstance(data, Mapping):
        errors[prefix[:-1]] = f"must be an object, got {describe(data)}"
        return _INVALID
    error_count = len(errors)
    stored_keys = plan.stored_keys
    get = (data.get if stored_keys is not None and type(data) is dict and data.keys() <= stored_keys
           else _spelled(plan, data, prefix, errors))  # another Mapping: by its items, as before
    out: dict[str, Any] = {}
    for fp, stored, step, sub in plan.steps:
        raw = get(stored)
        converted = False
        if raw is None:
            raw = fp.default() if fp.default_callable else fp.default  # fp.make_default(), inlined
            converted = True  # MongoEngine assigns defaults without to_python
            if raw is None:
                if fp.required:
                    errors[prefix + stored] = REQUIRED
                continue
        if step is STEP_LEAF_RULE:  # a value its field's in-place rule (plan.RULES) takes as it is
            value = _accepts(fp, raw, converted)
            if value is not _INVALID:
                if py is not None:
                    py[fp.name] = value
                out[stored] = value  # to_python and to_mongo give it back
                continue
        elif step is STEP_EMBEDDED:  # _encode_field's embedded case, inlined
            sub_py: dict[str, Any] | None = {} if py is not None else None
            value = _encode_doc(sub, raw, prefix + stored + ".", errors, sub_py)  # type: ignore[arg-type]  # set for this step
            if py is not None:
                py[fp.name] = sub_py
            if value is not _INVALID:
                out[stored] = value
            continue
        elif step is STEP_LIST:
            value = _encode_list(fp, raw, prefix + stored, errors, py, converted)
            if value is not _INVALID:
                out[stored] = value
            continue
        # a value no rule took in place: the field's own calls, which accept or refuse it
        value = raw if converted or fp.python_is_identity else fp.to_python(raw)
        try:
            fp.check(value)
        except MEValidationError as error:
            errors[prefix + stored] = str(error)
            continue
        if py is not None:
            py[fp.name] = value
        out[stored] = value if fp.mongo_is_python and (not converted or fp.python_is_identity) else fp.to_mongo(value)
    return out if len(errors) == error_count else _INVALID


def _spelled(plan: DocPlan, data: Mapping[str, Any], prefix: str, errors: dict[str, str]) -> Any:
    """The ``get`` of ``data`` by stored name, for a document with a key that is not one (an
    attribute name, an ``id``, or a key the plan does not know: reported here, as is a field
    given in both spellings)."""
    by_key = plan.by_key
    values: dict[str, Any] = {}
    for key, raw in data.items():
        fp = by_key.get(key)
        if fp is None:
            errors[f"{prefix}{key}"] = f"unknown field {key!r}; known fields: {plan.known}"
        elif fp.stored in values:
            errors[prefix + fp.stored] = f"given twice (as {fp.name!r} and {fp.stored!r})"
        else:
            values[fp.stored] = raw
    return values.get


def _encode_field(fp: FieldPlan, raw: Any, path: str, errors: dict[str, str], py: dict[str, Any] | None,
                  converted: bool) -> Any:
    kind = fp.kind
    if kind is LEAF:
        if fp.accept is not None:
            accepted = _accepts(fp, raw, converted)
            if accepted is not _INVALID:
                if py is not None:
                    py[fp.name] = accepted
                return accepted
        value = raw if converted or fp.python_is_identity else fp.to_python(raw)
        try:
            fp.check(value)
        except MEValidationError as error:
            errors[path] = str(error)
            return _INVALID
        if py is not None:
            py[fp.name] = value
        if fp.mongo_is_python and (not converted or fp.python_is_identity):
            # to_mongo would give it back unchanged (plan.FieldPlan.mongo_is_python): after
            # to_python, or, for a default (never through to_python), where to_python is the identity
            return value
        return fp.to_mongo(value)
    if kind is EMBEDDED:
        sub_py: dict[str, Any] | None = {} if py is not None else None
        value = _encode_doc(fp.sub, raw, path + ".", errors, sub_py)
        if py is not None:
            py[fp.name] = sub_py
        return value
    return _encode_list(fp, raw, path, errors, py, converted)


def _accepts(fp: FieldPlan, raw: Any, converted: bool) -> Any:
    """The stored value of ``raw`` when ``fp``'s in-place rule (``FieldPlan.accept``: the rule's
    lines of ``plan.RULES``, which ``plan.fast_encoder`` inlines too) accepts it as it is, decided
    without calling the field; else ``_INVALID``: the value goes through ``to_python`` and
    ``check``, which accept or refuse it with the field's own message. A default (``converted``:
    MongoEngine assigns it without ``to_python``) only by a rule that converts nothing
    (``FieldPlan.accept_converted``). ``_encode_doc``, ``_encode_field`` and ``encode_planned``
    ask it (tests/models/test_codec_plans.py and test_codec_embedded.py hold the rules to the
    field's own calls)."""
    accept = fp.accept
    if accept is None or (converted and not fp.accept_converted):
        return _INVALID
    return accept(raw)


def _encode_list(fp: FieldPlan, raw: Any, path: str, errors: dict[str, str], py: dict[str, Any] | None,
                 converted: bool) -> Any:
    field = fp.field
    bounds = fp.list_bounds  # an exact list within a rule list's bounds: validate_container's accept, in place
    if bounds is None or raw.__class__ is not list or not (
            (bounds[0] is None or len(raw) >= bounds[0]) and (bounds[1] is None or len(raw) <= bounds[1])):
        try:
            if isinstance(field, RuleListField):
                field.validate_container(raw)
            elif not isinstance(raw, (list, tuple)):
                field.error("Only lists and tuples may be used in a list field")
        except MEValidationError as error:
            errors[path] = str(error)
            return _INVALID
    item = fp.item
    rule = getattr(field, "rule", None)
    items_py: list[Any] | None = [] if rule is not None else None
    out = []
    failed = False
    if item.kind is LEAF and items_py is None:
        # a list of leaves with no list rule: _encode_field's leaf case per item, inlined (an
        # item's path is spelled out only for its error)
        to_python, check, to_mongo = item.to_python, item.check, item.to_mongo
        as_is = item.mongo_is_python and (not converted or item.python_is_identity)
        # an item its rule accepts: taken in place (``_accepts``, inlined)
        accept = item.accept if not converted or item.accept_converted else None
        for index, entry in enumerate(raw):
            if accept is not None:
                value = accept(entry)
                if value is not _INVALID:
                    out.append(value)
                    continue
            value = entry if converted or item.python_is_identity else to_python(entry)
            try:
                check(value)
            except MEValidationError as error:
                errors[f"{path}.{index}"] = str(error)
                failed = True
                continue
            out.append(value if as_is else to_mongo(value))
        raw_items: Any = ()  # encoded above
    else:
        raw_items = raw
    for index, entry in enumerate(raw_items):
        entry_py: dict[str, Any] | None = {} if items_py is not None and item.kind is EMBEDDED else None
        if entry is None and item.kind is EMBEDDED:
            errors[f"{path}.{index}"] = f"must be an object, got {describe(entry)}"
            failed = True
            continue
        if item.kind is EMBEDDED:
            value = _encode_doc(item.sub, entry, f"{path}.{index}.", errors, entry_py)
            failed = failed or value is _INVALID
        else:
            value = _encode_field(item, entry, f"{path}.{index}", errors, None, converted)
            failed = failed or value is _INVALID
        if items_py is not None:
            items_py.append(entry_py if entry_py is not None else item.to_python(entry))
        out.append(value)
    if failed:
        return _INVALID
    if fp.required and not raw:
        errors[path] = REQUIRED_NOT_EMPTY
        return _INVALID
    if rule is not None:
        try:
            field.validate_rule(items_py)
        except MEValidationError as error:
            errors[path] = str(error)
            return _INVALID
    if py is not None:
        py[fp.name] = items_py if items_py is not None else list(raw)
    return out
