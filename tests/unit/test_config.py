"""DatabaseConfig: seed defaults, the seed's dict shape, env, range checks, masked secrets."""

from __future__ import annotations

import pytest

from astro_db import DatabaseConfig
from astro_db.config import mask_url
from astro_db.errors import ConfigError

SECRET_URL = "mongodb://app:s3cr3t-pw@db.example.com:27017/astro?authSource=admin"


def test_defaults_are_the_seeds():
    cfg = DatabaseConfig()
    assert (cfg.min_pool_size, cfg.max_pool_size) == (10, 100)
    assert cfg.server_selection_timeout_ms == 30_000
    assert cfg.socket_timeout_ms == 30_000
    assert cfg.connect_attempts == 3
    assert cfg.write_concern == "majority"
    assert cfg.is_embedded and cfg.database_name == "astro"


def test_from_dict_takes_the_seed_shape_and_warns_about_legacy_options():
    seed = {
        "url": "mongodb://localhost:27017/astro",
        "options": {"useNewUrlParser": True, "useUnifiedTopology": True, "maxPoolSize": 50,
                    "minPoolSize": 5, "serverSelectionTimeoutMS": 5000, "socketTimeoutMS": 7000},
        "models": {"User": object()},
    }
    with pytest.warns(DeprecationWarning, match="useNewUrlParser"):
        cfg = DatabaseConfig.from_dict(seed)
    assert (cfg.max_pool_size, cfg.min_pool_size) == (50, 5)
    assert cfg.server_selection_timeout_ms == 5000 and cfg.socket_timeout_ms == 7000
    assert cfg.database_name == "astro"


def test_from_dict_takes_snake_case_and_pass_through_options():
    cfg = DatabaseConfig.from_dict({"url": "mongodb://h/astro", "max_pool_size": 20, "tlsCAFile": "/ca.pem",
                                    "authSource": "admin", "replicaSet": "rs0", "readPreference": "secondaryPreferred",
                                    "appName": "svc"})
    opts = cfg.client_options()
    assert opts["maxPoolSize"] == 20 and opts["tlsCAFile"] == "/ca.pem"
    assert opts["authSource"] == "admin" and opts["replicaSet"] == "rs0"
    assert opts["readPreference"] == "secondaryPreferred" and opts["appname"] == "svc"
    assert opts["w"] == "majority"


def test_from_env_reads_mongodb_url_and_prefixed_variables():
    env = {"MONGODB_URL": "mongodb://h:27017/astro", "ASTRO_DB_MAX_POOL_SIZE": "40",
           "ASTRO_DB_TLS": "true", "ASTRO_DB_SLOW_QUERY_MS": "12.5"}
    cfg = DatabaseConfig.from_env(env)
    assert cfg.url == "mongodb://h:27017/astro"
    assert cfg.max_pool_size == 40 and cfg.tls is True and cfg.slow_query_ms == 12.5


def test_from_env_rejects_garbage_naming_the_variable():
    with pytest.raises(ConfigError, match="ASTRO_DB_MAX_POOL_SIZE") as info:
        DatabaseConfig.from_env({"ASTRO_DB_MAX_POOL_SIZE": "lots"})
    assert info.value.key == "max_pool_size"


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"max_pool_size": 0}, "max_pool_size"),
        ({"max_pool_size": -5}, "max_pool_size"),
        ({"min_pool_size": 200}, "min_pool_size"),
        ({"min_pool_size": -1}, "min_pool_size"),
        ({"max_pool_size": "50"}, "max_pool_size"),
        ({"max_pool_size": True}, "max_pool_size"),
        ({"server_selection_timeout_ms": 0}, "server_selection_timeout_ms"),
        ({"socket_timeout_ms": -1}, "socket_timeout_ms"),
        ({"connect_attempts": 0}, "connect_attempts"),
        ({"read_preference": "fastest"}, "read_preference"),
        ({"tls": "yes"}, "tls"),
        ({"url": "http://localhost/astro"}, "url"),
        ({"url": "postgres://u:pw@h/astro"}, "url"),
        ({"url": "mongodb://localhost:27017"}, "database"),
        ({"url": "mongodb:///astro"}, "url"),
        ({"database": "bad/name"}, "database"),
        ({"backoff_max_s": 0.01}, "backoff_max_s"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as info:
        DatabaseConfig(**kwargs)
    assert info.value.key == key
    assert key in str(info.value) or key == "url"


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match="poolSizeMax"):
        DatabaseConfig.from_dict({"url": "mongodb://h/astro", "options": {"poolSizeMax": 3}})


def test_a_url_without_database_is_fine_when_database_is_set():
    cfg = DatabaseConfig(url="mongodb://localhost:27017", database="astro")
    assert cfg.database_name == "astro"


def test_password_never_shown():
    cfg = DatabaseConfig(url=SECRET_URL, password="other-secret", encryption_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    for text in (repr(cfg), str(cfg), cfg.masked_url):
        assert "s3cr3t-pw" not in text and "other-secret" not in text and "AAECAwQFBgcICQoL" not in text
    assert "app:***@db.example.com" in cfg.masked_url


def test_config_error_messages_mask_the_password():
    with pytest.raises(ConfigError) as info:
        DatabaseConfig(url="mongodb://app:s3cr3t-pw@db.example.com:27017")
    assert "s3cr3t-pw" not in str(info.value)


def test_mask_url_leaves_urls_without_password_alone():
    assert mask_url("mongodb://h:1/astro") == "mongodb://h:1/astro"
    assert mask_url("mongodb+srv://u:p@c.example.net/a") == "mongodb+srv://u:***@c.example.net/a"


def test_replace_validates():
    cfg = DatabaseConfig()
    assert cfg.replace(maxPoolSize=70).max_pool_size == 70
    with pytest.raises(ConfigError):
        cfg.replace(max_pool_size=0)


def test_options_in_the_url_win_over_defaults_but_not_over_explicit_settings():
    cfg = DatabaseConfig(url="mongodb://h/astro?serverSelectionTimeoutMS=500&maxPoolSize=7&appName=node")
    opts = cfg.client_options()
    assert "serverSelectionTimeoutMS" not in opts and "maxPoolSize" not in opts and "appname" not in opts
    explicit = DatabaseConfig(url="mongodb://h/astro?maxPoolSize=7", max_pool_size=20).client_options()
    assert explicit["maxPoolSize"] == 20


def test_url_options_reach_the_client():
    from astro_db import Database

    db = Database("mongodb://127.0.0.1:1/astro?serverSelectionTimeoutMS=321&maxPoolSize=7", connect_attempts=1)
    db.executor.runtime.connection._client = db.executor.runtime.connection._build_client()
    try:
        client = db.executor.runtime.connection.client
        assert client.options.server_selection_timeout == 0.321 and client.options.pool_options.max_pool_size == 7
    finally:
        db.disconnect()


@pytest.mark.parametrize("url, says", [
    ("mongodb://localhost:99999/astro", "port '99999' of host 'localhost'"),
    ("mongodb://localhost:0/astro", "port '0'"),
    ("mongodb://localhost:-1/astro", "port '-1'"),
    ("mongodb://localhost:abc/astro", "port 'abc'"),
    ("mongodb://localhost:/astro", "port ''"),
    ("mongodb://h1:27017,h2:65536/astro?replicaSet=rs0", "port '65536' of host 'h2'"),
    ("mongodb://[::1]:70000/astro", "port '70000' of host '[::1]'"),
    ("mongodb://ann:s3cret@localhost:99999/astro", "port '99999'"),
    ("mongodb+srv://cluster.example.com:27017/astro", "takes no port"),
])
def test_a_bad_port_is_a_config_error_naming_it_before_any_connection(url, says):
    from astro_db import Database

    with pytest.raises(ConfigError, match=r"is not a number from 1 to 65535|takes no port") as caught:
        Database(url)
    assert says in str(caught.value) and caught.value.key == "url"
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("url", ["mongodb://localhost:27017/astro", "mongodb://[::1]:27017,db2/astro",
                                 "mongodb://%2Ftmp%2Fmongodb-27017.sock/astro", "mongodb+srv://cluster.example.com/astro"])
def test_good_ports_and_hosts_pass(url):
    assert DatabaseConfig(url=url).url == url


@pytest.mark.parametrize("key", ["cache_bus", "cache_store"])
def test_a_bad_redis_port_is_a_config_error(key):
    with pytest.raises(ConfigError, match="port that is not a number from 1 to 65535") as caught:
        DatabaseConfig(url="mongodb://localhost/astro", **{"cache_bus": "redis://localhost:6379/0", key: "redis://localhost:99999/0"})
    assert caught.value.key == key
