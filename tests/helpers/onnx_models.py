"""Small ONNX models written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def matmul_mlp(path, n_out: int, seed: int, name: str = "mlp") -> Path:
    """A 4 -> 3 -> ``n_out`` MatMul+Add MLP with a ReLU between, every weight nonzero
    (magnitudes 0.3 to 0.9, seeded signs), biases 0.25 and -0.25; graph ``name``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.uniform(0.3, 0.9, (4, 3)) * rng.choice([-1, 1], (4, 3))).astype(np.float32)
    w2 = (rng.uniform(0.3, 0.9, (3, n_out)) * rng.choice([-1, 1], (3, n_out))).astype(np.float32)
    b1, b2 = np.full(3, 0.25, np.float32), np.full(n_out, -0.25, np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_add"),
             helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
             helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
             helper.make_node("Add", ["h3", "b2"], ["y"], name="fc2_add")]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return Path(path)
