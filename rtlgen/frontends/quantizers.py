"""Quantizer nodes of quantization-aware ONNX models (QONNX and ONNX Q/DQ).

A quantization-aware model says in its graph which values each tensor can
take.  :mod:`rtlgen.frontends.onnx` reads these nodes with the helpers here
and turns each into a fixed-point type (:func:`rtlgen.numerics.fixed.quantizer_type`):

``Quant(x, scale, zeropt, bitwidth)`` (QONNX; attributes ``signed``, ``narrow``, ``rounding_mode``)
    ``y = clamp(round(x / scale) + zeropt) - zeropt) * scale``.  Becomes
    ``fixed<bitwidth, bitwidth + log2(scale)>`` (``ufixed`` when unsigned)
    with the rounding of ``rounding_mode`` (``ROUND``/``HALF_EVEN`` ->
    ``RND_CONV``, ``FLOOR`` -> ``TRN``, ``DOWN`` -> ``TRN_ZERO``, ``HALF_UP``
    -> ``RND_INF``, ``HALF_DOWN`` -> ``RND_ZERO``) and saturation (``SAT``,
    ``SAT_SYM`` for a signed narrow range).  The scale must be a power of
    two and the zero point 0; on a weight or bias tensor the scale may be
    per channel (the type then has the finest scale's fractional bits and
    the widest channel's integer bits, and the values stay exact).
``BipolarQuant(x, scale)`` (QONNX)
    ``y = (x >= 0 ? 1 : -1) * scale``: on weights only (codes +-1 of
    ``fixed<2, 2 + log2(scale)>``).
``Trunc(x, scale, zeropt, in_bits, out_scale, out_bits)`` (QONNX, with an output scale)
    drops low bits of a value on the grid of ``scale``: the same as
    ``Quant(x, out_scale, 0, out_bits)`` with the node's rounding, signed and
    narrow attributes.
``QuantizeLinear`` then ``DequantizeLinear`` (ONNX, same scale and zero point)
    a ``Quant`` with the integer type's bits (8 for int8/uint8, 16 for
    int16/uint16), ``ROUND`` and no narrow range.  ``DequantizeLinear`` of a
    constant integer tensor gives exact weights of that type.

Whatever no fixed-point type expresses exactly (a scale that is not a power
of two, a nonzero zero point, ``CEIL``/``UP`` rounding, an unsigned narrow
range) is refused with an :class:`~rtlgen.errors.RtlgenError` naming the
node and what to change; nothing is approximated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import (FixedType, power_of_two_exponent, quantize, quantizer_type, to_float)

__all__ = ["QUANT_OPS", "Quantizer", "read_quantizer", "apply_quantizer", "union_type"]

#: the quantizer operators (on the data path and on weights)
QUANT_OPS = ("Quant", "BipolarQuant", "Trunc", "QuantizeLinear", "DequantizeLinear")

_FIXED_POINT_HINT = ("rtlgen's fixed-point types need power-of-two scales: use Brevitas' *FixedPoint "
                     "quantizers (e.g. Int8WeightPerTensorFixedPoint, Int8ActPerTensorFixedPoint) or "
                     "QKeras quantized_bits with alpha=1")


@dataclass
class Quantizer:
    """What one quantizer node does: per-element types (one per distinct scale) and how
    they broadcast over the tensor.

    ``exponents`` broadcasts against the quantized tensor; ``bits``,
    ``signed``, ``narrow``, ``rounding`` are the node's; ``bipolar`` marks a
    sign quantizer.
    """
    where: str
    exponents: np.ndarray
    bits: int
    signed: bool
    narrow: bool
    rounding: str
    bipolar: bool = False

    def type_for(self, exponent: int) -> FixedType:
        if self.bipolar:
            return FixedType(2, 2 + int(exponent), True)
        try:
            return quantizer_type(self.bits, int(exponent), self.signed, self.narrow, self.rounding)
        except ValueError as exc:
            raise RtlgenError(f"{self.where}: {exc}; change the quantizer") from None

    @property
    def per_tensor(self) -> bool:
        return len(np.unique(self.exponents)) == 1

    def tensor_type(self) -> FixedType:
        """The one type of every element (per-channel scales: their union, see :func:`union_type`)."""
        return union_type([self.type_for(e) for e in np.unique(self.exponents)])


def union_type(types: list) -> FixedType:
    """The narrowest type holding every value of ``types`` (same modes as the first)."""
    frac = max(t.frac for t in types)
    integer = max(t.integer for t in types)
    first = types[0]
    return FixedType(integer + frac, integer, any(t.signed for t in types), first.quant, first.overflow)


def _scalar_int(value, where: str, what: str) -> int:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != 1 or arr[0] != np.trunc(arr[0]):
        raise RtlgenError(f"{where}: the {what} must be one integer, got {arr.tolist()}")
    return int(arr[0])


def _exponents(scale, where: str) -> np.ndarray:
    scale = np.asarray(scale, dtype=np.float64)
    flat = [power_of_two_exponent(v) for v in scale.reshape(-1)]
    bad = [float(v) for v, e in zip(scale.reshape(-1), flat) if e is None]
    if bad:
        raise RtlgenError(f"{where}: scale {bad[0]:.8g} is not a power of two, so the quantized values "
                          f"are not fixed-point numbers; {_FIXED_POINT_HINT}")
    return np.asarray(flat, dtype=np.int64).reshape(scale.shape)


def _zero_point(zeropt, where: str) -> None:
    if zeropt is not None and np.any(np.asarray(zeropt, dtype=np.float64) != 0):
        raise RtlgenError(f"{where}: zero point {np.asarray(zeropt).reshape(-1)[:4].tolist()} is not 0; "
                          "rtlgen's fixed-point types are symmetric around 0: use a quantizer with zero "
                          "point 0 (Brevitas: the *FixedPoint quantizers; scaling_impl without "
                          "zero_point_impl)")


_INT_BITS = {"INT8": (8, True), "UINT8": (8, False), "INT16": (16, True), "UINT16": (16, False),
             "INT4": (4, True), "UINT4": (4, False)}


def read_quantizer(g, index: int, const) -> Quantizer:
    """The :class:`Quantizer` of node ``index`` of graph index ``g``; ``const(name)`` reads a constant input."""
    node = g.graph.node[index]
    op = node.op_type
    where = g.where(index)

    def arg(k, what):
        if len(node.input) <= k or not node.input[k]:
            raise RtlgenError(f"{where}: missing input {k} ({what})")
        if not g.is_const(node.input[k]):
            raise RtlgenError(f"{where}: its {what} must be a constant (an initializer or a Constant node)")
        return const(node.input[k])

    def mode():
        value = g._attr(node, "rounding_mode", "ROUND" if op == "Quant" else "FLOOR")
        return value.decode() if isinstance(value, bytes) else str(value)

    if op == "Quant":
        scale = arg(1, "scale")
        _zero_point(arg(2, "zero point"), where)
        bits = _scalar_int(arg(3, "bit width"), where, "bit width")
        signed, narrow = bool(g._attr(node, "signed", 1)), bool(g._attr(node, "narrow", 0))
        if bits == 1 and signed:   # QONNX executes a signed 1-bit Quant as a sign quantizer
            return Quantizer(where, _exponents(scale, where), 1, True, False, "ROUND", bipolar=True)
        return Quantizer(where, _exponents(scale, where), bits, signed, narrow, mode())
    if op == "BipolarQuant":
        return Quantizer(where, _exponents(arg(1, "scale"), where), 1, True, False, "ROUND", bipolar=True)
    if op == "Trunc":
        if len(node.input) < 6:
            raise RtlgenError(f"{where}: a Trunc without an output scale (QONNX Trunc version 1, 5 inputs) "
                              "rescales its result by its input scale; rtlgen reads the Trunc with an "
                              "output scale (6 inputs): export with a current Brevitas/qonnx")
        _exponents(arg(1, "scale"), where)
        _zero_point(arg(2, "zero point"), where)
        bits = _scalar_int(arg(5, "output bit width"), where, "output bit width")
        return Quantizer(where, _exponents(arg(4, "output scale"), where), bits,
                         bool(g._attr(node, "signed", 1)), bool(g._attr(node, "narrow", 0)), mode())
    if op in ("QuantizeLinear", "DequantizeLinear"):
        scale = arg(1, "scale")
        zp_name = node.input[2] if len(node.input) > 2 else ""
        zeropt = const(zp_name) if zp_name else None
        _zero_point(zeropt, where)
        dtype = _q_dtype(g, node, zp_name, index)
        bits, signed = _INT_BITS[dtype]
        return Quantizer(where, _exponents(scale, where), bits, signed, False, "ROUND")
    raise AssertionError(op)  # pragma: no cover


def _q_dtype(g, node, zp_name: str, index: int) -> str:
    """INT8/UINT8/... of a QuantizeLinear/DequantizeLinear pair (from the zero point, else the output_dtype,
    else uint8, ONNX's default)."""
    onnx = g.onnx
    elem = None
    if zp_name and zp_name in g.initializers:
        elem = g.initializers[zp_name].data_type
    elif node.op_type == "DequantizeLinear" and node.input[0] in g.initializers:
        elem = g.initializers[node.input[0]].data_type
    elif g._attr(node, "output_dtype"):
        elem = int(g._attr(node, "output_dtype"))
    name = onnx.TensorProto.DataType.Name(elem) if elem else "UINT8"
    if name not in _INT_BITS:
        raise RtlgenError(f"{g.where(index)}: quantization to {name} is not supported; use int8, uint8, "
                          "int16 or uint16")
    return name


def apply_quantizer(q: Quantizer, x: np.ndarray) -> tuple[np.ndarray, FixedType]:
    """Quantize the constant ``x`` as ``q`` does: (exact dequantized values, their type)."""
    x = np.asarray(x, dtype=np.float64)
    try:
        exps = np.broadcast_to(q.exponents, x.shape)
    except ValueError:
        raise RtlgenError(f"{q.where}: a scale of shape {list(q.exponents.shape)} does not broadcast to "
                          f"the tensor of shape {list(x.shape)}") from None
    out = np.empty_like(x)
    for e in np.unique(exps):
        mask = exps == e
        if q.bipolar:
            out[mask] = np.where(x[mask] >= 0, 1.0, -1.0) * 2.0 ** int(e)
        else:
            t = q.type_for(int(e))
            out[mask] = to_float(quantize(x[mask], t), t)
    return out, q.tensor_type()
