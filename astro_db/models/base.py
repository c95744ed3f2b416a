"""``AstroDocument``: the abstract base of every astro_db model.

It carries what the Node service (Mongoose, ``timestamps: true``) puts on every document:
``createdAt`` / ``updatedAt`` (set by the service, so optional here) and the ``__v`` version key
(astro_db writes 0 on create, as Mongoose does). Unknown stored keys never break loading
(``strict: False``) and indexes are never created implicitly: they are synced explicitly.

Type checkers see ``AstroDocument`` and ``AstroEmbeddedDocument`` over ``DocumentView`` /
``EmbeddedDocumentView`` below (what MongoEngine gives an instance, typed), not over MongoEngine's
untyped classes, which would make every attribute of every model ``Any`` (``user.emial``
accepted). At run time the bases are MongoEngine's ``Document`` and ``EmbeddedDocument``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from mongoengine import Document, EmbeddedDocument

from .fields import NumberField, UTCDateTimeField
from .masking import field_mask_kind, mask_value
from .serialise import document_to_dict

__all__ = ["AstroDocument", "BASE_META", "EmbeddedDocumentBase", "mask_value"]

BASE_META: dict[str, Any] = {"abstract": True, "strict": False, "auto_create_index": False}

if TYPE_CHECKING:  # pragma: no cover
    from typing import Self

    from bson import ObjectId

    class EmbeddedDocumentView:
        """The checkers' view of a MongoEngine ``EmbeddedDocument``: what astro_db and apps use."""

        _fields: ClassVar[dict[str, Any]]
        _meta: ClassVar[dict[str, Any]]
        _data: dict[str, Any]

        __hash__: ClassVar[None]  # type: ignore[assignment]  # compared by value, unhashable at run time

        def __init__(self, *args: Any, **values: Any) -> None: ...
        def __eq__(self, other: object) -> bool: ...
        def to_mongo(self, *args: Any, **kwargs: Any) -> Any: ...
        def to_json(self, *args: Any, **kwargs: Any) -> str: ...
        def validate(self, clean: bool = True) -> None: ...
        @classmethod
        def _from_son(cls, son: Any, *args: Any, **kwargs: Any) -> Self: ...

    class DocumentView(EmbeddedDocumentView):
        """The checkers' view of a MongoEngine ``Document``: its ``id`` (``_id``, an ObjectId
        once stored; every instance astro_db returns is stored) and what astro_db uses."""

        id: ObjectId
        pk: ObjectId

        def __hash__(self) -> int: ...  # type: ignore[override]  # by id, as MongoEngine's Document

        @classmethod
        def _get_collection_name(cls) -> str: ...

    DocumentBase = DocumentView
    EmbeddedDocumentBase = EmbeddedDocumentView
else:
    DocumentBase = Document
    EmbeddedDocumentBase = EmbeddedDocument


class AstroDocument(DocumentBase):
    """Abstract model base: timestamps, Mongoose's version key and ``to_dict``."""

    created_at = UTCDateTimeField(db_field="createdAt")
    updated_at = UTCDateTimeField(db_field="updatedAt")
    version = NumberField(db_field="__v", integer=True, min_value=0, default=0)

    meta: dict[str, Any] = dict(BASE_META)
    #: attribute names ``repr`` shows after the id; masked fields are shown masked,
    #: sensitive ones never
    repr_fields: tuple[str, ...] = ()

    def __repr__(self) -> str:
        """``<User 65f0... email='a***@example.com' status='active'>``: safe to log."""
        parts = [type(self).__name__, str(self.pk) if self.pk is not None else "(unsaved)"]
        for name in self.repr_fields:
            field = self._fields.get(name)
            value = getattr(self, name, None)
            if field is None or value is None:
                continue
            if getattr(field, "sensitive", False) and not getattr(field, "mask", None):
                continue  # a secret: never shown; a personal field with a mask of its own (the email) shows masked
            kind = field_mask_kind(field)
            shown = mask_value(kind, value) if kind else value
            parts.append(f"{field.db_field or name}={_short(shown)}")
        return f"<{' '.join(parts)}>"

    __str__ = __repr__

    @property
    def revision(self) -> int:
        """The document's revision as read: ``_rev``, which every write through the service
        advances (0 for a document no write has changed since its create). Pass it back as
        ``db.update(..., expected_revision=doc.revision)`` to change the document only if nobody
        has since (``ConflictError`` otherwise). Read-only: the service sets it."""
        return int(self._data.get("_rev") or 0)

    def to_dict(self, masked: bool = False) -> dict[str, Any]:
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


def _short(value: Any) -> str:
    """A field value for ``repr``: dates in ISO form, long text cut."""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    text = repr(str(value)) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _written_through_database(doc: Any, method: str) -> Exception:
    from ..errors import AstroDBError

    name = type(doc).__name__
    call = {"delete": f'db.delete("{name}", {{"id": ...}})', "reload": f'db.find_one("{name}", {{"id": ...}})'}.get(
        method, f'db.update("{name}", {{"id": ...}}, {{...}})')
    return AstroDBError(f"{name}.{method}() is not available: astro_db models are read and written through a "
                        f"Database (validation, access checks, audit); use {call}")
