"""Masking: no e-mail, name, key or ciphertext in logs, reprs, error messages or audit entries."""

from __future__ import annotations

import logging

import pytest

from astro_db.errors import AstroDBError, ValidationError
from astro_db.models import User
from astro_db.security import MaskingFilter, mask_document, mask_text

from .security_data import KEY_A, chart_data, new_db

EMAIL = "zelda.secret@example.com"
NAME = "Zelda Secretname"
PLACE = "Hiddenville"


def test_mask_text_hides_emails_passwords_and_ciphertext():
    text = "user zelda.secret@example.com at mongodb://app:hunter2@db:27017/x wrote enc:d1:0a1b2c3d:QUJDREVGR0hJSg"
    masked = mask_text(text)
    assert "z***@example.com" in masked and "zelda.secret" not in masked
    assert "hunter2" not in masked and "QUJDREVGR0hJSg" not in masked and "enc:d1:0a1b2c3d:***" in masked


def test_mask_text_hides_the_ciphertext_of_v2_and_e2_envelopes():
    masked = mask_text("got enc:v2:0a1b2c3d:QUJDREVGR0hJSg and enc:e2:0a1b2c3d:S0xNTk9QUVJTVA")
    assert masked == "got enc:v2:0a1b2c3d:*** and enc:e2:0a1b2c3d:***"


def test_mask_document_masks_a_lean_document_by_its_fields():
    doc = {"_id": 1, "email": EMAIL, "name": NAME, "status": "active"}
    assert mask_document(User, doc) == {"_id": 1, "email": "z***@example.com", "name": "Z***", "status": "active"}


def test_validation_errors_mask_names_and_show_the_rejected_email():
    db = new_db()
    with pytest.raises(ValidationError) as err:
        db.create("User", {"email": "zelda.secret@@example.com", "name": "x" * 101})
    assert "xxxxx" not in str(err.value) and "zelda.secret" not in str(err.value)  # personal parts masked
    assert err.value.errors["email"] == "not a valid email address: 'z***@@example.com'"  # the mistake shows
    with pytest.raises(ValidationError) as err:
        db.update("User", {}, {"email": "nope-not-email"})
    assert "not a valid email address: 'nope-not-email'" in str(err.value)  # not '***': the sender sees the mistake
    db.disconnect()


def test_the_log_filter_formats_and_masks_a_record():
    record = logging.LogRecord("astro_db.x", logging.INFO, __file__, 1, "login %s", (EMAIL,), None)
    assert MaskingFilter().filter(record) and record.getMessage() == "login z***@example.com"


def test_reprs_show_no_secrets():
    db = new_db("mongomock://localhost/reprs", encryption_key=KEY_A)
    view = db.as_actor("svc", roles=["reader"])
    shown = repr(db) + repr(db.config) + repr(view.actor) + repr(db.executor.runtime.crypto.keyring)
    assert KEY_A not in shown
    user = db.create("User", {"email": EMAIL, "name": NAME})
    assert EMAIL not in repr(user) and NAME not in repr(user)
    assert user.to_dict(masked=True)["email"] == "z***@example.com"
    db.disconnect()


def test_a_whole_crud_session_logs_no_email_name_place_or_key(caplog):
    caplog.set_level(logging.DEBUG)
    db = new_db(encryption_key=KEY_A, slow_query_ms=0)
    user = db.create("User", {"email": EMAIL, "name": NAME})
    chart = db.create("BirthChart", chart_data(user.id, place=PLACE))
    db.find("User", {"email": EMAIL})
    db.find_one("User", {"email": EMAIL}, strict=True)
    db.find("BirthChart", {"birthData.location.name": PLACE}, lean=True)
    db.update("User", {"email": EMAIL}, {"name": NAME + " Jr"})
    db.aggregate("BirthChart", [{"$match": {"userId": user.id}}])
    for bad in (lambda: db.create("User", {"email": EMAIL, "name": NAME}),
                lambda: db.create("User", {"email": "zelda.secret@@example.com", "name": NAME}),
                lambda: db.as_actor("r", roles=["reader"]).update("User", {"email": EMAIL}, {"name": NAME})):
        with pytest.raises(AstroDBError) as err:
            bad()
        logging.getLogger("astro_db.test").warning("refused: %s", err.value)
    db.audit_trail("User", user.id)
    db.delete("BirthChart", {"id": chart.id})
    db.delete("User", {"id": user.id})
    db.disconnect()
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for secret in ("zelda.secret", NAME, PLACE, KEY_A):
        assert secret not in logged


def test_change_records_hold_field_names_and_only_the_sealed_post_image():
    db = new_db(encryption_key=KEY_A)
    user = db.create("User", {"email": EMAIL, "name": NAME})
    chart = db.create("BirthChart", chart_data(user.id, place=PLACE))
    db.update("BirthChart", {"id": chart.id}, {"birthData.location.name": f"{PLACE} again"})
    records = list(db.mongo["astroChanges"].find())
    assert len(records) == 3
    audit_part = repr([{k: v for k, v in r.items() if k != "doc"} for r in records])
    assert "zelda" not in audit_part and NAME not in audit_part and PLACE not in audit_part
    assert PLACE not in repr(records)  # the encrypted field is sealed in the post-image too
    for record in (records[0], records[2]):  # the latest image is exactly what the collection stores
        stored = db.mongo[record["coll"]].find_one({"_id": record["documentId"]})
        image = dict(record["doc"])
        assert abs(image.pop("updatedAt") - stored.pop("updatedAt")).total_seconds() < 0.001  # BSON keeps ms
        assert image == stored
    db.disconnect()
