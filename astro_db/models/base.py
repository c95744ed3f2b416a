"""``AstroDocument``: the abstract base of every astro_db model.

It carries what the Node service (Mongoose, ``timestamps: true``) puts on every document:
``createdAt`` / ``updatedAt`` (set by the service, so optional here) and the ``__v`` version key
(astro_db writes 0 on create, as Mongoose does). Unknown stored keys never break loading
(``strict: False``) and indexes are never created implicitly: they are synced explicitly.
"""

from __future__ import annotations

from mongoengine import Document

from .fields import NumberField, UTCDateTimeField
from .masking import mask_value
from .serialise import document_to_dict

__all__ = ["AstroDocument", "BASE_META", "mask_value"]

BASE_META = {"abstract": True, "strict": False, "auto_create_index": False}


class AstroDocument(Document):
    """Abstract model base: timestamps, Mongoose's version key and ``to_dict``."""

    created_at = UTCDateTimeField(db_field="createdAt")
    updated_at = UTCDateTimeField(db_field="updatedAt")
    version = NumberField(db_field="__v", integer=True, min_value=0, default=0)

    meta = dict(BASE_META)

    def to_dict(self, masked: bool = False) -> dict:
        """JSON-ready dict with stored names, ``id`` strings and ISO ``Z`` dates (``__v`` left out)."""
        return document_to_dict(self, masked)
