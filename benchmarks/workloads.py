"""The data every side works on: user input as an application passes it, and the stored form.

``user_input`` / ``insight_input`` are what a caller hands to ``db.create`` (Python field names).
``stored_user`` / ``stored_insight`` are the documents raw PyMongo inserts: exactly what astro_db
stores for the same input (keys, names, types, service fields), built by hand so the raw side
runs no astro_db code (tests/unit/test_benchmark_harness.py checks the two agree).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from bson import ObjectId

__all__ = ["BASE_DAY", "user_input", "insight_input", "stored_user", "stored_insight", "utcnow"]

BASE_DAY = _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc)
RECOMMENDATIONS = ("Take a walk", "Call a friend")
SUMMARY = "A bright day for steady work and honest talk."


def utcnow() -> _dt.datetime:
    """Now, in UTC at the millisecond (what BSON keeps)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def user_input(n: int, tag: str, status: str = "active") -> dict[str, Any]:
    return {"email": f"{tag}{n}@example.com", "name": f"User {n}", "status": status}


def insight_input(user_id: ObjectId, n: int) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "date": BASE_DAY + _dt.timedelta(minutes=n),
        "energy_level": n % 101,
        "recommendations": [*RECOMMENDATIONS, f"Note {n % 7}"],
        "summary": SUMMARY,
    }


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    """astro_db's key order: the id (first, as the server stores it), the version key, the
    fields, then the timestamps."""
    now = utcnow()
    return {"_id": ObjectId(), "__v": 0, **fields, "createdAt": now, "updatedAt": now}


def stored_user(n: int, tag: str, status: str = "active") -> dict[str, Any]:
    data = user_input(n, tag, status)
    return _stored({"email": data["email"].lower(), "name": data["name"], "status": status})


def stored_insight(user_id: ObjectId, n: int) -> dict[str, Any]:
    data = insight_input(user_id, n)
    return _stored({"userId": user_id, "date": data["date"], "energyLevel": data["energy_level"],
                    "recommendations": data["recommendations"], "summary": data["summary"]})
