"""Generate a week of planetary insights for some users, store them with create_many, report
with aggregate.

    python examples/daily_insights.py                       # embedded backend, 3 demo users
    python examples/daily_insights.py --users 5 --days 7 --start 2024-03-01 --json
    MONGODB_URL=mongodb://localhost:27017/astro python examples/daily_insights.py
    python examples/daily_insights.py --report-only          # analytics: secondaryPreferred

Re-running is safe: a day a user already has is refused by the (userId, date) unique index and
counted as skipped, not duplicated. Insights expire 90 days after their day or after the run,
whichever is later (the TTL index on expiresAt), so a run over past days (--start 2024-03-01)
reports what it has just stored instead of watching the server delete it at once. Without
MONGODB_URL it runs on the embedded backend, chosen explicitly (no warning). The energy model
is a toy (a lunar cycle plus a per-user phase), standing in for the app's real astrology engine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import zlib
from typing import Any

from astro_db import Database, errors
from astro_db.driver.routing import ANALYTICS

LUNAR_DAYS = 29.53
ADVICE = {
    "high": ["Start the hard conversation", "Pitch the bold idea", "Train hard today"],
    "mid": ["Finish what is open", "Take a long walk", "Call a friend"],
    "low": ["Rest early", "Journal tonight", "Say no to one request"],
}


def demo_users(db: Database, count: int) -> list[Any]:
    """``count`` demo users, created on the first run and found on later ones."""
    emails = [f"daily-demo-{n}@example.com" for n in range(1, count + 1)]
    db.create_many("User", [{"email": e, "name": f"Demo User {n}"} for n, e in enumerate(emails, 1)])
    return db.find("User", {"email": {"$in": emails}}, sort=[("email", 1)])


def energy(user_id: Any, day: dt.datetime) -> int:
    """A day's energy 0-100 for a user: a lunar cycle shifted by a per-user phase."""
    phase = zlib.crc32(str(user_id).encode()) % 360
    angle = 2 * math.pi * (day.toordinal() / LUNAR_DAYS) + math.radians(phase)
    return round(50 + 45 * math.sin(angle))


KEEP = dt.timedelta(days=90)
EMBEDDED = "mongomock://localhost/daily_insights"  # the embedded backend, chosen on purpose


def expires_at(day: dt.datetime, now: dt.datetime | None = None) -> dt.datetime:
    """When a day's insight expires: ``KEEP`` after the day, or after now for a day long past
    (a TTL index deletes a document whose expiresAt has passed almost at once)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(day, now) + KEEP


def insight(user_id: Any, day: dt.datetime) -> dict[str, Any]:
    """One day's insight document for ``db.create_many``."""
    level = energy(user_id, day)
    band = "high" if level >= 70 else "mid" if level >= 40 else "low"
    return {
        "userId": user_id,
        "date": day,
        "energyLevel": level,
        "recommendations": ADVICE[band][:2],
        "summary": f"{band.capitalize()} energy ({level}) on {day:%A}",
        "expiresAt": expires_at(day),
    }


def generate(db: Database, users: list[Any], start: dt.datetime, days: int) -> dict[str, int]:
    """Store ``days`` insights per user from ``start`` in one ``create_many``; counts."""
    docs = [insight(u.id, start + dt.timedelta(days=d)) for u in users for d in range(days)]
    result = db.create_many("PlanetaryInsight", docs)
    refused = [exc for _, exc in result.failed if not isinstance(exc, errors.DuplicateKeyError)]
    if refused:
        raise refused[0]
    return {"created": len(result), "skipped": len(result.failed)}


def report(db: Database, users: list[Any], start: dt.datetime, days: int, *, read_preference: Any = ANALYTICS) -> dict[str, Any]:
    """Per-user average / lowest / highest energy over the period, and the best day each.

    A report reads from a secondary when the deployment has one (``secondaryPreferred``), so it
    never competes with the app on the primary; it may trail the newest writes by the
    replication lag. To read what you have just written, pass ``read_preference="primary"``."""
    match = {"$match": {"userId": {"$in": [u.id for u in users]},
                        "date": {"$gte": start, "$lt": start + dt.timedelta(days=days)}}}
    per_user = db.aggregate("PlanetaryInsight", [
        match,
        {"$sort": {"energyLevel": -1}},
        {"$group": {"_id": "$userId", "average": {"$avg": "$energyLevel"}, "lowest": {"$min": "$energyLevel"},
                    "highest": {"$max": "$energyLevel"}, "bestDay": {"$first": "$date"}, "days": {"$sum": 1}}},
    ], read_preference=read_preference)
    names = {str(u.id): u.name for u in users}
    rows = sorted(
        ({"user": names[str(r["_id"])], "days": r["days"], "average": round(r["average"], 1),
          "lowest": r["lowest"], "highest": r["highest"], "bestDay": _day(r["bestDay"])} for r in per_user),
        key=lambda row: row["user"],
    )
    return {"from": _day(start), "days": days, "users": rows}


def main(argv: list[str] | None = None, db: Database | None = None) -> dict[str, Any]:
    """Run the script; with ``db`` given (tests) use it instead of $MONGODB_URL / embedded."""
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = dt.datetime.combine(args.start, dt.time(), tzinfo=dt.timezone.utc)
    owned = db is None
    db = db or Database(os.environ.get("MONGODB_URL") or EMBEDDED).connect()
    try:
        users = demo_users(db, args.users)
        if args.report_only:  # an analytics run: read from a secondary if there is one
            out = {"created": 0, "skipped": 0, **report(db, users, start, args.days)}
        else:  # we have just written these insights: read them back from the primary
            counts = generate(db, users, start, args.days)
            out = {**counts, **report(db, users, start, args.days, read_preference="primary")}
    finally:
        if owned:
            db.disconnect()
    print(json.dumps(out, indent=2) if args.json else _table(out))
    return out


def _parse(argv: list[str] | None) -> argparse.Namespace:
    today = dt.datetime.now(dt.timezone.utc).date()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3, help="how many demo users (default 3)")
    parser.add_argument("--days", type=int, default=7, help="how many days (default 7)")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=today, help="first day, YYYY-MM-DD (default today)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--report-only", action="store_true",
                        help="only report (from a secondary when there is one), generate nothing")
    args = parser.parse_args(argv)
    if not 1 <= args.users <= 1000 or not 1 <= args.days <= 366:
        parser.error("--users must be 1-1000 and --days 1-366")
    return args


def _day(value: Any) -> str:
    return value.date().isoformat() if isinstance(value, dt.datetime) else str(value)[:10]


def _table(out: dict[str, Any]) -> str:
    lines = [f"{out['created']} insights created, {out['skipped']} already there; "
             f"{out['days']} days from {out['from']}", "",
             f"{'user':<14} {'days':>4} {'avg':>6} {'low':>4} {'high':>4}  best day"]
    lines += [f"{r['user']:<14} {r['days']:>4} {r['average']:>6} {r['lowest']:>4} {r['highest']:>4}  {r['bestDay']}"
              for r in out["users"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
