"""The provider registry: one pure module per provider (see base.py for the contract)."""

from __future__ import annotations

import functools

from worker.model import Provider
from worker.providers import aurora_sendcloud, engagelab, sendcloud, tencent_ses, unisender
from worker.providers.base import ProviderModule

REGISTRY: dict[Provider, ProviderModule] = {
    Provider.ENGAGELAB: engagelab,
    Provider.SENDCLOUD: sendcloud,
    Provider.AURORA_SENDCLOUD: aurora_sendcloud,
    Provider.UNISENDER: unisender,
    Provider.TENCENT_SES: tencent_ses,
}


@functools.cache  # called per record by the shard: skip the enum lookup
def get_module(provider: Provider | str) -> ProviderModule:
    return REGISTRY[Provider(provider)]


def all_modules() -> dict[Provider, ProviderModule]:
    return dict(REGISTRY)
