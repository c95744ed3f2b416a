"""MongoDB server-side least privilege: the role and user the application should connect as.

``role_commands`` returns the ``createRole`` / ``createUser`` command documents for an
application user that can read and write the models' collections (the four built-in ones, or
the ``models`` given: an app passes ``db.executor.runtime.registry`` to include its own) and append to (and read)
the service's own collections, and nothing else: no drop, no other collection, no user
administration. The audit log gets no update or remove, so the application cannot rewrite its
own trail (TTL expiry is done by the server). ``as_mongosh`` renders them for ``mongosh``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..changes import CHANGES_COLLECTION
from ..models import MODELS
from .audit import AUDIT_COLLECTION

__all__ = ["role_commands", "as_mongosh", "key_vault_commands", "key_vault_as_mongosh", "APP_ACTIONS",
           "SERVICE_COLLECTIONS", "KEY_VAULT_ACTIONS"]

APP_ACTIONS = ["find", "insert", "update", "remove"]
INDEX_ACTIONS = ["createIndex", "listIndexes"]  # for ensure_indexes at connect
# on the models' collections whatever the index management: upsert_many looks up the unique
# index of its key (ops.writes.WriteRunner.require_unique) and refuses without one
LOOKUP_ACTIONS = ["listIndexes"]
APPEND_ONLY_ACTIONS = ["find", "insert"]
# The key vault (field level encryption's data keys, a database of its own): the app reads keys,
# creates a user's key on that user's first write, and makes the unique keyAltNames index on
# first use; it never updates or removes one (rewrapping them, ``rotate-key``, and deleting a
# user's, ``erase-user``, are an operator's jobs). So the app's credentials cannot rename a data
# key: which owner a key belongs to (its alt name) is what a read checks a sealed value against.
KEY_VAULT_ACTIONS = ["find", "insert", "createIndex"]
# The service's own collections: the change records (audit trail and journal, append-only; pruning
# their post-images is an operator's job) and the audit log of earlier versions (read, append-only);
# the erasure ledger read only (``export_user`` reports an erasure): erasing a user scrubs change
# records and writes the ledger, an operator's job with the operator's credentials (``astro-db
# erase-user``), so the app's role keeps the records append-only.
ERASURES_COLLECTION = "astroErasures"  # astro_db.personal.ERASURES_COLLECTION
SERVICE_COLLECTIONS = {CHANGES_COLLECTION: APPEND_ONLY_ACTIONS, AUDIT_COLLECTION: APPEND_ONLY_ACTIONS,
                       ERASURES_COLLECTION: ["find"]}


def role_commands(database: str, *, role: str = "astroDbApp", user: str = "astro_app",
                  manage_indexes: bool = True, models: Iterable[Any] | None = None) -> list[dict[str, Any]]:
    """``[createRole, createUser]`` command documents (the password is left for the operator).
    ``models``: model classes or registry ``ModelInfo`` entries (the built-in models by default)."""
    extra = INDEX_ACTIONS if manage_indexes else []
    models_extra = extra or LOOKUP_ACTIONS
    collections = [getattr(m, "collection", None) or m._get_collection_name()
                   for m in (MODELS.values() if models is None else models)]
    privileges = [
        {"resource": {"db": database, "collection": name}, "actions": APP_ACTIONS + models_extra}
        for name in collections
    ]
    privileges += [
        {"resource": {"db": database, "collection": name}, "actions": actions + extra}
        for name, actions in SERVICE_COLLECTIONS.items()
    ]
    return [
        {"createRole": role, "privileges": privileges, "roles": []},
        {"createUser": user, "pwd": "<password>", "roles": [{"role": role, "db": database}]},
    ]


def key_vault_commands(database: str, namespace: str = "encryption.__keyVault", *, role: str = "astroDbKeyVault",
                       user: str = "astro_app") -> list[tuple[str, dict[str, Any]]]:
    """``[(vault database, createRole), (database, grantRolesToUser)]``: the app user's role on
    the key vault ``namespace`` (``KEY_VAULT_ACTIONS``), made in the vault's database (a role
    grants privileges on its own database only, ``admin``'s apart) and given to the user of
    ``role_commands``. Each command is run in the database it is paired with."""
    vault_db, _, coll = namespace.partition(".")
    return [
        (vault_db, {"createRole": role, "privileges": [
            {"resource": {"db": vault_db, "collection": coll}, "actions": list(KEY_VAULT_ACTIONS)}], "roles": []}),
        (database, {"grantRolesToUser": user, "roles": [{"role": role, "db": vault_db}]}),
    ]


def key_vault_as_mongosh(commands: list[tuple[str, dict[str, Any]]]) -> str:
    """``key_vault_commands`` as mongosh lines, each run in its database."""
    return "\n".join(f"db.getSiblingDB({json.dumps(name)}).runCommand({json.dumps(command, indent=2)})"
                     for name, command in commands)


def as_mongosh(database: str, commands: list[dict[str, Any]]) -> str:
    """The commands as a mongosh script (``passwordPrompt()`` asks for the password)."""
    lines = [f"use {database}"]
    for command in commands:
        text = json.dumps(command, indent=2)
        if "createUser" in command:
            text = text.replace('"<password>"', "passwordPrompt()")
        lines.append(f"db.runCommand({text})")
    return "\n".join(lines)
