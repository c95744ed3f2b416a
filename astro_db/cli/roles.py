"""``astro-db roles``: print the MongoDB role and user for a least-privilege application user."""

from __future__ import annotations

from typing import Any

import click

from ..security.mongo_roles import as_mongosh, key_vault_as_mongosh, key_vault_commands, role_commands
from . import cli, pass_ctx


@cli.command("roles")
@click.option("--database", "database", default=None, help="Database name (default: the URL's).")
@click.option("--role", default="astroDbApp", show_default=True, help="Name of the role to create.")
@click.option("--user", default="astro_app", show_default=True, help="Name of the application user.")
@click.option("--no-index-management", is_flag=True,
              help="Leave out createIndex (and listIndexes, but on the models' collections: upsert_many needs it); "
                   "set ensure_indexes=False.")
@pass_ctx
def roles(ctx: Any, database: str | None, role: str, user: str, no_index_management: bool) -> None:
    """Print createRole / createUser for the app's least-privilege MongoDB user, and its role on the
    key vault (find, insert, createIndex: no update or remove), for an admin to run."""
    config = ctx.database(connect=False, data=False).config
    name = database or config.database_name
    commands = role_commands(name, role=role, user=user, manage_indexes=not no_index_management)
    vault = key_vault_commands(name, config.key_vault_namespace or "encryption.__keyVault", role=f"{role}KeyVault", user=user)
    ctx.emit({"app": commands, "keyVault": [{"db": db, "command": c} for db, c in vault]},
             lambda out: as_mongosh(name, commands) + "\n" + key_vault_as_mongosh(vault))
