"""Provider adapters by their YAML ``type:``. Adding one is a file plus a line here."""

from __future__ import annotations

from router_proxy.providers.anthropic import AnthropicProvider
from router_proxy.providers.base import Provider
from router_proxy.providers.mock import MockProvider
from router_proxy.providers.openai import OpenAIProvider

PROVIDER_TYPES: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "mock": MockProvider,
    "anthropic": AnthropicProvider,
}
