"""Convolution and pooling layers on flattened feature maps.

Feature maps are tensors of shape ``[C, L]`` (1-D) or ``[C, H, W]`` (2-D),
ONNX's NCL/NCHW without the batch dimension, stored flat in C, H, W order
(element ``(c, h, w)`` at index ``(c*H + h)*W + w``).

Geometry (ONNX conventions): ``kernel``, ``stride`` have one entry per
spatial dimension, ``pads`` is ``[x1_begin, x2_begin, ..., x1_end, x2_end]``;
output size per dimension ``floor((S + pad_begin + pad_end - k) / s) + 1``.
The window of output position ``o`` covers the input positions
``o*s - pad_begin + t`` for ``t`` in ``0..k-1``; positions outside the input
are padding.

Semantics (golden model and hardware alike):

Conv
    ``y[co, o] = cast_result(sum_{ci, t} x[ci, o*s - pad + t] * w[co, ci, t] + b[co])``
    over the taps inside the input (zero padding), with ``w``/``b`` quantized
    to the layer's weight/bias types and the sum exact.  On the flat vector
    this is a dense layer whose ``[n_in, n_out]`` matrix holds the kernel at
    every window (:meth:`Conv.matrix`); it is built as one
    (:class:`QConv` is a :class:`~rtlgen.ir.model.QDense`), and the matrix
    entries that are zero, among them all the padding taps, cost nothing.
MaxPool
    ``y[c, o] = cast_result(max of the codes x[c, p] over the window's
    positions inside the input)`` (padding never wins, as in ONNX).
AveragePool
    ``y[c, o] = cast_result(sum_p x[c, p] * q(1/n))``: the window sum times
    ``1/n`` quantized to the layer's ``weight`` type, the product exact.  ``n``
    is the kernel size with ``count_include_pad=1`` and the number of
    positions inside the input otherwise (ONNX's default).  Exact whenever
    ``1/n`` is representable in the weight type (``n`` a power of two and
    enough fractional bits).  It is built as a dense layer with the
    weights ``q(1/n)`` (:class:`QConv` with ``op == "avgpool"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import prod
from typing import Optional

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType, parse_type
from .model import QDense, dense_fields, int_array, layer_type

__all__ = ["out_spatial", "window_taps", "conv_matrix", "pool_matrix", "pool_windows",
           "Conv", "Pool", "QConv", "QMaxPool"]


def out_spatial(spatial, kernel, stride, pads, where: str = "layer") -> tuple:
    """Output spatial sizes; an RtlgenError when the window does not fit."""
    d = len(spatial)
    out = []
    for k in range(d):
        size = spatial[k] + pads[k] + pads[d + k] - kernel[k]
        if size < 0:
            raise RtlgenError(
                f"{where}: shape mismatch: kernel {list(kernel)} does not fit the input of spatial "
                f"size {list(spatial)} with pads {list(pads)}")
        out.append(size // stride[k] + 1)
    return tuple(out)


def window_taps(spatial, kernel, stride, pads):
    """For every output position (C order): list of (tap index, flat input position).

    Only taps inside the input are listed; a tap index is the flat index
    into the kernel (C order).
    """
    d = len(spatial)
    outs = out_spatial(spatial, kernel, stride, pads)
    windows = []
    for o in np.ndindex(*outs):
        taps = []
        for t_flat, t in enumerate(np.ndindex(*kernel)):
            pos = [o[k] * stride[k] - pads[k] + t[k] for k in range(d)]
            if all(0 <= pos[k] < spatial[k] for k in range(d)):
                taps.append((t_flat, int(np.ravel_multi_index(pos, spatial))))
        windows.append(taps)
    return windows


def conv_matrix(weight: np.ndarray, in_shape, stride, pads) -> np.ndarray:
    """The ``[n_in, n_out]`` matrix of a convolution on the flat C,(H,)W vector."""
    c_out, c_in = weight.shape[:2]
    kernel = weight.shape[2:]
    spatial = tuple(in_shape[1:])
    n_sp = prod(spatial)
    windows = window_taps(spatial, kernel, stride, pads)
    n_osp = len(windows)
    wflat = weight.reshape(c_out, c_in, -1)
    mat = np.zeros((c_in * n_sp, c_out * n_osp), dtype=weight.dtype)
    ci = np.arange(c_in) * n_sp
    co = np.arange(c_out) * n_osp
    for o, taps in enumerate(windows):
        for t, p in taps:
            mat[np.ix_(ci + p, co + o)] = wflat[:, :, t].T
    return mat


def pool_windows(in_shape, kernel, stride, pads) -> list:
    """Flat input positions (spatial only) inside each output window."""
    return [[p for _, p in taps] for taps in window_taps(tuple(in_shape[1:]), kernel, stride, pads)]


def pool_matrix(in_shape, kernel, stride, pads, count_include_pad: bool) -> np.ndarray:
    """The ``[n_in, n_out]`` matrix of an average pool (weights 1/n)."""
    channels = in_shape[0]
    n_sp = prod(in_shape[1:])
    windows = pool_windows(in_shape, kernel, stride, pads)
    n_osp = len(windows)
    mat = np.zeros((channels * n_sp, channels * n_osp))
    full = prod(kernel)
    for o, pos in enumerate(windows):
        n = full if count_include_pad else len(pos)
        for c in range(channels):
            for p in pos:
                mat[c * n_sp + p, c * n_osp + o] = 1.0 / n
    return mat


# ---------------------------------------------------------------------------
# float IR
# ---------------------------------------------------------------------------

@dataclass
class Conv:
    """A convolution: ``weight`` [C_out, C_in, k...], ``bias`` [C_out]."""
    name: str
    weight: np.ndarray
    bias: np.ndarray
    in_shape: tuple
    stride: tuple
    pads: tuple
    types: dict = field(default_factory=dict)   # from the model's quantizers (see Dense)

    @property
    def kernel(self) -> tuple:
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def out_shape(self) -> tuple:
        return (int(self.weight.shape[0]),) + out_spatial(self.in_shape[1:], self.kernel, self.stride,
                                                         self.pads, f"layer {self.name!r}")

    @property
    def n_in(self) -> int:
        return prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return prod(self.out_shape)

    def matrix(self, weight: Optional[np.ndarray] = None) -> np.ndarray:
        """The equivalent dense ``[n_in, n_out]`` matrix (of ``weight`` if given)."""
        return conv_matrix(self.weight if weight is None else weight, self.in_shape, self.stride, self.pads)

    def bias_vector(self, bias: Optional[np.ndarray] = None) -> np.ndarray:
        """The bias per flat output element."""
        b = self.bias if bias is None else bias
        return np.repeat(np.asarray(b), prod(self.out_shape[1:]))


class _PoolGeometry:
    """Shapes of a per-channel window operation (``in_shape``, ``kernel``,
    ``stride``, ``pads`` and ``name`` come from the dataclass)."""

    @property
    def out_shape(self) -> tuple:
        return (self.in_shape[0],) + out_spatial(self.in_shape[1:], self.kernel, self.stride, self.pads,
                                                 f"layer {self.name!r}")

    @property
    def n_in(self) -> int:
        return prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return prod(self.out_shape)


@dataclass
class Pool(_PoolGeometry):
    """Max or average pooling (``kind`` ``max`` or ``avg``), per channel."""
    name: str
    kind: str
    in_shape: tuple
    kernel: tuple
    stride: tuple
    pads: tuple
    count_include_pad: bool = False
    types: dict = field(default_factory=dict)   # ``result``, from the model's quantizer (see Dense)


# ---------------------------------------------------------------------------
# quantized IR
# ---------------------------------------------------------------------------

@layer_type("conv", "avgpool")
@dataclass
class QConv(QDense):
    """A convolution (``op == "conv"``) or average pool (``op == "avgpool"``)
    lowered to its dense matrix; the geometry is kept for the manifest."""
    in_shape: tuple = ()
    out_shape: tuple = ()
    kernel: tuple = ()
    stride: tuple = ()
    pads: tuple = ()
    count_include_pad: bool = False
    op: str = "conv"
    #: the quantized kernel ``[C_out, C_in, k...]`` and bias ``[C_out]`` codes
    #: (``op == "conv"``); ``weights``/``bias`` are their unrolled form
    kernel_codes: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    bias_codes: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    #: ``parallel`` or ``stream`` (see :mod:`rtlgen.hw.stream`)
    io: str = "parallel"

    def geometry(self) -> dict:
        return {"in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "kernel": list(self.kernel), "stride": list(self.stride), "pads": list(self.pads)}

    @property
    def reuse_limit(self) -> int:
        """The largest reuse factor: nonzero weights of the unrolled matrix,
        or of one window when the layer streams."""
        if self.io != "stream":
            return max(1, self.nonzero)
        if self.op == "conv":
            return max(1, int(np.count_nonzero(self.kernel_codes)))
        if self.varying_divisor:
            return 1
        return int(self.in_shape[0] * prod(self.kernel))

    @property
    def varying_divisor(self) -> bool:
        """An average pool whose ``1/n`` changes at the borders."""
        return self.op == "avgpool" and any(self.pads) and not self.count_include_pad

    # -- stored parameters: a convolution's words are its kernel taps -----

    def param_index(self) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`QDense.param_index`; a convolution's kernel tap ``w[co, ci, k...]`` is word
        number its flat C-order index in the kernel, and bias ``b[co]`` word ``co`` (padding taps
        and positions outside every window: -1).  An average pool has the dense order."""
        if self.op != "conv":
            return super().param_index()
        if self.kernel_codes is None:
            raise RtlgenError(f"layer {self.name!r}: the model has no kernel codes for this conv layer; "
                              "rebuild it from the model file to store its parameters")
        kernel = np.asarray(self.kernel_codes)
        ids = np.arange(1, kernel.size + 1, dtype=np.int64).reshape(kernel.shape)
        windex = conv_matrix(ids, self.in_shape, self.stride, self.pads) - 1
        per_channel = self.n_out // kernel.shape[0]
        return windex, np.arange(self.n_out) // per_channel

    def param_codes(self) -> tuple[np.ndarray, np.ndarray]:
        if self.op != "conv":
            return super().param_codes()
        return (np.asarray(self.kernel_codes).reshape(-1).copy(),
                np.asarray(self.bias_codes).reshape(-1).copy())

    def with_params(self, weight_codes, bias_codes) -> "QConv":
        if self.op != "conv":
            return super().with_params(weight_codes, bias_codes)
        weight_codes = np.asarray(weight_codes, dtype=np.int64).reshape(-1)
        bias_codes = np.asarray(bias_codes, dtype=np.int64).reshape(-1)
        kernel = weight_codes.reshape(np.asarray(self.kernel_codes).shape)
        per_channel = self.n_out // kernel.shape[0]
        return replace(self, weights=conv_matrix(kernel, self.in_shape, self.stride, self.pads),
                       bias=np.repeat(bias_codes, per_channel), kernel_codes=kernel,
                       bias_codes=bias_codes.copy())

    # -- serialization ----------------------------------------------------

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update({"op": self.op, "count_include_pad": self.count_include_pad, "io": self.io,
                    **self.geometry()})
        if self.kernel_codes is not None:
            out["kernel_codes"] = np.asarray(self.kernel_codes).tolist()
            out["bias_codes"] = [int(v) for v in self.bias_codes]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "QConv":
        return cls(**dense_fields(d),
                   in_shape=tuple(d["in_shape"]), out_shape=tuple(d["out_shape"]),
                   kernel=tuple(d["kernel"]), stride=tuple(d["stride"]), pads=tuple(d["pads"]),
                   count_include_pad=bool(d.get("count_include_pad", False)), op=d["op"],
                   kernel_codes=int_array(d["kernel_codes"]) if "kernel_codes" in d else None,
                   bias_codes=int_array(d["bias_codes"]) if "bias_codes" in d else None,
                   io=d.get("io", "parallel"))

    def summary(self, multipliers: int) -> dict:
        """The layer's own fields of its manifest entry: a dense layer's, and the window geometry."""
        return {**super().summary(multipliers), "io": self.io, **self.geometry(),
                "count_include_pad": self.count_include_pad}


@layer_type("maxpool")
@dataclass
class QMaxPool(_PoolGeometry):
    """Max pooling with its result type: ``cast_result(max(window codes))``."""
    name: str
    in_type: FixedType
    result_type: FixedType
    in_shape: tuple
    kernel: tuple
    stride: tuple
    pads: tuple
    op: str = "maxpool"
    reuse_factor: int = 1
    io: str = "parallel"
    _windows: list = field(default=None, repr=False, compare=False)


    @property
    def multipliers(self) -> int:
        return 0

    def windows(self) -> list:
        """For every flat output element: the flat input indices it takes the max of."""
        if self._windows is None:
            n_sp = prod(self.in_shape[1:])
            spatial = pool_windows(self.in_shape, self.kernel, self.stride, self.pads)
            self._windows = [[c * n_sp + p for p in pos]
                             for c in range(self.in_shape[0]) for pos in spatial]
        return self._windows

    def geometry(self) -> dict:
        return {"in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "kernel": list(self.kernel), "stride": list(self.stride), "pads": list(self.pads)}

    def to_dict(self) -> dict:
        return {"op": "maxpool", "name": self.name, "in_type": str(self.in_type),
                "result_type": str(self.result_type), "io": self.io, **self.geometry()}

    @classmethod
    def from_dict(cls, d: dict) -> "QMaxPool":
        return cls(name=d["name"], in_type=parse_type(d["in_type"]), result_type=parse_type(d["result_type"]),
                   in_shape=tuple(d["in_shape"]), kernel=tuple(d["kernel"]), stride=tuple(d["stride"]),
                   pads=tuple(d["pads"]), io=d.get("io", "parallel"))

    def summary(self, multipliers: int) -> dict:
        """The layer's own fields of its manifest entry."""
        return {"op": self.op, "multipliers": multipliers, "reuse_factor": 1, "io": self.io, **self.geometry()}
