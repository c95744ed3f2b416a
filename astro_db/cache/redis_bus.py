"""The Redis invalidation bus: committed writes announced to every process over Redis pub/sub.

Publisher (the process that wrote, after the write is acknowledged or its transaction
committed, before the ``db.`` call returns): one Lua script ``INCR astro_db:{db}:gen:{model}``
then ``PUBLISH astro_db:{db}:invalidate {"m": model, "g": generation, "o": origin, "t": time}``.
Being one script, the generations of a model reach every subscriber in order and without holes.

Subscriber (a daemon thread per ``Database``): subscribes, *then* expires every entry its cache
holds and only then says ``connected``; a message drops its model. Anything that casts doubt
drops everything again: a gap in a model's generations (a lost message), a message it cannot
read, a lost connection (and the reconnect after it), a failed publish from this process. So a
message lost in an outage can never keep a stale entry alive past the moment the subscriber is
back, and while it is not connected the cache stores and serves nothing (reads go to the
server). The one window left is "the write returned in process A, B's subscriber has not been
delivered yet": ``metrics()["cache_bus"]["last_delay_ms"]`` shows how long it is.

A failed publish leaves the write standing: it is logged (never with the URL's password) and
counted, this process drops its own cache and its bus goes down; the model is kept as
*pending* and published again by the subscriber once it has reconnected, before it says
``connected`` again. So other processes learn of that write when this one reaches Redis again
(or sooner, by dropping everything, if they lost Redis too).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
import weakref
from typing import Any

from ..config import mask_url
from ..errors import ConfigError
from .bus import BusFigures, CacheListener, SubscribingBus

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

# KEYS[1] the model's generation key; ARGV[1] channel, ARGV[2] the message up to its generation.
_PUBLISH = """
local g = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. g .. '}')
return g
"""
_BACKOFF_S = (0.05, 2.0)


class RedisBus(SubscribingBus):
    """Invalidations across processes through one Redis (``cache_bus="redis://..."``)."""

    kind = "redis"

    def __init__(self, url: str, namespace: str, *, timeout_s: float = 2.0, health_check_s: float = 1.0) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the redis extra is part of dev
            raise ConfigError("cache_bus=redis://... needs the redis client: pip install 'astro_db[redis]'",
                              key="cache_bus") from exc
        self._redis = redis
        self._url = url
        self.masked_url = mask_url(url)
        self.channel = f"astro_db:{namespace}:invalidate"
        self.generation_prefix = f"astro_db:{namespace}:gen:"
        self.origin = uuid.uuid4().hex
        self._timeout_s = timeout_s
        self._health_check_s = health_check_s
        self.figures = BusFigures(self.kind)
        self._listener: weakref.ReferenceType[Any] | None = None
        self._lock = threading.Lock()
        self._connected = False
        self._reason: str | None = "not connected yet"
        self._stop = threading.Event()
        self._doubt = threading.Event()  # set: the subscriber must drop everything and reconnect
        self._pending: set[str] = set()  # models whose publish failed: published again on reconnect
        self._generations: dict[str, int] = {}  # the last generation seen per model (gap detection)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._client = self._new_client()
        self._script = self._client.register_script(_PUBLISH)

    def _new_client(self) -> Any:
        redis = self._redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            return redis.Redis.from_url(
                self._url, socket_connect_timeout=self._timeout_s, socket_timeout=self._timeout_s * 2,
                health_check_interval=self._health_check_s, retry=Retry(NoBackoff(), 1))
        except ValueError as exc:
            raise ConfigError(f"cache_bus: {str(exc).replace(self._url, self.masked_url)}", key="cache_bus") from None

    # --- state -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the subscriber is subscribed and nothing has cast doubt since."""
        if os.getpid() != self._pid:
            self._after_fork()
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
            self._thread = threading.Thread(target=self._run, name=f"astro_db-cache-bus-{self.origin[:8]}", daemon=True)
            self._thread.start()

    def open(self, database: Any) -> None:
        """``Database.connect()``: (re)start the subscriber (after a ``disconnect()``)."""
        self.start()

    def close(self) -> None:
        """Stop the subscriber (the cache stops trusting the bus) and release the connections."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._timeout_s * 3)
        self._connected = False
        self._reason = "closed"
        self._client.close()

    def _after_fork(self) -> None:
        """In a forked child (gunicorn --preload) the subscriber thread did not survive: the
        entries inherited are not trusted, and a subscriber of its own is started."""
        with self._lock:
            if os.getpid() == self._pid:
                return
            self._pid = os.getpid()
            self._connected = False
            self._reason = "forked: subscribing again"
            self._thread = None
            self._client = self._new_client()
            self._script = self._client.register_script(_PUBLISH)
        self._drop_all("forked process")
        self.start()

    # --- publishing --------------------------------------------------------------------------

    def publish(self, model: str, origin: CacheListener | None = None) -> None:
        """Announce a committed write to ``model``; a failure is logged, counted, and marks the
        bus down (this process drops its cache) rather than failing the write that succeeded."""
        if os.getpid() != self._pid:
            self._after_fork()
        try:
            self._send(model)
        except self._redis.RedisError as exc:
            with self._lock:
                self._pending.add(model)
            self.figures.error(f"publish: {type(exc).__name__}: {exc}")
            log.error("cache bus %s: could not publish the write to %s (%s: %s); this process stops caching "
                      "until its subscriber reconnects", self.masked_url, model, type(exc).__name__, exc)
            self._lose_trust(f"publish failed: {type(exc).__name__}")

    def _send(self, model: str) -> None:
        head = json.dumps({"m": model, "o": self.origin, "t": time.time()})[:-1] + ', "g": '
        self._script(keys=[self.generation_prefix + model], args=[self.channel, head])
        self.figures.count("sent")

    def _flush_pending(self) -> None:
        """Publish again what failed to publish (raises while Redis still refuses)."""
        with self._lock:
            pending = sorted(self._pending)
        for model in pending:
            self._send(model)
            with self._lock:
                self._pending.discard(model)

    def _lose_trust(self, reason: str) -> None:
        self._reason = reason
        self._doubt.set()
        self._drop_all(reason)

    # --- subscribing -------------------------------------------------------------------------

    def _run(self) -> None:
        delay, first = _BACKOFF_S[0], True
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                self._subscribe(pubsub, reconnect=not first)
                first, delay = False, _BACKOFF_S[0]
                self._listen(pubsub)
            except (self._redis.RedisError, OSError, ValueError) as exc:
                self.figures.error(f"subscriber: {type(exc).__name__}: {exc}")
                if self._connected:
                    log.warning("cache bus %s lost (%s: %s): caching is off until it is back",
                                self.masked_url, type(exc).__name__, exc)
                self._reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            finally:
                was_connected = self._connected
                self._connected = False
                if was_connected:
                    self._drop_all("subscriber disconnected", count=False)
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is gone either way
                    pass
            self._stop.wait(delay)
            delay = min(delay * 2, _BACKOFF_S[1])

    def _subscribe(self, pubsub: Any, *, reconnect: bool) -> None:
        """Subscribe, wait for the confirmation, drop everything, then trust the bus."""
        pubsub.subscribe(self.channel)
        deadline = time.monotonic() + self._timeout_s * 2
        while True:
            message = pubsub.get_message(timeout=self._timeout_s)
            if message is not None and message["type"] == "subscribe":
                break
            if time.monotonic() > deadline:
                raise self._redis.TimeoutError("no subscribe confirmation")
        self._generations = {}
        self._doubt.clear()
        self._flush_pending()
        self._drop_all("reconnected" if reconnect else "subscribed", count=reconnect)
        if reconnect:
            self.figures.count("reconnects")
            log.info("cache bus %s reconnected: every cached entry was dropped", self.masked_url)
        self._reason = None
        self._connected = True

    def _listen(self, pubsub: Any) -> None:
        while not self._stop.is_set():
            if self._listener is not None and self.listening() is None:
                self._stop.set()  # the cache (its Database) was garbage-collected: nothing to serve
                return
            if self._doubt.is_set():
                raise self._redis.ConnectionError(self._reason or "doubt")
            message = pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "message":
                self._deliver(message["data"])

    def _deliver(self, data: bytes) -> None:
        """One message: drop its model; anything unreadable or a gap drops everything."""
        try:
            body = json.loads(data)
            model, generation, origin = body["m"], body["g"], body["o"]
            if not isinstance(model, str) or not isinstance(generation, int) or isinstance(generation, bool):
                raise ValueError("bad field types")
            sent_at = body.get("t") if isinstance(body.get("t"), (int, float)) else None
        except (ValueError, KeyError, TypeError) as exc:
            self.figures.error(f"unreadable message: {type(exc).__name__}")
            log.warning("cache bus %s: an unreadable message on %s; dropping every cached entry", self.masked_url, self.channel)
            self._drop_all("unreadable message")
            return
        self.figures.message(sent_at)
        seen = self._generations.get(model)
        if seen is not None and generation <= seen:
            return  # an older or repeated announcement: already applied
        self._generations[model] = generation
        if seen is not None and generation > seen + 1:
            log.warning("cache bus %s: %s went from generation %d to %d (a lost message); dropping every "
                        "cached entry", self.masked_url, model, seen, generation)
            self._drop_all("generation gap")
            return
        if origin != self.origin:  # the writer dropped its own entries before publishing
            listener = self.listening()
            if listener is not None:
                listener.drop(model)

    def stats(self) -> dict[str, Any]:
        out = self.figures.as_dict(self.connected, self.reason)
        out["url"] = self.masked_url
        with self._lock:
            out["pending"] = sorted(self._pending)
        out["channel"] = self.channel
        return out

    def __repr__(self) -> str:
        return f"<RedisBus {self.masked_url} {'connected' if self.connected else 'down'}>"
