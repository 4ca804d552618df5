#!/usr/bin/env python3
"""Copy schemas/config.v1.json into the chart's values.schema.json as `properties.config`.

The chart validates `config:` with exactly the worker's own schema (less `$schema` and `$id`,
which only belong at a document's root). Run after every change to schemas/config.v1.json;
`--check` exits 1 when the chart's copy is stale (tests/unit/test_helm_chart.py runs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_SCHEMA = ROOT / "schemas" / "config.v1.json"
VALUES_SCHEMA = ROOT / "helm" / "email-status-worker" / "values.schema.json"


def config_part() -> dict:
    schema = json.loads(CONFIG_SCHEMA.read_text(encoding="utf-8"))
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def render() -> str:
    values = json.loads(VALUES_SCHEMA.read_text(encoding="utf-8"))
    values["properties"]["config"] = config_part()
    return json.dumps(values, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    new = render()
    if argv[1:] == ["--check"]:
        if VALUES_SCHEMA.read_text(encoding="utf-8") != new:
            print(f"{VALUES_SCHEMA.relative_to(ROOT)} is stale: run scripts/sync-values-schema.py", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print("usage: sync-values-schema.py [--check]", file=sys.stderr)
        return 2
    VALUES_SCHEMA.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
