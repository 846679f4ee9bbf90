"""The ``network`` core kind: MLPs and CNNs from ONNX files (or the numpy API)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..emit.build import load_build, save_build
from ..errors import RtlgenError
from ..frontends import load_model
from ..golden.network import check_codes, predict_codes, quantize_inputs
from ..ir.config import apply_config, load_config
from ..numerics.fixed import to_float

__all__ = ["NetworkKind"]


class NetworkKind:
    """Fixed-point networks (Dense, Conv, pooling, activations): manifest kinds ``mlp`` and ``cnn``."""

    name = "network"
    manifest_kinds = ("mlp", "cnn")

    def accepts_model_file(self, path) -> bool:
        return Path(str(path)).suffix.lower() == ".onnx"

    def quantized_model(self, model_path, config):
        cfg = load_config(config)
        return apply_config(load_model(model_path), cfg)

    def save_build(self, qmodel, outdir, top=None) -> dict:
        return save_build(qmodel, outdir, top=top)

    def build_message(self, manifest: dict, outdir) -> str:
        return (f"wrote {Path(outdir) / manifest['verilog']}: latency {manifest['latency']} cycles, "
                f"II {manifest['ii']}, {manifest['multipliers']} multipliers")

    def load_build(self, outdir):
        return load_build(outdir)

    def input_codes(self, qmodel, values, raw: bool) -> np.ndarray:
        shape = getattr(qmodel, "input_shape", None)
        if shape is not None and np.ndim(values) == len(shape) + 1 \
                and tuple(np.shape(values)[1:]) == tuple(shape):
            values = np.asarray(values).reshape(len(values), -1)   # [N, C, H, W] -> [N, C*H*W], C,H,W order
        if raw:
            return check_codes(qmodel, values)
        x = np.asarray(values)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise RtlgenError(f"inputs must be numbers, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[1] != qmodel.n_in:
            raise RtlgenError(f"inputs must have shape [N, {qmodel.n_in}] for model {qmodel.name!r}, "
                              f"got {list(x.shape)}")
        return quantize_inputs(qmodel, x)

    def predict_codes(self, qmodel, codes) -> np.ndarray:
        return predict_codes(qmodel, codes)

    def output_values(self, qmodel, codes, raw: bool) -> np.ndarray:
        return codes if raw else to_float(codes, qmodel.output_type)

    def sensitivity_model(self, model_path, config):
        """The quantized model and the module that analyses its bit-flip sensitivity (``tmr-analysis``)."""
        from ..analysis import sensitivity
        return self.quantized_model(model_path, config), sensitivity
