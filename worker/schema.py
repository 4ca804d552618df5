"""The JSON schemas of schemas/ (installed inside the package as worker/schemas), and the config
schema's defaults: each default is written once, there, and read from there."""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping
from typing import Any

import orjson


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema from schemas/ (installed inside the package as worker/schemas)."""
    return orjson.loads(importlib.resources.files("worker").joinpath("schemas", name).read_bytes())


def _schema_defaults(node: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every `default` of the config schema by key path (an account's keys under "accounts")."""
    out: dict[tuple[str, ...], Any] = {}
    if "default" in node and path:
        out[path] = node["default"]
    for key, child in node.get("properties", {}).items():
        out.update(_schema_defaults(child, (*path, key)))
    if isinstance(node.get("items"), dict):
        out.update(_schema_defaults(node["items"], path))
    return out


# Each default is written once, in schemas/config.v1.json, and read from there.
SCHEMA_DEFAULTS = _schema_defaults(load_schema("config.v1.json"))


def default(*path: str) -> Any:
    return SCHEMA_DEFAULTS[path]
