"""MongoDB's client-side field level encryption, explicit API: the key vault and its data keys.

Every sensitive value a write seals (``security.crypto.FieldCrypto``) is encrypted by
libmongocrypt (``pymongocrypt``, the engine of PyMongo's ``ClientEncryption``) with the algorithm
``AEAD_AES_256_CBC_HMAC_SHA_512-Random`` under a **data key** kept in the **key vault**
collection (``key_vault_namespace``, default ``encryption.__keyVault``, MongoDB's convention: a
database of its own, so the vault is never part of a backup set and a backup restored into a
fresh database on the same cluster still finds its keys). What is encrypted is a small BSON
document binding the value to its place, ``{"v": <value>, "b": "<collection>/<_id>/<path>"}``;
the result is BSON Binary subtype 6, what the Node driver's ``ClientEncryption.decrypt`` reads.

Data keys: one per subject (alt name ``user:<owner id>``: the document's declared owner, ``_id``
on the user model), created on the first write for that user, race-safe through the unique
partial index on ``keyAltNames``; one shared key (``astro_db:shared``) for models no user owns.
Deleting a user's data key (``shred``) makes every value sealed under it unreadable wherever it
is (live documents, change records, backups).

Master keys (KMS providers): by default ``local`` providers derived from ``encryption_key`` and
the older ``encryption_keys``: each 32-byte key becomes the named provider ``local:<key id>``
whose 96-byte master key is ``HKDF-SHA512(ikm=key, salt=none, info="astro_db:csfle:local-master-key:v1")``;
data keys are created under the primary key's provider, and ``rewrap`` moves every data key
wrapped by another provider onto it (``rotate-key``: no document is rewritten). A 96-byte
``kms_providers["local"]["key"]`` is taken as is; cloud providers (aws, gcp, azure, kmip) are
passed through ``kms_providers`` with ``kms_master_key`` naming the provider and its key.

PyMongo's ``ClientEncryption`` requires a ``MongoClient`` whose collections return
``RawBSONDocument`` (the embedded backend's do not), so this module drives the same
``pymongocrypt.ExplicitEncrypter`` with PyMongo's own I/O callback (KMS requests included),
reading and writing the key vault through whatever collection the backend gives: one code path
for every backend, the same key documents and ciphertext.

Every call this module sends to the key vault (its unique index, the key reads libmongocrypt
asks for, a data key's insertion, an erasure's deletion, a rewrap's count and updates) is made
through the run step it is handed (``attach(collection, run)``: ``ops.steps.run.call`` as a
function, composed by the runtime), as an operation named ``key vault <what>``: it gets the
breaker, the call's time budget (a key read during a ``find`` shares the ``find``'s
``timeout_ms``), the retries (each of these calls is idempotent: an insertion retried after it
landed meets its own ``_id`` and reads its key back) and the translation into
``astro_db.errors``. The KMS requests of a cloud master key (libmongocrypt's, over TLS) are not
driver calls and are not made through it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from functools import partial
from typing import Any, Protocol, TypeVar

import bson
from bson import json_util
from bson.binary import STANDARD, UUID_SUBTYPE, Binary
from bson.codec_options import CodecOptions
from bson.objectid import ObjectId

from ..errors import AstroDBError, ConfigError, DuplicateKeyError, EncryptionError
from ..ids import JSON_CODEC

__all__ = ["KeyVault", "Run", "ALGORITHM", "SHARED_KEY", "DEFAULT_NAMESPACE", "HKDF_INFO", "derive_local_master_key",
           "subject_alt_name", "binding", "legacy_binding", "id_text", "is_sealed"]

log = logging.getLogger(__name__)

ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA_512-Random"
SHARED_KEY = "astro_db:shared"
DEFAULT_NAMESPACE = "encryption.__keyVault"
HKDF_INFO = b"astro_db:csfle:local-master-key:v1"
ENCRYPTED_SUBTYPE = 6
_CLOUD = ("aws", "gcp", "azure", "kmip")
# decoding: UUIDs stay Binary subtype 4 (data key ids); encoding: a client's uuid.UUID becomes subtype 4
_BSON_OPTS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
_ENCODE_OPTS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, uuid_representation=STANDARD)
T = TypeVar("T")


class Run(Protocol):
    """The run step as a function (``ops.steps.run.call`` with no model and no transaction):
    ``run(operation, fn, retry=...)`` makes the driver call ``fn`` under the breaker, the time
    budget, the retries and the translation; its result, or an ``AstroDBError``."""

    def __call__(self, operation: str, fn: Callable[[], T], *, retry: bool = True) -> T: ...


def derive_local_master_key(key: bytes) -> bytes:
    """The 96-byte ``local`` KMS master key of a 32-byte ``encryption_key`` (HKDF-SHA512)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA512(), length=96, salt=None, info=HKDF_INFO).derive(key)


def subject_alt_name(subject: Any) -> str:
    """The alt name of a subject's data key: ``user:<owner id>`` (ObjectId as 24 hex digits)."""
    return f"user:{_text(subject)}"


def binding(collection: str, doc_id: Any, path: str) -> str:
    """Where a sealed value belongs: ``<collection>/<_id>/<stored path>`` (list positions left
    out), the ``_id`` written one-to-one (``id_text``): no two ``_id``s of one collection bind alike."""
    return f"{collection}/{id_text(doc_id)}/{path}"


def legacy_binding(collection: str, doc_id: Any, path: str) -> str | None:
    """The binding releases before this one wrote for a document whose ``_id`` they wrote
    ambiguously (a string that prints like another type's ``_id``: ``"1"``, ``"true"``, 24
    lower-case hex digits, one that starts with a quote, a brace, a bracket, a digit or a minus);
    None for every other ``_id``, whose binding is unchanged. Only ``rotate-key`` reads it, to
    bind such values again (``FieldCrypto.reseal``)."""
    old = f"{collection}/{_text(doc_id)}/{path}"
    return None if old == binding(collection, doc_id, path) else old


_OTHER_TYPES_START = frozenset('"{[-0123456789')  # what the text of a non-string, non-ObjectId _id starts with
_OTHER_TYPES_WORDS = frozenset({"true", "false", "null"})


def id_text(value: Any) -> str:
    """A document's ``_id`` as its binding writes it, one-to-one across BSON types: an ObjectId as
    its 24 lower-case hex digits; a string as itself unless it could be read as another type's
    text (24 lower-case hex digits, ``true``, ``false``, ``null``, or a first character of ``"{[-``
    or a digit), then as its JSON string (in quotes, ``JSON.stringify``'s text); anything else
    as its relaxed Extended JSON (embedded documents' keys sorted), which starts with a digit, a
    minus, a brace or is one of those three words. Before, a string was always itself: ``"1"``
    and ``1``, or an ObjectId and the string of its hex digits, bound alike, so a ciphertext
    copied from one such document to the other (a document another writer made with the
    victim's id as a string ``_id``) opened there."""
    if value.__class__ is ObjectId:
        return str(value)
    if isinstance(value, str):
        if (value[:1] in _OTHER_TYPES_START or value in _OTHER_TYPES_WORDS
                or (len(value) == 24 and _is_lower_hex(value))):
            return json.dumps(value, ensure_ascii=False)
        return value
    return _text(value)


def _is_lower_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def is_sealed(value: Any) -> bool:
    """Whether a stored value is a CSFLE ciphertext (BSON Binary subtype 6)."""
    return isinstance(value, Binary) and value.subtype == ENCRYPTED_SUBTYPE


def _text(value: Any) -> str:
    """An owner's id in its data key's alt name (and the bindings of earlier releases): a
    string as itself. Kept as it was: an alt name names keys that exist."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, str):
        return value
    return json_util.dumps(value, sort_keys=True, json_options=JSON_CODEC)  # a UUID _id too


def _io_class() -> type:
    """PyMongo's I/O callback of ``ClientEncryption`` (KMS requests over TLS), with the key vault
    read and written by the ``KeyVault``'s own functions (each call through the run step)."""
    from pymongo.synchronous.encryption import _EncryptionIO

    class VaultIO(_EncryptionIO):
        def __init__(self, fetch: Callable[[dict[str, Any]], list[dict[str, Any]]],
                     insert: Callable[[dict[str, Any]], None], opts: Any) -> None:  # no super(): no client to hold
            self.client_ref = None
            self.key_vault_coll = None
            self.mongocryptd_client = None
            self.opts = opts
            self._spawned = False
            self._kms_ssl_contexts = opts._kms_ssl_contexts(True)
            self.fetch: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = fetch
            self.insert = insert
            self.before_insert: Callable[[str], None] | None = None  # test hook: two creators at once

        def fetch_keys(self, filter: bytes) -> Generator[bytes | memoryview, None, None]:
            query = bson.decode(filter, codec_options=_BSON_OPTS)
            assert self.fetch is not None, "the key vault I/O is closed"
            for key in self.fetch(query):
                yield bson.encode(key, codec_options=_ENCODE_OPTS)

        def insert_data_key(self, data_key: bytes) -> Binary:
            plain = bson.decode(data_key, codec_options=_BSON_OPTS)
            key_id = plain.get("_id")
            if not isinstance(key_id, Binary) or key_id.subtype != UUID_SUBTYPE:  # pragma: no cover - libmongocrypt makes it
                raise EncryptionError("a data key's _id must be a UUID (Binary subtype 4)")
            if self.before_insert is not None:
                self.before_insert(",".join(plain.get("keyAltNames", ())))
            assert self.fetch is not None, "the key vault I/O is closed"
            self.insert(plain)
            return key_id

        def close(self) -> None:
            self.fetch = None

    return VaultIO


class KeyVault:
    """Data keys in the key vault, and the libmongocrypt engine that seals and opens with them."""

    def __init__(self, kms_providers: Mapping[str, Any], provider: str, master_key: Mapping[str, Any] | None,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        db, _, coll = namespace.partition(".")
        if not db or not coll:
            raise ConfigError(f"key_vault_namespace must be '<database>.<collection>', got {namespace!r}",
                              key="key_vault_namespace")
        self.namespace = namespace
        self._kms = dict(kms_providers)
        self.provider = provider
        self.master_key = dict(master_key) if master_key else None
        self._collection: Callable[[], Any] | None = None
        self._runner: Run | None = None
        self._lock = threading.RLock()
        self._engine: Any = None
        self._io: Any = None
        self._alt_ids: dict[str, Binary] = {}  # alt name -> data key id, this process
        self._key_names: dict[bytes, frozenset[str]] = {}  # data key id -> its alt names, as read (``named``)
        self._indexed = False
        self.before_insert: Callable[[str], None] | None = None

    @classmethod
    def from_config(cls, config: Any, keys: list[tuple[str, bytes]]) -> KeyVault | None:
        """``keys``: ``(key id, 32-byte key)``, the primary first. None without any key."""
        namespace = getattr(config, "key_vault_namespace", None) or DEFAULT_NAMESPACE
        configured = dict(getattr(config, "kms_providers", None) or {})
        chosen = dict(getattr(config, "kms_master_key", None) or {})
        providers: dict[str, Any] = {}
        for name, opts in configured.items():
            if name == "local" or name.startswith("local:"):
                raw = _key_bytes((opts or {}).get("key"), f"kms_providers.{name}.key")
                if len(raw) == 32:
                    raw = derive_local_master_key(raw)
                if len(raw) != 96:
                    raise ConfigError(f"kms_providers.{name}.key must be 96 bytes (or 32, derived), got {len(raw)}",
                                      key="kms_providers")
                providers[name] = {"key": raw}
            elif name.split(":")[0] in _CLOUD:
                providers[name] = dict(opts or {})
            else:
                raise ConfigError(f"unknown KMS provider {name!r} (local, aws, gcp, azure, kmip)", key="kms_providers")
        for kid, key in keys:
            providers.setdefault(f"local:{kid}", {"key": derive_local_master_key(key)})
        if not providers:
            if chosen:
                raise ConfigError("kms_master_key needs kms_providers (or encryption_key) to name a provider it is in",
                                  key="kms_master_key")
            return None
        provider = chosen.pop("provider", None)
        if provider is None:
            provider = f"local:{keys[0][0]}" if keys else next(iter(providers))
        if provider not in providers:
            raise ConfigError(f"kms_master_key names provider {provider!r}, which kms_providers does not configure",
                              key="kms_master_key")
        if provider.split(":")[0] in _CLOUD and not chosen:
            raise ConfigError(f"kms_master_key needs the master key options of {provider!r} (e.g. region and key "
                              "for aws)", key="kms_master_key")
        return cls(providers, provider, chosen or None, namespace)

    def attach(self, collection: Callable[[], Any], run: Run) -> None:
        """Where the key vault collection is (a gateway handle whose calls are made bare) and the
        run step every call to it is made through (called by the runtime)."""
        self._collection = collection
        self._runner = run

    def __repr__(self) -> str:  # never the KMS credentials or master keys
        return f"<KeyVault {self.namespace} provider={self.provider} providers={sorted(self._kms)}>"

    # --- the engine ------------------------------------------------------------------------

    def _vault(self) -> tuple[Any, Run]:
        """The key vault collection and the run step, its unique ``keyAltNames`` index made
        first (once per process; an index that exists is left as it is)."""
        if self._collection is None or self._runner is None:
            raise EncryptionError("the key vault is not attached to a connection yet")
        coll, run = self._collection(), self._runner
        if not self._indexed:
            with self._reaching("index"):
                run("key vault index", partial(coll.create_index, "keyAltNames", unique=True, name="keyAltNames_unique",
                                               partialFilterExpression={"keyAltNames": {"$exists": True}}))
            self._indexed = True
        return coll, run

    def _fetch(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """The data keys ``query`` matches (libmongocrypt's key reads), read to the end in one
        call; the alt names of each are noted (``named``: an open's check of whose key it is)."""
        coll, run = self._vault()
        with self._reaching("read"):
            keys: list[dict[str, Any]] = run("key vault read", lambda: list(coll.find(query)))
        for key in keys:
            self._key_names[bytes(_as_key_id(key["_id"]))] = frozenset(key.get("keyAltNames") or ())
        return keys

    def named(self, key_id: bytes) -> frozenset[str]:
        """The alt names of the data key ``key_id`` (empty if there is none): as a decryption
        read them (``_fetch``), else read now (once per key and process)."""
        names = self._key_names.get(key_id)
        if names is None:
            coll, run = self._vault()
            with self._reaching("read"):
                found = run("key vault read", partial(coll.find_one, {"_id": Binary(key_id, UUID_SUBTYPE)},
                                                      {"keyAltNames": 1}))
            names = self._key_names[key_id] = frozenset((found or {}).get("keyAltNames") or ())
        return names

    def _insert(self, key: dict[str, Any]) -> None:
        """A new data key written (retried: an attempt that landed makes the next meet its
        ``_id``, a ``DuplicateKeyError`` that ``key_for`` settles by reading the key back)."""
        coll, run = self._vault()
        with self._reaching("write a data key to"):
            run("key vault insert", partial(coll.insert_one, key))

    def _encrypter(self) -> Any:
        with self._lock:
            if self._engine is None:
                try:
                    from pymongo.encryption_options import AutoEncryptionOpts
                    from pymongo.encryption_shared import _create_mongocrypt_options
                    from pymongocrypt.synchronous.explicit_encrypter import ExplicitEncrypter  # type: ignore[import-untyped]
                except ImportError:  # pragma: no cover - a dependency of astro_db
                    raise EncryptionError("field level encryption needs pymongocrypt: pip install 'pymongo[encryption]'") from None

                opts = AutoEncryptionOpts(self._kms, self.namespace)
                self._io = _io_class()(self._fetch, self._insert, opts)
                self._io.before_insert = self.before_insert
                self._engine = ExplicitEncrypter(self._io, _create_mongocrypt_options(
                    kms_providers=self._kms, schema_map=None, bypass_encryption=True))
            return self._engine

    def reset(self) -> None:
        """A fresh engine for every later call: libmongocrypt's cache of decrypted data keys
        (60 s) is dropped with the old one. The old engine is not closed here (a call in another
        thread may still be using it): libmongocrypt's handle is freed when it is collected."""
        with self._lock:
            self._engine = None
            self._alt_ids.clear()
            self._key_names.clear()

    def close(self) -> None:
        self.reset()

    @contextlib.contextmanager
    def _reaching(self, doing: str) -> Iterator[None]:
        """A key vault call the run step gave up on (its retries, its time budget, the breaker):
        the run step's error, of its type (``DatabaseConnectionError``, ``OperationTimeoutError``,
        ...), its message naming the key vault. Not a duplicate key (the creation race) nor an
        ``EncryptionError``. A read fails instead of showing ``UNREADABLE``; a write sends nothing."""
        try:
            yield
        except (DuplicateKeyError, EncryptionError):
            raise
        except AstroDBError as exc:
            if exc.args and isinstance(exc.args[0], str) and not exc.args[0].startswith("could not "):
                exc.args = (f"could not {doing} the key vault {self.namespace}: {exc.args[0]}", *exc.args[1:])
            raise

    # --- data keys -------------------------------------------------------------------------

    def key_for(self, alt_name: str) -> Binary:
        """The id of the data key named ``alt_name``, created if there is none. Two creators at
        once: one insert fails on the unique ``keyAltNames`` index and reads the winner's key."""
        known = self._alt_ids.get(alt_name)
        if known is not None:
            return known
        found = self._lookup(alt_name)
        if found is None:
            try:
                key_id = self._create(alt_name)
            except DuplicateKeyError:  # another creator's insert (or our own retried one) landed first
                found = self._lookup(alt_name)
                if found is None:
                    raise EncryptionError(f"data key {alt_name!r}: a concurrent creator won, but its key is gone") from None
                key_id = found["_id"]
                log.info("data key %s: created concurrently by another writer; using its key", alt_name)
            else:
                log.info("data key %s created under KMS provider %s", alt_name, self.provider)
        else:
            key_id = found["_id"]
        key_id = _as_key_id(key_id)
        self._alt_ids[alt_name] = key_id
        self._key_names[bytes(key_id)] = self._key_names.get(bytes(key_id), frozenset()) | {alt_name}
        return key_id

    def existing_key(self, alt_name: str) -> Binary | None:
        """The id of the data key named ``alt_name`` if there is one (never created)."""
        known = self._alt_ids.get(alt_name)
        if known is not None:
            return known
        found = self._lookup(alt_name)
        return None if found is None else _as_key_id(found["_id"])

    def _lookup(self, alt_name: str) -> Any:
        coll, run = self._vault()
        with self._reaching("read"):
            return run("key vault read", partial(coll.find_one, {"keyAltNames": {"$in": [alt_name]}}, {"_id": 1}))

    def _create(self, alt_name: str) -> Binary:
        engine = self._encrypter()
        try:
            return Binary(bytes(engine.create_data_key(self.provider, master_key=self.master_key,
                                                       key_alt_names=[alt_name])), UUID_SUBTYPE)
        except AstroDBError:
            raise  # the key vault's insert, as the run step ended it (a DuplicateKeyError: the creation race)
        except Exception as exc:
            raise EncryptionError(f"could not create the data key {alt_name!r}: {type(exc).__name__}: {exc}") from None

    def delete_keys(self, alt_name: str, noted: Callable[[int], None] | None = None) -> int:
        """Delete the data key(s) named ``alt_name``; how many there were. They are read first,
        so a deletion whose reply was lost and whose retry deletes nothing still counts them, and
        ``noted`` is told that count before anything is deleted (an erasure keeps it, for a rerun
        after a failure that finds them gone). Effective at once in this process (the engine and
        its key cache are replaced). Retried by the run step (deleting what is gone deletes
        nothing); when it gives up, its error is raised and nothing is reset."""
        coll, run = self._vault()
        where = {"keyAltNames": {"$in": [alt_name]}}
        with self._reaching("read"):
            found = len(run("key vault read", lambda: list(coll.find(where, {"_id": 1}))))
        if noted is not None:
            noted(found)
        with self._reaching("delete from"):
            run("key vault delete", partial(coll.delete_many, where))
        self.reset()
        return found

    def rewrap(self, *, dry_run: bool = False) -> int:
        """Every data key not wrapped by the current master key, rewrapped under it (libmongocrypt
        decrypts each with its own provider, encrypts with the current one); how many (to
        rewrap, ``dry_run``): the keys wrapped by another configured provider (the older
        ``encryption_keys``); with a cloud master key, every key of a configured provider (its
        options may have changed). Keys of providers not configured here are left alone. Each
        key is written back by a call of its own (idempotent: the same material again), so a
        rewrap the run step gives up on leaves some keys rewrapped and the rest as they were;
        run again, it finishes."""
        mine = sorted(self._kms) if self.master_key else sorted(p for p in self._kms if p != self.provider)
        filt: dict[str, Any] = {"masterKey.provider": {"$in": mine}}  # only keys a configured provider can unwrap
        coll, run = self._vault()
        if dry_run:
            with self._reaching("read"):
                return int(run("key vault read", partial(coll.count_documents, filt)))
        try:
            raw = self._encrypter().rewrap_many_data_key(filt, self.provider, self.master_key)
        except AstroDBError:
            raise  # the key reads, as the run step ended them
        except Exception as exc:
            raise EncryptionError(f"could not rewrap the data keys: {type(exc).__name__}: {exc}") from None
        if raw is None:
            return 0
        count = 0
        with self._reaching("rewrap the data keys of"):
            for key in bson.decode(raw, codec_options=_BSON_OPTS)["v"]:
                run("key vault rewrap", partial(
                    coll.update_one, {"_id": key["_id"]}, {"$set": {"keyMaterial": key["keyMaterial"], "masterKey": key["masterKey"]},
                                                          "$currentDate": {"updateDate": True}}))
                count += 1
        self.reset()
        return count

    # --- values ----------------------------------------------------------------------------

    def seal(self, value: Any, bound_to: str, alt_name: str) -> Binary:
        """``{"v": value, "b": bound_to}`` encrypted under the data key ``alt_name`` (subtype 6)."""
        key_id = self.key_for(alt_name)
        try:
            out = self._encrypter().encrypt(bson.encode({"v": {"v": value, "b": bound_to}}, codec_options=_ENCODE_OPTS),
                                            ALGORITHM, key_id=bytes(key_id))
        except AstroDBError:
            raise  # the key vault's read, as the run step ended it
        except Exception as exc:
            raise EncryptionError(f"encryption failed under data key {alt_name!r}: {type(exc).__name__}") from None
        sealed = bson.decode(out, codec_options=_BSON_OPTS)["v"]
        return Binary(bytes(sealed), ENCRYPTED_SUBTYPE)

    def open(self, value: Binary, bound_to: str, subject: str | set[str] | None = None) -> Any:
        """The value sealed in ``value`` if it is bound to ``bound_to`` and, with ``subject`` (the
        alt name of the data key the document's owner seals under: ``FieldCrypto.subject_key``),
        sealed under that key; ``EncryptionError`` (naming no plaintext and no key material) if
        its data key is gone, it was tampered or moved, or its document names another owner than
        the one it was sealed for (an owner field changed outside the service: the service would
        otherwise open one user's values for whoever the field now names)."""
        try:
            out = self._encrypter().decrypt(bson.encode({"v": value}, codec_options=_BSON_OPTS))
            inner = bson.decode(out, codec_options=_BSON_OPTS)["v"]
        except AstroDBError as exc:
            if isinstance(exc, EncryptionError):
                raise EncryptionError(f"decryption failed ({exc})") from None
            raise  # the vault did not answer (the run step's error): an error, never UNREADABLE (the value may be fine)
        except Exception as exc:
            raise EncryptionError(f"decryption failed ({_reason(exc)})") from None
        if not isinstance(inner, Mapping) or set(inner) != {"v", "b"}:
            raise EncryptionError("decrypted value is not an astro_db sealed value ({v, b})")
        if inner["b"] != bound_to:
            raise EncryptionError("sealed value belongs to another document or field (moved)")
        if subject is not None and (self.named(bytes(value[1:17])).isdisjoint((subject,) if isinstance(subject, str) else subject)):
            raise EncryptionError("sealed value is under another owner's data key than its document names "
                                  "(the owner changed outside the service)")
        return inner["v"]


def _as_key_id(value: Any) -> Binary:
    """A data key's ``_id`` as Binary subtype 4, however the client decoded it (a uuid.UUID under
    ``uuidRepresentation=standard``)."""
    if isinstance(value, uuid.UUID):
        return Binary.from_uuid(value)
    return value if isinstance(value, Binary) else Binary(bytes(value), UUID_SUBTYPE)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "not all keys requested were satisfied" in text or "key" in text.lower() and "not" in text.lower():
        return "its data key is not in the key vault: shredded, or another key vault"
    return f"tampered or not a ciphertext: {type(exc).__name__}"


def _key_bytes(text: Any, name: str) -> bytes:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    if not isinstance(text, str):
        raise ConfigError(f"{name} must be base64 text or bytes", key="kms_providers")
    try:
        return base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name} is not valid base64", key="kms_providers") from None
