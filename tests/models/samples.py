"""Sample documents for the model tests: valid inputs, Node-shaped stored documents, helpers."""

from __future__ import annotations

import copy
import random
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId
from mongoengine.errors import ValidationError as MEValidationError

from astro_db.models.embedded import BODIES, SIGNS
from astro_db.models.paths import resolve

UID = ObjectId("65f0c0ffee0000000000abcd")


def user_input(**over: Any) -> dict:
    return {"email": "Ann@Example.com", "name": "Ann", **over}


def chart_input(**over: Any) -> dict:
    return {
        "user_id": str(UID),
        "birth_data": {
            "date": "1990-05-17T08:30:00Z",
            "timezone": "Europe/Paris",
            "location": {"name": "Paris", "coordinates": {"type": "Point", "coordinates": [2.35, 48.86]}},
        },
        "positions": [
            {"body": "Sun", "sign": "Taurus", "degree": 26.5, "house": 10},
            {"body": "Moon", "sign": "Leo", "degree": 3, "house": 1, "retrograde": False},
        ],
        "house_system": "placidus",
        **over,
    }


def insight_input(**over: Any) -> dict:
    return {
        "user_id": UID,
        "date": "2024-03-01",
        "energy_level": 72,
        "recommendations": ["Take a walk", "Call a friend"],
        "summary": "A bright day.",
        **over,
    }


def timing_input(**over: Any) -> dict:
    return {
        "user_id": str(UID),
        "activity": "negotiation",
        "windows": [
            {"start": "2024-03-01T09:00:00Z", "end": "2024-03-01T11:00:00Z", "score": 80},
            {"start": "2024-03-01T11:00:00Z", "end": "2024-03-01T12:00:00Z", "score": 55.5},
        ],
        "risks": [{"level": "low", "description": "Mercury nears a station"}],
        **over,
    }


def node_chart(rng: random.Random | None = None) -> dict:
    """A birth chart as the Node service stores it: __v, sub-document _ids, naive UTC dates."""
    rng = rng or random.Random(1)
    bodies = rng.sample(BODIES, 10)
    now = datetime(2024, 1, 2, 3, 4, 5, 678000)
    return {
        "_id": ObjectId(),
        "userId": ObjectId(),
        "birthData": {
            "date": datetime(1950, 1, 1) + timedelta(days=rng.randrange(20000)),
            "timezone": "America/New_York",
            "location": {"name": "Boston", "coordinates": {"type": "Point", "coordinates": [-71.06, 42.36]}},
        },
        "positions": [
            {"_id": ObjectId(), "body": b, "sign": rng.choice(SIGNS), "degree": rng.random() * 29.9,
             "house": rng.randint(1, 12), "retrograde": rng.random() < 0.2}
            for b in bodies
        ],
        "houseSystem": "koch",
        "createdAt": now,
        "updatedAt": now,
        "__v": 0,
        "legacyFlag": True,  # a key the model does not declare
    }


def node_insight(rng: random.Random | None = None) -> dict:
    rng = rng or random.Random(2)
    day = datetime(2024, 1, 1) + timedelta(days=rng.randrange(365))
    return {
        "_id": ObjectId(),
        "userId": ObjectId(),
        "date": day,
        "energyLevel": rng.random() * 100,
        "recommendations": [f"Recommendation {i}" for i in range(rng.randint(1, 6))],
        "summary": "Summary " * 10,
        "expiresAt": day + timedelta(days=30),
        "createdAt": day,
        "updatedAt": day,
        "__v": 0,
    }


def node_timing(rng: random.Random | None = None) -> dict:
    rng = rng or random.Random(3)
    start = datetime(2024, 5, 1, 8)
    return {
        "_id": ObjectId(),
        "userId": ObjectId(),
        "activity": "travel",
        "windows": [
            {"_id": ObjectId(), "start": start + timedelta(hours=3 * i),
             "end": start + timedelta(hours=3 * i + 2), "score": rng.randint(0, 100)}
            for i in range(3)
        ],
        "risks": [{"_id": ObjectId(), "level": "high", "description": "Mars square Saturn"}],
        "createdAt": start, "updatedAt": start, "__v": 3,
    }


def node_user() -> dict:
    return {"_id": ObjectId(), "email": "bob@example.com", "name": "Bob", "status": "active",
            "lastActive": datetime(2024, 2, 2), "createdAt": datetime(2023, 1, 1),
            "updatedAt": datetime(2024, 2, 2), "__v": 0}


def me_errors(model: type, attrs: dict) -> dict:
    """Run MongoEngine's own path and return its errors keyed by stored dotted path ({} if valid)."""
    try:
        model(**copy.deepcopy(attrs)).validate()
    except MEValidationError as error:
        flat: dict = {}
        _flatten(error.to_dict(), "", flat)
        return {_stored(model, key): message for key, message in flat.items()}
    return {}


def _flatten(tree: Any, prefix: str, out: dict) -> None:
    if isinstance(tree, dict):
        for key, sub in tree.items():
            _flatten(sub, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = str(tree)


def _stored(model: type, attr_path: str) -> str:
    return resolve(model, attr_path).stored


def strip_sub_ids(value: Any, top: bool = True) -> Any:
    """Drop generated ``_id``s of sub-documents so two encodings can be compared."""
    if isinstance(value, dict):
        return {k: strip_sub_ids(v, False) for k, v in value.items() if top or k != "_id"}
    if isinstance(value, list):
        return [strip_sub_ids(v, False) for v in value]
    return value


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)
