"""The User cache under a light web mix: ``python benchmarks/web_mix.py [--requests N] [--users N] [--tiny]``.

Starts an nx-27017 server and a redis-server (the test suite's launchers, temporary directories)
and drives the Flask example (examples/flask_app.py) in this process through Flask's test client:
four apps, each with its own ``Database`` (four "workers"), sharing the one server and, for the
cached configurations, one Redis bus (``cache_models=("User",)``, ``cache_bus=redis://...``). No
gunicorn: every request goes to one of the four apps at random, in one thread, so the CPU per
request is this process's ``time.process_time()`` (the four apps' request handling, their bus
threads included) over the requests made; the server's CPU is not counted.

The light mix (80% reads), per request, for a user drawn uniformly from ``--users``:
GET /users/<id> 45%, GET /users/<id>/insights 20%, GET /users/<id>/timing 15%;
POST /users 5% (a new user), POST /users/<id>/insights 10% (loads the user first),
PATCH /users/<id>/seen 5% (sets lastActive: the session's one User update of docs/scaling.md;
a route this script adds to the example, which has no User update).

Configurations: no cache, the User cache over Redis, and the same with the shared result
store (``cache_store=`` on the bus's Redis: a local miss is looked up in Redis), round by round
in turn (so the machine's load falls on all alike). Printed per configuration: client CPU per
request (µs; median of ``--rounds`` rounds, each on a fresh server database after a warm-up of a
quarter of the requests), the User cache's hit ratio over all four apps, for the shared store
its hits, misses (of which ``outdated``: an entry found that a write since made unservable),
puts stored and refused, and after the run a staleness check: once every bus has delivered
every notice, each app's cached answer for every user equals the server's (``stale`` must be 0).
``--no-store`` leaves the third configuration out. Figures, not assertions.

``--paired`` (``paired_round``): no cache and the User cache over Redis in one process, request by
request: each draw of the mix is made on both (in turn first), each request timed with the request
thread's ``time.thread_time``, the cached apps' bus threads with their own clocks
(``pthread_getcpuclockid``); printed per round (request thread, bus threads, their ratio to no
cache, hit ratio, stale) and per route. The machine's load at any moment falls on both, so its
rounds spread far less than the plain rounds on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # live/nxserver.py, redis_server.py
sys.path.insert(0, str(ROOT / "examples"))

import flask_app  # noqa: E402
from harness import thread_cpu as _thread_cpu  # noqa: E402
from live.nxserver import NxServer  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from astro_db.security import new_key  # noqa: E402

MIX = (("get_user", 45), ("list_insights", 20), ("list_timing", 15), ("create_user", 5), ("create_insight", 10),
       ("seen", 5))
WORKERS = 4


def _seen(user_id: str) -> Any:
    """PATCH /users/<id>/seen: the session's lastActive update."""
    flask_app.astro.current_db.update("User", {"id": user_id}, {"last_active": dt.datetime.now(dt.timezone.utc)})
    return "", 204


STORE_COUNTS = ("hits", "misses", "outdated", "stored", "refused", "errors", "forged")


def _apps(url: str, key: str, cache: str | None, store: bool = False) -> list[Any]:
    options: dict[str, Any] = {"encryption_key": key, "maxPoolSize": 50}
    if cache:
        options.update(cache_models=["User"], cache_bus=cache, cache_ttl_s=300)
    if cache and store:
        options.update(cache_store=cache)  # its MACs under a key derived from encryption_key
    apps = []
    for _ in range(WORKERS):
        app = flask_app.create_app({"ASTRO_DB_URL": url, "ASTRO_DB_EAGER_CONNECT": True, "ASTRO_DB_OPTIONS": options,
                                    "ASTRO_DB_HEALTH_URL": None})
        app.add_url_rule("/users/<user_id>/seen", view_func=_seen, methods=["PATCH"])
        apps.append(app)
    return apps


def _database(app: Any) -> Any:
    with app.app_context():
        return app.extensions["astro_db"].database


def _wait(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("condition never held")
        time.sleep(0.005)


def _settle(dbs: list[Any]) -> None:
    """Until every bus has received every notice every app published (each hears its own too)."""
    caches = [db.executor.runtime.cache for db in dbs]
    if caches[0].bus.kind != "redis":
        return
    _wait(lambda: all(not c.bus_stats()["pending"] for c in caches))
    sent = sum(c.bus_stats()["sent"] for c in caches)
    _wait(lambda: all(c.bus_stats()["received"] >= sent for c in caches))


NAMES = [name for name, weight in MIX for _ in range(weight)]


def _draws(rng: random.Random, requests: int, users: int) -> list[tuple[int, int, str]]:
    """``requests`` draws of (app, user, route), in the order ``_run`` makes them."""
    apps, people = range(WORKERS), range(users)
    return [(rng.choice(apps), rng.choice(people), rng.choice(NAMES)) for _ in range(requests)]


def _run(apps: list[Any], users: list[str], requests: int, rng: random.Random) -> None:
    clients = [app.test_client() for app in apps]
    for n, (app, user, name) in enumerate(_draws(rng, requests, len(users))):
        _request(clients[app], users[user], name, n)


def _request(client: Any, user: str, name: str, n: int) -> None:
    """One request of the mix (``n``: its number, which dates an insight)."""
    if name == "get_user":
        response = client.get(f"/users/{user}")
    elif name == "list_insights":
        response = client.get(f"/users/{user}/insights")
    elif name == "list_timing":
        response = client.get(f"/users/{user}/timing")
    elif name == "create_user":
        response = client.post("/users", json={"email": f"{uuid.uuid4().hex[:12]}@example.com", "name": "New"})
    elif name == "create_insight":
        response = client.post(f"/users/{user}/insights", json={
            "date": (dt.datetime(2024, 1, 1) + dt.timedelta(minutes=n)).isoformat(), "energy_level": n % 101,
            "recommendations": ["Take a walk"], "summary": "A bright day."})
    else:
        response = client.patch(f"/users/{user}/seen")
    if response.status_code >= 400:
        raise RuntimeError(f"{name}: {response.status_code} {response.get_data(as_text=True)[:300]}")


def _bus_cpu(dbs: list[Any]) -> float:
    """CPU seconds of the Redis buses' threads of ``dbs`` (each a subscriber and a publisher)."""
    total = 0.0
    for db in dbs:
        bus = db.executor.runtime.cache.bus
        total += _thread_cpu(getattr(bus, "_thread", None)) + _thread_cpu(getattr(bus, "_publisher", None))
    return total


def paired_round(nx: Any, redis_url: str, key: str, users_n: int, requests: int, seed: int) -> dict[str, Any]:
    """No cache and the User cache over Redis in one round, request by request: each draw of the
    mix is made on both (in turn first), so the machine's load at that moment falls on both.
    Per configuration: the request thread's CPU per request (its ``thread_time`` around each
    request) by route, and for the cache its bus threads' CPU (``pthread_getcpuclockid``);
    the rest of the process (PyMongo's monitors of both) is shown apart, not attributed."""
    sides = {}
    for name, cache in (("no cache", None), ("User cache over Redis", redis_url)):
        apps = _apps(nx.url(f"webmix_{uuid.uuid4().hex[:8]}"), key, cache)
        sides[name] = {"apps": apps, "dbs": [_database(app) for app in apps],
                       "clients": [app.test_client() for app in apps]}
    try:
        for side in sides.values():
            for db in side["dbs"]:
                _wait(lambda db=db: db.executor.runtime.cache.trusted)
            db = side["dbs"][0]
            side["users"] = [str(db.create("User", {"email": f"u{i}-{uuid.uuid4().hex[:6]}@example.com",
                                                    "name": f"U{i}"}).id) for i in range(users_n)]
        rng = random.Random(seed)
        names = list(sides)
        cached = sides[names[1]]
        for n, (app, user, route) in enumerate(_draws(rng, requests // 4, users_n)):  # warm-up
            for side in sides.values():
                _request(side["clients"][app], side["users"][user], route, n)
        _settle(cached["dbs"])
        before = [db.executor.runtime.cache.stats() for db in cached["dbs"]]
        cpu = {name: dict.fromkeys(NAMES, 0.0) for name in names}
        counts = dict.fromkeys(NAMES, 0)
        bus_before, main_before, process_before = _bus_cpu(cached["dbs"]), time.thread_time(), time.process_time()
        for n, (app, user, route) in enumerate(_draws(rng, requests, users_n)):
            counts[route] += 1
            for name in (names if n % 2 == 0 else names[::-1]):
                side = sides[name]
                started = time.thread_time()
                _request(side["clients"][app], side["users"][user], route, n)
                cpu[name][route] += time.thread_time() - started
        bus = (_bus_cpu(cached["dbs"]) - bus_before) / requests * 1e6
        rest = ((time.process_time() - process_before) - (time.thread_time() - main_before)) / requests * 1e6 - bus
        after = [db.executor.runtime.cache.stats() for db in cached["dbs"]]
        hits = sum(a["hits"] - b["hits"] for a, b in zip(after, before))
        looked = sum(a["hits"] + a["misses"] - b["hits"] - b["misses"] for a, b in zip(after, before))
        return {"request": {name: sum(cpu[name].values()) / requests * 1e6 for name in names},
                "by_route": {route: {name: cpu[name][route] / counts[route] * 1e6 for name in names}
                             for route in dict.fromkeys(NAMES) if counts[route]},
                "counts": counts, "bus": bus, "rest": rest, "hits": hits, "looked": looked,
                "stale": _stale(cached["dbs"], cached["users"])}
    finally:
        for side in sides.values():
            for db in side["dbs"]:
                db.disconnect()


def paired(nx: Any, redis_url: str, users_n: int, requests: int, rounds: int) -> None:
    """``--paired``: ``paired_round`` ``rounds`` times, printed per round and as medians."""
    key = new_key()
    done = [paired_round(nx, redis_url, key, users_n, requests, r) for r in range(rounds)]
    plain, cached = "no cache", "User cache over Redis"
    print(f"light web mix, paired request by request: {WORKERS} apps per configuration in one process, {users_n} users, "
          f"{requests} requests x {rounds} rounds; CPU in µs per request")
    print(f"{'round':>5} {'no cache':>9} {'cache: request':>15} {'+ bus threads':>14} {'= total':>8} {'ratio':>6} "
          f"{'not attributed':>15} {'hit ratio':>10} {'stale':>6}")
    ratios = []
    for r, d in enumerate(done):
        total = d["request"][cached] + d["bus"]
        ratios.append(total / d["request"][plain])
        print(f"{r:5d} {d['request'][plain]:9.0f} {d['request'][cached]:15.0f} {d['bus']:14.0f} {total:8.0f} "
              f"{ratios[-1]:6.3f} {d['rest']:15.0f} {d['hits'] / max(d['looked'], 1):10.1%} {d['stale']:6d}")
    print(f"median ratio {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}); "
          f"bus threads {statistics.median(d['bus'] for d in done):.0f} µs per request")
    print("by route (medians over rounds, µs per request of that route): no cache / cache request thread")
    for route in done[0]["by_route"]:
        a = statistics.median(d["by_route"][route][plain] for d in done)
        b = statistics.median(d["by_route"][route][cached] for d in done)
        print(f"  {route:15} {a:8.0f} / {b:8.0f}  ({b - a:+.0f})")


def _stale(dbs: list[Any], users: list[str]) -> int:
    """Cached answers that differ from the server's, once every notice is delivered."""
    _settle(dbs)
    stale = 0
    for db in dbs:
        for user in users:
            cached = db.find_one("User", {"id": user}, lean=True)
            fresh = db.find_one("User", {"id": user}, lean=True, cache=False)
            stale += cached != fresh
    return stale


def _store_counts(dbs: list[Any]) -> dict[str, int]:
    """The shared store's counters summed over the apps (zeros without a store)."""
    out = dict.fromkeys(STORE_COUNTS, 0)
    for db in dbs:
        shared = db.executor.runtime.cache.bus_stats().get("shared_store") if db.executor.runtime.cache.enabled else None
        for name in STORE_COUNTS:
            out[name] += int((shared or {}).get(name, 0))
    return out


def one_round(nx: Any, cache: str | None, key: str, users_n: int, requests: int, seed: int,
              store: bool = False) -> dict[str, Any]:
    """One round of one configuration on a fresh database: CPU per request, hits, lookups, the
    shared store's counters, stale."""
    url = nx.url(f"webmix_{uuid.uuid4().hex[:8]}")
    apps = _apps(url, key, cache, store)
    dbs = [_database(app) for app in apps]
    try:
        for db in dbs:
            _wait(lambda db=db: db.executor.runtime.cache.trusted)
        users = [str(dbs[0].create("User", {"email": f"u{i}-{uuid.uuid4().hex[:6]}@example.com", "name": f"U{i}"}).id)
                 for i in range(users_n)]
        rng = random.Random(seed)
        _run(apps, users, requests // 4, rng)  # warm-up: caches and pools filled
        _settle(dbs)
        before = [db.executor.runtime.cache.stats() for db in dbs]
        store_before = _store_counts(dbs)
        started, started_thread = time.process_time(), time.thread_time()
        _run(apps, users, requests, rng)
        thread = (time.thread_time() - started_thread) / requests * 1e6
        cpu = (time.process_time() - started) / requests * 1e6
        after = [db.executor.runtime.cache.stats() for db in dbs]
        store_after = _store_counts(dbs)
        hits = sum(a["hits"] - b["hits"] for a, b in zip(after, before))
        looked = sum(a["hits"] + a["misses"] - b["hits"] - b["misses"] for a, b in zip(after, before))
        return {"cpu": cpu, "thread": thread, "hits": hits, "looked": looked, "stale": _stale(dbs, users) if cache else 0,
                "store": {name: store_after[name] - store_before[name] for name in STORE_COUNTS}}
    finally:
        for db in dbs:
            db.disconnect()


def measure(nx: Any, redis_url: str, users_n: int, requests: int, rounds: int,
            store: bool = True) -> list[dict[str, Any]]:
    """Every configuration, round by round in turn (the machine's load falls on all alike)."""
    key = new_key()
    configs: list[tuple[str, str | None, bool]] = [("no cache", None, False), ("User cache over Redis", redis_url, False)]
    if store:
        configs.append(("+ shared store", redis_url, True))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in configs}
    for r in range(rounds):
        for name, cache, shared in configs if r % 2 == 0 else configs[::-1]:
            results[name].append(one_round(nx, cache, key, users_n, requests, r, shared))
    rows = []
    for name, _, _ in configs:
        done = results[name]
        looked = sum(d["looked"] for d in done)
        rows.append({"config": name, "cpu_us": statistics.median(d["cpu"] for d in done),
                     "cpu_rounds": [round(d["cpu"]) for d in done],
                     "thread_us": statistics.median(d["thread"] for d in done),
                     "hit_ratio": sum(d["hits"] for d in done) / looked if looked else 0.0,
                     "stale": sum(d["stale"] for d in done),
                     "store": {n: sum(d["store"][n] for d in done) for n in STORE_COUNTS}})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per round")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a quick check that it runs (not a measurement)")
    parser.add_argument("--no-store", action="store_true", help="leave out the shared-store configuration")
    parser.add_argument("--paired", action="store_true",
                        help="no cache and the User cache over Redis request by request in one round (paired_round)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.requests, args.users, args.rounds = 80, 10, 1
    with tempfile.TemporaryDirectory() as tmp:
        nx = NxServer(Path(tmp) / "nx").start()
        redis = RedisServer(Path(tmp) / "redis").start()
        try:
            if args.paired:
                paired(nx, redis.url, args.users, args.requests, args.rounds)
                return
            rows = measure(nx, redis.url, args.users, args.requests, args.rounds, store=not args.no_store)
        finally:
            redis.stop()
            nx.stop()
    print(f"light web mix, {WORKERS} apps in one process, {args.users} users, {args.requests} requests x {args.rounds} rounds")
    print(f"{'configuration':26} {'CPU us/request':>15} {'request thread':>15} {'other threads':>14} {'rounds':>22} "
          f"{'hit ratio':>10} {'stale':>6}")
    for row in rows:
        print(f"{row['config']:26} {row['cpu_us']:15.0f} {row['thread_us']:15.0f} {row['cpu_us'] - row['thread_us']:14.0f} "
              f"{str(row['cpu_rounds']):>22} {row['hit_ratio']:10.1%} {row['stale']:6d}")
    base = rows[0]["cpu_us"]
    for row in rows[1:]:
        print(f"{row['config']} / no cache CPU: {row['cpu_us'] / base:.2f}x (median of the rounds); per round: "
              f"{[round(c / b, 2) for c, b in zip(row['cpu_rounds'], rows[0]['cpu_rounds'])]}")
    for row in rows[1:]:
        if row["store"]["hits"] + row["store"]["misses"]:
            counts = row["store"]
            looked = counts["hits"] + counts["misses"]
            print(f"shared store ({row['config']}): {counts['hits']} hits / {looked} lookups "
                  f"({counts['hits'] / looked:.1%}), outdated {counts['outdated']}, stored {counts['stored']}, "
                  f"refused {counts['refused']}, errors {counts['errors']}, forged {counts['forged']}")


if __name__ == "__main__":
    main()
