"""Monitoring, health, explain, advice and the operator's CLI against a live server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
from bson import ObjectId
from click.testing import CliRunner

from astro_db import Database
from astro_db.cli import cli
from astro_db.errors import DuplicateKeyError

SECRET = "very.private@example.com"


def poll(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture
def db(live_url):
    database = Database(live_url, server_selection_timeout_ms=2000, min_pool_size=0, health_timeout_ms=1000)
    with database:
        yield database


@pytest.fixture
def cmdb(live_url):
    """With PyMongo's per-call command and pool listeners (``command_monitoring=True``)."""
    database = Database(live_url, server_selection_timeout_ms=2000, min_pool_size=0, health_timeout_ms=1000,
                        command_monitoring=True)
    with database:
        yield database


def users(db: Database, n: int) -> list:
    return [db.create("User", {"email": f"u{i}@example.com", "name": f"User {i}"}) for i in range(n)]


# --- figures read back --------------------------------------------------------------------------

def test_traffic_shows_up_per_model_and_operation_at_both_levels(cmdb):
    db = cmdb
    users(db, 5)
    for i in range(3):
        db.find("User", {"email": f"u{i}@example.com"})
    figures = db.metrics()
    assert figures["driver_events"] is True and figures["command_monitoring"] is True
    assert figures["operations"]["User"]["create"]["count"] == 5
    assert figures["operations"]["User"]["find"]["count"] == 3
    # each create is one bulkWrite (the user and its change record), counted under its model
    assert figures["commands"]["User"]["bulkWrite"]["count"] == 5
    assert figures["commands"]["User"]["find"]["count"] >= 3
    latency = figures["commands"]["User"]["bulkWrite"]["latency_ms"]
    assert latency["p50"] is not None and latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    print(f"\nlive create (bulkWrite) latency ms: {latency}")


def test_provoked_errors_are_counted_by_kind(cmdb):
    db = cmdb
    users(db, 1)
    for _ in range(2):
        with pytest.raises(DuplicateKeyError):
            db.create("User", {"email": "u0@example.com", "name": "Again"})
    figures = db.metrics()
    assert figures["operations"]["User"]["create"]["errors"] == {"DuplicateKeyError": 2}
    assert figures["commands"]["User"]["bulkWrite"]["errors"] == {"DuplicateKey": 2}  # a create is one bulkWrite
    assert figures["commands"]["User"]["bulkWrite"]["error_count"] == 2


def test_pool_check_outs_and_heartbeats_are_seen(cmdb):
    db = cmdb
    users(db, 3)
    pool = db.metrics()["pool"]
    assert pool["checkouts"] >= 3 and pool["open"] >= 1 and pool["created"] >= 1
    assert pool["wait_ms"]["count"] >= 3 and pool["checkout_failures"] == {}
    poll(lambda: db.metrics()["pool"]["checked_out"] == 0)
    beats = poll(lambda: (lambda b: b if b["successes"] >= 1 and b["last_latency_ms"] is not None else None)(db.metrics()["heartbeats"]))
    print(f"\nheartbeat: {beats}")


@pytest.mark.parametrize("command_monitoring", [False, True])
def test_a_slow_query_is_caught_with_a_tiny_threshold_and_logged_masked(live_url, caplog, command_monitoring):
    with Database(live_url, slow_query_ms=0.001, server_selection_timeout_ms=2000,
                  command_monitoring=command_monitoring) as db:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="astro_db.monitoring"):
            db.find("User", {"email": SECRET, "status": "active"})
        slow = db.metrics()["slow_queries"]
    assert slow["count"] >= 1
    finds = [e for e in slow["recent"] if e["operation"] == "find" and e["model"] == "User"]
    assert len(finds) == 1 and '"email":"<str>"' in finds[-1]["shape"]  # logged once, by the run step or the listener
    assert caplog.text.count("slow query: find on User") == 1
    assert SECRET not in caplog.text and SECRET not in json.dumps(slow) and "active" not in caplog.text


def test_prometheus_export_carries_the_driver_figures(cmdb):
    from prometheus_client import generate_latest

    db = cmdb
    users(db, 2)
    text = generate_latest(db.metrics_registry()).decode()
    assert 'astro_db_commands_total{command="bulkWrite",model="User"}' in text  # a create is one bulkWrite
    assert "astro_db_pool_checkouts_total" in text and "astro_db_heartbeat_failures_total" in text


def test_by_default_the_figures_come_from_the_run_step_and_the_heartbeats(db):
    """No per-call PyMongo listener on the client: operations, the calls in flight as the pool's
    checked_out, heartbeats; no per-command table, and the pool figures only pool events give unknown."""
    from prometheus_client import generate_latest
    from pymongo import monitoring as pm

    # what astro_db hands the client (PyMongo adds the process's global listeners to every client:
    # opentelemetry-instrumentation-pymongo's CommandTracer stays there, disabled, once a test of the
    # same process has instrumented PyMongo and uninstrumented it, since PyMongo cannot unregister one)
    ours = db.executor.runtime.listeners
    assert set(map(id, ours)) <= set(map(id, db.executor.runtime.connection.client.options.event_listeners))
    assert not [x for x in ours if isinstance(x, (pm.CommandListener, pm.ConnectionPoolListener))
                and type(x).__name__ != "ServerListener"]  # tracing's, only if a test set an SDK before
    users(db, 3)
    db.find("User", {"email": "u1@example.com"})
    figures = db.metrics()
    assert figures["command_monitoring"] is False and figures["commands"] == {}
    assert figures["operations"]["User"]["create"]["count"] == 3 and figures["operations"]["User"]["find"]["count"] == 1
    pool = figures["pool"]
    assert pool["source"] == "run_step" and pool["checked_out"] == 0 and pool["open"] is None and pool["wait_ms"] is None
    poll(lambda: db.metrics()["heartbeats"]["successes"] >= 1)
    text = generate_latest(db.metrics_registry()).decode()
    assert "astro_db_pool_connections_checked_out 0.0" in text and "astro_db_heartbeat_failures_total" in text
    assert "astro_db_command" not in text and "astro_db_pool_checkouts_total" not in text
    assert db.health()["status"] == "ok"


# --- health -------------------------------------------------------------------------------------

def test_health_is_ok_on_a_live_server(db):
    report = db.health()
    assert report["status"] == "ok" and report["latency_ms"] is not None and report["backend"] == "server"


def test_health_turns_down_when_the_server_dies_and_ok_after_restart(db, live_server):
    assert db.health()["status"] == "ok"
    try:
        live_server.kill()
        report = db.health()
        assert report["status"] == "down" and report["reasons"][0].startswith("ping failed")
        live_server.restart()
        report = poll(lambda: (lambda r: r if r["status"] == "ok" else None)(db.health()))
        assert report["latency_ms"] is not None
    finally:
        if not live_server.alive():
            live_server.start()
    assert db.count("User") == 0  # the service works again


# --- explain and advice -------------------------------------------------------------------------

def test_explain_shows_index_use_and_collection_scans(db):
    users(db, 20)
    by_email = db.explain("User", {"email": "u3@example.com"})
    assert by_email["available"] and by_email["used_index"] is True and by_email["index"]
    by_name = db.explain("User", {"name": "User 3"})
    assert by_name["used_index"] is False and by_name["collection_scan"] is True and by_name["index"] is None
    assert by_name["raw"] is not None
    print(f"\nexplain email: {by_email['summary']} | name: {by_name['summary']}")


def test_advisor_lists_the_collection_scans_it_has_seen(db):
    users(db, 5)
    db.find("User", {"name": "User 1"})
    db.find("User", {"email": "u1@example.com"})
    db.find("PlanetaryInsight", {"userId": str(ObjectId())})
    advice = db.advise()
    assert [(a["model"], a["filter"]) for a in advice] == [("User", {"name": "<str>"})]
    assert advice[0]["suggested_key"] == [["name", 1]] and "collection scan" in advice[0]["basis"]


# --- the command line ---------------------------------------------------------------------------

def astro_db(*args: str) -> subprocess.CompletedProcess:
    """Run the installed ``astro-db`` entry point in a subprocess."""
    code = "from astro_db.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def cli_run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_health_exit_codes_follow_the_status(live_url, live_server):
    ok = astro_db("--url", live_url, "health")
    assert ok.returncode == 0 and "status:   ok" in ok.stdout
    try:
        live_server.kill()
        down = astro_db("--url", live_url, "--json", "health", "--timeout", "0.5")
        assert down.returncode == 2 and json.loads(down.stdout)["status"] == "down"
        assert "Traceback" not in down.stderr
    finally:
        live_server.restart()


def test_cli_stats_shows_counts_per_collection(live_url):
    with Database(live_url) as db:
        users(db, 3)
    result = cli_run("--url", live_url, "--json", "stats")
    assert result.exit_code == 0
    data = json.loads(result.output)
    counts = {row["collection"]: row["count"] for row in data["collections"]}
    assert counts["users"] == 3 and counts["birthCharts"] == 0
    assert data["backend"] == "server" and data["db"] is not None
    internal = {row["collection"]: row["count"] for row in data["internal"]}
    assert internal["astroChanges"] >= 3 and "astroChanges" not in counts  # bookkeeping apart from the app's data
    assert any("totals include astro_db's own" in note for note in data["notes"])
    table = cli_run("--url", live_url, "stats")
    assert table.exit_code == 0 and "users" in table.output and "documents" in table.output
    assert "(internal)" in table.output and "total, every collection:" in table.output


def test_cli_explain_and_advise(live_url):
    with Database(live_url) as db:
        users(db, 3)
    result = cli_run("--url", live_url, "explain", "User", '{"email": "u1@example.com"}')
    assert result.exit_code == 0 and "used index:     yes" in result.output
    scan = cli_run("--url", live_url, "--json", "explain", "User", '{"name": "x"}', "--sort", '{"name": 1}')
    assert scan.exit_code == 0 and json.loads(scan.output)["used_index"] is False
    assert cli_run("--url", live_url, "advise").exit_code == 0
    bad = cli_run("--url", live_url, "explain", "User", '{"$where": "1"}')
    assert bad.exit_code == 2 and bad.output.startswith("error:") and len(bad.output.strip().splitlines()) == 1


def test_cli_cleanup_dry_run_then_delete(live_url):
    # no indexes: nx-27017 applies the TTL index at once and would remove the expired insight itself
    with Database(live_url, ensure_indexes=False) as db:
        gone = db.create("User", {"email": "gone@example.com", "name": "Gone", "status": "deleted"})
        keep = db.create("User", {"email": "keep@example.com", "name": "Keep"})
        for uid, expires in ((gone.id, "2099-01-01T00:00:00Z"), (keep.id, "2001-01-01T00:00:00Z"), (keep.id, "2099-01-01T00:00:00Z")):
            db.create("PlanetaryInsight", {"userId": str(uid), "date": f"2024-03-0{db.count('PlanetaryInsight') + 1}",
                                           "energyLevel": 50, "recommendations": ["Rest"], "expiresAt": expires})
    dry = astro_db("--url", live_url, "cleanup", "--dry-run")
    assert dry.returncode == 0 and "would delete 2 document(s)" in dry.stdout
    done = astro_db("--url", live_url, "--json", "cleanup", "--yes")
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert report["expired_insights"] == 1 and report["orphans"]["PlanetaryInsight"] == 1 and report["total"] == 2
    with Database(live_url) as db:
        assert db.count("PlanetaryInsight") == 1


def test_cli_commands_on_a_dead_server_print_one_line(live_url, live_server, monkeypatch):
    from astro_db.cli import ops

    monkeypatch.setattr(ops, "SELECTION_TIMEOUT_MS", 300)
    try:
        live_server.kill()
        result = cli_run("--url", live_url, "stats")
        assert result.exit_code == 2 and result.output.startswith("error:") and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    finally:
        live_server.restart()


def test_monitoring_off_keeps_service_figures_but_no_driver_events(live_url):
    with Database(live_url, monitoring=False) as db:
        users(db, 2)
        figures = db.metrics()
    assert figures["driver_events"] is False and figures["commands"] == {}
    assert figures["operations"]["User"]["create"]["count"] == 2
