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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from mongoengine import Document, EmbeddedDocument
from mongoengine.base import ComplexBaseField

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


def values_only(cls: type) -> None:
    """Turn MongoEngine's dereferencing off for every container field of ``cls``, at every depth.

    A model's values are data: a list or dict field's value is never taken for MongoEngine's
    own markers. With it on, reading such a field of an instance turned a stored dict holding a
    ``_cls`` key into a document of the class it named (``{"_cls": "User", ...}`` became a
    ``User``; one naming no class raised ``NotRegistered``, a non-string ``TypeError``), and
    looked ``_ref`` / ``DBRef`` values up through MongoEngine's own connection, never the
    gateway. astro_db has no ``ReferenceField``: a reference is an id (``UserRefField``)."""
    for field in getattr(cls, "_fields", {}).values():
        if not isinstance(field, ComplexBaseField):
            continue
        while isinstance(field, ComplexBaseField):
            field.set_auto_dereferencing(False)
            # and kept off: MongoEngine's _from_son sets every field's flag to its own argument
            field.set_auto_dereferencing = _stays
            field = field.field
        if field is not None:  # the items' field keeps its own (a container would turn it off, and an
            field.set_auto_dereferencing = _stays  # embedded document's _from_son then copies its fields)


def _stays(value: bool) -> None:
    """``set_auto_dereferencing`` of a container field of a model and of its items' field
    (``values_only``): a no-op, the flag stays as ``values_only`` left it."""


def from_son(cls: Any, build: Any, son: Any, *args: Any, **kwargs: Any) -> Any:
    """MongoEngine's ``_from_son`` (``build``) of ``son`` as an instance of ``cls`` itself.

    MongoEngine takes a stored ``_cls`` for the name of the class to build. Unless ``cls``
    allows inheritance (the service's models do not), it is the data of whoever stored it (the
    Node service, a raw write): kept as any unknown key is, never obeyed. Before, a birth chart
    stored with ``_cls: "User"`` was read as a ``User``, and one naming no class raised
    MongoEngine's ``NotRegistered`` (a non-string, ``AttributeError``)."""
    if isinstance(son, Mapping) and "_cls" in son and not cls._meta.get("allow_inheritance"):
        marker = son["_cls"]
        obj = build({k: v for k, v in son.items() if k != "_cls"}, *args, **kwargs)
        obj._data["_cls"] = marker
        return obj
    return build(son, *args, **kwargs)


class AstroDocument(DocumentBase):
    """Abstract model base: timestamps, Mongoose's version key and ``to_dict``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        values_only(cls)

    @classmethod
    def _from_son(cls, son: Any, *args: Any, **kwargs: Any) -> Any:
        return from_son(cls, super()._from_son, son, *args, **kwargs)

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
