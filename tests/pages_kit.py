"""Shared set-ups of the keyset-page property tests (``tests/unit/test_pages_differential.py``,
``tests/unit/test_page_tokens_personal.py``): the total order a page sorts by, and an embedded
database seeded with birth charts as stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bson import ObjectId

from astro_db import Database

__all__ = ["total", "sorted_ids", "chart_database"]


def total(order: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """``order`` with the ``_id`` tie-break a page adds (in the last key's direction)."""
    return order if any(k in ("id", "_id") for k, _ in order) else [*order, ("_id", order[-1][1])]


def sorted_ids(coll: Any, order: list[tuple[str, int]]) -> list[Any]:
    """The ids of one sorted find of the whole collection: what paging must give, in order."""
    return [d["_id"] for d in coll.find({}, sort=total(order))]


@contextmanager
def chart_database(prefix: str, births: list[dict[str, Any]]) -> Iterator[Database]:
    """A fresh embedded database (records off) holding one stored birth chart per ``births`` item."""
    with Database(f"mongomock://localhost/{prefix}{uuid.uuid4().hex[:8]}", audit=False, journal=False,
                  ensure_indexes=False) as db:
        if births:
            db.mongo["birthCharts"].insert_many([{"_id": ObjectId(), "userId": ObjectId(), "birthData": birth}
                                                 for birth in births])
        yield db
