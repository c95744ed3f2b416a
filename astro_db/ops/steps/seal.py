"""Step 4, seal: encrypt the new documents that go to the server (``security.crypto``).

Conditions on encrypted fields and update values are sealed in the compile step, by the query
walker's seal rule (``security.filters.SealRule``), at every depth of a pipeline and against the
model each part reads; this step seals what the walker does not see: new documents, each value
bound to the document's ``_id`` under its owner's data key. An update's value for a randomly
encrypted field cannot be sealed before the document it goes into is known: the walker leaves
it ``Pending`` and the write strategy seals it per document (``ops/writes.py``). Without a key
nothing changes.
"""

from __future__ import annotations

from typing import Any

from ...registry import ModelInfo
from ..runtime import Runtime

__all__ = ["document", "documents"]


def document(rt: Runtime, info: ModelInfo, son: dict[str, Any]) -> dict[str, Any]:
    return rt.crypto.seal_document(info, son)


def documents(rt: Runtime, info: ModelInfo, sons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``document`` of each of a batch's new documents (``create_many``): the model's fields and
    the key looked up once for the batch (``FieldCrypto.seal_documents``)."""
    return rt.crypto.seal_documents(info, list(sons))
