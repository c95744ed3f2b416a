"""Update validation: only $set $unset $inc $push $pull $addToSet, every value checked.

``compile_update`` validates each value an update sets against the model's field (a plain dict
means ``$set``) and says what the write path must still guard: ``$inc`` on a bounded field gets
a filter guard keeping the result in range, and list operators are listed for the
read-validate-compare-and-set check of the list rules (``writes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import QueryError, ValidationError
from .models import codec, paths
from .query import (
    _UPDATE_OPS,
    _compile_condition,
    _is_operator_doc,
    _is_required,
    _number_bounds,
    compile_filter,
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
    list_ops: list[tuple[str, str]] = field(default_factory=list)  # (op, path) needing a list check


def compile_update(model: Any, data: Any) -> CompiledUpdate:
    """Validate an update. A plain dict means ``$set``; only $set $unset $inc $push $pull
    $addToSet are accepted, and every value set is validated against its field."""
    if not isinstance(data, Mapping) or not data:
        raise QueryError(f"an update must be a non-empty dict, got {describe(data)}")
    ops = [k for k in data if isinstance(k, str) and k.startswith("$")]
    if ops and len(ops) != len(data):
        raise QueryError("an update mixes operators ($set ...) and plain fields; use one form")
    if not ops:
        data = {"$set": data}
    update: dict[str, dict[str, Any]] = {}
    changed: list[str] = []
    guards: dict[str, Any] = {}
    list_ops: list[tuple[str, str]] = []
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
            try:
                out[stored] = _compile_update_value(model, op, resolved, value, guards, list_ops)
            except ValidationError as exc:
                errors.update(exc.errors)
            changed.append(stored)
        update[op] = out
    if errors:
        raise ValidationError(errors=errors)
    return CompiledUpdate(update, changed, guards, list_ops)


def _compile_update_value(model: Any, op: str, resolved: Any, value: Any, guards: dict, list_ops: list) -> Any:
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
        low, high = _number_bounds(resolved.field)
        bounds: dict[str, Any] = {}
        if high is not None:
            bounds["$lte"] = high - value
        if low is not None:
            bounds["$gte"] = low - value
        if bounds:
            guards[stored] = bounds
        return value
    # $push / $addToSet / $pull on list fields
    if field_kind(resolved.field) != "list":
        raise ValidationError(errors={stored: f"{op} needs a list field"})
    list_ops.append((op, stored))
    if op == "$pull":
        if isinstance(value, Mapping) and not _is_operator_doc(value):
            # a condition on the items' fields: {"$pull": {"positions": {"body": "Sun"}}}
            scoped = compile_filter(model, {f"{stored}.{k}": v for k, v in value.items()})
            return {k[len(stored) + 1:]: v for k, v in scoped.items()}
        if isinstance(value, Mapping):
            return _compile_condition(model, resolved, value, False, 0)
        return codec.encode_value(model, stored, value, for_item=True)
    if isinstance(value, Mapping) and "$each" in value:
        items = value["$each"]
        if set(value) != {"$each"} or not isinstance(items, (list, tuple)):
            raise QueryError(f"{op} on {stored!r} takes a value or {{'$each': [values]}}")
        return {"$each": [codec.encode_value(model, stored, v, for_item=True) for v in items]}
    return codec.encode_value(model, stored, value, for_item=True)
