"""Precision configuration: ``apply_config`` on float models from the front ends."""

import json

import numpy as np
import pytest

from rtlgen.errors import RtlgenError
from rtlgen.frontends import load_model
from rtlgen.frontends.python_api import mlp
from rtlgen.ir.config import apply_config, load_config
from rtlgen.ir.model import Activation, Dense, FloatModel, QActivation, QDense, QModel
from rtlgen.numerics.fixed import Overflow, Quant, parse_type, quantize

from helpers.paths import JET, JET_CFG

BASE = {
    "input": "fixed<9,2,RND,SAT>",
    "default": {"weight": "fixed<8,3,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                "result": "fixed<16,6,RND,SAT>", "reuse_factor": 1},
}


def cfg(**changes):
    out = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        out[key] = value
    return out


@pytest.fixture(scope="module")
def jet():
    return load_model(JET)


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    w1 = rng.uniform(-1, 1, size=(4, 6))
    w1[0, :3] = 0.0                        # some exact zeros
    return mlp([w1, rng.uniform(-1, 1, size=(6, 2))], [rng.uniform(-1, 1, 6), np.zeros(2)], name="small")


def test_jet_config_file(jet):
    q = apply_config(jet, JET_CFG)
    assert isinstance(q, QModel) and q.name == "jet_mlp"
    assert str(q.input_type) == "fixed<9,2,RND,SAT>"
    assert [type(layer).__name__ for layer in q.layers] == ["QDense", "QActivation"] * 3 + ["QDense"]
    for layer in q.layers:
        assert str(layer.result_type) == "fixed<16,6,RND,SAT>"
    first = q.layers[0]
    assert str(first.weight_type) == "fixed<8,3,RND,SAT>" and first.reuse_factor == 1
    np.testing.assert_array_equal(first.weights, quantize(jet.layers[0].weight, first.weight_type))
    np.testing.assert_array_equal(first.bias, quantize(jet.layers[0].bias, first.bias_type))
    # the pruned weights stay zero, so the layer needs fewer multipliers
    assert first.nonzero < first.weights.size
    assert first.positions == first.nonzero
    # constant weights at reuse factor 1: auto builds them as adders, with no multiplier
    assert first.arithmetic == "shift_add" and first.multipliers == 0


def test_types_chain_through_layers(jet):
    c = cfg(layers={"/2/Gemm": {"result": "fixed<12,4,RND,SAT>"},
                    "/3/Relu": {"result": "ufixed<10,3,TRN,SAT>"}})
    q = apply_config(jet, c)
    assert str(q.layers[2].result_type) == "fixed<12,4,RND,SAT>"
    assert q.layers[3].in_type == q.layers[2].result_type
    assert str(q.layers[3].result_type) == "ufixed<10,3,TRN,SAT>"
    assert q.layers[4].in_type == q.layers[3].result_type
    assert q.layers[0].in_type == q.input_type
    assert isinstance(q.layers[3], QActivation) and q.layers[3].size == 32


def test_override_by_node_name(jet):
    q = apply_config(jet, cfg(layers={"/4/Gemm": {"reuse_factor": 4, "weight": "fixed<6,2,RND,SAT>"}}))
    assert q.layers[4].reuse_factor == 4
    assert str(q.layers[4].weight_type) == "fixed<6,2,RND,SAT>"
    assert q.layers[0].reuse_factor == 1
    assert str(q.layers[0].weight_type) == "fixed<8,3,RND,SAT>"
    assert q.layers[4].multipliers == -(-q.layers[4].nonzero // 4)


def test_unknown_layer_name_lists_the_layers(jet):
    with pytest.raises(RtlgenError, match=r"'/9/Gemm'.*not a layer.*/0/Gemm, /1/Relu, /2/Gemm"):
        apply_config(jet, cfg(layers={"/9/Gemm": {"reuse_factor": 2}}))


@pytest.mark.parametrize("value", [0, -1, 10 ** 6, 2.5, True, "lots"])
def test_reuse_factor_out_of_range(small, value):
    with pytest.raises(RtlgenError, match=r"layer 'dense_0'.*reuse_factor"):
        apply_config(small, cfg(layers={"dense_0": {"reuse_factor": value}}))


def test_reuse_factor_full_and_max(small):
    q = apply_config(small, cfg(layers={"dense_0": {"reuse_factor": "full"}}))
    layer = q.layers[0]
    assert layer.reuse_factor == layer.nonzero == 21
    assert layer.multipliers == 1
    q = apply_config(small, cfg(layers={"dense_0": {"reuse_factor": layer.nonzero}}))
    assert q.layers[0].reuse_factor == 21
    with pytest.raises(RtlgenError, match=r"out of range: use 1 to 21 \(the layer has 21 nonzero weights\)"):
        apply_config(small, cfg(layers={"dense_0": {"reuse_factor": 22}}))


@pytest.mark.parametrize("spec, where", [
    ("fixed<8>", "weight"),
    ("fixd<8,3>", "weight"),
    ("fixed<8,3,RNDX,SAT>", "weight"),
    ("fixed<8,3,RND,SATURATE>", "weight"),
    ("fixed<a,3>", "weight"),
    ("fixed<0,0>", "weight"),
    (8, "weight"),
])
def test_malformed_types_name_the_layer(small, spec, where):
    with pytest.raises(RtlgenError, match=rf"layer 'dense_1' {where}"):
        apply_config(small, cfg(layers={"dense_1": {where: spec}}))


def test_malformed_input_type(small):
    with pytest.raises(RtlgenError, match=r"config 'input'.*malformed type"):
        apply_config(small, cfg(input="fixed<9;2>"))


def test_nan_weight_names_the_layer():
    model = FloatModel("m", 2, [Dense("fc_bad", np.array([[1.0, np.nan], [0.0, 1.0]]), np.zeros(2))])
    with pytest.raises(RtlgenError, match=r"layer 'fc_bad' weights contains a NaN or inf value at index \(0, 1\)"):
        apply_config(model, cfg())
    model = FloatModel("m", 2, [Dense("fc_inf", np.eye(2), np.array([0.0, np.inf]))])
    with pytest.raises(RtlgenError, match=r"layer 'fc_inf' bias.*NaN or inf"):
        apply_config(model, cfg())


def test_accum_type_must_wrap(small):
    with pytest.raises(RtlgenError, match=r"layer 'dense_0'.*accum type must use WRAP"):
        apply_config(small, cfg(layers={"dense_0": {"accum": "fixed<20,8,RND,SAT>"}}))
    q = apply_config(small, cfg(layers={"dense_0": {"accum": "fixed<20,8,TRN,WRAP>"}}))
    assert q.layers[0].accum_type.overflow is Overflow.WRAP
    assert q.layers[2].accum_type is None


def test_activation_rejects_dense_keys(small):
    with pytest.raises(RtlgenError, match=r"layer 'relu_0'.*\['weight'\] do not apply"):
        apply_config(small, cfg(layers={"relu_0": {"weight": "fixed<8,3>"}}))


def test_missing_and_unknown_keys(small):
    with pytest.raises(RtlgenError, match="missing 'input'"):
        apply_config(small, {"default": BASE["default"]})
    with pytest.raises(RtlgenError, match=r"unknown top-level key\(s\) \['defaults'\]"):
        apply_config(small, cfg(defaults={}))
    with pytest.raises(RtlgenError, match=r"'default': unknown key\(s\) \['wieght'\]"):
        apply_config(small, cfg(default=dict(BASE["default"], wieght="fixed<8,3>")))
    no_result = dict(BASE["default"])
    del no_result["result"]
    # without a result type a layer's result is exact: the products' fraction, and every sum fits
    q = apply_config(small, cfg(default=no_result))
    dense = q.layers[0]
    assert dense.result_type.frac == dense.in_type.frac + dense.weight_type.frac
    w = dense.weights.astype(object) * 1
    b = dense.bias.astype(object) << (dense.result_type.frac - dense.bias_type.frac)
    lo = (np.minimum(w * dense.in_type.min_code, w * dense.in_type.max_code)).sum(axis=0) + b
    hi = (np.maximum(w * dense.in_type.min_code, w * dense.in_type.max_code)).sum(axis=0) + b
    assert dense.result_type.min_code <= min(lo) and max(hi) <= dense.result_type.max_code
    assert dense.result_type.min_code * 2 > min(min(lo), -1) or dense.result_type.max_code // 2 < max(hi)
    relu = q.layers[1]                                     # the ReLU after it: exact too, and unsigned
    assert not relu.result_type.signed and relu.result_type.frac == dense.result_type.frac
    assert relu.result_type.max_code >= max(hi) and relu.result_type.max_code // 2 < max(hi)


def test_adder_levels(small):
    q = apply_config(small, cfg(layers={"dense_0": {"adder_levels": 3}}))
    assert q.layers[0].adder_levels == 3 and q.layers[2].adder_levels == 2
    with pytest.raises(RtlgenError, match=r"adder_levels must be an integer >= 1"):
        apply_config(small, cfg(layers={"dense_0": {"adder_levels": 0}}))


def test_yaml_and_json_files_agree(tmp_path, small):
    y = tmp_path / "c.yaml"
    y.write_text(
        "input: fixed<9,2,RND,SAT>\n"
        "default:\n  weight: fixed<8,3,RND,SAT>\n  bias: fixed<8,3,RND,SAT>\n"
        "  result: fixed<16,6,RND,SAT>\n  reuse_factor: 1\n"
        "layers:\n  dense_1: {reuse_factor: 2, result: 'fixed<10,4,RND_CONV,SAT_SYM>'}\n"
        "name: renamed\n")
    j = tmp_path / "c.json"
    j.write_text(json.dumps(cfg(layers={"dense_1": {"reuse_factor": 2, "result": "fixed<10,4,RND_CONV,SAT_SYM>"}},
                                name="renamed")))
    qy, qj = apply_config(small, y), apply_config(small, j)
    assert qy.to_dict() == qj.to_dict()
    assert qy.name == "renamed"
    assert qy.layers[2].reuse_factor == 2
    assert qy.layers[2].result_type.quant is Quant.RND_CONV
    assert load_config(y) == load_config(j)


def test_bad_config_files(tmp_path, small):
    with pytest.raises(RtlgenError, match=r"cannot read config file .*nope\.yaml"):
        apply_config(small, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RtlgenError, match=r"bad\.json is not valid JSON: line 1 column 2"):
        apply_config(small, bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(RtlgenError, match=r"list\.yaml must hold a mapping"):
        apply_config(small, lst)


def test_shape_mismatch_in_float_model():
    model = FloatModel("m", 3, [Dense("d0", np.ones((2, 2)), np.zeros(2))])
    with pytest.raises(RtlgenError, match=r"layer 'd0': expects 2 inputs but the previous layer gives 3"):
        apply_config(model, cfg())


def test_roundtrip_through_dict(jet):
    q = apply_config(jet, cfg(layers={"/0/Gemm": {"accum": "fixed<24,10>", "reuse_factor": 3}}))
    back = QModel.from_dict(q.to_dict())
    assert back.to_dict() == q.to_dict()
    assert back.layers[0].accum_type == parse_type("fixed<24,10>")
    np.testing.assert_array_equal(back.layers[0].weights, q.layers[0].weights)


def test_activation_only_model():
    model = FloatModel("act", 3, [Activation("r", "relu", 3)])
    q = apply_config(model, {"input": "fixed<8,3>", "default": {"result": "ufixed<8,3,TRN,SAT>"}})
    assert isinstance(q.layers[0], QActivation) and q.layers[0].size == 3
    assert q.n_out == 3
    assert not any(isinstance(layer, QDense) for layer in q.layers)


def test_a_layer_without_bias_needs_no_bias_type(small):
    no_bias = {k: v for k, v in BASE["default"].items() if k != "bias"}
    # small's second layer has no bias (all zeros): its bias type may be left out there ...
    first, second = small.layers[0].name, small.layers[2].name
    q = apply_config(small, cfg(default=no_bias, layers={first: {"bias": "fixed<8,3,RND,SAT>"}}))
    assert not np.any(q.layers[2].bias)
    # ... but the first layer's bias is not zero, so it needs one
    with pytest.raises(RtlgenError, match=rf"no 'bias' type for layer '{first}'"):
        apply_config(small, cfg(default=no_bias, layers={second: {"bias": "fixed<8,3,RND,SAT>"}}))


def test_adder_graph_keys_need_a_shift_add_layer(small):
    first = small.layers[0].name
    mult = dict(BASE["default"], arithmetic="multipliers")
    for key, value in (("adder_depth_slack", 2), ("share_columns", 4)):
        with pytest.raises(RtlgenError, match=rf"'default': \['{key}'\] shape the adder graphs.*no layer"):
            apply_config(small, cfg(default=dict(mult, **{key: value})))
        with pytest.raises(RtlgenError, match=rf"layer '{first}': \['{key}'\] shape the adder graph.*"
                                              "built with multipliers"):
            apply_config(small, cfg(default=mult, layers={first: {key: value}}))
        # in default they apply where a layer is shift_add, and the others are left alone
        q = apply_config(small, cfg(default=dict(mult, **{key: value}),
                                    layers={first: {"arithmetic": "shift_add"}}))
        assert [getattr(layer, "arithmetic", None) for layer in q.layers][::2] == ["shift_add", "multipliers"]
        assert getattr(q.layers[0], key) == value
    # a layer that auto leaves with multipliers (reuse factor 2) takes no graph keys of its own
    with pytest.raises(RtlgenError, match=rf"layer '{first}': \['share_columns'\].*built with multipliers"):
        apply_config(small, cfg(layers={first: {"reuse_factor": 2, "share_columns": 2}}))


def test_table_keys_need_a_table(small):
    with pytest.raises(RtlgenError, match=r"'default': \['table_range', 'table_size'\] set the lookup tables"):
        apply_config(small, cfg(default=dict(BASE["default"], table_size=256, table_range=4.0)))
    sig = FloatModel(name="sig", n_in=3, layers=[Activation(name="s", kind="sigmoid")])
    q = apply_config(sig, {"input": "fixed<8,3,RND,SAT>",
                           "default": {"table_size": 256, "result": "ufixed<8,0,RND,SAT>"}})
    assert q.layers[0].table_size == 256
