"""Masking as a specification: what ``mask_text``, ``mask_document``, ``masked_errors`` and the
log filter hide, what they leave alone, and where the filter is installed."""

from __future__ import annotations

import logging
import sys

import pytest

from astro_db.errors import ValidationError
from astro_db.models import BirthChart, User
from astro_db.security import MaskingFilter, mask_document, mask_text
from astro_db.security.masking import install_log_masking, masked_errors

EMAIL = "zelda.secret@mail.example.co.uk"


def record(msg, args=(), exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("astro_db.test", logging.INFO, __file__, 1, msg, args, exc_info)


# --- mask_text -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, masked", [
    (f"to {EMAIL}.", "to z***@mail.example.co.uk."),
    ("a@ex.io and b.c+tag@x-y.org", "a***@ex.io and b***@x-y.org"),
    ("enc:v1:0a1b2c3d:QUJD_-x9 then", "enc:v1:0a1b2c3d:*** then"),
    ("enc:d1:ffffffff:QUJD", "enc:d1:ffffffff:***"),
    ("mongodb+srv://app:s3cr%40t@db.example/x", "mongodb+srv://app:***@db.example/x"),
])
def test_mask_text_hides_emails_ciphertext_and_url_passwords(text, masked):
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", ["no secrets here", "enc:v9:0a1b2c3d:QUJD", "enc:v1:notahexid:QUJD", "x@localhost"])
def test_mask_text_leaves_other_text_alone(text):
    assert mask_text(text) == text


# --- mask_document ---------------------------------------------------------------------------


def test_mask_document_masks_nested_fields_and_lists_and_keeps_the_rest():
    doc = {
        "_id": 1,
        "userId": 2,
        "birthData": {"timezone": "UTC", "location": {"name": "Hiddenville", "coordinates": [1.5, 2.5]}},
        "positions": [{"body": "Sun", "sign": "Leo"}],
        "extra": {"nested": "kept"},
    }
    assert mask_document(BirthChart, doc) == {
        "_id": 1,
        "userId": 2,
        "birthData": {"timezone": "UTC", "location": {"name": "***", "coordinates": [1.5, 2.5]}},
        "positions": [{"body": "Sun", "sign": "Leo"}],
        "extra": {"nested": "kept"},
    }
    assert doc["birthData"]["location"]["name"] == "Hiddenville"  # a copy; the input is unchanged


def test_mask_document_masks_each_document_of_a_list_and_passes_other_values_through():
    docs = [{"email": EMAIL, "name": "Zelda"}, {"email": None, "name": ""}]
    assert mask_document(User, docs) == [{"email": "z***@mail.example.co.uk", "name": "Z***"}, {"email": None, "name": "***"}]
    assert mask_document(User, "plain") == "plain" and mask_document(User, 7) == 7


def test_mask_document_recurses_into_a_masked_field_holding_a_document():
    assert mask_document(User, {"email": {"address": EMAIL}}) == {"email": {"address": EMAIL}}
    assert mask_document(User, {"name": ["Zelda", "Zed"]}) == {"name": ["Zelda", "Zed"]}


# --- masked_errors ---------------------------------------------------------------------------


def test_masked_errors_masks_quoted_values_of_masked_fields_in_each_message():
    with pytest.raises(ValidationError) as raised:
        with masked_errors(User):
            raise ValidationError(errors={"email": f"not valid: '{EMAIL}'", "name": 'too long: "Zelda Z"', "status": "bad 'x'"})
    assert raised.value.errors == {
        "email": "not valid: 'z***@mail.example.co.uk'",
        "name": "too long: 'Z***'",
        "status": "bad 'x'",
    }
    assert str(raised.value) == "email: not valid: 'z***@mail.example.co.uk'; name: too long: 'Z***'; status: bad 'x'"


def test_masked_errors_masks_a_value_cut_before_its_closing_quote():
    with pytest.raises(ValidationError) as raised:
        with masked_errors(User):
            raise ValidationError(errors={"name": "starts with 'Zelda Secretn"})
    assert raised.value.errors["name"] == "starts with 'Z***'"


def test_masked_errors_keeps_a_custom_message_but_masks_emails_in_it():
    with pytest.raises(ValidationError) as raised:
        with masked_errors(User):
            raise ValidationError(f"cannot save {EMAIL}", errors={"email": "taken"})
    assert str(raised.value) == "cannot save z***@mail.example.co.uk" and raised.value.errors == {"email": "taken"}


def test_masked_errors_lets_other_exceptions_and_success_through():
    with masked_errors(User):
        pass
    with pytest.raises(KeyError):
        with masked_errors(User):
            raise KeyError(EMAIL)


# --- the log filter --------------------------------------------------------------------------


def test_an_f_string_log_message_with_an_email_is_masked():
    rec = record(f"login by {EMAIL}")
    assert MaskingFilter().filter(rec) is True
    assert rec.getMessage() == "login by z***@mail.example.co.uk" and rec.args is None


def test_a_message_with_arguments_is_formatted_once_even_without_secrets():
    rec = record("count %d of %s", (3, "charts"))
    assert MaskingFilter().filter(rec) is True
    assert (rec.msg, rec.args) == ("count 3 of charts", None)


def test_a_message_without_secrets_or_arguments_is_left_as_it_was():
    payload = {"op": "find"}
    rec = record(payload)
    assert MaskingFilter().filter(rec) is True
    assert rec.msg is payload


def test_a_bad_format_string_is_left_for_the_handler_to_report():
    rec = record("count %d", ("not a number",))
    assert MaskingFilter().filter(rec) is True
    assert (rec.msg, rec.args) == ("count %d", ("not a number",))


def test_a_traceback_is_masked_once_and_a_formatted_one_is_kept():
    try:
        raise RuntimeError(f"no account {EMAIL}")
    except RuntimeError:
        exc_info = sys.exc_info()
    rec = record("failed", exc_info=exc_info)
    assert MaskingFilter().filter(rec) is True
    assert "z***@mail.example.co.uk" in rec.exc_text and "zelda.secret" not in rec.exc_text
    assert "Traceback" in rec.exc_text and "RuntimeError" in rec.exc_text
    kept = record("failed", exc_info=exc_info)
    kept.exc_text = "already formatted"
    MaskingFilter().filter(kept)
    assert kept.exc_text == "already formatted"
    assert "zelda.secret" not in logging.Formatter().format(rec)


def test_install_log_masking_filters_astro_db_and_pymongo_loggers_once():
    names = ("astro_db", "astro_db.test_masking_policy.child", "pymongo.command", "pymongo.serverSelection",
             "pymongo.connection", "mongoengine")
    stranger = logging.getLogger("astro_dbx_not_ours")
    removed = {name: [f for f in logging.getLogger(name).filters if isinstance(f, MaskingFilter)] for name in names}
    for name, filters in removed.items():  # start from loggers without the filter (earlier tests installed it)
        for f in filters:
            logging.getLogger(name).removeFilter(f)
    try:
        install_log_masking()
        install_log_masking()
        for name in names:
            filters = [f for f in logging.getLogger(name).filters if isinstance(f, MaskingFilter)]
            assert len(filters) == 1, name
        assert not any(isinstance(f, MaskingFilter) for f in stranger.filters)
    finally:
        for name, filters in removed.items():
            for f in filters:
                logging.getLogger(name).addFilter(f)


def test_an_installed_filter_masks_what_reaches_a_handler(caplog):
    install_log_masking()
    logger = logging.getLogger("pymongo.command")
    with caplog.at_level(logging.DEBUG, logger="pymongo.command"):
        logger.debug(f"find users {{'email': '{EMAIL}'}}")
    assert "zelda.secret" not in caplog.text and "z***@mail.example.co.uk" in caplog.text
