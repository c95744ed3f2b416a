"""The query cache drops a written model's entries through a per-model index, not a scan."""

from __future__ import annotations

import random
from typing import Any

from spies import Clock

from astro_db.cache import QueryCache, cache_key

MODELS = ("User", "BirthChart", "PlanetaryInsight")


def key(model: str, n: int) -> Any:
    return cache_key(model, "find", {"n": n})


def grouped(cache: QueryCache) -> dict[str, set[Any]]:
    out: dict[str, set[Any]] = {}
    for k in cache._entries:
        out.setdefault(k[0], set()).add(k)
    return out


def test_a_write_drops_its_models_entries_and_no_other() -> None:
    cache = QueryCache(ttl_s=60, max_entries=100, clock=Clock())
    for model in MODELS:
        for n in range(10):
            assert cache.put(key(model, n), [{"n": n}])
    assert cache.invalidate("User") == 10
    assert all(cache.get_stale(key("User", n)) is None for n in range(10))
    assert all(cache.get_stale(key("BirthChart", n)) == ([{"n": n}], 0.0) for n in range(10))
    assert cache.invalidate("User") == 0  # nothing left to drop; the generation still advances
    assert cache._by_model == grouped(cache)


def test_the_index_follows_every_way_an_entry_leaves() -> None:
    clock = Clock()
    cache = QueryCache(ttl_s=5, max_entries=20, max_documents=60, clock=clock)
    rng = random.Random(16)
    for _ in range(2_000):
        action, model, n = rng.random(), rng.choice(MODELS), rng.randrange(40)
        if action < 0.55:
            cache.put(key(model, n), [{"n": i} for i in range(rng.randrange(1, 6))])  # evictions by count and size
        elif action < 0.75:
            cache.get_or_fetch(key(model, n), lambda: [{"n": 0}])  # expired entries are removed, misses stored
        elif action < 0.85:
            clock.now += rng.choice((0.5, 3, 7))
        elif action < 0.97:
            cache.invalidate(model)
        else:
            cache.clear()
        assert cache._by_model == grouped(cache)
    assert sum(len(keys) for keys in cache._by_model.values()) == len(cache)
