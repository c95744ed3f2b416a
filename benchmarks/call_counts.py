"""Python function calls per ``find_one`` by id, raw PyMongo against astro_db: ``python benchmarks/call_counts.py``.

Starts nx-27017 (the test suite's patched launcher, as ``run.py`` does), profiles 300 calls of
each side with cProfile and prints the function calls per call (C functions included, as
cProfile counts them), split by package (astro_db, PyMongo, bson, the rest: the standard
library's and C helpers), for raw PyMongo on a plain client, astro_db as shipped (no per-call
listener), with ``command_monitoring=True`` (the monitor's command and pool listeners), with
``monitoring=False``, and lean, and with ``tracing=False`` too; then the PyMongo functions
astro_db's client calls more often than the raw client, those the monitor's per-call listeners
add and those the tracing extra's server listener adds (none here: this process sets no tracer
provider, so it is not registered). Counts do not depend on the machine's load, unlike CPU
time. Figures, never assertions.
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # live/nxserver.py

import pymongo  # noqa: E402
from live.nxserver import NxServer  # noqa: E402

from astro_db import Database  # noqa: E402
from astro_db.models import User  # noqa: E402

CALLS = 300


def _package(path: str) -> str:
    for name in ("astro_db", "pymongo", "bson"):
        if name in path:
            return name
    return "other"


def _profile(fn: Callable[[int], Any]) -> pstats.Stats:
    for i in range(50):  # warm: plans, pools, imports
        fn(i)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(CALLS):
        fn(i)
    profiler.disable()
    return pstats.Stats(profiler)


def _pymongo_counts(stats: pstats.Stats) -> dict[str, float]:
    raw: Any = stats
    return {f"{path.split('site-packages/')[-1]}:{name}": numbers[1] / CALLS
            for (path, _, name), numbers in raw.stats.items() if "pymongo" in path}


def _print_diff(title: str, more: dict[str, float], less: dict[str, float], top: int) -> None:
    print(title)
    for n, key in sorted(((more.get(k, 0) - less.get(k, 0), k) for k in set(more) | set(less)), reverse=True)[:top]:
        print(f"  {n:+5.1f} {key}")


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="astro_calls_")
    server = NxServer(data_dir).start()
    try:
        url = server.url("calls")
        raw = pymongo.MongoClient(url, tz_aware=True)["calls"]["users"]
        common: dict[str, Any] = {"audit": False, "journal": False, "ensure_indexes": False,
                                  "allow_plaintext_sensitive": True}  # no key here: the User's personal fields in plaintext
        shipped = Database(url, **common).connect()
        listened = Database(url, **common, command_monitoring=True).connect()
        quiet = Database(url, **common, monitoring=False).connect()
        silent = Database(url, **common, monitoring=False, tracing=False).connect()  # no listener at all
        ids = [shipped.create(User, {"email": f"u{i}@example.com", "name": "U"}).id for i in range(50)]
        sides: dict[str, Callable[[int], Any]] = {
            "raw PyMongo": lambda i: raw.find_one({"_id": ids[i % 50]}),
            "astro_db": lambda i: shipped.find_one(User, {"id": ids[i % 50]}),
            "astro_db command_monitoring=True": lambda i: listened.find_one(User, {"id": ids[i % 50]}),
            "astro_db monitoring=False": lambda i: quiet.find_one(User, {"id": ids[i % 50]}),
            "astro_db lean, monitoring=False": lambda i: quiet.find_one(User, {"id": ids[i % 50]}, lean=True),
            "astro_db monitoring=False, tracing=False": lambda i: silent.find_one(User, {"id": ids[i % 50]}),
        }
        measured: dict[str, pstats.Stats] = {}
        for name, fn in sides.items():
            stats = measured[name] = _profile(fn)
            per: collections.Counter[str] = collections.Counter()
            for (path, _, _), numbers in stats.stats.items():  # type: ignore[attr-defined]
                per[_package(path)] += numbers[1] / CALLS
            total = stats.total_calls / CALLS  # type: ignore[attr-defined]
            print(f"{name:40} {total:5.0f} calls per call: " + ", ".join(f"{k} {v:.0f}" for k, v in per.most_common()))
        quiet_counts = _pymongo_counts(measured["astro_db monitoring=False"])
        _print_diff("PyMongo calls astro_db's client (monitoring=False) makes beyond the raw client's, per call:",
                    quiet_counts, _pymongo_counts(measured["raw PyMongo"]), 12)
        _print_diff("PyMongo calls the monitor's per-call listeners (command_monitoring=True) add, per call:",
                    _pymongo_counts(measured["astro_db command_monitoring=True"]), _pymongo_counts(measured["astro_db"]), 8)
        _print_diff("PyMongo calls the tracing extra's server listener adds, per call:",
                    quiet_counts, _pymongo_counts(measured["astro_db monitoring=False, tracing=False"]), 8)
        shipped.disconnect()
        listened.disconnect()
        quiet.disconnect()
        silent.disconnect()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
