"""Bit-exact golden model of a quantized network (:class:`~rtlgen.ir.model.QModel`).

The semantics are those of :mod:`rtlgen.ir.model`:

Dense, no accumulator type
    The products ``x_i * w_ij`` have ``F_p = F_in + F_w`` fractional bits and
    the bias ``F_b``; both are aligned to ``F = max(F_p, F_b)`` by exact left
    shifts, summed exactly and cast with
    ``requantize(sum, F, result_type)``.
Dense with an accumulator type ``A`` (WRAP)
    every product is cast with ``requantize(p, F_p, A)``, the bias with
    ``requantize(b, F_b, A)``; the sum wraps to ``A``'s width
    (``requantize(sum, F_A, A)``) and is cast with
    ``requantize(acc, F_A, result_type)``.
Activation
    ``relu``: ``requantize(max(0, x), F_in, result_type)``;
    ``linear``: ``requantize(x, F_in, result_type)``; the other kinds
    ``requantize(pre(x), F_pre, result_type)`` with the integer ``pre`` value
    and its fraction ``F_pre`` of :class:`~rtlgen.ir.model.QActivation`
    (slopes, clip bounds, tables).
Add, Concat
    the inputs of an add aligned to the finest fraction, summed exactly and
    cast; each input of a concat cast, then joined (:mod:`rtlgen.ir.merge`).
    A model that is not a chain runs its layers in order, each on the
    outputs of the layers it reads.
Conv, AveragePool
    dense layers on the flat C,H,W vector (:class:`~rtlgen.ir.conv.QConv`
    is a :class:`~rtlgen.ir.model.QDense`), computed as above.
MaxPool
    ``requantize(max over the window's codes, F_in, result_type)``.

All rounding and overflow goes through :mod:`rtlgen.numerics.fixed`.  The
model is exact for any widths.  Each dense layer picks, from the code ranges
of the types and the actual weights, the fastest exact way to form the sums:

* ``float32`` / ``float64`` BLAS when every partial sum provably stays
  below ``2**24`` / ``2**53`` (integers that small are exact);
* ``int64`` when every value provably fits in 62 bits;
* Python integers (``object`` arrays) otherwise.

A tensor's known code range is tracked through the network: casts that
provably change nothing are skipped and the others run on int32 when every
intermediate fits.  Large batches are processed in chunks that stay in the
cache, with every matrix product small enough for BLAS to run it on one
thread (threaded BLAS is slower on these skinny products and collapses when
the cores are busy); ``threads`` > 1 runs chunks in parallel threads.

For the 16-64-32-32-5 jet MLP of ``models/`` (9-bit inputs, 8-bit weights,
16-bit results) this runs at well over a million inferences per second on
one core.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import RtlgenError
from ..ir.conv import QMaxPool
from ..ir.model import ACTIVATIONS, TABLE_ACTIVATIONS, QActivation, QDense, QModel
from ..numerics.fixed import FixedType, Overflow, overflow, quantize, requantize, round_shift, to_float

__all__ = ["predict_codes", "predict", "predict_trace", "check_codes", "quantize_inputs",
           "dense_method", "describe", "FLOAT_EXACT_BITS", "SINGLE_EXACT_BITS", "INT_SAFE_BITS"]

#: integers below 2**53 are exact in float64, and so are sums staying below it
FLOAT_EXACT_BITS = 53
#: the same for float32
SINGLE_EXACT_BITS = 24
#: headroom kept in int64 arithmetic
INT_SAFE_BITS = 62

#: rows per chunk; sized so a layer's temporaries stay in the cache
CHUNK_ROWS = 4096
#: OpenBLAS computes a GEMM with M*N*K up to 65536 * 4 on one thread
BLAS_SERIAL_MNK = 65536 * 4


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

#: int32/int64 fast casts blend with ``b + c * (a - b)``: every operand stays
#: below these bounds so that the difference cannot overflow
_INT32_LIMIT = 1 << 30
_INT64_LIMIT = 1 << 61


def _fits_int64(typ: FixedType) -> bool:
    return typ.min_code >= -(1 << 63) and typ.max_code < (1 << 63)


def _obj(x: np.ndarray) -> np.ndarray:
    """The same integers as a Python-int ``object`` array."""
    if x.dtype == object:
        return x
    out = np.empty(x.shape, dtype=object)
    out[...] = x.tolist() if x.ndim else int(x)
    return out


def _as_dtype(x: np.ndarray, obj: bool) -> np.ndarray:
    if obj:
        return _obj(x)
    return x.astype(np.int64) if x.dtype != np.int64 else x


def _eff_lo(typ: FixedType) -> int:
    """Smallest code an overflow step can leave (SAT_SYM excludes -2**(W-1))."""
    if typ.overflow is Overflow.SAT_SYM and typ.signed:
        return -typ.max_code
    return typ.min_code


def _magnitude(lo: int, hi: int) -> int:
    return max(abs(int(lo)), abs(int(hi)))


def _blender(dtype):
    """A ``where(c, a, b)`` for :func:`round_shift`/:func:`overflow` on int arrays.

    Arithmetic blending is much faster than ``np.where`` on scalars and keeps
    the array's dtype; the plans guarantee ``a - b`` cannot overflow.
    """
    scalar = np.dtype(dtype).type

    def where(c, a, b):
        c = np.asarray(c, dtype=bool)
        a_arr, b_arr = isinstance(a, np.ndarray), isinstance(b, np.ndarray)
        if not a_arr and not b_arr:
            return c.astype(dtype) * scalar(a - b) + scalar(b)
        if not b_arr:
            return a + ~c * (scalar(b) - a)
        return b + c * (a - b)
    return where


def _no_wrap(x):  # pragma: no cover - WRAP casts never take the fast path
    raise AssertionError("WRAP overflow takes the generic path")


@dataclass
class _CastPlan:
    """How to run ``requantize(x, src_frac, dst)`` for codes in [in_lo, in_hi]."""
    src_frac: int
    dst: FixedType
    mode: str            # "identity", "int32", "int64" or "generic"
    need_overflow: bool
    out_lo: int
    out_hi: int

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.mode == "identity":
            return x
        if self.mode == "generic":
            return requantize(x, self.src_frac, self.dst)
        dtype = np.int32 if self.mode == "int32" else np.int64
        x = np.asarray(x).astype(dtype, copy=False)
        where = _blender(dtype)
        y = round_shift(x, self.src_frac - self.dst.frac, self.dst.quant, where)
        if self.need_overflow:
            y = overflow(y, self.dst, where, _no_wrap)
        return y


def _plan_cast(lo: int, hi: int, src_frac: int, dst: FixedType, generic: bool = False) -> _CastPlan:
    shift = src_frac - dst.frac
    mag = _magnitude(lo, hi)
    # Rounding is monotone: round the end points with dst's rounding into a
    # type wide enough that nothing overflows, then see where they land.
    need = mag.bit_length() + max(0, -shift) + 2
    if need > 4096:
        return _CastPlan(src_frac, dst, "generic", True, _eff_lo(dst), dst.max_code)
    wide = FixedType(need, need - dst.frac, True, dst.quant, Overflow.SAT)
    ends = requantize(np.array([int(lo), int(hi)], dtype=object), src_frac, wide)
    r_lo, r_hi = int(ends[0]), int(ends[1])
    need_overflow = not (r_lo >= _eff_lo(dst) and r_hi <= dst.max_code)
    if not need_overflow:
        out_lo, out_hi = r_lo, r_hi
    elif dst.overflow in (Overflow.SAT, Overflow.SAT_SYM):
        out_lo = min(max(r_lo, _eff_lo(dst)), dst.max_code)
        out_hi = min(max(r_hi, _eff_lo(dst)), dst.max_code)
    else:
        out_lo, out_hi = _eff_lo(dst), dst.max_code
    if generic or (need_overflow and dst.overflow is Overflow.WRAP):
        mode = "generic"
    elif shift == 0 and not need_overflow:
        mode = "identity"
    else:
        limit = mag
        if shift > 0:
            limit = mag + (1 << shift)
        elif shift < 0:
            limit = mag << -shift
        if need_overflow:
            limit = max(limit, abs(dst.min_code), abs(dst.max_code))
        limit = max(limit, abs(r_lo), abs(r_hi))
        mode = "int32" if limit < _INT32_LIMIT else "int64" if limit < _INT64_LIMIT else "generic"
    return _CastPlan(src_frac, dst, mode, need_overflow, out_lo, out_hi)


# ---------------------------------------------------------------------------
# per-layer plans (computed once per call, shared by all chunks)
# ---------------------------------------------------------------------------

@dataclass
class _DensePlan:
    layer: QDense
    method: str                    # "float32", "float64", "int64", "object" or "per_product"
    shift: int                     # left shift of x @ w (products to the sum's frac)
    bias: np.ndarray               # bias aligned to the sum (int32/int64/object)
    bias_f: Optional[np.ndarray]   # the same in float64 when it can be added in float
    sum_dtype: object              # np.int32, np.int64 or object
    weight: np.ndarray             # weights in the dtype of ``method``
    acc_cast: Optional[_CastPlan]  # sum -> accum type (wraps)
    out_cast: _CastPlan            # -> result type
    out_lo: int
    out_hi: int


@dataclass
class _ActPlan:
    layer: QActivation
    cast: _CastPlan
    out_lo: int
    out_hi: int


@dataclass
class _PoolPlan:
    layer: QMaxPool
    index: np.ndarray     # [n_out, window] input indices (short windows repeat an index)
    cast: _CastPlan
    out_lo: int
    out_hi: int


def _sum_range(w: np.ndarray, w_mag: int, lo: int, hi: int, shift: int, bias_obj: np.ndarray) -> tuple[int, int]:
    """Exact range of ``(x @ w) << shift + bias`` over x in [lo, hi]^n."""
    x_mag = _magnitude(lo, hi)
    small = (w.dtype != object and x_mag < (1 << INT_SAFE_BITS)
             and x_mag * w_mag * max(1, w.shape[0]) < (1 << INT_SAFE_BITS))
    if not small:
        w = _obj(w)
    a, b = w * lo, w * hi
    col_lo = _obj(np.minimum(a, b).sum(axis=0)) * (1 << shift) + bias_obj
    col_hi = _obj(np.maximum(a, b).sum(axis=0)) * (1 << shift) + bias_obj
    return int(min(col_lo)), int(max(col_hi))


def _int_dtype(bound: int):
    if bound < (1 << 31) - 1:
        return np.int32
    if bound < (1 << INT_SAFE_BITS):
        return np.int64
    return object


def _typed(values: np.ndarray, dtype) -> np.ndarray:
    return _obj(values) if dtype is object else np.asarray(values).astype(dtype)


def _plan_dense(layer: QDense, lo: int, hi: int, force_object: bool = False) -> _DensePlan:
    w_raw = np.asarray(layer.weights)
    if w_raw.dtype != object and layer.weight_type.width > INT_SAFE_BITS:
        w_raw = _obj(w_raw)
    b_obj = _obj(np.asarray(layer.bias))
    p_frac = layer.in_type.frac + layer.weight_type.frac
    x_mag = _magnitude(lo, hi)
    if w_raw.size == 0:
        w_mag = col_max = 0
    elif w_raw.dtype == object:
        w_mag = int(max(abs(v) for v in w_raw.flat))
        col_max = int(max(np.abs(w_raw).sum(axis=0)))
    else:
        w_raw = w_raw.astype(np.int64)
        w_mag = int(np.abs(w_raw).max())
        col_max = int(max(_obj(np.abs(w_raw)).sum(axis=0))) if w_mag * w_raw.shape[0] >= (1 << INT_SAFE_BITS) \
            else int(np.abs(w_raw).sum(axis=0).max())
    mm_bound = x_mag * col_max   # bound of |x @ w|

    accum = layer.accum_type
    if accum is None:
        out_frac = max(p_frac, layer.bias_type.frac)
        bias = b_obj * (1 << (out_frac - layer.bias_type.frac))
    else:
        out_frac = accum.frac
        bias = _obj(np.asarray(requantize(b_obj, layer.bias_type.frac, accum)))
    shift = out_frac - p_frac
    b_mag = int(max(abs(v) for v in bias.flat)) if bias.size else 0

    if accum is not None and shift < 0:
        # every product is rounded on its own: loop over the inputs
        prod_bits = x_mag.bit_length() + w_mag.bit_length()
        acc_bits = max(accum.width, b_mag.bit_length()) + max(1, layer.n_in).bit_length() + 1
        int_ok = not force_object and prod_bits <= INT_SAFE_BITS
        sum_dtype = np.int64 if (acc_bits <= INT_SAFE_BITS and not force_object) else object
        out_cast = _plan_cast(_eff_lo(accum), accum.max_code, out_frac, layer.result_type, force_object)
        return _DensePlan(layer=layer, method="per_product", shift=shift, bias=_typed(bias, sum_dtype),
                          bias_f=None, sum_dtype=sum_dtype,
                          weight=w_raw.astype(np.int64) if int_ok else _obj(w_raw),
                          acc_cast=None, out_cast=out_cast, out_lo=out_cast.out_lo, out_hi=out_cast.out_hi)

    total = (mm_bound << shift) + b_mag
    sum_dtype = object if force_object else _int_dtype(total)
    exact_float = (mm_bound < (1 << FLOAT_EXACT_BITS) and x_mag < (1 << FLOAT_EXACT_BITS)
                   and w_mag < (1 << FLOAT_EXACT_BITS))
    exact_single = (mm_bound < (1 << SINGLE_EXACT_BITS) and x_mag < (1 << SINGLE_EXACT_BITS)
                    and w_mag < (1 << SINGLE_EXACT_BITS))
    if force_object:
        method, weight = "object", _obj(w_raw)
    elif exact_single:
        method, weight = "float32", w_raw.astype(np.float32)
    elif exact_float:
        method, weight = "float64", w_raw.astype(np.float64)
    elif sum_dtype is not object and x_mag < (1 << INT_SAFE_BITS) and w_mag < (1 << INT_SAFE_BITS):
        method, weight = "int64", w_raw.astype(np.int64)
    else:
        method, weight = "object", _obj(w_raw)
    bias_f = None
    if method == "float64" and shift == 0 and total < (1 << FLOAT_EXACT_BITS) and sum_dtype is not object:
        bias_f = bias.astype(np.float64)
    if method == "float32" and shift == 0 and total < (1 << SINGLE_EXACT_BITS):
        bias_f = bias.astype(np.float32)
    if method == "int64" and sum_dtype is np.int32:
        sum_dtype = np.int64

    s_lo, s_hi = _sum_range(w_raw, w_mag, lo, hi, shift, bias)
    acc_cast = None
    if accum is not None:
        acc_cast = _plan_cast(s_lo, s_hi, out_frac, accum, force_object)
        s_lo, s_hi = acc_cast.out_lo, acc_cast.out_hi
    out_cast = _plan_cast(s_lo, s_hi, out_frac, layer.result_type, force_object)
    return _DensePlan(layer=layer, method=method, shift=shift, bias=_typed(bias, sum_dtype),
                      bias_f=bias_f, sum_dtype=sum_dtype, weight=weight, acc_cast=acc_cast,
                      out_cast=out_cast, out_lo=out_cast.out_lo, out_hi=out_cast.out_hi)


def _plan_pool(layer, lo: int, hi: int, force_object: bool) -> "_PoolPlan":
    windows = layer.windows()
    if any(not w for w in windows):
        raise RtlgenError(f"layer {layer.name!r}: a pooling window lies entirely in the padding")
    width = max(len(w) for w in windows)
    index = np.array([w + [w[0]] * (width - len(w)) for w in windows], dtype=np.int64)
    cast = _plan_cast(lo, hi, layer.in_type.frac, layer.result_type, force_object)
    return _PoolPlan(layer=layer, index=index, cast=cast, out_lo=cast.out_lo, out_hi=cast.out_hi)


def _plan_activation(layer, lo: int, hi: int, force_object: bool) -> "_ActPlan":
    if layer.kind not in ACTIVATIONS:
        raise RtlgenError(f"layer {layer.name!r}: unknown activation {layer.kind!r} "
                          f"(the golden model knows {', '.join(ACTIVATIONS)})")
    a_lo, a_hi = layer.pre_range(lo, hi)
    cast = _plan_cast(a_lo, a_hi, layer.pre_frac, layer.result_type, force_object)
    return _ActPlan(layer=layer, cast=cast, out_lo=cast.out_lo, out_hi=cast.out_hi)


@dataclass
class _ClassifierPlan:
    """A softmax (its exact integer steps, see :mod:`rtlgen.ir.softmax`) or an argmax."""
    layer: object
    cast: Optional[_CastPlan]
    out_lo: int
    out_hi: int

    def run(self, x: np.ndarray) -> np.ndarray:
        layer = self.layer
        if layer.op == "argmax":
            return np.argmax(x, axis=1).reshape(-1, 1).astype(np.int64)
        d = np.max(x, axis=1, keepdims=True) - x
        e = layer.exp_table().astype(np.int64)[layer.exp_index(d, np.where).astype(np.int64)]
        total = e.sum(axis=1, keepdims=True)
        r = layer.inv_table().astype(np.int64)[layer.inv_index(total, np.where).astype(np.int64)]
        return self.cast.apply(_obj(e) * _obj(r) if self.cast.mode == "generic" else e * r)


def _plan_classifier(layer, lo: int, hi: int, force_object: bool) -> _ClassifierPlan:
    if layer.op == "argmax":
        return _ClassifierPlan(layer, None, 0, layer.size - 1)
    e_hi = int(layer.exp_table().max())
    r_hi = int(layer.inv_table().max())
    cast = _plan_cast(0, e_hi * r_hi, layer.product_frac, layer.result_type, force_object)
    return _ClassifierPlan(layer, cast, cast.out_lo, cast.out_hi)


@dataclass
class _MergePlan:
    """An add (aligned, summed exactly, cast once) or a concat (each input cast)."""
    layer: object
    casts: list
    sum_object: bool
    out_lo: int
    out_hi: int

    @property
    def cast(self) -> _CastPlan:
        return self.casts[0]

    def run(self, xs: list) -> np.ndarray:
        if self.layer.op == "concat":
            return np.concatenate([c.apply(x) for c, x in zip(self.casts, xs)], axis=1)
        total = None
        for x, shift in zip(xs, self.layer.shifts()):
            x = _obj(x) if self.sum_object else np.asarray(x).astype(np.int64, copy=False)
            x = x << shift if shift else x
            total = x if total is None else total + x
        return self.cast.apply(total)


def _plan_merge(layer, ranges: list, force_object: bool) -> _MergePlan:
    if layer.op == "concat":
        casts = [_plan_cast(lo, hi, t.frac, layer.result_type, force_object)
                 for (lo, hi), t in zip(ranges, layer.in_types)]
        return _MergePlan(layer, casts, False, min(c.out_lo for c in casts), max(c.out_hi for c in casts))
    lo, hi = layer.sum_range(ranges)
    cast = _plan_cast(lo, hi, layer.frac, layer.result_type, force_object)
    wide = force_object or _magnitude(lo, hi).bit_length() > INT_SAFE_BITS
    return _MergePlan(layer, [cast], wide, cast.out_lo, cast.out_hi)


#: how each layer op (``layer.op``) is planned: (layer, lowest input code, highest input code,
#: force_object) -> plan.  A convolution or average pool is a dense layer over its unrolled matrix.
#: An add or concat (:data:`MERGE_PLANNERS`) gets the ``(lo, hi)`` of each of its inputs instead.
PLANNERS = {"dense": _plan_dense, "conv": _plan_dense, "avgpool": _plan_dense,
            "maxpool": _plan_pool, "activation": _plan_activation,
            "softmax": _plan_classifier, "argmax": _plan_classifier}
MERGE_PLANNERS = {"add": _plan_merge, "concat": _plan_merge}


@dataclass
class _Program:
    """The plan of every layer, and the layers each reads (``-1``: the input)."""
    plans: list
    sources: list

    def __iter__(self):
        return iter(self.plans)


def _plan(qmodel: QModel, force_object: bool = False) -> _Program:
    ranges = {-1: (qmodel.input_type.min_code, qmodel.input_type.max_code)}
    plans, sources = [], []
    for k, layer in enumerate(qmodel.layers):
        op = getattr(layer, "op", None)
        src = qmodel.inputs_of(k)
        if op in MERGE_PLANNERS:
            p = MERGE_PLANNERS[op](layer, [ranges[j] for j in src], force_object)
        elif op in PLANNERS:
            p = PLANNERS[op](layer, *ranges[src[0]], force_object)
        else:
            raise RtlgenError(f"layer {getattr(layer, 'name', '?')!r}: the golden model does not "
                              f"support {type(layer).__name__}")
        ranges[k] = (p.out_lo, p.out_hi)
        plans.append(p)
        sources.append(src)
    return _Program(plans, sources)


def describe(qmodel: QModel, force_object: bool = False) -> list:
    """How the golden model computes each layer: a list of dicts.

    ``sum`` is the arithmetic of a dense layer's sums (``float32``,
    ``float64``, ``int64``, ``object`` or ``per_product``), ``cast`` the way its result is cast
    (``identity``, ``int32``, ``int64`` or ``generic``), ``range`` the code
    range its outputs provably stay in.
    """
    out = []
    for p in _plan(qmodel, force_object):
        if isinstance(p, _DensePlan):
            out.append({"name": p.layer.name, "sum": p.method,
                        "accum_cast": p.acc_cast.mode if p.acc_cast else None,
                        "cast": p.out_cast.mode, "range": (p.out_lo, p.out_hi)})
        else:
            out.append({"name": p.layer.name, "sum": None, "accum_cast": None,
                        "cast": p.cast.mode, "range": (p.out_lo, p.out_hi)})
    return out


def dense_method(layer: QDense, in_lo=None, in_hi=None) -> str:
    """The arithmetic the golden model uses for the sums of ``layer``."""
    lo = layer.in_type.min_code if in_lo is None else in_lo
    hi = layer.in_type.max_code if in_hi is None else in_hi
    return _plan_dense(layer, lo, hi).method


# ---------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------

def _matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` in row blocks small enough that BLAS stays single-threaded.

    Multi-threaded BLAS on these skinny products is slower than one thread,
    and collapses when the cores are shared with other processes.
    """
    rows = max(1, BLAS_SERIAL_MNK // max(1, w.shape[0] * w.shape[1]))
    n = x.shape[0]
    if n <= rows:
        return x @ w
    y = np.empty((n, w.shape[1]), dtype=np.result_type(x, w))
    for a in range(0, n, rows):
        np.matmul(x[a:a + rows], w, out=y[a:a + rows])
    return y


def _run_dense(p: _DensePlan, x: np.ndarray) -> np.ndarray:
    layer = p.layer
    if p.method == "per_product":
        accum = layer.accum_type
        p_frac = layer.in_type.frac + layer.weight_type.frac
        xs = x.astype(np.int64) if p.weight.dtype == np.int64 else _obj(x)
        acc = np.zeros((x.shape[0], layer.n_out), dtype=np.int64)
        if p.sum_dtype is object:
            acc = _obj(acc)
        for i in range(layer.n_in):
            row = p.weight[i]
            if not np.any(row != 0):
                continue   # zero products cast to zero in every rounding mode
            q = requantize(xs[:, i:i + 1] * row[None, :], p_frac, accum)
            acc = acc + (_obj(q) if p.sum_dtype is object else q.astype(np.int64))
        acc = requantize(acc + p.bias, accum.frac, accum)
        return p.out_cast.apply(acc)

    if p.method in ("float32", "float64"):
        y = _matmul(np.asarray(x, dtype=p.weight.dtype), p.weight)
        if p.bias_f is not None:
            y += p.bias_f
            s = y.astype(p.sum_dtype)
        else:
            s = _obj(y.astype(np.int64)) if p.sum_dtype is object else y.astype(p.sum_dtype)
            if p.shift:
                s = s << p.shift
            s = s + p.bias
    elif p.method == "int64":
        s = x.astype(np.int64) @ p.weight
        if p.shift:
            s = s << p.shift
        s = s + p.bias
    else:
        s = _obj(x) @ p.weight
        if p.shift:
            s = s * (1 << p.shift)
        s = s + p.bias
    if p.acc_cast is not None:
        s = p.acc_cast.apply(s)
    return p.out_cast.apply(s)


def _pre_activation(layer, x: np.ndarray) -> np.ndarray:
    """The value of every element before the activation's cast (see :class:`QActivation`)."""
    kind = layer.kind
    if kind == "relu":
        return np.maximum(x, 0)
    if kind in ("leaky_relu", "prelu"):
        sx, sp = layer.shifts()
        slopes = np.array([layer.slope_of(k) for k in range(layer.size)], dtype=x.dtype)
        return np.where(x < 0, (x * slopes) << sp, x << sx)
    if kind == "clip":
        sx, _ = layer.shifts()
        b_lo, b_hi = layer.bounds
        return np.minimum(np.maximum(x << sx, b_lo), b_hi)
    if kind == "square":
        return x * x
    if kind in TABLE_ACTIVATIONS:
        index = layer.table_index(x, np.where)
        return layer.table_codes().astype(x.dtype)[index.astype(np.int64)]
    return x


def _run_act(p: _ActPlan, x: np.ndarray) -> np.ndarray:
    return p.cast.apply(_pre_activation(p.layer, x))


def _run_pool(p: _PoolPlan, x: np.ndarray) -> np.ndarray:
    return p.cast.apply(np.max(x[:, p.index], axis=2))


def _run(program: _Program, x: np.ndarray, trace: Optional[list] = None) -> np.ndarray:
    outs = {-1: x}
    for k, (p, src) in enumerate(zip(program.plans, program.sources)):
        x = outs[src[0]]
        if isinstance(p, _MergePlan):
            x = p.run([outs[j] for j in src])
        elif isinstance(p, _PoolPlan):
            x = _run_pool(p, x)
        elif isinstance(p, _ClassifierPlan):
            x = p.run(x)
        else:
            x = _run_dense(p, x) if isinstance(p, _DensePlan) else _run_act(p, x)
        outs[k] = x
        if trace is not None:
            trace.append(_as_dtype(np.asarray(x), not _fits_int64(p.layer.result_type)))
    return x


def image_shape_text(qmodel) -> str | None:
    """``[N, C, H, W]`` (or ``[N, C, L]``) of a convolutional model's inputs, for messages; None otherwise."""
    shape = getattr(qmodel, "input_shape", None)
    return None if shape is None else f"[N, {', '.join(map(str, shape))}]"


def check_codes(qmodel: QModel, x_codes) -> np.ndarray:
    """Validate input codes; return them as a 2-D int64 (or object) array."""
    x = np.asarray(x_codes)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    image = image_shape_text(qmodel)
    also = f", or {image}" if image else ""
    if x.ndim != 2:
        raise RtlgenError(f"input codes must have shape [N, {qmodel.n_in}] (or [{qmodel.n_in}]{also}), "
                          f"got {list(np.shape(x_codes))}")
    if x.shape[1] != qmodel.n_in:
        raise RtlgenError(f"model {qmodel.name!r} expects {qmodel.n_in} input features per vector, "
                          f"got {x.shape[1]}")
    typ = qmodel.input_type
    if x.dtype == object:
        for idx, v in np.ndenumerate(x):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise RtlgenError(f"input codes must be integers; element {idx} is {v!r}; "
                                  "real values go without --raw (or to predict())")
        x = _obj(np.vectorize(int, otypes=[object])(x)) if x.size else x
    elif not np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        raise RtlgenError(f"input codes must be integers, got dtype {x.dtype}; real values go without --raw "
                          "(or to predict())")
    if x.size:
        if x.dtype != object:
            too_low = x < typ.min_code
            too_high = x > typ.max_code
        else:
            too_low = np.array([v < typ.min_code for v in x.flat], dtype=bool).reshape(x.shape)
            too_high = np.array([v > typ.max_code for v in x.flat], dtype=bool).reshape(x.shape)
        bad = too_low | too_high
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise RtlgenError(
                f"input code {int(x[idx])} at index {idx} is outside the range "
                f"[{typ.min_code}, {typ.max_code}] of the input type {typ}")
    return _as_dtype(x, not _fits_int64(typ))


def _chunks(n: int, rows: int):
    return [(s, min(n, s + rows)) for s in range(0, n, rows)]


def _force(arithmetic: str) -> bool:
    if arithmetic not in ("auto", "object"):
        raise RtlgenError(f"arithmetic must be 'auto' or 'object', got {arithmetic!r}")
    return arithmetic == "object"


def predict_codes(qmodel: QModel, x_codes, *, threads: Optional[int] = None,
                  chunk_rows: int = CHUNK_ROWS, arithmetic: str = "auto") -> np.ndarray:
    """Output codes of ``qmodel`` for input codes ``x_codes`` ([N, n_in]).

    Returns an [N, n_out] array, int64 when the output type fits in 64 bits,
    Python integers (``object``) otherwise.  A 1-D input (one vector) gives a
    1-D output.  ``threads`` (default 1) processes chunks in parallel.
    ``arithmetic="object"`` computes everything with Python integers (slow;
    the results are the same).
    """
    one = np.ndim(x_codes) == 1
    force_object = _force(arithmetic)
    x = check_codes(qmodel, x_codes)
    if force_object:
        x = _obj(x)
    plans = _plan(qmodel, force_object)
    out_obj = not _fits_int64(qmodel.output_type)
    n = x.shape[0]
    out = np.empty((n, qmodel.n_out), dtype=object if out_obj else np.int64)

    def work(span):
        a, b = span
        out[a:b] = _as_dtype(np.asarray(_run(plans, x[a:b])), out_obj)

    spans = _chunks(n, max(1, int(chunk_rows)))
    workers = 1 if threads is None else max(1, int(threads))
    if len(spans) > 1 and workers > 1 and x.dtype != object:
        with ThreadPoolExecutor(max_workers=min(workers, len(spans))) as pool:
            list(pool.map(work, spans))
    else:
        for span in spans:
            work(span)
    return out[0] if one else out


def predict_trace(qmodel: QModel, x_codes, *, arithmetic: str = "auto") -> list:
    """Codes after every layer, in order: a list of [N, size] arrays."""
    force_object = _force(arithmetic)
    x = check_codes(qmodel, x_codes)
    trace = []
    _run(_plan(qmodel, force_object), _obj(x) if force_object else x, trace)
    return trace


def quantize_inputs(qmodel: QModel, x_float) -> np.ndarray:
    """Real-valued inputs ([N, n_in] or [n_in]) to codes of ``qmodel.input_type``.

    The type's rounding and overflow modes apply; NaN (and inf under WRAP)
    is an error.
    """
    x = np.asarray(x_float, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[-1] != qmodel.n_in:
        got = x.shape[-1] if x.ndim in (1, 2) else f"an array of shape {list(x.shape)}"
        raise RtlgenError(f"model {qmodel.name!r} expects {qmodel.n_in} input features per vector, got {got}")
    if np.isnan(x).any():
        idx = tuple(int(i) for i in np.argwhere(np.isnan(x))[0])
        raise RtlgenError(f"input value at index {idx} is NaN: clean the data first")
    return quantize(x, qmodel.input_type)


def predict(qmodel: QModel, x_float, **kwargs) -> np.ndarray:
    """Float64 output values for real-valued inputs.

    The inputs are quantized to ``qmodel.input_type`` (its rounding and
    overflow modes apply, see :func:`quantize_inputs`), run through
    :func:`predict_codes` and the output codes are converted to their values.
    """
    codes = quantize_inputs(qmodel, x_float)
    return to_float(predict_codes(qmodel, codes, **kwargs), qmodel.output_type)
