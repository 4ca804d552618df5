"""The image's supply chain: a base pinned by digest, and dependencies installed only with the
sha256 the lock files carry (scripts/hash-lock.py writes them, `make lock` runs it)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("hash_lock", ROOT / "scripts" / "hash-lock.py")
assert _spec is not None and _spec.loader is not None
hash_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hash_lock)


def test_the_base_image_is_pinned_by_digest():
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert base, "the Dockerfile names its base in ARG PYTHON_IMAGE"
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base[1])


def test_every_install_from_a_lock_checks_hashes():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.lock --require-hashes" in dockerfile
    assert "--require-hashes -r requirements.lock -r requirements-test.lock" in (ROOT / "Makefile").read_text()
    assert "install --require-hashes -r requirements.lock" in (ROOT / "scripts" / "image-check.sh").read_text()


def test_every_pin_of_both_locks_carries_a_hash():
    for name in ("requirements.lock", "requirements-test.lock"):
        path = ROOT / name
        assert hash_lock.check(path) == [], name
        assert len(hash_lock.pins(path.read_text())) > 10, name


def test_check_names_the_pins_without_hashes(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("# a comment\n"
                    "aiohttp==3.14.5 \\\n    --hash=sha256:" + "a" * 64 + "\n"
                    "orjson==3.13.0\n"
                    "attrs==26.1.0 \\\n    --hash=sha256:" + "b" * 64 + " \\\n    --hash=sha256:" + "c" * 64 + "\n"
                    "PyYAML==6.0.3\n")
    assert hash_lock.check(lock) == ["orjson==3.13.0", "PyYAML==6.0.3"]


def test_file_names_map_to_their_versions():
    cases = [
        ("orjson-3.13.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "orjson", "3.13.0"),
        ("PyYAML-6.0.3.tar.gz", "PyYAML", "6.0.3"),
        ("pyyaml-6.0.3.tar.gz", "PyYAML", "6.0.3"),
        ("jsonschema_specifications-2025.9.1-py3-none-any.whl", "jsonschema-specifications", "2025.9.1"),
        ("jsonschema-4.26.0-py3-none-any.whl", "jsonschema-specifications", None),
        ("jsonschema_specifications-2025.9.1.tar.gz", "jsonschema", None),
        ("numpy-2.4.6.zip", "numpy", "2.4.6"),
        ("numpy-2.4.6.exe", "numpy", None),
    ]
    for filename, name, version in cases:
        assert hash_lock.file_version(filename, name) == version, filename


def test_the_chart_names_no_image_nobody_can_pull():
    import yaml

    values = yaml.safe_load((ROOT / "helm" / "email-status-worker" / "values.yaml").read_text())
    assert values["image"]["repository"] == ""   # required at install: README, Deployment
    assert "image.repository is required" in (ROOT / "helm" / "email-status-worker" / "templates" / "_helpers.tpl").read_text()
