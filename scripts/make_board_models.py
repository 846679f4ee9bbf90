#!/usr/bin/env python3
"""Generate the models shipped for the boards (see README, "Run it on a board").

Writes, deterministically (fixed seed):

``models/axol1tl_encoder.onnx``
    an AXOL1TL-shaped encoder, 57 -> 28 -> 15 -> 8 (Gemm + ReLU, no ReLU
    after the last layer: the latent means), trained for a few hundred
    steps of plain gradient descent, as the encoder of an autoencoder, on
    synthetic "trigger objects" (a few correlated Gaussian clusters of 57
    features).  The weights are what such training gives, not those of the
    published model.
``models/axol1tl_encoder.yaml``, ``models/jet_mlp_icebreaker.yaml``
    the board configurations (written from the strings below).

Needs only numpy and onnx:

    .venv/bin/python scripts/make_board_models.py     # from the repository root
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
SIZES = (57, 28, 15, 8)

AXOL1TL_CONFIG = """\
# models/axol1tl_encoder.onnx on the ULX3S 85F: the AXOL1TL precision
# (weights fixed<6,3>), every layer built as a shift-and-add graph (no DSP
# blocks), pipelined for a 50 MHz core clock on ECP5.
input: fixed<10,5,RND,SAT>
clock_mhz: 50
target: ecp5
default:
  weight: fixed<6,3,RND,SAT>
  bias: fixed<8,4,RND,SAT>
  result: fixed<14,6,RND,SAT>
  reuse_factor: 1
  arithmetic: shift_add
layers: {}
"""

JET_ICEBREAKER_CONFIG = """\
# models/jet_mlp.onnx with 6-bit weights and 8-bit layer results on the
# iCEBreaker (iCE40 UP5K: 5280 logic cells, 8 DSP blocks, 30 block RAMs):
# every layer time-multiplexes one multiplier over all its weights
# (reuse_factor: full), reads them from a block-RAM ROM, and sums one output
# at a time with one accumulator and one output cast (the ReLU after it
# included).
input: fixed<9,2,RND,SAT>
default:
  weight: fixed<6,2,RND,SAT>
  bias: fixed<8,3,RND,SAT>
  result: fixed<8,3,RND,SAT>
  reuse_factor: full
  arithmetic: multipliers
  weight_rom: bram
layers: {}
"""


def synthetic_data(rng, n: int) -> np.ndarray:
    centres = rng.normal(0.0, 1.5, size=(4, SIZES[0]))
    mixing = rng.normal(0.0, 0.4, size=(SIZES[0], SIZES[0]))
    labels = rng.integers(0, len(centres), size=n)
    return (centres[labels] + rng.normal(size=(n, SIZES[0])) @ mixing).astype(np.float64)


def train_encoder(seed: int = 57, steps: int = 400, lr: float = 0.01) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encoder layers [(W [in, out], b [out])] of a 57-28-15-8-15-28-57 autoencoder."""
    rng = np.random.default_rng(seed)
    x = synthetic_data(rng, 2048)
    x /= np.abs(x).max() / 8.0          # inside the input type's range
    sizes = SIZES + SIZES[-2::-1]
    layers = [(rng.normal(0, np.sqrt(2.0 / a), size=(a, b)), np.zeros(b)) for a, b in zip(sizes, sizes[1:])]
    relu_after = [k < len(layers) - 1 and k != len(SIZES) - 2 for k in range(len(layers))]
    for _ in range(steps):
        acts = [x]
        for (w, b), relu in zip(layers, relu_after):
            z = acts[-1] @ w + b
            acts.append(np.maximum(z, 0.0) if relu else z)
        grad = 2.0 * (acts[-1] - x) / x.size
        for k in range(len(layers) - 1, -1, -1):
            w, b = layers[k]
            if relu_after[k]:
                grad = grad * (acts[k + 1] > 0)
            gw, gb = acts[k].T @ grad, grad.sum(0)
            grad = grad @ w.T
            layers[k] = (w - lr * np.clip(gw, -1, 1), b - lr * np.clip(gb, -1, 1))
    encoder = layers[:len(SIZES) - 1]
    return [(np.clip(w, -4.0, 3.875), np.clip(b, -8.0, 7.9375)) for w, b in encoder]


def encoder_onnx(layers) -> onnx.ModelProto:
    nodes, inits = [], []
    prev = "x"
    for k, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w.T.astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{k}")]
        out = f"z{k}" if k < len(layers) - 1 else "mu"
        nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [out], name=f"dense{k}", transB=1))
        if k < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"a{k}"], name=f"relu{k}"))
            out = f"a{k}"
        prev = out
    graph = helper.make_graph(nodes, "axol1tl_encoder",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SIZES[0]])],
                              [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["batch", SIZES[-1]])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="rtlgen-scripts")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    models = ROOT / "models"
    onnx.save_model(encoder_onnx(train_encoder()), str(models / "axol1tl_encoder.onnx"))
    (models / "axol1tl_encoder.yaml").write_text(AXOL1TL_CONFIG)
    (models / "jet_mlp_icebreaker.yaml").write_text(JET_ICEBREAKER_CONFIG)
    print("wrote models/axol1tl_encoder.onnx, models/axol1tl_encoder.yaml, models/jet_mlp_icebreaker.yaml")


if __name__ == "__main__":
    main()
