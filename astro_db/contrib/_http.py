"""What the web integrations share: astro_db errors as HTTP responses, and the health report.

One table maps the error tree to statuses, so Flask and Django answer the same way:

    ValidationError, QueryError, UnknownModelError   400  (ValidationError adds "errors")
    PermissionDeniedError                            403
    a not-found helper (get_or_404)                  404
    DuplicateKeyError, ConflictError, TransactionError 409  (DuplicateKeyError adds "fields",
                                                          ConflictError "currentRevision")
    a write that was applied (``applied`` true, as
    ChangeRecordError) or whose outcome is unknown
    (``applied`` None)                               500  ("applied": true / null; never retry)
    DatabaseConnectionError, OperationTimeoutError,
    PoolExhaustedError                               503  (Retry-After: nothing was applied)
    anything else                                    500

Client errors carry the error's message (it says what to fix); server errors carry a generic
message, and the detail goes to the log, so a response never shows hosts or internals. Only a
503 says "try again" (``response_headers``: ``Retry-After``), so it is never the answer to an
error that reports a write as applied, or possibly applied, whatever its class.

Web-sized bounds (``WEB_DEFAULTS``): a web request cannot wait the library's 30 s budget, so
both integrations give their ``Database`` a 3 s budget per call, a 3 s server selection and a
3 s connect, unless the app's own settings (options, URL query, ``ASTRO_DB_*`` variables) say
otherwise: a request during an outage gets its 503 within about 3 s.

Request input is read here too, the same way for both frameworks: ``json_body`` (a body that is
not JSON, is sent with another content type, nests deeper than ``MAX_BODY_DEPTH`` or holds
``NaN``/``Infinity`` is a ``ValidationError``, so a JSON 400, never a ``RecursionError`` and a 500)
and ``query_number`` (a query-string number; ``nan``, ``inf`` and non-numbers are a 400).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import errors
from ..config import DatabaseConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..database import Database

__all__ = ["ConnectOnce", "error_response", "response_headers", "not_found_body", "health_report", "health_status",
           "WEB_DEFAULTS", "with_web_defaults", "json_body", "query_number", "MAX_BODY_DEPTH"]

MAX_BODY_DEPTH = 64  # objects and arrays inside each other; the models nest a few levels

#: The bounds the Flask and Django integrations use unless the app sets them (docs/integrations.md).
WEB_DEFAULTS: Mapping[str, int] = {
    "operation_timeout_ms": 3_000,  # one budget per call: retries, waits and server selection included
    "server_selection_timeout_ms": 3_000,  # never more than the budget anyway
    "connect_timeout_ms": 2_000,  # opening one TCP/TLS connection
    "connect_budget_ms": 3_000,  # connect() at start-up or on first use, all its attempts
}


def with_web_defaults(config: DatabaseConfig, given: Iterable[str] = ()) -> DatabaseConfig:
    """``config`` with ``WEB_DEFAULTS`` for every bound the app did not set itself: ``given``
    (the option names its settings hold) and the URL's own query (``?timeoutMS=...``) win."""
    chosen = set(given) | config.url_settings()
    changes = {key: value for key, value in WEB_DEFAULTS.items() if key not in chosen}
    return config.replace(**changes) if changes else config

log = logging.getLogger(__name__)


class ConnectOnce:
    """A ``Database`` that connects on first use, once, under a lock: request threads share it,
    and a failed connect is tried again by the next request. Requests that waited for another
    thread's connect share its failure instead of queueing one connect budget each."""

    def __init__(self, database: Database, connected: bool = False) -> None:
        self.database = database
        self.connected = connected
        self._lock = threading.Lock()
        self._finished = 0  # connects that have ended (failed ones included)
        self._failure: errors.AstroDBError | None = None  # the last connect's error

    def get(self) -> Any:
        """The connected ``Database`` (connecting it now if nobody has yet)."""
        if not self.connected:
            finished = self._finished
            with self._lock:
                if not self.connected:
                    failure = self._failure
                    if self._finished != finished and failure is not None:  # failed while this one waited
                        raise copy.copy(failure).with_traceback(None) from failure
                    try:
                        self.database.connect()
                    except errors.AstroDBError as exc:
                        self._failure = exc
                        raise
                    finally:
                        self._finished += 1
                    self._failure = None
                    self.connected = True
        return self.database


_STATUSES: tuple[tuple[type[errors.AstroDBError], int], ...] = (
    (errors.ValidationError, 400),
    (errors.QueryError, 400),
    (errors.UnknownModelError, 400),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.DuplicateKeyError, 409),
    (errors.ConflictError, 409),
    (errors.TransactionNotSupportedError, 500),
    (errors.TransactionError, 409),
    (errors.DatabaseConnectionError, 503),
    (errors.OperationTimeoutError, 503),
    (errors.PoolExhaustedError, 503),
)
_UNAVAILABLE = "the database is unavailable right now; try again shortly"
_INTERNAL = "internal database error"
_APPLIED = ("the change was saved, but the request did not finish (its record could not be written yet); "
            "do not send it again: it would be applied twice")
_APPLIED_PART = ("the change was saved, in part or in whole, but the request did not finish; do not send it again: "
                 "what was saved would be applied twice")
_UNKNOWN = ("it is not known whether the change was saved; read the data back before sending the request "
            "again: it may have been applied")
_APPLIED_STATUS = 500  # a server failure, not "unavailable": clients must not repeat a non-idempotent request
_NOT_REPORTED = object()


def applied(exc: BaseException) -> Any:
    """What an error says about its write: True (applied), None (unknown), or ``_NOT_REPORTED``
    (the error says nothing: no write of it was applied)."""
    return getattr(exc, "applied", _NOT_REPORTED)


def status_for(exc: errors.AstroDBError) -> int:
    """The HTTP status for an astro_db error (500 when the table has no entry)."""
    if applied(exc) in (True, None):
        return _APPLIED_STATUS
    for cls, status in _STATUSES:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(exc: errors.AstroDBError, logger: logging.Logger | None = None) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` for an astro_db error; logs server-side failures on ``logger``
    (the framework's own: Flask's ``app.logger``, Django's ``django.request``), since the body
    only says "internal database error" and the detail must land where the operator looks."""
    logger = logger or log
    status = status_for(exc)
    body: dict[str, Any] = {"error": type(exc).__name__}
    outcome = applied(exc)
    if outcome in (True, None):
        logger.error("answering %d (write %s, not to be retried): %s: %s", status,
                     "applied" if outcome else "outcome unknown", type(exc).__name__, exc)
        body["applied"] = outcome
        body["message"] = (_APPLIED if isinstance(exc, errors.ChangeRecordError) else _APPLIED_PART) if outcome else _UNKNOWN
    elif status == 503:
        logger.warning("answering 503: %s", exc)
        body["message"] = _UNAVAILABLE
    elif status >= 500:
        logger.error("answering 500: %s: %s", type(exc).__name__, exc, exc_info=exc)
        body["message"] = _INTERNAL
    else:
        body["message"] = str(exc)
    if isinstance(exc, errors.ValidationError):
        body["errors"] = dict(exc.errors)
    if isinstance(exc, errors.DuplicateKeyError):
        body["fields"] = list(exc.fields)
    if isinstance(exc, errors.ConflictError):
        body["currentRevision"] = exc.current_revision
    return status, body


def response_headers(status: int) -> dict[str, str]:
    """The headers of an error response: ``Retry-After`` on a 503 only, the one status that
    tells a client nothing was applied and the same request may be sent again."""
    return {"Retry-After": "1"} if status == 503 else {}


def not_found_body(model: str, query: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of a 404 from a get-or-404 helper (ids shown, other values left out)."""
    shown = {k: v for k, v in (query or {}).items() if k in ("id", "_id")}
    what = f" with {', '.join(f'{k}={v}' for k, v in shown.items())}" if shown else ""
    return {"error": "NotFound", "message": f"no {model}{what} was found"}


def as_actor(db: Database, actor_id: Any, roles: Any) -> Any:
    """``db.as_actor(actor_id, roles=roles)`` for an actor taken from a request: an unknown
    role or a malformed id there is the client's mistake, so it becomes a ``ValidationError``
    (400, naming the reason), not a 500 ``ConfigError``."""
    try:
        return db.as_actor(actor_id, roles=roles)
    except errors.ConfigError as exc:
        if exc.key not in ("roles", "actor"):
            raise
        raise errors.ValidationError(f"invalid actor: {exc}", errors={exc.key: str(exc)}) from exc


def require_explicit_url(config: Any, allowed: bool, where: str, how: str) -> None:
    """Refuse a web app whose database would silently be the in-memory embedded backend.

    ``allowed`` is the framework's debug/testing switch; ``how`` says where to set the URL."""
    if config.url is None and not allowed:
        raise errors.ConfigError(
            f"{where}: no database URL, so every write would go to an in-memory database and be lost "
            f"at exit. {how}; a mongomock://localhost/NAME URL chooses the embedded backend on purpose",
            key="url",
        )


def health_report(db: Database, *, detail: bool = True) -> dict[str, Any]:
    """``db.health()`` (status ok / degraded / down, latency_ms, reasons, pool, ...); never
    raises. ``detail=False`` keeps only status and latency, for a health URL the public sees."""
    try:
        report = dict(db.health())
    except errors.AstroDBError as exc:
        report = down_report(exc)
    if not detail:
        report = {key: report.get(key) for key in ("status", "latency_ms")}
    return report


def down_report(exc: BaseException) -> dict[str, Any]:
    """The report for a database that could not be asked at all."""
    log.warning("health check: database down: %s", exc)
    return {"status": "down", "latency_ms": None, "reasons": [type(exc).__name__]}


def health_status(report: Mapping[str, Any]) -> int:
    """200 when the report says ok or degraded (still serving), else 503."""
    return 200 if report.get("status") in ("ok", "degraded") else 503


# --- request input ------------------------------------------------------------------------------

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_body(raw: bytes | str | None, content_type: str | None, *, want: type | None = dict) -> Any:
    """The request's JSON body, or a ``ValidationError`` (a JSON 400) saying what is wrong with it.

    Refused: a content type other than ``application/json`` (or ``application/*+json``), an
    empty body, bytes that are not JSON text (bad UTF-8 too), ``NaN``/``Infinity``, nesting
    deeper than ``MAX_BODY_DEPTH`` (Python's parser would raise ``RecursionError`` on a
    100,000-deep array), and, with ``want`` (``dict`` by default), another top-level type."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise errors.ValidationError(errors={"body": f"send Content-Type: application/json, got {media or 'none'!r}"})
    if not raw:
        raise errors.ValidationError(errors={"body": "send a JSON object; the body is empty"})
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise errors.ValidationError(errors={"body": f"nests deeper than {MAX_BODY_DEPTH} levels"}) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise errors.ValidationError(errors={"body": f"is not valid JSON: {str(exc)[:120]}"}) from None
    if _too_deep(data, MAX_BODY_DEPTH):
        raise errors.ValidationError(errors={"body": f"nests deeper than {MAX_BODY_DEPTH} levels"})
    if want is not None and not isinstance(data, want):
        wanted = "a JSON object" if want is dict else f"JSON of type {want.__name__}"
        raise errors.ValidationError(errors={"body": f"send {wanted}, got {type(data).__name__}"})
    return data


def query_number(args: Mapping[str, Any], name: str, *, integer: bool = False) -> float | int:
    """The query-string parameter ``name`` as a finite number (an ``int`` with ``integer``), or a
    ``ValidationError`` naming it: ``nan``, ``inf``, ``1e999`` and non-numbers are refused."""
    text = args[name]
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise errors.ValidationError(errors={name: f"must be a number, got {text!r}"}) from None
    if not math.isfinite(value):
        raise errors.ValidationError(errors={name: f"must be a finite number, got {text!r}"})
    if integer:
        if not value.is_integer():
            raise errors.ValidationError(errors={name: f"must be a whole number, got {text!r}"})
        return int(value)
    return value
