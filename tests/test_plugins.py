"""Unlearning methods from a module outside labelleak, used in grids like built-in ones: through
a config's ``plugins`` key, a package's entry point, or a ``module:Class`` name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env

from labelleak.errors import LabelleakError
from labelleak.unlearning import METHODS, build_method
from labelleak.unlearning.plugins import register_plugins

# A user's method, written against the public interface only: it lowers the forgotten classes'
# classifier biases, which forgets them without touching anything else (and leaks them to the
# head-bias baseline, which the grid test checks).
PLUGIN_SOURCE = """
import torch
from pydantic import Field

from labelleak.unlearning import MethodConfig, UnlearningMethod


class SuppressConfig(MethodConfig):
    offset: float = Field(50.0, gt=0, description="nats taken off the forgotten biases")


class SuppressHead(UnlearningMethod):
    Config = SuppressConfig
    summary = "lower the forgotten classes' classifier biases"

    def unlearn(self, task):
        model = task.copy_original()
        with torch.no_grad():
            model.classifier.bias[list(task.forget_classes)] -= self.config.offset
        return model.eval()


class NotAMethod:
    pass
"""

GRID = """
dataset: digits
methods: [{method}]
forget: [[3]]
seeds: [0]
attacks: [head-bias]
train: {{epochs: 5}}
"""


def write_plugin(folder: Path, module: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(PLUGIN_SOURCE)
    return folder


def run_cli(args: list[str], cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env["PYTHONPATH"]])
    return subprocess.run(
        [sys.executable, "-m", "labelleak.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def check_grid(out: Path, method: str) -> None:
    table = pd.read_csv(out / "unlearning.csv", dtype={"forgotten": str})
    (row,) = table.itertuples()
    assert row.method == method
    assert row.forget_acc == 0.0
    # Only the forgotten bias moved: a retained image can only gain (one the original took
    # for a 3 no longer is).
    assert row.retain_acc >= row.original_retain_acc
    attacks = pd.read_csv(out / "attacks.csv", dtype={"forgotten": str, "predicted": str})
    target = attacks[attacks["method"] == method]
    assert set(target["predicted"]) == {"3"}


@pytest.fixture
def clean_registry():  # type: ignore[no-untyped-def]
    """Remove whatever a test registers in-process, so other tests see the built-ins only."""
    before = set(METHODS)
    added = list(sys.path)
    yield
    for name in set(METHODS) - before:
        del METHODS[name]
    sys.path[:] = added


def test_plugin_from_the_config_runs_in_a_grid(tmp_path) -> None:
    site = write_plugin(tmp_path / "site", "suppress_plugin")
    config = tmp_path / "grid.yaml"
    config.write_text(
        GRID.format(method="suppress") + 'plugins: {suppress: "suppress_plugin:SuppressHead"}\n'
    )
    result = run_cli(
        ["run", str(config), "--out", "out", "--cache-dir", "cache", "-q"], tmp_path, site
    )
    assert result.returncode == 0, result.stderr
    check_grid(tmp_path / "out", "suppress")


def test_plugin_from_an_entry_point_is_listed_and_runs(tmp_path) -> None:
    # An installed package as importlib.metadata sees one: a dist-info folder on the path.
    site = write_plugin(tmp_path / "site", "suppress_pkg")
    info = site / "suppress_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: suppress-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[labelleak.unlearning]\nsuppress = suppress_pkg:SuppressHead\n"
    )
    listing = run_cli(["methods"], tmp_path, site)
    assert listing.returncode == 0, listing.stderr
    assert "suppress " in listing.stdout and "offset = 50.0" in listing.stdout
    config = tmp_path / "grid.yaml"
    config.write_text(GRID.format(method="suppress"))
    result = run_cli(
        ["run", str(config), "--out", "out", "--cache-dir", "cache", "-q"], tmp_path, site
    )
    assert result.returncode == 0, result.stderr
    check_grid(tmp_path / "out", "suppress")


def test_module_class_name_is_a_method_name(tmp_path, clean_registry) -> None:
    sys.path.insert(0, str(write_plugin(tmp_path, "suppress_direct")))
    method = build_method("suppress_direct:SuppressHead", {"offset": 10.0})
    assert method.name == "suppress_direct:SuppressHead"
    assert method.config.offset == 10.0
    with pytest.raises(LabelleakError, match="offset"):
        build_method("suppress_direct:SuppressHead", {"offset": -1.0})


@pytest.mark.parametrize(
    ("plugins", "message"),
    [
        ({"x": "no_colon_here"}, "must be written 'module:Class'"),
        ({"x": "no_such_module_anywhere:Thing"}, "cannot import plugin module"),
        ({"x": "suppress_bad:Missing"}, "has no 'Missing'"),
        ({"x": "suppress_bad:NotAMethod"}, "not a subclass"),
        ({"retrain": "suppress_bad:SuppressHead"}, "'retrain' exists already"),
        ({"a:b": "suppress_bad:SuppressHead"}, "must not contain ':'"),
    ],
)
def test_bad_plugins_are_one_line_errors(tmp_path, clean_registry, plugins, message) -> None:
    sys.path.insert(0, str(write_plugin(tmp_path, "suppress_bad")))
    with pytest.raises(LabelleakError, match=message) as caught:
        register_plugins(plugins)
    assert "\n" not in str(caught.value)


def test_bad_plugin_in_a_config_exits_2_before_writing(tmp_path) -> None:
    config = tmp_path / "grid.yaml"
    config.write_text(GRID.format(method="x") + 'plugins: {x: "nowhere_module:X"}\n')
    result = run_cli(["run", str(config), "--out", "out", "-q"], tmp_path, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot import plugin module 'nowhere_module'" in result.stderr
    assert not (tmp_path / "out").exists()
