"""CHANGELOG.md names the previous release the upgrade test builds (tests/integration/releases.py):
the newest `## vX.Y.Z (commit <sha>)` entry, never the Unreleased section."""

from __future__ import annotations

import re

import pytest

from tests.integration.releases import ROOT, previous_release_entry

CHANGELOG = """# Changelog

## Unreleased

Formats: none changed.

## v0.3.1 (commit 0123abc)

## v0.3.0 (commit 89abcdef0123456789abcdef0123456789abcdef)
"""


def test_the_newest_released_entry_is_the_previous_release():
    assert previous_release_entry(CHANGELOG) == ("v0.3.1", "0123abc")


def test_a_changelog_without_a_released_commit_is_refused():
    with pytest.raises(LookupError):
        previous_release_entry("# Changelog\n\n## Unreleased\n\n## v0.1.0 (not yet)\n")


def test_every_release_entry_names_its_formats():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    name, commit = previous_release_entry(text)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", name) and len(commit) >= 7
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert sections and sections[0].startswith("Unreleased")
    for section in sections:
        assert "Formats" in section, section.splitlines()[0]
