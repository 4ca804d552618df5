"""The configuration (DESIGN.md 7a): YAML, validated against schemas/config.v1.json, frozen.

`load_config` reports every problem at once as `ConfigError.problems`, each naming the key path.
Secrets are resolved here, once, from the environment variables and files the config names; no
message ever contains a secret's value.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import orjson
import yaml

from worker.model import EventType, Provider


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} configuration problem(s):\n  " + "\n  ".join(problems))
        self.problems = problems


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema from schemas/ (installed inside the package as worker/schemas)."""
    return orjson.loads(importlib.resources.files("worker").joinpath("schemas", name).read_bytes())


# -- the frozen configuration -------------------------------------------------------------------


@attrs.frozen
class KafkaConfig:
    bootstrap_servers: str
    topic_prefix: str = "email.status"
    shards: int = 12
    group_id: str = "email-status-worker"
    replication_factor: int = -1
    output_partitions: int = -1
    security: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    produce_timeout_secs: float = 10.0
    transaction_timeout_secs: float = 60.0
    batch_max_records: int = 1000
    batch_linger_ms: int = 75
    session_timeout_ms: int = 10_000

    def client_kwargs(self) -> dict[str, Any]:
        """Connection settings shared by every aiokafka client of the worker."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.security}

    def topic(self, suffix: str) -> str:
        return f"{self.topic_prefix}.{suffix}"


@attrs.frozen
class HttpConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    ack_timeout_secs: float = 2.5


@attrs.frozen
class DedupConfig:
    tolerance_secs: float = 60.0
    webhook_horizon_days: int = 3


@attrs.frozen
class WebhookConfig:
    enabled: bool = True
    keys: tuple[str, ...] = attrs.field(default=(), repr=False)
    path_tokens: tuple[str, ...] = attrs.field(default=(), repr=False)   # current first, then the previous
    replay_window_secs: float = 259_200.0


@attrs.frozen
class PollConfig:
    enabled: bool
    quota_per_minute: int
    quota_share: float
    lookback_days: int
    interval_min_secs: float
    interval_max_secs: float
    cache_ttl_secs: float
    quota_window_secs: float
    request_timeout_secs: float
    retry_attempts: int
    retry_max_secs: float
    id_max_age_days: int

    @property
    def calls_per_second(self) -> float:
        """The limiter's ceiling: the configured share of the quota."""
        return self.quota_per_minute * self.quota_share / self.quota_window_secs


@attrs.frozen
class AccountConfig:
    name: str
    provider: Provider
    base_url: str
    region: str | None
    api_user: str | None
    api_key: str | None = attrs.field(repr=False)
    secret_id: str | None = attrs.field(repr=False)
    secret_key: str | None = attrs.field(repr=False)
    webhook: WebhookConfig
    poll: PollConfig
    sender_rejection: EventType | None      # None: as documented per provider
    options: Mapping[str, str]

    def context(self):  # -> providers.base.AccountContext (import kept local: providers import config-free)
        from worker.providers.base import AccountContext

        return AccountContext(
            name=self.name,
            provider=self.provider,
            base_url=self.base_url,
            api_user=self.api_user,
            api_key=self.api_key,
            secret_id=self.secret_id,
            secret_key=self.secret_key,
            region=self.region,
            sender_rejection=self.sender_rejection,
            webhook_keys=self.webhook.keys,
            options=dict(self.options),
        )


@attrs.frozen
class Config:
    kafka: KafkaConfig
    http: HttpConfig
    dedup: DedupConfig
    accounts: tuple[AccountConfig, ...]
    emit_raw: bool = False
    sent_topic: str | None = None
    shutdown_grace_secs: float = 25.0
    log_level: str = "INFO"

    def account(self, provider: Provider | str, name: str) -> AccountConfig | None:
        return self._by_key.get((Provider(provider), name))

    @functools.cached_property
    def _by_key(self) -> dict[tuple[Provider, str], AccountConfig]:
        return {(a.provider, a.name): a for a in self.accounts}


# -- loading ------------------------------------------------------------------------------------


def load_config(path: str | Path, env: Mapping[str, str]) -> Config:
    """Read, validate and resolve a config file. Raises ConfigError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{path}: {where}not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return parse_config(data, env)


def parse_config(data: Any, env: Mapping[str, str]) -> Config:
    problems = schema_problems(data)
    if problems:
        # Semantic checks assume the schema's shape; report the shape problems alone.
        raise ConfigError(problems)
    builder = _Builder(env)
    config = builder.build(data)
    if builder.problems:
        raise ConfigError(builder.problems)
    return config


def schema_problems(data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(load_schema("config.v1.json"))
    problems = []
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.append(f"{_path(err.absolute_path)}: {_schema_message(err)}")
    return problems


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_message(err: jsonschema.ValidationError) -> str:
    # jsonschema's messages quote the offending instance; that instance may be a secret someone
    # pasted inline, so rebuild the common messages without it.
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
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
        return f"must be of type {err.validator_value}"
    if err.validator == "pattern":
        return f"does not match the pattern {err.validator_value}"
    if err.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength"):
        return f"violates {err.validator} {err.validator_value}"
    return f"is invalid ({err.validator})"


class _Builder:
    """Turns schema-valid data into frozen config, collecting semantic problems as it goes."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def secret(self, section: Mapping[str, Any], name: str, path: str) -> str | None:
        env_key, file_key = f"{name}_env", f"{name}_file"
        if env_key in section and file_key in section:
            self.problems.append(f"{path}: give {env_key} or {file_key}, not both")
            return None
        if env_key in section:
            value = self.env.get(section[env_key], "")
            if not value.strip():
                self.problems.append(f"{path}.{env_key}: environment variable {section[env_key]} is not set or empty")
                return None
            return value.strip()
        if file_key in section:
            try:
                value = Path(section[file_key]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problems.append(f"{path}.{file_key}: cannot read {section[file_key]}: {exc.strerror}")
                return None
            if not value:
                self.problems.append(f"{path}.{file_key}: {section[file_key]} is empty")
                return None
            return value
        return None

    def build(self, data: Mapping[str, Any]) -> Config:
        k = dict(data["kafka"])
        security = dict(k.pop("security", {}) or {})
        password = self.secret(security, "sasl_plain_password", "kafka.security")
        security = {key: v for key, v in security.items() if not key.startswith("sasl_plain_password")}
        if password is not None:
            security["sasl_plain_password"] = password
        if self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            k["bootstrap_servers"] = self.env["KAFKA_BOOTSTRAP_SERVERS"]
        kafka = KafkaConfig(security=security, **k)

        accounts = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(data.get("accounts") or []):
            path = f"accounts[{i}]"
            if raw["name"] in seen:
                self.problems.append(f"{path}.name: {raw['name']!r} is already used by accounts[{seen[raw['name']]}]")
            seen.setdefault(raw["name"], i)
            account = self.account(raw, path)
            if account is not None:
                accounts.append(account)

        d = data.get("dedup") or {}
        return Config(
            kafka=kafka,
            http=HttpConfig(**(data.get("http") or {})),
            dedup=DedupConfig(**d),
            accounts=tuple(accounts),
            emit_raw=bool(data.get("emit_raw", False)),
            sent_topic=(data.get("inputs") or {}).get("sent_topic"),
            shutdown_grace_secs=float((data.get("shutdown") or {}).get("grace_secs", 25.0)),
            log_level=(data.get("logging") or {}).get("level", "INFO"),
        )

    def account(self, raw: Mapping[str, Any], path: str) -> AccountConfig | None:
        from worker.providers import get_module

        provider = Provider(raw["provider"])
        module = get_module(provider)
        defaults = module.DEFAULTS
        creds = raw.get("credentials") or {}
        hook = raw.get("webhook") or {}
        poll_raw = raw.get("poll") or {}
        poll_on = poll_raw.get("enabled", True)
        hook_on = hook.get("enabled", True)
        before = len(self.problems)

        api_key = self.secret(creds, "api_key", f"{path}.credentials")
        secret_key = self.secret(creds, "secret_key", f"{path}.credentials")
        secret_id = creds.get("secret_id")
        if "secret_id" in creds and ("secret_id_env" in creds or "secret_id_file" in creds):
            self.problems.append(f"{path}.credentials: give secret_id, secret_id_env or secret_id_file, only one")
        secret_id = secret_id or self.secret(creds, "secret_id", f"{path}.credentials")
        app_key = self.secret(hook, "app_key", f"{path}.webhook")
        previous_key = self.secret(hook, "previous_app_key", f"{path}.webhook")
        path_token = self.secret(hook, "path_token", f"{path}.webhook")
        previous_token = self.secret(hook, "previous_path_token", f"{path}.webhook")

        def need(ok: bool, what: str, why: str) -> None:
            if not ok:
                self.problems.append(f"{path}: {provider.value} needs {what} ({why})")

        if provider in (Provider.ENGAGELAB, Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD):
            if poll_on:
                need("api_user" in creds, "credentials.api_user", "for polling")
                need(_has_secret(creds, "api_key"), "credentials.api_key_env or api_key_file", "for polling")
            if hook_on:
                need(_has_secret(hook, "app_key"), "webhook.app_key_env or app_key_file", "to verify webhooks")
        elif provider is Provider.UNISENDER:
            need(_has_secret(creds, "api_key"), "credentials.api_key_env or api_key_file", "for polling and webhook auth")
        elif provider is Provider.TENCENT_SES:
            if poll_on:
                need(bool(creds.get("secret_id")) or _has_secret(creds, "secret_id"), "credentials.secret_id", "for polling")
                need(_has_secret(creds, "secret_key"), "credentials.secret_key_env or secret_key_file", "for polling")
            if hook_on:
                need(_has_secret(hook, "path_token"), "webhook.path_token_env or path_token_file",
                     "Tencent does not sign webhooks; an unguessable path protects them")
            for token in (path_token, previous_token):
                if token is not None and len(token) < 16:
                    self.problems.append(f"{path}.webhook: a path token must be at least 16 characters")

        options = dict(raw.get("options") or {})
        for name, value in options.items():
            spec = module.OPTIONS.get(name)
            if spec is None:
                known = ", ".join(sorted(module.OPTIONS)) or "none"
                self.problems.append(f"{path}.options.{name}: unknown option for {provider.value} (known: {known})")
            elif value not in spec.choices:
                self.problems.append(f"{path}.options.{name}: must be one of {', '.join(spec.choices)}")

        cache_ttl = float(poll_raw.get("cache_ttl_secs", defaults.cache_ttl_secs))
        interval_min = float(poll_raw.get("interval_min_secs", cache_ttl or 60.0))
        interval_max = float(poll_raw.get("interval_max_secs", 3600.0))
        if interval_min < cache_ttl:
            self.problems.append(f"{path}.poll.interval_min_secs: below the provider's cache TTL ({cache_ttl:g} s); such sweeps would only return cached results")
        if interval_max < interval_min:
            self.problems.append(f"{path}.poll.interval_max_secs: smaller than interval_min_secs ({interval_min:g})")
        lookback = int(poll_raw.get("lookback_days", 3))
        if lookback > defaults.retention_days:
            self.problems.append(f"{path}.poll.lookback_days: {provider.value} keeps statuses for {defaults.retention_days} days only")

        if len(self.problems) > before:
            return None
        keys = tuple(k for k in (app_key, previous_key) if k)
        if provider is Provider.UNISENDER and not keys and api_key:
            keys = (api_key,)  # UniSender signs webhooks with the account's API key
        return AccountConfig(
            name=raw["name"],
            provider=provider,
            base_url=(raw.get("base_url") or defaults.base_url).rstrip("/"),
            region=raw.get("region"),
            api_user=creds.get("api_user"),
            api_key=api_key,
            secret_id=secret_id,
            secret_key=secret_key,
            webhook=WebhookConfig(
                enabled=hook_on,
                keys=keys,
                path_tokens=tuple(t for t in (path_token, previous_token) if t),
                replay_window_secs=float(hook.get("replay_window_secs", 259_200)),
            ),
            poll=PollConfig(
                enabled=poll_on,
                quota_per_minute=int(poll_raw.get("quota_per_minute", defaults.quota_per_minute)),
                quota_share=float(poll_raw.get("quota_share", 0.8)),
                lookback_days=lookback,
                interval_min_secs=interval_min,
                interval_max_secs=interval_max,
                cache_ttl_secs=cache_ttl,
                quota_window_secs=float(poll_raw.get("quota_window_secs", 60.0)),
                request_timeout_secs=float(poll_raw.get("request_timeout_secs", 30.0)),
                retry_attempts=int(poll_raw.get("retry_attempts", 4)),
                retry_max_secs=float(poll_raw.get("retry_max_secs", 60.0)),
                id_max_age_days=int(poll_raw.get("id_max_age_days", 30)),
            ),
            sender_rejection=_SENDER_REJECTION[raw.get("sender_rejection", "documented")],
            options=options,
        )


_SENDER_REJECTION = {"documented": None, "invalid": EventType.INVALID, "soft_bounce": EventType.SOFT_BOUNCE}


def _has_secret(section: Mapping[str, Any], name: str) -> bool:
    return f"{name}_env" in section or f"{name}_file" in section
