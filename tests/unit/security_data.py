"""Shared helpers of the security tests: fresh embedded databases, sample data, snapshots."""

from __future__ import annotations

import base64
import os
import uuid

from astro_db import Database

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()


def new_db(url: str | None = None, **overrides) -> Database:
    """A connected Database on a fresh embedded database (or ``url``)."""
    return Database(url or f"mongomock://localhost/sec{uuid.uuid4().hex[:8]}", **overrides).connect()


def user_data(**overrides) -> dict:
    return {"email": f"ann.{uuid.uuid4().hex[:6]}@example.com", "name": "Ann Example", **overrides}


def chart_data(user_id, place: str = "London", **overrides) -> dict:
    return {
        "userId": str(user_id),
        "birthData": {
            "date": "1990-05-01T10:30:00Z",
            "timezone": "Europe/London",
            "location": {"name": place, "coordinates": [-0.1276, 51.5072]},
        },
        **overrides,
    }


def snapshot(db: Database) -> dict:
    """Every collection's full content (to show a refused call wrote nothing)."""
    return {name: list(db.mongo[name].find()) for name in sorted(db.mongo.list_collection_names())}


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()
