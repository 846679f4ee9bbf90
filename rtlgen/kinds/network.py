"""The ``network`` core kind: MLPs and CNNs from ONNX files (or the numpy API)."""

from __future__ import annotations

import numpy as np

from ..analysis import sensitivity
from ..emit.build import ELEMENT_LAYOUT, ManifestSection
from ..emit.regmap import regmap_for
from ..errors import RtlgenError
from ..frontends import SUPPORTED_FORMATS, load_model
from ..golden.network import check_codes, image_shape_text, predict_codes, quantize_inputs
from ..hw.core import make_core
from ..hw.network import Network
from ..hw.size import check_fits
from ..hw.stream import StreamNetwork
from ..ir.config import apply_config, load_config
from ..ir.conv import QConv, QMaxPool
from ..ir.model import QModel
from ..numerics.fixed import to_float
from .base import KindBase

__all__ = ["NetworkKind"]


def _layer_entry(layer, hw, qmodel, k: int) -> dict:
    """The manifest's summary of one layer and its hardware; in a model that is not a chain,
    ``inputs`` names the layers it reads (``input``: the core's input)."""
    entry = {"name": layer.name, "latency": hw.latency, "ii": hw.ii,
             "in_type": str(layer.in_type), "result": str(layer.result_type),
             "shape": [layer.n_in, layer.n_out], **layer.summary(hw.multipliers),
             **hw.figures}
    if not qmodel.is_chain:
        entry["inputs"] = [qmodel.layers[s].name if s >= 0 else "input" for s in qmodel.inputs_of(k)]
    return entry


class NetworkKind(KindBase):
    """Fixed-point networks (Dense, Conv, pooling, activations): manifest kinds ``mlp`` and ``cnn``."""

    name = "network"
    manifest_kinds = ("mlp", "cnn")
    model_formats = SUPPORTED_FORMATS
    model_type = QModel

    def quantized_model(self, model_path, config):
        return apply_config(load_model(model_path), load_config(config) if config is not None else None)

    # -- the build ---------------------------------------------------------

    def fit(self, qmodel) -> str:
        return f"the core ({check_fits(qmodel).describe()})"

    def core(self, qmodel):
        return make_core(qmodel)

    def manifest_section(self, qmodel, core) -> ManifestSection:
        spatial = any(isinstance(layer, (QConv, QMaxPool)) for layer in qmodel.layers)
        section = ManifestSection(
            kind="cnn" if spatial else "mlp",
            multipliers=sum(hw.multipliers for hw in core.layers),
            layers=[_layer_entry(layer, hw, qmodel, k) for k, (layer, hw) in enumerate(zip(qmodel.layers, core.layers))],
            regmap=regmap_for(qmodel) if isinstance(core, Network) else None)
        if qmodel.input_shape is not None:
            shape = [int(v) for v in qmodel.input_shape]
            section.input = {"layout": "NCHW flattened C,H,W" if len(shape) == 3 else "NCL flattened C,L",
                             "shape": shape, "bits": ELEMENT_LAYOUT}
        if isinstance(core, StreamNetwork):
            section.ports = {"in_data": qmodel.input_type.width * core.channels_in}
            section.io = {"io": "stream", "stream": {
                "channels": core.channels_in, "pixels": core.pixels_in,
                "frame": [int(v) for v in qmodel.input_shape][1:],
                "order": "one pixel per accept, raster order (row by row, left to right); in_data "
                         "element c (bits [c*width, (c+1)*width)) is channel c, i.e. vector element "
                         "c*pixels + p of pixel p",
                "latency": "cycles from the edge that accepts a frame's last pixel to out_valid",
                "ii": "cycles per frame at full input rate (between the last pixels of consecutive frames)",
            }}
        else:
            section.io = {"io": "parallel"}
        return section

    def build_figures(self, manifest: dict) -> str:
        return f"{manifest['multipliers']} multipliers"

    # -- inputs, golden model, outputs -------------------------------------

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
            also = f" or {image_shape_text(qmodel)}" if shape is not None else ""
            raise RtlgenError(f"inputs must have shape [N, {qmodel.n_in}]{also} for model {qmodel.name!r}, "
                              f"got {list(x.shape)}")
        return quantize_inputs(qmodel, x)

    def predict_codes(self, qmodel, codes) -> np.ndarray:
        return predict_codes(qmodel, codes)

    def output_values(self, qmodel, codes, raw: bool) -> np.ndarray:
        return codes if raw else to_float(codes, qmodel.output_type)

    def sensitivity_model(self, model_path, config):
        """The quantized model and the module that analyses its bit-flip sensitivity (``tmr-analysis``)."""
        return self.quantized_model(model_path, config), sensitivity
