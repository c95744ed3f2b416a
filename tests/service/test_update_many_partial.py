"""An ``update_many`` the server stops part-way (it applies a multi-document update one document
at a time and stops at the first it refuses: a unique key taken, its schema validator) leaves
no change unrecorded: the documents it had updated get their change records (the trail, the
journal backups and point-in-time restores replay, the caches' invalidation), and the error says
how many were updated. Before, the error was raised as if nothing had been written, and those
updates had no record (the query cache already dropped the model's answers on the failed write;
the second test holds that too)."""

from __future__ import annotations

import uuid

import pytest

from astro_db import Database
from astro_db.errors import DuplicateKeyError


def _users(db, n: int, name: str) -> list:
    return [db.create("User", {"email": f"{name.lower()}{i}-{uuid.uuid4().hex[:6]}@example.com", "name": name})
            for i in range(n)]


def test_an_update_many_stopped_by_a_taken_key_records_what_it_updated_and_says_how_many(db):
    users = _users(db, 4, "Batch")
    taken = f"taken-{uuid.uuid4().hex[:6]}@example.com"
    with pytest.raises(DuplicateKeyError) as stopped:
        db.update_many("User", {"name": "Batch"}, {"email": taken})
    assert stopped.value.fields == ("email",)
    changed = [u["_id"] for u in db.mongo.users.find({"email": taken})]
    assert len(changed) == 1  # the server updated one document, then refused the next
    assert "1 document(s) were updated before it failed" in str(stopped.value)
    trail = db.audit_trail("User", changed[0])
    assert [e["action"] for e in trail] == ["create", "update"]
    record = db.mongo.astroChanges.find_one({"documentId": changed[0], "action": "update"})
    assert record["doc"]["email"] == taken and record["fields"] == ["email"]
    untouched = [u.id for u in users if u.id not in changed]
    assert db.mongo.astroChanges.count_documents({"documentId": {"$in": untouched}, "action": "update"}) == 0


def test_a_cached_answer_the_stopped_update_many_changed_is_dropped(live_url_or_embedded):
    db = Database(live_url_or_embedded, cache_models=("User",), allow_plaintext_sensitive=True).connect()
    try:
        _users(db, 3, "Cached")
        taken = f"taken-{uuid.uuid4().hex[:6]}@example.com"
        assert db.find("User", {"email": taken}, cache=True) == []  # cached: no such user
        with pytest.raises(DuplicateKeyError):
            db.update_many("User", {"name": "Cached"}, {"email": taken})
        assert len(db.find("User", {"email": taken}, cache=True)) == 1
    finally:
        db.disconnect()


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def live_url_or_embedded(request):
    if request.param == "embedded":
        return f"mongomock://localhost/t{uuid.uuid4().hex[:8]}"
    return request.getfixturevalue("live_url")


def test_when_what_the_stopped_update_many_wrote_cannot_be_read_back_its_own_error_says_so(monkeypatch):
    """The server answered (a taken key): the error stays that error, never "outcome unknown",
    and says to run reconcile_changes(), which records what landed."""
    from astro_db.errors import DatabaseConnectionError
    from astro_db.ops.steps import run

    db = Database(f"mongomock://localhost/t{uuid.uuid4().hex[:8]}").connect()
    try:
        _users(db, 3, "Unread")
        call = run.call

        def failing_read_back(rt, info, operation, fn, *args, **kwargs):
            if operation.endswith("outcome check"):
                raise DatabaseConnectionError("the server went away") from ConnectionError("reset")
            return call(rt, info, operation, fn, *args, **kwargs)

        monkeypatch.setattr(run, "call", failing_read_back)
        with pytest.raises(DuplicateKeyError, match="could not be read back .* run reconcile_changes"):
            db.update_many("User", {"name": "Unread"}, {"email": f"taken-{uuid.uuid4().hex[:6]}@example.com"})
        monkeypatch.setattr(run, "call", call)
        assert db.reconcile_changes()["rebuilt"]["User"] == 1  # the one it updated: recorded now
        assert db.mongo.astroChanges.count_documents({"model": "User", "action": "update"}) == 1
    finally:
        db.disconnect()


def test_an_update_many_made_document_by_document_says_how_many_it_updated_before_it_failed(db, user):
    """A list change goes document by document (a compare-and-set each): the second document
    moved to the same day as the first is refused by the unique key (userId, date), the first
    stays written and recorded, and the error says so."""
    first, second = (db.create("PlanetaryInsight", {"userId": user.id, "date": f"2026-03-0{d}T00:00:00Z", "energyLevel": 5,
                                                    "recommendations": ["x"]}) for d in (1, 2))
    with pytest.raises(DuplicateKeyError, match="1 document\\(s\\) were updated before it failed"):
        db.update_many("PlanetaryInsight", {"userId": user.id},
                       {"$set": {"date": "2026-03-09T00:00:00Z"}, "$push": {"recommendations": "y"}})
    stored = {d["_id"]: d for d in db.mongo.planetaryInsights.find({"userId": user.id})}
    assert stored[first.id]["recommendations"] == ["x", "y"] and stored[second.id]["recommendations"] == ["x"]
    assert [e["action"] for e in db.audit_trail("PlanetaryInsight", first.id)] == ["create", "update"]
    assert [e["action"] for e in db.audit_trail("PlanetaryInsight", second.id)] == ["create"]
