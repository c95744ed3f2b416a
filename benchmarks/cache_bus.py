"""The query cache across processes: ``python benchmarks/cache_bus.py [--tiny]``.

Starts an nx-27017 server and a redis-server (the test suite's launchers, temporary
directories) and prints, for ``find_one`` by id on ``User`` (a cached model):

- in-process cost: an uncached read, a cache hit with the local bus, a cache hit with the
  Redis bus, and an ``update`` with each bus (the Redis one adds the publish round trip);
- cross-process: a second process (tests/live/cache_bus_worker.py) caches the user; this one
  renames it; the delay from publish to the other subscriber's delivery (median, p95, max) and
  from this process's ``update`` returning to the other serving the new name.

Figures, not assertions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # live/nxserver.py, redis_server.py

from live.nxserver import NxServer  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from astro_db import Database  # noqa: E402

WORKER = ROOT / "tests" / "live" / "cache_bus_worker.py"


def _rate(fn: Callable[[], Any], budget_s: float) -> tuple[float, float]:
    """(operations per second, microseconds per operation) of ``fn`` over about ``budget_s``."""
    fn()
    n, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < budget_s:
        fn()
        n += 1
    return n / elapsed, elapsed / n * 1e6


class _Worker:
    def __init__(self, url: str, bus: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, str(WORKER), url, bus], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        if "error" in out:
            raise RuntimeError(out["error"])
        return out

    def close(self) -> None:
        self.call("exit")
        self.proc.wait(timeout=30)


def _in_process(url: str, redis_url: str, budget_s: float) -> None:
    print(f"{'in one process: find_one by id (User)':44} {'ops/s':>10} {'us/op':>9}")
    rows: list[tuple[str, float, float]] = []
    for bus in ("local", redis_url):
        db = Database(url, allow_plaintext_sensitive=True, cache_models=("User",), cache_bus=bus, ensure_indexes=False).connect()
        cache = db.executor.runtime.cache
        deadline = time.monotonic() + 30
        while not cache.trusted and time.monotonic() < deadline:
            time.sleep(0.01)
        user = db.create("User", {"email": f"{uuid.uuid4().hex[:10]}@example.com", "name": "bench"})
        label = "local bus" if bus == "local" else "Redis bus"
        if bus == "local":
            uncached = _rate(lambda db=db, user=user: db.find_one("User", {"id": user.id}, lean=True, cache=False), budget_s)
            rows.append(("uncached (cache=False)", *uncached))
        rows.append((f"cache hit, {label}", *_rate(lambda db=db, user=user: db.find_one("User", {"id": user.id}, lean=True), budget_s)))
        names = iter(range(10**9))
        updates = _rate(lambda db=db, user=user, names=names: db.update("User", {"id": user.id}, {"name": f"n{next(names)}"}), budget_s)
        rows.append((f"update, {label}", *updates))
        db.disconnect()
    for label, rate, cost in rows:
        print(f"  {label:42} {rate:>10,.0f} {cost:>9.1f}")


def _across_processes(url: str, redis_url: str, writes: int) -> None:
    db = Database(url, allow_plaintext_sensitive=True, cache_models=("User",), cache_bus=redis_url, ensure_indexes=False).connect()
    other = _Worker(url, redis_url)
    try:
        other.call("wait", key="connected", value=True)
        user = db.create("User", {"email": f"{uuid.uuid4().hex[:10]}@example.com", "name": "v0"})
        uid = str(user.id)
        other.call("read", id=uid)
        received = other.call("stats")["bus"]["received"]
        delivery, fresh = [], []
        for i in range(1, writes + 1):
            db.update("User", {"id": user.id}, {"name": f"v{i}"})
            returned = time.perf_counter()
            out = other.call("wait", key="received", at_least=received + 1)
            seen = time.perf_counter()
            received = out["bus"]["received"]
            delivery.append(out["bus"]["last_delay_ms"])
            assert other.call("read", id=uid)["name"] == f"v{i}"
            fresh.append((seen - returned) * 1000.0)
        hit = other.call("read", id=uid)["cache"]["hits"]
    finally:
        other.close()
        db.disconnect()
    delivery.sort()
    fresh.sort()

    def show(name: str, values: list[float]) -> None:
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        print(f"  {name:42} median {statistics.median(values):7.2f} ms  p95 {p95:7.2f} ms  max {max(values):7.2f} ms")

    print(f"across two processes (Redis bus), {writes} renames:")
    show("publish -> other subscriber delivered", delivery)
    show("update returned -> other process knows", fresh)
    print(f"  (the other process's cache hits afterwards: {hit}; the second figure includes a pipe round trip)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke run: short budgets, few writes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    budget_s, writes = (0.05, 5) if args.tiny else (1.0, 200)
    with tempfile.TemporaryDirectory() as tmp:
        nx = NxServer(Path(tmp) / "nx").start()
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            url = nx.url(f"bench_{uuid.uuid4().hex[:8]}")
            _in_process(url, redis.url, budget_s)
            _across_processes(url, redis.url, writes)
        finally:
            redis.stop()
            nx.stop()


if __name__ == "__main__":
    main()
