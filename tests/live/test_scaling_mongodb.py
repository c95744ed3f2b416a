"""Scale-out on a real replica set or sharded cluster (ASTRO_DB_TEST_URI); skipped otherwise.

How to start one and run these: docs/testing.md, "Running the mongodb tier".

What a standalone cannot show: members and lag, ``$readPreference`` on the wire, reads from a
secondary, and the shard plan's commands accepted by a mongos with the unique index they keep.
"""

from __future__ import annotations

import time

import pytest

from astro_db import Database, errors
from astro_db.registry import default_registry
from astro_db.sharding import shard_plan
from spies import CommandSpy

pytestmark = pytest.mark.mongodb


@pytest.fixture
def cluster(live_url):
    listener = CommandSpy("find", "aggregate")
    db = Database(live_url, server_selection_timeout_ms=10_000, event_listeners=[listener])
    db.connect()
    kind = db.health()["topology"]["type"]
    if kind not in ("replica_set", "sharded"):
        db.disconnect()
        pytest.skip(f"ASTRO_DB_TEST_URI is a {kind} server: these tests need a replica set or a mongos")
    yield db, listener, kind
    db.disconnect()


def _eventually(fn, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_health_reports_the_members_or_the_routers(cluster):
    """health() and metrics() report the topology the driver sees: on a replica set its name,
    the primary and each secondary with a non-negative lag; behind a mongos the routers.
    A standalone (nx-27017 included) has no members or routers to report."""
    db, _, kind = cluster
    topo = db.health()["topology"]
    if kind == "replica_set":
        assert topo["replica_set"] and topo["has_primary"] and topo["primary"]
        for secondary in topo["secondaries"]:
            assert secondary["lag_s"] is None or secondary["lag_s"] >= 0
    else:
        assert topo["mongos"] and all(m["address"] for m in topo["mongos"])
    assert db.metrics()["topology"]["type"] == kind


def test_a_secondary_read_carries_its_read_preference_and_sees_majority_writes(cluster):
    """read_preference= reaches the wire as $readPreference, and a write acknowledged by a
    majority is read back through it (polled: a secondary may lag). A standalone server drops
    read preferences, so only a replica set or a mongos shows this."""
    db, listener, _ = cluster
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})  # w: majority
    found = _eventually(lambda: db.find_one("User", {"id": user.id}, read_preference="secondaryPreferred"))
    assert found is not None and found.name == "Ann"
    assert any(c.get("$readPreference", {}).get("mode") == "secondaryPreferred" for c in listener.commands)


def test_transactions_refuse_secondary_reads_on_a_cluster(cluster):
    """Inside a transaction a secondary read is refused with TransactionError before anything
    is sent, and a primary read in the same transaction still works: checked on a server that
    really runs transactions and has secondaries to route to."""
    db, _, _ = cluster
    with db.transaction() as tx:
        with pytest.raises(errors.TransactionError, match="go to the primary"):
            db.find("User", {}, read_preference="secondary", transaction=tx)
        assert db.find("User", {}, transaction=tx) == []


def test_the_shard_plan_runs_on_a_mongos_and_keeps_the_insight_unique_index(cluster):
    """The commands `astro-db shard plan` prints are accepted by a mongos; on the sharded
    collection the unique (userId, date) index still refuses a duplicate insight; a query by
    userId is routed to a single shard (the hashed shard key targets it). Needs a mongos."""
    db, _, kind = cluster
    if kind != "sharded":
        pytest.skip("needs a mongos")
    admin = db.mongo.client.admin
    plan = shard_plan(default_registry(), db.mongo.name)
    admin.command("enableSharding", db.mongo.name)
    for c in plan.collections:
        if c.key is None:
            continue
        db.mongo[c.collection].create_index(list(c.key_index["key"].items()), name=c.key_index["name"])
        admin.command("shardCollection", f"{db.mongo.name}.{c.collection}", key=c.key)
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    day = {"userId": user.id, "date": "2024-03-01T00:00:00Z", "energyLevel": 50, "recommendations": ["Rest"]}
    db.create("PlanetaryInsight", day)
    with pytest.raises(errors.DuplicateKeyError):
        db.create("PlanetaryInsight", day)  # (userId, date) unique still holds on the sharded collection
    explained = db.mongo.command("explain", {"find": "planetaryInsights", "filter": {"userId": user.id}}, verbosity="queryPlanner")
    assert explained["queryPlanner"]["winningPlan"]["stage"] == "SINGLE_SHARD"  # targeted by the hashed userId
