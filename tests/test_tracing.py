"""OpenTelemetry traces (``tracing:``) exported over OTLP/HTTP to a real receiver on a
loopback port (tests/support/otlp_receiver.py decodes the protobuf export as a collector
does): the spans' structure and attributes, a stream's span, ``traceparent``, the trace
id in the log line, shutdown and reload flushing, and nothing loaded when tracing is off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.observability.logging import ACCESS_LOGGER
from router_proxy.resources import Resources
from router_proxy.server.app import create_app
from tests.support.gateway_process import GatewayProcess
from tests.support.logs import log_line
from tests.support.otlp_receiver import (
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    STATUS_ERROR,
    OtlpReceiver,
    ReceivedSpan,
)
from tests.support.serving import ServerThread
from tests.support.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[1]

POLICY = """\
providers:
  up: {type: openai, base_url: "${UPSTREAM}/v1"}
  mock: {type: mock}
models:
  slowly: {provider: up, upstream_model: slow-stream}
  local: {provider: mock}
  broken: {provider: up, upstream_model: fail-500}
  good: {provider: up, upstream_model: echo}
signals:
  - {name: code, type: keyword, any: [python]}
  - {name: legal, type: keyword, any: [contract]}
decisions:
  - name: coding
    priority: 10
    when: {all: [code, {not: legal}]}
    route: {candidates: [broken, good]}
  - {name: default, when: true, route: {candidates: [good]}}
resilience: {retries: {attempts_per_model: 1}, breaker: {enabled: false}}
"""
TRACING = """\
tracing: {endpoint: "${OTLP}", service_name: gw-test, batch_delay_ms: 50}
"""

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def access_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, receiver: OtlpReceiver) -> Iterator[tuple[str, Any]]:
    env = {"UPSTREAM": upstream.base_url, "OTLP": receiver.endpoint}
    config, _ = load_config_text(POLICY + TRACING, env=env)
    app = create_app(config)
    with ServerThread(app) as server:
        yield server.base_url, app


def _client(base_url: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url + "/v1", api_key="unused", max_retries=0, default_headers=headers
    )


def _trace(receiver: OtlpReceiver, trace_id: str, *names: str) -> dict[str, ReceivedSpan]:
    """The trace's spans by name, once every one of ``names`` has been received."""
    receiver.wait_for(lambda _: {*names} <= {s.name for s in receiver.of_trace(trace_id)})
    spans = receiver.of_trace(trace_id)
    by_name = {s.name: s for s in spans}
    assert len(by_name) == len(spans), f"names repeat: {[s.name for s in spans]}"
    return by_name


def _inside(child: ReceivedSpan, parent: ReceivedSpan) -> None:
    assert child.trace_id == parent.trace_id
    assert child.parent_span_id == parent.span_id
    assert parent.start <= child.start <= child.end <= parent.end


def test_a_fallback_is_one_trace_of_routing_and_two_attempts(
    gateway: tuple[str, Any], receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    base_url, _ = gateway
    raw = _client(base_url).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "fix my python"}]
    )
    assert raw.parse().choices[0].message.content == "echo: fix my python"
    line = log_line(caplog, raw.headers["x-router-request-id"])
    trace_id = line["trace_id"]
    assert len(trace_id) == 32
    assert int(trace_id, 16)

    spans = _trace(
        receiver, trace_id, "POST /v1/chat/completions", "route", "upstream broken", "upstream good"
    )
    root = spans["POST /v1/chat/completions"]
    assert root.parent_span_id == ""
    assert root.kind == KIND_SERVER
    assert root.resource["service.name"] == "gw-test"
    assert root.attributes["router.request_id"] == line["request_id"]
    assert root.attributes["router.surface"] == "chat"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["router.decision"] == "coding"
    assert root.attributes["router.model"] == "good"
    assert root.attributes["router.attempts"] == 2
    assert root.attributes["gen_ai.usage.input_tokens"] == 10

    route = spans["route"]
    _inside(route, root)
    assert route.kind == KIND_INTERNAL
    assert route.attributes["router.candidates"] == ["broken", "good"]
    assert route.attributes["router.via"] == "auto"
    # Each signal the rule evaluated, in order, then the selector: events with durations.
    events = {e.name: e for e in route.events}
    assert [e.name for e in route.events] == [
        "signal code",
        "signal legal",
        "select StaticSelector",
    ]
    for name, fired in (("code", True), ("legal", False)):
        assert events[f"signal {name}"].attributes["router.signal.fired"] is fired
    for event in route.events:
        assert route.start <= event.time <= route.end
        assert event.attributes["router.duration_ms"] >= 0
    assert events["signal code"].time <= events["signal legal"].time

    failed, answered = spans["upstream broken"], spans["upstream good"]
    for attempt in (failed, answered):
        _inside(attempt, root)
        assert attempt.kind == KIND_CLIENT
        assert attempt.attributes["router.provider"] == "up"
        assert attempt.start >= route.end
    assert failed.status == STATUS_ERROR
    assert failed.attributes["error.type"] == "upstream_error"
    assert failed.attributes["http.response.status_code"] == 502
    assert failed.attributes["gen_ai.request.model"] == "fail-500"
    assert (failed.attributes["router.attempt"], failed.attributes["router.fallback"]) == (0, 0)
    assert answered.status != STATUS_ERROR
    assert answered.attributes["router.outcome"] == "success"
    assert answered.attributes["gen_ai.request.model"] == "echo"
    assert (answered.attributes["router.attempt"], answered.attributes["router.fallback"]) == (1, 1)
    assert answered.attributes["router.retry"] == 0
    assert failed.end <= answered.start


def test_each_upstream_call_carries_its_attempt_span_as_traceparent(
    gateway: tuple[str, Any], receiver: OtlpReceiver, upstream: FakeUpstream, caplog: Any
) -> None:
    # An instrumented backend joins the trace: its parent is the gateway's attempt span.
    base_url, _ = gateway
    upstream.requests.clear()
    raw = _client(base_url).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "fix my python"}]
    )
    trace_id = log_line(caplog, raw.headers["x-router-request-id"])["trace_id"]
    spans = _trace(receiver, trace_id, "upstream broken", "upstream good")
    sent = [str(headers.get("traceparent")).split("-") for _, headers, _ in upstream.requests]
    assert [parts[:3] for parts in sent] == [
        ["00", trace_id, spans["upstream broken"].span_id],
        ["00", trace_id, spans["upstream good"].span_id],
    ]
    assert all(int(parts[3], 16) & 1 for parts in sent)  # sampled


def test_an_untraced_request_sends_no_traceparent(upstream: FakeUpstream) -> None:
    config, _ = load_config_text(POLICY, env={"UPSTREAM": upstream.base_url})
    with ServerThread(create_app(config)) as server:
        upstream.requests.clear()
        _client(server.base_url).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hello"}]
        )
    assert [headers.get("traceparent") for _, headers, _ in upstream.requests] == [None]


def test_a_streamed_requests_span_ends_with_its_stream_and_honours_traceparent(
    gateway: tuple[str, Any], receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    base_url, app = gateway
    tracing = app.state.slot.current.resources.tracing
    client = _client(base_url, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    # The upstream sends a piece every 0.2 s: the stream is still open after the first.
    stream = client.chat.completions.create(
        model="slowly", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = iter(stream)
    next(chunks)
    read_first = time.time_ns()
    # Everything ended so far is exported now: the answering attempt (it ended at the
    # stream's first event), not the request's span while the stream is open.
    assert tracing.flush()
    names = {s.name for s in receiver.of_trace(TRACE_ID)}
    assert "upstream slowly" in names
    assert "POST /v1/chat/completions" not in names
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    spans = _trace(receiver, TRACE_ID, "POST /v1/chat/completions", "route", "upstream slowly")
    root = spans["POST /v1/chat/completions"]
    assert root.parent_span_id == PARENT_ID  # the caller's span is its parent
    assert root.end >= read_first
    assert root.attributes["router.stream"] is True
    _inside(spans["upstream slowly"], root)
    assert log_line(caplog)["trace_id"] == TRACE_ID


def test_a_caller_that_does_not_sample_gets_no_spans_and_no_trace_id(
    gateway: tuple[str, Any], receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    base_url, app = gateway
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    client = _client(base_url, traceparent=f"00-{trace_id}-b7ad6b7169203331-00")
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}]
    )
    assert "trace_id" not in log_line(caplog, raw.headers["x-router-request-id"])
    assert app.state.slot.current.resources.tracing.flush()
    assert receiver.of_trace(trace_id) == []


def test_every_surface_gets_its_request_span(
    gateway: tuple[str, Any], receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    base_url, _ = gateway
    client = _client(base_url)
    calls = {
        "/v1/responses": lambda: client.responses.with_raw_response.create(
            model="auto", input="hello"
        ),
        "/v1/completions": lambda: client.completions.with_raw_response.create(
            model="local", prompt="hello"
        ),
        "/v1/embeddings": lambda: client.embeddings.with_raw_response.create(
            model="local", input="hello"
        ),
    }
    for path, call in calls.items():
        raw = call()
        trace_id = log_line(caplog, raw.headers["x-router-request-id"])["trace_id"]
        root = _trace(receiver, trace_id, f"POST {path}")[f"POST {path}"]
        assert root.attributes["url.path"] == path
    messages = httpx.post(
        base_url + "/v1/messages",
        json={"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    trace_id = log_line(caplog, messages.headers["x-router-request-id"])["trace_id"]
    root = _trace(receiver, trace_id, "POST /v1/messages")["POST /v1/messages"]
    assert root.attributes["router.surface"] == "messages"
    # A request routing refuses still ends its span, with the error.
    refused = httpx.post(
        base_url + "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert refused.status_code == 404
    trace_id = log_line(caplog, refused.headers["x-router-request-id"])["trace_id"]
    root = _trace(receiver, trace_id, "POST /v1/chat/completions")["POST /v1/chat/completions"]
    assert root.attributes["http.response.status_code"] == 404
    assert root.attributes["error.type"] == "model_not_found"


OFF_CHECK = """
import sys
from starlette.testclient import TestClient
from router_proxy.config.load import load_config_text
from router_proxy.server.app import create_app

config, _ = load_config_text(sys.stdin.read())
with TestClient(create_app(config)) as client:
    answer = client.post("/v1/chat/completions", json={
        "model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    tracing = client.app.state.slot.current.resources.tracing
loaded = sorted(m for m in sys.modules if m.startswith(
    ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.proto",
     "router_proxy.observability.tracing")))
print(loaded, tracing)
"""


def test_without_a_tracing_section_the_sdk_is_never_imported() -> None:
    """FastAPI itself imports the OpenTelemetry API (``opentelemetry.trace``), and
    redis-py the SDK's metrics when the SDK is installed, so the check is on what
    tracing would add: the SDK's tracer, the exporter, our module."""
    policy = (
        "providers: {m: {type: mock}}\nmodels: {a: {provider: m}}\n"
        "decisions: [{name: d, when: true, route: {candidates: [a]}}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", OFF_CHECK],
        input=policy,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[] None"


def test_serve_exports_its_spans_when_it_stops(
    upstream: FakeUpstream, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """``router-proxy serve`` as a process, the official SDK as its client: the spans
    wait in the batch (a minute's delay) and go out as the process shuts down."""
    policy = (POLICY + TRACING).replace("${UPSTREAM}", upstream.base_url)
    policy = policy.replace("${OTLP}", receiver.endpoint).replace("50}", "60000}")
    policy = policy.replace("service_name: gw-test", "service_name: gw-process")
    policy = policy.replace(
        "tracing: {", 'tracing: {headers: {x-collector-key: "${COLLECTOR_KEY:-k-123}"}, '
    )
    with GatewayProcess(policy, tmp_path) as gw:
        client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "python please"}]
        )
        assert answer.choices[0].message.content == "echo: python please"
        gw.terminate()
        assert gw.wait(timeout=30) == 0
        lines = [json.loads(x) for x in gw.output().splitlines() if x.startswith("{")]
    trace_id = next(x["trace_id"] for x in lines if x.get("event") == "request")
    spans = _trace(receiver, trace_id, "POST /v1/chat/completions", "upstream good")
    assert spans["POST /v1/chat/completions"].resource["service.name"] == "gw-process"
    assert {"upstream broken", "route"} <= set(spans)
    assert "signal code" in [e.name for e in spans["route"].events]
    assert any(h.get("x-collector-key") == "k-123" for h in receiver.requests)


def test_a_reload_that_changes_tracing_flushes_the_old_tracer(
    upstream: FakeUpstream, receiver: OtlpReceiver
) -> None:
    env = {"UPSTREAM": upstream.base_url, "OTLP": receiver.endpoint}
    slow = TRACING.replace("50}", "60000}")
    first, _ = load_config_text(POLICY + slow, env=env)
    same, _ = load_config_text(POLICY + slow + "routing: {budget_ms: 20}\n", env=env)
    other, _ = load_config_text(POLICY + slow.replace("gw-test", "gw-next"), env=env)
    resources = Resources.for_config(first)
    tracing = resources.tracing
    assert tracing is not None
    assert resources.carried_into(same).tracing is tracing  # unchanged: kept
    trace = tracing.begin("POST", "/v1/chat/completions", "chat", "req-reload", {})
    assert trace is not None
    trace.end(200, {}, None)
    following = resources.carried_into(other)
    assert following.tracing is not None
    assert following.tracing is not tracing
    asyncio.run(resources.close_unshared(following))  # the old one: flushed, shut down
    assert receiver.of_trace(trace.trace_id)[0].attributes["router.request_id"] == "req-reload"
    asyncio.run(following.close_unshared(None))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{endpoint: http://c/v1/traces, sample_ratio: 2}", "tracing.sample_ratio"),
        ("{endpoint: http://c/v1/traces, protcol: grpc}", "tracing.protcol"),
        ("{sample_ratio: 0.5}", "tracing.endpoint"),
    ],
)
def test_a_bad_tracing_section_names_its_yaml_path(section: str, message: str) -> None:
    policy = POLICY.replace("${UPSTREAM}", "http://u") + f"tracing: {section}\n"
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config_text(policy)


def test_grpc_without_its_exporter_is_refused_at_load() -> None:
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the gRPC exporter is installed here")
    policy = POLICY.replace("${UPSTREAM}", "http://u") + (
        "tracing: {endpoint: 'c:4317', protocol: grpc}\n"
    )
    with pytest.raises(ConfigError, match="opentelemetry-exporter-otlp-proto-grpc"):
        load_config_text(policy)


def test_cache_lookups_and_conversations_are_spans(
    upstream: FakeUpstream, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    policy = POLICY.replace(
        "route: {candidates: [good]}}", "route: {candidates: [good]}, cache: {mode: exact}}"
    )
    env = {"UPSTREAM": upstream.base_url, "OTLP": receiver.endpoint}
    config, _ = load_config_text(policy + TRACING + "affinity: {enabled: true}\n", env=env)
    with ServerThread(create_app(config)) as server:
        client = _client(server.base_url, **{"x-session-id": "conversation-1"})
        traces = []
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "cache me"}]
            )
            traces.append(log_line(caplog, raw.headers["x-router-request-id"])["trace_id"])
        root = "POST /v1/chat/completions"
        first = _trace(receiver, traces[0], root, "cache lookup", "conversation", "upstream good")
        second = _trace(receiver, traces[1], root, "cache lookup")
    assert first["cache lookup"].attributes["router.cache.outcome"] == "miss"
    _inside(first["cache lookup"], first[root])
    conversation = first["conversation"]
    _inside(conversation, first[root])
    assert conversation.attributes["router.session"] == "conversation-1"
    assert first["cache lookup"].end <= conversation.start <= first["upstream good"].start
    assert first[root].attributes["router.affinity"] == "miss"
    assert second["cache lookup"].attributes["router.cache.outcome"] == "hit"
    assert second[root].attributes["router.cache.outcome"] == "hit"
    assert not any(name.startswith("upstream ") for name in second)


def test_an_unreachable_collector_never_reaches_the_client(upstream: FakeUpstream) -> None:
    """Nothing listens on port 9 of loopback: exports fail in the exporter's thread, and
    requests are answered as ever."""
    tracing = (
        "tracing: {endpoint: 'http://127.0.0.1:9/v1/traces', timeout: 0.5, batch_delay_ms: 10}\n"
    )
    config, _ = load_config_text(POLICY + tracing, env={"UPSTREAM": upstream.base_url})
    with ServerThread(create_app(config)) as server:
        client = _client(server.base_url)
        for _ in range(3):
            answer = client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hello"}]
            )
            assert answer.choices[0].message.content == "echo: hello"


def test_the_decision_record_carries_the_trace_id(
    upstream: FakeUpstream, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    env = {"UPSTREAM": upstream.base_url, "OTLP": receiver.endpoint}
    policy = POLICY + TRACING + f'records: {{sink: {{type: jsonl, path: "{records}"}}}}\n'
    config, _ = load_config_text(policy, env=env)
    with ServerThread(create_app(config)) as server:
        reply = _client(server.base_url).chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hello"}]
        )
        request_id = reply.headers["x-request-id"]
    written = [json.loads(line) for line in records.read_text().splitlines()]
    (served,) = [r for r in written if r["request_id"] == request_id]
    assert served["trace_id"] is not None
    _trace(receiver, served["trace_id"], "POST /v1/chat/completions")


def test_each_call_of_a_cascade_is_an_attempt_span(
    upstream: FakeUpstream, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    policy = POLICY.replace(
        "  good: {provider: up, upstream_model: echo}\n",
        "  good: {provider: up, upstream_model: echo}\n"
        "  twin: {provider: up, upstream_model: echo}\n",
    ).replace(
        "  - {name: default, when: true, route: {candidates: [good]}}",
        "  - {name: default, when: true, route: {algorithm: cascade, "
        "params: {stages: [[good, twin], [broken]]}}}",
    )
    env = {"UPSTREAM": upstream.base_url, "OTLP": receiver.endpoint}
    config, _ = load_config_text(policy + TRACING, env=env)
    with ServerThread(create_app(config)) as server:
        raw = _client(server.base_url).chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hello"}]
        )
    assert raw.headers["x-router-calls"] == "good:answered,twin:agreed"
    trace_id = log_line(caplog, raw.headers["x-router-request-id"])["trace_id"]
    spans = _trace(
        receiver, trace_id, "POST /v1/chat/completions", "upstream good", "upstream twin"
    )
    for name in ("upstream good", "upstream twin"):
        _inside(spans[name], spans["POST /v1/chat/completions"])
        assert spans[name].attributes["router.outcome"] == "success"
    assert "upstream broken" not in spans  # the pair agreed: no escalation
