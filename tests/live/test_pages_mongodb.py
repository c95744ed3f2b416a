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
