"""Shared workload for the backup tests (unit and live): documents of all four models, changes
of every kind, and a way to take an instant strictly between two writes."""

from __future__ import annotations

import datetime as _dt
import itertools
import time

from astro_db.backup import content_hashes
from astro_db.backup.journal import journal_clock

_n = itertools.count(1)


def add_user(db, name: str = "Ann"):
    return db.create("User", {"email": f"{name.lower()}{next(_n)}@example.com", "name": name})


def seed(db) -> dict:
    """Three users, a chart, two insights and a timing recommendation."""
    users = [add_user(db, n) for n in ("Ann", "Bob", "Cy")]
    uid = str(users[0].id)
    chart = db.create("BirthChart", {
        "userId": uid,
        "birthData": {"date": "1990-05-17T08:30:00Z", "timezone": "Europe/Paris",
                      "location": {"name": "Paris", "coordinates": {"type": "Point", "coordinates": [2.35, 48.86]}}},
        "positions": [{"body": "Sun", "sign": "Taurus", "degree": 26.5, "house": 10}],
        "houseSystem": "placidus",
    })
    insights = [db.create("PlanetaryInsight", {"userId": uid, "date": f"2024-03-0{d}", "energyLevel": 50 + d,
                                               "recommendations": ["Take a walk"], "summary": "A day."}) for d in (1, 2)]
    timing = db.create("TimingRecommendation", {
        "userId": uid, "activity": "negotiation",
        "windows": [{"start": "2024-03-01T09:00:00Z", "end": "2024-03-01T11:00:00Z", "score": 80}],
        "risks": [{"level": "low", "description": "Mercury nears a station"}],
    })
    return {"users": users, "chart": chart, "insights": insights, "timing": timing}


def change_everything(db, data: dict, tag: str) -> None:
    """A create, an update and a delete on several models."""
    add_user(db, f"New{tag}")
    db.update("User", {"id": str(data["users"][0].id)}, {"name": f"Renamed {tag}"})
    db.update("PlanetaryInsight", {"id": str(data["insights"][0].id)}, {"$inc": {"energyLevel": 1}})
    victim = data["users"].pop()
    db.delete("User", {"id": str(victim.id)})


def instant_after_last_write() -> _dt.datetime:
    """A time after every journal entry so far and before any later one. Records are stamped by
    the server's clock to the millisecond (``$currentDate``), so the caller waits until the wall
    clock is past the instant's millisecond: a write made next cannot share it."""
    instant = journal_clock.barrier()
    while _dt.datetime.now(_dt.timezone.utc) < instant + _dt.timedelta(milliseconds=2):
        time.sleep(0.0005)  # polls the clock: well under a millisecond or two
    return instant


def state(db) -> dict:
    return content_hashes(db)
