"""The invalidation bus as the cache sees it: trust, full drops, races, configuration, secrets.

Redis tests use a real redis-server (tests/redis_server.py); the store's trust rules are
driven by a hand-switched bus implementing the same interface."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from spies import Clock
from spies import poll as _poll

from astro_db import Database, DatabaseConfig
from astro_db.cache import InvalidationBus, LocalBus, QueryCache, cache_key
from astro_db.cache.bus import server_identity
from astro_db.errors import ConfigError, DatabaseConnectionError
from astro_db.stale import fetch_or_stale, is_stale


class SwitchBus:
    """A bus the test connects and disconnects by hand (the interface of every bus)."""

    kind = "switch"

    def __init__(self) -> None:
        self.connected = True
        self.published: list[str] = []
        self.listener: Any = None

    def attach(self, listener: Any) -> None:
        self.listener = listener

    def publish(self, model: str, origin: Any = None, notice: Any = None) -> None:
        self.published.append(model)

    def close(self) -> None:
        self.connected = False

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "connected": self.connected}




KEY = cache_key("User", "find_one", {"n": 1})


def test_a_bus_is_what_every_bus_kind_implements():
    assert isinstance(SwitchBus(), InvalidationBus)
    assert isinstance(LocalBus(), InvalidationBus)


def test_while_the_bus_is_down_nothing_is_served_or_stored():
    bus = SwitchBus()
    cache = QueryCache(ttl_s=60, models=frozenset({"User"}), bus=bus)
    assert cache.wanted("User", None)
    cache.put(KEY, {"name": "old"})
    bus.connected = False
    assert not cache.wanted("User", None) and not cache.wanted("User", True)
    assert cache.put(KEY, {"name": "new"}) is False
    bus.connected = True
    assert cache.get_or_fetch(KEY, lambda: {"name": "fetched"}) == {"name": "old"}  # put while down refused


def test_a_write_drops_here_and_is_published_on_the_bus_and_to_the_process_peers():
    bus, peers = SwitchBus(), LocalBus()
    writer = QueryCache(ttl_s=60, bus=bus, peers=peers)
    reader = QueryCache(ttl_s=60, bus=SwitchBus(), peers=peers)
    writer.put(KEY, {"n": 1})
    reader.put(KEY, {"n": 1})
    writer.invalidate("User")
    assert bus.published == ["User"]
    assert len(writer) == 0 and len(reader) == 0  # the peer dropped it before invalidate returned
    assert peers.stats()["sent"] == 1 and peers.stats()["received"] == 1


def test_a_full_drop_expires_every_entry_but_keeps_it_for_stale_ok():
    clock = Clock()
    cache = QueryCache(ttl_s=60, stale_s=600, clock=clock, bus=SwitchBus())
    cache.put(KEY, [{"name": "kept"}])
    cache.drop_all("reconnected")
    fetched = cache.get_or_fetch(KEY, lambda: [{"name": "server"}])
    assert fetched == [{"name": "server"}]  # no hit after the drop
    assert cache.stats()["full_drops"] == 1

    def unavailable() -> Any:
        raise DatabaseConnectionError("server down")

    other = QueryCache(ttl_s=60, stale_s=600, clock=clock, bus=SwitchBus())
    other.put(KEY, [{"name": "remembered"}])
    other.drop_all("bus lost")
    other.bus.connected = False
    answer = fetch_or_stale(other, KEY, unavailable, use_cache=other.wanted("User", True))
    assert is_stale(answer) and answer == [{"name": "remembered"}]  # stale_ok keeps its meaning


def test_a_read_that_began_before_a_full_drop_does_not_store_its_result():
    cache = QueryCache(ttl_s=60, bus=SwitchBus())

    def fetch_racing_a_reconnect() -> Any:
        cache.drop_all("reconnected")  # the subscriber reconnected while this read was out
        return {"name": "maybe stale"}

    assert cache.get_or_fetch(KEY, fetch_racing_a_reconnect) == {"name": "maybe stale"}
    assert len(cache) == 0
    assert cache.get_or_fetch(KEY, lambda: {"name": "fresh"}) == {"name": "fresh"}
    assert len(cache) == 1


def test_a_read_that_began_before_a_remote_drop_does_not_store_its_result():
    cache = QueryCache(ttl_s=60, bus=SwitchBus())

    def fetch_racing_a_message() -> Any:
        cache.drop("User")  # a message from another process arrived meanwhile
        return {"name": "old"}

    cache.get_or_fetch(KEY, fetch_racing_a_message)
    assert len(cache) == 0


# --- identity of the shared local bus ---------------------------------------------------------

def test_the_local_bus_is_shared_by_the_same_data_only():
    same = [DatabaseConfig(url=u) for u in ("mongodb://a:1,b:2/astro", "mongodb://u:pw@B:2,a:1/astro?replicaSet=")]
    assert server_identity(same[0]) == server_identity(same[1])
    assert server_identity(DatabaseConfig(url="mongodb://a:1,b:2/other")) != server_identity(same[0])
    assert server_identity(DatabaseConfig(url="mongodb://a/astro")) == server_identity(DatabaseConfig(url="mongodb://a:27017/astro"))
    assert server_identity(DatabaseConfig()) != server_identity(DatabaseConfig())  # embedded: private data


def test_embedded_databases_do_not_share_a_bus():
    one = Database("mongomock://localhost/bus_a", ensure_indexes=False).connect()
    two = Database("mongomock://localhost/bus_a", ensure_indexes=False).connect()
    try:
        assert one.executor.runtime.cache.peers is not two.executor.runtime.cache.peers
    finally:
        one.disconnect()
        two.disconnect()


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["local", "changestream", "redis://127.0.0.1:6379/0", "rediss://u:p@h:6380",
                                   "unix:///tmp/redis.sock"])
def test_cache_bus_takes_local_changestream_or_a_redis_url(value):
    assert DatabaseConfig(cache_bus=value).cache_bus == value


@pytest.mark.parametrize("value", ["redis", "http://h:1", "", "mongodb://h/x", "redis://"])
def test_a_bad_cache_bus_is_refused_clearly(value):
    with pytest.raises(ConfigError, match="cache_bus"):
        DatabaseConfig(cache_bus=value)


def test_cache_bus_comes_from_the_environment_and_its_password_is_never_shown():
    config = DatabaseConfig.from_env({"ASTRO_DB_CACHE_BUS": "redis://:s3cret@cache:6379/0"})
    assert config.cache_bus == "redis://:s3cret@cache:6379/0"
    assert "s3cret" not in repr(config) and "redis://:***@cache" in repr(config)
    with pytest.raises(ConfigError) as caught:
        DatabaseConfig(cache_bus="http://:s3cret@cache")
    assert "s3cret" not in str(caught.value)


def test_changestream_on_a_server_without_them_fails_at_connect():
    db = Database("mongomock://localhost/bus_cs", cache_bus="changestream", ensure_indexes=False)
    with pytest.raises(ConfigError, match="change streams"):
        db.connect()
    db.disconnect()


# --- a real Redis --------------------------------------------------------------------------------

def test_a_failed_publish_keeps_the_write_stops_caching_and_never_logs_the_password(redis_server, caplog):
    url = redis_server.url.replace("redis://", "redis://:s3cret@")
    redis_server.stop()  # nothing listens: every publish and subscribe fails
    caplog.set_level(logging.DEBUG, logger="astro_db")
    db = Database("mongomock://localhost/bus_down", cache_bus=url, cache_models=("User",), ensure_indexes=False).connect()
    try:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})  # stands
        assert db.find_one("User", {"id": user.id}).name == "Ann"
        figures = db.metrics()
        assert figures["cache_bus"]["connected"] is False
        assert figures["cache_bus"]["pending"] == ["User"]  # the announcement is owed, not attempted
        _poll(lambda: db.metrics()["cache_bus"]["errors"] >= 1)  # the subscriber's failures, logged
        figures = db.metrics()
        assert figures["cache"]["hits"] == 0 and figures["cache"]["entries"] == 0
        db.find_one("User", {"id": user.id})
        assert db.metrics()["cache"]["hits"] == 0  # nothing cached while down
        health = db.health()
        assert health["status"] == "degraded"
        assert any("cache bus" in reason for reason in health["reasons"])
        shown = caplog.text + repr(figures) + repr(health) + repr(db) + repr(db.executor.runtime.cache.bus)
        assert "s3cret" not in shown and ":***@" in repr(figures)
    finally:
        db.disconnect()


def test_a_bus_that_cannot_reach_redis_says_so_once_per_interval_never_with_the_password(redis_server, caplog):
    """A bus that never connects is not only a figure in metrics(): one WARNING names the cause,
    then the subscriber's retries are counted, not logged again within the interval."""
    url = redis_server.url.replace("redis://", "redis://:s3cret@")
    redis_server.stop()  # nothing listens
    caplog.set_level(logging.WARNING, logger="astro_db")
    db = Database("mongomock://localhost/bus_unreachable", cache_bus=url, cache_models=("User",),
                  ensure_indexes=False).connect()
    try:
        _poll(lambda: db.metrics()["cache_bus"]["errors"] >= 3)  # three attempts of the subscriber at least
        said = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.WARNING
        assert "caching stays off until it can" in said[0].getMessage() and ":***@" in said[0].getMessage()
        assert "s3cret" not in caplog.text
    finally:
        db.disconnect()


def test_the_bus_reconnects_and_drops_what_it_held(redis_server):
    db = Database("mongomock://localhost/bus_up", cache_bus=redis_server.url, cache_models=("User",),
                  ensure_indexes=False).connect()
    try:
        cache = db.executor.runtime.cache
        _poll(lambda: cache.trusted)
        user = db.create("User", {"email": "bo@example.com", "name": "Bo"})
        db.find_one("User", {"id": user.id})
        db.find_one("User", {"id": user.id})
        assert cache.stats()["hits"] == 1
        redis_server.kill()
        _poll(lambda: not cache.trusted)
        redis_server.restart()
        _poll(lambda: cache.trusted)
        assert cache.bus_stats()["full_drops"] >= 1 and cache.bus_stats()["reconnects"] >= 1
        db.find_one("User", {"id": user.id})
        assert cache.stats()["hits"] == 1  # the entry held before the outage was not served
        assert db.health()["status"] == "ok"
    finally:
        db.disconnect()


def test_an_unreadable_message_drops_everything_and_keeps_the_bus(redis_server):
    import redis

    db = Database("mongomock://localhost/bus_junk", cache_bus=redis_server.url, cache_models=("User",),
                  ensure_indexes=False).connect()
    client = redis.Redis.from_url(redis_server.url)
    try:
        cache = db.executor.runtime.cache
        _poll(lambda: cache.trusted)
        user = db.create("User", {"email": "cy@example.com", "name": "Cy"})
        db.find_one("User", {"id": user.id})
        for junk in (b"not json", b'{"m": ["User"], "g": 1, "o": "x"}', b'{"m": "User", "g": true, "o": "x"}',
                     b'{"$oid": "User"}'):
            before = cache.bus_stats()["full_drops"]
            client.publish(cache.bus.channel, junk)
            _poll(lambda before=before: cache.bus_stats()["full_drops"] > before)
        assert cache.trusted and cache.bus_stats()["errors"] == 4
        db.find_one("User", {"id": user.id})
        assert cache.stats()["hits"] == 0
    finally:
        client.close()
        db.disconnect()


def test_disconnect_stops_the_subscriber_and_connect_starts_it_again(redis_server):
    db = Database("mongomock://localhost/bus_cycle", cache_bus=redis_server.url, ensure_indexes=False).connect()
    cache = db.executor.runtime.cache
    _poll(lambda: cache.trusted)
    db.disconnect()
    assert not cache.trusted
    db.connect()
    _poll(lambda: cache.trusted)
    db.disconnect()


def test_a_write_that_could_not_be_published_is_published_once_redis_is_back(redis_server):
    import redis

    db = Database("mongomock://localhost/bus_pending", cache_bus=redis_server.url, cache_models=("User",),
                  ensure_indexes=False).connect()
    try:
        cache = db.executor.runtime.cache
        _poll(lambda: cache.trusted)
        redis_server.kill()
        db.create("User", {"email": "di@example.com", "name": "Di"})
        assert cache.bus_stats()["pending"] == ["User"]
        redis_server.restart()  # empty: no generation key survives
        _poll(lambda: cache.trusted)
        assert cache.bus_stats()["pending"] == []
        client = redis.Redis.from_url(redis_server.url)
        assert client.get(cache.bus.generation_prefix + "User") == b"1"  # announced after the restart
        client.close()
    finally:
        db.disconnect()


def test_a_transaction_publishes_on_commit_never_on_abort():
    db = Database("mongomock://localhost/bus_tx", cache_models=("User",), ensure_indexes=False).connect()
    try:
        bus = SwitchBus()
        db.executor.runtime.cache.bus = bus
        with pytest.raises(RuntimeError):
            with db.transaction() as tx:
                db.create("User", {"email": "ed@example.com", "name": "Ed"}, transaction=tx)
                raise RuntimeError("abort")
        assert bus.published == []
        with db.transaction() as tx:
            db.create("User", {"email": "fay@example.com", "name": "Fay"}, transaction=tx)
            assert bus.published == []
        assert bus.published == ["User"]
    finally:
        db.disconnect()


def test_a_forked_worker_trusts_nothing_it_inherited_and_subscribes_again(redis_server):
    """gunicorn --preload: the parent connected before forking; the child's subscriber is its own."""
    import os

    db = Database("mongomock://localhost/bus_fork", cache_bus=redis_server.url, cache_models=("User",),
                  ensure_indexes=False).connect()
    try:
        cache = db.executor.runtime.cache
        _poll(lambda: cache.trusted)
        user = db.create("User", {"email": "gus@example.com", "name": "Gus"})
        db.find_one("User", {"id": user.id})
        assert cache.stats()["entries"] == 1
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code only
            code = 1
            try:
                hits = cache.stats()["hits"]
                if not cache.trusted and not cache.wanted("User", None):
                    _poll(lambda: cache.trusted)
                    db.find_one("User", {"id": user.id})
                    code = 0 if cache.stats()["hits"] == hits else 2  # the inherited entry was dropped
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        db.find_one("User", {"id": user.id})
        assert cache.stats()["hits"] == 1  # the parent keeps its own cache
    finally:
        db.disconnect()


# --- the shared store's configuration -------------------------------------------------------------

@pytest.mark.parametrize("store, bus", [
    ("redis://127.0.0.1:6379/0", "local"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6380/0"),
    ("redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/0"),
    ("http://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
])
def test_cache_store_must_be_on_the_bus_redis(store, bus):
    with pytest.raises(ConfigError, match="cache_store"):
        DatabaseConfig(cache_store=store, cache_bus=bus)


def test_cache_store_on_the_bus_redis_is_accepted_and_masked():
    secret = "a-secret-of-the-app-" + "q" * 20
    config = DatabaseConfig(cache_store="redis://:pw1@Cache:6379/0", cache_bus="redis://:pw1@cache:6379",
                            cache_secret=secret)
    assert "pw1" not in repr(config) and secret not in repr(config) and secret not in str(config)


def test_a_forgotten_database_does_not_leave_its_subscriber_running(redis_server):
    import gc

    db = Database("mongomock://localhost/bus_gc", cache_bus=redis_server.url, ensure_indexes=False).connect()
    _poll(lambda d=db: d.executor.runtime.cache.trusted)  # bound by value: `del db` below must drop the last reference
    thread = db.executor.runtime.cache.bus._thread
    assert thread is not None and thread.is_alive()
    del db
    gc.collect()
    _poll(lambda: not thread.is_alive())


def test_a_password_given_as_a_redis_query_option_is_masked_too(caplog):
    url = "redis://127.0.0.1:1/0?password=qu3rysecret"  # port 1: nothing listens
    config = DatabaseConfig(cache_bus=url)
    assert "qu3rysecret" not in repr(config)
    caplog.set_level(logging.DEBUG, logger="astro_db")
    db = Database("mongomock://localhost/bus_query_pw", cache_bus=url, ensure_indexes=False).connect()
    try:
        _poll(lambda: db.executor.runtime.cache.bus_stats()["errors"] >= 1)
        db.create("User", {"email": "hal@example.com", "name": "Hal"})
        shown = caplog.text + repr(db.metrics()) + repr(db.health())
        assert "qu3rysecret" not in shown and "password=***" in shown
    finally:
        db.disconnect()


def test_quiet_only_looks_at_the_caches_of_the_process_and_is_never_quiet_with_another_bus():
    """``QueryCache.quiet`` (the update's hint, ``steps.hooks.stampless``) answers what
    ``unseen_write`` would, advancing no generation and counting nothing."""
    peers = LocalBus()
    writer = QueryCache(ttl_s=60, peers=peers)
    before = writer.generation("User")
    assert writer.quiet("User") and writer.generation("User") == before and peers.stats()["sent"] == 0
    writer.put(KEY, {"n": 1})
    assert not writer.quiet("User") and writer.quiet("PlanetaryInsight")
    writer.clear()
    before, sent = writer.generation("User"), peers.stats()["sent"]
    reader = QueryCache(ttl_s=60, peers=peers)  # another cache of the process on the same data
    assert writer.quiet("User")
    reader.put(KEY, {"n": 1})
    assert not writer.quiet("User") and not peers.quiet("User") and peers.quiet("PlanetaryInsight")
    assert writer.generation("User") == before and peers.stats()["sent"] == sent
    assert not QueryCache(ttl_s=60, bus=SwitchBus()).quiet("User")  # another process may hold it: never quiet
