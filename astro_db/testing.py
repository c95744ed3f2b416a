"""Testing helpers for apps built on astro_db: a pytest plugin and document factories.

Installed with astro_db, the plugin (entry point ``astro_db``) gives every test project two
fixtures:

    def test_signup(astro_db, astro_factories):
        user = astro_db.create("User", astro_factories.user(name="Ann"))
        chart = astro_db.create("BirthChart", astro_factories.birth_chart(user.id))

``astro_db`` is a fresh, connected ``Database``: on the embedded backend (an in-memory store of
its own), or, when ``ASTRO_DB_TEST_URI`` is set, in a uniquely named database on that server,
dropped afterwards. The factories return valid input dicts (override any field); they need no
database, so they also serve ``db.create_many`` and unit tests. Disable with ``-p no:astro_db``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["Factories", "factories", "database_for_tests", "TEST_URI_ENV"]

TEST_URI_ENV = "ASTRO_DB_TEST_URI"
_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


class Factories:
    """Valid input data for the four models; keyword overrides replace fields (stored or
    Python names). The dicts are JSON-ready (ids and dates as strings), so they serve API tests
    as well as ``db.create``. Each call differs where uniqueness matters: emails, insight dates."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)

    def _next(self) -> int:
        return next(self._seq)

    def user(self, **overrides: Any) -> dict[str, Any]:
        """A user with a unique email."""
        n = self._next()
        return {"email": f"user{n}-{uuid.uuid4().hex[:6]}@example.com", "name": f"Test User {n}", **overrides}

    def birth_chart(self, user_id: Any, **overrides: Any) -> dict[str, Any]:
        """A chart born in London in 1990 with the Sun, Moon and Ascendant placed."""
        return {
            "userId": str(user_id),
            "birthData": {
                "date": "1990-05-01T10:30:00Z",
                "timezone": "Europe/London",
                "location": {"name": "London", "coordinates": [-0.1276, 51.5072]},
            },
            "positions": [
                {"body": "Sun", "sign": "Taurus", "degree": 10.5, "house": 10},
                {"body": "Moon", "sign": "Pisces", "degree": 22.1, "house": 8},
                {"body": "Ascendant", "sign": "Leo", "degree": 3.0, "house": 1},
            ],
            "houseSystem": "placidus",
            **overrides,
        }

    def planetary_insight(self, user_id: Any, date: Any = None, **overrides: Any) -> dict[str, Any]:
        """A day's insight; without ``date`` each call takes the next day from 2024-01-01, so
        insights for one user never collide on the (userId, date) unique index."""
        n = self._next()
        day = date if date is not None else _iso(_EPOCH + dt.timedelta(days=n))
        return {
            "userId": str(user_id),
            "date": day,
            "energyLevel": 40 + (n * 17) % 60,
            "recommendations": ["Take a walk", "Journal tonight"],
            "summary": f"Test insight {n}",
            **overrides,
        }

    def timing_recommendation(self, user_id: Any, start: Any = None, **overrides: Any) -> dict[str, Any]:
        """Two sorted, non-overlapping windows from ``start`` (default 2024-01-02 09:00 UTC)."""
        begin = _parse(start) if start is not None else _EPOCH + dt.timedelta(days=1, hours=9)
        hours = dt.timedelta(hours=2)
        later = begin + dt.timedelta(days=2)
        return {
            "userId": str(user_id),
            "activity": "job interview",
            "windows": [
                {"start": _iso(begin), "end": _iso(begin + hours), "score": 82},
                {"start": _iso(later), "end": _iso(later + hours), "score": 64},
            ],
            "risks": [{"level": "low", "description": "Mercury square Mars: speak slowly"}],
            **overrides,
        }


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _parse(value: Any) -> dt.datetime:
    """A datetime from a datetime or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    parsed: dt.datetime = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return parsed


factories = Factories()
"""A module-level ``Factories`` for code that is not a pytest test (scripts, unittest)."""


def database_for_tests(**options: Any) -> Iterator[Any]:
    """Yield a fresh connected Database (embedded, or on ``ASTRO_DB_TEST_URI``); clean up after.

    A generator, so it serves as a pytest fixture body or ``contextlib.contextmanager``."""
    from .database import Database

    name = f"astro_test_{uuid.uuid4().hex[:10]}"
    uri = os.environ.get(TEST_URI_ENV)
    if uri:
        options.setdefault("server_selection_timeout_ms", 5000)
        options.setdefault("connect_attempts", 1)
        options.setdefault("allow_plaintext_sensitive", True)  # a throwaway database, as embedded
        db = Database(_with_database(uri, name), **options).connect()
    else:
        db = Database(f"mongomock://localhost/{name}", **options).connect()
    try:
        yield db
    finally:
        try:
            if uri:
                db.executor.runtime.gateway.drop_database(name)
        except Exception:  # best effort: a test may have stopped the server
            pass
        finally:
            db.disconnect()


def _with_database(uri: str, name: str) -> str:
    """``uri`` with its database path replaced by ``name`` (credentials and options kept)."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
def astro_db() -> Iterator[Any]:
    """A fresh, connected astro_db ``Database`` for one test (see ``astro_db.testing``)."""
    yield from database_for_tests()


@pytest.fixture
def astro_factories() -> Factories:
    """Factories of valid User, BirthChart, PlanetaryInsight and TimingRecommendation data."""
    return Factories()
