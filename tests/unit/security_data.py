"""Shared helpers of the security tests: fresh embedded databases, sample data, snapshots."""

from __future__ import annotations

import base64
import os
import uuid

from astro_db import Database

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()


def new_db(url: str | None = None, **overrides) -> Database:
    """A connected Database on a fresh embedded database (or ``url``)."""
    return Database(url or f"mongomock://localhost/sec{uuid.uuid4().hex[:8]}", **overrides).connect()


def user_data(**overrides) -> dict:
    return {"email": f"ann.{uuid.uuid4().hex[:6]}@example.com", "name": "Ann Example", **overrides}


def chart_data(user_id, place: str = "London", **overrides) -> dict:
    return {
        "userId": str(user_id),
        "birthData": {
            "date": "1990-05-01T10:30:00Z",
            "timezone": "Europe/London",
            "location": {"name": place, "coordinates": [-0.1276, 51.5072]},
        },
        **overrides,
    }


def snapshot(db: Database) -> dict:
    """Every collection's full content (to show a refused call wrote nothing)."""
    return {name: list(db.mongo[name].find()) for name in sorted(db.mongo.list_collection_names())}


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def is_fle(value, *plaintexts: str) -> bool:
    """Whether a stored value is field level encryption ciphertext (BSON Binary subtype 6) whose
    bytes hold none of ``plaintexts`` (what the disk, a backup or a dump sees of it)."""
    from bson.binary import Binary

    return (isinstance(value, Binary) and value.subtype == 6
            and not any(p.encode() in bytes(value) for p in plaintexts))


def old_envelope(plaintext: str, collection: str = "birthCharts", path: str = "birthData.location.name",
                 key: str = KEY_A, deterministic: bool = True) -> str:
    """How an earlier release stored ``plaintext`` (an ``enc:e2`` / ``enc:v2`` string envelope)."""
    from astro_db.security.crypto import Keyring, parse_key

    return Keyring(parse_key(key)).seal(plaintext, collection, path, deterministic)


def data_key_providers(db: Database) -> set[str]:
    """The KMS providers the key vault's data keys are wrapped under (``local:<key id>``)."""
    vault = db.executor.runtime.crypto.vault
    assert vault is not None
    database, _, coll = vault.namespace.partition(".")
    return {k["masterKey"]["provider"] for k in db.mongo.client[database][coll].find()}
