"""Convolutional layers: ONNX import, unrolling, golden model, RTL.

* the CNN fixtures (both PyTorch exporters, 1-D and 2-D) import to float
  layers whose outputs equal PyTorch's;
* BatchNormalization is folded into the preceding Conv/Gemm;
* the unrolled convolution matrix equals a direct convolution written with
  loops, and the golden model equals a direct integer reference for conv,
  max pooling and average pooling;
* unsupported attributes and shape mismatches give one clear error naming
  the node, exit code 2 and no output folder;
* generated RTL equals the golden model on Icarus and Verilator for a
  matrix of kernel sizes, strides, paddings, channel counts and reuse
  factors, and the ECON-T-style example does on Verilator.
"""

from __future__ import annotations

import json
import re
from math import prod

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from rtlgen.cli import main
from rtlgen.errors import RtlgenError
from rtlgen.kinds import save_build
from rtlgen.flows.lint import lint_build
from rtlgen.flows.sim import run_sim
from rtlgen.frontends import load_model
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config
from rtlgen.ir.conv import Conv, Pool, QConv, QMaxPool, conv_matrix
from rtlgen.ir.model import Activation, Dense, FloatModel, QModel
from rtlgen.numerics.fixed import parse_type, quantize, requantize

from helpers.paths import ECONT, FIXTURES, ROOT
from helpers.sims import on_simulators, rtl_sim

REFERENCE = np.load(FIXTURES / "cnn_reference.npz")


# ---------------------------------------------------------------------------
# direct references, written with loops
# ---------------------------------------------------------------------------

def _windows_direct(spatial, kernel, stride, pads):
    """Per output position: list of (tap, input position) inside the input."""
    d = len(spatial)
    outs = [(spatial[k] + pads[k] + pads[d + k] - kernel[k]) // stride[k] + 1 for k in range(d)]
    result = []
    for o in np.ndindex(*outs):
        taps = []
        for t in np.ndindex(*kernel):
            pos = tuple(o[k] * stride[k] - pads[k] + t[k] for k in range(d))
            if all(0 <= pos[k] < spatial[k] for k in range(d)):
                taps.append((t, pos))
        result.append(taps)
    return outs, result


def direct_conv(x, weight, bias, stride, pads):
    """x [C_in, *S] (any numbers, Python ints work), weight [C_out, C_in, *k]."""
    c_out, c_in = weight.shape[:2]
    outs, windows = _windows_direct(x.shape[1:], weight.shape[2:], stride, pads)
    y = np.empty((c_out, len(windows)), dtype=object)
    for co in range(c_out):
        for o, taps in enumerate(windows):
            acc = bias[co]
            for ci in range(c_in):
                for t, pos in taps:
                    acc = acc + x[(ci,) + pos] * weight[(co, ci) + t]
            y[co, o] = acc
    return y.reshape(-1)


def direct_pool(x, kind, kernel, stride, pads, count_include_pad=False):
    """Max: max of the taps; avg: (sum of the taps, n)."""
    outs, windows = _windows_direct(x.shape[1:], kernel, stride, pads)
    out = []
    for c in range(x.shape[0]):
        for taps in windows:
            vals = [x[(c,) + pos] for _, pos in taps]
            if kind == "max":
                out.append(max(vals))
            else:
                out.append((sum(vals), prod(kernel) if count_include_pad else len(vals)))
    return out


def float_forward(fm: FloatModel, x: np.ndarray) -> np.ndarray:
    """Float forward pass of a float IR, layer by layer, with the direct references."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    shape = fm.input_shape
    for layer in fm.layers:
        if isinstance(layer, Dense):
            x = x @ layer.weight + layer.bias
        elif isinstance(layer, Activation):
            x = np.maximum(x, 0)
        elif isinstance(layer, Conv):
            x = np.array([direct_conv(row.reshape(shape), layer.weight, layer.bias, layer.stride, layer.pads)
                          for row in x], dtype=np.float64)
            shape = layer.out_shape
        else:
            rows = []
            for row in x:
                r = direct_pool(row.reshape(shape), layer.kind, layer.kernel, layer.stride, layer.pads,
                                layer.count_include_pad)
                rows.append(r if layer.kind == "max" else [s / n for s, n in r])
            x = np.array(rows, dtype=np.float64)
            shape = layer.out_shape
    return x


# ---------------------------------------------------------------------------
# front end
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,path,shape,ops", [
    ("cnn2d_torchscript", FIXTURES / "cnn2d_torchscript.onnx", (2, 6, 6),
     ["Conv", "Activation", "Pool", "Conv", "Pool", "Dense"]),
    ("cnn2d_dynamo", FIXTURES / "cnn2d_dynamo.onnx", (2, 6, 6),
     ["Conv", "Activation", "Pool", "Conv", "Pool", "Dense"]),
    ("cnn1d_torchscript", FIXTURES / "cnn1d_torchscript.onnx", (2, 10),
     ["Conv", "Activation", "Pool", "Dense", "Activation", "Dense"]),
    ("econt_encoder", ECONT, (1, 8, 8), ["Conv", "Activation", "Dense"]),
])
def test_fixture_import_matches_torch(name, path, shape, ops):
    fm = load_model(path)
    assert fm.input_shape == shape and fm.n_in == prod(shape)
    assert [type(layer).__name__ for layer in fm.layers] == ops
    x, y = REFERENCE[f"{name}__x"], REFERENCE[f"{name}__y"]
    got = float_forward(fm, x)
    assert got.shape == y.shape
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)


def test_econt_geometry_is_tensorflow_same():
    conv = load_model(ECONT).layers[0]
    assert conv.kernel == (3, 3) and conv.stride == (2, 2)
    assert conv.pads == (0, 0, 1, 1) and conv.out_shape == (8, 4, 4)


def _graph(nodes, in_shape, out_shape, inits, name="g"):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *out_shape])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _bn_params(rng, n, prefix):
    return {f"{prefix}_g": rng.uniform(0.5, 1.5, n), f"{prefix}_b": rng.normal(0, 0.3, n),
            f"{prefix}_m": rng.normal(0, 0.3, n), f"{prefix}_v": rng.uniform(0.5, 1.5, n)}


def test_batchnorm_folded_into_conv_and_gemm():
    rng = np.random.default_rng(3)
    inits = {"w": rng.normal(size=(3, 2, 3, 3)), "b": rng.normal(size=3),
             "wg": rng.normal(size=(4, 3 * 2 * 2)), "bg": rng.normal(size=4)}
    inits.update(_bn_params(rng, 3, "c"))
    inits.update(_bn_params(rng, 4, "d"))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 0, 0]),
        helper.make_node("BatchNormalization", ["c", "c_g", "c_b", "c_m", "c_v"], ["cb"], name="bn1",
                         epsilon=1e-3),
        helper.make_node("Relu", ["cb"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["g"], name="gemm", transB=1),
        helper.make_node("BatchNormalization", ["g", "d_g", "d_b", "d_m", "d_v"], ["y"], name="bn2"),
    ]
    fm = load_model(_graph(nodes, [2, 4, 4], [4], inits))
    assert [layer.name for layer in fm.layers] == ["conv", "relu", "gemm"]
    x = rng.normal(size=(5, 2, 4, 4))

    def bn(v, p, eps, axis_shape):
        g, b, m, var = (inits[f"{p}_{k}"].astype(np.float32).astype(np.float64).reshape(axis_shape)
                        for k in "gbmv")
        return (v - m) / np.sqrt(var + eps) * g + b

    w = inits["w"].astype(np.float32).astype(np.float64)
    c = np.array([direct_conv(row, w, inits["b"].astype(np.float32), (2, 2), (1, 1, 0, 0)) for row in x],
                 dtype=np.float64).reshape(5, 3, 2, 2)
    c = np.maximum(bn(c, "c", 1e-3, (1, 3, 1, 1)), 0).reshape(5, -1)
    g = c @ inits["wg"].astype(np.float32).astype(np.float64).T + inits["bg"].astype(np.float32)
    expected = bn(g, "d", 1e-5, (1, 4))
    np.testing.assert_allclose(float_forward(fm, x), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("form", ["batchnorm", "mul_add"])
def test_per_channel_scale_on_2d_maps_equals_onnxruntime(form):
    """A BatchNormalization after a ReLU (not foldable), or a Mul and an Add of per-channel constants
    (as Brevitas exports its scale-bias), on 2-D maps: one 1x1 tap per channel; values dyadic, so
    onnxruntime's float32 is exact."""
    import onnxruntime
    rng = np.random.default_rng(9)
    c = 3
    inits = {"w": rng.integers(-4, 4, (c, 2, 3, 3)) / 4}
    scale, shift = rng.integers(-8, 8, c) / 4, rng.integers(-8, 8, c) / 8
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"], name="relu")]
    if form == "batchnorm":   # var + eps = 1/4: the scale is gamma * 2, exactly
        inits.update(g=scale / 2, b=shift, m=np.zeros(c), v=np.full(c, 0.25 - 2.0 ** -6))
        nodes.append(helper.make_node("BatchNormalization", ["r", "g", "b", "m", "v"], ["y"], name="bn",
                                      epsilon=2.0 ** -6))
    else:
        inits.update(s=scale.reshape(1, c, 1, 1), t=shift.reshape(c, 1, 1))
        nodes += [helper.make_node("Mul", ["s", "r"], ["p"], name="scale"),
                  helper.make_node("Add", ["p", "t"], ["y"], name="shift")]
    model = _graph(nodes, [2, 4, 4], [c, 4, 4], inits)
    fm = load_model(model)
    assert [type(layer).__name__ for layer in fm.layers] == ["Conv", "Activation", "Conv"]
    assert fm.layers[2].kernel == (1, 1) and fm.layers[2].name == ("bn" if form == "batchnorm" else "scale")
    qmodel = apply_config(fm, {"input": "fixed<8,4,RND,SAT>", "default": {"weight": "fixed<8,4>",
                                                                        "bias": "fixed<8,4>"}})
    x = rng.integers(-128, 128, (12, 2, 4, 4)) / 16
    ref = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x.astype(np.float32)})[0]
    codes = predict_codes(qmodel, quantize(x.reshape(12, -1), qmodel.input_type))
    assert np.array_equal(codes * 2.0 ** -qmodel.output_type.frac, ref.reshape(12, -1))


def test_mul_by_a_constant_varying_within_a_channel_is_an_error():
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
             helper.make_node("Mul", ["h", "s"], ["y"], name="scale")]
    model = _graph(nodes, [1, 3, 3], [1, 3, 3], {"w": np.ones((1, 1, 1, 1)), "s": np.arange(9.0).reshape(1, 3, 3)})
    with pytest.raises(RtlgenError, match=r"'scale' \(Mul\): the factor varies within a channel"):
        load_model(model)


def test_same_lower_and_valid_auto_pad():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(1, 1, 2, 2))
    for auto_pad, pads in (("SAME_LOWER", (1, 1, 0, 0)), ("SAME_UPPER", (0, 0, 1, 1)), ("VALID", (0, 0, 0, 0))):
        out = [1, 5, 5] if auto_pad != "VALID" else [1, 4, 4]
        node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad=auto_pad)
        conv = load_model(_graph([node], [1, 5, 5], out, {"w": w})).layers[0]
        assert conv.pads == pads and list(conv.out_shape) == out


# ---------------------------------------------------------------------------
# unrolling and golden model
# ---------------------------------------------------------------------------

GEOMETRIES = [  # (in_shape, c_out, kernel, stride, pads)
    ((1, 5, 5), 2, (1, 1), (1, 1), (0, 0, 0, 0)),
    ((2, 6, 5), 3, (2, 3), (2, 1), (0, 1, 1, 0)),
    ((3, 5, 5), 2, (3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 9), 3, (3,), (2,), (1, 2)),
    ((1, 7), 1, (7,), (1,), (0, 0)),
]


@pytest.mark.parametrize("in_shape,c_out,kernel,stride,pads", GEOMETRIES)
def test_conv_matrix_equals_direct_convolution(in_shape, c_out, kernel, stride, pads):
    rng = np.random.default_rng(5)
    w = rng.normal(size=(c_out, in_shape[0], *kernel))
    b = rng.normal(size=c_out)
    layer = Conv("c", w, b, in_shape, stride, pads)
    mat = conv_matrix(w, in_shape, stride, pads)
    assert mat.shape == (layer.n_in, layer.n_out)
    for _ in range(3):
        x = rng.normal(size=in_shape)
        np.testing.assert_allclose(x.reshape(-1) @ mat + layer.bias_vector(),
                                   direct_conv(x, w, b, stride, pads).astype(np.float64), rtol=1e-12, atol=1e-12)


CFG = {"input": "fixed<6,2,RND,SAT>",
       "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,4,RND,SAT>",
                   "result": "fixed<9,4,RND_CONV,SAT>", "reuse_factor": 2}}


@pytest.mark.parametrize("in_shape,c_out,kernel,stride,pads", GEOMETRIES)
def test_golden_equals_direct_integer_reference(in_shape, c_out, kernel, stride, pads):
    rng = np.random.default_rng(6)
    conv = Conv("c", rng.normal(size=(c_out, in_shape[0], *kernel)), rng.normal(size=c_out), in_shape, stride, pads)
    pk = tuple(min(2, s) for s in conv.out_shape[1:])
    mp = Pool("mp", "max", conv.out_shape, pk, (1,) * len(pk), (0,) * (2 * len(pk)))
    ap = Pool("ap", "avg", mp.out_shape, pk, (1,) * len(pk), tuple(int(k > 1) for k in pk) + (0,) * len(pk))
    fm = FloatModel("g", prod(in_shape), [conv, mp, ap], input_shape=in_shape)
    q = apply_config(fm, {**CFG, "default": {**CFG["default"], "reuse_factor": 1},
                          "layers": {"c": {"reuse_factor": 2}}})
    assert isinstance(q.layers[0], QConv) and isinstance(q.layers[1], QMaxPool)
    assert q.layers[2].op == "avgpool"
    tin = parse_type(CFG["input"])
    x = rng.integers(tin.min_code, tin.max_code + 1, size=(12, q.n_in))
    x[0], x[1] = tin.max_code, tin.min_code
    expected = []
    cq = q.layers[0]
    w_codes = quantize(conv.weight, cq.weight_type)
    b_codes = quantize(conv.bias, cq.bias_type)
    p_frac = tin.frac + cq.weight_type.frac
    res = cq.result_type
    got = predict_codes(q, x)
    for row in x:
        xs = row.astype(object).reshape(in_shape)
        s = direct_conv(xs, w_codes.astype(object), [int(v) << (p_frac - cq.bias_type.frac) for v in b_codes],
                        stride, pads)
        c = requantize(np.array(s, dtype=object), p_frac, res).reshape(conv.out_shape)
        m = np.array(direct_pool(c, "max", pk, mp.stride, mp.pads), dtype=np.int64)
        m = requantize(m, res.frac, res).reshape(mp.out_shape)
        a = []
        wt = q.layers[2].weight_type
        for total, n in direct_pool(m, "avg", pk, ap.stride, ap.pads):
            code = int(quantize(np.array([1.0 / n]), wt)[0])
            a.append(total * code)
        expected.append(requantize(np.array(a, dtype=object), res.frac + wt.frac, res))
    assert np.array_equal(got, np.array(expected, dtype=np.int64))


def test_model_json_round_trip_keeps_cnn_layers():
    q = apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), CFG)
    back = QModel.from_dict(json.loads(json.dumps(q.to_dict())))
    assert back.input_shape == (2, 6, 6)
    assert [layer.op for layer in back.layers] == ["conv", "activation", "maxpool", "conv", "avgpool", "dense"]
    for a, b in zip(q.layers, back.layers):
        assert type(a) is type(b)
        if isinstance(a, (QConv, QMaxPool)):
            assert a.geometry() == b.geometry()
    x = np.random.default_rng(0).integers(-32, 32, size=(20, q.n_in))
    assert np.array_equal(predict_codes(q, x), predict_codes(back, x))


def test_inputs_of_a_wrong_shape_are_refused_naming_both_shapes():
    from rtlgen.kinds import kind_of
    q = apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), CFG)
    kind = kind_of(q)
    x = np.random.default_rng(0).normal(size=(3, 2, 6, 6))
    flat = kind.input_codes(q, x.reshape(3, -1), raw=False)
    assert np.array_equal(kind.input_codes(q, x, raw=False), flat)   # [N, C, H, W] is taken as it is
    with pytest.raises(RtlgenError, match=r"shape \[N, 72\] or \[N, 2, 6, 6\] .*got \[3, 2, 5, 7\]"):
        kind.input_codes(q, np.zeros((3, 2, 5, 7)), raw=False)
    with pytest.raises(RtlgenError, match=r"shape \[N, 72\] \(or \[72\], or \[N, 2, 6, 6\]\), got \[3, 2, 5, 7\]"):
        kind.input_codes(q, np.zeros((3, 2, 5, 7), dtype=np.int64), raw=True)


# ---------------------------------------------------------------------------
# bad input: exit code 2, the node named, nothing written
# ---------------------------------------------------------------------------

def _conv_graph(**attrs):
    w = np.ones((2, 2, 3, 3))
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="enc_conv", **attrs)
    return _graph([node], [2, 6, 6], [2, 4, 4], {"w": w})


def _pool_graph(op, **attrs):
    node = helper.make_node(op, ["x"], ["y"], name="enc_pool", kernel_shape=[2, 2], **attrs)
    return _graph([node], [2, 6, 6], [2, 3, 3], {})


BAD = [
    ("dilation", _conv_graph(dilations=[2, 2]), r"'enc_conv' \(Conv\): dilations"),
    ("groups", _conv_graph(group=2), r"'enc_conv' \(Conv\): shape mismatch: group=2 with 2 input channels"),
    ("auto_pad", _conv_graph(auto_pad="FOO"), r"'enc_conv' \(Conv\): auto_pad='FOO'"),
    ("ceil_mode", _pool_graph("MaxPool", strides=[2, 2], ceil_mode=1), r"'enc_pool' \(MaxPool\): ceil_mode=1"),
    ("avg_ceil_mode", _pool_graph("AveragePool", ceil_mode=1), r"'enc_pool' \(AveragePool\): ceil_mode=1"),
    ("channels", _graph([helper.make_node("Conv", ["x", "w"], ["y"], name="enc_conv")], [3, 6, 6], [2, 4, 4],
                        {"w": np.ones((2, 2, 3, 3))}), r"'enc_conv' \(Conv\): shape mismatch.*2 input channels"),
    ("kernel_too_big", _graph([helper.make_node("Conv", ["x", "w"], ["y"], name="enc_conv")], [2, 2, 2],
                              [2, 1, 1], {"w": np.ones((2, 2, 3, 3))}), r"'enc_conv' \(Conv\): shape mismatch"),
    ("gemm_on_map", _graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="enc_gemm")], [2, 3, 3], [4],
                           {"w": np.ones((18, 4))}), r"'enc_gemm' \(Gemm\).*flatten it first"),
    ("pool_pads", _pool_graph("MaxPool", pads=[2, 0, 0, 0]), r"'enc_pool' \(MaxPool\): pads .* smaller than"),
    ("pool_1d_kernel_on_2d", _graph([helper.make_node("MaxPool", ["x"], ["y"], name="enc_pool", kernel_shape=[2])],
                                    [2, 6, 6], [2, 5], {}), r"'enc_pool' \(MaxPool\): shape mismatch"),
]


@pytest.mark.parametrize("case,model,message", BAD, ids=[b[0] for b in BAD])
def test_bad_models_exit_2_nothing_written(case, model, message, tmp_path, capsys):
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, str(path))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    out = tmp_path / "out"
    assert main(["build", str(path), "-c", str(cfg), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rtlgen: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize("group", [2, 4])
def test_grouped_and_depthwise_conv_equal_onnxruntime(group):
    """A grouped (2) and a depthwise (4) convolution, on values exact in float32 and in the types."""
    import onnxruntime
    rng = np.random.default_rng(group)
    w = rng.integers(-8, 8, (4, 4 // group, 3, 3)) / 8
    b = rng.integers(-8, 8, 4) / 8
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="gconv", group=group, pads=[1, 1, 1, 1])
    model = _graph([node], [4, 5, 5], [4, 5, 5], {"w": w, "b": b})
    cfg = {"input": "fixed<8,4,RND,SAT>", "default": {"weight": "fixed<5,1>", "bias": "fixed<5,1>"}}
    qmodel = apply_config(load_model(model), cfg)
    x = rng.integers(-128, 128, (16, 4, 5, 5)) / 16
    ref = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x.astype(np.float32)})[0]
    codes = predict_codes(qmodel, quantize(x.reshape(16, -1), qmodel.input_type))
    assert np.array_equal(codes * 2.0 ** -qmodel.output_type.frac, ref.reshape(16, -1))
    # each output channel reads only its group's input channels: the rest of the matrix is zeros
    mat = qmodel.layers[0].weights.reshape(4, 25, 4, 25)
    per_in = 4 // group
    for co in range(4):
        outside = [ci for ci in range(4) if ci // per_in != co // (4 // group)]
        assert not mat[outside, :, co, :].any()


def test_pool_window_in_padding_only_is_an_error():
    pool = Pool("p", "max", (1, 4), (2,), (1,), (2, 0))
    with pytest.raises(RtlgenError, match="layer 'p': a pooling window lies entirely in the padding"):
        apply_config(FloatModel("m", 4, [pool], input_shape=(1, 4)), CFG)


def test_cli_build_and_predict_accept_nchw_inputs(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    out = tmp_path / "core"
    assert main(["build", str(FIXTURES / "cnn1d_torchscript.onnx"), "-c", str(cfg), "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [2, 10] and manifest["input"]["layout"] == "NCL flattened C,L"
    assert [layer["op"] for layer in manifest["layers"]] == ["conv", "relu", "maxpool", "dense", "relu", "dense"]
    x = REFERENCE["cnn1d_torchscript__x"]
    np.save(tmp_path / "x3.npy", x)
    np.save(tmp_path / "x2.npy", x.reshape(len(x), -1))
    for stem in ("x3", "x2"):
        assert main(["predict", str(out), str(tmp_path / f"{stem}.npy"), "-o", str(tmp_path / f"{stem}_y.npy")]) == 0
    y3, y2 = np.load(tmp_path / "x3_y.npy"), np.load(tmp_path / "x2_y.npy")
    assert y3.shape == (len(x), 2) and np.array_equal(y3, y2)
    # quantized, the outputs stay near PyTorch's
    assert np.max(np.abs(y3 - REFERENCE["cnn1d_torchscript__y"])) < 0.5


def test_misplaced_stream_io_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**CFG, "layers": {"/dense/Gemm": {"io": "stream"}}}))
    out = tmp_path / "out"
    assert main(["build", str(ECONT), "-c", str(cfg), "-o", str(out)]) == 2
    assert "layer '/dense/Gemm': io 'stream' applies to Conv and pooling layers only" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(RtlgenError, match="io must be 'parallel' or 'stream'"):
        apply_config(load_model(ECONT), {**CFG, "default": {**CFG["default"], "io": "serial"}})


# ---------------------------------------------------------------------------
# RTL against the golden model
# ---------------------------------------------------------------------------

def edge_codes(t, n, n_random, seed):
    rng = np.random.default_rng(seed)
    rows = [np.full(n, t.max_code), np.full(n, t.min_code), np.zeros(n, dtype=np.int64),
            np.where(np.arange(n) % 2 == 0, t.max_code, t.min_code),
            np.where(np.arange(n) % 3 == 0, t.min_code, t.max_code), np.full(n, 1)]
    return np.vstack([np.array(rows, dtype=np.int64), rng.integers(t.min_code, t.max_code + 1, size=(n_random, n))])


def _cnn(case: str, rng) -> tuple[FloatModel, dict]:
    """Float model and configuration of one RTL case."""
    base = {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>", "result": "fixed<10,4,RND,SAT>"}
    if case == "conv2d_k1_valid_max_k3_same_r1":
        conv = Conv("conv", rng.normal(size=(2, 1, 1, 1)), rng.normal(size=2), (1, 5, 5), (1, 1), (0, 0, 0, 0))
        pool = Pool("pool", "max", conv.out_shape, (2, 2), (2, 2), (0, 0, 0, 0))
        conv2 = Conv("conv2", rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), pool.out_shape, (1, 1),
                     (1, 1, 1, 1))
        layers = [conv, Activation("relu", "relu", conv.n_out), pool, conv2]
        cfg = {"input": "fixed<7,3,RND,SAT>", "default": {**base, "reuse_factor": 1}}
    elif case == "conv2d_k2_s2_explicit_avg_r2":
        conv = Conv("conv", rng.normal(size=(3, 2, 2, 2)), rng.normal(size=3), (2, 6, 5), (2, 2), (0, 1, 1, 0))
        pool = Pool("pool", "avg", conv.out_shape, (2, 2), (1, 1), (1, 1, 0, 0), count_include_pad=True)
        layers = [conv, pool]
        cfg = {"input": "ufixed<6,2,TRN,SAT>", "default": {**base, "reuse_factor": 2},
               "layers": {"pool": {"weight": "ufixed<4,0,RND,SAT>", "result": "fixed<10,4,RND_CONV,WRAP>"}}}
    elif case == "conv1d_3ch_k3_s2_max_avg_full":
        conv = Conv("conv", rng.normal(size=(2, 3, 3)), rng.normal(size=2), (3, 9), (2,), (1, 1))
        pool = Pool("pool", "max", conv.out_shape, (3,), (1,), (1, 1))
        avg = Pool("avg", "avg", pool.out_shape, (3,), (2,), (0, 0))
        dense = Dense("dense", rng.normal(size=(avg.n_out, 3)), rng.normal(size=3))
        layers = [conv, pool, Activation("relu", "relu", pool.n_out), avg, dense]
        cfg = {"input": "fixed<6,2,RND,SAT>", "default": {**base, "reuse_factor": 3},
               "layers": {"pool": {"result": "fixed<6,2,TRN,SAT>"}, "avg": {"weight": "fixed<8,1,RND,SAT>"},
                          "dense": {"reuse_factor": "full"}}}
    else:  # pragma: no cover
        raise AssertionError(case)
    return FloatModel(case, prod(layers[0].in_shape), layers, input_shape=layers[0].in_shape), cfg


RTL_CASES = ["conv2d_k1_valid_max_k3_same_r1", "conv2d_k2_s2_explicit_avg_r2", "conv1d_3ch_k3_s2_max_avg_full"]


@pytest.mark.sim
@pytest.mark.parametrize("case,simulator", on_simulators(RTL_CASES, verilator=("conv2d_k2_s2_explicit_avg_r2",)))
def test_cnn_rtl_equals_golden(case, simulator, tmp_path):
    rng = np.random.default_rng(sum(map(ord, case)))
    fm, cfg = _cnn(case, rng)
    q = apply_config(fm, cfg)
    outdir = tmp_path / "core"
    manifest = save_build(q, outdir)
    assert lint_build(outdir) == []   # Verilator -Wall, only the listed waivers
    assert manifest["input"]["shape"] == list(fm.input_shape)
    assert manifest["input"]["layout"] == ("NCHW flattened C,H,W" if len(fm.input_shape) == 3
                                           else "NCL flattened C,L")
    assert manifest["ii"] == max(getattr(layer, "reuse_factor", 1) for layer in q.layers)
    assert manifest["layers"][0]["out_shape"] == list(fm.layers[0].out_shape)
    x = edge_codes(q.input_type, q.n_in, 40, seed=len(case))
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


@pytest.mark.sim
@pytest.mark.long   # make test runs the same model streamed on Icarus (test_stream.py)
def test_econt_encoder_on_verilator(tmp_path):
    q = apply_config(load_model(ECONT), str(ROOT / "models" / "econt_encoder.yaml"))
    outdir = tmp_path / "core"
    manifest = save_build(q, outdir)
    assert lint_build(outdir) == []
    assert manifest["kind"] == "cnn" and manifest["input"]["shape"] == [1, 8, 8]
    conv = manifest["layers"][0]
    assert conv["op"] == "conv" and conv["out_shape"] == [8, 4, 4] and conv["pads"] == [0, 0, 1, 1]
    assert conv["weight"].startswith("fixed<6,")
    assert manifest["multipliers"] == sum(layer.multipliers for layer in q.layers if hasattr(layer, "multipliers"))
    x = edge_codes(q.input_type, q.n_in, 60, seed=2)
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator="verilator", expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


def test_maxpool_component_in_amaranth_simulator():
    """The comparator trees alone: latency 1 and the golden model's codes,
    with a narrowing cast after the max."""
    from amaranth.sim import Simulator

    from rtlgen.hw.pool import MaxPoolLayer
    layer = QMaxPool("mp", parse_type("fixed<7,3,TRN,WRAP>"), parse_type("fixed<5,2,RND,SAT>"),
                     (2, 5, 4), (3, 2), (2, 1), (1, 0, 1, 1))
    q = QModel("mp", layer.in_type, layer.n_in, [layer], (2, 5, 4))
    rng = np.random.default_rng(9)
    x = rng.integers(-64, 64, size=(20, layer.n_in))
    x[0], x[1] = -64, 63
    expected = predict_codes(q, x)
    dut = MaxPoolLayer(layer)
    got, seen = [], []

    async def bench(ctx):
        for k in range(len(x) + 2):
            ctx.set(dut.i.valid, k < len(x))
            if k < len(x):
                ctx.set(dut.i.payload, [int(v) for v in x[k]])
            await ctx.tick()
            if ctx.get(dut.o.valid):
                seen.append(k)             # one cycle of latency: the output of input k
                got.append([int(v) for v in ctx.get(dut.o.payload)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == list(range(len(x))) and dut.latency == 1
    assert np.array_equal(np.array(got), expected)


@pytest.mark.sim
def test_folded_pads_rtl_equals_golden_on_icarus(tmp_path):
    """Zero Pads folded into a Conv and an AveragePool: the core follows the golden model."""
    rng = np.random.default_rng(21)
    inits = {"w": rng.normal(size=(2, 1, 3, 3)), "b": rng.normal(size=2), "wg": rng.normal(size=(3, 2 * 2 * 4)),
             "bg": rng.normal(size=3)}
    graph = _graph([
        helper.make_node("Pad", ["x", "p1"], ["xp"], name="pad_in"),
        helper.make_node("Conv", ["xp", "w", "b"], ["c"], name="conv", strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Pad", ["r", "p2"], ["rp"], name="pad_pool"),
        helper.make_node("AveragePool", ["rp"], ["a"], name="pool", kernel_shape=[2, 2], strides=[2, 1]),
        helper.make_node("Flatten", ["a"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="fc", transB=1),
    ], [1, 6, 5], [3], inits)
    graph.graph.initializer.extend([numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 1, 2], np.int64), "p1"),
                                    numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 1, 1], np.int64), "p2")])
    fm = load_model(graph)
    conv, pool = fm.layers[0], fm.layers[2]
    assert conv.pads == (1, 0, 1, 2) and conv.out_shape == (2, 3, 3)
    assert pool.pads == (0, 1, 1, 1) and pool.count_include_pad and pool.out_shape == (2, 2, 4)
    q = apply_config(fm, CFG)
    outdir = tmp_path / "core"
    manifest = save_build(q, outdir)
    assert manifest["layers"][0]["pads"] == [1, 0, 1, 2]
    x = edge_codes(q.input_type, q.n_in, 40, seed=21)
    expected = predict_codes(q, x)
    got = run_sim(outdir, x, simulator="icarus", expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


def test_cicada_encoder_example_shapes_and_parallel_multipliers():
    """The CICADA-style example: layer shapes, its configuration keys name its
    nodes, and (all layers parallel) one multiplier per nonzero weight per window."""
    path = ROOT / "models" / "cicada_encoder.onnx"
    cfg = yaml.safe_load((ROOT / "models" / "cicada_encoder.yaml").read_text())
    fm = load_model(path)
    assert fm.input_shape == (1, 18, 14)
    assert [(type(layer).__name__, getattr(layer, "out_shape", None)) for layer in fm.layers] == [
        ("Conv", (4, 17, 13)), ("Activation", None), ("Conv", (8, 5, 4)), ("Activation", None),
        ("Dense", None), ("Activation", None), ("Dense", None)]
    assert fm.layers[0].kernel == (2, 2) and fm.layers[0].stride == (1, 1) and not any(fm.layers[0].pads)
    assert fm.layers[4].n_in == 160 and fm.layers[4].n_out == 16 and fm.layers[6].n_out == 1
    names = [layer.name for layer in fm.layers]
    assert set(cfg["layers"]) <= set(names)
    assert [name for name, over in cfg["layers"].items() if over.get("io") == "stream"] == names[0:3:2]
    parallel = {**cfg, "layers": {k: {kk: vv for kk, vv in v.items() if kk != "io"} for k, v in cfg["layers"].items()},
                "default": {**cfg["default"], "arithmetic": "multipliers"}}
    q = apply_config(fm, parallel)
    expected = 0
    for layer in fm.layers:
        if isinstance(layer, (Conv, Dense)):
            over = {**cfg["default"], **cfg["layers"].get(layer.name, {})}
            nonzero = int(np.count_nonzero(quantize(layer.weight, parse_type(over["weight"]))))
            expected += nonzero * (prod(layer.out_shape[1:]) if isinstance(layer, Conv) else 1)
    assert sum(getattr(layer, "multipliers", 0) for layer in q.layers) == expected
    dense_part = sum(layer.multipliers for layer in q.layers if type(layer).__name__ == "QDense")
    assert dense_part <= 3000
