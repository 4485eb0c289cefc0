"""Learned selectors served from a policy: an artifact named in YAML routes real requests,
and every way an artifact can be wrong is a config error with its YAML path."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config_text
from router_proxy.embeddings.config import EmbeddingsConfig
from router_proxy.embeddings.registry import build_encoder
from router_proxy.server.app import create_app
from router_proxy.training.data import TrainingData
from router_proxy.training.knn_train import train_knn
from tests.support.serving import ServerThread
from tests.test_knn import write_rows

POLICY = """\
providers:
  mock: {{type: mock, reply: "{{model}}"}}
models:
  math-pro: {{provider: mock}}
  law-pro: {{provider: mock}}
  cheap: {{provider: mock}}
decisions:
  - name: default
    when: true
    route:
      candidates: [{candidates}]
      algorithm: knn
      params: {{artifact: "{artifact}", cost_weight: 0}}
"""


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("knn")
    data_path = write_rows(folder / "train.jsonl", per_kind=40, seed=3)
    encoder = build_encoder(EmbeddingsConfig())
    data = TrainingData.load([data_path], encoder, progress=False)
    return train_knn(data, {"k": 10}).save(folder / "artifact")


def policy(artifact: Path | str, candidates: str = "math-pro, law-pro, cheap") -> str:
    return POLICY.format(artifact=artifact, candidates=candidates)


def test_a_knn_decision_routes_requests_through_the_gateway(artifact: Path) -> None:
    config, _ = load_config_text(policy(artifact), env={})
    with ServerThread(create_app(config)) as server, httpx.Client(base_url=server.base_url) as c:

        def model_for(prompt: str) -> str:
            body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
            response = c.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            return response.headers["x-router-model"]

        rng = random.Random(99)
        from tests.test_knn import prompt

        assert model_for(prompt("math", rng)) == "math-pro"
        assert model_for(prompt("law", rng)) == "law-pro"
        plan = c.post(
            "/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": "x"}]}
        ).json()
        assert sorted(plan["candidates"]) == ["cheap", "law-pro", "math-pro"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (policy("/nonexistent/artifact"), "no artifact at '/nonexistent/artifact'"),
        (
            policy("{artifact}")
            .replace("cheap: {provider: mock}", "cheap: {provider: mock}\n  gpt5: {provider: mock}")
            .replace("cheap]", "cheap, gpt5]"),
            "no data for candidate(s) ['gpt5']",
        ),
        (
            policy("{artifact}") + "embeddings: {backend: sentence-transformers}\n",
            "trained with encoder 'static:",
        ),
        (
            policy("{artifact}").replace("algorithm: knn", "algorithm: cascal"),
            "holds a 'knn' artifact, not 'cascal'",
        ),
        (
            policy("{artifact}").replace("cost_weight: 0", "cost_weight: -1"),
            "greater than or equal to 0",
        ),
    ],
)
def test_artifact_problems_are_config_errors_with_a_yaml_path(
    artifact: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text.replace("{artifact}", str(artifact)), env={})
    (issue,) = info.value.issues
    assert str(issue).startswith("decisions[0].route.params")
    assert message in str(issue)
    assert issue.line is not None
