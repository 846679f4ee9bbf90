"""Quantization-aware models (QONNX, ONNX Q/DQ, Brevitas): the types come from the model, and
rtlgen's golden model and RTL equal the QONNX reference executor bit for bit."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import yaml

from helpers.cli import assert_one_line_error, run_cli
from helpers.qonnx_models import QonnxGraph, brevitas_cnn, brevitas_mlp, brevitas_residual, qonnx_reference
from helpers.sims import long_marked, on_simulators
from rtlgen.errors import RtlgenError
from rtlgen.frontends import load_model
from rtlgen.golden.network import predict_codes, quantize_inputs
from rtlgen.ir.config import apply_config
from rtlgen.numerics.fixed import to_float

ROUNDINGS = ("ROUND", "FLOOR", "DOWN", "HALF_UP", "HALF_DOWN")


def golden_floats(qmodel, x: np.ndarray) -> np.ndarray:
    codes = predict_codes(qmodel, quantize_inputs(qmodel, np.asarray(x, dtype=np.float64).reshape(len(x), -1)))
    return to_float(codes, qmodel.output_type)


def edge_inputs(n_in: int, step: float, lo: float, hi: float, rng, n_random: int = 96) -> np.ndarray:
    """Rounding ties (odd and even neighbours, both signs), values at and beyond the saturation
    bounds, and random values, in float32 (what the QONNX executor computes in)."""
    ties = (np.arange(-12, 12) + 0.5) * step
    special = np.concatenate([ties, [lo, hi, lo - step, hi + step, 2 * lo, 2 * hi, 0.0, -0.0, step / 4]])
    rows = [np.resize(np.roll(special, k), n_in) for k in range(len(special))]
    rows.append(rng.uniform(2 * lo, 2 * hi, (n_random, n_in)))
    return np.vstack(rows).astype(np.float32)


def dense_chain(rng, rounding: str, signed: int, narrow: int, n_in=5, n_out=4) -> QonnxGraph:
    """input Quant -> Gemm (Quant weights and bias) -> Relu -> Quant -> MatMul (Quant weights) -> Quant."""
    g = QonnxGraph((n_in,))
    g.quant(2.0 ** -3, 6, signed=1, narrow=narrow, rounding=rounding)
    w = g.quant_of(g.const(rng.normal(0, 0.5, (n_in, n_out))), 2.0 ** -4, 5, signed=1, narrow=narrow,
                   rounding=rounding)
    b = g.quant_of(g.const(rng.normal(0, 0.5, n_out)), 2.0 ** -7, 12, rounding=rounding)
    g.op("Gemm", w, b)
    g.op("Relu")
    g.quant(2.0 ** -2, 5, signed=signed, narrow=narrow, rounding=rounding)
    w2 = g.quant_of(g.const(rng.normal(0, 0.5, (n_out, 3))), 2.0 ** -3, 4, signed=1, rounding=rounding)
    g.op("MatMul", w2)
    g.quant(2.0 ** -2, 7, signed=1, narrow=narrow, rounding=rounding)
    return g


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("signed,narrow", [(1, 0), (1, 1), (0, 0)])
def test_quant_nodes_match_the_qonnx_executor(tmp_path, rounding, signed, narrow):
    rng = np.random.default_rng(len(rounding) * 7 + signed * 3 + narrow)
    path = dense_chain(rng, rounding, signed, narrow).save(tmp_path / "m.onnx", 3)
    qmodel = apply_config(load_model(path))
    assert qmodel.input_type.width == 6 and qmodel.input_type.frac == 3
    x = edge_inputs(5, 2.0 ** -3, -4.0, 3.875, rng)
    ref = qonnx_reference(path, x)
    assert np.array_equal(golden_floats(qmodel, x), ref)


def test_model_types_and_config_overrides(tmp_path):
    rng = np.random.default_rng(3)
    path = dense_chain(rng, "ROUND", 0, 0).save(tmp_path / "m.onnx", 3)
    model = load_model(path)
    q = apply_config(model)
    gemm, relu = q.layers[0], q.layers[1]
    assert str(q.input_type) == "fixed<6,3,RND_CONV,SAT>"
    assert str(gemm.weight_type) == "fixed<5,1,RND_CONV,SAT>"
    assert str(gemm.bias_type) == "fixed<12,5,RND_CONV,SAT>"
    # no quantizer between the Gemm and the Relu: its result is exact (wide enough, fraction 7)
    assert gemm.result_type.frac == 7 and str(relu.result_type) == "ufixed<5,3,RND_CONV,SAT>"
    # a layers entry overrides the model, a default entry does not
    cfg = {"default": {"weight": "fixed<3,1>"}, "layers": {gemm.name: {"reuse_factor": 2, "result": "fixed<10,4>"}}}
    q2 = apply_config(model, cfg)
    assert q2.layers[0].weight_type == gemm.weight_type
    assert str(q2.layers[0].result_type) == "fixed<10,4,TRN,WRAP>" and q2.layers[0].reuse_factor == 2


def test_per_channel_bipolar_trunc_and_qdq(tmp_path):
    rng = np.random.default_rng(11)
    g = QonnxGraph((6,))
    # ONNX QuantizeLinear/DequantizeLinear pair on the input (int8, scale 2^-4)
    scale = g.const(np.float32(2.0 ** -4))
    zp = g.const(np.int8(0), dtype=np.int8)
    g.op("QuantizeLinear", scale, zp)
    g.op("DequantizeLinear", scale, zp)
    # per-channel power-of-two weight scales
    w = g.quant_of(g.const(rng.normal(0, 1, (6, 4))), np.array([[2.0 ** -2, 2.0 ** -4, 2.0 ** -3, 1.0]]), 6)
    g.op("MatMul", w)
    g.quant(2.0 ** -3, 10)
    # binary weights, then a Trunc (with an output scale) dropping 3 bits
    bq = f"bq{len(g.nodes)}"
    from onnx import helper
    g.nodes.append(helper.make_node("BipolarQuant", [g.const(rng.normal(0, 1, (4, 3))), g.const(0.5)], [bq],
                                    domain="qonnx.custom_op.general", name="Bipolar_w"))
    g.op("MatMul", bq)
    g.op("Trunc", g.const(2.0 ** -4), g.const(0.0), g.const(16.0), g.const(2.0 ** -1), g.const(8.0),
         domain="qonnx.custom_op.general", rounding_mode="FLOOR", signed=1, narrow=0)
    # integer weights behind a DequantizeLinear (per-axis scales)
    wq = rng.integers(-8, 8, (3, 2)).astype(np.int8)
    dq = f"dq{len(g.nodes)}"
    g.nodes.append(helper.make_node("DequantizeLinear", [g.const(wq, dtype=np.int8),
                                                         g.const(np.array([0.25, 0.125], np.float32))], [dq],
                                    name="DQ_w", axis=1))
    g.op("MatMul", dq)
    path = g.save(tmp_path / "m.onnx", 2)
    qmodel = apply_config(load_model(path))
    assert str(qmodel.input_type) == "fixed<8,4,RND_CONV,SAT>"
    assert [str(layer.weight_type) for layer in qmodel.layers if layer.op == "dense"] == [
        # per channel 2^-2..2^0 at 6 bits: the finest scale's fraction (4), the coarsest's integer bits (6);
        # +-0.5: codes +-1 of 2 bits; int8 with per-axis scales 2^-2, 2^-3
        "fixed<10,6,RND_CONV,SAT>", "fixed<2,1,TRN,WRAP>", "fixed<9,6,RND_CONV,SAT>"]
    x = edge_inputs(6, 2.0 ** -4, -8.0, 7.9375, rng)
    assert np.array_equal(golden_floats(qmodel, x), qonnx_reference(path, x))


BAD = {
    "scale": (dict(scale=0.1), "scale 0.1 is not a power of two"),
    "zero point": (dict(zeropt=3.0), "zero point [3.0] is not 0"),
    "ceil": (dict(rounding="CEIL"), "rounding mode 'CEIL' has no fixed-point equivalent"),
    "unsigned narrow": (dict(signed=0, narrow=1), "unsigned narrow range"),
    "sign": (dict(bits=1), "a sign quantizer"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unsupported_quantizers_are_one_line_errors(tmp_path, case):
    kw, message = BAD[case]
    kw = dict(kw)
    g = QonnxGraph((3,))
    g.quant(kw.pop("scale", 0.25), kw.pop("bits", 6), **kw)
    g.op("MatMul", g.const(np.ones((3, 2))))
    path = g.save(tmp_path / "m.onnx", 2)
    res = run_cli("build", path, "-o", tmp_path / "out")
    line = assert_one_line_error(res)
    assert message in line and "node 'Quant_" in line
    assert not (tmp_path / "out").exists()


def test_unquantized_bias_and_unquantized_input(tmp_path):
    rng = np.random.default_rng(2)
    g = QonnxGraph((3,))
    g.quant(0.25, 6)
    w = g.quant_of(g.const(rng.normal(0, 1, (3, 2))), 0.125, 6)
    g.op("Gemm", w, g.const(np.array([0.1, -0.3])), name="fc")
    path = g.save(tmp_path / "m.onnx", 2)
    with pytest.raises(RtlgenError, match=r"layer 'fc': the model quantizes the weights but not the bias"):
        apply_config(load_model(path))
    assert apply_config(load_model(path), {"layers": {"fc": {"bias": "fixed<8,2,RND,SAT>"}}}).layers[0].bias_type.width == 8
    plain = QonnxGraph((3,))
    plain.op("MatMul", plain.const(np.ones((3, 2))))
    path = plain.save(tmp_path / "float.onnx", 2)
    res = run_cli("build", path, "-o", tmp_path / "out")
    assert "missing 'input'" in assert_one_line_error(res)
    # sweep takes a model without -c too, and says the same of a model that cannot do without one
    res = run_cli("sweep", path, "-o", tmp_path / "sweep", "--reuse", "1")
    assert "missing 'input'" in assert_one_line_error(res)
    assert not (tmp_path / "sweep").exists()


# -- Brevitas models, trained briefly here, through the CLI and the RTL -------------------------

BREVITAS = {"mlp": (brevitas_mlp, (8,)), "cnn": (brevitas_cnn, (2, 6, 6)), "residual": (brevitas_residual, (8,))}
#: exported and trained in make test-long only (half a minute each); the CNN and residual QONNX paths
#: are in make test through the shipped cicada model and the QONNX residual graphs of test_residual.py
BREVITAS_LONG = ("cnn", "residual")


@pytest.fixture(scope="module")
def brevitas_builds(tmp_path_factory):
    """Each Brevitas model exported to QONNX and built with ``rtlgen build`` (no types in a config:
    only the MLP's batch norm, whose float statistics no quantizer covers, is given its types).

    Made once per test session, each model when a test first asks for it: the pytest-xdist workers
    share the folder (the first one builds a model, under that model's lock; the others read)."""
    root = tmp_path_factory.getbasetemp().parent / "brevitas_models"
    root.mkdir(exist_ok=True)
    return _BrevitasBuilds(root)


class _BrevitasBuilds:
    def __init__(self, root):
        self.root = root

    def __getitem__(self, name):
        import fcntl
        root = self.root
        with open(root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (root / f"{name}.done").exists():
                _make_brevitas_build(root, name)
                (root / f"{name}.done").write_text("")
        return (root / f"{name}.onnx", root / f"{name}_build", root / f"{name}_x.npy",
                np.load(root / f"{name}_ref.npy"))


def _make_brevitas_build(root, name):
    make, shape = BREVITAS[name]
    path = make(root / f"{name}.onnx")
    args = ["build", path, "-o", root / f"{name}_build"]
    bn = [layer.name for layer in load_model(path).layers if "batch_norm" in layer.name]
    if bn:
        cfg = root / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"layers": {bn[0]: {"weight": "fixed<10,4>", "bias": "fixed<10,4>"}}}))
        args += ["-c", cfg]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal((48,) + shape) * 3,
                        np.full((1,) + shape, 100.0), np.full((1,) + shape, -100.0)]).astype(np.float32)
    np.save(root / f"{name}_x.npy", x.reshape(len(x), -1))
    np.save(root / f"{name}_ref.npy", qonnx_reference(path, x))


@pytest.mark.parametrize("name", long_marked(sorted(BREVITAS), BREVITAS_LONG))
def test_brevitas_predict_equals_qonnx_executor(brevitas_builds, tmp_path, name):
    path, build, xfile, ref = brevitas_builds[name]
    res = run_cli("predict", build, xfile, "-o", tmp_path / "y.npy")
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "y.npy").reshape(ref.shape), ref)


@pytest.mark.sim
@pytest.mark.parametrize("name,simulator", on_simulators(sorted(BREVITAS), long=BREVITAS_LONG))
def test_brevitas_rtl_equals_qonnx_executor(brevitas_builds, tmp_path, name, simulator):
    path, build, xfile, ref = brevitas_builds[name]
    res = run_cli("sim", build, xfile, "-o", tmp_path / "y.npy", "--simulator", simulator)
    assert res.returncode == 0, res.stderr + res.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy").reshape(ref.shape), ref)


def test_shipped_qonnx_model_needs_no_config():
    """models/axol1tl_qonnx.onnx (README): every type from its quantizers; golden == QONNX executor."""
    from helpers.paths import ROOT
    path = ROOT / "models" / "axol1tl_qonnx.onnx"
    qmodel = apply_config(load_model(path))
    # encoder 57-28-15-8, then the score sum(mu**2): a square per element and a sum (dense of ones)
    assert [getattr(layer, "kind", layer.op) for layer in qmodel.layers] == \
        ["dense", "relu"] * 2 + ["dense", "square", "dense"]
    assert all(layer.weight_type.width == 6 for layer in qmodel.layers[:5] if layer.op == "dense")
    assert qmodel.n_out == 1 and qmodel.layers[-1].weights.tolist() == [[1]] * 8
    x = np.concatenate([np.random.default_rng(4).normal(0, 2, (200, 57)), np.full((1, 57), 64.0),
                        np.full((1, 57), -64.0)]).astype(np.float32)
    assert np.array_equal(golden_floats(qmodel, x), qonnx_reference(path, x))


def test_activations_match_the_qonnx_executor(tmp_path):
    """LeakyRelu, PRelu, Clip and Tanh between quantizers: exact slopes and bounds need no config, and
    the tanh table's points fall on the input grid, so every output equals the executor's."""
    rng = np.random.default_rng(0)
    g = QonnxGraph((5,))
    g.quant(2.0 ** -3, 7)
    g.op("MatMul", g.quant_of(g.const(rng.normal(0, .5, (5, 4))), 2.0 ** -4, 6))
    g.op("LeakyRelu", alpha=0.125)
    g.quant(2.0 ** -3, 8)
    g.op("PRelu", g.const(np.array([0.25, -0.5, 0.75, 1.0])))
    g.op("MatMul", g.quant_of(g.const(rng.normal(0, .5, (4, 3))), 2.0 ** -4, 6))
    g.op("Clip", g.const(np.float32(-1.0)), g.const(np.float32(1.5)))
    g.quant(2.0 ** -4, 8)
    g.op("Tanh")
    g.quant(2.0 ** -6, 8)
    path = g.save(tmp_path / "act.onnx", 3)
    qmodel = apply_config(load_model(path))
    assert [getattr(layer, "kind", layer.op) for layer in qmodel.layers] == [
        "dense", "leaky_relu", "prelu", "dense", "clip", "tanh"]
    x = edge_inputs(5, 2.0 ** -3, -8.0, 7.875, rng)
    assert np.array_equal(golden_floats(qmodel, x), qonnx_reference(path, x))
    # a slope that is no short fixed-point number needs its type from the config
    g2 = QonnxGraph((3,))
    g2.quant(0.25, 6)
    g2.op("LeakyRelu", alpha=0.01, name="leaky")
    res = run_cli("build", g2.save(tmp_path / "leaky.onnx", 3), "-o", tmp_path / "out")
    assert "layer 'leaky': the slope 0.01 is not a fixed-point number" in assert_one_line_error(res)


def test_softmax_and_argmax_from_onnx(tmp_path):
    """ONNX Softmax and ArgMax after a quantized layer: the argmax equals the executor's exactly, the
    table softmax is within its table steps of the executor's float softmax."""
    rng = np.random.default_rng(8)
    for op in ("Softmax", "ArgMax"):
        g = QonnxGraph((6,))
        g.quant(2.0 ** -3, 7)
        g.op("MatMul", g.quant_of(g.const(rng.normal(0, .5, (6, 4))), 2.0 ** -4, 6))
        g.quant(2.0 ** -3, 8)
        if op == "Softmax":
            g.op("Softmax", axis=-1, name="soft")
        else:
            g.op("ArgMax", axis=1, keepdims=1, name="arg")
        path = g.save(tmp_path / f"{op}.onnx", 4, onnx.TensorProto.FLOAT) if op == "Softmax" else \
            g.save(tmp_path / f"{op}.onnx", 1, onnx.TensorProto.INT64)
        x = edge_inputs(6, 2.0 ** -3, -8.0, 7.875, rng)
        if op == "Softmax":
            qmodel = apply_config(load_model(path), {"layers": {"soft": {"result": "ufixed<12,0,RND,SAT>"}}})
            assert qmodel.layers[-1].op == "softmax"
            assert np.abs(golden_floats(qmodel, x) - qonnx_reference(path, x)).max() < 0.03
            argmax = apply_config(load_model(path), {"layers": {"soft": {"argmax": True}}})
            assert np.array_equal(golden_floats(argmax, x)[:, 0], np.argmax(qonnx_reference(path, x), axis=1))
        else:
            qmodel = apply_config(load_model(path))
            assert qmodel.layers[-1].op == "argmax" and qmodel.n_out == 1
            assert np.array_equal(golden_floats(qmodel, x), qonnx_reference(path, x))


def _calorimeter_images(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    hot = rng.random((n, 1, 18, 14)) < 0.03
    return (rng.gamma(2.0, 0.6, (n, 1, 18, 14)) + hot * rng.gamma(3.0, 4.0, (n, 1, 18, 14))).astype(np.float32)


def test_shipped_cicada_model_takes_only_its_batch_norm_types_from_the_config():
    """models/cicada_qonnx.onnx: the batch norm's float statistics have no quantizer, so without its
    configuration the build names that layer; with it, every other type is the model's and the score
    is within the batch norm's quantization of the executor's."""
    from helpers.paths import ROOT
    from rtlgen.ir.config import load_config
    path = ROOT / "models" / "cicada_qonnx.onnx"
    with pytest.raises(RtlgenError, match="no 'weight' type for layer 'BN'"):
        apply_config(load_model(path))
    qmodel = apply_config(load_model(path), load_config(ROOT / "models" / "cicada_qonnx.yaml"))
    conv, dense = qmodel.layers[0], qmodel.layers[2]
    assert conv.op == "conv" and conv.weight_type.width == 12 and dense.weight_type.width == 8
    assert str(qmodel.input_type).startswith("ufixed<10,") and qmodel.layers[3].name == "BN"
    x = _calorimeter_images(300)
    got, ref = golden_floats(qmodel, x), qonnx_reference(path, x)
    assert np.abs(got - ref).max() <= 2.0 ** -5 and np.corrcoef(got[:, 0], ref[:, 0])[0, 1] > 0.999


@pytest.mark.sim
@pytest.mark.long
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_shipped_cicada_rtl(tmp_path, simulator):
    from helpers.paths import ROOT
    build = tmp_path / "cicada"
    res = run_cli("build", ROOT / "models" / "cicada_qonnx.onnx", "-c", ROOT / "models" / "cicada_qonnx.yaml",
                  "-o", build)
    assert res.returncode == 0, res.stderr
    np.save(tmp_path / "x.npy", _calorimeter_images(40).reshape(40, -1))
    res = run_cli("sim", build, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--simulator", simulator)
    assert res.returncode == 0 and "0 mismatches" in res.stdout + res.stderr, res.stdout + res.stderr


@pytest.mark.long     # the Brevitas residual model is made in make test-long only (BREVITAS_LONG)
def test_brevitas_residual_reads_as_a_dag(brevitas_builds):
    """The Brevitas residual block: an add of the block and its (quantized) input, a concatenation,
    and every type from the model's quantizers (golden/RTL against the executor above)."""
    path = brevitas_builds["residual"][0]
    model = load_model(path)
    joins = {getattr(layer, "kind", None): model.inputs_of(k) for k, layer in enumerate(model.layers)}
    assert len(joins["add"]) == 2 and len(joins["concat"]) == 2
    qmodel = apply_config(model)
    add = next(layer for layer in qmodel.layers if layer.op == "add")
    assert add.result_type.width == 10 and qmodel.input_type.width == 8


@pytest.mark.parametrize("per_feature", [False, True])
def test_quantized_scale_and_bias_match_the_qonnx_executor(tmp_path, per_feature):
    """A Mul and an Add of quantized constants after a layer (a quantized batch norm, as Brevitas'
    ScaleBias exports it): one per-channel layer whose weight and bias types come from the quantizers."""
    rng = np.random.default_rng(11)
    g = QonnxGraph((4,))
    g.quant(2.0 ** -3, 7)
    w = g.quant_of(g.const(rng.normal(0, 0.6, (4, 5))), 2.0 ** -3, 5)
    g.op("MatMul", w)
    g.quant(2.0 ** -2, 8)
    factor = rng.normal(0, 1, (1, 5) if per_feature else ())
    g.op("Mul", g.quant_of(g.const(factor), 2.0 ** -4, 6), name="scale")
    g.op("Add", g.quant_of(g.const(rng.normal(0, 1, 5)), 2.0 ** -6, 10), name="shift")
    g.quant(2.0 ** -3, 9, rounding="FLOOR")
    path = g.save(tmp_path / "sb.onnx", 5)
    qmodel = apply_config(load_model(path))
    scale = qmodel.layers[-1]
    assert scale.name == "scale" and scale.weight_type.width == 6 and scale.bias_type.width == 10
    assert np.count_nonzero(scale.weights) <= 5    # diagonal
    x = edge_inputs(4, 2.0 ** -3, -8.0, 7.875, rng)
    assert np.array_equal(golden_floats(qmodel, x), qonnx_reference(path, x))


def test_tmr_analysis_takes_a_qonnx_model_without_config(tmp_path):
    from helpers.paths import ROOT
    np.save(tmp_path / "x.npy", np.random.default_rng(1).normal(size=(40, 57)))
    res = run_cli("tmr-analysis", ROOT / "models" / "axol1tl_qonnx.onnx", "-d", tmp_path / "x.npy", "-n", "16",
                  "-o", tmp_path / "sens")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "sens" / "sensitivity.json").read_text())
    assert [entry["name"] for entry in report["layers"]][:3] == ["node_linear", "node_linear_1", "node_linear_2"]
    # a model without quantizers still needs one, and says so
    res = run_cli("tmr-analysis", ROOT / "models" / "jet_mlp.onnx", "-d", tmp_path / "x.npy", "-o", tmp_path / "s2")
    assert "missing 'input'" in assert_one_line_error(res)
