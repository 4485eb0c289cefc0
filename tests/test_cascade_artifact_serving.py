"""A trained cascade artifact served by a decision (``algorithm: cascade, params:
{artifact, budget_per_1k}``): the prompt's embedding picks its kind, the budget the
stage set, at load the artifact is checked against the config like the learned
selectors' artifacts, and the gateway calls what the plan says.

The artifact is trained on the rows of ``test_cascade_train.py`` (arithmetic: the cheap
pair c1/c2, escalating to E; law: c3 alone)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.server.app import create_app
from router_proxy.training.cascade_train import train_cascade
from router_proxy.training.data import TrainingData
from tests.support.serving import ServerThread
from tests.test_cascade_train import encoder, write_rows

MATH = "What is 120 plus 45?"
LAW = "Is a verbal lease enforceable in court?\nA) yes, always\nB) no, never\n"


def policy(artifact: Path, budget: float = 100.0, models: str = "E c1 c2 c3") -> str:
    lines = "".join(f"  {m}: {{provider: mock}}\n" for m in models.split())
    return (
        "providers: {mock: {type: mock}}\nmodels:\n" + lines + "decisions:\n"
        "  - name: learned\n    when: true\n"
        f"    route: {{algorithm: cascade, params: {{artifact: {artifact}, "
        f"budget_per_1k: {budget}}}}}\n"
    )


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cascade")
    data = TrainingData.load([write_rows(folder / "train.jsonl", 120, 1)], encoder())
    return train_cascade(data, {}).save(folder / "artifact")


@pytest.fixture(scope="module")
def gateway(artifact: Path) -> Iterator[httpx.Client]:
    config, _ = load_config_text(policy(artifact), env={})
    with ServerThread(create_app(config)) as server, httpx.Client(base_url=server.base_url) as c:
        yield c


def _plan(client: httpx.Client, prompt: str) -> dict[str, Any]:
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    response = client.post("/v1/route", json=body)
    assert response.status_code == 200, response.text
    calls = response.json()["calls"]
    assert isinstance(calls, dict)
    return calls


def test_the_prompt_picks_its_stage_set(gateway: httpx.Client) -> None:
    math, law = _plan(gateway, MATH), _plan(gateway, LAW)
    assert math["kind"] == "cascade"
    assert [set(stage) for stage in math["stages"]] == [{"c1", "c2"}, {"E"}]
    assert law["stages"] == [["c3"]]


def test_the_gateway_calls_what_the_plan_says(gateway: httpx.Client) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": LAW}]}
    response = gateway.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-router-model"] == "c3"
    assert response.headers["x-router-calls"] == "c3:answered"


def test_a_small_budget_buys_the_cheapest_stage_sets(artifact: Path) -> None:
    config, _ = load_config_text(policy(artifact, budget=0.0), env={})
    with ServerThread(create_app(config)) as server, httpx.Client(base_url=server.base_url) as c:
        stages = _plan(c, MATH)["stages"]
    assert "E" not in {m for stage in stages for m in stage}


def test_a_plan_model_missing_from_the_config_is_refused_at_load(artifact: Path) -> None:
    with pytest.raises(ConfigError, match=r"decisions\[0\]\.route\.params\.artifact.*'E'"):
        load_config_text(policy(artifact, models="c1 c2 c3"), env={})


def test_agree_groups_code_at_the_artifacts_similarity(tmp_path: Path, artifact: Path) -> None:
    from router_proxy.selection.cascade import CascadeParams, CascadeSelector
    from router_proxy.selection.cascade_artifact import CascadeArtifact
    from router_proxy.selection.multi_call import AgreeStop, ConfidenceStop

    loaded = CascadeArtifact.load(artifact)
    learned = replace(loaded, code_similarity=0.7)
    params = CascadeParams(artifact=artifact, budget_per_1k=1.0)
    selector = CascadeSelector(("E", "c1", "c2", "c3"), {}, params, (learned, None))  # type: ignore[arg-type]
    stop = selector._plan_of((("c1", "c2"), ("E",))).stop
    assert isinstance(stop, AgreeStop)
    assert stop.code_similarity == 0.7
    named = CascadeParams(artifact=artifact, budget_per_1k=1.0, stop=AgreeStop(code_similarity=0.3))
    selector = CascadeSelector(("E", "c1", "c2", "c3"), {}, named, (learned, None))  # type: ignore[arg-type]
    stop = selector._plan_of((("c1", "c2"), ("E",))).stop
    assert isinstance(stop, AgreeStop)
    assert stop.code_similarity == 0.3  # the config wins
    # A confidence rule falling back to agreement compares code at the artifact's too.
    confident = CascadeParams(
        artifact=artifact,
        budget_per_1k=1.0,
        stop=ConfidenceStop(rule="confidence", without_logprobs="agree"),
    )
    selector = CascadeSelector(("E", "c1", "c2", "c3"), {}, confident, (learned, None))  # type: ignore[arg-type]
    stop = selector._plan_of((("c1", "c2"), ("E",))).stop
    assert isinstance(stop, ConfidenceStop)
    assert stop.code_similarity == 0.7


def test_stages_and_artifact_together_are_refused(artifact: Path) -> None:
    text = policy(artifact).replace("params: {", "params: {stages: [[c1]], ")
    with pytest.raises(ConfigError, match="either `stages` or `artifact`"):
        load_config_text(text, env={})
