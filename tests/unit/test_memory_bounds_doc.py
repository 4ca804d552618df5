"""Issue 15: the runbook's table of every in-memory structure and its bound names real things.

Each row's `worker/<module>.py: Name` references must exist (the module file, and `Name`, possibly
dotted like `Class.attr`, defined in it: a top-level definition, a class-level one, or an
attribute a method of the class assigns on `self`); every `esw_*` metric it names must be
registered; every backticked dotted config key (`kafka.restore_concurrency`, and account keys such
as `poll.lookback_days`) must be in schemas/config.v1.json.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path

import pytest

from tests.unit.test_docs_truth import RUNBOOK, section, series_names

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "config.v1.json"
HEADING = "## Memory: every structure and its bound"
COLUMNS = ["structure", "code", "holds", "per entry", "lives", "bound, and at the bound", "metric"]
CODE_REF = re.compile(r"`(worker/[\w/]+\.py): ([A-Za-z_][\w.]*)`")
METRIC = re.compile(r"\besw_[a-z0-9_]*[a-z0-9]")
CONFIG_KEY = re.compile(r"`([a-z_]+(?:\[\])?(?:\.[a-z0-9_]+(?:\[\])?)+)`")


def table(markdown: str) -> list[dict[str, str]]:
    """The rows of the first markdown table in `markdown`, as {column: cell}."""
    lines = [line.strip() for line in markdown.splitlines() if line.strip().startswith("|")]
    assert len(lines) >= 3, "no table"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == COLUMNS, header
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(header), f"a row with {len(cells)} cells: {line[:80]}"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def rows() -> list[dict[str, str]]:
    return table(section(RUNBOOK.read_text(encoding="utf-8"), HEADING))


# -- code references ------------------------------------------------------------------------------


def _names_in(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """What a module or class body defines: functions, classes, assigned and annotated names."""
    out: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        out[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


def _self_attributes(cls: ast.ClassDef) -> set[str]:
    """Attributes the class's methods assign on `self` (self.x = ..., self.x: T = ..., self.x += ...)."""
    found = set()
    for node in ast.walk(cls):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            for attr in ast.walk(target):
                if isinstance(attr, ast.Attribute) and isinstance(attr.value, ast.Name) and attr.value.id == "self":
                    found.add(attr.attr)
    return found


@functools.cache
def _module(path: str) -> ast.Module:
    return ast.parse((ROOT / path).read_text(encoding="utf-8"))


def defined(path: str, dotted: str) -> bool:
    """Whether `dotted` (Name, or Class.attr, Class.Inner.attr) is defined in the module at `path`."""
    if not (ROOT / path).is_file():
        return False
    scope: ast.AST = _module(path)
    for part in dotted.split("."):
        body = getattr(scope, "body", None)
        if not isinstance(body, list):
            return False
        names = _names_in(body)
        if part in names:
            scope = names[part]
        elif isinstance(scope, ast.ClassDef) and part in _self_attributes(scope):
            scope = ast.Pass()   # an instance attribute: nothing is defined below it
        else:
            return False
    return True


def code_refs(cell: str) -> list[tuple[str, str]]:
    return CODE_REF.findall(cell)


# -- config keys ----------------------------------------------------------------------------------


@functools.cache
def _schema() -> dict:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def _resolve(node: dict, parts: list[str]) -> bool:
    for part in parts:
        part = part.removesuffix("[]")
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            node = node["items"]
    return True


def config_key_known(key: str) -> bool:
    """A key of the configuration: from its root (`kafka.shards`), or of an account
    (`poll.lookback_days`, `webhook.replay_window_secs`)."""
    schema, parts = _schema(), key.split(".")
    account = schema["properties"]["accounts"]["items"]
    return _resolve(schema, parts) or _resolve(account, parts)


def config_keys(row: dict[str, str]) -> set[str]:
    return {key for cell in row.values() for key in CONFIG_KEY.findall(cell)}


# -- the helpers, on cases written out by hand -----------------------------------------------------


def test_defined_finds_modules_classes_and_attributes():
    assert defined("worker/dedup.py", "DedupTable")
    assert defined("worker/dedup.py", "DedupTable.MERGE_AT")          # class-level
    assert defined("worker/dedup.py", "DedupTable._recent")           # assigned on self
    assert defined("worker/poll/ids.py", "IdTracker._heap")           # an attrs field
    assert defined("worker/emit.py", "producer_settings")             # a function
    assert defined("worker/metrics.py", "REGISTRY")                   # a module constant
    assert not defined("worker/dedup.py", "DedupTable.nothing_here")
    assert not defined("worker/dedup.py", "NoSuchTable")
    assert not defined("worker/no_such_module.py", "DedupTable")
    assert not defined("worker/dedup.py", "DedupTable._recent.deeper")


def test_config_keys_resolve_from_the_root_or_an_account():
    assert config_key_known("kafka.restore_concurrency")
    assert config_key_known("poll.lookback_days")
    assert config_key_known("accounts[].poll.lookback_days")
    assert config_key_known("webhook.replay_window_secs")
    assert not config_key_known("kafka.no_such_key")
    assert not config_key_known("poll.no_such_key")
    assert not config_key_known("nothing.at_all")


def test_the_table_is_the_runbook_section_after_sizing_memory():
    headings = [line for line in RUNBOOK.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    at = headings.index(HEADING)
    assert headings[at - 1] == "## Sizing memory" and headings[at + 1] == "## Adding replicas"
    assert len(rows()) >= 15


# -- the table ------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", rows(), ids=lambda row: row["structure"])
def test_every_code_reference_exists(row):
    refs = code_refs(row["code"])
    assert refs, f"{row['structure']}: no `worker/<module>.py: Name` in the code column"
    missing = [f"{path}: {name}" for path, name in refs if not defined(path, name)]
    assert not missing, f"{row['structure']}: not defined: {missing}"


@pytest.mark.parametrize("row", rows(), ids=lambda row: row["structure"])
def test_every_metric_named_is_registered(row):
    unknown = set(METRIC.findall(row["metric"])) - series_names()
    assert not unknown, f"{row['structure']}: metrics not registered: {sorted(unknown)}"


@pytest.mark.parametrize("row", rows(), ids=lambda row: row["structure"])
def test_every_config_key_named_is_in_the_schema(row):
    unknown = sorted(key for key in config_keys(row) if not config_key_known(key))
    assert not unknown, f"{row['structure']}: not in schemas/config.v1.json: {unknown}"


def test_config_keys_are_checked_at_all():
    named = set().union(*(config_keys(row) for row in rows()))
    assert {"kafka.restore_concurrency", "http.max_inflight_body_bytes", "poll.lookback_days"} <= named
