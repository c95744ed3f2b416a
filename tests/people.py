"""The two users of the personal-data tests (export, erasure; tests/unit/test_personal.py and
tests/live/test_personal_live.py): what is personal about each, none of which may survive an
erasure. ``tag`` keeps each file's addresses its own."""

from __future__ import annotations


def people(tag: str) -> dict[str, dict[str, str]]:
    return {
        "ann": {"email": f"ann.{tag}@example.com", "name": "Annabel Quist", "place": "Reykjavik",
                "summary": "Annabel's quiet day", "rec": "Annabel should rest"},
        "bob": {"email": f"bob.{tag}@example.com", "name": "Bartholomew Ode", "place": "Valparaiso",
                "summary": "Bartholomew's busy day", "rec": "Bartholomew should run"},
    }
