"""``AstroDocument``: the abstract base of every astro_db model.

It carries what the Node service (Mongoose, ``timestamps: true``) puts on every document:
``createdAt`` / ``updatedAt`` (set by the service, so optional here) and the ``__v`` version key
(astro_db writes 0 on create, as Mongoose does). Unknown stored keys never break loading
(``strict: False``) and indexes are never created implicitly: they are synced explicitly.
"""

from __future__ import annotations

from typing import Any

from mongoengine import Document

from .fields import NumberField, UTCDateTimeField
from .masking import mask_value
from .serialise import document_to_dict

__all__ = ["AstroDocument", "BASE_META", "mask_value"]

BASE_META: dict[str, Any] = {"abstract": True, "strict": False, "auto_create_index": False}


class AstroDocument(Document):
    """Abstract model base: timestamps, Mongoose's version key and ``to_dict``."""

    created_at = UTCDateTimeField(db_field="createdAt")
    updated_at = UTCDateTimeField(db_field="updatedAt")
    version = NumberField(db_field="__v", integer=True, min_value=0, default=0)

    meta: dict[str, Any] = dict(BASE_META)

    def to_dict(self, masked: bool = False) -> dict:
        """JSON-ready dict with stored names, ``id`` strings and ISO ``Z`` dates (``__v`` left out)."""
        return document_to_dict(self, masked)

    # Instances are values: they are read and written through a ``Database`` (validation,
    # access checks, audit, journal, cache), never through MongoEngine's own connection.
    def save(self, *args: Any, **kwargs: Any) -> Any:
        raise _written_through_database(self, "save")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise _written_through_database(self, "delete")

    def update(self, *args: Any, **kwargs: Any) -> Any:
        raise _written_through_database(self, "update")

    def modify(self, *args: Any, **kwargs: Any) -> Any:
        raise _written_through_database(self, "modify")

    def reload(self, *args: Any, **kwargs: Any) -> Any:
        raise _written_through_database(self, "reload")


def _written_through_database(doc: Any, method: str) -> Exception:
    from ..errors import AstroDBError

    name = type(doc).__name__
    call = {"delete": f'db.delete("{name}", {{"id": ...}})', "reload": f'db.find_one("{name}", {{"id": ...}})'}.get(
        method, f'db.update("{name}", {{"id": ...}}, {{...}})')
    return AstroDBError(f"{name}.{method}() is not available: astro_db models are read and written through a "
                        f"Database (validation, access checks, audit); use {call}")
