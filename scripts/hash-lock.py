#!/usr/bin/env python3
"""Add the sha256 of every distribution file of each pinned version to a lock file, for
`pip install --require-hashes` (the Dockerfile, image-check and `make venv` install that way).

    python3 scripts/hash-lock.py requirements.lock requirements-test.lock
    python3 scripts/hash-lock.py --check requirements.lock   # every pin has hashes (no network)

Hashes come from PyPI's simple index (PEP 691 JSON): every wheel and sdist published for the
pinned version, so the lock installs on any platform PyPI has files for (amd64 and arm64 images
alike). Comments and pins are kept in order; existing hashes are replaced. Standard library only,
plus `packaging` when it is importable (it is in the project's venv) to read file names.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/simple"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def file_version(filename: str, name: str) -> str | None:
    """The version a distribution file is for, or None when it is not one of `name`'s."""
    norm = normalize(name)
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return parts[1] if len(parts) >= 5 and normalize(parts[0]) == norm else None
    for ext in (".tar.gz", ".zip"):
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            dist, _, version = stem.rpartition("-")
            return version if normalize(dist) == norm else None
    return None


def hashes(name: str, version: str) -> list[str]:
    request = urllib.request.Request(f"{INDEX}/{normalize(name)}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    found = sorted({f["hashes"]["sha256"] for f in files
                    if file_version(f["filename"], name) == version and "sha256" in f.get("hashes", {})})
    if not found:
        raise SystemExit(f"hash-lock: PyPI has no files for {name}=={version}")
    return found


def pins(text: str) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for line in text.splitlines() if (m := PIN.match(line.strip()))]


def rewrite(path: Path) -> int:
    out: list[str] = []
    count = 0
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("--hash="):
            continue                          # an old hash line: replaced below
        m = PIN.match(stripped)
        if not m:
            out.append(line)
            continue
        found = hashes(m[1], m[2])
        out.append(f"{m[1]}=={m[2]} \\")
        tails = [" \\"] * (len(found) - 1) + [""]
        out.extend(f"    --hash=sha256:{h}{tail}" for h, tail in zip(found, tails, strict=True))
        count += 1
    path.write_text("\n".join(out) + "\n")
    return count


def check(path: Path) -> list[str]:
    """The pins of `path` that carry no hash."""
    missing, current, hashed = [], None, False
    for line in path.read_text().splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("--hash=sha256:"):
            hashed = True
            continue
        if current is not None and not hashed:
            missing.append(current)
        m = PIN.match(stripped)
        current, hashed = (f"{m[1]}=={m[2]}" if m else None), False
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that every pin has hashes")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        if args.check:
            missing = check(path)
            if missing:
                print(f"hash-lock: {path}: no hashes for {', '.join(missing)} (run make lock)", file=sys.stderr)
                status = 1
        else:
            print(f"hash-lock: {path}: {rewrite(path)} pins hashed")
    return status


if __name__ == "__main__":
    sys.exit(main())
