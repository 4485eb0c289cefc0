"""HTTPProvider: the pooled-client lifecycle and the send / status / JSON steps that
every HTTP adapter shares; an adapter adds its headers and its translation."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from router_proxy.config.base import ProviderConfigBase
from router_proxy.errors import UpstreamError
from router_proxy.providers.base import Provider, UpstreamCall
from router_proxy.providers.http import call_timeout, pooled_client, status_error, translate_errors


class HTTPProvider(Provider):
    def __init__(self, name: str, config: ProviderConfigBase) -> None:
        super().__init__(name, config)
        self._client: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}
        # Scrubbed from anything an upstream sends back (error messages): every secret
        # of the provider's config, whatever field holds it.
        self.secrets = _secret_values(config)

    @property
    @abstractmethod
    def base_url(self) -> str:
        """Root the adapter's relative paths resolve against."""

    @abstractmethod
    def default_headers(self) -> dict[str, str]:
        """Headers on every call, credentials included (never logged)."""

    async def start(self) -> None:
        self._client = pooled_client(
            base_url=self.base_url.rstrip("/") + "/",
            headers=self.default_headers(),
            max_connections=self.config.max_connections,
            connect_timeout=self.config.connect_timeout,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"provider '{self.name}' used before start()")
        return self._client

    def build_request(
        self, path: str, payload: dict[str, Any], call: UpstreamCall
    ) -> httpx.Request:
        url = self._urls.get(path)
        if url is None:  # parse and join once per path, not once per call
            url = self._urls[path] = self.client.base_url.join(path)
        return self.client.build_request(
            "POST",
            url,
            content=orjson.dumps(payload),
            headers={"content-type": "application/json", "x-request-id": call.request_id},
            timeout=call_timeout(
                call.timeouts.idle, call.timeouts.connect or self.config.connect_timeout
            ),
        )

    async def send_json(self, request: httpx.Request, call: UpstreamCall) -> tuple[bytes, Any]:
        """Send, refuse error statuses, return the body and its parsed JSON."""
        # httpx's timeouts bound each read; this bounds the whole call.
        with translate_errors(self.name, call.model_name):
            async with asyncio.timeout(call.timeouts.total):
                response = await self.client.send(request)
            body = response.content
        if response.status_code >= 400:
            raise status_error(response, body, model=call.model_name, secrets=self.secrets)
        try:
            return body, orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"model '{call.model_name}' returned a non-JSON reply") from exc

    async def open_stream(self, request: httpx.Request, call: UpstreamCall) -> httpx.Response:
        """Send a streaming request; an error status is raised before any byte is relayed."""
        with translate_errors(self.name, call.model_name):
            async with asyncio.timeout(call.timeouts.idle):
                response = await self.client.send(request, stream=True)
            if response.status_code >= 400:
                body = await response.aread()
                await response.aclose()
                raise status_error(response, body, model=call.model_name, secrets=self.secrets)
        return response


def _secret_values(config: ProviderConfigBase) -> list[str]:
    found: list[str] = []
    for value in config.__dict__.values():
        values = value.values() if isinstance(value, dict) else [value]
        found += [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
    return [secret for secret in found if secret]
