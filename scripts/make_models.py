#!/usr/bin/env python3
"""Generate the example models and the ONNX test fixtures.

Writes, deterministically (fixed seeds, fixed archive timestamps):

``models/jet_mlp.onnx``, ``models/jet_mlp.yaml``
    a jet-tagging-shaped MLP 16-64-32-32-5 (ReLU between the layers, none
    after the last) exported with PyTorch's TorchScript exporter, its
    smallest 30% of weights in every layer pruned to zero, and an
    hls4ml-style precision configuration.
``tests/fixtures/*.onnx``
    small models written by both PyTorch exporters, graphs built with
    ``onnx.helper`` (extra operators, MatMul+Add, and broken models for the
    error tests), and ``reference.npz`` holding inputs and reference outputs
    (``<fixture>__x``, ``<fixture>__y``) for the loadable models.

Needs ``torch``, ``onnx`` and ``onnxscript`` (for the ``dynamo=True``
exporter); rtlgen itself and its tests only read the files written here.

    python scripts/make_models.py            # from the repository root
"""

from __future__ import annotations

import argparse
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OPSET_TORCHSCRIPT = 13
OPSET_HELPER = 13

JET_CONFIG = """\
# Precision of models/jet_mlp.onnx, in the spirit of the hls4ml jet-tagging
# examples: 9-bit inputs, 8-bit weights and biases, 16-bit layer results.
input: fixed<9,2,RND,SAT>
default:
  weight: fixed<8,3,RND,SAT>
  bias: fixed<8,3,RND,SAT>
  result: fixed<16,6,RND,SAT>
  reuse_factor: 1
# Per-layer overrides are keyed by ONNX node name, for example:
# layers:
#   "/0/Gemm": {reuse_factor: 2}
layers: {}
"""


# ---------------------------------------------------------------------------
# deterministic .npz
# ---------------------------------------------------------------------------

def save_npz(path: Path, arrays: dict) -> None:
    """Like ``np.savez`` but byte-for-byte reproducible (fixed timestamps, sorted keys)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


# ---------------------------------------------------------------------------
# torch models
# ---------------------------------------------------------------------------

def _torch():
    import torch
    return torch


def _prune(module, fraction: float) -> None:
    """Set the smallest ``fraction`` of every Linear layer's weights to zero."""
    torch = _torch()
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear):
            w = layer.weight.data
            k = int(round(fraction * w.numel()))
            if k:
                idx = torch.argsort(w.abs().flatten(), stable=True)[:k]
                w.view(-1)[idx] = 0.0


def jet_mlp():
    """16-64-32-32-5 MLP with He-normal weights, small biases, 30% pruned."""
    torch = _torch()
    torch.manual_seed(2024)
    sizes = [16, 64, 32, 32, 5]
    mods = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.normal_(0.0, (2.0 / a) ** 0.5)
            lin.bias.uniform_(-0.25, 0.25)
        mods.append(lin)
        if k < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods).eval()
    _prune(model, 0.30)
    return model


def tiny_mlp():
    torch = _torch()
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).eval()


def flatten_identity_mlp():
    torch = _torch()

    class Reshape(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.n = n

        def forward(self, x):
            return x.reshape(-1, self.n)

    torch.manual_seed(11)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Identity(), torch.nn.ReLU(),
        Reshape(8), torch.nn.Linear(8, 4), torch.nn.Flatten()).eval()


def export_torchscript(model, example, path: Path, dynamic_batch: bool = True,
                       opset: int = OPSET_TORCHSCRIPT) -> None:
    torch = _torch()
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"x": {0: "batch"}, "y": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"], **kwargs)


def export_dynamo(model, example, path: Path, dynamic_batch: bool = True) -> None:
    torch = _torch()
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                    external_data=False, **kwargs)
    program.save(str(path), external_data=False)


def torch_forward(model, x: np.ndarray) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().astype(np.float32)


# ---------------------------------------------------------------------------
# hand-built graphs
# ---------------------------------------------------------------------------

def _init(name: str, arr) -> TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inputs, outputs, inits, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET_HELPER)],
                              producer_name="rtlgen-fixtures")
    model.ir_version = 8
    return model


def _vec(name: str, n, batch="batch"):
    dims = [n] if batch is None else [batch, n]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def helper_ops_model(rng):
    """Constant nodes, Cast, Identity, Transpose of weights, Gemm with alpha/beta/transB=0,
    unnamed nodes, Reshape, MatMul+Add (constant first) and a MatMul without a bias."""
    w1 = rng.normal(size=(5, 7)).astype(np.float32)          # [n_in, n_out], transB=0
    c1 = rng.normal(size=(1, 7)).astype(np.float32)
    w2t = rng.normal(size=(6, 7)).astype(np.float32)         # stored [n_out, n_in], Transpose'd
    b2 = rng.normal(size=(6,)).astype(np.float32)
    w3 = rng.normal(size=(6, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Identity", ["x"], ["x_id"], name=""),
        helper.make_node("Cast", ["x_id"], ["x_c"], to=TensorProto.FLOAT, name="cast_in"),
        helper.make_node("Constant", [], ["c1"], value=numpy_helper.from_array(c1), name="c1_const"),
        helper.make_node("Gemm", ["x_c", "w1", "c1"], ["h1"], alpha=0.5, beta=2.0, transB=0, name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name=""),
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([0, -1], np.int64)),
                         name="shape_const"),
        helper.make_node("Reshape", ["a1", "shape"], ["a1r"], name="reshape"),
        helper.make_node("Transpose", ["w2t"], ["w2"], perm=[1, 0], name="w2_transpose"),
        helper.make_node("MatMul", ["a1r", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["b2", "m2"], ["h2"], name="fc2_bias"),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("MatMul", ["a2", "w3"], ["y"], name=""),
    ]
    model = _model(nodes, [_vec("x", 5)], [_vec("y", 3)],
                   [_init("w1", w1), _init("w2t", w2t), _init("b2", b2), _init("w3", w3)], "helper_ops")
    x = rng.normal(size=(16, 5)).astype(np.float32)
    f = np.float64
    h1 = 0.5 * (x.astype(f) @ w1.astype(f)) + 2.0 * c1.astype(f)
    a1 = np.maximum(h1, 0)
    a2 = np.maximum(a1 @ w2t.T.astype(f) + b2.astype(f), 0)
    y = a2 @ w3.astype(f)
    return model, x, y


def matmul_add_model(rng):
    """MatMul + Add (bias as the second input) on a 1-D input vector."""
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="dense_mm"),
        helper.make_node("Add", ["m", "b"], ["y"], name="dense_bias"),
    ]
    model = _model(nodes, [_vec("x", 4, batch=None)], [_vec("y", 3, batch=None)],
                   [_init("w", w), _init("b", b)], "matmul_add")
    x = rng.normal(size=(4,)).astype(np.float32)
    y = x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64)
    return model, x, y


def helper_graphs(rng) -> dict:
    """Graphs written with onnx.helper: the ones rtlgen refuses (``bad_*``) and a residual one."""
    w68 = rng.normal(size=(8, 6)).astype(np.float32)
    b8 = rng.normal(size=(8,)).astype(np.float32)
    w74 = rng.normal(size=(4, 7)).astype(np.float32)
    b4 = rng.normal(size=(4,)).astype(np.float32)
    w84 = rng.normal(size=(4, 8)).astype(np.float32)
    out = {}

    def gemm(inp, w, b, outp, name):
        return helper.make_node("Gemm", [inp, w, b], [outp], transB=1, name=name)

    out["bad_exp"] = _model(
        [gemm("x", "w1", "b1", "h", "fc1"),
         helper.make_node("Exp", ["h"], ["y"], name="act_exp")],
        [_vec("x", 6)], [_vec("y", 8)], [_init("w1", w68), _init("b1", b8)], "bad_exp")

    w_conv = rng.normal(size=(2, 1, 3)).astype(np.float32)
    out["bad_conv"] = _model(
        [helper.make_node("Conv", ["x", "wc"], ["y"], name="conv_layer")],
        [_vec("x", 6)], [_vec("y", 4)], [_init("wc", w_conv)], "bad_conv")

    out["bad_shape"] = _model(
        [gemm("x", "w1", "b1", "h", "fc1"),
         helper.make_node("Relu", ["h"], ["a"], name="relu1"),
         gemm("a", "w2", "b2", "y", "fc2_mismatch")],
        [_vec("x", 6)], [_vec("y", 4)],
        [_init("w1", w68), _init("b1", b8), _init("w2", w74), _init("b2", b4)], "bad_shape")

    w_nan = w84.copy()
    w_nan[2, 5] = np.nan
    out["bad_nan"] = _model(
        [gemm("x", "w1", "b1", "h", "fc1"),
         helper.make_node("Relu", ["h"], ["a"], name="relu1"),
         gemm("a", "w2", "b2", "y", "fc2_nan")],
        [_vec("x", 6)], [_vec("y", 4)],
        [_init("w1", w68), _init("b1", b8), _init("w2", w_nan), _init("b2", b4)], "bad_nan")

    out["bad_two_inputs"] = _model(
        [gemm("x", "w1", "b1", "h", "fc1"),
         helper.make_node("Add", ["h", "x2"], ["y"], name="add_inputs")],
        [_vec("x", 6), _vec("x2", 8)], [_vec("y", 8)], [_init("w1", w68), _init("b1", b8)],
        "bad_two_inputs")

    w88 = rng.normal(size=(8, 8)).astype(np.float32)
    out["residual"] = _model(
        [gemm("x", "w1", "b1", "h", "fc1"),
         helper.make_node("Relu", ["h"], ["a"], name="relu1"),
         gemm("a", "w2", "b1", "h2", "fc2"),
         helper.make_node("Add", ["h2", "a"], ["y"], name="residual_add")],
        [_vec("x", 6)], [_vec("y", 8)], [_init("w1", w68), _init("b1", b8), _init("w2", w88)],
        "residual")

    out["bad_transa"] = _model(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["y"], transA=1, transB=1, name="fc_transposed")],
        [_vec("x", 6)], [_vec("y", 8)], [_init("w1", w68), _init("b1", b8)], "bad_transa")
    return out


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def _save_onnx(model: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))


def make_jet(models_dir: Path, refs: dict) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    model = jet_mlp()
    x = np.random.default_rng(2024).uniform(-2.0, 2.0, size=(64, 16)).astype(np.float32)
    export_torchscript(model, _torch().from_numpy(x[:2]), models_dir / "jet_mlp.onnx")
    (models_dir / "jet_mlp.yaml").write_text(JET_CONFIG)
    refs["jet_mlp__x"] = x
    refs["jet_mlp__y"] = torch_forward(model, x)


def make_fixtures(fix: Path, refs: dict) -> None:
    torch = _torch()
    fix.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12345)

    tiny = tiny_mlp()
    x = rng.normal(size=(10, 6)).astype(np.float32)
    y = torch_forward(tiny, x)
    export_torchscript(tiny, torch.from_numpy(x[:3]), fix / "tiny_torchscript.onnx")
    export_dynamo(tiny, torch.from_numpy(x[:3]), fix / "tiny_dynamo.onnx")
    # the dynamo model once more with its weights in an external data file
    ext = onnx.load(str(fix / "tiny_dynamo.onnx"))
    data_name = "tiny_dynamo_ext.onnx.data"
    (fix / data_name).unlink(missing_ok=True)
    onnx.save_model(ext, str(fix / "tiny_dynamo_ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=data_name, size_threshold=0)
    for stem in ("tiny_torchscript", "tiny_dynamo", "tiny_dynamo_ext"):
        refs[f"{stem}__x"], refs[f"{stem}__y"] = x, y

    # 1-D input: both exporters write MatMul (+ Add)
    vec = tiny_mlp()
    xv = rng.normal(size=(6,)).astype(np.float32)
    export_torchscript(vec, torch.from_numpy(xv), fix / "vec_torchscript.onnx", dynamic_batch=False)
    export_dynamo(vec, torch.from_numpy(xv), fix / "vec_dynamo.onnx", dynamic_batch=False)
    for stem in ("vec_torchscript", "vec_dynamo"):
        refs[f"{stem}__x"], refs[f"{stem}__y"] = xv, torch_forward(vec, xv)

    flat = flatten_identity_mlp()
    xf = rng.normal(size=(10, 6)).astype(np.float32)
    export_torchscript(flat, torch.from_numpy(xf[:3]), fix / "flatten_identity_torchscript.onnx", opset=17)
    export_dynamo(flat, torch.from_numpy(xf[:3]), fix / "flatten_identity_dynamo.onnx")
    for stem in ("flatten_identity_torchscript", "flatten_identity_dynamo"):
        refs[f"{stem}__x"], refs[f"{stem}__y"] = xf, torch_forward(flat, xf)

    model, xh, yh = helper_ops_model(rng)
    _save_onnx(model, fix / "helper_ops.onnx")
    refs["helper_ops__x"], refs["helper_ops__y"] = xh, yh
    model, xm, ym = matmul_add_model(rng)
    _save_onnx(model, fix / "matmul_add.onnx")
    refs["matmul_add__x"], refs["matmul_add__y"] = xm, ym

    for stem, model in helper_graphs(rng).items():
        onnx.save_model(model, str(fix / f"{stem}.onnx"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    refs: dict = {}
    make_jet(args.root / "models", refs)
    make_fixtures(args.root / "tests" / "fixtures", refs)
    save_npz(args.root / "tests" / "fixtures" / "reference.npz", refs)
    print(f"wrote models/ and tests/fixtures/ under {args.root}")


if __name__ == "__main__":
    main()
