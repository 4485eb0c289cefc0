"""Issue 19, item 13: a policy file that would expand far past any real policy (an alias
bomb, an alias inside its own anchor, nesting hundreds deep) is refused while its YAML is
composed, before anything is built from it, so loading it costs next to no memory; a
gateway asked to reload one keeps serving the old policy at the same size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from router_proxy.config.bounded_yaml import MAX_ALIAS_NODES, MAX_DEPTH
from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config, load_config_text
from tests.support.gateway_process import ROOT, GatewayProcess

# Generous: loading a refused bomb grew the peak by under 1 MB here; before the fix a
# 7-level bomb took 2.2 GB and 18 s, and the 9-level one below never finished.
MEMORY_GROWTH_BOUND_MB = 50
ADMIN = "admin-key-for-limits"

POLICY = f"""\
server: {{admin_keys: [{ADMIN}], watch_config: false}}
providers: {{mock: {{type: mock}}}}
models: {{small: {{provider: mock}}}}
decisions: [{{name: default, when: true, route: {{candidates: [small]}}}}]
"""


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level an anchored list of nine aliases to the level below, so
    the last one stands for 9**levels strings (387 million at 9) in under 1 KB."""
    lines = ["lol0: &lol0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [
        f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]" for i in range(1, levels)
    ]
    return POLICY + "\n".join(lines) + "\n"


def refusal(text: str, tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_an_alias_bomb_is_refused_naming_the_file_and_the_alias_line(tmp_path: Path) -> None:
    error = refusal(billion_laughs(), tmp_path)
    assert str(tmp_path / "policy.yaml") in error
    assert f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)" in error
    # Line 9: lol4 (9**5 nodes) takes the aliases past the budget; nothing later is read.
    assert error.rstrip().endswith("(line 9)")


def test_aliases_inside_their_own_anchor_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    assert "alias *a refers to a node that contains it (line 5)" in refusal(
        POLICY + "loop: &a [1, *a]\n", tmp_path
    )
    assert "alias *m refers to a node that contains it (line 5)" in refusal(
        POLICY + "loop: &m {inner: {again: *m}}\n", tmp_path
    )
    deep = POLICY + "deep: " + "[" * 50_000 + "]" * 50_000 + "\n"
    assert f"nested deeper than {MAX_DEPTH} levels (line 5)" in refusal(deep, tmp_path)


def test_aliases_and_merge_keys_within_the_budget_still_work() -> None:
    text = POLICY.replace(
        "models: {small: {provider: mock}}",
        "models:\n"
        "  small: &defaults {provider: mock, cost: {input_per_mtok: 1, output_per_mtok: 2}}\n"
        "  large: {<<: *defaults, upstream_model: big}\n"
        "  spare: *defaults\n",
    )
    config, _ = load_config_text(text)
    assert config.models["large"].cost.output_per_mtok == 2
    assert config.models["large"].upstream_model == "big"
    assert config.models["spare"] == config.models["small"]


CHILD = """\
import json, resource, sys
from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def vm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1])

before = peak_mb()
# A regression must fail this test, not take the machine's memory: 1 GiB more at most.
limit = (vm_kb() + 1024 * 1024) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    load_config(sys.argv[1])
    outcome = "loaded"
except ConfigError as exc:
    outcome = str(exc)
except MemoryError:
    outcome = "MemoryError"
print(json.dumps({"outcome": outcome, "before_mb": before, "after_mb": peak_mb()}))
"""


def test_refusing_an_alias_bomb_costs_next_to_no_memory(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(billion_laughs())
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert "alias bomb" in found["outcome"], found
    assert found["after_mb"] - found["before_mb"] < MEMORY_GROWTH_BOUND_MB, found


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_a_gateway_refuses_to_reload_an_alias_bomb_and_keeps_serving(tmp_path: Path) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    admin = {"authorization": f"Bearer {ADMIN}"}
    with (
        GatewayProcess(POLICY, tmp_path) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=30) as client,
    ):
        assert gateway.proc is not None
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        before = peak_rss_mb(gateway.proc.pid)
        gateway.config.write_text(billion_laughs())
        for _ in range(3):
            refused = client.post("/admin/reload", headers=admin)
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "invalid_config"
            assert "alias bomb" in refused.json()["error"]["message"]
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        grown = peak_rss_mb(gateway.proc.pid) - before
    assert grown < MEMORY_GROWTH_BOUND_MB, f"peak RSS grew {grown:.1f} MB"
