"""The previous release, built from git into its own virtualenv, for the upgrade tests.

Which release: the newest entry of CHANGELOG.md that names a commit (`## v0.1.0 (commit <sha>)`);
the tag of that name is used instead when it exists and agrees. The tree is exported with
`git archive` (so uncommitted work never leaks into it) and installed as the Dockerfile installs
the image: `pip install --require-hashes -r requirements.lock`, then `pip install --no-deps .`.
The result is cached per commit under the user's cache directory; a half-built one is never used.

The release runs from a directory outside the checkout, so `python -m worker` imports the
release's package and never the working tree's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "email-status-worker" / "releases"
_ENTRY = re.compile(r"^## (v\d+\.\d+\.\d+) \(commit ([0-9a-f]{7,40})\)", re.MULTILINE)


@attrs.frozen
class Release:
    name: str          # v0.1.0
    commit: str        # full sha
    python: Path       # the release's own interpreter
    home: Path         # its cache directory; `home / "run"` is outside the checkout, to run it from


def previous_release_entry(changelog: str) -> tuple[str, str]:
    """(name, commit) of the newest released entry; the Unreleased section has no commit."""
    match = _ENTRY.search(changelog)
    if match is None:
        raise LookupError("CHANGELOG.md names no released commit (`## vX.Y.Z (commit <sha>)`)")
    return match.group(1), match.group(2)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def build_previous_release() -> Release:
    name, short = previous_release_entry((ROOT / "CHANGELOG.md").read_text())
    try:
        commit = _git("rev-parse", "--verify", f"{short}^{{commit}}")
    except subprocess.CalledProcessError:
        raise LookupError(f"{name}'s commit {short} is not in this clone: the upgrade test needs the "
                          "history (a full `git clone`, not --depth)") from None
    try:
        tagged = _git("rev-parse", "--verify", f"refs/tags/{name}^{{commit}}")
    except subprocess.CalledProcessError:
        tagged = commit
    if tagged != commit:
        raise LookupError(f"tag {name} is {tagged[:12]}, but CHANGELOG.md says {commit[:12]}")
    home = CACHE / commit
    python = home / "venv" / "bin" / "python"
    if (home / "built").exists() and python.exists():
        return Release(name, commit, python, home)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    src = home / "src"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "release.tar"
        subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), commit], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(src, filter="data")
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", "requirements.lock"], cwd=src, check=True)
    subprocess.run([*pip, "--no-deps", "."], cwd=src, check=True)
    (home / "run").mkdir()
    (home / "built").write_text(f"{name} {commit}\n")
    return Release(name, commit, python, home)
