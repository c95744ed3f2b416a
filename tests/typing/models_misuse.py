"""Mistakes the typed fields must make type errors (under ``mypy --strict`` and pyright).

Each such line carries ``# type: ignore[code]`` so that .ci/run's ``mypy --strict astro_db
tests/typing`` passes, and fails (``warn_unused_ignores``) the day the mistake type-checks.
tests/models/test_typed_fields.py strips the comments and asserts the exact errors each checker
reports, line by line. Never imported.
"""

from __future__ import annotations

from datetime import datetime

from astro_db import Database
from astro_db.models import BirthChart, PlanetaryInsight, User
from astro_db.models.base import AstroDocument
from astro_db.models.fields import TextField


def misspelt(db: Database) -> object:
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    return user.emial  # type: ignore[attr-defined]


def another_model(db: Database) -> BirthChart:
    chart: BirthChart = db.create(User, {"email": "bo@example.com", "name": "Bo"})  # type: ignore[assignment]
    return chart


def wrong_return(insight: PlanetaryInsight) -> str:
    return insight.date  # type: ignore[return-value]


def optional_returned_as_required(user: User) -> datetime:
    return user.last_active  # type: ignore[return-value]


def wrong_assignment(insight: PlanetaryInsight) -> None:
    insight.energy_level = "high"  # type: ignore[assignment]


def required_set_to_none(user: User) -> None:
    user.email = None  # type: ignore[assignment]


def wrong_item_type(chart: BirthChart) -> object:
    return chart.positions[0].degree.upper()  # type: ignore[attr-defined]


def optional_embedded(chart: BirthChart) -> str | None:
    return chart.birth_data.location.name  # type: ignore[union-attr]


class Note(AstroDocument):
    text = TextField(required=True)


def app_model(note: Note) -> int:
    print(note.txt)  # type: ignore[attr-defined]
    return note.text  # type: ignore[return-value]
