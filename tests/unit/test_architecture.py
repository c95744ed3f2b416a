"""The architecture holds as docs/ARCHITECTURE.md says: one module map, no import cycles, no
reaching into ``Database``'s private attributes from outside, one module importing mongomock-ng."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "astro_db"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of astro_db that ``module`` imports (at any level, TYPE_CHECKING blocks excluded)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    found.add(target)
                elif base in modules:
                    found.add(base)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names if a.name in modules)

    Visitor().visit(ast.parse(path.read_text()))
    found.discard(module)
    return found


def test_there_are_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, stack + [nxt], done)
        done.add(node)

    done: set[str] = set()
    for module in modules:
        if module not in done:
            visit(module, [module], done)
    assert cycles == []


@pytest.mark.xfail(strict=True, reason="in progress: writes.py and connection.py still import mongomock-ng")
def test_only_the_embedded_backend_imports_mongomock():
    importers = [
        name for name, path in _modules().items()
        if re.search(r"^\s*(import mongomock_ng|from mongomock_ng)", path.read_text(), re.M)
    ]
    assert importers == ["astro_db.backends.embedded"]


def test_nothing_outside_the_service_reaches_into_database_private_attributes():
    private = re.compile(r"\b(?!self\b)\w+\._(executor|actor|op|check|trusted|rt|run|coll|emit|model|guard|scope)\b")
    allowed = {"astro_db.database", "astro_db.tooling"}
    offenders = [
        f"{name}: {match.group(0)}"
        for name, path in _modules().items() if name not in allowed
        for match in private.finditer(path.read_text())
    ]
    offenders += [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in sorted((ROOT / "tests").rglob("*.py")) if path.name != "test_architecture.py"
        for match in private.finditer(path.read_text())
    ]
    assert offenders == []


@pytest.mark.xfail(strict=True, reason="in progress: the module map is written once the packages settle")
def test_the_module_map_lists_every_module():
    text = DOC.read_text()
    listed = set(re.findall(r"^- `(astro_db/[\w/]+\.py)`", text, re.M))
    actual = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")}
    assert sorted(actual - listed) == [], "modules missing from docs/ARCHITECTURE.md's module map"
    assert sorted(listed - actual) == [], "docs/ARCHITECTURE.md lists modules that do not exist"
