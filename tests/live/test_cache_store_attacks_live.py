"""The shared result store under attack (issue 23, items 2 and 3): a Redis shared by two
deployments, and someone who can write to it. Real Redis, real nx-27017 servers."""

from __future__ import annotations

import logging
import uuid

import pytest
from spies import announce, hold_announcements, release_and_close
from spies import poll as _poll

from astro_db import Database

SECRET = "attack-test-cache-secret-" + "z" * 16




def _db(url, redis_url, **extra):
    extra.setdefault("cache_secret", SECRET)
    db = Database(url, cache_models=("User", "BirthChart"), cache_bus=redis_url, cache_store=redis_url,
                  ensure_indexes=False, **extra).connect()
    _poll(lambda: db.executor.runtime.cache.trusted)
    return hold_announcements(db)




def _email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def second_server(tmp_path):
    """Another nx-27017 server: a second deployment whose database may share a name."""
    from live.nxserver import NxServer

    server = NxServer(tmp_path / "nx-second")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_two_servers_whose_databases_share_a_name_never_answer_from_each_other(live_server, second_server,
                                                                               redis_server):
    name = f"astro_shared_{uuid.uuid4().hex[:8]}"
    a = _db(live_server.url(name), redis_server.url)
    b = _db(second_server.url(name), redis_server.url)
    try:
        user = a.create("User", {"email": _email(), "name": "Only On A"})
        announce(a)  # else A does not use the store for User yet
        assert a.find_one("User", {"id": user.id}, cache=True).name == "Only On A"  # stored in Redis by A
        assert a.executor.runtime.cache.bus_stats()["shared_store"]["stored"] >= 1
        assert b.count("User", {}) == 0
        assert b.find_one("User", {"id": user.id}, cache=True) is None  # B's server has no such user
        assert b.executor.runtime.cache.bus_stats()["shared_store"]["hits"] == 0
    finally:
        release_and_close(a)
        release_and_close(b)


def _chart(db, owner, place):
    return db.create("BirthChart", {"userId": str(owner), "birthData": {
        "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
        "location": {"name": place, "coordinates": [-0.1276, 51.5072]}}})


def test_an_entry_copied_over_another_actors_key_is_never_served(live_url, redis_server, caplog):
    import base64

    import redis

    key = base64.b64encode(b"Q" * 32).decode()
    admin = _db(live_url, redis_server.url, encryption_key=key)
    client = redis.Redis.from_url(redis_server.url)
    try:
        victim = admin.create("User", {"email": _email(), "name": "Victim"})
        mallory = admin.create("User", {"email": _email(), "name": "Mallory"})
        _chart(admin, victim.id, "Victim Street 1")
        _chart(admin, mallory.id, "Mallory Road 2")
        announce(admin)
        before = set(client.scan_iter(match="astro_db:*:r2:BirthChart:*"))
        victim_view = admin.as_actor(str(victim.id), ["self"])
        assert [c.birth_data.location.name for c in victim_view.find("BirthChart", {}, cache=True)] == ["Victim Street 1"]
        victim_keys = set(client.scan_iter(match="astro_db:*:r2:BirthChart:*")) - before
        mallory_view = admin.as_actor(str(mallory.id), ["self"])
        mallory_view.find("BirthChart", {}, cache=True)
        mallory_keys = set(client.scan_iter(match="astro_db:*:r2:BirthChart:*")) - before - victim_keys
        assert len(victim_keys) == 1 and len(mallory_keys) == 1
        # the attacker copies the victim's entry, as is, over Mallory's key
        client.set(next(iter(mallory_keys)), client.get(next(iter(victim_keys))))
        fresh = _db(live_url, redis_server.url, encryption_key=key)  # an empty local cache: Redis is asked
        try:
            caplog.set_level(logging.WARNING, logger="astro_db")
            charts = fresh.as_actor(str(mallory.id), ["self"]).find("BirthChart", {}, cache=True)
            assert [c.birth_data.location.name for c in charts] == ["Mallory Road 2"]
            assert all(str(c.user_id) == str(mallory.id) for c in charts)
            assert fresh.executor.runtime.cache.bus_stats()["shared_store"]["forged"] == 1
            assert "does not carry a valid MAC" in caplog.text and "Victim Street" not in caplog.text
        finally:
            release_and_close(fresh)
    finally:
        client.close()
        release_and_close(admin)


def test_an_entry_written_without_the_apps_secret_is_never_served(live_url, redis_server):
    a = _db(live_url, redis_server.url)
    user = a.create("User", {"email": _email(), "name": "Real"})
    announce(a)
    other_app = _db(live_url, redis_server.url, cache_secret="another-apps-secret-" + "w" * 20)  # after the write
    try:
        other_app.find_one("User", {"id": user.id}, cache=True)  # stored under a MAC of another key
        assert other_app.executor.runtime.cache.bus_stats()["shared_store"]["stored"] == 1
        assert a.find_one("User", {"id": user.id}, cache=True).name == "Real"  # from the server
        stats = a.executor.runtime.cache.bus_stats()["shared_store"]
        assert stats["forged"] == 1 and stats["hits"] == 0
    finally:
        release_and_close(a)
        release_and_close(other_app)


def test_an_entry_put_back_after_the_writes_records_were_deleted_is_served_no_longer_than_its_life(live_url, redis_server):
    """Someone who can write to the Redis saves an entry, and once a write has made it outdated,
    deletes the keys that record the write and puts the entry back, with no expiry. It may be
    served for the rest of the life its put gave it (the dependency keys are Redis's own, under
    no MAC), never after: its deadline is under the MAC, by the Redis server's clock."""
    import redis

    ttl_s = 0.25
    a = _db(live_url, redis_server.url, cache_ttl_s=ttl_s)
    client = redis.Redis.from_url(redis_server.url)
    fresh = None
    try:
        user = a.create("User", {"email": _email(), "name": "Old Name"})
        announce(a)
        before = set(client.scan_iter(match="astro_db:*:r2:User:*"))
        assert a.find_one("User", {"id": user.id}, cache=True).name == "Old Name"  # stored in Redis
        (entry_key,) = set(client.scan_iter(match="astro_db:*:r2:User:*")) - before
        saved = client.get(entry_key)
        stored_at = sum(int(x) * f for x, f in zip(client.time(), (1000, 0.001)))
        a.update("User", {"id": user.id}, {"name": "New Name"})
        announce(a)
        client.delete(*client.scan_iter(match="astro_db:*:dep:User:*"))  # the write's records
        client.set(entry_key, saved)  # put back, with no expiry
        # once Redis's clock is past the entry's deadline (twice its TTL after its fetch began)
        _poll(lambda: sum(int(x) * f for x, f in zip(client.time(), (1000, 0.001))) > stored_at + 2 * ttl_s * 1000 + 50)
        fresh = _db(live_url, redis_server.url, cache_ttl_s=ttl_s)  # an empty local cache: Redis is asked
        assert fresh.find_one("User", {"id": user.id}, cache=True).name == "New Name"
        stats = fresh.executor.runtime.cache.bus_stats()["shared_store"]
        assert stats["expired"] == 1 and stats["hits"] == 0 and stats["forged"] == 0
    finally:
        client.close()
        release_and_close(a)
        if fresh is not None:
            release_and_close(fresh)
