"""A duplicate key names the caller's fields, with encryption on as off, on every write path.

With a key configured, a second account under one email is refused by the blind index
``emailIndex_1`` (the ``email`` itself is ciphertext, never equal twice). The error named
``emailIndex``, a stored field the caller never wrote, so an app that tells "email taken" by
``error.fields == ("email",)`` worked in development (no key: ``email_1`` refuses it) and not in
production. Every path a duplicate can come back by is checked: a create (one command or two),
a ``create_many`` (small, and packed from 32 documents), an update and an ``upsert_many``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from bson import ObjectId

from astro_db import Database, errors
from astro_db.security.crypto import new_key


@pytest.fixture(params=[pytest.param(("embedded", True), id="embedded-key"),
                        pytest.param(("embedded", False), id="embedded-plain"),
                        pytest.param(("live", True), id="live-key", marks=pytest.mark.live),
                        pytest.param(("live", False), id="live-plain", marks=pytest.mark.live)])
def db(request: Any) -> Any:
    backend, keyed = request.param
    url = (f"mongomock://localhost/t{uuid.uuid4().hex[:8]}" if backend == "embedded"
           else request.getfixturevalue("live_url"))
    keys: dict[str, Any] = {"encryption_key": new_key()} if keyed else {"allow_plaintext_sensitive": True}
    database = Database(url, server_selection_timeout_ms=5000, **keys).connect()
    yield database
    database.disconnect()


def user(email: str) -> dict[str, Any]:
    return {"email": email, "name": "N"}


def test_every_write_path_names_the_email_not_its_blind_index(db: Any) -> None:
    taken = f"t{uuid.uuid4().hex[:6]}@example.com"
    ann = db.create("User", user(taken))
    with pytest.raises(errors.DuplicateKeyError) as created:
        db.create("User", user(taken))
    few = db.create_many("User", [user(taken)])
    many = db.create_many("User", [user(taken)] + [user(f"m{n}{uuid.uuid4().hex[:6]}@example.com") for n in range(40)])
    bob = db.create("User", user(f"b{uuid.uuid4().hex[:6]}@example.com"))
    with pytest.raises(errors.DuplicateKeyError) as updated:
        db.update("User", {"id": bob.id}, {"email": taken})
    upserted = db.upsert_many("User", [{**user(taken), "id": ObjectId()}], on="id")
    refused = [created.value, few.failed[0][1], many.failed[0][1], updated.value, upserted.failed[0][1]]
    assert [type(error) for error in refused] == [errors.DuplicateKeyError] * 5
    assert [error.fields for error in refused] == [("email",)] * 5
    assert all("the same email already exists" in str(error) and "emailIndex" not in str(error) for error in refused)
    assert db.count("User", {"email": taken}) == 1 and db.find_one("User", {"email": taken}).id == ann.id
