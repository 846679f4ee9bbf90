"""Fixed-point types and their arithmetic: the single source of truth.

Every bit width, rounding rule and overflow rule in rtlgen comes from this
module.  The golden model calls the numpy functions here; the hardware
generators call the very same integer formulas on Amaranth values
(:func:`round_shift` and :func:`overflow` are written once, generic over the
"integer-like" type and its select function); the reports read the widths.

Types follow the ``ap_fixed`` conventions:

``fixed<W,I,Q,O>`` / ``ufixed<W,I,Q,O>``
    *W* total bits, *I* integer bits (the sign bit included for signed
    types; *I* may be negative or larger than *W*), ``F = W - I`` fractional
    bits.  A code ``c`` (an integer of *W* bits) has the value ``c * 2**-F``.

Quantization (applied first, when bits below ``2**-F`` are dropped):

========== ==========================================================
TRN        floor, toward minus infinity (default)
TRN_ZERO   toward zero
RND        to nearest, ties toward plus infinity
RND_ZERO   to nearest, ties toward zero
RND_MIN_INF to nearest, ties toward minus infinity
RND_INF    to nearest, ties away from zero
RND_CONV   to nearest, ties to even
========== ==========================================================

Overflow (applied second, when the rounded code is out of range):

========== ==========================================================
WRAP       keep the low *W* bits, two's complement (default)
SAT        clamp to [min, max]
SAT_ZERO   any out-of-range code becomes zero
SAT_SYM    clamp to [-max, max] for signed types (the most negative code
           is treated as overflow and becomes -max); like SAT if unsigned
========== ==========================================================

The aliases ``ap_fixed<...>``, ``ap_ufixed<...>``, ``AP_RND``..., ``int<W>``,
``uint<W>``, ``ap_int<W>`` and ``ap_uint<W>`` are accepted by :func:`parse_type`.
"""

from __future__ import annotations

import enum
import operator
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import RtlgenError

__all__ = [
    "Quant", "Overflow", "FixedType", "parse_type", "as_type",
    "quantize", "requantize", "to_float", "rounding_offset", "round_shift", "overflow",
    "bits_for_range", "trailing_zeros", "product_range", "ZERO_FRAC",
    "QONNX_ROUNDING", "power_of_two_exponent", "quantizer_type", "exact_type",
]


class Quant(enum.Enum):
    """Quantization (rounding) modes."""
    TRN = "TRN"
    TRN_ZERO = "TRN_ZERO"
    RND = "RND"
    RND_ZERO = "RND_ZERO"
    RND_MIN_INF = "RND_MIN_INF"
    RND_INF = "RND_INF"
    RND_CONV = "RND_CONV"


class Overflow(enum.Enum):
    """Overflow modes."""
    WRAP = "WRAP"
    SAT = "SAT"
    SAT_ZERO = "SAT_ZERO"
    SAT_SYM = "SAT_SYM"


#: Fractional bits of plain integers.
ZERO_FRAC = 0


@dataclass(frozen=True)
class FixedType:
    """A fixed-point type: ``width`` bits, ``integer`` integer bits.

    The codes of the type are the integers in ``[min_code, max_code]``; the
    value of code ``c`` is ``c * 2**-frac``.
    """
    width: int
    integer: int
    signed: bool = True
    quant: Quant = Quant.TRN
    overflow: Overflow = Overflow.WRAP

    def __post_init__(self):
        if not isinstance(self.width, int) or self.width < 1:
            raise RtlgenError(f"fixed-point width must be a positive integer, got {self.width!r}")
        if self.signed and self.width < 2 and self.overflow is Overflow.SAT_SYM:
            raise RtlgenError("SAT_SYM needs at least 2 bits for a signed type")
        if self.width > 4096:
            raise RtlgenError(f"fixed-point width {self.width} is too large (at most 4096 bits)")

    @property
    def frac(self) -> int:
        """Fractional bits F = W - I (may be negative or exceed W)."""
        return self.width - self.integer

    @property
    def min_code(self) -> int:
        """Smallest code the type holds (ignoring SAT_SYM's restriction)."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        """Largest code the type holds."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self) -> Fraction:
        """The value of one code step, ``2**-F``."""
        return Fraction(2) ** -self.frac

    def value_of(self, code: int) -> Fraction:
        """Exact value of a code."""
        return Fraction(code) * self.lsb

    @property
    def min_value(self) -> Fraction:
        return self.value_of(self.min_code)

    @property
    def max_value(self) -> Fraction:
        return self.value_of(self.max_code)

    def with_modes(self, quant=None, overflow=None) -> "FixedType":
        return FixedType(self.width, self.integer, self.signed,
                         self.quant if quant is None else quant,
                         self.overflow if overflow is None else overflow)

    def __str__(self) -> str:
        base = "fixed" if self.signed else "ufixed"
        return f"{base}<{self.width},{self.integer},{self.quant.value},{self.overflow.value}>"


_TYPE_RE = re.compile(
    r"^\s*(?P<base>ap_fixed|ap_ufixed|fixed|ufixed|ap_int|ap_uint|int|uint)\s*<(?P<args>[^<>]*)>\s*$")


def _parse_mode(text: str, enum_cls, what: str, spec: str):
    name = text.strip().upper()
    if name.startswith("AP_"):
        name = name[3:]
    try:
        return enum_cls(name)
    except ValueError:
        choices = ", ".join(m.value for m in enum_cls)
        raise RtlgenError(f"type {spec!r}: unknown {what} mode {text.strip()!r} (use one of {choices})") from None


def parse_type(spec) -> FixedType:
    """Parse ``fixed<W,I[,Q[,O]]>`` and its aliases into a :class:`FixedType`."""
    if isinstance(spec, FixedType):
        return spec
    if not isinstance(spec, str):
        raise RtlgenError(f"expected a fixed-point type string such as 'fixed<8,3,RND,SAT>', got {spec!r}")
    match = _TYPE_RE.match(spec)
    if not match:
        raise RtlgenError(
            f"malformed type {spec!r}: write fixed<W,I,Q,O> or ufixed<W,I,Q,O> "
            "(ap_fixed/ap_ufixed, int<W>/uint<W> are accepted too), e.g. 'fixed<8,3,RND,SAT>'")
    base = match.group("base")
    args = [a.strip() for a in match.group("args").split(",")]
    signed = base in ("ap_fixed", "fixed", "ap_int", "int")
    if base in ("ap_int", "ap_uint", "int", "uint"):
        if len(args) != 1:
            raise RtlgenError(f"malformed type {spec!r}: {base}<W> takes exactly one width")
        args = [args[0], args[0]]
    if not 2 <= len(args) <= 5:
        raise RtlgenError(f"malformed type {spec!r}: expected <W,I[,Q[,O]]>")
    try:
        width = int(args[0])
        integer = int(args[1])
    except ValueError:
        raise RtlgenError(f"malformed type {spec!r}: W and I must be integers") from None
    if width < 1:
        raise RtlgenError(f"malformed type {spec!r}: the width W must be at least 1")
    quant = _parse_mode(args[2], Quant, "quantization", spec) if len(args) > 2 else Quant.TRN
    ovf = _parse_mode(args[3], Overflow, "overflow", spec) if len(args) > 3 else Overflow.WRAP
    if len(args) == 5 and args[4] != "0":
        raise RtlgenError(f"type {spec!r}: saturation bits N other than 0 are not supported; drop the fifth parameter")
    return FixedType(width, integer, signed, quant, ovf)


def as_type(spec) -> FixedType:
    """Accept a :class:`FixedType` or a type string."""
    return parse_type(spec)


# ---------------------------------------------------------------------------
# Generic integer formulas.  ``x`` may be a numpy integer array (int64 or
# object dtype holding Python ints) or an Amaranth value; ``where(c, a, b)``
# is ``np.where`` or ``amaranth.Mux``.  Both the golden model and the
# hardware go through these functions, so they cannot disagree.
# ---------------------------------------------------------------------------

def rounding_offset(quant: Quant, shift: int) -> int | None:
    """The constant :func:`round_shift` adds before its arithmetic shift, when it does not
    depend on ``x`` (None for the modes that look at the sign or at the kept bits).

    A sum that adds this constant itself is then cast with ``TRN``: an adder graph
    folds it into its bias instead of adding it after the sum.
    """
    if shift <= 0 or quant is Quant.TRN:
        return 0
    if quant is Quant.RND:
        return 1 << (shift - 1)
    if quant is Quant.RND_MIN_INF:
        return (1 << (shift - 1)) - 1
    return None


def round_shift(x, shift: int, quant: Quant, where, shr=operator.rshift, shl=operator.lshift):
    """Drop ``shift`` low bits of the integer ``x`` with rounding ``quant``.

    Returns ``round(x / 2**shift)``.  For ``shift <= 0`` the result is
    ``x << -shift`` (exact).  Formulas are add-then-arithmetic-shift, which is
    what the hardware builds.  ``shr(x, k)``/``shl(x, k)`` shift by the
    constant ``k`` (the hardware gives its wiring forms; a shift operator on
    a hardware value is a shifter that the netlist must carry until
    synthesis removes it).
    """
    if shift <= 0:
        return shl(x, -shift)
    half = 1 << (shift - 1)
    one_less = (1 << shift) - 1
    offset = rounding_offset(quant, shift)
    if offset is not None:             # TRN, RND, RND_MIN_INF
        return shr(x + offset, shift) if offset else shr(x, shift)
    if quant is Quant.TRN_ZERO:
        return shr(x + where(x < 0, one_less, 0), shift)
    if quant is Quant.RND_ZERO:
        return shr(x + where(x < 0, half, half - 1), shift)
    if quant is Quant.RND_INF:
        return shr(x + where(x < 0, half - 1, half), shift)
    if quant is Quant.RND_CONV:
        return shr(x + (half - 1) + (shr(x, shift) & 1), shift)
    raise AssertionError(quant)


def overflow(x, dst: FixedType, where, wrap, above=operator.gt, below=operator.lt):
    """Bring the integer ``x`` into the code range of ``dst``.

    ``wrap(x)`` must return the low ``dst.width`` bits of ``x`` read with
    ``dst``'s signedness (the caller knows how on its integer type).
    ``above(x, c)`` and ``below(x, c)`` are ``x > c`` and ``x < c``; a
    caller may give cheaper forms of them (the hardware tests the bits
    above the result's top instead of comparing whole words).
    """
    lo, hi = dst.min_code, dst.max_code
    mode = dst.overflow
    if mode is Overflow.WRAP:
        return wrap(x)
    if mode is Overflow.SAT:
        return where(above(x, hi), hi, where(below(x, lo), lo, x))
    if mode is Overflow.SAT_ZERO:
        return where(above(x, hi) | below(x, lo), 0, x)
    if mode is Overflow.SAT_SYM:
        sym_lo = -hi if dst.signed else lo
        return where(above(x, hi), hi, where(below(x, sym_lo), sym_lo, x))
    raise AssertionError(mode)


# ---------------------------------------------------------------------------
# numpy implementation
# ---------------------------------------------------------------------------

_INT64_SAFE_BITS = 62


def _int_bits(x: np.ndarray) -> int:
    """Bits needed for the largest magnitude in ``x`` (0 for empty arrays)."""
    if x.size == 0:
        return 0
    if x.dtype == object:
        return max(int(abs(v)).bit_length() for v in x.flat)
    return max(int(np.max(x)).bit_length(), int(-np.min(x)).bit_length())


def _as_int_array(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object:
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"integer codes expected, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 1 << 63:
        return arr.astype(object)
    return arr.astype(np.int64)


def _to_object(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape, dtype=object)
    if x.ndim:
        out.reshape(-1)[:] = [int(v) for v in x.flat]
    else:
        out[()] = int(x)
    return out


def _np_wrap(dst: FixedType):
    w = dst.width

    def wrap(x):
        mask = (1 << w) - 1
        low = x & mask
        if dst.signed:
            low = _where_for(low)(low > dst.max_code, low - (1 << w), low)
        return low
    return wrap


def _obj_scalar(v):
    if isinstance(v, np.ndarray):
        return v if v.dtype == object else v.astype(object)
    out = np.empty((), dtype=object)
    out[()] = int(v)
    return out


def _np_where(c, a, b):
    """``np.where`` that keeps Python integers exact on object arrays."""
    if any(isinstance(v, np.ndarray) and v.dtype == object for v in (a, b)) or \
            any(isinstance(v, int) and abs(v) >= 1 << 62 for v in (a, b)):
        return np.where(np.asarray(c, dtype=bool), _obj_scalar(a), _obj_scalar(b))
    return np.where(np.asarray(c, dtype=bool), a, b)


def _where_for(x):
    if x.dtype == object:
        return lambda c, a, b: np.where(np.asarray(c, dtype=bool), _obj_scalar(a), _obj_scalar(b))
    return _np_where


def _narrow(x: np.ndarray) -> np.ndarray:
    """Return int64 when every value fits, object otherwise."""
    if x.dtype == object and _int_bits(x) <= _INT64_SAFE_BITS:
        return x.astype(np.int64)
    return x


def requantize(codes, src_frac: int, dst) -> np.ndarray:
    """Cast integer codes with ``src_frac`` fractional bits to type ``dst``.

    Exact for any widths: int64 is used while every intermediate provably
    fits, Python integers (object arrays) beyond.
    """
    dst = as_type(dst)
    x = _as_int_array(codes)
    shift = src_frac - dst.frac
    need = max(_int_bits(x) + max(0, -shift) + 2, abs(shift) + 2, dst.width + 2)
    if x.dtype != object and need > _INT64_SAFE_BITS:
        x = _to_object(x)
    y = round_shift(x, shift, dst.quant, _where_for(x))
    y = overflow(y, dst, _where_for(y), _np_wrap(dst))
    return _narrow(np.asarray(y))


def quantize(values, dst) -> np.ndarray:
    """Quantize real values (float array) to integer codes of ``dst``.

    Exact: ``values * 2**F`` is a power-of-two scaling (exact in binary
    floating point), the rounding decision uses the exact remainder, and the
    overflow step runs on exact integers.  NaN cannot be quantized; +/-inf
    saturate under the SAT modes and are rejected under WRAP.
    """
    dst = as_type(dst)
    v_in = np.asarray(values, dtype=np.float64)
    v = np.atleast_1d(v_in)
    if np.isnan(v).any():
        raise RtlgenError(f"cannot quantize NaN to {dst}: clean the data or the model first")
    inf = np.isinf(v)
    if inf.any():
        if dst.overflow is Overflow.WRAP:
            raise RtlgenError(f"cannot quantize +/-inf to {dst} with WRAP overflow: use SAT or clean the data")
        v = np.where(inf, np.sign(v) * 2.0 ** (dst.integer + 4), v)
    if dst.overflow is not Overflow.WRAP:
        # Saturating modes: clamping far outside the range changes nothing.
        bound = np.ldexp(1.0, dst.integer + 2)
        v = np.clip(v, -bound, bound)
    with np.errstate(over="ignore", under="ignore"):
        y = np.ldexp(v, dst.frac)      # exact power-of-two scaling
    # A nonzero value so small that the scaling underflows to zero lies
    # strictly between -1 and 1 code steps: keep its sign with the smallest
    # subnormal, which gives the same rounding decisions.
    y = np.where((y == 0) & (v != 0), np.copysign(5e-324, v), y)
    small = np.abs(y) < 2.0 ** _INT64_SAFE_BITS
    fl = np.floor(np.where(small, y, 0.0))
    rem = np.where(small, y, 0.0) - fl  # exact remainder in [0, 1)
    q = dst.quant
    if q is Quant.TRN:
        up = np.zeros(v.shape, dtype=bool)
    elif q is Quant.TRN_ZERO:
        up = (rem > 0) & (y < 0)
    elif q is Quant.RND:
        up = rem >= 0.5
    elif q is Quant.RND_MIN_INF:
        up = rem > 0.5
    elif q is Quant.RND_ZERO:
        up = (rem > 0.5) | ((rem == 0.5) & (y < 0))
    elif q is Quant.RND_INF:
        up = (rem > 0.5) | ((rem == 0.5) & (y > 0))
    elif q is Quant.RND_CONV:
        odd = np.mod(fl, 2.0) == 1.0
        up = (rem > 0.5) | ((rem == 0.5) & odd)
    else:  # pragma: no cover
        raise AssertionError(q)
    codes = fl.astype(np.int64) + up.astype(np.int64)
    if dst.width + 2 > _INT64_SAFE_BITS:
        codes = _to_object(codes)
    if not small.all():
        # Values at or beyond 2**62 code steps are integers already (a
        # double has 53 significant bits), so no rounding applies: take them
        # exactly as Python integers.
        codes = codes if codes.dtype == object else _to_object(codes)
        for idx in zip(*np.nonzero(~small)):
            codes[idx] = int(Fraction(float(v[idx])) * Fraction(2) ** dst.frac)
    out = overflow(codes, dst, _where_for(codes), _np_wrap(dst))
    return _narrow(np.asarray(out)).reshape(v_in.shape)


def to_float(codes, typ) -> np.ndarray:
    """Values of codes as float64 (exact while they fit in a double)."""
    frac = typ if isinstance(typ, int) else as_type(typ).frac
    arr = np.asarray(codes)
    if arr.dtype == object:
        return np.array([float(Fraction(int(c)) * Fraction(2) ** -frac) for c in arr.flat],
                        dtype=np.float64).reshape(arr.shape)
    return np.ldexp(arr.astype(np.float64), -frac)


# ---------------------------------------------------------------------------
# Width bookkeeping
# ---------------------------------------------------------------------------

def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """Smallest (width, signed) two's complement shape holding [lo, hi]."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError("empty range")
    if lo >= 0:
        return max(1, hi.bit_length()), False
    hi_bits = hi.bit_length() if hi >= 0 else 0
    width = max(hi_bits, (-lo - 1).bit_length()) + 1
    return width, True


def trailing_zeros(values) -> int:
    """The low zero bits that all of ``values`` (integers) share; 0 when every value is 0."""
    acc = 0
    for v in values:
        acc |= int(v)
    return (acc & -acc).bit_length() - 1 if acc else 0


def product_range(a_lo: int, a_hi: int, b_lo: int, b_hi: int) -> tuple[int, int]:
    """Exact range of the product of two integer intervals."""
    corners = (a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)
    return min(corners), max(corners)


# ---------------------------------------------------------------------------
# Integer quantizers of quantization-aware models (QONNX ``Quant``)
# ---------------------------------------------------------------------------

#: QONNX/Brevitas rounding modes and the quantization mode that rounds the
#: same way (``CEIL`` and ``UP`` have none: they round away from the grid's
#: lower neighbour even at exact ties, which no ``fixed`` mode does).
QONNX_ROUNDING = {
    "ROUND": Quant.RND_CONV, "HALF_EVEN": Quant.RND_CONV,   # numpy.round: ties to even
    "FLOOR": Quant.TRN,
    "DOWN": Quant.TRN_ZERO,                                 # numpy.fix
    "HALF_UP": Quant.RND_INF,                               # ties away from zero
    "HALF_DOWN": Quant.RND_ZERO,                            # ties toward zero
}


def power_of_two_exponent(scale: float):
    """``e`` with ``scale == 2**e`` exactly, or None when ``scale`` is not a power of two."""
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        return None
    mantissa, exponent = np.frexp(scale)
    return int(exponent) - 1 if mantissa == 0.5 else None


def quantizer_type(bits: int, scale_exponent: int, signed: bool, narrow: bool, rounding: str) -> FixedType:
    """The type of an integer quantizer ``y = clamp(round(x / s)) * s`` with ``s = 2**scale_exponent``.

    Its codes are the integers ``x / s`` in ``[min, max]`` of a ``bits``-bit
    integer, its rounding is ``rounding`` (a :data:`QONNX_ROUNDING` key), and
    clamping is saturation: ``SAT``, or ``SAT_SYM`` for a signed narrow range
    (``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``).  Clamping before rounding,
    as QONNX does, equals rounding before saturating, because the bounds are
    integers.  Raises ValueError for what no type expresses (the caller
    names the node).
    """
    mode = QONNX_ROUNDING.get(str(rounding).upper())
    if mode is None:
        raise ValueError(f"rounding mode {rounding!r} has no fixed-point equivalent (supported: "
                         f"{', '.join(QONNX_ROUNDING)})")
    if narrow and not signed:
        raise ValueError("an unsigned narrow range (codes 0 .. 2**bits - 2) has no fixed-point equivalent")
    if bits < (2 if signed else 1):
        raise ValueError(f"a {'signed' if signed else 'unsigned'} quantizer needs at least "
                         f"{2 if signed else 1} bits, got {bits}")
    overflow_mode = Overflow.SAT_SYM if (signed and narrow) else Overflow.SAT
    return FixedType(int(bits), int(bits) + int(scale_exponent), bool(signed), mode, overflow_mode)


def exact_type(lo: int, hi: int, frac: int) -> FixedType:
    """The narrowest type whose codes of ``2**-frac`` hold every code in ``[lo, hi]``
    (truncating and wrapping, which never apply to values in that range)."""
    width, signed = bits_for_range(min(int(lo), 0), max(int(hi), 0))
    return FixedType(width, width - int(frac), signed, Quant.TRN, Overflow.WRAP)
