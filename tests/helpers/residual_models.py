"""Residual and concatenating ONNX graphs with dyadic weights, which onnxruntime computes exactly
(the MLP in float64; the CNN in float32, which onnxruntime's Conv needs, with values small enough)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["residual_mlp", "residual_cnn", "onnxruntime_outputs", "dyadic"]


def dyadic(rng, shape, bits: int = 3, scale: int = 4) -> np.ndarray:
    """Random multiples of ``1/scale`` below ``2**bits / scale`` in magnitude."""
    return rng.integers(-(1 << bits) + 1, 1 << bits, shape) / scale


def _save(nodes, inits: dict, in_shape, out_shape, path: Path, name: str, dtype=np.float64) -> Path:
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", elem, [1, *in_shape])],
        [helper.make_tensor_value_info("y", elem, [1, *out_shape])],
        [numpy_helper.from_array(np.asarray(v, dtype=dtype), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def residual_mlp(path: Path, seed: int = 0, n: int = 6) -> Path:
    """x -> fc1 -> relu1 -> fc2 -> add(+x) -> relu2 -> concat(relu2, relu1) -> fc3 (3 outputs)."""
    rng = np.random.default_rng(seed)
    inits = {"w1": dyadic(rng, (n, n)), "b1": dyadic(rng, n), "w2": dyadic(rng, (n, n)), "b2": dyadic(rng, n),
             "w3": dyadic(rng, (2 * n, 3)), "b3": dyadic(rng, 3)}
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="fc2"),
        helper.make_node("Add", ["h2", "x"], ["s"], name="skip_add"),
        helper.make_node("Relu", ["s"], ["a2"], name="relu2"),
        helper.make_node("Concat", ["a2", "a1"], ["c"], name="concat", axis=1),
        helper.make_node("Gemm", ["c", "w3", "b3"], ["y"], name="fc3"),
    ]
    return _save(nodes, inits, [n], [3], path, "residual_mlp")


def residual_cnn(path: Path, seed: int = 0) -> Path:
    """[2, 4, 4] -> conv1 3x3 (3 ch, pad 1) -> relu -> conv2 3x3 (3 ch, pad 1) -> add(+relu) ->
    concat(with conv3 1x1 (2 ch) of x) -> flatten -> fc (3 outputs)."""
    rng = np.random.default_rng(seed)
    inits = {"k1": dyadic(rng, (3, 2, 3, 3), 2), "c1": dyadic(rng, 3), "k2": dyadic(rng, (3, 3, 3, 3), 2),
             "k3": dyadic(rng, (2, 2, 1, 1)), "w": dyadic(rng, (5 * 16, 3), 1), "b": dyadic(rng, 3)}
    nodes = [
        helper.make_node("Conv", ["x", "k1", "c1"], ["h1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Conv", ["a1", "k2"], ["h2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["h2", "a1"], ["s"], name="skip_add"),
        helper.make_node("Conv", ["x", "k3"], ["p"], name="conv3"),
        helper.make_node("Concat", ["s", "p"], ["c"], name="concat", axis=1),
        helper.make_node("Flatten", ["c"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc"),
    ]
    return _save(nodes, inits, [2, 4, 4], [3], path, "residual_cnn", np.float32)


def onnxruntime_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs for the inputs ``x`` ([N, ...]), one sample at a time, as float64."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path))
    dtype = np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32
    x = np.asarray(x, dtype=dtype)
    out = [session.run(None, {"x": x[k:k + 1]})[0] for k in range(len(x))]
    return np.concatenate(out).reshape(len(x), -1).astype(np.float64)
