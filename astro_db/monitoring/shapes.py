"""Query and command shapes: the structure of a filter or command with every value masked.

``mask(value)`` keeps keys (field names and operators) and replaces each literal by a type
placeholder (``"<str>"``, ``"<ObjectId>"``, ``"<datetime>"``...), so a shape can be logged and
kept without leaking data (emails, ids, text). ``placeholder_filter(shape)`` turns a shape back
into a filter of neutral values of the same types, which is enough for ``explain``: the plan
depends on the fields and operators, not on the values.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from typing import Any

from bson import ObjectId

__all__ = ["mask", "shape_key", "shape_text", "command_shape", "filter_fields", "placeholder_filter"]

MAX_SHAPE_CHARS = 2000
_DRIVER_KEYS = {
    "lsid", "$clusterTime", "txnNumber", "autocommit", "startTransaction", "$readPreference",
    "signature", "$db", "apiVersion", "apiStrict", "apiDeprecationErrors",
}
_PLACEHOLDERS: dict[str, Any] = {
    "<str>": "",
    "<int>": 0,
    "<float>": 0.0,
    "<bool>": True,
    "<null>": None,
    "<ObjectId>": ObjectId("000000000000000000000000"),
    "<datetime>": _dt.datetime(2000, 1, 1, tzinfo=_dt.timezone.utc),
    "<regex>": re.compile(""),
}
_LOGICAL = ("$and", "$or", "$nor")


def _leaf(value: Any) -> str:
    if value is None:
        return "<null>"
    if isinstance(value, bool):
        return "<bool>"
    if isinstance(value, int):
        return "<int>"
    if isinstance(value, float):
        return "<float>"
    if isinstance(value, str):
        return "<str>"
    if isinstance(value, ObjectId):
        return "<ObjectId>"
    if isinstance(value, (_dt.datetime, _dt.date)):
        return "<datetime>"
    if isinstance(value, re.Pattern) or type(value).__name__ == "Regex":
        return "<regex>"
    return f"<{type(value).__name__}>"


_LEAF_BY_TYPE: dict[type, str] = {
    str: "<str>", int: "<int>", float: "<float>", bool: "<bool>", type(None): "<null>",
    ObjectId: "<ObjectId>", _dt.datetime: "<datetime>",
}


def mask(value: Any) -> Any:
    """``value`` with keys kept and every literal replaced by its type placeholder.

    A list becomes the distinct shapes of its items (in first-seen order), so
    ``{"$in": [id1, id2, id3]}`` and ``{"$in": [id4]}`` share the shape ``{"$in": ["<ObjectId>"]}``.
    """
    kind = type(value)
    leaf = _LEAF_BY_TYPE.get(kind)  # the common cases, without isinstance checks against ABCs
    if leaf is not None:
        return leaf
    if kind is dict or isinstance(value, Mapping):
        return {str(k): mask(v) for k, v in value.items()}
    if kind is list or isinstance(value, (list, tuple)):
        out: list[Any] = []
        for item in value:
            shaped = mask(item)
            if shaped not in out:
                out.append(shaped)
        return out
    return _leaf(value)


def shape_key(value: Any) -> Any:
    """A hashable stand-in for ``mask(value)``: equal exactly when the masked shapes are equal.

    Cheaper than ``mask`` plus ``repr`` (no dicts built, nothing rendered), so the monitor can
    find a filter's recorded shape on every call and mask it only the first time it is seen.
    Dicts become tuples of ``(key, shape_key)`` pairs sorted by key (masked dicts compare
    equal whatever their key order), lists and tuples ``("[", ...)`` with the distinct item keys
    in first-seen order (as ``mask`` keeps them). A dict's literal values (a by-id filter's
    ``ObjectId``) are keyed in its own loop, with no call per value.
    """
    kind = type(value)
    if kind is not dict:  # nearly every filter is a dict: no leaf look-up for it
        leaf = _LEAF_BY_TYPE.get(kind)
        if leaf is not None:
            return leaf
        if not isinstance(value, Mapping):
            if kind is list or isinstance(value, (list, tuple)):
                out: list[Any] = ["["]
                for item in value:
                    keyed = shape_key(item)
                    if keyed not in out:
                        out.append(keyed)
                return tuple(out)
            return _leaf(value)
    pairs: tuple[tuple[str, Any], ...] = ()
    leaves = _LEAF_BY_TYPE
    for k, v in value.items():
        leaf = leaves.get(type(v))
        pairs += ((k if type(k) is str else str(k), leaf if leaf is not None else shape_key(v)),)
    if pairs[1:]:  # two pairs or more (a slice: no call)
        return tuple(sorted(pairs, key=_first))
    return pairs


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def shape_text(shape: Any) -> str:
    """A compact, stable JSON rendering of a shape, cut to ``MAX_SHAPE_CHARS``."""
    text = json.dumps(shape, separators=(",", ":"), sort_keys=False, default=str)
    return text if len(text) <= MAX_SHAPE_CHARS else text[: MAX_SHAPE_CHARS - 3] + "..."


def command_shape(command: Mapping[str, Any], command_name: str) -> dict[str, Any]:
    """The loggable shape of a driver command: collection kept, documents counted, values masked."""
    out: dict[str, Any] = {}
    for key, value in command.items():
        if key in _DRIVER_KEYS:
            continue
        if key == command_name and isinstance(value, str):
            out[key] = value  # the collection name
        elif key == "documents" and isinstance(value, (list, tuple)):
            out[key] = f"<{len(value)} documents>"
        elif key in ("updates", "deletes") and isinstance(value, (list, tuple)):
            out[key] = mask(value)
            out[f"{key}Count"] = len(value)
        else:
            out[key] = mask(value)
    return out


def filter_fields(shape: Any) -> dict[str, str]:
    """The fields a filter (or its shape) constrains: ``{field: "eq" | "range" | "text" | "geo" | "other"}``.

    Top-level clauses and ``$and`` members count; ``$or``/``$nor`` branches are left out (each
    branch would need its own index).
    """
    out: dict[str, str] = {}
    if not isinstance(shape, Mapping):
        return out
    for key, value in shape.items():
        if key == "$and" and isinstance(value, list):
            for member in value:
                out.update(filter_fields(member))
        elif key == "$text":
            out["$text"] = "text"
        elif key.startswith("$"):
            continue
        else:
            out[key] = _clause_kind(value)
    return out


def _clause_kind(value: Any) -> str:
    if not isinstance(value, Mapping) or not value or not all(str(k).startswith("$") for k in value):
        return "eq"
    ops = set(value)
    if ops <= {"$eq", "$in", "$all", "$elemMatch"}:
        return "eq"
    if ops & {"$geoWithin", "$geoIntersects", "$near", "$nearSphere"}:
        return "geo"
    if ops & {"$gt", "$gte", "$lt", "$lte", "$regex"}:
        return "range"
    return "other"


def placeholder_filter(shape: Any) -> Any:
    """A filter with neutral values of the types a shape names (for ``explain``)."""
    if isinstance(shape, Mapping):
        return {k: placeholder_filter(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return [placeholder_filter(item) for item in shape]
    if isinstance(shape, str) and shape in _PLACEHOLDERS:
        return _PLACEHOLDERS[shape]
    return shape
