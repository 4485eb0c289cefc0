"""Provider adapters by their YAML ``type:``. Adding one is a file plus a line here."""

from __future__ import annotations

from router_proxy.config.base import ProviderConfigBase
from router_proxy.providers.anthropic import AnthropicProvider
from router_proxy.providers.base import Provider
from router_proxy.providers.mock import MockProvider
from router_proxy.providers.openai import OpenAIProvider
from router_proxy.registry import Registry

PROVIDER_TYPES: Registry[type[Provider]] = Registry(
    "provider type",
    [
        ("openai", OpenAIProvider),
        ("mock", MockProvider),
        ("anthropic", AnthropicProvider),
    ],
)


def build_provider(name: str, config: ProviderConfigBase) -> Provider:
    """The adapter for ``providers.<name>`` (not started: ``start()`` opens its pool)."""
    return PROVIDER_TYPES[config.type](name, config)
