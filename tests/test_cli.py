"""The command line, run as a user would: explain, and serve as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from router_proxy.cli import main

DEFAULT = str(Path(__file__).parent.parent / "configs" / "default.yaml")


def test_explain_json_names_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--config", DEFAULT, "--json", "Fix this Python stack trace"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["decision"] == "coding"
    assert plan["model"] == "coder"
    assert plan["signals"]["code"]["fired"] is True
    assert main(["explain", "--config", DEFAULT, "--json", "What is a good name for a cat?"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "default"


def test_explain_text_and_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--config", DEFAULT, "prove this theorem step by step"]) == 0
    out = capsys.readouterr().out
    assert "decision:   reasoning" in out
    assert "signal reasoning: fired (matched 'prove')" in out
    assert main(["explain", "--config", DEFAULT, "--model", "gpt5", "x"]) == 1
    assert "gpt5" in capsys.readouterr().err


def test_explain_shows_what_the_context_windows_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "windows.yaml"
    policy.write_text(
        "providers: {mock: {type: mock}}\n"
        "models:\n"
        "  small: {provider: mock, context_window: 100}\n"
        "  large: {provider: mock, context_window: 200000}\n"
        "decisions:\n"
        "  - {name: d, when: true, route: {candidates: [small]}, context_fallbacks: [large]}\n"
    )
    assert main(["explain", "--config", str(policy), "--json", "word " * 300]) == 0
    shown = json.loads(capsys.readouterr().out)["context"]
    assert shown["prompt_tokens"] > 100
    assert (shown["passed_over"], shown["order"]) == (["small"], ["large"])
    assert main(["explain", "--config", str(policy), "hi"]) == 0
    assert '"passed_over": [], "order": ["small"]' in capsys.readouterr().out
    # No window declared anywhere: nothing is counted, nothing shown.
    assert main(["explain", "--config", DEFAULT, "--json", "hi"]) == 0
    assert "context" not in json.loads(capsys.readouterr().out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_default_config_as_a_process() -> None:
    """The README's first command, minus the install: mock models, no keys, offline."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "router_proxy", "serve", "--config", DEFAULT, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0
        )
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "write a python script"}]
        )
        assert raw.headers["x-router-model"] == "coder"
        assert (
            raw.parse().choices[0].message.content
            == "[mock-coder-32b] You said: write a python script"
        )
        stream = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        assert (
            "".join(c.choices[0].delta.content or "" for c in stream)
            == "[mock-small-8b] You said: hello"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    logs = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    requests = [entry for entry in logs if entry.get("event") == "request"]
    assert [r["decision"] for r in requests] == ["coding", "default"]
    assert all(r["request_id"] for r in requests)


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        Path(DEFAULT).read_text().replace("candidates: [small, coder]", "candidates: [gpt5]")
    )
    result = subprocess.run(
        [sys.executable, "-m", "router_proxy", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "route.candidates[0]: unknown model 'gpt5'" in result.stderr
