"""The YAML contract: every mistake named by its path and line, env interpolation."""

from __future__ import annotations

import json
import textwrap

import pytest

from router_proxy.cli import main
from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config, load_config_text

GOOD = """\
providers:
  mock: {type: mock}
models:
  small: {provider: mock}
  big: {provider: mock, upstream_model: big-v2, cost: {input_per_mtok: 3, output_per_mtok: 15}}
signals:
  - {name: code, type: keyword, any: [python]}
decisions:
  - name: coding
    priority: 10
    when: code
    route: {candidates: [big]}
  - name: default
    when: true
    route: {candidates: [small]}
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), env=env or {})
    return [str(issue) for issue in info.value.issues]


def test_good_config_loads_with_defaults() -> None:
    config, _ = load_config_text(GOOD, env={})
    assert config.server.port == 8080
    assert config.upstream_name("big") == "big-v2"
    assert config.upstream_name("small") == "small"
    assert config.models["big"].cost.dollars(1_000_000, 1_000_000) == pytest.approx(18.0)


def test_unknown_model_in_candidates_names_path_and_line() -> None:
    text = GOOD.replace("candidates: [big]", "candidates: [gpt5]")
    assert errors_of(text) == ["decisions[0].route.candidates[0]: unknown model 'gpt5' (line 12)"]


def test_unknown_keys_are_refused_everywhere() -> None:
    text = GOOD.replace("priority: 10", "priority: 10\n    priorty: 3").replace(
        "{type: mock}", "{type: mock, colour: red}"
    )
    assert errors_of(text) == [
        "providers.mock.colour: unknown key (line 2)",
        "decisions[0].priorty: unknown key (did you mean 'priority'?) (line 11)",
    ]


def test_unknown_signal_and_missing_default_are_errors() -> None:
    text = GOOD.replace("when: code", "when: {all: [code, {not: maths}]}").replace(
        "when: true", "when: false"
    )
    assert errors_of(text) == [
        "decisions: no default decision: add one with `when: true` (line 8)",
        "decisions[0].when.all[1].not: unknown signal 'maths' (known: code) (line 11)",
    ]


def test_default_that_shadows_other_decisions_is_an_error() -> None:
    text = GOOD.replace("when: true", "when: true\n    priority: 50")
    (error,) = errors_of(text)
    assert error.startswith("decisions[0].when: decision 'coding' can never match: 'default'")


def test_all_errors_are_reported_together() -> None:
    text = """\
    providers:
      mock: {type: mokc}
    models:
      small: {provider: mock, timeouts: {total: -1}}
    signals:
      - {name: code, type: keyword, any: ["re:("]}
    decisions:
      - {name: default, when: true, route: {candidates: []}}
    """
    errors = errors_of(text)
    assert errors[0].startswith("providers.mock: unknown type 'mokc' (expected one of: 'openai'")
    assert errors[0].endswith("(line 2)")
    assert any(
        e.startswith("models.small.timeouts.total: input should be greater than 0") for e in errors
    )
    assert any(e.startswith("signals[0].any[0]: 're:(' is not a valid regex") for e in errors)
    assert any(
        e.startswith("decisions[0].route.candidates: list should have at least 1") for e in errors
    )
    assert len(errors) == 4


def test_references_between_sections() -> None:
    text = GOOD.replace("big: {provider: mock,", "big: {provider: openai,").replace(
        "  - name: default", "  - name: small"
    )
    assert errors_of(text) == [
        "models.big.provider: unknown provider 'openai' (known: mock) (line 5)",
        "decisions[1].name: 'small' is also a model name; a request for it would be ambiguous (line 13)",
    ]


def test_duplicate_yaml_keys_and_names() -> None:
    text = GOOD.replace(
        "  small: {provider: mock}", "  small: {provider: mock}\n  small: {provider: mock}"
    )
    assert errors_of(text)[0] == "models.small: duplicate key (line 5)"
    text = GOOD.replace("  - name: default", "  - name: coding")
    assert "decisions[1].name: duplicate decision name 'coding' (line 13)" in errors_of(text)


def test_yaml_syntax_error_has_a_line() -> None:
    (error,) = errors_of("providers:\n  mock: {type: mock\nmodels: []\n")
    assert error.startswith("<root>: invalid YAML")
    assert error.endswith("(line 3)")


def test_env_interpolation_with_defaults_and_escapes() -> None:
    text = GOOD.replace(
        "mock: {type: mock}", 'mock: {type: mock, reply: "${GREETING:-hi} $${NOT_A_VAR} ${WHO}"}'
    ).replace("providers:", "server: {port: '${PORT:-9090}'}\nproviders:")
    config, _ = load_config_text(text, env={"WHO": "there"})
    assert config.server.port == 9090
    assert config.providers["mock"].model_dump()["reply"] == "hi ${NOT_A_VAR} there"


def test_unset_env_var_without_default_is_an_error() -> None:
    text = GOOD.replace("{type: mock}", "{type: mock, reply: '${MISSING_VAR}'}")
    assert errors_of(text) == [
        "providers.mock.reply: environment variable MISSING_VAR is not set (line 2)"
    ]


def test_env_values_cannot_inject_yaml() -> None:
    text = GOOD.replace("{type: mock}", "{type: mock, reply: '${EVIL}'}")
    config, _ = load_config_text(text, env={"EVIL": "x}\nmodels: {}"})
    assert config.providers["mock"].model_dump()["reply"] == "x}\nmodels: {}"
    assert set(config.models) == {"small", "big"}


def test_validate_cli_prints_every_error_and_exits_1(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("[big]", "[gpt5]").replace("when: code", "when: cod"))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "decisions[0].route.candidates[0]: unknown model 'gpt5' (line 12)" in err
    assert "decisions[0].when: unknown signal 'cod' (known: code) (line 11)" in err
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1


def test_schema_cli_prints_json_schema(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) == {
        "server",
        "embeddings",
        "providers",
        "models",
        "signals",
        "decisions",
        "routing",
        "resilience",
        "limits",
        "preferences",
        "affinity",
        "state",
        "cache",
        "records",
        "tracing",
    }
    assert schema["additionalProperties"] is False


def test_shipped_configs_validate() -> None:
    import re
    from pathlib import Path

    from router_proxy.pipeline import Pipeline

    configs = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))
    assert len(configs) >= 6
    for path in configs:
        # Every variable the example requires (no default), as a deployment would set it.
        names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text())
        config, _ = load_config(path, env={name: "set-by-test" for name in names})
        Pipeline.build(config)


def test_readme_policy_validates() -> None:
    import re
    from pathlib import Path

    readme = Path(__file__).parent.parent.joinpath("README.md").read_text()
    block = re.search(r"## A policy in 15 lines\n\n```yaml\n(.*?)```", readme, re.S)
    assert block is not None
    assert len(block.group(1).strip().splitlines()) == 15
    config, _ = load_config_text(block.group(1), env={"ANTHROPIC_API_KEY": "k"})
    assert [d.name for d in config.decisions] == ["private", "coding", "default"]
