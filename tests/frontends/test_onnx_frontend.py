"""Front ends: ONNX files from both PyTorch exporters and onnx.helper, the
``load_model`` dispatcher and the numpy (Python API) builder.

The fixtures and their reference outputs (``tests/fixtures/reference.npz``)
are written by ``scripts/make_models.py``; these tests only read them.
"""

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rtlgen.errors import RtlgenError
from rtlgen.frontends import SUPPORTED_FORMATS, load_model
from rtlgen.frontends.onnx import SUPPORTED_OPS, load_onnx
from rtlgen.frontends.python_api import from_layers, mlp
from rtlgen.ir.model import Activation, Dense, FloatModel

from helpers.paths import FIXTURES as FIX, MODELS


@pytest.fixture(scope="module")
def ref():
    with np.load(FIX / "reference.npz") as data:
        return {k: data[k] for k in data.files}


def forward(model: FloatModel, x) -> np.ndarray:
    """Float64 forward pass of the float IR."""
    y = np.asarray(x, dtype=np.float64)
    for layer in model.layers:
        if isinstance(layer, Dense):
            y = y @ layer.weight + layer.bias
        elif layer.kind == "relu":
            y = np.maximum(y, 0.0)
    return y


def summary(model: FloatModel):
    out = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            out.append((layer.name, "dense", layer.n_in, layer.n_out))
        else:
            out.append((layer.name, layer.kind, layer.size))
    return out


# ---------------------------------------------------------------------------
# fixtures written by the exporters
# ---------------------------------------------------------------------------

EXPECTED = {
    "tiny_torchscript": [("/0/Gemm", "dense", 6, 8), ("/1/Relu", "relu", 8), ("/2/Gemm", "dense", 8, 4)],
    "tiny_dynamo": [("node_linear", "dense", 6, 8), ("node_relu", "relu", 8),
                    ("node_linear_1", "dense", 8, 4)],
    "tiny_dynamo_ext": [("node_linear", "dense", 6, 8), ("node_relu", "relu", 8),
                        ("node_linear_1", "dense", 8, 4)],
    "vec_torchscript": [("/0/MatMul", "dense", 6, 8), ("/1/Relu", "relu", 8),
                        ("/2/MatMul", "dense", 8, 4)],
    "vec_dynamo": [("node_MatMul_1", "dense", 6, 8), ("node_relu", "relu", 8),
                   ("node_MatMul_3", "dense", 8, 4)],
    "flatten_identity_torchscript": [("/1/Gemm", "dense", 6, 8), ("/3/Relu", "relu", 8),
                                     ("/5/Gemm", "dense", 8, 4)],
    "flatten_identity_dynamo": [("node_linear", "dense", 6, 8), ("node_relu", "relu", 8),
                                ("node_linear_1", "dense", 8, 4)],
    "helper_ops": [("fc1", "dense", 5, 7), ("Relu_4", "relu", 7), ("fc2", "dense", 7, 6),
                   ("relu2", "relu", 6), ("MatMul_11", "dense", 6, 3)],
    "matmul_add": [("dense_mm", "dense", 4, 3)],
}


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_fixture_structure_and_numerics(stem, ref):
    model = load_onnx(FIX / f"{stem}.onnx")
    assert model.name == stem
    assert summary(model) == EXPECTED[stem]
    assert model.n_in == EXPECTED[stem][0][2]
    x, y = ref[f"{stem}__x"], ref[f"{stem}__y"]
    got = forward(model, x)
    assert got.shape == y.shape
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)


def test_both_exporters_give_the_same_weights():
    ts = load_onnx(FIX / "tiny_torchscript.onnx")
    dy = load_onnx(FIX / "tiny_dynamo.onnx")
    for a, b in zip(ts.layers, dy.layers):
        assert type(a) is type(b)
        if isinstance(a, Dense):
            np.testing.assert_array_equal(a.weight, b.weight)
            np.testing.assert_array_equal(a.bias, b.bias)


def test_matmul_add_fused_into_one_dense():
    onnx_model = onnx.load(str(FIX / "vec_torchscript.onnx"))
    assert [n.op_type for n in onnx_model.graph.node] == ["MatMul", "Add", "Relu", "MatMul", "Add"]
    model = load_onnx(FIX / "vec_torchscript.onnx")
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    assert len(dense) == 2
    assert np.any(dense[0].bias != 0)   # the Add became the bias
    bias = numpy_helper.to_array(next(t for t in onnx_model.graph.initializer if t.name == "0.bias"))
    np.testing.assert_array_equal(dense[0].bias, bias.astype(np.float64))


def test_matmul_without_add_has_zero_bias():
    model = load_onnx(FIX / "helper_ops.onnx")
    assert np.all(model.layers[-1].bias == 0)


def test_gemm_alpha_beta_transb0_and_constant_nodes():
    m = onnx.load(str(FIX / "helper_ops.onnx"))
    w1 = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "w1")).astype(np.float64)
    c1 = next(n for n in m.graph.node if n.name == "c1_const")
    c1 = numpy_helper.to_array(c1.attribute[0].t).astype(np.float64)
    model = load_onnx(m)
    np.testing.assert_array_equal(model.layers[0].weight, 0.5 * w1)
    np.testing.assert_array_equal(model.layers[0].bias, 2.0 * c1.reshape(-1))


def test_external_data_is_read(tmp_path):
    assert (FIX / "tiny_dynamo_ext.onnx.data").stat().st_size > 0
    raw = onnx.load(str(FIX / "tiny_dynamo_ext.onnx"), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in raw.graph.initializer)
    # missing data file: the error names the model file and says what to do
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(FIX / "tiny_dynamo_ext.onnx", lonely)
    with pytest.raises(RtlgenError, match=r"lonely\.onnx.*external weight data"):
        load_onnx(lonely)


def test_jet_model():
    model = load_model(MODELS / "jet_mlp.onnx")
    assert model.name == "jet_mlp"
    assert summary(model) == [
        ("/0/Gemm", "dense", 16, 64), ("/1/Relu", "relu", 64), ("/2/Gemm", "dense", 64, 32),
        ("/3/Relu", "relu", 32), ("/4/Gemm", "dense", 32, 32), ("/5/Relu", "relu", 32),
        ("/6/Gemm", "dense", 32, 5)]
    zeros = [float(np.mean(layer.weight == 0)) for layer in model.layers if isinstance(layer, Dense)]
    assert all(0.25 <= z <= 0.40 for z in zeros), zeros


def test_jet_model_numerics(ref):
    model = load_model(MODELS / "jet_mlp.onnx")
    np.testing.assert_allclose(forward(model, ref["jet_mlp__x"]), ref["jet_mlp__y"], rtol=1e-5, atol=1e-5)


def test_name_override_and_modelproto():
    model = load_model(FIX / "tiny_torchscript.onnx", name="custom")
    assert model.name == "custom"
    proto = onnx.load(str(FIX / "tiny_torchscript.onnx"))
    assert load_model(proto).layer_names() == ["/0/Gemm", "/1/Relu", "/2/Gemm"]


# ---------------------------------------------------------------------------
# bad models
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("stem, pattern", [
    ("bad_exp", r"'act_exp' \(Exp\) is not supported.*Gemm, MatMul"),
    ("bad_conv", r"'conv_layer' \(Conv\) is not supported"),
    ("bad_shape", r"'fc2_mismatch' \(Gemm\).*shape mismatch.*expects 7 inputs.*gives 8"),
    ("bad_nan", r"'fc2_nan' \(Gemm\).*NaN or inf"),
    ("bad_two_inputs", r"bad_two_inputs\.onnx.*one graph input.*'x', 'x2'"),
    ("bad_transa", r"'fc_transposed' \(Gemm\).*transA"),
])
def test_bad_fixture(stem, pattern):
    with pytest.raises(RtlgenError, match=pattern):
        load_onnx(FIX / f"{stem}.onnx")


def test_garbage_file(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(RtlgenError, match=r"garbage\.onnx.*not a valid ONNX model"):
        load_model(bad)


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.onnx"
    bad.write_bytes(b"")
    with pytest.raises(RtlgenError, match=r"empty\.onnx.*no graph"):
        load_onnx(bad)


def test_missing_file(tmp_path):
    with pytest.raises(RtlgenError, match=r"nothere\.onnx: no such file"):
        load_model(tmp_path / "nothere.onnx")
    with pytest.raises(RtlgenError, match=r"nothere\.onnx: no such file"):
        load_onnx(tmp_path / "nothere.onnx")


def test_directory_is_not_a_model(tmp_path):
    d = tmp_path / "dir.onnx"
    d.mkdir()
    with pytest.raises(RtlgenError, match=r"dir\.onnx: not a regular file"):
        load_model(d)


def test_unknown_suffix(tmp_path):
    f = tmp_path / "model.h5"
    f.write_bytes(b"\x89HDF")
    with pytest.raises(RtlgenError, match=r"model\.h5.*'\.h5'.*supported formats: \.onnx"):
        load_model(f)
    assert ".onnx" in SUPPORTED_FORMATS


def test_unsupported_object():
    with pytest.raises(RtlgenError, match=r"cannot load a model from a int"):
        load_model(42)


# ---------------------------------------------------------------------------
# hand-built graphs for the rarer rules
# ---------------------------------------------------------------------------

def _vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _proto(nodes, inputs, outputs, inits, opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


W34 = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


def test_unnamed_nodes_get_optype_index_names_and_are_unique():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("MatMul", ["a", "w2"], ["b"], name="Relu_1"),
             helper.make_node("Relu", ["b"], ["y"], name="Relu_1")]
    proto = _proto(nodes, [_vi("x", ["n", 3])], [_vi("y", ["n", 2])],
                   [_init("w", W34), _init("w2", np.ones((4, 2)))])
    names = load_onnx(proto).layer_names()
    assert names[0] == "MatMul_0"
    assert len(set(names)) == 4
    assert "Relu_1" in names


def test_add_before_any_dense_is_rejected():
    nodes = [helper.make_node("Add", ["x", "c"], ["y"], name="shift_input")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 3])], [_init("c", np.ones(3))])
    with pytest.raises(RtlgenError, match=r"'shift_input' \(Add\).*directly after a dense layer"):
        load_onnx(proto)


def test_gemm_bias_that_does_not_broadcast():
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 4])],
                   [_init("w", W34), _init("c", np.ones((4, 1)))])
    with pytest.raises(RtlgenError, match=r"'fc' \(Gemm\).*does not broadcast"):
        load_onnx(proto)


def test_scalar_bias_broadcasts():
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 4])],
                   [_init("w", W34), _init("c", np.array(0.5))])
    model = load_onnx(proto)
    np.testing.assert_array_equal(model.layers[0].bias, np.full(4, 0.5))


def test_cast_to_int_rejected():
    nodes = [helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT32, name="to_int"),
             helper.make_node("Cast", ["xi"], ["y"], to=TensorProto.FLOAT, name="back")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 3])], [])
    with pytest.raises(RtlgenError, match=r"'to_int' \(Cast\).*INT32"):
        load_onnx(proto)


def test_input_shape_must_be_flat():
    nodes = [helper.make_node("Flatten", ["x"], ["y"], name="flat")]
    proto = _proto(nodes, [_vi("x", ["n", 2, 3, 4, 5])], [_vi("y", ["n", 120])], [])
    with pytest.raises(RtlgenError, match=r"input 'x' has shape \[\?, 2, 3, 4, 5\]"):
        load_onnx(proto)
    # a feature map input needs fixed channel and spatial sizes
    proto = _proto(nodes, [_vi("x", ["n", "c", 3])], [_vi("y", ["n", 6])], [])
    with pytest.raises(RtlgenError, match=r"input 'x' has shape \[\?, \?, 3\]; a feature map"):
        load_onnx(proto)


def test_integer_input_rejected():
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    proto = _proto(nodes, [_vi("x", [1, 3], TensorProto.INT64)], [_vi("y", [1, 3], TensorProto.INT64)], [])
    with pytest.raises(RtlgenError, match=r"must be a float tensor, got INT64"):
        load_onnx(proto)


def test_weight_from_a_computed_tensor_is_rejected():
    nodes = [helper.make_node("Sigmoid", ["w"], ["ws"], name="squash_weights"),
             helper.make_node("MatMul", ["x", "ws"], ["y"], name="mm")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 4])], [_init("w", W34)])
    with pytest.raises(RtlgenError, match=r"'mm' \(MatMul\).*'squash_weights' \(Sigmoid\)"):
        load_onnx(proto)


def test_reshape_that_changes_features_rejected():
    shape = numpy_helper.from_array(np.array([2, -1], np.int64), "s")
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")]
    proto = _proto(nodes, [_vi("x", ["n", 4])], [_vi("y", [2, 2])], [shape])
    with pytest.raises(RtlgenError, match=r"'bad_reshape' \(Reshape\).*\[2, -1\]"):
        load_onnx(proto)


def test_data_as_second_matmul_operand_rejected():
    nodes = [helper.make_node("MatMul", ["w", "x"], ["y"], name="left_mul")]
    proto = _proto(nodes, [_vi("x", ["n", 3])], [_vi("y", [4, 3])], [_init("w", np.ones((4, 4)))])
    with pytest.raises(RtlgenError, match=r"'left_mul' \(MatMul\).*first input"):
        load_onnx(proto)


def test_inf_bias_rejected_with_node_name():
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc_inf")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 4])],
                   [_init("w", W34), _init("c", [0, np.inf, 0, 0])])
    with pytest.raises(RtlgenError, match=r"'fc_inf' \(Gemm\).*bias tensor 'c'.*NaN or inf"):
        load_onnx(proto)


def test_dangling_data_path_rejected():
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="r"),
             helper.make_node("Identity", ["w"], ["y"], name="const_out")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [3, 4])], [_init("w", W34)])
    with pytest.raises(RtlgenError, match=r"the graph output 'y' does not depend on the input 'x'"):
        load_onnx(proto)
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="r"),
             helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")]
    proto = _proto(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 4])], [_init("w", W34)])
    with pytest.raises(RtlgenError, match=r"data path stops at node 'r' \(Relu\): its output 'h' does not lead"):
        load_onnx(proto)


def test_declared_output_size_checked():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    proto = _proto(nodes, [_vi("x", ["n", 3])], [_vi("y", ["n", 5])], [_init("w", W34)])
    with pytest.raises(RtlgenError, match=r"declared with 5 features.*produce 4"):
        load_onnx(proto)


def test_supported_ops_listed():
    for op in ("Gemm", "MatMul", "Add", "Relu", "Flatten", "Identity", "Reshape", "Cast", "Constant"):
        assert op in SUPPORTED_OPS


# ---------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------

def test_mlp_names_shapes_and_forward():
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(5, 7)), rng.normal(size=(7, 2))
    b1, b2 = rng.normal(size=7), rng.normal(size=2)
    model = mlp([w1, w2], [b1, b2])
    assert model.layer_names() == ["dense_0", "relu_0", "dense_1"]
    assert model.n_in == 5 and model.layers[1].size == 7
    x = rng.normal(size=(4, 5))
    np.testing.assert_allclose(forward(model, x), np.maximum(x @ w1 + b1, 0) @ w2 + b2)


def test_mlp_out_in_layout_matches_torch_convention():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 5))            # [n_out, n_in] like nn.Linear.weight
    model = mlp([w], layout="out_in", activations=None)
    assert model.n_in == 5
    np.testing.assert_array_equal(model.layers[0].weight, w.T)
    np.testing.assert_array_equal(model.layers[0].bias, np.zeros(3))


def test_mlp_explicit_activations():
    w = [np.ones((2, 3)), np.ones((3, 1))]
    model = mlp(w, activations=["relu", "linear"])
    assert model.layer_names() == ["dense_0", "relu_0", "dense_1", "linear_1"]
    assert [getattr(layer, "kind", "dense") for layer in model.layers] == ["dense", "relu", "dense", "linear"]


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(weights=[np.ones((2, 3)), np.ones((4, 1))]), r"'dense_1'.*expects 4 inputs.*gives 3"),
    (dict(weights=[np.ones((2, 3))], biases=[np.ones(2)]), r"'dense_0'.*bias must have shape \[3\]"),
    (dict(weights=[np.ones(3)]), r"'dense_0'.*2-D"),
    (dict(weights=[np.ones((2, 3))], n_in=4), r"expects 2 inputs but the previous layer gives 4"),
    (dict(weights=[np.ones((2, 3))], activations=["swish"]), r"unknown activation 'swish'"),
    (dict(weights=[np.ones((2, 3))], biases=[]), r"1 weight matrices but 0 biases"),
    (dict(weights=[np.ones((2, 3))], layout="rows"), r"layout must be one of"),
    (dict(weights=[np.full((2, 3), np.nan)]), r"'dense_0'.*NaN"),
    (dict(weights=[]), r"at least one weight"),
])
def test_mlp_errors(kwargs, pattern):
    with pytest.raises(RtlgenError, match=pattern):
        mlp(**kwargs)


def test_from_layers_mixed_items():
    model = from_layers([
        (np.ones((3, 2)), np.array([1.0, -1.0])),
        "relu",
        {"weight": np.array([[1.0, 0.0], [1.0, 1.0]]), "name": "head"},
        Activation(name="", kind="linear"),
        Dense(name="", weight=np.eye(2), bias=np.zeros(2)),
    ], name="mixed")
    assert model.name == "mixed"
    assert model.layer_names() == ["dense_0", "relu_0", "head", "linear_1", "dense_2"]
    assert model.layers[3].size == 2
    # [1,1,1] -> [3,3] + [1,-1] = [4, 2] -> relu -> [4+2, 2] -> identity
    np.testing.assert_allclose(forward(model, np.ones((1, 3))), [[6.0, 2.0]])


def test_from_layers_needs_n_in_without_dense_and_checks_names():
    model = from_layers(["relu"], n_in=4)
    assert model.n_in == 4 and model.layers[0].size == 4
    with pytest.raises(RtlgenError, match="n_in is needed"):
        from_layers(["relu"])
    with pytest.raises(RtlgenError, match="repeated: a"):
        from_layers([{"weight": np.ones((2, 2)), "name": "a"}, {"activation": "relu", "name": "a"}])
    with pytest.raises(RtlgenError, match="layer 0: cannot make a layer"):
        from_layers([object()])


def test_constant_subgraphs_are_folded():
    """Weights from a flat initializer reshaped, biases from Constant numbers
    through Unsqueeze/Squeeze/Flatten/Cast: all evaluated at load time."""
    flat = np.arange(12, dtype=np.float32)
    nodes = [
        helper.make_node("Constant", [], ["shape"], value_ints=[3, 4], name="shape"),
        helper.make_node("Reshape", ["wflat", "shape"], ["w"], name="w_reshape"),
        helper.make_node("Constant", [], ["b0"], value_floats=[1.0, 2.0, 3.0, 4.0], name="b_const"),
        helper.make_node("Constant", [], ["axes"], value_ints=[0], name="axes"),
        helper.make_node("Unsqueeze", ["b0", "axes"], ["b1"], name="b_unsq"),     # [1, 4]
        helper.make_node("Flatten", ["b1"], ["b2"], axis=1, name="b_flat"),        # [1, 4]
        helper.make_node("Squeeze", ["b2", "axes"], ["b3"], name="b_sq"),         # [4]
        helper.make_node("Cast", ["b3"], ["b"], to=TensorProto.FLOAT, name="b_cast"),
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["y"], name="bias_add"),
    ]
    proto = _proto(nodes, [_vi("x", ["n", 3])], [_vi("y", ["n", 4])], [_init("wflat", flat)])
    model = load_onnx(proto)
    assert model.layer_names() == ["mm"]
    np.testing.assert_array_equal(model.layers[0].weight, flat.reshape(3, 4))
    np.testing.assert_array_equal(model.layers[0].bias, [1.0, 2.0, 3.0, 4.0])


def test_rank1_input_flattened_to_batch_of_one():
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "s")
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=0, name="flat"),
             helper.make_node("Gemm", ["f", "w"], ["g"], name="fc"),
             helper.make_node("Reshape", ["g", "s"], ["y"], name="keep")]
    proto = _proto(nodes, [_vi("x", [3])], [_vi("y", [1, 4])], [_init("w", W34), shape])
    model = load_onnx(proto)
    assert model.n_in == 3 and model.layer_names() == ["fc"]
    # Gemm straight on a 1-D vector is not valid ONNX and is reported
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc1d")]
    proto = _proto(nodes, [_vi("x", [3])], [_vi("y", [4])], [_init("w", W34)])
    with pytest.raises(RtlgenError, match=r"'fc1d' \(Gemm\).*1-D"):
        load_onnx(proto)


# ---------------------------------------------------------------------------
# Pad folded into the following Conv / AveragePool
# ---------------------------------------------------------------------------

def _np_pad(x, spatial_pads):
    """Zero-pad the spatial axes of x [N, C, *S]; pads in ONNX order (begins, ends)."""
    d = x.ndim - 2
    return np.pad(x, [(0, 0), (0, 0)] + [(spatial_pads[k], spatial_pads[d + k]) for k in range(d)])


def _np_conv(x, w, b, stride, pads):
    """Reference convolution of x [N, C, *S] by explicit zero padding and sliding windows."""
    d = w.ndim - 2
    win = np.lib.stride_tricks.sliding_window_view(_np_pad(x, pads), w.shape[2:], axis=tuple(range(2, 2 + d)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    sp, kk = "hw"[:d] if d == 2 else "l", "ij"[:d]
    return np.einsum(f"nc{sp}{kk},fc{kk}->nf{sp}", win, w) + b.reshape((1, -1) + (1,) * d)


def _np_avgpool_include_pad(x, kernel, stride, pads):
    """Average pool over the zero-padded input, every window divided by the kernel size."""
    d = len(kernel)
    win = np.lib.stride_tricks.sliding_window_view(_np_pad(x, pads), kernel, axis=tuple(range(2, 2 + d)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    return win.mean(axis=tuple(range(-d, 0)))


def _map_forward(model: FloatModel, x) -> np.ndarray:
    """Float forward pass through the unrolled conv/pool matrices."""
    from rtlgen.ir.conv import Conv, Pool, pool_matrix
    y = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    for layer in model.layers:
        if isinstance(layer, Conv):
            y = y @ layer.matrix() + layer.bias_vector()
        elif isinstance(layer, Pool):
            assert layer.kind == "avg"
            y = y @ pool_matrix(layer.in_shape, layer.kernel, layer.stride, layer.pads, layer.count_include_pad)
        elif isinstance(layer, Dense):
            y = y @ layer.weight + layer.bias
        else:
            y = np.maximum(y, 0.0)
    return y


def _pads_input(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _pad_conv_gemm(rng, opset=13, pad_style="input"):
    """Pad [0,0,1,2, 0,0,2,0] -> Conv 2x3 stride (2,1) pads (1,0,0,1) -> Relu -> Flatten -> Gemm.

    Weights and biases are multiples of 1/16 (exact in the quantized test)."""
    w = rng.integers(-30, 30, size=(3, 2, 2, 3)) / 16
    b = rng.integers(-30, 30, size=3) / 16
    full = [0, 0, 1, 2, 0, 0, 2, 0]
    conv_out = (3, (5 + 3 + 1 + 0 - 2) // 2 + 1, (4 + 2 + 0 + 1 - 3) // 1 + 1)
    n_flat = int(np.prod(conv_out))
    wg = rng.integers(-30, 30, size=(4, n_flat)) / 16
    bg = rng.integers(-30, 30, size=4) / 16
    inits = [_init("w", w), _init("b", b), _init("wg", wg), _init("bg", bg)]
    if pad_style == "input":
        inits.append(_pads_input("pads", full))
        pad = helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="constant")
    elif pad_style == "axes":       # opset 18: pads of the listed axes only, in that order
        inits += [_pads_input("pads", [2, 1, 0, 2]), _pads_input("axes", [-1, 2]), _init("zero", np.zeros(()))]
        pad = helper.make_node("Pad", ["x", "pads", "zero", "axes"], ["p"], name="pad")
    else:                           # opset < 11: attributes
        pad = helper.make_node("Pad", ["x"], ["p"], name="pad", pads=full, value=0.0)
    nodes = [pad,
             helper.make_node("Conv", ["p", "w", "b"], ["c"], name="conv", strides=[2, 1], pads=[1, 0, 0, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="fc", transB=1)]
    proto = _proto(nodes, [_vi("x", ["n", 2, 5, 4])], [_vi("y", ["n", 4])], inits, opset=opset)

    def reference(x):
        c = _np_conv(_np_pad(x, (1, 2, 2, 0)), w, b, (2, 1), (1, 0, 0, 1))
        assert c.shape[1:] == conv_out
        return np.maximum(c, 0).reshape(len(x), -1) @ wg.T + bg

    return proto, reference


@pytest.mark.parametrize("opset,pad_style", [(13, "input"), (18, "axes"), (10, "attribute")])
def test_pad_folded_into_conv_pads(opset, pad_style):
    rng = np.random.default_rng(11)
    proto, reference = _pad_conv_gemm(rng, opset, pad_style)
    model = load_onnx(proto)
    assert model.layer_names() == ["conv", "relu", "fc"]
    conv = model.layers[0]
    assert conv.in_shape == (2, 5, 4) and conv.stride == (2, 1)
    assert conv.pads == (1 + 1, 0 + 2, 0 + 2, 1 + 0)
    x = rng.normal(size=(6, 2, 5, 4))
    np.testing.assert_allclose(_map_forward(model, x), reference(x), rtol=1e-12, atol=1e-12)


def test_pad_folded_conv_golden_is_exact():
    """Exactly representable weights and inputs, results wide enough for the
    exact sums: the golden model must equal the float reference on the padded input."""
    from rtlgen.golden.network import predict_codes
    from rtlgen.ir.config import apply_config
    from rtlgen.numerics.fixed import parse_type, to_float
    rng = np.random.default_rng(12)
    proto, reference = _pad_conv_gemm(rng)
    cfg = {"input": "fixed<8,3,TRN,WRAP>",
           "default": {"weight": "fixed<7,3,RND,SAT>", "bias": "fixed<9,4,RND,SAT>",
                       "result": "fixed<32,14,TRN,WRAP>"}}
    q = apply_config(load_onnx(proto), cfg)
    tin = parse_type(cfg["input"])
    codes = rng.integers(tin.min_code, tin.max_code + 1, size=(40, q.n_in))
    codes[0], codes[1] = tin.max_code, tin.min_code
    got = to_float(predict_codes(q, codes), q.layers[-1].result_type)
    x = to_float(codes, tin).reshape(len(codes), 2, 5, 4)
    np.testing.assert_array_equal(got, reference(x))


def test_torchscript_style_pad_chain_is_evaluated():
    """F.pad(x, (1, 2, 0, 1)) as the TorchScript exporter writes it: the pads
    computed by ConstantOfShape, Concat, Reshape, Slice, Transpose and Cast."""
    rng = np.random.default_rng(13)
    w = rng.normal(size=(2, 1, 3, 3)).astype(np.float32).astype(np.float64)
    big = np.iinfo(np.int64).max
    consts = {"c_n": [4], "c_torch": [1, 2, 0, 1], "c_shape": [-1, 2], "c_starts": [-1], "c_ends": [-big],
              "c_axes": [0], "c_steps": [-1], "c_flat": [-1]}
    nodes = [helper.make_node("Constant", [], [k], name=f"/pad/{k}", value=numpy_helper.from_array(
        np.asarray(v, dtype=np.int64), k)) for k, v in consts.items()]
    nodes += [
        helper.make_node("ConstantOfShape", ["c_n"], ["zeros"], name="/pad/ConstantOfShape",
                         value=numpy_helper.from_array(np.zeros(1, np.int64), "v")),
        helper.make_node("Concat", ["c_torch", "zeros"], ["cat"], name="/pad/Concat", axis=0),
        helper.make_node("Reshape", ["cat", "c_shape"], ["pairs"], name="/pad/Reshape"),
        helper.make_node("Slice", ["pairs", "c_starts", "c_ends", "c_axes", "c_steps"], ["rev"], name="/pad/Slice"),
        helper.make_node("Transpose", ["rev"], ["tr"], name="/pad/Transpose", perm=[1, 0]),
        helper.make_node("Reshape", ["tr", "c_flat"], ["flat"], name="/pad/Reshape_1"),
        helper.make_node("Cast", ["flat"], ["pads"], name="/pad/Cast", to=TensorProto.INT64),
        helper.make_node("Pad", ["x", "pads"], ["p"], name="/pad/Pad", mode="constant"),
        helper.make_node("Conv", ["p", "w"], ["y"], name="/conv/Conv"),
    ]
    proto = _proto(nodes, [_vi("x", [1, 1, 4, 5])], [_vi("y", [1, 2, 3, 6])], [_init("w", w)])
    model = load_onnx(proto)
    assert model.layer_names() == ["/conv/Conv"]
    assert model.layers[0].pads == (0, 1, 1, 2)
    x = rng.normal(size=(3, 1, 4, 5))
    expected = _np_conv(np.pad(x, [(0, 0), (0, 0), (0, 1), (1, 2)]), w, np.zeros(2), (1, 1), (0, 0, 0, 0))
    np.testing.assert_allclose(_map_forward(model, x), expected.reshape(3, -1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool_pads,count_include_pad", [((0, 0, 0, 0), 0), ((0, 1, 0, 0), 1)])
def test_pad_folded_into_average_pool(pool_pads, count_include_pad):
    rng = np.random.default_rng(14)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
             helper.make_node("AveragePool", ["p"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 1],
                              pads=list(pool_pads), count_include_pad=count_include_pad)]
    proto = _proto(nodes, [_vi("x", [1, 2, 4, 3])], [_vi("y", None)],
                   [_pads_input("pads", [0, 0, 1, 0, 0, 0, 1, 1])])
    model = load_onnx(proto)
    pool = model.layers[0]
    assert pool.in_shape == (2, 4, 3) and pool.count_include_pad
    assert pool.pads == tuple(p + e for p, e in zip(pool_pads, (1, 0, 1, 1)))
    x = rng.normal(size=(5, 2, 4, 3))
    expected = _np_avgpool_include_pad(_np_pad(x, (1, 0, 1, 1)), (2, 2), (2, 1), pool_pads)
    np.testing.assert_allclose(_map_forward(model, x), expected.reshape(5, -1), rtol=1e-12, atol=1e-12)


def test_pad_1d_and_chained_pads_add_up():
    rng = np.random.default_rng(15)
    w = rng.normal(size=(2, 3, 3)).astype(np.float32).astype(np.float64)
    nodes = [helper.make_node("Pad", ["x", "pa"], ["p1"], name="pad_a"),
             helper.make_node("Identity", ["p1"], ["p2"], name="keep"),
             helper.make_node("Pad", ["p2", "pb", ""], ["p3"], name="pad_b"),
             helper.make_node("Conv", ["p3", "w"], ["y"], name="conv1d", strides=[2])]
    proto = _proto(nodes, [_vi("x", ["n", 3, 7])], [_vi("y", ["n", 2, 5])],
                   [_init("w", w), _pads_input("pa", [0, 0, 2, 0, 0, 1]), _pads_input("pb", [0, 0, 1, 0, 0, 0])])
    model = load_onnx(proto)
    assert model.layer_names() == ["conv1d"] and model.layers[0].pads == (3, 1)
    x = rng.normal(size=(4, 3, 7))
    expected = _np_conv(_np_pad(x, (3, 1)), w, np.zeros(2), (2,), (0, 0))
    np.testing.assert_allclose(_map_forward(model, x), expected.reshape(4, -1), rtol=1e-12, atol=1e-12)


def test_all_zero_pad_is_a_no_op_even_before_max_pool():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
             helper.make_node("MaxPool", ["p"], ["y"], name="mp", kernel_shape=[2])]
    proto = _proto(nodes, [_vi("x", [1, 2, 6])], [_vi("y", [1, 2, 5])], [_pads_input("pads", [0] * 6)])
    model = load_onnx(proto)
    assert model.layer_names() == ["mp"] and model.layers[0].pads == (0, 0)


def _bad_pad(pads=(0, 0, 1, 1, 0, 0, 1, 1), after="Conv", opset=13, value=None, **attrs):
    inits = [_pads_input("pads", list(pads)), _init("w", np.ones((2, 2, 2, 2)))]
    pad_inputs = ["x", "pads"]
    if value is not None:
        if opset >= 11:
            inits.append(_init("cv", value))
            pad_inputs.append("cv")
        else:
            attrs["value"] = value
    if opset < 11:
        pad_inputs = ["x"]
        attrs["pads"] = list(pads)
    nodes = [helper.make_node("Pad", pad_inputs, ["p"], name="pad", **attrs)]
    if after == "Conv":
        nodes.append(helper.make_node("Conv", ["p", "w"], ["y"], name="conv"))
    elif after == "Relu":
        nodes += [helper.make_node("Relu", ["p"], ["r"], name="relu"),
                  helper.make_node("Conv", ["r", "w"], ["y"], name="conv")]
    elif after == "MaxPool":
        nodes.append(helper.make_node("MaxPool", ["p"], ["y"], name="mp", kernel_shape=[2, 2]))
    elif after == "AveragePool":
        nodes.append(helper.make_node("AveragePool", ["p"], ["y"], name="ap", kernel_shape=[2, 2],
                                      pads=[1, 1, 0, 0]))
    elif after == "flat":
        nodes = [helper.make_node("Flatten", ["x"], ["fl"], name="flat"),
                 helper.make_node("Pad", ["fl", "pads"], ["y"], name="pad")]
    else:
        nodes[0].output[0] = "y"
    return _proto(nodes, [_vi("x", [1, 2, 4, 4])], [_vi("y", None)], inits, opset=opset)


BAD_PADS = [
    ("reflect", _bad_pad(mode="reflect"), r"'pad' \(Pad\): mode='reflect' .*zero padding"),
    ("edge", _bad_pad(mode="edge"), r"'pad' \(Pad\): mode='edge' .*padding_mode='zeros'"),
    ("value_input", _bad_pad(value=0.5), r"'pad' \(Pad\): padding with the value 0.5 .*pad with 0"),
    ("value_attribute", _bad_pad(opset=10, value=-1.0), r"'pad' \(Pad\): padding with the value -1 "),
    ("negative", _bad_pad(pads=(0, 0, 1, -1, 0, 0, 1, 1)), r"'pad' \(Pad\): negative pads .*cropping"),
    ("channel", _bad_pad(pads=(0, 1, 1, 1, 0, 0, 1, 1)), r"'pad' \(Pad\): .*batch or channel axis"),
    ("batch", _bad_pad(pads=(0, 0, 0, 0, 1, 0, 0, 0)), r"'pad' \(Pad\): .*batch or channel axis"),
    ("wrong_count", _bad_pad(pads=(1, 1, 1, 1)), r"'pad' \(Pad\): shape mismatch: 4 pads for 4 axes"),
    ("then_relu", _bad_pad(after="Relu"),
     r"'pad' \(Pad\) cannot be folded: it is followed by node 'relu' \(Relu\).*directly before a Conv"),
    ("then_maxpool", _bad_pad(after="MaxPool"),
     r"'pad' \(Pad\) cannot be folded: it is followed by node 'mp' \(MaxPool\).*never does"),
    ("avg_own_pads", _bad_pad(after="AveragePool"),
     r"'pad' \(Pad\) cannot be folded into node 'ap' \(AveragePool\).*count_include_pad=True"),
    ("last", _bad_pad(after=None), r"'pad' \(Pad\) cannot be folded: its output reaches the graph output"),
    ("flat", _bad_pad(pads=(0, 1, 0, 1), after="flat"), r"'pad' \(Pad\): padding a flat vector"),
]


@pytest.mark.parametrize("case,proto,pattern", BAD_PADS, ids=[b[0] for b in BAD_PADS])
def test_unfoldable_pad_rejected(case, proto, pattern):
    with pytest.raises(RtlgenError, match=pattern):
        load_onnx(proto)


def test_pad_listed_as_supported():
    assert "Pad" in SUPPORTED_OPS


def test_weights_exported_as_graph_inputs_name_export_params(tmp_path):
    # torch.onnx.export(..., export_params=False) leaves the weights as graph inputs
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="/0/Gemm", transB=1)], "noparams",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "noparams.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(RtlgenError, match=r"one graph input, found 3 .*'w', 'b' feed the weights.*"
                                          r"export_params=True"):
        load_onnx(path)
    # two data inputs are not taken for weights
    with pytest.raises(RtlgenError, match="one graph input") as info:
        load_onnx(FIX / "bad_two_inputs.onnx")
    assert "feed the weights" not in str(info.value)
