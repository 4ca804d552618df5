"""Resolving a schema-valid config (worker.config): secrets read from the environment variables and
files it names, each provider's credentials and options checked, the accounts' derived settings
(gap-driven polling, spread) settled, every problem collected, never a secret's value in one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from worker import configchecks as checks
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
from worker.model import EventType, Provider
from worker.providers import get_module
from worker.providers.base import AccountContext, Credentials, Need, ProviderDefaults
from worker.schema import default


class Builder:
    """Turns schema-valid data into frozen config, collecting semantic problems as it goes."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.notices: list[str] = []

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
                value = checks.read_bounded(section[file_key], checks.SECRET_FILE_MAX_BYTES).strip()
            except checks.FileTooLarge as exc:
                self.problems.append(f"{path}.{file_key}: {section[file_key]} is {exc}: not a secret's file")
                return None
            except OSError as exc:
                self.problems.append(f"{path}.{file_key}: cannot read {section[file_key]}: {exc.strerror}")
                return None
            except ValueError:   # a NUL byte in the path; or not UTF-8
                self.problems.append(f"{path}.{file_key}: cannot read {section[file_key]!r}: not a path to a UTF-8 file")
                return None
            if not value:
                self.problems.append(f"{path}.{file_key}: {section[file_key]} is empty")
                return None
            return value
        return None

    def build(self, data: Mapping[str, Any]) -> Config:
        k = dict(data["kafka"])
        security = self.security(dict(k.pop("security", {}) or {}))
        from_env = bool(self.env.get("KAFKA_BOOTSTRAP_SERVERS"))
        if from_env:
            k["bootstrap_servers"] = self.env["KAFKA_BOOTSTRAP_SERVERS"]
        kafka = KafkaConfig(security=security, **k)
        http = HttpConfig(**(data.get("http") or {}))
        self.problems += (checks.bootstrap_problems(kafka.bootstrap_servers, from_env) + checks.kafka_problems(kafka)
                          + checks.http_problems(http))

        accounts = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(data.get("accounts") or []):
            if raw is None:   # left out by `_sound`: the schema's problems say why
                continue
            path = f"accounts[{i}]"
            if raw["name"] in seen:
                self.problems.append(f"{path}.name: {raw['name']!r} is already used by accounts[{seen[raw['name']]}]")
            seen.setdefault(raw["name"], i)
            accounts.append((i, self.account(raw, path)))

        sent_topic = (data.get("inputs") or {}).get("sent_topic")
        if sent_topic is not None:
            self.problems += checks.topic_problems(sent_topic, "inputs.sent_topic")
        resolved = [self.gap_driven(a, sent_topic, i) for i, a in accounts]
        for i, account in zip((i for i, _ in accounts), resolved, strict=True):
            self.check_spread(account, kafka.shards, f"accounts[{i}].spread")

        # Only what the file gives is passed: every other value is the schema's default.
        top = {"emit_raw": data.get("emit_raw"),
               "sent_topic": sent_topic,
               "shutdown_grace_secs": (data.get("shutdown") or {}).get("grace_secs"),
               "log_level": (data.get("logging") or {}).get("level"),
               "deliverability_domains": (data.get("metrics") or {}).get("deliverability_domains")}
        return Config(kafka=kafka, http=http,
                      dedup=DedupConfig(**(data.get("dedup") or {})), accounts=tuple(resolved),
                      notices=tuple(self.notices),
                      **{key: v for key, v in top.items() if v is not None})

    def security(self, given: dict[str, Any]) -> dict[str, str]:
        """The `kafka.security` settings with their secrets resolved (worker.kafka_tls turns the
        TLS files into the context aiokafka takes, and check-config loads them)."""
        path, protocol = "kafka.security", given.get("security_protocol", "PLAINTEXT")
        out = {key: v for key, v in given.items() if not key.endswith(("_env", "_file")) or (key.startswith("ssl_")
               and key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"))}
        for secret in ("sasl_plain_password", "ssl_key_password"):
            value = self.secret(given, secret, path)
            if value is not None:
                out[secret] = value
        if protocol.startswith("SASL_"):
            for need in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
                if need not in given and not _has_secret(given, need):
                    # named by its key path, so a value the schema refused is not reported missing too
                    if "pass" in need:
                        self.problems.append(f"{path}.{need}_env: {protocol} needs it, or {path}.{need}_file")
                    else:
                        self.problems.append(f"{path}.{need}: {protocol} needs it")
        # Named by the protocol's key path: when the schema refused the protocol, these say nothing.
        sasl = sorted(k for k in given if k.startswith("sasl_"))
        if sasl and not protocol.startswith("SASL_"):
            self.problems.append(f"{path}.security_protocol: {protocol}, but {', '.join(sasl)} set "
                                 "(use SASL_PLAINTEXT or SASL_SSL for SASL, or remove them)")
        tls_files = sorted(k for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if k in given)
        if tls_files and not protocol.endswith("SSL"):
            self.problems.append(f"{path}.security_protocol: {protocol}, but {', '.join(tls_files)} set "
                                 "(use SSL or SASL_SSL for TLS)")
        if ("ssl_certfile" in given) != ("ssl_keyfile" in given):
            self.problems.append(f"{path}: mutual TLS needs both ssl_certfile and ssl_keyfile")
        return out

    def account(self, raw: Mapping[str, Any], path: str) -> AccountConfig:
        provider = Provider(raw["provider"])
        module = get_module(provider)
        defaults = module.DEFAULTS
        sections = {"credentials": raw.get("credentials") or {}, "webhook": raw.get("webhook") or {}}
        poll_raw = dict(raw.get("poll") or {})
        hook_raw = dict(sections["webhook"])
        poll = PollConfig(**_poll_fields(poll_raw, defaults))
        hook_on = hook_raw.get("enabled", default("accounts", "webhook", "enabled"))

        # A disabled section needs nothing (docs/configuration.md): a variable or file it names may be
        # absent, and is used when it is there (`backfill` polls an account whose polling is off).
        # The credentials serve polling, and webhooks too where the provider signs them with an API
        # key (`webhook_key_fallback`: UniSender).
        used = {"credentials": poll.enabled or bool(hook_on and module.CREDENTIALS.webhook_key_fallback),
                "webhook": bool(hook_on)}
        values = self.credentials(sections, path, optional={s for s, on in used.items() if not on})
        self.require(module.CREDENTIALS, sections, values, path, provider, poll.enabled, hook_on)
        self.check_options(raw.get("options") or {}, module.OPTIONS, f"{path}.options", provider)
        self.unread(raw, sections, module.CREDENTIALS, path, provider)
        self.check_poll(poll, defaults.retention_days, f"{path}.poll", provider)
        if raw.get("base_url") is not None:
            self.problems += checks.base_url_problems(raw["base_url"], f"{path}.base_url")
        # Built whatever was found above, so the checks across accounts (gap-driven polling, spread)
        # report their problems in the same round (a config with problems is refused whole anyway).

        keys = tuple(v for v in (values.get("app_key"), values.get("previous_app_key")) if v)
        fallback = module.CREDENTIALS.webhook_key_fallback
        if not keys and fallback and values.get(fallback):
            keys = (values[fallback],)  # the provider signs webhooks with this credential
        context = AccountContext(
            name=raw["name"], provider=provider, base_url=(raw.get("base_url") or defaults.base_url).rstrip("/"),
            api_user=values.get("api_user"), api_key=values.get("api_key"), secret_id=values.get("secret_id"),
            secret_key=values.get("secret_key"), region=raw.get("region"),
            sender_rejection=SENDER_REJECTION[raw.get("sender_rejection", default("accounts", "sender_rejection"))],
            webhook_keys=keys, options=dict(raw.get("options") or {}))
        hook = {key: hook_raw[key] for key in ("enabled", "replay_window_secs") if key in hook_raw}
        tokens = tuple(v for v in (values.get("path_token"), values.get("previous_path_token")) if v)
        return AccountConfig(name=raw["name"], provider=provider, context=context,
                             webhook=WebhookConfig(path_tokens=tokens, **hook), poll=poll,
                             **({"spread": raw["spread"]} if "spread" in raw else {}))

    def credentials(self, sections: Mapping[str, Mapping[str, Any]], path: str,
                    optional: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
        """Every credential the account's sections give, secrets resolved (names as in `Need`). In an
        `optional` section (a disabled one) a secret that cannot be read is left out, no problem."""
        values: dict[str, str] = {}
        for section, names in CREDENTIAL_FIELDS.items():
            given = sections[section]
            for name in names:
                where = f"{path}.{section}"
                forms = [k for k in (name, f"{name}_env", f"{name}_file") if k in given]
                if name in given and len(forms) > 1:
                    self.problems.append(f"{where}: give {name}, {name}_env or {name}_file, only one")
                    continue
                before = len(self.problems)
                value = given[name] if name in given else self.secret(given, name, where)
                if section in optional and len(forms) == 1:
                    del self.problems[before:]   # unset or unreadable: left out (two ways stays a problem)
                if value:
                    values[name] = value
        return values

    def require(self, spec: Credentials, sections: Mapping[str, Mapping[str, Any]], values: Mapping[str, str],
                path: str, provider: Provider, poll_on: bool, hook_on: bool) -> None:
        """The provider's `CREDENTIALS`, checked against what the account gives."""
        needs = [*spec.always, *(spec.poll if poll_on else ()), *(spec.webhook if hook_on else ())]
        for need in needs:
            given = sections[need.section]
            if not (need.plain and need.name in given) and not _has_secret(given, need.name):
                self.problems.append(f"{path}: {provider.value} needs {_describe(need)} ({need.why})")
        fallback = spec.webhook_key_fallback   # signs webhooks when no webhook.app_key is given
        if hook_on and fallback and not _has_secret(sections["credentials"], fallback) \
                and not _has_secret(sections["webhook"], "app_key"):
            self.problems.append(f"{path}: {provider.value} needs credentials.{fallback}_env or {fallback}_file, or "
                                 "webhook.app_key_env or app_key_file (to verify webhooks)")
        for need in [*spec.always, *spec.poll, *spec.webhook]:
            if not need.min_length:
                continue
            for name in (need.name, f"previous_{need.name}"):
                value = values.get(name)
                if value is not None and len(value) < need.min_length:
                    given = sections[need.section]
                    key = next((k for k in (f"{name}_env", f"{name}_file", name) if k in given), name)
                    self.problems.append(f"{path}.{need.section}.{key}: a {need.name.replace('_', ' ')} must be at "
                                         f"least {need.min_length} characters")

    def unread(self, raw: Mapping[str, Any], sections: Mapping[str, Mapping[str, Any]], spec: Credentials,
               path: str, provider: Provider) -> None:
        """Notices for the keys of an account its provider never reads: a credential of another
        provider (`secret_id` on SendCloud, `app_key` on Tencent, which signs nothing) or `region`
        off Tencent. Likely a copied block or the wrong provider; harmless, so not a problem."""
        read = {need.name for need in (*spec.always, *spec.poll, *spec.webhook)}
        read |= {f"previous_{need.name}" for need in spec.webhook}
        read |= {"path_token", "previous_path_token"}   # honoured on every provider
        if spec.webhook_key_fallback:   # signs with this credential, or with webhook.app_key when given
            read |= {spec.webhook_key_fallback, "app_key", "previous_app_key"}
        for section, names in CREDENTIAL_FIELDS.items():
            given = sections[section]
            for name in names:
                for key in (name, f"{name}_env", f"{name}_file"):
                    if key in given and name not in read:
                        self.notices.append(f"{path}.{section}.{key}: {provider.value} does not use it (ignored)")
        if raw.get("region") is not None and provider is not Provider.TENCENT_SES:
            self.notices.append(f"{path}.region: only tencent_ses uses it (ignored)")

    def check_options(self, options: Mapping[str, Any], known: Mapping[str, Any], path: str,
                      provider: Provider) -> None:
        for name, value in options.items():
            spec = known.get(name)
            if spec is None:
                names = ", ".join(sorted(known)) or "none"
                self.problems.append(f"{path}.{name}: unknown option for {provider.value} (known: {names})")
            elif value not in spec.choices:
                self.problems.append(f"{path}.{name}: must be one of {', '.join(spec.choices)}")

    def gap_driven(self, account: AccountConfig, sent_topic: str | None, i: int) -> AccountConfig:
        """Resolve `poll.gap_driven`: on by default where a sent feed exists, the account polls and
        its provider's status API takes email ids on a date-window account (worker.poll.ids)."""
        defaults = get_module(account.provider).DEFAULTS
        able = defaults.polling == "date" and defaults.id_batch > 0
        asked = account.poll.gap_driven
        path = f"accounts[{i}].poll.gap_driven"
        if asked and not able:
            self.problems.append(f"{path}: {account.provider.value} cannot be polled by email id"
                                 + (" (it is polled by id already)" if defaults.polling == "ids" else ""))
        elif asked and sent_topic is None:
            self.problems.append(f"{path}: needs inputs.sent_topic (the sent emails are what it polls)")
        elif asked and not account.poll.enabled:
            self.problems.append(f"{path}: needs poll.enabled (it is a way of polling)")
        on = bool(able and sent_topic is not None and account.poll.enabled and (asked is None or asked))
        return attrs.evolve(account, poll=attrs.evolve(account.poll, gap_driven=on))

    def check_spread(self, account: AccountConfig, shards: int, path: str) -> None:
        """An account on several shards: at most one per shard, and only where every status of an
        email can be routed by its id. A tracked id (id polling, gap-driven polling) lives on one
        shard with the account's id poller, so those accounts stay on one."""
        if account.spread == 1:
            return
        if account.spread > shards:
            self.problems.append(f"{path}: {account.spread} is more than kafka.shards ({shards})")
        if get_module(account.provider).DEFAULTS.polling == "ids":
            self.problems.append(f"{path}: {account.provider.value} is polled by email id; it cannot be spread")
        elif account.poll.gap_driven:
            self.problems.append(f"{path}: needs poll.gap_driven: false (gap-driven polling keeps its ids on one "
                                 "shard)")

    def check_poll(self, poll: PollConfig, retention_days: int, path: str, provider: Provider) -> None:
        if poll.interval_min_secs < poll.cache_ttl_secs:
            self.problems.append(f"{path}.interval_min_secs: below the provider's cache TTL ({poll.cache_ttl_secs:g} s); "
                                 "such sweeps would only return cached results")
        if poll.interval_max_secs < poll.interval_min_secs:
            self.problems.append(f"{path}.interval_max_secs: smaller than interval_min_secs ({poll.interval_min_secs:g})")
        if poll.lookback_days >= retention_days:   # the sweeps cover today and lookback_days dates before it
            self.problems.append(f"{path}.lookback_days: the sweeps cover today and the {poll.lookback_days} send "
                                 f"dates before it, and {provider.value} answers for {retention_days} days only "
                                 f"(today and {retention_days - 1} before): at most {retention_days - 1}")


# The credentials an account may give, by section (the schema allows each as <name>_env/_file;
# api_user and secret_id may also be inline). What each provider requires is its CREDENTIALS.
CREDENTIAL_FIELDS: dict[str, tuple[str, ...]] = {
    "credentials": ("api_user", "api_key", "secret_id", "secret_key"),
    "webhook": ("app_key", "previous_app_key", "path_token", "previous_path_token"),
}

# `invalid` is accepted as before but means `soft_bounce`: a rejection of the sender never makes an
# address invalid (the scope invariant, worker.providers.classify; docs/configuration.md).
SENDER_REJECTION = {"documented": None, "invalid": EventType.SOFT_BOUNCE, "soft_bounce": EventType.SOFT_BOUNCE}


def _poll_fields(poll_raw: Mapping[str, Any], defaults: ProviderDefaults) -> dict[str, Any]:
    """The account's poll settings; the three whose default is the provider's filled in here."""
    fields = dict(poll_raw)
    fields.setdefault("quota_per_minute", defaults.quota_per_minute)
    fields.setdefault("cache_ttl_secs", defaults.cache_ttl_secs)
    fields.setdefault("interval_min_secs", fields["cache_ttl_secs"] or INTERVAL_MIN_WITHOUT_CACHE_SECS)
    return fields


def _describe(need: Need) -> str:
    if need.plain:
        return f"{need.section}.{need.name}"
    return f"{need.section}.{need.name}_env or {need.name}_file"


def _has_secret(section: Mapping[str, Any], name: str) -> bool:
    return f"{name}_env" in section or f"{name}_file" in section
