"""Scale-out features on a live standalone server (nx-27017, or ASTRO_DB_TEST_URI)."""

from __future__ import annotations

import pytest
from spies import CommandSpy

from astro_db import Database


@pytest.fixture
def spied(live_url):
    listener = CommandSpy("find", "aggregate", "count")
    db = Database(live_url, server_selection_timeout_ms=3000, ensure_indexes=False, event_listeners=[listener])
    db.connect()
    yield db, listener
    db.disconnect()


def _standalone(db) -> bool:
    return db.health()["topology"]["type"] == "standalone"


def test_the_topology_of_a_single_server_is_reported_plainly(spied):
    db, _ = spied
    report, metrics = db.health(), db.metrics()
    assert report["topology"] == metrics["topology"]
    topo = report["topology"]
    assert topo["type"] in ("standalone", "replica_set", "sharded")
    if topo["type"] == "standalone":
        assert topo["server"]["address"] and topo["server"]["rtt_ms"] is not None


def test_routed_reads_return_the_data_and_a_standalone_gets_no_read_preference(spied):
    db, listener = spied
    user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    db.create("PlanetaryInsight", {"userId": user.id, "date": "2024-03-01T00:00:00Z", "energyLevel": 70,
                                    "recommendations": ["Rest"]})
    for mode in ("primary", "primaryPreferred", "nearest"):  # modes that read the primary's data at once
        assert [u.name for u in db.find("User", {"id": user.id}, read_preference=mode)] == ["Ann"]
        assert db.find_one("User", {"id": user.id}, read_preference=mode).name == "Ann"
        assert db.count("PlanetaryInsight", {"userId": user.id}, read_preference=mode) == 1
        rows = db.aggregate("PlanetaryInsight", [{"$match": {"userId": user.id}}, {"$count": "n"}], read_preference=mode)
        assert rows[0]["n"] == 1
    if _standalone(db):
        # PyMongo sends no $readPreference to a standalone: there is no other member to go to.
        assert listener.commands and all("$readPreference" not in c for c in listener.commands)
