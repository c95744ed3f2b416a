"""Blind indexes: a keyed hash stored beside an encrypted field, so it stays queryable by equality.

For each sensitive field declared queryable (``User.email``: login and uniqueness;
``BirthChart.birthData.location.name``: equality), every write stores beside the ciphertext a
sibling field named after it (``emailIndex``, ``birthData.location.nameIndex``: ``blind_path``)
holding::

    base64url(HMAC-SHA256(blind key, collection "\\0" stored path "\\0" plaintext))   (43 characters)

``plaintext`` is the value as stored before sealing (``fieldpaths.to_plaintext``): for the
email, its canonical spelling (NFKC, lower-cased: what ``EmailField`` stores), so two spellings
of one address hash alike. The blind key is one app-wide key per configured encryption key,
``HKDF-SHA256(encryption_key, info="astro_db:blind-index:v1")``: not per user, so equal values of
one field hash alike across users (which is what makes a unique index and a login lookup work),
and it is not the data key, so erasing a user's data key does not make her hashes unmatchable.

What it reveals (docs/security.md): which documents hold equal values of that field, and a
holder of the key (or of the service) can confirm a guessed value. A query matches the hashes of
every configured key (``hashes``), so data not yet rotated still matches; writes use the
primary key's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import EncryptionError

__all__ = ["BlindIndex", "derive_key", "blind_path", "BLIND_SUFFIX", "BLIND_LABEL"]

BLIND_SUFFIX = "Index"
BLIND_LABEL = b"astro_db:blind-index:v1"


def derive_key(key: bytes) -> bytes:
    """The blind-index key of one encryption key: HKDF-SHA256, no salt, labelled, 32 bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=BLIND_LABEL).derive(key)


def blind_path(path: str) -> str:
    """The stored path of a field's blind index: its sibling ``<name>Index``."""
    return path + BLIND_SUFFIX


class BlindIndex:
    """The keyed hashes of one Database: the primary key's for writes, every key's for queries."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, primary: bytes, older: Iterable[bytes] = ()) -> None:
        self._primary = derive_key(primary)
        self._keys = [self._primary, *(k for k in (derive_key(o) for o in older) if k != self._primary)]

    def hash(self, plaintext: str, collection: str, path: str) -> str:
        """The blind index a write stores for ``plaintext`` at ``collection`` / ``path``."""
        return _hash(self._primary, plaintext, collection, path)

    def hashes(self, values: Sequence[Any], collection: str, path: str, encode: Any) -> list[Any]:
        """What a query matches for ``values``: each one's hash under every configured key
        (``None`` stays ``None``: the index is absent exactly where the field is)."""
        out: list[Any] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            try:
                plaintext = encode(value)
            except EncryptionError:  # a value the field cannot hold (a number for a text): it matches nothing
                out.append(value)
                continue
            out.extend(_hash(key, plaintext, collection, path) for key in self._keys)
        return out

    def __repr__(self) -> str:
        return f"<BlindIndex keys={len(self._keys)}>"


def _hash(key: bytes, plaintext: str, collection: str, path: str) -> str:
    message = collection.encode() + b"\x00" + path.encode() + b"\x00" + plaintext.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=").decode()
