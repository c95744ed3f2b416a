"""The shared result store (cache_store=): a miss in one Database is a hit another stored in
Redis, checked against the write generations; never plaintext of a sensitive field."""

from __future__ import annotations

import base64
import uuid

from spies import CommandSpy, announce, hold_announcements, release_and_close
from spies import poll as _poll

from astro_db import Database
from astro_db.cache.redis_store import MISSING, Token

KEY = base64.b64encode(b"K" * 32).decode()
SECRET = "test-cache-secret-" + "x" * 20




def _db(url, redis_url, **extra):
    if "encryption_key" not in extra:
        extra.setdefault("cache_secret", SECRET)
    db = Database(url, cache_models=("User", "BirthChart"), cache_bus=redis_url, cache_store=redis_url,
                  ensure_indexes=False, **extra).connect()
    _poll(lambda: db.executor.runtime.cache.trusted)
    return hold_announcements(db)




def _email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def test_a_result_one_database_read_is_served_to_another_from_redis(live_url, redis_server):
    spy = CommandSpy("find")
    a = _db(live_url, redis_server.url)
    b = _db(live_url, redis_server.url, event_listeners=[spy])
    try:
        user = a.create("User", {"email": _email(), "name": "v0"})
        announce(a)  # normally before create() returned (it waits up to 20 ms for it)
        assert a.find_one("User", {"id": user.id}).name == "v0"  # stored locally and in Redis
        assert b.find_one("User", {"id": user.id}).name == "v0"
        assert spy.names == []  # B never asked the server
        assert b.executor.runtime.cache.bus_stats()["shared_store"]["hits"] == 1

        a.update("User", {"id": user.id}, {"name": "v1"})  # returned: the generation has moved on
        announce(a)  # (or, if Redis took over 20 ms, it does once announced)
        b.executor.runtime.cache.drop("User")  # not even relying on the bus: the generation check alone
        assert b.find_one("User", {"id": user.id}).name == "v1"
        assert spy.names == ["find"]
    finally:
        release_and_close(a)
        release_and_close(b)


def test_a_write_landing_between_a_fetch_and_its_put_is_refused_only_if_it_may_have_changed_it(live_url, redis_server):
    """The write is made (and announced) by another Database at the one moment between the
    fetch and the put in Redis, by a hook on the store's put: no sleeps."""
    a = _db(live_url, redis_server.url)
    writer = _db(live_url, redis_server.url)
    try:
        user = a.create("User", {"email": _email(), "name": "old"})
        other = a.create("User", {"email": _email(), "name": "other"})
        announce(a)  # else A does not use the store for User yet
        store = a.executor.runtime.cache.shared
        real_put = store.put

        def put_after(write):
            def put(key, value, token, dependencies):
                write()  # committed and announced: its dependency keys are set
                announce(writer)
                return real_put(key, value, token, dependencies)
            return put

        store.put = put_after(lambda: writer.update("User", {"id": other.id}, {"status": "inactive"}))
        a.find_one("User", {"id": user.id})  # another user's write: it cannot have changed this answer
        assert store.stats()["stored"] == 1 and store.stats()["refused"] == 0
        store.put = put_after(lambda: writer.update("User", {"id": user.id}, {"status": "suspended"}))
        assert [u["status"] for u in a.find("User", {"id": user.id}, lean=True)] == ["active"]  # read before the write
        assert store.stats()["stored"] == 1 and store.stats()["refused"] == 1  # not stored: it may be older
        fresh = _db(live_url, redis_server.url)
        try:
            assert [u["status"] for u in fresh.find("User", {"id": user.id}, lean=True)] == ["suspended"]
        finally:
            release_and_close(fresh)
    finally:
        release_and_close(a)
        release_and_close(writer)


def test_a_sensitive_field_reaches_redis_only_as_ciphertext(live_url, redis_server):
    import redis

    a = _db(live_url, redis_server.url, encryption_key=KEY)
    client = redis.Redis.from_url(redis_server.url)
    try:
        user = a.create("User", {"email": _email(), "name": "Ann"})
        place = f"Secret Lane {uuid.uuid4().hex[:6]}"
        a.create("BirthChart", {"userId": str(user.id), "birthData": {
            "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
            "location": {"name": place, "coordinates": [-0.1276, 51.5072]}}})
        announce(a)
        chart = a.find_one("BirthChart", {"userId": user.id})
        assert chart.birth_data.location.name == place  # the caller sees plaintext
        values = [client.get(k) for k in client.scan_iter(match="astro_db:*:r2:BirthChart:*")]
        assert values and all(place.encode() not in v for v in values)
        assert a.executor.runtime.cache.bus_stats()["shared_store"]["stored"] >= 1
    finally:
        client.close()
        release_and_close(a)


def test_a_dead_store_is_a_miss_not_an_error(live_url, redis_server):
    a = _db(live_url, redis_server.url)
    try:
        user = a.create("User", {"email": _email(), "name": "Bo"})
        announce(a)
        store = a.executor.runtime.cache.shared
        key = ("User", "find_one", None, b"\x05\x00\x00\x00\x00")
        redis_server.kill()
        assert store.get(key)[0] is MISSING and store.put(key, {"a": 1}, Token(1, 0)) is False
        assert store.stats()["errors"] == 1 and store.stats()["skipped"] == 1  # not asked again for a while
        _poll(lambda: not a.executor.runtime.cache.trusted)
        assert a.find_one("User", {"id": user.id}).name == "Bo"  # from the server
    finally:
        release_and_close(a)
