"""A worker process of the cache-bus tests: one ``Database`` on the shared server and Redis.

Usage: python cache_bus_worker.py <mongodb url> <cache_bus> [<cache_store>] ; then one JSON command per stdin
line, one JSON answer per stdout line. Waits poll a condition with a bound; never a fixed sleep.

``ASTRO_TEST_HOLD_NOTICES=1`` makes the bus do everything across processes at the worst moment,
as a loaded machine may:

- a notice that arrives is held until the worker has answered its next command, then applied
  before the command after;
- a write's announcement (the generation's ``INCR`` and the ``PUBLISH``) is left by the
  writing thread to the publisher thread at once, as when Redis's answer does not come within
  ``wait_s``, and the publisher thread's send is held until the worker is told to wait for
  something not true yet: the write returns unannounced and every command until then runs
  while it is still owed, as when the publisher thread is not scheduled for a while.

A ``wait`` (or ``wait_marker``) whose condition does not hold yet releases both and lets them
through while it runs, so what is in flight can be waited for; one that already holds releases
nothing (a loaded machine gives no time either); ``exit`` releases everything. A test that
reads right after a write without waiting for the write's announcement and delivery then
fails every time instead of once in a while.

Every worker records the barrier markers it has applied (``wait_marker``): a test publishes a
marker message on the bus channel once every worker's writes are announced; a worker that has
applied it has applied every notice Redis will ever deliver to it from before it (one channel,
delivered in order), whatever was lost to a reconnect.
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

MARKER = "astro_test_barrier:"  # the model name of a barrier marker (a model nobody has)


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
    """Holds the bus's notices and the publisher thread's sends (see the module's docstring);
    while ``open`` (a ``wait`` command runs) they pass at once."""

    NOTICE, PUBLISH = 1, 1_000_000  # how many command ends each is held for (a publish: until a wait)

    def __init__(self, bus: Any) -> None:
        self._lock = threading.Lock()
        self._held: list[list[Any]] = []  # [command ends left, go, done]
        self._open = False
        deliver, send = bus._deliver_batch, bus._send  # the messages received in one wake-up, held together
        bus._deliver_batch = lambda batch: self._hold(self.NOTICE, lambda: deliver(batch))

        def held_send(model: str, notice: Any = None) -> None:
            if not threading.current_thread().name.startswith("astro_db-cache-publish-"):
                return send(model, notice)  # the subscriber's flush on reconnecting: not a write's own publish
            return self._hold(self.PUBLISH, lambda: send(model, notice))

        bus._send = held_send
        bus._publish_now = lambda model, number, deadline: bus._wake.set()  # the write's own send is late

    def _hold(self, ends: int, action: Callable[[], Any]) -> Any:
        go, done = threading.Event(), threading.Event()
        with self._lock:
            if not self._open:
                self._held.append([ends, go, done])
            else:
                go.set()
        go.wait(600)  # a hang guard only: a wait or the exit releases it
        try:
            return action()
        finally:
            done.set()

    def release(self, *, open: bool = False, all: bool = False) -> None:  # noqa: A002
        """One command has been answered: apply what has been held long enough (``all``:
        everything held now), and return once it is applied; ``open``: let the next ones
        through at once until ``close()``."""
        with self._lock:
            due: list[list[Any]] = []
            kept: list[list[Any]] = []
            for item in self._held:
                item[0] -= 1
                (due if all or item[0] <= 0 else kept).append(item)
            self._held = kept
            self._open = open
            for _, go, _ in due:
                go.set()
        for _, _, done in due:
            done.wait(600)

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

        from astro_db.cache.redis_compat import client_options

        shared._client = redis.Redis.from_url(store, socket_connect_timeout=60, socket_timeout=60, retry=Retry(NoBackoff(), 1),
                                              **client_options(redis, store))
        for script in ("_get", "_put"):  # its Lua scripts, on the new client
            if hasattr(shared, script):
                setattr(shared, script, shared._client.register_script(getattr(shared, script).script))
    markers: set[str] = set()  # the barrier markers this worker has applied (see the module's docstring)
    if hasattr(cache.bus, "_deliver_batch"):  # the messages of one wake-up, in order
        deliver = cache.bus._deliver_batch

        def recorded(batch: list[bytes]) -> None:
            deliver(batch)
            for data in batch:
                try:
                    model = json.loads(data).get("m")
                except (ValueError, AttributeError):
                    continue
                if isinstance(model, str) and model.startswith(MARKER):
                    markers.add(model)

        cache.bus._deliver_batch = recorded
    gate = Gate(cache.bus) if os.environ.get("ASTRO_TEST_HOLD_NOTICES") == "1" else None

    def answer(**out: Any) -> None:
        out["cache"] = {k: cache.stats()[k] for k in ("hits", "misses", "full_drops", "trusted")}
        out["bus"] = cache.bus_stats()
        sys.stdout.write(json.dumps(out, default=str) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if gate is not None and op == "exit":
            gate.release(open=True, all=True)
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
            elif op in ("wait", "wait_marker"):
                if op == "wait_marker":  # until the barrier marker cmd["name"] has been applied
                    def check(cmd: dict[str, Any] = cmd) -> bool:
                        return cmd["name"] in markers
                elif "value" in cmd:  # until bus[key] == value
                    def check(cmd: dict[str, Any] = cmd) -> bool:
                        return bool(cache.bus_stats()[cmd["key"]] == cmd["value"])
                else:  # until bus[key] >= at_least
                    def check(cmd: dict[str, Any] = cmd) -> bool:
                        return bool(cache.bus_stats()[cmd["key"]] >= cmd["at_least"])
                if gate is not None and not check():
                    gate.release(open=True, all=True)  # what is held may be what it waits for
                answer(ok=bool(_poll(check, cmd.get("timeout", 60.0))))
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
