"""Expected revisions: ``update`` / ``delete`` with ``expected_revision=`` change the document
only if it is still at the revision the caller read (``instance.revision``, ``_rev`` of a lean
read), else ``ConflictError`` carrying the revision it is at; on both backends. A concurrent
writer is driven in between the read and the write by a wrapped collection, never by sleeping.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spies import lose_first_reply

from astro_db import errors
from astro_db.contrib._http import error_response

from .conftest import insight_data


def trail(db: Any, doc_id: Any) -> list[tuple[str, int]]:
    return [(e["action"], e["revision"]) for e in db.audit_trail("PlanetaryInsight", doc_id)]


@pytest.fixture
def day(db, user):
    return db.create("PlanetaryInsight", insight_data(user.id))


def test_reads_expose_the_revision(db, day):
    assert day.revision == 0
    lean = db.find_one("PlanetaryInsight", {"id": day.id}, lean=True)
    assert lean.get("_rev", 0) == 0 and lean["__v"] == 0  # revision 0 is stored as no _rev, as before
    db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 60})
    db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 61})
    assert db.find_one("PlanetaryInsight", {"id": day.id}).revision == 2
    assert db.find_one("PlanetaryInsight", {"id": day.id}, lean=True)["_rev"] == 2
    assert [d["_rev"] for d in db.find("PlanetaryInsight", {"id": day.id}, lean=True)] == [2]
    with pytest.raises(AttributeError):
        day.revision = 5  # read-only


def test_an_update_at_the_expected_revision_applies(db, day):
    doc = db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 70}, expected_revision=day.revision)
    assert doc.energy_level == 70 and doc.revision == 1
    doc = db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 71}, expected_revision=1, lean=True)
    assert doc["_rev"] == 2
    assert trail(db, day.id) == [("create", 0), ("update", 1), ("update", 2)]


def test_an_update_at_another_revision_is_a_conflict_and_writes_nothing(db, day):
    db.update("PlanetaryInsight", {"id": day.id}, {"summary": "someone else"})
    with pytest.raises(errors.ConflictError) as caught:
        db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 70}, expected_revision=0)
    assert caught.value.current_revision == 1 and caught.value.expected_revision == 0
    assert "revision 1" in str(caught.value) and "expected revision 0" in str(caught.value)
    stored = db.find_one("PlanetaryInsight", {"id": day.id})
    assert stored.energy_level == 50 and stored.revision == 1
    assert trail(db, day.id) == [("create", 0), ("update", 1)]
    assert error_response(caught.value)[0] == 409 and error_response(caught.value)[1]["currentRevision"] == 1


def test_a_list_update_at_another_revision_is_a_conflict_too(db, day):
    db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 1})
    with pytest.raises(errors.ConflictError) as caught:
        db.update("PlanetaryInsight", {"id": day.id}, {"$push": {"recommendations": "Walk"}}, expected_revision=0)
    assert caught.value.current_revision == 1
    doc = db.update("PlanetaryInsight", {"id": day.id}, {"$push": {"recommendations": "Walk"}}, expected_revision=1)
    assert doc.recommendations == ["Rest", "Walk"] and doc.revision == 2


def test_a_missing_document_is_none_not_a_conflict(db, user, day):
    assert db.update("PlanetaryInsight", {"id": user.id}, {"energyLevel": 1}, expected_revision=0) is None
    assert db.delete("PlanetaryInsight", {"id": user.id}, expected_revision=0) is False


def test_a_bad_expected_revision_is_a_query_error(db, day):
    # 2**63: no BSON integer holds it (the driver could not encode the filter: an unexpected error, after the
    # call had begun; on the embedded backend a conflict with revision 0)
    for bad in (-1, "3", 1.5, True, 2**63, 2**64):
        with pytest.raises(errors.QueryError, match="expected_revision"):
            db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 1}, expected_revision=bad)
        with pytest.raises(errors.QueryError, match="expected_revision"):
            db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 1}, expected_revision=bad, returning=False)
        with pytest.raises(errors.QueryError, match="expected_revision"):
            db.delete("PlanetaryInsight", {"id": day.id}, expected_revision=bad)
    assert db.find_one("PlanetaryInsight", {"id": day.id}).revision == 0


class Interleaved:
    """The model's collection, running ``before()`` once just before the first call of
    ``method``: another writer changes the document between the caller's read and its write."""

    def __init__(self, real: Any, method: str, before: Any) -> None:
        self.real, self.method, self.before, self.fired = real, method, before, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.method or self.fired:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.fired += 1
            self.before()
            return attr(*args, **kwargs)

        return call


def wrap(db: Any, make: Any) -> Any:
    rt = db.executor.runtime
    info = rt.registry.resolve("PlanetaryInsight")
    fake = make(rt.coll(info))
    rt.gateway.collections[info.collection] = fake
    return fake


def test_a_concurrent_writer_between_read_and_write_makes_a_conflict(db, day):
    """Two forms read revision 0; the other one's save lands between this one's read and write."""
    form = db.find_one("PlanetaryInsight", {"id": day.id})
    other = db.as_actor("other-form", roles=["writer"])
    fake = wrap(db, lambda real: Interleaved(real, "find_one_and_update", lambda: other.update(
        "PlanetaryInsight", {"id": day.id}, {"summary": "theirs"})))
    with pytest.raises(errors.ConflictError) as caught:
        db.update("PlanetaryInsight", {"id": day.id}, {"summary": "mine"}, expected_revision=form.revision)
    assert fake.fired == 1 and caught.value.current_revision == 1
    assert db.find_one("PlanetaryInsight", {"id": day.id}).summary == "theirs"  # not overwritten
    assert trail(db, day.id) == [("create", 0), ("update", 1)]


def test_two_writers_at_one_revision_one_wins(db, day):
    first = db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 10}, expected_revision=0)
    with pytest.raises(errors.ConflictError):
        db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 20}, expected_revision=0)
    assert first.revision == 1 and db.find_one("PlanetaryInsight", {"id": day.id}).energy_level == 10


def test_a_retried_update_that_had_landed_is_not_a_conflict_with_itself(db, day):
    fake = lose_first_reply(db, "PlanetaryInsight", "find_one_and_update")
    doc = db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 33}, expected_revision=0)
    assert fake.calls == 2  # the run step retried it; its compare-and-set then missed: its own write
    assert doc is not None and doc.energy_level == 33 and doc.revision == 1
    assert trail(db, day.id) == [("create", 0), ("update", 1)]


def test_a_delete_at_the_expected_revision(db, day):
    db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 9})
    with pytest.raises(errors.ConflictError) as caught:
        db.delete("PlanetaryInsight", {"id": day.id}, expected_revision=0)
    assert caught.value.current_revision == 1
    assert db.find_one("PlanetaryInsight", {"id": day.id}) is not None
    assert db.delete("PlanetaryInsight", {"id": day.id}, expected_revision=1) is True
    assert trail(db, day.id) == [("create", 0), ("update", 1), ("delete", 2)]


def test_a_delete_in_a_transaction_at_another_revision_is_a_conflict(db, day):
    db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 9})
    try:
        with db.transaction() as tx:
            with pytest.raises(errors.ConflictError):
                db.delete("PlanetaryInsight", {"id": day.id}, expected_revision=0, transaction=tx)
            assert db.delete("PlanetaryInsight", {"id": day.id}, expected_revision=1, transaction=tx) is True
    except errors.TransactionNotSupportedError:
        pytest.skip("the server cannot run transactions")
    assert db.find_one("PlanetaryInsight", {"id": day.id}) is None


def revisions(db: Any, user_id: Any) -> dict[Any, int]:
    return {d["_id"]: d.get("_rev", 0) for d in db.find("PlanetaryInsight", {"userId": user_id}, lean=True)}


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bumps=st.lists(st.integers(0, 2), min_size=1, max_size=4), returning=st.booleans(), delete=st.booleans())
def test_a_revision_is_the_one_document_the_query_names_first(db, bumps, returning, delete):
    """A query naming no id (``{"userId": ...}``, several of her days) with ``expected_revision``:
    the revision is that of the document the write changes without it, the query's first match
    (what ``find_one`` reads). That document at the revision: it alone is written; at another:
    ``ConflictError`` and nothing written, never another match that happens to be at that
    revision. (Each day ``i`` has been changed ``bumps[i]`` times by someone else.)"""
    owner = db.create("User", {"email": f"r{uuid.uuid4().hex[:8]}@example.com", "name": "Rev"})
    days = [db.create("PlanetaryInsight", insight_data(owner.id, i)) for i in range(len(bumps))]
    for day, n in zip(days, bumps):
        for k in range(n):
            db.update("PlanetaryInsight", {"id": day.id}, {"energyLevel": 60 + k})
    query = {"userId": owner.id}
    first = db.find_one("PlanetaryInsight", query, lean=True)  # the oracle: the document the query names
    before = revisions(db, owner.id)
    at_first = first.get("_rev", 0) == 0
    try:
        if delete:
            done = db.delete("PlanetaryInsight", query, expected_revision=0)
        else:
            done = db.update("PlanetaryInsight", query, {"summary": "mine"}, expected_revision=0, returning=returning)
    except errors.ConflictError as exc:
        assert not at_first and exc.current_revision == first["_rev"]
        assert revisions(db, owner.id) == before  # nothing written
        return
    assert at_first and done
    after = revisions(db, owner.id)
    if delete:
        assert after == {k: v for k, v in before.items() if k != first["_id"]}
    else:
        assert after == {**before, first["_id"]: 1}
