"""Mutation testing of the modules that guard data: which changes to them no test notices.

    python tests/mutation/run.py [module ...] [--no-mutmut] [--no-tables] [--jobs N]

``module`` is any of query, access, updates, masking, crypto, regex, authorize, operation, urls,
provenance, sealed, blind, walker, pipeline (default: all). Two passes:

1. mutmut (configured in setup.cfg ``[mutmut]``) mutates the code inside the module's functions
   and runs, for each mutant, those of the guarding test files listed there (unit and service
   tiers, embedded backend, not the live tier) that execute the mutated function.
2. The table pass (``tables.py``) mutates what mutmut leaves alone, the module-level whitelists,
   forbidden sets, limits and permission tables: each element removed, each integer limit x1000,
   and runs the module's guarding tests (``GUARDING_TESTS``) on a copy of the package.

Both run under ``nice -n 10``. The script prints each module's score (killed / mutants, where a
timeout counts as killed and "no tests" as a survivor), lists every survivor, writes the figures
to ``mutants/scores.json`` and exits 1 when a module is under ``--fail-under`` (default 90).
Show a mutmut survivor's diff with ``mutmut show <name>``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import table_mutants  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODULES = {
    "query": "astro_db/query/filters.py",
    "access": "astro_db/security/access.py",
    "updates": "astro_db/query/updates.py",
    "masking": "astro_db/security/masking.py",
    "crypto": "astro_db/security/crypto.py",
    "regex": "astro_db/query/regex.py",
    "authorize": "astro_db/ops/steps/authorize.py",
    "operation": "astro_db/ops/operation.py",
    "urls": "astro_db/urls.py",
    "provenance": "astro_db/security/provenance.py",
    "sealed": "astro_db/security/filters.py",
    "blind": "astro_db/security/blind.py",
    "walker": "astro_db/query/walker.py",
    "pipeline": "astro_db/query/pipeline.py",
}
# the tests that guard each module's tables (the table pass runs these, stopping at a failure)
GUARDING_TESTS = {  # the fast, pure specifications first: -x stops at the first failure
    "query": ["tests/unit/test_query_policy.py", "tests/unit/test_update_policy.py", "tests/unit/test_injection.py",
              "tests/unit/test_compile_plans.py", "tests/service/test_reliability_bad_inputs.py"],
    "access": ["tests/unit/test_access_policy.py", "tests/unit/test_access.py", "tests/unit/test_permissions.py"],
    "updates": ["tests/unit/test_update_policy.py", "tests/unit/test_update_compile.py", "tests/unit/test_injection.py",
                "tests/unit/test_compile_plans.py"],
    "masking": ["tests/unit/test_masking_policy.py", "tests/unit/test_masking.py"],
    "crypto": ["tests/unit/test_crypto_envelope.py", "tests/unit/test_crypto_fields.py", "tests/unit/test_crypto_attacks.py",
               "tests/unit/test_crypto.py", "tests/unit/test_crypto_provenance.py", "tests/unit/test_blind_index.py"],
    "regex": ["tests/unit/test_regex_policy.py", "tests/unit/test_query_policy.py", "tests/unit/test_injection.py"],
    "authorize": ["tests/unit/test_permissions.py", "tests/unit/test_access.py"],
    "operation": ["tests/unit/test_permissions.py"],
    "urls": ["tests/unit/test_url_masking.py"],
    "provenance": ["tests/unit/test_crypto_provenance.py", "tests/unit/test_crypto.py"],
    "sealed": ["tests/unit/test_crypto_fields.py", "tests/unit/test_crypto.py", "tests/unit/test_blind_index.py",
               "tests/unit/test_walker.py"],
    "blind": ["tests/unit/test_blind_index.py", "tests/unit/test_crypto_fields.py"],
    "walker": ["tests/unit/test_walker.py", "tests/unit/test_injection.py", "tests/unit/test_access_policy.py",
               "tests/unit/test_access.py", "tests/unit/test_query_policy.py"],
    "pipeline": ["tests/unit/test_walker.py", "tests/unit/test_injection.py", "tests/unit/test_query_policy.py",
                 "tests/unit/test_compile_plans.py"],
}
PYTEST_ARGS = ["-x", "-q", "-m", "not live", "-p", "no:cacheprovider", "-p", "no:randomly"]
KILLED = {1: "killed", 3: "killed", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          -11: "segfault", -9: "segfault", 37: "type check"}
SURVIVED = {0: "survived", 5: "no tests", 33: "no tests", 35: "suspicious"}
NICE = ["nice", "-n", "10"]


@dataclass
class Score:
    """Killed and surviving mutants of one module, one pass."""

    killed: int = 0
    survivors: list[str] = field(default_factory=list)
    unchecked: int = 0
    to_recheck: list[str] = field(default_factory=list)  # mutmut names of survivors and unchecked

    @property
    def total(self) -> int:
        return self.killed + len(self.survivors)

    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="module", help=", ".join(MODULES))
    parser.add_argument("--no-mutmut", action="store_true", help="skip the mutmut pass (report its last results)")
    parser.add_argument("--no-tables", action="store_true", help="skip the table pass")
    parser.add_argument("--survivors", action="store_true",
                        help="mutmut re-checks only the last run's survivors and unchecked mutants")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--fail-under", type=float, default=90.0, help="exit 1 below this %% killed (default 90)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    modules = args.modules or list(MODULES)
    os.chdir(ROOT)
    if not args.no_mutmut:
        names = [n for m in modules for n in mutmut_score(MODULES[m]).to_recheck] if args.survivors else None
        if names != []:
            run_mutmut(modules, args.jobs, names)
    results: dict[str, dict[str, Score]] = {}
    for module in modules:
        results[module] = {"mutmut": mutmut_score(MODULES[module])}
        if not args.no_tables:
            results[module]["tables"] = table_score(module, args.jobs)
    return report(results, args.fail_under)


# --- pass 1: mutmut ----------------------------------------------------------------------------


def run_mutmut(modules: list[str], jobs: int, names: list[str] | None = None) -> None:
    names = names or [_dotted(MODULES[m]) + ".*" for m in modules]
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or "mutmut"
    command = [*NICE, mutmut, "run", "--max-children", str(jobs), *names]
    print("$", " ".join(command), flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise SystemExit("mutmut failed (see above); its verdicts would be incomplete")


def mutmut_score(path: str) -> Score:
    """The module's mutmut verdicts, read from mutmut's record of its last run."""
    meta = ROOT / "mutants" / (path + ".meta")
    score = Score()
    if not meta.exists():
        return score
    for name, code in json.loads(meta.read_text()).get("exit_code_by_key", {}).items():
        if code in KILLED:
            score.killed += 1
        elif code in SURVIVED:
            score.survivors.append(f"{name} ({SURVIVED[code]})")
            score.to_recheck.append(name)
        else:
            score.unchecked += 1
            score.to_recheck.append(name)
    return score


def _dotted(path: str) -> str:
    return path[: -len(".py")].replace("/", ".")


# --- pass 2: tables ----------------------------------------------------------------------------


def table_score(module: str, jobs: int) -> Score:
    """Apply each table mutant to its own copy of the package and run the module's guarding
    tests there, ``jobs`` at a time, each in a process forked from this one."""
    path = MODULES[module]
    mutants = table_mutants(ROOT / path)
    tests = [t for t in GUARDING_TESTS[module] if (ROOT / t).exists()]
    score = Score()
    if not mutants:
        return score
    _preload()
    with tempfile.TemporaryDirectory(prefix="astro_db_tables_") as tmp:
        clean = _package_copy(Path(tmp) / "clean")
        if _wait(_fork(clean, _imports_the_copy)) != 0:
            raise SystemExit(f"the table pass would not test the copy in {clean}")
        if _wait(_fork(clean, _pytest, tests)) != 0:
            raise SystemExit(f"the guarding tests fail on the unmutated copy: {' '.join(tests)}")
        print(f"table pass on {path}: {len(mutants)} mutants, tests {' '.join(tests)}", flush=True)
        pending = list(enumerate(mutants))
        running: dict[int, int] = {}
        while pending or running:
            while pending and len(running) < jobs:
                i, mutant = pending.pop(0)
                running[_fork(_package_copy(Path(tmp) / f"m{i}", path, mutant.source), _pytest, tests)] = i
            pid, status = os.wait()
            mutant = mutants[running.pop(pid)]
            killed = os.waitstatus_to_exitcode(status) != 0
            print(f"  {'killed  ' if killed else 'SURVIVED'} {mutant.name}: {mutant.description}", flush=True)
            if killed:
                score.killed += 1
            else:
                score.survivors.append(f"{mutant.name}: {mutant.description}")
    return score


def _package_copy(where: Path, path: str | None = None, source: str | None = None) -> Path:
    """A copy of the package (and setup.cfg, tests linked) at ``where``, ``path`` replaced by ``source``."""
    shutil.copytree(ROOT / "astro_db", where / "astro_db", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", where / "setup.cfg")
    (where / "tests").symlink_to(ROOT / "tests")
    if path is not None and source is not None:
        (where / path).write_text(source, encoding="utf-8")
    return where


@functools.cache
def _preload() -> None:
    """Import the heavy third-party modules once, so forked test runs skip it (never astro_db)."""
    os.nice(10)
    for name in ("pytest", "bson", "pymongo", "mongoengine", "mongomock_ng", "hypothesis", "click",
                 "cryptography.hazmat.primitives.ciphers.aead"):
        __import__(name)


def _fork(copy: Path, fn: Any, *args: Any) -> int:
    """Run ``fn(*args)`` in a child working in ``copy`` (quiet); its result is the exit status."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.chdir(copy)
        sys.path.insert(0, str(copy))
        sys.dont_write_bytecode = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = int(fn(*args))
    finally:
        os._exit(code)


def _wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _pytest(tests: list[str]) -> int:
    import pytest

    return int(pytest.main([*PYTEST_ARGS, *tests]))


def _imports_the_copy() -> int:
    import astro_db

    return 0 if Path(astro_db.__file__).resolve().is_relative_to(Path.cwd().resolve()) else 1


# --- report ------------------------------------------------------------------------------------


def report(results: dict[str, dict[str, Score]], fail_under: float) -> int:
    failed = False
    figures: dict[str, dict[str, object]] = {}
    print()
    print(f"{'module':<9} {'mutmut':>16} {'tables':>14} {'overall':>16}")
    for module, passes in results.items():
        killed = sum(s.killed for s in passes.values())
        total = sum(s.total for s in passes.values())
        overall = 100.0 * killed / total if total else 100.0
        failed = failed or overall < fail_under
        cells = [f"{s.killed}/{s.total} {s.percent():5.1f}%" if s.total else "-" for s in
                 (passes.get("mutmut", Score()), passes.get("tables", Score()))]
        print(f"{module:<9} {cells[0]:>16} {cells[1]:>14} {killed:>5}/{total:<5} {overall:5.1f}%")
        figures[module] = {"killed": killed, "total": total, "percent": round(overall, 1),
                           **{name: {"killed": s.killed, "total": s.total, "survivors": s.survivors,
                                     "unchecked": s.unchecked} for name, s in passes.items()}}
    for module, passes in results.items():
        for name, score in passes.items():
            if score.unchecked:
                print(f"\n{module} {name}: {score.unchecked} mutants not checked (run without --no-mutmut)")
            if score.survivors:
                print(f"\n{module} {name} survivors:")
                print("\n".join(f"  {s}" for s in score.survivors))
    (ROOT / "mutants").mkdir(exist_ok=True)
    (ROOT / "mutants" / "scores.json").write_text(json.dumps(figures, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
