"""Cross-model units of work the app needs, each atomic in one transaction.

``create_user_with_chart`` creates a user and their birth chart together; ``delete_user_cascade``
deletes a user and every document that refers to them. Both run through
``Database.with_transaction`` (transient errors retried) unless given a transaction to join.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .query.filters import coerce_id

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .driver.transactions import Transaction

__all__ = ["create_user_with_chart", "delete_user_cascade", "USER_OWNED_MODELS"]

USER_OWNED_MODELS = ("BirthChart", "PlanetaryInsight", "TimingRecommendation")


def create_user_with_chart(db: Database, user: Mapping[str, Any], chart: Mapping[str, Any],
                           *, transaction: Transaction | None = None) -> tuple[Any, Any]:
    """Create a user and their birth chart atomically; returns ``(user, chart)``."""

    def unit(tx: Transaction) -> tuple[Any, Any]:
        created = db.create("User", user, transaction=tx)
        return created, db.create("BirthChart", {**chart, "userId": created.id}, transaction=tx)

    return unit(transaction) if transaction is not None else db.with_transaction(unit)


def delete_user_cascade(db: Database, user_id: Any, *, transaction: Transaction | None = None) -> dict[str, int]:
    """Delete a user and their charts, insights and timings atomically; counts per model."""
    oid = coerce_id(user_id, "userId")

    def unit(tx: Transaction) -> dict[str, int]:
        counts = {model: db.delete_many(model, {"userId": oid}, transaction=tx) for model in USER_OWNED_MODELS}
        counts["User"] = int(db.delete("User", {"_id": oid}, transaction=tx))
        return counts

    return unit(transaction) if transaction is not None else db.with_transaction(unit)
