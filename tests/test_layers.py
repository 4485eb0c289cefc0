"""The layers of the request's walk hold (pyproject's import-linter contract), and every
extension point refuses a second entry under one name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from router_proxy.providers.registry import PROVIDER_TYPES
from router_proxy.registry import Registry
from router_proxy.selection.registry import SELECTORS
from router_proxy.signals.registry import SIGNAL_TYPES

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).with_name("lint-imports")
    command = [str(tool)] if tool.exists() else ["lint-imports"]
    return subprocess.run(
        [*command, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )


def test_the_package_keeps_its_layers() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_a_forbidden_import_breaks_the_contract(tmp_path: Path) -> None:
    """config/ (the bottom) importing the engine is caught, naming the line."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "router_proxy", copy / "router_proxy")
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    base = copy / "router_proxy" / "config" / "base.py"
    base.write_text(base.read_text() + "\nimport router_proxy.engine.engine\n")
    done = lint_imports(copy)
    assert done.returncode != 0
    assert "router_proxy.config is not allowed to import router_proxy.engine" in done.stdout


def test_registries_refuse_a_second_entry_under_one_name() -> None:
    registry: Registry[int] = Registry("widget", [("a", 1)])
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        registry.register("a", 2)
    with pytest.raises(ValueError, match="registered twice"):
        Registry("widget", [("b", 1), ("b", 2)])
    assert registry["a"] == 1


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown provider type 'nope' \(known: anthropic, mock"):
        PROVIDER_TYPES["nope"]
    assert "keyword" in SIGNAL_TYPES
    assert SELECTORS["static"].config_model is not None
