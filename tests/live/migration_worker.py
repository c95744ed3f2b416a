"""A worker process of the live migration test.

``python migration_worker.py migrate <url> <dir> [--kill-at N] [--wait-for FILE] [--clock-offset S]``
runs ``Migrator(...).up()``; ``--kill-at N`` SIGKILLs this process right after batch N's update
reached the server (before its change records and position are written); ``--wait-for FILE``
holds the final pass until FILE exists (so a concurrent writer's writes all land during the
batches); ``--clock-offset`` moves the lease clock (a killed run's lease counts as expired).

``python migration_worker.py write <url> <done-file> <seed> <n> [--after FILE]`` keeps writing
while a migration runs (from when FILE exists: ``migrate --started FILE`` creates it at its first
batch): ``n`` old-shape users inserted with ``_id``s behind every existing one (as the Node service
might), ``n`` inserted through the service (ahead), and ``n`` existing users renamed through
the service; then it creates ``done-file``. Prints one JSON line: what it wrote.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

from bson import ObjectId

from astro_db import Database
from astro_db.migrations import Migrator


def migrate(args: argparse.Namespace) -> None:
    db = Database(args.url, ensure_indexes=False, allow_plaintext_sensitive=True).connect()  # no key: personal fields in clear

    def hook(event: str, **details: object) -> None:
        if event == "batch-start" and args.started and not Path(args.started).exists():
            Path(args.started).write_text("started")  # the writer starts writing now
        if event == "batch-updated" and args.kill_at and details.get("batch") == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if event == "final-pass" and args.wait_for:
            deadline = time.monotonic() + 300
            pause = threading.Event()
            while not Path(args.wait_for).exists():  # a barrier with the writer, bounded
                if time.monotonic() > deadline:
                    raise SystemExit("the writer never finished")
                pause.wait(0.02)

    offset = args.clock_offset
    report = Migrator(db, args.dir, batch_size=args.batch_size, hook=hook, clock=lambda: time.time() + offset).up()
    print(json.dumps(report.as_dict(), default=str), flush=True)
    db.disconnect()


def write(args: argparse.Namespace) -> None:
    if args.after:
        deadline = time.monotonic() + 300
        pause = threading.Event()
        while not Path(args.after).exists():  # start once the migration has started its batches
            if time.monotonic() > deadline:
                raise SystemExit("the migration never started")
            pause.wait(0.02)
    db = Database(args.url, ensure_indexes=False, allow_plaintext_sensitive=True).connect()  # no key: personal fields in clear
    rng = random.Random(args.seed)
    users = db.mongo["users"]
    ids = [d["_id"] for d in users.find({}, {"_id": 1}, sort=[("_id", -1)], limit=20_000)]  # ahead of the position
    renamed = rng.sample(ids, args.n)
    behind, ahead = [], []
    for i in range(args.n):
        when = datetime.datetime(2001, 1, 1) + datetime.timedelta(seconds=i)
        oid = ObjectId.from_datetime(when)
        users.insert_one({"_id": oid, "email": f"behind{i}@example.com", "name": "Behind", "__v": 0})
        behind.append(str(oid))
        ahead.append(str(db.create("User", {"email": f"ahead{i}@example.com", "name": "Ahead"}, lean=True)["_id"]))
        db.update("User", {"id": renamed[i]}, {"name": f"Renamed {i}"})
    print(json.dumps({"behind": behind, "ahead": ahead, "renamed": [str(r) for r in renamed]}), flush=True)
    Path(args.done).write_text("done")
    db.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("migrate")
    m.add_argument("url")
    m.add_argument("dir")
    m.add_argument("--kill-at", type=int, default=0)
    m.add_argument("--wait-for")
    m.add_argument("--clock-offset", type=float, default=0.0)
    m.add_argument("--batch-size", type=int, default=1000)
    m.add_argument("--started")
    w = sub.add_parser("write")
    w.add_argument("url")
    w.add_argument("done")
    w.add_argument("seed", type=int)
    w.add_argument("n", type=int)
    w.add_argument("--after")
    args = parser.parse_args()
    migrate(args) if args.mode == "migrate" else write(args)


if __name__ == "__main__":
    main()
