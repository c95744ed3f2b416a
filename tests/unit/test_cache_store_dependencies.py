"""The shared store's dependencies are the local cache's judgement (issue 27): an entry's
dependency list (``_Shape.dependencies``) meets the dependency keys a write sets
(``write_dependencies``) exactly when ``QueryCache.apply`` drops that entry for the same write
arriving from another process (no post-images). No Redis: the two sides are compared directly."""

from __future__ import annotations

import random
from typing import Any

import pytest
from bson import ObjectId

from astro_db.cache import QueryCache, cache_key
from astro_db.cache.bus import Notice
from astro_db.cache.redis_store import ANY, MAX_DEPENDENCY_IDS, WHOLE, write_dependencies


def _shared_drops(cache: QueryCache, key: Any, notice: Notice | None) -> bool:
    entry = cache._entries[key]
    return bool(set(entry.shape.dependencies()) & {ANY, *write_dependencies(notice)})


def _local_drops(key: Any, value: Any, notice: Notice | None, cache: QueryCache) -> bool:
    alone = QueryCache(ttl_s=60, id_key=b"k")
    alone._id_key = cache._id_key
    assert alone.put(key, value)
    return (alone.drop("User") if notice is None else alone.apply(notice)) == 1


IDS = [ObjectId() for _ in range(4)]
ENTRIES = [
    ("find_one", {"_id": IDS[0]}, {}, {"_id": IDS[0], "status": "active"}),
    ("find", {"_id": {"$in": IDS[:2]}}, {}, [{"_id": IDS[0]}, {"_id": IDS[1]}]),
    ("find", {"status": "active"}, {}, [{"_id": IDS[0]}, {"_id": IDS[1]}]),
    ("find", {"status": "active"}, {"sort": {"lastActive": -1}, "limit": 1}, [{"_id": IDS[1]}]),
    ("find_one", {"email": "a@b.co"}, {}, None),
    ("find", {"$or": [{"status": "inactive"}, {"name": "x"}]}, {}, []),
    ("count", {"status": "active"}, {}, 2),
    ("count", {"_id": IDS[2]}, {}, 1),
    ("find", {"status": "active"}, {"skip": 1}, [{"_id": IDS[1]}]),
    ("find", {"$expr": {"$eq": ["$a", 1]}}, {}, []),
    ("find", {"status": "active"}, {"projection": {"_id": 0, "status": 1}}, [{"status": "active"}]),
    ("find", {"status": {"$mod": [2, 0]}}, {}, []),
]
FIELDS = ["status", "name", "email", "lastActive", "zzz"]


def _notices(cache: QueryCache, rng: random.Random) -> list[Notice | None]:
    out: list[Notice | None] = [None, Notice("User", None)]
    for _ in range(300):
        ids = rng.sample([*IDS, ObjectId()], rng.randint(1, 3))
        action = rng.choice(["create", "update", "delete"])
        fields = frozenset(rng.sample(FIELDS, rng.randint(0, 2))) | (
            {"_rev", "_op", "updatedAt"} if action == "update" else set())
        out.append(Notice("User", frozenset(cache.digest(i) for i in ids), fields, created=action == "create",
                          deleted=action == "delete"))
    return out


@pytest.mark.parametrize("kind, filt, options, value", ENTRIES, ids=[f"{e[0]}-{i}" for i, e in enumerate(ENTRIES)])
def test_the_shared_store_drops_an_entry_exactly_when_the_local_cache_does_for_a_remote_write(kind, filt, options,
                                                                                              value):
    cache = QueryCache(ttl_s=60, id_key=b"k")
    key = cache_key("User", kind, filt, options)
    assert cache.put(key, value)
    for notice in _notices(cache, random.Random(7)):
        assert _shared_drops(cache, key, notice) == _local_drops(key, value, notice, cache), (notice, filt, options)


def test_the_dependency_lists():
    cache = QueryCache(ttl_s=60, id_key=b"k")
    a = ObjectId()
    digest = cache.digest(a).hex()
    shapes = {}
    for name, kind, filt, options, value in [
        ("by_id", "find_one", {"_id": a}, {}, {"_id": a}),
        ("filter", "find", {"status": "active"}, {"sort": {"lastActive": 1}}, [{"_id": a}]),
        ("count", "count", {"status": "active"}, {}, 3),
        ("skip", "find", {"status": "active"}, {"skip": 2}, [{"_id": a}]),
        ("too_many", "find", {}, {}, [{"_id": ObjectId()} for _ in range(MAX_DEPENDENCY_IDS + 1)]),
    ]:
        key = cache_key("User", kind, filt, options)
        assert cache.put(key, value)
        shapes[name] = cache._entries[key].shape.dependencies()
    assert shapes == {
        "by_id": (WHOLE, f"i:{digest}"),
        "filter": (WHOLE, f"i:{digest}", "f:lastActive", "f:status", "c"),
        "count": (WHOLE, "f:status", "c", "d"),
        "skip": (ANY,),
        "too_many": (ANY,),
    }


def test_what_a_write_sets():
    d1, d2 = b"\x01" * 16, b"\x02" * 16
    assert write_dependencies(Notice("User", frozenset({d2, d1}), frozenset({"name", "_rev"}))) == (
        f"i:{d1.hex()}", f"i:{d2.hex()}", "f:_rev", "f:name")
    assert write_dependencies(Notice("User", frozenset({d1}), frozenset({"name"}), created=True))[-1] == "c"
    assert write_dependencies(Notice("User", frozenset({d1}), frozenset(), deleted=True)) == (f"i:{d1.hex()}", "d")
    assert write_dependencies(None) == write_dependencies(Notice("User", None)) == (WHOLE,)
    many = frozenset(bytes([i]) * 16 for i in range(MAX_DEPENDENCY_IDS + 1))
    assert write_dependencies(Notice("User", many, frozenset({"name"}))) == (WHOLE,)  # bounded: the whole model
