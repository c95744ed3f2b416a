"""Topology in health() and metrics(): embedded, standalone, replica set (members, lag), mongos."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from fake_mongos import FakeMongos
from pymongo.hello import Hello
from pymongo.server_description import ServerDescription

from astro_db import Database
from astro_db.monitoring import health as health_module
from astro_db.monitoring.topology import describe

T0 = dt.datetime(2024, 3, 1, 12, 0, 0)


def member(port: int, state: str, last_write: dt.datetime | None, seen_at: float, tags=None) -> ServerDescription:
    doc = {"ok": 1, "setName": "rs0", "hosts": ["db1:27017", "db2:27017", "db3:27017"], "minWireVersion": 0,
           "maxWireVersion": 21, "ismaster": state == "primary", "secondary": state == "secondary",
           "arbiterOnly": state == "arbiter", "tags": tags or {}}
    if last_write is not None:
        doc["lastWrite"] = {"lastWriteDate": last_write}
    sd = ServerDescription((f"db{port}", 27017), Hello(doc), round_trip_time=0.002)
    sd._last_update_time = seen_at  # when the heartbeat saw it (monotonic seconds)
    return sd


def topology(kind: str, *servers: ServerDescription, name: str | None = "rs0"):
    return SimpleNamespace(topology_type_name=kind, replica_set_name=name,
                           server_descriptions=lambda: {s.address: s for s in servers})


def test_embedded_reports_its_type_in_health_and_metrics():
    with Database("mongomock://localhost/topo", ensure_indexes=False) as db:
        assert db.health()["topology"]["type"] == "embedded"
        assert db.metrics()["topology"]["type"] == "embedded"


def test_a_replica_set_lists_primary_and_secondaries_with_their_lag():
    primary = member(1, "primary", T0, seen_at=100.0)
    fresh = member(2, "secondary", T0 - dt.timedelta(seconds=2), seen_at=100.0, tags={"dc": "east"})
    behind = member(3, "secondary", T0 - dt.timedelta(seconds=30), seen_at=101.0)  # seen 1 s later: 31 s behind
    out = describe(topology("ReplicaSetWithPrimary", primary, fresh, behind))
    assert out["type"] == "replica_set" and out["replica_set"] == "rs0"
    assert out["primary"] == "db1:27017" and out["has_primary"] is True
    assert [(s["address"], s["lag_s"], s["tags"]) for s in out["secondaries"]] == [
        ("db2:27017", 2.0, {"dc": "east"}), ("db3:27017", 31.0, {})]
    assert out["secondaries"][0]["rtt_ms"] == 2.0 and out["other_members"] == []


def test_without_a_primary_lag_is_measured_against_the_newest_secondary():
    a = member(2, "secondary", T0, seen_at=5.0)
    b = member(3, "secondary", T0 - dt.timedelta(seconds=7), seen_at=5.0)
    arbiter = member(4, "arbiter", None, seen_at=5.0)
    out = describe(topology("ReplicaSetNoPrimary", a, b, arbiter))
    assert out["has_primary"] is False and out["primary"] is None
    assert [s["lag_s"] for s in out["secondaries"]] == [0.0, 7.0]
    assert [(m["address"], m["state"]) for m in out["other_members"]] == [("db4:27017", "RSArbiter")]


def test_a_secondary_that_reports_no_last_write_has_unknown_lag():
    out = describe(topology("ReplicaSetWithPrimary", member(1, "primary", T0, 1.0), member(2, "secondary", None, 1.0)))
    assert out["secondaries"][0]["lag_s"] is None


def test_health_degrades_when_the_replica_set_has_no_primary(monkeypatch):
    monkeypatch.setattr(health_module, "describe_topology",
                        lambda rt: {"type": "replica_set", "replica_set": "rs0", "has_primary": False})
    with Database("mongomock://localhost/topo2", ensure_indexes=False) as db:
        report = db.health()
    assert report["status"] == "degraded"
    assert "replica set rs0 has no primary" in report["reasons"][0]


def test_a_mongos_is_detected_as_a_sharded_cluster():
    with FakeMongos() as mongos:
        db = Database(mongos.url("astro"), server_selection_timeout_ms=3000, connect_attempts=1,
                      ensure_indexes=False, audit=False, journal=False).connect()
        try:
            report, metrics = db.health(), db.metrics()
        finally:
            db.disconnect()
    for topo in (report["topology"], metrics["topology"]):
        assert topo["type"] == "sharded" and topo["topology_type"] == "Sharded"
        assert [m["address"] for m in topo["mongos"]] == [mongos.url("x")[len("mongodb://"):-2]]


@pytest.mark.parametrize("kind", ["Unknown", "LoadBalanced"])
def test_other_topologies_say_their_type(kind):
    assert describe(topology(kind, name=None))["type"] == {"Unknown": "unknown", "LoadBalanced": "load_balanced"}[kind]


def test_a_database_that_never_connected_reports_unknown():
    db = Database("mongodb://127.0.0.1:1/astro", ensure_indexes=False)
    assert db.metrics()["topology"] == {"type": "unknown", "note": "not connected"}
