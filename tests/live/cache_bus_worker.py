"""A worker process of the cache-bus tests: one ``Database`` on the shared server and Redis.

Usage: python cache_bus_worker.py <mongodb url> <cache_bus> [<cache_store>] ; then one JSON command per stdin
line, one JSON answer per stdout line. Waits poll a condition with a bound; never a fixed sleep.
``ASTRO_TEST_HOLD_NOTICES=1`` applies every bus notice at the worst moment, as a loaded machine
may: a notice that arrives is held until the worker has answered its next command, then
applied before the command after (a ``wait`` releases it first, so it can be waited for). A
test that reads right after a write without waiting for the write's notice then fails every
time instead of once in a while.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from astro_db import Database


def _poll(check: Callable[[], Any], timeout_s: float) -> Any:
    """``check()``'s first truthy value, polling; ``None`` when ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value or None
        pause.wait(0.005)


class Gate:
    """Holds the bus's notices until ``release()``; while ``open`` (a ``wait`` command runs) they
    pass at once, so a notice still in flight can be waited for (see the module's docstring)."""

    def __init__(self, bus: Any) -> None:
        self._deliver = bus._deliver
        self._lock = threading.Lock()
        self._held: list[tuple[threading.Event, threading.Event]] = []
        self._open = False
        bus._deliver = self._hold

    def _hold(self, data: bytes) -> None:
        go, done = threading.Event(), threading.Event()
        with self._lock:
            if not self._open:
                self._held.append((go, done))
            else:
                go.set()
        go.wait(60)
        try:
            self._deliver(data)
        finally:
            done.set()

    def release(self, *, open: bool = False) -> None:  # noqa: A002
        """Apply every notice held now, and return once they are applied; ``open``: let the
        next ones through at once until ``close()``."""
        with self._lock:
            held, self._held = self._held, []
            self._open = open
            for go, _ in held:
                go.set()
        for _, done in held:
            done.wait(60)

    def close(self) -> None:
        with self._lock:
            self._open = False


def main() -> None:
    url, bus = sys.argv[1], sys.argv[2]
    store = sys.argv[3] if len(sys.argv) > 3 else None
    secret = "worker-test-secret-" + "s" * 20 if store else None  # every worker of a test: the same app secret
    db = Database(url, cache_models=("User",), cache_bus=bus, cache_store=store, cache_secret=secret,
                  ensure_indexes=False, allow_plaintext_sensitive=True).connect()  # no key: personal fields in clear
    cache = db.executor.runtime.cache
    # A loaded test machine must not look like a frozen Redis: the bus's watchdog (a ping
    # unanswered for answer_s), its stalled-publish check (stall_s) and the shared store's
    # socket bound (0.25 s) are wall-clock bounds meant for production; here they wait a minute,
    # so the bus goes down only when Redis does (a killed Redis refuses connections at once).
    # Frozen-Redis detection is tested on its own.
    for knob in ("answer_s", "stall_s"):
        if hasattr(cache.bus, knob):
            setattr(cache.bus, knob, 60.0)
    shared = getattr(cache, "shared", None)
    if store and shared is not None and hasattr(shared, "_client"):  # the store's 0.25 s bound, the same way
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        shared._client = redis.Redis.from_url(store, socket_connect_timeout=60, socket_timeout=60, retry=Retry(NoBackoff(), 1))
        shared._put = shared._client.register_script(shared._put.script)
    gate = Gate(cache.bus) if os.environ.get("ASTRO_TEST_HOLD_NOTICES") == "1" else None

    def answer(**out: Any) -> None:
        out["cache"] = {k: cache.stats()[k] for k in ("hits", "misses", "full_drops", "trusted")}
        out["bus"] = cache.bus_stats()
        sys.stdout.write(json.dumps(out, default=str) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if gate is not None and op == "wait":
            gate.release(open=True)
        try:
            if op == "create":
                answer(id=str(db.create("User", {"email": cmd["email"], "name": cmd["name"]}).id))
            elif op == "read":
                doc = db.find_one("User", {"id": cmd["id"]}, lean=True)
                answer(name=None if doc is None else doc["name"])
            elif op == "find_name":  # the ids of the users with that name (a filter entry)
                answer(ids=[str(d["_id"]) for d in db.find("User", {"name": cmd["name"]}, lean=True)])
            elif op == "update":
                db.update("User", {"id": cmd["id"]}, {"name": cmd["name"]})
                answer(returned_at=time.time())
            elif op == "wait":  # until bus[key] >= at_least (or == value)
                key, timeout = cmd["key"], cmd.get("timeout", 60.0)
                if "value" in cmd:
                    ok = _poll(lambda key=key, cmd=cmd: cache.bus_stats()[key] == cmd["value"], timeout)
                else:
                    ok = _poll(lambda key=key, cmd=cmd: cache.bus_stats()[key] >= cmd["at_least"], timeout)
                answer(ok=bool(ok))
            elif op == "stats":
                answer()
            elif op == "exit":
                answer()
                break
            else:
                answer(error=f"unknown op {op}")
        except Exception as exc:  # the test reads the error from the answer
            answer(error=f"{type(exc).__name__}: {exc}")
        if gate is not None:
            gate.close()
            gate.release()
    db.disconnect()


if __name__ == "__main__":
    main()
