"""The command line: build/predict/sim end to end, and every kind of bad input
giving one clear message, exit code 2, no traceback and no output folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtlgen.cli import main

from helpers.cli import run_cli, write_config
from helpers.paths import FIXTURES, TINY

CONFIG = {
    "input": "fixed<9,2,RND,SAT>",
    "default": {"weight": "fixed<8,3,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                "result": "fixed<16,6,RND,SAT>", "reuse_factor": 1},
    "layers": {"/0/Gemm": {"reuse_factor": 4, "result": "fixed<12,4,RND,SAT>"}},
}


def test_build_predict_sim_round_trip(tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", CONFIG)
    out = tmp_path / "core"
    assert main(["build", str(TINY), "--config", str(cfg), "-o", str(out), "--name", "tiny"]) == 0
    assert main(["lint", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "tiny.v").read_text().startswith("/* Generated")
    assert manifest["top"] == "tiny" and manifest["ii"] == 4
    gemm = manifest["layers"][0]
    assert gemm["name"] == "/0/Gemm" and gemm["reuse_factor"] == 4 and gemm["result"] == "fixed<12,4,RND,SAT>"
    assert gemm["multipliers"] == -(-gemm["nonzero_weights"] // 4)
    assert manifest["ports"]["in_data"] == 9 * manifest["input"]["count"]

    rng = np.random.default_rng(1)
    x = rng.normal(0, 2, size=(40, manifest["input"]["count"]))
    np.save(tmp_path / "in.npy", x)
    assert main(["predict", str(out), str(tmp_path / "in.npy"), "-o", str(tmp_path / "gold.npy")]) == 0
    assert main(["sim", str(out), str(tmp_path / "in.npy"), "-o", str(tmp_path / "rtl.npy")]) == 0
    gold, rtl = np.load(tmp_path / "gold.npy"), np.load(tmp_path / "rtl.npy")
    assert gold.dtype == np.float64 and gold.shape == (40, manifest["output"]["count"])
    assert np.array_equal(gold, rtl)

    # --raw: codes in, codes out, consistent with the float interface
    from rtlgen.numerics.fixed import parse_type, quantize, to_float
    codes = quantize(x, parse_type(manifest["input"]["type"]))
    np.save(tmp_path / "codes.npy", codes)
    assert main(["predict", str(out), str(tmp_path / "codes.npy"), "-o", str(tmp_path / "raw.npy"), "--raw"]) == 0
    raw = np.load(tmp_path / "raw.npy")
    assert np.issubdtype(raw.dtype, np.integer)
    assert np.array_equal(to_float(raw, parse_type(manifest["output"]["type"])), gold)


def _bad_config(**changes):
    cfg = json.loads(json.dumps(CONFIG))
    for key, value in changes.items():
        if key == "layers":
            cfg["layers"] = value
        else:
            cfg["default"][key] = value
    return cfg


BAD_BUILDS = [
    ("unsupported op", FIXTURES / "bad_exp.onnx", CONFIG, ["Exp"]),
    ("shape mismatch", FIXTURES / "bad_shape.onnx", CONFIG, ["fc2_mismatch", "shape"]),
    ("NaN weights", FIXTURES / "bad_nan.onnx", CONFIG, ["fc2_nan", "NaN"]),
    ("malformed type", TINY, _bad_config(weight="fixed<8;3>"), ["fixed<8;3>"]),
    ("reuse out of range", TINY, _bad_config(layers={"/2/Gemm": {"reuse_factor": 10_000}}), ["/2/Gemm", "reuse_factor"]),
    ("reuse zero", TINY, _bad_config(reuse_factor=0), ["reuse_factor"]),
    ("unknown node", TINY, _bad_config(layers={"/9/Gemm": {"reuse_factor": 2}}), ["/9/Gemm", "/0/Gemm"]),
    ("missing model", FIXTURES / "does_not_exist.onnx", CONFIG, ["does_not_exist.onnx"]),
    ("garbage model", Path(__file__), CONFIG, ["test_cli.py"]),
]


@pytest.mark.parametrize("what,model,cfg,needles", BAD_BUILDS, ids=[b[0] for b in BAD_BUILDS])
def test_bad_build_exits_2_without_output(tmp_path, what, model, cfg, needles):
    cfg_path = write_config(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "core"
    res = run_cli("build", str(model), "--config", str(cfg_path), "-o", str(out))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rtlgen: error: ")
    for needle in needles:
        assert needle in res.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.yaml"]   # no temporary folder left behind


def test_failed_build_keeps_previous_build_intact(tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", CONFIG)
    out = tmp_path / "core"
    assert main(["build", str(TINY), "--config", str(cfg), "-o", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = write_config(tmp_path / "bad.yaml", _bad_config(result="fixed<x>"))
    assert main(["build", str(TINY), "--config", str(bad), "-o", str(out)]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_refuses_to_replace_a_foreign_folder(tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", CONFIG)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["build", str(TINY), "--config", str(cfg), "-o", str(out)]) == 2
    assert (out / "notes.txt").read_text() == "keep me"
    assert "not an rtlgen build folder" in capsys.readouterr().err


def test_predict_input_errors(tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.yaml", CONFIG)
    out = tmp_path / "core"
    assert main(["build", str(TINY), "--config", str(cfg), "-o", str(out)]) == 0
    n_in = json.loads((out / "manifest.json").read_text())["input"]["count"]
    cases = {
        "wrong_width.npy": (np.zeros((3, n_in + 1)), [], "expects|shape"),
        "nan.npy": (np.full((2, n_in), np.nan), [], "NaN"),
        "codes_out_of_range.npy": (np.full((2, n_in), 10_000, dtype=np.int64), ["--raw"], "outside the range"),
        "float_codes.npy": (np.zeros((2, n_in)), ["--raw"], "integers"),
    }
    import re
    for name, (arr, extra, pattern) in cases.items():
        np.save(tmp_path / name, arr)
        assert main(["predict", str(out), str(tmp_path / name), "-o", str(tmp_path / "o.npy"), *extra]) == 2
        assert re.search(pattern, capsys.readouterr().err), name
    assert main(["predict", str(tmp_path / "nowhere"), str(tmp_path / "nan.npy"), "-o", str(tmp_path / "o.npy")]) == 2
    assert "not a build folder" in capsys.readouterr().err
