"""Test helpers: each test gets a fresh embedded ``Database`` in place of the project's.

    from django.test import SimpleTestCase
    from astro_db.contrib.django.testing import AstroDBTestMixin

    class InsightViewsTest(AstroDBTestMixin, SimpleTestCase):
        def test_lists_insights(self):
            user = self.db.create("User", {"email": "a@b.co", "name": "Ann"})
            ...

``override_database()`` does the same as a context manager (for pytest or a single block).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from ...database import Database

__all__ = ["AstroDBTestMixin", "override_database", "fresh_database"]


def fresh_database(**options: Any) -> Database:
    """A new, connected, empty embedded ``Database`` (its own in-memory store)."""
    options.setdefault("ensure_indexes", True)
    return Database(f"mongomock://localhost/astro_test_{uuid.uuid4().hex[:8]}", **options).connect()


@contextlib.contextmanager
def override_database(database: Database | None = None, *, connected: bool = True) -> Iterator[Database]:
    """Make ``get_database()`` return ``database`` (default: a fresh embedded one) inside the block.

    Pass ``connected=False`` for a Database that should connect on first use (e.g. one pointed
    at a closed port, to see the 503s)."""
    from django.apps import apps

    app = apps.get_app_config("astro_db")
    owned = database is None
    db = database if database is not None else fresh_database()
    previous = app.use_database(db, connected=connected)
    try:
        yield db
    finally:
        app.use_database(*previous)
        if owned:
            db.disconnect()


class AstroDBTestMixin:
    """A unittest mixin: ``self.db`` is a fresh embedded Database for each test, and
    ``get_database()`` (so every view) uses it; the project's own Database is restored after."""

    db: Database

    def setUp(self) -> None:
        context = override_database()
        self.db = context.__enter__()
        self.addCleanup(context.__exit__, None, None, None)  # type: ignore[attr-defined]  # a mixin: the TestCase has it
        super().setUp()  # type: ignore[misc]
