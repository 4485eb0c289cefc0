"""Command-line defects a new user met, each checked as the user ran it."""

from __future__ import annotations

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
