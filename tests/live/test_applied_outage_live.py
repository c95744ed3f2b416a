"""The outage differential of tests/unit/test_applied_outage_differential.py on nx-27017, where a
create and its change records go in one client-level ``bulkWrite`` and deletes send their intents
with the compare-and-set delete in one: the server's collections are the oracle again, and an
error after any of the write was applied must never be answered "retry"."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.test_applied_outage_differential import WRITES, Outage, seeded, snapshot

from astro_db import Database, errors
from astro_db.changes import CHANGES_COLLECTION
from astro_db.contrib import _http
from astro_db.ops import writes


@pytest.fixture
def outage(monkeypatch: Any) -> Outage:
    monkeypatch.setattr(writes, "_ID_CHUNK", 2)
    return Outage(monkeypatch)


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(WRITES)), at=st.integers(1, 16), persistent=st.booleans(), lost_reply=st.booleans())
def test_on_the_server_an_error_after_any_of_a_write_was_applied_is_never_answered_retry(live_server, outage, name,
                                                                                         at, persistent, lost_reply):
    db = Database(live_server.url(f"astro_outage_{uuid.uuid4().hex[:8]}"), retry_attempts=2).connect()
    db.executor.runtime.retry.sleep = lambda s: None
    try:
        seeds = seeded(db)
        before = snapshot(db)
        outage.arm(at, persistent, lost_reply)
        try:
            WRITES[name](db, seeds)
        except errors.AstroDBError as exc:
            outage.arm(None, False, False)
            if snapshot(db) != before:
                status = _http.status_for(exc)
                assert status != 503 and "Retry-After" not in _http.response_headers(status), \
                    (name, at, persistent, lost_reply, type(exc).__name__, str(exc))
        finally:
            outage.arm(None, False, False)
        db.reconcile_changes()
        per_revision = Counter((r["documentId"], r["rev"]) for r in db.mongo[CHANGES_COLLECTION].find({}))
        assert all(n == 1 for n in per_revision.values()), (name, at, persistent, lost_reply, per_revision)
        for model in ("User", "PlanetaryInsight"):
            for doc in db.mongo[db.executor.model(model).collection].find({}, {"_rev": 1}):
                assert (doc["_id"], doc.get("_rev", 0)) in per_revision, (name, at, persistent, lost_reply, doc)
    finally:
        db.mongo.client.drop_database(db.mongo.name)
        db.disconnect()
