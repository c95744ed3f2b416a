"""The evaluator the query cache trusts, against a MongoDB-wire server (ASTRO_DB_TEST_URI, else
nx-27017): a generated filter the server matches a document with is never judged no match.

The unit tier's differential (``tests/unit/test_evaluate_differential.py``, mongomock-ng) holds
both directions; here the unsafe one, ``matches`` returning False where the server's ``find``
returns the document (the query cache would keep a stale answer). Skipped where nx-27017 does
not answer as MongoDB (docs/testing.md, docs/reading.md): ordering operators (it compares
values of different types: ``{"$gt": -1}`` matches a string or a document), an empty list as a
value (``{"$ne": []}`` matches ``[]``), negations (``$ne``, ``$nin``, ``$not``, ``$nor``:
``{"$ne": -1}`` matches ``[-1]``), regexes (``/a/i`` matches ``false``), ``$exists: false`` (it matches a null field), null tests and
empty documents as values (``query_shapes.oracle_unsure``), paths that go on past a scalar, an
empty list or a list's end, ``$exists`` through a list, documents holding a list in a list
(nx-27017 finds ``{b: [[-1]]}`` for ``{"b": -1}``), an ``$in`` beside a document holding an
embedded one (it finds ``{a: {x: -1}}`` for ``{"a": {"$in": [-1]}}``); against a real MongoDB
(``ASTRO_DB_TEST_URI``) the same skips apply.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pymongo
import pytest
import query_shapes as shapes
from bson.regex import Regex
from fuzzing import examples
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pymongo.errors import PyMongoError

from astro_db.errors import QueryError
from astro_db.query.evaluate import matches

LOCAL = int(os.environ.get("ASTRO_DB_EVAL_EXAMPLES", "0"))


_NX_UNSURE = {"$gt", "$gte", "$lt", "$lte", "$ne", "$nin", "$not", "$nor", "$regex"}


def _nx_unsure(query: Any) -> bool:
    """An ordering operator, a negation, ``$exists: false`` (it matches a null field), a regex,
    or an empty list as a value (nx-27017 finds
    ``{b: []}`` for ``{"b": {"$ne": []}}``, ``{a: [-1]}`` for ``{"a": {"$ne": -1}}``, ``{b: false}``
    for ``{"b": {"$regex": "a", "$options": "i"}}``)."""
    if isinstance(query, dict):
        return any(k in _NX_UNSURE or (k == "$exists" and not v) or _nx_value(v) or _nx_unsure(v)
                   for k, v in query.items())
    return isinstance(query, list) and any(_nx_value(v) or _nx_unsure(v) for v in query)


def _nested_list(value: Any) -> bool:
    """A list in a list: nx-27017 looks into it (``{b: [[-1]]}`` for ``{"b": -1}``), MongoDB
    only into the outer list."""
    if isinstance(value, dict):
        return any(_nested_list(v) for v in value.values())
    if isinstance(value, list):
        return any(isinstance(v, list) or _nested_list(v) for v in value)
    return False


def _in_and_a_document(query: Any, doc: dict[str, Any]) -> bool:
    """An ``$in`` in the filter and an embedded document in the stored one: nx-27017 looks into
    the document's values (``{a: {x: -1}}`` for ``{"a": {"$in": [-1]}}``), MongoDB does not."""
    return "'$in'" in repr(query) and any(isinstance(v, dict) or _holds_a_document(v) for v in doc.values())


def _holds_a_document(value: Any) -> bool:
    if isinstance(value, list):
        return any(isinstance(v, dict) or _holds_a_document(v) for v in value)
    return isinstance(value, dict)


def _nx_value(value: Any) -> bool:
    return value == [] or isinstance(value, (re.Pattern, Regex))


@pytest.fixture(scope="module")
def collection(live_server):
    client = pymongo.MongoClient(live_server.url("astro_eval_differential"), serverSelectionTimeoutMS=5000)
    yield client.get_database().documents
    client.drop_database("astro_eval_differential")
    client.close()


def test_no_document_the_server_matches_is_judged_no_match(collection):
    @settings(max_examples=LOCAL or examples(60), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(docs=st.lists(shapes.DOCS, min_size=1, max_size=4), query=shapes.queries())
    def check(docs: list[dict[str, Any]], query: dict[str, Any]) -> None:
        assume(not shapes.oracle_unsure(query) and not _nx_unsure(query))
        stored = [{"_id": i, **d} for i, d in enumerate(docs)]
        collection.delete_many({})
        try:
            collection.insert_many(stored)
            found = {d["_id"] for d in collection.find(query)}
        except PyMongoError:
            assume(False)  # a document or filter this server refuses
        for doc in stored:
            if (doc["_id"] not in found or shapes.goes_past_a_scalar(query, doc) or shapes.exists_through_a_list(query, doc)
                    or _nested_list(doc) or _in_and_a_document(query, doc)):
                continue
            try:
                judged = matches(query, doc)
            except QueryError:  # CannotJudge, or an operator left to the server: the entry is dropped
                continue
            assert judged, (query, doc)

    check()
