"""The envelope format, pinned byte for byte: what the Node side decrypts and what old data holds.

Every constant of ``astro_db.security.crypto`` (prefixes, versions, key id derivation, nonce and
tag length, associated data, the deterministic nonce derivation) is checked here against an
independent computation with plain AES-GCM and HMAC, so changing any of them fails a test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db import DatabaseConfig
from astro_db.errors import ConfigError, EncryptionError
from astro_db.security import crypto
from astro_db.security.crypto import (
    UNREADABLE,
    Keyring,
    associated_data,
    is_envelope,
    is_unreadable,
    key_id,
    new_key,
    parse_key,
)

RAW_A, RAW_B = b"A" * 32, b"B" * 32
KID_A = "5c3c4e06"  # key_id(b"A" * 32), pinned: the Node side and old data depend on it
COLL, PATH = "birthcharts", "birthData.location.name"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def body(envelope: str) -> bytes:
    text = envelope.split(":")[3]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def node_decrypt(key: bytes, envelope: str, aad: bytes | None) -> str:
    """What the Node service does: split, base64url-decode, AES-256-GCM with 12-byte nonce."""
    raw = body(envelope)
    return AESGCM(key).decrypt(raw[:12], raw[12:], aad).decode()


def v1(key: bytes, plaintext: str, path: str = PATH, deterministic: bool = False) -> str:
    """An envelope as the previous release wrote it (no associated data)."""
    if deterministic:
        nonce_key = hmac.new(key, b"astro_db:deterministic-nonce", hashlib.sha256).digest()
        nonce = hmac.new(nonce_key, path.encode() + b"\0" + plaintext.encode(), hashlib.sha256).digest()[:12]
    else:
        nonce = b"\x07" * 12
    version = "d1" if deterministic else "v1"
    return f"enc:{version}:{key_id(key)}:{b64(nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), None))}"


def raw_envelope(key: bytes, data: bytes, version: str = "v2", aad: bytes | None = None) -> str:
    nonce = b"\x01" * 12
    return f"enc:{version}:{key_id(key)}:{b64(nonce + AESGCM(key).encrypt(nonce, data, aad))}"


# --- keys -------------------------------------------------------------------------------------

def test_the_key_id_is_the_first_8_hex_digits_of_a_labelled_sha256():
    assert key_id(RAW_A) == hashlib.sha256(b"astro_db:kid:" + RAW_A).hexdigest()[:8] == KID_A
    assert key_id(RAW_B) != KID_A


def test_a_new_key_is_32_fresh_random_bytes_in_standard_base64():
    one, two = new_key(), new_key()
    assert len(base64.b64decode(one, validate=True)) == 32 and one != two
    assert parse_key(one) == base64.b64decode(one)


def test_a_key_parses_from_standard_or_url_safe_base64_with_spaces_around():
    raw = bytes(range(200, 232))  # encodes with both '+'/'/' and '-'/'_'
    standard = base64.b64encode(raw).decode()
    assert "+" in standard or "/" in standard
    assert parse_key(f"  {standard}\n") == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode()) == raw


@pytest.mark.parametrize(("value", "message"), [
    (None, "'k' must be a base64 string of 32 bytes"),
    ("*" * 44, "'k' is not valid base64"),
    (base64.b64encode(b"x" * 31).decode(), "'k' must decode to 32 bytes (AES-256), got 31"),
])
def test_a_bad_key_is_a_config_error_naming_the_setting(value, message):
    with pytest.raises(ConfigError) as err:
        parse_key(value, "k")
    assert str(err.value).startswith(message) and err.value.key == "k"
    with pytest.raises(ConfigError) as err:
        parse_key(value)
    assert err.value.key == "encryption_key" and str(err.value).startswith(message.replace("'k'", "'encryption_key'"))


def test_the_keyring_encrypts_with_the_primary_and_knows_the_older_keys_in_order():
    ring = Keyring(RAW_A, [RAW_B])
    assert ring.primary_id == KID_A and ring.key_ids == [KID_A, key_id(RAW_B)]
    assert ring.seal("x", COLL, PATH, False).split(":")[2] == KID_A
    assert "AAAA" not in repr(ring) and repr(ring) == f"<Keyring primary={KID_A} keys={[KID_A, key_id(RAW_B)]}>"


def test_the_keyring_comes_from_configuration():
    a, b = base64.b64encode(RAW_A).decode(), base64.b64encode(RAW_B).decode()
    assert Keyring.from_config(DatabaseConfig()) is None
    ring = Keyring.from_config(SimpleNamespace(encryption_key=b, encryption_keys=f"{a}, ,"))
    assert ring is not None and ring.key_ids == [key_id(RAW_B), KID_A]
    assert Keyring.from_config(SimpleNamespace(encryption_key=b, encryption_keys=None)).key_ids == [key_id(RAW_B)]
    with pytest.raises(ConfigError) as err:
        Keyring.from_config(SimpleNamespace(encryption_key=None, encryption_keys=a))
    assert str(err.value) == "'encryption_keys' (old keys) needs 'encryption_key' (the current key) too"
    assert err.value.key == "encryption_key"
    with pytest.raises(ConfigError) as err:
        Keyring.from_config(SimpleNamespace(encryption_key=b, encryption_keys="short"))
    assert err.value.key == "encryption_keys"
    with pytest.raises(ConfigError) as err:
        Keyring.from_config(SimpleNamespace(encryption_key="short", encryption_keys=None))
    assert err.value.key == "encryption_key"


# --- the v2 / e2 envelope ----------------------------------------------------------------------

def test_associated_data_is_the_labelled_collection_and_path():
    assert associated_data(COLL, PATH) == b"astro_db:v2:birthcharts\x00birthData.location.name"
    assert crypto.AAD_PREFIX == b"astro_db:v2:"


def test_a_random_envelope_is_v2_and_decrypts_with_plain_aes_gcm_and_the_associated_data():
    sealed = Keyring(RAW_A).seal("Stratford-upon-Avon", COLL, PATH, False)
    assert sealed.startswith(f"enc:v2:{KID_A}:") and "=" not in sealed
    assert node_decrypt(RAW_A, sealed, associated_data(COLL, PATH)) == "Stratford-upon-Avon"
    assert len(body(sealed)) == 12 + len("Stratford-upon-Avon") + 16
    with pytest.raises(Exception):
        node_decrypt(RAW_A, sealed, None)  # bound: without its context it does not open


def test_a_deterministic_envelope_is_e2_with_a_nonce_from_an_hmac_of_collection_path_and_value():
    sealed = Keyring(RAW_A).seal("Oslo", COLL, PATH, True)
    assert sealed.startswith(f"enc:e2:{KID_A}:")
    nonce_key = hmac.new(RAW_A, b"astro_db:e2:nonce-key", hashlib.sha256).digest()
    nonce = hmac.new(nonce_key, f"{COLL}\0{PATH}\0Oslo".encode(), hashlib.sha256).digest()[:12]
    assert body(sealed)[:12] == nonce
    assert node_decrypt(RAW_A, sealed, associated_data(COLL, PATH)) == "Oslo"


def test_a_known_answer_e2_envelope():
    """Byte for byte, computed independently; this one ends in 'X' (only '=' padding is stripped)."""
    plaintext = "Oslo 290"
    nonce_key = hmac.new(RAW_A, b"astro_db:e2:nonce-key", hashlib.sha256).digest()
    nonce = hmac.new(nonce_key, f"{COLL}\0{PATH}\0{plaintext}".encode(), hashlib.sha256).digest()[:12]
    ciphertext = AESGCM(RAW_A).encrypt(nonce, plaintext.encode(), b"astro_db:v2:" + COLL.encode() + b"\0" + PATH.encode())
    expected = f"enc:e2:{KID_A}:" + base64.urlsafe_b64encode(nonce + ciphertext).decode()
    assert expected == "enc:e2:5c3c4e06:Uph7-i8FxFYmFnsVnWLLnpNIUkvu2jSDkagQCU2SrAcnH0dX"
    assert Keyring(RAW_A).seal(plaintext, COLL, PATH, True) == expected


def test_deterministic_envelopes_are_equal_for_equal_values_and_differ_by_value_path_collection_and_key():
    ring = Keyring(RAW_A)
    sealed = ring.seal("Oslo", COLL, PATH, True)
    assert ring.seal("Oslo", COLL, PATH, True) == sealed
    others = {ring.seal("Oslo ", COLL, PATH, True), ring.seal("Oslo", "users", PATH, True),
              ring.seal("Oslo", COLL, "birthData.timezone", True), Keyring(RAW_B).seal("Oslo", COLL, PATH, True)}
    assert sealed not in others and len(others) == 4


def test_random_envelopes_differ_every_time():
    ring = Keyring(RAW_A)
    assert len({ring.seal("Oslo", COLL, PATH, False) for _ in range(5)}) == 5


def test_equality_on_a_queryable_field_matches_its_blind_index_under_every_key_never_an_envelope():
    """Equality is matched by the blind index, under the primary key and every older one, so
    data not yet rotated matches too; no envelope (e2 or d1) a value may be stored as is sent
    (``Keyring.equal_forms``, which made them, was removed: no filter reached it)."""
    from astro_db.security.fieldpaths import Sensitive

    ring = Keyring(RAW_A, [RAW_B])
    sealer = crypto.FieldCrypto(ring, [])
    sealer.fields["BirthChart"] = (Sensitive(PATH, deterministic=True),)
    info = SimpleNamespace(name="BirthChart", collection=COLL)
    sent = sealer.seal_filter(info, {PATH: "Oslo"})
    assert sent == {PATH + "Index": {"$in": [ring.blind.hash("Oslo", COLL, PATH), Keyring(RAW_B).blind.hash("Oslo", COLL, PATH)]}}
    assert sent[PATH + "Index"]["$in"][0] != sent[PATH + "Index"]["$in"][1]
    stored = {ring.seal("Oslo", COLL, PATH, True), Keyring(RAW_B).seal("Oslo", COLL, PATH, True),
              v1(RAW_A, "Oslo", deterministic=True), v1(RAW_B, "Oslo", deterministic=True)}
    assert not stored & set(sent[PATH + "Index"]["$in"])
    sealer.fields["BirthChart"] = (Sensitive(PATH, deterministic=False),)
    with pytest.raises(crypto.QueryError, match="cannot be queried by value"):
        sealer.seal_filter(info, {PATH: "Oslo"})


def test_text_that_is_not_utf8_encodable_is_refused():
    with pytest.raises(EncryptionError, match="not valid text"):
        Keyring(RAW_A).seal("\ud800", COLL, PATH, False)


# --- opening ----------------------------------------------------------------------------------

def test_v1_and_d1_envelopes_of_the_previous_release_still_open():
    ring = Keyring(RAW_B, [RAW_A])
    assert ring.open(v1(RAW_A, "Rome"), COLL, PATH) == "Rome"
    assert ring.open(v1(RAW_A, "Rome", deterministic=True), "any", "other.path") == "Rome"  # unbound


def test_an_envelope_moved_to_another_field_or_collection_does_not_open():
    ring = Keyring(RAW_A)
    for deterministic in (False, True):
        sealed = ring.seal("Oslo", COLL, PATH, deterministic)
        assert ring.open(sealed, COLL, PATH) == "Oslo"
        for coll, path in (("users", PATH), (COLL, "name"), (COLL + "\0x", PATH)):
            with pytest.raises(EncryptionError, match="decryption failed .*moved from another field; key id " + KID_A):
                ring.open(sealed, coll, path)


def test_an_envelope_of_an_unconfigured_key_names_the_key_ids_only():
    with pytest.raises(EncryptionError) as err:
        Keyring(RAW_B).open(Keyring(RAW_A).seal("Oslo", COLL, PATH, False), COLL, PATH)
    assert str(err.value) == (f"encrypted with key id {KID_A}, which is not configured "
                              f"(configured: {key_id(RAW_B)}); add that key to 'encryption_keys'")


def test_an_envelope_of_an_unconfigured_key_lists_every_configured_key_id():
    raw_c = b"C" * 32
    with pytest.raises(EncryptionError) as err:
        Keyring(RAW_B, [raw_c]).open(Keyring(RAW_A).seal("Oslo", COLL, PATH, False), COLL, PATH)
    assert str(err.value) == (f"encrypted with key id {KID_A}, which is not configured "
                              f"(configured: {key_id(RAW_B)}, {key_id(raw_c)}); add that key to 'encryption_keys'")


@pytest.mark.parametrize("version", ["v3", "d2", "e1", "x9"])
def test_an_unknown_envelope_version_is_refused(version):
    envelope = raw_envelope(RAW_A, b"x", version)
    with pytest.raises(EncryptionError, match=f"unknown encryption envelope version '{version}'"):
        Keyring(RAW_A).open(envelope, COLL, PATH)


MALFORMED = "malformed encryption envelope"
FAILED = f"decryption failed (wrong key, tampered data or moved from another field; key id {KID_A})"


@pytest.mark.parametrize("mangle", [
    lambda e: e.replace("enc:", "ENC:"),
    lambda e: e.replace("enc:v2", "enc:V2"),
    lambda e: e.replace("enc:v2", "enc:v22"),
    lambda e: e.replace(f":{KID_A}:", f":{KID_A[:7]}:"),
    lambda e: e.replace(f":{KID_A}:", f":{KID_A.upper()}:"),
    lambda e: e + "\n",
    lambda e: e + ":x",
    lambda e: e[:-1] + "+",
    lambda e: e.split(":")[0] + ":" + ":".join(e.split(":")[1:3]) + ":",
    lambda e: e + "A",  # a base64 length no encoder produces
], ids=["prefix", "version-case", "version-length", "kid-length", "kid-case", "newline", "extra-part", "bad-char",
        "empty-body", "b64-length"])
def test_a_malformed_envelope_is_refused(mangle):
    envelope = mangle(Keyring(RAW_A).seal("Oslo", COLL, PATH, False))
    with pytest.raises(EncryptionError) as err:
        Keyring(RAW_A).open(envelope, COLL, PATH)
    assert str(err.value) in (MALFORMED, FAILED)


@pytest.mark.parametrize("envelope", [f"enc:v2:{KID_A}", f"enc:v2:{KID_A}:{'A' * 41}", "enc:v2:x:AAAA"])
def test_a_malformed_envelope_says_so(envelope):
    with pytest.raises(EncryptionError) as err:
        Keyring(RAW_A).open(envelope, COLL, PATH)
    assert str(err.value) == MALFORMED


def test_a_body_shorter_than_nonce_and_tag_is_malformed_and_one_of_exactly_that_length_is_checked():
    short = f"enc:v2:{KID_A}:{b64(bytes(27))}"
    with pytest.raises(EncryptionError) as err:
        Keyring(RAW_A).open(short, COLL, PATH)
    assert str(err.value) == "malformed encryption envelope (too short)"
    with pytest.raises(EncryptionError, match="decryption failed"):
        Keyring(RAW_A).open(f"enc:v2:{KID_A}:{b64(bytes(28))}", COLL, PATH)
    empty = raw_envelope(RAW_A, b"", "v2", associated_data(COLL, PATH))  # exactly 28 bytes, authentic
    assert len(body(empty)) == 28 and Keyring(RAW_A).open(empty, COLL, PATH) == ""


def test_tampering_with_any_byte_fails_authentication():
    sealed = Keyring(RAW_A).seal("Oslo", COLL, PATH, False)
    raw = body(sealed)
    for i in (0, 11, 12, len(raw) - 1):
        flipped = raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:]
        with pytest.raises(EncryptionError, match="decryption failed"):
            Keyring(RAW_A).open(f"enc:v2:{KID_A}:{b64(flipped)}", COLL, PATH)


def test_authentic_ciphertext_of_bytes_that_are_not_utf8_is_an_encryption_error():
    envelope = raw_envelope(RAW_A, b"\xff\xfe", "v2", associated_data(COLL, PATH))
    with pytest.raises(EncryptionError, match="decryption failed"):
        Keyring(RAW_A).open(envelope, COLL, PATH)


def test_is_current_means_primary_key_v2_family_and_the_fields_mode():
    ring = Keyring(RAW_A, [RAW_B])
    assert ring.is_current(ring.seal("x", COLL, PATH, False), False)
    assert not ring.is_current(ring.seal("x", COLL, PATH, False), True)
    assert ring.is_current(ring.seal("x", COLL, PATH, True), True)
    assert not ring.is_current(ring.seal("x", COLL, PATH, True), False)
    assert not ring.is_current(Keyring(RAW_B).seal("x", COLL, PATH, True), True)
    assert not ring.is_current(v1(RAW_A, "x"), False) and not ring.is_current(v1(RAW_A, "x", deterministic=True), True)
    assert not ring.is_current("enc:v2:nonsense", False)


def test_envelope_detection_and_the_unreadable_marker():
    assert is_envelope("enc:") and is_envelope("enc:v2:x:y") and not is_envelope("Enc:v2") and not is_envelope(b"enc:")
    assert not is_envelope(None) and not is_envelope(" enc:v2:")
    assert UNREADABLE == "<unreadable>" and repr(UNREADABLE) == "UNREADABLE" and is_unreadable(UNREADABLE)
    assert UNREADABLE.strip() is UNREADABLE and UNREADABLE.strip("<") is UNREADABLE
    assert not is_unreadable("<unreadable>") and not is_unreadable(None)


# --- properties -------------------------------------------------------------------------------

envelope_like = st.builds(lambda v, k, b: f"enc:{v}:{k}:{b}", st.sampled_from(["v1", "v2", "d1", "e2", "zz"]),
                          st.sampled_from([KID_A, "00000000", "x"]), st.text(alphabet="AZaz09-_=+/", max_size=60))
texts = st.one_of(st.text(), envelope_like, st.text(alphabet="\x00\u0301\U0001f600e:nc"))
names = st.text(alphabet="abcdefXYZ_.", min_size=1, max_size=20)


@settings(max_examples=examples(150), deadline=None)
@given(texts, st.booleans())
def test_any_text_round_trips_whatever_it_looks_like(value, deterministic):
    ring = Keyring(RAW_A)
    sealed = ring.seal(value, COLL, PATH, deterministic)
    assert sealed != value and ring.open(sealed, COLL, PATH) == value


@settings(max_examples=examples(100), deadline=None)
@given(texts, st.booleans(), names, names)
def test_any_envelope_opens_only_where_it_was_sealed(value, deterministic, coll, path):
    ring = Keyring(RAW_A)
    sealed = ring.seal(value, COLL, PATH, deterministic)
    if (coll, path) == (COLL, PATH):
        assert ring.open(sealed, coll, path) == value
    else:
        with pytest.raises(EncryptionError):
            ring.open(sealed, coll, path)
