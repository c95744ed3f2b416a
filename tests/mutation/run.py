"""Mutation testing of the modules that guard data: which changes to them no test notices.

    python tests/mutation/run.py [module ...] [--no-mutmut] [--no-tables] [--jobs N]

``module`` is any of query, access, updates, masking, crypto (default: all five). Two passes:

1. mutmut (configured in setup.cfg ``[mutmut]``) mutates the code inside the module's functions
   and runs, for each mutant, the unit, model and service tests (embedded backend, not the live
   tier) that execute the mutated function.
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
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tables import table_mutants  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODULES = {
    "query": "astro_db/query.py",
    "access": "astro_db/security/access.py",
    "updates": "astro_db/updates.py",
    "masking": "astro_db/security/masking.py",
    "crypto": "astro_db/security/crypto.py",
}
# the tests that guard each module's tables (the table pass runs these, stopping at a failure)
GUARDING_TESTS = {  # the fast, pure specifications first: -x stops at the first failure
    "query": ["tests/unit/test_query_policy.py", "tests/unit/test_update_policy.py", "tests/unit/test_injection.py",
              "tests/service/test_reliability_bad_inputs.py"],
    "access": ["tests/unit/test_access_policy.py", "tests/unit/test_access.py", "tests/unit/test_permissions.py"],
    "updates": ["tests/unit/test_update_policy.py", "tests/unit/test_injection.py"],
    "masking": ["tests/unit/test_masking_policy.py", "tests/unit/test_masking.py"],
    "crypto": ["tests/unit/test_crypto_policy.py", "tests/unit/test_crypto.py"],
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
    parser.add_argument("--jobs", type=int, default=2, help="mutmut's parallel children (default 2)")
    parser.add_argument("--fail-under", type=float, default=90.0, help="exit 1 below this %% killed (default 90)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    modules = args.modules or list(MODULES)
    os.chdir(ROOT)
    if not args.no_mutmut:
        run_mutmut(modules, args.jobs)
    results: dict[str, dict[str, Score]] = {}
    for module in modules:
        results[module] = {"mutmut": mutmut_score(MODULES[module])}
        if not args.no_tables:
            results[module]["tables"] = table_score(module)
    return report(results, args.fail_under)


# --- pass 1: mutmut ----------------------------------------------------------------------------


def run_mutmut(modules: list[str], jobs: int) -> None:
    names = [_dotted(MODULES[m]) + ".*" for m in modules]
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
        else:
            score.unchecked += 1
    return score


def _dotted(path: str) -> str:
    return path[: -len(".py")].replace("/", ".")


# --- pass 2: tables ----------------------------------------------------------------------------


def table_score(module: str) -> Score:
    """Apply each table mutant to a copy of the package and run the module's guarding tests."""
    path = MODULES[module]
    mutants = table_mutants(ROOT / path)
    tests = [t for t in GUARDING_TESTS[module] if (ROOT / t).exists()]
    score = Score()
    if not mutants:
        return score
    with tempfile.TemporaryDirectory(prefix="astro_db_tables_") as tmp:
        copy = Path(tmp)
        shutil.copytree(ROOT / "astro_db", copy / "astro_db", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "setup.cfg", copy / "setup.cfg")
        (copy / "tests").symlink_to(ROOT / "tests")
        target = copy / path
        original = target.read_text(encoding="utf-8")
        _check_copy_is_imported(copy, tests)
        print(f"table pass on {path}: {len(mutants)} mutants, tests {' '.join(tests)}", flush=True)
        for mutant in mutants:
            target.write_text(mutant.source, encoding="utf-8")
            killed = _tests_fail(copy, tests)
            print(f"  {'killed  ' if killed else 'SURVIVED'} {mutant.name}: {mutant.description}", flush=True)
            if killed:
                score.killed += 1
            else:
                score.survivors.append(f"{mutant.name}: {mutant.description}")
        target.write_text(original, encoding="utf-8")
    return score


def _tests_fail(copy: Path, tests: list[str]) -> bool:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(copy)}
    result = subprocess.run([*NICE, sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests], cwd=copy, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return result.returncode != 0


def _check_copy_is_imported(copy: Path, tests: list[str]) -> None:
    """Refuse to count anything unless the tests import the copy and pass on it unmutated."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(copy)}
    where = subprocess.run([sys.executable, "-c", "import astro_db; print(astro_db.__file__)"], cwd=copy, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"the table pass would test {where}, not the mutated copy in {copy}")
    if _tests_fail(copy, tests):
        raise SystemExit(f"the guarding tests fail on the unmutated copy: {' '.join(tests)}")


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
