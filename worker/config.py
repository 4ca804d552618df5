"""The configuration (DESIGN.md 7a): YAML, validated against schemas/config.v1.json, frozen.

`load_config` reports every problem at once as `ConfigError.problems`, each naming the key path.
Secrets are resolved once, from the environment variables and files the config names
(worker.configbuild); no message ever contains a secret's value. The frozen classes live in
worker.configtypes and are imported from here.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from worker.configbuild import Builder
from worker.configchecks import CONFIG_FILE_MAX_BYTES, FileTooLarge, read_bounded
from worker.configtypes import (
    INTERVAL_MIN_WITHOUT_CACHE_SECS,
    AccountConfig,
    Config,
    DedupConfig,
    HttpConfig,
    KafkaConfig,
    PollConfig,
    WebhookConfig,
)
from worker.errors import ConfigError
from worker.schema import load_schema

__all__ = ["INTERVAL_MIN_WITHOUT_CACHE_SECS", "AccountConfig", "Config", "DedupConfig", "HttpConfig", "KafkaConfig",
           "PollConfig", "WebhookConfig", "load_config", "load_schema", "parse_config", "schema_problems"]


# -- loading ------------------------------------------------------------------------------------


def load_config(path: str | Path, env: Mapping[str, str],
                checks: Callable[[Config, bool], list[str]] | None = None) -> Config:
    """Read, validate and resolve a config file. Raises ConfigError listing every problem
    (`checks`: more problems of the resolved config, as `parse_config` takes them)."""
    try:
        text = read_bounded(str(path), CONFIG_FILE_MAX_BYTES)
    except FileTooLarge as exc:
        raise ConfigError([f"{path}: cannot read: {exc}, not a config file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text (the byte at offset {exc.start} does not decode; "
                           "save the file as UTF-8)"]) from None
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        repeated = _repeated_keys(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())   # (a character YAML refuses)
        raise ConfigError([f"{path}: {where}not valid YAML: {problem}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    repeated = [f"{path}: {problem}" for problem in repeated]
    try:
        config = parse_config(data, env, checks)
    except ConfigError as exc:
        raise ConfigError(repeated + exc.problems) from None
    if repeated:
        raise ConfigError(repeated)
    return config


def _repeated_keys(root: yaml.Node | None) -> list[str]:
    """A key given twice in one mapping of the document as written (PyYAML keeps the last one
    silently: a second `kafka:` block, or `shards` twice, would hide the first from every check).
    Read before the document is built, so the keys a merge (`<<: *defaults`) brings, which the
    mapping may override, are not counted."""
    problems: list[tuple[int, str]] = []
    seen_nodes: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:   # an alias: the anchored node again
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                stack.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                if (key.tag, key.value) in first:
                    problems.append((line, f"line {line}: key {key.value[:64]!r} is given twice in the same mapping "
                                           f"(first on line {first[key.tag, key.value]}); only one is read"))
                first.setdefault((key.tag, key.value), line)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return [problem for _, problem in sorted(problems)]


def parse_config(data: Any, env: Mapping[str, str],
                 checks: Callable[[Config, bool], list[str]] | None = None) -> Config:
    """The resolved config, or ConfigError naming every problem at once: the schema's, then the
    resolving ones (unset variables, unreadable files, missing credentials, repeated names...) of
    every part the schema found sound, then `checks` of the result (the TLS files: worker.__main__),
    told whether `kafka.security` is sound (with a problem of its own, its TLS files are only looked
    for, not loaded: the settings are then not all the file's).
    Parts with schema problems are left out of the later checks (`_sound`): those assume the shape,
    and a problem they would find in a value the schema refused says nothing new."""
    errors = _schema_errors(data)
    problems = list(dict.fromkeys(_described(err) for err in errors))   # one line per problem, however many rules found it
    builder = Builder(env)
    config: Config | None = None
    if isinstance(data, dict):
        sound, refused = _sound(data, errors) if errors else (data, [])
        try:
            config = builder.build(sound)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            if not errors:
                raise   # a shape the schema accepts and the builder cannot read: a bug, not a problem
        problems += [p for p in builder.problems if p not in problems and not _names_any(p, refused)]
    if config is not None and checks is not None:
        problems += checks(config, not any(p.startswith("kafka.security") for p in problems))
    if problems or config is None:
        raise ConfigError(problems)
    return config


def schema_problems(data: Any) -> list[str]:
    return [_described(err) for err in _schema_errors(data)]


def _described(err: jsonschema.ValidationError) -> str:
    return f"{_path(err.absolute_path)}: {_schema_message(err)}"


# JSON Schema counts 3.0 as an integer and has no word against NaN; aiokafka and the rest take
# neither (`kafka.shards: 3.0` passed check-config and `run` failed in aiokafka). Here an integer is
# written without a decimal point, and a number is finite.
_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
    "integer": lambda _, value: type(value) is int,
    "number": lambda _, value: type(value) is int or (type(value) is float and math.isfinite(value)),
})
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPES)


def _schema_errors(data: Any) -> list[jsonschema.ValidationError]:
    validator = _Validator(load_schema("config.v1.json"))
    return sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])


_PLACEHOLDER_KAFKA = {"bootstrap_servers": "placeholder:9092"}   # lets accounts be checked without a kafka section


def _sound(data: dict, errors: list[jsonschema.ValidationError]) -> tuple[dict, list[str]]:
    """A copy of `data` without what the schema refused, and the key paths of the values removed:
    an account with any problem of its own is left out whole (None in its place, so the others keep
    their index in the messages); elsewhere an unknown key is removed, a bad value is removed (its
    default applies: a later problem naming that key is not reported), and a missing required key
    is filled in where the checks need one (`kafka.bootstrap_servers`, `accounts`)."""
    out = copy.deepcopy(data)
    refused: list[str] = []
    for err in errors:
        parts = list(err.absolute_path)
        if len(parts) >= 2 and parts[0] == "accounts" and isinstance(parts[1], int):
            accounts = out.get("accounts")
            if isinstance(accounts, list) and parts[1] < len(accounts):
                accounts[parts[1]] = None
            continue
        if err.validator == "required":
            continue
        if err.validator == "additionalProperties":
            node = _at(out, parts)
            if isinstance(node, dict):
                for key in set(node) - set(err.schema.get("properties", {})):
                    node.pop(key, None)
            continue
        parent = _at(out, parts[:-1]) if parts else None
        if isinstance(parent, dict):
            parent.pop(parts[-1], None)
            refused.append(_path(parts))
    kafka = out.get("kafka")
    if not isinstance(kafka, dict):
        kafka = out["kafka"] = {}
    if "bootstrap_servers" not in kafka:
        kafka.update(_PLACEHOLDER_KAFKA)
    if not isinstance(out.get("accounts"), list):
        out["accounts"] = []
    return out, refused


def _names_any(problem: str, paths: list[str]) -> bool:
    """Whether a problem names one of these key paths (or a key under one)."""
    return any(re.search(rf"(?<![\w.]){re.escape(path)}(?!\w)", problem) for path in paths)


def _at(node: Any, parts: list) -> Any:
    for part in parts:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_message(err: jsonschema.ValidationError) -> str:
    # jsonschema's messages quote the offending instance; that instance may be a secret someone
    # pasted inline, so rebuild the common messages without it.
    if err.validator == "additionalProperties":
        # YAML keys may be numbers or null: named as text
        extra = sorted(str(k) for k in set(err.instance) - set(err.schema.get("properties", {})))
        hint = ""
        if any(not k.endswith(("_env", "_file")) and f"{k}_env" in err.schema.get("properties", {}) for k in extra):
            hint = " (secrets are given as <name>_env or <name>_file, never inline)"
        return f"unknown key(s) {', '.join(extra)}{hint}"
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return f"missing required key(s) {', '.join(missing)}"
    if err.validator == "enum":
        return f"must be one of {', '.join(map(str, err.validator_value))}"
    if err.validator == "type":
        wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        if isinstance(err.instance, float) and not math.isfinite(err.instance) and "number" in wanted:
            return "must be a finite number (not .nan or .inf)"
        if isinstance(err.instance, float) and "integer" in wanted:
            return "must be a whole number written without a decimal point"
        if isinstance(err.instance, bool) and "string" in wanted:
            return "must be of type string (YAML reads a bare on, off, yes, no, true or false as a boolean: quote it)"
        if err.instance is None and not err.absolute_path:
            return "the file is empty (it must hold the configuration's mapping)"
        return f"must be of type {err.validator_value}"
    if err.validator == "pattern":
        return f"does not match the pattern {err.validator_value}"
    if err.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength"):
        return f"violates {err.validator} {err.validator_value}"
    return f"is invalid ({err.validator})"
