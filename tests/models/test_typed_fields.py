"""The models' fields are typed for mypy and pyright (tests/typing/models_*.py), at no cost at run time.

``models_typed.py`` (correct use: the built-in models and an app's own) must be clean under both
checkers; ``models_misuse.py``, with its ``# type: ignore`` comments stripped, must give exactly
the errors listed here, line by line, under each. The checkers run once per module, as
subprocesses from the repository root, so this checkout's ``astro_db`` is the one checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mongoengine
import pytest
from mongoengine import fields as me_fields

from astro_db.models import BirthChart, User
from astro_db.models.base import AstroDocument
from astro_db.models.embedded import AstroEmbeddedDocument, Position
from astro_db.models.fields import TextField

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
TYPED = TYPING / "models_typed.py"
MISUSE = TYPING / "models_misuse.py"
IGNORE = re.compile(r"  # type: ignore\[[\w,-]+\]")

# the misuse file's lines (found by their text) -> (mypy code, mypy message, pyright rule, pyright message)
EXPECTED = {
    "return user.emial": ("attr-defined", '"User" has no attribute "emial"; maybe "email"?',
                          "reportAttributeAccessIssue", 'Cannot access attribute "emial" for class "User"'),
    "chart: BirthChart = db.create(User": (
        "assignment", 'Incompatible types in assignment (expression has type "User", variable has type "BirthChart")',
        "reportAssignmentType", 'Type "User" is not assignable to declared type "BirthChart"'),
    "return insight.date": ("return-value", 'Incompatible return value type (got "datetime", expected "str")',
                            "reportReturnType", 'Type "datetime" is not assignable to return type "str"'),
    "return user.last_active": (
        "return-value", 'Incompatible return value type (got "datetime | None", expected "datetime")',
        "reportReturnType", 'Type "datetime | None" is not assignable to return type "datetime"'),
    'insight.energy_level = "high"': (
        "assignment", 'Incompatible types in assignment (expression has type "str", variable has type "float")',
        "reportAttributeAccessIssue", 'Cannot assign to attribute "energy_level" for class "PlanetaryInsight"'),
    "user.email = None": (
        "assignment", 'Incompatible types in assignment (expression has type "None", variable has type "str")',
        "reportAttributeAccessIssue", 'Cannot assign to attribute "email" for class "User"'),
    "chart.positions[0].degree.upper()": ("attr-defined", '"float" has no attribute "upper"',
                                          "reportAttributeAccessIssue",
                                          'Cannot access attribute "upper" for class "float"'),
    "chart.birth_data.location.name": ("union-attr", 'Item "None" of "Location | None" has no attribute "name"',
                                       "reportOptionalMemberAccess", '"name" is not a known attribute of "None"'),
    "print(note.txt)": ("attr-defined", '"Note" has no attribute "txt"; maybe "text"?',
                        "reportAttributeAccessIssue", 'Cannot access attribute "txt" for class "Note"'),
    "return note.text": ("return-value", 'Incompatible return value type (got "str", expected "int")',
                         "reportReturnType", 'Type "str" is not assignable to return type "int"'),
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _line_of(text: str) -> int:
    """The 1-based line of the misuse file holding ``text`` (exactly one must)."""
    found = [i for i, line in enumerate(MISUSE.read_text().splitlines(), 1) if text in line]
    assert len(found) == 1, f"{text!r} is on lines {found} of {MISUSE.name}"
    return found[0]


@pytest.fixture(scope="module")
def stripped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The misuse file without its ``# type: ignore`` comments, line numbers kept."""
    text = MISUSE.read_text()
    assert len(IGNORE.findall(text)) == len(EXPECTED)  # one comment per expected error, no more
    path = tmp_path_factory.mktemp("typing") / MISUSE.name
    path.write_text(IGNORE.sub("", text))
    return path


SERVICE_BLOCK = "service_md_block.py"


@pytest.fixture(scope="module")
def service_block(stripped: Path) -> Path:
    """docs/service.md's first python block (the typed style the page shows first), as a file."""
    text = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "from astro_db.models import" in code and "db.create(User," in code
    path = stripped.parent / SERVICE_BLOCK
    path.write_text(code)
    return path


@pytest.fixture(scope="module")
def mypy_errors(stripped: Path, service_block: Path) -> dict[str, list[tuple[int, str, str]]]:
    """mypy --strict (setup.cfg's settings) on the files: file name -> (line, code, message)."""
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "setup.cfg"),
                           "--no-error-summary", "--no-pretty", str(TYPED), str(stripped), str(service_block)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    found: dict[str, list[tuple[int, str, str]]] = {TYPED.name: [], stripped.name: [], SERVICE_BLOCK: []}
    for line in done.stdout.splitlines():
        match = re.match(r"^(.*?):(\d+): error: (.*?)  \[([\w-]+)\]$", line)
        if match:
            found[Path(match.group(1)).name].append((int(match.group(2)), match.group(4), match.group(3)))
        else:
            assert ": note: " in line, f"unexpected mypy output: {line}\n{done.stderr}"
    return found


@pytest.fixture(scope="module")
def pyright_errors(stripped: Path, service_block: Path) -> dict[str, list[tuple[int, str, str]]]:
    """pyright on the files: file name -> (line, rule, first line of the message)."""
    pytest.importorskip("pyright", reason="pyright is in the dev extra")
    done = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable,
                           str(TYPED), str(stripped), str(service_block)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout[done.stdout.index("{"):])
    found: dict[str, list[tuple[int, str, str]]] = {TYPED.name: [], stripped.name: [], SERVICE_BLOCK: []}
    for diag in report["generalDiagnostics"]:
        found[Path(diag["file"]).name].append(
            (diag["range"]["start"]["line"] + 1, diag.get("rule", diag["severity"]), diag["message"].splitlines()[0]))
    return found


def test_correct_use_is_clean_under_mypy_strict(mypy_errors):
    assert mypy_errors[TYPED.name] == []
    assert mypy_errors[SERVICE_BLOCK] == []  # the docs' typed example too


def test_correct_use_is_clean_under_pyright(pyright_errors):
    assert pyright_errors[TYPED.name] == []
    assert pyright_errors[SERVICE_BLOCK] == []


def test_each_mistake_is_the_expected_mypy_error(mypy_errors):
    expected = sorted((_line_of(text), code, message) for text, (code, message, _, _) in EXPECTED.items())
    assert sorted(mypy_errors[MISUSE.name]) == expected


def test_each_mistake_is_the_expected_pyright_error(pyright_errors):
    expected = sorted((_line_of(text), rule, message) for text, (_, _, rule, message) in EXPECTED.items())
    assert sorted(pyright_errors[MISUSE.name]) == expected


# --- run time: the typing adds nothing MongoEngine sees ---------------------------------------

def test_the_bases_are_mongoengines_at_run_time():
    from astro_db.models.fields import EmbeddedDocumentField, TypedField

    assert AstroDocument.__mro__[1] is mongoengine.Document
    assert AstroEmbeddedDocument.__mro__[1] is mongoengine.EmbeddedDocument
    assert EmbeddedDocumentField is me_fields.EmbeddedDocumentField
    assert "__get__" not in vars(TypedField) and "__set__" not in vars(TypedField)


def test_fields_read_and_write_through_mongoengines_descriptors():
    assert isinstance(User.email, TextField) and User.email.required
    user = User(email=" Ann@Example.com ", name="Ann")
    assert user.email == "ann@example.com" and user.status == "active" and user.version == 0
    chart = BirthChart(positions=[{"body": "sun", "sign": "leo", "degree": 3.5}])
    assert isinstance(chart.positions[0], Position) and chart.positions[0].body == "Sun"
    assert TextField[str] is not TextField  # subscriptable at run time, as the annotations use it


def test_an_editable_install_puts_the_checkout_on_sys_path_with_a_plain_pth_file(tmp_path):
    """Not setuptools' import hook, which mypy and pyright cannot follow: after ``pip install
    -e .`` a checker run outside the checkout finds ``astro_db`` (setup.cfg's ``package_dir``)."""
    from setuptools.dist import Distribution

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        dist = Distribution({"script_name": "setup.py"})
        dist.parse_config_files([str(ROOT / "setup.cfg")])
        command = dist.get_command_obj("editable_wheel")
        command.ensure_finalized()
        strategy = command._select_strategy("astro_db", "py3-none-any", str(tmp_path))
    finally:
        os.chdir(cwd)
    assert type(strategy).__name__ == "_StaticPth"
    assert [Path(ROOT, p).resolve() for p in strategy.path_entries] == [ROOT]
