"""The one precedence rule (docs/configuration.md, "Precedence"): keywords > the URL or dict
given > the URL's own query options > the environment (ASTRO_DB_*, MONGODB_URL) > defaults,
the same whether Database() is given a URL, a dict or nothing; a DatabaseConfig object is
finished (only keywords apply to it)."""

from __future__ import annotations

import pytest

from astro_db import Database, DatabaseConfig
from astro_db.config import resolve
from astro_db.errors import ConfigError

URL = "mongodb://db.example:27017/astro"
ENV_URL = "mongodb://env.example:27017/fromenv"

# the three ways of giving Database() a URL besides a finished DatabaseConfig
GIVEN = {
    "url": lambda: URL,
    "dict": lambda: {"url": URL, "options": {"appName": "svc"}},
    "nothing": lambda: None,  # MONGODB_URL supplies the URL
}


@pytest.fixture
def env_url(monkeypatch):
    monkeypatch.setenv("MONGODB_URL", ENV_URL)


@pytest.mark.parametrize("given", GIVEN)
def test_the_environment_applies_over_the_defaults_with_or_without_a_url(given, env_url, monkeypatch):
    monkeypatch.setenv("ASTRO_DB_CACHE_TTL_S", "5")
    monkeypatch.setenv("ASTRO_DB_RETRY_ATTEMPTS", "7")
    cfg = resolve(GIVEN[given]())
    assert (cfg.cache_ttl_s, cfg.retry_attempts) == (5.0, 7)
    assert cfg.max_pool_size == 100  # no variable: the default


@pytest.mark.parametrize("given", GIVEN)
def test_a_keyword_outranks_the_environment(given, env_url, monkeypatch):
    monkeypatch.setenv("ASTRO_DB_CACHE_TTL_S", "5")
    assert resolve(GIVEN[given](), {"cache_ttl_s": 9}).cache_ttl_s == 9
    assert resolve(GIVEN[given](), {"cacheTtlS": 9}).cache_ttl_s == 9


def test_a_dict_key_outranks_the_environment_and_a_keyword_outranks_the_dict(monkeypatch):
    monkeypatch.setenv("ASTRO_DB_MAX_POOL_SIZE", "40")
    seed = {"url": URL, "options": {"maxPoolSize": 50}}
    assert resolve(seed).max_pool_size == 50
    assert resolve(seed, {"max_pool_size": 60}).max_pool_size == 60
    assert resolve({"url": URL}).max_pool_size == 40  # the dict does not say: the environment does


def test_a_given_url_outranks_mongodb_url_and_a_dict_without_one_takes_it(env_url):
    assert resolve(URL).url == URL
    assert resolve({"url": URL}).url == URL
    assert resolve({"options": {"maxPoolSize": 50}}).url == ENV_URL
    assert resolve(None).url == ENV_URL
    assert resolve(None, {"url": URL}).url == URL


def test_without_any_url_the_embedded_backend_is_the_default():
    cfg = resolve(None)
    assert cfg.url is None and cfg.is_embedded


@pytest.mark.parametrize("url_source", ["given", "MONGODB_URL"])
def test_the_urls_own_options_outrank_the_environment(url_source, monkeypatch):
    url = URL + "?maxPoolSize=7&timeoutMS=500"
    monkeypatch.setenv("ASTRO_DB_MAX_POOL_SIZE", "40")
    monkeypatch.setenv("ASTRO_DB_OPERATION_TIMEOUT_MS", "9000")
    monkeypatch.setenv("ASTRO_DB_SOCKET_TIMEOUT_MS", "4000")  # the URL does not say: the environment does
    if url_source == "MONGODB_URL":
        monkeypatch.setenv("MONGODB_URL", url)
        cfg = resolve(None)
    else:
        cfg = resolve(url)
    assert cfg.operation_timeout_ms == 500
    opts = cfg.client_options()
    assert "maxPoolSize" not in opts  # PyMongo takes the URL's 7
    assert opts["socketTimeoutMS"] == 4000


def test_a_keyword_outranks_the_urls_own_option(monkeypatch):
    monkeypatch.setenv("ASTRO_DB_MAX_POOL_SIZE", "40")
    cfg = resolve(URL + "?maxPoolSize=7&timeoutMS=500", {"max_pool_size": 20, "operation_timeout_ms": 800})
    assert cfg.client_options()["maxPoolSize"] == 20 and cfg.operation_timeout_ms == 800


def test_a_finished_database_config_takes_nothing_from_the_environment(env_url, monkeypatch):
    monkeypatch.setenv("ASTRO_DB_CACHE_TTL_S", "5")
    monkeypatch.setenv("ASTRO_DB_CACHE_BUS", "redis://localhost:6379/0")
    given = DatabaseConfig(url=URL)
    assert resolve(given) is given
    assert (resolve(given).cache_ttl_s, resolve(given).cache_bus) == (60.0, "local")
    assert resolve(given, {"cache_ttl_s": 9}).cache_ttl_s == 9  # keywords still apply
    assert resolve(DatabaseConfig()).url is None  # not even MONGODB_URL
    # building or copying a config never reads the environment
    assert DatabaseConfig().cache_ttl_s == 60.0 and DatabaseConfig().url is None
    assert DatabaseConfig.from_dict({"url": URL}).cache_bus == "local"
    assert given.replace(max_pool_size=50).cache_ttl_s == 60.0
    # built from the environment on purpose, it has it
    assert DatabaseConfig.from_env(url=URL).cache_bus == "redis://localhost:6379/0"


def test_database_with_a_url_takes_astro_db_cache_bus(monkeypatch):
    """Issue 22: ``Database(url)`` silently ignored ASTRO_DB_CACHE_BUS (and every ASTRO_DB_*)."""
    monkeypatch.setenv("ASTRO_DB_CACHE_BUS", "changestream")
    monkeypatch.setenv("ASTRO_DB_CHECK_REFERENCES", "1")
    db = Database("mongomock://localhost/precedence")
    assert db.config.cache_bus == "changestream" and db.config.check_references is True
    assert type(db.executor.runtime.cache.bus).__name__ == "ChangeStreamBus"
    seeded = Database({"url": "mongomock://localhost/precedence", "options": {"cacheBus": "local"}})
    assert seeded.config.cache_bus == "local"  # the dict says: it outranks the environment


def test_from_env_and_database_apply_the_same_rule(env_url, monkeypatch):
    monkeypatch.setenv("ASTRO_DB_HEALTH_WINDOW_S", "30")
    monkeypatch.setenv("ASTRO_DB_CACHE_MODELS", "User, BirthChart")
    assert DatabaseConfig.from_env(max_pool_size=50) == resolve(None, {"max_pool_size": 50}) == \
        Database(max_pool_size=50).config
    assert Database().config.cache_models == ("User", "BirthChart")


def test_a_bad_variable_is_a_config_error_naming_it_with_a_url_too(monkeypatch):
    monkeypatch.setenv("ASTRO_DB_MAX_POOL_SIZE", "lots")
    with pytest.raises(ConfigError, match="ASTRO_DB_MAX_POOL_SIZE") as caught:
        Database(URL)
    assert caught.value.key == "max_pool_size"
    monkeypatch.setenv("ASTRO_DB_MAX_POOL_SIZE", "")  # empty: not set
    assert Database(URL).config.max_pool_size == 100


def test_a_secret_from_the_environment_is_never_shown(monkeypatch):
    monkeypatch.setenv("ASTRO_DB_CACHE_SECRET", "s" * 40)
    monkeypatch.setenv("ASTRO_DB_PASSWORD", "hunter2-password")
    cfg = resolve(URL)
    assert cfg.cache_secret == "s" * 40 and cfg.password == "hunter2-password"
    assert "s" * 40 not in repr(cfg) and "hunter2" not in repr(cfg)


def test_a_keyword_at_its_default_still_outranks_the_urls_option():
    """Chosen is chosen: ``max_pool_size=100`` (the default) beside ``?maxPoolSize=7`` is 100."""
    cfg = resolve(URL + "?maxPoolSize=7&timeoutMS=500&minPoolSize=2", {"max_pool_size": 100, "operation_timeout_ms": 30_000})
    assert cfg.client_options()["maxPoolSize"] == 100 and cfg.operation_timeout_ms == 30_000
    assert "minPoolSize" not in cfg.client_options()  # not chosen: the URL's 2
    assert cfg.replace(app_name="svc").client_options()["maxPoolSize"] == 100  # a copy keeps what was chosen
    untouched = resolve(URL + "?maxPoolSize=7&timeoutMS=500")
    assert "maxPoolSize" not in untouched.client_options() and untouched.operation_timeout_ms == 500
