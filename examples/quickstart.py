"""astro_db quickstart: the original service's usage examples, each model, and an aggregation.

Runs on the embedded in-memory backend by default (chosen explicitly: no warning); set
MONGODB_URL to run it on a server, with a key for the encrypted birth places:
    python examples/quickstart.py
    export ASTRO_DB_ENCRYPTION_KEY="$(astro-db new-key)"
    MONGODB_URL=mongodb://localhost:27017/astro python examples/quickstart.py

Against a server without ASTRO_DB_ENCRYPTION_KEY it stops before writing anything, saying so.
(A local server to try it on: docs/testing.md, "A local server for the examples".)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import uuid

from astro_db import Database, errors

EMBEDDED = "mongomock://localhost/quickstart"  # the embedded backend, chosen on purpose
NEEDS_KEY = (
    "quickstart: MONGODB_URL names a server, and birth places are encrypted at rest there, but "
    "ASTRO_DB_ENCRYPTION_KEY is not set. Make a key and export it, then run again:\n"
    '    export ASTRO_DB_ENCRYPTION_KEY="$(astro-db new-key)"\n'
    "Nothing was written."
)


def main() -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run = uuid.uuid4().hex[:8]  # unique emails, so the example can run twice against one server
    report: dict = {}
    url, key = os.environ.get("MONGODB_URL"), os.environ.get("ASTRO_DB_ENCRYPTION_KEY")
    if url and not url.startswith("mongomock://") and not key:
        raise SystemExit(NEEDS_KEY)  # before anything is written: a BirthChart would fail half-way
    # birth places are encrypted at rest: a server needs a key (astro-db new-key), the embedded store does not
    options = {"maxPoolSize": 50, "encryptionKey": key}
    with Database({"url": url or EMBEDDED, "options": options}) as db:
        # Create user (seed example)
        user = db.create("User", {"email": f"User-{run}@Example.com", "name": "John Doe"})
        report["user"] = user.to_dict()

        # Each model
        chart = db.create("BirthChart", {
            "userId": str(user.id),
            "birthData": {
                "date": "1990-05-01T10:30:00Z",
                "timezone": "Europe/London",
                "location": {"name": "London", "coordinates": [-0.1276, 51.5072]},
            },
            "positions": [
                {"body": "Sun", "sign": "Taurus", "degree": 10.5, "house": 10},
                {"body": "Moon", "sign": "Pisces", "degree": 22.1, "house": 8, "retrograde": False},
            ],
        })
        today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        insights = db.create_many("PlanetaryInsight", [
            {"userId": user.id, "date": today - dt.timedelta(days=d), "energyLevel": 50 + 7 * d,
             "recommendations": ["Take a walk", "Journal tonight"], "summary": f"Day -{d}: steady energy"}
            for d in range(5)
        ])
        timing = db.create("TimingRecommendation", {
            "userId": user.id,
            "activity": "job interview",
            "windows": [
                {"start": today + dt.timedelta(days=1, hours=9), "end": today + dt.timedelta(days=1, hours=11), "score": 82},
                {"start": today + dt.timedelta(days=3, hours=14), "end": today + dt.timedelta(days=3, hours=16), "score": 64},
            ],
            "risks": [{"level": "low", "description": "Mercury square Mars: speak slowly"}],
        })

        # Find birth chart (seed example)
        found = db.find_one("BirthChart", {"userId": str(user.id)})
        report["chart"] = found.to_dict()

        # Update insight (seed example)
        insight = db.update("PlanetaryInsight", {"id": str(insights[0].id)}, {"energyLevel": 85})
        report["updated_insight"] = {"id": str(insight.id), "energyLevel": insight.energy_level}

        # Query with operators, sort and limit; lean dicts
        high = db.find("PlanetaryInsight", {"userId": str(user.id), "energyLevel": {"$gte": 70}},
                       sort=[("date", -1)], limit=20)
        report["high_energy_days"] = [i.to_dict()["date"] for i in high]

        # Aggregation: average energy per user
        report["average_energy"] = db.aggregate("PlanetaryInsight", [
            {"$match": {"userId": user.id}},
            {"$group": {"_id": "$userId", "avg": {"$avg": "$energyLevel"}, "days": {"$sum": 1}}},
        ])[0]["avg"]
        report["best_window"] = max(timing.windows, key=lambda w: w.score).score

        # Bad input gets a clear error and writes nothing
        try:
            db.update("PlanetaryInsight", {"id": str(insights[0].id)}, {"energyLevel": 150})
        except errors.ValidationError as exc:
            report["validation_error"] = exc.errors

        # Tidy up this run's documents in one transaction
        with db.transaction() as tx:
            for model in ("BirthChart", "PlanetaryInsight", "TimingRecommendation"):
                db.delete_many(model, {"userId": user.id}, transaction=tx)
            db.delete("User", {"id": user.id}, transaction=tx)
        report["chart_id"] = str(chart.id)
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, default=str))
