"""Command-line defects a new user met, each checked as the user ran it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from router_proxy.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = str(ROOT / "configs" / "default.yaml")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router_proxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_serve_refuses_a_port_out_of_range() -> None:
    """83536 used to be logged as given while the socket bound 83536 - 65536 = 18000."""
    result = run_cli("serve", "--config", DEFAULT, "--port", "83536")
    assert result.returncode == 2
    assert "argument --port: must be a TCP port, 1..65535, not 83536" in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--port", "0", "must be a TCP port, 1..65535, not 0"),
        ("--port", "65536", "must be a TCP port, 1..65535, not 65536"),
        ("--port", "http", "not a whole number: 'http'"),
        ("--workers", "0", "must be 1 or more, not 0"),
        ("--workers", "two", "not a whole number: 'two'"),
    ],
)
def test_serve_flags_are_checked_before_anything_starts(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--config", DEFAULT, flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err


TYPOS = """\
server: {prot: 8080}
providers:
  mock: {type: mock, latncy_ms: 5}
models:
  small: {provider: mock, cost: {input_per_mtk: 1}}
signals:
  - {name: code, type: keyword, anny: [python]}
decisions:
  - name: default
    when: true
    route: {candidates: [small]}
    plugins: [{params: {defualt: {temperature: 0}}}, {redact: {}}]
stat: {backend: memory}
"""


def test_validate_suggests_the_nearest_key(tmp_path: Path) -> None:
    """Through unions (a provider's and a signal's `type:`), lists, dicts and plugins;
    no guess when nothing is close."""
    policy = tmp_path / "typos.yaml"
    policy.write_text(TYPOS)
    result = run_cli("validate", str(policy))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    for expected in (
        "server.prot: unknown key (did you mean 'port'?) (line 1)",
        "providers.mock.latncy_ms: unknown key (did you mean 'latency_ms'?) (line 3)",
        "models.small.cost.input_per_mtk: unknown key (did you mean 'input_per_mtok'?) (line 5)",
        "signals[0].anny: unknown key (did you mean 'any'?) (line 7)",
        "decisions[0].plugins[0].params.defualt: unknown key (did you mean 'default'?) (line 12)",
        "decisions[0].plugins[1].redact: unknown key (did you mean 'redact_pii'?) (line 12)",
        "stat: unknown key (did you mean 'state'?) (line 13)",
    ):
        assert f"  {expected}" in lines, result.stderr


def test_an_unknown_key_with_nothing_close_gets_no_guess(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "far.yaml"
    policy.write_text(TYPOS.replace("prot: 8080", "mascot: otter"))
    assert main(["validate", str(policy)]) == 1
    assert "  server.mascot: unknown key (line 1)\n" in capsys.readouterr().err


COST = str(ROOT / "configs" / "cost.yaml")  # ${OPENAI_API_KEY}, ${ANTHROPIC_API_KEY}
SECRET = "sk-ant-this-value-must-never-be-printed"


def without_keys(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**env, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}


def test_validate_and_explain_run_without_the_secrets() -> None:
    """They never call a model: an unset ${VAR} is a note, not an error, and a set one's
    value is never printed."""
    env = without_keys(ANTHROPIC_API_KEY=SECRET)
    note = "note: ${OPENAI_API_KEY} is not set (not needed to %s; serve needs it): "
    note += "providers.openai.api_key (line 3)"

    validate = run_cli("validate", COST, env=env)
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith(f"{COST}: OK")
    assert validate.stderr.splitlines() == [note % "validate"]

    explain = run_cli("explain", "--config", COST, "--json", "What is 2 + 2?", env=env)
    assert explain.returncode == 0, explain.stderr
    assert json.loads(explain.stdout)["decision"] == "cheap"  # stdout stays pure JSON
    assert explain.stderr.splitlines() == [note % "explain"]
    for output in (validate.stdout, validate.stderr, explain.stdout, explain.stderr):
        assert SECRET not in output

    text = run_cli("explain", "--config", COST, "What is 2 + 2?", env=without_keys())
    assert text.returncode == 0, text.stderr
    assert "decision:   cheap" in text.stdout
    assert len(text.stderr.splitlines()) == 2  # a note for each key


def test_serve_still_refuses_an_unset_variable() -> None:
    result = run_cli("serve", "--config", COST, env=without_keys(ANTHROPIC_API_KEY=SECRET))
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == [
        "  providers.openai.api_key: environment variable OPENAI_API_KEY is not set (line 3)"
    ]
    assert SECRET not in result.stderr


def test_an_unset_variable_a_key_cannot_do_without_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`port: ${ROUTER_TEST_PORT}` cannot be checked without its value: say so."""
    monkeypatch.delenv("ROUTER_TEST_PORT", raising=False)
    policy = tmp_path / "port.yaml"
    policy.write_text(
        Path(DEFAULT).read_text().replace("${ROUTER_PORT:-8080}", "${ROUTER_TEST_PORT}")
    )
    assert main(["validate", str(policy)]) == 1
    err = capsys.readouterr().err
    assert (
        "  server.port: environment variable ROUTER_TEST_PORT is not set, and this key cannot "
        "be checked without it (input should be a valid integer" in err
    )
