"""Hypothesis strategies for documents, filters and updates of the shapes the models store, and
the oracle that runs them on a server (mongomock-ng or any MongoDB-wire server through PyMongo).

Used by the evaluator's differential tests (``tests/unit/test_evaluate_differential.py``, the
live tier's ``tests/live/test_evaluate_differential_live.py``): documents hold nested
sub-documents, lists of scalars and of sub-documents, lists of lists, nulls, missing fields and
every scalar type a model stores (int, float, bool, str, datetime, ObjectId, None); filters use
every operator ``compile_filter`` accepts, over dotted paths into lists (``a.0.x``).

The numbers never include 0 or 1 (nor 0.0, 1.0): mongomock-ng compares a boolean with them as
Python does (``True == 1``), MongoDB never does; booleans and numbers still meet in every
filter, only that one false equality is kept out of the oracle's reach.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from bson import ObjectId
from bson.regex import Regex
from hypothesis import strategies as st

OIDS = [ObjectId(f"{i:024x}") for i in (7, 9)]
DATES = [dt.datetime(2026, 1, 1, 9, 30, 0, 123000), dt.datetime(2026, 1, 2)]
NUMBERS = st.sampled_from([-1, 2, 3, 2.0, 2.5, -1.5])
STRINGS = st.sampled_from(["a", "b", "B", "ab", ""])
SCALARS = st.one_of(NUMBERS, STRINGS, st.booleans(), st.none(), st.sampled_from(DATES), st.sampled_from(OIDS))
KEYS = ["x", "y"]


def _subdoc(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(KEYS), children, max_size=2)


VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3), _subdoc(children)),
    max_leaves=6,
)
# what a model stores: a top-level field of a scalar, a sub-document, a list of scalars or of
# sub-documents; VALUES adds lists of lists and deeper nesting
FIELD = st.one_of(
    SCALARS,
    _subdoc(st.one_of(SCALARS, st.lists(SCALARS, max_size=3))),
    st.lists(SCALARS, max_size=3),
    st.lists(_subdoc(st.one_of(SCALARS, st.lists(SCALARS, max_size=2), _subdoc(SCALARS))), max_size=3),
    VALUES,
)
DOCS = st.dictionaries(st.sampled_from(["a", "b"]), FIELD, max_size=2)

PATHS = st.sampled_from(["a", "b", "a.x", "a.y", "a.0", "a.1", "a.x.y", "a.0.x", "a.x.0", "a.1.y", "a.x.x", "b.x"])
REGEXES = st.builds(lambda p, o: (p, o), st.sampled_from(["^a", "b$", "a", "^$", "A", "^B|^a", "a.?b"]),
                    st.sampled_from(["", "i", "m", "s", "im"]))
# what a filter compares with: a scalar, a list, a sub-document (never deeper than the documents)
ARGS = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), _subdoc(SCALARS), st.lists(_subdoc(SCALARS), max_size=1))


def _regex_value(draw: st.DrawFn) -> Any:
    pattern, options = draw(REGEXES)
    if draw(st.booleans()):
        return re.compile(pattern, sum(getattr(re, {"i": "I", "m": "M", "s": "S"}[o]) for o in options))
    return Regex(pattern, options)


@st.composite
def operators(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """An operator document on one path: one or two operators."""
    out: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not",
                                   "$elemMatch", "$size", "$all", "$type", "$regex"]))
        if op in ("$not", "$elemMatch") and depth >= 2:
            op = "$eq"
        if op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte"):
            out[op] = draw(ARGS)
        elif op in ("$in", "$nin"):
            out[op] = [_regex_value(draw) if draw(st.integers(0, 5)) == 0 else draw(ARGS)
                       for _ in range(draw(st.integers(0, 3)))]
        elif op == "$all":
            out[op] = draw(st.lists(ARGS, max_size=2))
        elif op == "$exists":
            out[op] = draw(st.booleans())
        elif op == "$size":
            out[op] = draw(st.integers(0, 2))
        elif op == "$type":
            out[op] = draw(st.sampled_from(["number", "string", "bool", "null", "array", "object", "date",
                                            "objectId", "double", "int"]))
        elif op == "$regex":
            pattern, options = draw(REGEXES)
            out[op] = pattern
            if options:
                out["$options"] = options
        elif op == "$not":
            out[op] = _regex_value(draw) if draw(st.integers(0, 4)) == 0 else draw(operators(depth + 1))
        else:  # $elemMatch: on the items' values or on their fields
            out[op] = draw(operators(depth + 1)) if draw(st.booleans()) else draw(queries(depth + 1, sub=True))
    return out


@st.composite
def conditions(draw: st.DrawFn, depth: int = 0) -> Any:
    """What a path is asked: a value (equality), a regex, or an operator document."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(ARGS)
    if kind == 1:
        return _regex_value(draw)
    return draw(operators(depth))


@st.composite
def queries(draw: st.DrawFn, depth: int = 0, sub: bool = False) -> dict[str, Any]:
    """A filter: one or two paths, sometimes a logical operator over sub-filters."""
    paths = st.sampled_from(["x", "y", "x.y", "0", "x.0"]) if sub else PATHS
    out: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 2))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            op = draw(st.sampled_from(["$and", "$or", "$nor"]))
            out[op] = draw(st.lists(queries(depth + 1, sub), min_size=1, max_size=3))
        else:
            out[draw(paths)] = draw(conditions(depth))
    return out


def oracle_unsure(query: Any) -> bool:
    """Whether ``query`` holds a condition mongomock-ng answers otherwise than MongoDB: a null
    test (``None`` compared, listed or ranged against: mongomock-ng misses a path that goes on
    past a scalar, and ``$gte``/``$lte`` null on a missing field), an empty document as the
    value (mongomock-ng takes ``{}`` for an empty operator document, MongoDB for an equality),
    an ``$elemMatch`` on operators (mongomock-ng looks into a list item)."""
    if isinstance(query, dict):
        if not query:
            return True
        if "$elemMatch" in query and isinstance(query["$elemMatch"], dict) and any(
                str(k).startswith("$") for k in query["$elemMatch"]):
            return True
        return any(v is None or oracle_unsure(v) for v in query.values())
    if isinstance(query, list):
        return any(v is None or oracle_unsure(v) for v in query)
    return False


def _paths(query: Any) -> list[tuple[str, Any]]:
    """Each (path, condition) of ``query``, through ``$and``/``$or``/``$nor``."""
    out: list[tuple[str, Any]] = []
    if isinstance(query, dict):
        for key, value in query.items():
            if key in ("$and", "$or", "$nor") and isinstance(value, list):
                for sub in value:
                    out.extend(_paths(sub))
            elif not str(key).startswith("$"):
                out.append((key, value))
    return out


def _asks_exists(condition: Any) -> bool:
    return isinstance(condition, dict) and ("$exists" in condition or _asks_exists(condition.get("$not")))


def _through_list(value: Any, parts: list[str]) -> bool:
    if not parts:
        return False
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and parts[0] in value and _through_list(value[parts[0]], parts[1:])


def _past_scalar(value: Any, parts: list[str]) -> bool:
    if not parts:
        return False
    if isinstance(value, dict):
        return parts[0] in value and _past_scalar(value[parts[0]], parts[1:])
    if isinstance(value, list):
        if not value:
            return True
        head = parts[0]
        if head.isdigit() and (int(head) >= len(value) or _past_scalar(value[int(head)], parts[1:])):
            return True
        return any(_past_scalar(item, parts) for item in value if isinstance(item, (dict, list)))
    return True


def goes_past_a_scalar(query: Any, doc: dict[str, Any]) -> bool:
    """Whether a path of ``query`` goes on past a scalar, an empty list or a list's end in ``doc``
    (``a.x`` in ``{a: 5}`` or ``{a: []}``, ``a.1`` in ``{a: [5]}``): MongoDB finds no value
    there, mongomock-ng answers otherwise (under ``$not`` too)."""
    return any(_past_scalar(doc, path.split(".")) for path, _ in _paths(query))


def exists_through_a_list(query: Any, doc: dict[str, Any]) -> bool:
    """Whether ``query`` asks ``$exists`` of a path that goes through a list of ``doc``:
    mongomock-ng answers it by some items only (``{"a.y": {"$exists": False}}`` matches
    ``{a: [{}, {y: 1}]}`` there, not on MongoDB)."""
    return any(_asks_exists(cond) and _through_list(doc, path.split(".")) for path, cond in _paths(query))


def _field_elem_match(condition: Any) -> bool:
    """Whether ``condition`` holds an ``$elemMatch`` on the items' fields (``{x: ...}``)."""
    if not isinstance(condition, dict):
        return False
    inner = condition.get("$elemMatch")
    if isinstance(inner, dict) and any(not str(k).startswith("$") for k in inner):
        return True
    return any(_field_elem_match(v) for k, v in condition.items() if k in ("$not", "$elemMatch"))


def _values_at(value: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [value]
    if isinstance(value, dict):
        return _values_at(value[parts[0]], parts[1:]) if parts[0] in value else []
    if isinstance(value, list):
        return [v for item in value for v in _values_at(item, parts)]
    return []


def elem_match_over_scalars(query: Any, doc: dict[str, Any]) -> bool:
    """Whether ``query`` asks an ``$elemMatch`` on the items' fields of a list in ``doc`` holding
    an item that is no document: MongoDB skips such an item, mongomock-ng tests it as a document
    with no fields (``{x: {$nin: []}}`` then matches ``-1``)."""
    return any(_field_elem_match(cond) and any(isinstance(v, list) and any(not isinstance(i, dict) for i in v)
                                               for v in _values_at(doc, path.split(".")))
               for path, cond in _paths(query))


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def one_number_two_types(*values: Any) -> bool:
    """Whether ``values`` hold one number as two types (``2`` and ``2.0``): one value to MongoDB's
    ``$addToSet``, two to mongomock-ng's."""
    found = [n for value in values for n in _numbers(value)]
    return any(a == b and type(a) is not type(b) for a in found for b in found)
