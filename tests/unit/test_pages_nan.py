"""Keyset pages over sort keys holding NaN, judged by MongoDB's rules as the evaluator
(``query.evaluate``) holds them: a sort puts NaN before every other number (after null and
missing), while a comparison with NaN is false (``{$gt: NaN}`` and ``{$lt: 5}`` never match a
NaN, ``{$gte: NaN}`` matches NaN only). A page that ended on a NaN must go on to the numbers
(ascending), and one that ended on a number must reach the NaNs after it (descending).

Neither test backend can run this end to end: mongomock-ng sorts NaN first in both directions and
matches nothing with ``{$gte: NaN}``, nx-27017 refuses to store a NaN ("Invalid JSON document").
So the page conditions (``ops.pages.keyset_filter`` and ``beyond_filter``) are checked here
against the evaluator's order and matching, for every place a page can end."""

from __future__ import annotations

import functools
import math
from typing import Any

from bson import Decimal128
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db.ops.pages import beyond_filter, keyset_filter, page_sort, sort_values
from astro_db.query.evaluate import _order, matches

NAN = float("nan")
MISSING = object()
VALUES = st.sampled_from([NAN, Decimal128("NaN"), -math.inf, -2, 0, 0.5, 5, math.inf, None, MISSING, "s"])


def _doc(n: int, a: Any, b: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": n}
    if a is not MISSING:
        doc["a"] = a
    if b is not MISSING:
        doc["b"] = b
    return doc


def _sorted(docs: list[dict[str, Any]], sort: list[tuple[str, int]]) -> list[dict[str, Any]]:
    def compare(x: dict[str, Any], y: dict[str, Any]) -> int:
        for (_key, direction), vx, vy in zip(sort, sort_values(x, sort), sort_values(y, sort)):
            c = _order(vx, vy)
            if c:
                return c * direction
        return 0
    return sorted(docs, key=functools.cmp_to_key(compare))


@settings(max_examples=examples(400), deadline=None)
@given(rows=st.lists(st.tuples(VALUES, VALUES), min_size=1, max_size=10),
       keys=st.sampled_from([["a"], ["a", "b"], ["b", "a"]]), directions=st.tuples(st.sampled_from([1, -1]), st.sampled_from([1, -1])))
def test_after_any_document_a_page_goes_on_with_exactly_the_documents_after_it(rows: list[tuple[Any, Any]],
                                                                                  keys: list[str],
                                                                                  directions: tuple[int, int]) -> None:
    docs = [_doc(n, a, b) for n, (a, b) in enumerate(rows)]
    sort = page_sort([(key, directions[i]) for i, key in enumerate(keys)])
    ordered = _sorted(docs, sort)
    for cut, last_doc in enumerate(ordered):
        last = sort_values(last_doc, sort)
        keyset, beyond = keyset_filter(sort, last), beyond_filter(sort, last)
        got = [d["_id"] for d in ordered if matches(keyset, d) or (beyond is not None and matches(beyond, d))]
        assert got == [d["_id"] for d in ordered[cut + 1:]], (sort, last, keyset, beyond)


def test_a_page_ending_on_nan_goes_on_to_the_numbers_and_one_ending_on_a_number_reaches_the_nans() -> None:
    docs = [{"_id": 1, "a": NAN}, {"_id": 2, "a": -1}, {"_id": 3, "a": 4}, {"_id": 4}]
    up = page_sort([("a", 1)])
    assert [d["_id"] for d in docs if matches(keyset_filter(up, [NAN, 1]), d)] == [2, 3]
    down = page_sort([("a", -1)])
    after_minus_one = keyset_filter(down, [-1, 2])
    assert [d["_id"] for d in docs if matches(after_minus_one, d)] == [1]  # the NaN, then beyond: the missing one
    assert [d["_id"] for d in docs if matches(beyond_filter(down, [-1, 2]) or {}, d)] == [4]
