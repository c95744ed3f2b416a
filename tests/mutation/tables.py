"""Mutants of a module's tables: the whitelists, forbidden sets, limits and permission tables.

mutmut mutates the code inside functions; a module-level table (``_FORBIDDEN = {...}``,
``MAX_IN_VALUES = 10_000``, ``PERMISSIONS = {...}``) is data it never touches, yet it is where
most of a guard's policy lives. ``table_mutants`` reads a module's source and, for every
module-level assignment, makes one mutant per element of each set, list, tuple or dict literal in
its value (that element removed) and one per integer constant (multiplied by 1000). A mutant is
the whole module re-written from its syntax tree, so it is applied by writing a file, before
anything imports it: tables used only at import time (``_EVERYTHING`` building ``PERMISSIONS``)
are mutated as truly as the rest.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TableMutant", "table_mutants"]

_SKIPPED_NAMES = {"__all__"}  # the export list is not policy


@dataclass(frozen=True)
class TableMutant:
    """One change to one table: ``name`` (the module-level variable), what changed, and the
    whole mutated source of the module."""

    name: str
    description: str
    source: str


def table_mutants(path: Path) -> list[TableMutant]:
    """Every table mutant of the module at ``path``, in source order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mutants: list[TableMutant] = []
    for index, statement in enumerate(tree.body):
        name = _assigned_name(statement)
        if name is None or name in _SKIPPED_NAMES:
            continue
        for position, node in enumerate(_table_nodes(statement)):
            for description, change in _changes(node):
                mutated = copy.deepcopy(tree)
                target = list(_table_nodes(mutated.body[index]))[position]
                change(target, mutated.body[index])
                mutants.append(TableMutant(name, description, ast.unparse(ast.fix_missing_locations(mutated))))
    return mutants


def _assigned_name(statement: ast.stmt) -> str | None:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
        return statement.targets[0].id
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and statement.value is not None:
        return statement.target.id
    return None


def _table_nodes(statement: ast.stmt) -> list[ast.AST]:
    """The containers and integer limits inside an assignment's value, in walk order.

    A tuple inside another container is a record (a pair), not a table: it is left whole. A
    container inside a subscript (``Callable[[Sensitive, Sequence[Any]], list[Any]]``) holds the
    parameters of a type, not policy: it is left alone too.
    """
    value = statement.value  # type: ignore[attr-defined]
    records = {
        id(element)
        for node in ast.walk(value)
        if isinstance(node, (ast.Set, ast.List, ast.Tuple))
        for element in node.elts
        if isinstance(element, ast.Tuple)
    }
    types = {id(inner) for node in ast.walk(value) if isinstance(node, ast.Subscript) for inner in ast.walk(node.slice)}
    found: list[ast.AST] = []
    for node in ast.walk(value):
        if isinstance(node, (ast.Set, ast.List, ast.Tuple, ast.Dict)) and id(node) not in records | types:
            found.append(node)
        elif node is value and _is_int(node):
            found.append(node)
    return found


def _is_int(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _changes(node: ast.AST) -> list[tuple[str, object]]:
    """(description, change) pairs; a change edits the node (or its statement) in place."""
    if _is_int(node):
        value = node.value  # type: ignore[attr-defined]

        def times_1000(target: ast.Constant, statement: ast.stmt) -> None:
            target.value = target.value * 1000

        return [(f"{value} x1000", times_1000)]
    where = _short(ast.unparse(node))
    if isinstance(node, ast.Dict):
        return [(f"drop {_short(ast.unparse(key))}: from {where}", _drop_entry(i)) for i, key in enumerate(node.keys) if key is not None]
    elements = node.elts  # type: ignore[attr-defined]
    return [(f"drop {_short(ast.unparse(element))} from {where}", _drop_element(i)) for i, element in enumerate(elements)]


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _drop_entry(i: int):  # type: ignore[no-untyped-def]
    def change(target: ast.Dict, statement: ast.stmt) -> None:
        del target.keys[i]
        del target.values[i]

    return change


def _drop_element(i: int):  # type: ignore[no-untyped-def]
    def change(target: ast.AST, statement: ast.stmt) -> None:
        del target.elts[i]  # type: ignore[attr-defined]
        if isinstance(target, ast.Set) and not target.elts:
            _replace(statement, target, ast.Call(ast.Name("set", ast.Load()), [], []))

    return change


def _replace(statement: ast.stmt, old: ast.AST, new: ast.AST) -> None:
    """Put ``new`` where ``old`` is in ``statement`` (an empty ``{}`` would be a dict, not a set)."""
    for parent in ast.walk(statement):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
            elif isinstance(value, list):
                for k, item in enumerate(value):
                    if item is old:
                        value[k] = new
