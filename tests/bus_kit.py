"""What the Redis bus's thread-level tests share (tests/unit/test_cache_bus_inline.py,
test_cache_bus_edges.py): a subscribed bus, its publishing connection opened, the generation
Redis holds, a spy on what the bus's connections send, and a count of the publisher thread's
wake-ups."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from spies import BusCalls, poll

from astro_db.cache.bus import Notice
from astro_db.cache.redis_bus import RedisBus, _Wire

NOTICE = Notice("User", frozenset({bytes(16)}), frozenset({"name"}))


def subscribed_bus(url: str, prefix: str = "bus", **options: Any) -> tuple[RedisBus, BusCalls]:
    """A subscribed bus with User registered; no publishing connection open yet."""
    bus = RedisBus(url, f"{prefix}{uuid.uuid4().hex[:8]}", **options)
    listener = BusCalls()
    bus.attach(listener)
    poll(lambda: bus.connected)
    assert bus.watch("User")
    return bus, listener


def open_bus(url: str, prefix: str = "bus", **options: Any) -> tuple[RedisBus, BusCalls]:
    """``subscribed_bus`` with its publishing connection open (the first publish: the
    publisher thread opens it)."""
    bus, listener = subscribed_bus(url, prefix, **options)
    bus.publish("User", notice=NOTICE)
    poll(lambda: not bus.stats()["pending"] and bus._publish_wire is not None and bus._publish_wire.ready)
    return bus, listener


def generation(client: Any, bus: RedisBus) -> int:
    """User's generation in Redis (how many announcements its publish script ran)."""
    return int(client.get(bus.generation_prefix + "User") or 0)


def spy_sends(monkeypatch: Any, *, scripts_only: bool = False, after: Callable[[], None] | None = None,
              cut: Callable[[str], bool] | None = None, client: Any = None) -> list[tuple[str, bytes]]:
    """(thread name, command) of every command a bus connection sends from now on (with
    ``scripts_only``, only the publish script's ``EVALSHA`` / ``EVAL``). ``after`` runs in the
    sending thread right after each recorded send; ``cut(thread)`` true: Redis closes that
    connection (``CLIENT KILL`` through ``client``) just before a script is sent, so the send
    breaks and the script never runs."""
    sent: list[tuple[str, bytes]] = []
    request = _Wire.request

    def spied(self: Any, *args: bytes) -> None:
        name = threading.current_thread().name
        script = args[0] in (b"EVALSHA", b"EVAL")
        recorded = script or not scripts_only
        if script and cut is not None and cut(name):
            client.client_kill(f"127.0.0.1:{self._sock.getsockname()[1]}")
        if recorded:
            sent.append((name, args[0]))
        request(self, *args)
        if recorded and after is not None:
            after()

    monkeypatch.setattr(_Wire, "request", spied)
    return sent


def count_wakes(bus: RedisBus) -> list[str]:
    """The names of the threads that wake the bus's publisher thread from now on."""
    wakes: list[str] = []
    wake = bus._wake

    class Counted:
        def set(self) -> None:
            wakes.append(threading.current_thread().name)
            wake.set()

        def __getattr__(self, name: str) -> Any:
            return getattr(wake, name)

    bus._wake = Counted()  # type: ignore[assignment]
    return wakes
