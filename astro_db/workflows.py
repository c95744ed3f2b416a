"""Cross-model units of work the app needs, each atomic in one transaction.

``create_user_with_chart`` creates a user and their birth chart together; ``delete_user_cascade``
deletes a user and every document a registered model declares as theirs (``meta["owner"]``:
the built-in charts, insights and timings, and any app model that declares an owner). Both run
through ``Database.with_transaction`` (transient errors retried) unless given a transaction to
join. The models come from the Database's registry: nothing here names a model but the chart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .query.filters import coerce_id

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .driver.transactions import Transaction
    from .registry import ModelRegistry

__all__ = ["create_user_with_chart", "delete_user_cascade"]


def create_user_with_chart(db: Database, user: Mapping[str, Any], chart: Mapping[str, Any],
                           *, models: ModelRegistry, transaction: Transaction | None = None) -> tuple[Any, Any]:
    """Create a user and their birth chart atomically; returns ``(user, chart)``."""
    users, charts = models.users(), models.resolve("BirthChart")
    owner = charts.declaration.owner
    if not charts.declaration.owned or owner is None:
        raise ConfigError(f"{charts.name} declares no owner field (meta['owner']): it cannot be created for a user",
                          key="models")

    def unit(tx: Transaction) -> tuple[Any, Any]:
        created = db.create(users.name, user, transaction=tx)
        return created, db.create(charts.name, {**chart, owner: created.id}, transaction=tx)

    return unit(transaction) if transaction is not None else db.with_transaction(unit)


def delete_user_cascade(db: Database, user_id: Any, *, models: ModelRegistry,
                        transaction: Transaction | None = None) -> dict[str, int]:
    """Delete a user and every document an owned model holds for them atomically; counts per
    model (each owned model, then the user model)."""
    users = models.users()
    oid = coerce_id(user_id, f"{users.name} id")
    owned = models.owned

    def unit(tx: Transaction) -> dict[str, int]:
        counts = {info.name: db.delete_many(info.name, {str(info.declaration.owner): oid}, transaction=tx)
                  for info in owned}
        counts[users.name] = int(db.delete(users.name, {"_id": oid}, transaction=tx))
        return counts

    return unit(transaction) if transaction is not None else db.with_transaction(unit)
