"""Which redis-py the Redis bus works with, and a clear failure when the installed one does not fit.

The bus reads and writes the socket of the connections redis-py opens (its private
``Connection._sock``, ``astro_db/cache/redis_compat.py``). Must hold: every extra of setup.cfg
that lists redis declares the range the code names (``SUPPORTED_REDIS_PY``), and the redis-py
running the suite is inside it (CI runs the Redis tests on the lowest release too); a redis-py
whose connections have no ``_sock`` is refused with a ``ConfigError`` when the bus is made (so
``Database(...)``), one that leaves something else there after connecting, or keeps part of the
handshake in its own parser, stops the subscriber with one ERROR (the bus stays down, its reason
says why): each naming the redis-py version found and the range, never the URL's password; a
real connection over RESP2 and RESP3 leaves nothing in redis-py's parser (the check knows its
form); the bus's own connections and every client on a Unix socket have redis-py's maintenance
notifications off (redis-py 7.x fails a ``unix://`` RESP3 handshake with them on).
"""

from __future__ import annotations

import configparser
import logging
import uuid
import weakref
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.connection import Connection
from spies import BusCalls
from spies import poll as _poll

from astro_db import Database
from astro_db.cache import redis_compat
from astro_db.cache.redis_bus import RedisBus, _Wire
from astro_db.cache.redis_compat import SUPPORTED_REDIS_PY
from astro_db.cache.redis_store import RedisStore
from astro_db.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "compat-s3cret-pw"


def _with_connection_class(monkeypatch: pytest.MonkeyPatch, connection_class: type) -> None:
    """Every ``Redis.from_url`` made from now on opens ``connection_class`` connections."""
    from_url = redis.Redis.from_url.__func__  # type: ignore[attr-defined]

    def patched(cls: Any, url: str, **kwargs: Any) -> Any:
        return from_url(cls, url, connection_class=connection_class, **kwargs)

    monkeypatch.setattr(redis.Redis, "from_url", classmethod(patched))


def _assert_says_what_to_do(message: str) -> None:
    assert f"redis-py {redis.__version__}" in message and SUPPORTED_REDIS_PY in message
    assert PASSWORD not in message


def _server(directory: Path, **options: Any) -> Any:
    """A redis-server (tests/redis_server.py), skipped like the ``redis_server`` fixture without one."""
    import os
    import shutil

    from redis_server import RedisServer

    if shutil.which("redis-server") is None and os.environ.get("ASTRO_DB_REQUIRE_REDIS") != "1":
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    return RedisServer(directory, **options).start()


@pytest.fixture
def acl_redis(tmp_path: Path) -> Any:
    """A redis-server behind an ACL user with a password (the password must show nowhere)."""
    server = _server(tmp_path / "redis-acl", user="astro", password=PASSWORD)
    yield server
    server.stop()


# --- the declared range ----------------------------------------------------------------------

def test_every_extra_that_lists_redis_declares_the_supported_range_and_the_installed_one_is_in_it():
    from packaging.specifiers import SpecifierSet

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    declared = {name: [line.strip() for line in value.splitlines() if line.strip().startswith("redis")]
                for name, value in parser["options.extras_require"].items()}
    listing = {name: lines for name, lines in declared.items() if lines}
    assert set(listing) == {"redis", "test", "dev"}
    assert all(lines == [f"redis{SUPPORTED_REDIS_PY}"] for lines in listing.values()), listing
    specifiers = SpecifierSet(SUPPORTED_REDIS_PY)
    assert "9.0" not in specifiers and "8.0.0" not in specifiers and "5.0.0" in specifiers  # below the next major
    assert redis.__version__ in specifiers  # the suite runs on a supported redis-py (CI: the newest and the lowest)


def _noxfile_constants() -> dict[str, Any]:
    """The literal constants of noxfile.py (read, not imported: nox would register its sessions twice)."""
    import ast

    tree = ast.parse((ROOT / "noxfile.py").read_text())
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass  # not a literal (built from others)
    return out


def test_ci_runs_every_redis_test_on_the_lowest_supported_redis_py():
    import re

    constants = _noxfile_constants()
    lowest = SUPPORTED_REDIS_PY.split(",")[0]
    assert lowest.startswith(">=") and constants["REDIS_LOWEST"] in (lowest[2:], lowest[2:] + ".0")
    talking_to_redis = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")
                        if re.search(r"\bimport redis\b|from redis|redis_server|RedisBus|RedisStore|cache_bus=.redis"
                                     r"|cache_store=", path.read_text())}
    assert talking_to_redis - {"tests/unit/test_benchmark_smoke.py"} == set(constants["REDIS_TESTS"])
    noxfile = (ROOT / "noxfile.py").read_text()
    assert '@nox.session(python="3.12", name="redis-lowest")' in noxfile
    assert 'session.install("-e", ".[test]", f"redis=={REDIS_LOWEST}")' in noxfile
    script = (ROOT / ".ci" / "run").read_text()
    assert 'if [ "$session" = tests-3.12 ]; then also=(redis-lowest); fi' in script
    assert '-s "$session" "${also[@]}"' in script  # in the 3.12 job, whose exit code is checked


# --- refused when the bus is made ------------------------------------------------------------

class NoSocketAttribute(Connection):
    """A connection of a redis-py that no longer keeps its socket in ``_sock``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        del self._sock


def test_a_redis_py_whose_connections_have_no_socket_attribute_is_refused_when_the_bus_is_made(monkeypatch):
    _with_connection_class(monkeypatch, NoSocketAttribute)
    url = f"redis://astro:{PASSWORD}@127.0.0.1:1/0"
    with pytest.raises(ConfigError) as caught:
        RedisBus(url, "compat")
    assert caught.value.key == "cache_bus" and "NoSocketAttribute._sock" in str(caught.value)
    _assert_says_what_to_do(str(caught.value))
    with pytest.raises(ConfigError) as through_the_database:  # the app sees it at Database(...), not a silent cache
        Database(f"mongomock://localhost/compat_{uuid.uuid4().hex[:8]}", cache_bus=url, cache_models=("User",),
                 cache_ttl_s=60.0)
    _assert_says_what_to_do(str(through_the_database.value))


# --- refused when a connection is opened -----------------------------------------------------

class Opaque:
    """What a redis-py might keep in ``_sock`` instead of the socket."""

    def close(self) -> None:
        pass


class NotASocketAfterConnecting(Connection):
    """A connection that holds something other than its socket in ``_sock`` once connected."""

    connects = 0

    def connect(self, *args: Any, **kwargs: Any) -> None:
        super().connect(*args, **kwargs)
        type(self).connects += 1
        self._real, self._sock = self._sock, Opaque()

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(self._sock, Opaque):
            self._sock = self._real
        super().disconnect(*args, **kwargs)


class HandshakeLeftInTheParser(Connection):
    """A connection whose redis-py has read past the handshake: a reply sits in its parser."""

    connects = 0

    def connect(self, *args: Any, **kwargs: Any) -> None:
        super().connect(*args, **kwargs)
        type(self).connects += 1
        self.send_command("PING")
        parser = self._parser  # redis-py reads the PONG into its parser, not parsed yet
        (getattr(parser, "read_from_socket", None) or parser._buffer._read_from_socket)(timeout=10)


@pytest.mark.parametrize("connection_class", [NotASocketAfterConnecting, HandshakeLeftInTheParser])
def test_a_connection_the_bus_cannot_read_stops_the_bus_with_one_error_naming_the_redis_py(
        monkeypatch, caplog, acl_redis, connection_class):
    connection_class.connects = 0
    _with_connection_class(monkeypatch, connection_class)
    bus = RedisBus(acl_redis.url, "compat")  # made: the attribute is there
    listener = BusCalls()
    caplog.set_level(logging.INFO, logger="astro_db")
    bus.attach(listener)
    thread = bus._thread
    assert thread is not None
    try:
        thread.join(30)
        assert not thread.is_alive()  # the subscriber stopped: retrying cannot help
        assert connection_class.connects == 1 and not bus.connected
        reason = bus.reason or ""
        _assert_says_what_to_do(reason)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "caching stays off" in errors[0].getMessage()
        _assert_says_what_to_do(errors[0].getMessage())
        assert not any(PASSWORD in r.getMessage() for r in caplog.records)
        stats = bus.stats()
        assert stats["connected"] is False and stats["reason"] == reason and stats["errors"] == 1
        assert PASSWORD not in str(stats)
        assert listener.calls == []  # never trusted: nothing was ever cached through it
        bus.publish("User")  # a write still returns: the bus is down, caching off
        assert not bus.connected
        bus.open(None)  # Database.connect() again: one more try, the same end, its ERROR held back (rate-limited)
        again = bus._thread
        assert again is not None and again is not thread
        again.join(30)
        assert not again.is_alive() and connection_class.connects == 2 and not bus.connected
        assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1 and bus.figures.errors == 2
    finally:
        bus.close()


def test_the_checks_read_both_kinds_of_redis_py_parser():
    class Buffer:
        def __init__(self, unread: int) -> None:
            self.unread = unread

        def unread_bytes(self) -> int:
            return self.unread

    class Reader:
        def __init__(self, data: bool) -> None:
            self.data = data

        def has_data(self) -> bool:
            return self.data

    class Parser:
        def __init__(self, **attrs: Any) -> None:
            self.__dict__.update(attrs)

    class Conn:
        def __init__(self, parser: Any) -> None:
            self._parser = parser
            self._sock = __import__("socket").socket()

    for parser, held in [(Parser(_buffer=Buffer(0)), False), (Parser(_buffer=Buffer(7)), True),
                         (Parser(_reader=Reader(False), _buffer=bytearray(8)), False),
                         (Parser(_reader=Reader(True), _buffer=bytearray(8)), True), (Parser(), None)]:
        conn = Conn(parser)
        try:
            assert redis_compat.parser_holds_data(conn) is held
            if held:
                with pytest.raises(ConfigError, match="handshake"):
                    redis_compat.check_opened(redis, conn)
            else:
                assert redis_compat.check_opened(redis, conn) is conn._sock
        finally:
            conn._sock.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_real_handshake_leaves_nothing_in_redis_pys_parser_and_the_check_knows_its_parser(redis_server, protocol):
    bus = RedisBus(f"{redis_server.url}?protocol={protocol}", "compat")
    wire = _Wire(bus._client, redis)
    try:
        wire.open()
        assert wire._conn.protocol in (protocol, str(protocol))
        assert redis_compat.parser_holds_data(wire._conn) is False  # known form (hiredis or redis-py's own), empty
        assert wire.call(b"PING") == b"PONG"  # read by the bus, past the handshake
    finally:
        wire.close()
        bus.close()


# --- redis-py's maintenance notifications ----------------------------------------------------

def test_maintenance_notifications_are_off_on_the_bus_connections_and_on_unix_sockets(tmp_path):
    pytest.importorskip("redis.maint_notifications", reason="redis-py before 7 has no maintenance notifications")
    bus = RedisBus("redis://127.0.0.1:1/0?protocol=3", "compat")
    try:
        wire = _Wire(bus._client, redis)
        assert wire._conn.maint_notifications_config.enabled is False  # this socket is read by the bus
        assert bus._client.connection_pool.connection_kwargs["maint_notifications_config"].enabled != False  # noqa: E712 - redis-py's own
    finally:
        bus.close()
    unix = f"unix://{tmp_path}/redis.sock?protocol=3"
    bus = RedisBus(unix, "compat")
    store = RedisStore(unix, "compat", 60.0, secret=b"k" * 32)
    try:
        for client in (bus._client, bus._new_client(0.25), store._client):
            config = client.connection_pool.connection_kwargs.get("maint_notifications_config")
            assert config is None or config.enabled is False  # None: redis-py 8.0.1+ leaves them off on Unix itself
    finally:
        store.close()
        bus.close()


def test_the_bus_and_the_store_work_over_a_unix_socket_with_resp3(tmp_path):
    """redis-py 7.x fails this handshake with maintenance notifications on (fixed in 8.0.1)."""
    server = _server(tmp_path / "redis-unix", unix=True, user="astro", password=PASSWORD)
    url = server.url + "&protocol=3"
    bus = RedisBus(url, "compat")
    store = RedisStore(url, "compat", 60.0, secret=b"k" * 32)
    listener = BusCalls()
    bus._listener = weakref.ref(listener)
    try:
        bus.start()
        _poll(lambda: bus.connected)
        assert bus.watch("User")
        bus.publish("User")
        _poll(lambda: bus.stats()["sent"] == 1 and bus.figures.received == 1)
        key = ("User", "find", "{}", b"\0")
        _, token = store.get(key)
        assert token is not None and store.put(key, [{"a": 1}], token)
        assert store.get(key)[0] == [{"a": 1}]
        assert bus.figures.errors == 0 and store.stats()["errors"] == 0
    finally:
        store.close()
        bus.close()
        server.stop()


def test_a_publishing_connection_the_bus_cannot_read_takes_the_bus_down_and_the_publisher_lives_on(monkeypatch, caplog):
    import threading

    def refused(self: Any) -> None:
        raise redis_compat.incompatible(redis, "left Connection._sock as Opaque after connecting, not a socket")

    monkeypatch.setattr(_Wire, "open", refused)
    bus = RedisBus(f"redis://astro:{PASSWORD}@127.0.0.1:1/0", "compat")  # never subscribed: the publisher alone
    bus._connected = True
    caplog.set_level(logging.INFO, logger="astro_db")
    thread = threading.Thread(target=bus._publish_loop, daemon=True)
    thread.start()
    try:
        bus.publish("User")
        _poll(lambda: bus.figures.errors == 1)
        assert thread.is_alive() and not bus.connected and bus.unsent("User")  # owed, caching off
        _assert_says_what_to_do(bus.reason or "")
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "caching stays off" in errors[0]
        _assert_says_what_to_do(errors[0])
    finally:
        bus._stop.set()
        bus._wake.set()
        thread.join(30)
        bus.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_after_the_handshake_the_bus_reads_every_byte_itself_and_redis_pys_parser_is_never_called(
        redis_server, monkeypatch, protocol):
    import json

    from astro_db.cache.bus import Notice

    bus = RedisBus(f"{redis_server.url}?protocol={protocol}", "compat")
    listener = BusCalls()
    bus._listener = weakref.ref(listener)
    client = redis.Redis.from_url(redis_server.url)
    try:
        bus.start()
        _poll(lambda: bus.connected)
        assert bus.watch("User")
        bus.publish("User")  # the publisher's connection is opened (its handshake read by redis-py)
        _poll(lambda: bus.stats()["sent"] == 1 and bus.figures.received == 1)
        conns = [bus._wire._conn, bus._publish_wire._conn]  # type: ignore[union-attr]
        calls: list[str] = []
        for conn in conns:
            parser = conn._parser
            for name in ("read_response", "read_from_socket", "can_read"):
                if callable(getattr(parser, name, None)):
                    original = getattr(parser, name)
                    monkeypatch.setattr(parser, name, lambda *a, _n=name, _o=original, **k: (calls.append(_n), _o(*a, **k))[1])
        for generation in range(1, 21):
            client.publish(bus.channel, json.dumps({"m": "Task", "o": "elsewhere", "t": 0, "g": generation}).encode())
        for n in range(2, 7):
            bus.publish("User", notice=Notice("User", frozenset({bytes(16)}), frozenset({"name"})))
            _poll(lambda n=n: bus.stats()["sent"] == n and not bus.stats()["pending"])
        _poll(lambda: bus.figures.received == 26)
        assert calls == [] and bus.figures.errors == 0 and bus.figures.full_drops == 0
        assert [redis_compat.parser_holds_data(conn) for conn in conns] == [False, False]
    finally:
        client.close()
        bus.close()
