#!/usr/bin/env python3
"""Generate the convolutional example model and the CNN test fixtures.

Writes, deterministically (fixed seeds, fixed archive timestamps):

``models/econt_encoder.onnx``, ``models/econt_encoder.yaml``
    an ECON-T-style encoder: an 8x8x1 input, Conv2D with 8 filters 3x3,
    stride 2 and 'same' padding (TensorFlow's: the extra row and column at
    the end, ONNX ``auto_pad=SAME_UPPER``), ReLU, flatten, Dense 16, and a
    precision configuration with 6-bit weights.  PyTorch has no 'same'
    padding for strided convolutions, so the network is exported with
    ``padding=0`` and the Conv node's padding is then set to
    ``auto_pad=SAME_UPPER``; the reference outputs pad explicitly.
``models/cicada_encoder.onnx``, ``models/cicada_encoder.yaml``
    a CICADA-style anomaly-score encoder: an 18x14x1 map of calorimeter
    regions, Conv2D with 4 filters 2x2 (stride 1, no padding), ReLU, Conv2D
    with 8 filters 3x3 and stride 3 (no padding, the map shrinks to 5x4),
    ReLU, flatten, Dense 16, ReLU, Dense 1 (the score), and a precision
    configuration with 6- to 8-bit weights that streams the two conv layers
    (``io: stream``).  Its own seed: the other outputs do not depend on it.
``tests/fixtures/cnn2d_torchscript.onnx``, ``cnn2d_dynamo.onnx``
    Conv2d + BatchNorm2d + ReLU + MaxPool2d + Conv2d (stride 2) +
    AvgPool2d (padded, count_include_pad=False) + Flatten + Linear on a
    [2, 6, 6] input, from both PyTorch exporters.
``tests/fixtures/cnn1d_torchscript.onnx``
    Conv1d (stride 2, padded) + ReLU + MaxPool1d + Flatten + Linear +
    BatchNorm1d + ReLU + Linear on a [2, 10] input.
``tests/fixtures/cnn_reference.npz``
    inputs and PyTorch outputs (``<fixture>__x``, ``<fixture>__y``), and
    the same for ``econt_encoder``.

Needs ``torch``, ``onnx`` and ``onnxscript`` (for the ``dynamo=True``
exporter).

    python scripts/make_cnn_models.py            # from the repository root
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_models import save_npz  # noqa: E402

OPSET = 13

ECONT_CONFIG = """\
# Precision of models/econt_encoder.onnx (ECON-T-style encoder): 8-bit
# unsigned inputs, 6-bit weights, 12-bit layer results.
input: ufixed<8,1,RND,SAT>
default:
  weight: fixed<6,0,RND,SAT>
  bias: fixed<8,2,RND,SAT>
  result: fixed<12,4,RND,SAT>
  reuse_factor: 1
  io: parallel
# Per-layer overrides are keyed by ONNX node name, for example:
# layers:
#   "/conv/Conv": {reuse_factor: 2}
layers: {}
"""

CICADA_CONFIG = """\
# Precision of models/cicada_encoder.onnx (CICADA-style anomaly-score
# encoder): 10-bit unsigned calorimeter-region inputs, 6- to 8-bit weights,
# 14-bit layer results.  The two conv layers stream the 18x14 map one region
# per cycle (their ReLUs follow them); the dense part is parallel.
input: ufixed<10,4,RND,SAT>
default:
  weight: fixed<8,0,RND,SAT>
  bias: fixed<8,2,RND,SAT>
  result: fixed<14,6,RND,SAT>
  reuse_factor: 1
  io: parallel
layers:
  "/conv1/Conv": {weight: "fixed<6,0,RND,SAT>", io: stream}
  "/conv2/Conv": {io: stream}
  "/output/Gemm": {weight: "fixed<6,0,RND,SAT>", result: "fixed<16,6,RND,SAT>"}
"""
CICADA_SEED = 2718


def _export(torch, model, x, path: Path, dynamo: bool) -> None:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"], output_names=["y"])
            prog.save(str(path))
        else:
            buf = io.BytesIO()
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=OPSET,
                              input_names=["x"], output_names=["y"])
            path.write_bytes(buf.getvalue())
    m = onnx.load(str(path))
    onnx.checker.check_model(m)


def _randomize_bn(torch, bn, gen) -> None:
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)


def main() -> None:
    import torch
    from torch import nn
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    fixtures = ROOT / "tests" / "fixtures"
    arrays = {}

    # -- 2-D fixture, both exporters --------------------------------------
    net2 = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=1, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2, stride=2), nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Flatten(), nn.Linear(16, 4))
    _randomize_bn(torch, net2[1], gen)
    net2.eval()
    x2 = torch.rand(6, 2, 6, 6, generator=gen) * 2 - 1
    with torch.no_grad():
        y2 = net2(x2)
    for name, dynamo in (("cnn2d_torchscript", False), ("cnn2d_dynamo", True)):
        _export(torch, net2, x2[:1], fixtures / f"{name}.onnx", dynamo)
        arrays[f"{name}__x"] = x2.numpy().astype(np.float64)
        arrays[f"{name}__y"] = y2.numpy().astype(np.float64)

    # -- 1-D fixture ----------------------------------------------------------
    net1 = nn.Sequential(
        nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(),
        nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    _randomize_bn(torch, net1[5], gen)
    net1.eval()
    x1 = torch.rand(6, 2, 10, generator=gen) * 2 - 1
    with torch.no_grad():
        y1 = net1(x1)
    _export(torch, net1, x1[:1], fixtures / "cnn1d_torchscript.onnx", False)
    arrays["cnn1d_torchscript__x"] = x1.numpy().astype(np.float64)
    arrays["cnn1d_torchscript__y"] = y1.numpy().astype(np.float64)

    # -- the ECON-T-style encoder -------------------------------------------
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, stride=2, padding=0)
            self.relu = nn.ReLU()
            self.flatten = nn.Flatten()
            self.dense = nn.Linear(8 * 4 * 4, 16)

        def forward(self, x):
            return self.dense(self.flatten(self.relu(self.conv(x))))

    enc = Encoder().eval()
    path = ROOT / "models" / "econt_encoder.onnx"
    # exported on a 9x9 input (padding=0 gives the 4x4 map), then the Conv is
    # switched to SAME_UPPER padding and the input declared 8x8
    _export(torch, enc, torch.zeros(1, 1, 9, 9), path, False)
    m = onnx.load(str(path))
    for node in m.graph.node:
        if node.op_type == "Conv":
            keep = [a for a in node.attribute if a.name != "pads"]
            del node.attribute[:]
            node.attribute.extend(keep + [helper.make_attribute("auto_pad", "SAME_UPPER")])
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = 8
    dims[3].dim_value = 8
    del m.graph.value_info[:]
    onnx.checker.check_model(m)
    path.write_bytes(m.SerializeToString())
    (ROOT / "models" / "econt_encoder.yaml").write_text(ECONT_CONFIG)
    xe = torch.rand(8, 1, 8, 8, generator=gen)
    with torch.no_grad():
        ye = enc(nn.functional.pad(xe, (0, 1, 0, 1)))
    arrays["econt_encoder__x"] = xe.numpy().astype(np.float64)
    arrays["econt_encoder__y"] = ye.numpy().astype(np.float64)

    # -- the CICADA-style encoder (own seed) ---------------------------------
    torch.manual_seed(CICADA_SEED)

    class Cicada(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 2, stride=1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(4, 8, 3, stride=3)
            self.relu2 = nn.ReLU()
            self.flatten = nn.Flatten()
            self.dense1 = nn.Linear(8 * 5 * 4, 16)
            self.relu3 = nn.ReLU()
            self.output = nn.Linear(16, 1)

        def forward(self, x):
            x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
            return self.output(self.relu3(self.dense1(self.flatten(x))))

    cicada = ROOT / "models" / "cicada_encoder.onnx"
    _export(torch, Cicada().eval(), torch.zeros(1, 1, 18, 14), cicada, False)
    (ROOT / "models" / "cicada_encoder.yaml").write_text(CICADA_CONFIG)

    save_npz(fixtures / "cnn_reference.npz", arrays)
    print("wrote", path, cicada, "and", len(arrays) // 2, "reference sets in", fixtures / "cnn_reference.npz")


if __name__ == "__main__":
    main()
