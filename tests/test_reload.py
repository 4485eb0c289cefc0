"""Live policy: file watch, POST /admin/reload, SIGHUP; refusal of bad policies; no
failed request while the policy changes under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from router_proxy.config.load import load_config
from router_proxy.server.app import create_app
from tests.support.serving import ServerThread

ADMIN = "admin-secret-key"
POLICY = """\
server:
  admin_keys: [{admin}]
  watch_config: {watch}
providers:
  mock: {{type: mock, reply: "{reply}", latency_ms: {latency}}}
models:
  small: {{provider: mock, upstream_model: small-v1}}
  large: {{provider: mock, upstream_model: large-v1}}
signals:
  - {{name: code, type: keyword, any: [python]}}
decisions:
  - {{name: coding, priority: 10, when: code, route: {{candidates: [large]}}}}
  - {{name: default, when: true, route: {{candidates: [{default}]}}}}
"""
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


def policy(default: str = "small", reply: str = "v1", latency: int = 0, watch: str = "true") -> str:
    return POLICY.format(admin=ADMIN, watch=watch, reply=reply, latency=latency, default=default)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., tuple[Path, httpx.Client]]]:
    servers: list[ServerThread] = []
    clients: list[httpx.Client] = []

    def start(text: str) -> tuple[Path, httpx.Client]:
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        config, _ = load_config(path)
        server = ServerThread(create_app(config, config_path=path))
        server.start()
        servers.append(server)
        client = httpx.Client(base_url=server.base_url, timeout=10)
        clients.append(client)
        return path, client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def model_of(client: httpx.Client) -> str:
    response = client.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 200, response.text
    return response.headers["x-router-model"]


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_file_change_is_picked_up(served: Callable[..., tuple[Path, httpx.Client]]) -> None:
    path, client = served(policy())
    assert model_of(client) == "small"
    path.write_text(policy(default="large"))
    wait_for(lambda: model_of(client) == "large")
    metrics = client.get("/metrics").text
    assert 'router_config_reloads_total{result="success",trigger="file"} 1.0' in metrics
    assert "router_config_generation 1.0" in metrics


def test_a_bad_policy_is_refused_and_the_old_one_keeps_serving(
    served: Callable[..., tuple[Path, httpx.Client]],
) -> None:
    path, client = served(policy(watch="false"))
    path.write_text(policy(default="gpt5"))
    auth = {"authorization": f"Bearer {ADMIN}"}
    response = client.post("/admin/reload", headers=auth)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_config"
    assert "decisions[1].route.candidates[0]: unknown model 'gpt5' (line 13)" in error["message"]
    assert model_of(client) == "small"
    metrics = client.get("/metrics").text
    assert 'router_config_reloads_total{result="failure",trigger="admin"} 1.0' in metrics
    path.write_text(policy(default="large"))
    assert client.post("/admin/reload", headers=auth).json() == {
        "status": "reloaded",
        "generation": 1,
    }
    assert model_of(client) == "large"


def test_admin_reload_needs_the_admin_key(
    served: Callable[..., tuple[Path, httpx.Client]],
) -> None:
    _, client = served(policy(watch="false"))
    assert client.post("/admin/reload").status_code == 401
    wrong = client.post("/admin/reload", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    _, other = served(policy(watch="false").replace(f"admin_keys: [{ADMIN}]", "admin_keys: []"))
    disabled = other.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
    assert disabled.status_code == 403
    assert disabled.json()["error"]["code"] == "admin_disabled"


def test_requests_in_flight_finish_on_their_config(
    served: Callable[..., tuple[Path, httpx.Client]],
) -> None:
    path, client = served(policy(reply="old {model}", latency=800, watch="false"))
    results: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: results.append(client.post("/v1/chat/completions", json=BODY))
    )
    slow.start()
    time.sleep(0.3)  # the slow request is now waiting on the old config's provider
    path.write_text(policy(default="large", reply="new {model}"))
    assert client.post("/admin/reload", headers={"authorization": f"Bearer {ADMIN}"}).is_success
    slow.join(timeout=10)
    (old,) = results
    assert old.status_code == 200
    assert old.headers["x-router-model"] == "small"
    assert old.json()["choices"][0]["message"]["content"] == "old small-v1"
    fresh = client.post("/v1/chat/completions", json=BODY).json()
    assert fresh["choices"][0]["message"]["content"] == "new large-v1"


def test_no_failed_request_while_the_file_changes_under_load(
    served: Callable[..., tuple[Path, httpx.Client]],
) -> None:
    path, client = served(policy())
    stop = threading.Event()
    statuses: list[int] = []
    models: set[str] = set()

    def hammer() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=10) as own:
            for _ in range(2000):  # bounded in count and, via `stop`, in time
                if stop.is_set():
                    return
                response = own.post("/v1/chat/completions", json=BODY)
                statuses.append(response.status_code)
                models.add(response.headers.get("x-router-model", "?"))

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for i in range(6):
            path.write_text(policy(default="large" if i % 2 == 0 else "small", reply=f"r{i}"))
            time.sleep(0.4)
        path.write_text(policy(default="large", reply="final"))
        wait_for(lambda: model_of(client) == "large")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert statuses
    assert set(statuses) == {200}
    assert models == {"small", "large"}


def test_sighup_reloads_a_served_process(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy(watch="false"))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "router_proxy", "serve", "--config", str(path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
        wait_for(lambda: _ready(client), seconds=30)
        assert model_of(client) == "small"
        path.write_text(policy(default="large", watch="false"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: model_of(client) == "large")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/ready").status_code == 200
    except httpx.TransportError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_retired_runtime_closes_only_after_its_last_request() -> None:
    import asyncio

    from router_proxy.config.load import load_config_text
    from router_proxy.runtime import Runtime, RuntimeSlot

    async def scenario() -> list[bool]:
        config, _ = load_config_text(policy(), env={})
        old = Runtime.build(config)
        new = Runtime.build(config, previous=old)
        await old.start()
        await new.start()
        slot = RuntimeSlot(old)
        old.acquire()  # a request in flight on the old config
        slot.swap(new)
        await asyncio.sleep(0.01)
        seen = [old.started, slot.current is new]
        old.release()
        await asyncio.sleep(0.01)
        seen.append(old.started)
        await new.aclose()
        return seen

    assert asyncio.run(scenario()) == [True, True, False]


def test_a_reload_keeps_rate_limit_counters(
    served: Callable[..., tuple[Path, httpx.Client]],
) -> None:
    # Editing the policy must not hand every client a fresh allowance.
    limited = policy(watch="false").replace(
        "decisions:", "limits: {per_client: {requests_per_minute: 2}}\ndecisions:"
    )
    path, client = served(limited)
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert [client.post("/v1/chat/completions", json=BODY).status_code for _ in range(2)] == [
        200,
        200,
    ]
    path.write_text(limited.replace('reply: "v1"', 'reply: "v2"'))
    assert client.post("/admin/reload", headers=admin).status_code == 200
    refused = client.post("/v1/chat/completions", json=BODY)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_a_rebuilt_runtime_keeps_breakers_latencies_and_counters_unless_state_moves() -> None:
    from router_proxy.config.load import load_config_text
    from router_proxy.runtime import Runtime

    first, _ = load_config_text(policy())
    runtime = Runtime.build(first)
    runtime.resources.breakers.record_failure("small")
    runtime.resources.latency.observe("small", 0.25)
    tighter, _ = load_config_text(policy() + "resilience: {breaker: {failures: 1}}\n")
    again = Runtime.build(tighter, previous=runtime)
    resources, before = again.resources, runtime.resources
    assert resources.breakers is before.breakers
    assert resources.breakers.config.failures == 1  # the new thresholds apply
    assert resources.breakers.get("small").recent() == (1, 1)  # (calls, failures)
    assert resources.latency.average("small") == 0.25
    assert resources.shared.limit_storages is before.shared.limit_storages
    assert resources.shared is before.shared
    moved, _ = load_config_text(policy() + "state: {backend: redis, url: 'redis://127.0.0.1:9'}\n")
    elsewhere = Runtime.build(moved, previous=again)
    assert elsewhere.resources.shared is not resources.shared
    assert elsewhere.resources.shared.limit_storages is not resources.shared.limit_storages
    assert elsewhere.resources.breakers is resources.breakers  # states survive the move


def test_fixing_a_refused_policy_back_logs_that_it_is_valid_again(
    served: Callable[..., tuple[Path, httpx.Client]], caplog: pytest.LogCaptureFixture
) -> None:
    """An operator who reverts a refused edit must not be left with "refused" as the
    last word in the log."""
    caplog.set_level("INFO", logger="router_proxy.reload")
    path, client = served(policy())
    good = path.read_text()
    path.write_text(policy(default="gpt5"))
    wait_for(lambda: any("refused" in r.getMessage() for r in caplog.records))
    path.write_text(good)  # the served content again: nothing to reload
    wait_for(lambda: any("valid again" in r.getMessage() for r in caplog.records))
    last = [r.getMessage() for r in caplog.records][-1]
    assert "policy file is valid again: it matches generation 0" in last
    assert model_of(client) == "small"
