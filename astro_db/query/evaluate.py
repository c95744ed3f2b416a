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
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from bson import Binary, Decimal128, ObjectId
from bson.regex import Regex

from ..errors import QueryError
from .order import _ALIASES, ARRAY, BINARY, DATE, MAX, MIN, NULL, NUMBER, OBJECT, OID, REGEX, TIMESTAMP, is_nan, rank

__all__ = ["apply_update", "matches", "bson_equal", "CannotJudge", "MAX_PADDING"]

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
            for container, key in list(_slots(out, path.split("."), op in _CREATING, path, op == "$unset")):
                leaf(container, key, arg, path)
    return out


def _slots(node: Any, parts: list[str], create: bool, path: str, unset: bool = False) -> Iterator[Slot]:
    """Every (container, key) the path names; ``$[]`` fans out over a list's items.

    A part that is not an index names nothing in a list: the server refuses to go on there
    (PathNotViable), except for ``$unset``, which it lets through as a no-op (its modifier node
    allows a path that is not viable, ``UnsetNode::allowNonViablePath``)."""
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        if head == _ALL:
            keys: list[Any] = list(range(len(node)))
        elif _INDEX.fullmatch(head):
            keys = [int(head)]
        elif unset:
            return
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
        yield from _slots(child, rest, create, path, unset)


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
#
# A condition is judged as the server judges it, or not at all: where this module is not sure of
# the server's answer (a type it does not order, a regex whose meaning PCRE and Python's ``re``
# may not share, a null test through a list whose items it cannot judge), it raises
# ``CannotJudge`` rather than guess, through every negation (``$ne``, ``$nin``, ``$not``, ``$nor``)
# alike. The query cache takes that as "the write may have changed the entry" (``cache.store``), a
# ``$pull`` condition as a ``QueryError`` (the update is refused before anything is sent).


class CannotJudge(QueryError):
    """The local evaluator cannot tell what the server would answer for this condition."""


def matches(condition: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` matches ``condition``: an operator condition (``{"$gte": 6}``) tests the
    value itself (a ``$pull`` item), a query on fields (``{"body": "Sun"}``) a document. Raises
    ``CannotJudge`` where the server's answer cannot be told here."""
    if _is_operator_doc(condition) and next(iter(condition)) not in _LOGICAL:
        return _match_operators(condition, [value], False)
    if not isinstance(value, Mapping):
        return False  # a field query never matches a scalar item
    return _match_query(condition, value)


def _is_operator_doc(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(k, str) and k.startswith("$") for k in value)


def _match_query(query: Mapping[str, Any], doc: Any) -> bool:
    try:  # the common case, decided without the three-valued walk
        for key, cond in query.items():
            if not _match_clause(key, cond, doc):
                return False
        return True
    except CannotJudge:
        return _every(query.items(), lambda item: _match_clause(item[0], item[1], doc))


def _match_clause(key: str, cond: Any, doc: Any) -> bool:
    if key == "$and":
        return _every(cond, lambda sub: _match_query(sub, doc))
    if key == "$or":
        return _some(cond, lambda sub: _match_query(sub, doc))
    if key == "$nor":
        return not _some(cond, lambda sub: _match_query(sub, doc))
    if key.startswith("$"):
        raise CannotJudge(f"top-level operator {key}")
    found: list[Any]
    missing: Missing
    if "." not in key:  # a top-level field: what ``_lookup`` gives, without its calls
        found, missing = ([doc[key]], False) if key in doc else ([], True)
    else:
        found, missing = _lookup(doc, key.split("."))
    if _is_operator_doc(cond):
        return _match_operators(cond, found, missing)
    if _is_regex(cond):
        return _regex_any(found, cond, "")  # a regex as the value: a pattern match
    return _equals_any(found, missing, cond)


# Three-valued logic: a part that cannot be judged decides nothing while another part decides the
# whole (a false part of an "and", a true part of an "or"); only when none does is the whole not
# judged either.

def _every(parts: Iterable[Any], test: Callable[[Any], bool]) -> bool:
    unsure: CannotJudge | None = None
    for part in parts:
        try:
            if not test(part):
                return False
        except CannotJudge as exc:
            unsure = exc
    if unsure is not None:
        raise unsure
    return True


def _some(parts: Iterable[Any], test: Callable[[Any], bool]) -> bool:
    unsure: CannotJudge | None = None
    for part in parts:
        try:
            if test(part):
                return True
        except CannotJudge as exc:
            unsure = exc
    if unsure is not None:
        raise unsure
    return False


# ``missing``: whether the path is missing where a null test sees it (True), nowhere (False), or
# somewhere this module does not judge (None: a null test there raises ``CannotJudge``)
Missing = bool | None


def _either(a: Missing, b: Missing) -> Missing:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _lookup(doc: Any, parts: list[str]) -> tuple[list[Any], Missing]:
    """The values a dotted path reaches (through a list, into each item that is a document), and
    whether it is missing where a null test sees it: in the document itself, past a scalar, or
    in a document item of a list it goes through (``{"a.b": null}`` matches ``{a: [{b: 1}, {c:
    1}]}`` on the server). A list's scalar items, an empty list and a positional part
    (``a.0.b``) are not judged for that: ``None``; a path that goes on through a list of lists
    is not judged at all."""
    if not parts:
        return [doc], False
    head, rest = parts[0], parts[1:]
    if isinstance(doc, Mapping):
        return _lookup(doc[head], rest) if head in doc else ([], True)
    if isinstance(doc, list):
        found: list[Any] = []
        missing: Missing = None if not doc else False
        positional = _INDEX.fullmatch(head) is not None
        if positional and int(head) < len(doc):
            found.extend(_lookup(doc[int(head)], rest)[0])
        for item in doc:
            if isinstance(item, Mapping):
                values, gone = _lookup(item, parts)
                found.extend(values)
                missing = _either(missing, gone)
            elif isinstance(item, list):
                raise CannotJudge("a path through a list of lists")
            else:
                missing = _either(missing, None)
        return found, (None if positional else missing)
    return [], True  # the path goes on past a scalar


def _candidates(found: list[Any]) -> Iterator[Any]:
    """Each value found, and for a list also each of its items (a query matches either)."""
    for value in found:
        yield value
        if isinstance(value, list):
            yield from value


def _is_null(found: list[Any], missing: Missing) -> bool:
    """What ``{path: null}`` answers: a null found, or the path missing."""
    if missing is True or any(v is None for v in _candidates(found)):
        return True
    if missing is None:
        raise CannotJudge("a null test through a list whose items are not judged")
    return False


def _equals_any(found: list[Any], missing: Missing, target: Any) -> bool:
    if target is None:
        return _is_null(found, missing)
    for value in found:
        if _same(value, target):
            return True
        if type(value) is list:
            for item in value:
                if _same(item, target):
                    return True
    return False


# types whose Python equality is the server's when both sides are of the type (not float: NaN)
_PLAIN = frozenset({str, int, bool, ObjectId})


def _same(value: Any, target: Any) -> bool:
    kind = type(target)
    if type(value) is kind and kind in _PLAIN:
        return bool(value == target)
    return _order(value, target) == 0


def _match_operators(ops: Mapping[str, Any], found: list[Any], missing: Missing) -> bool:
    options = ops.get("$options", "")
    try:  # the common case, decided without the three-valued walk
        for op, arg in ops.items():
            if op != "$options" and not _match_operator(op, arg, found, missing, options):
                return False
        return True
    except CannotJudge:
        return _every((item for item in ops.items() if item[0] != "$options"),
                      lambda item: _match_operator(item[0], item[1], found, missing, options))


def _match_operator(op: str, arg: Any, found: list[Any], missing: Missing, options: str) -> bool:
    if op == "$eq":
        return _equals_any(found, missing, arg)
    if op == "$ne":
        return not _equals_any(found, missing, arg)
    if op == "$in":
        return _in(found, missing, arg)
    if op == "$nin":
        return not _in(found, missing, arg)
    if op == "$exists":
        return bool(found) == bool(arg)
    if op in _ORDER:
        if arg is None:  # null is alone in its bracket: $gte/$lte null is the null test, $gt/$lt null nothing
            return op in ("$gte", "$lte") and _is_null(found, missing)
        return any(_compare(op, v, arg) for v in _candidates(found))
    if op == "$regex":
        return _regex_any(found, arg, options)
    if op == "$not":
        if _is_regex(arg):
            return not _regex_any(found, arg, "")
        return not _match_operators(arg, found, missing)
    if op == "$elemMatch":
        return _some((item for v in found if isinstance(v, list) for item in v), lambda item: _elem_matches(arg, item))
    if op == "$type":  # a value, or an item of a list, of one of the named types (a page's type brackets)
        wanted = _type_ranks(arg)
        return any(_rank(v) in wanted for v in _candidates(found))
    raise QueryError(f"operator {op} is not supported in a $pull condition")


# the ``$type`` aliases judged here: those ``query.order.beyond`` names (other aliases, and type
# numbers, are ``CannotJudge``)
_TYPE_RANKS = {alias: r for r, alias in _ALIASES.items()}


def _type_ranks(arg: Any) -> frozenset[int]:
    names = arg if isinstance(arg, list) else [arg]
    try:
        return frozenset(_TYPE_RANKS[name] for name in names)
    except (KeyError, TypeError):
        raise CannotJudge(f"$type {arg!r}") from None


def _elem_matches(condition: Mapping[str, Any], item: Any) -> bool:
    """Whether one item of a list matches an ``$elemMatch``: an operator condition tests the item
    as one value (the server's ``matchesSingleElement``); a query on fields tests a document item,
    and a list item as the document of its indexes (``{a: {$elemMatch: {"0": "x"}}}`` matches
    ``{a: [["x"]]}``, and ``{x: null}`` any list item, as on the server); other items never
    match. An operator condition on an item that is itself a list is not judged
    (``CannotJudge``): MongoDB's source tests it as one value (``{a: {$elemMatch: {$ne: 6}}}``
    matching ``{a: [[6]]}``), both test servers look into it, and no real MongoDB was at hand to
    settle it; a cache drops what it cannot judge."""
    if _is_operator_doc(condition) and next(iter(condition)) not in _LOGICAL:
        if isinstance(item, list):
            raise CannotJudge("an $elemMatch of operators on a list item that is itself a list")
        return _match_operators(condition, [item], False)
    if isinstance(item, list):
        item = {str(index): value for index, value in enumerate(item)}
    return isinstance(item, Mapping) and _match_query(condition, item)


def _in(found: list[Any], missing: Missing, candidates: Any) -> bool:
    try:  # the common case, decided without the three-valued walk
        return any(_matches_in(found, missing, a) for a in candidates)
    except CannotJudge:
        return _some(candidates, lambda a: _matches_in(found, missing, a))


def _matches_in(found: list[Any], missing: Missing, candidate: Any) -> bool:
    if _is_regex(candidate):
        return _regex_any(found, candidate, "")
    return _equals_any(found, missing, candidate)


# --- regular expressions -------------------------------------------------------------------------

# where PCRE (the server) and Python's ``re`` may read a pattern differently, it is not judged: a
# backslash before a letter or digit (classes, boundaries, anchors, back references), a group
# with options ``(?``, a POSIX class ``[:``, a ``{,n}`` quantifier
_UNSHARED = re.compile(r"\\[A-Za-z0-9]|\(\?|\[:|\{,")
_SHARED_OPTIONS = set("ims")


def _is_regex(value: Any) -> bool:
    return isinstance(value, (re.Pattern, Regex))


def _regex_any(found: list[Any], arg: Any, options: str) -> bool:
    """Whether a string found matches the pattern, or a regex found is the same regex (as the
    server's regex match treats stored regexes)."""
    pattern, flags = _pattern_and_options(arg, options)
    compiled: re.Pattern[str] | None = None
    for value in _candidates(found):
        if isinstance(value, str):
            if compiled is None:
                compiled = _compile(pattern, flags)
            if "i" in flags and not value.isascii():
                raise CannotJudge("a case-insensitive match of non-ASCII text")
            if compiled.search(value) is not None:
                return True
        elif _is_regex(value) and _pattern_and_options(value, "") == (pattern, flags):
            return True
    return False


def _pattern_and_options(arg: Any, options: str) -> tuple[str, str]:
    if isinstance(arg, Regex):
        pattern, flags = arg.pattern, _letters(arg.flags)
    elif isinstance(arg, re.Pattern):
        pattern, flags = arg.pattern, _letters(arg.flags)
    else:
        pattern, flags = arg, ""
    if not isinstance(pattern, str):
        raise CannotJudge("a regex of bytes")
    return pattern, "".join(sorted(set(flags) | set(options or "")))


def _letters(flags: Any) -> str:
    if isinstance(flags, str):
        return flags
    out = "".join(letter for letter, bit in _REGEX_FLAGS.items() if int(flags) & bit)
    if int(flags) & re.UNICODE:
        out += "u"
    return out


def _compile(pattern: str, flags: str) -> re.Pattern[str]:
    if not set(flags) - {"u"} <= _SHARED_OPTIONS or _UNSHARED.search(pattern) or ("i" in flags and not pattern.isascii()):
        # the pattern is not in the message: a caller's pattern may hold personal data
        raise CannotJudge("a regex PCRE and Python may read differently (a backslash class or anchor, a (? group, a "
                          "POSIX class, {,n}, the x option, or a case-insensitive match of non-ASCII text)")
    bits = 0
    for letter in flags:
        bits |= _REGEX_FLAGS.get(letter, 0)
    try:
        return re.compile(pattern, bits)
    except re.error as exc:
        raise CannotJudge(f"a regex Python cannot read: {exc}") from None


# --- BSON comparison -----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    """An int or a float, never a bool (``$inc``'s operands)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _millis(value: _dt.datetime) -> _dt.datetime:
    """A datetime as the server keeps it: UTC, milliseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _rank(value: Any) -> int:
    """``value``'s type in the server's order (``query.order``), or ``CannotJudge``."""
    found = rank(value)
    return _unknown(value) if found is None else found


def _unknown(value: Any) -> int:
    raise CannotJudge(f"a value of type {type(value).__name__}")


def _order(a: Any, b: Any) -> int:
    """-1, 0 or 1: ``a`` against ``b`` in the server's order (types by their canonical rank, then
    values; documents field by field: the value's rank, the name, the value; lists item by item;
    the shorter first when one is the other's start)."""
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    return _order_within(a, b, ra)


def _order_within(a: Any, b: Any, ra: int) -> int:
    """``_order`` of two values of the same rank ``ra``."""
    if ra == NUMBER:
        return _order_numbers(a, b)
    if ra in (NULL, MIN, MAX):
        return 0
    if ra == OBJECT:
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            c = _cmp(_rank(va), _rank(vb)) or _cmp(ka, kb) or _order(va, vb)
            if c:
                return c
        return _cmp(len(a), len(b))
    if ra == ARRAY:
        for va, vb in zip(a, b):
            c = _order(va, vb)
            if c:
                return c
        return _cmp(len(a), len(b))
    if ra == BINARY:
        sa, ta = _binary(a)
        sb, tb = _binary(b)
        return _cmp(len(ta), len(tb)) or _cmp(sa, sb) or _cmp(ta, tb)
    if ra == OID:
        return _cmp(a.binary, b.binary)
    if ra == DATE:
        return _cmp(_millis(a), _millis(b))
    if ra == TIMESTAMP:
        return _cmp((a.time, a.inc), (b.time, b.inc))
    if ra == REGEX:
        if _pattern_and_options(a, "") == _pattern_and_options(b, ""):
            return 0
        raise CannotJudge("the order of two regexes")
    return _cmp(a, b)  # strings (code point order is UTF-8's byte order), booleans


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def _order_numbers(a: Any, b: Any) -> int:
    """Numbers of any kind by value; NaN equals NaN and comes before every other number."""
    x = a.to_decimal() if isinstance(a, Decimal128) else a
    y = b.to_decimal() if isinstance(b, Decimal128) else b
    nan_x, nan_y = x != x, y != y
    if nan_x or nan_y:
        return 0 if nan_x and nan_y else (-1 if nan_x else 1)
    return _cmp(x, y)


def _binary(value: Any) -> tuple[int, bytes]:
    """(subtype, bytes) of binary data: plain bytes are subtype 0, a UUID subtype 4."""
    if isinstance(value, Binary):
        return value.subtype, bytes(value)
    if isinstance(value, uuid.UUID):
        return 4, value.bytes
    return 0, bytes(value)


def bson_equal(a: Any, b: Any) -> bool:
    """Equality as the server sees it: 1 == 1.0 but never True; sub-documents in key order.
    Values of a type the server's order is not known for here are equal only when of the same
    type and equal in Python."""
    try:
        return _order(a, b) == 0
    except CannotJudge:
        return type(a) is type(b) and bool(a == b)


_ORDER: dict[str, Callable[[int], bool]] = {
    "$gt": lambda c: c > 0, "$gte": lambda c: c >= 0, "$lt": lambda c: c < 0, "$lte": lambda c: c <= 0,
}


def _compare(op: str, value: Any, arg: Any) -> bool:
    """An ordering operator on one value: only within the argument's type (type bracketing)."""
    rank = _rank(value)
    if rank != _rank(arg):
        return False
    if rank == NUMBER and (is_nan(value) or is_nan(arg)):
        # not the sort order (NaN first): NaN equals NaN and is otherwise neither less nor greater
        return op in ("$gte", "$lte") and is_nan(value) and is_nan(arg)
    return _ORDER[op](_order_within(value, arg, rank))


