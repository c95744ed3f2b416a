"""MongoDB's standard field encryption (client-side field level encryption, explicit API) on
both backends: every value type round trips, ciphertext is bound to its document and field (the
issue 23 attack), each user's values are under a data key of their own, shredding it makes them
unreadable everywhere (live document, change record, restored backup, query cache) while the
other users' stay, data key creation is race-safe, old envelopes read and are upgraded by a
resumable command, rotation rewraps data keys, and no key material or plaintext is logged."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import uuid

import pytest
from bson import ObjectId
from bson.binary import Binary

from astro_db import Database, DatabaseConfig, backup
from astro_db.errors import ConfigError, EncryptionError
from astro_db.models import AstroDocument
from astro_db.models.embedded import AstroEmbeddedDocument
from astro_db.models.fields import EmbeddedDocumentField, NumberField, TextField, UserRefField, UTCDateTimeField
from astro_db.security import rotation
from astro_db.security.crypto import FieldCrypto, Keyring, is_unreadable, key_id, new_key
from astro_db.security.vault import HKDF_INFO, SHARED_KEY, KeyVault, derive_local_master_key, is_sealed

KEY = new_key()
VAULT = "encryption.__keyVault"


class Secret(AstroDocument):
    """A user's document with randomly encrypted fields of several types."""

    user_id = UserRefField(db_field="userId", required=True)
    label = TextField(required=True)
    text = TextField(sensitive=True)
    other = TextField(sensitive=True)
    amount = NumberField(sensitive=True)
    when = UTCDateTimeField(sensitive=True)
    meta = {"collection": "secrets", "owner": "user_id"}


class Sender(AstroEmbeddedDocument):
    user_id = UserRefField(db_field="userId", required=True)


class Letter(AstroDocument):
    """A user's document whose owner sits in an embedded document."""

    sender = EmbeddedDocumentField(Sender, required=True)
    text = TextField(sensitive=True)
    meta = {"collection": "letters", "owner": "sender.user_id"}


class Memo(AstroDocument):
    """A model no user owns: its values go under the shared data key."""

    text = TextField(sensitive=True)
    meta = {"collection": "memos"}


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "embedded":
        return f"mongomock://localhost/fle{uuid.uuid4().hex[:8]}"
    return str(request.getfixturevalue("live_url"))


def _open(url: str, **overrides) -> Database:
    options = {"models": [Secret, Memo, Letter], "encryption_key": KEY, "server_selection_timeout_ms": 5000,
               "key_vault_namespace": VAULT, **overrides}
    return Database(url, **options).connect()


@pytest.fixture(params=["embedded", pytest.param("live", marks=pytest.mark.live)])
def fdb(request):
    # one live server serves the whole session: each test gets a key vault of its own there (as a
    # deployment of its own would), so one test's rotation never rewraps another's keys
    vault = VAULT if request.param == "embedded" else f"fle_{uuid.uuid4().hex[:8]}.__keyVault"
    database = _open(_url(request, request.param), key_vault_namespace=vault)
    database.test_backend = request.param
    yield database
    database.disconnect()


def _user(db: Database, name: str = "Ann"):
    return db.create("User", {"email": f"{name.lower()}{uuid.uuid4().hex[:6]}@example.com", "name": name})


def _secret(user_id, **overrides) -> dict:
    return {"userId": str(user_id), "label": "l", "text": "the victim's secret", "other": "x", "amount": 42.5,
            "when": dt.datetime(1990, 5, 1, 10, 30, tzinfo=dt.timezone.utc), **overrides}


def _raw(db: Database, doc_id) -> dict:
    return db.mongo["secrets"].find_one({"_id": doc_id})


def _vault(db: Database):
    name, _, coll = db.config.key_vault_namespace.partition(".")
    return db.mongo.client[name][coll]


def _key_of(db: Database, user_id) -> Binary:
    key = _vault(db).find_one({"keyAltNames": {"$in": [f"user:{user_id}"]}})
    return Binary.from_uuid(key["_id"]) if isinstance(key["_id"], uuid.UUID) else key["_id"]


def _crypto(db: Database) -> FieldCrypto:
    return db.executor.runtime.crypto


# --- the format -------------------------------------------------------------------------------


def test_every_value_type_round_trips(fdb):
    ann = _user(fdb)
    made = fdb.create(Secret, _secret(ann.id))
    raw = _raw(fdb, made.id)
    assert all(is_sealed(raw[f]) for f in ("text", "other", "amount", "when"))  # Binary subtype 6
    assert b"victim" not in raw["text"] and raw["label"] == "l"
    back = fdb.find_one(Secret, {"id": made.id})
    assert (back.text, back.amount, back.when) == ("the victim's secret", 42.5, made.when)
    vault = _crypto(fdb).vault
    for value in ["Paris", "", 7, 2**40, 2.5, True, dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc), [1, "a", {"b": 2}],
                  {"nested": {"x": [1.5]}}, ObjectId(), None]:
        sealed = vault.seal(value, "c/1/p", f"user:{ann.id}")
        assert sealed.subtype == 6 and vault.open(sealed, "c/1/p") == value


def test_a_value_is_sealed_under_its_owners_data_key(fdb):
    ann, bo = _user(fdb, "Ann"), _user(fdb, "Bo")
    a, b = fdb.create(Secret, _secret(ann.id)), fdb.create(Secret, _secret(bo.id))
    ka, kb = _key_of(fdb, ann.id), _key_of(fdb, bo.id)
    assert ka != kb
    # the random algorithm's ciphertext: 1 byte of algorithm, then the data key's UUID
    assert bytes(_raw(fdb, a.id)["text"])[1:17] == bytes(ka)
    assert bytes(_raw(fdb, b.id)["text"])[1:17] == bytes(kb)
    memo = fdb.create(Memo, {"text": "no owner"})
    shared = _vault(fdb).find_one({"keyAltNames": {"$in": [SHARED_KEY]}})
    assert bytes(fdb.mongo["memos"].find_one({"_id": memo.id})["text"])[1:17] == bytes(Binary.from_uuid(shared["_id"])
                                                                                          if isinstance(shared["_id"], uuid.UUID)
                                                                                          else shared["_id"])
    assert fdb.find_one(Memo, {"id": memo.id}).text == "no owner"


def test_updates_seal_each_document_for_its_own_id_and_owner(fdb):
    ann, bo = _user(fdb, "Ann"), _user(fdb, "Bo")
    a, b = fdb.create(Secret, _secret(ann.id)), fdb.create(Secret, _secret(bo.id))
    assert fdb.update_many(Secret, {"label": "l"}, {"$set": {"text": "same for both", "amount": 1}}) == 2
    assert bytes(_raw(fdb, a.id)["text"])[1:17] == bytes(_key_of(fdb, ann.id))
    assert bytes(_raw(fdb, b.id)["text"])[1:17] == bytes(_key_of(fdb, bo.id))
    assert [(s.text, s.amount) for s in fdb.find(Secret, sort=[("_id", 1)])] == [("same for both", 1)] * 2
    assert fdb.update(Secret, {"id": a.id}, {"other": "changed"}).other == "changed"
    assert fdb.find_one(Secret, {"id": b.id}).other == "x"


def test_a_document_moved_to_another_owner_has_every_value_sealed_again_under_the_new_owners_key(fdb, tmp_path, request):
    """An admin (the app) moves a document from Ann to Bo, by ``update`` or ``update_many``,
    changing the owner alone or with a sealed value: every value it holds is then under Bo's
    data key. Before, the values the update did not set stayed under Ann's: erasing Ann made
    Bo's document unreadable, and erasing Bo left them readable in a backup restored without
    the erasure ledger."""
    ann, bo = _user(fdb, "Ann"), _user(fdb, "Bo")
    one, two, three = (fdb.create(Secret, _secret(ann.id, label=label)) for label in ("one", "two", "three"))
    moved = fdb.update(Secret, {"id": one.id}, {"userId": bo.id})
    assert moved.user_id == bo.id and (moved.text, moved.amount) == ("the victim's secret", 42.5)
    fdb.update(Secret, {"id": two.id}, {"userId": bo.id, "other": "set in the move"})
    assert fdb.update_many(Secret, {"label": "three"}, {"userId": bo.id}) == 1
    kb = bytes(_key_of(fdb, bo.id))
    for doc_id in (one.id, two.id, three.id):
        raw = _raw(fdb, doc_id)
        assert all(bytes(raw[f])[1:17] == kb for f in ("text", "other", "amount", "when")), doc_id
    assert [e["action"] for e in fdb.audit_trail(Secret, one.id)] == ["create", "update"]
    repo = tmp_path / "repo"
    backup.backup(fdb, repo)  # before any erasure: no ledger in it
    fdb.erase_user(ann.id)
    assert [(s.label, s.text, s.other) for s in fdb.find(Secret, {}, sort=[("label", 1)])] == [
        ("one", "the victim's secret", "x"), ("three", "the victim's secret", "x"),
        ("two", "the victim's secret", "set in the move")]
    fdb.erase_user(bo.id)
    target = _restore_target(fdb, request)
    try:
        backup.restore(repo, target)
        restored = target.find(Secret, {}, sort=[("label", 1)])
        assert len(restored) == 3 and all(is_unreadable(s.text) and is_unreadable(s.other) for s in restored)
    finally:
        target.disconnect()


def test_a_model_whose_owner_sits_in_an_embedded_document_is_personal_data_of_that_owner(fdb, tmp_path, request):
    """``meta["owner"] = "sender.user_id"``: the values are sealed under the sender's data key
    (they went under the shared key, which no erasure shreds) and move with the sender; each
    sender's export holds the records of the revisions she owned; and a restore keeps an erased
    sender's letters out (the ledger's rule read the owner as a top-level field)."""
    ann, bo = _user(fdb, "Ann"), _user(fdb, "Bo")
    letter = fdb.create(Letter, {"sender": {"userId": ann.id}, "text": "Ann's letter"})
    raw = fdb.mongo["letters"].find_one({"_id": letter.id})
    assert bytes(raw["text"])[1:17] == bytes(_key_of(fdb, ann.id))
    moved = fdb.update(Letter, {"id": letter.id}, {"sender": {"userId": bo.id}})
    assert moved.sender.user_id == bo.id and moved.text == "Ann's letter"
    assert bytes(fdb.mongo["letters"].find_one({"_id": letter.id})["text"])[1:17] == bytes(_key_of(fdb, bo.id))
    fdb.create(Letter, {"sender": {"userId": ann.id}, "text": "Ann keeps this one"})
    exported = {who: fdb.export_user(who.id)["models"]["Letter"] for who in (ann, bo)}
    assert [d["text"] for d in exported[bo]["documents"]] == ["Ann's letter"]
    assert [c["action"] for c in exported[bo]["changes"]] == ["update"]  # the revision Bo owned
    assert sorted(c["action"] for c in exported[ann]["changes"]) == ["create", "create"]  # hers, both letters' first
    repo = tmp_path / "repo"
    first = backup.backup(fdb, repo)["id"]  # both senders' letters
    fdb.erase_user(bo.id)
    assert fdb.mongo["letters"].count_documents({}) == 1  # the cascade follows the nested owner too
    backup.backup(fdb, repo)  # its ledger names Bo
    target = _restore_target(fdb, request)
    try:
        report = backup.restore(repo, target, set_id=first)
        assert [x.text for x in target.find(Letter, {})] == ["Ann keeps this one"]
        assert report["skipped"].get("letters") == 1
    finally:
        target.disconnect()


def test_a_move_to_another_owner_of_a_document_whose_values_do_not_open_is_refused_and_writes_nothing(fdb):
    ann, bo = _user(fdb, "Ann"), _user(fdb, "Bo")
    doc = fdb.create(Secret, _secret(ann.id))
    fdb.mongo["secrets"].update_one({"_id": doc.id}, {"$set": {"text": _raw(fdb, fdb.create(Secret, _secret(bo.id)).id)["text"]}})
    before = _raw(fdb, doc.id)
    with pytest.raises(EncryptionError, match="UNREADABLE"):
        fdb.update(Secret, {"id": doc.id}, {"userId": bo.id})
    assert _raw(fdb, doc.id) == before


# --- the binding (issue 23: ciphertext moved between documents) ----------------------------


def test_ciphertext_copied_over_another_users_field_reads_unreadable(fdb, caplog):
    victim, mallory = _user(fdb, "Vic"), _user(fdb, "Mal")
    theirs = fdb.create(Secret, _secret(victim.id))
    mine = fdb.create(Secret, _secret(mallory.id, text="mine"))
    fdb.mongo["secrets"].update_one({"_id": mine.id}, {"$set": {"text": _raw(fdb, theirs.id)["text"]}})
    before = _crypto(fdb).stats()["unreadable"]
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        as_mallory = fdb.as_actor(str(mallory.id), "self")
        assert is_unreadable(as_mallory.find_one(Secret, {"id": mine.id}).text)
        assert is_unreadable(fdb.find_one(Secret, {"id": mine.id}).text)
    assert _crypto(fdb).stats()["unreadable"] == before + 2
    assert "belongs to another document or field" in caplog.text and "victim" not in caplog.text
    assert fdb.find_one(Secret, {"id": theirs.id}).text == "the victim's secret"


def test_ciphertext_copied_into_a_document_whose_string_id_spells_the_victims_id_reads_unreadable(fdb):
    """A writer other than astro_db (anyone with write access to the collection, as above) makes
    a document of its own whose ``_id`` is the *string* of the victim's ObjectId, owned by
    Mallory, and copies the victim's ciphertext into it. Before, the binding wrote both ``_id``s
    as the same 24 hex digits, so the value opened there and Mallory read the victim's secret
    through the service. Now a string that prints like another type's ``_id`` is written in
    quotes (``vault.id_text``): it reads ``UNREADABLE``, and the victim's own reads stay whole."""
    victim, mallory = _user(fdb, "Vic"), _user(fdb, "Mal")
    theirs = fdb.create(Secret, _secret(victim.id))
    planted = {**_raw(fdb, theirs.id), "_id": str(theirs.id), "userId": mallory.id}
    if fdb.test_backend != "embedded":
        pytest.skip("nx-27017 takes a string _id for the ObjectId it spells (one document): needs real MongoDB")
    fdb.mongo["secrets"].insert_one(planted)
    as_mallory = fdb.as_actor(str(mallory.id), "self")
    for read in (as_mallory.find_one(Secret, {"label": "l"}), as_mallory.find_one(Secret, {"label": "l"}, lean=True)):
        for name in ("text", "other", "amount", "when"):
            assert is_unreadable(read[name] if isinstance(read, dict) else getattr(read, name)), name
    assert fdb.find_one(Secret, {"id": theirs.id}).text == "the victim's secret"


def test_values_sealed_under_an_ambiguous_string_id_by_an_earlier_release_are_bound_again_by_rotate_key(fdb):
    """A document whose ``_id`` is a string that printed like another type's (here ``"1"``)
    holds values an earlier release sealed under the binding it wrote then (``c/1/path``, now
    ``c/"1"/path``): they read ``UNREADABLE`` until ``rotate-key`` opens them under the earlier
    binding and seals them again, and only those sealed under the document owner's own data key:
    a value sealed under another user's key (copied there) is left as it is."""
    from astro_db.security.vault import legacy_binding

    ann, bob = _user(fdb, "Ann"), _user(fdb, "Bob")
    crypto = _crypto(fdb)
    vault = crypto.vault
    seal_old = lambda value, path, owner: vault.seal(  # noqa: E731 - the earlier release's seal
        value, legacy_binding("secrets", "1", path), f"user:{owner}")
    fdb.mongo["secrets"].insert_one({"_id": "1", "userId": ann.id, "label": "earlier",
                                     "text": seal_old("ann's own", "text", ann.id),
                                     "other": seal_old("bob's, copied here", "other", bob.id)})
    before = fdb.find_one(Secret, {"label": "earlier"})
    assert is_unreadable(before.text) and is_unreadable(before.other)
    fdb.rotate_keys()
    after = fdb.find_one(Secret, {"label": "earlier"})
    assert after.text == "ann's own" and is_unreadable(after.other)
    assert bytes(_raw(fdb, "1")["text"][1:17]) == bytes(_key_of(fdb, ann.id))  # sealed again under its owner's key
    stored = _raw(fdb, "1")
    fdb.rotate_keys()  # nothing left it can bind: a rerun leaves the document alone
    assert _raw(fdb, "1")["text"] == stored["text"]


def test_a_document_whose_owner_field_was_changed_outside_the_service_does_not_open_for_its_new_owner(fdb):
    """The service opens a value for whoever the owner field names, and scopes a self actor by
    that field. A writer with access to the collection (not to any key) sets the owner of the
    victim's document to Mallory: before, every read path opened the victim's values for her, a
    confused deputy. Now a sealed value opens only under the data key of the owner its document
    names (the ciphertext names its data key; ``KeyVault.open``'s subject): every path reads
    ``UNREADABLE``, whatever the projection, and the victim's other documents stay whole."""
    victim, mallory = _user(fdb, "Vic"), _user(fdb, "Mal")
    theirs = fdb.create(Secret, _secret(victim.id))
    kept = fdb.create(Secret, _secret(victim.id, label="kept"))
    fdb.mongo["secrets"].update_one({"_id": theirs.id}, {"$set": {"userId": mallory.id}})
    me = fdb.as_actor(str(mallory.id), "self")
    reads = {
        "find_one": me.find_one(Secret, {"id": theirs.id}, lean=True),
        "find_one, instance": me.find_one(Secret, {"id": theirs.id}).to_dict(),
        "find, projection": me.find(Secret, {}, projection={"text": 1, "when": 1}, lean=True)[0],
        "find, _id left out": me.find(Secret, {}, projection={"text": 1, "_id": 0}, lean=True)[0],
        "find, owner left out": me.find(Secret, {}, projection={"userId": 0}, lean=True)[0],
        "iter_find": next(iter(me.iter_find(Secret, {}, projection={"text": 1}, lean=True))),
        "page": me.page(Secret, {}, sort=[("label", 1)], limit=5, projection={"text": 1}, lean=True).items[0],
        "aggregate, owner left out": me.aggregate(Secret, [{"$project": {"text": 1}}])[0],
        "aggregate, owner kept": me.aggregate(Secret, [{"$project": {"text": 1, "userId": 1}}])[0],
    }
    for how, doc in reads.items():
        assert is_unreadable(doc["text"]) and "the victim's secret" not in repr(doc), how
    assert fdb.find_one(Secret, {"id": kept.id}).text == "the victim's secret"
    assert fdb.as_actor(str(victim.id), "self").find_one(Secret, {"id": kept.id}).text == "the victim's secret"


def test_reads_that_leave_out_the_owner_or_the_id_still_open_and_return_what_they_asked_for(fdb):
    """What opening needs (``_id``, the owner field) is fetched and dropped again: a projection
    gets exactly its fields, opened, on every read path, an owner inside an embedded document too."""
    ann = _user(fdb, "Ann")
    made = fdb.create(Secret, _secret(ann.id))
    letter = fdb.create(Letter, {"sender": {"userId": ann.id}, "text": "dear"})
    assert fdb.find_one(Secret, {"id": made.id}, projection={"text": 1}, lean=True) == {
        "_id": made.id, "text": "the victim's secret"}
    assert fdb.find_one(Secret, {"id": made.id}, projection={"text": 1, "_id": 0}, lean=True) == {"text": "the victim's secret"}
    no_owner = fdb.find_one(Secret, {"id": made.id}, projection={"userId": 0}, lean=True)
    assert "userId" not in no_owner and no_owner["text"] == "the victim's secret" and no_owner["amount"] == 42.5
    assert fdb.find(Secret, {}, projection={"amount": 1}, lean=True) == [{"_id": made.id, "amount": 42.5}]
    assert list(fdb.iter_find(Secret, {}, projection={"text": 1}, lean=True)) == [{"_id": made.id, "text": "the victim's secret"}]
    assert fdb.page(Secret, {}, sort=[("label", 1)], limit=2, projection={"text": 1}, lean=True).items == [
        {"_id": made.id, "label": "l", "text": "the victim's secret"}]
    assert fdb.find_one(Letter, {"id": letter.id}, projection={"text": 1}, lean=True) == {"_id": letter.id, "text": "dear"}
    assert fdb.find_one(Letter, {"id": letter.id}, projection={"sender": 0}, lean=True)["text"] == "dear"
    assert "sender" not in fdb.find_one(Letter, {"id": letter.id}, projection={"sender": 0}, lean=True)
    if fdb.test_backend == "live" and not os.environ.get("ASTRO_DB_TEST_URI"):
        return  # nx-27017's $project answers an ObjectId _id as its hex string (docs/testing.md): another _id
    assert fdb.aggregate(Secret, [{"$project": {"text": 1}}]) == [{"_id": made.id, "text": "the victim's secret"}]
    assert fdb.aggregate(Letter, [{"$project": {"text": 1}}]) == [{"_id": letter.id, "text": "dear"}]


def test_ciphertext_moved_to_another_field_reads_unreadable(fdb):
    ann = _user(fdb)
    made = fdb.create(Secret, _secret(ann.id))
    fdb.mongo["secrets"].update_one({"_id": made.id}, {"$set": {"other": _raw(fdb, made.id)["text"]}})
    back = fdb.find_one(Secret, {"id": made.id})
    assert is_unreadable(back.other) and back.text == "the victim's secret"


def test_tampered_ciphertext_reads_unreadable(fdb):
    made = fdb.create(Secret, _secret(_user(fdb).id))
    data = bytearray(_raw(fdb, made.id)["text"])
    data[-1] ^= 1
    fdb.mongo["secrets"].update_one({"_id": made.id}, {"$set": {"text": Binary(bytes(data), 6)}})
    assert is_unreadable(fdb.find_one(Secret, {"id": made.id}).text)


def test_unreadable_is_never_written_back(fdb):
    made = fdb.create(Secret, _secret(_user(fdb).id))
    fdb.mongo["secrets"].update_one({"_id": made.id}, {"$set": {"other": _raw(fdb, made.id)["text"]}})
    back = fdb.find_one(Secret, {"id": made.id})
    with pytest.raises(EncryptionError, match="refusing to write back UNREADABLE"):
        fdb.update(Secret, {"id": made.id}, {"other": back.other})


# --- shredding ---------------------------------------------------------------------------------


def test_shred_makes_one_users_values_unreadable_everywhere_and_keeps_the_others(fdb, tmp_path, request):
    ann, bo = _user(fdb, "Ann"), _user(fdb, "Bo")
    a, b = fdb.create(Secret, _secret(ann.id, text="ann's text")), fdb.create(Secret, _secret(bo.id, text="bo's text"))
    assert fdb.find(Secret, {"id": a.id}, cache=True)[0].text == "ann's text"  # a cached answer
    backup.backup(fdb, tmp_path / "repo")
    assert _crypto(fdb).shred(ann.id) == 1
    assert _crypto(fdb).shred(ann.id) == 0  # nothing left to delete
    # the live document, at once (no 60 s key cache), and the cached answer
    live = fdb.find_one(Secret, {"id": a.id})
    assert all(is_unreadable(v) for v in (live.text, live.other)) and live.label == "l"
    assert is_unreadable(fdb.find(Secret, {"id": a.id}, cache=True)[0].text)
    # the change record's post-image
    info = fdb.executor.runtime.registry.resolve("Secret")
    record = fdb.mongo["astroChanges"].find_one({"c": "secrets", "doc._id": a.id}) or next(
        r for r in fdb.mongo["astroChanges"].find() if (r.get("doc") or {}).get("_id") == a.id)
    assert is_unreadable(_crypto(fdb).open_document(info, record["doc"])["text"])
    # a backup taken before the shred, restored into a fresh database
    target = _restore_target(fdb, request)
    try:
        backup.restore(tmp_path / "repo", target)
        assert is_unreadable(target.find_one(Secret, {"id": a.id}).text)
        assert target.find_one(Secret, {"id": b.id}).text == "bo's text"
    finally:
        target.disconnect()
    assert fdb.find_one(Secret, {"id": b.id}).text == "bo's text"


def _restore_target(fdb: Database, request: pytest.FixtureRequest) -> Database:
    """A fresh database to restore into, reading ``fdb``'s key vault as it is now."""
    if fdb.test_backend == "embedded":
        target = _open(_url(request, "embedded"), key_vault_namespace=fdb.config.key_vault_namespace)
        keys = list(_vault(fdb).find())  # an embedded store is private: bring the cluster's vault
        if keys:
            _vault(target).insert_many(keys)
        return target
    name = f"astro_test_{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: fdb.mongo.client.drop_database(name))
    return _open(request.getfixturevalue("live_server").url(name), key_vault_namespace=fdb.config.key_vault_namespace)


def test_shred_needs_field_level_encryption():
    crypto = FieldCrypto(None, [], allow_plaintext=True)
    with pytest.raises(EncryptionError) as err:
        crypto.shred(ObjectId())
    assert str(err.value) == "shredding needs field level encryption: configure encryption_key or kms_providers"


# --- data keys: the creation race, the master key ----------------------------------------------


def test_two_creators_of_one_data_key_at_once_end_with_one_key(fdb):
    alt = f"user:{ObjectId()}"
    first = _crypto(fdb).vault
    second = KeyVault.from_config(fdb.config, _crypto(fdb).keyring.keys)
    second.attach(first._collection, first._runner)  # another engine on the same key vault, through the run step
    made: list = []

    def the_other_creator_wins(names: str) -> None:  # runs between A's key creation and its insert
        if names == alt and not made:
            made.append(second.key_for(alt))

    first.reset()
    first.before_insert = the_other_creator_wins
    try:
        winner = first.key_for(alt)
    finally:
        first.before_insert = None
        first.reset()
    assert made and winner == made[0]
    assert _vault(fdb).count_documents({"keyAltNames": {"$in": [alt]}}) == 1
    sealed = first.seal("v", "c/1/p", alt)
    assert second.open(sealed, "c/1/p") == "v"


def test_the_local_master_key_is_derived_from_encryption_key_by_hkdf():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = base64.b64decode(KEY)
    expected = HKDF(algorithm=hashes.SHA512(), length=96, salt=None, info=b"astro_db:csfle:local-master-key:v1").derive(raw)
    assert HKDF_INFO == b"astro_db:csfle:local-master-key:v1" and derive_local_master_key(raw) == expected
    vault = KeyVault.from_config(DatabaseConfig(encryption_key=KEY), Keyring.from_config(DatabaseConfig(encryption_key=KEY)).keys)
    assert vault.provider == f"local:{key_id(raw)}"


def test_kms_configuration_is_checked_and_never_shown():
    raw96 = base64.b64encode(b"k" * 96).decode()
    config = DatabaseConfig(kms_providers={"local": {"key": raw96}},
                            kms_master_key={"provider": "local"})
    vault = KeyVault.from_config(config, [])
    assert vault.provider == "local" and raw96 not in repr(vault) and raw96 not in repr(config)
    assert "kms_providers='***'" in repr(config)
    with pytest.raises(ConfigError, match="unknown KMS provider"):
        KeyVault.from_config(DatabaseConfig(kms_providers={"vault9": {}}), [])
    with pytest.raises(ConfigError, match="needs the master key options"):
        KeyVault.from_config(DatabaseConfig(kms_providers={"aws": {"accessKeyId": "A", "secretAccessKey": "S"}},
                                            kms_master_key={"provider": "aws"}), [])
    with pytest.raises(ConfigError, match="must be 96 bytes"):
        KeyVault.from_config(DatabaseConfig(kms_providers={"local": {"key": base64.b64encode(b"k" * 50).decode()}}), [])
    with pytest.raises(ConfigError, match="kms_master_key needs kms_providers"):
        KeyVault.from_config(DatabaseConfig(kms_master_key={"provider": "aws", "key": "k"}), [])
    with pytest.raises(ConfigError, match="key_vault_namespace"):
        DatabaseConfig(key_vault_namespace="no-dot")
    env = DatabaseConfig.from_env({"ASTRO_DB_KMS_PROVIDERS": json.dumps({"local": {"key": raw96}})})
    assert env.kms_providers == {"local": {"key": raw96}}


# --- rotation: rewrapping, and the upgrade of old envelopes ---------------------------------


def test_rotation_rewraps_the_data_keys_and_rewrites_no_document(fdb):
    if fdb.test_backend == "embedded":
        pytest.skip("an embedded store is private to its Database: rotation is swapped in on the same one below")
    made = fdb.create(Secret, _secret(_user(fdb).id))
    stored = _raw(fdb, made.id)
    fresh = new_key()
    rotated = _open(fdb.config.url, encryption_key=fresh, encryption_keys=KEY, key_vault_namespace=fdb.config.key_vault_namespace)
    try:
        report = rotated.rotate_keys()
        assert report["Secret"] == 0 and report["dataKeys"] >= 1
        assert _raw(rotated, made.id) == stored  # not rewritten
        assert rotated.rotate_keys(dry_run=True)["dataKeys"] == 0  # done: a rerun has nothing to rewrap
    finally:
        rotated.disconnect()
    only_new = _open(fdb.config.url, encryption_key=fresh,  # the old master key is gone
                     key_vault_namespace=fdb.config.key_vault_namespace)
    try:
        assert only_new.find_one(Secret, {"id": made.id}).text == "the victim's secret"
    finally:
        only_new.disconnect()


def test_rotation_rewraps_on_the_embedded_backend_too(fdb):
    made = fdb.create(Secret, _secret(_user(fdb).id))
    stored = _raw(fdb, made.id)
    fresh = new_key()
    runtime = fdb.executor.runtime
    runtime.crypto = FieldCrypto.from_config(fdb.config.replace(encryption_key=fresh, encryption_keys=KEY), runtime.registry)
    report = fdb.rotate_keys()
    assert report["Secret"] == 0 and report["dataKeys"] >= 1 and _raw(fdb, made.id) == stored
    runtime.crypto = FieldCrypto.from_config(fdb.config.replace(encryption_key=fresh, encryption_keys=None), runtime.registry)
    assert fdb.find_one(Secret, {"id": made.id}).text == "the victim's secret"
    providers = {k["masterKey"]["provider"] for k in _vault(fdb).find()}
    assert f"local:{key_id(base64.b64decode(KEY))}" not in providers


def _legacy(fdb) -> FieldCrypto:
    """The previous release's engine: envelopes only (``enc:v2`` for random fields)."""
    runtime = fdb.executor.runtime
    return FieldCrypto(Keyring.from_config(fdb.config), runtime.registry, allow_plaintext=False)


def test_old_envelopes_read_and_are_upgraded_by_a_resumable_command(fdb, monkeypatch):
    runtime = fdb.executor.runtime
    current = runtime.crypto
    ann = _user(fdb)
    runtime.crypto = _legacy(fdb)
    old = [fdb.create(Secret, _secret(ann.id, text=f"old {n}", amount=None, when=None)) for n in range(6)]
    assert all(_raw(fdb, s.id)["text"].startswith("enc:v2:") for s in old)
    runtime.crypto = current
    assert [s.text for s in fdb.find(Secret, sort=[("_id", 1)])] == [f"old {n}" for n in range(6)]  # still read
    writes: list = []
    real = rotation._rewrite

    def killed_after_three(*args):  # (crypto, run, announce, info, coll, doc, stale)
        if len(writes) == 3:
            raise KeyboardInterrupt("killed")  # the process dies half way
        writes.append(args[5]["_id"])
        return real(*args)

    monkeypatch.setattr(rotation, "_rewrite", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        fdb.rotate_keys(batch_size=2)
    assert sum(is_sealed(_raw(fdb, s.id)["text"]) for s in old) == 3
    monkeypatch.setattr(rotation, "_rewrite", lambda *a: (writes.append(a[5]["_id"]), real(*a))[1])
    assert fdb.rotate_keys(batch_size=2)["Secret"] == 3  # the rerun does the rest
    assert sorted(writes) == sorted(s.id for s in old)  # each document rewritten once
    assert fdb.rotate_keys()["Secret"] == 0
    for s in old:
        raw = _raw(fdb, s.id)
        assert is_sealed(raw["text"]) and bytes(raw["text"])[1:17] == bytes(_key_of(fdb, ann.id))
    assert [s.text for s in fdb.find(Secret, sort=[("_id", 1)])] == [f"old {n}" for n in range(6)]


# --- logs ----------------------------------------------------------------------------------------


def test_no_key_material_or_plaintext_in_any_log_line(fdb, caplog):
    raw_key = base64.b64decode(KEY)
    master = derive_local_master_key(raw_key)
    secrets = {"PLAINTEXT-7f3a", KEY, raw_key.hex(), base64.b64encode(master).decode(), master.hex()}
    with caplog.at_level(logging.DEBUG):
        ann = _user(fdb)
        made = fdb.create(Secret, _secret(ann.id, text="PLAINTEXT-7f3a"))
        fdb.update(Secret, {"id": made.id}, {"other": "PLAINTEXT-7f3a"})
        fdb.find(Secret)
        fdb.mongo["secrets"].update_one({"_id": made.id}, {"$set": {"other": _raw(fdb, made.id)["text"]}})
        fdb.find_one(Secret, {"id": made.id})
        _crypto(fdb).shred(ann.id)
        fdb.find_one(Secret, {"id": made.id})
        fdb.rotate_keys()
        repr(_crypto(fdb).vault)
    lines = [r.getMessage() for r in caplog.records]
    assert f"shredded 1 data key(s) of user:{ann.id}" in lines
    assert not [line for line in lines if any(s in line for s in secrets)]


# --- the standard: PyMongo's own ClientEncryption reads and writes the format ------------------


def test_pymongos_client_encryption_opens_what_astro_db_sealed_and_writes_what_it_opens(fdb):
    if fdb.test_backend == "embedded":
        pytest.skip("ClientEncryption needs a MongoClient whose key vault returns RawBSONDocument (a server)")
    import pymongo
    from bson.codec_options import CodecOptions
    from pymongo.encryption import Algorithm, ClientEncryption

    ann = _user(fdb)
    made = fdb.create(Secret, _secret(ann.id))
    kid = key_id(base64.b64decode(KEY))
    client = pymongo.MongoClient(fdb.config.url, serverSelectionTimeoutMS=5000)
    ce = ClientEncryption({f"local:{kid}": {"key": derive_local_master_key(base64.b64decode(KEY))}},
                          fdb.config.key_vault_namespace, client, CodecOptions(tz_aware=True))
    try:  # what the Node service does with the Node driver's ClientEncryption, the same calls
        opened = ce.decrypt(_raw(fdb, made.id)["text"])
        assert opened == {"v": "the victim's secret", "b": f"secrets/{made.id}/text"}
        written = ce.encrypt({"v": "written by the service", "b": f"secrets/{made.id}/text"},
                             Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Random, key_alt_name=f"user:{ann.id}")
        client.get_default_database()["secrets"].update_one({"_id": made.id}, {"$set": {"text": written}})
        assert fdb.find_one(Secret, {"id": made.id}).text == "written by the service"
    finally:
        ce.close()
        client.close()


def test_a_key_vault_that_does_not_answer_fails_the_call_and_never_reads_as_unreadable(fdb):
    from pymongo.errors import ServerSelectionTimeoutError

    from astro_db.errors import DatabaseConnectionError

    ann = _user(fdb)
    made = fdb.create(Secret, _secret(ann.id))
    vault = _crypto(fdb).vault
    reachable = vault._collection

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ServerSelectionTimeoutError("key vault host down")
            return fail

    vault.reset()  # no data key cached: the next use must read the vault
    vault._collection = lambda: Down()
    try:
        with pytest.raises(DatabaseConnectionError, match="could not read the key vault"):
            fdb.find_one(Secret, {"id": made.id})
        with pytest.raises(DatabaseConnectionError, match="key vault"):
            fdb.create(Secret, _secret(_user(fdb, "Bo").id))
    finally:
        vault._collection = reachable
    assert fdb.count(Secret, {}) == 1  # the refused create sent nothing
    assert fdb.find_one(Secret, {"id": made.id}).text == "the victim's secret"


def test_the_key_vault_is_never_part_of_a_backup_set_even_in_the_same_database(request, tmp_path):
    url = _url(request, "embedded")
    name = url.rsplit("/", 1)[1]
    db = _open(url, key_vault_namespace=f"{name}.__keyVault")  # the vault beside the data
    try:
        made = db.create(Secret, _secret(_user(db).id))
        assert db.mongo["__keyVault"].count_documents({}) == 1
        summary = backup.backup(db, tmp_path / "repo")
        assert summary["documents"]["secrets"] == 1 and "__keyVault" not in summary["documents"]
        assert is_sealed(_raw(db, made.id)["text"])
    finally:
        db.disconnect()
