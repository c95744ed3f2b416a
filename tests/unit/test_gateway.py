"""One gateway owns the driver (docs/ARCHITECTURE.md, "One gateway"): a workload through the
public API on the embedded backend makes every driver call from ``astro_db.driver.gateway``
(the embedded backend's adapter, ``backends/embedded.py``, only builds the client: no call)."""

from __future__ import annotations

import uuid

import pymongo.errors as pm
import pytest
from driver_callers import driver_callers, workload

from astro_db import Database, backup
from astro_db.errors import DatabaseConnectionError

from .security_data import KEY_A

#: The only module allowed to call the driver.
ALLOWED = {"astro_db.driver.gateway"}


def test_every_driver_call_of_the_public_api_is_made_by_the_gateway(tmp_path):
    db = Database(f"mongomock://localhost/gw{uuid.uuid4().hex[:8]}", encryption_key=KEY_A).connect()
    target = Database(f"mongomock://localhost/gw{uuid.uuid4().hex[:8]}").connect()
    with driver_callers() as callers:
        workload(db, tmp_path, restore_target=target, cli_url="mongomock://localhost/gwcli")
        db.disconnect()
    outside = callers.outside(ALLOWED)
    assert outside == {}, f"{len(outside)} modules call the driver: " + "\n".join(
        f"{module}: {sorted(calls)}" for module, calls in outside.items())
    assert "astro_db.driver.gateway" in callers.modules  # the wrapping saw the calls
    assert callers.past_the_run_step() == {}  # every operation's call passes the run step


# --- backup, restore and verify run their driver calls through Executor.call ---------------------

#: driver methods that only build an object (a collection, a database), sending nothing
BUILDERS = {"__getitem__", "get_collection", "get_database", "with_options"}


def _open_breaker(db: Database) -> None:
    for _ in range(db.config.breaker_threshold):
        db.executor.runtime.breaker.record_failure(pm.AutoReconnect("connection refused"))
    assert db.executor.runtime.breaker.state == "open"


def test_an_open_breaker_makes_backup_restore_and_verify_fail_fast_without_a_driver_call(tmp_path):
    db = Database(f"mongomock://localhost/gw{uuid.uuid4().hex[:8]}").connect()
    db.create("User", {"email": "ann@example.com", "name": "Ann"})
    repo = tmp_path / "repo"
    backup.backup(db, repo)
    target = Database(f"mongomock://localhost/gw{uuid.uuid4().hex[:8]}").connect()
    _open_breaker(db)
    _open_breaker(target)
    with driver_callers() as callers:
        with pytest.raises(DatabaseConnectionError, match="failing fast"):
            backup.backup(db, repo)
        with pytest.raises(DatabaseConnectionError, match="failing fast"):
            backup.restore(repo, target)
        with pytest.raises(DatabaseConnectionError, match="failing fast"):
            backup.verify(repo, deep=True, url=target)
    sent = {call for calls in callers.modules.values() for call in calls if call.rsplit(".", 1)[1] not in BUILDERS}
    assert sent == set()  # not one call that reaches the server: the breaker refused each first one
    assert len(backup.list_sets(repo)) == 1  # no new set


# --- db.mongo: the raw escape hatch, with none of the service's guarantees -------------------------

def test_the_raw_escape_hatch_has_none_of_the_service_guarantees():
    from astro_db.changes import CHANGES_COLLECTION
    from astro_db.errors import PermissionDeniedError

    db = Database(f"mongomock://localhost/gw{uuid.uuid4().hex[:8]}", encryption_key=KEY_A).connect()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    bob = db.create("User", {"email": "bob@example.com", "name": "Bob"})
    assert len(db.find("User", {}, cache=True)) == 2  # now cached
    raw = db.mongo
    records = raw[CHANGES_COLLECTION].count_documents({})
    with driver_callers() as callers:
        raw["users"].insert_one({"email": "not an email", "name": ""})  # no validation
        raw["birthCharts"].insert_one({"userId": ann.id, "birthData": {"location": {"name": "Paris"}}})
        db.collection("User").update_one({"_id": bob.id}, {"$set": {"name": "Robert"}})
    assert "astro_db.driver.gateway" not in callers.modules  # the caller's own calls, not the service's
    assert raw["users"].count_documents({"email": "not an email"}) == 1
    assert raw["birthCharts"].find_one({"userId": ann.id})["birthData"]["location"]["name"] == "Paris"  # no encryption
    assert raw[CHANGES_COLLECTION].count_documents({}) == records  # no change records
    assert len(db.find("User", {}, cache=True)) == 2  # no cache invalidation: the cached answer stays
    admin = db.as_actor(ann.id, ["admin"])
    assert admin.mongo["users"].count_documents({}) == 3  # no scope: an admin's view sees every document
    with pytest.raises(PermissionDeniedError):
        db.as_actor(bob.id, ["writer"]).mongo  # noqa: B018  # it needs `manage`
    db.disconnect()
