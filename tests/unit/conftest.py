"""Fixtures of the unit tier (the embedded backend; no server)."""

from __future__ import annotations

import pytest

from .security_data import new_db


@pytest.fixture
def db():
    """A fresh, connected embedded Database for one test (modules may define their own)."""
    database = new_db()
    yield database
    database.disconnect()

