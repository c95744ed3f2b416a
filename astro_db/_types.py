"""Type names for the collaborators passed down the pipeline (for the checkers only).

``MongoDB`` is PyMongo's ``Database`` (the embedded backend's stands in for it at run time) and
``Session`` a PyMongo client session or none; ``Transaction`` and ``Actor`` are astro_db's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:  # pragma: no cover
    from pymongo.client_session import ClientSession
    from pymongo.database import Database

    from .driver.transactions import Transaction
    from .security.access import Actor

    MongoDB: TypeAlias = Database[Any]
    Session: TypeAlias = ClientSession | None
    MaybeTransaction: TypeAlias = Transaction | None
    MaybeActor: TypeAlias = Actor | None

__all__ = ["MongoDB", "Session", "MaybeTransaction", "MaybeActor"]
