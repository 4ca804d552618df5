"""docs/configuration.md against schemas/config.v1.json, the provider modules and the chart.

Every key of the schema (at every depth, `accounts[]` for list items) has a row in a
`| key | type | default | meaning |` table, with the schema's default, and every such row names a
key of the schema. Provider defaults and options are checked against the provider modules, and
the chart's top-level values against its values.yaml.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.providers import all_modules

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
SCHEMA = json.loads((ROOT / "schemas" / "config.v1.json").read_text(encoding="utf-8"))
_NO_DEFAULT = object()


def schema_keys(node: dict[str, Any] = SCHEMA, prefix: str = "") -> dict[str, tuple[Any, bool]]:
    """{dotted key: (default or _NO_DEFAULT, required)} for every property of the schema."""
    out: dict[str, tuple[Any, bool]] = {}
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        out[key] = (sub.get("default", _NO_DEFAULT), name in required)
        if "properties" in sub:
            out.update(schema_keys(sub, f"{key}."))
        if isinstance(sub.get("items"), dict) and "properties" in sub["items"]:
            out.update(schema_keys(sub["items"], f"{key}[]."))
    return out


def tables(header: str) -> list[list[str]]:
    """The body rows (as cell lists) of every markdown table of DOC whose header row is `header`."""
    rows: list[list[str]] = []
    inside = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.strip() == header:
            inside = True
            continue
        if inside and re.fullmatch(r"\|(\s*-+\s*\|)+", line.strip()):
            continue
        if inside and line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        inside = False
    return rows


def documented() -> dict[str, str]:
    rows = tables("| key | type | default | meaning |")
    assert rows, f"{DOC} has no `| key | type | default | meaning |` table"
    out: dict[str, str] = {}
    for cells in rows:
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        assert m, f"first cell must be one `key`: {cells[0]!r}"
        assert m[1] not in out, f"{m[1]} is documented twice"
        out[m[1]] = cells[2]
    return out


def literal(cell: str) -> Any:
    m = re.fullmatch(r"`([^`]*)`", cell)
    return _NO_DEFAULT if m is None else yaml.safe_load(m[1])


def test_every_schema_key_is_documented():
    missing = sorted(set(schema_keys()) - set(documented()))
    assert not missing, f"keys of schemas/config.v1.json missing from docs/configuration.md: {missing}"


def test_every_documented_key_is_in_the_schema():
    extra = sorted(set(documented()) - set(schema_keys()))
    assert not extra, f"docs/configuration.md documents keys the schema does not have: {extra}"


@pytest.mark.parametrize("key", sorted(schema_keys()))
def test_documented_default_matches_the_schema(key):
    default, required = schema_keys()[key]
    cell = documented().get(key)
    if cell is None:
        pytest.fail(f"{key} is not documented")
    if default is not _NO_DEFAULT:
        shown = literal(cell)
        assert shown is not _NO_DEFAULT, f"{key}: the default cell must be the literal `{json.dumps(default)}`, not {cell!r}"
        assert shown == default and isinstance(shown, bool) == isinstance(default, bool), (
            f"{key}: documented default {cell} differs from the schema's {json.dumps(default)}")
    elif required:
        assert cell == "required", f"{key} is required by the schema: its default cell must say `required`"
    else:
        assert literal(cell) is _NO_DEFAULT and cell != "required", (
            f"{key}: the schema declares no default, so the doc must not show a literal or `required` ({cell!r})")


def test_provider_defaults_table_matches_the_modules():
    rows = {r[0].strip("`"): r for r in tables(
        "| provider | default base_url | quota_per_minute | cache_ttl_secs | status kept (days) | polling |")}
    modules = {p.value: m for p, m in all_modules().items()}
    assert set(rows) == set(modules)
    for name, module in modules.items():
        d = module.DEFAULTS
        _, base_url, quota, cache, kept, polling = rows[name]
        assert base_url.strip("`") == d.base_url, name
        assert literal(quota) == d.quota_per_minute, name
        assert literal(cache) == d.cache_ttl_secs, name
        assert literal(kept) == d.retention_days, name
        assert polling == {"date": "by send date", "ids": "by email id"}[d.polling], name


def test_provider_options_table_matches_the_modules():
    rows = tables("| provider | option | default | choices | meaning |")
    doc = {(r[0].strip("`"), r[1].strip("`")): r for r in rows}
    code = {(p.value, name): opt for p, m in all_modules().items() for name, opt in m.OPTIONS.items()}
    assert set(doc) == set(code)
    for key, opt in code.items():
        assert doc[key][2] == f"`{opt.default}`", key
        assert doc[key][3] == ", ".join(f"`{c}`" for c in opt.choices), key


def test_chart_values_are_documented():
    rows = tables("| value | default | meaning |")
    names = set()
    for cells in rows:
        for name in re.findall(r"`([^`]+)`", cells[0]):
            if not name.startswith("."):  # `.tag` after `image.repository`: same value
                names.add(name.split(".")[0])
    values = yaml.safe_load((ROOT / "helm" / "email-status-worker" / "values.yaml").read_text(encoding="utf-8"))
    assert set(values) <= names, f"chart values missing from docs/configuration.md: {sorted(set(values) - names)}"
    assert names <= set(values), f"documented chart values the chart does not have: {sorted(names - set(values))}"
