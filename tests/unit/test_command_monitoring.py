"""PyMongo's per-call listeners only when asked (``command_monitoring``, issue 27): what a
Database registers on its client by default and with the flag, what the run step counts in their
place (the calls in flight: the pool's ``checked_out``), and what health, the CLI, Prometheus and
the slow-query log make of each mode. On a server backend: tests/fake_mongos.py answers the
driver; a call is held inside the driver by a collection handle that waits on an event."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
from click.testing import CliRunner
from fake_mongos import FakeMongos
from pymongo import monitoring as pm
from pymongo.errors import AutoReconnect

from astro_db import Database, DatabaseConfig
from astro_db.cli import cli
from astro_db.driver.retry import BreakerHeartbeats
from astro_db.errors import ConfigError, DatabaseConnectionError
from astro_db.monitoring import tracing
from astro_db.monitoring.listeners import CommandEvents, HeartbeatEvents, PoolEvents

SECRET = "held.secret@example.com"
WAIT_S = 10.0  # a bound for a held call to arrive (a test that fails, not one that hangs): never reached


@pytest.fixture
def no_tracer_provider(monkeypatch):
    """As in an application that set no OpenTelemetry SDK (another test may have set one in this
    process): tracing registers no listener of its own."""
    if tracing.AVAILABLE:
        from opentelemetry import trace

        monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())


@pytest.fixture
def mongos():
    with FakeMongos() as server:
        yield server


def open_db(server: FakeMongos, **options: Any) -> Database:
    options = {"server_selection_timeout_ms": 3000, "connect_attempts": 1, "ensure_indexes": False, "audit": False,
               "journal": False, "min_pool_size": 0, "allow_plaintext_sensitive": True, **options}
    return Database(server.url("callmon"), **options).connect()


def client_listeners(db: Database) -> list[Any]:
    """The event listeners PyMongo holds for the Database's client (its own options)."""
    return list(db.executor.runtime.connection.client.options.event_listeners)


def per_call(listeners: list[Any]) -> list[Any]:
    """Those that make PyMongo build an event for every command or pool check-out."""
    return [x for x in listeners if isinstance(x, (pm.CommandListener, pm.ConnectionPoolListener))]


class Held:
    """A collection handle whose ``method`` waits, inside the driver call, until ``release`` is
    set; ``entered`` is released once per call that has arrived. Then it calls the real method,
    or raises ``fail``."""

    def __init__(self, real: Any, method: str, fail: BaseException | None = None) -> None:
        self.real, self.method, self.fail = real, method, fail
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.entered.release()
            assert self.release.wait(WAIT_S)
            if self.fail is not None:
                raise self.fail
            return attr(*args, **kwargs)

        return call

    def arrived(self, n: int) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=WAIT_S), "a held call never reached the driver"


def hold(db: Database, model: str, method: str, fail: BaseException | None = None) -> Held:
    rt = db.executor.runtime
    info = rt.registry.resolve(model)
    held = Held(rt.coll(info), method, fail)
    rt.gateway.collections[info.collection] = held  # type: ignore[assignment]
    return held


def in_threads(n: int, fn: Any) -> tuple[list[threading.Thread], list[Any]]:
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(fn())
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test looks at
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def checked_out(db: Database) -> int:
    return int(db.metrics()["pool"]["checked_out"])


# --- the setting -----------------------------------------------------------------------------------

def test_command_monitoring_is_a_boolean_setting_off_by_default_read_like_the_others():
    assert DatabaseConfig().command_monitoring is False and DatabaseConfig().health.command_monitoring is False
    assert DatabaseConfig(command_monitoring=True).health.command_monitoring is True
    assert DatabaseConfig.from_env({"ASTRO_DB_COMMAND_MONITORING": "1"}).command_monitoring is True
    assert DatabaseConfig.from_env({}).command_monitoring is False
    assert DatabaseConfig.from_dict({"url": "mongodb://db/x", "options": {"commandMonitoring": True}}).command_monitoring
    assert DatabaseConfig.from_dict({"command_monitoring": True}).command_monitoring
    with pytest.raises(ConfigError) as err:
        DatabaseConfig(command_monitoring="yes")
    assert err.value.key == "command_monitoring"


# --- what is registered on the client --------------------------------------------------------------

def test_by_default_the_client_has_no_per_call_listener_only_heartbeat_ones(mongos, no_tracer_provider):
    db = open_db(mongos)
    try:
        listeners = client_listeners(db)
        assert per_call(listeners) == []
        assert sorted(type(x).__name__ for x in listeners) == ["BreakerHeartbeats", "HeartbeatEvents"]
        db.find("User", {"email": SECRET})
        figures = db.metrics()
    finally:
        db.disconnect()
    assert figures["driver_events"] is True and figures["command_monitoring"] is False
    assert figures["commands"] == {}  # no per-command table without command monitoring
    assert figures["operations"]["User"]["find"]["count"] == 1  # the run step's figures are all there
    pool = figures["pool"]
    assert pool["source"] == "run_step" and pool["checked_out"] == 0 and pool["saturation"] == 0.0
    # what only PyMongo's pool events can tell is unknown, not 0
    for key in ("open", "created", "closed", "checkouts", "cleared", "checkout_failures", "wait_ms"):
        assert pool[key] is None, key
    json.dumps(figures)


def test_command_monitoring_registers_the_command_and_pool_listeners(mongos, no_tracer_provider):
    db = open_db(mongos, command_monitoring=True)
    try:
        listeners = client_listeners(db)
        assert sorted(type(x).__name__ for x in per_call(listeners)) == ["CommandEvents", "PoolEvents"]
        assert any(isinstance(x, HeartbeatEvents) for x in listeners)
        db.find("User", {"email": SECRET})
        figures = db.metrics()
    finally:
        db.disconnect()
    assert figures["command_monitoring"] is True
    assert figures["commands"]["User"]["find"]["count"] == 1
    pool = figures["pool"]
    assert pool["source"] == "pool_events" and pool["checkouts"] >= 1 and pool["open"] >= 1
    assert pool["checkout_failures"] == {} and pool["wait_ms"]["count"] >= 1


@pytest.mark.parametrize("options", [{"monitoring": False}, {"monitoring": False, "command_monitoring": True}])
def test_monitoring_off_registers_only_the_breakers_heartbeat_listener(mongos, no_tracer_provider, options):
    db = open_db(mongos, **options)
    try:
        assert [type(x) for x in client_listeners(db)] == [BreakerHeartbeats]
        assert db.metrics()["command_monitoring"] is False
    finally:
        db.disconnect()


def test_the_listener_classes_are_those_of_the_monitor():
    from astro_db.monitoring import Monitor
    from astro_db.registry import default_registry

    config = DatabaseConfig(url="mongodb://db.example.com/x")
    plain = Monitor(config.health, default_registry(), max_pool_size=10)
    assert [type(x) for x in plain.listeners()] == [HeartbeatEvents]
    assert plain.driver_events and not plain.command_monitoring
    full = Monitor(config.health, default_registry(), max_pool_size=10)
    assert [type(x) for x in full.listeners(commands=True)] == [CommandEvents, PoolEvents, HeartbeatEvents]
    assert full.command_monitoring


# --- the calls in flight ------------------------------------------------------------------------------

def test_the_calls_in_flight_are_counted_exactly_while_held_in_the_driver(mongos, no_tracer_provider):
    db = open_db(mongos)
    try:
        held = hold(db, "User", "find_one")
        assert checked_out(db) == 0
        threads, outcomes = in_threads(3, lambda: db.find_one("User", {"email": SECRET}, lean=True))
        held.arrived(3)
        assert checked_out(db) == 3
        assert checked_out(db) == 3  # reading it leaves it as it was
        assert db.metrics()["pool"]["saturation"] == round(3 / db.config.max_pool_size, 4)
        held.release.set()
        for thread in threads:
            thread.join()
        assert outcomes == [None, None, None] and checked_out(db) == 0
    finally:
        db.disconnect()


def test_a_failed_call_is_no_longer_in_flight(mongos, no_tracer_provider):
    db = open_db(mongos, retry_attempts=1)
    try:
        held = hold(db, "User", "find_one", fail=AutoReconnect("connection reset"))
        threads, outcomes = in_threads(1, lambda: db.find_one("User", {"email": SECRET}, lean=True))
        held.arrived(1)
        assert checked_out(db) == 1
        held.release.set()
        threads[0].join()
        assert isinstance(outcomes[0], DatabaseConnectionError)
        assert checked_out(db) == 0
        assert db.metrics()["operations"]["User"]["find_one"]["errors"] == {"DatabaseConnectionError": 1}
    finally:
        db.disconnect()


class GetMoreHeld:
    """A collection handle whose ``find`` cursor answers its first batch (one document) at once and
    holds the next read, as a ``getMore`` waiting on the server, until ``release`` is set."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != "find":
            return attr
        outer = self

        class Cursor:
            def __init__(self, inner: Any) -> None:
                self.inner, self.read = inner, 0

            def __iter__(self) -> Cursor:
                return self

            def __next__(self) -> Any:
                self.read += 1
                if self.read == 2:  # past the first batch: a getMore
                    outer.entered.release()
                    assert outer.release.wait(WAIT_S)
                return next(self.inner)

            def close(self) -> None:
                self.inner.close()

        return lambda *args, **kwargs: Cursor(attr(*args, **kwargs))


def test_a_streamed_reads_getmore_is_a_call_in_flight():
    """``iter_find``'s later batches hold a connection while they are read: counted, as PyMongo's
    pool events count them with ``command_monitoring``."""
    with Database("mongomock://localhost/inflight", allow_plaintext_sensitive=True) as db:
        db.create_many("User", [{"email": f"u{i}@example.com", "name": f"U {i}"} for i in range(3)])
        rt = db.executor.runtime
        info = rt.registry.resolve("User")
        held = GetMoreHeld(rt.coll(info))
        rt.gateway.collections[info.collection] = held  # type: ignore[assignment]
        stream = db.iter_find("User", {}, lean=True)
        first = next(stream)
        assert checked_out(db) == 0  # between batches a cursor holds no connection
        threads, outcomes = in_threads(1, lambda: next(stream))
        held.entered.acquire(timeout=WAIT_S)
        assert checked_out(db) == 1
        held.release.set()
        threads[0].join()
        assert checked_out(db) == 0
        rest = list(stream)
        assert first and outcomes[0] and len(rest) == 1 and checked_out(db) == 0


def test_a_change_stream_buss_commands_are_calls_in_flight():
    """The change-stream bus's opening ``aggregate`` and each long poll (``getMore``) hold a
    connection of the Database's pool: counted on the monitor's counters it is handed."""
    import itertools

    from astro_db.cache.change_streams import ChangeStreamBus

    started, finished = itertools.count(), itertools.count()

    def in_flight() -> int:
        return next(started) - next(finished)

    polled, release, seen = threading.Semaphore(0), threading.Event(), []

    class Stream:
        alive = True

        def __enter__(self) -> Stream:
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def try_next(self) -> Any:
            seen.append(in_flight())
            if threading.current_thread() is not main:
                polled.release()
                release.wait(WAIT_S)
            return None

    class Collection:
        def watch(self, **kwargs: Any) -> Stream:
            seen.append(in_flight())
            return Stream()

    main = threading.current_thread()
    bus = ChangeStreamBus({"users": "User"}, max_await_ms=10)
    bus.open({"users": Collection()}, (started, finished))  # type: ignore[arg-type]
    assert seen[:2] == [1, 1]  # open(): the watch, then one poll, each in flight while sent
    assert polled.acquire(timeout=WAIT_S)  # the watcher thread is in its long poll
    assert in_flight() == 1
    release.set()
    bus.close()
    assert in_flight() == 0


def test_concurrent_calls_are_all_counted_in_and_out():
    """Eight threads making driver calls through the run step while another reads the figure:
    every reading is between 0 and the threads, and none is left in flight at the end."""
    threads, calls = 8, 400
    with Database("mongomock://localhost/inflight") as db:
        start = threading.Barrier(threads + 1)

        def work() -> None:
            start.wait()
            for _ in range(calls):
                db.executor.call(None, "probe", lambda: None)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        readings = [checked_out(db) for _ in range(50)]
        for worker in workers:
            worker.join()
        assert all(0 <= n <= threads for n in readings), readings
        assert checked_out(db) == 0
        assert db.metrics()["operations"]["-"]["probe"]["count"] == threads * calls


def test_health_reports_a_saturated_pool_from_the_calls_in_flight(mongos, no_tracer_provider):
    db = open_db(mongos, max_pool_size=2)
    try:
        assert db.health()["status"] == "ok"
        held = hold(db, "User", "find_one")
        threads, _ = in_threads(2, lambda: db.find_one("User", {"email": SECRET}, lean=True))
        held.arrived(2)
        report = db.health()
        held.release.set()
        for thread in threads:
            thread.join()
        after = db.health()
    finally:
        db.disconnect()
    assert report["status"] == "degraded"
    assert "connection pool 2/2 checked out (driver calls in flight) (saturation 100%, threshold 90%)" in report["reasons"]
    assert report["pool"]["source"] == "run_step" and report["pool"]["open"] is None
    assert after["status"] == "ok" and after["pool"]["checked_out"] == 0


def test_the_cli_health_line_says_what_the_pool_figure_is(mongos, no_tracer_provider):
    url = mongos.url("callmon")
    human = CliRunner().invoke(cli, ["--url", url, "health"])
    assert human.exit_code == 0, human.output
    assert "pool:     0/100 checked out, calls in flight (command_monitoring off)" in human.output
    report = json.loads(CliRunner().invoke(cli, ["--url", url, "--json", "health"]).output)
    assert report["pool"]["open"] is None and report["pool"]["source"] == "run_step"


# --- Prometheus ---------------------------------------------------------------------------------------

def test_prometheus_without_command_monitoring_has_no_command_series_and_no_unknown_pool_figure(mongos, no_tracer_provider):
    from prometheus_client import generate_latest

    db = open_db(mongos)
    try:
        db.find("User", {"email": SECRET})
        held = hold(db, "User", "find_one")
        threads, _ = in_threads(1, lambda: db.find_one("User", {"email": SECRET}, lean=True))
        held.arrived(1)
        text = generate_latest(db.metrics_registry()).decode()
        held.release.set()
        threads[0].join()
    finally:
        db.disconnect()
    assert 'astro_db_operations_total{model="User",operation="find"} 1.0' in text
    assert "astro_db_pool_connections_checked_out 1.0" in text and "astro_db_pool_max_size 100.0" in text
    for absent in ("astro_db_command", "astro_db_pool_connections_open", "astro_db_pool_checkouts",
                   "astro_db_pool_checkout_failures", "astro_db_pool_wait_seconds"):
        assert absent not in text, absent


def test_prometheus_with_command_monitoring_has_the_command_and_pool_series(mongos, no_tracer_provider):
    from prometheus_client import generate_latest

    db = open_db(mongos, command_monitoring=True)
    try:
        db.find("User", {"email": SECRET})
        text = generate_latest(db.metrics_registry()).decode()
    finally:
        db.disconnect()
    assert 'astro_db_commands_total{command="find",model="User"} 1.0' in text
    assert 'astro_db_operations_total{model="User",operation="find"} 1.0' in text
    for present in ("astro_db_pool_connections_open", "astro_db_pool_checkouts_total", "astro_db_pool_wait_seconds_count",
                    "astro_db_pool_connections_checked_out 0.0"):
        assert present in text, present


# --- slow operations: logged once, in either mode -----------------------------------------------------

@pytest.mark.parametrize("command_monitoring", [False, True])
def test_a_slow_read_is_logged_once_masked_in_each_mode(mongos, no_tracer_provider, caplog, command_monitoring):
    db = open_db(mongos, slow_query_ms=0, command_monitoring=command_monitoring)
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="astro_db.monitoring"):
            db.find("User", {"email": SECRET})
        slow = db.metrics()["slow_queries"]
    finally:
        db.disconnect()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow query: find on User")]
    assert len(lines) == 1, lines
    if command_monitoring:  # the command listener's: the command on the wire
        assert '"filter":{"email":"<str>"}' in lines[0]
    else:  # the run step's: the read's filter
        assert lines[0].endswith('shape: {"email":"<str>"}')
    assert SECRET not in caplog.text and SECRET not in json.dumps(slow)
    assert [e["shape"] for e in slow["recent"] if e["operation"] == "find"] == [lines[0].split("shape: ")[1]]


# --- tracing's command listener -----------------------------------------------------------------------

@pytest.mark.skipif(not tracing.AVAILABLE, reason="needs the tracing extra (opentelemetry-api)")
def test_the_tracing_listener_is_registered_only_with_a_recording_provider(mongos, monkeypatch):
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="needs opentelemetry-sdk (the dev extra)")
    from opentelemetry import trace

    def names(provider: Any, **options: Any) -> list[str]:
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
        db = open_db(mongos, **options)
        try:
            return sorted(type(x).__name__ for x in per_call(client_listeners(db)))
        finally:
            db.disconnect()

    assert names(trace.ProxyTracerProvider()) == []  # the API's default: no SDK set
    assert names(trace.NoOpTracerProvider()) == []
    assert names(sdk.TracerProvider()) == ["ServerListener"]
    assert names(sdk.TracerProvider(), tracing=False) == []
    assert names(sdk.TracerProvider(), command_monitoring=True) == ["CommandEvents", "PoolEvents", "ServerListener"]
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: sdk.TracerProvider())
    assert tracing.listeners(DatabaseConfig(url="mongomock://localhost/x")) == []  # no driver events to listen to
