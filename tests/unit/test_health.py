"""db.health(): ok / degraded / down from the ping, breaker, pool and recent rates; never raises."""

from __future__ import annotations

import socket

import pytest
from fake_mongos import FakeMongos
from pymongo.errors import AutoReconnect

from astro_db import Database


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def db():
    with Database("mongomock://localhost/health", health_min_operations=10) as database:
        yield database


def test_a_reachable_server_is_ok_with_the_figures_used(db):
    report = db.health()
    assert report["status"] == "ok" and report["reasons"] == []
    assert report["latency_ms"] >= 0 and report["breaker"] == "closed"
    assert {"pool", "window", "thresholds", "checked_at"} <= set(report)


def test_a_dead_server_is_down_not_an_exception():
    db = Database(f"mongodb://127.0.0.1:{closed_port()}/astro", server_selection_timeout_ms=300, connect_attempts=1)
    report = db.health()
    assert report["status"] == "down" and report["latency_ms"] is None
    assert report["reasons"][0].startswith("ping failed:") and "no MongoDB server answered" in report["reasons"][0]


def test_a_dead_server_is_down_even_with_a_long_selection_timeout():
    db = Database(f"mongodb://127.0.0.1:{closed_port()}/astro", connect_attempts=1)  # 30 s selection timeout
    report = db.health(timeout_s=0.3)  # the health bound wins
    assert report["status"] == "down"


def test_a_high_error_rate_degrades(db):
    for _ in range(10):
        db.executor.runtime.monitor.record_operation("User", "find", 0.001, "DatabaseConnectionError")
    report = db.health()
    assert report["status"] == "degraded" and any("error rate" in r for r in report["reasons"])
    assert report["window"]["errors"] == 10


def test_input_errors_do_not_count_towards_the_error_rate(db):
    for _ in range(10):
        db.executor.runtime.monitor.record_operation("User", "create", 0.001, "DuplicateKeyError")
    assert db.health()["status"] == "ok"


def test_rates_are_not_judged_on_too_few_operations(db):
    for _ in range(3):
        db.executor.runtime.monitor.record_operation("User", "find", 0.001, "OperationTimeoutError")
    assert db.health()["status"] == "ok"


def test_a_high_slow_operation_rate_degrades(db):
    for _ in range(10):
        db.executor.runtime.monitor.record_operation("User", "find", 5.0)  # 5 s, past slow_query_ms
    report = db.health()
    assert report["status"] == "degraded" and any("slow-operation rate" in r for r in report["reasons"])


def test_a_saturated_pool_degrades():
    """With ``command_monitoring=True`` the pool's figures are PyMongo's pool events (fed here as
    the pool listener reports them); without it, the calls in flight (tests/unit/test_command_monitoring.py)."""
    with FakeMongos() as server:
        db = Database(server.url("health"), max_pool_size=2, min_pool_size=0, command_monitoring=True,
                      server_selection_timeout_ms=3000, connect_attempts=1, ensure_indexes=False).connect()
        try:
            monitor = db.executor.runtime.monitor
            monitor.pool_event("checked_out", 0.001)
            monitor.pool_event("checked_out", 0.001)
            report = db.health()
        finally:
            db.disconnect()
    assert report["status"] == "degraded" and report["pool"]["source"] == "pool_events"
    assert any(r.startswith("connection pool 2/2 checked out (saturation 100%") for r in report["reasons"])


def test_the_embedded_backend_has_no_pool_to_judge(db):
    monitor = db.executor.runtime.monitor
    monitor.max_pool_size = 1
    next(monitor.calls_started)  # a call in flight through the run step, never finished
    report = db.health()
    assert report["pool"]["checked_out"] == 1 and report["pool"]["saturation"] == 1.0
    assert report["status"] == "ok" and report["reasons"] == []


def test_an_open_circuit_breaker_degrades_while_the_ping_answers(db):
    for _ in range(db.config.breaker_threshold):
        db.executor.runtime.breaker.record_failure(AutoReconnect("gone"))
    report = db.health()
    assert report["breaker"] == "open" and report["status"] == "degraded"
    assert any("circuit breaker open" in r for r in report["reasons"])
