"""Apply a compiled update to a stored document locally, as the server would: pure, no I/O.

The write path validates the document an update *would* produce before it is written
(``writes``): ``apply_update`` computes that post-image from the stored pre-image and the
stored-form update ``updates.compile_update`` made, and ``matches`` decides which items a
``$pull`` condition removes. Both follow MongoDB's semantics for the operators and value types
astro_db accepts (numbers, strings, booleans, datetimes, ObjectIds, None, sub-documents and
lists), including dotted paths, numeric indexes (``positions.1.body``) and the all-positional
``$[]`` (``positions.$[].body``). Where the server would refuse an update (``$inc`` on a string,
a field created inside ``null``), ``apply_update`` raises ``QueryError`` instead.
"""

from __future__ import annotations

import copy
import datetime as _dt
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bson import ObjectId
from bson.regex import Regex

from ..errors import QueryError

__all__ = ["apply_update", "matches", "bson_equal", "MAX_PADDING"]

_ALL = "$[]"
_INDEX = re.compile(r"0|[1-9][0-9]*")
MAX_PADDING = 1_500_000  # the server refuses to pad a list with more nulls than this
_LOGICAL = ("$and", "$or", "$nor")
_MISSING = object()
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "x": re.VERBOSE, "s": re.DOTALL}
# operators that create what the path names when it is missing (the others leave it alone)
_CREATING = {"$set", "$inc", "$push", "$addToSet", "$currentDate"}

Slot = tuple[Any, Any]  # (container, key): a dict and a key, or a list and an index


# --- updates -----------------------------------------------------------------------------------


def apply_update(doc: Mapping[str, Any], update: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A deep copy of ``doc`` with ``update`` ($set $unset $inc $push $addToSet $pull) applied."""
    out = copy.deepcopy(dict(doc))
    for op, spec in update.items():
        leaf = _LEAVES.get(op)
        if leaf is None:
            raise QueryError(f"cannot evaluate update operator {op}; supported: {', '.join(sorted(_LEAVES))}")
        for path, arg in spec.items():
            for container, key in list(_slots(out, path.split("."), op in _CREATING, path)):
                leaf(container, key, arg, path)
    return out


def _slots(node: Any, parts: list[str], create: bool, path: str) -> Iterator[Slot]:
    """Every (container, key) the path names; ``$[]`` fans out over a list's items."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        if head == _ALL:
            keys: list[Any] = list(range(len(node)))
        elif _INDEX.fullmatch(head):
            keys = [int(head)]
        else:
            raise QueryError(f"{path}: cannot use the part {head!r} to reach into a list")
    elif isinstance(node, dict):
        if head == _ALL:
            raise QueryError(f"{path}: $[] needs a list, found an object")
        keys = [head]
    else:
        return
    for key in keys:
        if not rest:
            yield node, key
            continue
        child = _get(node, key)
        if child is _MISSING or child is None:
            if rest[0] == _ALL:
                raise QueryError(f"{path}: the list must exist for $[] to apply")
            if not create:
                continue
            if child is None:
                raise QueryError(f"{path}: cannot create field {rest[0]!r} inside null")
            child = {}
            _put(node, key, child)
        elif not isinstance(child, (dict, list)):
            if create:
                raise QueryError(f"{path}: cannot create field {rest[0]!r} inside {type(child).__name__} {child!r}")
            continue
        yield from _slots(child, rest, create, path)


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, list):
        return container[key] if key < len(container) else _MISSING
    return container.get(key, _MISSING)


def _put(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, list):
        if key - len(container) > MAX_PADDING:
            raise QueryError(f"index {key} would pad a list of {len(container)} with more than {MAX_PADDING} nulls")
        container.extend([None] * (key + 1 - len(container)))  # the server pads with nulls too
    container[key] = value


def _set(container: Any, key: Any, arg: Any, path: str) -> None:
    _put(container, key, copy.deepcopy(arg))


def _unset(container: Any, key: Any, arg: Any, path: str) -> None:
    if isinstance(container, list):
        if key < len(container):
            container[key] = None  # unsetting a list item leaves a null, as on the server
    else:
        container.pop(key, None)


def _inc(container: Any, key: Any, arg: Any, path: str) -> None:
    current = _get(container, key)
    if current is _MISSING:
        _put(container, key, arg)
    elif _is_number(current):
        _put(container, key, current + arg)
    else:
        raise QueryError(f"{path}: cannot $inc a value of type {type(current).__name__}")


def _list_at(container: Any, key: Any, op: str, path: str) -> list[Any] | None:
    current = _get(container, key)
    if current is _MISSING:
        return None
    if not isinstance(current, list):
        raise QueryError(f"{path}: cannot apply {op} to a {type(current).__name__}")
    return current


def _items(arg: Any) -> list[Any]:
    return list(arg["$each"]) if isinstance(arg, Mapping) and set(arg) == {"$each"} else [arg]


def _push(container: Any, key: Any, arg: Any, path: str) -> None:
    current = _list_at(container, key, "$push", path)
    new = copy.deepcopy(_items(arg))
    if current is None:
        _put(container, key, new)
    else:
        current.extend(new)


def _add_to_set(container: Any, key: Any, arg: Any, path: str) -> None:
    current = _list_at(container, key, "$addToSet", path)
    if current is None:
        current = []
        _put(container, key, current)
    for item in _items(arg):
        if not any(bson_equal(item, have) for have in current):
            current.append(copy.deepcopy(item))


def _pull(container: Any, key: Any, arg: Any, path: str) -> None:
    current = _list_at(container, key, "$pull", path)
    if current is None:
        return
    if isinstance(arg, Mapping):
        kept = [item for item in current if not matches(arg, item)]
    else:
        kept = [item for item in current if not bson_equal(item, arg)]
    current[:] = kept


def _current_date(container: Any, key: Any, arg: Any, path: str) -> None:
    """``$currentDate``: the server's clock; here the client's, to the millisecond (what BSON keeps)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    _set(container, key, now.replace(microsecond=now.microsecond // 1000 * 1000), path)


_LEAVES: dict[str, Callable[[Any, Any, Any, str], None]] = {
    "$set": _set, "$unset": _unset, "$inc": _inc, "$push": _push, "$addToSet": _add_to_set, "$pull": _pull,
    "$currentDate": _current_date,
}


# --- conditions --------------------------------------------------------------------------------


def matches(condition: Mapping[str, Any], value: Any) -> bool:
    """Whether a ``$pull`` condition removes ``value``: an operator condition (``{"$gte": 6}``)
    tests the item itself, a query on fields (``{"body": "Sun"}``) tests a sub-document item."""
    if _is_operator_doc(condition) and next(iter(condition)) not in _LOGICAL:
        return _match_operators(condition, [value])
    if not isinstance(value, dict):
        return False  # a field query never matches a scalar item
    return _match_query(condition, value)


def _is_operator_doc(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(k, str) and k.startswith("$") for k in value)


def _match_query(query: Mapping[str, Any], doc: Any) -> bool:
    for key, cond in query.items():
        if key == "$and":
            ok = all(_match_query(sub, doc) for sub in cond)
        elif key == "$or":
            ok = any(_match_query(sub, doc) for sub in cond)
        elif key == "$nor":
            ok = not any(_match_query(sub, doc) for sub in cond)
        else:
            found = _lookup(doc, key.split("."))
            ok = _match_operators(cond, found) if _is_operator_doc(cond) else _equals_any(found, cond)
        if not ok:
            return False
    return True


def _lookup(doc: Any, parts: list[str]) -> list[Any]:
    """The values a dotted path reaches; through a list it reaches into each item. Empty when
    the path is missing (a missing field equals null, but it does not exist)."""
    if not parts:
        return [doc]
    head, rest = parts[0], parts[1:]
    if isinstance(doc, dict):
        return _lookup(doc[head], rest) if head in doc else []
    if isinstance(doc, list):
        found: list[Any] = []
        if _INDEX.fullmatch(head) and int(head) < len(doc):
            found.extend(_lookup(doc[int(head)], rest))
        for item in doc:
            if isinstance(item, dict):
                found.extend(_lookup(item, parts))
        return found
    return []


def _candidates(found: list[Any]) -> Iterator[Any]:
    """Each value found, and for a list also each of its items (a query matches either)."""
    for value in found:
        yield value
        if isinstance(value, list):
            yield from value


def _equals_any(found: list[Any], target: Any) -> bool:
    if not found:
        return target is None
    return any(bson_equal(v, target) for v in _candidates(found))


def _match_operators(ops: Mapping[str, Any], found: list[Any]) -> bool:
    options = ops.get("$options", "")
    return all(_match_operator(op, arg, found, options) for op, arg in ops.items() if op != "$options")


def _match_operator(op: str, arg: Any, found: list[Any], options: str) -> bool:
    if op == "$eq":
        return _equals_any(found, arg)
    if op == "$ne":
        return not _equals_any(found, arg)
    if op == "$in":
        return any(_matches_in(found, a, options) for a in arg)
    if op == "$nin":
        return not any(_matches_in(found, a, options) for a in arg)
    if op == "$exists":
        return bool(found) == bool(arg)
    if op in _ORDER:
        if not found:  # a missing field sorts as null
            return arg is None and op in ("$gte", "$lte")
        return any(_compare(op, v, arg) for v in _candidates(found))
    if op == "$regex":
        pattern = _regex(arg, options)
        return any(isinstance(v, str) and pattern.search(v) is not None for v in _candidates(found))
    if op == "$not":
        if isinstance(arg, (re.Pattern, Regex)):
            return not _match_operator("$regex", arg, found, "")
        return not _match_operators(arg, found)
    if op == "$elemMatch":
        return any(isinstance(v, list) and any(matches(arg, item) for item in v) for v in found)
    raise QueryError(f"operator {op} is not supported in a $pull condition")


def _matches_in(found: list[Any], candidate: Any, options: str) -> bool:
    if isinstance(candidate, (re.Pattern, Regex)):
        return _match_operator("$regex", candidate, found, "")
    return _equals_any(found, candidate)


def _regex(arg: Any, options: str) -> re.Pattern[str]:
    if isinstance(arg, Regex):
        arg = arg.try_compile()
    flags = 0
    for letter in options:
        flags |= _REGEX_FLAGS.get(letter, 0)
    if isinstance(arg, re.Pattern):
        return re.compile(arg.pattern, arg.flags | flags)
    return re.compile(str(arg), flags)


# --- BSON comparison -----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _millis(value: _dt.datetime) -> _dt.datetime:
    """A datetime as the server keeps it: UTC, milliseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _bracket(value: Any) -> str | None:
    """The BSON type family comparisons stay within (numbers with numbers, and so on)."""
    if _is_number(value):
        return "number"
    for kind, name in ((str, "string"), (_dt.datetime, "date"), (ObjectId, "objectid"), (bool, "bool")):
        if isinstance(value, kind):
            return name
    if value is None:
        return "null"
    return None


def bson_equal(a: Any, b: Any) -> bool:
    """Equality as the server sees it: 1 == 1.0 but never True; sub-documents in key order."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, _dt.datetime) and isinstance(b, _dt.datetime):
        return _millis(a) == _millis(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(bson_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(bson_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    return bool(a == b)


_ORDER: dict[str, Callable[[int], bool]] = {
    "$gt": lambda c: c > 0, "$gte": lambda c: c >= 0, "$lt": lambda c: c < 0, "$lte": lambda c: c <= 0,
}


def _compare(op: str, value: Any, arg: Any) -> bool:
    kind = _bracket(value)
    if kind is None or kind != _bracket(arg):
        return False
    if kind == "null":
        return op in ("$gte", "$lte")
    if kind == "date":
        value, arg = _millis(value), _millis(arg)
    return _ORDER[op]((value > arg) - (value < arg))
