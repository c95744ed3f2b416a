"""Checked by ``mypy --strict`` in .ci/run (not collected by pytest): the public API's types.

Each ``# type: ignore[...]`` marks a line that must NOT type-check; with ``warn_unused_ignores``
(part of ``--strict``) an ignore that is no longer needed is itself an error, so a return type
that widens to ``Any`` fails the check. The models' own attributes are pinned by
``models_typed.py`` and ``models_misuse.py`` beside this file.
"""

from __future__ import annotations

from typing import Any

from astro_db import Database
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

    not_a_list: int = db.find(User, {}, lean=True)  # type: ignore[assignment]
    db.find(User, {}, limt=10)  # type: ignore[call-overload]
    print(not_a_list)
