"""Update validation: only $set $unset $inc $push $pull $addToSet, every value checked.

``compile_update`` validates each value an update sets against the model's field (a plain dict
means ``$set``) and says what the write path must still guard. ``$inc`` on a bounded field
outside any list gets a filter guard keeping the result in range. An update that touches a list
(a list operator, a whole list set or unset, or any path into a list: ``positions.1.body``,
``positions.$[].degree``) is marked ``touches_lists``: its list rules (length, uniqueness, order)
and the bounds of the items depend on the stored document, so ``writes`` computes the whole
post-image, validates it, and writes it by compare-and-set on the version key ``__v``.

What depends only on an update's *shape* (the model, the operators and the field names, in
order; never the values) is planned once and cached (``MAX_PLANS`` shapes): each name's stored
path and field, whether it reaches into a list, and the refusals that follow from the names
alone (``_id``, service fields, positional forms, overlapping paths). A shape is cached only
after an update of that shape compiled cleanly, and the values of every later update of it are
still validated one by one against their fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mongoengine.fields import EmbeddedDocumentField, ListField

from ..errors import QueryError, ValidationError
from ..models import codec, paths
from .filters import (
    _UPDATE_OPS,
    _compile_condition,
    _compile_mapping,
    _is_operator_doc,
    _is_required,
    _number_bounds,
    describe,
    field_kind,
)

__all__ = ["CompiledUpdate", "compile_update"]


@dataclass
class CompiledUpdate:
    """A validated update: the stored-form update document plus what the service must guard."""

    update: dict[str, dict[str, Any]]
    fields: list[str]  # stored top-level paths changed
    guards: dict[str, Any] = field(default_factory=dict)  # extra filter keeping $inc in range
    list_roots: tuple[str, ...] = ()  # top-level fields whose lists the update changes

    @property
    def touches_lists(self) -> bool:
        """Whether the write must read, validate the post-image and compare-and-set on ``__v``."""
        return bool(self.list_roots)


# Array-path forms: a numeric index and the all-positional $[] are applied to the stored list and
# validated; the $ positional and $[<identifier>] name items through the query or arrayFilters,
# which the service cannot evaluate before it writes.
SUPPORTED_ARRAY_PATHS = "a numeric index (positions.1.body) or $[] for every item (positions.$[].body)"
# what a $pull condition may use (astro_db evaluates it itself: ``evaluate.matches``)
_PULL_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex", "$options",
             "$not", "$elemMatch", "$and", "$or", "$nor"}
_LOGICAL_OPS = ("$and", "$or", "$nor")
# the longest list a model allows is 1,000 windows; an index far past it would only pad the
# list with nulls (and make the server, and our evaluation of it, allocate them)
MAX_INDEX = 9_999
_INDEX = re.compile(r"0|[1-9][0-9]*")  # ASCII digits, no leading zero


MAX_PLANS = 1024  # update shapes planned per process; past it, new shapes are compiled unplanned


class _Step(NamedTuple):
    """One field of a planned update: everything about it that does not depend on its value."""

    op: str
    stored: str
    resolved: Any  # paths.ResolvedPath
    in_list: bool
    value_plan: Any  # codec.value_plan for a $set, else None


class _Plan(NamedTuple):
    steps: tuple[_Step, ...]
    ops: tuple[str, ...]
    changed: tuple[str, ...]
    list_roots: tuple[str, ...]


_PLANS: dict[Any, _Plan] = {}
# The plans of plain-form updates (``{field: value}``, a ``$set``) by ``(model, *field names)``:
# found from the caller's dict itself, with no operator scan and no shape built (``MAX_PLANS`` too)
_PLAIN_PLANS: dict[tuple[Any, ...], _Plan] = {}


def compile_update(model: Any, data: Any) -> CompiledUpdate:
    """Validate an update. A plain dict means ``$set``; only $set $unset $inc $push $pull
    $addToSet are accepted, and every value set is validated against its field."""
    if type(data) is dict:  # a plain-form shape compiled cleanly before: only its values are left to validate
        plan = _PLAIN_PLANS.get((model, *data))
        if plan is not None:
            return _compile_planned(model, plan, data.values())
    if (type(data) is not dict and not isinstance(data, Mapping)) or not data:  # a plain dict skips the ABC's check
        raise QueryError(f"an update must be a non-empty dict, got {describe(data)}")
    ops = [k for k in data if isinstance(k, str) and k.startswith("$")]
    if ops and len(ops) != len(data):
        raise QueryError("an update mixes operators ($set ...) and plain fields; use one form")
    plain = not ops and type(data) is dict
    if not ops:
        data = {"$set": data}
    key = _shape(model, data)
    plan = _PLANS.get(key) if key is not None else None
    if plan is not None:
        return _compile_planned(model, plan, [value for spec in data.values() for value in spec.values()])
    compiled, plan = _compile_unplanned(model, data)
    if key is not None and len(_PLANS) < MAX_PLANS:
        _PLANS[key] = plan
        if plain and len(_PLAIN_PLANS) < MAX_PLANS:
            _PLAIN_PLANS[(model, *data["$set"])] = plan
    return compiled


def _shape(model: Any, data: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The cache key of an update: the model and its operators and field names in order
    (``None``, not cached, for anything but plain dicts)."""
    parts: list[Any] = [model]
    for op, spec in data.items():
        if type(spec) is not dict:
            return None
        parts.append(op)
        parts.append(tuple(spec))
    return tuple(parts)


def _compile_planned(model: Any, plan: _Plan, values: Iterable[Any]) -> CompiledUpdate:
    """An update of a planned shape: only its ``values`` (every operator's, in order) are left
    to validate."""
    update: dict[str, dict[str, Any]] = {}
    for op in plan.ops:
        update[op] = {}
    guards: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for step, value in zip(plan.steps, values):
        try:
            if step.value_plan is not None:
                update[step.op][step.stored] = codec.encode_planned(step.value_plan, value)
            else:
                update[step.op][step.stored] = _compile_update_value(
                    model, step.op, step.resolved, value, guards if not step.in_list else {})
        except ValidationError as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationError(errors=errors)
    return CompiledUpdate(update, list(plan.changed), guards, plan.list_roots)


def _compile_unplanned(model: Any, data: Mapping[str, Any]) -> tuple[CompiledUpdate, _Plan]:
    """Compile an update name by name and value by value, and plan its shape on the way."""
    steps: list[_Step] = []
    update: dict[str, dict[str, Any]] = {}
    changed: list[str] = []
    guards: dict[str, Any] = {}
    list_roots: list[str] = []
    errors: dict[str, str] = {}
    for op, spec in data.items():
        if op not in _UPDATE_OPS:
            raise QueryError(f"update operator {op} is not allowed; use {', '.join(sorted(_UPDATE_OPS))}")
        if not isinstance(spec, Mapping) or not spec:
            raise QueryError(f"{op} takes a non-empty dict of field -> value")
        out: dict[str, Any] = {}
        for name, value in spec.items():
            if not isinstance(name, str) or name.startswith("$"):
                raise QueryError(f"{op}: {name!r} is not a field name")
            resolved = paths.resolve(model, name)
            stored = resolved.stored
            top = stored.split(".")[0]
            if top == "_id":
                raise QueryError(f"{op}: field '_id' is the document's identity and cannot be changed")
            if top in codec.SERVICE_FIELDS:
                raise ValidationError(errors={top: f"{codec.SET_BY_SERVICE} ({op} refused)"})
            in_list = _through_list(model, op, stored)
            if in_list or _holds_list(resolved.field):  # $push/$addToSet/$pull need a list field
                list_roots.append(stored.split(".")[0])
            value_plan = codec.value_plan(model, stored) if op == "$set" else None
            steps.append(_Step(op, stored, resolved, in_list, value_plan))
            try:
                out[stored] = _compile_update_value(model, op, resolved, value, guards if not in_list else {})
            except ValidationError as exc:
                errors.update(exc.errors)
            changed.append(stored)
        update[op] = out
    if errors:
        raise ValidationError(errors=errors)
    _refuse_conflicts(update)
    roots = tuple(dict.fromkeys(list_roots))
    return CompiledUpdate(update, changed, guards, roots), _Plan(tuple(steps), tuple(update), tuple(changed), roots)



def _through_list(model: Any, op: str, stored: str) -> bool:
    """Whether ``stored`` reaches into a list; refuses the array-path forms we cannot evaluate."""
    parts = stored.split(".")
    through = False
    for i, _part in enumerate(parts[:-1]):
        if not isinstance(paths.resolve(model, ".".join(parts[: i + 1])).field, ListField):
            continue
        nxt = parts[i + 1]
        if nxt == "$" or (nxt.startswith("$[") and nxt != "$[]"):
            raise QueryError(f"{op}: {stored!r} uses the {nxt} positional form, which is not supported; "
                             f"name list items by {SUPPORTED_ARRAY_PATHS}")
        if nxt.isdigit() and not _is_index(nxt):
            raise QueryError(f"{op}: {stored!r}: a list index is written 0-{MAX_INDEX} without leading zeros, "
                             f"got {nxt!r}")
        if not (nxt.isdigit() or nxt == "$[]"):
            raise QueryError(f"{op}: {stored!r} names a field of every item of the list {'.'.join(parts[: i + 1])!r} "
                             f"without saying which; use {SUPPORTED_ARRAY_PATHS}")
        through = True
    return through


def _is_index(text: str) -> bool:
    """A list index as a path writes it: 0 to ``MAX_INDEX`` in ASCII digits, no leading zero."""
    return _INDEX.fullmatch(text) is not None and len(text) <= len(str(MAX_INDEX)) and int(text) <= MAX_INDEX


def _holds_list(fld: Any) -> bool:
    """Whether a field is a list or an embedded document with a list somewhere inside."""
    if isinstance(fld, ListField):
        return True
    if isinstance(fld, EmbeddedDocumentField):
        return any(_holds_list(f) for f in fld.document_type._fields.values())
    return False


def _refuse_conflicts(update: dict[str, dict[str, Any]]) -> None:
    """Two paths of one update that overlap (``positions`` and ``positions.1.body``) are refused,
    as the server refuses them; ``$[]`` overlaps every index."""
    seen: list[tuple[str, list[str]]] = []
    for op, spec in update.items():
        for path in spec:
            parts = path.split(".")
            for other_op, other in seen:
                if all(_same_step(a, b) for a, b in zip(parts, other)):
                    raise QueryError(f"{op} {path!r} and {other_op} {'.'.join(other)!r} change the same "
                                     "field; split them into two updates")
            seen.append((op, parts))


def _same_step(a: str, b: str) -> bool:
    return a == b or ("$[]" in (a, b) and (a.isdigit() or b.isdigit()))


def _compile_update_value(model: Any, op: str, resolved: Any, value: Any, guards: dict[str, Any]) -> Any:
    stored = resolved.stored
    if op == "$set":
        return codec.encode_value(model, stored, value)
    if op == "$unset":
        if _is_required(resolved):
            raise ValidationError(errors={stored: "is required and cannot be unset"})
        return ""
    if op == "$inc":
        if field_kind(resolved.field) != "number" or not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValidationError(errors={stored: f"$inc needs a number field and a number, got {describe(value)}"})
        if getattr(resolved.field, "integer", False) and not isinstance(value, int):
            raise ValidationError(errors={stored: f"$inc on an integer field needs an integer, got {describe(value)}"})
        low, high = _number_bounds(resolved.field)
        below = getattr(resolved.field, "below", None)
        bounds: dict[str, Any] = {}
        if high is not None:
            bounds["$lte"] = high - value
        if below is not None:
            bounds["$lt"] = below - value
        if low is not None:
            bounds["$gte"] = low - value
        if bounds:
            guards[stored] = bounds
        return value
    # $push / $addToSet / $pull on list fields
    if field_kind(resolved.field) != "list":
        raise ValidationError(errors={stored: f"{op} needs a list field"})
    if op == "$pull":
        return _compile_pull(model, resolved, value)
    if isinstance(value, Mapping) and "$each" in value:
        items = value["$each"]
        if set(value) != {"$each"} or not isinstance(items, (list, tuple)):
            raise QueryError(f"{op} on {stored!r} takes a value or {{'$each': [values]}}")
        return {"$each": [codec.encode_value(model, stored, v, for_item=True) for v in items]}
    return codec.encode_value(model, stored, value, for_item=True)


def _compile_pull(model: Any, resolved: Any, value: Any) -> Any:
    """A ``$pull`` value: an item, an operator condition on items, or a query on their fields."""
    stored = resolved.stored
    if isinstance(value, Mapping) and not _is_value_condition(value):
        # a query on the items' fields: {"$pull": {"positions": {"body": "Sun"}}}, as $elemMatch
        if all(k in _LOGICAL_OPS for k in value):
            raise QueryError(f"$pull on {stored!r}: a condition of only $and/$or/$nor is not supported (backends "
                             "disagree on it); name a field, e.g. {'body': {'$in': ['Sun', 'Moon']}}")
        compiled = _compile_mapping(model, value, False, 1, prefix=stored + ".")
        # field conditions first: the server reads the first key to tell a query from a value
        condition = {k: v for k, v in compiled.items() if k not in _LOGICAL_OPS}
        condition.update((k, v) for k, v in compiled.items() if k in _LOGICAL_OPS)
    elif isinstance(value, Mapping):
        condition = _compile_condition(model, resolved, value, False, 0)
    else:
        return codec.encode_value(model, stored, value, for_item=True)
    _check_pull_ops(condition, stored)
    return condition


def _is_value_condition(value: Mapping[str, Any]) -> bool:
    """A condition on the items themselves (``{"$gte": 6}``), not a query on their fields;
    ``$and``/``$or``/``$nor`` start a query, as on the server."""
    return _is_operator_doc(value) and not any(k in _LOGICAL_OPS for k in value)


def _check_pull_ops(condition: Any, stored: str) -> None:
    """Refuse operators in a ``$pull`` condition that astro_db does not evaluate itself."""
    stack = [condition]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            for key, sub in value.items():
                if isinstance(key, str) and key.startswith("$") and key not in _PULL_OPS:
                    raise QueryError(f"$pull on {stored!r}: operator {key} is not supported in a condition; "
                                     f"use {', '.join(sorted(_PULL_OPS - {'$options'}))}")
                stack.append(sub)
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
