"""Scans in ``_id`` order reach a document stored with ``_id: null`` once, and end.

``None`` is an ``_id`` MongoDB stores (once per collection; it sorts before every other), e.g.
written by a script or the Node service. The scans that walk a collection batch by batch
(``reconcile_changes()``'s rebuild of lost records, a migration's ``ctx.batches`` and
``ctx.migrate``, key rotation) kept ``None`` as "nothing read yet", so a batch ending on the
null ``_id`` started the scan again from the beginning, for ever: ``reconcile_changes()`` over a
collection holding only such a document never returned. Each scan's reads are counted here
(``SCAN_LIMIT``): a scan that starts over fails the test instead of hanging it."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from bson import ObjectId

from astro_db import Database
from astro_db.changes import log
from astro_db.migrations import MigrationContext, Migrator

UTC = dt.timezone.utc
SCAN_LIMIT = 20


class StartedOver(AssertionError):
    pass


def _bounded(monkeypatch, owner, name):
    real = getattr(owner, name)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) > SCAN_LIMIT:
            raise StartedOver(f"{name} read {SCAN_LIMIT} batches: the scan started over")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _insight(_id, n=0):
    return {"_id": _id, "userId": ObjectId(), "date": dt.datetime(2026, 12, 1 + n, tzinfo=UTC), "energyLevel": 10,
            "recommendations": ["Rest"], "__v": 0}


@pytest.mark.parametrize("others", [0, 3], ids=["alone", "with others"])
def test_reconcile_reaches_a_null_id_once_and_ends(monkeypatch, others):
    with Database("mongomock://localhost/null_id_reconcile") as db:
        db.mongo["planetaryInsights"].insert_many([_insight(None), *(_insight(ObjectId(), n + 1) for n in range(others))])
        _bounded(monkeypatch, log, "_next_batch")
        assert db.reconcile_changes()["rebuilt"]["PlanetaryInsight"] == 1 + others  # none had a record
        assert db.mongo["astroChanges"].count_documents({"documentId": None}) == 1
        assert db.reconcile_changes()["rebuilt"]["PlanetaryInsight"] == 0


SCAN = '''
version = 1
description = "read every insight, then mark those not marked"


def up(ctx):
    seen = [d["_id"] for batch in ctx.batches("PlanetaryInsight", {}) for d in batch]
    ctx.db.mongo["seen"].insert_one({"ids": seen})
    ctx.migrate("PlanetaryInsight", {}, lambda doc: None)  # leaves every document as it is
    ctx.migrate("PlanetaryInsight", {"marked": {"$exists": False}}, {"$set": {"marked": True}}, key="mark")
'''


@pytest.mark.parametrize("batch_size", [1, 2, 10])
def test_a_migration_scans_past_a_null_id_and_ends(monkeypatch, tmp_path: Path, batch_size):
    (tmp_path / "0001_scan.py").write_text(textwrap.dedent(SCAN))
    with Database("mongomock://localhost/null_id_migration") as db:
        ids = [None, ObjectId(), ObjectId()]
        db.mongo["planetaryInsights"].insert_many([_insight(i, n) for n, i in enumerate(ids)])
        _bounded(monkeypatch, MigrationContext, "_read")
        assert Migrator(db, tmp_path, batch_size=batch_size).up().ran == [1]
        assert db.mongo["seen"].find_one()["ids"] == ids  # each once, in _id order
        assert db.mongo["planetaryInsights"].count_documents({"marked": True}) == 3
