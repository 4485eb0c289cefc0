"""Client and admin keys, right or wrong, never leave the gateway: not in logs (any level,
rendered as the JSON lines operators see), not in responses (bodies or headers, errors
included), not in /metrics, and not in what the upstream receives."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from router_proxy.observability.logging import JsonFormatter
from tests.conftest import POLICY, GatewayFactory
from tests.support.upstream import FakeUpstream
from tests.test_http_api import BODY, CHAT

RIGHT = "sk-client-right-5b0c1e9d"
WRONG = "sk-client-wrong-a7f3e2c4"
ADMIN = "sk-admin-3d8e0b6f1a"
KEYED = POLICY.replace("server:\n", f"server:\n  api_keys: [{RIGHT}]\n  admin_keys: [{ADMIN}]\n")


def test_keys_never_appear_in_logs_responses_metrics_or_upstream_calls(
    make_gateway: GatewayFactory, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = make_gateway(KEYED)
    seen_upstream = len(upstream.requests)
    python = {"model": "auto", "messages": [{"role": "user", "content": "python please"}]}
    calls: list[tuple[str, str, dict[str, object] | None]] = [
        ("POST", CHAT, BODY),  # the OpenAI upstream
        ("POST", CHAT, python),  # the Anthropic upstream
        ("POST", CHAT, {**BODY, "stream": True}),
        ("POST", CHAT, {**BODY, "model": "broken"}),  # upstream 500 -> 502
        ("POST", CHAT, {**BODY, "model": "no-such-model"}),
        ("POST", CHAT, {**BODY, "temperature": 9}),
        ("POST", CHAT, {**BODY, "padding": "x" * 9000}),  # 413
        ("POST", "/v1/route", BODY),
        ("GET", "/v1/models", None),
        ("POST", "/admin/reload", None),
    ]
    texts: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for key in (RIGHT, WRONG, ADMIN):
            for header in ("authorization", "x-api-key", "api-key"):
                value = f"Bearer {key}" if header == "authorization" else key
                for method, path, body in calls:
                    response = http.request(method, path, json=body, headers={header: value})
                    texts.append(response.text)
                    texts.append(json.dumps(dict(response.headers)))
        texts.append(http.get("/metrics").text)
    formatter = JsonFormatter()
    texts += [formatter.format(record) for record in caplog.records]
    texts += [repr(request) for request in upstream.requests[seen_upstream:]]
    assert len(upstream.requests) > seen_upstream  # the upstreams were really called
    everything = "\n".join(texts)
    assert '"request"' in everything  # the request log lines are in there
    for secret in (RIGHT, WRONG, ADMIN):
        assert secret not in everything


def test_admin_endpoints_take_only_admin_keys(make_gateway: GatewayFactory) -> None:
    url = make_gateway(KEYED)
    with httpx.Client(base_url=url, timeout=10) as http:
        for headers in ({}, {"authorization": f"Bearer {RIGHT}"}, {"x-api-key": ADMIN}):
            response = http.post("/admin/reload", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["type"] == "authentication_error"
        admitted = http.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
    # Past the key check: this test gateway has no policy file to reload.
    assert admitted.status_code == 400
    assert "without a policy file" in admitted.json()["error"]["message"]


def test_every_key_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant time: no early exit, so timing says nothing about which key matched."""
    from pydantic import SecretStr

    from router_proxy.engine import auth
    from router_proxy.errors import AuthenticationError

    compared = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(len(a))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    client = auth.ClientAuth([SecretStr(k) for k in ("first-key", "second", "a-third-key")])
    for header in ("Bearer first-key", "Bearer a-third-key", "Bearer nope"):
        compared.clear()
        try:
            client.check(header)
        except AuthenticationError:
            assert header == "Bearer nope"
        assert compared == [32, 32, 32]  # every key, as equal-length digests
