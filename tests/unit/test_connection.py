"""Connection lifecycle: the four ways to build a Database, bounded failure, honest is_connected."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
import warnings

import pytest
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from astro_db import Database, DatabaseConfig
from astro_db.driver.connection import summarise
from astro_db.errors import (
    AstroDBWarning,
    ConfigError,
    DatabaseConnectionError,
    EmbeddedDatabaseWarning,
    NotConnectedError,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_takes_a_url_a_config_a_seed_dict_or_nothing(monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    assert Database("mongomock://localhost/a").config.database_name == "a"
    assert Database(DatabaseConfig(url="mongomock://localhost/b", max_pool_size=50)).config.max_pool_size == 50
    seed = Database({"url": "mongomock://localhost/c", "options": {"maxPoolSize": 50}})
    assert seed.config.max_pool_size == 50 and seed.config.database_name == "c"
    assert Database().config.is_embedded


def test_database_without_url_uses_mongodb_url(monkeypatch):
    monkeypatch.setenv("MONGODB_URL", "mongodb://db.example.com:27017/prod")
    assert Database().config.url == "mongodb://db.example.com:27017/prod"


def test_database_rejects_other_config_types():
    with pytest.raises(ConfigError):
        Database(42)


def test_implicit_embedded_default_warns_visibly(monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    with pytest.warns(EmbeddedDatabaseWarning, match="lost when this process exits") as record:
        with Database():
            pass
    assert record[0].filename == __file__  # points at the caller's line, not inside astro_db


def test_explicit_mongomock_url_does_not_warn(monkeypatch):
    monkeypatch.delenv("MONGODB_URL", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmbeddedDatabaseWarning)
        with Database("mongomock://localhost/chosen"):
            pass


def test_embedded_warning_is_an_astro_db_user_warning():
    assert issubclass(EmbeddedDatabaseWarning, AstroDBWarning)
    assert issubclass(AstroDBWarning, UserWarning)


def test_context_manager_connects_and_disconnects():
    with Database("mongomock://localhost/ctx") as db:
        assert db.is_connected()
    assert not db.is_connected()
    db.disconnect()  # idempotent


def test_calls_before_connect_raise_not_connected():
    db = Database("mongomock://localhost/nc")
    with pytest.raises(NotConnectedError, match="connect"):
        db.find("User", {})


def test_two_databases_never_share_data():
    with Database("mongomock://localhost/same") as a, Database("mongomock://localhost/same") as b:
        a.create("User", {"email": "only-a@example.com", "name": "A"})
        assert a.count("User") == 1
        assert b.count("User") == 0


def test_dead_server_fails_in_bounded_time_after_n_logged_attempts(caplog):
    caplog.set_level(logging.WARNING, logger="astro_db")
    url = f"mongodb://app:hunter2@127.0.0.1:{closed_port()}/astro"
    db = Database(url, server_selection_timeout_ms=250, connect_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
    started = time.monotonic()
    with pytest.raises(DatabaseConnectionError) as info:
        db.connect()
    elapsed = time.monotonic() - started
    assert "after 3 attempts in" in str(info.value)
    attempts = [r for r in caplog.records if "connection attempt" in r.getMessage()]
    assert len(attempts) == 3
    text = caplog.text + str(info.value) + repr(db)
    assert "hunter2" not in text and "app:***@" in text
    assert elapsed < 30  # bounded by attempts x timeout, far below the 30 s default
    assert not db.is_connected()


@pytest.mark.parametrize(("socket_ms", "budget_ms", "warned"), [
    (None, None, True), (0, None, True), (None, 5000, False), (5000, None, False), (30_000, 30_000, False)])
def test_connecting_with_nothing_that_bounds_a_reply_logs_one_warning_without_the_password(
        caplog, socket_ms, budget_ms, warned):
    """No socket timeout and no per-call budget: a server that stops answering holds a call until
    the connection drops. Documented in docs/reliability.md, and said once when connecting."""
    caplog.set_level(logging.WARNING, logger="astro_db")
    url = f"mongodb://app:hunter2@127.0.0.1:{closed_port()}/astro"
    db = Database(url, server_selection_timeout_ms=50, connect_attempts=1, socket_timeout_ms=socket_ms,
                  operation_timeout_ms=budget_ms)
    with pytest.raises(DatabaseConnectionError):
        db.connect()
    lines = [r for r in caplog.records if "no bound on a reply" in r.getMessage()]
    assert len(lines) == int(warned)
    if warned:
        assert lines[0].levelno == logging.WARNING and lines[0].name.startswith("astro_db")
        assert "hunter2" not in lines[0].getMessage() and "app:***@" in lines[0].getMessage()


def test_is_connected_tells_the_truth_after_the_server_goes(monkeypatch):
    db = Database("mongomock://localhost/truth").connect()
    assert db.is_connected()
    client = db.executor.runtime.connection.client

    def refuse(*args, **kwargs):
        from pymongo.errors import AutoReconnect

        raise AutoReconnect("gone")

    monkeypatch.setattr(client.admin, "command", refuse)
    assert db.is_connected() is False


class FakeTime:
    """A clock that only moves when the code under test pings or sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def budgeted(monkeypatch, **config):
    """A Database whose pings fail after using their whole timeout, on a fake clock; returns
    the Database and the list of timeouts each attempt was given."""
    db = Database(f"mongodb://127.0.0.1:{closed_port()}/astro", **config)
    conn = db.executor.runtime.connection
    fake = FakeTime()
    conn.clock, conn.sleep = fake.clock, fake.sleep
    given: list[float] = []

    def ping(timeout_s: float) -> None:
        given.append(timeout_s)
        fake.now += timeout_s
        raise ServerSelectionTimeoutError("127.0.0.1:1: [Errno 111] Connection refused (configured timeouts: "
                                          "socketTimeoutMS: 20000.0ms, connectTimeoutMS: 20000.0ms), Timeout: 30s, "
                                          "Topology Description: <TopologyDescription id: 1, servers: [(...)]>")

    monkeypatch.setattr(conn, "_ping", ping)
    return db, given, fake


def test_all_attempts_share_one_budget_of_30_s_by_default(monkeypatch):
    db, given, fake = budgeted(monkeypatch, backoff_jitter=False)
    with pytest.raises(DatabaseConnectionError) as info:
        db.connect()
    assert len(given) == 3  # every attempt made, none given the full 30 s server selection
    assert all(t <= 10.0 + 1e-9 for t in given)
    assert fake.now <= 30.0 + 1e-9
    message = str(info.value)
    assert message.startswith(f"could not reach MongoDB at {db.config.masked_url} after 3 attempts in ")
    assert "\n" not in message and message.count("(") == message.count(")")
    assert "(last error: ServerSelectionTimeoutError: 127.0.0.1:1: [Errno 111] Connection refused)" in message
    assert message.endswith("check that the server is running and the URL/credentials/TLS settings")


def test_a_short_server_selection_timeout_still_bounds_each_attempt(monkeypatch):
    db, given, _ = budgeted(monkeypatch, server_selection_timeout_ms=500, backoff_jitter=False)
    with pytest.raises(DatabaseConnectionError, match="after 3 attempts"):
        db.connect()
    assert given == [0.5, 0.5, 0.5]


def test_a_budget_spent_before_the_attempts_stops_retrying(monkeypatch):
    db, given, fake = budgeted(monkeypatch, connect_budget_ms=1000, connect_attempts=5, backoff_base_s=0.4, backoff_jitter=False)
    with pytest.raises(DatabaseConnectionError):
        db.connect()
    assert fake.now <= 1.0 + 1e-9 and len(given) < 5


def test_a_refused_login_is_not_retried(monkeypatch):
    db = Database(f"mongodb://app:hunter2@127.0.0.1:{closed_port()}/astro")
    calls = []

    def ping(timeout_s: float) -> None:
        calls.append(timeout_s)
        raise OperationFailure("Authentication failed.", 18)

    monkeypatch.setattr(db.executor.runtime.connection, "_ping", ping)
    with pytest.raises(DatabaseConnectionError, match=r"after 1 attempt in .*Authentication failed") as info:
        db.connect()
    assert len(calls) == 1 and "hunter2" not in str(info.value)


def test_summarise_never_leaves_a_parenthesis_open():
    assert summarise(ServerSelectionTimeoutError("h:1: refused (configured timeouts: a, b), Timeout: 3s")) == (
        "ServerSelectionTimeoutError: h:1: refused")
    assert summarise(ServerSelectionTimeoutError("h:1: boom (what, where")) == "ServerSelectionTimeoutError: h:1: boom"
    assert summarise(ServerSelectionTimeoutError("")) == "ServerSelectionTimeoutError"


def test_connect_to_a_closed_port_ends_within_the_scaled_down_budget():
    """The real driver, the default 30 s server selection, a 1 s budget: connect() must end long
    before one default attempt (30 s) could have. Polled, generous bound: no tight timing."""
    db = Database(f"mongodb://127.0.0.1:{closed_port()}/astro", connect_budget_ms=1000)
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: outcome.append(pytest.raises(DatabaseConnectionError, db.connect).value))
    thread.start()
    thread.join(timeout=25)
    assert not thread.is_alive(), "connect() outlived a 1 s budget by 24 s"
    assert "could not reach MongoDB" in str(outcome[0])


def test_each_failed_attempt_is_on_stderr_with_no_logging_configured():
    script = (
        "from astro_db import Database\n"
        f"db = Database('mongodb://app:hunter2@127.0.0.1:{closed_port()}/astro', connect_budget_ms=600,"
        " backoff_base_s=0.01, backoff_max_s=0.02)\n"
        "try:\n    db.connect()\nexcept Exception as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.startswith("connection attempt")]
    assert lines and f"after {len(lines)} attempt" in done.stdout, done.stderr  # one line per attempt made
    assert lines[-1].endswith("giving up") and "app:***@" in lines[0]
    assert "hunter2" not in done.stderr + done.stdout
    assert done.stdout.startswith("could not reach MongoDB")
