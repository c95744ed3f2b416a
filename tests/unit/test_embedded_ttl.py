"""The embedded backend's TTL indexes (docs/migrations.md, "On the embedded backend"): expired
documents are removed as a server's TTL monitor removes them, by a sweep at most every
``TTL_SWEEP_S`` (60 s), not by a scan of the whole collection on every look at it, which made
each change record written into ``astroChanges`` (TTL on ``time``) cost as much as the records
already there: a migration got slower as the records grew. Counted, not timed: the documents
mongomock-ng's TTL sweep examines, and the sweeps, on an injected clock."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import mongomock_ng.store
import pytest
from bson import ObjectId

from astro_db import Database
from astro_db.backends import embedded
from astro_db.changes import CHANGES_COLLECTION
from astro_db.migrations import Migrator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(embedded, "time", fake, raising=False)
    return fake


@pytest.fixture
def examined(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many documents each TTL sweep of mongomock-ng looked at, one entry per sweep."""
    seen: list[int] = []
    original = mongomock_ng.store.CollectionStore._expire_documents

    def counting(self, index):
        seen.append(len(self._documents))
        return original(self, index)

    monkeypatch.setattr(mongomock_ng.store.CollectionStore, "_expire_documents", counting)
    return seen


def records_of_others(db: Database, count: int) -> None:
    """``count`` change records of other documents, as a busy app leaves them."""
    sample = db.mongo[CHANGES_COLLECTION].find_one()
    made = []
    for _ in range(count):
        oid = ObjectId()
        made.append({**sample, "_id": f"users/{oid}/1/{ObjectId()}", "documentId": oid})
    if made:
        db.mongo[CHANGES_COLLECTION].insert_many(made)


@pytest.mark.parametrize("already", [0, 3000])
def test_a_migrations_records_cost_nothing_per_record_already_present(tmp_path: Path, clock, examined, already):
    (tmp_path / "0001_plan.py").write_text(textwrap.dedent('''
        version = 1
        description = "plan"


        def up(ctx):
            ctx.migrate("User", {"plan": {"$exists": False}}, {"$set": {"plan": "free"}})
    '''))
    with Database("mongomock://localhost/ttl") as db:
        db.create_many("User", [{"email": f"u{i}@example.com", "name": f"U {i}"} for i in range(60)])
        records_of_others(db, already)
        examined.clear()
        Migrator(db, tmp_path, batch_size=10).up()
        assert db.mongo["users"].count_documents({"plan": "free"}) == 60
        assert db.mongo[CHANGES_COLLECTION].count_documents({"action": "update"}) == 60
    # no sweep within the TTL monitor's period: what was already there is never scanned again
    # (mongomock-ng alone scans every record on each of the 60 records' inserts: > 60 x already)
    assert sum(examined) == 0


def test_expired_documents_are_still_removed_by_the_next_sweep(clock, examined):
    with Database("mongomock://localhost/ttl") as db:
        insights = db.mongo["planetaryInsights"]  # TTL index expiresAt_1, expireAfterSeconds 0
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
        insights.find_one({})  # a sweep (the collection's first look)
        insights.insert_one({"_id": ObjectId(), "userId": ObjectId(), "date": past, "energyLevel": 1,
                             "recommendations": ["r"], "expiresAt": past})
        clock.now += embedded.TTL_SWEEP_S - 1
        assert insights.count_documents({}) == 1  # a server's monitor has not run yet either
        clock.now += 2
        assert insights.count_documents({}) == 0
    assert examined  # a sweep ran, and removed it
