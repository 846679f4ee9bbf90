#!/usr/bin/env python3
"""Generate the quantization-aware example model shipped in models/ (see README,
"Quantization-aware models").

Writes, deterministically (fixed seeds):

``models/axol1tl_qonnx.onnx``
    an AXOL1TL-shaped encoder, 57 -> 28 -> 15 -> 8, written in Brevitas
    with fixed-point (power-of-two scale) quantizers: an 8-bit input, 6-bit
    weights, 16-bit biases, unsigned 8-bit ReLUs and a 12-bit latent output,
    trained briefly as the encoder of an autoencoder on synthetic trigger-like
    data (correlated Gaussian clusters of 57 features) and exported to QONNX.
    The weights are what such training gives, not those of the published model.

Needs torch and brevitas (installed by ``make setup`` with the test extras):

    .venv/bin/python scripts/make_qonnx_models.py     # from the repository root
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = (57, 28, 15, 8)


def synthetic_objects(rng, n: int) -> np.ndarray:
    """Trigger-object-like inputs: a few correlated Gaussian clusters of 57 features."""
    centers = rng.normal(0, 1.5, (4, SIZES[0]))
    mixing = rng.normal(0, 0.4, (4, SIZES[0], SIZES[0]))
    which = rng.integers(0, 4, n)
    noise = rng.normal(0, 1, (n, SIZES[0]))
    return (centers[which] + np.einsum("nij,nj->ni", mixing[which], noise)).astype(np.float32)


def axol1tl_qonnx(path: Path, steps: int = 300) -> Path:
    import torch
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias,
                                Uint8ActPerTensorFixedPoint)
    torch.manual_seed(0)
    layers = [qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)]
    for k, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
        layers.append(qnn.QuantLinear(n_in, n_out, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                      weight_bit_width=6, bias_quant=Int16Bias, return_quant_tensor=True))
        if k < len(SIZES) - 2:
            layers.append(qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True))
    layers.append(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=12))
    encoder = torch.nn.Sequential(*layers)
    decoder = torch.nn.Sequential(torch.nn.Linear(SIZES[-1], 28), torch.nn.ReLU(), torch.nn.Linear(28, SIZES[0]))
    x = torch.from_numpy(synthetic_objects(np.random.default_rng(1), 2048))
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=0.01)
    encoder.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(decoder(encoder(x)), x)
        loss.backward()
        opt.step()
    encoder.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(encoder, x[:1], export_path=str(path))
    return path


def main() -> None:
    out = axol1tl_qonnx(ROOT / "models" / "axol1tl_qonnx.onnx")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
