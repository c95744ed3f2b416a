"""What one message of the Redis invalidation bus costs: ``python benchmarks/bus_cost.py [--writes N] [--subscribers K]``.

Starts a redis-server (the test suite's launcher, a temporary directory) and, in this process,
one publishing cache and ``K`` subscribing caches (``QueryCache`` + ``RedisBus`` each, on one
namespace, each with its own local bus: as if each were another worker process), every
subscriber holding ``--users`` id lookups of ``User`` (the web mix's entries). The publisher
then makes ``N`` writes (``QueryCache.invalidate`` of one User id: what ``db.update`` does after
the server's answer), in one of three paces:

- ``paced``: one write every ``--interval-ms`` (the main thread sleeps in between): each message
  arrives alone, as in the web mix (a User write every ~13 ms);
- ``busy``: the same, but the main thread computes in between (it holds the GIL, as a request
  thread does while the bus threads want to run);
- ``burst``: the N writes back to back.

Printed per thread kind (request: the writing thread; publisher: the writer's publisher thread;
own sub: the writer's subscriber thread, which hears its own messages; per subscriber: the mean
of the others' subscriber threads): CPU (``pthread_getcpuclockid``: each thread's own clock, read from the
main thread) per write, context switches per write (``/proc/self/task/TID/status``:
voluntary = the thread slept (a wake-up each), involuntary = preempted), the same over an idle
stretch of equal length (what the threads cost with no message at all: the polling loops), and
this process's ``process_time`` per write. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bson import ObjectId

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # redis_server.py (and live/nxserver.py it imports)

from harness import thread_cpu as _cpu  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from astro_db.cache.bus import LocalBus, Notice  # noqa: E402
from astro_db.cache.redis_bus import RedisBus  # noqa: E402
from astro_db.cache.store import QueryCache, cache_key  # noqa: E402

FIELDS = frozenset({"lastActive", "_rev", "_op", "updatedAt"})


def _switches(thread: threading.Thread | None) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of ``thread`` so far."""
    if thread is None or thread.native_id is None:
        return (0, 0)
    try:
        text = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    except OSError:
        return (0, 0)
    values = dict(line.split(":", 1) for line in text.splitlines() if "ctxt_switches" in line)
    return (int(values["voluntary_ctxt_switches"]), int(values["nonvoluntary_ctxt_switches"]))


class Sample:
    """CPU seconds and context switches of each thread kind, read at one moment."""

    def __init__(self, publisher: QueryCache, subscribers: list[QueryCache]) -> None:
        main = threading.main_thread()
        pub_bus = publisher.bus
        self.process = time.process_time()
        self.request = time.thread_time() if threading.current_thread() is main else _cpu(main)
        self.request_sw = _switches(main)
        self.publisher = _cpu(pub_bus._publisher)  # type: ignore[attr-defined]
        self.publisher_sw = _switches(pub_bus._publisher)  # type: ignore[attr-defined]
        self.own = _cpu(pub_bus._thread)  # type: ignore[attr-defined]  # the writer's subscriber: hears its own
        self.subscribers = [_cpu(c.bus._thread) + _cpu(c.bus._publisher) for c in subscribers]  # type: ignore[attr-defined]
        self.subscribers_sw = [_sum(_switches(c.bus._thread), _switches(c.bus._publisher))  # type: ignore[attr-defined]
                               for c in subscribers]


def _sum(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0] + b[0], a[1] + b[1])


def _diff(after: Sample, before: Sample, n: int) -> dict[str, Any]:
    per = 1e6 / n
    subs = [(a - b) * per for a, b in zip(after.subscribers, before.subscribers)]
    subs_sw = [((a[0] - b[0]) / n, (a[1] - b[1]) / n) for a, b in zip(after.subscribers_sw, before.subscribers_sw)]
    return {
        "process": (after.process - before.process) * per,
        "request": (after.request - before.request) * per,
        "request_sw": ((after.request_sw[0] - before.request_sw[0]) / n, (after.request_sw[1] - before.request_sw[1]) / n),
        "publisher": (after.publisher - before.publisher) * per,
        "own": (after.own - before.own) * per,
        "publisher_sw": ((after.publisher_sw[0] - before.publisher_sw[0]) / n,
                         (after.publisher_sw[1] - before.publisher_sw[1]) / n),
        "subscriber": statistics.mean(subs),
        "subscriber_sw": (statistics.mean(s[0] for s in subs_sw), statistics.mean(s[1] for s in subs_sw)),
    }


def _wait(check: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("condition never held")
        time.sleep(0.002)


def _spin(seconds: float) -> None:
    """Hold the GIL computing for ``seconds`` (a request thread's Python work)."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(200):
            x += i * i


def make_caches(url: str, subscribers: int, users: int, namespace: str) -> tuple[QueryCache, list[QueryCache], list[Any]]:
    def one() -> QueryCache:
        return QueryCache(ttl_s=300, max_entries=10_000, models=frozenset({"User"}), bus=RedisBus(url, namespace),
                          peers=LocalBus(), id_key=b"bus-cost")

    publisher = one()
    subs = [one() for _ in range(subscribers)]
    _wait(lambda: publisher.trusted and all(c.trusted for c in subs))
    ids = [ObjectId() for _ in range(users)]
    for cache in subs:
        for oid in ids:
            key = cache_key("User", "find_one", {"_id": oid})
            generation = cache.generation("User")  # registers User as cached (SADD) the first time
            cache.put(key, {"_id": oid, "email": f"{oid}@example.com", "name": "U", "lastActive": None}, generation)
    publisher.generation("User")
    return publisher, subs, ids


def run(url: str, mode: str, writes: int, subscribers: int, users: int, interval_s: float, namespace: str) -> dict[str, Any]:
    publisher, subs, ids = make_caches(url, subscribers, users, namespace)
    try:
        # idle: the threads' own loops with no message, over the time the writes will take
        idle_s = max(interval_s * writes, 1.0) if mode != "burst" else 1.0
        before = Sample(publisher, subs)
        time.sleep(idle_s)
        idle = _diff(Sample(publisher, subs), before, 1)
        idle = {k: (v / idle_s if isinstance(v, float) else tuple(x / idle_s for x in v)) for k, v in idle.items()}
        received = [c.bus.figures.received for c in subs]  # type: ignore[attr-defined]
        sent = publisher.bus.figures.sent  # type: ignore[attr-defined]
        before = Sample(publisher, subs)
        started = time.perf_counter()
        for n in range(writes):
            oid = ids[n % len(ids)]
            publisher.invalidate("User", Notice("User", frozenset({publisher.digest(oid)}), FIELDS))
            if mode == "paced":
                time.sleep(interval_s)
            elif mode == "busy":
                _spin(interval_s)
        _wait(lambda: not publisher.bus.stats()["pending"])
        messages = publisher.bus.figures.sent - sent  # type: ignore[attr-defined]  # writes coalesce while one is sent
        _wait(lambda: all(c.bus.figures.received - r >= messages for c, r in zip(subs, received)))  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - started
        after = Sample(publisher, subs)
        out = _diff(after, before, writes)
        out["elapsed_s"] = elapsed
        out["messages"] = messages
        out["idle"] = idle
        out["kept"] = sum(c.stats()["kept"] for c in subs)
        out["dropped"] = sum(c.stats()["invalidations"] for c in subs)
        return out
    finally:
        for cache in (publisher, *subs):
            cache.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--mode", choices=("paced", "busy", "burst", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a quick check that it runs (not a measurement)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.writes, args.subscribers, args.users, args.rounds, args.interval_ms = 20, 2, 10, 1, 1.0
    modes = ("paced", "busy", "burst") if args.mode == "all" else (args.mode,)
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
            for r in range(args.rounds):
                for mode in modes:
                    results[mode].append(run(redis.url, mode, args.writes, args.subscribers, args.users,
                                             args.interval_ms / 1000, f"buscost{r}{mode}"))
        finally:
            redis.stop()
    print(f"Redis bus: 1 publisher, {args.subscribers} subscribers, {args.users} cached users each, "
          f"{args.writes} writes x {args.rounds} rounds (medians); CPU in µs and context switches per write")
    head = (f"{'mode':6} {'process':>8} {'request':>8} {'publisher':>10} {'own sub':>8} {'per subscriber':>15} "
            f"{'pub vol/invol':>14} {'sub vol/invol':>14} {'req vol/invol':>14} {'messages':>9}")
    print(head)
    for mode, done in results.items():
        def med(name: str, done: list[dict[str, Any]] = done) -> float:
            return statistics.median(d[name] for d in done)

        def med_sw(name: str, done: list[dict[str, Any]] = done) -> str:
            return f"{statistics.median(d[name][0] for d in done):.2f}/{statistics.median(d[name][1] for d in done):.2f}"

        print(f"{mode:6} {med('process'):8.0f} {med('request'):8.0f} {med('publisher'):10.0f} {med('own'):8.0f} {med('subscriber'):15.0f} "
              f"{med_sw('publisher_sw'):>14} {med_sw('subscriber_sw'):>14} {med_sw('request_sw'):>14} {med('messages'):9.0f}")
    for mode, done in results.items():
        idle = [d["idle"] for d in done]
        print(f"{mode:6} idle, per second: publisher {statistics.median(i['publisher'] for i in idle):.0f} µs "
              f"{statistics.median(i['publisher_sw'][0] for i in idle):.1f} wake-ups, per subscriber "
              f"{statistics.median(i['subscriber'] for i in idle):.0f} µs "
              f"{statistics.median(i['subscriber_sw'][0] for i in idle):.1f} wake-ups")


if __name__ == "__main__":
    main()
