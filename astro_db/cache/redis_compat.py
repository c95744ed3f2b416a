"""Which redis-py the Redis bus and store work with, and the checks that say so when they do not.

The bus (``redis_bus._Wire``) lets redis-py open its connections (TLS, ACL user and password,
database, RESP2 / RESP3), then reads and writes the socket itself through redis-py's *private*
``Connection._sock``. That attribute is no API: a redis-py release may drop it or give it another
meaning. ``SUPPORTED_REDIS_PY`` is the range the bus is tested with (setup.cfg's extras say the
same, ``tests/unit/test_redis_compat.py`` holds them to it; CI runs the Redis tests on the
lowest release too, docs/testing.md), and anything else is caught where it shows:

- when the bus is made (``RedisBus(...)``, so ``Database(...)`` with ``cache_bus="redis://..."``):
  a connection made the way the bus makes its own must have a ``_sock`` attribute, else a
  ``ConfigError`` naming the redis-py found and the range (``check_connection``);
- when a connection is opened (``_Wire.open``): ``_sock`` must then be a socket (``recv``,
  ``sendall``, ``settimeout``) and redis-py's parser must hold nothing of the handshake (bytes
  it read that the bus would then never see), else the same ``ConfigError``
  (``check_opened``), which the subscriber logs at ERROR (rate-limited) and stops on: the bus
  stays down, its ``reason`` says why, and ``health()`` is ``degraded``.

No message holds the URL (nor so its password): only the redis-py version and the range.

``wire_options`` and ``client_options`` turn off redis-py's maintenance notifications (redis-py
7 and later, RESP3) where they cannot work: on the bus's own connections, which redis-py never
reads after the handshake (a notification pushed there would reach the bus's parser, not
redis-py's handler), and on Unix sockets, where every redis-py 7.x fails the handshake with
``ValueError: Cannot enable maintenance notifications for connection object that doesn't have a
host attribute`` (fixed in redis-py 8.0.1; 8.0.0 fails it on every ``unix://`` URL, RESP3 being
its default: it is excluded from the range).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

__all__ = ["SUPPORTED_REDIS_PY", "check_connection", "check_opened", "client_options", "incompatible",
           "parser_holds_data", "wire_options"]

#: the redis-py releases the bus is tested with: ``redis`` in every extra of setup.cfg says the
#: same (an upper bound below the next major: the bus reads a private attribute)
SUPPORTED_REDIS_PY = ">=5.0,!=8.0.0,<9"

_SOCKET_METHODS = ("recv", "sendall", "settimeout")


def incompatible(redis: Any, what: str) -> ConfigError:
    """The error of a redis-py whose connections the bus cannot use (``what``: what was found)."""
    version = getattr(redis, "__version__", "of an unknown version")
    return ConfigError(
        f"cache_bus: the installed redis-py {version} {what}; the Redis bus reads the socket of the "
        f"connections redis-py opens (its private Connection._sock) and works with redis-py {SUPPORTED_REDIS_PY}: "
        f"install one of those (pip install 'redis{SUPPORTED_REDIS_PY}'), or use cache_bus='local'",
        key="cache_bus")


def check_connection(redis: Any, conn: Any) -> None:
    """A connection object as the bus makes it (not connected): it must have the attribute."""
    if not hasattr(conn, "_sock"):
        raise incompatible(redis, f"has no {type(conn).__name__}._sock attribute")


def check_opened(redis: Any, conn: Any) -> Any:
    """The socket of ``conn`` after ``connect()`` (the handshake done), checked: a socket the bus
    can read and write, and nothing of the handshake left in redis-py's parser."""
    sock = getattr(conn, "_sock", None)
    missing = [name for name in _SOCKET_METHODS if not callable(getattr(sock, name, None))]
    if sock is None or missing:
        found = "None" if sock is None else type(sock).__name__
        raise incompatible(redis, f"left {type(conn).__name__}._sock as {found} after connecting, not a socket "
                                  f"(it lacks {', '.join(missing or _SOCKET_METHODS)})")
    if parser_holds_data(conn):
        raise incompatible(redis, "kept part of the connection's handshake in its own parser, where the bus "
                                  "would never read it")
    return sock


def parser_holds_data(conn: Any) -> bool | None:
    """Whether redis-py's parser of ``conn`` holds bytes read from the socket and not yet
    parsed (hiredis's reader: ``has_data()``; the pure-Python parsers: their socket buffer's
    ``unread_bytes()``); ``None`` when the parser is of a form not known here (not refused:
    the bus's own reads still see every byte sent after the handshake's replies)."""
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is not None:
        has_data = getattr(reader, "has_data", None)
        return bool(has_data()) if callable(has_data) else None
    unread = getattr(getattr(parser, "_buffer", None), "unread_bytes", None)
    return bool(unread()) if callable(unread) else None


def _notifications_off(redis: Any) -> Any:
    """redis-py's config turning maintenance notifications off (``None`` before redis-py 7)."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:
        return None
    return MaintNotificationsConfig(enabled=False)


def client_options(redis: Any, url: str) -> dict[str, Any]:
    """Extra ``Redis.from_url`` options for ``url``: on a Unix socket, maintenance notifications off."""
    if url.startswith("unix:"):
        off = _notifications_off(redis)
        if off is not None:
            return {"maint_notifications_config": off}
    return {}


def wire_options(redis: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The options of one of the bus's own connections, from its pool's: no health check of
    redis-py's (the bus pings on its own schedule) and no maintenance notifications."""
    options = dict(options)
    options["health_check_interval"] = 0
    if "maint_notifications_config" in options:
        options["maint_notifications_config"] = _notifications_off(redis)
        options.pop("maint_notifications_pool_handler", None)
    return options
