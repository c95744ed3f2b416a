"""``manage.py astro_db <command> ...``: the astro-db CLI on the project's configured database.

Everything after ``astro_db`` goes to the ``astro-db`` Click group unchanged
(``manage.py astro_db health``, ``manage.py astro_db --json indexes list``,
``manage.py astro_db --help``), with ``--url`` set from ``settings.ASTRO_DB``. Only the URL is
passed: options given separately in the settings dict (e.g. a password) do not reach the CLI.
With the embedded backend the CLI gets an in-memory database of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from typing import Any

import click
from django.core.management.base import BaseCommand, CommandError, CommandParser

__all__ = ["Command"]

_DJANGO_OPTIONS = ("--settings", "--pythonpath")


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type information
    help = "Run an astro-db command (health, indexes, backup, ...) against settings.ASTRO_DB."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """A parser that leaves every argument to Click (``--json``, ``--help``, ``-v`` included)."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.parse_args = functools.partial(_pass_through, parser)
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="astro-db command and options")

    def run_from_argv(self, argv: list[str]) -> None:
        """From the shell: hand everything after the command name to Click, exit with its code."""
        sys.exit(self._run_cli(_strip_django_options(argv[2:]), standalone=True))

    def handle(self, *args: Any, **options: Any) -> None:
        """From ``call_command("astro_db", "--json", "indexes", "list")``: output goes to
        ``self.stdout``; a non-zero exit status raises ``CommandError`` with that returncode."""
        cli_args = list(options.get("cli_args") or args)
        with contextlib.redirect_stdout(self.stdout._out), contextlib.redirect_stderr(self.stderr._out):
            code = self._run_cli(cli_args, standalone=False)
        if code:
            raise CommandError(f"astro-db exited with status {code}", returncode=code)

    def _run_cli(self, args: list[str], *, standalone: bool) -> int:
        from astro_db.cli import cli

        url = configured_url()
        full = (["--url", url] if url else []) + args
        try:
            result = cli.main(args=full, prog_name="manage.py astro_db", standalone_mode=standalone)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except click.Abort:
            return 1
        return result if isinstance(result, int) else 0


def _pass_through(parser: CommandParser, args: Any = None, namespace: Any = None) -> argparse.Namespace:
    """Django's defaults for its own options; every given argument kept for Click."""
    parsed: argparse.Namespace = argparse.ArgumentParser.parse_args(parser, [], namespace)
    parsed.cli_args = [str(a) for a in (args or [])]
    return parsed


def _strip_django_options(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in _DJANGO_OPTIONS)):
            out.append(arg)
    return out


def configured_url() -> str | None:
    """The project's database URL (the embedded backend as a ``mongomock://`` URL)."""
    from django.apps import apps

    config = apps.get_app_config("astro_db").database.config
    if config.url is None:  # no URL: the embedded backend
        return f"mongomock://localhost/{config.database_name}"
    url: str | None = config.url
    return url
