"""Runtime: one loaded config with everything built from it (pipeline, providers,
metrics). Requests take the runtime once at their start, so a reload that swaps it
never changes a request halfway."""

from __future__ import annotations

from dataclasses import dataclass

from router_proxy.config.schema import Config
from router_proxy.observability.metrics import Metrics
from router_proxy.pipeline import Pipeline
from router_proxy.providers.base import Provider
from router_proxy.providers.registry import PROVIDER_TYPES
from router_proxy.server.auth import ClientAuth


@dataclass
class Runtime:
    config: Config
    pipeline: Pipeline
    providers: dict[str, Provider]
    metrics: Metrics
    auth: ClientAuth
    started: bool = False

    @classmethod
    def build(cls, config: Config, metrics: Metrics | None = None) -> Runtime:
        providers = {name: PROVIDER_TYPES[p.type](name, p) for name, p in config.providers.items()}
        return cls(
            config,
            Pipeline.build(config),
            providers,
            metrics or Metrics(),
            ClientAuth(config.server.api_keys),
        )

    def provider_for(self, model: str) -> Provider:
        return self.providers[self.config.models[model].provider]

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        self.started = True

    async def aclose(self) -> None:
        self.started = False
        for provider in self.providers.values():
            await provider.aclose()
