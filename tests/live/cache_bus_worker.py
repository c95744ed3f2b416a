"""A worker process of the cache-bus tests: one ``Database`` on the shared server and Redis.

Usage: python cache_bus_worker.py <mongodb url> <cache_bus> [<cache_store>] ; then one JSON command per stdin
line, one JSON answer per stdout line. Waits poll a condition with a bound; never a fixed sleep.
"""

from __future__ import annotations

import json
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


def main() -> None:
    url, bus = sys.argv[1], sys.argv[2]
    store = sys.argv[3] if len(sys.argv) > 3 else None
    secret = "worker-test-secret-" + "s" * 20 if store else None  # every worker of a test: the same app secret
    db = Database(url, cache_models=("User",), cache_bus=bus, cache_store=store, cache_secret=secret,
                  ensure_indexes=False).connect()
    cache = db.executor.runtime.cache

    def answer(**out: Any) -> None:
        out["cache"] = {k: cache.stats()[k] for k in ("hits", "misses", "full_drops", "trusted")}
        out["bus"] = cache.bus_stats()
        sys.stdout.write(json.dumps(out, default=str) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "create":
                answer(id=str(db.create("User", {"email": cmd["email"], "name": cmd["name"]}).id))
            elif op == "read":
                doc = db.find_one("User", {"id": cmd["id"]}, lean=True)
                answer(name=None if doc is None else doc["name"])
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
    db.disconnect()


if __name__ == "__main__":
    main()
