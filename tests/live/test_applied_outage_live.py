"""The outage differential of tests/unit/test_applied_outage_differential.py on nx-27017, where a
create and its change records go in one client-level ``bulkWrite`` and deletes send their intents
with the compare-and-set delete in one: the server's collections are the oracle again, and an
error after any of the write was applied must never be answered "retry"."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.test_applied_outage_differential import WRITES, Outage, write_then_check

from astro_db import Database
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
        write_then_check(db, outage, name, at, persistent, lost_reply, applied_flag=False)
    finally:
        db.mongo.client.drop_database(db.mongo.name)
        db.disconnect()
