"""The provider registry: one pure module per provider (see base.py for the contract)."""

from __future__ import annotations

import functools
import importlib

from worker.model import Provider
from worker.providers.base import ProviderModule

_MODULES: dict[Provider, str] = {
    Provider.ENGAGELAB: "worker.providers.engagelab",
    Provider.SENDCLOUD: "worker.providers.sendcloud",
    Provider.AURORA_SENDCLOUD: "worker.providers.aurora_sendcloud",
    Provider.UNISENDER: "worker.providers.unisender",
    Provider.TENCENT_SES: "worker.providers.tencent_ses",
}


@functools.cache
def get_module(provider: Provider | str) -> ProviderModule:
    return importlib.import_module(_MODULES[Provider(provider)])  # type: ignore[return-value]


def all_modules() -> dict[Provider, ProviderModule]:
    return {p: get_module(p) for p in _MODULES}
