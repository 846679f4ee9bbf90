"""Differential tests: generated RTL vs the golden model, on both simulators.

Every case builds a core, drives edge vectors (all max, all min, zeros,
codes that make rounding ties and saturation boundaries) and random ones
through the generic cocotb testbench with random ``in_valid`` gaps, and
requires every output to equal the golden model's bit for bit and to
appear exactly ``latency`` cycles after its input.
"""

from __future__ import annotations

import numpy as np
import pytest

from rtlgen.kinds import save_build
from rtlgen.flows.lint import lint_build
from rtlgen.frontends.python_api import mlp
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config
from rtlgen.numerics.fixed import parse_type

from helpers.paths import JET, JET_CFG
from helpers.sims import on_simulators, rtl_sim


def random_model(sizes, seed, sparsity=0.3, scale=1.0):
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(0.0, scale, size=(n_in, n_out))
        w[rng.random(w.shape) < sparsity] = 0.0
        weights.append(w)
        biases.append(rng.normal(0.0, scale, size=n_out))
    return mlp(weights, biases, activations="relu", name=f"m{seed}")


def edge_vectors(input_type: str, n_in: int, n_random: int, seed: int) -> np.ndarray:
    t = parse_type(input_type)
    rng = np.random.default_rng(seed)
    rows = [
        np.full(n_in, t.max_code), np.full(n_in, t.min_code), np.zeros(n_in, dtype=np.int64),
        np.full(n_in, t.max_code - 1), np.full(n_in, t.min_code + 1),
        np.where(np.arange(n_in) % 2 == 0, t.max_code, t.min_code),
        np.full(n_in, 1), np.full(n_in, -1 if t.signed else 2),
    ]
    rand = rng.integers(t.min_code, t.max_code + 1, size=(n_random, n_in))
    return np.vstack([np.array(rows, dtype=np.int64), rand])


# (id, sizes, config, seed): reuse factors 1, 2, 3, 4 and full; signed and
# unsigned inputs; SAT and WRAP; TRN, RND and RND_CONV; an accumulator type.
CASES = [
    ("r1_signed_rnd_sat", [6, 8, 4],
     {"input": "fixed<8,3,RND,SAT>",
      "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                  "result": "fixed<10,4,RND,SAT>", "reuse_factor": 1}}, 1),
    ("r2_unsigned_conv_sat", [5, 7, 3],
     {"input": "ufixed<7,2,TRN,SAT>",
      "default": {"weight": "fixed<5,1,RND_CONV,SAT>", "bias": "fixed<6,2,RND,SAT>",
                  "result": "fixed<7,2,RND_CONV,SAT>", "reuse_factor": 2}}, 2),
    ("r3_signed_trn_wrap", [6, 5, 4],
     {"input": "fixed<7,3,TRN,WRAP>",
      "default": {"weight": "fixed<6,3,TRN,SAT>", "bias": "fixed<5,2,TRN,SAT>",
                  "result": "fixed<6,2,TRN,WRAP>", "reuse_factor": 3}}, 3),
    ("r4_accum_rnd", [6, 6, 3],
     {"input": "fixed<8,2,RND,SAT>",
      "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                  "accum": "fixed<12,5,RND,WRAP>", "result": "fixed<9,4,RND_CONV,SAT>",
                  "reuse_factor": 4}}, 4),
    ("rfull_mixed_layers", [4, 5, 3],
     {"input": "fixed<6,2,RND_CONV,SAT>",
      "default": {"weight": "fixed<5,2,RND,SAT>", "bias": "fixed<5,2,RND,SAT>",
                  "result": "fixed<8,3,RND_CONV,SAT_SYM>", "reuse_factor": "full"},
      "layers": {"relu_0": {"result": "ufixed<6,2,RND,SAT>"},
                 "dense_1": {"reuse_factor": 2, "result": "fixed<6,1,RND,WRAP>"}}}, 5),
    ("r1_saturating_narrow_out", [8, 4],
     {"input": "fixed<9,4,RND,SAT>",
      "default": {"weight": "fixed<8,4,RND,SAT>", "bias": "fixed<8,4,RND,SAT>",
                  "result": "fixed<5,2,RND,SAT>", "reuse_factor": 1, "adder_levels": 1}}, 6),
]


@pytest.fixture(scope="module")
def built(build_cache):
    def make(case_id, outdir):
        _, sizes, cfg, seed = next(c for c in CASES if c[0] == case_id)
        q = apply_config(random_model(sizes, seed), cfg)
        manifest = save_build(q, outdir)
        assert lint_build(outdir) == []   # Verilator -Wall, only the listed waivers
        x = edge_vectors(cfg["input"], sizes[0], 120, seed)
        return q, outdir, manifest, x, predict_codes(q, x)
    return build_cache(make)


@pytest.mark.sim
@pytest.mark.parametrize("case_id,simulator", on_simulators(
    [c[0] for c in CASES], verilator=("r2_unsigned_conv_sat",)))
def test_rtl_matches_golden(built, case_id, simulator, tmp_path):
    q, outdir, manifest, x, expected = built(case_id)
    got = rtl_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim", seed=7)
    assert np.array_equal(np.asarray(got, dtype=object), np.asarray(expected, dtype=object))
    dense = [layer for layer in manifest["layers"] if layer["op"] == "dense"]
    assert manifest["ii"] == max(layer["reuse_factor"] for layer in dense)


@pytest.mark.sim
@pytest.mark.parametrize("quant,simulator", on_simulators(
    ["RND", "RND_CONV", "TRN", "RND_ZERO", "RND_INF", "RND_MIN_INF", "TRN_ZERO"], verilator=("RND",)))
def test_rounding_ties_and_saturation(quant, simulator, tmp_path):
    """Identity weights and a result with one fractional bit fewer than the
    input: every odd input code is an exact tie; the narrow result type
    also saturates (or wraps) at the boundaries."""
    n = 4
    model = mlp([np.eye(n)], [np.zeros(n)], activations="relu", name="ties")
    overflow = "SAT" if quant != "TRN" else "WRAP"
    cfg = {"input": "fixed<6,3,TRN,WRAP>",
           "default": {"weight": "fixed<3,3,RND,SAT>", "bias": "fixed<3,3,RND,SAT>",
                       "result": f"fixed<4,2,{quant},{overflow}>", "reuse_factor": 2}}
    q = apply_config(model, cfg)
    outdir = tmp_path / "core"
    save_build(q, outdir)
    assert lint_build(outdir) == []
    codes = np.arange(-32, 32, dtype=np.int64)   # every code of fixed<6,3>
    x = np.stack([np.roll(codes, k) for k in range(n)], axis=1)
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


@pytest.mark.sim
@pytest.mark.long   # the README's first example runs the same model on Verilator in make test
def test_shipped_jet_mlp_on_verilator(tmp_path):
    """The demo model end to end from its ONNX file; large enough that
    Verilator splits the model over several C++ files."""
    from rtlgen.frontends import load_model
    q = apply_config(load_model(JET), str(JET_CFG))
    outdir = tmp_path / "core"
    manifest = save_build(q, outdir)
    assert lint_build(outdir) == []
    assert manifest["latency"] > 0 and manifest["multipliers"] == sum(
        layer.multipliers for layer in q.layers if layer.op == "dense")
    x = edge_vectors(str(q.input_type), q.n_in, 150, seed=11)
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator="verilator", expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


def _activation_model(kind: str, seed: int, stream: bool = False):
    """A dense (or streamed conv) layer, then an activation of ``kind``, then a dense layer."""
    from rtlgen.ir.conv import Conv
    from rtlgen.ir.model import Activation, Dense, FloatModel
    rng = np.random.default_rng(seed)
    params = {"leaky_relu": dict(slope=np.array([0.1])),
              "prelu": dict(slope=np.array([0.25, -0.5, 1.5, 0.0])),
              "clip": dict(bounds=(-1.25, 2.0))}.get(kind, {})
    if stream:
        first = Conv("conv", rng.normal(0, 0.7, (4, 2, 3, 3)), rng.normal(0, 0.3, 4), (2, 5, 5), (1, 1), (1, 1, 1, 1))
        n, shape = 4 * 25, (2, 5, 5)
    else:
        first, n, shape = Dense("dense_0", rng.normal(0, 0.7, (6, 8)), rng.normal(0, 0.3, 8)), 8, None
    act = Activation(f"{kind}_0", kind, n, **params)
    last = [] if kind in ("softmax", "argmax") else [Dense("dense_1", rng.normal(0, 0.5, (n, 3)), rng.normal(0, 0.3, 3))]
    return FloatModel(f"act_{kind}", int(np.prod(shape)) if shape else 6, [first, act, *last], input_shape=shape)


ACTIVATION_CASES = {
    # kind: (configuration entries of the activation, reuse factor of the layer before it, streamed)
    "leaky_relu": ({"weight": "fixed<6,0,RND,SAT>", "result": "fixed<7,3,RND_CONV,SAT>"}, 1, False),
    "prelu": ({"weight": "fixed<5,2,RND,SAT>", "result": "fixed<6,2,RND,SAT_SYM>"}, 2, False),
    "clip": ({"result": "fixed<6,2,RND,SAT>"}, 1, False),
    "sigmoid": ({"result": "ufixed<8,0,RND,SAT>", "table_size": 64, "table_range": 4}, 3, False),
    "tanh": ({"result": "fixed<8,1,RND_CONV,SAT>", "table_size": 256}, 1, False),
    "prelu_stream": ({"weight": "fixed<5,2,RND,SAT>", "result": "fixed<7,3,RND,SAT>"}, 2, True),
    "softmax": ({"result": "ufixed<10,0,RND,SAT>", "table_size": 256, "exp": "ufixed<12,1,RND,SAT>",
                 "inv_table_size": 128}, 1, False),
    "argmax": ({}, 2, False),
    "square": ({"result": "ufixed<10,5,RND,SAT>"}, 1, False),
}


@pytest.mark.sim
@pytest.mark.parametrize("case,simulator", on_simulators(sorted(ACTIVATION_CASES),
                                                       verilator=("sigmoid",), long=("prelu_stream",)))
def test_activation_kinds_rtl_matches_golden(case, simulator, tmp_path):
    """Every activation kind between two layers (shift-and-add and multiplier layers before it, and a
    streamed convolution), on edge and random codes, with random in_valid gaps."""
    own, reuse, stream = ACTIVATION_CASES[case]
    kind = case.replace("_stream", "")
    model = _activation_model("softmax" if kind == "argmax" else kind, seed=len(case), stream=stream)
    if kind == "argmax":
        own = {"argmax": True}
    first = model.layers[0].name
    cfg = {"input": "fixed<7,2,RND,SAT>",
           "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                       "result": "fixed<9,4,RND,SAT>"},
           "layers": {first: {"reuse_factor": reuse, **({"io": "stream"} if stream else {})},
                      model.layers[1].name: own}}
    q = apply_config(model, cfg)
    assert getattr(q.layers[1], "kind", q.layers[1].op) == kind
    outdir = tmp_path / "core"
    save_build(q, outdir)
    assert lint_build(outdir) == []
    x = edge_vectors(cfg["input"], q.n_in, 100, seed=3)
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim", seed=5)
    assert np.array_equal(np.asarray(got, dtype=object), np.asarray(expected, dtype=object))
