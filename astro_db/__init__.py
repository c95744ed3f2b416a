"""astro_db: a synchronous MongoDB data layer for the astrology app's backend.

    from astro_db import Database
    with Database("mongodb://localhost:27017/astro") as db:
        user = db.create("User", {"email": "a@b.co", "name": "Ann"})
"""

from __future__ import annotations

from . import errors
from ._version import __version__
from .config import DatabaseConfig
from .database import CreateManyResult, Database, Page
from .driver.transactions import Transaction
from .errors import AstroDBError

__all__ = [
    "Database",
    "DatabaseConfig",
    "Transaction",
    "CreateManyResult",
    "Page",
    "AstroDBError",
    "errors",
    "__version__",
]

# No NullHandler on the "astro_db" logger, on purpose: with no logging configured anywhere,
# Python's last-resort handler prints WARNING and above on stderr, so a failed connection attempt
# or a server error is seen by default. Configure logging and it goes where yours goes.
