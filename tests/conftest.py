"""Shared fixtures: a real fake upstream and gateways on real loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest

from router_proxy.config.load import load_config_text
from router_proxy.server.app import create_app
from router_proxy.server.http import protocol_options
from tests.support.serving import ServerThread
from tests.support.skilled_upstream import SkilledUpstream
from tests.support.upstream import FakeUpstream

UPSTREAM_KEY = "sk-upstream-secret-1234567890"
ANTHROPIC_KEY = "ant-upstream-secret-0987654321"

POLICY = """\
server:
  max_body_bytes: 8192
providers:
  fake-openai: {type: openai, base_url: "${UPSTREAM}/v1", api_key: "${OPENAI_KEY}"}
  fake-anthropic: {type: anthropic, base_url: "${UPSTREAM}", api_key: "${ANTHROPIC_KEY}"}
  mock: {type: mock}
models:
  gpt-echo: {provider: fake-openai, upstream_model: echo, cost: {input_per_mtok: 1000, output_per_mtok: 2000}}
  claude-echo: {provider: fake-anthropic, upstream_model: echo}
  claude-tools: {provider: fake-anthropic, upstream_model: tool-call}
  claude-cut: {provider: fake-anthropic, upstream_model: cut-stream}
  broken: {provider: fake-openai, upstream_model: fail-500}
  refused: {provider: fake-openai, upstream_model: fail-400}
  unauthorized: {provider: fake-openai, upstream_model: fail-401}
  limited: {provider: fake-openai, upstream_model: fail-429}
  garbled: {provider: fake-openai, upstream_model: bad-json}
  slow: {provider: fake-openai, upstream_model: hang, timeouts: {total: 0.5}}
  cut: {provider: fake-openai, upstream_model: cut-stream}
  local: {provider: mock}
  unreachable: {provider: nowhere}
signals:
  - {name: code, type: keyword, any: [python, "re:\\\\bdef\\\\b"]}
  - {name: legal, type: keyword, any: [contract, lawsuit]}
decisions:
  - {name: coding, priority: 10, when: code, route: {candidates: [claude-echo, gpt-echo]}}
  - {name: legal, priority: 5, when: {all: [legal, {not: code}]}, route: {candidates: [local]}}
  - {name: default, when: true, route: {candidates: [gpt-echo]}}
"""
# Nothing listens on port 9 of loopback (discard): connecting fails at once.
POLICY = POLICY.replace(
    "  mock: {type: mock}\n",
    "  mock: {type: mock}\n  nowhere: {type: openai, base_url: 'http://127.0.0.1:9/v1'}\n",
)

GatewayFactory = Callable[[str], str]


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="session")
def skilled() -> Iterator[SkilledUpstream]:
    """The upstream whose models have known skills (cascades, aggregates)."""
    with SkilledUpstream() as up:
        yield up


@pytest.fixture(scope="session")
def make_gateway(upstream: FakeUpstream) -> Iterator[GatewayFactory]:
    """Start a gateway for a policy text (``${UPSTREAM}`` is the fake upstream)."""
    servers: list[ServerThread] = []
    env = {
        "UPSTREAM": upstream.base_url,
        "OPENAI_KEY": UPSTREAM_KEY,
        "ANTHROPIC_KEY": ANTHROPIC_KEY,
    }

    def start(policy: str) -> str:
        config, _ = load_config_text(policy, env=env)
        server = ServerThread(create_app(config), **protocol_options(config.server))
        server.start()
        servers.append(server)
        return server.base_url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def gateway_url(make_gateway: GatewayFactory) -> str:
    return make_gateway(POLICY)


@pytest.fixture
def client(gateway_url: str) -> openai.OpenAI:
    # No retries: each test sees exactly what one request got.
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key="unused", max_retries=0)
