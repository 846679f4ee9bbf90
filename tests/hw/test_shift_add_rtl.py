"""Shift-and-add cores against the golden model in Icarus and Verilator.

The same generic cocotb bench as the multiplier cores (edge vectors, random
``in_valid`` gaps, exact latency), with Verilator's lint, over dense MLPs
(clock targets, fused ReLU, sharing groups, unsigned and wrapping types, single-row and
single-column layers) and convolutions both parallel (im2col) and streamed.
"""

from __future__ import annotations

import numpy as np
import pytest

from rtlgen.flows.lint import lint_build
from rtlgen.frontends import load_model
from rtlgen.frontends.python_api import mlp
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config
from rtlgen.kinds import save_build

from helpers.paths import FIXTURES
from helpers.sims import on_simulators, rtl_sim


def _weights(n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-63, 64, size=(n_in, n_out)).astype(float)
    specials = np.array([0, 0, 1, -1, 4, -4, 32, -32, 31, -63])
    mask = rng.random(w.shape) < 0.4
    w[mask] = rng.choice(specials, size=int(mask.sum()))
    return w / 16.0


def _mlp(sizes, seed):
    rng = np.random.default_rng(seed)
    return mlp([_weights(a, b, seed + k) for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))],
               [rng.normal(0, 1, b) for b in sizes[1:]], activations="relu", name=f"sa{seed}")


DENSE = {"weight": "fixed<7,3,RND,SAT>", "bias": "fixed<7,3,RND,SAT>", "result": "fixed<12,5,RND,SAT>"}
CASES = {
    "mlp_ecp5_150": lambda: apply_config(_mlp([10, 12, 6, 3], 1), {
        "input": "fixed<9,3,RND,SAT>", "clock_mhz": 150, "target": "ecp5", "default": DENSE,
        "layers": {"relu_0": {"result": "ufixed<8,3,RND,SAT>"}, "dense_0": {"share_columns": 5}}}),
    "mlp_unsigned_wrap_levels1": lambda: apply_config(_mlp([7, 5, 4], 2), {
        "input": "ufixed<8,2,TRN,SAT>",
        "default": {**DENSE, "result": "fixed<7,2,RND_CONV,WRAP>", "adder_levels": 1,
                    "arithmetic": "shift_add"}}),
    "mlp_row_and_column": lambda: apply_config(_mlp([1, 6, 1], 3), {
        "input": "fixed<8,3,RND,SAT>", "clock_mhz": 400, "target": "ice40-hx8k",
        "default": {**DENSE, "result": "fixed<9,4,RND,SAT_SYM>"}}),
    "cnn_parallel_up5k_60": lambda: apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), {
        "input": "fixed<6,2,RND,SAT>", "clock_mhz": 60, "target": "ice40-up5k",
        "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,4,RND,SAT>",
                    "result": "fixed<9,4,RND_CONV,SAT>"}}),
    "cnn_stream_ecp5_200": lambda: apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), {
        "input": "fixed<6,2,RND,SAT>", "clock_mhz": 200,
        "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,4,RND,SAT>",
                    "result": "fixed<9,4,RND_CONV,SAT>", "io": "stream"},
        "layers": {"/0/Conv": {"share_columns": 2}}}),
}


def _edges(t, n, n_random, seed):
    rng = np.random.default_rng(seed)
    rows = [np.full(n, t.max_code), np.full(n, t.min_code), np.zeros(n, dtype=np.int64),
            np.where(np.arange(n) % 2 == 0, t.max_code, t.min_code), np.full(n, 1)]
    return np.vstack([np.array(rows, dtype=np.int64), rng.integers(t.min_code, t.max_code + 1, size=(n_random, n))])


@pytest.fixture(scope="module")
def built(build_cache):
    def make(case, outdir):
        q = CASES[case]()
        manifest = save_build(q, outdir)
        assert lint_build(outdir) == []      # Verilator -Wall, only the listed waivers
        return q, outdir, manifest
    return build_cache(make)


@pytest.mark.sim
@pytest.mark.parametrize("case,simulator", on_simulators(
    list(CASES), verilator=("mlp_ecp5_150",), long=("cnn_parallel_up5k_60",)))
def test_shift_add_rtl_equals_golden(built, case, simulator, tmp_path):
    q, outdir, manifest = built(case)
    # only an average pool whose divisor varies at the borders keeps its multipliers
    assert manifest["multipliers"] == sum(e["multipliers"] for e in manifest["layers"] if e.get("op") == "avgpool")
    dense = [e for e in manifest["layers"] if e.get("op") in ("dense", "conv")]
    assert dense and all(e["arithmetic"] == "shift_add" and e["adders"] >= 0 for e in dense)
    x = _edges(q.input_type, q.n_in, 50, seed=len(case))
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)
