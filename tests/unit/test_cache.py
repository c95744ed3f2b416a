"""The query cache: TTL + LRU, bounded, invalidated by every write through the service."""

from __future__ import annotations

import threading

import pytest
from bson import ObjectId
from spies import Clock

from astro_db import Database
from astro_db.cache import QueryCache, cache_key, copy_stored
from astro_db.errors import ConfigError


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db():
    with Database("mongomock://localhost/cache_test", ensure_indexes=False) as database:
        yield database


def _user(db, email="ann@example.com", name="Ann"):
    return db.create("User", {"email": email, "name": name})


def _key(n: int, model: str = "User") -> tuple:
    return cache_key(model, "find", {"n": n})


# --- the cache alone -----------------------------------------------------------------------------

def test_a_stored_result_is_served_until_its_ttl_passes(clock):
    cache = QueryCache(ttl_s=10, clock=clock)
    fetches = []
    fetch = lambda: fetches.append(1) or [{"a": 1}]  # noqa: E731
    assert cache.get_or_fetch(_key(1), fetch) == [{"a": 1}]
    clock.now += 9.9
    assert cache.get_or_fetch(_key(1), fetch) == [{"a": 1}]
    assert len(fetches) == 1
    clock.now += 0.1
    cache.get_or_fetch(_key(1), fetch)
    assert len(fetches) == 2
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["expirations"]) == (1, 2, 1)


def test_the_least_recently_used_entry_is_evicted_first(clock):
    cache = QueryCache(ttl_s=60, max_entries=2, clock=clock)
    cache.put(_key(1), [1])
    cache.put(_key(2), [2])
    cache.get_or_fetch(_key(1), lambda: pytest.fail("1 is cached"))  # 1 is now the most recent
    cache.put(_key(3), [3])
    assert cache.get_or_fetch(_key(1), lambda: "refetched") == [1]
    assert cache.get_or_fetch(_key(2), lambda: "refetched") == "refetched"
    assert cache.stats()["evictions"] >= 1


def test_memory_stays_within_the_entry_and_document_bounds(clock):
    cache = QueryCache(ttl_s=60, max_entries=50, max_documents=200, clock=clock)
    for n in range(1000):
        cache.put(_key(n), [{"i": i} for i in range(n % 7)])
        stats = cache.stats()
        assert stats["entries"] <= 50 and stats["documents"] <= 200
    assert cache.put(_key(-1), [{}] * 201) is False  # larger than the bound: never cached
    assert cache.stats()["uncacheable"] == 1


def test_callers_cannot_alter_what_is_cached(clock):
    cache = QueryCache(clock=clock)
    fetched = [{"tags": ["a"], "sub": {"x": 1}}]
    first = cache.get_or_fetch(_key(1), lambda: fetched)
    first[0]["tags"].append("mutated")
    first[0]["sub"]["x"] = 2
    second = cache.get_or_fetch(_key(1), lambda: pytest.fail("cached"))
    second.append("junk")
    assert cache.get_or_fetch(_key(1), lambda: pytest.fail("cached")) == [{"tags": ["a"], "sub": {"x": 1}}]


def test_copy_stored_shares_no_container():
    doc = {"a": [{"b": [1, 2]}], "c": {"d": ObjectId()}}
    out = copy_stored(doc)
    assert out == doc
    assert out["a"] is not doc["a"] and out["a"][0]["b"] is not doc["a"][0]["b"] and out["c"] is not doc["c"]


def test_invalidation_drops_only_the_written_model(clock):
    cache = QueryCache(clock=clock)
    cache.put(_key(1, "User"), [1])
    cache.put(_key(1, "BirthChart"), [2])
    assert cache.invalidate("User") == 1
    assert cache.get_or_fetch(_key(1, "BirthChart"), lambda: "refetched") == [2]
    assert cache.get_or_fetch(_key(1, "User"), lambda: "refetched") == "refetched"
    assert cache.stats()["invalidations"] == 1


def test_a_read_that_raced_a_write_does_not_store_its_older_result(clock):
    cache = QueryCache(clock=clock)

    def fetch_while_a_write_lands():
        cache.invalidate("User")  # a write to User finishes while the read is in flight
        return ["before the write"]

    assert cache.get_or_fetch(_key(1), fetch_while_a_write_lands) == ["before the write"]
    assert cache.get_or_fetch(_key(1), lambda: ["after"]) == ["after"]


def test_keys_ignore_clause_order_but_not_embedded_document_order():
    assert cache_key("User", "find", {"a": 1, "b": {"$lt": 5, "$gt": 1}}) == cache_key(
        "User", "find", {"b": {"$gt": 1, "$lt": 5}, "a": 1})
    assert cache_key("User", "find", {"a": {"x": 1, "y": 2}}) != cache_key("User", "find", {"a": {"y": 2, "x": 1}})
    assert cache_key("User", "find", {}, {"limit": 1}) != cache_key("User", "find", {}, {"limit": 2})
    assert cache_key("User", "find", {}, {"batch_size": 10}) == cache_key("User", "find", {})
    assert cache_key("User", "find", {}) != cache_key("User", "find_one", {})
    assert cache_key("User", "find", {}, read_preference="secondary") != cache_key("User", "find", {})


def test_a_key_is_the_same_whether_its_options_are_absent_empty_or_only_unshown():
    oid = ObjectId()
    key = cache_key("User", "find_one", {"_id": oid})
    assert key == cache_key("User", "find_one", {"_id": oid}, {}) == cache_key("User", "find_one", {"_id": oid}, None)
    assert key == cache_key("User", "find_one", {"_id": oid}, {"batch_size": 5, "cache": True})
    assert cache_key("User", "find", {"_id": {"$in": [oid]}, "n": {"$gt": 1}}) == cache_key(
        "User", "find", {"n": {"$gt": 1}, "_id": {"$in": [oid]}})


def test_a_zero_ttl_turns_the_cache_off(clock):
    cache = QueryCache(ttl_s=0, clock=clock)
    assert not cache.wanted("User", True)
    assert cache.put(_key(1), [1]) is False


def test_concurrent_readers_and_writers_keep_the_cache_consistent(clock):
    cache = QueryCache(ttl_s=60, max_entries=32, max_documents=64, clock=clock)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def reader(seed: int) -> None:
        try:
            start.wait()
            for n in range(2000):
                key = _key((seed * 7 + n) % 50)
                assert cache.get_or_fetch(key, lambda n=n: [{"n": n}]) is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer() -> None:
        start.wait()
        for _ in range(500):
            cache.invalidate("User")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(6)] + [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats["entries"] <= 32 and stats["documents"] <= 64
    assert stats["hits"] + stats["misses"] == 6 * 2000
    assert stats["documents"] == sum(e.weight for e in cache._entries.values())


# --- through the service -------------------------------------------------------------------------

def test_cache_true_serves_a_repeated_read_without_a_server_round_trip(db):
    _user(db)
    first = db.find_one("User", {"email": "ann@example.com"}, cache=True)
    db.collection("User").delete_many({})  # behind the service's back: only the TTL catches this
    again = db.find_one("User", {"email": "ann@example.com"}, cache=True)
    assert again is not first and again.name == "Ann"
    assert db.find_one("User", {"email": "ann@example.com"}) is None  # uncached reads go to the server
    assert db.executor.runtime.cache.stats()["hits"] == 1


@pytest.mark.parametrize("write", [
    lambda db, u: db.create("User", {"email": "bob@example.com", "name": "Bob"}),
    lambda db, u: db.create_many("User", [{"email": "bob@example.com", "name": "Bob"}]),
    lambda db, u: db.update("User", {"id": u.id}, {"name": "Bob"}),
    lambda db, u: db.update_many("User", {"name": "Ann"}, {"name": "Bob"}),
    lambda db, u: db.delete("User", {"id": u.id}),
    lambda db, u: db.delete_many("User", {"name": "Ann"}),
], ids=["create", "create_many", "update", "update_many", "delete", "delete_many"])
def test_every_write_through_the_service_invalidates_the_model(db, write):
    user = _user(db)
    before = (db.find("User", {}, cache=True, lean=True), db.count("User", cache=True))
    write(db, user)
    after = (db.find("User", {}, cache=True, lean=True), db.count("User", cache=True))
    assert after != before
    assert after == (db.find("User", {}, lean=True), db.count("User"))


def test_a_write_to_another_model_keeps_the_entries(db):
    user = _user(db)
    db.find("User", {}, cache=True)
    db.create("PlanetaryInsight", {"user_id": user.id, "date": "2024-03-01", "energy_level": 5,
                                   "recommendations": ["Rest"]})
    db.find("User", {}, cache=True)
    assert db.executor.runtime.cache.stats()["hits"] == 1


def test_lean_results_from_the_cache_are_private_copies(db):
    _user(db)
    rows = db.find("User", {}, lean=True, cache=True)
    rows[0]["name"] = "Mallory"
    rows.clear()
    assert db.find("User", {}, lean=True, cache=True)[0]["name"] == "Ann"
    instance = db.find_one("User", {}, cache=True)
    instance.name = "Eve"
    assert db.find_one("User", {}, cache=True).name == "Ann"


def test_lean_and_hydrated_reads_share_an_entry(db):
    _user(db)
    db.find("User", {}, lean=True, cache=True)
    assert db.find("User", {}, cache=True)[0].name == "Ann"
    assert db.executor.runtime.cache.stats()["hits"] == 1


def test_options_are_part_of_the_key(db):
    for n in range(3):
        _user(db, email=f"u{n}@example.com", name=f"U{n}")
    assert len(db.find("User", {}, limit=1, cache=True)) == 1
    assert len(db.find("User", {}, limit=2, cache=True)) == 2
    assert db.find("User", {}, sort=[("name", -1)], limit=1, cache=True)[0].name == "U2"
    assert db.find("User", {}, sort=[("name", 1)], limit=1, cache=True)[0].name == "U0"
    assert db.find_one("User", {}, projection=["email"], lean=True, cache=True).keys() == {"_id", "email"}


def test_models_listed_in_cache_models_are_cached_without_asking():
    with Database("mongomock://localhost/c", ensure_indexes=False, cache_models=("user",)) as db:
        _user(db)
        db.find_one("User", {}), db.find_one("User", {})
        db.find_one("BirthChart", {}), db.find_one("BirthChart", {})
        db.find_one("User", {}, cache=False)
        assert db.executor.runtime.cache.stats()["hits"] == 1


def test_unknown_cache_models_are_a_config_error():
    with pytest.raises(ConfigError, match="cache_models.*unknown model 'Horoscope'"):
        Database("mongomock://localhost/c", cache_models=("Horoscope",))


def test_a_committed_transaction_invalidates_on_commit(db):
    _user(db)
    assert db.count("User", cache=True) == 1
    with db.transaction() as tx:
        db.create("User", {"email": "eve@example.com", "name": "Eve"}, transaction=tx)
        assert db.executor.runtime.cache.stats()["invalidations"] == 0  # not yet: it might still abort
    assert db.executor.runtime.cache.stats()["invalidations"] == 1
    assert db.count("User", cache=True) == 2


def test_an_aborted_transaction_leaves_the_cache_alone(db):
    _user(db)
    assert db.count("User", cache=True) == 1
    tx = db.start_transaction()
    db.create("User", {"email": "eve@example.com", "name": "Eve"}, transaction=tx)
    db.rollback_transaction(tx)
    assert db.count("User", cache=True) == 1
    assert db.executor.runtime.cache.stats()["invalidations"] == 0


def test_reads_inside_a_transaction_neither_use_nor_fill_the_cache(db):
    _user(db)
    assert db.count("User", cache=True) == 1
    with db.transaction() as tx:
        db.create("User", {"email": "eve@example.com", "name": "Eve"}, transaction=tx)
        assert db.count("User", cache=True, transaction=tx) == 2  # its own write, not the cached 1
        assert len(db.find("User", {}, cache=True, transaction=tx)) == 2
    stats = db.executor.runtime.cache.stats()
    assert stats["misses"] == 1 and stats["entries"] == 0


def test_concurrent_service_reads_and_writes_never_serve_a_stale_count(db):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                _user(db, email=f"w{n}-{i}@example.com")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(40):
                db.count("User", cache=True)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert db.count("User", cache=True) == 30 == db.count("User")


def test_a_cached_read_asks_whether_the_cache_is_wanted_once(db, monkeypatch):
    user = _user(db)
    cache = db.executor.runtime.cache
    asked: list[str] = []
    wanted = QueryCache.wanted

    def spied(self: QueryCache, model: str, use: bool | None) -> bool:
        asked.append(model)
        return wanted(self, model, use)

    monkeypatch.setattr(QueryCache, "wanted", spied)
    for _ in range(3):
        assert db.find_one("User", {"id": user.id}, cache=True).name == "Ann"
    assert asked == ["User"] * 3  # was twice per read (the step's look, then its helper's)
    assert cache.stats()["hits"] == 2
    assert db.find_one("User", {"id": user.id}, cache=True, stale_ok=True).name == "Ann"  # stale_ok: through the cache
    assert cache.stats()["hits"] == 3
