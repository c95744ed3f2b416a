"""FieldCrypto alone: which values get sealed, which filters match ciphertext, which paths open.

No database: a FieldCrypto over the real model registry, fed stored-form documents, updates and
filters, its output checked value by value (and opened again with a plain Keyring).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_db.errors import EncryptionError, QueryError
from astro_db.registry import default_registry
from astro_db.security.crypto import UNREADABLE, FieldCrypto, Keyring, Pending, is_envelope, is_unreadable
from astro_db.security.fieldpaths import Sensitive, sensitive_fields
from astro_db.security.vault import SHARED_KEY

RAW_A, RAW_B = b"A" * 32, b"B" * 32
NAME = "birthData.location.name"
REGISTRY = default_registry()
CHART = REGISTRY.resolve("BirthChart")
USER = REGISTRY.resolve("User")
COLL = CHART.collection
BLIND = NAME + "Index"
PLAIN = SimpleNamespace(name="Plain", collection="plain")  # a model with no sensitive field


def hashed(*values, keys=(RAW_A,)):
    """What an equality on the birth place matches: its blind index under each key."""
    return Keyring(keys[0], keys[1:]).blind.hashes(list(values), COLL, NAME, str)


def fc(*older: bytes, primary: bytes | None = RAW_A, allow: bool = False) -> FieldCrypto:
    return FieldCrypto(Keyring(primary, older) if primary else None, REGISTRY, allow_plaintext=allow)


def doc(place, **extra):
    return {"_id": 7, "birthData": {"location": {"name": place, "coordinates": [1, 2]}, "timezone": "UTC"}, **extra}


def place(d):
    return d["birthData"]["location"]["name"]


def test_model_infos_without_a_declaration_are_sealed_randomly_under_the_shared_key():
    bare = SimpleNamespace(name="BirthChart", cls=CHART.cls, collection=COLL)  # no declaration: no owner, none queryable
    crypto = FieldCrypto(Keyring(RAW_A), [bare])
    assert crypto.fields == {"BirthChart": (Sensitive("birthData.date", False, text=False), Sensitive(NAME, False))}
    assert crypto.owners == {"BirthChart": None}
    assert crypto.subject_key(bare, {"_id": 7, "userId": "u1"}) == SHARED_KEY
    assert "nameIndex" not in crypto.seal_document(bare, doc("Oslo"))["birthData"]["location"]


def test_the_declared_sensitive_paths_and_their_modes():
    assert fc().fields["BirthChart"] == (Sensitive("birthData.date", False, text=False), Sensitive(NAME, True))
    assert fc().fields["User"] == (Sensitive("email", True), Sensitive("name", False))
    assert fc().fields["PlanetaryInsight"] == (Sensitive("recommendations", False), Sensitive("summary", False))
    assert fc().fields["TimingRecommendation"] == (Sensitive("risks.description", False),)
    assert sensitive_fields("BirthChart", CHART.cls, set())[1] == Sensitive(NAME, False)
    assert Sensitive(NAME, True).blind == BLIND and Sensitive("name", False).blind is None


# --- sealing -----------------------------------------------------------------------------------

def test_seal_document_seals_a_copy_and_leaves_other_fields_and_models_alone():
    crypto, original = fc(), doc("Oslo")
    sealed = crypto.seal_document(CHART, original)
    assert place(original) == "Oslo" and sealed["birthData"]["timezone"] == "UTC"
    assert place(sealed) == Keyring(RAW_A).seal("Oslo", COLL, NAME, True)
    assert sealed["birthData"]["location"]["nameIndex"] == hashed("Oslo")[0]  # the blind index beside it
    user = {"name": "enc:v2:x:y"}
    assert crypto.seal_document(PLAIN, user) is user
    assert crypto.seal_document(CHART, {"birthData": {"location": {"name": None}}}) == {"birthData": {"location": {"name": None}}}
    assert crypto.seal_document(CHART, {"birthData": {}}) == {"birthData": {}}


def test_only_strings_can_be_sealed():
    with pytest.raises(EncryptionError, match=f"{NAME}: only string values can be encrypted, got int"):
        fc().seal_document(CHART, doc(5))


def test_seal_update_seals_set_push_and_add_to_set_and_refuses_pull():
    crypto, ring = fc(), Keyring(RAW_A)
    sealed = ring.seal("Oslo", COLL, NAME, True)
    out = crypto.seal_update(CHART, {
        "$set": {NAME: "Oslo", "houseSystem": "koch"},
        "$unset": {"birthData.location.coordinates": ""},
    })
    index = hashed("Oslo")[0]
    assert out == {"$set": {NAME: sealed, "houseSystem": "koch", BLIND: index}, "$unset": {"birthData.location.coordinates": ""}}
    parent = crypto.seal_update(CHART, {"$set": {"birthData.location": {"name": "Oslo", "coordinates": [1, 2]}}})
    assert parent["$set"]["birthData.location"] == {"name": sealed, "coordinates": [1, 2], "nameIndex": index}
    top = crypto.seal_update(CHART, {"$set": {"birthData": {"location": {"name": "Oslo"}}}})
    assert top["$set"]["birthData"]["location"] == {"name": sealed, "nameIndex": index}
    assert crypto.seal_update(CHART, {"$unset": {NAME: ""}}) == {"$unset": {NAME: "", BLIND: ""}}
    for op in ("$push", "$addToSet"):  # one blind index holds one value: a list of them is refused
        with pytest.raises(QueryError, match=f"\\{op} of the encrypted field"):
            crypto.seal_update(CHART, {op: {NAME: "Oslo"}})
    summary = crypto.seal_update(REGISTRY.resolve("PlanetaryInsight"), {"$push": {"recommendations": {"$each": ["a", "b"]}}})
    assert [v[:7] for v in summary["$push"]["recommendations"]["$each"]] == ["enc:v2:", "enc:v2:"]
    with pytest.raises(QueryError, match="\\$pull cannot match on the encrypted field"):
        crypto.seal_update(CHART, {"$pull": {"birthData.location": {"name": "Oslo"}}})
    with pytest.raises(QueryError):
        crypto.seal_update(CHART, {"$pull": {NAME: "Oslo"}})
    assert crypto.seal_update(CHART, {"$pull": {"positions": {"body": "Sun"}}}) == {"$pull": {"positions": {"body": "Sun"}}}
    assert crypto.seal_update(CHART, {"$inc": {NAME: 1}}) == {"$inc": {NAME: 1}}
    plain = {"$set": {"name": "enc:v2:x:y"}}
    assert crypto.seal_update(PLAIN, plain) is plain


def test_list_positions_in_update_paths_still_name_the_field():
    out = fc().seal_update(CHART, {"$set": {"birthData.location.0.name": "Oslo"}})
    assert out["$set"]["birthData.location.0.name"] == Keyring(RAW_A).seal("Oslo", COLL, NAME, True)


# --- filters -----------------------------------------------------------------------------------

def test_equality_filters_match_the_blind_index_under_every_key():
    crypto = fc(RAW_B)
    forms = hashed("Oslo", keys=(RAW_A, RAW_B))
    assert len(forms) == 2 and forms[0] == hashed("Oslo")[0] and len(forms[0]) == 43
    assert crypto.seal_filter(CHART, {NAME: "Oslo"}) == {BLIND: {"$in": forms}}
    assert crypto.seal_filter(CHART, {NAME: {"$eq": "Oslo"}}) == {BLIND: {"$in": forms}}
    assert crypto.seal_filter(CHART, {NAME: {"$in": ["Oslo", None]}}) == {BLIND: {"$in": [*forms, None]}}
    assert crypto.seal_filter(CHART, {NAME: {"$ne": "Oslo"}}) == {BLIND: {"$nin": forms}}
    assert crypto.seal_filter(CHART, {NAME: {"$nin": ["Oslo"], "$exists": True}}) == {
        NAME: {"$exists": True}, BLIND: {"$nin": forms}}
    assert crypto.seal_filter(CHART, {NAME: {"$exists": False}}) == {NAME: {"$exists": False}}
    assert crypto.seal_filter(CHART, {NAME: None}) == {NAME: None}
    sealed = crypto.seal_filter(CHART, {"$or": [{NAME: "Oslo"}, {"houseSystem": "koch"}]})
    assert sealed == {"$or": [{BLIND: {"$in": forms}}, {"houseSystem": "koch"}]}
    assert crypto.seal_filter(CHART, {"$and": [{NAME: "Oslo"}]}) == {"$and": [{BLIND: {"$in": forms}}]}
    assert crypto.seal_filter(CHART, {"$nor": [{NAME: "Oslo"}]}) == {"$nor": [{BLIND: {"$in": forms}}]}
    assert crypto.seal_filter(CHART, {"birthData.location": {"$elemMatch": {"name": "Oslo"}}}) == {
        "birthData.location": {"$elemMatch": {"nameIndex": {"$in": forms}}}}
    empty, user = {}, {"name": "enc:"}
    assert crypto.seal_filter(CHART, empty) is empty and crypto.seal_filter(PLAIN, user) is user
    # the email: its canonical (stored) spelling is what is hashed
    email = crypto.seal_filter(USER, {"email": "ann@example.com"})
    assert email == {"emailIndex": {"$in": Keyring(RAW_A, [RAW_B]).blind.hashes(["ann@example.com"], "users", "email", str)}}


@pytest.mark.parametrize("logical", ["$and", "$or", "$nor"])
def test_every_key_after_a_logical_clause_is_kept_and_sealed(logical):
    """The keys that follow ``$and``/``$or``/``$nor`` in a filter stay in it (dropped, the filter
    would match more documents than asked), and an encrypted one among them is sealed too."""
    crypto = fc()
    oslo, rome = hashed("Oslo"), hashed("Rome")
    filt = {logical: [{NAME: "Oslo"}, {"houseSystem": "koch"}], "userId": 7, NAME: {"$ne": "Rome"}, "houseSystem": "placidus"}
    assert crypto.seal_filter(CHART, filt) == {
        logical: [{BLIND: {"$in": oslo}}, {"houseSystem": "koch"}], "userId": 7, BLIND: {"$nin": rome}, "houseSystem": "placidus"}
    nested = {"$and": [{"$or": [{NAME: "Oslo"}], "houseSystem": "koch"}], NAME: "Rome"}
    assert crypto.seal_filter(CHART, nested) == {"$and": [{"$or": [{BLIND: {"$in": oslo}}], "houseSystem": "koch"}], BLIND: {"$in": rome}}


def test_conditions_around_an_encrypted_path_pass_through_and_logic_inside_elem_match_is_sealed():
    crypto = fc()
    oslo, rome = hashed("Oslo"), hashed("Rome")
    # conditions on a parent of the encrypted path that do not compare it: unchanged
    for filt in ({"birthData": {"$exists": True}}, {"birthData.location": {"$type": "object"}}, {"birthData": {}},
                 {"positions": {"body": "Sun", "sign": "Leo"}}, {"positions": {"$elemMatch": {"body": "Sun"}}}):
        assert crypto.seal_filter(CHART, filt) == filt
    # $or / $and inside an $elemMatch on a parent: the paths inside are relative to it
    assert crypto.seal_filter(CHART, {"birthData.location": {"$elemMatch": {"$or": [{"name": "Oslo"}, {"name": "Rome"}]}}}) == {
        "birthData.location": {"$elemMatch": {"$or": [{"nameIndex": {"$in": oslo}}, {"nameIndex": {"$in": rome}}]}}}


@pytest.mark.parametrize("filt, message", [
    ({NAME: {"$regex": "^Os"}}, r"operator \$regex cannot be used on the encrypted field 'birthData\.location\.name'; only equality"),
    ({NAME: {"$gt": "A"}}, r"operator \$gt cannot be used on the encrypted field"),
    ({NAME: {"$eq": "Oslo", "$in": ["Rome"]}},
     r"combine at most one of \$eq/\$in \(and one of \$ne/\$nin\) on the encrypted field 'birthData\.location\.name'"),
    ({"birthData.location": {"name": "Oslo"}},
     r"match 'birthData\.location\.name' by its own path: it is encrypted inside 'birthData\.location'"),
])
def test_a_refused_filter_on_an_encrypted_field_says_why(filt, message):
    with pytest.raises(QueryError, match=message):
        fc().seal_filter(CHART, filt)


def test_a_literal_envelope_written_by_project_is_never_opened():
    """``$project`` setting an encrypted path to a literal (someone else's ciphertext) must not
    turn aggregation into a decryption oracle: the path stays sealed in the output."""
    crypto = fc()
    victim = place(crypto.seal_document(CHART, doc("Oslo")))
    mine = doc(place(crypto.seal_document(CHART, doc("Rome"))))
    for stage in ({"$project": {NAME: {"$literal": victim}}},
                  {"$project": {"_id": 0, "houseSystem": 1, NAME: {"$literal": victim}}},
                  {"$project": {"birthData": {"location": {"name": {"$literal": victim}}}}},
                  {"$project": {"birthData.location": {"name": {"$literal": victim}}}},
                  {"$project": {NAME: victim}},
                  {"$project": {"birthData": {"location": {"$literal": {"name": victim}}}}},
                  {"$addFields": {NAME: {"$literal": victim}}}):
        out = crypto.open_output(CHART, [stage], [doc(victim)])
        assert place(out[0]) == victim, stage
    # what stays the stored value opens
    assert place(crypto.open_output(CHART, [{"$project": {"birthData": 1, "x": {"$literal": victim}}}], [mine])[0]) == "Rome"
    assert place(crypto.open_output(CHART, [{"$project": {"birthData": {"location": {"name": True}}}}], [mine])[0]) == "Rome"


@pytest.mark.parametrize("filt", [
    {NAME: {"$regex": "^Os"}},
    {NAME: {"$gt": "A"}},
    {NAME: {"$eq": "Oslo", "$in": ["Rome"]}},
    {NAME: {"$ne": "Oslo", "$nin": ["Rome"]}},
    {"birthData.location": {"name": "Oslo"}},
    {"birthData": {"location": {"name": "Oslo"}}},
])
def test_filters_that_cannot_work_on_ciphertext_are_refused(filt):
    with pytest.raises(QueryError):
        fc().seal_filter(CHART, filt)


def test_a_random_nonce_field_can_only_be_queried_for_presence():
    import dataclasses

    # the same models with no field declared queryable (BirthChart's meta["queryable"] left out)
    plain = [dataclasses.replace(i, declaration=dataclasses.replace(i.declaration, queryable=frozenset()))
             for i in REGISTRY]
    crypto = FieldCrypto(Keyring(RAW_A, ()), plain)
    assert crypto.fields["BirthChart"][1] == Sensitive(NAME, False)
    with pytest.raises(QueryError, match="cannot be queried by value; only its presence"):
        crypto.seal_filter(CHART, {NAME: "Oslo"})
    assert crypto.seal_filter(CHART, {NAME: {"$exists": False}}) == {NAME: {"$exists": False}}
    assert place(crypto.seal_document(CHART, doc("Oslo"))).startswith("enc:v2:")


def test_non_string_equality_values_pass_through_unhashed():
    """A number on a text field's index matches nothing (the index holds strings), as before."""
    assert fc().seal_filter(CHART, {NAME: {"$in": [5]}}) == {BLIND: {"$in": [5]}}


# --- without a key -------------------------------------------------------------------------------

def test_without_a_key_the_refusal_says_what_to_do():
    crypto = fc(primary=None)
    with pytest.raises(EncryptionError) as err:
        crypto.seal_document(CHART, doc("Oslo"))
    assert str(err.value) == (f"BirthChart.{NAME} is a sensitive field: configure encryption_key to write it "
                              "(or allow_plaintext_sensitive=True, for development only)")
    with pytest.raises(EncryptionError) as err:
        crypto.seal_filter(CHART, {NAME: "Oslo"})
    assert str(err.value) == (f"BirthChart.{NAME} is a sensitive field: configure encryption_key to query it by value "
                              "(without the key it could only match plaintext) (or allow_plaintext_sensitive=True, "
                              "for development only)")


def test_without_a_key_writes_and_equality_on_sensitive_fields_are_refused():
    crypto = fc(primary=None)
    for call in (lambda: crypto.seal_document(CHART, doc("Oslo")),
                 lambda: crypto.seal_update(CHART, {"$set": {NAME: "Oslo"}}),
                 lambda: crypto.seal_filter(CHART, {NAME: "Oslo"}),
                 lambda: crypto.seal_filter(CHART, {NAME: {"$nin": [None, "Oslo"]}})):
        with pytest.raises(EncryptionError, match="BirthChart.birthData.location.name is a sensitive field: configure encryption_key"):
            call()
    assert crypto.seal_document(CHART, doc(None)) == doc(None)
    assert crypto.seal_filter(CHART, {NAME: {"$in": [None]}}) == {NAME: {"$in": [None]}}
    assert not crypto.enabled and fc().enabled


def test_the_opt_out_passes_plaintext_through_except_envelope_shaped_text():
    crypto = fc(primary=None, allow=True)
    assert crypto.seal_document(CHART, doc("Oslo")) == doc("Oslo")  # no blind index without a key
    # plaintext stored, so a filter runs as written: equality, and what a key would refuse
    for filt in ({NAME: "Oslo"}, {NAME: {"$regex": "^Os"}}, {"birthData.date": {"$gt": 1}}):
        assert crypto.seal_filter(CHART, filt) is filt
    with pytest.raises(EncryptionError, match="^" + re.escape(
            f"BirthChart.{NAME}: a plaintext value may not start with 'enc:' (it would read back as an envelope); "
            "configure encryption_key to store it sealed") + "$"):
        crypto.seal_document(CHART, doc("enc:"))


def test_without_a_key_a_document_is_checked_in_place_and_not_copied():
    """Nothing is sealed without a key (plaintext allowed): ``seal_document`` returns the document
    itself (a create_many of 5,000 insights copied each for nothing), and still refuses every
    value it refuses with a key: in a list, in a sub-document, of a non-text field."""
    crypto = fc(primary=None, allow=True)
    insight = REGISTRY.resolve("PlanetaryInsight")
    stored = {"_id": 7, "summary": "calm", "recommendations": ["walk", "rest"], "energyLevel": 3}
    assert crypto.seal_document(insight, stored) is stored
    assert stored == {"_id": 7, "summary": "calm", "recommendations": ["walk", "rest"], "energyLevel": 3}
    chart = doc("Oslo")
    assert crypto.seal_document(CHART, chart) is chart and place(chart) == "Oslo"
    assert crypto.seal_document(insight, {"_id": 7, "recommendations": ["walk", None], "summary": None}) is not None
    for bad, message in (({"recommendations": ["walk", "enc:v2:x"]}, "may not start with 'enc:'"),
                         ({"recommendations": [None, "enc:v2:x"]}, "may not start with 'enc:'"),
                         ({"summary": "enc:v2:x"}, "may not start with 'enc:'"),
                         ({"summary": UNREADABLE}, "refusing to write back UNREADABLE"),
                         ({"recommendations": ["walk", 5]}, "only string values can be encrypted, got int")):
        with pytest.raises(EncryptionError, match=message):
            crypto.seal_document(insight, {"_id": 7, **bad})
    with pytest.raises(EncryptionError, match="cannot be encrypted"):
        crypto.seal_document(CHART, {"_id": 7, "birthData": {"date": object()}})
    with pytest.raises(EncryptionError, match="configure encryption_key"):  # not allowed: refused as before
        fc(primary=None, allow=False).seal_document(insight, {"_id": 7, "summary": "calm"})


# --- opening -----------------------------------------------------------------------------------

def test_open_document_opens_declared_paths_in_place_and_keeps_legacy_plaintext():
    crypto = fc()
    stored = crypto.seal_document(CHART, doc("Oslo"))
    assert crypto.open_document(CHART, stored) is stored and place(stored) == "Oslo"
    assert place(crypto.open_document(CHART, doc("legacy plaintext"))) == "legacy plaintext"
    assert crypto.open_document(CHART, None) is None
    assert crypto.open_document(CHART, {"_id": 1}) == {"_id": 1}
    sealed = crypto.seal_document(CHART, doc("Oslo"))
    assert place(crypto.open_document(CHART, sealed, paths=[])) == place(crypto.seal_document(CHART, doc("Oslo")))
    assert place(crypto.open_document(CHART, sealed, paths=[NAME])) == "Oslo"
    user = {"name": place(crypto.seal_document(CHART, doc("Oslo")))}
    assert crypto.open_document(PLAIN, dict(user)) == user
    # the blind index is the service's: never part of what a read returns
    assert crypto.open_document(CHART, sealed)["birthData"]["location"] == {"name": "Oslo", "coordinates": [1, 2]}
    assert crypto.stats() == {"unreadable": 0}


def test_an_envelope_that_does_not_open_becomes_unreadable_logged_and_counted(caplog):
    crypto = fc()
    foreign = fc(primary=RAW_B).seal_document(CHART, doc("Oslo"))
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert place(crypto.open_document(CHART, foreign)) is UNREADABLE
        assert place(fc(primary=None).open_document(CHART, fc().seal_document(CHART, doc("Oslo")))) is UNREADABLE
    assert crypto.stats() == {"unreadable": 1}
    (first, second) = caplog.records
    assert first.name == "astro_db.security.crypto" and first.levelno == logging.WARNING
    assert first.getMessage().startswith(f"unreadable encrypted value in {COLL} _id=7 at {NAME}: encrypted with key id")
    assert second.getMessage() == (f"unreadable encrypted value in {COLL} _id=7 at {NAME}: no encryption key is "
                                   "configured; set encryption_key (or ASTRO_DB_ENCRYPTION_KEY)")


def test_open_output_opens_only_paths_no_stage_rewrote():
    crypto = fc()
    sealed = place(crypto.seal_document(CHART, doc("Oslo")))
    out = crypto.open_output(CHART, [{"$match": {}}], [doc(sealed), doc(sealed)])
    assert [place(d) for d in out] == ["Oslo", "Oslo"]
    kept = crypto.open_output(CHART, [{"$addFields": {NAME: "$x"}}], [doc(sealed)])
    assert place(kept[0]) == sealed
    users = [{"name": sealed}]
    assert crypto.open_output(PLAIN, [], users) is users


# --- rotation ----------------------------------------------------------------------------------

def test_needs_rotation():
    crypto, old = fc(RAW_B), fc(primary=RAW_B)
    current = place(crypto.seal_document(CHART, doc("Oslo")))
    assert not crypto.needs_rotation(current) and not crypto.needs_rotation(current, Sensitive(NAME, True))
    assert crypto.needs_rotation(current, Sensitive(NAME, False))  # the field's mode changed
    random = Keyring(RAW_A).seal("Oslo", COLL, NAME, False)
    assert not crypto.needs_rotation(random) and crypto.needs_rotation(random, Sensitive(NAME, True))
    assert crypto.needs_rotation(place(old.seal_document(CHART, doc("Oslo"))))
    assert crypto.needs_rotation("plaintext") and crypto.needs_rotation("enc:v1:broken")
    assert not crypto.needs_rotation(None) and not crypto.needs_rotation(5)
    assert not fc(primary=None).needs_rotation("plaintext")


def test_reseal_upgrades_stale_values_and_keeps_current_ones():
    crypto = fc(RAW_B)
    current = place(crypto.seal_document(CHART, doc("Oslo")))
    stale = place(fc(primary=RAW_B).seal_document(CHART, doc("Rome")))
    fresh = crypto.reseal(CHART, {"birthData": {"location": {"name": current}}})
    assert place(fresh) is current
    upgraded = crypto.reseal(CHART, doc(stale))
    assert place(upgraded) == Keyring(RAW_A).seal("Rome", COLL, NAME, True)
    assert upgraded["birthData"]["location"]["nameIndex"] == hashed("Rome")[0]  # written beside it
    assert place(crypto.reseal(CHART, doc("plain"))) == Keyring(RAW_A).seal("plain", COLL, NAME, True)
    assert place(crypto.reseal(CHART, doc(None))) is None and crypto.reseal(PLAIN, {"name": "x"}) == {"name": "x"}
    original = doc(stale)
    crypto.reseal(CHART, original)
    assert place(original) == stale
    with pytest.raises(EncryptionError):
        fc().reseal(CHART, doc(stale))  # RAW_B is not configured: nothing is lost
    with pytest.raises(EncryptionError) as err:
        fc(primary=None).reseal(CHART, doc("x"))
    assert str(err.value) == "re-sealing needs encryption_key"


def test_without_a_key_vault_rotation_judges_each_value_by_its_own_field():
    """Keyring only (no key vault can be made): a birth date stored in clear (not text) is sealed,
    a birth place sealed in the other mode is sealed again in its own, a number in a text field
    is not something a write would seal."""
    crypto, born = fc(), datetime(1990, 5, 1, 10, 30, tzinfo=timezone.utc)
    date = crypto.fields["BirthChart"][0]
    assert crypto.needs_rotation(born, date) and not crypto.needs_rotation(5, Sensitive("name", False))
    random = Keyring(RAW_A).seal("Oslo", COLL, NAME, False)
    out = crypto.reseal(CHART, {"_id": 7, "birthData": {"date": born, "location": {"name": random}}})
    assert place(out) == Keyring(RAW_A).seal("Oslo", COLL, NAME, True)
    assert is_envelope(out["birthData"]["date"])
    assert crypto.open_document(CHART, out)["birthData"]["date"] == born


def test_only_a_value_left_for_its_document_makes_an_update_pending():
    assert not FieldCrypto.has_pending({"$set": {"houseSystem": "koch", "birthData.timezone": "UTC"}, "$inc": {"n": 1}})
    assert not FieldCrypto.has_pending({"$push": {"tags": {"$each": ["a", "b"]}}, "$unset": {"x": ""}})
    assert FieldCrypto.has_pending({"$set": {"x": [1, {"y": Pending("v", "summary")}]}})
    assert FieldCrypto.has_pending(Pending("v", "summary"))


def test_text_search_on_a_model_with_encrypted_texts_names_them():
    with pytest.raises(QueryError) as err:
        fc().seal_filter(USER, {"$text": {"$search": "ann"}})
    assert str(err.value) == "$text cannot search User: its text is encrypted (email, name), so the server holds only ciphertext"


def test_leaves_walk_through_lists():
    crypto = fc()
    assert list(crypto.leaves({"a": [{"b": 1}, {"b": [2, 3]}, {"c": 4}]}, "a.b")) == [1, 2, 3]
    assert list(crypto.leaves({"a": 1}, "x.y")) == []


def test_stats_counts_under_concurrent_reads():
    import threading

    crypto = fc()
    foreign = place(fc(primary=RAW_B).seal_document(CHART, doc("Oslo")))
    logging.getLogger("astro_db.security.crypto").disabled = True
    try:
        threads = [threading.Thread(target=lambda: [crypto.open_document(CHART, doc(foreign)) for _ in range(200)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logging.getLogger("astro_db.security.crypto").disabled = False
    assert crypto.stats() == {"unreadable": 800}


# --- properties --------------------------------------------------------------------------------

texts = st.one_of(st.text(), st.from_regex(r"enc:[a-z0-9]{2}:[0-9a-f]{8}:[A-Za-z0-9_-]{0,60}", fullmatch=True),
                  st.text(alphabet="\x00\u0301\U0001f600enc:<>"))


@settings(max_examples=examples(100), deadline=None)
@given(texts)
def test_any_text_written_to_a_sensitive_field_reads_back_unchanged(value):
    crypto = fc()
    sealed = crypto.seal_document(CHART, doc(value))
    assert place(sealed) != value and place(crypto.open_document(CHART, sealed)) == value


@settings(max_examples=examples(60), deadline=None)
@given(texts, st.sampled_from(["users", "birthcharts", "archivedCharts", COLL + "x"]))
def test_any_envelope_moved_to_another_collection_comes_back_unreadable(value, collection):
    crypto = fc()
    sealed = crypto.seal_document(CHART, doc(value))
    moved = SimpleNamespace(name=CHART.name, cls=CHART.cls, collection=collection)
    assert is_unreadable(place(crypto.open_document(moved, sealed)))


@settings(max_examples=examples(60), deadline=None)
@given(texts)
def test_any_envelope_moved_to_another_path_does_not_open(value):
    envelope = Keyring(RAW_A).seal(value, COLL, "birthData.timezone", True)
    assert is_unreadable(place(fc().open_document(CHART, doc(envelope))))



def test_plaintext_is_refused_unless_allowed_and_allowed_by_default_only_when_embedded():
    assert FieldCrypto(None, REGISTRY).allow_plaintext is False

    def config(allow, embedded):
        return SimpleNamespace(encryption_key=None, encryption_keys=None, allow_plaintext_sensitive=allow, is_embedded=embedded)

    assert [FieldCrypto.from_config(config(None, e), REGISTRY).allow_plaintext for e in (True, False)] == [True, False]
    assert [FieldCrypto.from_config(config(a, True), REGISTRY).allow_plaintext for a in (True, False)] == [True, False]
    assert FieldCrypto.from_config(config(True, False), REGISTRY).allow_plaintext is True


def test_the_binding_names_an_id_as_docs_security_md_says():
    """docs/security.md, "`b` binds it to its place": an ObjectId as its hex digits, a string as
    itself unless it prints like another type's `_id` (then in quotes), anything else as relaxed
    Extended JSON with an embedded document's keys sorted."""
    import datetime as _dt
    import uuid

    from bson import Decimal128, ObjectId

    from astro_db.security.vault import binding, legacy_binding

    oid = ObjectId("6650a1b2c3d4e5f601234567")
    texts = [(oid, "6650a1b2c3d4e5f601234567"), ("ann", "ann"), ("Ann Lee", "Ann Lee"),
             ("ABCDEF0123456789ABCDEF01", "ABCDEF0123456789ABCDEF01"),  # upper case: no ObjectId prints so
             (str(oid), '"6650a1b2c3d4e5f601234567"'), ("1", '"1"'), ("true", '"true"'), ("null", '"null"'),
             ('"x', '"\\"x"'), ("{a}", '"{a}"'), ("-1", '"-1"'), ("[1]", '"[1]"'), ("naïve", "naïve"),
             (1, "1"), (1.5, "1.5"), (True, "true"), (None, "null"), (Decimal128("1"), '{"$numberDecimal": "1"}'),
             (_dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc), '{"$date": "2020-01-01T00:00:00Z"}'),
             (uuid.UUID(int=1), '{"$binary": {"base64": "AAAAAAAAAAAAAAAAAAAAAQ==", "subType": "04"}}')]
    for doc_id, text in texts:
        assert binding("secrets", doc_id, "text") == f"secrets/{text}/text", doc_id
    assert binding("c", {"b": 1, "a": 2}, "p") == 'c/{"a": 2, "b": 1}/p'
    # what earlier releases wrote differs only for strings that printed like another type's _id
    assert legacy_binding("c", "1", "p") == "c/1/p" and legacy_binding("c", str(oid), "p") == f"c/{oid}/p"
    assert all(legacy_binding("c", v, "p") is None for v in (oid, "ann", 1, True, uuid.UUID(int=1)))


def _id_values():
    import datetime as _dt

    from bson import Binary, Decimal128, Int64, ObjectId
    from hypothesis import strategies as st

    scalar = st.one_of(
        st.text(max_size=26), st.text("0123456789abcdef", min_size=24, max_size=24), st.builds(ObjectId),
        st.sampled_from(["1", "true", "false", "null", "-0", '"1"', "{}", "[]", "1.5", "1e+20"]),
        st.integers(-2**63, 2**63 - 1), st.builds(Int64, st.integers(-2**63, 2**63 - 1)),
        st.floats(allow_nan=True), st.booleans(), st.none(), st.builds(Decimal128, st.decimals(-1000, 1000, places=2).map(str)),
        st.datetimes(min_value=_dt.datetime(1970, 1, 1)).map(lambda d: d.replace(microsecond=0, tzinfo=_dt.timezone.utc)),
        st.builds(Binary, st.binary(max_size=4), st.sampled_from([0, 4, 128])))
    return st.one_of(scalar, st.dictionaries(st.text("ab", min_size=1, max_size=2), scalar, max_size=2))


def _same_id(a, b) -> bool:
    """Whether MongoDB takes ``a`` and ``b`` for one ``_id`` (numbers by value; everything else by BSON)."""
    import math

    import bson
    from bson import Decimal128, Int64

    def number(v):
        if isinstance(v, bool):
            return None
        if isinstance(v, Decimal128):
            d = v.to_decimal()
            return None if d.is_nan() else d
        if isinstance(v, (int, Int64, float)):
            if isinstance(v, float) and math.isnan(v):
                return "nan"
            from decimal import Decimal
            return Decimal(v) if not isinstance(v, float) or math.isfinite(v) else v
        return None
    na, nb = number(a), number(b)
    if na is not None or nb is not None:
        return na is not None and nb is not None and na == nb
    return bson.encode({"v": a}) == bson.encode({"v": b})


def test_no_two_ids_mongodb_tells_apart_bind_alike():
    """``vault.id_text`` is one-to-one across BSON types, up to what MongoDB itself takes for one
    ``_id`` (``1``, ``1.0``, ``Int64(1)``) and, as the page says, an embedded document's key order."""
    from hypothesis import given, settings

    from astro_db.security.vault import id_text

    @settings(max_examples=3000, deadline=None)
    @given(a=_id_values(), b=_id_values())
    def check(a, b):
        if isinstance(a, dict) or isinstance(b, dict):
            if isinstance(a, dict) and isinstance(b, dict) and sorted(a.items(), key=repr) == sorted(b.items(), key=repr):
                return  # the stated limit: key order
        if id_text(a) == id_text(b):
            assert _same_id(a, b), (a, b, id_text(a))

    check()
