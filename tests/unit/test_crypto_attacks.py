"""Field encryption under attack (issue #15, defects 1 and 11), through the Database.

A self-scoped user must not be able to turn the service into a decryption oracle (envelope-shaped
input, ciphertext copied into their own fields, ciphertext injected by an aggregation stage); one
bad envelope must not break anybody's reads; and a Database without a key must never mix
plaintext into an encrypted field or answer an equality query it cannot answer.
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime

import pytest
from bson import ObjectId

from astro_db import DatabaseConfig
from astro_db.errors import EncryptionError
from astro_db.security.crypto import FieldCrypto, Keyring, is_unreadable, key_id
from astro_db.security.rotation import rotate_keys

from .security_data import KEY_A, KEY_B, chart_data, is_fle, new_db, old_envelope, random_key, snapshot, user_data

SECRET_PLACE = "Stratford-upon-Avon"
NAME = "birthData.location.name"


@pytest.fixture
def db():
    database = new_db(encryption_key=KEY_A)
    yield database
    database.disconnect()


@pytest.fixture
def victim_chart(db):
    victim = db.create("User", user_data())
    return db.create("BirthChart", chart_data(victim.id, place=SECRET_PLACE))


@pytest.fixture
def mallory(db):
    user = db.create("User", user_data(name="Mallory"))
    return user, db.as_actor(str(user.id), roles=["self"])


def stored_place(db, chart_id):
    return db.collection("BirthChart").find_one({"_id": chart_id})["birthData"]["location"]["name"]


def place_of(doc):
    return doc["birthData"]["location"]["name"]


# --- input is always data ---------------------------------------------------------------------

def test_an_envelope_shaped_place_is_sealed_and_reads_back_as_the_same_text(db, victim_chart, mallory):
    """Input is data: the victim's place as an earlier release stored it (an envelope this
    service still opens when it finds one stored) is sealed as text, never kept as ciphertext;
    the stored ciphertext itself (a Binary) is not text and is refused, writing nothing."""
    from astro_db.errors import ValidationError

    user, as_mallory = mallory
    stolen = old_envelope(SECRET_PLACE)
    db.collection("BirthChart").update_one({"_id": victim_chart.id}, {"$set": {NAME: stolen}})
    assert db.find_one("BirthChart", {"id": victim_chart.id}).birth_data.location.name == SECRET_PLACE  # it opens
    mine = as_mallory.create("BirthChart", chart_data(user.id, place=stolen))
    assert is_fle(stored_place(db, mine.id), SECRET_PLACE)
    assert as_mallory.find_one("BirthChart", {"id": mine.id}).birth_data.location.name == stolen
    assert place_of(as_mallory.find("BirthChart", lean=True)[0]) == stolen
    assert place_of(as_mallory.aggregate("BirthChart", [{"$project": {"birthData": 1}}])[0]) == stolen
    as_mallory.update("BirthChart", {"id": mine.id}, {NAME: stolen})
    as_mallory.update_many("BirthChart", {}, {"$set": {"birthData.location": {"name": stolen, "coordinates": [1, 2]}}}, all=True)
    assert [place_of(d) for d in as_mallory.find("BirthChart", lean=True)] == [stolen]
    assert SECRET_PLACE not in repr(as_mallory.find("BirthChart", lean=True))
    sealed = db.collection("BirthChart").find_one({"_id": victim_chart.id, "birthData.date": {"$exists": True}})
    before = snapshot(db)
    for value in (sealed["birthData"]["date"], db.collection("User").find_one({"_id": user.id})["name"]):
        with pytest.raises(ValidationError):
            as_mallory.create("BirthChart", chart_data(user.id, place=value))
        with pytest.raises(ValidationError):
            as_mallory.update("BirthChart", {"id": mine.id}, {NAME: value})
    assert snapshot(db) == before


def test_ciphertext_copied_into_a_plain_field_is_never_opened(db, victim_chart, mallory):
    user, as_mallory = mallory
    # a plain text field of her own (the user's name is personal, so encrypted itself)
    timing = as_mallory.create("TimingRecommendation", {"userId": user.id, "activity": "Walk"})
    for stolen in (stored_place(db, victim_chart.id), old_envelope(SECRET_PLACE)):  # today's, an earlier release's
        db.collection("TimingRecommendation").update_one({"_id": timing.id}, {"$set": {"activity": stolen}})  # even unvalidated
        out = as_mallory.aggregate("TimingRecommendation", [{"$project": {"activity": 1}}])[0]["activity"]
        assert out == stolen and not is_unreadable(out)  # returned as stored, never opened
        assert SECRET_PLACE not in repr(as_mallory.find("TimingRecommendation", lean=True))


@pytest.mark.parametrize("stage", [
    lambda env: {"$addFields": {NAME: {"$literal": env}}},
    lambda env: {"$set": {"birthData": {"location": {"name": env}}}},
    lambda env: {"$project": {"birthData": {"location": {"name": {"$literal": env}}}}},
    lambda env: {"$project": {NAME: {"$literal": env}}},
    lambda env: {"$replaceRoot": {"newRoot": {"birthData": {"location": {"name": {"$literal": env}}}}}},
    lambda env: {"$group": {"_id": None, "birthData": {"$first": {"location": {"name": {"$literal": env}}}}}},
], ids=["addFields", "set-nested", "project-nested", "project-dotted", "replaceRoot", "group"])
def test_an_aggregation_stage_cannot_inject_ciphertext_into_an_opened_path(db, victim_chart, mallory, stage):
    user, as_mallory = mallory
    as_mallory.create("BirthChart", chart_data(user.id, place="Leeds"))
    for stolen in (stored_place(db, victim_chart.id), old_envelope(SECRET_PLACE)):  # a real ciphertext; an old envelope
        rows = as_mallory.aggregate("BirthChart", [stage(stolen)])
        out = repr(rows)
        assert repr(stolen) in out and SECRET_PLACE not in out  # stays sealed: no oracle
        assert not any(is_unreadable(place_of(r)) for r in rows if "birthData" in r)  # not even tried
    rows = db.aggregate("BirthChart", [{"$project": {"birthData": 1}}, {"$sort": {"_id": 1}}])
    assert rows[0]["birthData"]["location"]["name"] == SECRET_PLACE


def test_an_envelope_moved_to_another_collection_does_not_open(db, victim_chart):
    """The same model stored under another collection name: the associated data differs."""
    info = db.executor.runtime.registry.resolve("BirthChart")
    moved = type("Info", (), {"name": info.name, "cls": info.cls, "collection": "archivedCharts"})()
    doc = {"_id": 1, "birthData": {"location": {"name": stored_place(db, victim_chart.id)}}}
    assert is_unreadable(place_of(db.executor.runtime.crypto.open_document(moved, doc)))


# --- one bad envelope breaks nobody's reads ---------------------------------------------------

@pytest.mark.parametrize("bad", [
    "enc:v2:00000000:" + "A" * 40,  # a key id nobody has
    "enc:zz:5c3c4e06:" + "A" * 40,  # an unknown version
    "enc:v2:garbage",  # malformed
], ids=["unknown-key", "unknown-version", "malformed"])
def test_one_bad_envelope_is_marked_unreadable_and_the_rest_read_normally(db, victim_chart, bad, caplog):
    other = db.create("BirthChart", chart_data(victim_chart.user_id, place="Oslo"))
    db.collection("BirthChart").update_one({"_id": victim_chart.id}, {"$set": {NAME: bad}})
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        charts = {c.id: c.birth_data.location.name for c in db.find("BirthChart", {})}
        lean = {d["_id"]: place_of(d) for d in db.find("BirthChart", lean=True)}
        aggregated = {d["_id"]: place_of(d) for d in db.aggregate("BirthChart", [{"$match": {}}])}
        one = db.find_one("BirthChart", {"id": victim_chart.id})
    for result in (charts, lean, aggregated):
        assert is_unreadable(result[victim_chart.id]) and result[other.id] == "Oslo"
    assert is_unreadable(one.birth_data.location.name)
    assert db.executor.runtime.crypto.stats() == {"unreadable": 4}
    # the crypto warnings only: a loaded machine may add a "slow query" warning of the monitor
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "astro_db.security.crypto"]
    assert len(warnings) == 4
    text = "\n".join(r.getMessage() for r in warnings)
    assert str(victim_chart.id) in text and NAME in text and "birthCharts" in text
    assert bad not in text and KEY_A not in text and "Oslo" not in text


def test_an_unreadable_value_is_a_marker_not_a_users_own_text(db, victim_chart):
    mine = db.create("BirthChart", chart_data(victim_chart.user_id, place="<unreadable>"))
    assert db.find_one("BirthChart", {"id": mine.id}).birth_data.location.name == "<unreadable>"
    assert not is_unreadable(db.find_one("BirthChart", {"id": mine.id}).birth_data.location.name)


# --- no key: no silent mix (defect 11) ---------------------------------------------------------

@pytest.fixture
def keyless():
    database = new_db(allow_plaintext_sensitive=False)
    yield database
    database.disconnect()


def test_without_a_key_writing_a_sensitive_field_is_refused_and_writes_nothing(keyless):
    before = snapshot(keyless)
    with pytest.raises(EncryptionError, match=r"User\.email is a sensitive field: configure encryption_key to write it"):
        keyless.create("User", user_data())
    message = r"BirthChart\.birthData\.(date|location\.name) is a sensitive field: configure encryption_key to write it"
    with pytest.raises(EncryptionError, match=message):
        keyless.create("BirthChart", chart_data(ObjectId()))
    with pytest.raises(EncryptionError, match=message):
        keyless.create_many("BirthChart", [chart_data(ObjectId())])
    assert snapshot(keyless) == before
    # documents written before (by the Node service, say): only writes of their personal fields are refused
    user = keyless.collection("User").insert_one({"email": "ann@example.com", "name": "Ann", "status": "active"}).inserted_id
    chart = keyless.collection("BirthChart").insert_one({"userId": user, "birthData": {
        "date": datetime(1990, 5, 1, 10, 30), "timezone": "Europe/London", "location": {"coordinates": [1.0, 2.0]}},
        "houseSystem": "placidus"}).inserted_id
    after = snapshot(keyless)
    message = r"BirthChart\.birthData\.location\.name is a sensitive field: configure encryption_key to write it"
    with pytest.raises(EncryptionError, match=message):
        keyless.update("BirthChart", {"id": chart}, {NAME: "Oslo"})
    with pytest.raises(EncryptionError, match=message):
        keyless.update_many("BirthChart", {}, {"$set": {"birthData.location": {"name": "Oslo"}}}, all=True)
    assert snapshot(keyless) == after
    assert keyless.update("BirthChart", {"id": chart}, {"houseSystem": "koch"}).house_system == "koch"


def test_without_a_key_an_equality_query_on_a_sensitive_field_is_refused(keyless):
    with pytest.raises(EncryptionError, match="configure encryption_key to query it by value"):
        keyless.find("BirthChart", {NAME: "Oslo"})
    with pytest.raises(EncryptionError):
        keyless.count("BirthChart", {NAME: {"$in": ["Oslo", None]}})
    assert keyless.count("BirthChart", {NAME: {"$exists": True}}) == 0
    assert keyless.count("BirthChart", {NAME: None}) == 0


def test_the_plaintext_opt_out_defaults_to_the_embedded_backend_only(monkeypatch):
    registry = new_db().executor.runtime.registry
    assert FieldCrypto.from_config(DatabaseConfig(), registry).allow_plaintext is True
    assert FieldCrypto.from_config(DatabaseConfig(url="mongodb://db.example/astro"), registry).allow_plaintext is False
    assert FieldCrypto.from_config(DatabaseConfig(url="mongodb://db.example/astro", allow_plaintext_sensitive=True),
                                   registry).allow_plaintext is True
    assert FieldCrypto.from_config(DatabaseConfig(allow_plaintext_sensitive=False), registry).allow_plaintext is False
    assert DatabaseConfig.from_env({"ASTRO_DB_ALLOW_PLAINTEXT_SENSITIVE": "false"}).allow_plaintext_sensitive is False


def test_the_dev_opt_out_stores_plaintext_but_refuses_text_that_would_read_as_an_envelope():
    dev = new_db(allow_plaintext_sensitive=True)
    user = dev.create("User", user_data())
    chart = dev.create("BirthChart", chart_data(user.id, place="Oslo"))
    assert stored_place(dev, chart.id) == "Oslo" and dev.count("BirthChart", {NAME: "Oslo"}) == 1
    with pytest.raises(EncryptionError, match="may not start with 'enc:'"):
        dev.create("BirthChart", chart_data(user.id, place="enc:v2:whatever"))


# --- old envelopes and rotation ---------------------------------------------------------------

def v1_envelopes(place):
    """How the previous release stored ``place`` under KEY_A (no associated data)."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = base64.b64decode(KEY_A)
    nonce_key = hmac.new(key, b"astro_db:deterministic-nonce", hashlib.sha256).digest()
    nonce = hmac.new(nonce_key, f"{NAME}\0{place}".encode(), hashlib.sha256).digest()[:12]
    body = base64.urlsafe_b64encode(nonce + AESGCM(key).encrypt(nonce, place.encode(), None)).rstrip(b"=").decode()
    return f"enc:d1:{key_id(key)}:{body}"


def test_d1_data_of_the_previous_release_reads_matches_and_is_upgraded_by_rotation(db, victim_chart):
    old = v1_envelopes(SECRET_PLACE)
    db.collection("BirthChart").update_one({"_id": victim_chart.id}, {"$set": {NAME: old}})
    assert db.find_one("BirthChart", {NAME: SECRET_PLACE}).birth_data.location.name == SECRET_PLACE
    assert db.executor.runtime.crypto.needs_rotation(old)
    nothing = {"BirthChart": 0, "PlanetaryInsight": 0, "TimingRecommendation": 0, "User": 0, "dataKeys": 0}
    assert rotate_keys(db) == {**nothing, "BirthChart": 1}
    assert is_fle(stored_place(db, victim_chart.id), SECRET_PLACE)  # d1 -> field level encryption
    assert db.find_one("BirthChart", {NAME: SECRET_PLACE}).id == victim_chart.id  # still by equality (blind index)
    assert db.find_one("BirthChart", {"id": victim_chart.id}).birth_data.location.name == SECRET_PLACE
    assert rotate_keys(db) == nothing


def test_rotation_leaves_a_value_it_cannot_open_untouched_and_rotates_the_rest(db, victim_chart, caplog):
    other = db.create("BirthChart", chart_data(victim_chart.user_id, place="Oslo"))
    foreign = Keyring(base64.b64decode(random_key())).seal("x", "birthCharts", NAME, True)
    db.collection("BirthChart").update_one({"_id": victim_chart.id}, {"$set": {NAME: foreign}})
    rotated = db.config.replace(encryption_key=KEY_B, encryption_keys=KEY_A)
    db.executor.runtime.crypto = FieldCrypto.from_config(rotated, db.executor.runtime.registry)
    old_email_index = db.collection("User").find_one({"_id": victim_chart.user_id})["emailIndex"]
    old_index = db.collection("BirthChart").find_one({"_id": other.id})["birthData"]["location"]["nameIndex"]
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert rotate_keys(db) == {"BirthChart": 1, "PlanetaryInsight": 0, "TimingRecommendation": 0, "User": 1,
                                   "dataKeys": 1}
    assert stored_place(db, victim_chart.id) == foreign
    rotated_other = db.collection("BirthChart").find_one({"_id": other.id})["birthData"]["location"]
    assert is_fle(rotated_other["name"], "Oslo") and rotated_other["nameIndex"] != old_index  # under KEY_B now
    assert db.collection("User").find_one({"_id": victim_chart.user_id})["emailIndex"] != old_email_index
    assert db.find_one("BirthChart", {NAME: "Oslo"}).id == other.id
    assert "left as it is" in caplog.text and str(victim_chart.id) in caplog.text


def test_rotation_never_overwrites_a_write_landing_between_its_read_and_its_rewrite(db, victim_chart, monkeypatch):
    rotated = db.config.replace(encryption_key=KEY_B, encryption_keys=KEY_A)
    db.executor.runtime.crypto = FieldCrypto.from_config(rotated, db.executor.runtime.registry)
    reseal = FieldCrypto.reseal

    def racing(self, info, doc):  # another caller writes the field after rotation read the document
        if info.name == "BirthChart":  # (the users, rotated first, hold encrypted fields too)
            db.update("BirthChart", {"id": victim_chart.id}, {NAME: "Written meanwhile"})
        return reseal(self, info, doc)

    monkeypatch.setattr(FieldCrypto, "reseal", racing)
    assert rotate_keys(db) == {"BirthChart": 0, "PlanetaryInsight": 0, "TimingRecommendation": 0, "User": 1,
                               "dataKeys": 1}
    assert db.find_one("BirthChart", {"id": victim_chart.id}).birth_data.location.name == "Written meanwhile"
    assert is_fle(stored_place(db, victim_chart.id), "Written meanwhile")
    assert db.find_one("BirthChart", {NAME: "Written meanwhile"}).id == victim_chart.id  # its index: KEY_B's


def test_an_unreadable_value_is_never_written_back_over_its_ciphertext(db, victim_chart):
    bad = "enc:v2:00000000:" + "A" * 40
    db.collection("BirthChart").update_one({"_id": victim_chart.id}, {"$set": {NAME: bad}})
    chart = db.find_one("BirthChart", {"id": victim_chart.id})
    lean = db.find_one("BirthChart", {"id": victim_chart.id}, lean=True)
    for data in ({"birthData": chart.to_dict()["birthData"]}, {"birthData": lean["birthData"]},
                 {NAME: chart.birth_data.location.name}):
        with pytest.raises(EncryptionError) as err:
            db.update("BirthChart", {"id": victim_chart.id}, data)
        assert str(err.value) == (f"BirthChart.{NAME}: refusing to write back UNREADABLE (a value that did not open); "
                                  "it would replace the stored ciphertext")
    assert stored_place(db, victim_chart.id) == bad


def test_a_find_projection_cannot_compute_a_value_into_an_opened_path(db, victim_chart, mallory):
    from astro_db.errors import QueryError

    _, as_mallory = mallory
    stolen = stored_place(db, victim_chart.id)
    with pytest.raises(QueryError, match="must be 0 or 1"):
        as_mallory.find("BirthChart", projection={NAME: {"$literal": stolen}})
