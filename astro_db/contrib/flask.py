"""Flask integration: ``AstroDB(app)`` or ``AstroDB()`` + ``init_app(app)``.

Each app gets one ``Database``, shared by every request thread (PyMongo's client is a
thread-safe pool). It is built from ``app.config``:

    ASTRO_DB_URL / MONGODB_URL   the URL (else $MONGODB_URL; required unless app.debug or
                                 app.testing, when the embedded backend is the default)
    ASTRO_DB_OPTIONS             DatabaseConfig options, e.g. {"maxPoolSize": 50}; the bounds not
                                 set there (nor in the URL, nor as ASTRO_DB_* variables) are
                                 the web-sized ``_http.WEB_DEFAULTS`` (3 s per call)
    ASTRO_DB_EAGER_CONNECT       connect in init_app (fail fast) instead of on first use
    ASTRO_DB_HEALTH_URL          where the health blueprint answers ("/healthz"; None: off)
    ASTRO_DB_HEALTH_DETAIL       the whole db.health() report (default) or status+latency only
    ASTRO_DB_ERROR_HANDLERS      map astro_db errors to JSON responses (default True)

By default the connection is lazy: the first ``ext.db`` connects, and a failed connect raises
``DatabaseConnectionError`` (a 503) and is retried by the next request, so the app starts
while the database is still coming up. ``ext.current_db`` acts for the request's user when an
``actor_loader`` is given (role-based access through ``db.as_actor``). ``ext.json_body()`` and
``ext.query_number(name)`` read request input: a body that cannot be parsed (not JSON, another
content type, nested too deep) and a non-finite or non-numeric query number are a JSON 400.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    has_app_context,
    has_request_context,
    jsonify,
    request,
)
from werkzeug.exceptions import NotFound

from .. import errors
from ..config import DatabaseConfig, resolve
from ..database import Database
from . import _http
from ._http import ConnectOnce

__all__ = ["AstroDB", "DocumentNotFound", "config_from_flask"]

EXTENSION_KEY = "astro_db"
ActorLoader = Callable[[], "tuple[Any, Iterable[str]] | None"]


class DocumentNotFound(NotFound):
    """A 404 with a JSON body, raised by ``ext.get_or_404`` (Flask renders it natively)."""

    def __init__(self, model: str, query: Mapping[str, Any] | None = None) -> None:
        self.body = _http.not_found_body(model, query)
        super().__init__(self.body["message"])

    def get_response(self, environ: Any = None, scope: Any = None) -> Any:
        response = jsonify(self.body)
        response.status_code = 404
        return response


class AstroDB:
    """The astro_db extension: one ``Database`` per app, health endpoint, JSON error handlers.

    ``actor_loader()`` returns ``(actor_id, roles)`` for the request, or ``None``;
    ``database`` is used instead of one built from ``app.config`` (tests, or sharing one)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        actor_loader: ActorLoader | None = None,
        database: Database | None = None,
    ) -> None:
        self.actor_loader = actor_loader
        self._database = database
        self._states: weakref.WeakKeyDictionary[Flask, ConnectOnce] = weakref.WeakKeyDictionary()
        self._app = app
        if app is not None:
            self.init_app(app)

    # --- set-up ------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Build the app's Database from ``app.config``; register health and error handlers."""
        if self._database is None:
            config = config_from_flask(app.config)
            _http.require_explicit_url(config, app.debug or app.testing, "astro_db.contrib.flask",
                                       "Set ASTRO_DB_URL or MONGODB_URL in app.config or the environment "
                                       "(the embedded default is used only when app.debug or app.testing)")
        database = self._database or Database(config)
        state = ConnectOnce(database)
        self._states[app] = state
        app.extensions[EXTENSION_KEY] = self
        if app.config.get("ASTRO_DB_EAGER_CONNECT", False):
            state.get()
        health_url = app.config.get("ASTRO_DB_HEALTH_URL", "/healthz")
        if health_url:
            app.register_blueprint(self._health_blueprint(health_url))
        if app.config.get("ASTRO_DB_ERROR_HANDLERS", True):
            app.register_error_handler(errors.AstroDBError, _error_handler)

    # --- access ------------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        """The current app's Database, connected on first use (shared by all requests)."""
        db: Database = self._state().get()
        return db

    @property
    def database(self) -> Database:
        """The current app's Database without connecting (for health checks and tooling)."""
        db: Database = self._state().database
        return db

    @property
    def current_db(self) -> Any:
        """``db`` acting for the request's user: ``db.as_actor(id, roles=...)`` when an
        ``actor_loader`` returns ``(id, roles)``; plain ``db`` when it returns ``None`` or
        outside a request. Computed once per request."""
        db = self.db
        if self.actor_loader is None or not has_request_context():
            return db
        key = f"_astro_db_actor_{id(self)}"
        if key not in g:
            setattr(g, key, self._acting_view(db))
        return getattr(g, key)

    def json_body(self, want: type | None = dict) -> Any:
        """The request's JSON body (an object by default), or a ``ValidationError``, so a JSON
        400: another content type, an empty body, text that is not JSON, ``NaN``, or nesting
        deeper than ``_http.MAX_BODY_DEPTH`` (``request.get_json()`` raises ``RecursionError``
        on a 100,000-deep array)."""
        return _http.json_body(request.get_data(cache=True), request.content_type, want=want)

    def query_number(self, name: str, *, integer: bool = False) -> float | int:
        """The query-string parameter ``name`` as a finite number, or a JSON 400 naming it."""
        return _http.query_number(request.args, name, integer=integer)

    def get_or_404(self, model: str, query: Mapping[str, Any], **options: Any) -> Any:
        """``current_db.find_one(model, query)``, or a JSON 404 (``DocumentNotFound``)."""
        found = self.current_db.find_one(model, query, **options)
        if found is None:
            raise DocumentNotFound(model, query)
        return found

    def close(self, app: Flask | None = None) -> None:
        """Disconnect an app's Database (the current app's by default)."""
        state = self._states.get(app) if app is not None else self._state()
        if state is not None:
            state.database.disconnect()
            state.connected = False

    # --- internals ---------------------------------------------------------------------------

    def _state(self) -> ConnectOnce:
        app = current_app._get_current_object() if has_app_context() or self._app is None else self._app  # type: ignore[attr-defined]
        state = self._states.get(app)
        if state is None:
            raise errors.ConfigError("AstroDB is not initialised on this app: call ext.init_app(app)")
        return state

    def _acting_view(self, db: Database) -> Any:
        actor = self.actor_loader() if self.actor_loader else None
        if actor is None:
            return db
        if not (isinstance(actor, tuple) and len(actor) == 2) or isinstance(actor[1], str):
            raise errors.ConfigError(
                f"actor_loader must return (actor_id, roles) or None, got {type(actor).__name__}"
            )
        actor_id, roles = actor
        return _http.as_actor(db, actor_id, list(roles))

    def _health_blueprint(self, url: str) -> Blueprint:
        bp = Blueprint("astro_db", __name__)

        @bp.route(url, methods=["GET", "HEAD"])
        def healthz() -> Any:
            detail = current_app.config.get("ASTRO_DB_HEALTH_DETAIL", True)
            report = _http.health_report(self.database, detail=detail)  # connects, within a bound
            response = jsonify(report)
            response.status_code = _http.health_status(report)
            response.headers["Cache-Control"] = "no-store"
            return response

        return bp


def config_from_flask(config: Mapping[str, Any]) -> DatabaseConfig:
    """A DatabaseConfig from Flask settings: ASTRO_DB_URL or MONGODB_URL plus ASTRO_DB_OPTIONS,
    over the environment (``astro_db.config.resolve``), with the web-sized bounds
    (``_http.WEB_DEFAULTS``) wherever neither set one."""
    options = config.get("ASTRO_DB_OPTIONS") or {}
    if not isinstance(options, Mapping):
        raise errors.ConfigError("ASTRO_DB_OPTIONS must be a dict of DatabaseConfig options", key="ASTRO_DB_OPTIONS")
    url = config.get("ASTRO_DB_URL") or config.get("MONGODB_URL")
    given = DatabaseConfig.option_names(options) | DatabaseConfig.env_names()
    return _http.with_web_defaults(resolve({"url": url, "options": options} if url else {"options": options}), given)


def _error_handler(exc: errors.AstroDBError) -> Any:
    status, body = _http.error_response(exc, current_app.logger)
    response = jsonify(body)
    response.status_code = status
    response.headers.update(_http.response_headers(status))
    return response
