"""mongomock-ng is a test double: it installs with the ``embedded`` extra, not with astro_db.

Broken on purpose here: mongomock-ng made unimportable (``None`` in ``sys.modules``, what Python
does for a package that is not installed). Must hold: astro_db imports and talks to a server
without it; choosing the embedded backend (no URL, ``mongomock://``) is a ``ConfigError`` that
names the extra, raised when the ``Database`` is made, before anything else happens.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from astro_db import Database
from astro_db.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def without_mongomock(monkeypatch):
    for name in [n for n in sys.modules if n == "mongomock_ng" or n.startswith("mongomock_ng.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mongomock_ng", None)
    monkeypatch.setitem(sys.modules, "mongomock_ng.store", None)
    monkeypatch.delenv("MONGODB_URL", raising=False)


@pytest.mark.parametrize("config", [None, "mongomock://localhost/astro", {"url": None}])
def test_choosing_the_embedded_backend_without_the_extra_is_a_config_error_naming_it(without_mongomock, config):
    with pytest.raises(ConfigError, match=r"pip install 'astro_db\[embedded\]'") as caught:
        Database(config)
    assert caught.value.key == "url" and "mongomock-ng" in str(caught.value)


def test_a_server_url_needs_no_mongomock(without_mongomock):
    db = Database("mongodb://localhost:27017/astro", ensure_indexes=False)
    assert not db.config.is_embedded


def test_astro_db_imports_without_mongomock():
    code = ("import sys; sys.modules['mongomock_ng'] = None\n"
            "import astro_db, astro_db.cli, astro_db.testing, astro_db.backends.embedded\n"
            "from astro_db import Database\n"
            "try:\n    Database()\nexcept astro_db.errors.ConfigError as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "[embedded]" in done.stdout


def test_the_embedded_extra_holds_mongomock_and_install_requires_does_not():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requires = cfg["options"]["install_requires"]
    extras = cfg["options.extras_require"]
    assert "mongomock" not in requires
    assert "mongomock-ng" in extras["embedded"]
    assert "mongomock-ng" in extras["test"]  # the suite runs on the embedded backend
