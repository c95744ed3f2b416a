"""Field encryption: ciphertext at rest, plaintext through the service, rotation, clear errors."""

from __future__ import annotations

import base64
import logging
import os
import threading
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from astro_db import DatabaseConfig
from astro_db.cli import cli
from astro_db.errors import ConfigError, EncryptionError, QueryError
from astro_db.security.crypto import Keyring, is_unreadable, key_id, parse_key
from astro_db.security.rotation import rotate_keys

from .security_data import (
    KEY_A,
    KEY_B,
    chart_data,
    data_key_providers,
    is_fle,
    new_db,
    old_envelope,
    random_key,
    user_data,
)

PLACE = "Stratford-upon-Avon"


@pytest.fixture
def url():
    import uuid

    return f"mongomock://localhost/enc{uuid.uuid4().hex[:8]}"


@pytest.fixture
def db(url):
    database = new_db(url, encryption_key=KEY_A)
    yield database
    database.disconnect()


def rekey(db, **keys):
    """The same embedded data seen with other keys (an embedded store lives in one client)."""
    from astro_db.security.crypto import FieldCrypto

    db.executor.runtime.crypto = FieldCrypto.from_config(db.config.replace(**keys), db.executor.runtime.registry)
    return db


def raw_place(db, chart_id):
    return db.collection("BirthChart").find_one({"_id": chart_id})["birthData"]["location"]["name"]


@pytest.fixture
def chart(db):
    user = db.create("User", user_data())
    return db.create("BirthChart", chart_data(user.id, place=PLACE))


def test_the_raw_collection_holds_ciphertext_and_the_service_plaintext(db, chart):
    stored = raw_place(db, chart.id)
    assert is_fle(stored, PLACE)  # field level encryption, the plaintext nowhere in its bytes
    raw = db.collection("BirthChart").find_one({"_id": chart.id})
    assert is_fle(raw["birthData"]["date"]) and len(raw["birthData"]["location"]["nameIndex"]) == 43  # + blind index
    assert chart.birth_data.location.name == PLACE
    assert db.find_one("BirthChart", {"id": chart.id}).birth_data.location.name == PLACE
    assert db.find("BirthChart", lean=True)[0]["birthData"]["location"]["name"] == PLACE
    assert db.aggregate("BirthChart", [{"$project": {"birthData": 1}}])[0]["birthData"]["location"]["name"] == PLACE
    # moved by $project: not a declared path any more, so it stays sealed (deliberately)
    assert db.aggregate("BirthChart", [{"$project": {"p": "$birthData.location.name"}}])[0]["p"] == stored


def test_every_write_path_encrypts(db):
    user = db.create("User", user_data())
    made = db.create_many("BirthChart", [chart_data(user.id, place="Oslo"), chart_data(user.id, place="Rome")])
    db.update("BirthChart", {"id": made[0].id}, {"birthData.location.name": "Bergen"})
    db.update_many("BirthChart", {"id": made[1].id}, {"$set": {"birthData.location": {"name": "Milan", "coordinates": [9.19, 45.46]}}})
    raw = [raw_place(db, c.id) for c in made]
    assert all(is_fle(v, "Oslo", "Rome", "Bergen", "Milan") for v in raw)
    assert [c.birth_data.location.name for c in db.find("BirthChart", sort=[("_id", 1)])] == ["Bergen", "Milan"]
    assert db.update("BirthChart", {"id": made[0].id}, {"houseSystem": "koch"}).birth_data.location.name == "Bergen"


def test_a_deterministic_field_stays_queryable_by_equality(db, chart):
    assert db.find_one("BirthChart", {"birthData.location.name": PLACE}).id == chart.id
    assert db.count("BirthChart", {"birthData.location.name": {"$in": [PLACE, "Paris"]}}) == 1
    assert db.count("BirthChart", {"birthData.location.name": {"$ne": PLACE}}) == 0
    assert db.find_one("BirthChart", {"birthData.location.name": "Paris"}) is None
    with pytest.raises(QueryError):
        db.find("BirthChart", {"birthData.location.name": {"$regex": "^Strat"}})


def test_a_random_nonce_field_refuses_queries_on_its_value(db):
    import dataclasses

    from astro_db.security import crypto

    # the same models with no field declared queryable (BirthChart's meta["queryable"] left out)
    plain = [dataclasses.replace(i, declaration=dataclasses.replace(i.declaration, queryable=frozenset()))
             for i in db.executor.runtime.registry]
    fresh = crypto.FieldCrypto(db.executor.runtime.crypto.keyring, plain)
    info = db.executor.runtime.registry.resolve("BirthChart")
    sealed = [fresh.seal_document(info, {"birthData": {"location": {"name": PLACE}}}) for _ in range(2)]
    assert sealed[0] != sealed[1] and sealed[0]["birthData"]["location"]["name"].startswith("enc:v2:")
    with pytest.raises(QueryError):
        fresh.seal_filter(info, {"birthData.location.name": PLACE})
    assert fresh.seal_filter(info, {"birthData.location.name": {"$exists": True}})


def test_rotation_keeps_data_readable_and_re_encrypts_with_the_new_key(db, chart):
    rotated = rekey(db, encryption_key=KEY_B, encryption_keys=KEY_A)
    assert rotated.find_one("BirthChart").birth_data.location.name == PLACE  # old key still reads
    assert rotated.find_one("BirthChart", {"birthData.location.name": PLACE}) is not None
    before = raw_place(rotated, chart.id)
    assert data_key_providers(rotated) == {f"local:{key_id(base64.b64decode(KEY_A))}"}
    # the data key is rewrapped under the new key's provider; the blind indexes (the email's,
    # the birth place's) are rewritten under the new key; no ciphertext needs rewriting
    stale = {"BirthChart": 1, "PlanetaryInsight": 0, "TimingRecommendation": 0, "User": 1, "dataKeys": 1}
    assert rotate_keys(rotated, dry_run=True) == stale
    assert data_key_providers(rotated) == {f"local:{key_id(base64.b64decode(KEY_A))}"}  # a dry run changes nothing
    assert rotate_keys(rotated) == stale
    assert data_key_providers(rotated) == {f"local:{key_id(base64.b64decode(KEY_B))}"}
    assert raw_place(rotated, chart.id) == before  # the same ciphertext, its data key rewrapped
    assert rotate_keys(rotated) == dict.fromkeys(stale, 0)
    only_new = rekey(db, encryption_key=KEY_B, encryption_keys=None)
    assert only_new.find_one("BirthChart").birth_data.location.name == PLACE
    assert only_new.audit_trail("BirthChart", chart.id)[-1]["actor"] == "astro-db:rotate-key"


def test_rotation_reads_in_batches_by_id_and_rewrites_every_document(db):
    """Memory stays flat: the documents are read ``batch_size`` at a time in ``_id`` order, each
    batch one read, never the whole collection at once."""
    from astro_db.security import rotation

    user = db.create("User", user_data())
    charts = [db.create("BirthChart", chart_data(user.id, place=f"{PLACE} {i}")) for i in range(10)]
    rotated = rekey(db, encryption_key=KEY_B, encryption_keys=KEY_A)
    reads: list[int] = []
    read_batch = rotation._read_batch

    def counted(*args):
        batch = read_batch(*args)
        if args[0].name == "birthCharts":  # (every model with encrypted fields is read)
            reads.append(len(batch))
        return batch

    rotation._read_batch = counted
    try:
        assert rotate_keys(rotated, batch_size=3) == {"BirthChart": 10, "PlanetaryInsight": 0,
                                                      "TimingRecommendation": 0, "User": 1, "dataKeys": 1}
    finally:
        rotation._read_batch = read_batch
    assert reads == [3, 3, 3, 1]
    assert all(is_fle(raw_place(rotated, c.id)) for c in charts)
    assert data_key_providers(rotated) == {f"local:{key_id(base64.b64decode(KEY_B))}"}
    assert [len(rotated.find("BirthChart", {"birthData.location.name": f"{PLACE} {i}"})) for i in range(10)] == [1] * 10
    assert sorted(c.birth_data.location.name for c in rotated.find("BirthChart")) == sorted(f"{PLACE} {i}" for i in range(10))


def test_rotation_encrypts_plaintext_written_before_encryption(url):
    plain = new_db(url)
    user = plain.create("User", user_data())
    chart = plain.create("BirthChart", chart_data(user.id, place=PLACE))
    assert raw_place(plain, chart.id) == PLACE  # no key: no encryption, no change
    keyed = rekey(plain, encryption_key=KEY_A)
    assert keyed.find_one("BirthChart").birth_data.location.name == PLACE
    assert rotate_keys(keyed) == {"BirthChart": 1, "PlanetaryInsight": 0, "TimingRecommendation": 0, "User": 1,
                                  "dataKeys": 0}
    assert is_fle(raw_place(keyed, chart.id), PLACE)
    assert is_fle(keyed.collection("User").find_one({"_id": user.id})["email"], user.email)
    assert keyed.find_one("BirthChart", {"birthData.location.name": PLACE}).id == chart.id  # blind index written
    assert keyed.find_one("User", {"email": user.email}).id == user.id
    keyed.disconnect()


def test_the_cli_rotates_with_keys_from_the_environment(url, db, chart, monkeypatch):
    from astro_db.cli import CliContext

    monkeypatch.setattr(CliContext, "database", lambda self, connect=True, **keys: rekey(db, **keys))
    monkeypatch.setenv("ASTRO_DB_ENCRYPTION_KEY", KEY_B)
    monkeypatch.setenv("ASTRO_DB_ENCRYPTION_KEYS", KEY_A)
    result = CliRunner().invoke(cli, ["--url", url, "rotate-key"])
    assert result.exit_code == 0, result.output
    assert "BirthChart: 1 document(s) re-encrypted" in result.output
    assert KEY_A not in result.output and KEY_B not in result.output


def test_a_wrong_key_reads_the_value_as_unreadable_never_garbage(db, chart, caplog):
    wrong = rekey(db, encryption_key=random_key())
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert is_unreadable(wrong.find_one("BirthChart").birth_data.location.name)
        assert is_unreadable(wrong.find("BirthChart", lean=True)[0]["birthData"]["location"]["name"])
    # each read meets two envelopes it cannot open: the birth place and the birth date
    assert wrong.executor.runtime.crypto.stats() == wrong.metrics()["crypto"] == {"unreadable": 4}
    assert "its data key is not in the key vault" not in caplog.text  # the key exists: its master key is wrong
    assert "decryption failed" in caplog.text and str(chart.id) in caplog.text
    old = rekey(db, encryption_key=KEY_A)
    assert old.find_one("BirthChart").birth_data.location.name == PLACE  # nothing was lost


def test_a_missing_key_reads_the_value_as_unreadable_and_says_why(db, chart, caplog):
    keyless = rekey(db, encryption_key=None)
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert is_unreadable(keyless.find_one("BirthChart").birth_data.location.name)
    assert (f"unreadable encrypted value in birthCharts _id={chart.id} at birthData.location.name: no key vault is "
            "configured; set encryption_key (or kms_providers)") in [r.getMessage() for r in caplog.records]
    caplog.clear()
    keyless.collection("BirthChart").update_one({"_id": chart.id}, {"$set": {"birthData.location.name": old_envelope(PLACE)}})
    with caplog.at_level(logging.WARNING, logger="astro_db"):  # an envelope of an earlier release
        assert is_unreadable(keyless.find_one("BirthChart").birth_data.location.name)
    assert "no encryption key is configured" in caplog.text


def test_a_read_whose_projection_leaves_out_the_id_still_opens_what_it_asks_for(db, chart, caplog):
    """A sealed value opens only with its document's _id: a find that leaves _id out fetches it
    anyway and drops it after opening, so the caller gets exactly the fields it asked for."""
    name = {"_id": 0, "birthData.location.name": 1}
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert db.find("BirthChart", {}, projection=name, lean=True) == [{"birthData": {"location": {"name": PLACE}}}]
        assert db.find_one("BirthChart", {}, projection=name, lean=True) == {"birthData": {"location": {"name": PLACE}}}
        assert list(db.iter_find("BirthChart", {}, projection=name, lean=True)) == [{"birthData": {"location": {"name": PLACE}}}]
        whole = db.find_one("BirthChart", {}, projection={"id": 0}, lean=True)  # the model's name for _id; every other field
        assert "_id" not in whole and whole["birthData"]["location"]["name"] == PLACE and whole["houseSystem"]
        fewer = db.find("BirthChart", {}, projection={"_id": 0, "houseSystem": 0}, lean=True)[0]
        assert "_id" not in fewer and "houseSystem" not in fewer and fewer["birthData"]["location"]["name"] == PLACE
        hydrated = db.find("BirthChart", {}, projection=name)[0]
        assert hydrated.id is None and hydrated.birth_data.location.name == PLACE
        for _ in range(2):  # the second from the query cache, whose entry the first read did not change
            assert db.find("BirthChart", {}, projection=name, lean=True, cache=True) == [{"birthData": {"location": {"name": PLACE}}}]
            assert db.find_one("BirthChart", {}, projection=name, lean=True, cache=True) == {"birthData": {"location": {"name": PLACE}}}
    # this thread's records: a background thread of another test's Database (a bus subscriber
    # whose Redis has gone) may log meanwhile
    assert [r for r in caplog.records if r.thread == threading.get_ident()] == []
    assert db.metrics()["crypto"] == {"unreadable": 0}
    # with the _id asked for, it stays; a page still refuses to leave out its sort key _id
    assert db.find_one("BirthChart", {}, projection={"birthData.location.name": 1}, lean=True)["_id"] == chart.id
    with pytest.raises(QueryError, match="cannot leave out its sort keys"):
        db.page("BirthChart", {}, limit=5, projection=name)


def test_output_without_its_id_cannot_open_a_sealed_value_and_the_log_says_why(db, chart, caplog):
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        out = db.aggregate("BirthChart", [{"$project": {"_id": 0, "birthData.location.name": 1}}])
    assert is_unreadable(out[0]["birthData"]["location"]["name"])  # bound to its _id, which the pipeline dropped
    # this call's records only: a background thread of an earlier test's Database in the same
    # worker may log under "astro_db" meanwhile (it failed once so, in a -n 2 run)
    assert [r.getMessage() for r in caplog.records if r.thread == threading.get_ident()] == [
        "unreadable encrypted value in birthCharts _id=None at birthData.location.name: the document's _id was not "
        "read, and a sealed value is bound to it"]


def test_a_sealed_value_needs_its_documents_id_and_a_text_field_a_string(db):
    crypto, users = db.executor.runtime.crypto, db.executor.model("User")
    with pytest.raises(EncryptionError) as err:
        crypto.seal_document(users, {"email": "ann@example.com"})
    assert str(err.value) == "User.email: a sealed value is bound to its document's _id, which is not set"
    with pytest.raises(EncryptionError) as err:
        crypto.seal_document(users, {"_id": 1, "name": 5})
    assert str(err.value) == "name: only string values can be encrypted, got int"


def test_rotation_names_a_stored_value_it_cannot_seal_and_leaves_it(db, caplog):
    user = db.create("User", user_data())
    db.collection("User").update_one({"_id": user.id}, {"$set": {"name": 5}})  # written around the service
    assert db.executor.runtime.crypto.needs_rotation(datetime(1990, 5, 1, tzinfo=timezone.utc))  # a date in clear
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert rotate_keys(db)["User"] == 0
    assert (f"rotate-key: User _id={user.id} left as it is: name: only string values can be encrypted, got int"
            in [r.getMessage() for r in caplog.records])
    assert db.collection("User").find_one({"_id": user.id})["name"] == 5


def test_without_encryption_key_rotation_leaves_an_old_envelope_alone_and_does_not_count_it():
    kms = new_db(kms_providers={"local": {"key": base64.b64encode(os.urandom(96)).decode()}},
                 kms_master_key={"provider": "local"})  # a key vault, no encryption_key: no envelope opens here
    try:
        user = kms.create("User", user_data())
        chart = kms.create("BirthChart", chart_data(user.id))
        old = old_envelope(PLACE)
        kms.collection("BirthChart").update_one({"_id": chart.id}, {"$set": {"birthData.location.name": old}})
        assert not kms.executor.runtime.crypto.needs_rotation(old)
        assert rotate_keys(kms, dry_run=True)["BirthChart"] == 0  # a real run could not rewrite it either
        assert raw_place(kms, chart.id) == old
    finally:
        kms.disconnect()


def test_tampered_ciphertext_fails_authentication(db, chart, caplog):
    from bson.binary import Binary

    stored = bytes(raw_place(db, chart.id))
    tampered = Binary(stored[:-2] + bytes([stored[-2] ^ 1]) + stored[-1:], 6)
    db.collection("BirthChart").update_one({"_id": chart.id}, {"$set": {"birthData.location.name": tampered}})
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert is_unreadable(db.find_one("BirthChart").birth_data.location.name)
    assert "decryption failed" in caplog.text and repr(tampered) not in caplog.text
    envelope = old_envelope(PLACE)  # an envelope of an earlier release, tampered: the same
    tampered_envelope = envelope[:-2] + ("A" if envelope[-2] != "A" else "B") + envelope[-1]
    db.collection("BirthChart").update_one({"_id": chart.id}, {"$set": {"birthData.location.name": tampered_envelope}})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert is_unreadable(db.find_one("BirthChart").birth_data.location.name)
    assert "decryption failed" in caplog.text and tampered_envelope not in caplog.text


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode(), base64.b64encode(b"x" * 33).decode()])
def test_a_malformed_key_is_refused_at_configuration(bad):
    with pytest.raises(ConfigError) as err:
        DatabaseConfig(encryption_key=bad)
    assert err.value.key == "encryption_key" and bad not in str(err.value)
    with pytest.raises(ConfigError):
        parse_key(bad)


def test_keys_come_from_the_environment_and_never_show():
    config = DatabaseConfig.from_env({"ASTRO_DB_ENCRYPTION_KEY": KEY_A, "ASTRO_DB_ENCRYPTION_KEYS": KEY_B})
    assert config.encryption_key == KEY_A and config.encryption_keys == KEY_B
    assert KEY_A not in repr(config) and KEY_B not in repr(config)
    assert KEY_A not in repr(Keyring(parse_key(KEY_A)))


def test_old_keys_need_a_current_key():
    with pytest.raises(ConfigError):
        new_db(encryption_keys=KEY_A)


def test_an_old_envelope_still_decrypts_with_plain_aes_gcm_and_reads_through_the_service(db, chart):
    """The format of earlier releases (what their Node side decrypted with AES-GCM; the Node
    service now reads field level encryption with the driver's ClientEncryption,
    tests/node): still read as it is, so data not yet rotated stays readable."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    envelope = old_envelope(PLACE, deterministic=False)
    db.collection("BirthChart").update_one({"_id": chart.id}, {"$set": {"birthData.location.name": envelope}})
    assert db.find_one("BirthChart", {"id": chart.id}).birth_data.location.name == PLACE
    _, version, kid, body = raw_place(db, chart.id).split(":")
    assert (version, kid) == ("v2", key_id(base64.b64decode(KEY_A)))
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    aad = b"astro_db:v2:" + db.executor.runtime.registry.resolve("BirthChart").collection.encode() + b"\x00birthData.location.name"
    assert AESGCM(base64.b64decode(KEY_A)).decrypt(raw[:12], raw[12:], aad).decode() == PLACE



def test_a_list_update_validates_the_plaintext_and_keeps_the_ciphertext(db):
    user = db.create("User", user_data())
    place = "P" * 200  # the longest name allowed: its envelope is far longer than 200 characters
    chart = db.create("BirthChart", chart_data(user.id, place=place))
    sealed = raw_place(db, chart.id)
    out = db.update("BirthChart", {"id": chart.id},
                    {"$push": {"positions": {"body": "Sun", "sign": "Leo", "degree": 1, "house": 1}}})
    assert [p.body for p in out.positions] == ["Sun"] and out.birth_data.location.name == place
    assert raw_place(db, chart.id) == sealed
