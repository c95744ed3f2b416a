"""Optional parts stay optional: a frozen Redis (SIGSTOP) never holds a write, and the cache
turns itself off until the bus is back.

Broken on purpose: a real ``redis-server`` (tests/redis_server.py) frozen with SIGSTOP, so its
connections stay open and silent, the case the socket timeouts (2 s / 4 s) used to put on every
write. Must hold: while Redis answers, a write sends its announcement itself on the bus's open
publishing connection (never a handshake of its own); a write while Redis is frozen sends at
most that one announcement, waits for its reply at most ``wait_s`` and leaves it to the
publisher thread, and later writes send nothing (counted by spies, never timed: the machine is
noisy); no cached read is served
while invalidations cannot be delivered; after SIGCONT the pending announcement
is sent and caching resumes; repeated failures are logged once per interval with a count.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest
from spies import poll as _poll

from astro_db import Database
from astro_db.cache.redis_store import MISSING, RedisStore, Token
from astro_db.cache.store import QueryCache, cache_key
from astro_db.ratelog import RateLimitedLog


def _bus_db(url: str) -> Database:
    db = Database(f"mongomock://localhost/frozen_{uuid.uuid4().hex[:8]}", cache_bus=url, cache_models=("User",),
                  ensure_indexes=False).connect()
    _poll(lambda: db.executor.runtime.cache.trusted)
    db.find_one("User", {"email": "nobody@example.com"})  # User is cached: its writes are announced
    return db


def _spy_sends(monkeypatch) -> list[str]:
    """The names of the threads every announcement is sent from (the bus's own connections)."""
    from astro_db.cache.redis_bus import _Wire

    threads: list[str] = []
    request = _Wire.request

    def spied(self: Any, *args: bytes) -> None:
        if args[0] in (b"EVALSHA", b"EVAL"):
            threads.append(threading.current_thread().name)
        request(self, *args)

    monkeypatch.setattr(_Wire, "request", spied)
    return threads


def _spy_redis_commands(monkeypatch) -> list[tuple[str, str]]:
    """(thread name, command) of every Redis command this process sends from now on."""
    import redis.connection

    sent: list[tuple[str, str]] = []
    send = redis.connection.AbstractConnection.send_command

    def spied(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append((threading.current_thread().name, str(args[0]) if args else ""))
        send(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", spied)
    return sent


class _AnnouncementWaits:
    """The bus's announcement condition, recording the bound of every wait for it."""

    def __init__(self, bus: Any) -> None:
        self._condition = bus._announced
        self.bounds: list[tuple[str, float | None]] = []  # (thread name, timeout)
        bus._announced = self

    def __enter__(self) -> Any:
        return self._condition.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._condition.__exit__(*exc)

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        self.bounds.append((threading.current_thread().name, timeout))
        return self._condition.wait_for(predicate, timeout)

    def notify_all(self) -> None:
        self._condition.notify_all()


def test_while_redis_answers_publishes_are_sent_by_the_writing_thread_itself(redis_server, monkeypatch):
    db = _bus_db(redis_server.url)
    try:
        bus = db.executor.runtime.cache.bus
        bus.wait_s = 30.0  # about who sends, not how long it takes
        db.create("User", {"email": "p0@example.com", "name": "P"})  # the first: the publisher thread opens the connection
        _poll(lambda: not bus.stats()["pending"] and bus.stats()["sent"] >= 1)
        threads = _spy_sends(monkeypatch)
        for i in range(1, 6):
            db.create("User", {"email": f"p{i}@example.com", "name": "P"})
        assert threads == [threading.current_thread().name] * 5  # one send each, none left to another thread
        assert bus.stats()["late"] == 0
    finally:
        db.disconnect()


def test_while_redis_answers_a_write_returns_once_its_generation_has_moved_on(redis_server):
    import redis

    db = _bus_db(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    try:
        bus = db.executor.runtime.cache.bus
        bus.wait_s = 30.0  # generous: this is about what the write waits for, not how long
        for i in range(1, 4):
            db.create("User", {"email": f"g{i}@example.com", "name": "G"})
            assert not bus.unsent("User") and int(client.get(bus.generation_prefix + "User")) == i
    finally:
        client.close()
        db.disconnect()


def test_a_late_announcement_does_not_hold_the_write_beyond_the_tight_bound(redis_server):
    db = _bus_db(redis_server.url)
    try:
        bus = db.executor.runtime.cache.bus
        bus.stall_s = 60.0  # the late reply, not a stall, is what this is about
        db.create("User", {"email": "early@example.com", "name": "E"})
        _poll(lambda: not bus.unsent("User") and bus.stats()["sent"] == 1)  # the publishing connection is open
        redis_server.freeze()  # the announcement's reply cannot come
        db.create("User", {"email": "late@example.com", "name": "L"})  # returns though nothing is announced yet
        assert bus.unsent("User") and bus.stats()["sent"] == 1
        redis_server.thaw()
        _poll(lambda: not bus.unsent("User"))
        assert bus.stats()["sent"] == 2 and bus.stats()["late"] == 1  # the publisher thread read the late reply
    finally:
        redis_server.thaw()
        db.disconnect()


def test_a_frozen_redis_does_not_hold_writes_and_turns_caching_off_until_it_thaws(redis_server, monkeypatch):
    db = _bus_db(redis_server.url)
    cache = db.executor.runtime.cache
    try:
        user = db.create("User", {"email": "f@example.com", "name": "v0"})
        db.find_one("User", {"id": user.id})
        db.find_one("User", {"id": user.id})
        hits = cache.stats()["hits"]
        assert hits == 1
        _poll(lambda: not cache.bus.stats()["pending"])

        commands, waits, sends = _spy_redis_commands(monkeypatch), _AnnouncementWaits(cache.bus), _spy_sends(monkeypatch)
        redis_server.freeze()
        for i in range(1, 21):
            db.update("User", {"id": user.id}, {"name": f"v{i}"})
        # synchronous publishing waited out a 4 s socket timeout here: now the writing thread
        # opens no connection to Redis, sends at most the first announcement on the open one and
        # waits for its reply at most wait_s (20 ms); later writes see the send late: nothing sent
        writer = threading.current_thread().name
        assert [command for thread, command in commands if thread == writer] == []
        assert [thread for thread in sends if thread == writer] == [writer]
        assert len(waits.bounds) <= 20 and all(bound == (writer, cache.bus.wait_s) for bound in waits.bounds)
        _poll(lambda: not cache.trusted, timeout_s=15)  # the stalled publish / the unanswered ping
        assert "User" in cache.bus.stats()["pending"]  # the announcement waits for Redis, not the write
        for _ in range(3):
            assert db.find_one("User", {"id": user.id}).name == "v20"
        assert cache.stats()["hits"] == hits  # no cached read while invalidations cannot be delivered

        redis_server.thaw()
        _poll(lambda: cache.trusted, timeout_s=30)
        assert cache.bus.stats()["pending"] == []  # sent before the bus was trusted again
        assert db.find_one("User", {"id": user.id}).name == "v20"
        assert db.find_one("User", {"id": user.id}).name == "v20"
        assert cache.stats()["hits"] == hits + 1  # caching again
    finally:
        redis_server.thaw()
        db.disconnect()


def test_a_frozen_redis_is_noticed_by_a_process_that_does_not_write(redis_server):
    db = _bus_db(redis_server.url)
    cache = db.executor.runtime.cache
    try:
        redis_server.freeze()
        _poll(lambda: not cache.trusted, timeout_s=15)  # the subscriber's ping went unanswered
        assert "did not answer a ping" in (cache.bus.stats()["reason"] or "") + repr(cache.bus.stats()["last_error"])
    finally:
        redis_server.thaw()
        db.disconnect()


def test_while_a_write_is_unannounced_its_process_does_not_read_the_shared_store():
    class Bus:
        kind, connected = "redis", True

        def __init__(self) -> None:
            self.waiting = {"User"}

        def attach(self, listener) -> None:
            pass

        def publish(self, model, origin=None, notice=None) -> None:
            pass

        def unsent(self, model: str) -> bool:
            return model in self.waiting

    class Store:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def get(self, key):
            self.asked.append(key[0])
            return {"name": "old"}, b"1"

        def put(self, key, value, token, dependencies) -> bool:
            return True

    bus, store = Bus(), Store()
    cache = QueryCache(60.0, models=frozenset({"User"}), bus=bus, shared=store)
    key = cache_key("User", "find_one", {"email": "a@b.co"})
    assert cache.get_or_fetch(key, lambda: {"name": "new"}) == {"name": "new"}  # Redis's copy may be older
    assert store.asked == []
    bus.waiting.clear()
    cache.drop("User")
    assert cache.get_or_fetch(key, lambda: {"name": "new"}) == {"name": "old"}
    assert store.asked == ["User"]


def test_a_failing_shared_store_is_not_asked_again_for_a_while(redis_server):
    store = RedisStore(redis_server.url, "skip", 60.0, secret=b"s" * 32, timeout_s=0.2, retry_after_s=3600.0)
    try:
        key = cache_key("User", "find", {})
        assert store.get(key)[0] is MISSING and store.stats()["errors"] == 0
        redis_server.freeze()
        assert store.get(key)[0] is MISSING and store.stats()["errors"] == 1  # one bounded wait
        for _ in range(5):
            assert store.get(key)[0] is MISSING
        assert not store.put(key, [1], Token(1, 0))
        assert store.stats()["errors"] == 1 and store.stats()["skipped"] == 6  # Redis not asked again
    finally:
        redis_server.thaw()
        store.close()


# --- logged once per interval ---------------------------------------------------------------------

def test_repeated_errors_of_one_kind_are_logged_once_per_interval_with_a_count(caplog):
    now = [100.0]
    logger = logging.getLogger("astro_db.test_ratelog")
    limited = RateLimitedLog(logger, interval_s=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="astro_db")
    for _ in range(442):
        limited.error("publish", "could not publish to %s", "User")
        now[0] += 0.01
    limited.error("other", "another kind")
    assert [r.getMessage() for r in caplog.records] == ["could not publish to User", "another kind"]
    assert limited.held("publish") == 441
    now[0] += 10.0
    limited.error("publish", "could not publish to %s", "User")
    assert caplog.records[-1].getMessage() == "could not publish to User (441 more like this in the last 14 s)"
    assert caplog.records[-1].levelno == logging.ERROR and caplog.records[-1].name == "astro_db.test_ratelog"
    limited.error("publish", "again")
    limited.flush("publish", logging.WARNING, "publishing again")
    assert caplog.records[-1].getMessage() == "publishing again (1 more like this were not logged)"


def test_a_redis_outage_logs_a_handful_of_lines_not_one_per_write(redis_server, caplog):
    db = _bus_db(redis_server.url)
    try:
        caplog.set_level(logging.WARNING, logger="astro_db")
        redis_server.kill()
        _poll(lambda: not db.executor.runtime.cache.trusted)
        for i in range(200):
            db.create("User", {"email": f"n{i}@example.com", "name": "N"})
        lines = [r for r in caplog.records if r.name.startswith("astro_db.cache")]
        assert len(lines) <= 3, [r.getMessage() for r in lines]
        assert db.executor.runtime.cache.bus.stats()["pending"] == ["User"]  # one announcement owed
    finally:
        db.disconnect()


@pytest.fixture(autouse=True)
def _thawed(redis_server):
    yield
    redis_server.thaw()
