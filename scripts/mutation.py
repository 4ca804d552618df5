#!/usr/bin/env python3
"""Mutation testing of the pure core, with a ratchet: `make mutation` (CI) and `make mutation-full`.

What mutmut mutates and how it runs the tests is configured in pyproject.toml ([tool.mutmut]); this
script picks what to mutate, runs mutmut, reads its verdicts (mutants/**/*.meta) and compares them
with the committed baseline, tests/mutation/baseline.json. Exit status: 0 passed, 1 the ratchet
failed, 2 nothing could be measured (no baseline, mutmut failed or ran out of time).

Ordinary run (CI, `make mutation`):
  - finds the core modules whose bytes differ from the ones the baseline measured (it keeps a
    sha256 per module: with a baseline measured on a clean checkout that is exactly
    `git diff --name-only <baseline commit> -- worker/`, and it stays right on a shallow clone or
    when the baseline was measured on uncommitted work), the test files under tests/ that changed
    or were deleted, and tests/fixtures/<provider>/ folders that changed;
  - within a changed module it re-mutates the functions whose source changed (mutmut's own
    per-function AST hash, the unit mutmut caches its verdicts by) and the functions that call them
    or that they call (mutmut's call map), the whole module when code outside its functions changed
    (a mapping table, a constant), and every function a changed test file exercises; every other
    function keeps its baseline verdicts (`--whole-modules` re-mutates changed modules entirely);
  - FAILS when a module's score without the accepted (equivalent) mutants is below the baseline's,
    or when a mutant that is not killed is
    not listed in tests/mutation/accepted.txt, or is listed but the baseline recorded a different
    mutation under that name (its function changed and mutmut renumbered its mutants): review the
    new one, and if it is equivalent too, end its line's reason with `[<diff sha>]` (the 12 hex
    digits the failure prints), which accepts that mutation under that name.
  With nothing changed it prints the baseline's table and exits 0 (about a second).

--record: writes the baseline from the verdicts in mutants/ as they stand, running nothing: after a
  --rescore that was stopped (mutmut saves each verdict as it goes; a mutant not re-run keeps its
  earlier "not killed", so the score can only be under-stated).
--rescore: after tests were added to kill survivors, re-runs only the mutants that the last full
run in mutants/ did not kill (mutmut maps new tests to functions by itself) and rewrites the
baseline as --full does; killed verdicts stand. Much shorter than --full; the baseline says which.

--write (with an ordinary run): when the run passes, folds what it measured into the baseline (the
  re-mutated functions' counts and survivors, the modules' hashes, mutmut's fresh call and test maps,
  every test file's hash), so the next run, CI's included, finds nothing to re-mutate. Functions it
  did not re-mutate keep their recorded verdicts: the same approximation the run itself makes, until
  the next --full.

--full (`make mutation-full`): deletes mutants/ (mutmut keeps old verdicts otherwise, even after a
test that kills them was added), mutates every configured module, rewrites the baseline (counts and
scores per module and group, totals, the commit, whether worker/ or tests/ had uncommitted changes,
date, runtime, per-function hashes and counts, mutmut's call and test maps, every mutant not killed
with its diff) and fails the same way on a mutant that is not killed and not accepted.

Score = (killed + timeout) / mutants. A timeout is a detection (the mutant made the tests hang or
blow their CPU limit). Everything else counts against the score: survived, no tests (no unit test
reaches the code), suspicious. A mutant in accepted.txt (equivalent: no behaviour tells it apart)
STILL counts as survived; being listed only keeps it from failing the run.

Scope: worker/state.py is mutated whole (mutmut 3.8 can narrow a file only with pragma comments in
the source), but only its codec functions are scored: read_partition, consume_rest and release_freed_memory do
Kafka and libc I/O, are tested by tests/integration, and are reported as out of scope.

Bounded in time: one mutmut child by default (--jobs), and mutmut is stopped after --timeout-mins
(default 20 for an ordinary run, none for --full), which is an error (exit 2), so CI cannot hang.
An ordinary run with nothing changed takes about a second. Otherwise it pays mutant generation and
one instrumented run of tests/unit (about 2 minutes together on the 2-core development machine)
plus about a second per re-mutated mutant: a change to one function of a provider module is a few
minutes in all; the estimate is printed before mutmut starts. The full run takes about 1.5 hours
with one child (the baseline records it).

Not seen by an ordinary run: a change outside the core (worker/model.py, tests/support.py,
conftest.py) that changes how well the core's tests kill its mutants. `--full` (nightly, and before
committing a new baseline) measures everything.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
BASELINE = ROOT / "tests" / "mutation" / "baseline.json"
ACCEPTED = ROOT / "tests" / "mutation" / "accepted.txt"
RUN_LOG = MUTANTS / "mutmut-run.log"

TARGET = 0.90            # the score a module new to the baseline must reach
SETUP_SECS = 150         # mutant generation + one instrumented run of tests/unit, measured

# The module groups scores are reported (and the 90 % target set) for.
GROUPS: dict[str, tuple[str, ...]] = {
    "providers": ("worker/providers/*.py",),
    "dedup": ("worker/dedup.py",),
    "limiter": ("worker/poll/limiter.py",),
    "scheduler": ("worker/poll/scheduler.py",),
    "ids": ("worker/poll/ids.py",),
    "staging": ("worker/staging.py", "worker/batch.py"),
    "raw/deadletter": ("worker/raw.py", "worker/deadletter.py"),
    "state codec": ("worker/state.py",),
}

# Functions mutated (their file is) but not scored: I/O that only the integration tests reach.
OUT_OF_SCOPE = {
    "worker.state.x_read_partition": "reads a _state partition from Kafka (tests/integration)",
    "worker.state.x_release_freed_memory": "calls glibc's malloc_trim (tests/integration, bench)",
    "worker.state.x_consume_rest": "reads the rest of a _state partition with the consumer (tests/integration)",
}

KILLED, TIMEOUT, SURVIVED, NO_TESTS, SUSPICIOUS = "killed", "timeout", "survived", "no_tests", "suspicious"
COUNTS = (KILLED, TIMEOUT, SURVIVED, NO_TESTS, SUSPICIOUS)
SPINNER = tuple("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


# -- what is mutated ------------------------------------------------------------------------------


def core_modules() -> list[str]:
    """The files [tool.mutmut] only_mutate names, relative to the repository."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    out: set[str] = set()
    for pattern in config["only_mutate"]:
        out.update(Path(p).as_posix() for p in glob.glob(pattern, root_dir=ROOT) if p.endswith(".py"))
    return sorted(out)


def dotted(path: str) -> str:
    """worker/poll/ids.py -> worker.poll.ids; a package's __init__.py is the package (as in mutmut)."""
    name = path[:-3].replace("/", ".")
    return name.removesuffix(".__init__")


def function_of(key: str) -> str:
    """The qualified function of a mutant name: worker.dedup.x_decide__mutmut_3 -> worker.dedup.x_decide."""
    return key.partition("__mutmut_")[0]


def module_of(key: str) -> str:
    """The dotted module of a mutant or function name (worker.poll.ids.xǁIdTrackerǁdue__mutmut_3)."""
    parts = function_of(key).split(".")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith(("x_", "xǁ")):
            return ".".join(parts[:i])
    raise ValueError(f"not a mutmut name: {key}")


def group_of(path: str) -> str:
    for group, patterns in GROUPS.items():
        if any(fnmatch.fnmatch(path, p) for p in patterns):
            return group
    return "other"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def function_hashes(path: str) -> dict[str, str]:
    """Qualified function -> mutmut's hash of its AST (what mutmut itself caches verdicts by)."""
    from mutmut.mutation.file_mutation import compute_function_hashes

    module = dotted(path)
    return {f"{module}.{name}": h for name, h in
            compute_function_hashes((ROOT / path).read_text(encoding="utf-8")).items()}


def outside_functions_hash(path: str) -> str:
    """A hash of the module without its function bodies and docstring: tables, constants, classes."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = [ast.Pass()]
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant):
        tree.body = tree.body[1:]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:16]


def importers(path: str, paths: list[str]) -> list[str]:
    """The core modules that import this one."""
    target = dotted(path)
    out = []
    for q in paths:
        for node in ast.walk(ast.parse((ROOT / q).read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if target in names:
                out.append(q)
                break
    return out


def mutant_names(path: str) -> list[str]:
    """The mutants mutmut generates for this file, by the names it gives them."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    mutated = mutate_file_contents(path, (ROOT / path).read_text(encoding="utf-8"))
    return [get_mutant_name(Path(path), name) for name in mutated.mutant_names]


def test_files() -> dict[str, str]:
    """Every file under tests/ (test modules, helpers, fixtures) and its hash."""
    out = {}
    for p in sorted((ROOT / "tests").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            out[p.relative_to(ROOT).as_posix()] = sha(p)
    return out


# -- reading mutmut's results ---------------------------------------------------------------------


def status_of(exit_code: int | None) -> str | None:
    from mutmut.stats import status_by_exit_code  # mutmut's own reading of its exit codes

    status = status_by_exit_code[exit_code]
    if status == "not checked":
        return None
    if status in ("killed", "caught by type check"):
        return KILLED
    if status in ("timeout", "segfault"):   # the CPU limit ends in SIGKILL, which mutmut calls a segfault
        return TIMEOUT
    if status == "survived":
        return SURVIVED
    if status == "no tests":
        return NO_TESTS
    return SUSPICIOUS


def verdicts(path: str) -> dict[str, int | None]:
    meta = MUTANTS / (path + ".meta")
    if not meta.exists():
        return {}
    return json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]


def diff_of(key: str, path: str) -> str:
    """The mutation as its -/+ lines (what `mutmut show` prints, without the context)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(key, path=path)
    return "\n".join(line for line in diff.splitlines()[2:] if line.startswith(("+", "-")))


def measure_functions(path: str, only: set[str] | None = None) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """Per-function counts and the mutants not killed, from mutants/<path>.meta (functions in `only`,
    when given). Returns (counts by function, survivors by name, mutants not run)."""
    counts: dict[str, dict] = {}
    survivors: dict[str, dict] = {}
    unchecked = []
    for key, code in verdicts(path).items():
        function = function_of(key)
        if only is not None and function not in only:
            continue
        status = status_of(code)
        if status is None:
            unchecked.append(key)
            continue
        counts.setdefault(function, dict.fromkeys(COUNTS, 0))[status] += 1
        if status not in (KILLED, TIMEOUT) and function not in OUT_OF_SCOPE:
            diff = diff_of(key, path)
            survivors[key] = {"status": status, "diff": diff, "diff_sha": hashlib.sha256(diff.encode()).hexdigest()[:12]}
    return counts, survivors, unchecked


def summarize(function_counts: dict[str, dict], survivors: dict[str, dict], accepted: dict[str, str]) -> dict:
    """A module's row: counts over its in-scope functions, score, the mutants not killed."""
    total = dict.fromkeys(COUNTS, 0)
    out_of_scope = 0
    for function, c in function_counts.items():
        if function in OUT_OF_SCOPE:
            out_of_scope += sum(c[k] for k in COUNTS)
            continue
        for k in COUNTS:
            total[k] += c[k]
    mutants = sum(total.values())
    return {
        "mutants": mutants, **total,
        "accepted": sum(1 for k in survivors if k in accepted),
        "score": round((total[KILLED] + total[TIMEOUT]) / mutants, 4) if mutants else None,
        "out_of_scope": out_of_scope,
        "survivors": {k: survivors[k] | {"accepted": k in accepted} for k in sorted(survivors)},
    }


def mutmut_maps() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """From mutmut's instrumented run: function -> the core functions that call it, and test file
    -> the core functions its tests call."""
    stats = json.loads((MUTANTS / "mutmut-stats.json").read_text(encoding="utf-8"))
    core = {dotted(p) for p in core_modules()}
    callers = {f: sorted(c for c in cs if module_of(c) in core)
               for f, cs in stats["function_dependencies"].items() if module_of(f) in core}
    by_file: dict[str, set[str]] = {}
    for function, tests in stats["tests_by_mangled_function_name"].items():
        if module_of(function) in core:
            for test in tests:
                by_file.setdefault(test.split("::", 1)[0], set()).add(function)
    return ({f: c for f, c in sorted(callers.items()) if c},
            {t: sorted(fs) for t, fs in sorted(by_file.items())})


def read_accepted() -> dict[str, str]:
    """tests/mutation/accepted.txt: `<mutant name> <reason>` per line, # comments."""
    out: dict[str, str] = {}
    if not ACCEPTED.exists():
        return out
    for n, line in enumerate(ACCEPTED.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        where = f"{ACCEPTED.relative_to(ROOT)}:{n}"
        if "__mutmut_" not in name or not reason.strip():
            sys.exit(f"{where}: expected `<mutant name> <reason>`")
        if name in out:
            sys.exit(f"{where}: {name} is listed twice")
        out[name] = reason.strip()
    return out


# -- running mutmut -------------------------------------------------------------------------------


def run_mutmut(names: list[str], jobs: int, timeout_mins: float | None) -> float:
    """`mutmut run` on these mutants (all when empty), its output in mutants/mutmut-run.log.
    Returns the wall time; exits 2 when mutmut fails or runs out of time."""
    MUTANTS.mkdir(exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(jobs), *names]
    start = time.monotonic()
    with open(RUN_LOG, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_mins * 60 if timeout_mins else None)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)   # mutmut, its fork server and the running mutant
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            print(f"mutmut did not finish within {timeout_mins:g} min and was stopped; log: {RUN_LOG.relative_to(ROOT)}")
            sys.exit(2)
    if code != 0:
        print(tail_of_log())
        print(f"mutmut failed (exit {code}); log: {RUN_LOG.relative_to(ROOT)}")
        sys.exit(2)
    return time.monotonic() - start


def tail_of_log(lines: int = 30) -> str:
    text = RUN_LOG.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    keep = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(SPINNER)]
    return "\n".join(keep[-lines:])


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout if out.returncode == 0 else None


# -- the table and the checks ---------------------------------------------------------------------


def pct(score: float | None) -> str:
    return "-" if score is None else f"{score * 100:.1f}%"


def without_equivalents(r: dict) -> float | None:
    """The score over the mutants that can be told apart: (killed + timeout) / (mutants - accepted),
    the usual definition of a mutation score (equivalent mutants excluded); the target is on it."""
    told = r["mutants"] - r["accepted"]
    return round((r[KILLED] + r[TIMEOUT]) / told, 4) if told > 0 else None


def add_counts(rows: list[dict]) -> dict:
    total = {k: sum(r[k] for r in rows) for k in ("mutants", *COUNTS, "accepted")}
    total["score"] = round((total[KILLED] + total[TIMEOUT]) / total["mutants"], 4) if total["mutants"] else None
    return total


def print_table(modules: dict[str, dict], baseline: dict | None, measured: set[str]) -> None:
    base = baseline or {}
    head = (f"{'module':<36}{'mutants':>8}{'killed':>7}{'timeout':>8}{'survived':>9}{'no-tests':>9}"
            f"{'susp':>5}{'accepted':>9}{'score':>8}{'baseline':>9}{'excl.eq':>8}")
    print(head)
    print("-" * len(head))

    def line(name: str, r: dict, was: float | None, mark: str = "") -> None:
        print(f"{name:<36}{r['mutants']:>8}{r[KILLED]:>7}{r[TIMEOUT]:>8}{r[SURVIVED]:>9}{r[NO_TESTS]:>9}"
              f"{r[SUSPICIOUS]:>5}{r['accepted']:>9}{pct(r['score']):>8}{pct(was):>9}"
              f"{pct(without_equivalents(r)):>8}{mark}")

    for path in sorted(modules):
        line(path, modules[path], base.get("modules", {}).get(path, {}).get("score"), " *" if path in measured else "")
    print("-" * len(head))
    for group in GROUPS:
        rows = [r for p, r in modules.items() if group_of(p) == group]
        if rows:
            line(f"[{group}]", add_counts(rows), base.get("groups", {}).get(group, {}).get("score"))
    line("[total]", add_counts(list(modules.values())), base.get("totals", {}).get("score"))
    for path, r in sorted(modules.items()):
        if r.get("out_of_scope"):
            names = ", ".join(f.rpartition(".x_")[2] for f in OUT_OF_SCOPE if module_of(f) == dotted(path))
            print(f"  {path}: {r['out_of_scope']} more mutants, in {names}: I/O, out of scope, not scored")
    print("  score = (killed + timeout) / mutants, accepted (equivalent) mutants counted as survived;")
    print(f"  excl.eq = (killed + timeout) / (mutants - accepted): the usual mutation score, the ratchet's, "
          f"target {TARGET:.0%} per group")
    if measured:
        print("  * re-measured by this run (other rows are the baseline's)")


def check(modules: dict[str, dict], measured: set[str], baseline: dict | None, accepted: dict[str, str],
          new_survivors: set[str]) -> list[str]:
    """The ratchet's complaints about the measured modules. `new_survivors`: the mutants this run
    decided (only those can be a different mutation than the baseline's of the same name)."""
    problems = []
    base_modules = (baseline or {}).get("modules", {})
    previous = {k: v for m in base_modules.values() for k, v in m.get("survivors", {}).items()}
    for path in sorted(measured):
        r, base = modules[path], base_modules.get(path)
        # compared without the accepted (equivalent) mutants: new code may bring equivalents of its
        # own (a message text), which no test can kill and which accepted.txt must name anyway
        told = r["mutants"] - r["accepted"]
        if told > 0:
            detected = r[KILLED] + r[TIMEOUT]
            base_told = base["mutants"] - base.get("accepted", 0) if base else 0
            if base_told <= 0:
                if detected < TARGET * told:
                    problems.append(f"{path}: score excl. equivalents {pct(without_equivalents(r))} is below "
                                    f"{TARGET:.0%} (a module new to the baseline)")
            elif detected * base_told < (base[KILLED] + base[TIMEOUT]) * told:
                problems.append(f"{path}: score excl. equivalents {pct(without_equivalents(r))} is below its "
                                f"baseline {pct(without_equivalents(base))}")
        for key, s in r["survivors"].items():
            shown = "\n".join("      " + ln for ln in s["diff"].splitlines())
            if key not in accepted:
                problems.append(f"{key} ({s['status'].replace('_', ' ')}), not in accepted.txt:\n{shown}")
            elif key in new_survivors and key in previous and previous[key]["diff_sha"] != s["diff_sha"] \
                    and f"[{s['diff_sha']}]" not in accepted[key]:
                problems.append(f"{key} [{s['diff_sha']}]: accepted.txt names it, but it is another mutation now (its function "
                                f"changed and mutmut renumbered its mutants); review it again:\n{shown}")
    return problems


def stale_accepted(modules: dict[str, dict], measured: set[str], accepted: dict[str, str]) -> list[str]:
    """accepted.txt lines, in measured modules, that name no mutant left alive."""
    measured_dotted = {dotted(p) for p in measured}
    alive = {k for p in measured for k in modules[p]["survivors"]}
    return sorted(k for k in accepted if module_of(k) in measured_dotted and k not in alive)


def report(problems: list[str], notes: list[str]) -> int:
    for note in notes:
        print(f"  note: accepted.txt lists {note}, which is killed or gone: remove the line")
    if not problems:
        print("mutation ratchet: OK")
        return 0
    print(f"mutation ratchet: FAILED ({len(problems)})")
    for p in problems:
        print(f"  - {p}")
    print("Kill a surviving mutant with a test under tests/unit/, or, when no behaviour can tell it apart,\n"
          "add `<mutant name> <reason>` to tests/mutation/accepted.txt. mutants/ keeps this run: "
          "`.venv/bin/mutmut show <name>` shows one.")
    return 1


# -- the two modes --------------------------------------------------------------------------------


def full(jobs: int, timeout_mins: float | None, rescore: bool = False, record: bool = False) -> int:
    accepted = read_accepted()
    previous = json.loads(BASELINE.read_text(encoding="utf-8")) if BASELINE.exists() else None
    paths = core_modules()
    started = time.monotonic()
    if record:
        # the verdicts mutants/ holds now (mutmut saves each as it goes), e.g. after a --rescore that
        # was stopped: a mutant not re-run keeps the verdict of the run before, which can only be
        # "not killed" for those a rescore re-runs; nothing is run here
        if not MUTANTS.exists():
            print("--record needs the mutants/ of a full run")
            return 2
        elapsed = 0.0
    elif rescore:
        # after tests were added: re-run only what mutants/ says was not killed (mutmut maps the
        # new tests to functions itself); the killed verdicts stand, as they would in a full run
        if not MUTANTS.exists():
            print("--rescore needs the mutants/ of a full run")
            return 2
        names = [k for p in paths for k, code in verdicts(p).items() if status_of(code) != KILLED]
        print(f"re-running the {len(names)} mutants not killed; mutmut's log: {RUN_LOG.relative_to(ROOT)}")
        elapsed = run_mutmut(names, jobs, timeout_mins)
    else:
        if MUTANTS.exists():
            shutil.rmtree(MUTANTS)
        print(f"mutating all {len(paths)} core modules; mutmut's log: {RUN_LOG.relative_to(ROOT)}")
        elapsed = run_mutmut([], jobs, timeout_mins)

    modules, functions, unchecked = {}, {}, []
    for p in paths:
        counts, survivors, not_run = measure_functions(p)
        unchecked += not_run
        modules[p] = summarize(counts, survivors, accepted) | {
            "sha256": sha(ROOT / p), "outside_functions": outside_functions_hash(p)}
        for function, h in function_hashes(p).items():
            functions[function] = {"hash": h, **counts.get(function, dict.fromkeys(COUNTS, 0))}
    if unchecked:
        print(f"{len(unchecked)} mutants were not run (interrupted?), e.g. {unchecked[:3]}")
        return 2
    total_secs = time.monotonic() - started
    tested = sum(c[k] for c in functions.values() for k in COUNTS if k != NO_TESTS)
    write_baseline({
        "about": "written by scripts/mutation.py --full; read its docstring",
        "run": ("recorded from mutants/ as it stood (a full run, then rescores, the last one possibly stopped)"
                if record else "rescore: the mutants not killed by the full run re-run after tests were added"
                if rescore else "full"),
        "mutmut": _version("mutmut"),
        "jobs": jobs,
        "runtime_secs": round(total_secs),
        "mutmut_secs": round(elapsed),
        "secs_per_mutant": round(elapsed / max(tested, 1), 2),
        "score": "(killed + timeout) / mutants; accepted (equivalent) mutants count as survived",
    }, modules, functions)

    print_table(modules, previous, set())
    print(f"full run: {total_secs / 60:.1f} min ({jobs} mutmut child); baseline written to {BASELINE.relative_to(ROOT)}")
    problems = check(modules, set(paths), previous, accepted, {k for m in modules.values() for k in m["survivors"]})
    return report(problems, stale_accepted(modules, set(paths), accepted))


def ordinary(jobs: int, timeout_mins: float, whole_modules: bool, write: bool = False) -> int:
    if not BASELINE.exists():
        print(f"no {BASELINE.relative_to(ROOT)}: run `make mutation-full` first")
        return 2
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    accepted = read_accepted()
    paths = core_modules()
    base_modules, base_functions = baseline["modules"], baseline["functions"]
    commit = baseline.get("commit")
    print(f"baseline: {BASELINE.relative_to(ROOT)}, commit {commit and commit[:12]}"
          f"{' with uncommitted changes' if baseline.get('uncommitted_changes') else ''}, {baseline.get('date')}")

    # -- what changed, and what to re-mutate because of it
    rerun: dict[str, str] = {}              # qualified function -> why
    whole: dict[str, str] = {}              # module path -> why
    current: dict[str, dict[str, str]] = {}
    for p in paths:
        if p not in base_modules:
            whole[p] = "new module"
        elif sha(ROOT / p) != base_modules[p]["sha256"]:
            if whole_modules:
                whole[p] = "source changed (--whole-modules)"
            elif outside_functions_hash(p) != base_modules[p]["outside_functions"]:
                whole[p] = "code outside its functions changed"
                for q in importers(p, paths):   # a table or constant changed: its users' mutants too
                    whole.setdefault(q, f"imports {p}, whose code outside functions changed")
            else:
                current[p] = function_hashes(p)
                for f, h in current[p].items():
                    if base_functions.get(f, {}).get("hash") != h:
                        rerun.setdefault(f, "source changed")
    callers = baseline.get("callers", {})
    for f in [f for f, why in rerun.items() if why == "source changed"]:
        for g in callers.get(f, ()):
            rerun.setdefault(g, f"calls {f.rpartition('.')[2]}")
        for g, cs in callers.items():
            if f in cs:
                rerun.setdefault(g, f"called by {f.rpartition('.')[2]}")
    now_tests, base_tests = test_files(), baseline["tests"]
    unmapped = []
    for t in sorted(set(now_tests) | set(base_tests)):
        if now_tests.get(t) == base_tests.get(t):
            continue
        parts = t.split("/")
        if parts[:2] == ["tests", "fixtures"] and f"worker/providers/{parts[2]}.py" in paths:
            whole.setdefault(f"worker/providers/{parts[2]}.py", f"fixtures changed: {t}")
        elif t in baseline["test_files"]:
            for f in baseline["test_files"][t]:
                rerun.setdefault(f, f"its tests changed: {t}")
        else:
            unmapped.append(t)
    if unmapped:
        print(f"  changed under tests/ without a baseline link to the core (not followed): {', '.join(unmapped)}")

    # -- the mutants of those functions, as mutmut will name them
    selected: list[str] = []
    wanted: dict[str, set[str]] = {}        # module path -> the functions re-mutated in it
    for p in paths:
        if p in whole:
            wanted[p] = set(function_hashes(p))
        elif any(module_of(f) == dotted(p) for f in rerun):
            wanted[p] = {f for f in rerun if module_of(f) == dotted(p)} & set(current.get(p) or function_hashes(p))
        else:
            continue
        chosen = [n for n in mutant_names(p) if function_of(n) in wanted[p]]
        selected += chosen
        if p in whole:
            print(f"  {p}: all {len(chosen)} mutants ({whole[p]})")
        else:
            for f in sorted(wanted[p]):
                n = sum(1 for name in chosen if function_of(name) == f)
                print(f"  {p}: {f.rpartition('.')[2]}, {n} mutants ({rerun[f]})")
    touched = set(wanted)

    modules = {p: base_modules[p] for p in paths if p in base_modules}
    if not selected:
        print("nothing to re-mutate: every core function and test is as the baseline measured it")
        print_table(modules, baseline, set())
        return report(check(modules, set(), baseline, accepted, set()), [])

    expected = SETUP_SECS + len(selected) * baseline.get("secs_per_mutant", 1.0) / jobs
    print(f"re-mutating {len(selected)} mutants in {len(touched)} module(s): expected ~{expected / 60:.0f} min, "
          f"stopped after {timeout_mins:g} min; mutmut's log: {RUN_LOG.relative_to(ROOT)}")
    # A fresh instrumented run: mutmut maps only *new* test ids to the functions they call, so a
    # local mutants/ would keep an edited test's old map (CI starts without mutants/ anyway).
    (MUTANTS / "mutmut-stats.json").unlink(missing_ok=True)
    started = time.monotonic()
    run_mutmut(selected, jobs, timeout_mins)

    new_survivors: set[str] = set()
    measured: dict[str, dict[str, dict]] = {}     # module path -> function -> counts
    for p in sorted(touched):
        counts, survivors, unchecked = measure_functions(p, wanted[p])
        if unchecked:
            print(f"{p}: {len(unchecked)} mutants were not run (interrupted?)")
            return 2
        new_survivors |= set(survivors)
        if p not in whole:   # the functions not re-mutated keep their baseline verdicts
            kept = {f for f in (current.get(p) or function_hashes(p)) if f not in wanted[p]}
            counts |= {f: {k: base_functions[f][k] for k in COUNTS} for f in kept if f in base_functions}
            survivors |= {k: v for k, v in base_modules[p]["survivors"].items() if function_of(k) in kept}
        modules[p] = summarize(counts, survivors, accepted)
        measured[p] = counts
    print_table(modules, baseline, touched)
    secs = time.monotonic() - started
    print(f"ordinary run: {secs / 60:.1f} min for {len(selected)} mutants")
    problems = check(modules, touched, baseline, accepted, new_survivors)
    status = report(problems, [k for k in stale_accepted(modules, touched, accepted)
                               if any(function_of(k) in fs for fs in wanted.values())])
    if write and status == 0:
        write_measured(baseline, modules, measured, secs)
    return status


def write_measured(baseline: dict, modules: dict[str, dict], measured: dict[str, dict[str, dict]],
                   secs: float) -> None:
    """--write: the baseline with what a passing ordinary run measured folded in."""
    functions = dict(baseline["functions"])
    for p, counts in measured.items():
        modules[p] = modules[p] | {"sha256": sha(ROOT / p), "outside_functions": outside_functions_hash(p)}
        prefix = dotted(p)
        functions = {f: v for f, v in functions.items() if module_of(f) != prefix}
        for function, h in function_hashes(p).items():
            functions[function] = {"hash": h, **counts.get(function, dict.fromkeys(COUNTS, 0))}
    write_baseline(baseline | {
        "run": (f"an ordinary run's re-mutated functions ({', '.join(sorted(measured))}) folded into the "
                f"baseline of {str(baseline.get('commit'))[:12]} (--write)"),
        "runtime_secs": round(secs),
    }, modules, functions)
    print(f"baseline written to {BASELINE.relative_to(ROOT)} (--write)")


def write_baseline(about: dict, modules: dict[str, dict], functions: dict[str, dict]) -> None:
    """baseline.json: `about` (how it was measured) and what every writer records the same way:
    the commit, the counts, mutmut's fresh call and test maps, the test files' hashes."""
    callers, tests_map = mutmut_maps()
    dirty = bool((git("status", "--porcelain", "--", "worker", "tests", "pyproject.toml") or "").strip())
    baseline = about | {
        "commit": (git("rev-parse", "HEAD") or "").strip() or None,
        "uncommitted_changes": dirty,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "totals": add_counts(list(modules.values())),
        "groups": {g: add_counts([r for q, r in modules.items() if group_of(q) == g]) for g in GROUPS},
        "modules": modules,
        "functions": functions,
        "callers": callers,
        "test_files": tests_map,
        "tests": test_files(),
    }
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE.write_text(json.dumps(baseline, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="mutate everything and rewrite the baseline")
    parser.add_argument("--rescore", action="store_true",
                        help="after adding tests: re-run the mutants a full run left alive, rewrite the baseline")
    parser.add_argument("--record", action="store_true",
                        help="rewrite the baseline from mutants/ as it stands (after a stopped --rescore), running nothing")
    parser.add_argument("--whole-modules", action="store_true",
                        help="re-mutate changed modules entirely, not only their changed functions")
    parser.add_argument("--write", action="store_true",
                        help="with an ordinary run that passes: fold what it measured into the baseline")
    parser.add_argument("--jobs", type=int, default=1, help="mutmut children at once (default 1)")
    parser.add_argument("--timeout-mins", type=float, default=None,
                        help="stop mutmut after this long (default: 20 for an ordinary run, none with --full)")
    args = parser.parse_args()
    os.chdir(ROOT)   # mutmut reads pyproject.toml and writes mutants/ in the working directory
    if args.full:
        return full(args.jobs, args.timeout_mins)
    if args.rescore:
        return full(args.jobs, args.timeout_mins, rescore=True)
    if args.record:
        return full(args.jobs, args.timeout_mins, record=True)
    return ordinary(args.jobs, args.timeout_mins if args.timeout_mins is not None else 20.0, args.whole_modules,
                    write=args.write)


if __name__ == "__main__":
    sys.exit(main())
