"""What monitoring costs per call: ``python benchmarks/monitoring_cost.py [--rounds N] [--calls N] [--tiny]``.

Two measurements, client CPU (``time.process_time()``), the median of ``--rounds`` rounds:

1. **The listeners alone**: the monitor's per-call PyMongo listeners
   (``Monitor.listeners(commands=True)``, what ``command_monitoring=True`` registers) fed the
   events one driver call makes (command started + succeeded, pool check-out started, checked
   out, checked in), built once as real ``pymongo.monitoring`` events. Per call, in µs. No
   server, no driver: this is the astro_db code the listeners run and nothing else.
2. **find_one by id** (User, lean) on an nx-27017 server (the suite's launcher), per call in µs:
   raw PyMongo without listeners, raw PyMongo with the monitor's per-call listeners registered
   (the listeners plus the event objects PyMongo builds for them), with the default's heartbeat
   listener only (PyMongo publishes nothing per call for it), with a no-op command listener and
   with no-op pool listeners (what PyMongo's event publishing costs by itself); astro_db with
   its defaults (no per-call listener: the run step's figures), ``command_monitoring=True``,
   ``monitoring=False`` and ``monitoring=False, tracing=False`` (no tracer provider is set in
   this process, so tracing registers no listener in any of them). The rounds interleave the
   configurations.

Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import MongoClient, monitoring

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from live.nxserver import NxServer  # noqa: E402

from astro_db import Database, DatabaseConfig  # noqa: E402
from astro_db.monitoring import Monitor  # noqa: E402
from astro_db.registry import default_registry  # noqa: E402


class _NoopCommands(monitoring.CommandListener):
    def started(self, event: Any) -> None:
        pass

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


class _NoopPool(monitoring.ConnectionPoolListener):
    def __getattribute__(self, name: str) -> Any:
        if name.startswith(("pool_", "connection_")):
            return lambda event: None
        return super().__getattribute__(name)


def _cpu_per_call(fn: Callable[[], Any], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the client CPU per call of ``fn``, in µs."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            fn()
        samples.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(samples)


def listeners_alone(calls: int, rounds: int) -> float:
    monitor = Monitor(DatabaseConfig(url="mongodb://localhost:1/bench").health, default_registry(), max_pool_size=50)
    command, pool, _ = monitor.listeners(commands=True)
    address = ("localhost", 27017)
    oid = ObjectId()
    cmd = {"find": "users", "filter": {"_id": oid}, "limit": 1, "singleBatch": True, "lsid": {"id": b"x"},
           "$db": "bench"}
    reply = {"cursor": {"firstBatch": [{"_id": oid, "email": "a@example.com", "name": "A"}], "id": 0,
                        "ns": "bench.users"}, "ok": 1.0}
    started = monitoring.CommandStartedEvent(cmd, "bench", 7, address, 7)
    succeeded = monitoring.CommandSucceededEvent(dt.timedelta(microseconds=400), reply, "find", 7, address, 7, database_name="bench")
    check_out = monitoring.ConnectionCheckOutStartedEvent(address)
    checked_out = monitoring.ConnectionCheckedOutEvent(address, 1, 0.00001)
    checked_in = monitoring.ConnectionCheckedInEvent(address, 1)

    def one_call() -> None:
        pool.connection_check_out_started(check_out)
        pool.connection_checked_out(checked_out)
        command.started(started)
        command.succeeded(succeeded)
        pool.connection_checked_in(checked_in)

    return _cpu_per_call(one_call, calls, rounds)


def find_one_costs(url: str, calls: int, rounds: int) -> dict[str, float]:
    """Client CPU per find_one of each configuration; the rounds interleave the configurations,
    so the machine's load falls on all alike."""
    dbname = url.rsplit("/", 1)[1]
    setup = Database(url, ensure_indexes=False, allow_plaintext_sensitive=True).connect()  # no key: the cost of monitoring only
    user = setup.create("User", {"email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "Bench"})
    setup.disconnect()
    plain = MongoClient(url)
    monitor = Monitor(DatabaseConfig(url=url).health, default_registry(), max_pool_size=50)
    listened = MongoClient(url, event_listeners=monitor.listeners(commands=True))
    heartbeats = MongoClient(url, event_listeners=Monitor(DatabaseConfig(url=url).health, default_registry(),
                                                          max_pool_size=50).listeners())
    noop_commands = MongoClient(url, event_listeners=[_NoopCommands()])
    noop_pool = MongoClient(url, event_listeners=[_NoopPool()])
    options: dict[str, dict[str, Any]] = {
        "astro_db defaults": {},
        "astro_db command_monitoring=True": {"command_monitoring": True},
        "astro_db monitoring=False": {"monitoring": False},
        "astro_db monitoring=False, tracing=False": {"monitoring": False, "tracing": False},
    }
    dbs = {name: Database(url, ensure_indexes=False, allow_plaintext_sensitive=True, **given).connect()
           for name, given in options.items()}
    calls_of: dict[str, Callable[[], Any]] = {
        "raw PyMongo, no listeners": lambda: plain[dbname]["users"].find_one({"_id": user.id}),
        "raw PyMongo + monitor listeners": lambda: listened[dbname]["users"].find_one({"_id": user.id}),
        "raw PyMongo + the heartbeat listener only": lambda: heartbeats[dbname]["users"].find_one({"_id": user.id}),
        "raw PyMongo + a no-op command listener": lambda: noop_commands[dbname]["users"].find_one({"_id": user.id}),
        "raw PyMongo + no-op pool listeners": lambda: noop_pool[dbname]["users"].find_one({"_id": user.id}),
        **{name: (lambda db=db: db.find_one("User", {"id": user.id}, lean=True)) for name, db in dbs.items()},
    }
    samples: dict[str, list[float]] = {name: [] for name in calls_of}
    try:
        for fn in calls_of.values():
            _cpu_per_call(fn, 50, 1)  # warm-up
        for _ in range(rounds):
            for name, fn in calls_of.items():
                samples[name].append(_cpu_per_call(fn, calls, 1))
    finally:
        for client in (plain, listened, heartbeats, noop_commands, noop_pool):
            client.close()
        for db in dbs.values():
            db.disconnect()
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1000, help="find_one calls per round (x100 for the listeners alone)")
    parser.add_argument("--tiny", action="store_true", help="a quick check that it runs (not a measurement)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.rounds, args.calls = 1, 20
    alone = listeners_alone(args.calls * 100, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        nx = NxServer(Path(tmp) / "nx").start()
        try:
            costs = find_one_costs(nx.url(f"moncost_{uuid.uuid4().hex[:8]}"), args.calls, args.rounds)
        finally:
            nx.stop()
    print(f"client CPU per call, median of {args.rounds} rounds")
    print(f"{'the monitor listeners alone (synthetic events of one call)':58} {alone:8.2f} us")
    for name, us in costs.items():
        print(f"{'find_one by id: ' + name:58} {us:8.1f} us")
    print(f"{'listeners + PyMongo events (raw with - raw without)':58} "
          f"{costs['raw PyMongo + monitor listeners'] - costs['raw PyMongo, no listeners']:8.1f} us")
    print(f"{'astro_db command_monitoring=True - defaults':58} "
          f"{costs['astro_db command_monitoring=True'] - costs['astro_db defaults']:8.1f} us")
    print(f"{'astro_db defaults - monitoring=False':58} "
          f"{costs['astro_db defaults'] - costs['astro_db monitoring=False']:8.1f} us")


if __name__ == "__main__":
    main()
