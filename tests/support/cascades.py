"""Gateways in front of the upstream with known skills (skilled_upstream.py), for the
cascade and aggregate tests. A test module that imports ``gateway_fixture`` and
``client_fixture`` gets one gateway for its ``POLICY`` and a fresh client per test."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from router_proxy.config.load import load_config_text
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.server.app import create_app
from tests.support.serving import ServerThread
from tests.support.skilled_upstream import SkilledUpstream


def cascade_policy(models: dict[str, str], stages: str, resilience: str) -> str:
    """A policy of one cascade over ``stages``: ``models`` maps each name to the rest of
    its config (its provider is the upstream), ``resilience`` is that section."""
    configs = "".join(f"  {name}: {{provider: up, {rest}}}\n" for name, rest in models.items())
    route = f"{{algorithm: cascade, params: {{stages: {stages}}}}}"
    return (
        f'providers:\n  up: {{type: openai, base_url: "${{UPSTREAM}}/v1"}}\n'
        f"models:\n{configs}resilience: {resilience}\n"
        f"decisions:\n  - {{name: cascade, when: true, route: {route}}}\n"
    )


@contextmanager
def gateway_for(policy: str, upstream: SkilledUpstream) -> Iterator[str]:
    """A gateway serving ``policy`` (``${UPSTREAM}`` is ``upstream``): its base URL."""
    config, _ = load_config_text(policy, env={"UPSTREAM": upstream.base_url})
    with ServerThread(create_app(config)) as server:
        yield server.base_url


@pytest.fixture(name="gateway", scope="module")
def gateway_fixture(request: pytest.FixtureRequest, skilled: SkilledUpstream) -> Iterator[str]:
    """A gateway for the test module's ``POLICY``."""
    with gateway_for(request.module.POLICY, skilled) as base_url:
        yield base_url


@pytest.fixture(name="client")
def client_fixture(
    gateway: str, skilled: SkilledUpstream, caplog: pytest.LogCaptureFixture
) -> Iterator[httpx.Client]:
    """A client for one test: the upstream's requests so far forgotten, the access log
    captured."""
    skilled.requests.clear()
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with httpx.Client(base_url=gateway, timeout=30) as client:
        yield client


def events(answer: httpx.Response) -> list[dict[str, Any]]:
    """A chat stream's events; it must end with [DONE]."""
    blocks = [b for b in answer.text.split("\n\n") if b.strip()]
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(b.removeprefix("data: ")) for b in blocks[:-1]]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def answer_text(answer: httpx.Response) -> str:
    """The text of a chat answer, whole or streamed."""
    if answer.headers["content-type"].startswith("text/event-stream"):
        return streamed_text(events(answer))
    content: str = answer.json()["choices"][0]["message"]["content"]
    return content
