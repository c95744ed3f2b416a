"""Security on a real MongoDB-wire server: encryption across processes, scoped actors, the audit
trail inside transactions, masked driver logs; auth and least privilege on real MongoDB only."""

from __future__ import annotations

import base64
import logging
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from unit.security_data import KEY_A, KEY_B, chart_data, data_key_providers, is_fle, old_envelope, user_data

from astro_db import Database
from astro_db.errors import EncryptionError, PermissionDeniedError, TransactionNotSupportedError
from astro_db.security.crypto import is_unreadable, key_id
from astro_db.security.mongo_roles import key_vault_commands, role_commands
from astro_db.security.rotation import rotate_keys

PLACE = "Hiddenville"


def open_db(url, **overrides):
    return Database(url, server_selection_timeout_ms=5000, **overrides).connect()


def test_ciphertext_at_rest_plaintext_through_the_service_and_rotation(live_url):
    vault = {"key_vault_namespace": f"kv_{uuid.uuid4().hex[:8]}.__keyVault"}  # its own: the server's is shared
    db = open_db(live_url, encryption_key=KEY_A, **vault)
    user = db.create("User", user_data())
    chart = db.create("BirthChart", chart_data(user.id, place=PLACE))
    raw = db.collection("BirthChart").find_one({"_id": chart.id})["birthData"]["location"]["name"]
    assert is_fle(raw, PLACE)  # field level encryption, Binary subtype 6 kept through the server
    assert db.find_one("BirthChart", {"birthData.location.name": PLACE}).id == chart.id
    old = db.create("BirthChart", chart_data(user.id, place="Oldtown"))  # as an earlier release stored it
    db.collection("BirthChart").update_one({"_id": old.id}, {"$set": {"birthData.location.name": old_envelope("Oldtown")},
                                                             "$unset": {"birthData.location.nameIndex": ""}})
    assert db.find_one("BirthChart", {"id": old.id}).birth_data.location.name == "Oldtown"  # read as it is
    db.disconnect()

    rotated = open_db(live_url, encryption_key=KEY_B, encryption_keys=KEY_A, **vault)
    assert rotated.find_one("BirthChart", {"id": chart.id}).birth_data.location.name == PLACE
    # the envelope re-sealed with field level encryption and given its blind index; the other
    # chart and the user rewritten for their blind index under KEY_B; the user's data key rewrapped
    assert rotate_keys(rotated) == {"BirthChart": 2, "PlanetaryInsight": 0, "TimingRecommendation": 0, "User": 1,
                                    "dataKeys": 1}
    assert rotate_keys(rotated, dry_run=True) == {"BirthChart": 0, "PlanetaryInsight": 0, "TimingRecommendation": 0,
                                                  "User": 0, "dataKeys": 0}
    stored = rotated.collection("BirthChart").find_one({"_id": old.id})["birthData"]["location"]
    assert is_fle(stored["name"], "Oldtown") and rotated.find_one("BirthChart", {"birthData.location.name": "Oldtown"}).id == old.id
    assert f"local:{key_id(base64.b64decode(KEY_B))}" in data_key_providers(rotated)
    rotated.disconnect()

    new_only = open_db(live_url, encryption_key=KEY_B, **vault)
    assert sorted(d["birthData"]["location"]["name"] for d in new_only.find("BirthChart", lean=True)) == [PLACE, "Oldtown"]
    assert new_only.find_one("User", {"email": user.email}).id == user.id
    new_only.disconnect()


def test_a_match_on_the_encrypted_place_matches_at_every_depth_of_a_pipeline(live_url):
    """Issue 23 item 4 on a server: the same condition, sealed for the model it reads, matches
    inside $facet and a $unionWith pipeline exactly as at the top."""
    db = open_db(live_url, encryption_key=KEY_A)
    user = db.create("User", user_data())
    chart = db.create("BirthChart", chart_data(user.id, place=PLACE))
    db.create("BirthChart", chart_data(user.id, place="Elsewhere"))
    match = {"$match": {"birthData.location.name": PLACE}}
    assert [d["_id"] for d in db.aggregate("BirthChart", [match])] == [chart.id]
    facet = db.aggregate("BirthChart", [{"$facet": {"p": [match, {"$project": {"_id": 1}}]}}])
    assert [str(d["_id"]) for d in facet[0]["p"]] == [str(chart.id)]  # nx-27017 answers $facet ids as text
    mine = {"$match": {"_id": user.id}}  # ($lookup pipelines: nx-27017 ignores them; tests/unit/test_walker.py holds those)
    union = db.aggregate("User", [mine, {"$project": {"_id": 1}}, {"$unionWith": {"coll": "birthCharts", "pipeline": [
        match, {"$project": {"_id": 1}}]}}])
    assert [str(d["_id"]) for d in union] == [str(user.id), str(chart.id)]
    db.disconnect()


def test_on_a_server_a_keyless_database_refuses_to_write_or_query_a_sensitive_field(live_url):
    keyless = open_db(live_url, allow_plaintext_sensitive=False)  # a server's default (the tier allows it)
    with pytest.raises(EncryptionError, match="User.email is a sensitive field: configure encryption_key to write it"):
        keyless.create("User", user_data())
    user = keyless.collection("User").insert_one({"email": "ann@example.com", "name": "Ann"}).inserted_id
    with pytest.raises(EncryptionError, match="sensitive field: configure encryption_key to write it"):
        keyless.create("BirthChart", chart_data(user, place=PLACE))
    with pytest.raises(EncryptionError, match="configure encryption_key to query it"):
        keyless.find("BirthChart", {"birthData.location.name": PLACE})
    with pytest.raises(EncryptionError, match="configure encryption_key to query it"):
        keyless.find_one("User", {"email": "ann@example.com"})
    assert keyless.collection("BirthChart").count_documents({"userId": user}) == 0
    keyless.disconnect()


def test_an_old_envelope_on_the_server_is_bound_to_its_collection_and_opens_with_plain_aes_gcm(live_url):
    """An envelope of an earlier release, stored on the server, still reads (and decrypts with
    AES-GCM as that release's Node side did); one bad value next to it reads UNREADABLE."""
    db = open_db(live_url, encryption_key=KEY_A)
    user = db.create("User", user_data())
    chart = db.create("BirthChart", chart_data(user.id, place=PLACE))
    coll = db.collection("BirthChart")
    coll.update_one({"_id": chart.id}, {"$set": {"birthData.location.name": old_envelope(PLACE, coll.name)}})
    raw = coll.find_one({"_id": chart.id})["birthData"]["location"]["name"]
    _, version, _, body = raw.split(":")
    data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    aad = b"astro_db:v2:" + coll.name.encode() + b"\x00birthData.location.name"
    assert version == "e2" and AESGCM(base64.b64decode(KEY_A)).decrypt(data[:12], data[12:], aad).decode() == PLACE
    other = db.create("BirthChart", chart_data(user.id, place="Elsewhere"))
    coll.update_one({"_id": other.id}, {"$set": {"birthData.location.name": raw + "x"}})  # one bad envelope
    places = {c.id: c.birth_data.location.name for c in db.find("BirthChart", {"userId": user.id})}
    assert places[chart.id] == PLACE and is_unreadable(places[other.id])
    db.disconnect()


def test_a_user_scoped_actor_cannot_read_or_update_another_users_chart(live_url):
    db = open_db(live_url, encryption_key=KEY_A)
    ann, bob = db.create("User", user_data()), db.create("User", user_data())
    db.create("BirthChart", chart_data(ann.id))
    bob_chart = db.create("BirthChart", chart_data(bob.id))
    me = db.as_actor(str(ann.id), roles=["self"])
    assert [c.user_id for c in me.find("BirthChart")] == [ann.id]
    assert me.find_one("BirthChart", {"id": bob_chart.id}) is None
    assert me.update("BirthChart", {"id": bob_chart.id}, {"houseSystem": "koch"}) is None
    assert db.find_one("BirthChart", {"id": bob_chart.id}).house_system == "placidus"
    with pytest.raises(PermissionDeniedError):
        db.as_actor("r", roles=["reader"]).create("User", user_data())
    db.disconnect()


def test_each_write_leaves_one_audit_entry_and_an_aborted_transaction_none(live_url):
    db = open_db(live_url)
    user = db.create("User", user_data())
    db.update("User", {"id": user.id}, {"name": "Annie"})
    assert [e["action"] for e in db.audit_trail("User", user.id)] == ["create", "update"]
    try:
        with pytest.raises(RuntimeError):
            with db.transaction() as tx:
                db.update("User", {"id": user.id}, {"name": "Rolled back"}, transaction=tx)
                raise RuntimeError("abort")
    except TransactionNotSupportedError:
        pytest.skip("this server cannot run transactions")
    assert [e["action"] for e in db.audit_trail("User", user.id)] == ["create", "update"]
    db.disconnect()


def test_driver_debug_logs_of_a_crud_session_hold_no_email(live_url, caplog):
    caplog.set_level(logging.DEBUG)
    email = f"zelda.{uuid.uuid4().hex[:6]}@example.com"
    db = open_db(live_url, encryption_key=KEY_A)
    user = db.create("User", {"email": email, "name": "Zelda"})
    db.find_one("User", {"email": email}, strict=True)
    db.update("User", {"email": email}, {"status": "inactive"})
    db.delete("User", {"id": user.id})
    db.disconnect()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert email not in logged and KEY_A not in logged


@pytest.mark.mongodb
def test_the_least_privilege_user_can_do_crud_and_nothing_else(live_url):
    """The role and user ``astro-db roles`` prints are accepted by MongoDB and let the app do
    everything the service needs (create, read, write its audit trail) and nothing more:
    dropping a collection is refused by the server and surfaces as PermissionDeniedError.

    Needs a real MongoDB with authentication enabled (the embedded backend and nx-27017 check
    no privileges) and ASTRO_DB_TEST_URI carrying a user allowed to create roles and users;
    add tls=true&tlsCAFile=... to that URI to run it over TLS (see docs/testing.md).
    """
    import pymongo

    admin = pymongo.MongoClient(live_url)
    if not admin.admin.command("connectionStatus").get("authInfo", {}).get("authenticatedUsers"):
        admin.close()
        pytest.skip("needs authentication enabled and a user in ASTRO_DB_TEST_URI that may create roles and users")
    name = admin.get_default_database().name
    role, app_user, password = f"r{uuid.uuid4().hex[:6]}", f"u{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    create_role, create_user = role_commands(name, role=role, user=app_user)
    admin[name].command(create_role)
    admin[name].command({**create_user, "pwd": password})
    vault_ns = f"kv_{uuid.uuid4().hex[:8]}.__keyVault"  # its own key vault, its role made in that database
    vault_commands = key_vault_commands(name, vault_ns, role=f"{role}KeyVault", user=app_user)
    for db_name, command in vault_commands:
        admin[db_name].command(command)
    try:
        base, _, query = live_url.partition("?")
        host = base.split("@")[-1].split("/")[0]
        options = "&".join(o for o in query.split("&") if o and not o.lower().startswith("authsource="))
        url = f"mongodb://{host}/{name}" + (f"?{options}" if options else "")  # keeps tls, replicaSet
        db = Database(url, username=app_user, password=password, auth_source=name,
                      server_selection_timeout_ms=5000).connect()
        user = db.create("User", user_data())
        assert db.find_one("User", {"id": user.id}) is not None
        assert db.audit_trail("User", user.id)
        with pytest.raises(PermissionDeniedError):
            db.executor.call(None, "drop", lambda: db.mongo["users"].drop())
        db.disconnect()
        # with field level encryption: the app creates and reads its data keys, and cannot rename one
        sealed = Database(url, username=app_user, password=password, auth_source=name, encryption_key=KEY_A,
                          key_vault_namespace=vault_ns, server_selection_timeout_ms=5000).connect()
        ann = sealed.create("User", user_data())
        assert sealed.find_one("User", {"id": ann.id}).email == ann.email
        vault_db, _, vault_coll = vault_ns.partition(".")
        with pytest.raises(PermissionDeniedError):
            sealed.executor.call(None, "rename a data key", lambda: sealed.mongo.client[vault_db][vault_coll].update_one(
                {}, {"$set": {"keyAltNames": ["user:mallory"]}}))
        sealed.disconnect()
    finally:
        admin[name].command({"dropUser": app_user})
        admin[name].command({"dropRole": role})
        vault_db = vault_ns.partition(".")[0]
        admin[vault_db].command({"dropRole": f"{role}KeyVault"})
        admin.drop_database(vault_db)
        admin.close()


def test_on_a_server_a_costly_regex_is_refused_before_any_command(live_url):
    from spies import CommandSpy

    from astro_db.errors import QueryError

    spy = CommandSpy("find", "aggregate")
    db = open_db(live_url, event_listeners=[spy])
    db.create("User", user_data(name="a" * 100))
    with pytest.raises(QueryError, match="refused by the cost rule"):
        db.find("User", {"name": {"$regex": r"\w*\w*\w*\w*\w*\w*!"}})
    with pytest.raises(QueryError, match="refused by the cost rule"):
        db.aggregate("User", [{"$project": {"m": {"$regexMatch": {"input": "a" * 3000, "regex": ".*.*.*!"}}}}])
    assert spy.names == []
    assert len(db.find("User", {"name": {"$regex": "^a{100}$"}})) == 1  # a cheap one still runs on the server
    assert spy.names == ["find"]
    db.disconnect()


def test_a_login_by_email_is_sent_to_the_server_as_its_blind_index(live_url):
    """With a key, on a server: the email and the name are ciphertext at rest; a login by any
    spelling of the address sends only its keyed hash (a command listener sees the filter), and
    a second spelling is refused by the unique blind index."""
    from spies import CommandSpy

    from astro_db.errors import DuplicateKeyError
    from astro_db.security.crypto import Keyring

    spy = CommandSpy("find")
    db = open_db(live_url, encryption_key=KEY_A, event_listeners=[spy])
    try:
        user = db.create("User", user_data(email="Ann.Login@Example.com", name="Ann Login"))
        stored = db.collection("User").find_one({"_id": user.id})
        assert is_fle(stored["email"], "ann.login") and is_fle(stored["name"], "Ann Login")
        assert "login" not in repr(stored).lower()
        spy.commands.clear()
        found = db.find_one("User", {"email": "ANN.LOGIN@example.com"}, strict=True)
        assert found.id == user.id and found.email == "ann.login@example.com" and found.name == "Ann Login"
        sent = [c["filter"] for c in spy.commands if c.get("find") == "users"]
        index = Keyring(base64.b64decode(KEY_A)).blind.hash("ann.login@example.com", "users", "email")
        assert sent == [{"emailIndex": {"$in": [index]}}]
        indexes = {tuple(i["key"]): i for i in db.collection("User").list_indexes()}
        assert indexes[("emailIndex",)].get("unique")  # (sparse too: nx-27017 does not list it)
        db.collection("User").drop_index(indexes[("email",)]["name"])  # uniqueness from the blind index alone
        with pytest.raises(DuplicateKeyError):
            db.create("User", user_data(email="ann.LOGIN@example.com"))
    finally:
        db.disconnect()


def test_keyless_users_without_a_blind_index_do_not_collide_on_it(live_url):
    """The unique blind index is sparse: documents written without a key (no ``emailIndex``)
    are left out of it rather than colliding on a missing value."""
    db = open_db(live_url, allow_plaintext_sensitive=True)
    try:
        for _ in range(3):
            db.create("User", user_data())
        assert db.count("User", {}) == 3
    finally:
        db.disconnect()
