"""Embedded documents: birth data, location, chart positions, timing windows and risks.

Array items (positions, windows, risks) carry their own ``_id`` as Mongoose gives every array
sub-document one; astro_db generates one too. List-wide rules (a body listed once; windows
sorted and not overlapping) live here as plain functions used by the models' list fields.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bson import ObjectId

from .base import EmbeddedDocumentBase, from_son, values_only
from .fields import (
    BoolField,
    ChoiceField,
    EmbeddedDocumentField,
    GeoPointField,
    NumberField,
    StrictObjectIdField,
    TextField,
    TimezoneField,
    UTCDateTimeField,
    iso_utc,
)
from .serialise import document_to_dict

__all__ = [
    "AstroEmbeddedDocument", "BirthData", "Location", "Position", "Risk", "TimingWindow",
    "BODIES", "SIGNS", "RISK_LEVELS", "unique_bodies", "ordered_windows",
]

BODIES = ("Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune",
          "Pluto", "Chiron", "North Node", "South Node", "Ascendant", "Midheaven")
SIGNS = ("Aries", "Taurus", "Gemini", "Cancer", "Leo", "Virgo", "Libra", "Scorpio",
         "Sagittarius", "Capricorn", "Aquarius", "Pisces")
RISK_LEVELS = ("low", "medium", "high")
EARLIEST_BIRTH = datetime(1800, 1, 1, tzinfo=timezone.utc)


class AstroEmbeddedDocument(EmbeddedDocumentBase):
    """Abstract base of embedded documents: lenient about unknown keys, has ``to_dict``."""

    meta = {"abstract": True, "strict": False}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        values_only(cls)  # its container fields' values are data (base.values_only)

    @classmethod
    def _from_son(cls, son: Any, *args: Any, **kwargs: Any) -> Any:
        return from_son(cls, super()._from_son, son, *args, **kwargs)  # a stored _cls is data (base.from_son)

    def to_dict(self, masked: bool = False) -> dict[str, Any]:
        """JSON-ready dict in stored form (see ``AstroDocument.to_dict``)."""
        return document_to_dict(self, masked)


def _sub_id() -> StrictObjectIdField[ObjectId]:
    return StrictObjectIdField(db_field="_id", default=ObjectId)


class Location(AstroEmbeddedDocument):
    """Where a person was born: a place name (personal data) and a GeoJSON point."""

    name = TextField(max_length=200, sensitive=True)
    coordinates = GeoPointField()


class BirthData(AstroEmbeddedDocument):
    """When and where: a UTC instant between 1800 and now (personal: encrypted, time of day
    included), its IANA zone, and the place."""

    date = UTCDateTimeField(required=True, earliest=EARLIEST_BIRTH, not_future=True, sensitive=True)
    timezone = TimezoneField(required=True)
    location = EmbeddedDocumentField(Location)


class Position(AstroEmbeddedDocument):
    """A body's place in a chart: sign, degree within the sign, house, retrograde motion."""

    id = _sub_id()
    body = ChoiceField(BODIES, ignore_case=True, required=True)
    sign = ChoiceField(SIGNS, ignore_case=True, required=True)
    degree = NumberField(min_value=0, below=30, required=True)
    house = NumberField(min_value=1, max_value=12, integer=True)
    retrograde = BoolField(default=False)


class TimingWindow(AstroEmbeddedDocument):
    """A span of time good for an activity, scored 0-100."""

    id = _sub_id()
    start = UTCDateTimeField(required=True)
    end = UTCDateTimeField(required=True)
    score = NumberField(min_value=0, max_value=100)


class Risk(AstroEmbeddedDocument):
    """A caveat attached to a timing recommendation."""

    id = _sub_id()
    level = ChoiceField(RISK_LEVELS, required=True)
    description = TextField(min_length=1, max_length=1000, required=True, sensitive=True)


def unique_bodies(items: list[Any]) -> str | None:
    """List rule for positions: each body appears at most once."""
    seen: dict[str, Any] = {}
    for index, item in enumerate(items):
        body = item.get("body")
        if body in seen:
            return f"body {body!r} is listed more than once (positions {seen[body]} and {index})"
        seen[body] = index
    return None


def ordered_windows(items: list[Any]) -> str | None:
    """List rule for windows: each starts before it ends; sorted by start; none overlap."""
    previous = None
    for index, item in enumerate(items):
        start, end = item.get("start"), item.get("end")
        if start >= end:
            return f"window {index} must start before it ends, got start {iso_utc(start)} >= end {iso_utc(end)}"
        if previous is not None:
            if start < previous.get("start"):
                return (f"windows must be sorted by start, got window {index} starting {iso_utc(start)} "
                        f"before window {index - 1} ({iso_utc(previous.get('start'))})")
            if start < previous.get("end"):
                return (f"windows must not overlap, got window {index} starting {iso_utc(start)} "
                        f"before window {index - 1} ends ({iso_utc(previous.get('end'))})")
        previous = item
    return None
