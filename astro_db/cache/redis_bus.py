"""The Redis invalidation bus: committed writes announced to every process over Redis pub/sub.

Publisher (the process that wrote, after the write is acknowledged or its transaction
committed): the write's own process drops its entries at once, then the writing thread sends
the announcement itself on the bus's publishing connection (``EVALSHA`` packed here, one
command at a time: the next reply read is always the last command's) and reads Redis's reply,
within ``wait_s`` (20 ms) in all, waiting for the connection too while another thread has it (a
healthy Redis answers in well under a millisecond, so the generation has moved on when the
write returns). What a write cannot finish by then is the publisher thread's: a reply not back
is handed over with the connection (the write returns; the publisher thread reads it within the
connection's socket timeout, else drops the connection and the bus goes down), a model another
thread wrote meanwhile is sent after it, and no write opens a connection (a handshake's bounds
are seconds: the publisher thread opens it, the write waiting for its announcement until
``wait_s``). Once a send is late or the bus is down, a write sends nothing and waits for
nothing: a frozen Redis costs a write at most 20 ms, and nothing once it is noticed, not its
2 s / 4 s socket timeouts. The script is one Lua script
``INCR astro_db:{db}:gen:{model}``, then (once a shared result store has read the model)
sets the write's dependency keys to that generation (``redis_store.write_dependencies``: what the
write may have changed, so that the shared store stops serving exactly those entries), then
``PUBLISH astro_db:{db}:invalidate {"m": model, "g": generation, "o": origin, "t": time}``.
Being one script, the generations of a model reach
every subscriber in order and without holes. Models waiting to be announced are *pending* (one
entry per model: the queue is bounded by the number of models, later writes coalesce: two
threads writing one model at once are covered by one announcement, sent by whichever has the
connection); while one is pending this process does not read the shared store for it
(``unsent``). A send that has not come back within ``stall_s`` (Redis frozen or slow) marks the
bus down at the next write: this process stops caching until its subscriber is back.

Subscriber (a daemon thread per ``Database``): subscribes, *then* expires every entry its cache
holds and only then says ``connected``; a message drops what its write may have changed. It
blocks on its connection (opened by redis-py, then read here: ``_Wire``) until Redis sends
something or a health check is due, and handles every message received in that wake-up in
order, each checked as if alone (its generation, its form), the notices of one model between
two full drops merged into one ``apply``. It pings Redis once it has been silent for
``health_check_s`` and gives up on a connection that has not answered within ``answer_s``
(a frozen Redis keeps the TCP connection open and silent), so every process stops caching
within about three seconds of Redis freezing, not only the ones that write. Anything that casts doubt
drops everything again: a gap in a model's generations (a lost message), a message it cannot
read, a generation that goes back or repeats (never sent by the script: someone else published
on the channel, e.g. one far ahead so that the real announcements after it would look old), a
lost connection (and the reconnect after it), a failed publish from this process. So a
message lost in an outage can never keep a stale entry alive past the moment the subscriber is
back, nor can a message forged on the channel keep one alive past the next real announcement,
and while it is not connected the cache stores and serves nothing (reads go to the server).
The one window left is "the write returned in process A, B's subscriber has not been delivered
yet": ``metrics()["cache_bus"]["last_delay_ms"]`` shows how long it is.

A failed publish leaves the write standing: it is logged (never with the URL's password; once per
10 s with a count, ``astro_db.ratelog``) and counted, this process drops its own cache and its
bus goes down; the model stays *pending* and is published by the subscriber once it has
reconnected, before it says ``connected`` again. So other processes learn of that write when this one reaches Redis again
(or sooner, by dropping everything, if they lost Redis too). Anything a publish raises, not only
Redis's errors, is such a failure; neither the publisher thread nor the subscriber ends on an
exception (the subscriber handles one as a lost connection). A send broken by a closed connection
is sent once more on a new connection, once per announcement whichever thread met the break
(``_retry``); a reply already in the socket when the write's time is up is read, not handed over.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

try:
    from ssl import SSLWantReadError  # a TLS socket's read with nothing to give and a timeout of 0
except ImportError:  # pragma: no cover - a Python built without ssl
    SSLWantReadError = BlockingIOError  # type: ignore[assignment,misc]

from ..config import mask_url
from ..errors import ConfigError
from ..ratelog import RateLimitedLog
from ..urls import SECRET_OPTIONS, mask_urls_in_text, userinfo_of
from .bus import BusFigures, CacheListener, Notice, SubscribingBus
from .redis_compat import check_connection, check_opened, client_options, wire_options
from .redis_store import dependency_keys, write_dependencies

if TYPE_CHECKING:  # pragma: no cover
    from .._types import MongoDB

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

# KEYS[1] the model's generation key, KEYS[2] the set of cached models, KEYS[3] the TTL of the
# model's dependency keys, KEYS[4] the last generation whose write recorded its dependencies (set
# by every publish: a gap below it means writes of an earlier version, which record none, and
# they count as changing the whole model: ``redis_store``); ARGV[1] channel, ARGV[2] the message up to its generation, ARGV[3] the
# model, ARGV[4] the prefix of its dependency keys, ARGV[5..] the write's dependencies. A model no
# process caches is not announced (its generation still advances, for the shared store): no
# subscriber wakes for it. The dependency keys (``redis_store``) are set only once some shared
# store has read the model (it set their TTL, in the script that read the generation).
_PUBLISH = """
local g = redis.call('INCR', KEYS[1])
local ttl = tonumber(redis.call('GET', KEYS[3]))
if ttl then
  if (tonumber(redis.call('GET', KEYS[4])) or 0) < g - 1 then
    redis.call('SET', ARGV[4] .. 'a', g - 1, 'PX', ttl)  -- writes of a version that records no dependencies
  end
  for i = 5, #ARGV do
    redis.call('SET', ARGV[4] .. ARGV[i], g, 'PX', ttl)
  end
end
redis.call('SET', KEYS[4], g)
if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. g .. '}')
  return 1
end
return 0
"""
_PUBLISH_SHA = hashlib.sha1(_PUBLISH.encode()).hexdigest().encode()  # noqa: S324 - the script's name in Redis
_BACKOFF_S = (0.05, 2.0)
_decode_json = json.JSONDecoder().decode
_WATCHDOG = b"astro_db-watchdog"  # the subscriber's own pings

# How many forks this process descends from (advanced in every child): ``RedisBus.connected``
# and ``publish`` compare it with the bus's own, a list look instead of a ``getpid`` system call
# on every cached read and every write.
_FORKS = [0]


def _forked() -> None:
    _FORKS[0] += 1


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python
    os.register_at_fork(after_in_child=_forked)

# Every bus not closed yet: a process that exits without closing its Database (a script that
# ends, a worker told to stop) still sends the writes it has not announced, at exit.
_OPEN: weakref.WeakSet[RedisBus] = weakref.WeakSet()


@atexit.register
def _send_owed_at_exit() -> None:
    """At interpreter exit, each open bus sends what it still owes (``RedisBus._send_owed``,
    with its bounds; what it cannot send is logged, as at ``close()``). A process killed outright
    runs no exit handlers: what it owed is left to the other processes' TTL."""
    for bus in list(_OPEN):
        try:
            bus._send_owed()
        except Exception:  # noqa: BLE001 - never an exit's failure (it logs what it could not send)
            pass


class _Signal:
    """A wake-up for one waiting thread, as a binary semaphore on one raw lock (released: a
    wake-up is pending): ``set`` from any thread, ``wait`` and ``clear`` from the waiter. What
    ``threading.Event`` does for the publisher thread, without its Python-level ``Condition``
    (a lock made, a waiter list, a notify loop per hand-off): each step is one atomic C call.
    ``wait`` consumes the wake-up; several ``set`` before it are one; a ``set`` while the waiter
    works is kept for its next ``wait`` (at worst one pass that finds nothing to do)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # held: no wake-up pending

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # already released: a wake-up is pending
            pass

    def is_set(self) -> bool:
        return not self._lock.locked()

    def wait(self, timeout: float | None = None) -> bool:
        """Until a wake-up is pending (at most ``timeout`` seconds), and consume it."""
        return self._lock.acquire(timeout=-1 if timeout is None else timeout)

    def clear(self) -> None:
        self._lock.acquire(blocking=False)


def _password_of(url: str) -> tuple[str, ...]:
    """The passwords of a Redis URL, as written and percent-decoded: its userinfo's, and the value
    of any secret-bearing option (``?password=``, which redis-py reads too; none: empty)."""
    written = [userinfo_of(url).partition(":")[2]]
    for option in urlsplit(url).query.replace(";", "&").split("&"):
        name, _, value = option.partition("=")
        if unquote(name).strip().lower() in SECRET_OPTIONS:
            written.append(value)
    return tuple({form for text in written for form in (text, unquote(text))} - {""})


def _pack(args: tuple[bytes, ...]) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args])


def _message_heads(channel: bytes) -> tuple[bytes, bytes]:
    """How a message on ``channel`` begins, as a RESP3 push and as a RESP2 array (same length)."""
    rest = b"3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n" % (len(channel), channel)
    return (b">" + rest, b"*" + rest)


def _frames(buf: bytearray, heads: tuple[bytes, bytes] | None = None, channel: bytes = b"") -> tuple[list[Any], int]:
    """The complete RESP2 / RESP3 frames at the start of ``buf`` and how many bytes they take
    (a frame cut short is left for the next read): an array or push (``*`` / ``>``) of bulk
    strings, integers and simple strings as a list, or one such value; an error reply as an
    ``_Error``. Anything else (a nested array, a map: nothing a subscription or a script call
    receives) raises ``ValueError``. ``heads`` (``_message_heads(channel)``): a message on
    ``channel`` is read by a shorter path, to the same list."""
    frames: list[Any] = []
    used = 0
    while True:
        if heads is not None and buf.startswith(heads, used):
            pos = used + len(heads[0])
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return frames, used
            if buf[pos] == 36:  # $: the message's bulk string
                size = int(buf[pos + 1:eol])
                start = eol + 2
                stop = start + size
                if size >= 0 and len(buf) >= stop + 2 and buf[stop:stop + 2] == b"\r\n":
                    frames.append([b"message", channel, bytes(buf[start:stop])])
                    used = stop + 2
                    continue
                if size >= 0 and len(buf) < stop + 2:
                    return frames, used  # the rest has not arrived yet
            # anything unusual: read the general way below
        frame, end = _frame(buf, used, 0)
        if end < 0:
            return frames, used
        frames.append(frame)
        used = end


def _frame(buf: bytearray, pos: int, depth: int) -> tuple[Any, int]:
    """The value starting at ``buf[pos]`` and the offset past it; ``(None, -1)`` when incomplete."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None, -1
    kind = buf[pos]
    if kind == 36:  # $: a bulk string
        size = int(buf[pos + 1:eol])
        if size < 0:
            return None, eol + 2
        start = eol + 2
        stop = start + size
        if len(buf) < stop + 2:
            return None, -1
        if buf[stop:stop + 2] != b"\r\n":
            raise ValueError("a malformed bulk string from Redis")
        return bytes(buf[start:stop]), stop + 2
    if kind == 58:  # : an integer
        return int(buf[pos + 1:eol]), eol + 2
    if kind == 43:  # + a simple string
        return bytes(buf[pos + 1:eol]), eol + 2
    if kind == 45:  # - an error
        return _Error(bytes(buf[pos + 1:eol])), eol + 2
    if kind in (42, 62) and depth == 0:  # * an array, > a push (RESP3)
        count = int(buf[pos + 1:eol])
        items: list[Any] = []
        end = eol + 2
        for _ in range(max(count, 0)):
            item, end = _frame(buf, end, 1)
            if end < 0:
                return None, -1
            items.append(item)
        return (items if count >= 0 else None), end
    raise ValueError(f"an unexpected reply from Redis: {bytes(buf[pos:pos + 1])!r}")


class _Error(bytes):
    """An error reply of Redis (its text)."""


# how many of the bus's ``timeout_s`` a reconnecting subscriber waits for the publishing
# connection: a send's open and handshake (1 + 2) and reply (2), once more for its one retry, and room
_HELD_FOR = 12
_LATE: Any = object()  # ``_Wire.reply``: the reply has not come (in full) by the deadline


class _Broken(Exception):
    """A send of a model broke its connection (closed since) and the model's one retry is owed
    (``RedisBus._retry``), to be made by a thread that opens a new connection: raised where it
    cannot be made (a writing thread opens no connection; a handed-over reply is only read)."""


class _Wire:
    """The subscriber's connection: opened by redis-py (TLS, password, database, protocol:
    whatever the URL says), then written and read here. A read blocks on the socket until Redis
    sends something or the timeout passes (no polling), and returns every complete frame
    received, so the messages that arrived together are handled in one wake-up; redis-py's
    per-message reading machinery (a poll, two socket timeout changes, a parser call per
    element, its own health check) is not on the path. The socket is redis-py's private
    ``Connection._sock``: a redis-py whose connections lack it, or hold something else there,
    raises a ``ConfigError`` here or in ``open`` (``redis_compat``)."""

    def __init__(self, client: Any, redis: Any, *, timeout_s: float = 4.0, channel: bytes | None = None) -> None:
        pool = client.connection_pool
        self._channel = channel or b""
        self._heads = _message_heads(channel) if channel else None  # the subscriber's messages: the short path
        self.timeout_s = timeout_s  # the bound of a ``call``
        # no health check of redis-py's (the subscriber pings on its own schedule: _listen), no
        # maintenance notifications (redis-py never reads this connection after the handshake)
        self._conn = pool.connection_class(**wire_options(redis, pool.connection_kwargs))
        check_connection(redis, self._conn)
        self._redis = redis
        self._sock: Any = None
        self._buffer = bytearray()
        self._timeout: float | None = None
        self._closed = False
        self.owed = False  # a command was sent whose reply has not been read in full
        self._pid = os.getpid()  # a forked child never shuts down its parent's connection

    def open(self) -> None:
        """Connect (redis-py: the handshake, AUTH / HELLO / SELECT, every reply read) and take
        the socket; a ``ConfigError`` when it is not one the bus can use (``check_opened``)."""
        self._conn.connect()
        try:
            if not self._closed:
                self._sock = check_opened(self._redis, self._conn)
        except ConfigError:
            if not self._closed:
                self.close()  # not a connection the bus can read: released at once
                raise
        if self._closed:  # interrupt() or close() while connecting
            raise self._redis.ConnectionError("the subscriber's connection is closed")

    def send(self, *args: bytes) -> None:
        self._sock.sendall(_pack(args))

    def read(self, timeout: float) -> list[Any]:
        """The frames received within ``timeout`` seconds (``[]``: none, or only part of one)."""
        if self._timeout is None or abs(timeout - self._timeout) > 0.05:  # a change of the socket's timeout is a syscall
            self._sock.settimeout(timeout)
            self._timeout = timeout
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:  # socket.timeout; an SSL read's too
            return []
        if not chunk:
            if self._closed:
                return []  # interrupt(): the caller looks at why (close, a doubt)
            raise self._redis.ConnectionError("Redis closed the subscriber's connection")
        buffer = self._buffer
        buffer += chunk
        frames, used = _frames(buffer, self._heads, self._channel)
        del buffer[:used]
        for frame in frames:
            if isinstance(frame, _Error):
                raise self._redis.ConnectionError(f"Redis answered an error: {frame[:200]!r}")
        return frames

    def call(self, *args: bytes) -> Any:
        """Send one command and return its reply (an ``_Error`` for an error reply), opening the
        connection first if need be; Redis not answering within ``timeout_s`` raises redis's
        ``TimeoutError`` (the reply stays owed: the connection is not for further use), a broken
        connection or reply its ``ConnectionError``."""
        if self._sock is None:
            self.open()
        self.request(*args)
        reply = self.reply(time.monotonic() + self.timeout_s)
        if reply is _LATE:
            raise self._redis.TimeoutError(f"Redis did not answer within {self.timeout_s:g}s")
        return reply

    @property
    def ready(self) -> bool:
        """Open, and no reply owed: a command may be sent now."""
        return self._sock is not None and not self._closed and not self.owed

    def request(self, *args: bytes) -> None:
        """Send one command; its reply is read by ``reply``. One at a time: while a reply is
        owed nothing else is sent (the next reply read is always the owed command's)."""
        if self.owed:
            raise self._redis.ConnectionError("a command was sent while a reply was still owed")
        self.owed = True  # from now on: a partial send also leaves the connection unusable
        try:
            self._sock.sendall(_pack(args))
        except (OSError, ValueError) as exc:
            raise self._redis.ConnectionError(f"{type(exc).__name__}: {exc}") from None

    def reply(self, deadline: float) -> Any:
        """The owed command's reply (an ``_Error`` for an error reply), or ``_LATE`` when it has
        not come in full by ``deadline`` (``time.monotonic()``): it stays owed, what arrived of
        it is kept, and a later ``reply`` reads the rest. Once the deadline has passed, what has
        already arrived is read once without waiting (a timeout of 0) before ``_LATE`` is
        answered: a reply in the socket is never late. A broken connection, or more than one
        reply, raises redis's ``ConnectionError`` (the connection is not used again)."""
        buffer = self._buffer
        last = False  # the deadline has passed: one read of what has already arrived, never waiting
        try:
            while True:
                if last:
                    return _LATE
                left = deadline - time.monotonic()
                if left <= 0:
                    # a reply that came in time but is read a moment late (this thread was
                    # descheduled) is not late: read what the socket holds without waiting (a
                    # timeout of 0); the next read sets a timeout again
                    last = True
                    self._sock.settimeout(0.0)
                    self._timeout = None
                # a change of the socket's timeout is a system call: made when the bound shrinks
                # by more than a millisecond (so a read never outlasts the deadline by more) or
                # grows by more than 50 ms
                elif self._timeout is None or left < self._timeout - 0.001 or left > self._timeout + 0.05:
                    self._sock.settimeout(left)
                    self._timeout = left
                try:
                    chunk = self._sock.recv(65536)
                except (TimeoutError, BlockingIOError, SSLWantReadError):  # nothing (more) has come
                    continue
                if not chunk:
                    raise self._redis.ConnectionError("Redis closed the connection")
                buffer += chunk
                frames, used = _frames(buffer)
                if frames:
                    if len(frames) > 1 or used != len(buffer):
                        raise self._redis.ConnectionError("Redis answered more than was asked")
                    del buffer[:used]
                    self.owed = False
                    return frames[0]
        except (OSError, ValueError) as exc:
            raise self._redis.ConnectionError(f"{type(exc).__name__}: {exc}") from None

    @property
    def closed(self) -> bool:
        return self._closed

    def interrupt(self) -> None:
        """Wake a read under way (from another thread): it sees the connection closed."""
        self._closed = True
        sock = self._sock
        if sock is not None and os.getpid() == self._pid:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed or never connected
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self._conn.disconnect()
        except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is gone either way
            pass


class RedisBus(SubscribingBus):
    """Invalidations across processes through one Redis (``cache_bus="redis://..."``)."""

    kind = "redis"

    def __init__(self, url: str, namespace: str, *, timeout_s: float = 2.0, health_check_s: float = 1.0,
                 answer_s: float = 2.0, stall_s: float = 0.25, wait_s: float = 0.02, log_interval_s: float = 10.0) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the redis extra is part of dev
            raise ConfigError("cache_bus=redis://... needs the redis client: pip install 'astro_db[redis]'",
                              key="cache_bus") from exc
        self._redis = redis
        self._url = url
        self.masked_url = mask_url(url)
        self._password = _password_of(url)  # never in a log line (``_said``)
        self.channel = f"astro_db:{namespace}:invalidate"
        self.generation_prefix = f"astro_db:{namespace}:gen:"
        self.key_prefix = f"astro_db:{namespace}:"
        self.cached_key = f"astro_db:{namespace}:cached"  # the models some process caches (announced)
        self._watched: set[str] = set()  # the models this process registered since it subscribed
        self.origin = uuid.uuid4().hex
        _OPEN.add(self)
        self._timeout_s = timeout_s
        self._health_check_s = health_check_s
        self.answer_s = answer_s  # a subscriber ping unanswered this long: the connection is dead
        self.stall_s = stall_s  # a publish under way this long: Redis is frozen or slow
        self.wait_s = wait_s  # how long a write waits for its announcement (the tight bound)
        self._log = RateLimitedLog(log, log_interval_s)
        self.figures = BusFigures(self.kind)
        self._listener: weakref.ReferenceType[Any] | None = None
        self._lock = threading.Lock()
        self._connected = False
        self._reason: str | None = "not connected yet"
        self._stop = threading.Event()
        self._doubt = threading.Event()  # set: the subscriber must drop everything and reconnect
        self._pending: dict[str, int] = {}  # model -> number of its latest write not yet announced
        # model -> what its writes not yet taken by the publisher changed (None: anything)
        self._notices: dict[str, Notice | None] = {}
        self._done: dict[str, int] = {}  # model -> the latest write number an announcement covered
        self._numbers = itertools.count(1)
        self._announced = threading.Condition(self._lock)
        self._wake = _Signal()  # set: the publisher has something to send
        self._publisher: threading.Thread | None = None
        # a thread of the bus ended by what no ``except Exception`` catches (``_lives``): started
        # again at the next look at ``connected``
        self._revive: threading.Thread | None = None
        self._sending_since: float | None = None  # when the send under way began (None: idle)
        self._generations: dict[str, int] = {}  # the last generation seen per model (gap detection)
        self._thread: threading.Thread | None = None
        self._wire: _Wire | None = None  # the subscriber's connection now
        self._pid = os.getpid()
        self._forks = _FORKS[0]  # the forks this process descends from when the bus was made (or took over)
        self._client = self._new_client()
        _Wire(self._client, redis)  # a ConfigError now when redis-py's connections lack what the bus reads
        self._publish_wire: _Wire | None = None  # the connection the publishes are sent on (made on first use)
        self._script_args: dict[str, tuple[tuple[bytes, ...], tuple[bytes, bytes]]] = {}  # model -> ``_model_args``
        # the publishing connection's: a writing thread (``_publish_now``), the publisher thread, or
        # the subscriber once it has reconnected; passed with a send whose reply is late (``_handed``)
        self._send_lock = threading.Lock()
        self._handed: tuple[_Wire, tuple[bytes, ...], str, int, float] | None = None
        self._late = 0  # sends whose reply the publisher thread read (handed over by a writing thread)
        # the models whose last send broke its connection: their next send is their one retry
        # (``_retry``; read and changed with ``_send_lock`` held)
        self._broken: set[str] = set()
        # the registration of a cached model runs on a reading thread: its client (made on first
        # use) is bounded by stall_s, so a frozen Redis costs that read a quarter of a second
        # (then caching is off until the subscriber is back), not the 4 s socket timeout
        self._register_client: Any = None

    def _new_client(self, timeout_s: float | None = None) -> Any:
        """A client (``timeout_s``: the socket bound of a reading thread's command, else the
        subscriber's and publisher's)."""
        redis = self._redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        extra = client_options(redis, self._url)
        try:
            if timeout_s is not None:
                return redis.Redis.from_url(self._url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                            retry=Retry(NoBackoff(), 0), **extra)
            return redis.Redis.from_url(
                self._url, socket_connect_timeout=self._timeout_s, socket_timeout=self._timeout_s * 2,
                health_check_interval=self._health_check_s, retry=Retry(NoBackoff(), 1), **extra)
        except ValueError as exc:
            raise ConfigError(f"cache_bus: {str(exc).replace(self._url, self.masked_url)}", key="cache_bus") from None

    # --- state -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the subscriber is subscribed and nothing has cast doubt since."""
        if _FORKS[0] != self._forks:
            self._after_fork()
        if self._revive is not None:
            self._start_again()
        return self._connected and not self._doubt.is_set()

    @property
    def reason(self) -> str | None:
        """Why the bus is not connected (``None`` when it is)."""
        return None if self.connected else (self._reason or "reconnecting")

    def attach(self, listener: CacheListener) -> None:
        """Deliver drops to ``listener`` (held weakly) and start the subscriber."""
        self._listener = weakref.ref(listener)
        self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._start_threads()

    def _start_threads(self) -> None:  # called with the lock held
        """The subscriber and the publisher thread, each unless it runs."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._lives, args=(self._run, "subscriber"),
                                            name=f"astro_db-cache-bus-{self.origin[:8]}", daemon=True)
            self._thread.start()
        self._start_publisher()

    def _lives(self, loop: Callable[[], None], what: str) -> None:
        """A thread of the bus: ``loop``, which catches every ``Exception`` and returns only when
        the bus closes (or cannot work: ``ConfigError``). What no ``except Exception`` catches
        (``SystemExit`` raised in the thread, gevent's ``GreenletExit``) ends the thread, as
        always; unless the bus is closing, the bus stops being trusted (what is owed is sent by
        the subscriber once back) and the next look at ``connected`` (a read or a write of a
        cached model) starts the thread again (``_start_again``)."""
        try:
            loop()
        except BaseException as exc:
            if not self._stop.is_set():
                self._log.error("ended", "cache bus %s: its %s thread was ended by %s; this process stops caching "
                                "until it runs again", self.masked_url, what, type(exc).__name__)
                self._lose_trust(f"{what} thread ended by {type(exc).__name__}")  # what is pending: sent on reconnecting
                self._revive = threading.current_thread()
            raise

    def _start_again(self) -> None:
        """The first look at ``connected`` after a thread of the bus was ended by what no
        ``except Exception`` catches (``_lives``) starts it again, unless the bus has closed."""
        ended = self._revive
        if ended is None or ended is threading.current_thread():
            return  # started again by another thread, or asked by the ending thread itself
        ended.join(timeout=self._timeout_s)  # it may still be unwinding
        with self._lock:
            if self._revive is not ended:
                return
            self._revive = None
            if self._thread is not None and not self._stop.is_set():
                self._start_threads()

    def _start_publisher(self) -> None:  # called with the lock held
        if self._publisher is None or not self._publisher.is_alive():
            self._publisher = threading.Thread(target=self._lives, args=(self._publish_loop, "publisher"),
                                               name=f"astro_db-cache-publish-{self.origin[:8]}",
                                               daemon=True)
            self._publisher.start()

    def open(self, database: MongoDB, in_flight: Any = None) -> None:
        """``Database.connect()``: (re)start the subscriber (after a ``disconnect()``); its
        connections are Redis', so it counts no call in flight (``in_flight``)."""
        self.start()

    def close(self) -> None:
        """Send what is still owed (``_send_owed``), stop the subscriber (the cache stops trusting
        the bus) and release the connections."""
        self._send_owed()
        _OPEN.discard(self)
        self._stop.set()
        self._wake.set()
        self._interrupt()
        for thread in (self._thread, self._publisher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=self._timeout_s * 3)
        self._connected = False
        self._reason = "closed"
        self._client.close()
        self._take_send_lock()
        try:
            if self._publish_wire is not None:
                self._publish_wire.close()
                self._publish_wire = None
        finally:
            self._send_lock.release()
        if self._register_client is not None:
            self._register_client.close()

    def _send_owed(self) -> None:
        """``close()``: the writes of this process not announced yet are sent before the bus
        closes, on the publishing connection (opened here if need be), whether or not the
        subscriber is connected: a short-lived process (a command-line write, a restore) may
        close before its subscriber has even subscribed, and nothing would send them afterwards.
        Bounded: the publishing connection is waited for at most twice ``timeout_s``, then each
        send (and its one retry) within the connection's own timeouts; what cannot be sent is
        logged and left, as for a publisher cut off from Redis: the other processes' caches keep
        those models' entries until their TTL."""
        if not self._pending or self._stop.is_set() or _FORKS[0] != self._forks:
            return
        if not self._send_lock.acquire(timeout=self._timeout_s * 2):
            self._log.error("owed", "cache bus %s: closed with writes to %s not announced (the publishing "
                            "connection stayed busy)", self.masked_url, ", ".join(sorted(self._pending)))
            return
        try:
            self._flush_pending()
        except Exception as exc:  # noqa: BLE001 - Redis refused or is gone: said, never the closing caller's failure
            self.figures.error(f"close: {self._said(exc)}")
            self._log.error("owed", "cache bus %s: closed with writes to %s not announced (%s); other processes "
                            "drop those entries at their TTL", self.masked_url, ", ".join(sorted(self._pending)),
                            self._said(exc))
        finally:
            self._send_lock.release()

    def _take_send_lock(self) -> None:
        """``close()``: the publishing connection's lock, from whoever has it, or with the send a
        writing thread handed over as the publisher thread stopped (the reply left unread: the
        connection is closed)."""
        while True:
            handed, self._handed = self._handed, None
            if handed is not None:  # the lock came with it
                handed[0].close()
                self._sending_since = None
                return
            if self._send_lock.acquire(timeout=0.05):
                return

    def _after_fork(self) -> None:
        """In a forked child (gunicorn --preload) the subscriber thread did not survive: the
        entries inherited are not trusted, and a subscriber of its own is started."""
        with self._lock:
            self._forks = _FORKS[0]
            if os.getpid() == self._pid:
                return
            self._pid = os.getpid()
            self._connected = False
            self._reason = "forked: subscribing again"
            self._thread = None
            self._wire = None  # the parent's socket: never shut down from here
            self._publisher = None
            self._sending_since = None
            self._send_lock = threading.Lock()  # it may have been held by a thread of the parent
            self._handed = None
            self._broken = set()
            self._client = self._new_client()
            self._publish_wire = None  # the parent's connection: left alone
            self._register_client = None
            self._watched = set()
        self._drop_all("forked process")
        self.start()

    # --- publishing --------------------------------------------------------------------------

    def publish(self, model: str, origin: CacheListener | None = None, notice: Notice | None = None) -> None:
        """Announce a committed write to ``model``, from the writing thread itself while Redis
        answers (``_publish_now``): the write sends the announcement on the bus's publishing
        connection and reads Redis's reply, all within ``wait_s`` (a healthy Redis answers in
        well under a millisecond), so the generation has moved on when the write returns. Past
        that it returns anyway and the publisher thread finishes the announcement. A send that
        has been under way for more than ``stall_s`` marks the bus down (this process drops its
        cache) rather than holding the write that succeeded; while a send is late or the bus is
        down, the write sends nothing and waits for nothing."""
        if _FORKS[0] != self._forks:
            self._after_fork()
        with self._lock:
            number = self._pending[model] = next(self._numbers)
            if model in self._notices:  # writes not sent yet coalesce: what any of them changed
                earlier = self._notices[model]
                self._notices[model] = notice.merged(earlier) if notice is not None and earlier is not None else None
            else:
                self._notices[model] = notice.bare() if notice is not None else None  # without images
            if self._publisher is None and self._thread is not None:
                self._start_publisher()
        since = self._sending_since
        busy_s = time.monotonic() - since if since is not None else 0.0
        if busy_s > self.stall_s and not self._doubt.is_set():
            self.figures.error(f"publish: no answer from Redis within {self.stall_s:g}s")
            self._log.error("stalled", "cache bus %s: Redis has not answered a publish for %.1f s; this process "
                            "stops caching until its subscriber reconnects", self.masked_url, busy_s)
            self._lose_trust("publish stalled: Redis does not answer")
        if busy_s > self.wait_s or not self.connected:
            self._wake.set()  # Redis is slow or down: nothing to wait for (the publisher thread, or the subscriber once back, sends it)
            return
        self._publish_now(model, number, time.monotonic() + self.wait_s)

    def _publish_now(self, model: str, number: int, deadline: float) -> None:
        """The writing thread's own publish: it takes the publishing connection (waiting for it
        until ``deadline`` while another thread has it), sends what is pending (this write's
        model among them; a model written by several threads at once is announced once for all
        of them) and reads each reply until ``deadline``. What it cannot finish by then is the
        publisher thread's: a reply not back is handed over with the connection (``_handed``:
        the write stops waiting, the bus goes down only on a stall), what is still pending is
        sent after it. No connection open (the first write, or the one after a broken one):
        the publisher thread opens one (a handshake's bounds are seconds, not ``wait_s``) and
        the write waits for its announcement until ``deadline``. A failed publish is handled as
        the publisher thread's (``_publish_failed``): the write stands."""
        if not self._send_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            self._wake.set()  # another thread has had the connection all along: the announcement follows
            return
        late = failed = False
        try:
            while self._pending and self.connected and time.monotonic() < deadline:
                wire = self._publish_wire
                if wire is None or not wire.ready:
                    break
                if self._flush_pending(deadline):
                    late = True
                    break
        except _Broken:
            pass  # the connection broke (it is closed): the publisher thread sends again on a new one, the one retry
        except ConfigError as exc:
            failed = True
            self._incompatible(exc)
            self._lose_trust(str(exc))
        except Exception as exc:  # noqa: BLE001 - Redis refused, a retry broken too, or anything else: never the write's failure
            failed = True
            self._publish_failed(exc)
        finally:
            if not late:
                self._release_send()
        if late:
            self._wake.set()  # the publisher thread reads the reply (``_handed`` was set first)
            return
        if failed or self._done.get(model, 0) >= number:
            return
        self._wake.set()  # not sent from here (no connection open, or a broken one): the publisher thread's
        left = deadline - time.monotonic()
        if left > 0 and self.connected:
            with self._announced:
                # until announced, or the bus has lost trust (``_lose_trust``: nothing is read from
                # any cache now, so nothing is left to wait for)
                self._announced.wait_for(lambda: self._done.get(model, 0) >= number or self._doubt.is_set(),
                                         timeout=left)

    def watch(self, model: str) -> bool:
        """Register ``model`` as cached (``SADD``, once per model per subscription) before this
        process reads it for its cache: writes to a model no process registered are not
        announced. A read that began after the registration sees every write the registration
        did not (those came before it); every later write is announced. False (nothing may be
        stored) while the bus is down or Redis refuses."""
        if model in self._watched:
            return True
        if not self.connected:
            return False
        try:
            if self._register_client is None:
                self._register_client = self._new_client(self.stall_s)
            self._register_client.sadd(self.cached_key, model)
        except self._redis.RedisError as exc:
            self.figures.error(f"register: {type(exc).__name__}: {exc}")
            self._log.error("register", "cache bus %s: could not register %s as cached (%s); this process stops "
                            "caching until its subscriber reconnects", self.masked_url, model, type(exc).__name__)
            self._lose_trust(f"register failed: {type(exc).__name__}")
            return False
        self._watched.add(model)
        return True

    def watching(self, model: str) -> bool:
        """Whether ``model`` is registered since the current subscription."""
        return model in self._watched

    def unsent(self, model: str) -> bool:
        """Whether a write to ``model`` made here has not been announced yet (its generation in
        Redis is not advanced: the shared store must not be read for it meanwhile)."""
        return model in self._pending

    def _publish_loop(self) -> None:
        """The publisher thread: what a write could not finish within ``wait_s``. It sleeps until
        woken (no periodic wake-up), then reads a reply handed over with the connection and its
        ``_send_lock`` (``_handed``) and sends what is pending while the bus is connected (while
        it is not, the subscriber sends it when it is back, before trusting the bus again). It
        never blocks on the connection another thread has: that thread wakes it again when it
        lets the connection go with something still pending (``_release_send``). Whatever a pass
        raises is a failed publish (``_publish_failed``): the thread lives on, the connection let go."""
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            holding = False  # ``_send_lock``
            try:
                handed = self._handed
                if handed is not None:
                    self._handed = None  # the connection and ``_send_lock`` are this thread's now
                elif (self._stop.is_set() or not self._pending or not self.connected
                      or not self._send_lock.acquire(blocking=False)):
                    continue
                holding = True
                if handed is not None:
                    try:
                        self._finish(handed)
                    except _Broken:
                        pass  # broke with the reply owed (closed): sent again below on a new one, its one retry
                if self._pending and self.connected and not self._stop.is_set():
                    self._flush_pending()
            except ConfigError as exc:
                self._incompatible(exc)
                self._lose_trust(str(exc))
            except Exception as exc:  # noqa: BLE001 - Redis refused, or anything else (a bug): a failed publish, never the end of this thread
                self._publish_failed(exc)
            finally:
                if holding:
                    self._release_send()

    def _publish_failed(self, exc: Exception) -> None:
        """A publish failed, whatever raised it: counted, logged (``_said``), and this process
        stops caching until its subscriber has reconnected (and sent what is pending)."""
        said = self._said(exc)
        self.figures.error(f"publish: {said}")
        self._log.error("publish", "cache bus %s: could not publish writes (%s); this process stops "
                        "caching until its subscriber reconnects", self.masked_url, said)
        self._lose_trust(f"publish failed: {type(exc).__name__}")

    def _said(self, exc: BaseException) -> str:
        """``exc`` as the logs and ``metrics()`` show it: its type and message, any URL in it
        masked and the bus URL's password never shown (the message may come from anywhere)."""
        text = mask_urls_in_text(str(exc)).replace(self._url, self.masked_url)
        for secret in self._password:
            text = text.replace(secret, "***")
        return f"{type(exc).__name__}: {text[:1000]}"

    def _release_send(self) -> None:
        """Let the publishing connection go; the publisher thread is woken when something is
        still pending (a write that came meanwhile and did not get the connection in time)."""
        self._send_lock.release()
        if self._pending:
            self._wake.set()

    def _announcement(self, model: str, notice: Notice | None) -> tuple[bytes, ...]:
        """The publish script's keys and arguments for a write to ``model`` (``notice``: what it changed)."""
        body: dict[str, Any] = {"m": model, "o": self.origin, "t": time.time()}
        if notice is not None and notice.ids is not None:
            body.update(notice.to_wire())  # digests of the ids and field names: no document, no raw id
        head = json.dumps(body)[:-1] + ', "g": '
        args = self._script_args.get(model)
        if args is None:
            args = self._script_args[model] = self._model_args(model)
        return (*args[0], head.encode(), *args[1], *[name.encode() for name in write_dependencies(notice)])

    def _send(self, model: str, notice: Notice | None) -> None:
        """Announce a write to ``model`` and wait for Redis's answer (the publisher thread, or the
        subscriber once it has reconnected; ``_send_lock`` held)."""
        args = self._announcement(model, notice)
        self._sending_since = time.monotonic()
        try:
            published = self._run_script(model, args)
        finally:
            self._sending_since = None
        self._count(model, published)

    def _send_now(self, model: str, notice: Notice | None, number: int, deadline: float) -> bool:
        """Announce a write to ``model`` on the open publishing connection and read the answer
        until ``deadline`` (the writing thread's ``_publish_now``; ``_send_lock`` held). False:
        the answer is late; the send is handed over (``_handed``), ``_send_lock`` with it."""
        args = self._announcement(model, notice)
        wire = self._publish_wire
        assert wire is not None  # _publish_now looked: open and ready
        self._sending_since = started = time.monotonic()
        try:
            published = self._script(wire, args, deadline)
        except BaseException as exc:
            self._sending_since = None
            self._unusable(wire)
            if isinstance(exc, Exception) and self._retry(model, exc):
                raise _Broken from exc  # the publisher thread sends it again on a new connection
            raise
        if published is _LATE:
            self._handed = (wire, args, model, number, started)  # _sending_since stays: a stall is seen
            return False
        self._sending_since = None
        self._count(model, published)
        return True

    def _finish(self, handed: tuple[_Wire, tuple[bytes, ...], str, int, float]) -> None:
        """The publisher thread reads the reply of a send handed over by a writing thread, within
        the bound of any send (``timeout_s`` of the connection, counted from the send): the
        model is announced then, or (no answer: Redis frozen) the connection is dropped and the
        model stays pending, owed in full."""
        wire, args, model, number, started = handed
        try:
            published = self._script(wire, args, started + wire.timeout_s)
            if published is _LATE:
                raise self._redis.TimeoutError(f"Redis did not answer within {wire.timeout_s:g}s")
        except BaseException as exc:
            self._unusable(wire, always=True)
            if isinstance(exc, Exception) and self._retry(model, exc):
                raise _Broken from exc  # sent again on a new connection (``_publish_loop``)
            raise
        finally:
            self._sending_since = None
        self._late += 1
        self._count(model, published)
        self._announced_up_to(model, number)

    def _retry(self, model: str, exc: Exception) -> bool:
        """Whether a send of ``model`` that failed with ``exc`` is made again on a new connection
        (``_send_lock`` held), the rule of every path (a writing thread's send, a handed-over
        reply, ``_run_script``): only when the connection broke (redis's ``ConnectionError``; it
        is closed) and only once per announcement (the drivers' one retry: a script run twice
        advances the generation twice, which subscribers take for a lost message). The retry
        owed is kept (``_broken``) until the model's next send ends, however it ends; a retry
        that fails too is a failed publish, the model still pending."""
        if isinstance(exc, self._redis.ConnectionError) and model not in self._broken:
            self._broken.add(model)
            return True
        self._broken.discard(model)
        return False

    def _count(self, model: str, published: int) -> None:
        """One announcement of ``model`` sent (no retry owed any more): ``sent``, or
        ``unannounced`` when no process caches the model (the script advanced its generation
        and told nobody)."""
        if self._broken:  # (a look, not a call, on the write's own path)
            self._broken.discard(model)
        if published:
            self.figures.count_sent()
        else:
            self.figures.count("unannounced")

    def _unusable(self, wire: _Wire, *, always: bool = False) -> None:
        """After a failed send: ``wire`` is closed when a reply is still owed on it (the next reply
        read would not be the next command's) or ``always``."""
        if always or wire.owed or wire.closed:
            wire.close()
            if self._publish_wire is wire:
                self._publish_wire = None

    def _script(self, wire: _Wire, args: tuple[bytes, ...], deadline: float) -> Any:
        """``EVALSHA`` of the publish script (``EVAL`` when Redis does not know it yet) on
        ``wire`` and its answer by ``deadline`` (1: published, 0: no process caches the model),
        or ``_LATE`` (the reply is still owed: a later call with the same arguments reads it)."""
        if not wire.owed:
            wire.request(b"EVALSHA", _PUBLISH_SHA, b"4", *args)
        reply = wire.reply(deadline)
        if isinstance(reply, _Error) and reply.startswith(b"NOSCRIPT"):
            wire.request(b"EVAL", _PUBLISH.encode(), b"4", *args)
            reply = wire.reply(deadline)
        if reply is _LATE:
            return reply
        if isinstance(reply, _Error):
            raise self._redis.ResponseError(reply.decode(errors="replace")[:300])
        if not isinstance(reply, int):
            raise self._redis.ResponseError(f"the publish script answered {reply!r:.100}")
        return reply

    def _model_args(self, model: str) -> tuple[tuple[bytes, ...], tuple[bytes, bytes]]:
        """The publish script's arguments for ``model`` that do not change from write to write,
        encoded once per model: before the message, KEYS[1..4] and ARGV[1] (the channel); after
        it, ARGV[3] (the model) and ARGV[4] (the prefix of its dependency keys)."""
        dependencies, dependency_ttl, recorded = dependency_keys(self.key_prefix, model)
        before = (self.generation_prefix + model, self.cached_key, dependency_ttl, recorded, self.channel)
        return tuple(arg.encode() for arg in before), (model.encode(), dependencies.encode())

    def _run_script(self, model: str, args: tuple[bytes, ...]) -> int:
        """The publish script for a write to ``model`` on the bus's publishing connection (opened
        here when there is none or it was closed; ``_send_lock`` held), its answer waited for up
        to the connection's ``timeout_s``: 1 when it published. A broken connection is replaced
        and the call made once more, unless this call was the model's retry already (``_retry``:
        one retry per announcement, on every path); a timeout (Redis frozen or slow) is not retried."""
        while True:
            wire = self._publish_wire
            if wire is None or wire.closed:
                wire = self._publish_wire = _Wire(self._client, self._redis, timeout_s=self._timeout_s * 2)
            try:
                if not wire.ready:
                    wire.open()
                reply = self._script(wire, args, time.monotonic() + wire.timeout_s)
                if reply is _LATE:
                    raise self._redis.TimeoutError(f"Redis did not answer within {wire.timeout_s:g}s")
            except self._redis.RedisError as exc:
                self._unusable(wire, always=isinstance(exc, self._redis.ConnectionError))
                if self._retry(model, exc):
                    continue
                raise
            return int(reply)

    def _flush_pending(self, deadline: float | None = None) -> bool:
        """Publish what is pending, ``_send_lock`` held (raises while Redis refuses; what was not
        sent stays pending). A model written again while it was being sent stays pending for
        another announcement. ``deadline``: the writing thread's (``_send_now``): models not
        sent by then stay pending with what their writes changed; True when a reply is late
        (the send and ``_send_lock`` are handed over to the publisher thread)."""
        with self._lock:
            pending = sorted(self._pending.items())
            taken = {model: self._notices.pop(model, None) for model, _ in pending}
        sent: set[str] = set()
        late = False
        try:
            for model, number in pending:
                if deadline is None:
                    self._send(model, taken[model])
                elif time.monotonic() >= deadline:
                    break
                elif not self._send_now(model, taken[model], number, deadline):
                    sent.add(model)  # in flight: announced by the publisher thread
                    late = True
                    break
                sent.add(model)
                self._announced_up_to(model, number)
        except BaseException:
            with self._lock:  # what was taken and not sent is owed in full: the whole model
                for model, _ in pending:
                    if model not in sent:
                        self._notices[model] = None
            raise
        if len(sent) < len(pending):
            with self._lock:  # not sent by the deadline: owed with what its writes changed
                for model, _ in pending:
                    if model not in sent:
                        notice = taken[model]
                        if model in self._notices:
                            later = self._notices[model]
                            self._notices[model] = notice.merged(later) if notice is not None and later is not None else None
                        else:
                            self._notices[model] = notice
        return late

    def _announced_up_to(self, model: str, number: int) -> None:
        with self._announced:
            self._done[model] = max(self._done.get(model, 0), number)
            if self._pending.get(model) == number:
                del self._pending[model]
            self._announced.notify_all()

    def _incompatible(self, exc: ConfigError) -> None:
        """The installed redis-py cannot serve the bus (``redis_compat``): said at ERROR (once per
        10 s) and kept as the reason the bus is down; the subscriber stops (it would fail again)."""
        self.figures.error(f"redis-py: {exc}")
        self._reason = str(exc)
        self._log.error("incompatible", "cache bus %s: %s; caching stays off", self.masked_url, exc)

    def _lose_trust(self, reason: str) -> None:
        self._reason = reason
        self._doubt.set()
        self._drop_all(reason)
        with self._announced:  # writes waiting for their announcement return now, not at wait_s
            self._announced.notify_all()
        self._interrupt()  # the subscriber reconnects now, not at its next health check

    def _interrupt(self) -> None:
        wire = self._wire
        if wire is not None:
            wire.interrupt()

    # --- subscribing -------------------------------------------------------------------------

    def _run(self) -> None:
        delay, first = _BACKOFF_S[0], True
        while not self._stop.is_set():
            wire: _Wire | None = None
            try:
                wire = self._wire = _Wire(self._client, self._redis, channel=self.channel.encode())
                early = self._subscribe(wire, reconnect=not first)
                first, delay = False, _BACKOFF_S[0]
                self._listen(wire, early)
            except ConfigError as exc:  # redis-py's connections are not what the bus reads: retrying cannot help
                self._incompatible(exc)
                break
            except Exception as exc:  # noqa: BLE001 - Redis, the socket, or anything else (a bug): reconnect, never end the thread
                if self._stop.is_set():
                    break  # close() woke the read: nothing went wrong
                said = self._said(exc)
                self.figures.error(f"subscriber: {said}")
                if self._connected:
                    self._log.warning("lost", "cache bus %s lost (%s): caching is off until it is back",
                                      self.masked_url, said)
                else:  # never connected, or not back yet: said once per interval, not only in metrics()
                    self._log.warning("unreachable", "cache bus %s cannot be reached (%s): caching stays off "
                                      "until it can", self.masked_url, said)
                self._reason = said[:300]
            finally:
                was_connected = self._connected
                self._connected = False
                if was_connected:
                    self._drop_all("subscriber disconnected", count=False)
                if wire is not None:
                    wire.close()
            self._stop.wait(delay)
            delay = min(delay * 2, _BACKOFF_S[1])

    def _subscribe(self, wire: _Wire, *, reconnect: bool) -> list[Any]:
        """Subscribe, wait for the confirmation, drop everything, then trust the bus; the frames
        that came after the confirmation in the same read (delivered first by ``_listen``)."""
        wire.open()
        wire.send(b"SUBSCRIBE", self.channel.encode())
        deadline = time.monotonic() + self._timeout_s * 2
        after: list[Any] | None = None  # what came after the confirmation in the same read
        while after is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._redis.TimeoutError("no subscribe confirmation")
            if wire.closed:
                raise self._redis.ConnectionError("the subscriber's connection was closed")
            frames = wire.read(min(left, self._timeout_s))
            for n, frame in enumerate(frames):
                if isinstance(frame, list) and frame and frame[0] == b"subscribe":
                    after = frames[n + 1:]  # nothing is published to this connection before it
                    break
        self._generations = {}
        self._watched = set()  # registered again before the next entry is stored (Redis may have restarted)
        self._doubt.clear()
        # behind a send under way (a write's, or one handed over: at most its bounds, a retry
        # included); never for ever: a connection held past that (a thread that can no longer
        # let it go) is a failed subscription, tried again after the backoff
        if not self._send_lock.acquire(timeout=self._timeout_s * _HELD_FOR):
            raise self._redis.TimeoutError(f"the publishing connection has been held for over "
                                           f"{self._timeout_s * _HELD_FOR:g}s")
        try:
            self._flush_pending()
        finally:
            self._release_send()
        self._drop_all("reconnected" if reconnect else "subscribed", count=reconnect)
        if reconnect:
            self.figures.count("reconnects")
            log.info("cache bus %s reconnected: every cached entry was dropped", self.masked_url)
        self._reason = None
        self._connected = True
        if self._pending:  # written while it reconnected (the publisher thread passed: not connected then)
            self._wake.set()
        return after

    def _listen(self, wire: _Wire, first: list[Any] | None = None) -> None:
        """Block on the connection until Redis says something or a health check is due: every
        message already received is delivered in one go (``_deliver_batch``), in order. Redis is
        pinged once it has been silent for ``health_check_s``, and the connection given up when
        the ping is not answered within ``answer_s``; ``close()`` and a doubt (a failed publish)
        wake the read at once (``_Wire.interrupt``)."""
        answered = time.monotonic()  # when Redis last said anything on this connection
        pinged: float | None = None  # when the unanswered watchdog ping was sent
        channel = self.channel.encode()
        frames = first or []
        while True:
            batch = [frame[2] for frame in frames
                     if isinstance(frame, list) and len(frame) == 3 and frame[0] == b"message" and frame[1] == channel]
            if batch:
                self._deliver_batch(batch)
            if self._stop.is_set():
                return
            if self._listener is not None and self.listening() is None:
                self._stop.set()  # the cache (its Database) was garbage-collected: nothing to serve
                return
            if self._doubt.is_set():
                raise self._redis.ConnectionError(self._reason or "doubt")
            if wire.closed:
                raise self._redis.ConnectionError("the subscriber's connection was closed")
            now = time.monotonic()
            if pinged is None and now - answered >= self._health_check_s:
                wire.send(b"PING", _WATCHDOG)
                pinged = now
            elif pinged is not None and now - pinged > self.answer_s:
                raise self._redis.TimeoutError(f"Redis did not answer a ping within {self.answer_s:g}s")
            due = answered + self._health_check_s if pinged is None else pinged + self.answer_s
            frames = wire.read(max(due - now, 0.001))
            if frames:
                answered, pinged = time.monotonic(), None

    def _deliver(self, data: bytes) -> None:
        """One message (``_deliver_batch`` of one)."""
        self._deliver_batch([data])

    def _deliver_batch(self, batch: list[bytes]) -> None:
        """Messages received together, in order: each checked like a lone one (a gap in a model's
        generations or anything unreadable drops everything, at its place in the order), the
        notices of one model between two such drops merged (``Notice.merged``: it drops at least
        what each would) and applied once. This process's own messages count for the
        generations only: the writer applied its notice before publishing."""
        todo: dict[str, Notice | None] = {}  # model -> what the messages since the last full drop changed
        for data in batch:
            try:
                body = _decode_json(data.decode())  # not json.loads: no encoding sniffing of bytes
                model, generation, origin = body["m"], body["g"], body["o"]
                if not isinstance(model, str) or not isinstance(generation, int) or isinstance(generation, bool):
                    raise ValueError("bad field types")
                notice = None if origin == self.origin else Notice.from_wire(model, body)
                sent_at = body.get("t") if isinstance(body.get("t"), (int, float)) else None
            except (ValueError, KeyError, TypeError) as exc:
                self.figures.error(f"unreadable message: {type(exc).__name__}")
                log.warning("cache bus %s: an unreadable message on %s; dropping every cached entry", self.masked_url,
                            self.channel)
                self._apply(todo)
                self._drop_all("unreadable message")
                continue
            self.figures.message(sent_at)
            seen = self._generations.get(model)
            self._generations[model] = generation
            if seen is not None and generation != seen + 1:
                # a gap: a lost message. A generation that goes back or repeats is never sent (each
                # announcement is the INCR of the script that publishes it, in order on one
                # channel): someone else published on the channel, e.g. a generation far ahead so
                # that every real announcement after it would look old and be skipped. Either way
                # the order is lost; the real announcements are followed from here on.
                back = generation <= seen
                log.warning("cache bus %s: %s went from generation %d to %d (%s); dropping every cached entry",
                            self.masked_url, model, seen, generation,
                            "back: a message not sent by astro_db" if back else "a lost message")
                self._apply(todo)
                self._drop_all("generation back" if back else "generation gap")
                continue
            if origin == self.origin:
                continue  # the writer dropped its own entries before publishing
            if model in todo:
                earlier = todo[model]
                todo[model] = notice.merged(earlier) if notice is not None and earlier is not None else None
            else:
                todo[model] = notice
        self._apply(todo)

    def _apply(self, todo: dict[str, Notice | None]) -> None:
        """Apply the notices gathered (``None``: the whole model), in the order first received; empties ``todo``."""
        listener = self.listening() if todo else None
        if listener is not None:
            for model, notice in todo.items():
                if notice is None:
                    listener.drop(model)
                else:
                    listener.apply(notice)
        todo.clear()

    def stats(self) -> dict[str, Any]:
        out = self.figures.as_dict(self.connected, self.reason)
        out["url"] = self.masked_url
        with self._lock:
            out["pending"] = sorted(self._pending)
        out["channel"] = self.channel
        out["stall_s"] = self.stall_s
        out["late"] = self._late
        return out

    def __repr__(self) -> str:
        return f"<RedisBus {self.masked_url} {'connected' if self.connected else 'down'}>"
