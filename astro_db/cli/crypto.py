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
from . import cli, pass_ctx


@cli.command("rotate-key")
@click.option("--dry-run", is_flag=True, help="Only count the documents that need re-encrypting.")
@pass_ctx
def rotate_key(ctx: Any, dry_run: bool) -> None:
    """Re-encrypt encrypted fields with ASTRO_DB_ENCRYPTION_KEY (old keys in ASTRO_DB_ENCRYPTION_KEYS)."""
    keys = {
        "encryption_key": os.environ.get("ASTRO_DB_ENCRYPTION_KEY") or None,
        "encryption_keys": os.environ.get("ASTRO_DB_ENCRYPTION_KEYS") or None,
    }
    report = ctx.database(**keys).rotate_keys(dry_run=dry_run)
    verb = "to re-encrypt" if dry_run else "re-encrypted"
    ctx.emit(report, lambda r: "\n".join(f"{model}: {n} document(s) {verb}" for model, n in r.items()) or "nothing encrypted")


@cli.command("new-key")
def new_key_command() -> None:
    """Print a fresh random encryption key (base64 of 32 bytes)."""
    click.echo(new_key())
