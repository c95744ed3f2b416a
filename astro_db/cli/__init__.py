"""``astro-db``: the operator's command line, a thin shell over the Python API.

Each command group lives in its own module here and only parses arguments and prints; the work
is done by the library, so every command is also callable from code. Errors print one line and
exit non-zero, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..config import EMBEDDED_URL
from ..errors import AstroDBError, ConfigError, scrub
from ..registry import load_models

if TYPE_CHECKING:  # pragma: no cover
    from ..database import Database

__all__ = ["main", "cli", "pass_ctx", "CliContext", "NO_URL"]

NO_URL = (
    "no database URL: pass --url mongodb://HOST:PORT/DB or set MONGODB_URL "
    "(--url mongomock://localhost/NAME for a throwaway in-memory database)"
)


class CliContext:
    """Options shared by every command: the URL, JSON output, and the connected Database."""

    def __init__(self, url: str | None, as_json: bool, models: str | None = None) -> None:
        self.url = url
        self.as_json = as_json
        self.models = models  # the app's own models, "package.module:Class,..." (registry.load_models)
        self._db: Database | None = None

    def database(self, connect: bool = True, *, data: bool = True, **overrides: Any) -> Any:
        """The ``Database`` for ``--url`` / ``MONGODB_URL`` (connected unless ``connect=False``).

        A command that reads or writes data (``data=True``) refuses to run without a URL: the
        embedded default would back up nothing, or restore into memory that vanishes at exit.
        ``--url mongomock://localhost/NAME`` chooses the embedded backend on purpose."""
        if data and not self.url:
            raise ConfigError(NO_URL)
        if self._db is None:
            from ..database import Database

            overrides.setdefault("connect_attempts", 1)
            # an operator waiting on a dead server wants an answer in seconds, not the app's 30 s
            overrides.setdefault("server_selection_timeout_ms", 5000)
            overrides.setdefault("ensure_indexes", False)
            overrides.setdefault("models", load_models(self.models))
            if self.url:
                self._db = Database(self.url, **overrides)
            else:  # a command that only needs a database name (roles, shard plan): no data touched
                self._db = Database(EMBEDDED_URL, **overrides)
            if connect:
                self._db.connect()
        return self._db

    def emit(self, data: Any, human: Callable[[Any], str] | None = None) -> None:
        """Print ``data`` as JSON with ``--json``, else as ``human(data)`` (or JSON when no formatter)."""
        if self.as_json or human is None:
            text = json.dumps(data, indent=2, default=str, sort_keys=False)
        else:
            text = human(data)
        click.echo(scrub(text))  # a URL in a report never shows its password or session token

    def close(self) -> None:
        if self._db is not None:
            self._db.disconnect()


pass_ctx = click.make_pass_decorator(CliContext)


class _Group(click.Group):
    """Turns every astro_db error into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AstroDBError as exc:
            click.echo(f"error: {scrub(str(exc))}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="astro-db")
@click.option(
    "--url", envvar="MONGODB_URL", help="MongoDB URL (default: $MONGODB_URL); required by every command that reads or writes data."
)
@click.option(
    "--models", envvar="ASTRO_DB_MODELS",
    help="The app's own models besides the built-in ones: package.module:Class (or package.module for all it "
    "defines), comma-separated (default: $ASTRO_DB_MODELS).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("-v", "--verbose", count=True, help="Log to stderr (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, url: str | None, models: str | None, as_json: bool, verbose: int) -> None:
    """astro_db operations: health, stats, indexes, backups and more."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO, stream=sys.stderr)
    obj = CliContext(url, as_json, models)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


def _load_commands() -> None:
    """Import the command modules, which register themselves on ``cli``."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_load_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="astro-db")
