"""Type names for the collaborators passed down the pipeline (for the checkers only).

``MongoDB`` is the gateway to one database (``driver.gateway.Gateway``: the only holder of
PyMongo's database and collection objects) and
``Session`` a PyMongo client session or none; ``Transaction`` and ``Actor`` are astro_db's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # pragma: no cover
    from pymongo.client_session import ClientSession

    from .driver.gateway import Gateway
    from .driver.transactions import Transaction
    from .security.access import Actor

    MongoDB: TypeAlias = Gateway
    Session: TypeAlias = ClientSession | None
    MaybeTransaction: TypeAlias = Transaction | None
    MaybeActor: TypeAlias = Actor | None

__all__ = ["MongoDB", "Session", "MaybeTransaction", "MaybeActor"]
