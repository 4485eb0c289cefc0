"""Decision records: which requests are recorded (sampling per decision, a policy without
``records:`` records nothing), what a record holds on every surface (content only when
opted in, redacted when asked), and the JSONL sink (rotation; overflow drops and counts,
never blocks). Gateways run on real loopback sockets with the official SDKs as clients;
a gateway is stopped before its file is read, so every queued record has been written."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.records.config import JsonlSinkConfig, RecordsConfig
from router_proxy.records.jsonl import JsonlSink, rotated
from router_proxy.records.recorder import Recorder
from router_proxy.records.writer import Counters, QueuedWriter, Record
from router_proxy.runtime import Runtime
from router_proxy.server.app import create_app
from tests.support.serving import ServerThread
from tests.support.upstream import FakeUpstream

MOCK_POLICY = """\
providers:
  mock: {type: mock, reply: "[{model}] You said: {prompt}"}
  claude: {type: anthropic, base_url: "${UPSTREAM}", api_key: k}
models:
  small: {provider: mock, cost: {input_per_mtok: 1, output_per_mtok: 2}}
  large: {provider: mock, cost: {input_per_mtok: 10, output_per_mtok: 20}}
  claude-echo: {provider: claude, upstream_model: echo}
signals:
  - {name: code, type: keyword, any: [python]}
  - {name: secret, type: keyword, any: [private]}
  - {name: quiet, type: keyword, any: [quietly]}
decisions:
  - {name: hidden, priority: 30, when: quiet, route: {candidates: [small]}}
  - name: private
    priority: 20
    when: secret
    route: {candidates: [small]}
    plugins: [{redact_pii: true}]
  - {name: coding, priority: 10, when: code, route: {candidates: [large, small]}}
  - {name: default, when: true, route: {candidates: [small]}}
"""


NO_UPSTREAM = {"UPSTREAM": "http://127.0.0.1:9"}


def records_policy(path: Path, **section: Any) -> str:
    options = {"sink": {"type": "jsonl", "path": str(path)}, "flush_seconds": 0.05} | section
    return MOCK_POLICY + "records: " + orjson.dumps(options).decode() + "\n"


@pytest.fixture
def serve(upstream: FakeUpstream) -> Iterator[Callable[[str], ServerThread]]:
    """Start a gateway for a policy; stopped (its sink flushed) by ``stop()`` or at the end."""
    servers: list[ServerThread] = []

    def start(policy: str) -> ServerThread:
        config, _ = load_config_text(policy, env={"UPSTREAM": upstream.base_url})
        server = ServerThread(create_app(config))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def by_surface(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(record["surface"], []).append(record)
    return out


def sdk(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="none", max_retries=0)


# --- the YAML contract ----------------------------------------------------------------


def test_mistakes_in_the_section_name_their_yaml_path(tmp_path: Path) -> None:
    def error(**section: Any) -> str:
        with pytest.raises(ConfigError) as caught:
            load_config_text(records_policy(tmp_path / "r.jsonl", **section), env=NO_UPSTREAM)
        return str(caught.value)

    assert "records.sample_rate: " in error(sample_rate=1.5)
    assert "records.decisions.nope: unknown decision 'nope'" in error(decisions={"nope": {}})
    assert "records.sampel_rate: " in error(sampel_rate=1)
    assert "records.decisions.coding.sample_rate: " in error(
        decisions={"coding": {"sample_rate": -1}}
    )
    assert "records.sink.table: " in error(sink={"type": "postgres", "dsn": "x", "table": "a;b"})


def test_a_policy_without_records_builds_no_recorder_and_no_thread() -> None:
    config, _ = load_config_text(MOCK_POLICY, env=NO_UPSTREAM)
    runtime = Runtime.build(config)
    assert runtime.engine.records is None
    assert runtime.engine.accounting.records is None
    assert runtime.record_sink is None
    assert not [t for t in threading.enumerate() if t.name.startswith("records-")]


# --- what a record holds --------------------------------------------------------------


def test_every_surface_writes_one_record_with_content(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    server = serve(records_policy(path, content=True))
    client = sdk(server)
    chat = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "python please"}]
    )
    list(
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "stream me"}], stream=True
        )
    )
    client.completions.create(model="small", prompt="complete me")
    client.embeddings.create(model="small", input="embed me")
    client.responses.create(model="auto", input="respond to me")
    list(client.responses.create(model="auto", input="stream a response", stream=True))
    claude = anthropic.Anthropic(base_url=server.base_url, api_key="none", max_retries=0)
    claude.messages.create(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": "message me"}]
    )
    native = claude.messages.create(
        model="claude-echo", max_tokens=50, messages=[{"role": "user", "content": "native"}]
    )
    server.stop()

    surfaces = by_surface(read(path))
    assert {s: len(r) for s, r in surfaces.items()} == {
        "chat": 2,
        "completions": 1,
        "embeddings": 1,
        "responses": 2,
        "messages": 2,
    }
    first, streamed = surfaces["chat"]
    assert first["request_id"] == chat._request_id
    assert first["decision"] == "coding"
    assert first["requested_model"] == "auto"
    assert first["signals"] == {"code": True, "quiet": False, "secret": False}
    assert first["candidates"] == ["large", "small"]
    assert first["model"] == "large"
    assert first["attempts"] == [["large", None]]
    assert first["status"] == 200
    assert first["usage"] == {
        "prompt_tokens": chat.usage.prompt_tokens,  # type: ignore[union-attr]
        "completion_tokens": chat.usage.completion_tokens,  # type: ignore[union-attr]
    }
    assert first["cost_usd"] == pytest.approx(
        (10 * first["usage"]["prompt_tokens"] + 20 * first["usage"]["completion_tokens"]) / 1e6
    )
    assert first["prompt"] == "python please"
    assert first["messages"] == [{"role": "user", "content": "python please"}]
    assert first["answer"] == chat.choices[0].message.content == "[large] You said: python please"
    assert first["trace_id"] is None
    assert first["v"] == 1
    assert first["kind"] == "served"
    assert first["time"] > 1.7e9
    assert first["latency_ms"] > 0
    assert streamed["stream"] is True
    assert streamed["answer"] == "[small] You said: stream me"
    assert surfaces["completions"][0]["answer"] == "[small] You said: complete me"
    assert surfaces["completions"][0]["decision"] == "direct"
    assert surfaces["embeddings"][0]["prompt"] == "embed me"
    assert surfaces["embeddings"][0]["answer"] is None  # vectors are no text
    answers = [r["answer"] for r in surfaces["responses"]]
    assert answers == ["[small] You said: respond to me", "[small] You said: stream a response"]
    translated, relayed = surfaces["messages"]
    assert translated["answer"] == "[small] You said: message me"
    assert relayed["model"] == "claude-echo"
    assert relayed["answer"] == "".join(b.text for b in native.content if b.type == "text")


def test_without_content_no_prompt_or_answer_is_written(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    server = serve(records_policy(path))
    sdk(server).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "python"}]
    )
    list(
        sdk(server).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    server.stop()
    records = read(path)
    assert len(records) == 2
    for record in records:
        assert not {"prompt", "messages", "answer"} & set(record)
        assert record["usage"] is not None
        assert record["cost_usd"] > 0


def test_sampling_per_decision_and_content_per_decision(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    decisions = {"hidden": {"sample_rate": 0}, "coding": {"content": True}}
    server = serve(records_policy(path, sample_rate=1, decisions=decisions))
    client = sdk(server)
    for text in ("quietly", "python", "hello"):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": text}])
    server.stop()
    records = {r["decision"]: r for r in read(path)}
    assert set(records) == {"coding", "default"}  # `hidden` samples none
    assert records["coding"]["prompt"] == "python"
    assert "prompt" not in records["default"]


def test_a_rate_of_zero_records_nothing(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    server = serve(records_policy(path, sample_rate=0))
    sdk(server).chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    server.stop()
    assert read(path) == []


def test_a_fractional_rate_records_the_draws_below_it(tmp_path: Path) -> None:
    config = RecordsConfig(sample_rate=0.3, sink=JsonlSinkConfig(path=str(tmp_path / "r")))
    draws = iter([0.1, 0.5, 0.29, 0.3, 0.99])
    sink = ListSink()
    recorder = Recorder(config, sink, draw=lambda: next(draws))
    assert [recorder._drawn(0.3) for _ in range(5)] == [True, False, True, False, False]
    sink.close()


def test_errors_are_recorded_with_their_status(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    server = serve(records_policy(path, content=True))
    with pytest.raises(openai.NotFoundError):
        sdk(server).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    bad = httpx.post(server.base_url + "/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    server.stop()
    records = read(path)
    assert sorted((r["status"], r["decision"], r["error"]) for r in records) == [
        (400, None, "invalid_json"),
        (404, None, "model_not_found"),
    ]
    assert all("prompt" not in r for r in records)  # never routed: no content kept


def test_redaction_masks_recorded_content(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    server = serve(records_policy(path, content=True, redact=True))
    text = "mail bob@example.com or call +1 415 555 0100"
    sdk(server).chat.completions.create(model="auto", messages=[{"role": "user", "content": text}])
    server.stop()
    (record,) = read(path)
    assert record["prompt"] == "mail [EMAIL] or call [PHONE]"
    assert record["messages"] == [{"role": "user", "content": "mail [EMAIL] or call [PHONE]"}]
    assert record["answer"] == "[small] You said: mail [EMAIL] or call [PHONE]"


def test_a_decision_that_redacts_has_its_records_redacted(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    server = serve(records_policy(path, content=True))
    for text in ("private: bob@example.com", "public: bob@example.com"):
        sdk(server).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": text}]
        )
    server.stop()
    prompts = {r["decision"]: r["prompt"] for r in read(path)}
    assert prompts == {"private": "private: [EMAIL]", "default": "public: bob@example.com"}


def test_records_are_counted_in_metrics(serve: Any, tmp_path: Path) -> None:
    server = serve(records_policy(tmp_path / "r.jsonl", flush_seconds=0.01, batch_size=1))
    sdk(server).chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    runtime_sink = None
    for _ in range(200):  # the writer thread writes within flush_seconds
        text = httpx.get(server.base_url + "/metrics").text
        if 'router_records_written_total{sink="jsonl"} 1.0' in text:
            runtime_sink = text
            break
        threading.Event().wait(0.05)
    assert runtime_sink is not None, text


def test_content_past_the_queued_bytes_is_dropped_not_held(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    server = serve(records_policy(path, content=True, max_queued_bytes=4096))
    client = sdk(server)
    for text in ("short", "long " * 1000):  # the long one holds ~15 KB: over the budget
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": text}])
    metrics = httpx.get(server.base_url + "/metrics").text
    server.stop()
    assert [r["prompt"] for r in read(path)] == ["short"]
    assert 'router_records_dropped_total{reason="overflow",sink="jsonl"} 1.0' in metrics


# --- the JSONL sink ---------------------------------------------------------------------


class ListSink(QueuedWriter):
    """Keeps what it is given; ``gate`` holds the writer thread until set."""

    kind = "list"

    def __init__(self, gate: threading.Event | None = None, **options: Any) -> None:
        self.records: list[Record] = []
        self.gate = gate
        self.taken = threading.Event()
        options = {"queue_size": 100, "batch_size": 10, "flush_seconds": 0.01} | options
        super().__init__(**options)

    def write_batch(self, records: list[Record]) -> None:
        self.taken.set()
        if self.gate is not None:
            self.gate.wait()
        self.records.extend(records)

    def close_target(self) -> None:
        pass


class Tally:
    def __init__(self) -> None:
        self.written = 0
        self.dropped: dict[str, int] = {}

    def counters(self) -> Counters:
        def dropped(_: str, reason: str, n: int) -> None:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

        def written(_: str, n: int) -> None:
            self.written += n

        return Counters(written, dropped)


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    gate, tally = threading.Event(), Tally()
    sink = ListSink(gate, queue_size=3, batch_size=1, counters=tally.counters())
    sink.write({"n": 0})
    assert sink.taken.wait(10)  # the writer holds record 0 and is stuck
    for n in range(1, 11):
        sink.write({"n": n})  # returns at once: 3 queued, 7 dropped
    assert tally.dropped == {"overflow": 7}
    gate.set()
    sink.close()
    assert [r["n"] for r in sink.records] == [0, 1, 2, 3]
    assert tally.written == 4
    sink.write({"n": 11})  # after close: dropped, not raised
    assert tally.dropped == {"overflow": 7, "closed": 1}


def test_shadow_answers_count_against_the_queued_bytes() -> None:
    # Shadow records arrive finished (``write``), their answers already in them: those
    # answers are bounded by max_queued_bytes like a served record's content.
    gate, tally = threading.Event(), Tally()
    sink = ListSink(gate, batch_size=1, max_queued_bytes=1000, counters=tally.counters())
    sink.write({"kind": "shadow", "n": 0, "answer": "a" * 600})
    assert sink.taken.wait(10)  # the writer holds record 0 (and its 600 bytes)
    sink.write({"kind": "shadow", "n": 1, "answer": "b" * 600})  # 1,200 > 1,000: dropped
    sink.write({"kind": "shadow", "n": 2, "answer": "c" * 300})  # 900: queued
    sink.write({"kind": "shadow", "n": 3, "answer": None})  # a failed call: nothing held
    assert tally.dropped == {"overflow": 1}
    gate.set()
    sink.close()
    assert [r["n"] for r in sink.records] == [0, 2, 3]


def test_a_failing_write_is_counted_and_the_writer_lives_on() -> None:
    tally = Tally()

    class Flaky(ListSink):
        def write_batch(self, records: list[Record]) -> None:
            if any(r.get("boom") for r in records):
                raise OSError("disk full")
            super().write_batch(records)

    sink = Flaky(batch_size=1, counters=tally.counters())
    sink.write({"boom": True})
    sink.write({"n": 1})
    sink.close()
    assert tally.dropped == {"error": 1}
    assert sink.records == [{"n": 1}]


def test_rotation_by_size_keeps_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    sink = JsonlSink(JsonlSinkConfig(path=str(path), max_bytes=1024, keep=2), **OPTIONS)
    line = {"pad": "x" * 200}
    for n in range(20):
        sink.write_batch([{"n": n, **line}])  # directly: one batch each, in order
    sink.close()
    files = [*rotated(path), path]
    assert len(files) == 3  # two rotated, the live one
    assert all(f.stat().st_size <= 1024 for f in files)
    kept = [r["n"] for f in files for r in read(f)]
    assert kept == list(range(20 - len(kept), 20))  # the newest, in order, none split


def test_rotation_by_age(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    config = JsonlSinkConfig(path=str(path), max_bytes=None, rotate_seconds=1e-9, keep=5)
    sink = JsonlSink(config, **OPTIONS)
    for n in range(3):
        sink.write_batch([{"n": n}])  # each batch finds its file already too old
    sink.close()
    assert [read(f) for f in [*rotated(path), path]] == [[{"n": 0}], [{"n": 1}], [{"n": 2}]]


def test_a_records_file_per_worker(tmp_path: Path) -> None:
    import os

    sink = JsonlSink(JsonlSinkConfig(path=str(tmp_path / "r-{pid}.jsonl")), **OPTIONS)
    sink.write({"n": 1})
    sink.close()
    assert read(tmp_path / f"r-{os.getpid()}.jsonl") == [{"n": 1}]


OPTIONS: Mapping[str, Any] = {"queue_size": 10, "batch_size": 10, "flush_seconds": 0.01}


# --- lifecycle --------------------------------------------------------------------------


def test_a_reload_keeps_an_unchanged_sink_and_shutdown_closes_it(tmp_path: Path) -> None:
    policy = records_policy(tmp_path / "r.jsonl")
    env = NO_UPSTREAM
    first = Runtime.build(load_config_text(policy, env=env)[0])
    same = Runtime.build(load_config_text(policy + "# edited\n", env=env)[0], previous=first)
    assert same.record_sink is first.record_sink is not None
    other = records_policy(tmp_path / "other.jsonl")
    moved = Runtime.build(load_config_text(other, env=env)[0], previous=same)
    assert moved.record_sink is not same.record_sink

    import asyncio

    async def lifecycle() -> None:
        same.retire(moved)  # the old sink is no longer shared: closed with its runtime
        await asyncio.sleep(0)
        assert same._closing is not None
        await same._closing
        await moved.aclose()  # shutdown

    asyncio.run(lifecycle())
    assert isinstance(same.record_sink, QueuedWriter)
    assert same.record_sink.closed
    assert isinstance(moved.record_sink, QueuedWriter)
    assert moved.record_sink.closed
