"""Personal fields encrypted, and the blind indexes that keep the email and the birth place
queryable by equality (``astro_db.security.blind``), on the embedded backend with a key.

Every personal value is ciphertext in the raw collection and plaintext through the service; an
equality on the email or the place goes to its keyed hash, never to the value; two spellings of
one email collide on the unique blind index; the index is the service's own (a caller can neither
write it nor query it); anything but equality on an encrypted field is refused at every depth;
writes keep the index in step; rotation writes it for data from before; the generated
``$jsonSchema`` accepts what is stored now.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from datetime import datetime, timezone

import bson
import pytest
from bson_schema import problems

from astro_db import Database, schema
from astro_db.errors import DuplicateKeyError, QueryError, ValidationError
from astro_db.ops.steps import compile as compile_step
from astro_db.security.access import Guard
from astro_db.security.crypto import Keyring
from astro_db.security.rotation import rotate_keys

from .security_data import KEY_A, KEY_B, chart_data, is_fle, new_db, user_data

NAME = "birthData.location.name"
BORN = datetime(1990, 5, 1, 10, 30, tzinfo=timezone.utc)


@pytest.fixture
def db():
    database = new_db(encryption_key=KEY_A)
    yield database
    database.disconnect()


def rekey(db, **keys):
    """The same embedded data seen with other keys (an embedded store lives in one client)."""
    from astro_db.security.crypto import FieldCrypto

    db.executor.runtime.crypto = FieldCrypto.from_config(db.config.replace(**keys), db.executor.runtime.registry)
    return db


def raw(db, model, _id):
    return db.collection(model).find_one({"_id": _id})


def index_of(value: str, collection: str, path: str, key: str = KEY_A) -> str:
    import base64

    return Keyring(base64.b64decode(key)).blind.hash(value, collection, path)


def insight(user_id, **extra):
    return {"userId": user_id, "date": "2024-03-01T00:00:00Z", "energyLevel": 70,
            "recommendations": ["Call your sister", "Rest early"], "summary": "A calm day for Ann", **extra}


def _texts(value):
    """Every key and string inside ``value`` (documents, lists), depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, str):
        yield value


def test_every_personal_field_is_ciphertext_at_rest_and_plaintext_through_the_service(db):
    user = db.create("User", user_data(email="Ann.Lee@Example.com", name="Ann Lee"))
    chart = db.create("BirthChart", chart_data(user.id, place="Lyon"))
    reading = db.create("PlanetaryInsight", insight(user.id))
    timing = db.create("TimingRecommendation", {"userId": user.id, "activity": "travel",
                                                "risks": [{"level": "low", "description": "Ann's knee"}]})
    stored_user = raw(db, "User", user.id)
    stored_chart = raw(db, "BirthChart", chart.id)
    stored_insight = raw(db, "PlanetaryInsight", reading.id)
    stored_timing = raw(db, "TimingRecommendation", timing.id)
    values = [stored_user["email"], stored_user["name"], stored_chart["birthData"]["date"],
              stored_chart["birthData"]["location"]["name"], stored_insight["summary"],
              *stored_insight["recommendations"], stored_timing["risks"][0]["description"]]
    secrets = ("ann.lee", "Ann Lee", "Lyon", "1990", "calm day", "sister", "knee")
    assert all(is_fle(v, *secrets) for v in values), values  # field level encryption, Binary subtype 6
    # every key and text stored (not a repr: an ObjectId's hex digits or a time's microseconds,
    # 11:32:20.199000, spell "1990" now and then), then the bytes as the disk holds them
    everything = " ".join(_texts([stored_user, stored_chart, stored_insight, stored_timing]))
    everything += b"".join(bson.encode(d) for d in (stored_user, stored_chart, stored_insight, stored_timing)).decode(
        "utf-8", "replace")  # what the disk holds
    for secret in secrets:
        assert secret not in everything.lower() if secret.islower() else secret not in everything
    # through the service: plaintext, the birth date a datetime again, no blind index shown
    assert db.find_one("User", {"id": user.id}).email == "ann.lee@example.com"
    lean = db.find_one("User", {"id": user.id}, lean=True)
    assert lean["name"] == "Ann Lee" and "emailIndex" not in lean
    again = db.find_one("BirthChart", {"id": chart.id})
    assert again.birth_data.date == BORN and again.birth_data.location.name == "Lyon"
    assert "nameIndex" not in db.find_one("BirthChart", {"id": chart.id}, lean=True)["birthData"]["location"]
    assert db.find_one("PlanetaryInsight", {"id": reading.id}).recommendations == ["Call your sister", "Rest early"]
    assert db.find_one("TimingRecommendation", {"id": timing.id}).risks[0].description == "Ann's knee"
    # the blind indexes beside the ciphertext: keyed hashes of the canonical values
    assert stored_user["emailIndex"] == index_of("ann.lee@example.com", "users", "email")
    assert stored_chart["birthData"]["location"]["nameIndex"] == index_of("Lyon", "birthCharts", NAME)


def test_a_login_by_email_is_sent_as_a_condition_on_the_blind_index(db):
    user = db.create("User", user_data(email="ann@example.com"))
    guard = Guard(None, "User", False)
    sent = compile_step.filter(db.executor.runtime, db.executor.model("User"), guard, {"email": "ANN@example.com"},
                               strict=True)
    assert sent == {"emailIndex": {"$in": [index_of("ann@example.com", "users", "email")]}}
    assert db.find_one("User", {"email": "ANN@example.com"}, strict=True).id == user.id
    assert db.find_one("User", {"email": "ann@example.com"}, cache=True).id == user.id  # the query cache
    assert db.find_one("User", {"email": "ann@example.com"}, cache=True).id == user.id  # (a hit)
    assert db.find_one("User", {"email": "nobody@example.com"}) is None
    assert db.count("User", {"email": {"$in": ["x@example.com", "ann@example.com"]}}) == 1
    assert db.count("User", {"email": {"$ne": "ann@example.com"}}) == 0


def test_after_rotation_a_login_matches_under_the_old_key_and_the_new(db):
    user = db.create("User", user_data(email="ann@example.com"))
    rotated = rekey(db, encryption_key=KEY_B, encryption_keys=KEY_A)
    assert rotated.find_one("User", {"email": "ann@example.com"}).id == user.id  # the old key's hash
    assert rotate_keys(rotated)["User"] == 1
    assert raw(rotated, "User", user.id)["emailIndex"] == index_of("ann@example.com", "users", "email", KEY_B)
    assert rotated.find_one("User", {"email": "ann@example.com"}).id == user.id


@pytest.mark.parametrize("second", [
    "ANN.Lee@example.com",
    unicodedata.normalize("NFD", "Zoë.Lee@example.com"),  # decomposed: e + combining diaeresis
])
def test_two_spellings_of_one_email_collide_on_the_unique_blind_index(db, second):
    first = "ann.lee@example.com" if second.startswith("ANN") else unicodedata.normalize("NFC", "zoë.lee@example.com")
    # the plain email_1 index on ciphertext is left out: under MongoDB's random encryption it can
    # never collide, so uniqueness is the blind index's alone
    db.collection("User").drop_index("email_1")
    db.create("User", user_data(email=first))
    with pytest.raises(DuplicateKeyError) as err:
        db.create("User", user_data(email=second))
    assert err.value.fields == ("email",)  # the caller's field, not its blind index (emailIndex)
    assert db.count("User", {}) == 1


def test_the_blind_index_is_the_services_own(db):
    user = db.create("User", user_data(email="ann@example.com"))
    forged = index_of("bob@example.com", "users", "email")
    with pytest.raises(ValidationError, match="emailIndex"):
        db.create("User", user_data(email="cy@example.com", emailIndex=forged))
    with pytest.raises(QueryError, match="unknown field 'emailIndex'"):
        db.update("User", {"id": user.id}, {"$set": {"emailIndex": forged}})
    with pytest.raises(QueryError, match="unknown field 'emailIndex'"):
        db.find("User", {"emailIndex": forged})
    with pytest.raises(QueryError, match="unknown field"):
        db.update("BirthChart", {"userId": user.id}, {"$set": {"birthData.location.nameIndex": forged}})
    assert raw(db, "User", user.id)["emailIndex"] == index_of("ann@example.com", "users", "email")


def test_writes_keep_the_blind_index_in_step(db):
    user = db.create("User", user_data(email="ann@example.com"))
    db.update("User", {"email": "ann@example.com"}, {"email": "Ann.New@example.com"})
    assert db.find_one("User", {"email": "ann@example.com"}) is None
    assert db.find_one("User", {"email": "ann.new@example.com"}).id == user.id
    chart = db.create("BirthChart", chart_data(user.id, place="Lyon"))
    db.update("BirthChart", {"id": chart.id}, {"$set": {"birthData.location": {"name": "Nice", "coordinates": [7.26, 43.7]}}})
    assert db.find_one("BirthChart", {NAME: "Nice"}).id == chart.id and db.find_one("BirthChart", {NAME: "Lyon"}) is None
    db.update("BirthChart", {"id": chart.id}, {"$unset": {NAME: ""}})
    assert "nameIndex" not in raw(db, "BirthChart", chart.id)["birthData"]["location"]
    assert db.find_one("BirthChart", {NAME: None}).id == chart.id
    db.update_many("BirthChart", {"userId": user.id}, {"$set": {NAME: "Pau"}})
    assert db.find_one("BirthChart", {NAME: "Pau"}).id == chart.id
    made = db.create_many("User", [user_data(email="b1@example.com"), user_data(email="b2@example.com")])
    assert len(made.ids) == 2 and db.find_one("User", {"email": "b2@example.com"}) is not None
    db.upsert_many("PlanetaryInsight", [insight(user.id)], on=("userId", "date"))
    assert is_fle(raw(db, "PlanetaryInsight", db.find_one("PlanetaryInsight", {"userId": user.id}).id)["summary"],
                  "A calm day for Ann")


NESTED = [
    lambda m: [{"$match": m}],
    lambda m: [{"$facet": {"p": [{"$match": m}]}}],
    lambda m: [{"$lookup": {"from": "users", "pipeline": [{"$match": m}], "as": "u"}}],
    lambda m: [{"$unionWith": {"coll": "users", "pipeline": [{"$match": m}]}}],
    lambda m: [{"$graphLookup": {"from": "users", "startWith": "$userId", "connectFromField": "_id",
                                 "connectToField": "_id", "as": "g", "restrictSearchWithMatch": m}}],
]


@pytest.mark.parametrize("where", range(len(NESTED)), ids=["top", "facet", "lookup", "unionWith", "graphLookup"])
@pytest.mark.parametrize("condition", [
    {"email": {"$regex": "^ann"}}, {"name": {"$regex": "^Ann"}}, {"name": {"$gt": "A"}}, {"email": {"$lt": "b"}},
], ids=["email-regex", "name-regex", "name-range", "email-range"])
def test_anything_but_equality_on_an_encrypted_field_is_refused_at_every_depth(db, where, condition):
    pipeline = NESTED[where](condition)
    model = "User" if where in (0, 1) else "BirthChart"
    with pytest.raises(QueryError, match="cannot be used on the encrypted field"):
        db.aggregate(model, pipeline)


def test_a_range_on_the_birth_date_is_refused_and_equality_on_it_too(db):
    with pytest.raises(QueryError, match=r"operator \$gte cannot be used on the encrypted field 'birthData.date'"):
        db.find("BirthChart", {"birthData.date": {"$gte": "1990-01-01T00:00:00Z"}})
    with pytest.raises(QueryError, match="'birthData.date' is encrypted and cannot be queried by value"):
        db.find("BirthChart", {"birthData.date": "1990-05-01T10:30:00Z"})
    with pytest.raises(QueryError, match="cannot be used on the encrypted field 'birthData.date'"):
        db.aggregate("User", [{"$lookup": {"from": "birthCharts", "pipeline": [
            {"$match": {"birthData.date": {"$lt": "2000-01-01T00:00:00Z"}}}], "as": "c"}}])
    with pytest.raises(QueryError, match=r"\$text cannot search PlanetaryInsight"):
        db.find("PlanetaryInsight", {"$text": {"$search": "calm"}})


def test_equality_on_the_birth_place_matches_inside_facet_lookup_and_union_with(db):
    ann = db.create("User", user_data(name="Ann"))
    lyon = db.create("BirthChart", chart_data(ann.id, place="Lyon"))
    db.create("BirthChart", chart_data(ann.id, place="Nice"))
    match = {"$match": {NAME: "Lyon"}}
    facet = db.aggregate("BirthChart", [{"$facet": {"p": [match, {"$project": {"_id": 1}}]}}])
    assert facet == [{"p": [{"_id": lyon.id}]}]
    looked = db.aggregate("User", [{"$lookup": {"from": "birthCharts", "pipeline": [match, {"$project": {"_id": 1}}],
                                                "as": "c"}}])
    assert looked[0]["c"] == [{"_id": lyon.id}]
    union = db.aggregate("User", [{"$project": {"_id": 1}}, {"$unionWith": {"coll": "birthCharts", "pipeline": [
        match, {"$project": {"_id": 1}}]}}])
    assert [d["_id"] for d in union] == [ann.id, lyon.id]


def test_rotation_writes_the_blind_index_of_data_from_before_it():
    keyless = new_db()
    try:
        user = keyless.create("User", user_data(email="ann@example.com"))
        chart = keyless.create("BirthChart", chart_data(user.id, place="Lyon"))
        assert "emailIndex" not in raw(keyless, "User", user.id)  # no key: plaintext, no blind index
        assert raw(keyless, "BirthChart", chart.id)["birthData"]["date"] == BORN
        keyed = rekey(keyless, encryption_key=KEY_A)
        assert keyed.find_one("User", {"email": "ann@example.com"}) is None  # not indexed yet
        report = rotate_keys(keyed)
        assert report["User"] == 1 and report["BirthChart"] == 1
        assert keyed.find_one("User", {"email": "ann@example.com"}).id == user.id
        assert keyed.find_one("BirthChart", {NAME: "Lyon"}).id == chart.id
        stored = raw(keyed, "BirthChart", chart.id)["birthData"]
        assert is_fle(stored["date"]) and is_fle(stored["location"]["name"], "Lyon")
        assert keyed.find_one("BirthChart", {"id": chart.id}).birth_data.date == BORN
        assert rotate_keys(keyed)["User"] == 0  # current now
    finally:
        keyless.disconnect()


def test_without_a_key_on_the_embedded_backend_nothing_changes():
    plain = new_db()
    try:
        user = plain.create("User", user_data(email="Ann@Example.com", name="Ann"))
        stored = raw(plain, "User", user.id)
        assert stored["email"] == "ann@example.com" and stored["name"] == "Ann" and "emailIndex" not in stored
        assert plain.find_one("User", {"email": "ann@example.com"}).id == user.id
        assert plain.count("User", {"name": {"$regex": "^An"}}) == 1  # plaintext: runs as written
        with pytest.raises(DuplicateKeyError):
            plain.create("User", user_data(email="ANN@example.com"))  # email_1 keeps it unique
    finally:
        plain.disconnect()


def test_the_generated_validator_accepts_what_a_create_stores_now(db):
    user = db.create("User", user_data())
    chart = db.create("BirthChart", chart_data(user.id))
    reading = db.create("PlanetaryInsight", insight(user.id))
    for model, doc in (("User", user), ("BirthChart", chart), ("PlanetaryInsight", reading)):
        info = db.executor.model(model)
        stored = raw(db, model, doc.id)
        assert problems(schema.collection_schema(info), stored) == [], model
    bad = {**raw(db, "User", user.id), "emailIndex": "forged"}
    assert any("emailIndex" in p for p in problems(schema.collection_schema(db.executor.model("User")), bad))


def test_a_whole_list_of_personal_texts_is_sealed_item_by_item_and_pull_is_refused(db):
    user = db.create("User", user_data())
    reading = db.create("PlanetaryInsight", insight(user.id))
    db.update("PlanetaryInsight", {"id": reading.id}, {"$set": {"recommendations": ["Sleep", "Read"]}})
    stored = raw(db, "PlanetaryInsight", reading.id)["recommendations"]
    assert len(stored) == 2 and all(is_fle(v, "Sleep", "Read") for v in stored)
    assert len({bytes(v) for v in stored}) == 2  # each item sealed on its own
    assert db.find_one("PlanetaryInsight", {"id": reading.id}).recommendations == ["Sleep", "Read"]
    with pytest.raises(QueryError, match=r"\$pull cannot match on the encrypted field 'recommendations'"):
        db.update("PlanetaryInsight", {"id": reading.id}, {"$pull": {"recommendations": "Sleep"}})
    with pytest.raises(QueryError, match="cannot page by 'name': it is encrypted"):
        db.page("User", {}, sort="name", limit=2)


@pytest.mark.parametrize(("model", "key", "sealed"), [
    ("BirthChart", "birthData", "birthData.date"), ("BirthChart", "birthData.location", "birthData.location.name"),
    ("PlanetaryInsight", "recommendations.0", "recommendations")])
def test_sorting_by_a_document_holding_an_encrypted_field_or_a_position_of_one_is_refused(db, model, key, sealed):
    """The server orders ``birthData`` by its fields in turn (the birth date's ciphertext first)
    and ``recommendations.0`` by the first recommendation's ciphertext: before, only a sort
    naming the encrypted field itself was refused, and these ran (``find``, ``page`` and a
    ``$sort`` stage), ordered by ciphertext."""
    user = db.create("User", user_data())
    db.create("BirthChart", chart_data(user.id))
    db.create("PlanetaryInsight", insight(user.id))
    for call in (lambda: db.find(model, {}, sort=key), lambda: db.page(model, {}, sort=[(key, -1)], limit=1),
                 lambda: db.iter_find(model, {}, sort=key)):
        with pytest.raises(QueryError, match=f"by {key!r}: its stored order is the ciphertext's of the encrypted "
                                             f"{sealed!r}"):
            call()
    with pytest.raises(QueryError, match=rf"\$sort by the encrypted field {sealed!r}"):
        db.aggregate(model, [{"$facet": {"a": [{"$sort": {key: 1}}]}}])
    assert len(db.find(model, {}, sort="userId")) == 1  # what holds no encrypted field sorts as before


def test_upsert_many_keyed_on_the_email_works_in_clear_and_is_refused_with_a_key(db):
    with pytest.raises(QueryError, match="upsert_many cannot key on \\['email'\\]: encrypted fields"):
        db.upsert_many("User", [user_data(email="ann@example.com")], on="email")
    plain = new_db()
    try:
        assert plain.upsert_many("User", [user_data(email="ann@example.com")], on="email").inserted == 1
        assert plain.upsert_many("User", [user_data(email="ann@example.com", name="Ann B")], on="email").updated == 1
    finally:
        plain.disconnect()


def test_sorting_by_an_encrypted_field_is_refused_where_it_holds_ciphertext(db):
    with pytest.raises(QueryError, match="cannot sort by 'name': it is encrypted"):
        db.find("User", {}, sort="name")
    with pytest.raises(QueryError, match="cannot sort by 'birthData.date': it is encrypted"):
        db.find_one("BirthChart", {}, sort=[("birthData.date", -1)])
    with pytest.raises(QueryError, match=r"\$sort by the encrypted field 'email'"):
        db.aggregate("User", [{"$facet": {"a": [{"$sort": {"email": 1}}]}}])
    with pytest.raises(QueryError, match=r"\$sort by the encrypted field 'birthData.location.name'"):
        db.aggregate("User", [{"$lookup": {"from": "birthCharts", "pipeline": [{"$sort": {NAME: 1}}], "as": "c"}}])
    assert db.find("User", {}, sort="status") == []
    plain = new_db()  # without a key the values are plaintext: their order is theirs
    try:
        plain.create("User", user_data(name="Bo"))
        plain.create("User", user_data(name="Al"))
        assert [u.name for u in plain.find("User", {}, sort="name")] == ["Al", "Bo"]
        assert [u["name"] for u in plain.aggregate("User", [{"$sort": {"name": 1}}])] == ["Al", "Bo"]
    finally:
        plain.disconnect()


def test_with_kms_providers_only_the_personal_fields_are_sealed_and_never_queried_by_value_silently():
    """No ``encryption_key``, a master key given to the KMS providers as is: every personal value
    is still field level encryption, but there is no blind-index key, so equality on the email
    is a ``QueryError`` naming the missing key, as anything else by value on ciphertext is, even
    on the embedded backend where plaintext is otherwise allowed (never a silent non-match)."""
    import base64
    import os

    kms = new_db(kms_providers={"local": {"key": base64.b64encode(os.urandom(96)).decode()}},
                 kms_master_key={"provider": "local"})
    try:
        user = kms.create("User", user_data(email="ann@example.com", name="Ann"))
        stored = raw(kms, "User", user.id)
        assert is_fle(stored["email"], "ann@example.com") and is_fle(stored["name"], "Ann") and "emailIndex" not in stored
        assert kms.find_one("User", {"id": user.id}).email == "ann@example.com"
        with pytest.raises(QueryError, match="queryable only with encryption_key configured"):
            kms.find_one("User", {"email": "ann@example.com"})
        with pytest.raises(QueryError, match="cannot be queried by value"):
            kms.find("User", {"name": "Ann"})
        with pytest.raises(QueryError, match="cannot be used on the encrypted field"):
            kms.find("User", {"name": {"$regex": "^A"}})
        with pytest.raises(QueryError, match="cannot sort by 'name': it is encrypted"):
            kms.find("User", {}, sort="name")
        with pytest.raises(QueryError, match=r"\$text cannot search PlanetaryInsight"):
            kms.find("PlanetaryInsight", {"$text": {"$search": "calm"}})
        assert kms.count("User", {"email": {"$exists": True}}) == 1  # presence still works
    finally:
        kms.disconnect()


# --- a queryable field inside a list, a null value, a value that does not open -----------------


def _book_model():
    """An app's model with a queryable field inside a list of embedded documents (``contacts.name``)
    and an optional queryable one at the top (``nick``)."""
    from mongoengine import EmbeddedDocument, ListField

    from astro_db.models import AstroDocument
    from astro_db.models.fields import EmbeddedDocumentField, TextField, UserRefField

    class Contact(EmbeddedDocument):
        name = TextField(sensitive=True)
        kind = TextField()

    class Book(AstroDocument):
        user_id = UserRefField(db_field="userId", required=True)
        contacts = ListField(EmbeddedDocumentField(Contact))
        nick = TextField(sensitive=True)
        meta = {"collection": "books", "owner": "user_id", "queryable": ["contacts.name", "nick"]}

    return Book


@pytest.fixture
def books():
    book = _book_model()
    database = Database(f"mongomock://localhost/b{uuid.uuid4().hex[:8]}", models=[book], encryption_key=KEY_A).connect()
    yield database, book
    database.disconnect()


def contact_index(name: str, key: str = KEY_A) -> str:
    return index_of(name, "books", "contacts.name", key)


def test_a_queryable_field_inside_a_list_gets_a_blind_index_beside_each_item(books):
    db, book = books
    user = db.create("User", user_data())
    made = db.create(book, {"userId": user.id, "contacts": [{"name": "Ann", "kind": "sister"}, {"name": "Bo"}]})
    stored = raw(db, book, made.id)["contacts"]
    assert all(is_fle(c["name"], "Ann", "Bo") for c in stored)
    assert [c["nameIndex"] for c in stored] == [contact_index("Ann"), contact_index("Bo")]
    assert [b.id for b in db.find(book, {"contacts.name": "Bo"})] == [made.id]
    assert db.find(book, {"contacts.name": "Cy"}) == []
    shown = [{"name": "Ann", "kind": "sister"}, {"name": "Bo"}]  # reads never return the index
    assert db.find(book, {"id": made.id}, lean=True)[0]["contacts"] == shown
    assert db.aggregate(book, [{"$match": {"_id": made.id}}])[0]["contacts"] == shown
    db.update(book, {"id": made.id}, {"$set": {"contacts": [{"name": "Cy"}, {"name": "Di"}]}})
    db.update(book, {"id": made.id}, {"$push": {"contacts": {"name": "Ed"}}})
    assert [c["nameIndex"] for c in raw(db, book, made.id)["contacts"]] == [
        contact_index("Cy"), contact_index("Di"), contact_index("Ed")]
    assert db.find(book, {"contacts.name": "Ann"}) == []
    assert [b.id for b in db.find(book, {"contacts.name": "Ed"})] == [made.id]


def test_rotation_writes_the_blind_index_beside_each_item_of_a_list(books):
    db, book = books
    user = db.create("User", user_data())
    made = db.create(book, {"userId": user.id, "contacts": [{"name": "Ann"}, {"name": "Bo"}]})
    db.collection(book).update_one({"_id": made.id}, {"$unset": {"contacts.1.nameIndex": ""}})  # written before it
    assert db.find(book, {"contacts.name": "Bo"}) == []
    rotated = rekey(db, encryption_key=KEY_B, encryption_keys=KEY_A)
    assert rotate_keys(rotated)[book.__name__] == 1
    assert [c["nameIndex"] for c in raw(rotated, book, made.id)["contacts"]] == [
        contact_index("Ann", KEY_B), contact_index("Bo", KEY_B)]
    only_new = rekey(rotated, encryption_key=KEY_B, encryption_keys=None)
    assert [b.id for b in only_new.find(book, {"contacts.name": "Bo"})] == [made.id]
    assert rotate_keys(only_new)[book.__name__] == 0


def test_setting_an_optional_queryable_field_to_null_removes_its_blind_index(books):
    db, book = books
    user = db.create("User", user_data())
    made = db.create(book, {"userId": user.id, "nick": "Lu"})
    assert raw(db, book, made.id)["nickIndex"] == index_of("Lu", "books", "nick")
    db.update(book, {"id": made.id}, {"nick": None})  # a $set alone: the index goes in a $unset of its own
    stored = raw(db, book, made.id)
    assert stored["nick"] is None and "nickIndex" not in stored
    assert db.find(book, {"nick": "Lu"}) == []  # no longer found by the value it no longer holds
    assert [b.id for b in db.find(book, {"nick": None})] == [made.id]


def test_rotation_removes_a_blind_index_left_beside_no_value(db):
    user = db.create("User", user_data())
    chart = db.create("BirthChart", chart_data(user.id, place="Lyon"))
    db.collection("BirthChart").update_one({"_id": chart.id}, {"$set": {NAME: None}})  # a writer that kept the index
    assert db.find_one("BirthChart", {NAME: "Lyon"}).id == chart.id  # found by a value it no longer holds
    assert rotate_keys(db)["BirthChart"] == 1
    assert "nameIndex" not in raw(db, "BirthChart", chart.id)["birthData"]["location"]
    assert db.find_one("BirthChart", {NAME: "Lyon"}) is None
    assert rotate_keys(db)["BirthChart"] == 0  # done: a rerun finds nothing to do


def test_rotation_never_writes_a_blind_index_for_a_value_it_cannot_open(db, caplog):
    user = db.create("User", user_data())
    ann = db.create("BirthChart", chart_data(user.id, place="Lyon"))
    bo = db.create("BirthChart", chart_data(user.id, place="Oslo"))
    moved = raw(db, "BirthChart", bo.id)["birthData"]["location"]["name"]
    db.collection("BirthChart").update_one({"_id": ann.id}, {"$set": {NAME: moved}})  # Bo's ciphertext over Ann's
    rotated = rekey(db, encryption_key=KEY_B, encryption_keys=KEY_A)  # every blind index is stale now
    before = raw(rotated, "BirthChart", ann.id)["birthData"]["location"]["nameIndex"]
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert rotate_keys(rotated)["BirthChart"] == 1  # Bo's
    assert raw(rotated, "BirthChart", ann.id)["birthData"]["location"]["nameIndex"] == before  # not the marker's hash
    assert f"BirthChart _id={ann.id} left as it is" in caplog.text
    # with no index beside it, a value that does not open leaves rotation nothing to do: not even counted
    rotated.collection("BirthChart").update_one({"_id": ann.id}, {"$unset": {NAME + "Index": ""}})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="astro_db"):
        assert rotate_keys(rotated, dry_run=True)["BirthChart"] == 0
        assert rotate_keys(rotated)["BirthChart"] == 0
    assert "left as it is" not in caplog.text
    assert "nameIndex" not in raw(rotated, "BirthChart", ann.id)["birthData"]["location"]


def test_a_value_that_does_not_open_elsewhere_in_a_document_does_not_hold_back_its_blind_index(db):
    ann = db.create("User", user_data(email="ann@example.com", name="Ann"))
    bo = db.create("User", user_data(email="bo@example.com", name="Bo"))
    moved = raw(db, "User", bo.id)["name"]
    db.collection("User").update_one({"_id": ann.id}, {"$set": {"name": moved}})  # Ann's name reads UNREADABLE
    rotated = rekey(db, encryption_key=KEY_B, encryption_keys=KEY_A)
    crypto = rotated.executor.runtime.crypto
    assert rotate_keys(rotated)["User"] == 2
    stored = raw(rotated, "User", ann.id)
    assert stored["emailIndex"] == index_of("ann@example.com", "users", "email", KEY_B)
    assert stored["name"] == moved  # not rotation's to touch: it opens only what it rewrites
    assert crypto.stats()["unreadable"] == 0
    only_new = rekey(rotated, encryption_key=KEY_B, encryption_keys=None)
    assert only_new.find_one("User", {"email": "ann@example.com"}).id == ann.id  # login works without the old key


# --- the blind index's own arithmetic, computed independently of astro_db.security.blind ----------

def _rfc5869_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with no salt, written out: what the docs say the blind key is."""
    import hashlib
    import hmac as _hmac

    prk = _hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = _hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def _expected_hash(key: bytes, plaintext: str, collection: str, path: str) -> str:
    import base64
    import hashlib
    import hmac as _hmac

    blind_key = _rfc5869_sha256(key, b"astro_db:blind-index:v1")
    message = collection.encode() + b"\x00" + path.encode() + b"\x00" + plaintext.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(_hmac.new(blind_key, message, hashlib.sha256).digest()).rstrip(b"=").decode()


def test_the_blind_index_is_the_documented_hmac_under_the_documented_hkdf_key():
    """A Node writer computes the same 43 characters from docs/security.md's formula."""
    from astro_db.security.blind import BlindIndex, derive_key

    key = bytes(range(32))
    assert derive_key(key) == _rfc5869_sha256(key, b"astro_db:blind-index:v1")
    for plaintext in ("Paris", "josé@example.com", "lone \ud800 surrogate"):
        got = BlindIndex(key).hash(plaintext, "birthCharts", "birthData.location.name")
        assert got == _expected_hash(key, plaintext, "birthCharts", "birthData.location.name")
        assert len(got) == 43 and "=" not in got
    # the collection and the path are part of what is hashed, each apart
    index = BlindIndex(key)
    assert len({index.hash("a", "users", "email"), index.hash("a", "users", "name"), index.hash("a", "people", "email"),
                index.hash("", "users", "a\x00email")}) == 4


def test_a_query_matches_every_configured_keys_hash_and_passes_none_and_foreign_values_through():
    from astro_db.errors import EncryptionError
    from astro_db.security.blind import BlindIndex

    new, old = bytes(range(32)), bytes(range(1, 33))
    index = BlindIndex(new, [old, new])  # the primary repeated among the old keys is not hashed twice
    assert repr(index) == "<BlindIndex keys=2>"
    assert index.hashes(["x", None], "users", "email", str) == [
        _expected_hash(new, "x", "users", "email"), _expected_hash(old, "x", "users", "email"), None]

    def refuse(value):
        raise EncryptionError("not text")

    assert index.hashes([5], "users", "email", refuse) == [5]  # matches nothing stored, never an error

    def text_only(value):
        if not isinstance(value, str):
            raise EncryptionError("not text")
        return value

    # a None or a foreign value among others leaves the rest hashed
    assert index.hashes([None, 5, "y"], "users", "email", text_only) == [
        None, 5, _expected_hash(new, "y", "users", "email"), _expected_hash(old, "y", "users", "email")]



def test_an_empty_condition_on_a_field_with_a_blind_index_is_sent_as_it_was_given(db):
    """``{"email": {}}`` names no operator: it stays on the field, as given (no document holds
    an empty object there), neither dropped (every user would match) nor turned into a match of
    null (a user stored with no address would)."""
    db.create("User", user_data(email="ann@example.com"))
    db.mongo["users"].insert_one({"email": None, "name": "No address", "status": "active", "__v": 0})
    assert db.find("User", {"email": {}}, lean=True) == []
    assert db.count("User", {"email": {}}) == 0


@pytest.mark.parametrize("model, query", [
    ("User", {"$or": [{"status": "active"}, {"name": "Ann"}]}),
    ("User", {"$and": [{"email": "ann@example.com"}, {"$nor": [{"name": "Ann"}]}]}),
    ("TimingRecommendation", {"risks": {"$elemMatch": {"description": "storm"}}}),
])
def test_equality_on_a_field_without_a_blind_index_is_refused_inside_logic_and_elem_match(db, model, query):
    field = "risks.description" if model == "TimingRecommendation" else "name"
    with pytest.raises(QueryError) as caught:
        db.find(model, query)
    assert str(caught.value) == f"{field!r} is encrypted and cannot be queried by value; only its presence ($exists)"


def test_a_sort_stage_on_an_encrypted_field_names_why_it_is_refused(db):
    with pytest.raises(QueryError) as caught:
        db.aggregate("User", [{"$match": {"status": "active"}}, {"$sort": {"name": 1}}])
    message = str(caught.value)
    assert message.startswith("$sort by the encrypted field 'name'")
    assert message.endswith(": its stored order is the ciphertext's, which means nothing")
