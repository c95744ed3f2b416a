"""Email addresses are stored and compared in one canonical form (NFKC, lower-cased), so two
spellings of one address cannot open two accounts, and a lookup by either finds it."""

from __future__ import annotations

import unicodedata
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from astro_db import errors
from astro_db.models.fields import canonical_email


def spellings(local: str = "josé"):
    """The same address composed (NFC), decomposed (NFD) and in fullwidth letters."""
    tag = uuid.uuid4().hex[:6]
    nfc = unicodedata.normalize("NFC", f"{local}.{tag}@example.com")
    nfd = unicodedata.normalize("NFD", nfc)
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in nfc)  # ASCII -> FF01..FF5E
    assert nfc != nfd and len({nfc, nfd, fullwidth}) == 3
    return nfc, nfd, fullwidth


@pytest.mark.parametrize("second", ["nfd", "fullwidth", "upper"])
def test_a_second_spelling_of_an_address_is_a_duplicate(db, second):
    nfc, nfd, fullwidth = spellings()
    first = db.create("User", {"email": nfc, "name": "José"})
    other = {"nfd": nfd, "fullwidth": fullwidth, "upper": nfc.upper()}[second]
    with pytest.raises(errors.DuplicateKeyError) as caught:
        db.create("User", {"email": other, "name": "Impostor"})
    assert caught.value.fields == ("email",)
    assert db.count("User", {}) == 1
    assert db.collection("User").find_one({"_id": first.id})["email"] == nfc  # stored composed


def test_the_first_spelling_decides_nothing_the_stored_form_is_canonical(db):
    nfc, nfd, fullwidth = spellings()
    user = db.create("User", {"email": fullwidth, "name": "José"})
    assert user.email == nfc
    assert db.collection("User").find_one({"_id": user.id})["email"] == nfc
    with pytest.raises(errors.DuplicateKeyError):
        db.create("User", {"email": nfd, "name": "Impostor"})
    result = db.create_many("User", [{"email": nfc, "name": "Impostor"}])
    assert not result and len(result.failed) == 1


def test_a_lookup_by_any_spelling_finds_the_account(db):
    nfc, nfd, fullwidth = spellings()
    user = db.create("User", {"email": nfc, "name": "José"})
    for spelling in (nfd, fullwidth, nfc.upper(), f"  {nfd}  "):
        assert db.find_one("User", {"email": spelling}, strict=True).id == user.id  # a login
        assert db.count("User", {"email": {"$in": [spelling]}}) == 1
        assert db.count("User", {"email": {"$ne": spelling}}) == 0
        assert db.count("User", {"email": {"$nin": [spelling]}}) == 0
    assert db.update("User", {"email": nfd}, {"name": "José B"}).name == "José B"
    assert db.update_many("User", {"email": {"$eq": fullwidth}}, {"status": "inactive"}) == 1


def test_an_update_to_another_accounts_spelling_is_a_duplicate(db):
    nfc, nfd, _ = spellings()
    db.create("User", {"email": nfc, "name": "José"})
    other = db.create("User", {"email": f"ann.{uuid.uuid4().hex[:6]}@example.com", "name": "Ann"})
    with pytest.raises(errors.DuplicateKeyError) as taken:  # nx-27017: its findAndModify patched (Bug 17)
        db.update("User", {"id": other.id}, {"email": nfd})
    assert taken.value.fields == ("email",)
    changed = db.update("User", {"id": other.id}, {"$set": {"email": "ＡＮＮ.new@example.com"}})
    assert changed.email == "ann.new@example.com"


@pytest.mark.parametrize(("given", "stored"), [
    ("josé@example.com", "josé@example.com"),
    (unicodedata.normalize("NFD", "josé@example.com"), "josé@example.com"),
    ("ｊｏｓé＠ｅｘａｍｐｌｅ．ｃｏｍ", "josé@example.com"),
    ("  Ann@Example.COM ", "ann@example.com"),
    ("ᴬnn@example.com", "ann@example.com"),  # NFKC gives a capital: folded again
    ("ﬁ@example.com", "fi@example.com"),  # a ligature is its letters
])
def test_the_canonical_form(given, stored):
    assert canonical_email(given) == stored


@given(st.text(max_size=40))
def test_the_canonical_form_is_a_fixed_point(text):
    once = canonical_email(text)
    assert canonical_email(once) == once
    assert once == unicodedata.normalize("NFKC", once) and once == once.strip()
