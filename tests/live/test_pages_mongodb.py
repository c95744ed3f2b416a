"""Keyset pages on a real MongoDB (ASTRO_DB_TEST_URI); skipped otherwise.

What nx-27017 cannot show: its planner sorts every match in memory for any filtered, sorted
find (about 110 ms for 5,000 documents whatever the filter), so there a deep page costs a scan.
MongoDB turns the page's leading range on the sort key into index bounds: a page deep in the
order examines about ``limit`` index keys, as the first page does."""

from __future__ import annotations

import datetime as dt

import pytest

from astro_db import Database

pytestmark = pytest.mark.mongodb


def test_a_deep_page_examines_as_few_keys_as_the_first(live_url):
    db = Database(live_url, audit=False, journal=False).connect()
    try:
        user = db.create("User", {"email": "pages@example.com", "name": "Pages"})
        start = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        db.create_many("PlanetaryInsight", [{"userId": user.id, "date": start + dt.timedelta(days=i), "energyLevel": 50,
                                             "recommendations": ["Rest"]} for i in range(3000)], lean=True)
        token, examined = None, []
        for number in range(1, 101):
            page = db.page("PlanetaryInsight", {"userId": user.id}, sort="date", limit=20, after=token, lean=True)
            if number in (1, 100):
                from astro_db.ops import pages

                order = pages.page_sort([("date", 1)])
                last = None if token is None else db.executor.runtime.page_tokens.open(
                    db.executor.runtime.page_tokens.context("PlanetaryInsight", {"userId": user.id}, order, ""), token, 2)
                query = {"userId": user.id} if last is None else {"$and": [{"userId": user.id}, pages.keyset_filter(order, last)]}
                plan = db.mongo.command("explain", {"find": "planetaryInsights", "filter": query, "sort": dict(order),
                                                    "limit": 21}, verbosity="executionStats")
                examined.append(plan["executionStats"]["totalKeysExamined"])
            token = page.next
        assert examined[1] <= examined[0] + 5, examined
    finally:
        db.disconnect()


@pytest.mark.parametrize("direction", [1, -1])
def test_pages_over_nan_sort_values_give_every_document_once_in_the_servers_order(live_url, direction):
    """MongoDB sorts NaN before every other number, and no comparison with NaN is true: a page
    that ends on a NaN goes on to the numbers (ascending), one that ends on a number reaches the
    NaNs (descending). (Neither test backend can show it: tests/unit/test_pages_nan.py.)"""
    from bson import Decimal128

    db = Database(live_url, audit=False, journal=False).connect()
    try:
        coll = db.mongo["planetaryInsights"]
        coll.delete_many({"summary": "nan-pages"})
        values = [float("nan"), 3, Decimal128("NaN"), -1.5, None, float("-inf"), 7, float("nan"), 0]
        coll.insert_many([{"summary": "nan-pages", "energyLevel": v} for v in values]
                         + [{"summary": "nan-pages"}])  # and one missing the key
        order = [("energyLevel", direction), ("_id", direction)]
        expected = [d["_id"] for d in coll.find({"summary": "nan-pages"}, sort=order)]
        for limit in (1, 2, 3):
            got, token = [], None
            while True:
                page = db.page("PlanetaryInsight", {"summary": "nan-pages"}, sort=[("energyLevel", direction)],
                               limit=limit, after=token, lean=True)
                got += [d["_id"] for d in page.items]
                token = page.next
                if token is None:
                    break
            assert got == expected, (limit, got, expected)
    finally:
        db.disconnect()
