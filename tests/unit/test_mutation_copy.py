"""mutmut runs the unit tests inside mutants/, where only the core's source, tests/ and
`[tool.mutmut] also_copy` exist. A unit test that reads another file of the repository fails there
with FileNotFoundError, mutmut's first (instrumented) run fails, and CI's mutation step exits 2 on
the first change to the core: so it did on 2026-12-03, when tests read CHANGELOG.md and the
Makefile. Every repository path named in a string of a unit test that mutmut runs must be copied."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTMUT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
COPIED_BY_MUTMUT = {"worker", "tests"}       # source_paths and the tests themselves


def run_by_mutmut() -> list[Path]:
    ignored = {a.removeprefix("--ignore=") for a in MUTMUT["pytest_add_cli_args_test_selection"] if a.startswith("--ignore=")}
    return [p for p in sorted((ROOT / "tests" / "unit").glob("test_*.py"))
            if p.relative_to(ROOT).as_posix() not in ignored]


def repository_entries_named(path: Path) -> set[str]:
    """The top-level entries of the repository that a string literal of `path` starts with."""
    top = {p.name for p in ROOT.iterdir()} - {".git", ".venv", "mutants"}
    named = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) < 200:
            first = node.value.split("/", 1)[0]
            if first in top:
                named.add(first)
    return named


def test_the_unit_tests_mutmut_runs_find_every_file_they_read():
    copied = set(MUTMUT["also_copy"]) | COPIED_BY_MUTMUT
    copied |= {c.split("/", 1)[0] for c in copied}
    missing = {p.name: sorted(repository_entries_named(p) - copied) for p in run_by_mutmut()}
    assert {name: m for name, m in missing.items() if m} == {}
