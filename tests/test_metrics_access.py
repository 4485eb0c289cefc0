"""Issue 19, item 14: ``/metrics`` is open by default (a Prometheus in the cluster scrapes
it; keep it off the public ingress), and ``server.metrics_keys`` makes a scrape send a
bearer key of its own: neither a client key nor an admin key opens it, and a metrics key
opens nothing else. Through a real gateway on a loopback port."""

from __future__ import annotations

import httpx

from tests.conftest import GatewayFactory

CLIENT_KEY = "client-key-for-metrics-tests"
ADMIN_KEY = "admin-key-for-metrics-tests"
SCRAPE_KEY = "scrape-key-for-metrics-tests"
POLICY = """\
server: {{api_keys: [{client}], admin_keys: [{admin}]{extra}}}
providers: {{up: {{type: openai, base_url: "${{UPSTREAM}}/v1"}}}}
models: {{echo: {{provider: up, upstream_model: echo}}}}
decisions: [{{name: all, when: true, route: {{candidates: [echo]}}}}]
"""
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def gateway(make_gateway: GatewayFactory, extra: str = "") -> str:
    return make_gateway(POLICY.format(client=CLIENT_KEY, admin=ADMIN_KEY, extra=extra))


def test_metrics_are_open_by_default_while_the_api_needs_a_key(
    make_gateway: GatewayFactory,
) -> None:
    base = gateway(make_gateway)
    assert httpx.post(base + "/v1/chat/completions", json=BODY).status_code == 401
    answered = httpx.post(base + "/v1/chat/completions", json=BODY, headers=bearer(CLIENT_KEY))
    assert answered.status_code == 200
    scraped = httpx.get(base + "/metrics")
    assert scraped.status_code == 200
    assert "router_requests_total" in scraped.text


def test_metrics_keys_make_a_scrape_send_its_own_key(make_gateway: GatewayFactory) -> None:
    base = gateway(make_gateway, f", metrics_keys: [{SCRAPE_KEY}]")
    assert httpx.post(
        base + "/v1/chat/completions", json=BODY, headers=bearer(CLIENT_KEY)
    ).is_success
    for headers in ({}, bearer("wrong"), bearer(CLIENT_KEY), bearer(ADMIN_KEY)):
        refused = httpx.get(base + "/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]["type"] == "authentication_error"
        assert "router_" not in refused.text
    scraped = httpx.get(base + "/metrics", headers=bearer(SCRAPE_KEY))
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert 'router_requests_total{decision="all",model="echo",status="200"}' in scraped.text
    # The scrape key is for scraping only.
    chat = httpx.post(base + "/v1/chat/completions", json=BODY, headers=bearer(SCRAPE_KEY))
    assert chat.status_code == 401
    assert httpx.get(base + "/admin/models", headers=bearer(SCRAPE_KEY)).status_code == 401
    # Probes stay open: a kubelet sends no key.
    assert httpx.get(base + "/health").status_code == 200
    assert httpx.get(base + "/ready").status_code == 200
