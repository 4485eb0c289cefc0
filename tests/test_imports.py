"""The server does not load the ``train`` extra (tqdm, matplotlib); the commands that need
it say how to install it when it is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router_proxy.cli import main
from router_proxy.training.extra import INSTALL, MissingExtra

ROOT = Path(__file__).parent.parent
DEFAULT = str(ROOT / "configs" / "default.yaml")


def test_serving_commands_import_no_training_extra() -> None:
    # A fresh interpreter: this one has loaded tqdm through other tests. The CLI builds
    # every command's parser (training ones included) before running serve/validate/explain.
    # (default.yaml has no embedding signal: model2vec, the static encoder, imports tqdm
    # itself, its own dependency.)
    code = textwrap.dedent(
        f"""
        import sys
        import router_proxy.cli
        import router_proxy.server.app
        import router_proxy.server.serve
        assert router_proxy.cli.main(["validate", {DEFAULT!r}]) == 0
        assert router_proxy.cli.main(["explain", "--config", {DEFAULT!r}, "hello"]) == 0
        loaded = [name for name in ("tqdm", "matplotlib") if name in sys.modules]
        assert not loaded, loaded
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--algorithm", "knn", "--data", "in.jsonl", "--out", "out"],
        ["eval", "--router", "artifact", "--data", "in.jsonl"],
        ["calibrate", "--router", "artifact", "--data", "in.jsonl", "--target-cost-per-1k", "1"],
        [
            "generate",
            "--config",
            DEFAULT,
            "--tasks",
            "tasks.yaml",
            "--generator",
            "small",
            "--pool",
            "small,large",
            "--per-task",
            "1",
            "--out",
            "out.jsonl",
        ],
    ],
    ids=lambda argv: argv[0],
)
def test_training_commands_without_tqdm_name_the_extra(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` raises ImportError
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"router-proxy {argv[0]} needs tqdm" in err
    assert INSTALL in err
    assert "pip install 'router-proxy[train]'" in err


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from router_proxy.training.plot import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra, match=r"pip install 'router-proxy\[train\]'"):
        plot(None, "curve.png")  # type: ignore[arg-type]  # fails before reading it
