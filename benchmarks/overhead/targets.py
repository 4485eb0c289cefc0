"""The servers under test, each in front of one fake upstream, on free loopback ports.

* ``floor``    the baseline: the project's shared floor (``../shared/bench/
               floor_passthrough.py``, chat only) when it is there and the chat surface is
               measured, else floor.py, which relays every path to the upstream unchanged,
* ``gateway``  ``python -m router_proxy serve --config POLICY``; it translates responses and
               messages into a chat completion, so it calls the upstream's chat path for
               every surface while the floor relays each surface's native path,
* ``litellm``  optional: the LiteLLM proxy (``--litellm PYTHON``), one ``openai/`` model
               named ``auto`` on the same upstream, so the same requests route through it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.overhead.procs import Fleet, Server, free_ports

HERE = Path(__file__).resolve().parent
LOGS = HERE / "results" / "logs"
# LiteLLM imports a lot and, on a busy 2-core machine, takes tens of seconds to start.
LITELLM_STARTUP_S = 180.0


@dataclass(frozen=True)
class Options:
    policy: Path
    litellm_python: str | None
    chunks: int
    chunk_gap_ms: float
    fake_gateway: bool = False  # A/A: a second floor in the gateway's place
    shared_floor: Path | None = None  # the shared floor module, run as its docstring says


def _py_module(module: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", module, "--port", str(port), *extra]


def upstream_server(port: int, options: Options) -> Server:
    extra = ("--chunks", str(options.chunks), "--chunk-gap-ms", str(options.chunk_gap_ms))
    cmd = _py_module("benchmarks.overhead.upstream", port, *extra)
    return Server("upstream", cmd, port, LOGS / "upstream.log")


def floor_server(name: str, port: int, upstream_root: str, shared: Path | None = None) -> Server:
    if shared is None:
        cmd = _py_module("benchmarks.overhead.floor", port, "--upstream", upstream_root)
        return Server(name, cmd, port, LOGS / f"{name}.log")
    cmd = [sys.executable, "-m", "uvicorn", f"{shared.stem}:app", "--app-dir", str(shared.parent)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
    cmd += ["--http", "httptools", "--log-level", "warning"]
    env = {"FLOOR_UPSTREAM": upstream_root}
    return Server(name, cmd, port, LOGS / f"{name}.log", env=env)


def gateway_server(port: int, policy: Path, upstream_root: str) -> Server:
    cmd = [sys.executable, "-m", "router_proxy", "serve", "--config", str(policy)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    env = {"UPSTREAM_URL": upstream_root + "/v1"}
    return Server("gateway", cmd, port, LOGS / "gateway.log", env=env)


def litellm_server(port: int, python: str, upstream_root: str) -> Server:
    config = LOGS / "litellm.yaml"
    config.write_text(
        "# written by benchmarks/overhead: one model, named like the benchmark's `model`\n"
        "model_list:\n"
        "  - model_name: auto\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: {upstream_root}/v1\n"
        "      api_key: sk-bench-not-a-secret\n"
    )
    cmd = [python, "-m", "litellm.proxy.proxy_cli", "--config", str(config)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: the bundled cost map
        "LITELLM_TELEMETRY_DISABLED": "true",
        # No key, like the gateway and the floor here (loopback only); LiteLLM refuses to
        # start without one unless told.
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    return Server(
        "litellm",
        cmd,
        port,
        LOGS / "litellm.log",
        env=env,
        health_path="/health/liveliness",
        startup_timeout_s=LITELLM_STARTUP_S,
    )


def start(options: Options, fleet: Fleet) -> tuple[Server, dict[str, Server]]:
    """The upstream and the targets by name (floor, gateway[, litellm]), all started."""
    LOGS.mkdir(parents=True, exist_ok=True)
    up_port, floor_port, gw_port, lt_port = free_ports(4)
    upstream = fleet.add(upstream_server(up_port, options))
    root = upstream.base
    floor = floor_server("floor", floor_port, root, options.shared_floor)
    targets = {"floor": fleet.add(floor)}
    if options.fake_gateway:
        fake = floor_server("gateway", gw_port, root)
        targets["gateway"] = fleet.add(fake)
    else:
        targets["gateway"] = fleet.add(gateway_server(gw_port, options.policy, root))
    if options.litellm_python:
        targets["litellm"] = fleet.add(litellm_server(lt_port, options.litellm_python, root))
    print(f"upstream  {upstream.base}  (logs in {LOGS})")
    for name, server in targets.items():
        note = "  [FAKE: a second floor]" if name == "gateway" and options.fake_gateway else ""
        if name == "floor":
            note = f"  [{options.shared_floor or 'benchmarks/overhead/floor.py'}]"
        print(f"{name:<9} {server.base}{note}")
    if not options.litellm_python:
        print("litellm   not measured (--litellm PYTHON: an interpreter with litellm[proxy])")
    return upstream, targets
