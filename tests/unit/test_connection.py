"""Connection lifecycle: the four ways to build a Database, bounded failure, honest is_connected."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from astro_db import Database, DatabaseConfig
from astro_db.errors import ConfigError, DatabaseConnectionError, NotConnectedError


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


def test_embedded_default_logs_once_that_it_is_used(monkeypatch, caplog):
    import astro_db.connection as connection

    monkeypatch.delenv("MONGODB_URL", raising=False)
    monkeypatch.setattr(connection, "_embedded_logged", connection.threading.Event())
    caplog.set_level(logging.INFO, logger="astro_db")
    with Database(), Database():
        pass
    notices = [r for r in caplog.records if "embedded in-memory backend" in r.getMessage()]
    assert len(notices) == 1


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
    assert "after 3 attempt(s)" in str(info.value)
    attempts = [r for r in caplog.records if "connection attempt" in r.getMessage()]
    assert len(attempts) == 3
    text = caplog.text + str(info.value) + repr(db)
    assert "hunter2" not in text and "app:***@" in text
    assert elapsed < 30  # bounded by attempts x timeout, far below the 30 s default
    assert not db.is_connected()


def test_is_connected_tells_the_truth_after_the_server_goes(monkeypatch):
    db = Database("mongomock://localhost/truth").connect()
    assert db.is_connected()
    client = db.executor.runtime.connection.client

    def refuse(*args, **kwargs):
        from pymongo.errors import AutoReconnect

        raise AutoReconnect("gone")

    monkeypatch.setattr(client.admin, "command", refuse)
    assert db.is_connected() is False
