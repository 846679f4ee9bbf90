#!/usr/bin/env python3
"""Generate the quantization-aware example model shipped in models/ (see README,
"Quantization-aware models").

Writes, deterministically (fixed seeds):

``models/axol1tl_qonnx.onnx``
    an AXOL1TL-shaped encoder, 57 -> 28 -> 15 -> 8, written in Brevitas
    with fixed-point (power-of-two scale) quantizers: an 8-bit input, 6-bit
    weights, 16-bit biases, unsigned 8-bit ReLUs and a 10-bit latent mean
    ``mu``, then the anomaly score ``sum(mu**2)`` (exact: a square per
    element and a sum), trained briefly as the encoder of an autoencoder on
    synthetic trigger-like data (correlated Gaussian clusters of 57
    features) and exported to QONNX.
    The weights are what such training gives, not those of the published model.
``models/cicada_qonnx.onnx`` + ``models/cicada_qonnx.yaml``
    a CICADA-v2-style student: an 18x14 calorimeter image (unsigned 10-bit
    input) -> a 2x2 stride-2 convolution with 4 channels and 12-bit weights
    -> ReLU -> 252 -> dense 16 with 8-bit weights -> batch norm -> ReLU ->
    dense 1 (the anomaly score), trained briefly to regress a synthetic
    "anomaly" target on synthetic images.  The batch norm's float statistics
    have no quantizer, so the configuration gives its types (and nothing else).

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


def _score_module():
    import torch

    class AnomalyScore(torch.nn.Module):
        """AXOL1TL's score: the squared norm of the latent mean, ``sum(mu**2)``."""

        def forward(self, mu):
            return (mu * mu).sum(dim=1, keepdim=True)

    return AnomalyScore


def axol1tl_qonnx(path: Path, steps: int = 300) -> Path:
    import torch
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias,
                                Uint8ActPerTensorFixedPoint)
    AnomalyScore = _score_module()
    torch.manual_seed(0)
    layers = [qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)]
    for k, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
        layers.append(qnn.QuantLinear(n_in, n_out, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                      weight_bit_width=6, bias_quant=Int16Bias, return_quant_tensor=True))
        if k < len(SIZES) - 2:
            layers.append(qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True))
    layers.append(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=10))
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
        export_qonnx(torch.nn.Sequential(encoder, AnomalyScore()), x[:1], export_path=str(path))
    _rename_batch_norm(path, "BN")     # (it has none) saves every tensor inside the one file
    return path


def synthetic_images(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Calorimeter-like 18x14 images (a smooth pile-up floor plus a few hot towers) and a target that is
    large for images with unusually many or unusually bright towers."""
    floor = rng.gamma(2.0, 0.6, (n, 1, 18, 14))
    hot = rng.random((n, 1, 18, 14)) < rng.uniform(0.005, 0.06, (n, 1, 1, 1))
    x = floor + hot * rng.gamma(3.0, 4.0, (n, 1, 18, 14))
    target = np.log1p((hot * x).sum((1, 2, 3)))[:, None] / 4
    return x.astype(np.float32), target.astype(np.float32)


CICADA_CONFIG = """\
# CICADA-v2-style student (scripts/make_qonnx_models.py): every type comes from the model's
# quantizers but those of the batch norm, whose float statistics have no quantizer.
layers:
  BN:
    weight: fixed<10,3,RND,SAT>
    bias: fixed<10,3,RND,SAT>
"""


def cicada_qonnx(path: Path, steps: int = 200) -> Path:
    import torch
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias,
                                Uint8ActPerTensorFixedPoint)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, bit_width=10, return_quant_tensor=True),
        qnn.QuantConv2d(1, 4, 2, stride=2, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=12,
                        bias_quant=Int16Bias, return_quant_tensor=True),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
        torch.nn.Flatten(),
        qnn.QuantLinear(252, 16, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias,
                        return_quant_tensor=False),
        torch.nn.BatchNorm1d(16),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(16, 1, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias,
                        return_quant_tensor=True),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=12),
    )
    x, y = (torch.from_numpy(a) for a in synthetic_images(np.random.default_rng(2), 1024))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, x[:1], export_path=str(path))
    _rename_batch_norm(path, "BN")
    return path


def _rename_batch_norm(path: Path, name: str) -> None:
    """Give the exported BatchNormalization node a short name (the configuration keys it)."""
    import onnx
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            node.name = name
    onnx.save(model, str(path))     # every tensor inside the one file now
    stale = path.with_name(path.name + ".data")
    if stale.exists():
        stale.unlink()


def main() -> None:
    for out in (axol1tl_qonnx(ROOT / "models" / "axol1tl_qonnx.onnx"),
                cicada_qonnx(ROOT / "models" / "cicada_qonnx.onnx")):
        print(f"wrote {out.relative_to(ROOT)}")
    (ROOT / "models" / "cicada_qonnx.yaml").write_text(CICADA_CONFIG)
    print("wrote models/cicada_qonnx.yaml")


if __name__ == "__main__":
    main()
