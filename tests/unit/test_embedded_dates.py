"""The embedded backend's ``$currentDate`` stores what a server stores (astro_db.backends.embedded):
a UTC date at the millisecond, in the form mongomock-ng keeps every other date. mongomock-ng 7.x
stored an aware date at the microsecond there (Python 3.11+), beside the naive ones of inserts and
``$set``: after any update, a filter or a sort on ``updatedAt`` failed with ``TypeError``."""

from __future__ import annotations

import datetime as dt


def test_after_an_update_a_filter_and_a_sort_on_updated_at_work_and_the_date_is_at_the_millisecond(db):
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    bob = db.create("User", {"email": "bob@example.com", "name": "Bob"})
    updated = db.update("User", {"id": ann.id}, {"name": "Anne"})
    assert updated is not None and updated.updated_at.microsecond % 1000 == 0
    stored = db.collection("User").find_one({"_id": ann.id})["updatedAt"]
    assert stored.microsecond % 1000 == 0 and stored.utcoffset() == dt.timedelta(0)
    since = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    assert {u.id for u in db.find("User", {"updatedAt": {"$gte": since}})} == {ann.id, bob.id}
    ordered = db.find("User", {}, sort=[("updatedAt", -1)], lean=True)  # bob may share ann's millisecond
    assert {u["_id"] for u in ordered} == {ann.id, bob.id}
    assert ordered[0]["updatedAt"] >= ordered[1]["updatedAt"] and ordered[0]["updatedAt"] == stored
    assert db.count("User", {"updatedAt": {"$gt": stored}}) == 0
    assert ann.id in {u.id for u in db.find("User", {"updatedAt": stored})}


def test_update_many_and_an_upsert_stamp_dates_the_same_way(db):
    db.create_many("User", [{"email": f"u{i}@example.com", "name": f"U{i}"} for i in range(3)])
    assert db.update_many("User", {}, {"name": "Same"}, all=True) == 3
    db.upsert_many("User", [{"email": "new@example.com", "name": "New"}], on="email")
    dates = [u["updatedAt"] for u in db.find("User", {}, lean=True)]
    assert len(dates) == 4 and all(d.microsecond % 1000 == 0 and d.tzinfo is not None for d in dates)
    assert len(db.find("User", {}, sort=[("updatedAt", 1), ("email", 1)])) == 4
