"""astro_db: a synchronous MongoDB data layer for the astrology app's backend.

    from astro_db import Database
    with Database("mongodb://localhost:27017/astro") as db:
        user = db.create("User", {"email": "a@b.co", "name": "Ann"})
"""

from __future__ import annotations

import logging

from . import errors
from ._version import __version__
from .config import DatabaseConfig
from .database import CreateManyResult, Database
from .errors import AstroDBError
from .transactions import Transaction

__all__ = [
    "Database",
    "DatabaseConfig",
    "Transaction",
    "CreateManyResult",
    "AstroDBError",
    "errors",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
