"""The shared result store: a cache miss in one process may be a hit another process stored.

``cache_store="redis://..."`` adds a second tier behind each process's ``QueryCache``: on a
local miss the entry is looked up in Redis; a fetched result is stored there too. Values are
what the local cache holds, the stored-form documents (BSON-encoded): a ``sensitive`` field is
the ciphertext the server holds, never its plaintext (it is decrypted after the cache step).
Keys carry the compiled filter, so an actor's scope is part of the key as it is locally.

Coherence needs no messages: every entry is tagged with its model's generation
(``astro_db:{db}:gen:{model}``, which the Redis bus advances after every committed write) as
read *before* the fetch, stored only if that generation is still current (one Lua script), and
served only if it still is (one ``MGET`` of the generation and the entry). A write that has
returned has advanced the generation, so no process is served a shared entry from before it.
Entries live ``cache_ttl_s`` in Redis; a result over ``cache_max_documents`` is never stored.
Any Redis failure is a miss (counted, logged once per failure run), never an error of the read;
the store is optional, so its commands have a tight bound (``timeout_s``, 0.25 s) and after a
failure it is not asked at all for ``retry_after_s`` (1 s): a frozen Redis costs a read nothing
once it has failed once, and the cache bus turns caching off altogether soon after.

Whoever can write to the Redis can neither forge nor move an entry: keys are namespaced by the
server's identity (hosts, replica set, database: ``bus.server_identity``), not the database name
alone, so two deployments sharing a Redis never answer from each other's data; and every value
carries ``HMAC-SHA256(cache_secret, entry key || generation || value)``, checked before anything
is decoded. A value copied under another key, altered, or written without the app's secret is a
miss (counted as ``forged``, logged at WARNING), never an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from typing import Any, cast

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

from ..config import mask_url
from ..errors import ConfigError

__all__ = ["RedisStore", "MISSING"]

log = logging.getLogger(__name__)

_MAC_BYTES = 32
#: What ``RedisStore.get`` returns when there is no valid entry.
MISSING: Any = object()
_CODEC: CodecOptions[Any] = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)  # as the client reads
# KEYS[1] the model's generation, KEYS[2] the entry; ARGV[1] the generation read before the fetch,
# ARGV[2] the value, ARGV[3] the TTL in ms.
_PUT = """
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class RedisStore:
    """Read results shared by every process on one Redis, checked against the write generations."""

    def __init__(self, url: str, namespace: str, ttl_s: float, *, secret: bytes, timeout_s: float = 0.25,
                 retry_after_s: float = 1.0) -> None:
        if len(secret) < 16:
            raise ConfigError("cache_store needs a MAC key (cache_secret) of at least 16 bytes", key="cache_secret")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - the redis extra is part of dev
            raise ConfigError("cache_store needs the redis client: pip install 'astro_db[redis]'", key="cache_store") from exc
        self._redis = redis
        self.masked_url = mask_url(url)
        self.prefix = f"astro_db:{namespace}:"
        self._mac_key = hmac.new(secret, b"astro_db:cache-store-mac", hashlib.sha256).digest()
        self.ttl_ms = max(1, int(ttl_s * 1000))
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                                retry=Retry(NoBackoff(), 1))
        except ValueError as exc:
            raise ConfigError(f"cache_store: {str(exc).replace(url, self.masked_url)}", key="cache_store") from None
        self._put = self._client.register_script(_PUT)
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "stored": 0, "refused": 0, "errors": 0, "forged": 0,
                        "skipped": 0}
        self._failing = False
        self.retry_after_s = retry_after_s
        self._skip_until = 0.0  # monotonic time before which Redis is not asked (after a failure)

    def _keys(self, key: tuple[Any, ...]) -> tuple[str, str]:
        model = str(key[0])
        digest = hashlib.sha256(repr(key[1:3]).encode() + b"\0" + bytes(key[3])).hexdigest()
        return self.prefix + "gen:" + model, f"{self.prefix}r:{model}:{digest}"

    def get(self, key: tuple[Any, ...]) -> tuple[Any, bytes]:
        """``(value or MISSING, the model's generation now)``: pass the generation to ``put``."""
        if self._skipping():
            return MISSING, b""
        generation_key, entry_key = self._keys(key)
        try:
            pair = cast("list[bytes | None]", self._client.mget(generation_key, entry_key))  # decode_responses is off
            generation, raw = pair
        except self._redis.RedisError as exc:
            self._error("get", exc)
            return MISSING, b""
        generation = generation or b"0"
        self._ok()
        if raw is not None:
            tag, _, rest = bytes(raw).partition(b"\0")
            mac, body = rest[:_MAC_BYTES], rest[_MAC_BYTES:]
            if not hmac.compare_digest(mac, self._mac(entry_key, tag, body)):
                self._forged(entry_key)
            elif tag == generation:
                try:
                    value = bson.decode(body, codec_options=_CODEC)["v"]
                except (bson.errors.BSONError, KeyError) as exc:  # authentic but unreadable: a bug, not an attack
                    self._error("decode", exc)
                    return MISSING, generation
                self._count("hits")
                return value, generation
        self._count("misses")
        return MISSING, generation

    def _mac(self, entry_key: str, generation: bytes, body: bytes) -> bytes:
        """The MAC binding a value to its key and generation (a copy under another key fails)."""
        message = entry_key.encode() + b"\0" + generation + b"\0" + body
        return hmac.new(self._mac_key, message, hashlib.sha256).digest()

    def _forged(self, entry_key: str) -> None:
        self._count("forged")
        log.warning("shared cache store %s: the entry %s does not carry a valid MAC (altered, moved from another "
                    "key, or written without this app's cache_secret); ignored", self.masked_url, entry_key)

    def put(self, key: tuple[Any, ...], value: Any, generation: bytes) -> bool:
        """Store ``value`` if the model's generation is still ``generation`` (no write since)."""
        if not generation or self._skipping():
            return False
        generation_key, entry_key = self._keys(key)
        try:
            body = bson.encode({"v": value}, codec_options=_CODEC)
            value_bytes = generation + b"\0" + self._mac(entry_key, generation, body) + body
            stored = self._put(keys=[generation_key, entry_key], args=[generation, value_bytes, self.ttl_ms])
        except (self._redis.RedisError, bson.errors.InvalidDocument, OverflowError) as exc:
            self._error("put", exc)
            return False
        self._ok()
        self._count("stored" if stored else "refused")
        return bool(stored)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _ok(self) -> None:
        self._failing = False
        self._skip_until = 0.0

    def _skipping(self) -> bool:
        if self._skip_until and time.monotonic() < self._skip_until:
            self._count("skipped")
            return True
        return False

    def _error(self, what: str, exc: Exception) -> None:
        self._count("errors")
        self._skip_until = time.monotonic() + self.retry_after_s
        if not self._failing:
            self._failing = True
            log.warning("shared cache store %s: %s failed (%s: %s); reads go to the server meanwhile",
                        self.masked_url, what, type(exc).__name__, exc)

    def close(self) -> None:
        self._client.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out["url"] = self.masked_url
        return out

    def __repr__(self) -> str:
        return f"<RedisStore {self.masked_url} {self.prefix}*>"
