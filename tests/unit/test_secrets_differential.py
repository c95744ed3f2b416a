"""No secret is ever shown: drawn connection URLs and settings, through every place that shows text.

Hypothesis draws secrets (a distinctive upper-case core around the characters a URL must escape:
``/ @ ? # % : ;``) and puts them where secrets go: the password of a ``mongodb://``,
``mongodb+srv://`` or ``mongomock://`` URL (percent-encoded, or raw where PyMongo would take it),
with one host or several; the user name and password of MONGODB-AWS; its
``authMechanismProperties=AWS_SESSION_TOKEN:...``; ``tlsCertificateKeyFilePassword=``; the
``password=`` keyword beside a URL with a user name only; the password of a Redis
``cache_bus=`` / ``cache_store=`` URL; ``encryption_key``, ``cache_secret``, ``token_secret``
and KMS credentials, valid or not. Then everything that shows text runs: ``DatabaseConfig`` and
``Database`` (``repr``, ``str``, ``masked_url``), connecting to a server or a Redis that is not
there (``127.0.0.1:1``, short timeouts), the errors raised (``str``, ``repr``, every chained
``__cause__`` / ``__context__``, the traceback as ``traceback.format_exception`` formats it),
every log record of astro_db's, PyMongo's and redis-py's loggers at DEBUG, and the CLI's output.

The differential: the same secret is what the driver is given (the URL PyMongo parses, the
keyword the config holds), and is in none of the texts: not as written, not percent-encoded,
not decoded, and no run of five characters of its core either.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from click.testing import CliRunner
from fuzzing import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astro_db import Database, DatabaseConfig, errors
from astro_db.cli import cli
from astro_db.security.crypto import new_key

# the core of a secret: upper case and digits no host, database or option name here holds
_CORE = st.text("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=5, max_size=6)
_SPECIAL = st.sampled_from(list("/@?#%:;") + ["%2F", "%40", "%3A", "%25", "%23"])
UNREACHABLE = "127.0.0.1:1"
FAST = "serverSelectionTimeoutMS=100&connectTimeoutMS=100"
# two connection attempts (the retry's log line is shown too), a short wait between them
QUICK: dict[str, Any] = {"operation_timeout_ms": 300, "connect_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.01}


@st.composite
def secrets(draw: Any) -> tuple[str, list[str]]:
    """A secret of at least 12 characters (``QZ`` + cores joined by URL-special characters) and
    its cores (each of which must never be shown)."""
    cores = draw(st.lists(_CORE, min_size=2, max_size=3))
    joints = draw(st.lists(_SPECIAL, min_size=len(cores) - 1, max_size=len(cores) - 1))
    text = "QZ" + cores[0] + "".join(j + c for j, c in zip(joints, cores[1:], strict=True))
    return text, cores


def _forms(secret: str, cores: list[str]) -> list[str]:
    from urllib.parse import unquote

    return [secret, quote(secret, safe=""), unquote(secret), *cores]


def _texts_of(exc: BaseException) -> str:
    """Everything an error shows: its text, repr, every chained error's, and its traceback."""
    out: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out += [str(e), repr(e), repr(getattr(e, "args", ()))]
        stack += [e.__cause__, e.__context__]
    out.append("".join(traceback.format_exception(exc)))
    return "\n".join(out)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))  # the message and, where there is one, the traceback


@contextmanager
def _logs() -> Iterator[_Capture]:
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in ("astro_db", "pymongo", "redis")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(capture)
            lg.setLevel(level)


def _shown(action: Callable[[], Any]) -> str:
    """What running ``action`` shows: the repr and str of its result, or its error's texts."""
    try:
        out = action()
    except Exception as exc:  # noqa: BLE001 - any error: what it shows is the point
        return _texts_of(exc)
    return repr(out) + "\n" + str(out)


def _assert_hidden(secret: str, cores: list[str], texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for form in _forms(secret, cores):
            assert form not in text, f"{form!r} shown by {where}: ...{text[max(0, text.find(form) - 200):][:300]}..."


def _config_and_database(url: str, connect: bool, **settings_: Any) -> dict[str, str]:
    """What a config, a Database and (``connect``) a connection attempt show."""
    shown: dict[str, str] = {}

    def config() -> str:
        c = DatabaseConfig(url=url, **settings_)
        return "\n".join([repr(c), str(c), c.masked_url])

    shown["DatabaseConfig"] = _shown(config)

    def database() -> str:
        db = Database(url, **settings_)
        try:
            text = repr(db)
            if connect:
                try:
                    db.connect()
                    db.find_one("User", {})
                except errors.AstroDBError as exc:
                    text += _texts_of(exc)
            return text
        finally:
            db.disconnect()

    shown["Database"] = _shown(database)
    return shown


@st.composite
def mongodb_urls(draw: Any) -> tuple[str, dict[str, Any], str, list[str], bool]:
    """A URL (and keywords) carrying the secret where a MongoDB URL carries one; whether to
    connect (never for ``mongodb+srv``, whose hosts are looked up in DNS)."""
    secret, cores = draw(secrets())
    encoded = quote(secret, safe="")
    place = draw(st.sampled_from(["password", "raw password", "aws", "session token", "tls password", "keyword",
                                  "password option"]))
    hosts = ",".join(draw(st.lists(st.sampled_from([UNREACHABLE, "127.0.0.1:2", "localhost:3"]), min_size=1,
                                   max_size=3, unique=True)))
    scheme = draw(st.sampled_from(["mongodb", "mongodb", "mongodb+srv", "mongomock"]))
    if scheme == "mongodb+srv":
        hosts = "cluster0.example.invalid"
    elif scheme == "mongomock":
        hosts = "localhost"
    db = draw(st.sampled_from(["astro", "app"]))
    user = draw(st.sampled_from(["app", "svc"]))
    options = [FAST] if scheme == "mongodb" else []
    keywords: dict[str, Any] = {}
    if place == "password":
        userinfo = f"{user}:{encoded}@"
    elif place == "raw password":  # unescaped: refused, and the refusal must not show it
        userinfo = f"{user}:{secret}@"
    elif place == "aws":
        userinfo = f"AKIA{cores[0]}:{encoded}@"
        options.append("authMechanism=MONGODB-AWS")
    elif place == "session token":
        userinfo = f"AKIA{cores[0]}:{quote(cores[1], safe='')}@"
        options += ["authMechanism=MONGODB-AWS", f"authMechanismProperties=AWS_SESSION_TOKEN:{encoded}"]
    elif place == "tls password":
        userinfo = ""
        options += ["tls=true", "tlsCertificateKeyFile=/nonexistent/astro.pem", f"tlsCertificateKeyFilePassword={encoded}"]
    elif place == "keyword":
        userinfo = f"{user}@"
        keywords["password"] = secret
    else:
        userinfo = ""
        options.append(f"password={encoded}")
    draw(st.randoms()).shuffle(options)
    url = f"{scheme}://{userinfo}{hosts}/{db}" + ("?" + "&".join(options) if options else "")
    return url, keywords, secret, cores, scheme == "mongodb"


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mongodb_urls())
def test_no_connection_secret_is_shown_by_a_config_a_connection_an_error_or_a_log_line(case):
    url, keywords, secret, cores, connect = case
    if connect and f":{quote(secret, safe='')}@" in url:  # the differential: PyMongo is given the secret itself
        from pymongo.uri_parser import parse_uri

        assert parse_uri(url)["password"] == secret
    with _logs() as capture:
        shown = _config_and_database(url, connect, **QUICK, **keywords)
    shown["logs"] = "\n".join(capture.lines)
    _assert_hidden(secret, cores, shown)


@settings(max_examples=examples(4), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mongodb_urls().filter(lambda case: case[4] and not case[1]))  # a URL alone, no DNS lookup
def test_no_connection_secret_is_shown_by_the_command_line(case):
    url, _keywords, secret, cores, _connect = case
    result = CliRunner().invoke(cli, ["--url", url + "&connectAttempts=1", "-vv", "health"])
    shown = {"the CLI": result.output + ("" if result.exception is None or isinstance(result.exception, SystemExit)
                                         else _texts_of(result.exception))}
    _assert_hidden(secret, cores, shown)


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secrets(), store=st.booleans(), encoded=st.booleans())
def test_no_redis_password_is_shown_by_a_cache_bus_or_store_that_cannot_connect(secret, store, encoded):
    text, cores = secret
    password = quote(text, safe="") if encoded else text
    redis_url = f"redis://:{password}@{UNREACHABLE}/0"
    options: dict[str, Any] = {"cache_bus": redis_url, "cache_models": ("User",)}
    if store:
        options.update(cache_store=redis_url, cache_secret=new_key())
    url = f"mongomock://localhost/s{uuid.uuid4().hex[:8]}"
    with _logs() as capture:
        shown = _config_and_database(url, True, **options)

        def write_and_read() -> Any:  # a write announced on the bus, a read through the cache
            with Database(url, **options) as db:
                db.create("User", {"email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "Ann"})
                return db.find("User", {})

        shown["writes"] = _shown(write_and_read)
    shown["logs"] = "\n".join(capture.lines)
    # the URL was shown, masked (a password with a raw "/" or "@" is refused, the URL masked in the error)
    assert f"redis://:***@{UNREACHABLE}/0" in shown["DatabaseConfig"]
    _assert_hidden(text, cores, shown)


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secrets(), name=st.sampled_from(["encryption_key", "encryption_keys", "cache_secret", "token_secret",
                                               "kms_providers", "url option"]),
       valid=st.booleans())
def test_no_key_or_secret_setting_is_shown_valid_or_not(secret, name, valid):
    text, cores = secret
    url = f"mongomock://localhost/k{uuid.uuid4().hex[:8]}"
    if name in ("encryption_key", "encryption_keys"):
        value: Any = new_key() if valid else text
        if valid:  # a real key: its text and its halves must not be shown either
            text, cores = value, [value[:12], value[12:24], value[24:]]
        options = {name: value}
    elif name in ("cache_secret", "token_secret"):
        value = text * (1 if not valid else 4)  # at least 32 characters when valid
        options = {name: value}
    elif name == "kms_providers":
        options = {"kms_providers": {"aws": {"accessKeyId": "AKIA" + cores[0], "secretAccessKey": text}}
                   if valid else {"local": {"key": text}},
                   "kms_master_key": {"provider": "aws", "region": "eu-west-1", "key": "arn:aws:kms:x"} if valid else None}
    else:
        url += f"?{'cacheSecret' if valid else 'encryptionKey'}={quote(text, safe='')}"
        options = {}
    with _logs() as capture:
        shown = _config_and_database(url, True, **options)

        def page_with_a_bad_token() -> Any:
            with Database(url, **options) as db:
                return db.page("User", {}, limit=2, after="bm90LWEtdG9rZW4")

        shown["page"] = _shown(page_with_a_bad_token)
    shown["logs"] = "\n".join(capture.lines)
    _assert_hidden(text, cores, shown)
