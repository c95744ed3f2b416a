"""Step 1, resolve: the model named by the caller, and the session of its transaction.

A model is resolved once per call (``registry``: class, class name, snake case or collection
name); a transaction must be one of this Database's and still open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...driver.transactions import Transaction
from ...errors import TransactionError, UnknownModelError
from ...registry import ModelInfo
from ..runtime import Runtime

if TYPE_CHECKING:  # pragma: no cover
    from ..._types import MaybeTransaction

__all__ = ["call", "model", "session", "own"]


def call(rt: Runtime, name: Any, transaction: MaybeTransaction) -> tuple[ModelInfo, Any]:
    """Step 1 of a data call in one pass: the model (``model``; a class or a class name, nearly
    every call's, found by one look in the registry's ``known``, any other spelling by its
    ``resolve``, with the same errors) and the session (``session``)."""
    try:
        info = rt.registry.known.get(name)
    except TypeError:  # an unhashable "model": resolve says what is wrong with it
        info = None
    if info is None:
        info = model(rt, name)
    return info, (None if transaction is None else own(rt, transaction).require_active())


def model(rt: Runtime, name: Any) -> ModelInfo:
    """The ``ModelInfo`` of ``name``; ``UnknownModelError`` listing the valid ones otherwise."""
    if name is None:
        raise UnknownModelError(f"no model given; name one of {', '.join(rt.registry.names)} (or pass the class)")
    return rt.registry.resolve(name)


def own(rt: Runtime, transaction: MaybeTransaction) -> Transaction:
    """``transaction`` if it is a Transaction of this Database; ``TransactionError`` otherwise."""
    if not isinstance(transaction, Transaction):
        raise TransactionError(f"expected a Transaction from start_transaction(), got {type(transaction).__name__}")
    if transaction.owner is not rt:
        raise TransactionError("this transaction belongs to another Database")
    return transaction


def session(rt: Runtime, transaction: MaybeTransaction) -> Any:
    """The ClientSession of an open transaction of this Database, or None without one."""
    if transaction is None:
        return None
    return own(rt, transaction).require_active()
