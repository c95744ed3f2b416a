"""cleanup(): expired insights and documents of missing or deleted users; dry runs only count."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId

from astro_db import Database

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def seed(db: Database) -> dict[str, str]:
    """One active user, one deleted user, one id that names no user; data for each."""
    active = str(db.create("User", {"email": "live@example.com", "name": "Live"}).id)
    gone = str(db.create("User", {"email": "gone@example.com", "name": "Gone", "status": "deleted"}).id)
    missing = str(ObjectId())
    chart = {"birthData": {"date": "1990-05-17T08:30:00Z", "timezone": "Europe/Paris",
                           "location": {"name": "Paris", "coordinates": {"type": "Point", "coordinates": [2.35, 48.86]}}},
             "positions": [{"body": "Sun", "sign": "Taurus", "degree": 26.5, "house": 10}]}
    timing = {"activity": "travel", "windows": [{"start": "2024-03-01T09:00:00Z", "end": "2024-03-01T11:00:00Z", "score": 80}]}
    for uid in (active, gone, missing):
        db.create("BirthChart", {"userId": uid, **chart})
        db.create("TimingRecommendation", {"userId": uid, **timing})
        db.create("PlanetaryInsight", {"userId": uid, "date": "2024-03-01", "energyLevel": 50,
                                       "recommendations": ["Rest"], "expiresAt": "2031-01-01T00:00:00Z"})
    # an expired insight of the active user
    db.create("PlanetaryInsight", {"userId": active, "date": "2024-03-02", "energyLevel": 50,
                                   "recommendations": ["Rest"], "expiresAt": "2029-06-01T00:00:00Z"})
    return {"active": active, "gone": gone, "missing": missing}


@pytest.fixture
def db():
    with Database("mongomock://localhost/cleanup") as database:
        yield database


def test_dry_run_counts_and_deletes_nothing(db):
    seed(db)
    report = db.cleanup(dry_run=True, now=NOW)
    assert report.as_dict() == {
        "dry_run": True,
        "expired_insights": 1,
        "orphans": {"BirthChart": 2, "PlanetaryInsight": 2, "TimingRecommendation": 2},
        "orphaned_users": 2,
        "total": 7,
    }
    assert db.count("PlanetaryInsight") == 4 and db.count("BirthChart") == 3


def test_cleanup_deletes_expired_and_orphaned_documents_and_keeps_the_rest(db):
    ids = seed(db)
    report = db.cleanup(now=NOW)
    assert report.total == 7 and report.dry_run is False
    for model in ("BirthChart", "PlanetaryInsight", "TimingRecommendation"):
        rows = db.find(model, {}, lean=True)
        assert [str(r["userId"]) for r in rows] == [ids["active"]]
    assert db.count("User") == 2  # users themselves are never deleted
    assert db.cleanup(now=NOW).total == 0  # idempotent


def test_cleanup_of_an_empty_database_finds_nothing(db):
    assert db.cleanup(dry_run=True).total == 0


def test_cleanup_works_from_its_narrow_collaborators_and_deletes_through_the_service(db):
    """maintenance.cleanup gets the service's calls, the run step's gateway and the registry,
    never the Database: a recording Service sees every count and delete, and the deletes leave
    their change records (they went through the pipeline)."""
    from astro_db.maintenance import cleanup
    from astro_db.tooling import _CleanupCalls

    ids = seed(db)
    calls: list[tuple[str, str]] = []
    inner = _CleanupCalls(db)

    class Recording:
        def count(self, model, query):
            calls.append(("count", model))
            return inner.count(model, query)

        def delete_many(self, model, query):
            calls.append(("delete_many", model))
            return inner.delete_many(model, query)

        def find_ids(self, model, query):
            calls.append(("find_ids", model))
            return inner.find_ids(model, query)

    doomed = [d["_id"] for name in ("birthCharts", "planetaryInsights", "timingRecommendations")
              for d in db.mongo[name].find({"userId": ObjectId(ids["missing"])}, {"_id": 1})]
    ex = db.executor
    report = cleanup(Recording(), ex.gateway("distinct"), ex.runtime.registry, now=NOW)
    assert report.total == 7
    assert ("find_ids", "User") in calls and {m for k, m in calls if k == "delete_many"} == {
        "PlanetaryInsight", "BirthChart", "TimingRecommendation"}
    deleted = db.mongo["astroChanges"].count_documents({"action": "delete", "documentId": {"$in": doomed}})
    assert len(doomed) == 3 and deleted == 3  # one record per deleted document of the missing user
