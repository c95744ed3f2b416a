"""Correct use of the models' typed fields: clean under ``mypy --strict`` and pyright.

Checked by .ci/run (``mypy --strict astro_db tests/typing``) and by
tests/models/test_typed_fields.py (mypy and pyright, no error allowed); never imported.
``models_misuse.py`` beside it holds the mistakes the checkers must report.
"""

from __future__ import annotations

from datetime import datetime

from bson import ObjectId

from astro_db import Database
from astro_db.models import BirthChart, PlanetaryInsight, TimingRecommendation, User
from astro_db.models.base import AstroDocument
from astro_db.models.embedded import AstroEmbeddedDocument, BirthData, Location, Position
from astro_db.models.fields import (
    BoolField,
    ChoiceField,
    EmailField,
    EmbeddedDocumentField,
    NumberField,
    RuleListField,
    TextField,
    UserRefField,
    UTCDateTimeField,
)


def user_fields(db: Database) -> tuple[str, str, str, ObjectId, datetime | None, int]:
    user = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    user_id: str = str(user.id)  # an ObjectId, not Any
    print(user_id)
    return user.email, user.name, user.status, user.id, user.last_active, user.version


def timestamps(user: User) -> datetime | None:
    return user.created_at or user.updated_at


def found(db: Database, user_id: ObjectId) -> list[str]:
    first = db.find_one(User, {"id": user_id})
    emails = [u.email for u in db.find(User, {"status": "active"})]
    if first is not None:
        emails.append(first.email)
    return emails


def insight_fields(insight: PlanetaryInsight) -> tuple[ObjectId, datetime, float, list[str], str | None]:
    return insight.user_id, insight.date, insight.energy_level, insight.recommendations, insight.summary


def chart_fields(chart: BirthChart) -> tuple[datetime, str, str | None, list[Position]]:
    birth: BirthData = chart.birth_data
    where: Location | None = birth.location
    place = where.name if where is not None else None
    return birth.date, birth.timezone, place, chart.positions


def positions(chart: BirthChart) -> list[tuple[ObjectId, str, str, float, int | None, bool]]:
    return [(p.id, p.body, p.sign, p.degree, p.house, p.retrograde) for p in chart.positions]


def windows(rec: TimingRecommendation) -> list[tuple[datetime, datetime, float | None]]:
    return [(w.start, w.end, w.score) for w in rec.windows] + [(rec.windows[0].start, rec.windows[0].end, None)]


def set_fields(insight: PlanetaryInsight) -> None:
    insight.energy_level = 80
    insight.summary = None  # not required: None is a value
    insight.recommendations = ["Rest"]


def the_field_on_the_class() -> EmailField[str]:
    return User.email  # class access is the field itself


# --- an app's own models, declared with the same base classes and field types ---------------

class Tag(AstroEmbeddedDocument):
    label = TextField(required=True, max_length=40)
    weight = NumberField(min_value=0, max_value=1)


class Journal(AstroDocument):
    user_id = UserRefField(db_field="userId", required=True)
    title = TextField(required=True, min_length=1)
    mood = ChoiceField(("calm", "busy"), default="calm")
    private = BoolField(default=True)
    written_at = UTCDateTimeField(db_field="writtenAt")
    contact = EmailField()
    words = NumberField(integer=True, min_value=0, default=0)
    tags = RuleListField(EmbeddedDocumentField(Tag), max_length=10)
    cover = EmbeddedDocumentField(Tag)

    meta = {"collection": "journals"}


def journal_fields(entry: Journal) -> tuple[ObjectId, str, str, bool, datetime | None, str | None, int]:
    return entry.user_id, entry.title, entry.mood, entry.private, entry.written_at, entry.contact, entry.words


def journal_tags(entry: Journal) -> list[tuple[str, float | None]]:
    cover = [(entry.cover.label, entry.cover.weight)] if entry.cover is not None else []
    return [(t.label, t.weight) for t in entry.tags] + cover


def hashable(users: list[User]) -> set[User]:
    return {users[0], *users}  # documents hash by id (embedded ones do not hash, as at run time)
