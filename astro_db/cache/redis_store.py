"""The shared result store: a cache miss in one process may be a hit another process stored.

``cache_store="redis://..."`` adds a second tier behind each process's ``QueryCache``: on a
local miss the entry is looked up in Redis; a fetched result is stored there too. Values are
what the local cache holds, the stored-form documents (BSON-encoded): a ``sensitive`` field is
the ciphertext the server holds, never its plaintext (it is decrypted after the cache step).
Keys carry the compiled filter, so an actor's scope is part of the key as it is locally.

Coherence needs no messages, and a write makes unservable only the entries it may have changed.
Every model has a write **sequence** (``astro_db:{ns}:gen:{model}``), which the Redis bus's
publish script advances for every committed write (``redis_bus``) and which, in the same atomic
script, is recorded in the write's **dependency keys** (``astro_db:{ns}:dep:{model}:<name>``,
names from ``write_dependencies``): ``i:<id digest>`` per written id, ``f:<field>`` per
top-level field it set, ``c`` / ``d`` when it created / deleted, ``a`` ("the whole model")
when its ids are not known or exceed ``MAX_DEPENDENCY_IDS``. An entry is stored with the
sequence read *before* its fetch and its **dependency list**, what a write must touch to
change its answer (``store._Shape.dependencies``, the judgement ``QueryCache.apply`` makes
locally): an id lookup depends on its id, a filter on the ids of its answer, the fields its
filter and sort name and ``c``, a count on its fields, ``c`` and ``d``, all of them on ``a``;
what the local cache cannot judge depends on ``*``, the sequence itself (every write).

- ``get`` (one Lua script, one round trip): the sequence now, the entry, and the highest value
  of the entry's dependency keys; served iff the MAC holds and that value is not above the
  entry's sequence (no write that may have changed it ran after its fetch began).
- ``put`` (one Lua script): refused if a dependency key is above the entry's sequence (a
  write that may have changed it landed while it was fetched).

So a write whose announcement has been published has made every entry it may have changed
unservable, in every process, at once, and left the others servable. A dependency key lives
(``PX``) at least twice the longest ``cache_ttl_s`` of any process storing entries of the model
(``astro_db:{ns}:depttl:{model}``, raised by every ``get`` in the same script that reads the
sequence, read by the publish script), and a ``put`` more than one TTL after its ``get`` (by
the Redis server's clock) is refused: a dependency key written after an entry's fetch began
therefore outlives the entry. A model whose ``depttl`` key does not exist has never been read
through a store: its writes set no dependency keys. The keys are those of one standalone Redis
(the scripts read keys they compute: not a Redis Cluster) whose ``maxmemory-policy`` does not
evict them (``noeviction``, Redis's default).

Entries live ``cache_ttl_s`` in Redis; a result over ``cache_max_documents`` is never stored.
Any Redis failure is a miss (counted, logged once per failure run), never an error of the read;
the store is optional, so its commands have a tight bound (``timeout_s``, 0.25 s) and after a
failure it is not asked at all for ``retry_after_s`` (1 s): a frozen Redis costs a read nothing
once it has failed once, and the cache bus turns caching off altogether soon after.

Whoever can write to the Redis can neither forge nor move an entry: keys are namespaced by the
server's identity (hosts, replica set, database: ``bus.server_identity``), not the database name
alone, so two deployments sharing a Redis never answer from each other's data; and every value
carries ``HMAC-SHA256(cache_secret, entry key || sequence || dependency list || value)``,
checked before anything is decoded. A value copied under another key, altered (its dependency
list too), or written without the app's secret is a miss (counted as ``forged``, logged at
WARNING), never an answer. Nor can they keep an entry alive: its value carries, under the MAC,
its deadline by the Redis server's clock (one TTL after its fetch began, when a ``put`` is
refused, plus its TTL), and an entry read past it is a miss (``expired``). What they can do is
delete the dependency keys (the writes' records are not under a MAC: Redis writes them), which
makes an entry a write changed servable again for the rest of its life, at most twice
``cache_ttl_s`` after its fetch began: the same bound as the local cache's TTL without a bus.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

from ..config import mask_url
from ..errors import ConfigError
from .redis_compat import client_options

if TYPE_CHECKING:  # pragma: no cover
    from .bus import Notice

__all__ = ["RedisStore", "MISSING", "Token", "ANY", "WHOLE", "CREATED", "DELETED", "MAX_DEPENDENCY_IDS",
           "MAX_ENTRY_DEPENDENCIES", "id_dependency", "field_dependency", "write_dependencies", "dependency_keys"]

log = logging.getLogger(__name__)

_MAC_BYTES = 32
#: What ``RedisStore.get`` returns when there is no valid entry.
MISSING: Any = object()
_CODEC: CodecOptions[Any] = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)  # as the client reads

#: dependency names (``astro_db:{ns}:dep:{model}:<name>``); ``ANY`` is the model's sequence itself
ANY, WHOLE, CREATED, DELETED = "*", "a", "c", "d"
#: a write of more ids sets ``WHOLE``; an entry holding (or pinning) more depends on ``ANY``
MAX_DEPENDENCY_IDS = 64
#: the most dependency names one entry carries (more: it depends on ``ANY``)
MAX_ENTRY_DEPENDENCIES = 128
_MAX_WRITE_FIELDS = 64  # a write setting more top-level fields sets ``WHOLE``


def id_dependency(digest: bytes) -> str:
    """The dependency of an entry on one ``_id`` (``QueryCache.digest``: the id never leaves the process)."""
    return "i:" + digest.hex()


def field_dependency(name: str) -> str:
    """The dependency of an entry on one top-level stored field its filter or sort names."""
    return "f:" + name


def write_dependencies(notice: Notice | None) -> tuple[str, ...]:
    """The dependency keys a write sets (its sequence also moves, which is ``ANY``): what it may
    have changed, from its notice (``None``: anything in the model)."""
    if (notice is None or notice.ids is None or len(notice.ids) > MAX_DEPENDENCY_IDS
            or len(notice.fields) > _MAX_WRITE_FIELDS or any("\0" in f for f in notice.fields)):
        return (WHOLE,)
    names = [id_dependency(d) for d in sorted(notice.ids)] + [field_dependency(f) for f in sorted(notice.fields)]
    if notice.created:
        names.append(CREATED)
    if notice.deleted:
        names.append(DELETED)
    return tuple(names)


def dependency_keys(prefix: str, model: str) -> tuple[str, str, str]:
    """``(the prefix of model's dependency keys, the key of their TTL, the key of the last
    sequence whose write recorded its dependencies)`` under ``astro_db:{ns}:``."""
    return f"{prefix}dep:{model}:", f"{prefix}depttl:{model}", f"{prefix}depseq:{model}"


class Token(NamedTuple):
    """What a ``get`` hands to the ``put`` after the fetch: the model's sequence before the
    fetch and the Redis server's clock then (ms)."""

    sequence: int
    at_ms: int


# Both scripts compute the dependency keys from ARGV (their names are in the entry).
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""
# KEYS[1] the model's sequence, KEYS[2] the entry, KEYS[3] the model's dependency TTL, KEYS[4] the
# last sequence whose write recorded its dependencies; ARGV[1] the dependency TTL this process
# needs (ms), ARGV[2] the prefix of the model's dependency keys.
# Returns {now, sequence} or {now, sequence, entry, highest dependency (-1: unreadable list)}.
_GET = _NOW + r"""
if (tonumber(redis.call('GET', KEYS[3])) or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[3], ARGV[1])
end
local seq = redis.call('GET', KEYS[1]) or '0'
local raw = redis.call('GET', KEYS[2])
if not raw then
  return {now, seq}
end
-- writes after the last one that recorded its dependencies were made by a version that records
-- none: they count as changing every entry of the model
local unrecorded = 0
if tonumber(seq) > (tonumber(redis.call('GET', KEYS[4])) or 0) then unrecorded = tonumber(seq) end
local highest = -1
local p = string.find(raw, '\0', 1, true)
local q = p and string.find(raw, '\0', p + 1, true)
local n = q and tonumber(string.sub(raw, p + 1, q - 1))
if n and n <= MAX_DEPENDENCIES then
  highest = 0
  local pos = q + 1
  for i = 1, n do
    local e = string.find(raw, '\0', pos, true)
    if not e then
      highest = -1
      break
    end
    local name = string.sub(raw, pos, e - 1)
    local v
    if name == '*' then v = seq else v = redis.call('GET', ARGV[2] .. name) end
    v = tonumber(v) or 0
    if v > highest then highest = v end
    pos = e + 1
  end
  if unrecorded > highest then highest = unrecorded end
end
return {now, seq, raw, highest}
""".replace("MAX_DEPENDENCIES", str(MAX_ENTRY_DEPENDENCIES))
# KEYS[1] the model's sequence, KEYS[2] the entry, KEYS[3] the last sequence whose write recorded
# its dependencies; ARGV[1] the sequence read before the fetch,
# ARGV[2] the value, ARGV[3] the TTL in ms, ARGV[4] the server's clock at the get (ms), ARGV[5]
# the prefix of the model's dependency keys, ARGV[6..] the entry's dependencies.
# Returns 1 stored, 0 a write it depends on landed since, -1 too long after the get.
_PUT = _NOW + """
if now - tonumber(ARGV[4]) > tonumber(ARGV[3]) then
  return -1
end
local seq = tonumber(ARGV[1])
local now_seq = tonumber(redis.call('GET', KEYS[1])) or 0
if now_seq > seq and now_seq > (tonumber(redis.call('GET', KEYS[3])) or 0) then
  return 0  -- a write since the fetch began recorded no dependencies (an earlier version's)
end
for i = 6, #ARGV do
  local v
  if ARGV[i] == '*' then v = redis.call('GET', KEYS[1]) else v = redis.call('GET', ARGV[5] .. ARGV[i]) end
  if (tonumber(v) or 0) > seq then
    return 0
  end
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""


class RedisStore:
    """Read results shared by every process on one Redis, checked against the writes' dependency keys."""

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
        self.dependency_ttl_ms = 2 * self.ttl_ms  # a dependency key outlives every entry depending on it
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                                retry=Retry(NoBackoff(), 1), **client_options(redis, url))
        except ValueError as exc:
            raise ConfigError(f"cache_store: {str(exc).replace(url, self.masked_url)}", key="cache_store") from None
        self._get = self._client.register_script(_GET)
        self._put = self._client.register_script(_PUT)
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "outdated": 0, "stored": 0, "refused": 0, "errors": 0, "forged": 0,
                        "expired": 0, "skipped": 0}
        self._failing = False
        self.retry_after_s = retry_after_s
        self._skip_until = 0.0  # monotonic time before which Redis is not asked (after a failure)

    def _keys(self, key: tuple[Any, ...]) -> tuple[str, str, str, str, str]:
        """The model's sequence key, the entry's key, the model's dependency-TTL key, the prefix
        of its dependency keys and the key of the last sequence that recorded its dependencies."""
        model = str(key[0])
        digest = hashlib.sha256(repr(key[1:3]).encode() + b"\0" + bytes(key[3])).hexdigest()
        dependencies, dependency_ttl, recorded = dependency_keys(self.prefix, model)
        return (self.prefix + "gen:" + model, f"{self.prefix}r2:{model}:{digest}", dependency_ttl, dependencies,
                recorded)

    def get(self, key: tuple[Any, ...]) -> tuple[Any, Token | None]:
        """``(value or MISSING, the token to pass to put)``: a value is served only if no write
        it depends on has been announced since its fetch began (``None``: Redis not asked)."""
        if self._skipping():
            return MISSING, None
        sequence_key, entry_key, dependency_ttl, dependencies, recorded = self._keys(key)
        try:
            reply = cast("list[Any]", self._get(keys=[sequence_key, entry_key, dependency_ttl, recorded],
                                                args=[self.dependency_ttl_ms, dependencies]))
            token = Token(int(reply[1]), int(reply[0]))
        except self._redis.RedisError as exc:
            self._error("get", exc)
            return MISSING, None
        except (ValueError, TypeError, IndexError) as exc:  # a sequence key that is not a number: not ours
            self._error("get", exc)
            return MISSING, None
        self._ok()
        if len(reply) < 4:
            self._count("misses")
            return MISSING, token
        raw, highest = bytes(reply[2]), int(reply[3])
        parsed = _parse(raw)
        if parsed is None or not hmac.compare_digest(parsed[2], self._mac(entry_key, parsed[1], parsed[3])):
            self._forged(entry_key)
        elif highest < 0:  # authentic, yet its dependency list did not parse in Redis: a bug, not an attack
            self._error("decode", ValueError("unreadable dependency list"))
            return MISSING, token
        elif highest > parsed[0]:
            self._count("outdated")  # a write it depends on was announced after its fetch began
        else:
            try:
                stored = bson.decode(parsed[3], codec_options=_CODEC)
                value, deadline = stored["v"], stored.get("x")
            except (bson.errors.BSONError, KeyError) as exc:  # authentic but unreadable: a bug, not an attack
                self._error("decode", exc)
                return MISSING, token
            if not isinstance(deadline, int) or token.at_ms > deadline:  # an int64: bson.Int64
                # past the life its put gave it (or of a version that gave none): Redis keeps an
                # entry no longer, so it was put back by someone who can write there, after the
                # keys that record writes may have been deleted; authentic, but possibly outdated
                self._count("expired")
            else:
                self._count("hits")
                return value, token
        self._count("misses")
        return MISSING, token

    def _mac(self, entry_key: str, header: bytes, body: bytes) -> bytes:
        """The MAC binding a value to its key, sequence and dependency list (``header``): a copy
        under another key, or with another list, fails."""
        message = entry_key.encode() + b"\0" + header + body
        return hmac.new(self._mac_key, message, hashlib.sha256).digest()

    def _forged(self, entry_key: str) -> None:
        self._count("forged")
        log.warning("shared cache store %s: the entry %s does not carry a valid MAC (altered, moved from another "
                    "key, or written without this app's cache_secret); ignored", self.masked_url, entry_key)

    def put(self, key: tuple[Any, ...], value: Any, token: Token | None,
            dependencies: tuple[str, ...] = (ANY,)) -> bool:
        """Store ``value`` read under ``token`` (``get``'s) with what it depends on
        (``dependencies``: default, every write), unless a write it depends on landed since."""
        if token is None or self._skipping():
            return False
        if (not dependencies or len(dependencies) > MAX_ENTRY_DEPENDENCIES
                or any("\0" in name for name in dependencies)):
            dependencies = (ANY,)
        sequence_key, entry_key, _, prefix, recorded = self._keys(key)
        try:
            # its deadline, under the MAC: the latest a put of this fetch can store it (one TTL after
            # the get, by Redis's clock) plus its TTL; Redis has expired it by then
            body = bson.encode({"v": value, "x": token.at_ms + 2 * self.ttl_ms}, codec_options=_CODEC)
            header = b"%d\0%d\0" % (token.sequence, len(dependencies)) + b"".join(
                name.encode() + b"\0" for name in dependencies)
            value_bytes = header + self._mac(entry_key, header, body) + body
            stored = self._put(keys=[sequence_key, entry_key, recorded],
                               args=[token.sequence, value_bytes, self.ttl_ms, token.at_ms, prefix, *dependencies])
        except (self._redis.RedisError, bson.errors.InvalidDocument, OverflowError) as exc:
            self._error("put", exc)
            return False
        self._ok()
        self._count("stored" if stored == 1 else "refused")
        return bool(stored == 1)

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


def _parse(raw: bytes) -> tuple[int, bytes, bytes, bytes] | None:
    """``(sequence, header, MAC, body)`` of a stored value (``header``: the sequence and the
    dependency list, as the MAC covers them), or ``None`` when it is not in that form."""
    try:
        first = raw.index(b"\0")
        second = raw.index(b"\0", first + 1)
        sequence, count = int(raw[:first]), int(raw[first + 1:second])
        end = second + 1
        if not 0 < count <= MAX_ENTRY_DEPENDENCIES:
            return None
        for _ in range(count):
            end = raw.index(b"\0", end) + 1
    except ValueError:
        return None
    mac, body = raw[end:end + _MAC_BYTES], raw[end + _MAC_BYTES:]
    if len(mac) != _MAC_BYTES:
        return None
    return sequence, raw[:end], mac, body
