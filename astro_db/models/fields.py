"""Field types for astro_db models: MongoEngine fields whose rules and messages suit the service.

Every ``validate`` raises MongoEngine's ``ValidationError`` (through ``BaseField.error``) with a
message naming the bad value; the field's stored name is the key the error is reported under.
``to_python`` never raises: it converts what it can (ISO strings, hex ids, list points) and leaves
the rest for ``validate`` to reject, which is the contract MongoEngine's loaders rely on.
Fields accept extra metadata (``sensitive=True``, ``mask="name"``) read by ``to_dict(masked=True)``.

Typed for mypy and pyright: each field is generic in the Python type its attribute holds on an
instance (``User.email`` is the field, ``user.email`` a ``str``). The constructor overloads pick
that type: ``required=True`` or a ``default`` give the bare type, otherwise ``... | None``
(``NumberField(integer=True)`` holds an ``int``, other numbers a ``float``; a ``RuleListField``
always a list, MongoEngine's lists default to ``[]``). The ``__get__``/``__set__`` overloads exist
for the checkers only: at run time MongoEngine's ``BaseField`` descriptors do the work.
"""

from __future__ import annotations

import math
import re
import reprlib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload
from zoneinfo import available_timezones

from bson import ObjectId
from bson.tz_util import utc as bson_utc
from mongoengine.base import BaseDocument, BaseField
from mongoengine.fields import ListField, ObjectIdField, StringField

if TYPE_CHECKING:  # pragma: no cover
    from typing import Self

    from mongoengine.fields import EmbeddedDocumentField as _MEEmbeddedDocumentField

__all__ = [
    "BoolField",
    "ChoiceField",
    "EmailField",
    "EmbeddedDocumentField",
    "GeoPointField",
    "NumberField",
    "RuleListField",
    "StrictObjectIdField",
    "TextField",
    "TimezoneField",
    "TypedField",
    "UTCDateTimeField",
    "UserRefField",
    "canonical_email",
    "describe",
    "short_repr",
    "iso_utc",
    "longest_text",
]

_SHOW_MAX = 60
_ZERO = timedelta(0)


_SHORT = reprlib.Repr()  # a repr whose cost is bounded whatever the value: depth, items and lengths cut
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 3, _SHOW_MAX, _SHOW_MAX, _SHOW_MAX
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxfrozenset = _SHORT.maxdeque = 20


def short_repr(value: Any) -> str:
    """``repr(value)`` as far as an error message shows it (its first ``_SHOW_MAX`` characters
    are ``repr``'s own), at a cost bounded whatever the value: a string is cut before its
    ``repr``, a container shown to 3 levels and 20 items a level (``reprlib``), so a value
    nested thousands of levels deep or megabytes long is described as cheaply as a short one."""
    try:
        if isinstance(value, str):
            return repr(value[: _SHOW_MAX + 1])[:-1] + "..." if len(value) > _SHOW_MAX else repr(value)
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            return _SHORT.repr(value)
        return repr(value)
    except ValueError:  # an int past Python's 4,300 digits, or a repr that refuses
        return f"<a {type(value).__name__} too large to show>"


def describe(value: Any) -> str:
    """A short ``repr`` of a bad value for an error message (long strings are cut)."""
    if isinstance(value, datetime):
        return value.isoformat()
    text = short_repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a ``Z``, as JavaScript's toISOString."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def _span(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{low}-{high}"
    return f">= {low}" if low is not None else f"<= {high}"


# --- typing ----------------------------------------------------------------------------------

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
E = TypeVar("E")
_Item = TypeVar("_Item")


class TypedField(Generic[T]):
    """The checkers' view of a field holding a ``T``: class access gives the field, instance
    access the value. Listed first in each field's bases so the checkers see these descriptors
    (MongoEngine's own are untyped); at run time this class is empty and ``BaseField`` serves."""

    __slots__ = ()

    if TYPE_CHECKING:  # pragma: no cover
        @overload
        def __get__(self, instance: None, owner: Any) -> Self: ...
        @overload
        def __get__(self, instance: object, owner: Any) -> T: ...
        def __get__(self, instance: object | None, owner: Any) -> Self | T: ...
        def __set__(self, instance: object, value: T) -> None: ...
        def _value(self) -> T: ...  # what ``HoldsValue`` reads: a field's value type


class HoldsValue(Protocol[T_co]):
    """Any field whose instance value is a ``T_co`` (a list field's item field)."""

    def _value(self) -> T_co: ...


# --- strings ---------------------------------------------------------------------------------


class TextField(TypedField[T], BaseField):
    """A string, stripped of surrounding whitespace, with an optional length range and pattern."""

    @overload
    def __init__(self: TextField[str], min_length: int | None = None, max_length: int | None = None,
                 strip: bool = True, *, required: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: TextField[str], min_length: int | None = None, max_length: int | None = None,
                 strip: bool = True, *, default: str | Callable[[], str], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: TextField[str | None], min_length: int | None = None, max_length: int | None = None,
                 strip: bool = True, *, required: bool = False, **kwargs: Any) -> None: ...

    def __init__(self, min_length: int | None = None, max_length: int | None = None,
                 strip: bool = True, **kwargs: Any) -> None:
        self.min_length = min_length
        self.max_length = max_length
        self.strip = strip
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if self.strip and isinstance(value, str):
            return value.strip()
        return value

    def validate(self, value: Any) -> None:
        if not isinstance(value, str):
            self.error(f"must be a string, got {describe(value)}")
        too_short = self.min_length is not None and len(value) < self.min_length
        too_long = self.max_length is not None and len(value) > self.max_length
        if too_short or too_long:
            if self.min_length == 1 and too_short:
                self.error(f"must not be empty, got {describe(value)}")
            self.error(f"must be {_span(self.min_length, self.max_length)} characters, "
                       f"got {len(value)}: {describe(value)}")


_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def canonical_email(value: str) -> str:
    """The one spelling an email address is stored and compared in: Unicode NFKC (composed, and
    compatibility forms folded: fullwidth ``ｊｏｓé＠ｅｘａｍｐｌｅ．ｃｏｍ`` is ``josé@example.com``),
    lower-cased, surrounding whitespace stripped; repeated until it no longer changes (NFKC can
    turn a lower-case letter into a capital: ``ᴬ`` is ``A``). ASCII text is its own NFKC form and
    stays ASCII lower-cased: it takes the short way (nearly every address; the same result)."""
    if value.isascii():
        folded = value.strip().lower()
        return value if folded == value else folded  # an unchanged value keeps its identity (and type), as below
    value = unicodedata.normalize("NFKC", value).strip()
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", value.lower()).strip()
        if folded == value:
            break
        value = folded
    return value


class EmailField(TextField[T]):
    """An e-mail address, stored in its canonical form (``canonical_email``) and checked in it."""

    @overload
    def __init__(self: EmailField[str], *, required: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: EmailField[str], *, default: str | Callable[[], str], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: EmailField[str | None], *, required: bool = False, **kwargs: Any) -> None: ...

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 254)
        kwargs.setdefault("mask", "email")
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        return canonical_email(value) if isinstance(value, str) else value

    def validate(self, value: Any) -> None:
        super().validate(value)
        if not _EMAIL.match(value):
            self.error(f"not a valid email address: {describe(value)}")


class ChoiceField(TextField[T]):
    """One of a fixed set of strings; with ``ignore_case`` any spelling is stored canonically."""

    @overload
    def __init__(self: ChoiceField[str], options: Iterable[str], ignore_case: bool = False, *,
                 required: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: ChoiceField[str], options: Iterable[str], ignore_case: bool = False, *,
                 default: str | Callable[[], str], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: ChoiceField[str | None], options: Iterable[str], ignore_case: bool = False, *,
                 required: bool = False, **kwargs: Any) -> None: ...

    def __init__(self, options: Iterable[str], ignore_case: bool = False, **kwargs: Any) -> None:
        self.options = tuple(options)
        self.ignore_case = ignore_case
        self._canonical = {o.lower(): o for o in self.options}
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if self.ignore_case and isinstance(value, str):
            return self._canonical.get(value.lower(), value)
        return value

    def validate(self, value: Any) -> None:
        if not isinstance(value, str) or value not in self.options:
            self.error(f"must be one of {', '.join(self.options)}; got {describe(value)}")


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


class TimezoneField(TextField[T]):
    """An IANA time-zone name such as ``Europe/Paris`` (checked against the system's zoneinfo)."""

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value not in _zone_names():
            self.error(f"not a known IANA time zone: {describe(value)}")


def longest_text(field: Any) -> int | None:
    """The longest string ``field`` accepts (for a list field: its items), or None when it sets
    no bound or holds no strings: the length a regex on the field may be matched against."""
    while isinstance(field, ListField):
        field = field.field
    if isinstance(field, ChoiceField):
        return max(map(len, field.options), default=0)
    if isinstance(field, TimezoneField):
        longest = max(map(len, _zone_names()), default=0)
        return longest if field.max_length is None else min(longest, field.max_length)
    if isinstance(field, (TextField, StringField)):  # StringField: an app model's plain MongoEngine string
        return field.max_length
    return None


# --- numbers and flags -----------------------------------------------------------------------


class NumberField(TypedField[T], BaseField):
    """An int or float (never a bool) within ``min_value``..``max_value`` (or below ``below``).

    Typed ``int`` with ``integer=True``, else ``float`` (which admits an ``int``)."""

    @overload
    def __init__(self: NumberField[int], min_value: Any = None, max_value: Any = None, below: Any = None, *,
                 integer: Literal[True], required: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: NumberField[int], min_value: Any = None, max_value: Any = None, below: Any = None, *,
                 integer: Literal[True], default: int | Callable[[], int], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: NumberField[int | None], min_value: Any = None, max_value: Any = None, below: Any = None, *,
                 integer: Literal[True], required: bool = False, **kwargs: Any) -> None: ...
    @overload
    def __init__(self: NumberField[float], min_value: Any = None, max_value: Any = None, below: Any = None,
                 integer: Literal[False] = False, *, required: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: NumberField[float], min_value: Any = None, max_value: Any = None, below: Any = None,
                 integer: Literal[False] = False, *, default: float | Callable[[], float], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: NumberField[float | None], min_value: Any = None, max_value: Any = None, below: Any = None,
                 integer: Literal[False] = False, *, required: bool = False, **kwargs: Any) -> None: ...

    def __init__(self, min_value: Any = None, max_value: Any = None, below: Any = None,
                 integer: bool = False, **kwargs: Any) -> None:
        self.min_value = min_value
        self.max_value = max_value
        self.below = below
        self.integer = integer
        super().__init__(**kwargs)

    def validate(self, value: Any) -> None:
        kinds = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or (
                isinstance(value, float) and not math.isfinite(value)):
            self.error(f"must be {'an integer' if self.integer else 'a number'}, got {describe(value)}")
        if self.below is not None:
            if value >= self.below or (self.min_value is not None and value < self.min_value):
                self.error(f"must be >= {self.min_value} and < {self.below}, got {describe(value)}")
        elif (self.min_value is not None and value < self.min_value) or (
                self.max_value is not None and value > self.max_value):
            self.error(f"must be {_span(self.min_value, self.max_value)}, got {describe(value)}")


class BoolField(TypedField[T], BaseField):
    """A true boolean; unlike MongoEngine's BooleanField it never coerces ``"no"`` to True."""

    if TYPE_CHECKING:  # pragma: no cover
        @overload
        def __init__(self: BoolField[bool], *, required: Literal[True], **kwargs: Any) -> None: ...
        @overload
        def __init__(self: BoolField[bool], *, default: bool | Callable[[], bool], **kwargs: Any) -> None: ...
        @overload
        def __init__(self: BoolField[bool | None], *, required: bool = False, **kwargs: Any) -> None: ...
        def __init__(self, **kwargs: Any) -> None: ...

    def validate(self, value: Any) -> None:
        if not isinstance(value, bool):
            self.error(f"must be true or false, got {describe(value)}")


# --- ids and references ----------------------------------------------------------------------


class StrictObjectIdField(TypedField[T], ObjectIdField):
    """An ObjectId given as ObjectId or 24-hex string; anything else is 'not a valid ObjectId'."""

    if TYPE_CHECKING:  # pragma: no cover
        @overload
        def __init__(self: StrictObjectIdField[ObjectId], *, required: Literal[True], **kwargs: Any) -> None: ...
        @overload
        def __init__(self: StrictObjectIdField[ObjectId], *, default: ObjectId | Callable[[], ObjectId],
                     **kwargs: Any) -> None: ...
        @overload
        def __init__(self: StrictObjectIdField[ObjectId | None], *, required: bool = False,
                     **kwargs: Any) -> None: ...
        def __init__(self, **kwargs: Any) -> None: ...

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and ObjectId.is_valid(value):
            return ObjectId(value)
        return value

    def to_mongo(self, value: Any) -> Any:
        return self.to_python(value)

    def validate(self, value: Any) -> None:
        if not isinstance(value, ObjectId):
            self.error(f"not a valid ObjectId: {describe(value)}")


class UserRefField(StrictObjectIdField[T]):
    """A reference to ``users._id`` stored as a bare ObjectId, as Mongoose's ``ref`` does.

    Not a MongoEngine ReferenceField: reading never dereferences through a global connection.
    A saved ``User`` instance is accepted and replaced by its id.
    """

    @overload
    def __init__(self: UserRefField[ObjectId], *, required: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: UserRefField[ObjectId], *, default: ObjectId | Callable[[], ObjectId], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: UserRefField[ObjectId | None], *, required: bool = False, **kwargs: Any) -> None: ...

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("ref", "users")
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, BaseDocument) and getattr(value, "pk", None) is not None:
            return value.pk
        return super().to_python(value)


# --- dates -----------------------------------------------------------------------------------


def to_utc(value: Any) -> Any:
    """Coerce a datetime, date or ISO-8601 string to an aware UTC datetime cut to the millisecond
    (what BSON stores: a value given with microseconds reads back without them, so the stored
    form, a create's answer and the filters a cache judges all hold what the server holds); else
    return as is."""
    if isinstance(value, datetime):
        zone = value.tzinfo
        if zone is None:
            value = value.replace(tzinfo=timezone.utc)
        elif zone is _BSON_UTC:  # PyMongo's UTC (every date a tz-aware client reads): the same instant,
            value = _EPOCH + (value - _BSON_EPOCH)  # exactly, in two C operations (astimezone calls its Python utcoffset)
        elif zone is not timezone.utc:
            try:
                value = value.astimezone(timezone.utc)
            except OverflowError:  # e.g. 0001-01-01T00:00+01:00: no UTC equivalent; validate rejects it
                return value
        return to_millisecond(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return value
        converted = to_utc(parsed)
        return converted if converted.utcoffset() == _ZERO else value
    return value


def to_millisecond(value: Any) -> Any:
    """A datetime cut to the millisecond, as BSON stores it (anything else as it is)."""
    if value.__class__ is datetime and value.microsecond % 1000:
        return value.replace(microsecond=value.microsecond - value.microsecond % 1000)
    return value


_BSON_UTC = bson_utc
_BSON_EPOCH = datetime(1970, 1, 1, tzinfo=bson_utc)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class UTCDateTimeField(TypedField[T], BaseField):
    """A point in time held as an aware UTC datetime; ISO strings (``Z``, offsets, dates) accepted.

    ``earliest`` and ``not_future`` bound the value (birth dates use both).
    """

    @overload
    def __init__(self: UTCDateTimeField[datetime], earliest: datetime | None = None, not_future: bool = False, *,
                 required: Literal[True], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: UTCDateTimeField[datetime], earliest: datetime | None = None, not_future: bool = False, *,
                 default: datetime | Callable[[], datetime], **kwargs: Any) -> None: ...
    @overload
    def __init__(self: UTCDateTimeField[datetime | None], earliest: datetime | None = None,
                 not_future: bool = False, *, required: bool = False, **kwargs: Any) -> None: ...

    def __init__(self, earliest: datetime | None = None, not_future: bool = False,
                 **kwargs: Any) -> None:
        self.earliest = to_utc(earliest) if earliest is not None else None
        self.not_future = not_future
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        return to_utc(value)

    def to_mongo(self, value: Any) -> Any:
        return to_utc(value)

    def validate(self, value: Any) -> None:
        if not isinstance(value, datetime) or value.utcoffset() != _ZERO:
            self.error(f"not a valid ISO-8601 date/time: {describe(value)}")
        if self.earliest is not None and value < self.earliest:
            self.error(f"must be on or after {self.earliest.date().isoformat()}, got {iso_utc(value)}")
        if self.not_future and value > datetime.now(timezone.utc):
            self.error(f"must not be in the future, got {iso_utc(value)}")


# --- geo -------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class GeoPointField(TypedField[T], BaseField):
    """A GeoJSON Point ``{"type": "Point", "coordinates": [lng, lat]}``; ``[lng, lat]`` accepted."""

    if TYPE_CHECKING:  # pragma: no cover
        @overload
        def __init__(self: GeoPointField[dict[str, Any]], *, required: Literal[True], **kwargs: Any) -> None: ...
        @overload
        def __init__(self: GeoPointField[dict[str, Any]], *, default: Any, **kwargs: Any) -> None: ...
        @overload
        def __init__(self: GeoPointField[dict[str, Any] | None], *, required: bool = False,
                     **kwargs: Any) -> None: ...
        def __init__(self, **kwargs: Any) -> None: ...

    def to_python(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {"type": "Point", "coordinates": list(value)}
        if isinstance(value, Mapping) and not isinstance(value, dict):
            return dict(value)
        return value

    def to_mongo(self, value: Any) -> Any:
        value = self.to_python(value)
        if isinstance(value, dict) and isinstance(value.get("coordinates"), tuple):
            value = {**value, "coordinates": list(value["coordinates"])}
        return value

    def validate(self, value: Any) -> None:
        coords: Any = value.get("coordinates") if isinstance(value, dict) else None
        if (not isinstance(value, dict) or value.get("type") != "Point"
                or not isinstance(coords, (list, tuple)) or len(coords) != 2
                or not all(_number(c) for c in coords)):
            self.error('must be a GeoJSON Point {"type": "Point", "coordinates": [lng, lat]} '
                       f"or [lng, lat], got {describe(value)}")
        lng, lat = coords
        if not -180 <= lng <= 180:
            self.error(f"longitude must be -180..180, got {describe(lng)}")
        if not -90 <= lat <= 90:
            self.error(f"latitude must be -90..90, got {describe(lat)}")


# --- lists -----------------------------------------------------------------------------------

ListRule = Callable[[list[Any]], str | None]


class RuleListField(TypedField[list[_Item]], ListField):
    """A list with an item-count range and an optional rule over the whole list.

    The rule receives the items as plain data (an embedded item's ``_data`` dict keyed by
    attribute name, or the scalar itself) and returns an error message or None. It runs only
    when every item is valid, so it may assume well-formed items. Errors are keyed by the list
    field itself (``positions``), never MongoEngine's ``__all__``.
    """

    def __init__(self, field: HoldsValue[_Item | None], min_length: int | None = None,
                 max_length: int | None = None, rule: ListRule | None = None,
                 **kwargs: Any) -> None:
        self.min_length = min_length
        self.rule = rule
        super().__init__(field, max_length=max_length, **kwargs)

    def validate_container(self, value: Any) -> None:
        """Check the value is a list of an allowed length (before any item is looked at)."""
        if not isinstance(value, (list, tuple)):
            self.error(f"must be a list, got {type(value).__name__}")
        count = len(value)
        if (self.min_length is not None and count < self.min_length) or (
                self.max_length is not None and count > self.max_length):
            self.error(f"must have {_span(self.min_length, self.max_length)} items, got {count}")

    def validate_rule(self, items: list[Any]) -> None:
        """Run the list-level rule on the items' plain data."""
        if self.rule is not None:
            message = self.rule(items)
            if message:
                self.error(message)

    def validate(self, value: Any) -> None:
        self.validate_container(value)
        super(ListField, self).validate(value)  # items, then required-and-empty
        self.validate_rule([v._data if isinstance(v, BaseDocument) else v for v in value])


# --- embedded documents ----------------------------------------------------------------------

if TYPE_CHECKING:  # pragma: no cover
    class EmbeddedDocumentField(TypedField[T], _MEEmbeddedDocumentField):
        """The checkers' view of MongoEngine's ``EmbeddedDocumentField``: its value is the
        embedded class's instance (``| None`` unless required or given a default)."""

        @overload
        def __init__(self: EmbeddedDocumentField[E], document_type: type[E], *, required: Literal[True],
                     **kwargs: Any) -> None: ...
        @overload
        def __init__(self: EmbeddedDocumentField[E], document_type: type[E], *, default: E | Callable[[], E],
                     **kwargs: Any) -> None: ...
        @overload
        def __init__(self: EmbeddedDocumentField[E | None], document_type: type[E], *,
                     required: bool = False, **kwargs: Any) -> None: ...
        def __init__(self, document_type: Any, **kwargs: Any) -> None: ...
else:
    from mongoengine.fields import EmbeddedDocumentField
