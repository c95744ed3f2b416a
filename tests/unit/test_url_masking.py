"""Connection URLs never show their secrets: reprs, log lines, exception texts, CLI output.

What is hidden: the password (parsed as PyMongo parses it: the userinfo ends at the last ``@``),
for MONGODB-AWS the whole userinfo, and the value of every secret-bearing option
(``authMechanismProperties`` with its ``AWS_SESSION_TOKEN``, ``tlsCertificateKeyFilePassword``
...), in any case and percent-encoding. What stays visible: the hosts and the database.
"""

from __future__ import annotations

import logging
import sys
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db import Database, DatabaseConfig
from astro_db.cli import cli
from astro_db.errors import ConfigError, scrub
from astro_db.security.masking import MaskingFilter, mask_text, mask_url
from astro_db.urls import unescaped_userinfo, userinfo_of

TOKEN = "IQoJb3JpZ2luX2VjEJr//Session+Token=="


@pytest.mark.parametrize("url, expected", [
    ("mongodb://app:S3c/retPw@h/db", "mongodb://app:***@h/db"),
    ("mongodb://app:S3c@ret@h/db", "mongodb://app:***@h/db"),
    ("mongodb://u:a/b?c#d@h1:27017,h2:27018/db?w=1", "mongodb://u:***@h1:27017,h2:27018/db?w=1"),
    ("mongodb://h/db?authMechanismProperties=AWS_SESSION_TOKEN:" + TOKEN + "&w=1",
     "mongodb://h/db?authMechanismProperties=***&w=1"),
    ("mongodb://h/db?AUTHMECHANISMPROPERTIES=SERVICE_NAME:x", "mongodb://h/db?AUTHMECHANISMPROPERTIES=***"),
    ("mongodb://h/db?%61uthMechanismProperties=AWS_SESSION_TOKEN%3Atok", "mongodb://h/db?%61uthMechanismProperties=***"),
    ("mongodb://h/db?tls=true&tlsCertificateKeyFilePassword=pem-pw", "mongodb://h/db?tls=true&tlsCertificateKeyFilePassword=***"),
    ("mongodb://AKIAEXAMPLE:aws-secret@h/db?authMechanism=MONGODB-AWS", "mongodb://***:***@h/db?authMechanism=MONGODB-AWS"),
    ("mongodb://AKIAEXAMPLE@h/db?authMechanism=MONGODB-AWS", "mongodb://***@h/db?authMechanism=MONGODB-AWS"),
    ("mongodb://app@h/db?authSource=admin", "mongodb://app@h/db?authSource=admin"),
    ("mongodb+srv://u:p@c.example.net/a", "mongodb+srv://u:***@c.example.net/a"),
    ("mongomock://localhost/astro", "mongomock://localhost/astro"),
    ("redis://:r3dis/pw@cache:6379/0", "redis://:***@cache:6379/0"),
    ("rediss://default:pw@cache:6380/0?password=qu3ry", "rediss://default:***@cache:6380/0?password=***"),
    ("unix:///run/redis.sock?db=0&password=qu3ry", "unix:///run/redis.sock?db=0&password=***"),
])
def test_mask_url_hides_passwords_and_secret_options(url, expected):
    assert mask_url(url) == expected


def test_an_at_sign_in_an_option_value_hides_more_never_less():
    masked = mask_url("mongodb://u:pw@h/db?appName=me@laptop&tlsCertificateKeyFilePassword=pem")
    assert "pw" not in masked.replace("Password", "") and "pem" not in masked


# --- property: generated URLs --------------------------------------------------------------------

_NAME = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10)
_HOST = st.tuples(_NAME, st.one_of(st.none(), st.integers(1, 65535))).map(lambda h: h[0] + (f":{h[1]}" if h[1] else ""))
# secrets are marked with an upper-case prefix no host, database or option name contains
_SECRET_CHARS = st.one_of(st.sampled_from("/@:?#%&=+!$'()*,;[] "), st.characters(
    blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")))
_PASSWORD = st.text(_SECRET_CHARS, min_size=1, max_size=24).map(lambda s: "QX" + s)
_TOKEN = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/="), min_size=4, max_size=40).map(lambda s: "QZ" + s)
_SECRET_OPTION = st.sampled_from(["authMechanismProperties", "AUTHMECHANISMPROPERTIES", "tlsCertificateKeyFilePassword",
                                  "sslClientCertificateKeyPassword", "password", "%70assword"])
_PLAIN_OPTION = st.tuples(st.sampled_from(["w", "appName", "authSource", "replicaSet"]), _NAME)


@st.composite
def urls(draw):
    user = draw(_NAME)
    password = draw(_PASSWORD)
    if draw(st.booleans()):
        password_in_url = quote(password, safe="")
    else:
        password_in_url = password.replace(" ", "")  # raw, unescaped: what the issue reports
    hosts = draw(st.lists(_HOST, min_size=1, max_size=3))
    db = draw(_NAME)
    token = draw(_TOKEN)
    options = [f"{k}={v}" for k, v in draw(st.lists(_PLAIN_OPTION, max_size=3))]
    secret_option = draw(_SECRET_OPTION)
    value = f"AWS_SESSION_TOKEN:{token}" if "roperties" in secret_option.lower() else token
    options.insert(draw(st.integers(0, len(options))), f"{secret_option}={value}")
    scheme = draw(st.sampled_from(["mongodb", "mongodb+srv"]))
    url = f"{scheme}://{user}:{password_in_url}@{','.join(hosts)}/{db}?{'&'.join(options)}"
    return url, password_in_url, token, hosts, db


@settings(max_examples=examples(400), deadline=None)
@given(urls())
def test_no_generated_url_shows_its_password_or_token_and_hosts_stay_visible(case):
    url, password, token, hosts, db = case
    for masked in (mask_url(url), scrub(f"connecting to {url} (pool 1-2)")):
        assert password not in masked and password.strip("%") not in masked
        assert token not in masked
        assert ",".join(hosts) + "/" + db in masked


@settings(max_examples=examples(100), deadline=None)
@given(urls())
def test_the_log_filter_masks_generated_urls_in_messages_and_exception_texts(case):
    url, password, token, _hosts, _db = case
    try:
        raise RuntimeError(f"could not reach {url}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("astro_db.x", logging.ERROR, __file__, 1, "connect to %s failed", (url,), exc_info)
    MaskingFilter().filter(record)
    shown = record.getMessage() + record.exc_text
    assert password not in shown and token not in shown


# --- where URLs are shown --------------------------------------------------------------------------

SESSION_URL = f"mongomock://app:pw-{TOKEN[:6]}@localhost/astro?authMechanismProperties=AWS_SESSION_TOKEN:{TOKEN}"


def test_config_and_database_reprs_hide_the_session_token():
    db = Database(SESSION_URL)
    config = DatabaseConfig(url=SESSION_URL)
    for text in (repr(db), repr(config), str(config), config.masked_url):
        assert TOKEN not in text and f"pw-{TOKEN[:6]}" not in text
        assert "@localhost/astro?authMechanismProperties=***" in text


@pytest.mark.parametrize("url", ["mongodb://app:S3c/retPw@h/db", "mongodb://app:S3c@retPw@h/db",
                                 "mongodb://app:S3c:retPw@h/db", "mongodb://app:S3c%retPw@h/db"])
def test_an_unescaped_password_is_a_config_error_that_does_not_show_it(url):
    with pytest.raises(ConfigError, match="percent-encode") as err:
        DatabaseConfig(url=url)
    assert "retPw" not in str(err.value)


def test_an_escaped_password_with_reserved_characters_is_accepted_and_masked():
    config = DatabaseConfig(url="mongodb://app:" + quote("S3c/ret@Pw:", safe="") + "@h/db")
    assert config.database_name == "db"
    assert config.masked_url == "mongodb://app:***@h/db"


def test_the_cli_never_prints_the_password_or_session_token():
    result = CliRunner().invoke(cli, ["--url", SESSION_URL, "-vv", "health"])
    assert result.exit_code == 0, result.output
    assert "authMechanismProperties=***" in result.output
    assert TOKEN not in result.output and f"pw-{TOKEN[:6]}" not in result.output


def test_the_cli_error_line_masks_a_url_inside_the_error():
    result = CliRunner().invoke(cli, ["--url", "mongodb://app:S3c/retPw@h/db", "health"])
    assert result.exit_code == 2
    assert "error:" in result.output and "retPw" not in result.output


def test_scrub_masks_redis_urls_in_free_text():
    text = "cache bus: cannot reach redis://:r3dis@pw@cache:6379/0 (retrying); store rediss://u:s3cret@c/1"
    masked = scrub(text)
    assert "r3dis" not in masked and "s3cret" not in masked and "cache:6379/0" in masked


def test_mask_text_masks_a_session_token_in_free_text():
    text = f"pymongo said: mongodb://h/db?authMechanismProperties=AWS_SESSION_TOKEN:{TOKEN} unreachable"
    assert TOKEN not in mask_text(text)


# --- every secret-bearing option, by name -------------------------------------------------------

# written out (not read from ``urls.SECRET_OPTIONS``): dropping a name from the table must fail here
SECRET_OPTION_NAMES = [
    "authMechanismProperties", "tlsCertificateKeyFilePassword", "sslClientCertificateKeyPassword",
    "sslPEMKeyPassword", "password", "pass", "pwd", "secret", "token", "apiKey", "api_key",
    "AWS_SESSION_TOKEN", "awsSecretAccessKey",
]


@pytest.mark.parametrize("name", SECRET_OPTION_NAMES)
def test_every_secret_bearing_option_is_masked_in_any_case_and_encoding(name):
    encoded = "".join(f"%{ord(c):02X}" for c in name[:2]) + name[2:]
    for spelled in (name, name.upper(), name.lower(), encoded):
        for url in (f"mongodb://h1,h2/db?w=1&{spelled}=QZsecret-1&appName=api",
                    f"rediss://cache:6380/0?{spelled}=QZsecret-1;ssl_cert_reqs=none"):
            masked = mask_url(url)
            assert "QZsecret-1" not in masked, masked
            assert f"{spelled}=***" in masked and masked.startswith(url.split("?")[0])
            assert "QZsecret-1" not in scrub(f"cannot reach {url} (retrying)")


@pytest.mark.parametrize("name", ["w", "appName", "authSource", "replicaSet", "passwords", "tokens", "tls", "apiKeys"])
def test_an_option_that_carries_no_secret_stays_readable(name):
    url = f"mongodb://h/db?{name}=visible-1"
    assert mask_url(url) == url


def test_every_url_in_a_text_is_masked_after_one_that_holds_another_scheme():
    """A URL inside another (an option value naming a second server) is masked with its outer
    URL; masking goes on with the URLs that follow it."""
    text = ("failover mongodb://app:FIRST@h1/db?appName=mongodb://x@h9 then "
            "mongodb://admin:SECRET@h2/db and redis://:THIRD@cache:6379/0 and "
            "mongodb://h3/db?password=FOURTH")
    masked = scrub(text)
    for secret in ("FIRST", "SECRET", "THIRD", "FOURTH"):
        assert secret not in masked, masked
    assert "@h2/db" in masked and "cache:6379/0" in masked and "h3/db" in masked


def test_only_the_mongodb_aws_mechanism_hides_the_user_name():
    assert mask_url("mongodb://app:pw@h/db?authMechanism=SCRAM-SHA-256") == "mongodb://app:***@h/db?authMechanism=SCRAM-SHA-256"
    assert mask_url("mongodb://app:pw@h/db?appName=MONGODB-AWS") == "mongodb://app:***@h/db?appName=MONGODB-AWS"
    assert mask_url("mongodb://KEY:pw@h/db?authmechanism=mongodb-aws") == "mongodb://***:***@h/db?authmechanism=mongodb-aws"


def test_no_url_and_text_without_a_scheme_have_no_userinfo():
    assert mask_url(None) == "" and mask_url("") == ""
    assert userinfo_of("app:pw@localhost") == "" and not unescaped_userinfo("a/b:c@d@localhost")
    assert userinfo_of("mongodb://app:p%40ss@h1,h2/db") == "app:p%40ss" and not unescaped_userinfo("mongodb://app:p%40ss@h/db")
    assert unescaped_userinfo("mongodb://app:p@ss@h/db")


@pytest.mark.parametrize("url", [
    "admin:SECRET@host:27017/astro",            # the scheme left out
    "mongo://admin:SECRET@host/astro",          # a typo in it
    " mongodb://admin:SECRET@host/astro",       # a leading blank, which urlsplit skips
    "\tmongodb+srv://admin:SECRET@cluster.example.com/astro",
])
def test_a_url_whose_scheme_is_missing_or_odd_never_shows_its_password(url):
    assert "SECRET" not in mask_url(url)
    try:
        config = DatabaseConfig(url=url)
    except ConfigError as exc:
        assert "SECRET" not in str(exc)
    else:
        assert "SECRET" not in repr(config)


@pytest.mark.parametrize("url, shown", [
    (" mongodb://ann:secret@db.example/astro", " mongodb://ann:***@db.example/astro"),  # a leading blank: still a URL
    ("ann:p@ss@db.example/astro", "***@db.example/astro"),  # no scheme: all before the last @ hidden
    ("db.example:27017/astro?authSource=admin", "db.example:27017/astro?authSource=admin"),  # nothing secret
    ("db.example/astro?password=hunter2", "db.example/astro?password=***"),
])
def test_what_a_url_shows_is_all_but_its_secrets(url, shown):
    assert mask_url(url) == shown


@pytest.mark.parametrize("url", [
    "mongodb://h/db?tlsCertificateKeyFilePassword=QZab#cdSECRET&w=1",
    "mongodb://u:pw@h/db?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:QZab#cdSECRET",
    "mongodb://h/db?password=QZab#cdSECRET",
])
def test_a_hash_in_a_secret_option_hides_the_whole_value(url):
    """PyMongo reads a ``#`` in an option value as part of it (a URI has no fragment for it):
    the secret's tail after the ``#`` was shown (``password=***#cdSECRET``)."""
    from pymongo.uri_parser import parse_uri

    if "?password=" not in url:  # (an option PyMongo does not take)
        assert "cdSECRET" in repr(parse_uri(url)["options"])  # what PyMongo takes for the secret
    try:
        config = repr(DatabaseConfig(url="mongomock" + url[7:]))
    except ConfigError as exc:
        config = str(exc)
    for shown in (mask_url(url), scrub(f"cannot reach {url} (retrying)"), config):
        assert "cdSECRET" not in shown and "QZab" not in shown, shown


@pytest.mark.parametrize("url, shown", [
    ("redis://Zq9SECRETpw@cache:6379/0", "redis://***@cache:6379/0"),
    ("rediss://Zq9SECRETpw@cache:6380", "rediss://***@cache:6380"),
    ("unix://Zq9SECRETpw@/run/redis.sock", "unix://***@/run/redis.sock"),
    ("redis://app:Zq9SECRETpw@cache/0", "redis://app:***@cache/0"),  # an ACL user: the name shows
    ("mongodb://app@db/astro", "mongodb://app@db/astro"),  # a MongoDB user name is no secret
])
def test_a_redis_url_whose_userinfo_has_no_colon_hides_it_whole(url, shown):
    """redis-py reads ``redis://SECRET@host`` as a user name, but clients before Redis 6's ACLs
    took it for the password, and it is written that way: it is hidden in every text."""
    assert mask_url(url) == shown
    assert "Zq9SECRETpw" not in scrub(f"bus at {url} is down")
