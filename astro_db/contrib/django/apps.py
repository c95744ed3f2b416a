"""The Django app: reads ``settings.ASTRO_DB``, connects once in ``ready()``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.apps import AppConfig
from django.conf import settings

from ... import errors
from ...config import DatabaseConfig, resolve
from ...database import Database
from .. import _http
from .._http import ConnectOnce

__all__ = ["AstroDBConfig", "config_from_settings"]

log = logging.getLogger(__name__)


class AstroDBConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    """``INSTALLED_APPS += ["astro_db.contrib.django"]``: one ``Database`` per process.

    Without a URL (``settings.ASTRO_DB`` or ``MONGODB_URL``) ``ready()`` raises ``ConfigError``
    unless ``settings.DEBUG``: a production app must not write into memory that dies with it.

    ``ready()`` connects once, within the web-sized connect budget (3 s unless the settings say
    otherwise: ``_http.WEB_DEFAULTS``). A failed connect is logged, not raised, so ``manage.py``
    and the server still start (``/healthz`` then answers 503); ``get_database()`` retries it."""

    name = "astro_db.contrib.django"
    label = "astro_db"
    verbose_name = "astro_db"
    default = True

    def ready(self) -> None:
        config = config_from_settings(getattr(settings, "ASTRO_DB", None))
        _http.require_explicit_url(config, bool(settings.DEBUG), "astro_db.contrib.django",
                                   "Set settings.ASTRO_DB or MONGODB_URL (the embedded default is used only when DEBUG)")
        self._db = ConnectOnce(Database(config))
        try:
            self.get_database()
        except errors.AstroDBError as exc:
            log.error("astro_db could not connect at start-up (will retry on first use): %s", exc)

    @property
    def database(self) -> Database:
        db: Database = self._db.database
        return db

    @property
    def connected(self) -> bool:
        return self._db.connected

    def get_database(self) -> Database:
        """The connected ``Database``; connects now if ``ready()`` could not."""
        db: Database = self._db.get()
        return db

    def use_database(self, database: Database, connected: bool = True) -> tuple[Database, bool]:
        """Swap in another ``Database`` (test helpers); returns the previous one and its state."""
        previous = (self._db.database, self._db.connected)
        self._db = ConnectOnce(database, connected)
        return previous


def config_from_settings(value: Any) -> DatabaseConfig:
    """``settings.ASTRO_DB``: a URL, a seed-shaped dict, a ``DatabaseConfig`` or ``None``.

    The settings outrank the environment (``astro_db.config.resolve``, the rule ``Database()``
    applies); every bound neither they, the URL's query nor an ``ASTRO_DB_*`` variable sets gets
    its web-sized value (``_http.WEB_DEFAULTS``); a ``DatabaseConfig`` given as it is is used as
    it is."""
    if value is None or isinstance(value, str):
        return _http.with_web_defaults(resolve(value), DatabaseConfig.env_names())
    if isinstance(value, DatabaseConfig):
        return value
    if isinstance(value, Mapping):
        options = value.get("options") or {}
        flat = {k: v for k, v in value.items() if k not in ("url", "uri", "options", "models")}
        given = DatabaseConfig.option_names(flat) | DatabaseConfig.option_names(options)
        return _http.with_web_defaults(resolve(value), given | DatabaseConfig.env_names())
    raise errors.ConfigError(
        f"settings.ASTRO_DB must be a URL or a dict like {{'url': ..., 'options': {{...}}}}, "
        f"got {type(value).__name__}",
        key="ASTRO_DB",
    )
