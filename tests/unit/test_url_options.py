"""astro_db's own settings in the URL's query (docs/configuration.md, "Options in the URL"):
read by astro_db, by their declared type, and left out of the URL PyMongo is given, which
does not know them (it warns "Unknown option" and ignores them)."""

from __future__ import annotations

import warnings

import pymongo
import pytest

from astro_db import Database, DatabaseConfig
from astro_db.config import resolve
from astro_db.errors import ConfigError

URL = "mongodb://db.example:27017/astro"


def test_astro_db_options_in_the_url_are_read_by_astro_db():
    cfg = resolve(URL + "?monitoring=false&commandMonitoring=true&slow_query_ms=5&cacheTtlS=0&ensureIndexes=no")
    assert (cfg.monitoring, cfg.command_monitoring, cfg.slow_query_ms, cfg.cache_ttl_s) == (False, True, 5.0, 0.0)
    assert cfg.ensure_indexes is False
    assert {"monitoring", "command_monitoring", "slow_query_ms", "cache_ttl_s", "ensure_indexes"} <= cfg.url_settings()


def test_pymongo_is_given_the_url_without_them_and_warns_of_nothing():
    cfg = resolve(URL + "?monitoring=false&maxPoolSize=7&commandMonitoring=true&appName=svc")
    assert cfg.client_url == URL + "?maxPoolSize=7&appName=svc"
    assert cfg.masked_url == cfg.client_url  # what the connection's log lines show
    assert cfg.url == URL + "?monitoring=false&maxPoolSize=7&commandMonitoring=true&appName=svc"  # as given
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyMongo's "Unknown option" is a UserWarning
        client = pymongo.MongoClient(cfg.client_url, connect=False, **cfg.client_options())
    try:
        assert client.options.pool_options.max_pool_size == 7
    finally:
        client.close()


@pytest.mark.parametrize(("url", "client_url"), [
    (URL + "?monitoring=false", URL),
    ("mongodb://h/?commandMonitoring=true&dbName=astro", "mongodb://h/"),
    (URL + "?w=1;tracing=0;retryWrites=false", URL + "?w=1;retryWrites=false"),
    (URL + "?COMMAND_MONITORING=1&tls=false", URL + "?tls=false"),
    (URL + "?maxPoolSize=7", URL + "?maxPoolSize=7"),
    ("mongodb://u:p%40ss@h1,h2/astro?replicaSet=rs&cache_models=User,Note", "mongodb://u:p%40ss@h1,h2/astro?replicaSet=rs"),
])
def test_only_astro_db_options_are_taken_out(url, client_url):
    assert resolve(url).client_url == client_url


def test_pymongos_options_stay_pymongos_even_where_a_setting_has_the_same_name(monkeypatch):
    """``?journal=true`` is PyMongo's write concern ``j``: not astro_db's ``journal`` setting,
    and it does not outrank ASTRO_DB_JOURNAL."""
    monkeypatch.setenv("ASTRO_DB_JOURNAL", "0")
    cfg = resolve(URL + "?journal=true")
    assert cfg.journal is False
    assert "journal" not in cfg.url_settings()
    assert cfg.client_url == URL + "?journal=true"


def test_a_keyword_outranks_the_urls_option_and_the_url_outranks_the_environment(monkeypatch):
    monkeypatch.setenv("ASTRO_DB_SLOW_QUERY_MS", "9")
    monkeypatch.setenv("ASTRO_DB_MONITORING", "1")
    cfg = resolve(URL + "?slowQueryMs=5&monitoring=false", {"slow_query_ms": 100})
    assert (cfg.slow_query_ms, cfg.monitoring) == (100, False)
    assert DatabaseConfig(url=URL + "?monitoring=false", monitoring=True).monitoring is True


def test_a_bad_value_is_a_config_error_naming_the_setting():
    with pytest.raises(ConfigError, match=r"monitoring='maybe' in the URL is not a valid bool") as caught:
        resolve(URL + "?monitoring=maybe")
    assert caught.value.key == "monitoring"


@pytest.mark.parametrize("option", ["encryptionKey", "cache_secret", "tokenSecret", "password"])
def test_a_secret_setting_in_the_url_is_refused_and_not_shown(option):
    with pytest.raises(ConfigError, match="must not be given in the URL") as caught:
        resolve(URL + f"?{option}=s3cr3tvalue")
    assert "s3cr3tvalue" not in str(caught.value)


def test_the_embedded_backend_reads_them_too():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db = Database("mongomock://localhost/astro?cacheTtlS=0&slowQueryMs=7&monitoring=false")
        with db:
            cache = db.metrics()["cache"]
    assert cache["ttl_s"] == 0.0
    assert (db.config.slow_query_ms, db.config.monitoring) == (7.0, False)


@pytest.mark.parametrize("option", ["encryptionKey", "ENCRYPTION_KEYS", "cacheSecret", "token_secret", "kmsProviders"])
def test_a_secret_settings_value_is_masked_wherever_a_url_is_shown(option):
    from astro_db.urls import mask_url, mask_urls_in_text

    url = URL + f"?appName=svc&{option}=s3cr3tvalue"
    assert mask_url(url) == URL + f"?appName=svc&{option}=***"
    assert "s3cr3tvalue" not in mask_urls_in_text(f"failed: {url} (retrying)")


def test_pymongos_pool_size_and_timeouts_in_the_url_are_the_settings_too():
    """PyMongo reads ``?maxPoolSize=7`` (the URL is handed to it as it is), and astro_db reads
    the same value: health's pool saturation is judged against the pool PyMongo really has,
    and the run step's server selection bound is the URL's."""
    cfg = resolve(URL + "?maxPoolSize=7&serverSelectionTimeoutMS=500&connectTimeoutMS=2000")
    assert (cfg.max_pool_size, cfg.server_selection_timeout_ms, cfg.connect_timeout_ms) == (7, 500, 2000)
    assert cfg.min_pool_size == 0  # what PyMongo keeps when the URL sets the pool's size alone
    assert {"max_pool_size", "server_selection_timeout_ms", "connect_timeout_ms"} <= cfg.url_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = pymongo.MongoClient(cfg.client_url, connect=False, **cfg.client_options())
    try:
        pool = client.options.pool_options
        assert (pool.max_pool_size, pool.min_pool_size, pool.connect_timeout) == (7, 0, 2.0)
        assert client.options.server_selection_timeout == 0.5
    finally:
        client.close()
    db = Database(URL + "?maxPoolSize=7&serverSelectionTimeoutMS=500")
    assert db.executor.runtime.monitor.max_pool_size == 7
    assert db.executor.runtime.selection_s == 0.5


def test_a_keyword_outranks_pymongos_option_in_the_url_for_both():
    cfg = resolve(URL + "?maxPoolSize=7", {"max_pool_size": 20})
    assert cfg.max_pool_size == 20 and cfg.client_options()["maxPoolSize"] == 20


#: (URL option, a bad value, the setting): what PyMongo would only warn of and replace by its own
#: default, or read another way than the setting could hold
BAD_POOL_OPTIONS = [
    ("maxIdleTimeMS", "-1", "max_idle_time_ms"), ("maxIdleTimeMS", "0", "max_idle_time_ms"),
    ("maxPoolSize", "abc", "max_pool_size"), ("maxPoolSize", "0", "max_pool_size"),  # 0: no limit to PyMongo
    ("minPoolSize", "-2", "min_pool_size"), ("minPoolSize", "2.5", "min_pool_size"),
    ("waitQueueTimeoutMS", "1.5", "wait_queue_timeout_ms"),  # 1.5 ms to PyMongo, 30 s to the setting before
    ("waitQueueTimeoutMS", "0", "wait_queue_timeout_ms"),  # no bound at all to PyMongo (its warning, its default)
    ("serverSelectionTimeoutMS", "0", "server_selection_timeout_ms"),  # "fail at once" to PyMongo
    ("serverSelectionTimeoutMS", "-3", "server_selection_timeout_ms"),
    ("waitQueueTimeoutMS", "inf", "wait_queue_timeout_ms"), ("maxIdleTimeMS", "nan", "max_idle_time_ms"),
    ("maxPoolSize", "", "max_pool_size"), ("maxPoolSize", "1e1", "max_pool_size"),  # PyMongo: "must be an integer"
]


@pytest.mark.parametrize(("option", "raw", "setting"), BAD_POOL_OPTIONS)
def test_a_pool_option_pymongo_would_read_another_way_is_a_config_error_naming_it_never_the_password(option, raw, setting):
    """Before, such a value left the setting as it was while PyMongo read it its own way (or
    warned and took its default): ``waitQueueTimeoutMS=0`` was an unbounded wait for a
    connection to PyMongo and 30 s to health and the docs."""
    with pytest.raises(ConfigError) as caught:
        resolve(SECRET_URL + f"?appName=svc&{option}={raw}")
    message = str(caught.value)
    assert caught.value.key == setting
    assert message.startswith(f"{option}={raw!r} in the URL must be a whole number"), message
    assert "s3cr3tpw" not in message and "ann" not in message


@pytest.mark.parametrize(("query", "expected"), [
    ("maxIdleTimeMS=5000", {"max_idle_time_ms": 5000}), ("minPoolSize=0", {"min_pool_size": 0}),
    ("waitQueueTimeoutMS=250", {"wait_queue_timeout_ms": 250}), ("maxPoolSize=10", {"max_pool_size": 10}),
    ("waitQueueTimeoutMS=2.5e3", {"wait_queue_timeout_ms": 2500}),
    ("serverSelectionTimeoutMS=1", {"server_selection_timeout_ms": 1}),
])
def test_a_good_pool_option_in_the_url_is_the_same_value_for_the_setting_and_for_pymongo(query, expected):
    cfg = resolve(URL + "?" + query)
    for name, value in expected.items():
        assert getattr(cfg, name) == value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyMongo warns of a value it replaces by its default
        client = pymongo.MongoClient(cfg.client_url, connect=False, **cfg.client_options())
    try:
        pool, selection = client.options.pool_options, client.options.server_selection_timeout
        seen = {"max_idle_time_ms": pool.max_idle_time_seconds and pool.max_idle_time_seconds * 1000,
                "min_pool_size": pool.min_pool_size, "max_pool_size": pool.max_pool_size,
                "wait_queue_timeout_ms": pool.wait_queue_timeout and pool.wait_queue_timeout * 1000,
                "server_selection_timeout_ms": selection * 1000}
        for name, value in expected.items():
            assert seen[name] == value, name
    finally:
        client.close()


# --- socketTimeoutMS / connectTimeoutMS: 0 is "no timeout", as PyMongo reads it ---------------------

#: (URL option, setting, PyMongo's pool option)
NONE_WHEN_ZERO = [("socketTimeoutMS", "socket_timeout_ms", "socket_timeout"),
                  ("connectTimeoutMS", "connect_timeout_ms", "connect_timeout")]


def _pymongo_pool(cfg: DatabaseConfig):
    """The pool options PyMongo builds from what astro_db hands it (its URL and keywords)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyMongo's "must be an integer or float" would be a warning
        client = pymongo.MongoClient(cfg.client_url, connect=False, **cfg.client_options())
    try:
        return client.options.pool_options
    finally:
        client.close()


@pytest.mark.parametrize(("option", "setting", "pool_option"), NONE_WHEN_ZERO)
def test_a_zero_timeout_in_the_url_is_none_for_the_setting_as_for_pymongo(option, setting, pool_option):
    cfg = resolve(URL + f"?{option}=0")
    assert getattr(cfg, setting) is None  # no longer the default while PyMongo has none
    assert getattr(_pymongo_pool(cfg), pool_option) is None
    assert setting in cfg.url_settings() and not cfg.is_explicit(setting)  # still the URL's
    assert f"{setting}=None" in repr(cfg) and cfg.settings()[setting] is None
    assert getattr(_pymongo_pool(resolve(URL + f"?{option}=2500")), pool_option) == 2.5  # a number: the same for both
    assert getattr(resolve(URL + f"?{option}=2500"), setting) == 2500


@pytest.mark.parametrize(("option", "setting", "pool_option"), NONE_WHEN_ZERO)
@pytest.mark.parametrize("value", [0, None])
def test_a_zero_or_none_timeout_keyword_is_none_and_pymongo_is_handed_none(option, setting, pool_option, value):
    cfg = resolve(URL, {setting: value})
    assert getattr(cfg, setting) is None
    assert cfg.client_options()[option] is None
    assert getattr(_pymongo_pool(cfg), pool_option) is None
    assert DatabaseConfig.from_dict({"url": URL, "options": {option: 0}}).settings()[setting] is None  # the seed's dict


@pytest.mark.parametrize(("option", "setting", "pool_option"), NONE_WHEN_ZERO)
def test_a_zero_timeout_in_the_environment_is_none(option, setting, pool_option):
    cfg = resolve(URL, None, {f"ASTRO_DB_{setting.upper()}": "0"})
    assert getattr(cfg, setting) is None
    assert getattr(_pymongo_pool(cfg), pool_option) is None


def test_a_keyword_outranks_the_urls_zero_timeout_for_the_setting_and_pymongo():
    cfg = resolve(URL + "?socketTimeoutMS=0&connectTimeoutMS=0", {"socket_timeout_ms": 5000, "connect_timeout_ms": 0})
    assert (cfg.socket_timeout_ms, cfg.connect_timeout_ms) == (5000, None)
    pool = _pymongo_pool(cfg)
    assert (pool.socket_timeout, pool.connect_timeout) == (5.0, None)


SECRET_URL = "mongodb://ann:s3cr3tpw@db.example:27017/astro"


@pytest.mark.parametrize(("option", "setting", "pool_option"), NONE_WHEN_ZERO)
@pytest.mark.parametrize("raw", ["-5", "abc", "1e12", "1000000000", "1.5", ""])
def test_a_bad_timeout_in_the_url_is_a_config_error_naming_the_option_never_the_password(option, setting, pool_option, raw):
    """What PyMongo would only warn of, and replace by its own default (no socket timeout, a
    20 s connect timeout) while the setting showed another, is refused."""
    with pytest.raises(ConfigError) as caught:
        resolve(SECRET_URL + f"?appName=svc&{option}={raw}")
    message = str(caught.value)
    assert caught.value.key == setting
    assert message.startswith(f"{option}={raw!r} in the URL must be a whole number of milliseconds from 1 to "
                              "999999999, or 0 for no "), message
    assert "s3cr3tpw" not in message and "ann" not in message


@pytest.mark.parametrize("setting", ["socket_timeout_ms", "connect_timeout_ms"])
@pytest.mark.parametrize("value", [-1, 1_000_000_000, 10**12])
def test_a_bad_timeout_keyword_or_environment_value_is_a_config_error_naming_the_setting(setting, value):
    with pytest.raises(ConfigError, match=rf"'{setting}' must be 1 to 999999999 milliseconds, or 0 / None for no ") as kw:
        resolve(SECRET_URL, {setting: value})
    assert kw.value.key == setting and "s3cr3tpw" not in str(kw.value)
    with pytest.raises(ConfigError) as env:
        resolve(SECRET_URL, None, {f"ASTRO_DB_{setting.upper()}": str(value)})
    assert env.value.key == setting
    with pytest.raises(ConfigError, match=rf"ASTRO_DB_{setting.upper()}='soon' is not a valid int") as word:
        resolve(SECRET_URL, None, {f"ASTRO_DB_{setting.upper()}": "soon"})
    assert word.value.key == setting


@pytest.mark.parametrize(("query", "setting"), [("maxPoolSize=20000", "max_pool_size"),
                                                 ("maxPoolSize=5&minPoolSize=10", "min_pool_size")])
def test_a_pool_size_in_the_url_is_held_to_the_settings_rules(query, setting):
    """A URL's pool size is the setting's too, so the setting's rules hold for it as for a keyword."""
    with pytest.raises(ConfigError) as caught:
        resolve(URL + "?" + query)
    assert caught.value.key == setting
