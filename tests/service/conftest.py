"""The service tests run on both backends: the embedded mongomock-ng one and the live server."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

from astro_db import Database


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def db(request):
    """A connected Database on a fresh database, on each backend in turn."""
    if request.param == "embedded":
        url = f"mongomock://localhost/t{uuid.uuid4().hex[:8]}"
    else:
        url = request.getfixturevalue("live_url")
    # throwaway test data: plaintext in the sensitive field, as on the embedded backend
    database = Database(url, server_selection_timeout_ms=5000, allow_plaintext_sensitive=True)
    database.connect()
    database.test_backend = backend_name(request.param)
    yield database
    database.disconnect()


def backend_name(param: str) -> str:
    """"embedded", "nx" (the nx-27017 emulator) or "mongodb" (ASTRO_DB_TEST_URI)."""
    if param == "embedded":
        return "embedded"
    return "mongodb" if os.environ.get("ASTRO_DB_TEST_URI") else "nx"


@pytest.fixture
def user(db):
    return db.create("User", {"email": f"u{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})


def chart_data(user_id, **overrides):
    data = {
        "userId": str(user_id),
        "birthData": {
            "date": "1990-05-01T10:30:00Z",
            "timezone": "Europe/London",
            "location": {"name": "London", "coordinates": [-0.1276, 51.5072]},
        },
        "positions": [{"body": "Sun", "sign": "Taurus", "degree": 10.5, "house": 10}],
    }
    data.update(overrides)
    return data


def insight_data(user_id, day=0, **overrides):
    data = {
        "userId": user_id,
        "date": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=day),
        "energyLevel": 50,
        "recommendations": ["Rest"],
        "summary": "calm day",
    }
    data.update(overrides)
    return data


def timing_data(user_id, **overrides):
    start = dt.datetime(2026, 2, 1, 9, tzinfo=dt.timezone.utc)
    data = {
        "userId": user_id,
        "activity": "interview",
        "windows": [
            {"start": start, "end": start + dt.timedelta(hours=2), "score": 80},
            {"start": start + dt.timedelta(days=1), "end": start + dt.timedelta(days=1, hours=1), "score": 60},
        ],
        "risks": [{"level": "low", "description": "Mercury retrograde"}],
    }
    data.update(overrides)
    return data
