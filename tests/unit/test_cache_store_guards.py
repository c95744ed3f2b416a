"""The shared store's guards that need no Redis: the MAC key is required, the Redis namespace is
the server's identity, and the actor's scope is checked on every answer, cached ones included."""

from __future__ import annotations

import base64
import logging

import pytest

from astro_db import Database, DatabaseConfig
from astro_db.cache.bus import server_identity
from astro_db.cache.store import redis_namespace
from astro_db.errors import ConfigError


def test_cache_store_needs_a_mac_key():
    with pytest.raises(ConfigError, match="cache_secret") as info:
        DatabaseConfig(cache_store="redis://cache:6379/0", cache_bus="redis://cache:6379/0")
    assert info.value.key == "cache_secret"
    with pytest.raises(ConfigError, match="at least 32 characters") as info:
        DatabaseConfig(cache_store="redis://cache:6379/0", cache_bus="redis://cache:6379/0", cache_secret="short-secret")
    assert "short-secret" not in str(info.value)
    key = base64.b64encode(b"k" * 32).decode()  # the field-encryption key serves when no cache_secret is set
    DatabaseConfig(cache_store="redis://cache:6379/0", cache_bus="redis://cache:6379/0", encryption_key=key)
    env = {"ASTRO_DB_CACHE_SECRET": "from-the-environment-" + "e" * 20, "ASTRO_DB_CACHE_STORE": "redis://c:6379/0",
           "ASTRO_DB_CACHE_BUS": "redis://c:6379/0"}
    assert DatabaseConfig.from_env(env).cache_secret == env["ASTRO_DB_CACHE_SECRET"]


@pytest.mark.parametrize("a, b, same", [
    ("mongodb://h1:27017/astro", "mongodb://h2:27017/astro", False),  # two servers, one database name
    ("mongodb://h1:27017/astro", "mongodb://h1:27018/astro", False),
    ("mongodb://h1,h2/astro?replicaSet=rs", "mongodb://h2:27017,h1/astro?replicaSet=rs", True),  # one deployment
    ("mongodb://u:p1@h1/astro", "mongodb://v:p2@h1/astro", True),  # credentials are not identity
    ("mongodb://h1/astro?replicaSet=a", "mongodb://h1/astro?replicaSet=b", False),
    ("mongodb://h1/astro", "mongodb://h1/other", False),
])
def test_the_redis_namespace_is_the_servers_identity_not_the_database_name(a, b, same):
    ca, cb = DatabaseConfig(url=a), DatabaseConfig(url=b)
    na, nb = redis_namespace(ca, server_identity(ca)), redis_namespace(cb, server_identity(cb))
    assert (na == nb) is same
    assert na.startswith(ca.database_name + ":") and "p1" not in na


def _two_owners(db):
    victim = db.create("User", {"email": "victim@example.com", "name": "Victim"})
    mallory = db.create("User", {"email": "mallory@example.com", "name": "Mallory"})
    for owner, place in ((victim, "Victim Street"), (mallory, "Mallory Road")):
        db.create("BirthChart", {"userId": str(owner.id), "birthData": {
            "date": "1990-05-01T10:30:00Z", "timezone": "UTC", "location": {"name": place, "coordinates": [0, 0]}}})
    return victim, mallory


def test_a_cached_answer_outside_the_actors_scope_is_never_served(caplog):
    """Whatever put it there, an answer holding another owner's document is dropped and the
    read goes to the server."""
    db = Database("mongomock://localhost/scope_recheck", ensure_indexes=False, allow_plaintext_sensitive=True).connect()
    try:
        victim, mallory = _two_owners(db)
        rt = db.executor.runtime
        view = db.as_actor(str(mallory.id), ["self"])
        assert [c.birth_data.location.name for c in view.find("BirthChart", {}, cache=True)] == ["Mallory Road"]
        victims = list(rt.coll(db.executor.model("BirthChart")).find({"userId": victim.id}))
        (key,) = [k for k in rt.cache._entries if k[0] == "BirthChart" and k[1] == "find"]
        rt.cache._entries[key].value = victims  # a poisoned entry under Mallory's key
        caplog.set_level(logging.ERROR, logger="astro_db")
        charts = view.find("BirthChart", {}, cache=True)
        assert [c.birth_data.location.name for c in charts] == ["Mallory Road"]
        assert "outside the actor's scope" in caplog.text and "Victim Street" not in caplog.text
        # find_one, lean, passes the same check
        assert view.find_one("User", {"id": mallory.id}, cache=True).name == "Mallory"
        (ukey,) = [k for k in rt.cache._entries if k[0] == "User" and k[1] == "find_one"]
        rt.cache._entries[ukey].value = dict(rt.coll(db.executor.model("User")).find_one({"_id": victim.id}))
        assert view.find_one("User", {"id": mallory.id}, cache=True, lean=True)["name"] == "Mallory"
    finally:
        db.disconnect()


def test_an_unscoped_caller_is_not_checked_and_a_scoped_answer_that_fits_is_served_from_cache():
    db = Database("mongomock://localhost/scope_recheck_ok", ensure_indexes=False, allow_plaintext_sensitive=True).connect()
    try:
        _, mallory = _two_owners(db)
        view = db.as_actor(str(mallory.id), ["self"])
        view.find("BirthChart", {}, cache=True)
        hits = db.executor.runtime.cache.stats()["hits"]
        assert len(view.find("BirthChart", {}, cache=True)) == 1
        assert db.executor.runtime.cache.stats()["hits"] == hits + 1
        assert len(db.find("BirthChart", {}, cache=True)) == 2
    finally:
        db.disconnect()
