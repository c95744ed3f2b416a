"""Selective invalidation: a write drops the cached answers it may have changed and keeps the others.

Every test reads through the service twice around a write: the second read is either a hit
(kept: the answer must still be the server's) or a miss (dropped: the answer is fresh). A kept
entry is only ever one whose answer the write cannot have changed; each test checks the answer
against an uncached read (``cache=False``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from bson import ObjectId
from spies import BusCalls, poll

from astro_db import Database
from astro_db.cache import QueryCache, cache_key
from astro_db.cache.bus import LocalBus, Notice


@pytest.fixture
def db():
    with Database("mongomock://localhost/selective", cache_models=("User",), ensure_indexes=False) as database:
        yield database


def _hits(db: Database) -> int:
    return int(db.executor.runtime.cache.stats()["hits"])


def _same_as_server(db: Database, call: str, *args: Any, **options: Any) -> Any:
    """The cached answer, checked against the server's."""
    cached = getattr(db, call)("User", *args, lean=True, **options) if call != "count" else db.count("User", *args)
    fresh = (getattr(db, call)("User", *args, lean=True, cache=False, **options) if call != "count"
             else db.count("User", *args, cache=False))
    assert cached == fresh
    return cached


def _users(db: Database, n: int = 3) -> list[Any]:
    return [db.create("User", {"email": f"u{i}@example.com", "name": f"N{i}"}) for i in range(n)]


def test_a_write_to_another_id_keeps_an_id_lookup(db):
    a, b, _ = _users(db)
    db.find_one("User", {"id": a.id})
    db.update("User", {"id": b.id}, {"name": "Bee"})
    db.delete("User", {"id": b.id})
    db.create("User", {"email": "new@example.com", "name": "New"})
    hits = _hits(db)
    assert _same_as_server(db, "find_one", {"id": a.id})["name"] == "N0"
    assert _hits(db) == hits + 1


def test_a_write_to_that_id_drops_the_id_lookup(db):
    a, *_ = _users(db)
    db.find_one("User", {"id": a.id})
    db.update("User", {"id": a.id}, {"name": "Ann"})
    hits = _hits(db)
    assert _same_as_server(db, "find_one", {"id": a.id})["name"] == "Ann"
    assert _hits(db) == hits


def test_a_write_that_makes_a_document_start_matching_a_cached_filter_drops_it(db):
    _, b, _ = _users(db)
    assert db.find("User", {"name": "Zed"}, lean=True) == []
    db.update("User", {"id": b.id}, {"name": "Zed"})
    assert [d["email"] for d in _same_as_server(db, "find", {"name": "Zed"})] == ["u1@example.com"]


def test_a_write_that_makes_a_document_stop_matching_a_cached_filter_drops_it(db):
    _, b, _ = _users(db)
    assert len(db.find("User", {"name": "N1"}, lean=True)) == 1
    db.update("User", {"id": b.id}, {"name": "Other"})
    assert _same_as_server(db, "find", {"name": "N1"}) == []


def test_a_created_document_that_matches_drops_the_filter_one_that_does_not_keeps_it(db):
    _users(db)
    db.find("User", {"name": "N1"}, lean=True)
    db.create("User", {"email": "x@example.com", "name": "Elsewhere"})
    hits = _hits(db)
    assert len(_same_as_server(db, "find", {"name": "N1"})) == 1 and _hits(db) == hits + 1
    db.create("User", {"email": "y@example.com", "name": "N1"})
    hits = _hits(db)
    assert len(_same_as_server(db, "find", {"name": "N1"})) == 2 and _hits(db) == hits


def test_a_write_to_a_field_no_filter_names_keeps_the_filter(db):
    a, b, _ = _users(db)
    db.find_one("User", {"email": "u0@example.com"})
    db.update("User", {"id": b.id}, {"name": "Bee"})  # b does not match, before or after
    hits = _hits(db)
    assert _same_as_server(db, "find_one", {"email": "u0@example.com"})["name"] == "N0"
    assert _hits(db) == hits + 1


def test_counts_drop_on_a_create_or_delete_and_on_updates_of_their_fields(db):
    a, b, _ = _users(db)
    assert db.count("User", {"name": "N1"}) == 1
    db.update("User", {"id": a.id}, {"email": "a2@example.com"})  # a field the count does not name
    hits = _hits(db)
    assert _same_as_server(db, "count", {"name": "N1"}) == 1 and _hits(db) == hits + 1
    db.update("User", {"id": b.id}, {"name": "Gone"})  # b stops matching: no post-image can say it matched before
    assert _same_as_server(db, "count", {"name": "N1"}) == 0
    db.create("User", {"email": "c@example.com", "name": "N1"})
    assert _same_as_server(db, "count", {"name": "N1"}) == 1
    db.delete("User", {"email": "c@example.com"})
    assert _same_as_server(db, "count", {"name": "N1"}) == 0


def test_a_delete_drops_the_answers_holding_the_document_and_keeps_the_others(db):
    a, b, c = _users(db)
    db.find("User", {"name": {"$in": ["N0", "N1"]}}, lean=True)
    db.find_one("User", {"email": "u2@example.com"})
    db.delete("User", {"id": c.id})
    hits = _hits(db)
    assert len(_same_as_server(db, "find", {"name": {"$in": ["N0", "N1"]}})) == 2 and _hits(db) == hits + 1
    db.delete("User", {"id": b.id})
    assert len(_same_as_server(db, "find", {"name": {"$in": ["N0", "N1"]}})) == 1
    assert _same_as_server(db, "find_one", {"email": "u2@example.com"}) is None


@pytest.mark.parametrize("rename", ["A0", "Z9"], ids=["into_the_top", "out_of_the_answer"])
def test_a_write_that_changes_the_order_or_the_top_n_drops_a_sorted_limited_list(db, rename):
    users = [db.create("User", {"email": f"t{i}@example.com", "name": f"M{i}"}) for i in range(5)]
    top = db.find("User", {}, sort=[("name", 1)], limit=2, lean=True)
    assert [d["name"] for d in top] == ["M0", "M1"]
    target = users[4] if rename == "A0" else users[0]
    db.update("User", {"id": target.id}, {"name": rename})
    fresh = _same_as_server(db, "find", {}, sort=[("name", 1)], limit=2)
    assert [d["name"] for d in fresh] == (["A0", "M0"] if rename == "A0" else ["M1", "M2"])


def test_a_sorted_list_is_dropped_when_a_document_outside_it_changes_its_sort_field(db):
    users = [db.create("User", {"email": f"s{i}@example.com", "name": f"M{i}"}) for i in range(4)]
    db.find("User", {"email": {"$in": ["s0@example.com", "s1@example.com", "s3@example.com"]}},
            sort=[("name", 1)], limit=2, lean=True)
    db.update("User", {"id": users[3].id}, {"name": "A"})
    fresh = _same_as_server(db, "find", {"email": {"$in": ["s0@example.com", "s1@example.com", "s3@example.com"]}},
                            sort=[("name", 1)], limit=2)
    assert [d["name"] for d in fresh] == ["A", "M0"]


def test_update_many_without_post_images_is_judged_by_its_fields(db):
    a, b, c = _users(db)
    db.find_one("User", {"email": "u0@example.com"})
    db.find("User", {"name": "N9"}, lean=True)
    db.update_many("User", {"email": {"$in": ["u1@example.com", "u2@example.com"]}}, {"name": "N9"})
    hits = _hits(db)
    assert _same_as_server(db, "find_one", {"email": "u0@example.com"})["name"] == "N0"
    assert _hits(db) == hits + 1  # kept: its filter names email, the update set name
    assert len(_same_as_server(db, "find", {"name": "N9"})) == 2  # dropped: the update set the field it names


def test_a_write_inside_a_transaction_applies_on_commit():
    cache = QueryCache(ttl_s=60)
    a, b = ObjectId(), ObjectId()
    cache.put(cache_key("User", "find_one", {"_id": a}), {"_id": a})
    cache.put(cache_key("User", "find_one", {"_id": b}), {"_id": b})

    class Tx:
        def __init__(self) -> None:
            self.work: list[Any] = []

        def after_commit(self, fn: Any) -> None:
            self.work.append(fn)

    from astro_db.events import WriteEvent

    tx = Tx()
    cache.on_write(WriteEvent(model="User", collection="users", action="update", document_ids=(b,), fields=("name",),
                              database=None, transaction=tx))  # type: ignore[arg-type]
    assert len(cache) == 2  # nothing before the commit
    tx.work[0]()
    assert len(cache) == 1 and cache.get_or_fetch(cache_key("User", "find_one", {"_id": a}), lambda: None) == {"_id": a}


# --- the cache alone: what cannot be judged drops as before ---------------------------------------

def _notice(cache: QueryCache, *ids: Any, fields: tuple[str, ...] = ("name",), images: Any = None, **flags: bool) -> Notice:
    return Notice("User", frozenset(cache.digest(i) for i in ids), frozenset(fields), images=images, **flags)


@pytest.mark.parametrize("filt, options", [
    ({"$where": "this.name == 'x'"}, {}),
    ({"$expr": {"$eq": ["$a", 1]}}, {}),
    ({"$text": {"$search": "x"}}, {}),
    ({"email": "x"}, {"skip": 1}),
    ({"email": "x"}, {"projection": {"_id": 0, "email": 1}}),
    ({"email": {"$mod": [2, 0]}}, {}),
], ids=["where", "expr", "text", "skip", "projection_without_id", "operator_not_evaluated"])
def test_what_cannot_be_judged_is_dropped_by_any_write_to_its_model(filt, options):
    cache = QueryCache(ttl_s=60)
    key = cache_key("User", "find", filt, options)
    cache.put(key, [{"_id": ObjectId(), "email": "x"}] if "projection" not in options else [{"email": "x"}])
    other = ObjectId()
    dropped = cache.apply(_notice(cache, other, fields=("email",) if "$mod" in str(filt) else ("zzz",),
                                  images=({"_id": other, "email": 3},), created=False))
    assert dropped == 1 and len(cache) == 0


def test_a_notice_without_ids_drops_the_whole_model_and_other_models_are_untouched():
    cache = QueryCache(ttl_s=60)
    a = ObjectId()
    cache.put(cache_key("User", "find_one", {"_id": a}), {"_id": a})
    cache.put(cache_key("BirthChart", "find_one", {"_id": a}), {"_id": a})
    assert cache.apply(Notice("User", None)) == 1
    assert len(cache) == 1


def test_ids_are_matched_by_value_as_the_server_does():
    cache = QueryCache(ttl_s=60)
    cache.put(cache_key("User", "find_one", {"_id": 5}), {"_id": 5, "name": "five"})
    assert cache.apply(_notice(cache, 5.0)) == 1  # 5.0 is the same _id as 5


def test_a_read_under_way_during_a_selective_write_does_not_store_its_answer():
    cache = QueryCache(ttl_s=60)
    a, b = ObjectId(), ObjectId()
    key = cache_key("User", "find_one", {"_id": a})

    def fetch_while_b_is_written() -> Any:
        cache.apply(_notice(cache, b))
        return {"_id": a}

    cache.get_or_fetch(key, fetch_while_b_is_written)
    assert len(cache) == 0  # the generation moved: it may have been answered before the write


def test_peers_in_the_process_apply_the_notice_with_its_images():
    peers = LocalBus()
    writer, reader = QueryCache(ttl_s=60, peers=peers), QueryCache(ttl_s=60, peers=peers)
    a, b = ObjectId(), ObjectId()
    reader.put(cache_key("User", "find_one", {"_id": a}), {"_id": a, "name": "A"})
    reader.put(cache_key("User", "find", {"name": "Zed"}), [])
    reader.put(cache_key("User", "find", {"name": "Other"}), [])
    writer.invalidate("User", _notice(writer, b, images=({"_id": b, "name": "Zed"},)))
    assert reader.get_or_fetch(cache_key("User", "find_one", {"_id": a}), lambda: "fetched") == {"_id": a, "name": "A"}
    assert reader.get_or_fetch(cache_key("User", "find", {"name": "Other"}), lambda: "fetched") == []
    assert reader.get_or_fetch(cache_key("User", "find", {"name": "Zed"}), lambda: "fetched") == "fetched"
    assert reader.stats()["kept"] == 2


def test_the_redis_message_carries_digests_and_field_names_never_ids_or_values(redis_server):
    import json

    import redis

    from astro_db.cache.redis_bus import RedisBus

    caches = [QueryCache(ttl_s=60, bus=RedisBus(redis_server.url, "selective"), id_key=b"app secret") for _ in range(2)]
    client = redis.Redis.from_url(redis_server.url)
    sub = client.pubsub()
    try:
        sub.subscribe(caches[0].bus.channel)
        poll(lambda: sub.get_message(timeout=0.1) is not None)  # the subscribe confirmation
        for cache in caches:
            poll(lambda cache=cache: cache.trusted)
        writer, reader = caches
        a, b = ObjectId(), ObjectId()
        reader.generation("User")  # registers User as cached: its writes are announced from now on
        reader.put(cache_key("User", "find_one", {"_id": a}), {"_id": a, "name": "A"})
        reader.put(cache_key("User", "find_one", {"_id": b}), {"_id": b, "name": "B"})
        reader.put(cache_key("User", "find", {"name": "Zed"}), [])
        reader.put(cache_key("User", "find", {"email": "a@example.com"}), [{"_id": a, "email": "a@example.com"}])
        received = reader.bus_stats()["received"]
        writer.invalidate("User", _notice(writer, b, fields=("name",), images=({"_id": b, "name": "Zed"},)))
        poll(lambda: reader.bus_stats()["received"] > received)
        assert reader.get_or_fetch(cache_key("User", "find_one", {"_id": a}), lambda: "fetched") == {"_id": a, "name": "A"}
        assert reader.get_or_fetch(cache_key("User", "find", {"email": "a@example.com"}), lambda: "fetched") != "fetched"
        assert reader.get_or_fetch(cache_key("User", "find_one", {"_id": b}), lambda: "fetched") == "fetched"
        # no post-image crossed Redis: a filter over a written field is dropped
        assert reader.get_or_fetch(cache_key("User", "find", {"name": "Zed"}), lambda: "fetched") == "fetched"
        message = poll(lambda: sub.get_message(timeout=0.1))
        body = json.loads(message["data"])
        assert set(body) == {"m", "o", "t", "g", "i", "f", "c", "d"} and body["f"] == ["name"]
        assert str(b) not in message["data"].decode() and "Zed" not in message["data"].decode()
        assert body["i"] == [writer.digest(b).hex()] and writer.digest(b) == reader.digest(b)
    finally:
        sub.close()
        client.close()
        for cache in caches:
            cache.close()


def test_notices_waiting_to_be_sent_coalesce_into_one_that_covers_each():
    cache_a = QueryCache(ttl_s=60)
    first = _notice(cache_a, ObjectId(), fields=("name",), images=({"_id": 1},))
    second = _notice(cache_a, ObjectId(), fields=("email",), created=True)
    merged = first.merged(second)
    assert merged is not None and merged.ids == first.ids | second.ids and merged.fields == {"name", "email"}
    assert merged.created and merged.images is None
    assert first.merged(Notice("User", None)) is None


def test_writes_to_a_model_no_process_caches_wake_no_subscriber_and_registered_ones_do(redis_server):
    import redis

    from astro_db.cache.redis_bus import RedisBus

    writer, reader = (QueryCache(ttl_s=60, bus=RedisBus(redis_server.url, "watched")) for _ in range(2))
    client = redis.Redis.from_url(redis_server.url)
    try:
        for cache in (writer, reader):
            poll(lambda cache=cache: cache.trusted)
        key = cache_key("User", "find_one", {"email": "a@example.com"})
        assert reader.put(key, None) is False  # not registered: its writes might not be announced
        writer.invalidate("User", _notice(writer, ObjectId()))
        poll(lambda: not writer.bus_stats()["pending"])
        assert client.get(writer.bus.generation_prefix + "User") == b"1"  # the generation still advances
        assert writer.bus_stats()["unannounced"] == 1 and writer.bus_stats()["sent"] == 0 and reader.bus_stats()["received"] == 0
        assert reader.get_or_fetch(key, lambda: None) is None  # registers User, then fetches and stores
        assert client.smembers(reader.bus.cached_key) == {b"User"} and len(reader) == 1
        writer.invalidate("User", Notice("User", None))
        poll(lambda: reader.bus_stats()["received"] == 1)
        assert len(reader) == 0  # announced now: the reader dropped its entry
    finally:
        client.close()
        writer.close()
        reader.close()


def test_a_write_of_more_documents_than_a_notice_carries_drops_the_whole_model():
    from astro_db.cache.bus import MAX_NOTICE_IDS
    from astro_db.events import WriteEvent

    cache = QueryCache(ttl_s=60)
    ids = tuple(ObjectId() for _ in range(MAX_NOTICE_IDS + 1))
    event = WriteEvent(model="User", collection="users", action="update", document_ids=ids, fields=("name",),
                       database=None)  # type: ignore[arg-type]
    assert cache.notice(event).whole
    assert not cache.notice(WriteEvent(model="User", collection="users", action="update", document_ids=ids[:3],
                                       fields=("name",), database=None)).whole  # type: ignore[arg-type]


def test_id_digests_are_keyed_by_the_app_secret():
    oid = ObjectId()
    keyed = [Database("mongodb://localhost:1/dig", cache_secret=secret, cache_models=("User",)).executor.runtime.cache
             for secret in ("a" * 40, "a" * 40, "b" * 40)]
    assert keyed[0].digest(oid) == keyed[1].digest(oid) != keyed[2].digest(oid)
    assert oid.binary not in keyed[0].digest(oid) and len(keyed[0].digest(oid)) == 16


def test_a_redis_message_without_a_notice_drops_the_whole_model():
    import json
    import weakref

    from astro_db.cache.redis_bus import RedisBus

    bus = RedisBus("redis://localhost:1/0", "old")
    listener = BusCalls()
    bus._listener = weakref.ref(listener)
    bus._deliver(json.dumps({"m": "User", "g": 1, "o": "elsewhere", "t": 0}).encode())
    bus._deliver(json.dumps({"m": "User", "g": 2, "o": "elsewhere", "t": 0, "i": ["ab" * 16], "f": ["name"], "c": False,
                             "d": False}).encode())
    bus._deliver(json.dumps({"m": "User", "g": 3, "o": "elsewhere", "t": 0, "i": "zz", "f": [], "c": 1, "d": 0}).encode())
    assert listener.calls == [("drop", "User"), ("apply", "User"), ("drop_all", "unreadable message")]


def test_a_write_that_makes_a_document_match_a_cached_date_filter_drops_it(db):
    import datetime as dt

    a, *_ = _users(db)
    when = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert db.find("User", {"last_active": when}, lean=True) == []
    assert db.count("User", {"last_active": {"$gte": when}}) == 0
    db.update("User", {"id": a.id}, {"last_active": when})
    assert [d["email"] for d in _same_as_server(db, "find", {"last_active": when})] == ["u0@example.com"]
    assert _same_as_server(db, "count", {"last_active": {"$gte": when}}) == 1


def test_entries_requiring_a_value_are_found_by_the_post_images_values():
    cache = QueryCache(ttl_s=60, max_entries=3)
    by_email = cache_key("User", "find_one", {"email": "a@example.com"})
    by_tag = cache_key("User", "find", {"tags": "x", "status": "active"})
    cache.put(by_email, None)
    cache.put(by_tag, [])
    other = ObjectId()
    assert cache.apply(_notice(cache, other, fields=("email", "tags"), created=True,
                               images=({"_id": other, "email": "b@example.com", "tags": ["y"]},))) == 0
    assert cache.apply(_notice(cache, other, fields=("tags",), images=({"_id": other, "tags": ["y", "x"],
                                                                       "status": "gone"},))) == 0  # x, but not active
    assert cache.apply(_notice(cache, other, fields=("tags",), images=({"_id": other, "tags": ["y", "x"],
                                                                       "status": "active"},))) == 1  # a list holding it
    assert cache.apply(_notice(cache, other, fields=("email",), created=True,
                               images=({"_id": other, "email": "a@example.com"},))) == 1
    cache.put(by_email, None)
    assert cache.apply(_notice(cache, other, fields=("email",))) == 1  # no post-image (another process): by field
    for n in range(5):  # evicted entries leave no index behind
        cache.put(cache_key("User", "find_one", {"email": f"{n}@example.com"}), None)
    cache.clear()
    assert not (cache._by_value or cache._keyed or cache._keyed_fields or cache._open or cache._by_id)


def test_registering_a_model_against_a_frozen_redis_is_bounded_and_turns_caching_off(redis_server):
    db = Database(f"mongomock://localhost/reg_{ObjectId()}", cache_bus=redis_server.url, cache_models=("User",),
                  ensure_indexes=False).connect()
    cache = db.executor.runtime.cache
    try:
        poll(lambda: cache.trusted)
        user = db.create("User", {"email": "r@example.com", "name": "R"})
        redis_server.freeze()
        try:
            assert db.find_one("User", {"id": user.id}, lean=True)["name"] == "R"  # from the server
            client = cache.bus._register_client
            assert client.connection_pool.connection_kwargs["socket_timeout"] == cache.bus.stall_s  # the bound
            assert not cache.trusted and len(cache) == 0 and cache.bus_stats()["errors"] >= 1
        finally:
            redis_server.thaw()
        poll(lambda: cache.trusted)
        db.find_one("User", {"id": user.id})
        assert len(cache) == 1  # registered once the subscriber is back, and caching again
    finally:
        db.disconnect()


def test_change_events_become_notices_and_anything_unreadable_drops_the_model():
    from astro_db.cache.change_streams import notice_of

    cache = QueryCache(ttl_s=60)
    oid = ObjectId()
    ids = frozenset({cache.digest(oid)})
    update = notice_of({"operationType": "update", "documentKey": {"_id": oid}, "updateDescription": {
        "updatedFields": {"name": "x", "address.city": "y"}, "removedFields": ["nick"], "truncatedArrays": []}},
        "User", cache)
    assert update == Notice("User", ids, frozenset({"name", "address", "nick"}))
    insert = notice_of({"operationType": "insert", "documentKey": {"_id": oid}, "fullDocument": {"_id": oid, "a": 1}},
                       "User", cache)
    assert insert is not None and insert.created and not insert.deleted and insert.images is None  # not trusted
    replace = notice_of({"operationType": "replace", "documentKey": {"_id": oid}, "fullDocument": {"_id": oid}},
                        "User", cache)
    assert replace is not None and replace.created and replace.deleted  # it may also have stopped matching
    assert notice_of({"operationType": "delete", "documentKey": {"_id": oid}}, "User", cache) == Notice(
        "User", ids, deleted=True)
    for junk in ({"operationType": "update", "documentKey": {"_id": oid}},
                 {"operationType": "update", "documentKey": {"_id": oid}, "updateDescription": {"updatedFields": []}},
                 {"operationType": "insert"}, {"operationType": "weird", "documentKey": {"_id": oid}}):
        assert notice_of(junk, "User", cache) is None


# --- several caches in one process: a write none of them holds anything of -----------------------

def _update_event(model: str, oid: Any) -> Any:
    from astro_db.events import WriteEvent

    return WriteEvent(model=model, collection="users", action="update", document_ids=(oid,), fields=("name",),
                      database=None)  # type: ignore[arg-type]


def test_a_write_no_cache_of_the_process_holds_builds_no_notice_and_every_generation_advances(monkeypatch):
    """Two ``Database``s in one process share the local bus: a write to a model neither cache
    holds anything of builds no ``Notice`` and applies nothing (``LocalBus.unseen``), yet each
    cache's generation advances (a read under way in either stores nothing) and the message is
    counted as sent and delivered, as ``publish`` counts it."""
    peers = LocalBus()
    writer, other = QueryCache(ttl_s=60, peers=peers), QueryCache(ttl_s=60, peers=peers)
    writer.put(cache_key("Note", "find_one", {"n": 1}), {"n": 1})  # another model held: does not matter
    under_way = other.generation("User")
    mine = writer.generation("User")
    built: list[Any] = []
    real = QueryCache.notice
    monkeypatch.setattr(QueryCache, "notice", lambda self, event: built.append(event) or real(self, event))
    applied: list[Any] = []
    monkeypatch.setattr(QueryCache, "apply", lambda self, notice: applied.append(notice) or 0)
    writer.on_write(_update_event("User", ObjectId()))
    assert built == [] and applied == []
    assert other.generation("User")[1] == under_way[1] + 1 and writer.generation("User")[1] == mine[1] + 1
    assert not other.put(cache_key("User", "find_one", {"n": 2}), {"n": 2}, under_way)  # read before the write
    assert not writer.put(cache_key("User", "find_one", {"n": 2}), {"n": 2}, mine)
    assert peers.stats()["sent"] == 1 and peers.stats()["received"] == 1


def test_a_write_another_cache_of_the_process_holds_the_model_of_is_judged_with_its_notice():
    """As soon as one cache of the process holds an entry of the model, the write's notice is
    built and applied as before: the other cache drops what the write may have changed."""
    peers = LocalBus()
    writer, other = QueryCache(ttl_s=60, peers=peers), QueryCache(ttl_s=60, peers=peers)
    a, b = ObjectId(), ObjectId()
    other.put(cache_key("User", "find_one", {"_id": a}), {"_id": a})
    other.put(cache_key("User", "find_one", {"_id": b}), {"_id": b})
    writer.on_write(_update_event("User", b))
    assert len(other) == 1  # b's lookup dropped, a's kept
    assert other.get_or_fetch(cache_key("User", "find_one", {"_id": a}), lambda: None) == {"_id": a}
    assert peers.stats()["sent"] == 1 and peers.stats()["received"] == 1


def test_a_cache_that_stores_an_entry_while_the_write_is_judged_never_keeps_an_answer_read_before_it():
    """The check and the advance are one step per cache, under its lock: a read that began
    before the write and stores after the quiet path passed that cache is refused (its
    generation moved); one that began after the step reads what the write left."""
    peers = LocalBus()
    writer, other = QueryCache(ttl_s=60, peers=peers), QueryCache(ttl_s=60, peers=peers)
    before = other.generation("User")
    assert peers.unseen("User", writer) is True
    key = cache_key("User", "find_one", {"n": 3})
    assert not other.put(key, {"name": "old"}, before)
    after = other.generation("User")
    assert other.put(key, {"name": "new"}, after)
    assert peers.unseen("User", writer) is False  # now held: the caller takes the notice path


# --- the judge is the server's, one level deeper --------------------------------------------------

BIRTH = {"date": "1990-01-01T00:00:00Z", "timezone": "UTC"}


def test_a_null_test_through_a_list_of_documents_drops_what_a_new_item_without_the_field_matches():
    with Database("mongomock://localhost/selective-null", cache_models=("BirthChart",), ensure_indexes=False) as db:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        sun = {"body": "Sun", "sign": "Aries", "degree": 1, "house": 1}
        chart = db.create("BirthChart", {"userId": user.id, "birthData": BIRTH, "positions": [sun]})
        unhoused = {"positions.house": None}
        assert db.find("BirthChart", unhoused) == [] and db.count("BirthChart", unhoused) == 0  # cached
        # an item without a house: the server's null test now matches the chart (SERVER-14874)
        db.update("BirthChart", {"id": chart.id}, {"positions": [sun, {"body": "Moon", "sign": "Leo", "degree": 2}]})
        assert [c.id for c in db.find("BirthChart", unhoused)] == [chart.id]
        assert [c.id for c in db.find("BirthChart", unhoused, cache=False)] == [chart.id]
        other = db.create("User", {"email": "bob@example.com", "name": "Bob"})
        db.create("BirthChart", {"userId": other.id, "birthData": BIRTH, "positions": [{"body": "Mars", "sign": "Leo", "degree": 3}]})
        assert db.count("BirthChart", {"positions.house": {"$ne": None}}) == 0  # both charts have one without
        assert len(db.find("BirthChart", unhoused)) == 2 == len(db.find("BirthChart", unhoused, cache=False))


def test_a_regex_as_the_value_is_a_pattern_match_for_the_cache_too(db):
    _users(db)
    assert _same_as_server(db, "find", {"name": re.compile("^C")}) == []
    db.create("User", {"email": "cy@example.com", "name": "Cy"})
    assert [u["name"] for u in _same_as_server(db, "find", {"name": re.compile("^C")})] == ["Cy"]
    assert len(_same_as_server(db, "find", {"name": {"$not": re.compile("^C")}})) == 3
    db.create("User", {"email": "cat@example.com", "name": "Cat"})
    assert len(_same_as_server(db, "find", {"name": {"$not": re.compile("^C")}})) == 3
    assert [u["name"] for u in _same_as_server(db, "find", {"name": re.compile("^C")})] == ["Cy", "Cat"]


def test_a_filter_the_cache_cannot_judge_is_dropped_by_a_write_it_may_match(db):
    _users(db)
    digits = {"name": re.compile(r"\d$")}  # \d: Unicode digits in Python's re, ASCII in the server's PCRE
    assert len(_same_as_server(db, "find", digits)) == 3
    hits = _hits(db)
    db.create("User", {"email": "x@example.com", "name": "X\u0663"})  # ARABIC-INDIC DIGIT THREE
    assert len(_same_as_server(db, "find", digits)) in (3, 4)  # the embedded server is Python: 4; MongoDB: 3
    assert _hits(db) == hits  # dropped, read again: never judged on a guess


def test_an_update_of_a_queryable_encrypted_field_drops_the_equality_it_now_matches():
    """An equality on a sealed field is matched on its blind index (``emailIndex``): the update
    keeps that index in step, and it is a field the write changed, for the cache too."""
    from astro_db.security.crypto import new_key

    with Database("mongomock://localhost/selective-sealed", cache_models=("User",), encryption_key=new_key(),
                  ensure_indexes=False) as db:
        ann, bob, _ = _users(db)
        assert _same_as_server(db, "find", {"email": "ann@new.example"}) == []
        assert [u["name"] for u in _same_as_server(db, "find", {"email": "u1@example.com"})] == ["N1"]
        assert _same_as_server(db, "count", {"email": "u1@example.com"}) == 1
        db.update("User", {"id": ann.id}, {"email": "ann@new.example"})  # now matches the first
        db.update("User", {"id": bob.id}, {"$set": {"email": "bob@new.example"}})  # no longer the second
        assert [u["name"] for u in _same_as_server(db, "find", {"email": "ann@new.example"})] == ["N0"]
        assert _same_as_server(db, "find", {"email": "u1@example.com"}) == []
        assert _same_as_server(db, "count", {"email": "u1@example.com"}) == 0
        hits = _hits(db)
        db.update("User", {"id": ann.id}, {"name": "Ann"})  # the index untouched: the equality on it is kept
        assert _same_as_server(db, "find", {"email": "u1@example.com"}) == []
        assert _hits(db) == hits + 1


def test_a_list_update_advances_the_version_key_and_drops_a_filter_on_it():
    """Every list-changing update advances Mongoose's ``__v`` (its compare-and-set): a cached
    filter on the version is a filter on a field the write changed."""
    with Database("mongomock://localhost/selective-version", cache_models=("PlanetaryInsight",),
                  ensure_indexes=False) as db:
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        day = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-12-01T00:00:00Z", "energyLevel": 70,
                                             "recommendations": ["Walk"]})
        for version in ({"version": 1}, {"__v": {"$gte": 1}}):
            assert db.find("PlanetaryInsight", version) == []
        db.update("PlanetaryInsight", {"id": day.id}, {"$push": {"recommendations": "Rest"}})
        for version in ({"version": 1}, {"__v": {"$gte": 1}}):
            assert [d.id for d in db.find("PlanetaryInsight", version)] == [day.id]
            assert [d.id for d in db.find("PlanetaryInsight", version, cache=False)] == [day.id]


def test_an_upsert_that_replaces_a_document_changes_the_fields_it_drops_too():
    """``upsert_many`` replaces a stored document by the item: a field the item leaves out is
    unset, and a cached filter on that field (``{"summary": None}``) may match it now."""
    with Database("mongomock://localhost/selective-upsert", cache_models=("PlanetaryInsight",),
                  ensure_indexes=False) as db:
        db.sync_indexes()  # upsert_many needs its unique index on the server
        user = db.create("User", {"email": "ann@example.com", "name": "Ann"})
        day = {"userId": user.id, "date": "2026-12-01T00:00:00Z", "energyLevel": 10, "recommendations": ["Walk"]}
        db.create("PlanetaryInsight", {**day, "summary": "sunny"})
        assert db.find("PlanetaryInsight", {"summary": None}) == []
        assert db.upsert_many("PlanetaryInsight", [day], on=("userId", "date")).updated == 1
        assert len(db.find("PlanetaryInsight", {"summary": None})) == 1
        assert len(db.find("PlanetaryInsight", {"summary": None}, cache=False)) == 1


def test_id_and_value_digests_follow_the_servers_equality():
    """A write's notice names what it wrote by digest, and an entry is found by the digest of what
    it pins: two values the server holds equal must digest alike (else a write misses the entry it
    changed: a stale read), two it tells apart must not (else only more is dropped)."""
    from bson import Decimal128, Int64

    cache = Database("mongodb://localhost:1/dig", cache_secret="a" * 40, cache_models=("User",)).executor.runtime.cache
    same = [(5, 5.0), (5, Int64(5)), (5, Decimal128("5")), (5, Decimal128("5.00")), (0.5, Decimal128("0.5")),
            (0, -0.0), (float("nan"), Decimal128("NaN")), ({"a": 1, "b": [2]}, {"a": 1.0, "b": [Decimal128("2")]}),
            ([1, {"c": 2}], (1.0, {"c": 2.0})), (float("inf"), Decimal128("Infinity")), (Decimal128("sNaN"), float("nan"))]
    for a, b in same:
        assert cache.digest(a) == cache.digest(b), (a, b)
    apart = [(True, 1), (False, 0), ("1", 1), ({"a": 1, "b": 2}, {"b": 2, "a": 1}), (0.1, Decimal128("0.1")),
             ({"a": True}, {"a": 1}), ([1, 2], [2, 1]), (ObjectId("0" * 24), "0" * 24)]
    for a, b in apart:
        assert cache.digest(a) != cache.digest(b), (a, b)
