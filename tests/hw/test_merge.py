"""Residual adds and concatenations in hardware: the delay line, branch balancing in the network
(Amaranth's simulator), and the generated RTL against the golden model on both simulators."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.core import run, timed_stream
from helpers.residual_models import residual_cnn, residual_mlp
from helpers.sims import on_simulators, rtl_sim
from rtlgen.flows.lint import lint_build
from rtlgen.frontends import load_model
from rtlgen.golden.network import predict_codes
from rtlgen.hw.merge import CodeDelay
from rtlgen.hw.network import Network
from rtlgen.hw.ports import CodeStreamSignature
from rtlgen.ir.config import apply_config
from rtlgen.kinds import save_build
from rtlgen.ir.model import QModel
from rtlgen.numerics.fixed import parse_type

from test_differential import edge_vectors


@pytest.mark.parametrize("depth", [1, 4])
def test_code_delay_shifts_valid_and_payload(depth):
    dut = CodeDelay(CodeStreamSignature(parse_type("fixed<5,2>"), 2), depth)
    rng = np.random.default_rng(depth)
    valid = rng.integers(0, 2, 40)
    data = rng.integers(-16, 16, (40, 2))
    seen = []

    async def bench(ctx):
        for cycle in range(40 + depth):
            if cycle < 40:
                ctx.set(dut.i.valid, int(valid[cycle]))
                ctx.set(dut.i.payload, [int(v) for v in data[cycle]])
            seen.append((ctx.get(dut.o.valid), [int(v) for v in ctx.get(dut.o.payload)]))
            await ctx.tick()

    run(dut, bench)
    for cycle in range(40):
        assert seen[cycle + depth][0] == valid[cycle]
        assert seen[cycle + depth][1] == data[cycle].tolist()


CFG = {"input": "fixed<7,3,RND,SAT>",
       "default": {"weight": "fixed<5,1,RND,SAT>", "bias": "fixed<6,2,RND,SAT>", "result": "fixed<9,4,RND,SAT>"}}


@pytest.mark.parametrize("reuse,arith", [(1, "multipliers"), (3, "multipliers"), (1, "shift_add")])
def test_branches_arrive_together(tmp_path, reuse, arith):
    """The skip input waits for the longer branch (whose latency the reuse factor and arithmetic
    change); outputs equal the golden model, exactly ``latency`` cycles after their inputs."""
    model = load_model(residual_mlp(tmp_path / "res.onnx"))
    cfg = {**CFG, "layers": {"fc2": {"reuse_factor": reuse, "arithmetic": arith}}}
    q = apply_config(model, cfg)
    net = Network(q)
    lat = {layer.layer.name: layer.latency for layer in net.layers}
    # the add waits for fc2: its skip input (the core input) is delayed by the whole branch
    assert net.delays[(3, 1)] == lat["fc1"] + lat["relu1"] + lat["fc2"]
    assert net.delays[(5, 1)] == lat["fc2"] + lat["skip_add"] + lat["relu2"]
    assert net.latency == 1 + sum(lat.values())    # every layer is on the longest path
    x = edge_vectors(CFG["input"], 6, 40, seed=reuse)
    got, accepted, produced = timed_stream(net, x)
    assert np.array_equal(got, predict_codes(q, x))
    assert np.all(produced - accepted == net.latency)
    assert np.all(np.diff(accepted) >= net.ii) and net.ii == reuse


RTL_CASES = {
    # case: (model maker, configuration)
    "mlp": (residual_mlp, {**CFG, "layers": {"fc2": {"reuse_factor": 4},
                                             "skip_add": {"result": "fixed<6,3,RND_CONV,SAT_SYM>"},
                                             "concat": {"result": "ufixed<6,3,RND,SAT>"}}}),
    "cnn": (residual_cnn, {**CFG, "layers": {"conv2": {"reuse_factor": 2}}}),
}


@pytest.mark.sim
@pytest.mark.parametrize("case,simulator", on_simulators(sorted(RTL_CASES), verilator=("mlp",)))
def test_residual_rtl_matches_golden(tmp_path, case, simulator):
    make, cfg = RTL_CASES[case]
    q = apply_config(load_model(make(tmp_path / "m.onnx")), cfg)
    outdir = tmp_path / "core"
    save_build(q, outdir)
    layers = json.loads((outdir / "manifest.json").read_text())["layers"]
    want = [["fc2", "input"], ["relu2", "relu1"]] if case == "mlp" else [["conv2", "relu1"], ["skip_add", "conv3"]]
    assert [entry["inputs"] for entry in layers if entry["op"] in ("add", "concat")] == want
    assert lint_build(outdir) == []
    x = edge_vectors(cfg["input"], q.n_in, 60 if case == "mlp" else 20, seed=4)
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim", seed=6)
    assert np.array_equal(np.asarray(got, dtype=object), np.asarray(expected, dtype=object))


def test_a_tensor_added_to_itself_and_concatenated_with_the_input():
    """``x + x`` (both inputs of the add one layer) and a concat with the core input, in Amaranth's
    simulator: the doubled values saturate where the result type says so."""
    from rtlgen.ir.merge import Merge
    from rtlgen.ir.model import Dense, FloatModel
    rng = np.random.default_rng(3)
    model = FloatModel("twice", 3, [Dense("fc", rng.normal(size=(3, 3)), rng.normal(size=3)),
                                    Merge("twice", "add", (3, 3)), Merge("join", "concat", (3, 3))],
                       sources=[(-1,), (0, 0), (1, -1)])
    q = apply_config(model, {**CFG, "layers": {"twice": {"result": "fixed<6,3,RND,SAT>"}}})
    assert q.layers[2].in_types == (parse_type("fixed<6,3,RND,SAT>"), q.input_type)
    net = Network(q)
    x = edge_vectors(CFG["input"], 3, 30, seed=1)
    got, accepted, produced = timed_stream(net, x)
    want = predict_codes(q, x)
    assert np.array_equal(got, want) and np.all(produced - accepted == net.latency)
    fc = predict_codes(QModel("fc", q.input_type, 3, q.layers[:1]), x) * 2.0 ** -q.layers[0].result_type.frac
    doubled = np.clip(np.floor(2 * fc * 8 + 0.5), -32, 31)        # fixed<6,3,RND,SAT>: 3 fraction bits
    # the concat casts both to the default result type, fixed<9,4> (5 fraction bits), exactly here
    assert q.layers[2].result_type == parse_type(CFG["default"]["result"])
    assert np.array_equal(want[:, :3], doubled * 4) and np.array_equal(want[:, 3:], x * 2)
