"""The README's examples, as written: every YAML block parses and configures a model, and the
first shell example runs end to end (inputs, build, golden model, simulation)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtlgen.frontends import load_model
from rtlgen.ir.config import apply_config, load_config
from rtlgen.ir.config_file import parse_config_text

from helpers.paths import JET, ROOT as REPO

README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


YAML_BLOCKS = blocks("yaml")


def is_forest_config(cfg: dict) -> bool:
    return "score" in cfg or isinstance(cfg.get("tmr_bits"), dict) or cfg.get("storage") in ("tmr", "register")


def test_readme_has_the_examples_this_file_checks():
    assert len(YAML_BLOCKS) >= 4
    assert sum(is_forest_config(parse_config_text(b, "README")) for b in YAML_BLOCKS) >= 2


@pytest.mark.parametrize("k", range(len(YAML_BLOCKS)))
def test_every_yaml_block_parses_and_configures_a_model(k, tmp_path):
    cfg = parse_config_text(YAML_BLOCKS[k], f"README YAML block {k}")
    assert isinstance(cfg, dict) and cfg
    if is_forest_config(cfg):
        from rtlgen.frontends.trees import load_forest
        from rtlgen.ir.forest_config import quantize_forest
        full_forest_block = next(b for b in YAML_BLOCKS if "score:" in b)
        merged = {**parse_config_text(full_forest_block, "README"), **cfg}
        qf = quantize_forest(load_forest(_small_xgboost(tmp_path)), merged)
        assert qf.n_features == 6
        if "storage" in cfg:
            assert "constant" not in (qf.threshold_storage, qf.leaf_storage)
    else:
        base = load_config(REPO / "models" / "jet_mlp.yaml")
        merged = {**base, **cfg, "default": {**base["default"], **(cfg.get("default") or {})}}
        qmodel = apply_config(load_model(JET), merged)
        layers = {layer.name: layer for layer in qmodel.layers}
        for name, own in (cfg.get("layers") or {}).items():
            assert name in layers
            if "reuse_factor" in own:
                assert layers[name].reuse_factor == own["reuse_factor"]


def test_models_yaml_files_parse():
    for path in sorted((REPO / "models").glob("*.yaml")):
        onnx_file = path.with_suffix(".onnx")
        if not onnx_file.exists():
            onnx_file = REPO / "models" / "jet_mlp.onnx"
        assert apply_config(load_model(onnx_file), load_config(path)).layers


def _small_xgboost(tmp_path: Path) -> Path:
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    y = (x[:, 0] + x[:, 3] > 0).astype(int)
    path = tmp_path / "small.json"
    xgb.XGBClassifier(n_estimators=4, max_depth=2).fit(x, y).save_model(path)
    return path


@pytest.mark.sim
def test_first_shell_example_runs_as_written(tmp_path):
    """The "Using it" block, line by line, with .venv/bin/* replaced by this interpreter."""
    block = next(b for b in blocks("sh") if "rtlgen build models/jet_mlp.onnx" in b)
    (tmp_path / "models").symlink_to(REPO / "models")
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    for line in block.strip().splitlines():
        command = line.split("  #")[0].strip()
        argv = shlex.split(command)
        if argv[0] == ".venv/bin/python":
            argv[0] = sys.executable
        elif argv[0] == ".venv/bin/rtlgen":
            argv[:1] = [sys.executable, "-m", "rtlgen.cli"]
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (command, res.stderr)
    golden, rtl = np.load(tmp_path / "golden.npy"), np.load(tmp_path / "rtl.npy")
    assert golden.shape == rtl.shape == (200, 5)
    assert np.array_equal(golden, rtl)
    assert (tmp_path / "build" / "jet" / "jet_mlp.v").is_file()

