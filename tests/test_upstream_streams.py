"""Every relayed stream event is checked (issue 19, item 6): an event whose data is not
a JSON object is a failure (before the first byte the next candidate answers, after it
the stream ends with the surface's error event and the log line says so, never a clean
``[DONE]``), and one event is capped in size. A real gateway (uvicorn on loopback, and a
``router-proxy serve`` process where memory is measured) in front of ``BadUpstream``."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from router_proxy.config.load import load_config_text
from router_proxy.errors import UpstreamError
from router_proxy.providers.base import StreamStats
from router_proxy.providers.http import MAX_EVENT_BYTES, event_blocks
from router_proxy.providers.openai import _inspect
from router_proxy.server.app import create_app
from tests.support.bad_upstream import TEXT, BadUpstream
from tests.support.gateway_process import GatewayProcess
from tests.support.logs import log_line
from tests.support.provider_helpers import make_call
from tests.support.serving import ServerThread

CHAT = [{"role": "user", "content": "hello"}]
FIRST = ["stream-bad-first", "stream-array-first"]
LATER = ["stream-bad-later", "stream-choices-5"]
POLICY = """\
providers:
  bad: {{type: openai, base_url: "{upstream}/v1", responses_api: true}}
  ant: {{type: anthropic, base_url: "{upstream}", api_key: k}}
models:
  ok: {{provider: bad, upstream_model: ok}}
  ok-ant: {{provider: ant, upstream_model: ok}}
{models}
resilience: {{breaker: {{failures: 1000}}}}
decisions:
  - {{name: default, when: true, route: {{candidates: [ok]}}}}
"""


def policy(upstream: str) -> str:
    models = []
    for name in [*FIRST, *LATER, "stream-huge-line"]:
        models += [
            f"  {name}: {{provider: bad, upstream_model: {name}, fallbacks: [ok]}}",
            f"  ant-{name}: {{provider: ant, upstream_model: {name}, fallbacks: [ok-ant]}}",
            f"  alone-{name}: {{provider: bad, upstream_model: {name}}}",
        ]
    return POLICY.format(upstream=upstream, models="\n".join(models))


@pytest.fixture(scope="module")
def up() -> Iterator[BadUpstream]:
    with BadUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(up: BadUpstream) -> Iterator[str]:
    config, _ = load_config_text(policy(up.base_url), env={})
    with ServerThread(create_app(config)) as server:
        yield server.base_url


@pytest.fixture
def sdk(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)


def stream_text(sdk: openai.OpenAI, model: str) -> tuple[str, str]:
    raw = sdk.chat.completions.with_raw_response.create(model=model, messages=CHAT, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return text, raw.headers["x-router-model"]


# --- a malformed event before the first byte: the next candidate answers ---------------


@pytest.mark.parametrize("bad", FIRST)
def test_a_malformed_first_event_falls_back(sdk: openai.OpenAI, bad: str) -> None:
    assert stream_text(sdk, bad) == (TEXT, "ok")
    assert stream_text(sdk, f"ant-{bad}") == (TEXT, "ok-ant")  # Anthropic, translated


@pytest.mark.parametrize("bad", FIRST)
def test_a_malformed_first_native_event_falls_back(
    sdk: openai.OpenAI, gateway: str, bad: str
) -> None:
    claude = anthropic.Anthropic(base_url=gateway, api_key="unused", max_retries=0)
    with claude.messages.stream(
        model=f"ant-{bad}", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert stream.get_final_text() == TEXT
    events = list(sdk.responses.create(model=bad, input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == TEXT


def test_with_no_candidate_left_a_malformed_first_event_is_a_502(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="alone-stream-bad-first", messages=CHAT, stream=True)
    assert info.value.status_code == 502
    assert "not JSON" in info.value.response.json()["error"]["message"]


# --- after the first byte: the surface's error event, never [DONE] ---------------------


@pytest.mark.parametrize("bad", LATER)
def test_a_malformed_later_event_ends_the_stream_with_an_error_event(
    sdk: openai.OpenAI, gateway: str, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    errors = f'router_upstream_errors_total{{code="upstream_error",model="{bad}"}}'
    before = _metric(gateway, errors)
    with httpx.stream("POST", gateway + "/v1/chat/completions", json=_chat(bad)) as r:
        text = r.read().decode()
    assert r.status_code == 200
    assert "data: [DONE]" not in text
    last = text.strip().split("\n\n")[-1]
    assert last.startswith('data: {"error"')
    assert r.headers["x-router-model"] == bad  # the client had bytes: no second answer
    line = log_line(caplog, r.headers["x-request-id"])
    assert line["error"] == "upstream_error"
    assert _metric(gateway, errors) == before + 1  # counted against the model
    with pytest.raises(openai.APIError, match="sent a stream event"):  # not a JSONDecodeError
        list(sdk.chat.completions.create(model=bad, messages=CHAT, stream=True))


@pytest.mark.parametrize("bad", LATER)
def test_each_surface_ends_with_its_own_error_event(gateway: str, bad: str) -> None:
    translated = httpx.post(gateway + "/v1/chat/completions", json=_chat(f"ant-{bad}"))
    assert translated.text.strip().split("\n\n")[-1].startswith('data: {"error"')
    body = {"model": f"ant-{bad}", "max_tokens": 16, "stream": True, "messages": CHAT}
    native = httpx.post(gateway + "/v1/messages", json=body)
    assert native.text.strip().split("\n\n")[-1].startswith("event: error\n")
    assert "message_stop" not in native.text
    body = {"model": bad, "input": "hi", "stream": True}
    responses = httpx.post(gateway + "/v1/responses", json=body)
    assert "response.completed" not in responses.text
    assert '"error"' in responses.text.strip().split("\n\n")[-1]


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": CHAT, "stream": True}


def _metric(gateway: str, series: str) -> float:
    for line in httpx.get(gateway + "/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


# --- one event's size: capped, in a real gateway process ------------------------------


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_50_mb_event_without_newline_is_cut_off_and_falls_back(
    up: BadUpstream, tmp_path: Path
) -> None:
    with GatewayProcess(policy(up.base_url), tmp_path) as gateway:
        assert gateway.proc is not None
        url = gateway.base_url + "/v1/chat/completions"
        assert httpx.post(url, json=_chat("ok"), timeout=30).status_code == 200
        before = _rss_mb(gateway.proc.pid)
        probes: list[int] = []
        results = asyncio.run(_huge_streams(url, gateway.base_url, probes))
        after = _rss_mb(gateway.proc.pid)
        alone = httpx.post(url, json=_chat("alone-stream-huge-line"), timeout=60)
    for status, model, text in results:
        assert (status, model) == (200, "ok")
        assert text.rstrip().endswith("data: [DONE]")
    assert probes == [200] * 5  # answered while the streams were in flight
    assert alone.status_code == 502
    assert f"over {MAX_EVENT_BYTES} bytes" in alone.json()["error"]["message"]
    # 4 x 50 MB sent at it: each held at most one capped event (4 MiB) at a time.
    assert after - before < 48, f"RSS {before:.0f} MB -> {after:.0f} MB"


async def _huge_streams(url: str, base_url: str, probes: list[int]) -> list[tuple[int, str, str]]:
    async with httpx.AsyncClient(timeout=120) as client:

        async def one() -> tuple[int, str, str]:
            r = await client.post(url, json=_chat("stream-huge-line"))
            return r.status_code, r.headers.get("x-router-model", ""), r.text

        async def probe() -> None:
            for _ in range(5):
                probes.append((await client.get(base_url + "/health")).status_code)
                await asyncio.sleep(0.05)

        *results, _ = await asyncio.gather(*(one() for _ in range(4)), probe())
        return list(results)


# --- event_blocks, unit by unit --------------------------------------------------------


class Pieces:
    """A stand-in for aiohttp's StreamReader: ``iter_any`` yields the given reads."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.read = 0

    async def iter_any(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.read += 1
            yield piece


async def _blocks(pieces: list[bytes], max_event: int = MAX_EVENT_BYTES) -> list[bytes]:
    reader = Pieces(pieces)
    return [b async for b in event_blocks(reader, 60, "m", max_event)]  # type: ignore[arg-type]


def test_event_blocks_cut_at_event_ends_however_the_bytes_arrive() -> None:
    rng = random.Random(7)
    events = [b'data: {"i": %d}' % i + b"x" * rng.randrange(0, 300) for i in range(60)]
    events += [b"event: e\ndata: {}\nid: 3", b": comment"]
    for newline in (b"\n", b"\r\n"):
        stream = b"".join(e.replace(b"\n", newline) + newline * 2 for e in events)
        for _ in range(30):
            cuts = sorted(rng.sample(range(1, len(stream)), rng.randrange(0, 40)))
            pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
            blocks = asyncio.run(_blocks(pieces))
            assert all(b.endswith(b"\n\n") for b in blocks)
            assert b"".join(blocks).split(b"\n\n")[:-1] == events


def test_event_blocks_find_a_blank_line_split_across_two_reads() -> None:
    pieces = [b"data: 1\n", b"\n", b"data: 2\r\n\r", b"\ndata: 3\n", b"\ndata: 4\n\n"]
    blocks = asyncio.run(_blocks(pieces))
    assert blocks == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\ndata: 4\n\n"]


def test_event_blocks_keep_a_last_event_without_its_blank_line() -> None:
    assert asyncio.run(_blocks([b"data: 1\n\ndata: ", b"2\n"])) == [b"data: 1\n\n", b"data: 2\n\n"]


def test_an_event_over_the_cap_fails_without_reading_the_rest() -> None:
    piece = b"a" * 65536
    reader = Pieces([b"data: {", *[piece] * 800])  # 50 MB, no newline

    async def read() -> None:
        async for _ in event_blocks(reader, 60, "m", 1024 * 1024):  # type: ignore[arg-type]
            pass

    with pytest.raises(UpstreamError, match="over 1048576 bytes"):
        asyncio.run(read())
    assert reader.read <= 1024 * 1024 // len(piece) + 2


def test_the_cap_counts_one_event_not_the_stream() -> None:
    event = b"data: " + b"a" * 1000 + b"\n\n"
    blocks = asyncio.run(_blocks([event] * 3000, max_event=4096))  # 3 MB in all
    assert len(blocks) == 3000


@pytest.mark.parametrize(
    ("block", "failure"),
    [
        (b'data: {"choices": 5}\n\n', "choices that are not a list"),
        (b'data: {"choices": [5]}\n\n', "a choice that is not an object"),
        (b"data: {not json}\n\n", "not JSON"),
        (b"data: [1]\n\n", "not a JSON object"),
        (b"data: \n\n", "not JSON"),
        (b'data: {"choices": []}\n\ndata: "x"\n\n', "not a JSON object"),
    ],
)
def test_every_event_of_a_block_is_checked(block: bytes, failure: str) -> None:
    _kept, done, error = _inspect(block, StreamStats(), make_call("m"), False)
    assert done
    assert error is not None
    assert failure in error.message


def test_a_one_chunk_block_is_relayed_as_it_came_and_usage_read() -> None:
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": -1}}\n\n'
    stats, said = StreamStats(), []
    assert _inspect(chunk, stats, make_call("m"), True) == (chunk, False, None)
    kept = _inspect(usage, stats, make_call("m"), True, bad_usage=said.append)
    assert kept == (b"", False, None)  # the usage chunk the gateway asked for: hidden
    assert stats.usage is None  # malformed: left out
    assert said == ["usage.completion_tokens is int -1"]
