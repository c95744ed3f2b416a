"""``astro-db rotate-key`` and ``astro-db new-key``: field-encryption key management.

Keys come from the environment only (``ASTRO_DB_ENCRYPTION_KEY`` the new, primary key;
``ASTRO_DB_ENCRYPTION_KEYS`` the old ones, comma-separated), never from the command line,
where they would land in shell history and the process list.
"""

from __future__ import annotations

import os
from typing import Any

import click

from ..security.crypto import new_key
from ..security.rotation import DATA_KEYS
from . import cli, pass_ctx


@cli.command("rotate-key")
@click.option("--dry-run", is_flag=True, help="Only count the data keys and documents that need it.")
@pass_ctx
def rotate_key(ctx: Any, dry_run: bool) -> None:
    """Rewrap the data keys and upgrade old envelopes under ASTRO_DB_ENCRYPTION_KEY (old keys in
    ASTRO_DB_ENCRYPTION_KEYS); resumable: run it again to finish an interrupted run."""
    keys = {
        "encryption_key": os.environ.get("ASTRO_DB_ENCRYPTION_KEY") or None,
        "encryption_keys": os.environ.get("ASTRO_DB_ENCRYPTION_KEYS") or None,
    }
    report = ctx.database(**keys).rotate_keys(dry_run=dry_run)
    verb = "to re-encrypt" if dry_run else "re-encrypted"

    def lines(r: dict[str, int]) -> str:
        return "\n".join(f"data keys: {n} {'to rewrap' if dry_run else 'rewrapped'}" if name == DATA_KEYS
                         else f"{name}: {n} document(s) {verb}" for name, n in r.items()) or "nothing encrypted"

    ctx.emit(report, lines)


@cli.command("new-key")
def new_key_command() -> None:
    """Print a fresh random encryption key (base64 of 32 bytes)."""
    click.echo(new_key())
