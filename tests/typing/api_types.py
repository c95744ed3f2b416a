"""Checked by ``mypy --strict`` in .ci/run (not collected by pytest): the public API's types.

Each ``# type: ignore[...]`` marks a line that must NOT type-check; with ``warn_unused_ignores``
(part of ``--strict``) an ignore that is no longer needed is itself an error, so a return type
that widens to ``Any`` fails the check. The models' own attributes are pinned by
``models_typed.py`` and ``models_misuse.py`` beside this file.
"""

from __future__ import annotations

from typing import Any

from astro_db import Database, UpsertResult
from astro_db.models import BirthChart, User


def typed_calls(db: Database) -> None:
    user: User = db.create(User, {"email": "ann@example.com", "name": "Ann"})
    stored: dict[str, Any] = db.create(User, {"email": "bob@example.com", "name": "Bob"}, lean=True)
    users: list[User] = db.find(User, {"status": "active"}, sort=[("createdAt", -1)], limit=10)
    rows: list[dict[str, Any]] = db.find(User, {}, lean=True)
    chart: BirthChart | None = db.find_one(BirthChart, {"userId": user.id})
    updated: User | None = db.update(User, {"id": user.id}, {"name": "Ann B."})
    count: int = db.count(User, {"status": "active"})
    by_name = db.find("User", {})  # a name as a string keeps working (list[Any])
    print(stored, users, rows, chart, updated, count, by_name)

    at: User | None = db.update(User, {"id": user.id}, {"name": "Ann C."}, expected_revision=user.revision)
    revision: int = user.revision
    upserted: UpsertResult = db.upsert_many("PlanetaryInsight", [], on=("userId", "date"))
    counts: tuple[int, int, int] = (upserted.inserted, upserted.updated, upserted.unchanged)
    deleted: bool = db.delete(User, {"id": user.id}, expected_revision=3)
    print(at, revision, counts, deleted)
    db.upsert_many("PlanetaryInsight", [])  # type: ignore[call-arg]
    db.update(User, {"id": user.id}, {}, expected_revision="7")  # type: ignore[call-overload]
    changed: bool = db.update(User, {"id": user.id}, {"name": "Ann D."}, returning=False)
    by_ref: bool = db.update("User", {"id": user.id}, {"name": "Ann E."}, returning=False, expected_revision=2)
    kept: User | None = db.update(User, {"id": user.id}, {"name": "Ann F."}, returning=True)
    print(changed, by_ref, kept)
    not_a_doc: User | None = db.update(User, {"id": user.id}, {}, returning=False)  # type: ignore[assignment]
    db.update(User, {"id": user.id}, {}, lean=True, returning=False)  # type: ignore[call-overload]
    print(not_a_doc)

    not_a_list: int = db.find(User, {}, lean=True)  # type: ignore[assignment]
    db.find(User, {}, limt=10)  # type: ignore[call-overload]
    print(not_a_list)
