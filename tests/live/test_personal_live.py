"""Personal data on the live server (nx-27017), with a field-encryption key configured.

1. The export holds the user's email, name, birth place and insight texts and nothing of
   another user (whose documents and records interleave with hers).
2. After ``erase_user`` none of those strings appears in the raw BSON of any collection; the
   other user is intact; the erasure is recorded without personal data; restoring a backup
   taken before the erasure into a fresh database brings none of her back, the other user's
   data is all there; the same with the shredding alone: the backup files and a restore that
   sees no ledger give nothing of her back readable (her data key is gone from the key vault).
3. A child process erasing her is SIGKILLed at a chosen command (a PyMongo command listener in
   the child: the ledger's intent, the cascade's ``commitTransaction``, the scrub of her change
   records, the ``erase`` record): a rerun finishes the erasure, and nothing is done twice (one
   delete record per document, one ``erase`` record, the ledger done with the counts of the
   first run). A kill *inside* the cascade's transaction needs a replica set to mean anything:
   nx-27017 does not make a transaction atomic (docs/testing.md), so its deletes would land
   one by one; on MongoDB the transaction aborts and the rerun deletes everything.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kill_at import CHILD_PATH
from people import people
from sealed_scan import backup_documents, opened_text, raw_documents, raw_text

from astro_db import Database, backup
from astro_db.changes import CHANGES_COLLECTION
from astro_db.changes.records import PACK_FROM
from astro_db.personal import ERASURES_COLLECTION

ROOT = Path(__file__).resolve().parents[2]
KEY = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="  # 32 x "A", base64

PEOPLE = people("live")


def seed(db: Database, who: str) -> dict[str, Any]:
    p = PEOPLE[who]
    user = db.create("User", {"email": p["email"], "name": p["name"]})
    chart = db.create("BirthChart", {"userId": str(user.id), "birthData": {
        "date": "1990-05-01T10:30:00Z", "timezone": "Europe/London",
        "location": {"name": p["place"], "coordinates": [-21.9, 64.1]}}})
    insight = db.create("PlanetaryInsight", {"userId": user.id, "date": "2026-01-01T00:00:00Z", "energyLevel": 40,
                                             "recommendations": [p["rec"]], "summary": p["summary"]})
    return {"user": user.id, "chart": chart.id, "insight": insight.id}


def both(db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    ann, bob = seed(db, "ann"), seed(db, "bob")
    db.update("PlanetaryInsight", {"id": ann["insight"]}, {"energyLevel": 44})
    db.update("PlanetaryInsight", {"id": bob["insight"]}, {"energyLevel": 55})
    return ann, bob


def readable_text(db: Database) -> str:
    """The raw BSON plus what each ciphertext in it opens to under the app's keys
    (tests/sealed_scan.py): what a copy of the database gives someone holding the keys."""
    return opened_text(db, raw_documents(db))


def strings(who: str) -> list[str]:
    return list(PEOPLE[who].values())


def test_export_then_erase_then_a_pre_erasure_backup_restores_none_of_her(live_url: str, tmp_path: Path) -> None:
    with Database(live_url, encryption_key=KEY) as db:
        ann, bob = both(db)
        export = str(db.export_user(ann["user"]))
        assert all(s in export for s in strings("ann"))
        assert not any(s in export for s in strings("bob"))
        bob_before = db.export_user(bob["user"])["models"]
        repo = tmp_path / "repo"
        backup.backup(db, repo)  # before the erasure
        report = db.erase_user(ann["user"])
        assert report["erased"] == {"BirthChart": 1, "PlanetaryInsight": 1, "TimingRecommendation": 0, "User": 1}
        text = readable_text(db)
        assert not any(s in text for s in strings("ann"))
        assert db.export_user(bob["user"])["models"] == bob_before
        erase = db.mongo["astroChanges"].find_one({"action": "erase"})
        assert erase["documentId"] == ann["user"] and "doc" not in erase
        assert [e["action"] for e in db.audit_trail("User", ann["user"])] == ["create", "delete", "erase"]
        target = Database(live_url.rsplit("/", 1)[0] + f"/{db.mongo.name}_restored", encryption_key=KEY,
                          ensure_indexes=False).connect()
        try:
            backup.restore(repo, target, drop=True, erasures_from=db)
            restored = readable_text(target)
            assert not any(s in restored for s in strings("ann"))
            assert target.find_one("User", {"id": ann["user"]}) is None
            assert target.export_user(bob["user"])["models"]["BirthChart"]["documents"] == bob_before["BirthChart"]["documents"]
            assert target.find_one("PlanetaryInsight", {"id": bob["insight"]}).summary == PEOPLE["bob"]["summary"]
        finally:
            target.mongo.client.drop_database(target.mongo.name)
            target.disconnect()
        # the same through the CLI: astro-db restore --erasures-url
        from click.testing import CliRunner

        from astro_db.cli import cli

        other = live_url.rsplit("/", 1)[0] + f"/{db.mongo.name}_cli"
        out = CliRunner().invoke(cli, ["--url", other, "restore", "--repo", str(repo), "--erasures-url", live_url])
        try:
            assert out.exit_code == 0, out.output
            assert "1 erased user(s) kept out: 3 of their documents not restored" in out.output
            with Database(other, encryption_key=KEY, ensure_indexes=False) as restored_db:
                assert not any(s in readable_text(restored_db) for s in strings("ann"))
                assert restored_db.find_one("User", {"id": bob["user"]}) is not None
        finally:
            db.mongo.client.drop_database(f"{db.mongo.name}_cli")


def test_with_a_key_the_shredding_alone_makes_a_pre_erasure_backup_unreadable_on_the_server(
        live_url: str, tmp_path: Path) -> None:
    """Issue 25's done-when with the shredding held on its own: every personal value is field
    level encryption under the user's data key (the key vault ``encryption.__keyVault`` is the
    server's, shared by every database on it); after ``erase_user`` nothing of her opens, not
    in the database, not in the files of a backup set taken before, not in that set restored
    into a fresh database with no ledger in sight (her documents come back, every personal value
    ``UNREADABLE``), while Bob's values all open."""
    from astro_db.security.crypto import is_unreadable

    with Database(live_url, encryption_key=KEY) as db:
        ann, bob = both(db)
        export = str(db.export_user(ann["user"]))
        assert all(s in export for s in strings("ann")) and not any(s in export for s in strings("bob"))
        assert not any(s in raw_text(raw_documents(db)) for s in strings("ann") + strings("bob"))  # sealed at rest
        assert all(s in opened_text(db, raw_documents(db)) for s in strings("ann"))  # ... under the keys
        repo = tmp_path / "repo"
        first = backup.backup(db, repo)["id"]
        set_dir = next(p for p in repo.rglob("manifest.json") if first in str(p)).parent
        files = opened_text(db, backup_documents(set_dir))
        assert all(s in files for s in strings("ann") + strings("bob"))
        assert db.erase_user(ann["user"])["keys_shredded"] == 1
        live = opened_text(db, raw_documents(db))
        assert not any(s in live for s in strings("ann")) and all(s in live for s in strings("bob"))
        files = opened_text(db, backup_documents(set_dir))  # the same files, her data key gone
        assert not any(s in files for s in strings("ann")), files
        assert all(s in files for s in strings("bob"))
        target = Database(live_url.rsplit("/", 1)[0] + f"/{db.mongo.name}_noledger", encryption_key=KEY,
                          ensure_indexes=False).connect()
        try:
            report = backup.restore(repo, target, drop=True, set_id=first)  # no later set, no erasures_from
            assert report["erased_users"] == 0
            her = target.find_one("User", {"id": ann["user"]})
            assert her is not None and is_unreadable(her.email) and is_unreadable(her.name)
            chart = target.find_one("BirthChart", {"id": ann["chart"]})
            assert is_unreadable(chart.birth_data.location.name) and is_unreadable(chart.birth_data.date)
            insight = target.find_one("PlanetaryInsight", {"id": ann["insight"]})
            assert is_unreadable(insight.summary) and all(is_unreadable(r) for r in insight.recommendations)
            restored = opened_text(target, raw_documents(target))
            assert not any(s in restored for s in strings("ann"))
            assert all(s in restored for s in strings("bob"))
            assert target.find_one("User", {"email": PEOPLE["bob"]["email"]}).name == PEOPLE["bob"]["name"]
            assert target.find_one("BirthChart", {"birthData.location.name": "Valparaiso"}).id == bob["chart"]
        finally:
            target.mongo.client.drop_database(target.mongo.name)
            target.disconnect()


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[5])
    from bson import ObjectId
    from astro_db import Database
    from kill_at import KillAt

    url, key, user_id, at = sys.argv[1:5]

    def chosen(name, cmd):
        if at == "intent":  # the ledger's intent: nothing else done yet
            return name == "insert" and cmd.get("insert") == "astroErasures"
        if at == "commit":  # the cascade's transaction committed, nothing after it done
            return name == "commitTransaction"
        if at == "scrub":  # the first scrub of the change records
            return name == "update" and cmd.get("update") == "astroChanges" and any(
                "$unset" in u.get("u", {}) for u in cmd.get("updates", ()))
        if at == "erase-record":
            return name == "insert" and cmd.get("insert") == "astroChanges" and any(
                d.get("action") == "erase" for d in cmd.get("documents", ()))
        return False

    db = Database(url, encryption_key=key, event_listeners=[KillAt(chosen)]).connect()
    print("ready", flush=True)
    db.erase_user(ObjectId(user_id))
    print("survived", flush=True)
""")


@pytest.mark.parametrize("at", ["intent", "commit", "scrub", "erase-record"])
def test_an_erasure_killed_at_a_chosen_command_is_finished_by_a_rerun_once(live_url: str, at: str) -> None:
    with Database(live_url, encryption_key=KEY) as db:
        ann, bob = both(db)
        child = subprocess.Popen([sys.executable, "-c", CHILD, live_url, KEY, str(ann["user"]), at, CHILD_PATH],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        out, _ = child.communicate(timeout=120)
        assert child.returncode == -signal.SIGKILL and "ready" in out and "survived" not in out
        ledger = db.mongo[ERASURES_COLLECTION].find_one({"_id": ann["user"]})
        assert ledger["state"] == "started"  # the intent was written first
        counts = ledger["counts"]
        if at == "intent":  # killed before the cascade: nothing of it happened
            assert db.find_one("User", {"id": ann["user"]}) is not None
        else:
            assert db.find_one("User", {"id": ann["user"]}) is None
        report = db.erase_user(ann["user"])
        assert report["resumed"] and report["erased"] == counts == {
            "BirthChart": 1, "PlanetaryInsight": 1, "TimingRecommendation": 0, "User": 1}
        assert not any(s in readable_text(db) for s in strings("ann"))
        changes = db.mongo["astroChanges"]
        for doc_id in (ann["user"], ann["chart"], ann["insight"]):
            assert changes.count_documents({"documentId": doc_id, "action": "delete"}) == 1  # deleted once
        assert changes.count_documents({"action": "erase"}) == 1
        assert db.mongo[ERASURES_COLLECTION].find_one({"_id": ann["user"]})["state"] == "done"
        assert db.erase_user(ann["user"])["already"]
        assert db.find_one("PlanetaryInsight", {"id": bob["insight"]}).summary == PEOPLE["bob"]["summary"]
        assert all(s in readable_text(db) for s in strings("bob")[:2])


def test_who_may_export_and_bad_input_on_the_server(live_url: str) -> None:
    from bson import ObjectId

    from astro_db.errors import NotFoundError, PermissionDeniedError, ValidationError

    with Database(live_url, encryption_key=KEY) as db:
        ann, bob = both(db)
        mine = db.as_actor(str(ann["user"]), roles=["self"]).export_user(ann["user"])
        assert mine["models"]["BirthChart"]["documents"][0]["birthData"]["location"]["name"] == PEOPLE["ann"]["place"]
        before = raw_text(raw_documents(db))
        with pytest.raises(PermissionDeniedError):
            db.as_actor(str(ann["user"]), roles=["self"]).export_user(bob["user"])
        with pytest.raises(PermissionDeniedError):
            db.as_actor(str(ann["user"]), roles=["self"]).erase_user(ann["user"])
        with pytest.raises(ValidationError):
            db.erase_user("not-an-id")
        with pytest.raises(NotFoundError):
            db.erase_user(ObjectId())
        with pytest.raises(NotFoundError):
            db.export_user(ObjectId())
        assert raw_text(raw_documents(db)) == before  # nothing changed
        assert ERASURES_COLLECTION not in db.mongo.list_collection_names()


def test_what_export_and_erasure_send_to_the_server(live_url: str) -> None:
    """The costs docs/personal-data.md states: the export reads each model's documents with one
    streamed find (batches of 500) and its records with one distinct, one find of the packed
    records listing her and one find per 500 documents; the erasure's own work besides the
    cascade is one update of astroChanges per model, whatever the number of records, plus one
    find of the packed records per model and one update per packed record holding her images."""
    import datetime as dt

    from spies import CommandSpy

    spy = CommandSpy()
    with Database(live_url, encryption_key=KEY, event_listeners=[spy]) as db:
        ann, _ = both(db)
        day = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
        db.create_many("PlanetaryInsight", [{"userId": ann["user"], "date": day + dt.timedelta(days=d), "energyLevel": 5,
                                             "recommendations": ["x"], "summary": "s"} for d in range(PACK_FROM)])
        assert db.mongo[CHANGES_COLLECTION].count_documents({"coll": "planetaryInsights", "owners": ann["user"]}) == 1
        spy.commands.clear()
        spy.names.clear()
        db.export_user(ann["user"])
        on = [(n, c.get(n)) for n, c in zip(spy.names, spy.commands, strict=True)]
        assert on.count(("find", "planetaryInsights")) == 1 and ("getMore", None) not in [(n, None) for n, _ in on]
        assert on.count(("distinct", "astroChanges")) == 4  # one per model
        assert on.count(("find", "astroChanges")) == 4 + 3  # the packs listing her, per model; one per model with documents (<= 500 each)
        assert ("find", "auditLog") not in on  # the older log is read only where it exists
        spy.commands.clear()
        spy.names.clear()
        db.erase_user(ann["user"])
        updates = [c for n, c in zip(spy.names, spy.commands, strict=True) if n == "update" and c["update"] == "astroChanges"]
        assert len(updates) == 4 + 1  # the scrub: one per model, not one per record; one per pack holding her images
        finds = [c for n, c in zip(spy.names, spy.commands, strict=True) if n == "find" and c["find"] == "astroChanges"]
        assert sum("owners" in str(c["filter"]) for c in finds) == 4  # the packs, one find per model
