"""Shift-and-add layers in Amaranth's simulator, and the configuration that selects them.

The case matrix of the multiplier cores (signed and unsigned inputs, the
rounding and overflow modes, zero and +-2^k weights, single-row and
single-column matrices, a zero matrix, biases, fused ReLU) is run against the
golden model; the RTL benches on Icarus and Verilator are in
``test_shift_add_rtl.py``.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rtlgen.errors import RtlgenError, RtlgenWarning
from rtlgen.frontends.python_api import mlp
from rtlgen.golden.network import predict_codes
from rtlgen.hw.network import Network
from rtlgen.hw.shift_add import FusedActivation, ShiftAddDense
from rtlgen.ir.arithmetic import dense_graph, dense_plan, shift_add_figures
from rtlgen.ir.config import apply_config
from rtlgen.ir.model import QModel
from rtlgen.numerics.adder_graph import adder_graph

from helpers.core import infer, run


def special_weights(n_in, n_out, seed):
    """Random weights with zeros, +-2^k and +-(2^k - 1) mixed in (as float values of 3 fraction bits)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-31, 32, size=(n_in, n_out)).astype(float)
    specials = np.array([0, 1, -1, 2, -2, 8, -8, 16, -16, 7, -7, 31, -32])
    mask = rng.random(w.shape) < 0.5
    w[mask] = rng.choice(specials, size=int(mask.sum()))
    return w / 8.0


def vectors(q, n, rng):
    """``n`` input vectors: all max, all min, zeros, max and min alternating, then random codes."""
    t = q.input_type
    x = rng.integers(t.min_code, t.max_code + 1, size=(max(n, 4), q.n_in))
    x[0], x[1], x[2] = t.max_code, t.min_code, 0
    x[3] = np.where(np.arange(q.n_in) % 2, t.max_code, t.min_code)
    return x


def check(q, n=60, seed=0):
    net = Network(q)
    x = vectors(q, n, np.random.default_rng(seed))
    got = []

    async def bench(ctx):
        got.append(await infer(ctx, net, x))
    run(net, bench)
    expected = predict_codes(q, x)
    assert np.array_equal(got[0], expected)
    return net


def check_holds(q, n=24, seed=0):
    """:func:`vectors` with random idle cycles between them: every result equals the golden model's, and
    ``out_data`` keeps it, unchanged, until the next ``out_valid``."""
    net = Network(q)
    rng = np.random.default_rng(seed)
    x = vectors(q, n, rng)
    n = len(x)
    gaps = rng.integers(0, 2 * net.latency + 2, size=n)
    results, changed = [], []

    async def bench(ctx):
        k, idle, held = 0, 0, None
        for _ in range(int(gaps.sum()) + (n + 2) * (net.latency + net.ii) + 8):
            offer = bool(k < n and idle >= gaps[k])
            ctx.set(net.in_valid, offer)
            if offer:
                ctx.set(net.in_data, [int(v) for v in x[k]])
            data = [int(v) for v in ctx.get(net.out_data)]
            if ctx.get(net.out_valid):
                results.append(data)
                held = data
            elif held is not None and data != held:
                changed.append((len(results), data, held))
            if offer and ctx.get(net.in_ready):
                k, idle = k + 1, 0
            else:
                idle += 1
            await ctx.tick()
        ctx.set(net.in_valid, 0)
    run(net, bench)
    assert np.array_equal(np.array(results), predict_codes(q, x))
    assert not changed, f"out_data changed between out_valid pulses: {changed[:3]}"
    return net


SHAPES = [(6, 5), (1, 4), (5, 1), (1, 1), (12, 9)]
TYPES = [("fixed<8,3,RND,SAT>", "fixed<9,4,RND,SAT>"),
         ("ufixed<7,2,TRN,SAT>", "fixed<7,2,RND_CONV,SAT_SYM>"),
         ("fixed<7,3,TRN,WRAP>", "fixed<6,2,TRN,WRAP>")]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("types", TYPES)
def test_single_layer_matches_golden(shape, types):
    n_in, n_out = shape
    model = mlp([special_weights(n_in, n_out, n_in * 10 + n_out)],
                [np.linspace(-1.5, 1.5, n_out)], activations="relu")
    q = apply_config(model, {"input": types[0], "default": {
        "weight": "fixed<7,3,RND,SAT>", "bias": "fixed<6,3,RND,SAT>", "result": types[1],
        "arithmetic": "shift_add"}})
    net = check(q)
    assert isinstance(net.layers[0], ShiftAddDense) and net.layers[0].multipliers == 0


@pytest.mark.parametrize("clock,target", [(None, None)] + [(mhz, target) for mhz in (50, 150, 400)
                                                           for target in ("ecp5", "ice40-hx8k", "ice40-up5k")])
def test_mlp_with_fused_relu_at_clock_targets(clock, target):
    rng = np.random.default_rng(3)
    model = mlp([special_weights(10, 12, 1), special_weights(12, 6, 2), special_weights(6, 3, 3)],
                [rng.normal(0, 1, 12), rng.normal(0, 1, 6), rng.normal(0, 1, 3)], activations="relu")
    cfg = {"input": "fixed<10,3,RND,SAT>", "default": {
        "weight": "fixed<7,3,RND,SAT>", "bias": "fixed<7,3,RND,SAT>", "result": "fixed<12,5,RND,SAT>"},
        "layers": {"relu_0": {"result": "ufixed<8,3,RND,SAT>"}}}
    if clock is not None:
        cfg.update(clock_mhz=clock, target=target)
    q = apply_config(model, cfg)
    net = check(q)
    kinds = [type(hw) for hw in net.layers]
    assert kinds == [ShiftAddDense, FusedActivation] * 2 + [ShiftAddDense]
    # the ReLU costs no cycle: the core is the input register and the dense layers
    assert net.latency == 1 + sum(hw.latency for hw in net.layers if isinstance(hw, ShiftAddDense))
    assert all(hw.latency == 0 for hw in net.layers if isinstance(hw, FusedActivation))


def test_a_slower_clock_needs_no_more_ranks():
    rng = np.random.default_rng(4)
    model = mlp([rng.normal(0, 1, (16, 16))], [rng.normal(0, 1, 16)])
    ranks = []
    for mhz in (50, 100, 200, 400):
        q = apply_config(model, {"input": "fixed<12,4,RND,SAT>", "clock_mhz": mhz, "default": {
            "weight": "fixed<8,3,RND,SAT>", "bias": "fixed<8,3,RND,SAT>", "result": "fixed<16,6,RND,SAT>"}})
        ranks.append(dense_plan(q.layers[0]).ranks)
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]


def test_a_clock_beyond_the_model_is_warned_and_the_estimate_is_in_the_figures():
    rng = np.random.default_rng(4)
    model = mlp([rng.normal(0, 1, (16, 16))], [rng.normal(0, 1, 16)])
    for mhz in (50, 400):
        q = apply_config(model, {"input": "fixed<12,4,RND,SAT>", "clock_mhz": mhz, "target": "ecp5", "default": {
            "weight": "fixed<8,3,RND,SAT>", "bias": "fixed<8,3,RND,SAT>", "result": "fixed<16,6,RND,SAT>"}})
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", RtlgenWarning)
            hw = ShiftAddDense(q.layers[0])
        late = [w for w in seen if "delay model estimates" in str(w.message)]
        est = hw.figures["est_fmax_mhz"]
        # warned exactly when the plan's own estimate misses the clock
        assert (est < mhz) == bool(late) and (mhz == 400) == bool(late), (mhz, est)
        if late:
            assert f"'{q.layers[0].name}'" in str(late[0].message) and "clock_mhz 400" in str(late[0].message)


def test_a_layer_whose_input_holds_holds_without_an_enable():
    """Fed by the core's input register (which holds the accepted vector), every shift-and-add
    layer of a chain has an output register without enable (their pipelines load every cycle),
    the last one and one read over two cycles among them, and out_data still holds."""
    rng = np.random.default_rng(5)
    model = mlp([special_weights(6, 8, 1), special_weights(8, 5, 2), special_weights(5, 3, 3)],
                [rng.normal(0, 1, 8), rng.normal(0, 1, 5), rng.normal(0, 1, 3)], activations="relu")
    q = apply_config(model, {"input": "fixed<8,3,RND,SAT>", "clock_mhz": 300, "default": {
        "weight": "fixed<7,3,RND,SAT>", "bias": "fixed<7,3,RND,SAT>", "result": "fixed<10,4,RND,SAT>",
        "arithmetic": "shift_add"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RtlgenWarning)
        net = check_holds(q)
    adders = [hw for hw in net.layers if isinstance(hw, ShiftAddDense)]
    assert len(adders) == 3 and not any(hw.hold for hw in adders)
    assert any(hw.plan.ranks > 0 for hw in adders)


@pytest.mark.parametrize("reader_reuse", [1, 2, None])
def test_a_layer_whose_input_may_change_holds_for_a_reader_that_needs_it(reader_reuse):
    """After a serial multiplier layer that writes each output as it is done (its outputs do not
    hold), a shift-and-add layer drops its enable only for a reader of II 1.  Read by a multiplier
    layer of reuse factor 2 (which reads its input over two cycles), or as the last layer
    (``reader_reuse`` None: out_data holds), it keeps it.  Every core matches the golden model,
    with out_data held between results."""
    rng = np.random.default_rng(5)
    sizes = [6, 7, 5] + ([4] if reader_reuse else [])
    model = mlp([special_weights(a, b, k) for k, (a, b) in enumerate(zip(sizes, sizes[1:]))],
                [rng.normal(0, 1, b) for b in sizes[1:]], activations="relu")
    layers = {"dense_0": {"arithmetic": "multipliers", "reuse_factor": "full"}}
    if reader_reuse:
        layers["dense_2"] = {"arithmetic": "multipliers", "reuse_factor": reader_reuse}
    q = apply_config(model, {"input": "fixed<8,3,RND,SAT>", "default": {
        "weight": "fixed<7,3,RND,SAT>", "bias": "fixed<7,3,RND,SAT>", "result": "fixed<10,4,RND,SAT>",
        "arithmetic": "shift_add"}, "layers": layers})
    net = check_holds(q)
    first, middle = net.layers[0], net.layers[2]
    assert getattr(first, "serial", False) and not first.staged
    assert isinstance(middle, ShiftAddDense)
    if reader_reuse:
        assert net.layers[4].ii == reader_reuse
    assert middle.hold == (reader_reuse != 1)


def test_zero_matrix_and_zero_columns():
    w = special_weights(4, 3, 9)
    w[:, 1] = 0
    model = mlp([w, np.zeros((3, 2))], [np.array([0.5, -0.25, 1.0]), np.array([0.75, -1.0])])
    q = apply_config(model, {"input": "fixed<6,2,RND,SAT>", "default": {
        "weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>", "result": "fixed<8,3,RND,SAT>",
        "arithmetic": "shift_add"}})
    check(q)


def test_conv_as_shift_add_matches_golden():
    from rtlgen.frontends import load_model
    from helpers.paths import FIXTURES
    q = apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), {
        "input": "fixed<6,2,RND,SAT>", "clock_mhz": 200,
        "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,4,RND,SAT>",
                    "result": "fixed<9,4,RND_CONV,SAT>"}})
    convs = [layer for layer in q.layers if getattr(layer, "op", None) == "conv"]
    assert convs and all(layer.arithmetic == "shift_add" for layer in convs)
    check(q, n=16)


def test_outputs_built_from_other_outputs_match_golden():
    # similar columns: with a depth slack, outputs 1 and 2 are output 0 plus a difference
    rng = np.random.default_rng(7)
    c0 = rng.integers(-31, 32, 8)
    w = np.stack([c0, c0 + 4 * np.eye(8, dtype=np.int64)[2], 2 * np.eye(8, dtype=np.int64)[5] - c0,
                  rng.integers(-31, 32, 8)], axis=1) / 8.0
    model = mlp([w, rng.normal(0, 1, (4, 2))], [rng.normal(0, 1, 4), rng.normal(0, 1, 2)], activations="relu")
    cfg = {"input": "fixed<8,3,RND,SAT>", "default": {
        "weight": "fixed<7,3,RND,SAT>", "bias": "fixed<7,3,RND,SAT>", "result": "fixed<12,5,RND,SAT>",
        "arithmetic": "shift_add"}}
    flat = apply_config(model, cfg)
    q = apply_config(model, {**cfg, "layers": {"dense_0": {"adder_depth_slack": 1}}})
    first = q.layers[0]
    assert first.adder_depth_slack == 1 and q.layers[2].adder_depth_slack == 0
    assert dense_graph(first).adders < dense_graph(flat.layers[0]).adders
    assert dense_graph(first).depth == dense_graph(flat.layers[0]).depth + 1
    assert QModel.from_dict(q.to_dict()).layers[0].adder_depth_slack == 1
    check(q)


@st.composite
def type_specs(draw, min_width=1, max_width=16, signed=None):
    """A fixed-point type string: any width, binary point, rounding and overflow mode."""
    sign = draw(st.booleans()) if signed is None else signed
    width = draw(st.integers(max(min_width, 2 if sign else 1), max_width))
    quant = draw(st.sampled_from(["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"]))
    ovf = draw(st.sampled_from(["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"]))
    return f"{'' if sign else 'u'}fixed<{width},{draw(st.integers(-3, width + 3))},{quant},{ovf}>"


@st.composite
def shift_add_networks(draw):
    """A random MLP of one to three shift-and-add layers and its configuration."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    sizes = draw(st.lists(st.integers(1, 12), min_size=2, max_size=4))
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(size=(n_in, n_out)) * 2.0 ** draw(st.integers(-4, 4))
        w[rng.random(w.shape) < draw(st.sampled_from([0.0, 0.5]))] = 0.0
        weights.append(w)
        biases.append(rng.normal(size=n_out) if draw(st.booleans()) else None)
    acts = [draw(st.sampled_from(["relu", "linear", None])) for _ in weights]
    default = {"weight": draw(type_specs(max_width=12, signed=True)), "bias": draw(type_specs(max_width=12, signed=True)),
               "result": draw(type_specs(min_width=2, max_width=18)), "arithmetic": "shift_add",
               "adder_depth_slack": draw(st.integers(0, 2)),
               "share_columns": draw(st.sampled_from(["all", 1, 2, 5]))}
    cfg = {"input": draw(type_specs()), "default": default}
    timing = draw(st.sampled_from(["levels", "clock", "none"]))
    if timing == "levels":
        default["adder_levels"] = draw(st.integers(1, 4))
    elif timing == "clock":
        cfg["clock_mhz"] = draw(st.sampled_from([40, 150, 300]))
        cfg["target"] = draw(st.sampled_from(["ecp5", "ice40-hx8k", "ice40-up5k"]))
    return mlp(weights, biases, activations=acts), cfg, seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shift_add_networks())
def test_random_shift_add_networks_match_golden(case):
    """Any types, rounding and overflow modes, depth slacks, sharing groups and pipelining: the RTL equals the golden
    model, and out_data holds between results."""
    model, cfg, seed = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RtlgenWarning)     # clocks beyond the delay model are warned, not refused
        q = apply_config(model, cfg)
        net = check_holds(q, n=16, seed=seed)
    assert all(isinstance(hw, (ShiftAddDense, FusedActivation)) or hw.multipliers == 0 for hw in net.layers)
    assert any(isinstance(hw, ShiftAddDense) for hw in net.layers)


# -- configuration ------------------------------------------------------------

BASE = {"input": "fixed<8,3,RND,SAT>",
        "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>", "result": "fixed<10,4,RND,SAT>"}}


def _cfg(**default):
    out = {"input": BASE["input"], "default": {**BASE["default"], **default}}
    return out


def _model():
    rng = np.random.default_rng(0)
    return mlp([rng.normal(0, 1, (4, 3))], [rng.normal(0, 1, 3)])


def test_auto_is_the_default_and_picks_shift_add_for_constant_layers():
    q = apply_config(_model(), _cfg())
    assert q.layers[0].arithmetic == "shift_add"
    assert apply_config(_model(), _cfg(reuse_factor=2)).layers[0].arithmetic == "multipliers"
    assert apply_config(_model(), _cfg(storage="register")).layers[0].arithmetic == "multipliers"
    assert apply_config(_model(), _cfg(arithmetic="multipliers")).layers[0].arithmetic == "multipliers"


@pytest.mark.parametrize("extra,words", [
    ({"reuse_factor": 2}, ["reuse_factor 2", "arithmetic: multipliers"]),
    ({"storage": "tmr"}, ["storage 'tmr'", "real multipliers"]),
    ({"accum": "fixed<14,6,RND,WRAP>"}, ["accum", "arithmetic: multipliers"]),
])
def test_shift_add_where_it_cannot_apply_is_refused(extra, words):
    with pytest.raises(RtlgenError) as err:
        apply_config(_model(), _cfg(arithmetic="shift_add", **extra))
    assert "dense_0" in str(err.value) and all(w in str(err.value) for w in words)


@pytest.mark.parametrize("top,words", [
    ({"target": "ecp5"}, ["clock_mhz", "not set"]),
    ({"clock_mhz": 0}, ["1 to 2000"]),
    ({"clock_mhz": "fast"}, ["1 to 2000"]),
    ({"clock_mhz": 100, "target": "virtex2"}, ["ecp5, ice40-hx8k, ice40-up5k"]),
])
def test_bad_clock_targets_are_refused(top, words):
    with pytest.raises(RtlgenError) as err:
        apply_config(_model(), {**_cfg(), **top})
    assert all(w in str(err.value) for w in words)


def test_a_clock_target_without_shift_add_layers_is_refused():
    with pytest.raises(RtlgenError, match="no layer .* shift_add"):
        apply_config(_model(), {**_cfg(arithmetic="multipliers"), "clock_mhz": 100})


@pytest.mark.parametrize("slack", [-1, 9, True, "2", 1.5])
def test_bad_adder_depth_slack_is_refused(slack):
    with pytest.raises(RtlgenError, match="layer .dense_0.: adder_depth_slack must be an integer from 0 to 8"):
        apply_config(_model(), _cfg(adder_depth_slack=slack))


@pytest.mark.parametrize("value", [0, -2, True, "4", 1.5, "some"])
def test_bad_share_columns_is_refused(value):
    with pytest.raises(RtlgenError, match="layer .dense_0.: share_columns must be an integer >= 1 .* or all"):
        apply_config(_model(), _cfg(share_columns=value))


def test_share_columns_groups_the_outputs_and_round_trips():
    q = apply_config(_model(), {**_cfg(arithmetic="shift_add"), "layers": {"dense_0": {"share_columns": 2}}})
    layer = q.layers[0]
    assert layer.share_columns == 2 and apply_config(_model(), _cfg()).layers[0].share_columns is None
    assert QModel.from_dict(q.to_dict()).layers[0].share_columns == 2
    graph = dense_graph(layer)
    assert len(graph.group_adders) == 2 and graph.adders == sum(graph.group_adders)
    assert shift_add_figures(layer)["share_columns"] == 2
    assert apply_config(_model(), _cfg(share_columns="all")).layers[0].share_columns is None


def test_the_manifest_and_report_name_the_sharing_groups(tmp_path):
    from rtlgen.flows.report import report
    from rtlgen.kinds import save_build
    q = apply_config(_model(), {**_cfg(arithmetic="shift_add"), "layers": {"dense_0": {"share_columns": 2}}})
    manifest = save_build(q, tmp_path / "core")
    assert manifest["layers"][0]["share_columns"] == 2
    text, data = report(tmp_path / "core", png=False)
    assert data["layers"][0]["share_columns"] == 2
    assert "shift_add (groups of 2 outputs)" in text


def test_bad_arithmetic_name():
    with pytest.raises(RtlgenError, match="arithmetic must be one of multipliers, shift_add, auto"):
        apply_config(_model(), _cfg(arithmetic="lut"))


def test_model_json_round_trip_keeps_the_arithmetic():
    q = apply_config(_model(), {**_cfg(), "clock_mhz": 125, "target": "ice40-up5k"})
    back = QModel.from_dict(q.to_dict())
    layer = back.layers[0]
    assert (layer.arithmetic, layer.clock_mhz, layer.timing_target) == ("shift_add", 125.0, "ice40-up5k")


def _relu_mlp():
    rng = np.random.default_rng(1)
    return mlp([rng.normal(0, 1, (4, 3)), rng.normal(0, 1, (3, 2))], [rng.normal(0, 1, 3), rng.normal(0, 1, 2)],
               activations="relu")


@pytest.mark.parametrize("relu_result,in_lo", [
    ("fixed<10,4,RND,SAT>", 0),            # a saturating ReLU never gives a negative code
    ("fixed<10,4,RND,SAT_SYM>", 0),
    ("fixed<10,4,RND,WRAP>", None),        # a wrapping one can
    ("ufixed<9,4,RND,SAT>", None),         # an unsigned type has no negative code anyway
])
def test_a_layer_after_a_relu_sums_nonnegative_inputs(relu_result, in_lo):
    q = apply_config(_relu_mlp(), {**_cfg(), "layers": {"relu_0": {"result": relu_result}}})
    first, second = q.layers[0], q.layers[2]
    assert first.in_lo is None and second.in_lo == in_lo
    lo = second.in_type.min_code if in_lo is None else in_lo
    graph = dense_graph(second)
    assert {(n.lo, n.hi) for n in graph.nodes[:second.n_in]} == {(lo, second.in_type.max_code)}
    assert QModel.from_dict(q.to_dict()).layers[2].in_lo == in_lo


def test_nonnegative_inputs_need_narrower_adders():
    q = apply_config(_relu_mlp(), _cfg())
    second = q.layers[2]
    assert second.in_lo == 0
    full = adder_graph(np.asarray(second.weights), [(second.in_type.min_code, second.in_type.max_code)] * 3,
                       np.zeros(2, dtype=object))
    half = adder_graph(np.asarray(second.weights), [second.in_range] * 3, np.zeros(2, dtype=object))
    assert half.adders == full.adders and half.adder_bits() < full.adder_bits()
