"""astro_db's own URL options against nx-27017: read by astro_db, never handed to PyMongo
(docs/configuration.md, "Options in the URL"). PyMongo warns "Unknown option" for a URI
option it does not know; the warnings are errors here, on every client astro_db builds:
``health()``'s own short-lived probe client (before ``connect()``) and the connection's."""

from __future__ import annotations

import logging
import warnings

from astro_db import Database


def test_own_options_are_read_and_pymongo_never_sees_them(live_url, caplog):
    url = live_url + "?commandMonitoring=true&slowQueryMs=5000&appName=svc&cacheTtlS=0"
    caplog.set_level(logging.INFO, logger="astro_db")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyMongo's "Unknown option ..." is a UserWarning
        db = Database(url, server_selection_timeout_ms=2000, min_pool_size=0, health_timeout_ms=2000)
        assert db.health()["status"] != "down"  # the probe's client, made before connect()
        with db:
            db.create("User", {"email": "u@example.com", "name": "U"})
            assert db.find_one("User", {"email": "u@example.com"}) is not None
            figures = db.metrics()
            client = db.mongo.client
    assert figures["command_monitoring"] is True  # the per-call listeners were registered
    assert figures["commands"]  # the per-command table, fed by PyMongo's command listener
    assert figures["slow_queries"]["threshold_ms"] == 5000
    assert figures["cache"]["ttl_s"] == 0.0
    assert db.config.slow_query_ms == 5000
    assert client.options.pool_options.metadata["application"]["name"] == "svc"  # PyMongo's own option kept
    shown = " ".join(r.getMessage() for r in caplog.records)
    assert "connecting to" in shown and "commandMonitoring" not in shown and "appName=svc" in shown


def test_the_urls_pool_size_is_the_one_health_and_metrics_judge_by(live_url):
    with Database(live_url + "?maxPoolSize=7", server_selection_timeout_ms=2000) as db:
        db.find_one("User", {})
        pool = db.metrics()["pool"]
        client = db.mongo.client
        assert client.options.pool_options.max_pool_size == 7
    assert pool["max_size"] == 7


def test_zero_socket_and_connect_timeouts_in_the_url_are_none_for_the_setting_and_the_client(live_url):
    """``?socketTimeoutMS=0&connectTimeoutMS=0``: PyMongo has no socket or connect timeout, the
    settings say so (None), and each call is still bounded by its budget (``maxTimeMS``)."""
    from spies import CommandSpy

    spy = CommandSpy("find")
    with Database(live_url + "?socketTimeoutMS=0&connectTimeoutMS=0", server_selection_timeout_ms=2000,
                  operation_timeout_ms=4000, event_listeners=[spy]) as db:
        db.find_one("User", {})
        pool = db.mongo.client.options.pool_options
    assert (db.config.socket_timeout_ms, db.config.connect_timeout_ms) == (None, None)
    assert (pool.socket_timeout, pool.connect_timeout) == (None, None)
    assert spy.commands and all(0 < cmd["maxTimeMS"] <= 4000 for cmd in spy.commands)
