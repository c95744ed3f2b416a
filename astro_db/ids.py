"""Client-made ObjectIds (a new document's ``_id``, a write's op id), made cheaply.

An ObjectId is 4 bytes of seconds, 5 random bytes unique to the process and a 3-byte counter
(the ObjectId specification). ``bson.ObjectId()`` makes one under a lock and asks the system
for the process id on every call (to notice a fork): about 2.5 µs on the benchmark machine, two
of them per create. ``new_id`` makes the same kind of id from a random value of its own, drawn
once per process and again in a forked child (``os.register_at_fork``), and a counter of its own
that starts at a random value (``itertools.count``: one atomic step under the GIL; a lock where
there is no GIL): about a third of the cost. Its ids never repeat in a process (the counter),
nor meet another process's or PyMongo's own generator's (another random value: as two processes
are told apart), and sort by the second they were made in, as ``ObjectId()``'s.
"""

from __future__ import annotations

import itertools
import os
import struct
import sys
import threading
import time
from typing import Any

from bson import ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from bson.json_util import DEFAULT_JSON_OPTIONS, JSONOptions

__all__ = ["new_id", "new_ids", "BSON_CODEC", "JSON_CODEC"]

_PACK_SECONDS = struct.Struct(">I").pack
_COUNTER_MASK = 0xFFFFFF
_time = time.time
_random = b""
_counter: itertools.count[int] = itertools.count()
# a free-threaded build (no GIL): ``next`` of a shared ``itertools.count`` is taken under a lock
_LOCK = threading.Lock() if hasattr(sys, "_is_gil_enabled") and not sys._is_gil_enabled() else None


def _seed() -> None:
    """The process's random value and the counter's random start (at import, and in a forked child)."""
    global _random, _counter
    _random = os.urandom(5)
    _counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


_seed()
if hasattr(os, "register_at_fork"):  # a child must not repeat its parent's ids
    os.register_at_fork(after_in_child=_seed)


def _next() -> int:
    if _LOCK is None:
        return next(_counter) & _COUNTER_MASK
    with _LOCK:  # pragma: no cover - free-threaded builds only
        return next(_counter) & _COUNTER_MASK


def new_id() -> ObjectId:
    """A fresh ObjectId (now's second, this process's random value, the next count)."""
    if _LOCK is None:
        count = next(_counter) & _COUNTER_MASK  # _next, inlined
    else:  # pragma: no cover - free-threaded builds only
        count = _next()
    return ObjectId(_PACK_SECONDS(int(_time())) + _random + count.to_bytes(3, "big"))


def new_ids(n: int) -> list[ObjectId]:
    """``n`` fresh ObjectIds (the clock read once)."""
    prefix = _PACK_SECONDS(int(_time())) + _random
    if _LOCK is None:
        counts = [count & _COUNTER_MASK for count in itertools.islice(_counter, n)]
    else:  # pragma: no cover - free-threaded builds only
        counts = [_next() for _ in range(n)]
    return [ObjectId(prefix + count.to_bytes(3, "big")) for count in counts]


#: How astro_db encodes the values it reads back itself (a cache digest, a backup of the
#: embedded backend, an upsert's keys), as the client reads and writes them (``config``:
#: ``uuidRepresentation=standard``): a UUID (the Node driver's ``UUID``, binary subtype 4) is
#: one. Without it PyMongo refuses to encode a ``uuid.UUID`` at all.
BSON_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)
#: ``json_util``'s default options with the same UUID representation (the text of an ``_id``
#: in a sealed value's binding, ``security.vault``).
JSON_CODEC: JSONOptions = DEFAULT_JSON_OPTIONS.with_options(uuid_representation=UuidRepresentation.STANDARD)
