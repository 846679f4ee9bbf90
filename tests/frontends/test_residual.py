"""Residual adds and concatenations: ONNX import as a DAG of layers, the golden model against
onnxruntime and the QONNX executor, configuration and one-line errors."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers.cli import assert_one_line_error, run_cli, write_config
from helpers.qonnx_models import QonnxGraph, qonnx_reference
from helpers.residual_models import dyadic, onnxruntime_outputs, residual_cnn, residual_mlp
from rtlgen.errors import RtlgenError
from rtlgen.frontends import load_model
from rtlgen.golden.network import predict_codes, predict_trace, quantize_inputs
from rtlgen.ir.config import apply_config
from rtlgen.ir.merge import QMerge
from rtlgen.ir.model import QModel
from rtlgen.numerics.fixed import parse_type, to_float

EXACT = {"input": "fixed<8,4,RND,SAT>", "default": {"weight": "fixed<8,4>", "bias": "fixed<8,4>"}}


def golden_floats(qmodel, x):
    codes = predict_codes(qmodel, quantize_inputs(qmodel, np.asarray(x, dtype=np.float64).reshape(len(x), -1)))
    return to_float(codes, qmodel.output_type)


def test_residual_mlp_is_a_dag_equal_to_onnxruntime(tmp_path):
    path = residual_mlp(tmp_path / "res.onnx")
    model = load_model(path)
    assert [layer.name for layer in model.layers] == ["fc1", "relu1", "fc2", "skip_add", "relu2", "concat", "fc3"]
    assert model.sources == [(-1,), (0,), (1,), (2, -1), (3,), (4, 1), (5,)]
    qmodel = apply_config(model, EXACT)          # no result types: every layer exact
    add, cat = qmodel.layers[3], qmodel.layers[5]
    assert add.op == "add" and add.in_types == (qmodel.layers[2].result_type, qmodel.input_type)
    assert cat.op == "concat" and cat.sizes == (6, 6) and qmodel.layers[6].n_in == 12
    rng = np.random.default_rng(1)
    t = qmodel.input_type
    x = np.vstack([np.full((1, 6), float(t.max_value)), np.full((1, 6), float(t.min_value)),
                   rng.integers(t.min_code, t.max_code + 1, (200, 6)) / 16])
    assert np.array_equal(golden_floats(qmodel, x), onnxruntime_outputs(path, x))


def test_residual_cnn_equal_to_onnxruntime(tmp_path):
    path = residual_cnn(tmp_path / "res.onnx")
    model = load_model(path)
    kinds = [getattr(layer, "kind", type(layer).__name__) for layer in model.layers]
    assert kinds == ["Conv", "relu", "Conv", "add", "Conv", "concat", "Dense"]
    assert model.sources == [(-1,), (0,), (1,), (2, 1), (-1,), (3, 4), (5,)]
    assert model.layers[5].shape == (5, 4, 4)
    qmodel = apply_config(model, EXACT)
    rng = np.random.default_rng(2)
    x = rng.integers(-32, 32, (40, 2, 4, 4)) / 16
    assert np.array_equal(golden_floats(qmodel, x), onnxruntime_outputs(path, x))


def test_rounding_and_saturation_at_the_merges(tmp_path):
    """Result types narrower than the exact sum: the add rounds and saturates once, after the
    exact sum; the concat casts each input (golden against a direct numpy evaluation)."""
    model = load_model(residual_mlp(tmp_path / "res.onnx"))
    cfg = {**EXACT, "layers": {"skip_add": {"result": "fixed<6,3,RND_CONV,SAT_SYM>"},
                               "concat": {"result": "ufixed<5,3,RND,SAT>"}}}
    qmodel = apply_config(model, cfg)
    add = qmodel.layers[3]
    assert add.result_type == parse_type("fixed<6,3,RND_CONV,SAT_SYM>")
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (300, 6))
    fc2 = predict_codes(QModel("p", qmodel.input_type, 6, qmodel.layers[:3]), x)
    # x + fc2 in real values, rounded half to even at 2^-3, saturated symmetrically to +-31
    exact = fc2 * 2.0 ** -add.in_types[0].frac + x * 2.0 ** -4
    want = np.clip(np.round(exact * 8), -31, 31).astype(np.int64)
    trace = predict_trace(qmodel, x)
    assert np.array_equal(trace[3], want)
    relu2, relu1 = trace[4], trace[1]
    def cast(codes, frac):   # ufixed<5,3,RND,SAT>: 2 fraction bits, half up, 0..31
        return np.clip(np.floor(codes * 2.0 ** (2 - frac) + 0.5), 0, 31).astype(np.int64)
    assert np.array_equal(trace[5], np.hstack([cast(relu2, add.result_type.frac),
                                                 cast(relu1, qmodel.layers[1].result_type.frac)]))


def qonnx_residual(tmp_path, rounding="ROUND"):
    """Quant(x) -> Gemm -> Relu -> Quant(a, 2^-2) -> Gemm -> Quant(2^-3) -> Add(+a) -> Quant(2^-1, 6 bits)
    -> Concat(with Quant(x)) -> MatMul -> Quant."""
    rng = np.random.default_rng(7)
    g = QonnxGraph((5,))
    xq = g.quant(2.0 ** -3, 7, rounding=rounding)
    w1 = g.quant_of(g.const(rng.normal(0, 0.6, (5, 5))), 2.0 ** -3, 5, rounding=rounding)
    g.op("Gemm", w1, g.const(np.zeros(5)))
    g.op("Relu")
    a = g.quant(2.0 ** -2, 6, signed=0, rounding=rounding)
    w2 = g.quant_of(g.const(rng.normal(0, 0.6, (5, 5))), 2.0 ** -3, 5, rounding=rounding)
    g.op("MatMul", w2)
    h = g.quant(2.0 ** -3, 8, rounding=rounding)
    g.join("Add", h, a)
    s = g.quant(2.0 ** -1, 6, rounding=rounding)
    g.join("Concat", s, xq, axis=1)
    w3 = g.quant_of(g.const(rng.normal(0, 0.6, (10, 3))), 2.0 ** -4, 6, rounding=rounding)
    g.op("MatMul", w3)
    g.quant(2.0 ** -2, 9, rounding=rounding)
    return g.save(tmp_path / "qres.onnx", 3)


@pytest.mark.parametrize("rounding", ["ROUND", "FLOOR", "HALF_UP"])
def test_qonnx_residual_matches_the_qonnx_executor(tmp_path, rounding):
    path = qonnx_residual(tmp_path, rounding)
    qmodel = apply_config(load_model(path))           # every type from the model's quantizers
    add = next(layer for layer in qmodel.layers if layer.op == "add")
    assert str(add.result_type).startswith("fixed<6,5")
    rng = np.random.default_rng(8)
    step = 2.0 ** -3
    ties = (np.arange(-40, 40) + 0.5) * step
    x = np.vstack([np.resize(np.roll(ties, k), 5) for k in range(0, 80, 3)] +
                  [np.full((1, 5), 9.0), np.full((1, 5), -9.0), rng.uniform(-9, 9, (150, 5))]).astype(np.float32)
    assert np.array_equal(golden_floats(qmodel, x), qonnx_reference(path, x))


def test_torch_exports_read_as_dags(tmp_path):
    """A residual block with a concatenation, exported by both PyTorch exporters."""
    torch = pytest.importorskip("torch")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.out = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(8, 2)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            return self.out(torch.cat([self.fc2(h) + x, h], dim=1))

    torch.manual_seed(0)
    block = Block().eval()
    for dynamo in (False, True):
        path = tmp_path / f"block_{dynamo}.onnx"
        torch.onnx.export(block, (torch.zeros(1, 4),), str(path), dynamo=dynamo, input_names=["x"],
                          output_names=["y"])
        model = load_model(path)
        kinds = [getattr(layer, "kind", "dense") for layer in model.layers]
        assert kinds == ["dense", "relu", "dense", "add", "concat", "dense"], (dynamo, kinds)
        assert model.sources == [(-1,), (0,), (1,), (2, -1), (3, 1), (4,)]
        qmodel = apply_config(model, {"input": "fixed<12,4>", "default": {"weight": "fixed<16,2,RND>",
                                                                          "bias": "fixed<16,2,RND>"}})
        x = np.random.default_rng(0).integers(-2048, 2048, (20, 4)) / 256
        with torch.no_grad():
            ref = block(torch.tensor(x, dtype=torch.float32)).numpy()
        assert np.allclose(golden_floats(qmodel, x), ref, atol=2e-3)


def test_serialized_dag_round_trips(tmp_path):
    qmodel = apply_config(load_model(residual_mlp(tmp_path / "res.onnx")), EXACT)
    again = QModel.from_dict(json.loads(json.dumps(qmodel.to_dict())))
    assert again.sources == qmodel.sources and isinstance(again.layers[3], QMerge)
    x = np.random.default_rng(0).integers(-128, 128, (50, 6))
    assert np.array_equal(predict_codes(again, x), predict_codes(qmodel, x))
    chain = apply_config(load_model(residual_mlp(tmp_path / "r2.onnx")), EXACT)
    chain = QModel(chain.name, chain.input_type, 6, chain.layers[:2])
    assert "sources" not in chain.to_dict()


def _graph(nodes, in_shape, out_shape, inits, path):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *in_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, *out_shape])],
                              [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
                               for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _conv(name, x, k, y):
    return helper.make_node("Conv", [x, k], [y], name=name, pads=[1, 1, 1, 1])


BAD = {
    # a graph, its config (None: the model is enough), the expected one-line error
    "concat_axis": (lambda rng: ([_conv("c1", "x", "k", "a"), helper.make_node("Concat", ["a", "x"], ["y"],
                                                                              name="cat", axis=2)],
                                 [2, 4, 4], [2, 8, 4], {"k": dyadic(rng, (2, 2, 3, 3))}),
                    r"'cat' \(Concat\): Concat along axis 2 is not supported; only the channel"),
    "mul_branches": (lambda rng: ([helper.make_node("Gemm", ["x", "w"], ["h"], name="fc"),
                                   helper.make_node("Mul", ["h", "x"], ["y"], name="gate")],
                                  [4], [4], {"w": dyadic(rng, (4, 4))}),
                     r"'gate' \(Mul\) combines the data path with other computed tensors.*only in an Add or a Concat"),
    "add_shapes": (lambda rng: ([helper.make_node("Gemm", ["x", "w"], ["h"], name="fc"),
                                 helper.make_node("Add", ["h", "x"], ["y"], name="plus")],
                                [4], [3], {"w": dyadic(rng, (4, 3))}),
                   r"'plus' \(Add\) adds tensors of shapes \[3\] and \[4\]"),
    "shared_bias": (lambda rng: ([helper.make_node("Gemm", ["x", "w"], ["h"], name="fc"),
                                  helper.make_node("Add", ["h", "c"], ["a"], name="bias"),
                                  helper.make_node("Add", ["a", "h"], ["y"], name="plus")],
                                 [4], [4], {"w": dyadic(rng, (4, 4)), "c": dyadic(rng, 4)}),
                    r"'bias' \(Add\): adds a constant to a tensor that also feeds other nodes"),
    "dead_branch": (lambda rng: ([helper.make_node("Relu", ["x"], ["unused"], name="lost"),
                                  helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")],
                                 [4], [3], {"w": dyadic(rng, (4, 3))}),
                    r"data path stops at node 'lost' \(Relu\).*does not lead to the graph output"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unsupported_graphs_are_one_line_errors(tmp_path, case):
    make, pattern = BAD[case]
    nodes, in_shape, out_shape, inits = make(np.random.default_rng(0))
    path = _graph(nodes, in_shape, out_shape, inits, tmp_path / "m.onnx")
    cfg = write_config(tmp_path / "c.yaml", EXACT)
    res = run_cli("build", path, "-c", cfg, "-o", tmp_path / "out")
    assert res.returncode == 2
    assert_one_line_error(res)
    assert re.search(pattern, res.stderr), res.stderr
    assert not (tmp_path / "out").exists()


def test_config_errors_name_the_merge_layer(tmp_path):
    model = load_model(residual_cnn(tmp_path / "res.onnx"))
    with pytest.raises(RtlgenError, match=r"config for layer 'skip_add': key\(s\) \['reuse_factor'\] do not apply.*allowed: \['result'\]"):
        apply_config(model, {**EXACT, "layers": {"skip_add": {"reuse_factor": 2}}})
    with pytest.raises(RtlgenError, match="io: stream builds a chain of layers.*residual adds or "
                                          "concatenations: use io: parallel"):
        apply_config(model, {**EXACT, "layers": {"conv1": {"io": "stream"}}})


def test_quantizer_on_a_shared_tensor_is_a_layer_of_its_own(tmp_path):
    """A quantizer on one branch (behind an Identity) must not round the tensor the other branch
    reads: it becomes a linear layer, and the layer before it keeps its exact result."""
    rng = np.random.default_rng(5)
    g = QonnxGraph((4,))
    x = g.quant(2.0 ** -3, 7)
    w = g.quant_of(g.const(rng.normal(0, 0.6, (4, 4))), 2.0 ** -3, 5)
    h = g.op("MatMul", w, name="fc")
    g.op("Identity")
    q = g.quant(2.0 ** -1, 4, rounding="FLOOR")
    g.join("Add", q, h)
    g.join("Concat", g.cur, x, axis=1)
    g.quant(2.0 ** -6, 12)
    path = g.save(tmp_path / "shared.onnx", 8)
    model = load_model(path)
    assert [getattr(layer, "kind", "dense") for layer in model.layers] == ["dense", "linear", "add", "concat"]
    assert "result" not in model.layers[0].types and model.sources == [(-1,), (0,), (1, 0), (2, -1)]
    qmodel = apply_config(model)
    x = np.vstack([rng.uniform(-9, 9, (200, 4)), np.full((1, 4), 9.0), np.full((1, 4), -9.0)]).astype(np.float32)
    assert np.array_equal(golden_floats(qmodel, x), qonnx_reference(path, x))
