"""A real Node process reads and writes encrypted fields with the official driver's ClientEncryption.

The Node side is docs/security.md's recipe (the ```js block that starts ``// astro_csfle.js``,
extracted from the page as it is) driven by tests/node/roundtrip.js, with npm ``mongodb`` and
``mongodb-client-encryption`` installed by tests/node/install.py. On the other side: astro_db itself
(a model with randomly encrypted fields: Node opens what a create sealed, astro_db reads what Node
sealed, and after ``erase_user`` a copy of the user's document opens in Node no more), and PyMongo's
own ``ClientEncryption`` in astro_db's format (data keys in a key vault collection, the local KMS
provider ``local:<key id>`` or a plain ``local``, one data key per user, alt name ``user:<id>``,
each value ``{"v": <value>, "b": "<collection>/<_id>/<path>"}`` sealed with
``AEAD_AES_256_CBC_HMAC_SHA_512-Random``, BSON Binary subtype 6), which also
covers list values, a moved value and a wrong key. Everything runs on the live tier's server.

Skipped only when ``node`` or ``npm`` is missing, unless ``ASTRO_DB_REQUIRE_NODE=1`` (.ci/run):
then that is a failure, like a failed install always is.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import Binary, ObjectId, json_util
from bson.binary import UUID_SUBTYPE, UuidRepresentation
from bson.codec_options import CodecOptions
from bson.json_util import JSONOptions

from astro_db import Database
from astro_db.models import AstroDocument
from astro_db.models.fields import TextField, UserRefField, UTCDateTimeField
from astro_db.security.crypto import key_id, new_key
from astro_db.security.vault import derive_local_master_key
from node.install import NodeInstallError, missing_tools
from node.install import node_modules as install_node_modules

pytestmark = pytest.mark.live

HERE = Path(__file__).resolve().parent
SECURITY_PAGE = HERE.parent.parent / "docs" / "security.md"
REQUIRE_ENV = "ASTRO_DB_REQUIRE_NODE"
ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA_512-Random"
NODE_TIMEOUT = 120  # seconds; a run takes about one
UTC = dt.timezone.utc
JSON = JSONOptions(tz_aware=True, tzinfo=UTC)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    if missing := missing_tools():
        message = f"needs {' and '.join(missing)} (apt-get install nodejs npm; .ci/run installs them)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        return install_node_modules()
    except NodeInstallError as exc:
        pytest.fail(f"the Node packages did not install: {exc}")


@pytest.fixture(scope="session")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/security.md's ``astro_csfle.js``, written to a file as a reader would save it."""
    blocks = re.findall(r"^```js\n(.*?)^```", SECURITY_PAGE.read_text(encoding="utf-8"), re.S | re.M)
    module = [b for b in blocks if b.startswith("// astro_csfle.js")]
    assert len(module) == 1, "docs/security.md must hold exactly one ```js block starting // astro_csfle.js"
    path = tmp_path_factory.mktemp("recipe") / "astro_csfle.js"
    path.write_text(module[0], encoding="utf-8")
    return path


class Vault:
    """PyMongo's ClientEncryption on the test's database, with astro_db's key and value format."""

    def __init__(self, url: str, named: bool) -> None:
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        self.db = self.client.get_default_database()
        self.namespace = f"{self.db.name}.__keyVault"
        self.key = os.urandom(32)
        # astro_db's provider is local:<key id> (the recipe's default); a 96-byte key given as is: local
        self.named = named
        self.provider = f"local:{key_id(self.key)}" if named else "local"
        from pymongo.encryption import ClientEncryption

        self.encryption = ClientEncryption(
            {self.provider: {"key": derive_local_master_key(self.key)}}, self.namespace, self.client,
            CodecOptions(tz_aware=True, uuid_representation=UuidRepresentation.STANDARD),
        )

    @property
    def key_b64(self) -> str:
        return base64.b64encode(self.key).decode()

    def user_key(self, user_id: ObjectId) -> Binary:
        return self.encryption.create_data_key(self.provider, key_alt_names=[f"user:{user_id}"])

    def seal(self, value: Any, collection: str, doc_id: ObjectId, path: str, user_id: ObjectId) -> Binary:
        return self.encryption.encrypt({"v": value, "b": f"{collection}/{doc_id}/{path}"}, ALGORITHM,
                                       key_alt_name=f"user:{user_id}")

    def open(self, sealed: Any) -> Any:
        assert isinstance(sealed, Binary) and sealed.subtype == 6, sealed
        return self.encryption.decrypt(sealed)

    def close(self) -> None:
        self.encryption.close()
        self.client.close()


def run_node(node_modules: Path, recipe: Path, vault: Vault, url: str, *args: str,
             key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODE_PATH": str(node_modules), "ASTRO_DB_ENCRYPTION_KEY": key or vault.key_b64}
    provider = [] if vault.named else ["--provider", vault.provider]  # named: the recipe derives it
    return subprocess.run(
        ["node", str(HERE / "roundtrip.js"), "--recipe", str(recipe), "--uri", url,
         "--key-vault", vault.namespace, *provider, *args],
        capture_output=True, text=True, env=env, timeout=NODE_TIMEOUT,
    )


def ejson(value: Any) -> str:
    return json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS)


@pytest.fixture(params=[True, False], ids=["local:<key id>", "local"])
def vault(request: pytest.FixtureRequest, live_url: str) -> Any:
    v = Vault(live_url, request.param)
    yield v
    v.close()


def test_node_opens_what_pymongo_sealed_and_pymongo_opens_what_node_sealed(node_modules, recipe, vault, live_url):
    ada, other = ObjectId(), ObjectId()
    ada_key = vault.user_key(ada)
    vault.user_key(other)
    chart = ObjectId()
    born = dt.datetime(1815, 12, 10, 7, 30, tzinfo=UTC)

    def sealed(value: Any, path: str) -> Binary:
        return vault.seal(value, "birthCharts", chart, path, ada)

    vault.db.birthCharts.insert_one({
        "_id": chart, "userId": ada,
        "birthData": {"date": sealed(born, "birthData.date"), "time": sealed("07:30", "birthData.time"),
                      "location": {"name": sealed("Zürich ☉", "birthData.location.name"),
                                   "coordinates": [8.54, 47.37]}},
        "positions": [{"body": sealed("Sun", "positions.body"), "sign": "Sagittarius"},
                      {"body": sealed("Moon", "positions.body"), "sign": "Virgo"}],
    })
    day = dt.datetime(2026, 12, 6, tzinfo=UTC)
    insight = {"userId": ada, "date": day, "summary": "Ein ruhiger Tag für Ada", "recommendations": ["walk", "rest"]}

    done = run_node(node_modules, recipe, vault, live_url,
                    "--read", "birthCharts", "--id", ejson(chart),
                    "--fields", "birthData.date,birthData.time,birthData.location.name,positions.body",
                    "--owner", "userId",  # sealed under Ada's key, and the chart names Ada: it opens
                    "--write", "planetaryInsights", "--document", ejson(insight),
                    "--seal", "summary,recommendations", "--user", str(ada))
    assert done.returncode == 0, done.stderr

    # Node read and opened what PyMongo sealed, everything else as stored
    out = json_util.loads(done.stdout, json_options=JSON)
    read = out["read"]
    assert read["_id"] == chart and read["userId"] == ada
    assert read["birthData"] == {"date": born, "time": "07:30",
                                 "location": {"name": "Zürich ☉", "coordinates": [8.54, 47.37]}}
    assert read["positions"] == [{"body": "Sun", "sign": "Sagittarius"}, {"body": "Moon", "sign": "Virgo"}]

    # PyMongo reads what Node wrote: personal fields sealed under Ada's key, bound to their place
    written = out["written"]
    stored = vault.db.planetaryInsights.find_one({"_id": written})
    assert stored is not None and stored["userId"] == ada and stored["date"] == day.replace(tzinfo=None)
    assert vault.open(stored["summary"]) == {"v": "Ein ruhiger Tag für Ada", "b": f"planetaryInsights/{written}/summary"}
    assert [vault.open(v) for v in stored["recommendations"]] == [
        {"v": "walk", "b": f"planetaryInsights/{written}/recommendations"},
        {"v": "rest", "b": f"planetaryInsights/{written}/recommendations"},
    ]
    assert ada_key.subtype == UUID_SUBTYPE
    for value in (stored["summary"], *stored["recommendations"]):
        assert bytes(value[1:17]) == bytes(ada_key)  # the ciphertext names its data key: Ada's, not the other user's


@pytest.mark.parametrize("doc_id", ["1", "6650a1b2c3d4e5f601234567", "naïve ☉ id"],
                         ids=["number-like", "ObjectId-like", "plain"])
def test_node_binds_a_string_id_as_astro_db_does(node_modules, recipe, vault, live_url, doc_id):
    """The recipe's ``binding`` writes a string ``_id`` one-to-one as ``vault.id_text`` does: in
    quotes when it could be read as another type's (docs/security.md). Node opens what astro_db's
    binding sealed for such a document, and what Node seals for one opens under astro_db's."""
    from astro_db.security.vault import binding

    ada = ObjectId()
    vault.user_key(ada)
    place = binding("birthCharts", doc_id, "birthData.time")
    sealed = vault.encryption.encrypt({"v": "07:30", "b": place}, ALGORITHM, key_alt_name=f"user:{ada}")
    vault.db.birthCharts.insert_one({"_id": doc_id, "userId": ada, "birthData": {"time": sealed}})
    written_id = f"{doc_id}-w" if doc_id[0].isdigit() else doc_id + "w"
    done = run_node(node_modules, recipe, vault, live_url,
                    "--read", "birthCharts", "--id", ejson(doc_id), "--fields", "birthData.time",
                    "--write", "planetaryInsights", "--document", ejson({"_id": written_id, "summary": "x"}),
                    "--seal", "summary", "--user", str(ada))
    assert done.returncode == 0, done.stderr
    out = json_util.loads(done.stdout, json_options=JSON)
    assert out["read"]["birthData"] == {"time": "07:30"}
    stored = vault.db.planetaryInsights.find_one({"_id": written_id})
    assert vault.open(stored["summary"]) == {"v": "x", "b": binding("planetaryInsights", written_id, "summary")}


def test_node_refuses_a_value_under_another_owners_key_than_its_document_names(node_modules, recipe, vault, live_url):
    """docs/security.md: a value opens only for the owner it was sealed for. A chart whose owner
    field was changed outside the service (to Bo) while its values are under Ada's key: the
    recipe's reader, given the owner the document names, refuses it, as astro_db reads it
    ``UNREADABLE``."""
    ada, bo, chart = ObjectId(), ObjectId(), ObjectId()
    vault.user_key(ada)
    vault.user_key(bo)
    sealed = vault.seal("07:30", "birthCharts", chart, "birthData.time", ada)
    vault.db.birthCharts.insert_one({"_id": chart, "userId": bo, "birthData": {"time": sealed}})
    done = run_node(node_modules, recipe, vault, live_url, "--read", "birthCharts", "--id", ejson(chart),
                    "--fields", "birthData.time", "--owner", "userId")
    assert done.returncode == 2 and done.stdout == ""
    assert f"the value at birthCharts/{chart}/birthData.time is sealed under another owner's data key" in done.stderr


def test_node_refuses_a_value_moved_from_its_place_and_writes_nothing(node_modules, recipe, vault, live_url):
    ada, chart = ObjectId(), ObjectId()
    vault.user_key(ada)
    time_value = vault.seal("07:30", "birthCharts", chart, "birthData.time", ada)
    vault.db.birthCharts.insert_one({"_id": chart, "birthData": {"location": {"name": time_value}}})

    done = run_node(node_modules, recipe, vault, live_url,
                    "--read", "birthCharts", "--id", ejson(chart), "--fields", "birthData.location.name",
                    "--write", "planetaryInsights", "--document", ejson({"summary": "x"}),
                    "--seal", "summary", "--user", str(ada))

    assert done.returncode == 2 and done.stdout == ""
    assert (f"the value at birthCharts/{chart}/birthData.location.name was sealed for "
            f"birthCharts/{chart}/birthData.time") in done.stderr
    assert vault.db.planetaryInsights.count_documents({}) == 0


@pytest.mark.parametrize("loss", ["another encryption key", "the user's data key deleted"])
def test_node_opens_nothing_without_the_key(node_modules, recipe, vault, live_url, loss):
    ada, chart = ObjectId(), ObjectId()
    ada_key = vault.user_key(ada)
    vault.db.birthCharts.insert_one(
        {"_id": chart, "birthData": {"time": vault.seal("07:30", "birthCharts", chart, "birthData.time", ada)}})
    key = None
    if loss == "another encryption key":
        key = base64.b64encode(os.urandom(32)).decode()
    else:  # an erasure's crypto-shredding: every copy of the value becomes unreadable
        vault.encryption.delete_key(ada_key)

    done = run_node(node_modules, recipe, vault, live_url, "--read", "birthCharts", "--id", ejson(chart),
                    "--fields", "birthData.time", key=key)

    assert done.returncode == 2 and done.stdout == "" and "07:30" not in done.stderr


# --- astro_db itself on the other side ------------------------------------------------------------

class Diary(AstroDocument):
    """A user's document with randomly encrypted fields (CSFLE values, not enc:e2 envelopes)."""

    user_id = UserRefField(db_field="userId", required=True)
    label = TextField(required=True)
    text = TextField(sensitive=True)
    when = UTCDateTimeField(sensitive=True)

    meta = {"collection": "diaries", "owner": "user_id"}


def test_node_reads_what_astro_db_wrote_and_astro_db_reads_what_node_wrote(node_modules, recipe, live_url):
    key = new_key()
    dbname = pymongo.uri_parser.parse_uri(live_url)["database"]
    db = Database(live_url, models=[Diary], encryption_key=key, server_selection_timeout_ms=5000,
                  key_vault_namespace=f"{dbname}.__keyVault").connect()
    try:
        ada = db.create("User", {"email": f"ada{ObjectId()}@example.com", "name": "Ada"})
        born = dt.datetime(1815, 12, 10, 7, 30, tzinfo=UTC)
        entry = db.create(Diary, {"userId": str(ada.id), "label": "first", "text": "Zürich, früh ☉", "when": born})
        env = {**os.environ, "NODE_PATH": str(node_modules), "ASTRO_DB_ENCRYPTION_KEY": key}
        written_id = ObjectId()
        node = ["node", str(HERE / "roundtrip.js"), "--recipe", str(recipe), "--uri", live_url,
                "--key-vault", db.config.key_vault_namespace]  # provider: the recipe's local:<key id>
        done = subprocess.run(
            [*node, "--read", "diaries", "--id", ejson(entry.id), "--fields", "text,when",
             "--write", "diaries", "--document", ejson({"_id": written_id, "userId": ada.id, "label": "from node",
                                                        "text": "Antwort aus Node", "when": born}),
             "--seal", "text,when", "--user", str(ada.id)],
            capture_output=True, text=True, env=env, timeout=NODE_TIMEOUT)
        assert done.returncode == 0, done.stderr
        read = json_util.loads(done.stdout, json_options=JSON)["read"]
        assert (read["text"], read["when"], read["label"]) == ("Zürich, früh ☉", born, "first")

        raw = db.mongo["diaries"].find_one({"_id": written_id})
        assert raw is not None and raw["text"].subtype == 6 and raw["when"].subtype == 6
        back = db.find_one(Diary, {"id": written_id})
        assert back is not None and (back.text, back.when, back.label) == ("Antwort aus Node", born, "from node")

        # erasure shreds Ada's data key: a copy of her document (a backup) opens nowhere, Node included
        copy = db.mongo["diaries"].find_one({"_id": entry.id})
        db.erase_user(ada.id)
        db.mongo["diaries"].insert_one(copy)
        after = subprocess.run([*node, "--read", "diaries", "--id", ejson(entry.id), "--fields", "text"],
                               capture_output=True, text=True, env=env, timeout=NODE_TIMEOUT)
        assert after.returncode == 2 and after.stdout == "" and "Zürich" not in after.stderr
    finally:
        db.disconnect()
