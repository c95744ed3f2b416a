"""Keyset pages: ``db.page(Model, q, sort=..., limit=n, after=token)``.

A page is the next ``limit`` documents in the order ``sort`` gives, ``_id`` breaking ties, after
the last document of the page before. Where that page starts is a condition on the sort keys
(``{"$or": [{k1: {"$gt": v1}}, {k1: v1, k2: {"$gt": v2}}, ...]}``), not a ``skip``: with an index
on the sort keys the server seeks straight to it, so page 1,000 costs what page 1 does.

The token handed out for the next page is opaque and tamper-proof: the last document's sort
values and ``_id``, BSON-encoded, with ``HMAC-SHA256`` over them and over what the token is for
(the model, the compiled filter, the sort, the limit-independent scope: the actor). A token
altered, forged, or replayed with another query, model, sort or actor is a ``QueryError``. The
MAC key is ``token_secret`` (else ``cache_secret``, else one derived from ``encryption_key``,
else a random key of this process: tokens then open only in the process that made them).

A token travels further than the page it follows (URLs, access logs, browser history): when the
sort names a field a model declares personal (``sensitive=True``, or a ``mask``: the e-mail, a
name; a field holding one, or inside one: ``birthData``), the token's body is encrypted under a
key derived from the same secret (AES-SIV, the context as associated data: one step both hides
and authenticates it), so its holder reads neither the values nor the ``_id``
(``personal_sort``). Without such a field the body is readable: the ``_id`` and values of fields
no model declares personal, which the page itself shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, TypeVar

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from mongoengine.fields import EmbeddedDocumentField, ListField

from ..config import DatabaseConfig
from ..errors import QueryError
from ..models import paths
from ..models.masking import field_mask_kind
from ..query.order import NUMBER, beyond, is_nan, rank

__all__ = ["LastById", "Page", "PageTokens", "beyond_filter", "keyset_filter", "page_projection", "page_sort",
           "personal_sort", "refuse_list_keys", "sort_keys_projection"]

log = logging.getLogger(__name__)
T = TypeVar("T")
# as the client reads and writes (config: ``uuidRepresentation=standard``): a UUID in a sort key
# or an ``_id`` (the Node driver's ``UUID``, binary subtype 4) is carried as itself
_CODEC: CodecOptions[Any] = CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD)
_MAC_BYTES = 16
MAX_LIMIT = 10_000
MAX_TOKEN = 8192  # characters: a token passes in a URL


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page: ``items`` and ``next`` (the token of the page after it, or ``None`` at the end)."""

    items: list[T]
    next: str | None = None
    size: int = field(default=0)

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        # neither the items (lean pages are stored dicts: e-mails, names) nor the token (a
        # bearer of the next page) in a log line or a traceback
        return f"<Page of {len(self.items)} items, {'more after it' if self.next else 'the last'}>"


def page_sort(sort: list[tuple[str, int]] | None) -> list[tuple[str, int]]:
    """The compiled sort with ``_id`` last (the tie-break that makes the order total). A sort
    that names ``_id`` is already total there: the keys after it never decide, so they are
    dropped (moving ``_id`` behind them would page in another order than ``find`` sorts)."""
    keys: list[tuple[str, int]] = []
    for key, direction in sort or []:
        if key == "_id":
            return [*keys, ("_id", direction)]
        keys.append((key, direction))
    return [*keys, ("_id", keys[-1][1] if keys else 1)]


def refuse_list_keys(model_cls: Any, sort: list[tuple[str, int]]) -> None:
    """A ``QueryError`` for a sort key that holds a list or reaches through one (``recommendations``,
    ``positions.degree``): the server sorts such a document by its smallest item (ascending) or
    its largest (descending), while "after the last document" compares the list as a whole and
    its items one by one, so a keyset page would skip or repeat documents. A position inside the
    list (``positions.0.degree``) names one value and is accepted."""
    for key, _ in sort:
        parts = key.split(".")
        for i in range(len(parts)):
            field = paths.resolve(model_cls, ".".join(parts[: i + 1])).field
            if isinstance(field, ListField) and not (i + 1 < len(parts) and parts[i + 1].isdigit()):
                raise QueryError(f"cannot page by {key!r}: it holds a list, which the server sorts by its smallest or "
                                 "largest item and a page's start cannot follow; sort by a field holding one value "
                                 f"(or one position of the list: {'.'.join(parts[: i + 1])}.0...)")


def personal_sort(model_cls: Any, sort: list[tuple[str, int]]) -> bool:
    """Whether a sort names a field declared personal (``sensitive=True`` or a ``mask``: what
    ``to_dict(masked=True)`` and the logs hide), a field inside one, or a field holding one at
    any depth (``birthData`` holds the birth place): its values must not be readable in a page
    token (``PageTokens.make(..., sealed=True)``). ``_id`` is not personal: an id, which every
    page item shows and URLs carry."""
    return _personal_sort(model_cls, tuple(key for key, _ in sort if key != "_id"))


@lru_cache(maxsize=1024)
def _personal_sort(model_cls: Any, keys: tuple[str, ...]) -> bool:
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts)):
            try:
                field = paths.resolve(model_cls, ".".join(parts[: i + 1])).field
            except QueryError:  # pragma: no cover - the sort was compiled against the model
                break
            if _declares_personal(field, i + 1 == len(parts)):
                return True
    return False


def _declares_personal(field: Any, whole: bool) -> bool:
    """``field`` (or, through lists, its items' field) declares a mask or ``sensitive``; and,
    for the field a sort key ends on (``whole``), any field of the documents it holds."""
    while field is not None:
        if field_mask_kind(field) is not None:
            return True
        if isinstance(field, EmbeddedDocumentField):
            return whole and any(_declares_personal(sub, True) for sub in field.document_type._fields.values())
        field = getattr(field, "field", None)  # a list's (or a map's) items
    return False


def page_projection(projection: Mapping[str, Any] | None, sort: list[tuple[str, int]]) -> dict[str, Any] | None:
    """A page's projection with its sort keys kept whole (the next token is made of their
    values): an inclusion gets each sort key no included path already holds, in place of the
    paths inside it it names (``birthData`` beside ``birthData.date`` is a path collision to the
    server); an exclusion that leaves out a sort key, a path holding one or a part of one is a
    ``QueryError`` (the token would carry a missing or partial value: pages would skip or
    repeat documents)."""
    if not projection:
        return None
    out = dict(projection)
    # an inclusion names a field to keep; ``{"_id": 1}`` alone keeps only the ``_id`` (one too)
    inclusion = any(v for k, v in out.items() if k != "_id") or (set(out) == {"_id"} and bool(out["_id"]))
    for key, _ in sort:
        inside = [p for p in out if p == key or key.startswith(p + ".") or p.startswith(key + ".")]
        if any(not out[p] for p in inside):
            raise QueryError("a page's projection cannot leave out its sort keys (the next token is made of them)")
        if inclusion and not any(p == key or key.startswith(p + ".") for p in inside):
            for p in inside:
                del out[p]
            out[key] = 1
    return out


def sort_keys_projection(sort: list[tuple[str, int]]) -> dict[str, int]:
    """The projection of a document's sort keys and nothing else, without a path collision
    (``birthData`` holds ``birthData.date``: only the first is named)."""
    keys = sorted({key for key, _ in sort}, key=len)
    kept: list[str] = []
    for key in keys:
        if not any(key.startswith(k + ".") for k in kept):
            kept.append(key)
    return {key: 1 for key in kept}


def beyond_filter(sort: list[tuple[str, int]], last: Sequence[Any]) -> dict[str, Any] | None:
    """The documents whose first sort key is in a type bracket after the last document's (a
    document the service did not write: another client stored another type), or None when none
    can be. They come after everything ``keyset_filter`` matches, so the executor asks for them
    only once that runs short (a page's second query, at most once per bracket)."""
    key, direction = sort[0]
    found = _later(key, direction, last[0])
    if not found:
        return None
    return found[0] if len(found) == 1 else {"$or": found}


def _later(key: str, direction: int, value: Any) -> list[dict[str, Any]]:
    """``beyond``: the type brackets after ``value``'s; an ``_id`` is never null or missing, so
    descending it has no "null last" clause. ``_id`` is a sort key like the others here: another
    client may store one of another type (a string among ObjectIds, which MongoDB sorts first)."""
    found = beyond(key, direction, value)
    return [c for c in found if c != {key: None}] if key == "_id" else found


def _after(key: str, direction: int, value: Any, first: bool) -> dict[str, Any] | None:
    """``key`` strictly after ``value`` in ``direction``; None when nothing can come after.
    MongoDB orders a missing value and ``null`` first, and compares only within a type bracket
    (``$lt: <date>`` never matches ``null`` nor a string): a later key also takes every value of
    a later bracket, descending null and missing last; the first key stays in its bracket, for
    the server's index seek (the later brackets are ``beyond_filter``'s)."""
    if value is None:
        return {key: {"$ne": None}} if direction == 1 else None
    within = _within_after(key, direction, value)
    clauses = [*([within] if within is not None else []), *([] if first else _later(key, direction, value))]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _at_least(key: str, direction: int, value: Any, first: bool) -> dict[str, Any]:
    """``key`` at or after ``value`` in ``direction`` (``{}``: every document)."""
    if value is None:
        return {} if direction == 1 else {key: None}
    within = _within_at_least(key, direction, value)
    later = [] if first else _later(key, direction, value)
    return {"$or": [within, *later]} if later else within


# NaN: MongoDB sorts it before every other number, but no comparison with it is true
# (``{$gt: NaN}`` and ``{$lt: 5}`` never match a NaN; ``{$gte: NaN}`` matches NaN only, and
# ``{k: NaN}`` every NaN, double or decimal). So the number bracket is NaN, then the numbers:
# after a NaN ascending come the numbers (``$gte: -inf``), after a number descending the NaNs.
_MINUS_INFINITY = float("-inf")


def _within_after(key: str, direction: int, value: Any) -> dict[str, Any] | None:
    """``key`` strictly after ``value`` within its type bracket (None: nothing there is)."""
    if is_nan(value):
        return {key: {"$gte": _MINUS_INFINITY}} if direction == 1 else None
    within = {key: {"$gt" if direction == 1 else "$lt": value}}
    if direction == -1 and rank(value) == NUMBER:
        return {"$or": [within, {key: float("nan")}]}
    return within


def _within_at_least(key: str, direction: int, value: Any) -> dict[str, Any]:
    """``key`` at or after ``value`` within its type bracket."""
    if is_nan(value):
        return {"$or": [{key: float("nan")}, {key: {"$gte": _MINUS_INFINITY}}]} if direction == 1 else {key: float("nan")}
    within = {key: {"$gte" if direction == 1 else "$lte": value}}
    if direction == -1 and rank(value) == NUMBER:
        return {"$or": [within, {key: float("nan")}]}
    return within


def keyset_filter(sort: list[tuple[str, int]], last: Sequence[Any]) -> dict[str, Any]:
    """The condition "after ``last``" for the total order ``sort`` (``page_sort``'s), the first
    key within its type bracket (``beyond_filter`` asks for the brackets after it).

    Written ``k1 >= v1 and (k1 > v1 or (k2 >= v2 and (k2 > v2 or ...)))``: the leading range on
    the first sort key is what the server's planner turns into index bounds, so the page starts
    with a seek, whatever its depth."""
    condition: dict[str, Any] | None = None
    for i in range(len(sort) - 1, -1, -1):
        key, direction = sort[i]
        after = _after(key, direction, last[i], i == 0)
        if condition is None:
            condition = after if after is not None else {"_id": {"$exists": False}}
            continue
        tail = condition if after is None else {"$or": [after, condition]}
        floor = _at_least(key, direction, last[i], i == 0)
        condition = tail if not floor else {"$and": [floor, tail]}
    return condition or {"_id": {"$exists": False}}


def sort_values(doc: Mapping[str, Any], sort: list[tuple[str, int]]) -> list[Any]:
    """The values of ``doc`` at the sort keys (dotted stored paths, a list position by its
    index; missing is ``None``): what the server sorted the document by, or the next page's
    start would not be after it."""
    out = []
    for key, _ in sort:
        value: Any = doc
        for part in key.split("."):
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit():
                value = value[int(part)] if int(part) < len(value) else None
            else:
                value = None
        out.append(value)
    return out


class PageTokens:
    """Makes and opens page tokens under one MAC key."""

    def __init__(self, secret: bytes | None) -> None:
        if secret is None:
            secret = os.urandom(32)
            log.info("page tokens: no token_secret, cache_secret or encryption_key is set; tokens made by this "
                     "process open only in this process")
        self._key = hmac.new(secret, b"astro_db:page-token", hashlib.sha256).digest()
        # the key of tokens whose values are personal (``personal_sort``): AES-256-SIV
        # (deterministic authenticated encryption: no nonce to repeat), from the same secret
        self._sealer = AESSIV(b"".join(hmac.new(secret, b"astro_db:page-token-seal:" + part, hashlib.sha256).digest()
                                       for part in (b"1", b"2")))

    @classmethod
    def from_config(cls, config: DatabaseConfig) -> PageTokens:
        """Keyed by the first secret set of ``token_secret``, ``cache_secret``, ``encryption_key``."""
        for name in ("token_secret", "cache_secret", "encryption_key"):
            value: str | None = getattr(config, name)
            if value:
                return cls(hashlib.sha256(f"astro_db:{name}\0".encode() + value.strip().encode()).digest())
        return cls(None)

    @staticmethod
    def context(model: str, filt: Mapping[str, Any], sort: list[tuple[str, int]], actor: str) -> bytes:
        """What a token is bound to: the model, the filter (as compiled and scoped), the sort and
        the actor."""
        return bson.encode({"m": model, "f": dict(filt), "s": [list(pair) for pair in sort], "a": actor})

    def make(self, context: bytes, last: list[Any], sealed: bool = False) -> str:
        """A token carrying ``last`` (the sort values, ``_id`` last); one that would be longer
        than a token may be (``MAX_TOKEN``: long values another client stored, a long text of
        an app model) carries the ``_id`` and a digest of the values instead (``LastById``).
        ``sealed`` (the sort names a personal field: ``personal_sort``): the body is encrypted,
        so the token's holder reads none of it."""
        body = bson.encode({"v": last}, codec_options=_CODEC)
        token = self._seal(context, body, sealed)
        if len(token) <= MAX_TOKEN:
            return token
        return self._seal(context, bson.encode({"i": last[-1], "d": _digest(last)}, codec_options=_CODEC), sealed)

    def _seal(self, context: bytes, body: bytes, sealed: bool) -> str:
        if sealed:  # the SIV is the MAC: over the context and the body, which it encrypts
            raw = self._sealer.encrypt(body, [context])
        else:
            raw = hmac.new(self._key, context + b"\0" + body, hashlib.sha256).digest()[:_MAC_BYTES] + body
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def open(self, context: bytes, token: Any, width: int, sealed: bool = False) -> list[Any] | LastById:
        """The last values a token carries (or, for values too long to carry, ``LastById``);
        ``QueryError`` if it is not one this query made (``sealed``: as ``make``'s)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise QueryError("after= takes the page token a previous page returned (a string)")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise QueryError("invalid page token") from None
        if sealed:
            try:
                body = self._sealer.decrypt(raw, [context])
            except (InvalidTag, ValueError):
                raise QueryError("invalid page token (altered, or made for another query, sort or actor)") from None
        else:
            mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
            expected = hmac.new(self._key, context + b"\0" + body, hashlib.sha256).digest()[:_MAC_BYTES]
            if not hmac.compare_digest(mac, expected):
                raise QueryError("invalid page token (altered, or made for another query, sort or actor)")
        decoded = bson.decode(body, codec_options=_CODEC)
        if "i" in decoded:
            return LastById(decoded["i"], bytes(decoded["d"]))
        values = decoded["v"]
        if not isinstance(values, list) or len(values) != width:  # pragma: no cover - authentic tokens are ours
            raise QueryError("invalid page token")
        return values


@dataclass(frozen=True)
class LastById:
    """A token's last document named by its ``_id`` (its sort values were too long to carry):
    the page after it reads them back (``values``), and refuses to go on if they changed."""

    id: Any
    digest: bytes

    def values(self, doc: Mapping[str, Any] | None, sort: list[tuple[str, int]]) -> list[Any]:
        last = sort_values(doc, sort) if doc is not None else None
        if last is None or _digest(last) != self.digest:
            raise QueryError("the last document of the page before was changed or removed since, and its sort values "
                             "were too long for the token to carry: start again from the first page")
        return last


def _digest(last: list[Any]) -> bytes:
    return hashlib.sha256(bson.encode({"v": last}, codec_options=_CODEC)).digest()[:16]
