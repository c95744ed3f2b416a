"""The evaluator the query cache trusts, against the server: generated filters and updates.

The query cache keeps a cached answer across a write when ``matches`` says the written
document does not match its filter; a ``False`` where the server's ``find`` returns the
document is a stale read. Hypothesis draws documents of the shapes the models store and more
(``tests/query_shapes.py``: nested sub-documents, lists of scalars, of sub-documents and of
lists, nulls, missing fields, every scalar type a model holds, booleans among numbers) and
filters over them with every operator ``compile_filter`` accepts, through dotted and numeric
paths (``a.0.x``), under ``$and``/``$or``/``$nor``/``$not``/``$elemMatch``. mongomock-ng
answers each filter for the whole collection; every definite answer of ``matches`` (not
``CannotJudge``, nor the ``QueryError`` of an operator it leaves to the server: ``$size``,
``$all``, ``$type``) must be the oracle's, both ways. Updates: the list ``apply_update``
computes for ``$pull`` by a generated condition, ``$push``/``$addToSet`` of mixed values and
``$set``/``$unset``/``$inc`` through these shapes must be what the oracle stores where both
compute one (refusals are named in ``test_evaluate.py``: mongomock-ng silently ignores some
updates MongoDB refuses).

Where mongomock-ng does not answer as MongoDB (its own source, jstests and manual are the
truth here; ``tests/unit/test_evaluate.py`` holds the evaluator to MongoDB's answer on each of
these by hand), the example is skipped (``assume``) or the document left out of the comparison:

- a null test (``None`` compared, listed or ranged against) and an empty document as a value
  (``query_shapes.oracle_unsure``): mongomock-ng misses a missing path past a scalar, does not
  match a missing field with ``$gte``/``$lte`` null, and takes ``{}`` for an empty operator
  document where MongoDB compares with an empty document;
- an ``$elemMatch`` on operators: mongomock-ng looks into a list item (MongoDB tests each item
  as one value: ``{a: {$elemMatch: {$ne: 6}}}`` matches ``{a: [[6]]}``);
- an ordering operator against a boolean: mongomock-ng's answer there depends on the other
  operators of the condition;
- a path that goes on past a scalar, an empty list or a list's end of the document, and
  ``$exists`` on a path through a list (``query_shapes.goes_past_a_scalar``,
  ``exists_through_a_list``): MongoDB finds no value there, mongomock-ng answers otherwise;
- for updates, what ``test_evaluate.py`` already names (mongomock-ng adds to a boolean, pulls
  ``True`` by ``1``, leaves an unset list item in place, refuses to pad a list, keeps an item
  without the field a ``$not`` of a ``$pull`` condition tests).

The live tier runs the same filters against a MongoDB-wire server
(``tests/live/test_evaluate_differential_live.py``). ``ASTRO_DB_EVAL_EXAMPLES`` raises the
number of examples for a local run (20,000 filters found nothing beyond the two fixed in this
round: ``$elemMatch`` over list items that are lists, NaN in ordering operators).
"""

from __future__ import annotations

import os
from typing import Any

import mongomock_ng
import query_shapes as shapes
from bson.errors import InvalidDocument
from fuzzing import examples
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from astro_db.errors import QueryError
from astro_db.query.evaluate import apply_update, bson_equal, matches
from astro_db.query.updates import _PULL_OPS

LOCAL = int(os.environ.get("ASTRO_DB_EVAL_EXAMPLES", "0"))


def _settings(n: int) -> Any:
    return settings(max_examples=LOCAL or examples(n), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _judged(query: dict[str, Any], doc: dict[str, Any]) -> bool | None:
    """``matches``' answer, or None where it leaves the answer to the server."""
    try:
        return matches(query, doc)
    except QueryError:  # CannotJudge, or an operator the evaluator does not implement
        return None


_COLLECTION = mongomock_ng.MongoClient().db.differential


def _found(docs: list[dict[str, Any]], query: dict[str, Any]) -> set[int]:
    _COLLECTION.delete_many({})
    _COLLECTION.insert_many([dict(d) for d in docs])
    return {d["_id"] for d in _COLLECTION.find(query)}


def _orders_against_a_boolean(query: Any) -> bool:
    if isinstance(query, dict):
        return any((k in ("$gt", "$gte", "$lt", "$lte") and isinstance(v, bool)) or _orders_against_a_boolean(v)
                   for k, v in query.items())
    return isinstance(query, list) and any(_orders_against_a_boolean(v) for v in query)


@_settings(150)
@given(docs=st.lists(shapes.DOCS, min_size=1, max_size=4), query=shapes.queries())
def test_every_definite_answer_of_the_evaluator_is_the_servers(docs, query):
    assume(not shapes.oracle_unsure(query) and not _orders_against_a_boolean(query))
    stored = [{"_id": i, **d} for i, d in enumerate(docs)]
    try:
        found = _found(stored, query)
    except (mongomock_ng.OperationFailure, NotImplementedError, TypeError):
        assume(False)  # a filter mongomock-ng refuses or does not implement ($type "null", a list in $all...)
    for doc in stored:
        if (shapes.goes_past_a_scalar(query, doc) or shapes.exists_through_a_list(query, doc)
                or shapes.elem_match_over_scalars(query, doc)):
            continue
        judged = _judged(query, doc)
        if judged is not None:
            assert judged is (doc["_id"] in found), (query, doc, judged)


# --- updates -----------------------------------------------------------------------------------

ITEMS = st.one_of(shapes.SCALARS, st.lists(shapes.SCALARS, max_size=2), shapes._subdoc(shapes.SCALARS))
LISTS = st.one_of(st.lists(shapes.SCALARS, max_size=4), st.lists(shapes._subdoc(shapes.SCALARS), max_size=4),
                  st.lists(ITEMS, max_size=4))


def _stored_after(doc: dict[str, Any], update: dict[str, Any]) -> dict[str, Any] | None:
    coll = mongomock_ng.MongoClient().db.c
    coll.insert_one(dict(doc))
    try:
        coll.update_one({"_id": 1}, update)
    except (mongomock_ng.WriteError, InvalidDocument, KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None  # mongomock-ng raises some of the server's refusals as plain Python errors
    stored = coll.find_one({"_id": 1})
    # mongomock-ng makes a field named "$[]" where there is no list; MongoDB refuses the update
    return None if '"$[]"' in repr(stored).replace("'", '"') else stored


def _ours(doc: dict[str, Any], update: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return apply_update(doc, update)
    except QueryError:
        return None


def _holds_bool(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_bool(v) for v in value)
    return isinstance(value, bool)


def _operators(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {k for k in value if str(k).startswith("$")}.union(*(_operators(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_operators(v) for v in value))
    return set()


def _lists_listed(value: Any) -> bool:
    if isinstance(value, dict):
        return any((k in ("$in", "$nin") and any(isinstance(v, list) for v in sub)) or _lists_listed(sub)
                   for k, sub in value.items())
    return isinstance(value, list) and any(_lists_listed(v) for v in value)


@_settings(120)
@given(items=LISTS, condition=st.one_of(shapes.conditions(), shapes.queries(sub=True)))
def test_pull_by_a_generated_condition_keeps_what_the_server_keeps(items, condition):
    # a plain value pulls by equality, where mongomock-ng takes True for 1 (test_evaluate.py)
    assume(isinstance(condition, dict) and condition and not shapes.oracle_unsure(condition))
    # only $and/$or/$nor: compile_update refuses it (the backends disagree on it)
    assume(not all(k in ("$and", "$or", "$nor") for k in condition))
    assume(_operators(condition) <= _PULL_OPS)  # the operators a $pull condition may use
    # mongomock-ng pulls -1 by {"$in": [[-1]]} in a $pull (it reads a listed list as its items)
    assume(not _lists_listed(condition))
    assume(not _orders_against_a_boolean(condition) and not _holds_bool(items))
    if not all(str(k).startswith("$") for k in condition):  # a query on the items' fields
        # MongoDB tests documents only; mongomock-ng tests a scalar item too (missing fields)
        assume(all(isinstance(i, dict) for i in items))
        assume(not any(shapes.goes_past_a_scalar(condition, i) or shapes.exists_through_a_list(condition, i)
                       for i in items if isinstance(i, dict)))
        # mongomock-ng keeps an item without the field under $not, which MongoDB pulls
        # (test_evaluate.py::test_pulling_documents_by_a_negated_field_condition_removes_those_missing_the_field)
        assume("$not" not in _operators(condition))
    else:
        # mongomock-ng looks into a list item under $elemMatch and gets $not wrong on values
        assume(not {"$elemMatch", "$not"} & _operators(condition))

    expected = _stored_after({"_id": 1, "xs": items}, {"$pull": {"xs": condition}})
    got = _ours({"_id": 1, "xs": items}, {"$pull": {"xs": condition}})
    assume(got is not None)  # a condition the evaluator cannot judge refuses the update
    assume(expected is not None)  # mongomock-ng refuses $not in a $pull condition, which MongoDB takes
    assert bson_equal(got, expected), (items, condition, got, expected)


PATHS = ["a", "a.x", "a.0", "a.1", "a.0.x", "a.x.y", "a.$[]", "a.$[].x", "b"]


@st.composite
def updates(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["$set", "$unset", "$inc", "$push", "$addToSet"]))
    path = draw(st.sampled_from(PATHS))
    if op == "$set":
        return {op: {path: draw(shapes.VALUES)}}
    if op == "$unset":
        return {op: {path: ""}}
    if op == "$inc":
        return {op: {path: draw(shapes.NUMBERS)}}
    value = draw(st.one_of(ITEMS, st.builds(lambda xs: {"$each": xs}, st.lists(ITEMS, max_size=3))))
    return {op: {path: value}}


def _past_end(doc: dict[str, Any], path: str) -> bool:
    parts = path.split(".")
    value = doc.get(parts[0])
    return len(parts) > 1 and parts[1].isdigit() and isinstance(value, list) and int(parts[1]) >= len(value)


@_settings(150)
@given(doc=shapes.DOCS, update=updates())
def test_apply_update_through_these_shapes_stores_what_the_server_stores(doc, update):
    (op, spec), = update.items()
    (path, _), = spec.items()
    assume(not _holds_bool(doc) and not _holds_bool(update))  # mongomock-ng: True == 1 in $addToSet, $inc
    assume(op != "$addToSet" or not shapes.one_number_two_types(doc, update))  # mongomock-ng: 2 and 2.0 are two items
    assume(op != "$unset" or not (path.split(".")[-1].isdigit() or "$[]" in path))  # it leaves the item
    assume(not _past_end(doc, path))  # mongomock-ng refuses to pad a list
    expected = _stored_after({"_id": 1, **doc}, update)
    got = _ours({"_id": 1, **doc}, update)
    # a refusal is not compared: mongomock-ng leaves the document alone for some updates MongoDB
    # refuses ($set of "a.x" where a is -1); test_evaluate.py names the server's refusals
    assume(got is not None and expected is not None)
    assert bson_equal(got, expected) or got == expected, (doc, update, got, expected)
