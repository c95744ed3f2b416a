"""The table pass of ``tests/mutation/run.py``: one mutant per table element and per integer
limit, each a whole module that still compiles, and nothing else mutated."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MUTATION_DIR = Path(__file__).resolve().parents[1] / "mutation"
SOURCE = '''
"""A guard."""
from collections.abc import Callable, Sequence
from typing import Any
__all__ = ["LIMIT"]
LIMIT = 12
_NAME = "not a table"
_FORBIDDEN = {"$where", "$expr"}
_ORDER = ("a",)
_PAIRS = {("Model", "path")}
TABLE: dict = {"reader": frozenset({"read"}), "admin": {"read", "write"}}
Forms = Callable[[int, Sequence[Any]], list[Any]]
def f():
    local = {"$inside"}
    return 3
'''


def load_tables():
    spec = importlib.util.spec_from_file_location("mutation_tables", MUTATION_DIR / "tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_tables", module)
    spec.loader.exec_module(module)
    return module


def namespace(source: str) -> dict:
    scope: dict = {}
    exec(compile(source, "mutant", "exec"), scope)
    return scope


def test_each_table_element_and_limit_gives_one_compiling_mutant(tmp_path):
    path = tmp_path / "guard.py"
    path.write_text(SOURCE)
    mutants = load_tables().table_mutants(path)
    assert [(m.name, m.description) for m in mutants] == [
        ("LIMIT", "12 x1000"),
        ("_FORBIDDEN", "drop '$where' from {'$where', '$expr'}"),
        ("_FORBIDDEN", "drop '$expr' from {'$where', '$expr'}"),
        ("_ORDER", "drop 'a' from ('a',)"),
        ("_PAIRS", "drop ('Model', 'path') from {('Model', 'path')}"),
        ("TABLE", "drop 'reader': from {'reader': frozenset({'read'}), 'admin': {'re..."),
        ("TABLE", "drop 'admin': from {'reader': frozenset({'read'}), 'admin': {'re..."),
        ("TABLE", "drop 'read' from {'read', 'write'}"),
        ("TABLE", "drop 'write' from {'read', 'write'}"),
        ("TABLE", "drop 'read' from {'read'}"),
    ]
    scopes = [namespace(m.source) for m in mutants]
    assert scopes[0]["LIMIT"] == 12_000
    assert scopes[1]["_FORBIDDEN"] == {"$expr"}
    assert scopes[3]["_ORDER"] == ()
    assert scopes[4]["_PAIRS"] == set() and isinstance(scopes[4]["_PAIRS"], set)
    assert scopes[8]["TABLE"] == {"reader": frozenset({"read"}), "admin": {"read"}}
    assert scopes[9]["TABLE"]["reader"] == frozenset()
    # a type alias's parameters are not a table (``Forms`` gives no mutant above)
    assert all(scope["Forms"] == Callable[[int, Sequence[Any]], list[Any]] for scope in scopes)
    for scope in scopes:  # functions and the export list are left to mutmut
        assert scope["f"]() == 3 and scope["__all__"] == ["LIMIT"] and scope["_NAME"] == "not a table"
