"""Monitoring on the embedded backend: metric shapes, bounded histograms, masked slow queries."""

from __future__ import annotations

import json
import logging
import threading
from types import SimpleNamespace

import pytest
from bson import ObjectId

from astro_db import Database
from astro_db.errors import ConfigError, DuplicateKeyError
from astro_db.monitoring import Monitor
from astro_db.monitoring.histogram import BUCKET_BOUNDS_MS, LatencyHistogram, RateWindow
from astro_db.monitoring.listeners import CommandEvents, HeartbeatEvents, PoolEvents
from astro_db.monitoring.monitor import MAX_KEYS, MAX_SHAPES
from astro_db.monitoring.shapes import command_shape, filter_fields, mask, placeholder_filter
from astro_db.registry import default_registry

SECRET_EMAIL = "secret.person@example.com"


@pytest.fixture
def db():
    with Database("mongomock://localhost/monitoring") as database:
        yield database


def monitor(**config) -> Monitor:
    from astro_db import DatabaseConfig

    cfg = DatabaseConfig(url="mongomock://localhost/m", **config)
    return Monitor(cfg.health, default_registry(), max_pool_size=cfg.max_pool_size)


# --- histogram and window ---------------------------------------------------------------------

def test_histogram_memory_is_fixed_whatever_the_number_of_samples():
    hist = LatencyHistogram()
    for i in range(100_000):
        hist.record(i % 5000 / 10)
    assert len(hist.counts) == len(BUCKET_BOUNDS_MS) + 1
    assert hist.count == 100_000 and sum(hist.counts) == 100_000


def test_histogram_percentiles_are_close_to_the_exact_ones_and_ordered():
    hist = LatencyHistogram()
    for i in range(1, 1001):
        hist.record(float(i))  # 1..1000 ms: exact p50 500, p95 950, p99 990
    summary = hist.summary()
    assert summary["p50"] == pytest.approx(500, rel=0.25)
    assert summary["p95"] == pytest.approx(950, rel=0.25)
    assert summary["p99"] == pytest.approx(990, rel=0.25)
    assert summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"] == 1000
    assert summary["count"] == 1000 and summary["mean"] == pytest.approx(500.5)


def test_histogram_without_samples_has_no_percentiles():
    assert LatencyHistogram().summary() == {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}


def test_histogram_keeps_outliers_beyond_the_last_bucket():
    hist = LatencyHistogram()
    hist.record(5_000_000.0)  # far past the last bound
    assert hist.percentile(99) == 5_000_000.0 and hist.counts[-1] == 1


def test_rate_window_forgets_what_is_older_than_its_span():
    now = [1000.0]
    window = RateWindow(10, clock=lambda: now[0])
    for _ in range(4):
        window.record(error=True)
    window.record(slow=True)
    assert window.totals() == {"seconds": 10, "operations": 5, "errors": 4, "slow": 1, "error_rate": 0.8, "slow_rate": 0.2}
    now[0] += 10
    assert window.totals()["operations"] == 0


# --- shapes and masking -------------------------------------------------------------------------

def test_mask_keeps_fields_and_operators_and_hides_every_value():
    filt = {"email": SECRET_EMAIL, "age": {"$gte": 30}, "userId": {"$in": [ObjectId(), ObjectId()]}, "x": None}
    assert mask(filt) == {"email": "<str>", "age": {"$gte": "<int>"}, "userId": {"$in": ["<ObjectId>"]}, "x": "<null>"}


def test_command_shape_drops_driver_fields_and_counts_documents():
    command = {"insert": "users", "ordered": True, "documents": [{"email": SECRET_EMAIL}] * 3,
               "lsid": {"id": "x"}, "$db": "astro"}
    shape = command_shape(command, "insert")
    assert shape == {"insert": "users", "ordered": "<bool>", "documents": "<3 documents>"}


def test_placeholder_filter_turns_a_shape_back_into_neutral_values_of_the_same_types():
    filt = placeholder_filter({"userId": "<ObjectId>", "energyLevel": {"$gte": "<int>"}, "summary": "<str>"})
    assert isinstance(filt["userId"], ObjectId) and filt["energyLevel"] == {"$gte": 0} and filt["summary"] == ""


def test_filter_fields_tell_equality_from_range():
    assert filter_fields({"a": "<str>", "b": {"$lt": "<int>"}, "$and": [{"c": {"$in": ["<int>"]}}], "$or": [{"d": 1}]}) == {
        "a": "eq", "b": "range", "c": "eq"}


def test_slow_query_log_shows_the_command_shape_never_a_value(caplog):
    mon = monitor(slow_query_ms=1)
    events = mon.listeners(commands=True)[0]  # command_monitoring=True
    assert isinstance(events, CommandEvents)
    command = {"find": "users", "filter": {"email": SECRET_EMAIL, "status": "active"}, "limit": 7}
    key = dict(connection_id=("h", 1), request_id=9, operation_id=9)
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        events.started(SimpleNamespace(command=command, command_name="find", **key))
        events.succeeded(SimpleNamespace(command_name="find", duration_micros=25_000, reply={"ok": 1}, **key))
    text = caplog.text
    assert "slow query" in text and "find on User" in text and '"email":"<str>"' in text
    assert SECRET_EMAIL not in text and "active" not in text and "7" not in text.split("shape:")[1]
    recent = mon.snapshot()["slow_queries"]["recent"]
    assert recent[0]["model"] == "User" and SECRET_EMAIL not in json.dumps(recent)


def test_a_slow_call_of_no_model_is_logged_by_its_name_alone(caplog):
    """A call of no model (the key vault's) is named by its operation, not "... on -"."""
    mon = monitor(slow_query_ms=1)
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        mon.record_operation(None, "key vault read", 0.5)
        mon.record_operation("User", "find", 0.5)
    lines = [r.getMessage() for r in caplog.records if "slow query" in r.getMessage()]
    assert lines[0].startswith("slow query: key vault read took 500.0 ms") and " on -" not in lines[0]
    assert lines[1].startswith("slow query: find on User took 500.0 ms")


def test_slow_query_log_on_the_embedded_backend_masks_the_filter(db, caplog):
    db.executor.runtime.monitor.slow_ms = 0.0
    with caplog.at_level(logging.WARNING, logger="astro_db.monitoring"):
        db.find("User", {"email": SECRET_EMAIL})
    assert '{"email":"<str>"}' in caplog.text and SECRET_EMAIL.split("@")[0] not in caplog.text


# --- the metrics dict ---------------------------------------------------------------------------

def test_metrics_count_operations_and_errors_per_model_and_kind(db):
    db.create("User", {"email": "a@example.com", "name": "Ann"})
    with pytest.raises(DuplicateKeyError):
        db.create("User", {"email": "a@example.com", "name": "Ann"})
    db.find("User", {"name": "Ann"})
    db.count("User", {})
    figures = db.metrics()
    create = figures["operations"]["User"]["create"]
    assert create["count"] == 2 and create["errors"] == {"DuplicateKeyError": 1} and create["error_count"] == 1
    assert set(create["latency_ms"]) == {"count", "mean", "p50", "p95", "p99", "max"}
    assert figures["operations"]["User"]["find"]["count"] == 1
    assert figures["operations"]["User"]["count"]["count"] == 1
    assert figures["commands"] == {}  # mongomock-ng publishes no driver events
    assert figures["driver_events"] is False


def test_metrics_is_json_ready_and_has_every_section(db):
    db.find("User", {})
    figures = db.metrics()
    json.dumps(figures)  # no default=: plain types only
    assert {"operations", "commands", "pool", "heartbeats", "slow_queries", "window", "cache", "query_shapes"} <= set(figures)
    assert {"open", "checked_out", "max_size", "saturation", "checkouts", "checkout_failures", "wait_ms"} <= set(figures["pool"])
    assert {"last_latency_ms", "failures", "successes"} <= set(figures["heartbeats"])


def test_monitor_is_thread_safe():
    mon = monitor()

    def work() -> None:
        for _ in range(1000):
            mon.record_operation("User", "find", 0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = mon.snapshot()["operations"]["User"]["find"]
    assert stats["count"] == 8000 and stats["latency_ms"]["count"] == 8000


def test_monitor_tables_are_capped():
    mon = monitor()
    for i in range(MAX_KEYS + 50):
        mon.record_operation(f"coll{i}", "find", 0.001)
        mon.note_query("User", "find", {f"f{i}": 1})
    snapshot = mon.snapshot()
    assert len(snapshot["operations"]) <= MAX_KEYS + 1 and snapshot["operations"]["(other)"]["find"]["count"] == 50
    assert snapshot["query_shapes"] == MAX_SHAPES


def test_pool_and_heartbeat_events_are_counted():
    mon = monitor(min_pool_size=0, max_pool_size=4)
    _, pool, beats = mon.listeners(commands=True)  # command_monitoring=True: the pool figures are the pool events'
    assert isinstance(pool, PoolEvents) and isinstance(beats, HeartbeatEvents)
    pool.connection_created(SimpleNamespace())
    pool.connection_checked_out(SimpleNamespace(duration=0.002))
    pool.connection_check_out_failed(SimpleNamespace(duration=0.5, reason="timeout"))
    beats.succeeded(SimpleNamespace(duration=0.0042, awaited=False))
    beats.failed(SimpleNamespace(duration=0.1, awaited=False, reply=ConnectionError("refused")))
    figures = mon.snapshot()
    assert figures["pool"]["open"] == 1 and figures["pool"]["checked_out"] == 1 and figures["pool"]["saturation"] == 0.25
    assert figures["pool"]["checkout_failures"] == {"timeout": 1} and figures["pool"]["wait_ms"]["count"] == 2
    assert figures["heartbeats"]["last_latency_ms"] == 4.2 and figures["heartbeats"]["failures"] == 1
    assert figures["heartbeats"]["last_failure"].startswith("ConnectionError")
    pool.connection_checked_in(SimpleNamespace())
    pool.connection_closed(SimpleNamespace())
    assert mon.pool_figures()["open"] == 0 and mon.pool_figures()["checked_out"] == 0


def test_command_write_errors_count_as_errors():
    mon = monitor()
    events = mon.listeners(commands=True)[0]  # command_monitoring=True
    key = dict(connection_id=1, request_id=1, operation_id=1)
    events.started(SimpleNamespace(command={"insert": "users", "documents": []}, command_name="insert", **key))
    events.succeeded(SimpleNamespace(command_name="insert", duration_micros=100, reply={"ok": 1, "writeErrors": [{"code": 11000}]}, **key))
    events.started(SimpleNamespace(command={"find": "birthCharts"}, command_name="find", **key))
    events.failed(SimpleNamespace(command_name="find", duration_micros=100, failure={"codeName": "BadValue", "code": 2}, **key))
    commands = mon.snapshot()["commands"]
    assert commands["User"]["insert"]["errors"] == {"DuplicateKey": 1}
    assert commands["BirthChart"]["find"]["errors"] == {"BadValue": 1}


# --- prometheus ---------------------------------------------------------------------------------

def test_prometheus_registry_exports_the_same_figures(db):
    from prometheus_client import generate_latest

    db.create("User", {"email": "p@example.com", "name": "P"})
    text = generate_latest(db.metrics_registry()).decode()
    assert 'astro_db_operations_total{model="User",operation="create"} 1.0' in text
    assert "astro_db_operation_latency_seconds_bucket" in text and "astro_db_pool_connections_checked_out 0.0" in text
    assert "astro_db_cache_hits" in text


def test_two_databases_have_separate_registries():
    from prometheus_client import generate_latest

    with Database("mongomock://localhost/p1") as one, Database("mongomock://localhost/p2") as two:
        one.count("User", {})
        assert 'operation="count"' in generate_latest(one.metrics_registry()).decode()
        assert 'operation="count"' not in generate_latest(two.metrics_registry()).decode()


def test_monitoring_thresholds_are_validated():
    from astro_db import DatabaseConfig

    with pytest.raises(ConfigError) as err:
        DatabaseConfig(health_error_rate=1.5)
    assert err.value.key == "health_error_rate"
    with pytest.raises(ConfigError):
        DatabaseConfig(health_timeout_ms=0)
