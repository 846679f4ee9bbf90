"""The model intermediate representation.

Two levels:

* the *float* IR (:class:`FloatModel`) is what front ends produce: layers
  with real-valued weights, no precision yet;
* the *quantized* IR (:class:`QModel`) is the float IR with the
  configuration applied (:mod:`rtlgen.ir.config`): every layer knows its
  input, weight, bias, result (and optional accumulator) types, its integer
  weight codes and its reuse factor.  The golden model and the hardware
  generators both consume only the quantized IR.

Layer semantics (the contract both implement exactly):

Dense
    ``y_j = cast_result(sum_i x_i * w_ij + b_j)`` with ``w``/``b`` already
    quantized; the sum is exact.  With an ``accum`` type (WRAP only) every
    product and the bias are first cast to ``accum`` and the sum wraps in
    ``accum``, as hls4ml's Latency strategy does.
Activation
    ``relu``: ``y = cast_result(max(0, x))``; ``linear``: ``y = cast_result(x)``.
Conv, MaxPool, AveragePool
    on feature maps flattened in C,H,W order; see :mod:`rtlgen.ir.conv`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from ..numerics.fixed import FixedType, parse_type

ACTIVATIONS = ("relu", "linear")


# ---------------------------------------------------------------------------
# float IR
# ---------------------------------------------------------------------------

@dataclass
class Dense:
    """A fully connected layer: ``weight`` has shape [n_in, n_out]."""
    name: str
    weight: np.ndarray
    bias: np.ndarray

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])


@dataclass
class Activation:
    """An element-wise activation (``relu`` or ``linear``)."""
    name: str
    kind: str
    size: int = 0  # vector length; set by the front ends


FloatLayer = Union[Dense, Activation]


@dataclass
class FloatModel:
    """A sequence of layers on a flat input vector of ``n_in`` elements."""
    name: str
    n_in: int
    layers: list = field(default_factory=list)
    #: [C, H, W] or [C, L] when the input is a feature map (flattened in that order)
    input_shape: Optional[tuple] = None

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]


# ---------------------------------------------------------------------------
# quantized IR
# ---------------------------------------------------------------------------

@dataclass
class QDense:
    """A dense layer with its precision fixed.

    ``weights`` holds integer codes of ``weight_type`` with shape
    [n_in, n_out]; ``bias`` holds codes of ``bias_type``.
    """
    name: str
    in_type: FixedType
    weight_type: FixedType
    bias_type: FixedType
    result_type: FixedType
    weights: np.ndarray
    bias: np.ndarray
    reuse_factor: int = 1
    accum_type: Optional[FixedType] = None
    adder_levels: int = 2
    op: str = "dense"

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[1])

    @property
    def nonzero(self) -> int:
        """Number of weights that are not zero after quantization."""
        return int(np.count_nonzero(self.weights))

    @property
    def multipliers(self) -> int:
        """Multipliers the hardware instantiates: ceil(nonzero / R)."""
        nz = self.nonzero
        return -(-nz // self.reuse_factor) if nz else 0


@dataclass
class QActivation:
    """An element-wise activation with its result type."""
    name: str
    kind: str
    size: int
    in_type: FixedType
    result_type: FixedType
    op: str = "activation"

    @property
    def n_in(self) -> int:
        return self.size

    @property
    def n_out(self) -> int:
        return self.size


QLayer = Union[QDense, QActivation]


@dataclass
class QModel:
    """A quantized network: ``input_type`` elements in, layers in order."""
    name: str
    input_type: FixedType
    n_in: int
    layers: list
    #: [C, H, W] or [C, L] when the input is a feature map (flattened in that order)
    input_shape: Optional[tuple] = None

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out if self.layers else self.n_in

    @property
    def output_type(self) -> FixedType:
        return self.layers[-1].result_type if self.layers else self.input_type

    # -- serialization (the build folder keeps the quantized model) --------

    def to_dict(self) -> dict:
        from .conv import QConv, QMaxPool
        layers = []
        for layer in self.layers:
            if isinstance(layer, QMaxPool):
                layers.append({"op": "maxpool", "name": layer.name, "in_type": str(layer.in_type),
                               "result_type": str(layer.result_type), **layer.geometry()})
                continue
            if isinstance(layer, QDense):
                layers.append({
                    "op": "dense", "name": layer.name,
                    "in_type": str(layer.in_type), "weight_type": str(layer.weight_type),
                    "bias_type": str(layer.bias_type), "result_type": str(layer.result_type),
                    "accum_type": str(layer.accum_type) if layer.accum_type else None,
                    "reuse_factor": layer.reuse_factor, "adder_levels": layer.adder_levels,
                    "weights": [[int(v) for v in row] for row in layer.weights],
                    "bias": [int(v) for v in layer.bias],
                })
                if isinstance(layer, QConv):
                    layers[-1].update({"op": layer.op, "count_include_pad": layer.count_include_pad,
                                       **layer.geometry()})
                    if layer.kernel_codes is not None:
                        layers[-1]["kernel_codes"] = np.asarray(layer.kernel_codes).tolist()
                        layers[-1]["bias_codes"] = [int(v) for v in layer.bias_codes]
            else:
                layers.append({
                    "op": "activation", "name": layer.name, "kind": layer.kind,
                    "size": layer.size, "in_type": str(layer.in_type),
                    "result_type": str(layer.result_type),
                })
        out = {"name": self.name, "input_type": str(self.input_type), "n_in": self.n_in,
               "layers": layers}
        if self.input_shape is not None:
            out["input_shape"] = [int(v) for v in self.input_shape]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "QModel":
        from .conv import QConv, QMaxPool
        layers = []
        for ld in d["layers"]:
            if ld["op"] == "maxpool":
                layers.append(QMaxPool(
                    name=ld["name"], in_type=parse_type(ld["in_type"]),
                    result_type=parse_type(ld["result_type"]), in_shape=tuple(ld["in_shape"]),
                    kernel=tuple(ld["kernel"]), stride=tuple(ld["stride"]), pads=tuple(ld["pads"])))
            elif ld["op"] in ("conv", "avgpool"):
                layers.append(QConv(
                    name=ld["name"], in_type=parse_type(ld["in_type"]),
                    weight_type=parse_type(ld["weight_type"]), bias_type=parse_type(ld["bias_type"]),
                    result_type=parse_type(ld["result_type"]),
                    accum_type=parse_type(ld["accum_type"]) if ld.get("accum_type") else None,
                    weights=_int_array(ld["weights"]), bias=_int_array(ld["bias"]),
                    reuse_factor=int(ld["reuse_factor"]), adder_levels=int(ld.get("adder_levels", 2)),
                    in_shape=tuple(ld["in_shape"]), out_shape=tuple(ld["out_shape"]),
                    kernel=tuple(ld["kernel"]), stride=tuple(ld["stride"]), pads=tuple(ld["pads"]),
                    count_include_pad=bool(ld.get("count_include_pad", False)), op=ld["op"],
                    kernel_codes=_int_array(ld["kernel_codes"]) if "kernel_codes" in ld else None,
                    bias_codes=_int_array(ld["bias_codes"]) if "bias_codes" in ld else None))
            elif ld["op"] == "dense":
                layers.append(QDense(
                    name=ld["name"], in_type=parse_type(ld["in_type"]),
                    weight_type=parse_type(ld["weight_type"]), bias_type=parse_type(ld["bias_type"]),
                    result_type=parse_type(ld["result_type"]),
                    accum_type=parse_type(ld["accum_type"]) if ld.get("accum_type") else None,
                    weights=_int_array(ld["weights"]), bias=_int_array(ld["bias"]),
                    reuse_factor=int(ld["reuse_factor"]), adder_levels=int(ld.get("adder_levels", 2))))
            else:
                layers.append(QActivation(
                    name=ld["name"], kind=ld["kind"], size=int(ld["size"]),
                    in_type=parse_type(ld["in_type"]), result_type=parse_type(ld["result_type"])))
        shape = tuple(int(v) for v in d["input_shape"]) if d.get("input_shape") else None
        return cls(d["name"], parse_type(d["input_type"]), int(d["n_in"]), layers, shape)


def _int_array(values) -> np.ndarray:
    arr = np.array(values, dtype=object)
    try:
        return arr.astype(np.int64)
    except OverflowError:
        return arr
