"""HTTPProvider: the pooled aiohttp session's lifecycle and the send / status / JSON
steps every HTTP adapter shares; an adapter adds its headers and its translation.

aiohttp rather than httpx: measured on the overhead benchmark, httpx's pool re-scans
every idle connection on each request (CPU per call grows with concurrency) and its
anyio layer doubled the gateway's cost per request (benchmarks/overhead/README.md)."""

from __future__ import annotations

import asyncio
import functools
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson
from pydantic import SecretStr
from yarl import URL

from router_proxy.config.base import ProviderConfigBase
from router_proxy.errors import InvalidRequestError, UpstreamError, UpstreamStatusError
from router_proxy.providers.answers import check_answer
from router_proxy.providers.base import UPSTREAM_TRACEPARENT, Provider, UpstreamCall
from router_proxy.providers.http import (
    MAX_EVENT_BYTES,
    event_blocks,
    status_error,
    translate_errors,
    upstream_error_message,
)
from router_proxy.translate.common import scrub

KEEPALIVE_SECONDS = 30.0
ERROR_BODY_BYTES = 64 * 1024  # of a JSON answer to a stream request: enough for its message
# A whole (non-streamed) answer larger than this is the upstream's failure, not held in
# memory: far above any real answer (2,048 embeddings of 3,072 floats are ~60 MB of JSON).
MAX_ANSWER_BYTES = 256 * 1024 * 1024


class HTTPProvider(Provider):
    def __init__(self, name: str, config: ProviderConfigBase) -> None:
        super().__init__(name, config)
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
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
        self._session = aiohttp.ClientSession(
            headers=self.default_headers(),
            connector=aiohttp.TCPConnector(
                limit=self.config.max_connections,
                limit_per_host=0,
                keepalive_timeout=KEEPALIVE_SECONDS,
            ),
            # Deadlines are set per call; the session adds none of its own.
            timeout=aiohttp.ClientTimeout(total=None),
            # Never read proxy settings or .netrc from the environment, and never keep
            # one client's cookies for the next: a gateway talks to exactly the
            # upstream its config names, on behalf of many clients.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"provider '{self.name}' used before start()")
        return self._session

    def url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:  # parse and join once per path, not once per call
            url = self._urls[path] = URL(self.base_url.rstrip("/") + "/" + path)
        return url

    def post(
        self, path: str, payload: dict[str, Any], call: UpstreamCall
    ) -> aiohttp.client._RequestContextManager:
        """The POST of one call, not yet sent: ``async with`` it, or await it."""
        try:
            data = orjson.dumps(payload)
        except orjson.JSONEncodeError as exc:
            # The client's data, as translated for this upstream (a tool call's arguments
            # string parsed into an object): its request to fix, not the model's failure.
            raise InvalidRequestError(
                f"The request cannot be encoded for model '{call.model_name}' ({exc}): is "
                f"something in it nested too deeply?",
                code="invalid_body",
            ) from None
        headers = {"content-type": "application/json", "x-request-id": call.request_id}
        traceparent = UPSTREAM_TRACEPARENT.get()
        if traceparent is not None:
            headers["traceparent"] = traceparent
        return self.session.post(
            self.url(path),
            data=data,
            headers=headers,
            # A redirect is the upstream's failure, never followed: the call's key would
            # go wherever it points (aiohttp keeps custom headers such as x-api-key).
            allow_redirects=False,
            timeout=read_timeout(
                call.timeouts.idle, call.timeouts.connect or self.config.connect_timeout
            ),
        )

    async def send_json(
        self, path: str, payload: dict[str, Any], call: UpstreamCall, wire_format: str
    ) -> tuple[bytes, Any]:
        """Send, refuse any status but a success, return the body and its parsed JSON,
        which must be an answer in ``wire_format`` (``answers.check_answer``)."""
        with translate_errors(self.name, call.model_name):
            # aiohttp's timeouts bound the connect and each read; this, the whole call.
            async with asyncio.timeout(call.timeouts.total), self.post(path, payload, call) as r:
                body = await read_answer(r, call.model_name)
        if not 200 <= r.status < 300:
            raise self.status_error(r, body, call)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"model '{call.model_name}' returned a non-JSON reply") from exc
        check_answer(data, wire_format, body=body, model=call.model_name, secrets=self.secrets)
        return body, data

    async def open_stream(
        self, path: str, payload: dict[str, Any], call: UpstreamCall
    ) -> aiohttp.ClientResponse:
        """Send a streaming request; an error status is raised before any byte is relayed.
        The caller closes the response (``close_response``)."""
        with translate_errors(self.name, call.model_name):
            async with asyncio.timeout(call.timeouts.idle):
                response = await self.post(path, payload, call)
            if not 200 <= response.status < 300:
                try:
                    body = await response.read()
                finally:
                    response.release()
                raise self.status_error(response, body, call)
            if response.content_type == "application/json":
                raise await self._not_a_stream(response, call)
        return response

    async def _not_a_stream(
        self, response: aiohttp.ClientResponse, call: UpstreamCall
    ) -> UpstreamError:
        """A success status with JSON instead of events: an error object, or an answer
        to a stream request given whole; neither can be relayed as a stream."""
        try:
            body = await response.content.read(ERROR_BODY_BYTES)
        finally:
            response.close()
        message = scrub(upstream_error_message(body), self.secrets)
        return UpstreamError(
            f"model '{call.model_name}' answered a stream request with JSON, not events: {message}"
        )

    def status_error(
        self, response: aiohttp.ClientResponse, body: bytes, call: UpstreamCall
    ) -> UpstreamStatusError:
        return status_error(
            response.status, response.headers, body, model=call.model_name, secrets=self.secrets
        )


async def read_answer(response: aiohttp.ClientResponse, model: str) -> bytes:
    """The whole body, up to ``MAX_ANSWER_BYTES``: an upstream that declares or sends
    more fails the call (a 502 when nothing else answers) before the gateway holds it."""
    declared = response.content_length
    if declared is not None and declared <= MAX_ANSWER_BYTES:
        return await response.read()  # the common case: aiohttp reads the declared length
    chunks: list[bytes] = []
    size = 0 if declared is None else declared
    if size <= MAX_ANSWER_BYTES:  # no length declared (chunked): counted as it comes
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                break
            chunks.append(chunk)
    if size > MAX_ANSWER_BYTES:
        raise UpstreamError(
            f"model '{model}' answered with more than {MAX_ANSWER_BYTES // 2**20} MiB; "
            "the gateway does not hold answers that large"
        )
    return b"".join(chunks)


def close_response(response: aiohttp.ClientResponse) -> None:
    """Back to the pool when read to its end; a stream left early closes its connection
    (the rest of its bytes would otherwise be read by the next call)."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


@contextmanager
def reading_stream(
    response: aiohttp.ClientResponse,
    call: UpstreamCall,
    provider: str,
    max_event: int = MAX_EVENT_BYTES,
) -> Iterator[AsyncIterator[bytes]]:
    """``with reading_stream(...) as blocks``: an open stream's event blocks (whole
    events, ``max_event`` bytes at most each, ended at the call's total), its transport
    failures as gateway errors, and the response closed when the block ends."""
    try:
        with translate_errors(provider, call.model_name):
            yield event_blocks(response.content, call.timeouts.total, call.model_name, max_event)
    finally:
        close_response(response)


@functools.lru_cache(maxsize=256)  # a handful of distinct values per config
def read_timeout(idle: float, connect: float) -> aiohttp.ClientTimeout:
    """aiohttp bounds the connect and each read by ``idle`` (the first byte, then every
    gap); the whole call's ``total`` is the caller's asyncio deadline."""
    return aiohttp.ClientTimeout(total=None, sock_connect=min(connect, idle), sock_read=idle)


def _secret_values(config: ProviderConfigBase) -> list[str]:
    found: list[str] = []
    for value in config.__dict__.values():
        values = value.values() if isinstance(value, dict) else [value]
        found += [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
    return [secret for secret in found if secret]
