"""Field encryption at rest on the fields a model marks ``sensitive=True``: field level encryption, a blind index when queryable.

Every sensitive value is sealed with MongoDB's client-side field level
encryption, explicit API (``security.vault``): ``{"v": <value>, "b": "<collection>/<_id>/<path>"}``
encrypted with ``AEAD_AES_256_CBC_HMAC_SHA_512-Random`` under the data key of the document's
owner (``user:<owner id>``; ``astro_db:shared`` for a model no user owns), stored as BSON Binary
subtype 6. Any BSON value can be sealed. On a read the binding must name the document and path
being read, so ciphertext copied to another document or field does not open. An update that
sets such a field is sealed per document (``Pending`` until the write strategy has read the
document it goes into: ``FieldCrypto.bind_update``).

A field declared queryable (the email, the birth place) is sealed the same way, and gets a
keyed blind index beside its ciphertext (``security.blind``): equality on it is matched there,
never on the ciphertext. Envelopes of earlier releases (``enc:e2`` deterministic, ``enc:v2``
random, AES-256-GCM with the raw 32-byte ``encryption_key`` and associated data
``b"astro_db:v2:" + collection + b"\\x00" + stored path``; ``enc:v1`` / ``enc:d1`` with none) are
still read, never written; ``astro-db rotate-key`` upgrades them in place. Where no key vault can
be made (no pymongocrypt), a value that is not text (the birth date) is sealed into an envelope as
its canonical extended JSON (``fieldpaths.to_plaintext``), in ``FieldCrypto._seal`` only.

The rules that hold under attack: a value written to a sensitive field is always sealed, whatever
it looks like (input is data, never a ciphertext to keep); only a model's declared sensitive paths
are ever opened; a sealed value that does not open (data key shredded, tampered, moved) comes back
as ``UNREADABLE`` (logged at WARNING and counted in ``FieldCrypto.stats()``) instead of failing
the whole read; and without a key a sensitive field can neither be written nor queried by value
(``EncryptionError``), unless ``allow_plaintext_sensitive`` says so (the default on the embedded
development backend only). The key id is the first 8 hex digits of ``SHA-256("astro_db:kid:" || key)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from bson import Binary

from ..backends.capabilities import capabilities
from ..errors import ConfigError, EncryptionError, QueryError
from ..query.order import identity
from .blind import BlindIndex
from .fieldpaths import (
    Sensitive,
    apply_at,
    copy_tree,
    each_pushed,
    from_plaintext,
    leaves_at,
    norm_path,
    pop_at,
    sensitive_fields,
    slots_at,
    to_plaintext,
    value_at,
)
from .filters import match_ciphertext
from .provenance import intact_paths
from .vault import ENCRYPTED_SUBTYPE, SHARED_KEY, KeyVault, binding, is_sealed, legacy_binding, subject_alt_name

__all__ = [
    "Keyring", "FieldCrypto", "Unreadable", "UNREADABLE", "is_unreadable", "parse_key", "key_id", "new_key",
    "is_envelope", "associated_data", "Pending", "is_stored_ciphertext",
]

log = logging.getLogger(__name__)


def _place(doc: dict[str, Any], path: str, value: Any) -> str:
    """Set ``value`` at the dotted ``path`` of ``doc``; the path to take out again (``_take``):
    the first part that was not there (``pop_at``), so nothing the caller's document had is
    removed; empty when nothing was set."""
    parts = path.split(".")
    at = doc
    for n, part in enumerate(parts[:-1]):
        nxt = at.get(part)
        if not isinstance(nxt, dict):
            if part in at:  # a value that is not a document: leave it, open nothing under it
                return ""
            at[part] = nxt = {}
            at, rest = nxt, parts[n + 1:]
            for inner in rest[:-1]:
                at[inner] = {}
                at = at[inner]
            at[rest[-1]] = value
            return ".".join(parts[:n + 1])
        at = nxt
    at[parts[-1]] = value
    return path


_NOT_REBOUND = object()  # FieldCrypto._rebound: the value is not one rotate-key binds again

PREFIX = "enc:"
RANDOM, DETERMINISTIC = "v2", "e2"  # what every write produces
RANDOM_V1, DETERMINISTIC_V1 = "v1", "d1"  # read (no associated data), upgraded by rotate-key
NONCE_BYTES = 12
TAG_BYTES = 16
AAD_PREFIX = b"astro_db:v2:"
_KID_LABEL = b"astro_db:kid:"
_NONCE_KEY_V2 = b"astro_db:e2:nonce-key"
_SHAPE = re.compile(r"enc:([a-z0-9]{2}):([0-9a-f]{8}):([A-Za-z0-9_-]+)")
# Which fields are encrypted deterministically (queryable by equality) is each model's own
# declaration: ``queryable=True`` on the field or ``meta["queryable"]`` (``registry.Declaration``).


class Unreadable(str):
    """The value of an encrypted field that could not be opened (unknown key, tampered, moved).

    A ``str`` so hydration and serialisation carry it; test with ``is_unreadable(value)`` (a
    user's own ``"<unreadable>"`` text is a plain ``str`` and is not mistaken for it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREADABLE"

    def strip(self, chars: str | None = None) -> Unreadable:
        """Itself: text fields strip what they read, and the marker must survive hydration."""
        return self


UNREADABLE = Unreadable("<unreadable>")


def is_unreadable(value: Any) -> bool:
    """Whether ``value`` is the marker of an encrypted value that did not open."""
    return isinstance(value, Unreadable)


def key_id(key: bytes) -> str:
    """The public id of a key (8 hex digits), stored in every envelope it writes."""
    return hashlib.sha256(_KID_LABEL + key).hexdigest()[:8]


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


def is_stored_ciphertext(value: Any) -> bool:
    """Whether a stored value is sealed: a CSFLE ciphertext (Binary subtype 6) or an envelope."""
    return is_sealed(value) or is_envelope(value)


class Pending:
    """An update value for a randomly encrypted field, sealed once the document it goes into is
    known (its ``_id`` and owner are part of the ciphertext): ``FieldCrypto.bind_update``."""

    __slots__ = ("value", "path")

    def __init__(self, value: Any, path: str) -> None:
        self.value = value
        self.path = path

    def __repr__(self) -> str:  # never the plaintext
        return f"<Pending seal of {self.path}>"

    def __deepcopy__(self, memo: Any) -> Pending:
        return self


def is_envelope(value: Any) -> bool:
    """Whether a stored value at a sensitive path is sealed (every envelope starts ``enc:``)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def associated_data(collection: str, path: str) -> bytes:
    """What a v2/e2 envelope is bound to: its collection and stored field path."""
    return AAD_PREFIX + collection.encode() + b"\x00" + path.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _split(envelope: str) -> tuple[str, str, bytes]:
    """``(version, key id, nonce || ciphertext || tag)``; ``EncryptionError`` if malformed."""
    match = _SHAPE.fullmatch(envelope)
    if match is None:
        raise EncryptionError("malformed encryption envelope")
    body = match.group(3)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise EncryptionError("malformed encryption envelope") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise EncryptionError("malformed encryption envelope (too short)")
    return match.group(1), match.group(2), raw


class Keyring:
    """The primary key (encrypts) and older keys (decrypt only), by key id."""

    def __init__(self, primary: bytes, older: Iterable[bytes] = ()) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.primary_id = key_id(primary)
        self.keys: list[tuple[str, bytes]] = []  # (key id, key), the primary first: the local KMS providers
        self.blind = BlindIndex(primary, older)  # the blind indexes' keys (security.blind), from the same keys
        self._aead: dict[str, Any] = {}
        self._nonce_keys: dict[str, bytes] = {}  # by key id: the e2 nonce key (only e2 and v2 are written)
        for key in (primary, *older):
            kid = key_id(key)
            if kid not in self._aead:
                self.keys.append((kid, key))
            self._aead[kid] = AESGCM(key)
            self._nonce_keys[kid] = hmac.new(key, _NONCE_KEY_V2, hashlib.sha256).digest()

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

    def seal(self, plaintext: str, collection: str, path: str, deterministic: bool) -> str:
        """A v2 (random nonce) or e2 (deterministic) envelope of ``plaintext`` under the primary key."""
        return self._seal(DETERMINISTIC if deterministic else RANDOM, self.primary_id, plaintext, collection, path)

    def _seal(self, version: str, kid: str, plaintext: str, collection: str, path: str) -> str:
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raise EncryptionError(f"{path}: the value is not valid text (lone surrogate)") from None
        if version == DETERMINISTIC:
            message = collection.encode() + b"\x00" + path.encode() + b"\x00" + data
            nonce = hmac.new(self._nonce_keys[kid], message, hashlib.sha256).digest()[:NONCE_BYTES]
        else:
            nonce = os.urandom(NONCE_BYTES)
        aad = associated_data(collection, path)
        return f"{PREFIX}{version}:{kid}:{_b64(nonce + self._aead[kid].encrypt(nonce, data, aad))}"

    def open(self, envelope: str, collection: str, path: str) -> str:
        """The plaintext of an envelope stored at ``collection`` / ``path``; ``EncryptionError``
        (naming no plaintext and no key) if it is malformed, unknown, tampered or moved."""
        from cryptography.exceptions import InvalidTag

        version, kid, raw = _split(envelope)
        if version in (RANDOM, DETERMINISTIC):
            aad: bytes | None = associated_data(collection, path)
        elif version in (RANDOM_V1, DETERMINISTIC_V1):
            aad = None
        else:
            raise EncryptionError(f"unknown encryption envelope version {version!r}")
        aead = self._aead.get(kid)
        if aead is None:
            raise EncryptionError(
                f"encrypted with key id {kid}, which is not configured "
                f"(configured: {', '.join(self._aead)}); add that key to 'encryption_keys'"
            )
        try:
            return str(aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode("utf-8"))
        except (InvalidTag, UnicodeDecodeError):
            raise EncryptionError(f"decryption failed (wrong key, tampered data or moved from another field; key id {kid})") from None

    def is_current(self, envelope: str, deterministic: bool) -> bool:
        """Whether an envelope is what a write would produce now: primary key, v2/e2, right mode."""
        try:
            version, kid, _ = _split(envelope)
        except EncryptionError:
            return False
        return kid == self.primary_id and version == (DETERMINISTIC if deterministic else RANDOM)

    def __repr__(self) -> str:
        return f"<Keyring primary={self.primary_id} keys={self.key_ids}>"


class FieldCrypto:
    """Seals writes and filters, opens reads, for one Database: the one place every path passes.

    Every sensitive value is sealed with MongoDB's field level encryption (``vault``: a
    ``security.vault.KeyVault``; the value bound to its document and path, under its owner's data
    key); a queryable field also gets its blind index (``keyring.blind``); every envelope of an
    earlier release still opens under ``keyring``."""

    def __init__(self, keyring: Keyring | None, registry: Iterable[Any], *, allow_plaintext: bool = False,
                 vault: KeyVault | None = None) -> None:
        self.keyring = keyring
        self.vault = vault
        self.allow_plaintext = allow_plaintext
        infos = list(registry)
        deterministic = {(info.name, path) for info in infos
                         for path in getattr(getattr(info, "declaration", None), "queryable", ())}
        self.fields: dict[str, tuple[Sensitive, ...]] = {
            info.name: sensitive_fields(info.name, info.cls, deterministic) for info in infos
        }
        # per model: the first segment of each sensitive path (an update of any other top-level
        # field has nothing to seal or refuse: ``seal_update`` passes it by)
        self._roots: dict[str, frozenset[str]] = {
            name: frozenset(f.path.split(".", 1)[0] for f in found) for name, found in self.fields.items()
        }
        #: per model: a queryable field's blind index path -> the field's path (what a duplicate
        #: key on ``emailIndex`` is called to the caller: ``email``; ``errors.translate``)
        self.blind_sources: dict[str, dict[str, str]] = {
            name: {f.blind: f.path for f in found if f.blind is not None} for name, found in self.fields.items()
        }
        self.owners: dict[str, str | None] = {
            info.name: getattr(getattr(info, "declaration", None), "owner", None) for info in infos
        }
        self._lock = threading.Lock()
        self._unreadable = 0
        # per model: (its fields, what opening a document needs of each: ``_open_plan``, and, when
        # every sensitive path is top-level, each one's key and its blind index's: ``_plain_plan``)
        self._open_plans: dict[str, tuple[tuple[Sensitive, ...], tuple[tuple[Sensitive, list[str], str | None], ...],
                                          tuple[tuple[str, str], ...] | None]] = {}

    @classmethod
    def from_config(cls, config: Any, registry: Iterable[Any]) -> FieldCrypto:
        allow = config.allow_plaintext_sensitive
        if allow is None:
            allow = capabilities(config).plaintext_by_default
        keyring = Keyring.from_config(config)
        vault = KeyVault.from_config(config, keyring.keys if keyring is not None else [])
        return cls(keyring, registry, allow_plaintext=allow, vault=vault)

    @property
    def enabled(self) -> bool:
        return self.keyring is not None or self.vault is not None

    def stats(self) -> dict[str, int]:
        """Counters since start: ``unreadable`` (sealed values that did not open on a read)."""
        with self._lock:
            return {"unreadable": self._unreadable}

    def roots(self, info: Any) -> frozenset[str]:
        """The top-level fields of ``info``'s model that are or hold a sensitive path."""
        return self._roots.get(info.name, frozenset())

    def moves_owner(self, info: Any, update: Mapping[str, Any]) -> bool:
        """Whether ``update`` (stored form) sets the owner of a document whose values are sealed
        under its owner's data key (a key vault, sensitive fields): every value it holds must
        then be sealed again under the new owner's (``seal_for_owner``)."""
        owner = self.owners.get(info.name)
        if self.vault is None or not owner or owner == "_id" or not self.fields.get(info.name):
            return False
        spec = update.get("$set")
        return isinstance(spec, Mapping) and (owner in spec or owner.split(".", 1)[0] in spec)

    def seal_for_owner(self, info: Any, doc: dict[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the stored document ``doc`` with every sensitive value opened and sealed
        again for the document as it is (its ``_id``, under its owner's data key now: an update
        moved it from ``before``'s owner to another); a value that does not open is refused
        (``EncryptionError``: it would be written back over its ciphertext)."""
        plain = copy_tree(doc)
        self.open_document(info, plain, moved_from=before)
        return self.seal_document(info, plain)

    def subject_key(self, info: Any, doc: Mapping[str, Any]) -> str:
        """The alt name of the data key a document's values are sealed under: its owner's
        (``user:<id>``), or the shared key for a model no user owns (or a document without one)."""
        owner = self.owners.get(info.name)
        subject = value_at(doc, owner) if owner else None  # an owner may sit in an embedded document
        return SHARED_KEY if subject is None else subject_alt_name(subject)

    def shred(self, subject_id: Any, noted: Callable[[int], None] | None = None) -> int:
        """Delete the data key(s) of ``subject_id`` (a user's id); how many there were (``noted``
        is told before the deletion: ``KeyVault.delete_keys``). Every value sealed under them,
        wherever a copy of it is (live documents, change records, backup sets), reads as
        ``UNREADABLE`` from then on; this process's key cache is dropped at once."""
        if self.vault is None:
            raise EncryptionError("shredding needs field level encryption: configure encryption_key or kms_providers")
        alt = subject_alt_name(subject_id)
        count = self.vault.delete_keys(alt, noted)
        log.info("shredded %d data key(s) of %s", count, alt)
        return count

    # --- writes ------------------------------------------------------------------------------

    def seal_document(self, info: Any, son: dict[str, Any]) -> dict[str, Any]:
        """A copy of a stored-form document with every sensitive value sealed (bound to its
        ``_id``); ``son`` itself when nothing is sealed (the model has no sensitive field, or no
        key and plaintext allowed: its values only checked)."""
        fields = self.fields.get(info.name)
        if not fields:
            return son
        if self.keyring is None and self.vault is None:  # no key (``enabled``, inlined): nothing is sealed, so no
            # copy; every value still passes _seal's checks
            self._plain(info, fields, (son,))
            return son
        out: dict[str, Any] = copy_tree(son)
        for f in fields:
            parts = f.path.split(".")
            self._index(info, f, out, parts)
            for parent, key in slots_at(out, parts):  # each value replaced here: no call back from fieldpaths
                value = parent[key]
                parent[key] = ([self._seal(v, info, f, son) for v in value] if isinstance(value, list)
                               else self._seal(value, info, f, son))
        return out

    def seal_documents(self, info: Any, sons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``seal_document`` of each of ``sons`` (a batch of one model's new documents), the
        model's fields and whether a key is configured looked up once for the batch; without a
        key each document is checked in place (``_plain``) and the list is ``sons`` itself."""
        fields = self.fields.get(info.name)
        if not fields:
            return sons
        if self.enabled:
            return [self.seal_document(info, son) for son in sons]
        self._plain(info, fields, sons)
        return sons

    def _plain(self, info: Any, fields: tuple[Sensitive, ...], sons: Iterable[dict[str, Any]]) -> None:
        """``seal_document`` without a key, for each of ``sons``: nothing is sealed, so each is
        left as it is, uncopied. With plaintext allowed, a plain string (the common case) is let
        through here; anything else goes through ``_seal``, which refuses what it refuses with a
        key (a non-string in a text field, ``UNREADABLE``, text that would read back as an
        envelope) and, with plaintext not allowed, every value."""
        lenient = self.allow_plaintext
        for son in sons:
            for f in fields:
                path = f.path
                if "." in path:
                    slots: Iterable[tuple[dict[str, Any], str]] = slots_at(son, path.split("."))
                elif path in son:  # a top-level field: no walk
                    value = son[path]
                    if lenient and f.text:  # the common cases, without the loop below: a plain string,
                        if value.__class__ is str:
                            if not value.startswith(PREFIX):
                                continue
                        elif value.__class__ is list:  # or a list of them
                            for item in value:
                                if item.__class__ is not str or item.startswith(PREFIX):
                                    break
                            else:
                                continue
                    slots = ((son, path),)
                else:
                    continue
                for parent, key in slots:
                    value = parent[key]
                    for item in value if isinstance(value, list) else (value,):
                        if lenient and (item is None or (f.text and type(item) is str and not item.startswith(PREFIX))):
                            continue
                        self._seal(item, info, f, son)  # raises, or returns the value unchanged

    def _index(self, info: Any, f: Sensitive, doc: Any, parts: list[str]) -> None:
        """Set (or drop) the blind index beside each plaintext value at ``parts`` in ``doc``
        (``security.blind``): computed here, from the value being written, never taken from a
        caller. Without a key there is none."""
        if f.blind is None or self.keyring is None:
            return
        if isinstance(doc, list):
            for item in doc:
                self._index(info, f, item, parts)
            return
        if not isinstance(doc, dict):
            return
        if len(parts) > 1:
            if parts[0] in doc:
                self._index(info, f, doc[parts[0]], parts[1:])
            return
        sibling = parts[0] + "Index"
        value = doc.get(parts[0])
        if value is None:
            doc.pop(sibling, None)
        else:
            doc[sibling] = self.keyring.blind.hash(to_plaintext(value, f), info.collection, f.path)

    def seal_update(self, info: Any, update: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """An update document with sensitive values under $set / $push / $addToSet sealed; a
        randomly encrypted value is left ``Pending`` (``bind_update`` seals it for each document)."""
        fields = self.fields.get(info.name)
        if not fields:
            return update
        roots = self._roots.get(info.name, frozenset())
        for spec in update.values():  # any key that is or may hold a sensitive path? (no generator per call)
            for key in spec:
                if "." in key or key in roots:
                    break
            else:
                continue
            break
        else:  # none (most updates): nothing to seal, refuse or keep in step
            return update
        out: dict[str, dict[str, Any]] = {}
        blind: dict[str, dict[str, Any]] = {}  # the blind indexes kept in step, in the same update
        for op, spec in update.items():
            out[op] = dict(spec)
            for key, value in spec.items():
                if "." not in key and key not in roots:
                    continue  # a top-level field that is no sensitive path and holds none
                norm = norm_path(key)
                for f in fields:
                    if op == "$pull" and (f.path == norm or f.path.startswith(norm + ".")) and self.ordered_by_value():
                        raise QueryError(f"$pull cannot match on the encrypted field {f.path!r}")
                    if op == "$unset" and f.path == norm and f.blind is not None and self.keyring is not None:
                        blind.setdefault("$unset", {})[key + "Index"] = ""
                    if op not in ("$set", "$push", "$addToSet"):
                        continue
                    if f.path == norm:
                        if f.blind is not None and self.keyring is not None:
                            if op != "$set":
                                raise QueryError(f"{op} of the encrypted field {f.path!r}: its blind index holds one value")
                            if value is None:
                                blind.setdefault("$unset", {})[key + "Index"] = ""
                            else:
                                blind.setdefault("$set", {})[key + "Index"] = self.keyring.blind.hash(
                                    to_plaintext(value, f), info.collection, f.path)
                        seal = partial(self._seal, info=info, f=f, doc=None)
                        if op == "$set" and isinstance(value, list):  # a whole list of sealed values
                            out[op][key] = [seal(v) for v in value]
                        else:
                            out[op][key] = each_pushed(value, seal)
                    elif f.path.startswith(norm + "."):
                        rest = f.path[len(norm) + 1:].split(".")
                        copied = copy_tree(out[op][key])
                        each_pushed(copied, partial(self._index, info, f, parts=rest))
                        inner = partial(apply_at, parts=rest, fn=partial(self._seal, info=info, f=f, doc=None))
                        out[op][key] = each_pushed(copied, inner)
        for op, spec in blind.items():
            out[op] = {**out.get(op, {}), **spec}
        return out

    @staticmethod
    def has_pending(update: Any) -> bool:
        """Whether an update holds values to seal per document (``Pending``)."""
        if isinstance(update, Pending):
            return True
        if isinstance(update, dict):
            return any(FieldCrypto.has_pending(v) for v in update.values())
        if isinstance(update, list):
            return any(FieldCrypto.has_pending(v) for v in update)
        return False

    def bind_update(self, info: Any, update: Any, doc: Mapping[str, Any]) -> Any:
        """``update`` with every ``Pending`` value sealed for ``doc`` (the stored document it is
        applied to: its ``_id`` and owner)."""
        if isinstance(update, Pending):
            if self.vault is None:  # pragma: no cover - a Pending is only made with a vault
                raise EncryptionError("no key vault to seal with")
            return self.vault.seal(update.value, binding(info.collection, doc["_id"], update.path),
                                   self.subject_key(info, doc))
        if isinstance(update, dict):
            return {k: self.bind_update(info, v, doc) for k, v in update.items()}
        if isinstance(update, list):
            return [self.bind_update(info, v, doc) for v in update]
        return update

    def _seal(self, value: Any, info: Any, f: Sensitive, doc: Mapping[str, Any] | None) -> Any:
        """The one boundary a written value crosses into the engine: any BSON value in (text
        fields take strings only), its stored form out: field level encryption bound to ``doc``
        (``Pending`` when ``doc`` is not known yet: an update), else an envelope of the value's
        canonical extended JSON (``fieldpaths.to_plaintext``)."""
        if value is None:
            return None
        if isinstance(value, Unreadable):
            raise EncryptionError(f"{info.name}.{f.path}: refusing to write back UNREADABLE (a value that did not "
                                  "open); it would replace the stored ciphertext")
        if self.vault is not None:  # field level encryption: any BSON value, bound to its document
            if f.text and not isinstance(value, str):
                raise EncryptionError(f"{f.path}: only string values can be encrypted, got {type(value).__name__}")
            if doc is None:
                return Pending(value, f.path)
            if "_id" not in doc:
                raise EncryptionError(f"{info.name}.{f.path}: a sealed value is bound to its document's _id, which is not set")
            return self.vault.seal(value, binding(info.collection, doc["_id"], f.path), self.subject_key(info, doc))
        plaintext = to_plaintext(value, f)
        if self.keyring is not None:
            return self.keyring.seal(plaintext, info.collection, f.path, f.deterministic)
        self._require_key(info, f, "write it")
        if is_envelope(value):
            raise EncryptionError(f"{info.name}.{f.path}: a plaintext value may not start with {PREFIX!r} "
                                  "(it would read back as an envelope); configure encryption_key to store it sealed")
        return value

    def ordered_by_value(self) -> bool:
        """Whether encrypted fields hold ciphertext here (a key, or plaintext refused), so that
        anything but equality on them (order, ranges, ``$pull`` conditions) cannot work and is
        refused; without a key on the embedded backend they hold plaintext and it runs."""
        return self.enabled or not self.allow_plaintext

    def sorted_by_ciphertext(self, model: str, key: str) -> str | None:
        """The encrypted field a sort by the stored path ``key`` orders by, where encrypted
        fields hold ciphertext (``ordered_by_value``), else None: the field itself, a position
        of its list (``recommendations.0``) or a document holding it (``birthData``,
        ``birthData.location``: the server compares its fields in turn, a ciphertext among them).
        ``find``'s and ``page``'s ``sort=`` and every ``$sort`` stage ask this one question."""
        if not self.ordered_by_value():
            return None
        path = norm_path(key)
        for f in self.fields.get(model, ()):
            if f.path == path or f.path.startswith(path + ".") or path.startswith(f.path + "."):
                return f.path
        return None

    def _require_key(self, info: Any, f: Sensitive, doing: str) -> None:
        if not self.allow_plaintext:
            raise EncryptionError(f"{info.name}.{f.path} is a sensitive field: configure encryption_key to {doing} "
                                  "(or allow_plaintext_sensitive=True, for development only)")

    def reseal(self, info: Any, doc: dict[str, Any]) -> dict[str, Any]:
        """A copy of a stored document with every sensitive value not current (an envelope of an
        older key or format, or plaintext from before encryption) opened and sealed again in the
        current format: the upgrade path of ``rotate-key``. ``EncryptionError`` if one of them
        does not open (nothing is lost)."""
        if not self.enabled:
            raise EncryptionError("re-sealing needs encryption_key")
        out: dict[str, Any] = copy_tree(doc)
        rebind = self.rebind_stale(info, doc)
        for f in self.fields.get(info.name, ()):
            def again(value: Any, f: Sensitive = f) -> Any:
                if rebind:
                    plain = self._rebound(value, info, f, doc)
                    if plain is not _NOT_REBOUND:
                        return self._seal(plain, info, f, doc)
                if not self.needs_rotation(value, f):
                    return value
                plain = self._open_strict(value, info, f, doc) if is_stored_ciphertext(value) else value
                return self._seal(plain, info, f, doc)

            if f.blind is not None:  # the blind index (re)computed from the opened value
                opened = self.open_document(info, copy_tree(doc), [f.path], strict=True)
                self._index(info, f, opened, f.path.split("."))
                _copy_blind(opened, out, f.path.split("."))
            apply_at(out, f.path.split("."), again)
        return out

    def rebind_stale(self, info: Any, doc: Mapping[str, Any]) -> bool:
        """Whether a stored document holds a sealed value ``rotate-key`` must bind again: its
        ``_id`` is one an earlier release bound differently (``vault.legacy_binding``: a string
        ``_id`` that printed like another type's), and the value opens under that earlier
        binding, sealed under the document owner's own data key (``_rebound``). Only such
        documents' values are opened to find out."""
        if self.vault is None or "_id" not in doc or legacy_binding(info.collection, doc["_id"], "") is None:
            return False  # every other document (ObjectId _ids among them): nothing is opened
        return any(self._rebound(value, info, f, doc) is not _NOT_REBOUND
                   for f in self.fields.get(info.name, ()) for value in leaves_at(doc, f.path.split(".")))

    def _rebound(self, value: Any, info: Any, f: Sensitive, doc: Mapping[str, Any]) -> Any:
        """The plaintext of a sealed value an earlier release bound to this document's ``_id``
        (``legacy_binding``), if it does not open under today's binding, opens under that one,
        and is sealed under the data key of the document's own owner (``subject_key``); else
        ``_NOT_REBOUND``. A value another user's key sealed (copied here from the document whose
        ``_id`` printed alike) is never bound again: it reads ``UNREADABLE``, as it does now."""
        vault = self.vault
        if vault is None or not is_sealed(value):
            return _NOT_REBOUND
        try:
            vault.open(value, binding(info.collection, doc["_id"], f.path))
            return _NOT_REBOUND  # bound as today: nothing to do
        except EncryptionError:
            pass
        old = legacy_binding(info.collection, doc["_id"], f.path)
        owner_key = vault.existing_key(self.subject_key(info, doc))
        if old is None or owner_key is None or bytes(value[1:17]) != bytes(owner_key):
            return _NOT_REBOUND
        try:
            return vault.open(value, old)
        except EncryptionError:
            return _NOT_REBOUND

    def blind_stale(self, info: Any, doc: dict[str, Any], f: Sensitive) -> bool:
        """Whether a stored document's blind index for ``f`` is not what a write would store now
        (missing, under an older key, or not the value's): rotation writes it."""
        keyring = self.keyring
        if keyring is None or f.blind is None:
            return False
        opened = self.open_document(info, copy_tree(doc), [f.path])
        parts = f.path.split(".")
        values = list(leaves_at(opened, parts))
        hashes = list(leaves_at(doc, [*parts[:-1], parts[-1] + "Index"]))
        wanted = [keyring.blind.hash(to_plaintext(v, f), info.collection, f.path) for v in values if v is not None
                  and not is_unreadable(v)]
        return wanted != hashes

    # --- filters -----------------------------------------------------------------------------

    def seal_filter(self, info: Any, filt: dict[str, Any]) -> dict[str, Any]:
        """A stored-form filter with equality on a queryable encrypted field moved to its blind
        index (``security.blind``), everything else on an encrypted field refused. Without a key,
        where plaintext is allowed (development), what is stored is plaintext and the filter runs
        as written."""
        fields = self.fields.get(info.name)
        if not fields or not filt:
            return filt
        if self.keyring is None and self.vault is None and self.allow_plaintext:  # not ``enabled``, inlined
            return filt
        if self.enabled and "$text" in filt:
            raise QueryError(f"$text cannot search {info.name}: its text is encrypted "
                             f"({', '.join(f.path for f in fields)}), so the server holds only ciphertext")
        blind = None if self.keyring is None else self.keyring.blind
        return match_ciphertext(fields, filt, lambda f, values: self._equal_forms(info, f, values),
                                blind=None if blind is None else lambda f, values: blind.hashes(
                                    values, info.collection, f.path, partial(to_plaintext, f=f)))

    def _equal_forms(self, info: Any, f: Sensitive, values: Sequence[Any]) -> list[Any]:
        """What equality on ``f`` matches where it has no blind index to move to. With a key,
        every queryable field has one (``seal_filter`` passes ``blind``, and ``match_ciphertext``
        sends equality there), so only a field that is not queryable comes here: refused, as it
        is with a key vault alone. Without either, values are stored (and matched) as they are."""
        if self.keyring is None and self.vault is not None and f.deterministic:
            raise QueryError(f"{f.path!r} is queryable only with encryption_key configured")
        if self.enabled:
            raise QueryError(f"{f.path!r} is encrypted and cannot be queried by value; only its presence ($exists)")
        values = list(values)
        if any(v is not None for v in values):
            self._require_key(info, f, "query it by value (without the key it could only match plaintext)")
        return values

    # --- reads -------------------------------------------------------------------------------

    def open_document(self, info: Any, doc: dict[str, Any] | None, paths: Iterable[str] | None = None, *,
                      strict: bool = False, moved_from: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Open a stored document's declared sensitive values in place (``paths``: only those).

        Plaintext from before encryption stays as it is; a sealed value that does not open (its
        data key shredded, tampered, or moved from another document or field) becomes
        ``UNREADABLE`` (logged and counted) so one bad value never fails the read (``strict``:
        ``EncryptionError`` instead, for rotation). Blind indexes are the service's, never shown.
        ``moved_from``: the stored document an update is moving to another owner (``doc`` is its
        post-image): a value under the data key of either owner opens (the values it does not set
        are still under the previous owner's; those it sets, under the new one's)."""
        if doc is None:
            return None
        plan = self._open_plans.get(info.name)
        if moved_from is None and paths is None and plan is not None and plan[2] is not None and plan[0] is self.fields.get(info.name):
            # a read's document of a model whose sensitive paths are all top-level (a User's email
            # and name): one look per value in place; only a value that may hold ciphertext (an
            # envelope's prefix, a list whose text holds it or whose items are not all text, a
            # CSFLE binary, any other type) goes to the steps, which open it (or make it UNREADABLE)
            for key, index_key in plan[2]:
                if key in doc:
                    value = doc[key]
                    if value.__class__ is str:
                        if value.startswith(PREFIX):
                            break
                    elif value.__class__ is list:
                        try:
                            if PREFIX in "\x00".join(value):
                                break
                        except TypeError:
                            break
                    elif value is not None:
                        break
                if index_key:
                    doc.pop(index_key, None)  # a blind index: never part of what a read returns
            else:
                return doc
        self._open_each(info, (doc,), paths, strict, moved_from)
        return doc

    def fetched_for(self, info: Any, projection: Mapping[str, Any] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What a read whose (stored-name) ``projection`` leaves out must fetch anyway to open
        its sealed values, and what to drop from each document once opened: ``(fetch, drop)``,
        stored paths. A sealed value opens only at its document's ``_id`` (the binding) and,
        with field level encryption, only under the data key of the owner its document names
        (``subject_key``): so ``_id`` and the owner field are fetched (``compile.fetch_to_open``) and
        dropped after opening (``open``), and the caller gets exactly the fields it asked for,
        opened. ``fetch`` names an excluded path to read after all (its exclusion removed) or an
        owner path to add to an inclusion. Without a key nothing opens, so nothing is fetched."""
        if projection is None or not self.enabled or not self.fields.get(info.name):
            return (), ()
        fetch: list[str] = []
        drop: list[str] = []
        if "_id" in projection and not projection["_id"]:
            fetch.append("_id")
            drop.append("_id")
        owner = self.owners.get(info.name)
        if owner and owner != "_id" and self.vault is not None:
            covering = [k for k in projection if k != "_id" and (owner == k or owner.startswith(k + "."))]
            if any(v for k, v in projection.items() if k != "_id"):  # an inclusion
                if not any(projection[k] for k in covering):
                    top = owner.split(".", 1)[0]
                    # a top the caller named nothing under is read and dropped whole (servers differ
                    # on dotted projections); beside another path under it, only the owner's leaf
                    named = owner if any(k == top or k.startswith(top + ".") for k in projection) else top
                    fetch.append(named)
                    drop.append(named)
            else:  # an exclusion: an excluded owner (or a document holding it) is read, then dropped
                for k in covering:
                    fetch.append(k)
                    drop.append(k)
        return tuple(fetch), tuple(drop)

    def open_documents(self, info: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``open_document`` of each of ``docs`` (in place), the model's plan looked up once."""
        self._open_each(info, docs, None, False)
        return docs

    def _open_each(self, info: Any, docs: Iterable[dict[str, Any]], paths: Iterable[str] | None, strict: bool,
                   also: Mapping[str, Any] | None = None) -> None:
        """Open ``docs`` in place: a top-level sensitive value is looked at where it is (no walk,
        nothing called for plaintext), a nested one found by ``slots_at``; blind indexes dropped.
        ``also``: the document before an update moved it to another owner (``open_document``)."""
        fields = self.fields.get(info.name)
        if not fields:
            return
        plan = self._open_plans.get(info.name)
        if plan is None or plan[0] is not fields:
            plan = self._open_plans[info.name] = (fields, _open_plan(fields), _plain_plan(fields))
        steps = plan[1]
        if paths is not None:
            chosen = set(paths)
            steps = tuple(step for step in steps if step[0].path in chosen)
        for doc in docs:
            for f, parts, index_key in steps:
                if index_key is not None:  # a top-level field: looked at in place, no walk
                    key = f.path
                    if key in doc:
                        value = doc[key]
                        if isinstance(value, list):
                            try:  # every item a str and none holding the envelope's prefix: nothing to
                                # open, found by one join and one search in C instead of a check per item
                                plain = PREFIX not in "\x00".join(value)
                            except TypeError:  # an item that is not a str (a CSFLE binary...): item by item
                                plain = False
                            for v in () if plain else value:  # _is_ciphertext, inlined
                                if v.startswith(PREFIX) if isinstance(v, str) else _is_ciphertext(v):
                                    doc[key] = [self._open(v, info, f, doc, strict, also) for v in value]
                                    break
                        elif value.startswith(PREFIX) if isinstance(value, str) else _is_ciphertext(value):
                            doc[key] = self._open(value, info, f, doc, strict, also)
                    if index_key:
                        doc.pop(index_key, None)
                    continue
                for parent, key in slots_at(doc, parts):  # replaced here: no call back from fieldpaths
                    value = parent[key]
                    parent[key] = ([self._open(v, info, f, doc, strict, also) for v in value] if isinstance(value, list)
                                   else self._open(value, info, f, doc, strict, also))
                if f.blind is not None:
                    _drop_blind(doc, parts)

    def open_output(self, info: Any, stages: Sequence[Mapping[str, Any]], docs: list[dict[str, Any]],
                    owners_of: Callable[[list[Any]], Iterable[Mapping[str, Any]]] | None = None) -> list[dict[str, Any]]:
        """Open aggregation output at the declared paths no stage could have rewritten
        (``provenance``); values moved or computed elsewhere stay sealed. With field level
        encryption a value opens only under the data key of the owner its document names: an
        output document that keeps its ``_id`` and a sealed value but not the owner field (a
        ``$project`` of the value alone) has the owner read back by ``_id`` (``owners_of(ids)``:
        the stored documents' owner fields, one read for the whole output), set for the opening
        and taken out again, so the output holds what the pipeline made, opened."""
        fields = self.fields.get(info.name)
        if not fields:
            return docs
        paths = intact_paths(stages, [f.path for f in fields])
        owner = self.owners.get(info.name)
        placed: list[tuple[dict[str, Any], str]] = []
        if owners_of is not None and self.vault is not None and owner and owner != "_id" and paths:
            lacking = [d for d in docs if "_id" in d and value_at(d, owner) is None
                       and any(is_sealed(v) for p in paths for v in leaves_at(d, p.split(".")))]
            if lacking:
                stored = {identity(d["_id"]): value_at(d, owner)  # the server's equality of ids
                          for d in owners_of([d["_id"] for d in lacking]) if "_id" in d}
                for d in lacking:
                    value = stored.get(identity(d["_id"]))
                    if value is not None:
                        placed.append((d, _place(d, owner, value)))
        try:
            self._open_each(info, docs, paths, False)
        finally:
            for d, path in placed:
                if path:
                    pop_at(d, path)
        return docs

    def _open(self, value: Any, info: Any, f: Sensitive, doc: Mapping[str, Any], strict: bool = False,
              also: Mapping[str, Any] | None = None) -> Any:
        if not is_stored_ciphertext(value):
            return value
        try:
            return self._open_strict(value, info, f, doc, also)
        except EncryptionError as exc:
            if strict:
                raise
            with self._lock:
                self._unreadable += 1
            log.warning("unreadable encrypted value in %s _id=%s at %s: %s", info.collection, doc.get("_id"), f.path, exc)
            return UNREADABLE

    def _open_strict(self, value: Any, info: Any, f: Sensitive, doc: Mapping[str, Any],
                     also: Mapping[str, Any] | None = None) -> Any:
        if is_sealed(value):
            if self.vault is None:
                raise EncryptionError("no key vault is configured; set encryption_key (or kms_providers)")
            if "_id" not in doc:
                raise EncryptionError("the document's _id was not read, and a sealed value is bound to it")
            subject = self.subject_key(info, doc)
            try:
                return self.vault.open(value, binding(info.collection, doc["_id"], f.path),
                                       subject if also is None else {subject, self.subject_key(info, also)})
            except EncryptionError as exc:
                owner = self.owners.get(info.name)
                if subject == SHARED_KEY and owner and value_at(doc, owner) is None and "owner" in str(exc):
                    raise EncryptionError(f"the document's owner field ({owner}) was not read, and a sealed value "
                                          "opens only under its owner's data key: keep it in the output") from None
                raise
        if self.keyring is None:
            raise EncryptionError("no encryption key is configured; set encryption_key (or ASTRO_DB_ENCRYPTION_KEY)")
        return from_plaintext(self.keyring.open(value, info.collection, f.path), f)

    # --- rotation ----------------------------------------------------------------------------

    def needs_rotation(self, value: Any, field: Sensitive | None = None) -> bool:
        """True for plaintext, and for a stored value a write would not produce now: an envelope
        of an older key or format (any envelope where field level encryption seals), or the
        other mode than ``field``'s."""
        if not self.enabled or value is None:
            return False
        if is_sealed(value):
            return False  # field level encryption: what every write produces
        if not is_envelope(value):
            return isinstance(value, str) or self.vault is not None or (field is not None and not field.text)
        if self.keyring is None:
            return False  # an envelope nothing here opens: left alone
        if self.vault is not None:
            return True  # every envelope -> field level encryption (a queryable field keeps its blind index)
        if field is None:
            return not (self.keyring.is_current(value, True) or self.keyring.is_current(value, False))
        return not self.keyring.is_current(value, field.deterministic)

    def leaves(self, doc: Any, path: str) -> Iterator[Any]:
        """The values at a stored path (through lists)."""
        yield from leaves_at(doc, path.split("."))


def _is_ciphertext(value: Any) -> bool:
    """``is_stored_ciphertext``, inlined for the read path: an envelope or a CSFLE ciphertext."""
    if isinstance(value, str):
        return value.startswith(PREFIX)
    return isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE


def _open_plan(fields: Sequence[Sensitive]) -> tuple[tuple[Sensitive, list[str], str | None], ...]:
    """Per sensitive field, what opening needs, computed once per model: its path's parts, and
    for a top-level field (looked at in place, with no walk) the key of its blind index (``""``
    for none); ``None`` for a nested path (walked by ``slots_at``)."""
    plan = []
    for f in fields:
        parts = f.path.split(".")
        top = (f.blind or "") if len(parts) == 1 else None
        plan.append((f, parts, top))
    return tuple(plan)


def _plain_plan(fields: Sequence[Sensitive]) -> tuple[tuple[str, str], ...] | None:
    """When every sensitive path of a model is top-level: per field its key and its blind index's
    (``""`` for none), which ``open_document`` looks at in place; None otherwise."""
    if any("." in f.path for f in fields):
        return None
    return tuple((f.path, f.blind or "") for f in fields)


def _drop_blind(doc: Any, parts: list[str]) -> None:
    """Remove the blind index beside ``parts`` (through lists): not part of what a read returns."""
    if isinstance(doc, list):
        for item in doc:
            _drop_blind(item, parts)
    elif isinstance(doc, dict):
        if len(parts) == 1:
            doc.pop(parts[0] + "Index", None)
        elif parts[0] in doc:
            _drop_blind(doc[parts[0]], parts[1:])


def _copy_blind(source: Any, target: Any, parts: list[str]) -> None:
    """Copy the blind index beside ``parts`` from ``source`` to ``target`` (the same document,
    opened and stored: lists align item by item)."""
    if isinstance(source, list) and isinstance(target, list):
        for one, other in zip(source, target):
            _copy_blind(one, other, parts)
    elif isinstance(source, dict) and isinstance(target, dict):
        if len(parts) == 1:
            sibling = parts[0] + "Index"
            if sibling in source:
                target[sibling] = source[sibling]
            else:
                target.pop(sibling, None)
        elif parts[0] in source and parts[0] in target:
            _copy_blind(source[parts[0]], target[parts[0]], parts[1:])
