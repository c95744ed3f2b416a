"""Field encryption at rest: AES-256-GCM on the fields a model marks ``sensitive=True``.

A value is stored as a string envelope, so the Node service's schema (a String field) still
accepts it::

    enc:v1:<key id>:<base64url(nonce 12 bytes || ciphertext || tag 16 bytes)>   random nonce
    enc:d1:<key id>:<base64url(...)>                                          deterministic

Both decrypt the same way (AES-256-GCM with the raw 32-byte key, no associated data). The
deterministic form derives its nonce from an HMAC of the field path and the plaintext, so equal
values encrypt equally and the field stays queryable by equality (the only thing it leaks).
The key id is the first 8 hex digits of ``SHA-256("astro_db:kid:" || key)``: old keys stay
configured for decryption (``encryption_keys``) while ``astro-db rotate-key`` re-encrypts with
the primary key. Without any key nothing is encrypted; reading an envelope without its key is
an ``EncryptionError``, never garbage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from mongoengine.fields import EmbeddedDocumentField, ListField

from ..errors import ConfigError, EncryptionError, QueryError

__all__ = ["Keyring", "FieldCrypto", "parse_key", "key_id", "new_key", "is_envelope", "DETERMINISTIC_FIELDS"]

PREFIX = "enc:"
_RANDOM, _DETERMINISTIC = "v1", "d1"
_NONCE = 12
# Fields encrypted deterministically (queryable by equality). The birth place name: its
# coordinates stay in clear for the 2dsphere index, so equality of names leaks nothing new.
DETERMINISTIC_FIELDS = {("BirthChart", "birthData.location.name")}


def key_id(key: bytes) -> str:
    """The public id of a key (8 hex digits), stored in every envelope it writes."""
    return hashlib.sha256(b"astro_db:kid:" + key).hexdigest()[:8]


def new_key() -> str:
    """A fresh random key, base64-encoded (what ``encryption_key`` takes)."""
    return base64.b64encode(os.urandom(32)).decode()


def parse_key(text: Any, name: str = "encryption_key") -> bytes:
    """Decode a base64 key of exactly 32 bytes; a ``ConfigError`` naming ``name`` otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f"'{name}' must be a base64 string of 32 bytes", key=name)
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"'{name}' is not valid base64 (expected 32 random bytes, base64-encoded)", key=name) from None
    if len(raw) != 32:
        raise ConfigError(f"'{name}' must decode to 32 bytes (AES-256), got {len(raw)}", key=name)
    return raw


def is_envelope(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX) and value.count(":") == 3


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Keyring:
    """The primary key (encrypts) and older keys (decrypt only), by key id."""

    def __init__(self, primary: bytes, older: Iterable[bytes] = ()) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.primary_id = key_id(primary)
        self._aead: dict[str, Any] = {}
        self._nonce_keys: dict[str, bytes] = {}
        for key in (primary, *older):
            kid = key_id(key)
            self._aead[kid] = AESGCM(key)
            self._nonce_keys[kid] = hmac.new(key, b"astro_db:deterministic-nonce", hashlib.sha256).digest()

    @classmethod
    def from_config(cls, config: Any) -> Keyring | None:
        if not config.encryption_key:
            if config.encryption_keys:
                raise ConfigError("'encryption_keys' (old keys) needs 'encryption_key' (the current key) too", key="encryption_key")
            return None
        older = [parse_key(k, "encryption_keys") for k in (config.encryption_keys or "").split(",") if k.strip()]
        return cls(parse_key(config.encryption_key), older)

    @property
    def key_ids(self) -> list[str]:
        return list(self._aead)

    def encrypt(self, plaintext: str, path: str, deterministic: bool, kid: str | None = None) -> str:
        kid = kid or self.primary_id
        data = plaintext.encode("utf-8")
        if deterministic:
            nonce = hmac.new(self._nonce_keys[kid], path.encode() + b"\0" + data, hashlib.sha256).digest()[:_NONCE]
        else:
            nonce = os.urandom(_NONCE)
        version = _DETERMINISTIC if deterministic else _RANDOM
        return f"{PREFIX}{version}:{kid}:{_b64(nonce + self._aead[kid].encrypt(nonce, data, None))}"

    def equal_forms(self, plaintext: str, path: str) -> list[str]:
        """A deterministic value's envelope under every configured key (matches during rotation)."""
        return [self.encrypt(plaintext, path, True, kid) for kid in self._aead]

    def decrypt(self, envelope: str, where: str) -> str:
        from cryptography.exceptions import InvalidTag

        _, version, kid, body = envelope.split(":", 3)
        if version not in (_RANDOM, _DETERMINISTIC):
            raise EncryptionError(f"{where}: unknown encryption envelope version {version!r}")
        aead = self._aead.get(kid)
        if aead is None:
            raise EncryptionError(
                f"{where} was encrypted with key id {kid}, which is not configured "
                f"(configured: {', '.join(self._aead)}); add that key to 'encryption_keys'"
            )
        try:
            raw = _unb64(body)
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], None).decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error):
            raise EncryptionError(f"{where}: decryption failed (wrong key or tampered data, key id {kid})") from None

    def __repr__(self) -> str:
        return f"<Keyring primary={self.primary_id} keys={self.key_ids}>"


@dataclass(frozen=True)
class Sensitive:
    """One encrypted field: its stored dotted path (list indexes left out) and its mode."""

    path: str
    deterministic: bool


def sensitive_fields(model_name: str, model_cls: type) -> tuple[Sensitive, ...]:
    """Every field of a model declaring ``sensitive=True``, walked through embedded documents."""
    found: list[Sensitive] = []

    def walk(doc_cls: type, prefix: str) -> None:
        for name in doc_cls._fields_ordered:
            field = doc_cls._fields[name]
            path = prefix + field.db_field
            inner = field.field if isinstance(field, ListField) else field
            if isinstance(inner, EmbeddedDocumentField):
                walk(inner.document_type, path + ".")
            elif getattr(field, "sensitive", False):
                deterministic = bool(getattr(field, "queryable", False)) or (model_name, path) in DETERMINISTIC_FIELDS
                found.append(Sensitive(path, deterministic))

    walk(model_cls, "")
    return tuple(found)


def _norm(path: str) -> str:
    """A stored path without list positions: ``positions.0.x`` / ``positions.$.x`` -> ``positions.x``."""
    return ".".join(p for p in path.split(".") if not (p.isdigit() or p == "$" or p.startswith("$[")))


class FieldCrypto:
    """Seals writes and opens reads for one Database; a no-op (bar detection) without a key."""

    def __init__(self, keyring: Keyring | None, registry: Iterable[Any]) -> None:
        self.keyring = keyring
        self.fields: dict[str, tuple[Sensitive, ...]] = {info.name: sensitive_fields(info.name, info.cls) for info in registry}

    @classmethod
    def from_config(cls, config: Any, registry: Iterable[Any]) -> FieldCrypto:
        return cls(Keyring.from_config(config), registry)

    @property
    def enabled(self) -> bool:
        return self.keyring is not None

    # --- writes ------------------------------------------------------------------------------

    def seal_document(self, info: Any, son: dict[str, Any]) -> dict[str, Any]:
        """A copy of a stored-form document with its sensitive values encrypted."""
        if not self.keyring or not self.fields.get(info.name):
            return son
        out = _copy(son)
        for f in self.fields[info.name]:
            _apply(out, f.path.split("."), lambda v, f=f: self._seal(v, f))
        return out

    def seal_update(self, info: Any, update: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """An update document with sensitive values under $set / $push / $addToSet encrypted."""
        if not self.keyring or not self.fields.get(info.name):
            return update
        out: dict[str, dict[str, Any]] = {}
        for op, spec in update.items():
            out[op] = dict(spec)
            for key, value in spec.items():
                norm = _norm(key)
                for f in self.fields[info.name]:
                    if op == "$pull" and (f.path == norm or f.path.startswith(norm + ".")):
                        raise QueryError(f"$pull cannot match on the encrypted field {f.path!r}")
                    if op not in ("$set", "$push", "$addToSet"):
                        continue
                    if f.path == norm:
                        out[op][key] = _each(value, lambda v, f=f: self._seal(v, f))
                    elif f.path.startswith(norm + "."):
                        rest = f.path[len(norm) + 1:].split(".")
                        out[op][key] = _each(_copy(out[op][key]), lambda v, rest=rest, f=f: _apply(v, rest, lambda x: self._seal(x, f)))
        return out

    def seal_filter(self, info: Any, filt: dict[str, Any]) -> dict[str, Any]:
        """A stored-form filter with conditions on encrypted fields made to match ciphertext."""
        fields = self.fields.get(info.name)
        if not fields or not filt:
            return filt
        return self._seal_filter(fields, filt, "")

    def _seal_filter(self, fields: tuple[Sensitive, ...], filt: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, cond in filt.items():
            if key in ("$and", "$or", "$nor"):
                out[key] = [self._seal_filter(fields, sub, prefix) for sub in cond]
                continue
            norm = _norm(prefix + key)
            out[key] = cond
            for f in fields:
                if f.path == norm:
                    out[key] = self._seal_condition(f, cond)
                elif f.path.startswith(norm + ".") and isinstance(cond, Mapping):
                    if "$elemMatch" in cond and isinstance(cond["$elemMatch"], Mapping):
                        out[key] = {**cond, "$elemMatch": self._seal_filter(fields, cond["$elemMatch"], norm + ".")}
                    elif cond and not any(k.startswith("$") for k in cond):
                        raise QueryError(f"match {f.path!r} by its own path: it is encrypted inside {norm!r}")
        return out

    def _seal_condition(self, f: Sensitive, cond: Any) -> Any:
        if isinstance(cond, Mapping):
            out: dict[str, Any] = {}
            for op, arg in cond.items():
                if op == "$exists":
                    out[op] = arg
                elif op in ("$eq", "$in", "$ne", "$nin"):
                    target = "$in" if op in ("$eq", "$in") else "$nin"
                    if target in out:
                        raise QueryError(f"combine at most one of $eq/$in (and one of $ne/$nin) on the encrypted field {f.path!r}")
                    out[target] = self._equal_forms(f, arg if op in ("$in", "$nin") else [arg])
                else:
                    raise QueryError(f"operator {op} cannot be used on the encrypted field {f.path!r}; only equality ($eq, $in, $ne, $nin, $exists)")
            return out
        if cond is None:
            return None
        return {"$in": self._equal_forms(f, [cond])}

    def _equal_forms(self, f: Sensitive, values: Iterable[Any]) -> list[Any]:
        if self.keyring is None:
            return list(values)
        if not f.deterministic:
            raise QueryError(f"{f.path!r} is encrypted with a random nonce and cannot be queried; only its presence ($exists)")
        out: list[Any] = []
        for value in values:
            if value is None or not isinstance(value, str):
                out.append(value)
            else:
                out.extend(self.keyring.equal_forms(value, f.path))
        return out

    def _seal(self, value: Any, f: Sensitive) -> Any:
        if value is None or is_envelope(value):
            return value
        if not isinstance(value, str):
            raise EncryptionError(f"{f.path}: only string values can be encrypted, got {type(value).__name__}")
        return self.keyring.encrypt(value, f.path, f.deterministic)  # type: ignore[union-attr]

    # --- reads -------------------------------------------------------------------------------

    def open_document(self, info: Any, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        """Decrypt a stored document's sensitive values in place (plaintext legacy values stay)."""
        fields = self.fields.get(info.name)
        if not fields or doc is None:
            return doc
        for f in fields:
            _apply(doc, f.path.split("."), lambda v, f=f: self._open(v, f"{info.name} {doc.get('_id', '')} {f.path}"))
        return doc

    def open_any(self, value: Any) -> Any:
        """Decrypt every envelope anywhere in ``value`` (aggregation results change shapes)."""
        if self.keyring is None:
            return value
        if isinstance(value, dict):
            return {k: self.open_any(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.open_any(v) for v in value]
        return self._open(value, "an aggregation result") if is_envelope(value) else value

    def _open(self, value: Any, where: str) -> Any:
        if not is_envelope(value):
            return value
        if self.keyring is None:
            raise EncryptionError(
                f"{where.strip()} is encrypted but no encryption key is configured; "
                "set encryption_key (or ASTRO_DB_ENCRYPTION_KEY)"
            )
        return self.keyring.decrypt(value, where.strip())

    def needs_rotation(self, value: Any) -> bool:
        """True for a plaintext value or an envelope not written with the primary key."""
        if value is None or self.keyring is None:
            return False
        if not is_envelope(value):
            return isinstance(value, str)
        return value.split(":")[2] != self.keyring.primary_id

    def leaves(self, doc: Any, path: str) -> Iterator[Any]:
        """The values at a stored path (through lists)."""
        yield from _leaves(doc, path.split("."))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _each(value: Any, fn: Any) -> Any:
    """Apply ``fn`` to a pushed value or to each of ``{"$each": [...]}``."""
    if isinstance(value, dict) and "$each" in value:
        return {**value, "$each": [fn(v) for v in value["$each"]]}
    return fn(value)


def _apply(doc: Any, parts: list[str], fn: Any) -> Any:
    """Replace the value(s) at ``parts`` in ``doc`` (through lists) by ``fn(value)``; returns doc."""
    if isinstance(doc, list):
        for item in doc:
            _apply(item, parts, fn)
        return doc
    if not isinstance(doc, dict) or parts[0] not in doc:
        return doc
    if len(parts) == 1:
        value = doc[parts[0]]
        doc[parts[0]] = [fn(v) for v in value] if isinstance(value, list) else fn(value)
    else:
        _apply(doc[parts[0]], parts[1:], fn)
    return doc


def _leaves(doc: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(doc, list):
        for item in doc:
            yield from _leaves(item, parts)
    elif isinstance(doc, dict) and parts[0] in doc:
        if len(parts) == 1:
            value = doc[parts[0]]
            yield from (value if isinstance(value, list) else [value])
        else:
            yield from _leaves(doc[parts[0]], parts[1:])
