"""The shared result store keeps what a write cannot have changed (issue 27): a write sets the
dependency keys of what it may have changed in the same script that advances its model's
sequence, and an entry is served only while none of its dependencies is newer than its fetch.
Real Redis, real nx-27017; every read that must come from Redis is made by a Database whose
local cache does not hold the answer (a fresh one, or one whose local entries were dropped)."""

from __future__ import annotations

import uuid

import pytest
from spies import CommandSpy, announce, hold_announcements, release_and_close
from spies import poll as _poll

from astro_db import Database

SECRET = "selective-store-secret-" + "y" * 20


def _db(url, redis_url, **extra):
    extra.setdefault("cache_secret", SECRET)
    db = Database(url, cache_models=("User",), cache_bus=redis_url, cache_store=redis_url, ensure_indexes=False,
                  **extra).connect()
    _poll(lambda: db.executor.runtime.cache.trusted)
    return hold_announcements(db)


def _email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def _shared(db):
    return db.executor.runtime.cache.bus_stats()["shared_store"]


@pytest.fixture
def pair(live_url, redis_server):
    """A writer and a reader with a command spy (its finds and counts reach the server)."""
    spy = CommandSpy("find", "count", "aggregate")
    writer = _db(live_url, redis_server.url)
    reader = _db(live_url, redis_server.url, event_listeners=[spy])
    try:
        yield writer, reader, spy
    finally:
        release_and_close(writer, reader)


def _from_redis(reader, spy, read):
    """``read()`` by ``reader`` with its local entries dropped: (answer, whether the server was asked)."""
    reader.executor.runtime.cache.drop("User")
    asked = len(spy.names)
    answer = read()
    return answer, len(spy.names) > asked


def test_a_write_to_one_user_leaves_anothers_shared_entry_servable_and_makes_its_own_unservable(pair):
    writer, reader, spy = pair
    ann = writer.create("User", {"email": _email(), "name": "Ann"})
    bob = writer.create("User", {"email": _email(), "name": "Bob"})
    announce(writer)
    for user in (ann, bob):
        writer.find_one("User", {"id": user.id})  # stored in Redis by the writer
    assert _shared(writer)["stored"] == 2

    writer.update("User", {"id": ann.id}, {"status": "suspended"})
    announce(writer)  # announced: its dependency keys are set (the write waits up to 20 ms for this)
    answer, asked = _from_redis(reader, spy, lambda: reader.find_one("User", {"id": bob.id}, lean=True))
    assert answer["status"] == "active" and not asked  # Bob's entry was kept: a hit from Redis
    answer, asked = _from_redis(reader, spy, lambda: reader.find_one("User", {"id": ann.id}, lean=True))
    assert answer["status"] == "suspended" and asked  # Ann's was not served: the server answered
    stats = _shared(reader)
    assert stats["hits"] == 1 and stats["outdated"] == 1


def test_a_filter_entry_is_dropped_by_a_write_to_a_field_it_names_or_a_create_and_kept_otherwise(pair):
    writer, reader, spy = pair
    ann = writer.create("User", {"email": _email(), "name": "Ann", "status": "suspended"})
    zed = writer.create("User", {"email": _email(), "name": "Zed"})
    announce(writer)

    def suspended():
        return sorted(str(u["_id"]) for u in reader.find("User", {"status": "suspended"}, lean=True))

    assert _from_redis(reader, spy, suspended) == ([str(ann.id)], True)  # stored by the reader
    writer.update("User", {"id": zed.id}, {"name": "Zed Two"})  # a field it does not name, a document not in it
    announce(writer)
    assert _from_redis(reader, spy, suspended) == ([str(ann.id)], False)  # kept: a hit from Redis
    writer.update("User", {"id": zed.id}, {"status": "suspended"})  # a field it names: Zed may match now
    announce(writer)
    assert _from_redis(reader, spy, suspended) == (sorted([str(ann.id), str(zed.id)]), True)
    writer.create("User", {"email": _email(), "name": "New", "status": "suspended"})  # a create may match
    announce(writer)
    answer, asked = _from_redis(reader, spy, suspended)
    assert len(answer) == 3 and asked
    assert _shared(reader)["outdated"] == 2


def test_a_count_is_dropped_by_a_delete_of_any_document_and_kept_by_an_update_of_a_field_it_does_not_name(pair):
    writer, reader, spy = pair
    writer.create("User", {"email": _email(), "name": "Ann", "status": "suspended"})
    zed = writer.create("User", {"email": _email(), "name": "Zed"})
    announce(writer)

    def suspended():
        return reader.count("User", {"status": "suspended"})

    assert _from_redis(reader, spy, suspended) == (1, True)
    writer.update("User", {"id": zed.id}, {"name": "Zed Two"})
    announce(writer)
    assert _from_redis(reader, spy, suspended) == (1, False)  # kept
    writer.delete("User", {"id": zed.id})  # not counted, but a count cannot tell
    announce(writer)
    assert _from_redis(reader, spy, suspended) == (1, True)
    assert _shared(reader)["outdated"] == 1


def test_what_cannot_be_judged_depends_on_every_write(pair):
    writer, reader, spy = pair
    for name in ("Ann", "Bob", "Cy"):
        writer.create("User", {"email": _email(), "name": name})
    other = writer.create("User", {"email": _email(), "name": "Dee", "status": "inactive"})
    announce(writer)

    def skipped():
        return len(reader.find("User", {"status": "active"}, skip=1, lean=True))

    assert _from_redis(reader, spy, skipped) == (2, True)
    assert _from_redis(reader, spy, skipped) == (2, False)
    writer.update("User", {"id": other.id}, {"name": "Dee Two"})  # neither a field it names nor a match
    announce(writer)
    assert _from_redis(reader, spy, skipped) == (2, True)  # `skip`: unservable after any write


def test_a_forged_dependency_list_is_a_forged_entry(live_url, redis_server):
    import redis

    from astro_db.cache.redis_store import MISSING, RedisStore

    store = RedisStore(redis_server.url, "forge", 60.0, secret=b"f" * 32)
    client = redis.Redis.from_url(redis_server.url)
    try:
        key = ("User", "find_one", None, b"\x05\x00\x00\x00\x00")
        _, token = store.get(key)
        mine, theirs = "i:" + "aa" * 16, "i:" + "bb" * 16
        assert store.put(key, {"name": "Ann"}, token, ("a", mine))
        assert store.get(key)[0] == {"name": "Ann"}
        client.set(f"{store.prefix}dep:User:{mine}", token.sequence + 1)  # a write to that id
        assert store.get(key)[0] is MISSING and store.stats()["outdated"] == 1
        (entry_key,) = client.scan_iter(match=f"{store.prefix}r2:User:*")
        client.set(entry_key, client.get(entry_key).replace(mine.encode(), theirs.encode()))  # escape the write
        assert store.get(key)[0] is MISSING
        stats = store.stats()
        assert stats["forged"] == 1 and stats["hits"] == 1
    finally:
        client.close()
        store.close()


def test_dependency_keys_outlive_the_entries_of_the_longest_ttl_and_a_late_put_is_refused(live_url, redis_server):
    import redis

    from astro_db.cache.redis_store import Token

    short = _db(live_url, redis_server.url, cache_ttl_s=10)
    long = _db(live_url, redis_server.url, cache_ttl_s=60)
    client = redis.Redis.from_url(redis_server.url)
    try:
        user = short.create("User", {"email": _email(), "name": "Ann"})
        announce(short)
        prefix = long.executor.runtime.cache.shared.prefix
        assert not list(client.scan_iter(match=f"{prefix}dep:*"))  # no store has read User yet: none set
        short.find_one("User", {"id": user.id})
        assert int(client.get(f"{prefix}depttl:User")) == 20_000
        long.find("User", {"status": "active"})  # a 60 s store: its dependencies must live 120 s
        assert int(client.get(f"{prefix}depttl:User")) == 120_000
        short.update("User", {"id": user.id}, {"status": "inactive"})  # the 10 s process writes
        announce(short)
        digest = short.executor.runtime.cache.digest(user.id).hex()
        for name in (f"i:{digest}", "f:status", "f:_rev"):
            ttl = client.pttl(f"{prefix}dep:User:{name}")
            assert 60_000 < ttl <= 120_000, (name, ttl)
        assert client.pttl(f"{prefix}dep:User:c") == -2  # not a create: not set
        store = long.executor.runtime.cache.shared
        key = ("User", "find_one", None, b"\x05\x00\x00\x00\x00")
        _, token = store.get(key)
        # a put more than one TTL (by the Redis server's clock) after its get: refused, whatever it depends on
        assert not store.put(key, {"name": "late"}, Token(token.sequence, token.at_ms - 60_001), ("a",))
        assert store.put(key, {"name": "in time"}, token, ("a",))
    finally:
        client.close()
        release_and_close(short, long)


def test_a_model_never_read_through_a_store_gets_no_dependency_keys(live_url, redis_server):
    import redis

    db = Database(live_url, cache_models=("User",), cache_bus=redis_server.url, ensure_indexes=False).connect()
    client = redis.Redis.from_url(redis_server.url)
    try:
        _poll(lambda: db.executor.runtime.cache.trusted)
        user = db.create("User", {"email": _email(), "name": "Ann"})
        db.find_one("User", {"id": user.id})
        db.update("User", {"id": user.id}, {"status": "inactive"})
        _poll(lambda: not db.executor.runtime.cache.bus_stats()["pending"])
        assert list(client.scan_iter(match="astro_db:*:gen:User"))  # the sequence advanced
        assert not list(client.scan_iter(match="astro_db:*:dep:*"))
    finally:
        client.close()
        db.disconnect()


def test_the_default_dependency_is_every_write(live_url, redis_server):
    from astro_db.cache.redis_store import ANY, MISSING, RedisStore

    store = RedisStore(redis_server.url, "any", 60.0, secret=b"g" * 32)
    try:
        key = ("User", "find", None, b"\x05\x00\x00\x00\x00")
        _, token = store.get(key)
        assert store.put(key, [], token)  # no dependencies given: ANY
        assert store.get(key)[0] == []
        store._client.incr(f"{store.prefix}gen:User")  # any write at all
        assert store.get(key)[0] is MISSING and store.stats()["outdated"] == 1
        assert ANY == "*"
    finally:
        store.close()


# --- writes of an earlier version (a rolling upgrade) ---------------------------------------------

def _older_version_write(db, redis_url, user_id, status):
    """A write as a process of an earlier version makes it: the document changed on the server,
    and its model's sequence advanced by the bus's script of that version (``INCR`` and the
    announcement), which records no dependency keys."""
    import redis

    db.mongo["users"].update_one({"_id": user_id}, {"$set": {"status": status}})
    client = redis.Redis.from_url(redis_url)
    try:
        client.incr(db.executor.runtime.cache.bus.generation_prefix + "User")
    finally:
        client.close()


def test_a_write_of_an_earlier_version_makes_every_entry_of_its_model_unservable(pair, redis_server):
    writer, reader, spy = pair
    ann = writer.create("User", {"email": _email(), "name": "Ann"})
    bob = writer.create("User", {"email": _email(), "name": "Bob"})
    announce(writer)
    for user in (ann, bob):
        writer.find_one("User", {"id": user.id})  # stored in Redis
    _older_version_write(writer, redis_server.url, bob.id, "suspended")
    # it set no dependency key: every entry of the model counts as changed, Bob's included
    answer, asked = _from_redis(reader, spy, lambda: reader.find_one("User", {"id": bob.id}, lean=True))
    assert answer["status"] == "suspended" and asked
    answer, asked = _from_redis(reader, spy, lambda: reader.find_one("User", {"id": ann.id}, lean=True))
    assert asked
    assert _shared(reader)["hits"] == 0 and _shared(reader)["outdated"] == 2


def test_an_earlier_versions_write_stays_counted_after_a_later_write_of_this_version(pair, redis_server):
    writer, reader, spy = pair
    ann = writer.create("User", {"email": _email(), "name": "Ann"})
    bob = writer.create("User", {"email": _email(), "name": "Bob"})
    announce(writer)
    writer.find_one("User", {"id": bob.id})  # stored in Redis before both writes
    _older_version_write(writer, redis_server.url, bob.id, "suspended")
    writer.update("User", {"id": ann.id}, {"name": "Ann Two"})  # this version's write, to another user
    announce(writer)
    answer, asked = _from_redis(reader, spy, lambda: reader.find_one("User", {"id": bob.id}, lean=True))
    assert answer["status"] == "suspended" and asked  # not the entry from before the earlier version's write


def test_a_put_racing_an_earlier_versions_write_is_refused(live_url, redis_server):
    a = _db(live_url, redis_server.url)
    try:
        user = a.create("User", {"email": _email(), "name": "Ann"})
        announce(a)
        store = a.executor.runtime.cache.shared
        real_put = store.put

        def put(key, value, token, dependencies):
            _older_version_write(a, redis_server.url, user.id, "suspended")  # between the fetch and the put
            return real_put(key, value, token, dependencies)

        store.put = put
        assert a.find_one("User", {"id": user.id}, lean=True)["status"] == "active"  # read before the write
        assert store.stats()["stored"] == 0 and store.stats()["refused"] == 1
    finally:
        release_and_close(a)
