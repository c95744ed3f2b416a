"""The exception tree of astro_db, and the one place driver errors are translated.

    AstroDBError
    ├── ConfigError                     a configuration value is missing or out of range
    ├── DatabaseConnectionError         the server cannot be reached (or the breaker is open)
    │   ├── NotConnectedError           an operation was called before connect()
    │   ├── ChangeRecordError           a write was applied but its change records were not (.missing)
    │   └── WriteOutcomeUnknown         a write may or may not have been applied; reading it back failed too
    ├── OperationTimeoutError           an operation ran past its time bound
    ├── PoolExhaustedError              no pooled connection became free in time
    ├── ValidationError                 data or ids do not fit the model (.errors: field -> message)
    ├── DuplicateKeyError               a unique index refused the write (.fields)
    ├── UnknownModelError               a model name that resolves to nothing
    ├── QueryError                      an unsafe or malformed query, update or pipeline
    ├── PermissionDeniedError           the acting role may not do this
    ├── ConflictError                   the document is no longer at the revision the caller expected (.current_revision)
    ├── EncryptionError                 a sensitive field cannot be sealed, queried or opened (no key)
    ├── ErasureIncompleteError          an erasure began but its data keys were not deleted (.user_id, .pending)
    ├── TransactionError                a transaction failed, conflicted or was misused
    │   └── TransactionNotSupportedError  the server cannot run transactions
    └── BackupError                     a backup or restore failed
        └── BackupIntegrityError        a backup set does not verify

Every public method raises only these; the driver's exception stays on ``__cause__``.

Warnings (``warnings.warn``, shown once per place by Python's default filter):

    AstroDBWarning (UserWarning)
    └── EmbeddedDatabaseWarning         no URL given: data lives in memory and dies with the process
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .urls import mask_urls_in_text

__all__ = [
    "AstroDBError",
    "ConfigError",
    "DatabaseConnectionError",
    "NotConnectedError",
    "ChangeRecordError",
    "WriteOutcomeUnknown",
    "ErasureIncompleteError",
    "OperationTimeoutError",
    "PoolExhaustedError",
    "ValidationError",
    "DuplicateKeyError",
    "UnknownModelError",
    "QueryError",
    "NotFoundError",
    "PermissionDeniedError",
    "ConflictError",
    "EncryptionError",
    "TransactionError",
    "TransactionNotSupportedError",
    "BackupError",
    "BackupIntegrityError",
    "MigrationError",
    "MigrationLockedError",
    "translate",
    "AstroDBWarning",
    "EmbeddedDatabaseWarning",
]


class AstroDBError(Exception):
    """Base of every error astro_db raises."""


class AstroDBWarning(UserWarning):
    """Base of every warning astro_db issues."""


class EmbeddedDatabaseWarning(AstroDBWarning):
    """No URL was given, so the in-memory embedded backend is in use: writes die with the process."""


class ConfigError(AstroDBError):
    """A configuration value is missing, of the wrong type or out of range."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class DatabaseConnectionError(AstroDBError):
    """The server could not be reached, or the circuit breaker is open."""


class NotConnectedError(DatabaseConnectionError):
    """An operation needs a connection and ``connect()`` has not been called."""


class ChangeRecordError(DatabaseConnectionError):
    """A write was applied, but its change records (audit trail and journal) could not be written.

    ``applied`` is always true: do not repeat the write. ``missing`` lists the ids of the documents
    whose records are missing; they are kept and written with the next write's records or by
    ``Database.reconcile_changes()`` (see docs/reliability.md)."""

    applied = True

    def __init__(self, message: str, missing: list[Any] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or ())


class WriteOutcomeUnknown(DatabaseConnectionError):
    """A write failed in a way that says nothing about whether the server applied it (the
    connection was lost, its time bound ran out), and reading it back failed too.

    ``applied`` is None: unknown (True when an earlier part of the same call, a chunk of an
    ``update_many`` or ``delete_many``, is known to be applied). Do not repeat a write that is not idempotent; read the
    document back by its id (``ids``) once the server answers. Its change records are kept
    (``pending``) and written with the next write or by ``Database.reconcile_changes()`` if the
    write landed, dropped if it did not; a delete's intent is settled the same way."""

    applied = None

    def __init__(self, message: str, ids: list[Any] | None = None) -> None:
        super().__init__(message)
        self.ids = list(ids or ())


class OperationTimeoutError(AstroDBError):
    """An operation did not finish within its time bound."""


class PoolExhaustedError(AstroDBError):
    """Every pooled connection stayed busy for the whole wait-queue timeout."""


class ValidationError(AstroDBError):
    """Input does not fit the model. ``errors`` maps each field (stored name) to a message."""

    def __init__(self, message: str | None = None, errors: Mapping[str, str] | None = None) -> None:
        self.errors: dict[str, str] = dict(errors or {})
        if message is None:
            message = "; ".join(f"{field}: {msg}" for field, msg in self.errors.items()) or "invalid input"
        super().__init__(message)


class DuplicateKeyError(AstroDBError):
    """A unique index refused the write. ``fields`` names the index's fields."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = tuple(fields)


class UnknownModelError(AstroDBError):
    """A model name resolved to no model; the message lists the valid names."""


class QueryError(AstroDBError):
    """A query, update or pipeline is malformed or uses a forbidden operator or field."""


class NotFoundError(AstroDBError):
    """The document a call names (e.g. the user of ``export_user`` / ``erase_user``) does not exist."""


class PermissionDeniedError(AstroDBError):
    """The acting roles do not allow this operation on this model or document."""


class ConflictError(AstroDBError):
    """A write made with ``expected_revision=`` found the document at another revision: someone
    changed it since the caller read it. Nothing was written. ``current_revision`` is the
    revision read back after the refusal (read the document again, merge, and retry with it)."""

    def __init__(self, message: str, current_revision: int | None = None, expected_revision: int | None = None) -> None:
        super().__init__(message)
        self.current_revision = current_revision
        self.expected_revision = expected_revision


class EncryptionError(AstroDBError):
    """A sensitive field could not be sealed or opened, or was written or queried without a key.

    Reads do not raise it for a value that does not open: that value reads as
    ``astro_db.security.crypto.UNREADABLE`` (logged and counted) so other documents still read."""


class ErasureIncompleteError(AstroDBError):
    """An erasure (``erase_user``) began and stopped part-way: what it did stays done (the
    user's documents deleted, their change records scrubbed), the rest (``pending``, e.g. the
    data keys) is not, and the erasure stays ``started`` in the ledger ``astroErasures`` (a
    restore already skips the user). Calling ``erase_user`` again, or ``reconcile_changes()``,
    finishes it without doing anything twice. ``user_id``; the error that stopped it is on
    ``__cause__``."""

    def __init__(self, message: str, *, user_id: Any = None, pending: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.pending = tuple(pending)


class TransactionError(AstroDBError):
    """A transaction failed to commit, conflicted, or was used after it finished."""


class TransactionNotSupportedError(TransactionError):
    """The server cannot run transactions (a standalone mongod); a replica set is needed."""


class BackupError(AstroDBError):
    """A backup, restore or backup-repository operation failed."""


class BackupIntegrityError(BackupError):
    """A backup set failed verification; ``path`` names the bad file when there is one."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class MigrationError(AstroDBError):
    """A migration could not be loaded, was changed after it was applied, or failed."""


class MigrationLockedError(MigrationError):
    """Another process holds the migrations lease (``owner`` names it), or took it over."""

    def __init__(self, message: str, *, owner: str | None = None) -> None:
        super().__init__(message)
        self.owner = owner


# --- translation of driver errors -------------------------------------------------------------

_TRANSACTION_UNSUPPORTED_CODES = {20, 263}  # IllegalOperation, OperationNotSupportedInTransaction
_WRITE_CONFLICT_CODES = {112, 24, 251}  # WriteConflict, LockTimeout, NoSuchTransaction
_AUTH_CODES = {13, 18, 8000}  # Unauthorized, AuthenticationFailed, Atlas auth
_TIMEOUT_CODES = {50, 262}  # MaxTimeMSExpired, ExceededTimeLimit
_DUP_INDEX = re.compile(r"index:\s+(\S+)\s+dup key")
_DUP_PATTERN = re.compile(r"'keyPattern': \{([^}]*)\}")

def scrub(text: str) -> str:
    """Remove passwords and secret options of connection URLs from ``text``."""
    return mask_urls_in_text(text)


def translate(exc: BaseException, *, operation: str = "operation", model: str | None = None,
              names: Mapping[str, str] | None = None) -> AstroDBError:
    """Map a PyMongo / MongoEngine / bson exception to the matching astro_db error.

    The caller raises the result ``from exc`` so the original stays on ``__cause__``.
    An ``AstroDBError`` is returned unchanged. ``names``: stored field -> the field a caller
    knows, for a duplicate key's ``fields`` (a queryable field's blind index ``emailIndex`` is
    ``email`` to the caller: ``FieldCrypto.blind_sources``).
    """
    if isinstance(exc, AstroDBError):
        return exc
    import bson.errors
    import mongoengine.errors as me_errors
    from pymongo import errors as pm

    where = f"{operation} on {model}" if model else operation
    detail = scrub(str(exc))

    if isinstance(exc, pm.DuplicateKeyError):
        return _duplicate_key(exc, where, names)
    if isinstance(exc, pm.BulkWriteError):
        dup = [e for e in exc.details.get("writeErrors", []) if e.get("code") == 11000]
        if dup:
            return _duplicate_key(pm.DuplicateKeyError(dup[0].get("errmsg", ""), 11000, dup[0]), where, names)
        return AstroDBError(f"{where} failed: {detail}")
    if isinstance(exc, pm.WaitQueueTimeoutError):
        return PoolExhaustedError(
            f"{where}: no pooled connection became free in time; raise max_pool_size or the wait (the call's "
            f"budget, operation_timeout_ms / timeout_ms; wait_queue_timeout_ms when it is None), or reduce "
            f"concurrency ({detail})"
        )
    if isinstance(exc, pm.ConfigurationError) or isinstance(exc, pm.InvalidURI):
        return ConfigError(f"invalid MongoDB configuration: {detail}")
    if isinstance(exc, pm.OperationFailure):
        return _operation_failure(exc, where, detail)
    if isinstance(exc, (pm.ExecutionTimeout, pm.WTimeoutError)):
        return OperationTimeoutError(f"{where} exceeded its time limit: {detail}")
    if isinstance(exc, pm.ServerSelectionTimeoutError):
        return DatabaseConnectionError(
            f"{where}: no MongoDB server answered within the server-selection timeout; "
            f"check that it is running and reachable ({_first_line(detail)})"
        )
    if isinstance(exc, pm.NetworkTimeout):
        return OperationTimeoutError(f"{where}: the server did not answer in time ({detail})")
    if isinstance(exc, pm.ConnectionFailure):
        return DatabaseConnectionError(f"{where}: lost the connection to MongoDB ({detail})")
    if isinstance(exc, pm.InvalidOperation):
        return TransactionError(f"{where}: {detail}") if "transaction" in detail.lower() else QueryError(f"{where}: {detail}")
    if isinstance(exc, pm.PyMongoError):
        if getattr(exc, "timeout", False):
            return OperationTimeoutError(f"{where} exceeded its time limit: {detail}")
        return AstroDBError(f"{where} failed: {detail}")
    if isinstance(exc, me_errors.ValidationError):
        return ValidationError(errors=_flatten_me_errors(exc) or {"__all__": detail})
    if isinstance(exc, (bson.errors.InvalidId,)):
        return ValidationError(errors={"id": f"not a valid ObjectId: {detail}"})
    if isinstance(exc, (bson.errors.InvalidDocument, bson.errors.InvalidBSON)):
        return ValidationError(errors={"__all__": f"not storable as BSON: {detail}"})
    if isinstance(exc, me_errors.MongoEngineException):
        return AstroDBError(f"{where} failed: {detail}")
    return AstroDBError(f"{where} failed unexpectedly: {type(exc).__name__}: {detail}")


def _first_line(text: str) -> str:
    """The first clause of a driver message, without PyMongo's per-socket "(configured timeouts:
    ...)" (the call's budget is named by the run step instead)."""
    return text.split(" (configured timeouts:", 1)[0].split(",", 1)[0][:300]


def _operation_failure(exc: Any, where: str, detail: str) -> AstroDBError:
    code = exc.code
    labels = set(getattr(exc, "_error_labels", ()) or ())
    if code in _TRANSACTION_UNSUPPORTED_CODES or "Transaction numbers are only allowed" in detail:
        return TransactionNotSupportedError(
            f"{where}: this MongoDB server cannot run transactions (a standalone mongod); "
            "transactions need a replica set or a sharded cluster (a one-node replica set will do)"
        )
    if code in _WRITE_CONFLICT_CODES or "TransientTransactionError" in labels:
        return TransactionError(f"{where}: the transaction conflicted with another write and was aborted ({detail})")
    if code in _AUTH_CODES:
        return PermissionDeniedError(f"{where}: the MongoDB user is not authorised ({detail})")
    if code in _TIMEOUT_CODES:
        return OperationTimeoutError(f"{where} exceeded its time limit ({detail})")
    if code == 2 or code == 9 or code == 17287 or code == 168:  # BadValue, FailedToParse, ...
        return QueryError(f"{where}: the server rejected the query: {detail}")
    if code == 121:  # DocumentValidationFailure
        return ValidationError(errors={"__all__": f"the server's schema validator refused the document: {detail}"})
    return AstroDBError(f"{where} failed (code {code}): {detail}")


def _duplicate_key(exc: Any, where: str, names: Mapping[str, str] | None = None) -> DuplicateKeyError:
    details = exc.details or {}
    pattern = details.get("keyPattern") or {}
    fields: tuple[str, ...] = tuple(pattern)
    if not fields:
        value = details.get("keyValue") or {}
        fields = tuple(value)
    if not fields:  # mongomock-ng puts the key pattern in the message only
        match = _DUP_PATTERN.search(str(details.get("errmsg", exc)))
        if match:
            fields = tuple(re.findall(r"'([^']+)':", match.group(1)))
    if not fields:
        match = _DUP_INDEX.search(str(details.get("errmsg", exc)))
        if match:
            name = match.group(1)
            parts = name.split("_")
            fields = tuple(parts[i] for i in range(0, len(parts) - 1, 2)) or (name,)
    if names:
        fields = tuple(names.get(f, f) for f in fields)
    shown = ", ".join(fields) or "a unique index"
    return DuplicateKeyError(f"{where}: a document with the same {shown} already exists", fields=fields)


def _flatten_me_errors(exc: Any, prefix: str = "") -> dict[str, str]:
    """Flatten MongoEngine's nested ValidationError into ``{"a.b": message}``."""
    out: dict[str, str] = {}
    nested = getattr(exc, "errors", None) or {}
    if not nested:
        key = prefix or getattr(exc, "field_name", None) or "__all__"
        out[key] = str(getattr(exc, "message", exc))
        return out
    for name, sub in nested.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        if hasattr(sub, "errors") or hasattr(sub, "message"):
            out.update(_flatten_me_errors(sub, path))
        elif isinstance(sub, dict):
            for k, v in sub.items():
                out[f"{path}.{k}"] = str(v)
        else:
            out[path] = str(sub)
    return out
