"""Keyset pages against one sorted ``find``, on random data: every document exactly once, in order.

Hypothesis draws insights whose sort keys tie often and are null or missing often (``summary``,
``expiresAt``; ``energyLevel`` with few values), a sort of one to three keys in any mix of
directions, a page size and a filter; paging through with each page's token must give exactly
the documents a single ``find`` sorted by the same keys (``_id`` last) gives, in its order. The
embedded backend orders null and missing first, as MongoDB does (nx-27017 does not: the service
test of pages skips that part there)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from bson import Binary, ObjectId
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pages_kit import chart_database, sorted_ids, total

from astro_db import Database
from astro_db.errors import QueryError

UTC = dt.timezone.utc
DATES = [dt.datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3)]
KEYS = ["energyLevel", "summary", "expiresAt", "date"]

document = st.fixed_dictionaries(
    {"date": st.sampled_from(DATES), "energyLevel": st.sampled_from([10, 50, 90])},
    optional={"summary": st.one_of(st.none(), st.sampled_from(["grey", "sunny"])),
              "expiresAt": st.one_of(st.none(), st.sampled_from(DATES))})
sort = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from([1, -1])), min_size=1, max_size=3,
                unique_by=lambda pair: pair[0])
# a sort that may name the id anywhere (what follows it never decides: find sorts so)
sort_with_id = st.lists(st.tuples(st.sampled_from([*KEYS, "id"]), st.sampled_from([1, -1])), min_size=1, max_size=3,
                        unique_by=lambda pair: pair[0])
query = st.sampled_from([{}, {"energyLevel": {"$gte": 50}}, {"summary": None}, {"expiresAt": {"$ne": None}}])


def _paged(db: Database, filt: dict[str, Any], order: list[tuple[str, int]], limit: int, size: int) -> list[Any]:
    """The ids of every page in turn, following each page's token to the end."""
    got, token, pages = [], None, 0
    while True:
        page = db.page("PlanetaryInsight", filt, sort=order, limit=limit, after=token, lean=True)
        got += [d["_id"] for d in page.items]
        token, pages = page.next, pages + 1
        assert pages <= size + 2, "pages do not end"
        if token is None:
            return got


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(document, max_size=14), order=sort_with_id, limit=st.integers(1, 4), filt=query)
def test_pages_give_what_one_sorted_find_gives(docs, order, limit, filt):
    with Database(f"mongomock://localhost/pages{uuid.uuid4().hex[:8]}", audit=False, journal=False,
                  ensure_indexes=False) as db:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        items = [{"userId": user.id, "recommendations": ["Rest"], **doc} for doc in docs]
        assert not db.create_many("PlanetaryInsight", items, lean=True).failed
        expected = [d["_id"] for d in db.find("PlanetaryInsight", filt, sort=total(order), lean=True)]
        assert _paged(db, filt, order, limit, len(docs)) == expected


# a value of each type bracket a sort key can meet in a document another client wrote
foreign = st.one_of(st.none(), st.sampled_from([10, 2.5, "7", "grey", True, False, DATES[0], {"a": 1},
                                                ObjectId("6b1640000000000000000001"), Binary(b"x")]))
raw_document = st.fixed_dictionaries({}, optional={"energyLevel": foreign, "summary": foreign, "expiresAt": foreign})
# an _id another client chose: a string or a number among the service's ObjectIds (MongoDB
# sorts numbers, then strings, then ObjectIds)
foreign_id = st.one_of(st.integers(1, 2**24).map(lambda n: ObjectId(n.to_bytes(12, "big"))),
                       st.integers(-3, 3), st.text("ab", min_size=1, max_size=2))


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(st.tuples(foreign_id, raw_document), max_size=12, unique_by=lambda pair: pair[0]),
       order=sort_with_id, limit=st.integers(1, 4))
def test_pages_keep_documents_whose_sort_keys_hold_other_types(docs, order, limit):
    """Stored by another client (the Node service, a script): a sort key holding a string where
    the model says number, a bool, a document, an ``_id`` that is a string or a number...
    MongoDB sorts by type bracket first, and a page after a value of one bracket still reaches
    every later one, the tie-break ``_id`` included."""
    with Database(f"mongomock://localhost/pagesraw{uuid.uuid4().hex[:8]}", audit=False, journal=False,
                  ensure_indexes=False) as db:
        if docs:
            db.mongo["planetaryInsights"].insert_many([{"_id": _id, "date": DATES[0], **doc} for _id, doc in docs])
        stored = [(k.replace("id", "_id") if k == "id" else k, d) for k, d in total(order)]
        expected = [d["_id"] for d in db.mongo["planetaryInsights"].find({}, sort=stored)]
        assert _paged(db, {}, order, limit, len(docs)) == expected



uuids = st.builds(uuid.UUID, st.sampled_from(["00000000-0000-4000-8000-000000000001", "7f000000-0000-4000-8000-000000000000",
                                             "ffffffff-0000-4000-8000-000000000000"]))
# UUIDs, null or missing: the embedded backend neither matches a UUID by ``$type: "binData"`` nor
# sorts it among other binary data, so other types are left to the test above
uuid_document = st.fixed_dictionaries({}, optional={"summary": st.one_of(st.none(), uuids), "expiresAt": uuids,
                                                    "energyLevel": uuids})


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(uuid_document, max_size=10), order=sort, limit=st.integers(1, 4), uuid_ids=st.booleans())
def test_pages_follow_uuids_in_sort_keys_and_ids(docs, order, limit, uuid_ids):
    """A UUID (BSON binary subtype 4, as the Node driver's ``UUID`` stores it; read as a
    ``uuid.UUID``) in a sort key or as the ``_id`` of documents another client wrote: before, the
    token of a page ending on one could not be made (PyMongo refuses to encode a native UUID
    without a UUID representation), so ``page`` raised a bare ``ValueError``."""
    with Database(f"mongomock://localhost/pagesuuid{uuid.uuid4().hex[:8]}", audit=False, journal=False,
                  ensure_indexes=False) as db:
        if docs:
            db.mongo["planetaryInsights"].insert_many([{"_id": uuid.uuid4() if uuid_ids else ObjectId(), "date": DATES[0], **doc}
                                                       for doc in docs])
        expected = [d["_id"] for d in db.mongo["planetaryInsights"].find({}, sort=[*order, ("_id", order[-1][1])])]
        assert _paged(db, {}, order, limit, len(docs)) == expected

# birth charts: sort keys inside an embedded document, projections naming it, a part of it, or
# something else, to include or to leave out
chart = st.fixed_dictionaries({"date": st.sampled_from(DATES), "timezone": st.sampled_from(["UTC", "Europe/Paris"])},
                              optional={"location": st.fixed_dictionaries({"name": st.sampled_from(["Oslo", "Rome"])})})
chart_sort = st.lists(st.tuples(st.sampled_from(["birthData", "birthData.date", "birthData.timezone",
                                                 "birthData.location.name"]), st.sampled_from([1, -1])),
                      min_size=1, max_size=2, unique_by=lambda pair: pair[0])
projection = st.sampled_from([{"birthData": 1}, {"birthData.date": 1}, {"birthData.location": 1}, {"userId": 1},
                              {"birthData": 0}, {"birthData.date": 0}, {"birthData.location.name": 0}, {"userId": 0},
                              {"_id": 1}, {"_id": 0}, {"_id": 0, "userId": 1}])  # _id: the tie-break, a sort key too


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=st.lists(chart, max_size=8), order=chart_sort, limit=st.integers(1, 3), shown=projection)
def test_pages_with_a_projection_give_what_one_sorted_find_gives(docs, order, limit, shown):
    """A projection naming a sort key's parent or a part of it: an inclusion gets each sort key
    whole without a path collision (``birthData`` beside ``birthData.date``), an exclusion that
    leaves out any of a sort key is a ``QueryError``; paging otherwise gives one sorted find."""
    with chart_database("pagesproj", docs) as db:
        expected = sorted_ids(db.mongo["birthCharts"], order)
        hidden = [p for p, v in shown.items() if not v]
        if any(k == p or k.startswith(p + ".") or p.startswith(k + ".") for k, _ in [*order, ("_id", 1)] for p in hidden):
            try:
                db.page("BirthChart", {}, sort=order, limit=limit, projection=shown, lean=True)
            except QueryError:
                return
            raise AssertionError("a projection leaving out a sort key was not refused")
        got, token = [], None
        for _ in range(len(docs) + 2):
            page = db.page("BirthChart", {}, sort=order, limit=limit, projection=shown, after=token, lean=True)
            got += [d["_id"] for d in page.items]
            token = page.next
            if token is None:
                break
        assert got == expected


# a sort value too long for a token (8,192 characters, what passes in a URL): another client's
# long text, or an app model's
long_text = st.tuples(st.sampled_from("abc"), st.sampled_from([1, 6000, 9000])).map(lambda pair: pair[0] * pair[1])


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(long_text, max_size=7), direction=st.sampled_from([1, -1]), limit=st.integers(1, 3))
def test_pages_after_sort_values_too_long_for_a_token_give_what_one_sorted_find_gives(texts, direction, limit):
    """A page whose last document's sort value is too long for the token (the token names it by
    ``_id``, and the next page reads its values back): the next token still opens, and paging
    gives one sorted find."""
    with Database(f"mongomock://localhost/pageslong{uuid.uuid4().hex[:8]}", audit=False, journal=False,
                  ensure_indexes=False) as db:
        coll = db.mongo["timingRecommendations"]
        if texts:
            coll.insert_many([{"_id": ObjectId(), "userId": ObjectId(), "activity": text} for text in texts])
        order = [("activity", direction)]
        expected = sorted_ids(coll, order)
        got, token = [], None
        for _ in range(len(texts) + 2):
            page = db.page("TimingRecommendation", {}, sort=order, limit=limit, after=token, lean=True)
            got += [d["_id"] for d in page.items]
            token = page.next
            assert token is None or len(token) <= 8192
            if token is None:
                break
        assert got == expected


def test_a_token_naming_its_last_document_refuses_it_changed_since():
    with Database("mongomock://localhost/pageslongchanged", audit=False, journal=False, ensure_indexes=False) as db:
        coll = db.mongo["timingRecommendations"]
        coll.insert_many([{"_id": ObjectId(), "userId": ObjectId(), "activity": c * 9000} for c in "ab"])
        first = db.page("TimingRecommendation", {}, sort="activity", limit=1, lean=True)
        coll.update_one({"_id": first.items[0]["_id"]}, {"$set": {"activity": "z"}})
        with pytest.raises(QueryError, match="changed or removed since"):
            db.page("TimingRecommendation", {}, sort="activity", limit=1, after=first.next, lean=True)


def test_sort_values_too_long_for_a_token_are_read_back_by_keys_inside_others():
    """Read back by ``_id`` with a projection of the sort keys: ``birthData`` holds
    ``birthData.location.name``, so only the first is named (both: a path collision)."""
    with Database("mongomock://localhost/pageslongnested", audit=False, journal=False, ensure_indexes=False) as db:
        coll = db.mongo["birthCharts"]
        coll.insert_many([{"_id": ObjectId(), "userId": ObjectId(),
                           "birthData": {"date": DATES[0], "location": {"name": c * 9000}}} for c in "abc"])
        order = [("birthData.location.name", 1), ("birthData", 1)]
        expected = sorted_ids(coll, order)
        got, token = [], None
        for _ in range(5):
            page = db.page("BirthChart", {}, sort=order, limit=1, after=token, lean=True)
            got += [d["_id"] for d in page.items]
            token = page.next
            if token is None:
                break
        assert got == expected
