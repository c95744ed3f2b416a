"""Personal data of one user (``astro_db.personal``) on the embedded backend: export (complete and
exclusive, authorized), erasure (nothing readable left anywhere, others intact, recorded,
exactly once, resumable), restores that never bring an erased user back, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import bson
import pytest
from backup_helpers import instant_after_last_write
from bson import ObjectId
from people import people
from sealed_scan import backup_documents, opened_text, raw_documents, raw_text

from astro_db import Database, backup
from astro_db.errors import DuplicateKeyError, NotFoundError, PermissionDeniedError, ValidationError
from astro_db.personal import ERASURES_COLLECTION, EXPORT_FORMAT

from .security_data import KEY_A, snapshot

_dbs = itertools.count()


def fresh(**options: Any) -> Database:
    return Database(f"mongomock://localhost/personal_{next(_dbs)}", encryption_key=KEY_A, **options).connect()


PERSON = people("personal")  # what is personal about each of the two users: none of it may survive an erasure


def seed_person(db: Database, who: str) -> dict[str, Any]:
    p = PERSON[who]
    user = db.create("User", {"email": p["email"], "name": p["name"] + " Draft"})
    db.update("User", {"id": user.id}, {"name": p["name"]})  # a second record, with a post-image
    chart = db.create("BirthChart", {"userId": str(user.id), "birthData": {
        "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
        "location": {"name": p["place"], "coordinates": [-21.9, 64.1]}}})
    insight = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 40,
                                             "recommendations": [p["rec"]], "summary": p["summary"]})
    gone = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-01-02T00:00:00Z", "energyLevel": 41,
                                          "recommendations": [p["rec"] + " again"], "summary": p["summary"] + " two"})
    db.delete("PlanetaryInsight", {"id": gone.id})  # deleted before: its records are still the user's
    return {"user": user.id, "chart": chart.id, "insight": insight.id, "gone": gone.id}


def interleaved(db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two users whose documents and records were written alternately."""
    ann = seed_person(db, "ann")
    bob = seed_person(db, "bob")
    db.update("PlanetaryInsight", {"id": ann["insight"]}, {"energyLevel": 44})
    db.update("PlanetaryInsight", {"id": bob["insight"]}, {"energyLevel": 55})
    return ann, bob


def strings(who: str) -> list[str]:
    return list(PERSON[who].values())


def readable_text(db: Database) -> str:
    """Every collection's raw BSON, plus what each ciphertext in it opens to under the app's keys
    (the binding not checked): what a copy of the database gives someone who holds the keys."""
    return opened_text(db, raw_documents(db))


def share_key_vault(source: Database, target: Database) -> None:
    """``target`` on the same cluster as ``source``: one key vault (``encryption.__keyVault``, a
    database of its own, never in a backup set). Embedded databases each have a private store,
    so the cluster's vault, as it is now, is copied into the target's."""
    vault = source.executor.runtime.crypto.vault
    assert vault is not None
    name, _, coll = vault.namespace.partition(".")
    keys = list(source.mongo.client[name][coll].find())
    target.mongo.client[name][coll].delete_many({})
    if keys:
        target.mongo.client[name][coll].insert_many(keys)
    target.executor.runtime.crypto.vault.reset()  # type: ignore[union-attr]


# --- export ------------------------------------------------------------------------------------


def test_the_export_holds_everything_about_the_user_and_nothing_about_anyone_else():
    db = fresh()
    ann, bob = interleaved(db)
    export = db.export_user(ann["user"])
    text = json.dumps(export)  # JSON-serialisable as it is
    assert export["format"] == EXPORT_FORMAT and export["userId"] == str(ann["user"])
    for s in strings("ann"):
        assert s in text  # decrypted: the birth place is sealed in the collection
    for s in strings("bob") + [str(v) for v in bob.values()]:
        assert s not in text
    models = export["models"]
    assert [d["_id"]["$oid"] for d in models["User"]["documents"]] == [str(ann["user"])]
    assert models["BirthChart"]["documents"][0]["birthData"]["location"]["name"] == "Reykjavik"
    assert [d["_id"]["$oid"] for d in models["PlanetaryInsight"]["documents"]] == [str(ann["insight"])]
    actions = {(c["documentId"]["$oid"], c["action"], c["rev"]) for c in models["PlanetaryInsight"]["changes"]}
    assert actions == {(str(ann["insight"]), "create", 0), (str(ann["insight"]), "update", 1),
                       (str(ann["gone"]), "create", 0), (str(ann["gone"]), "delete", 1)}
    assert [(c["action"], c["rev"]) for c in models["User"]["changes"]] == [("create", 0), ("update", 1)]
    assert "Annabel Quist Draft" in json.dumps(models["User"]["changes"])  # the first post-image too
    assert "Reykjavik" in json.dumps(models["BirthChart"]["changes"])  # post-images opened
    assert "enc:" not in text


def test_a_user_may_export_her_own_data_and_no_one_elses():
    db = fresh()
    ann, bob = interleaved(db)
    mine = db.as_actor(str(ann["user"]), roles=["self"]).export_user(ann["user"])
    assert mine["models"]["User"]["documents"][0]["email"] == PERSON["ann"]["email"]
    before = snapshot(db)
    with pytest.raises(PermissionDeniedError, match="only its own data"):
        db.as_actor(str(ann["user"]), roles=["self"]).export_user(bob["user"])
    for role in ("reader", "writer"):  # staff that may not read audit trails may not export
        with pytest.raises(PermissionDeniedError):
            db.as_actor("staff", roles=[role]).export_user(ann["user"])
    assert db.as_actor("boss", roles=["admin"]).export_user(bob["user"])["userId"] == str(bob["user"])
    assert snapshot(db) == before


def test_export_bad_input_is_a_typed_error():
    db = fresh()
    with pytest.raises(ValidationError):
        db.export_user("not-an-id")
    with pytest.raises(NotFoundError):
        db.export_user(ObjectId())


# --- erasure ------------------------------------------------------------------------------------


def test_after_an_erasure_nothing_of_the_user_is_readable_anywhere_and_the_others_are_intact():
    db = fresh()
    ann, bob = interleaved(db)
    bob_before = db.export_user(bob["user"])
    assert not any(s in raw_text(raw_documents(db)) for s in strings("ann"))  # sealed at rest, records included
    assert all(s in readable_text(db) for s in strings("ann"))  # ... and readable with the keys
    report = db.erase_user(ann["user"])
    assert report["erased"] == {"BirthChart": 1, "PlanetaryInsight": 1, "TimingRecommendation": 0, "User": 1}
    assert report["state"] == "done" and not report["resumed"] and not report["already"]
    text = readable_text(db)
    for s in strings("ann"):
        assert s not in text, s
    assert all(s in text for s in strings("bob"))
    bob_after = db.export_user(bob["user"])
    assert bob_after["models"] == bob_before["models"]  # other users lose nothing, records included
    # the audit still shows that writes happened, and the erasure, without personal data
    trail = db.audit_trail("User", ann["user"])
    assert [(e["action"], e["revision"]) for e in trail] == [("create", 0), ("update", 1), ("delete", 2), ("erase", 3)]
    erase = db.mongo["astroChanges"].find_one({"action": "erase"})
    assert erase["documentId"] == ann["user"] and erase["counts"]["User"] == 1 and "doc" not in erase
    ledger = db.mongo[ERASURES_COLLECTION].find_one({"_id": ann["user"]})
    assert ledger["state"] == "done" and set(ledger) >= {"started", "finished", "counts", "actor"}
    assert not any(s in bson.encode(ledger).decode("utf-8", "replace") for s in strings("ann"))


def test_an_erasure_is_done_once_a_rerun_changes_nothing():
    db = fresh()
    ann, _ = interleaved(db)
    first = db.erase_user(ann["user"])
    after = snapshot(db)
    again = db.erase_user(str(ann["user"]))
    assert again["already"] and again["erased"] == first["erased"]
    assert snapshot(db) == after


def test_an_erased_users_id_is_never_given_to_a_new_user_and_the_refusal_writes_nothing(tmp_path):
    """Every restore skips an erased user's documents: a new user under the erased id would be
    lost from every backup, so a create under it is refused, alone or in a batch (the rest kept)."""
    db = fresh()
    ann, bob = interleaved(db)
    db.erase_user(ann["user"])
    before = snapshot(db)
    again = {"_id": ann["user"], "email": "ann.again@example.com", "name": "Ann Again"}
    with pytest.raises(DuplicateKeyError, match="was erased") as refused:
        db.create("User", again)
    assert refused.value.fields == ("_id",) and "ann.again" not in str(refused.value)
    with pytest.raises(DuplicateKeyError, match="was erased"):
        db.create("User", {**again, "_id": str(ann["user"])})  # the id as text is the same id
    assert snapshot(db) == before
    result = db.create_many("User", [{"email": "cy@example.com", "name": "Cy"}, again,
                                     {"_id": ObjectId(), "email": "di@example.com", "name": "Di"}])
    assert [u.email for u in result] == ["cy@example.com", "di@example.com"]
    assert [(i, type(e).__name__) for i, e in result.failed] == [(1, "DuplicateKeyError")]
    assert db.mongo.users.count_documents({"_id": ann["user"]}) == 0
    # the ids of users who were never erased, and of other models' documents, are free as before
    db.delete("User", {"id": bob["user"]})
    assert db.create("User", {"_id": bob["user"], "email": "bob.back@example.com", "name": "Bob"}).id == bob["user"]
    assert db.create("PlanetaryInsight", {"_id": ann["user"], "userId": bob["user"], "date": "2026-02-01T00:00:00Z",
                                          "energyLevel": 5, "recommendations": ["x"]}).id == ann["user"]


def test_an_interrupted_erasure_is_finished_by_a_rerun_or_by_reconcile():
    """The ledger intent written and the cascade done, then the process 'died' (the state a
    SIGKILL leaves; the live tier kills a real process): the rerun scrubs, records, finishes,
    and no document is deleted twice (one delete record each)."""
    for finish in ("rerun", "reconcile"):
        db = fresh()
        ann, bob = interleaved(db)
        counts = {"BirthChart": 1, "PlanetaryInsight": 1, "TimingRecommendation": 0, "User": 1}
        db.mongo[ERASURES_COLLECTION].insert_one({"_id": ann["user"], "state": "started", "model": "User",
                                                  "actor": None, "requestId": None, "counts": counts})
        db.delete_user_cascade(ann["user"])
        assert "Annabel Quist" in readable_text(db)  # the records still hold the post-images, her key too
        if finish == "rerun":
            report = db.erase_user(ann["user"])
            assert report["resumed"] and report["erased"] == counts
        else:
            assert db.reconcile_changes()["erasures"]["finished"] == 1
            assert db.reconcile_changes()["erasures"] == {"finished": 0, "scrubbed": 0}
        for s in strings("ann"):
            assert s not in readable_text(db)
        deletes = db.mongo["astroChanges"].count_documents({"documentId": ann["insight"], "action": "delete"})
        assert deletes == 1
        assert db.mongo["astroChanges"].count_documents({"action": "erase"}) == 1
        assert db.find_one("User", {"id": bob["user"]}) is not None


def test_erasure_is_an_admins_call_and_bad_input_changes_nothing():
    db = fresh()
    ann, bob = interleaved(db)
    before = snapshot(db)
    for role in ("self", "reader", "writer"):
        with pytest.raises(PermissionDeniedError):
            db.as_actor(str(ann["user"]), roles=[role]).erase_user(ann["user"])
    with pytest.raises(ValidationError):
        db.erase_user("12345")
    with pytest.raises(NotFoundError):
        db.erase_user(ObjectId())
    assert snapshot(db) == before
    report = db.as_actor("dpo", roles=["admin"], request_id="req-17").erase_user(ann["user"])
    assert report["state"] == "done"
    erase = db.mongo["astroChanges"].find_one({"action": "erase"})
    assert (erase["actor"], erase["requestId"]) == ("dpo", "req-17")


def test_a_self_scoped_admin_erases_only_herself():
    """``self`` narrows ``admin`` to the actor's own documents: erasing another user is refused
    before anything is written (the erasure runs on the trusted view, so its scope is checked
    where it is authorized), and erasing herself is allowed."""
    db = fresh()
    ann, bob = interleaved(db)
    before = snapshot(db)
    scoped = db.as_actor(str(ann["user"]), roles=["self", "admin"])
    with pytest.raises(PermissionDeniedError, match="may erase only its own data"):
        scoped.erase_user(bob["user"])
    with pytest.raises(PermissionDeniedError):
        scoped.erase_user(str(bob["user"]))
    assert snapshot(db) == before
    assert scoped.erase_user(ann["user"])["state"] == "done"
    assert db.find_one("User", {"id": bob["user"]}) is not None and db.find_one("User", {"id": ann["user"]}) is None


def test_the_export_of_an_erased_user_shows_only_the_erasure():
    db = fresh()
    ann, _ = interleaved(db)
    db.erase_user(ann["user"])
    export = db.export_user(ann["user"])
    assert export["erasure"]["state"] == "done"
    assert all(not m["documents"] for m in export["models"].values())
    text = json.dumps(export)
    assert not any(s in text for s in strings("ann"))


# --- backups ------------------------------------------------------------------------------------


def _restored(repo: Path, source: Database, **options: Any) -> Database:
    """``repo`` restored into a fresh database on ``source``'s cluster (its key vault)."""
    target = fresh()
    share_key_vault(source, target)
    backup.restore(repo, target, **options)
    return target


def test_a_backup_taken_before_an_erasure_never_brings_the_user_back(tmp_path):
    db = fresh()
    ann, bob = interleaved(db)
    repo = tmp_path / "repo"
    first = backup.backup(db, repo)["id"]  # full, before the erasure: it holds Ann
    db.erase_user(ann["user"])
    # restored with the live database's ledger
    target = fresh()
    share_key_vault(db, target)
    report = backup.restore(repo, target, erasures_from=db)
    assert report["erased_users"] == 1
    assert report["skipped"] == {"users": 1, "birthCharts": 1, "planetaryInsights": 1}
    try:
        for s in strings("ann"):
            assert s not in readable_text(target)
        assert target.find_one("User", {"id": ann["user"]}) is None
        assert target.export_user(bob["user"])["models"]["BirthChart"]["documents"][0]["birthData"]["location"]["name"] \
            == "Valparaiso"
        assert target.mongo[ERASURES_COLLECTION].count_documents({"_id": ann["user"]}) == 1  # it stays erased there
        assert target.count("PlanetaryInsight", {}) == 1
    finally:
        target.disconnect()
    # restored from the repository alone: a later set carries the ledger
    later = backup.backup(db, repo)  # incremental, after the erasure
    assert later["documents"][ERASURES_COLLECTION] == 1  # the ledger, copied whole
    backup.verify(repo)  # the sets still verify
    target = _restored(repo, db, set_id=first)
    try:
        for s in strings("ann"):
            assert s not in readable_text(target)
        assert target.find_one("User", {"id": bob["user"]}).name == PERSON["bob"]["name"]
    finally:
        target.disconnect()


def test_incremental_sets_and_point_in_time_restores_skip_an_erased_users_journal(tmp_path):
    db = fresh()
    ann, bob = interleaved(db)
    repo = tmp_path / "repo"
    backup.backup(db, repo)  # full
    db.update("PlanetaryInsight", {"id": ann["insight"]}, {"summary": "Annabel's later day"})
    db.update("PlanetaryInsight", {"id": bob["insight"]}, {"summary": "Bartholomew's later day"})
    db.create("TimingRecommendation", timing(ann["user"], "Annabel's window"))
    cut = instant_after_last_write()
    backup.backup(db, repo)  # incremental: Ann's later writes as upserts and journal entries
    db.erase_user(ann["user"])
    for options in ({"erasures_from": db}, {"erasures_from": db, "until": cut}):  # the newest set; then a cut replayed
        target = _restored(repo, db, **options)
        try:
            text = readable_text(target)
            assert not any(s in text for s in [*strings("ann"), "Annabel's later day", "Annabel's window"]), options
            assert target.find_one("PlanetaryInsight", {"id": bob["insight"]}).summary == "Bartholomew's later day"
        finally:
            target.disconnect()


def timing(user_id: Any, activity: str) -> dict[str, Any]:
    return {"userId": user_id, "activity": activity, "windows": [
        {"start": "2026-02-01T09:00:00Z", "end": "2026-02-01T11:00:00Z", "score": 80}]}


def test_without_a_ledger_the_old_set_restores_everyone(tmp_path):
    """The skip is the ledger's doing: the same set restores Ann when nobody was erased."""
    db = fresh()
    ann, _ = interleaved(db)
    repo = tmp_path / "repo"
    backup.backup(db, repo)
    target = _restored(repo, db)
    try:
        assert target.find_one("User", {"id": ann["user"]}).name == PERSON["ann"]["name"]
    finally:
        target.disconnect()


def test_with_a_key_the_shredding_alone_makes_a_pre_erasure_backup_unreadable(tmp_path):
    """Issue 25's done-when on the embedded backend, the shredding held on its own: the export
    holds her email, name, birth place and insight texts and nothing of Bob; after the erasure
    none of them is in any collection, even opened with the app's keys; the files of a backup
    taken before hold only ciphertext, whose data key is gone; restored with the ledger bypassed
    (no later set, no ``erasures_from``) on the same cluster, her documents come back with every
    personal value ``UNREADABLE``, while Bob's read intact."""
    from astro_db.security.crypto import is_unreadable

    db = fresh()
    ann, bob = interleaved(db)
    export = json.dumps(db.export_user(ann["user"]))
    assert all(s in export for s in strings("ann")) and not any(s in export for s in strings("bob"))
    repo = tmp_path / "repo"
    first = backup.backup(db, repo)["id"]
    set_dir = next(p for p in repo.rglob("manifest.json") if first in str(p)).parent
    files_before = opened_text(db, backup_documents(set_dir))
    assert all(s in files_before for s in strings("ann") + strings("bob"))  # the keys open the set ...
    assert not any(s in raw_text(backup_documents(set_dir)) for s in strings("ann") + strings("bob"))  # ... only they
    report = db.erase_user(ann["user"])
    assert report["keys_shredded"] == 1  # her data key, deleted from the key vault
    assert not any(s in readable_text(db) for s in strings("ann"))
    files_after = opened_text(db, backup_documents(set_dir))  # the same files, her key gone
    assert not any(s in files_after for s in strings("ann")), files_after
    assert all(s in files_after for s in strings("bob"))
    target = _restored(repo, db, set_id=first)  # no ledger: her documents are restored ...
    try:
        her = target.find_one("User", {"id": ann["user"]})
        assert her is not None and is_unreadable(her.email) and is_unreadable(her.name)  # ... unreadable
        chart = target.find_one("BirthChart", {"id": ann["chart"]})
        assert is_unreadable(chart.birth_data.location.name) and is_unreadable(chart.birth_data.date)
        insight = target.find_one("PlanetaryInsight", {"id": ann["insight"]})
        assert is_unreadable(insight.summary) and all(is_unreadable(r) for r in insight.recommendations)
        restored = readable_text(target)
        assert not any(s in restored for s in strings("ann"))
        assert all(s in restored for s in strings("bob"))
        assert target.export_user(bob["user"])["models"]["User"]["documents"][0]["email"] == PERSON["bob"]["email"]
        assert target.find_one("BirthChart", {"birthData.location.name": "Valparaiso"}).id == bob["chart"]
    finally:
        target.disconnect()


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_export_prints_the_json_and_erase_refuses_without_yes(monkeypatch):
    from click.testing import CliRunner

    from astro_db.cli import CliContext, cli

    db = fresh()
    ann, bob = interleaved(db)
    monkeypatch.setattr(CliContext, "database", lambda self, **options: db)  # embedded data lives in this process
    out = CliRunner().invoke(cli, ["--url", "mongomock://localhost/cli_personal", "export-user", str(ann["user"])])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    assert printed["models"]["User"]["documents"][0]["name"] == PERSON["ann"]["name"]
    whole = db.export_user(ann["user"])
    assert {**printed, "exportedAt": None} == {**whole, "exportedAt": None}  # the stream is the document
    unknown = CliRunner().invoke(cli, ["--url", "mongomock://localhost/cli_personal", "export-user", str(ObjectId())])
    assert unknown.exit_code == 2 and unknown.output.startswith("error: nothing is stored")  # nothing printed first
    before = snapshot(db)
    refused = CliRunner().invoke(cli, ["--url", "mongomock://localhost/cli_personal", "erase-user", str(ann["user"])])
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert snapshot(db) == before
    bad = CliRunner().invoke(cli, ["--url", "mongomock://localhost/cli_personal", "erase-user", "nope", "--yes"])
    assert bad.exit_code == 2 and "not a valid ObjectId" in bad.output
    done = CliRunner().invoke(cli, ["--url", "mongomock://localhost/cli_personal", "erase-user", str(ann["user"]), "--yes"])
    assert done.exit_code == 0, done.output
    assert "PlanetaryInsight:     1 document(s) erased" in done.output and "done" in done.output
    again = CliRunner().invoke(cli, ["--url", "mongomock://localhost/cli_personal", "--json", "erase-user",
                                     str(ann["user"]), "--yes"])
    assert json.loads(again.output)["already"] is True
    assert not any(s in readable_text(db) for s in strings("ann"))


def test_the_ledger_is_a_service_collection_listed_apart_and_read_only_for_the_app_role():
    from astro_db.errors import ConfigError
    from astro_db.models import AstroDocument
    from astro_db.security.mongo_roles import role_commands

    db = fresh()
    ann, _ = interleaved(db)
    db.erase_user(ann["user"])
    internal = {c["collection"]: c["count"] for c in db.storage_stats()["internal"]}
    assert internal[ERASURES_COLLECTION] == 1
    privileges = {p["resource"]["collection"]: p["actions"] for p in role_commands("astro")[0]["privileges"]}
    assert privileges[ERASURES_COLLECTION] == ["find", "createIndex", "listIndexes"]
    assert "update" not in privileges["astroChanges"]  # the app's role keeps the records append-only

    class Squatter(AstroDocument):
        meta = {"collection": ERASURES_COLLECTION}

    with pytest.raises(ConfigError, match="the service's own"):
        Database("mongomock://localhost/squat", models=[Squatter])


def test_records_held_in_memory_after_a_failed_write_are_written_scrubbed(monkeypatch):
    """An update applied while its record could not be written leaves the record pending in
    memory, post-image and all; the erasure writes it first and then scrubs it, so no later
    write can bring the post-image back."""
    from pymongo import errors as pm

    from astro_db.changes import log as change_log
    from astro_db.errors import ChangeRecordError

    db = fresh(retry_attempts=1)
    ann, _ = interleaved(db)
    original = change_log._insert
    fails = iter([True])

    def insert(coll, recs, session):
        if next(fails, False):
            raise pm.AutoReconnect("connection closed")
        return original(coll, recs, session)

    monkeypatch.setattr(change_log, "_insert", insert)
    with pytest.raises(ChangeRecordError):
        db.update("User", {"id": ann["user"]}, {"name": "Annabel Pending"})
    assert db.executor.runtime.changes.pending == 1
    db.erase_user(ann["user"])
    assert db.executor.runtime.changes.pending == 0
    assert "Annabel Pending" not in readable_text(db)
    assert [e["action"] for e in db.audit_trail("User", ann["user"])] == ["create", "update", "update", "delete", "erase"]


def test_the_written_export_goes_out_one_document_or_record_at_a_time():
    from astro_db.personal import write_export

    db = fresh()
    ann, _ = interleaved(db)
    for day in range(3, 30):
        db.create("PlanetaryInsight", {"userId": ann["user"], "date": f"2026-01-{day:02d}T00:00:00Z", "energyLevel": day,
                                       "recommendations": ["Annabel, breathe"], "summary": "Annabel's day " * 20})
    pieces: list[str] = []
    write_export(db, db.executor, ann["user"], pieces.append)
    whole = db.export_user(ann["user"])
    items = [i for m in whole["models"].values() for i in m["documents"] + m["changes"]]
    assert len(items) > 60
    largest = max(len(json.dumps(i, ensure_ascii=False)) for i in items)
    assert max(len(p) for p in pieces) <= largest + 20  # never two documents in one piece
    assert {**json.loads("".join(pieces)), "exportedAt": None} == {**whole, "exportedAt": None}


def test_reconcile_changes_on_the_command_line_says_it_finished_an_erasure(monkeypatch):
    from click.testing import CliRunner

    from astro_db.cli import CliContext, cli

    db = fresh()
    ann, _ = interleaved(db)
    db.mongo[ERASURES_COLLECTION].insert_one({"_id": ann["user"], "state": "started", "model": "User", "actor": None,
                                              "requestId": None, "counts": {"User": 1}})
    monkeypatch.setattr(CliContext, "database", lambda self, **options: db)
    out = CliRunner().invoke(cli, ["--url", "mongomock://localhost/cli_reconcile_erasure", "reconcile-changes"])
    assert out.exit_code == 0, out.output
    assert "1 interrupted user erasure(s) finished" in out.output
    assert not any(s in readable_text(db) for s in strings("ann"))


def test_entries_of_the_older_audit_log_are_exported_too():
    import datetime as dt

    db = fresh()
    ann, bob = interleaved(db)
    when = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    db.mongo["auditLog"].insert_many([
        {"model": "User", "documentId": ann["user"], "action": "update", "fields": ["name"], "time": when, "actor": "old"},
        {"model": "User", "documentId": bob["user"], "action": "update", "fields": ["name"], "time": when, "actor": "old"}])
    changes = db.export_user(ann["user"])["models"]["User"]["changes"]
    assert [(c["action"], c.get("actor")) for c in changes][0] == ("update", "old")
    assert str(bob["user"]) not in json.dumps(changes)


def test_a_record_of_an_erased_user_written_late_by_another_process_is_scrubbed_by_reconcile():
    db = fresh()
    ann, bob = interleaved(db)
    db.erase_user(ann["user"])
    late = {"_id": f"planetaryInsights/{ann['insight']}/9/late", "model": "PlanetaryInsight", "coll": "planetaryInsights",
            "documentId": ann["insight"], "rev": 9, "action": "update", "journal": True, "audit": True,
            "doc": {"_id": ann["insight"], "userId": ann["user"], "summary": "Annabel's late record"}}
    db.mongo["astroChanges"].insert_one(late)  # what another process's pending record would write
    assert db.reconcile_changes()["erasures"] == {"finished": 0, "scrubbed": 1}
    assert "Annabel's late record" not in readable_text(db)
    assert db.mongo["astroChanges"].find_one({"_id": late["_id"]})["erased"] is True
    assert "Bartholomew's busy day" in readable_text(db)  # scrubs only the erased


def test_the_erasure_shreds_the_users_data_keys_through_the_crypto_engine_once(monkeypatch):
    """``personal._forget_keys`` calls ``FieldCrypto.shred(user_id, noted)`` where the engine has it
    (per-user data keys, MongoDB CSFLE); the count lands in the ledger and the report, and a
    finished erasure never shreds again."""
    from astro_db.security.crypto import FieldCrypto

    calls: list[Any] = []

    def shred(self, subject_id, noted=None):
        calls.append(subject_id)
        return 2 if len(calls) == 1 else 0  # the keys are gone after the first call

    monkeypatch.setattr(FieldCrypto, "shred", shred, raising=False)
    db = fresh()
    ann, _ = interleaved(db)
    assert db.erase_user(ann["user"])["keys_shredded"] == 2
    assert calls == [ann["user"]]
    assert db.mongo["astroChanges"].find_one({"action": "erase"})["keysShredded"] == 2
    assert db.erase_user(ann["user"])["keys_shredded"] == 2 and calls == [ann["user"]]  # done: not again


def test_without_field_encryption_there_is_no_key_to_shred():
    db = Database("mongomock://localhost/personal_nokey").connect()  # embedded: plaintext allowed, no vault
    assert db.executor.runtime.crypto.vault is None
    user = db.create("User", {"email": "nokey@example.com", "name": "No Key"})
    assert db.erase_user(user.id)["keys_shredded"] == 0


def test_the_erasure_deletes_the_users_own_data_key_from_the_key_vault_and_no_one_elses():
    """Not a stand-in: the real engine (MongoDB CSFLE's key vault) loses the erased user's key."""
    from astro_db.security.vault import subject_alt_name

    db = fresh()
    ann, bob = interleaved(db)
    vault = db.executor.runtime.crypto.vault
    for who in (ann, bob):  # a data key of each user's own, as sealing one of their values makes it
        vault.key_for(subject_alt_name(who["user"]))
    keys = db.mongo.client["encryption"]["__keyVault"]
    assert keys.count_documents({"keyAltNames": {"$in": [subject_alt_name(ann["user"])]}}) == 1
    assert db.erase_user(ann["user"])["keys_shredded"] == 1
    assert keys.count_documents({"keyAltNames": {"$in": [subject_alt_name(ann["user"])]}}) == 0
    assert keys.count_documents({"keyAltNames": {"$in": [subject_alt_name(bob["user"])]}}) == 1




@pytest.mark.parametrize("key", [None, KEY_A], ids=["plaintext", "encrypted"])
def test_a_document_that_changed_hands_is_exported_to_each_owner_only_for_the_revisions_they_owned(key):
    """An insight moved from Ann to Bob (an update of its owner field): its records from Ann's
    time hold Ann's data and go in Ann's export only, those from Bob's time in Bob's only; the
    delete that follows is Bob's."""
    db = fresh() if key else Database(f"mongomock://localhost/personal_{next(_dbs)}", allow_plaintext_sensitive=True).connect()
    ann = db.create("User", {"email": "ann@example.com", "name": "Ann"})
    bob = db.create("User", {"email": "bob@example.com", "name": "Bob"})
    day = db.create("PlanetaryInsight", {"userId": ann.id, "date": "2026-12-01", "energyLevel": 50,
                                         "recommendations": ["Ann's advice"], "summary": "Ann's summary"})
    db.update("PlanetaryInsight", {"id": day.id}, {"summary": "Ann's second summary"})
    db.update("PlanetaryInsight", {"id": day.id}, {"userId": bob.id, "summary": "Bob's summary",
                                                   "recommendations": ["Bob's advice"]})
    db.delete("PlanetaryInsight", {"id": day.id})
    of_ann = db.export_user(ann.id)["models"]["PlanetaryInsight"]
    of_bob = db.export_user(bob.id)["models"]["PlanetaryInsight"]
    assert [(c["action"], c["rev"]) for c in of_ann["changes"]] == [("create", 0), ("update", 1)]
    assert [(c["action"], c["rev"]) for c in of_bob["changes"]] == [("update", 2), ("delete", 3)]
    assert "Bob's" not in json.dumps(of_ann) and "Ann's" not in json.dumps(of_bob)
    assert "Ann's second summary" in json.dumps(of_ann) and "Bob's summary" in json.dumps(of_bob)
