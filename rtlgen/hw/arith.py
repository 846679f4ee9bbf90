"""Arithmetic building blocks shared by the hardware generators.

Every value carried through a datapath is an :class:`Operand`: an Amaranth
value together with the exact integer range it can take.  Signal widths are
derived from those ranges with :func:`rtlgen.numerics.fixed.bits_for_range`;
casts use :func:`rtlgen.numerics.fixed.round_shift` and
:func:`rtlgen.numerics.fixed.overflow`, the same formulas the golden model
runs in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..numerics.adder_graph import tree_depth
from ..numerics.fixed import FixedType, Overflow, bits_for_range, overflow, round_shift

__all__ = ["shape_of", "range_shape", "Operand", "const_operand", "cast_operand",
           "adder_tree", "select", "tree_depth", "tree_stages", "Cast"]


def shape_of(t: FixedType) -> Shape:
    """The Amaranth shape holding the codes of fixed-point type ``t``."""
    return signed(t.width) if t.signed else unsigned(t.width)


def range_shape(lo: int, hi: int) -> Shape:
    """The narrowest Amaranth shape holding every integer in [lo, hi]."""
    width, is_signed = bits_for_range(lo, hi)
    return signed(width) if is_signed else unsigned(width)


@dataclass(frozen=True)
class Operand:
    """An integer-valued Amaranth value and its exact range [lo, hi]."""
    value: Value
    lo: int
    hi: int

    def shifted(self, k: int) -> "Operand":
        """Multiply by ``2**k`` (k >= 0), exactly."""
        if k == 0:
            return self
        return Operand(_shift_left(self.value, k), self.lo << k, self.hi << k)


def const_operand(code: int) -> Operand:
    return Operand(Const(int(code), range_shape(code, code)), int(code), int(code))


def _signal_for(m: Module, op: Operand, name: str, domain: str | None) -> Operand:
    sig = Signal(range_shape(op.lo, op.hi), name=name)
    if domain is None:
        m.d.comb += sig.eq(op.value)
    else:
        m.d[domain] += sig.eq(op.value)
    return Operand(sig, op.lo, op.hi)


def _wrap(t: FixedType):
    def wrap(x):
        x = Value.cast(x)
        if len(x) < t.width:
            # widen first, with its sign: slicing a narrower value would drop the sign extension
            # (a 6-bit -32 wrapped to 7 unsigned bits is 96, not 32)
            x = x + Const(0, signed(t.width) if x.shape().signed else unsigned(t.width))
        low = x[:t.width]
        return low.as_signed() if t.signed else low
    return wrap


def _cast_bound(code: int, shift: int, dst: FixedType) -> int:
    """Where the cast sends a single integer (to bound the result)."""
    return int(round_shift(np.array([code], dtype=object), shift, dst.quant,
                           lambda c, a, b: np.where(np.asarray(c, dtype=bool), a, b))[0])


def _range_tests(x: Value, lo: int, hi: int):
    """``x > c`` and ``x < c`` for ``x`` in [lo, hi], as bit tests where they can be.

    The limits of a fixed-point type are ``2**k - 1``, ``-2**k``, ``0`` and
    ``-2**k + 1``.  Against those, the comparison is a test of the bits of
    ``x`` from bit ``k`` up: are they all zero (all one for the lower
    limit)?  That is a LUT reduction, where a comparison with a constant is a
    carry chain as wide as ``x``, plus the hop out of it.  ``x`` is read as
    the narrowest word that holds [lo, hi].
    """
    width, is_signed = bits_for_range(lo, hi)
    x = Value.cast(x)
    if len(x) < width:                                 # a loose range: extend x with its sign
        top = x[-1] if x.shape().signed else Const(0, 1)
        x = Cat(x, top.replicate(width - len(x)))
    x = x[:width]
    if is_signed:
        x = x.as_signed()
    magnitude = x[:width - 1] if is_signed else x      # the bits below the sign
    negative = x[width - 1] if is_signed else Const(0, 1)

    def above(_, c: int):
        if c >= hi:
            return Const(0, 1)
        if c < lo:
            return Const(1, 1)
        k = (c + 1).bit_length() - 1
        if c >= 0 and c + 1 == 1 << k:                 # x >= 2**k: a bit from k up is set
            return ~negative & magnitude[k:].any()
        return x > c

    def below(_, c: int):
        if c <= lo:
            return Const(0, 1)
        if c > hi:
            return Const(1, 1)
        if c == 0:
            return negative
        k = (-c).bit_length() - 1
        if c == -(1 << k):                             # x < -2**k: a bit from k up is clear
            return negative & ~magnitude[k:].all()
        k = (1 - c).bit_length() - 1
        if c == 1 - (1 << k):                          # x <= -2**k: as above, or x == -2**k
            return negative & (~magnitude[k:].all() | ~magnitude[:k].any())
        return x < c

    return above, below


def _shift_right(x, k: int) -> Value:
    return Value.cast(x).shift_right(k)


def _shift_left(x, k: int) -> Value:
    return Value.cast(x).shift_left(k)


def cast_operand(op: Operand, src_frac: int, dst: FixedType) -> Operand:
    """Combinationally cast ``op`` (``src_frac`` fractional bits) to ``dst``.

    Rounding is skipped when no bits are dropped, and the overflow logic
    when the rounded range provably fits ``dst``.
    """
    shift = src_frac - dst.frac
    value = round_shift(op.value, shift, dst.quant, Mux, _shift_right, _shift_left)
    lo, hi = _cast_bound(op.lo, shift, dst), _cast_bound(op.hi, shift, dst)  # rounding is monotonic
    low_limit = -dst.max_code if (dst.overflow is Overflow.SAT_SYM and dst.signed) else dst.min_code
    if low_limit <= lo and hi <= dst.max_code:
        return Operand(value, lo, hi)
    above, below = _range_tests(value, lo, hi)
    value = overflow(value, dst, Mux, _wrap(dst), above, below)
    return Operand(value, low_limit if dst.overflow is not Overflow.WRAP else dst.min_code, dst.max_code)


def adder_tree(m: Module, leaves: list[Operand], *, levels_per_stage: int, stages: int,
               name: str, wrap: FixedType | None = None) -> Operand:
    """Sum ``leaves`` with a balanced tree of two-input adders.

    A register is placed after every ``levels_per_stage`` adder levels,
    exactly ``stages`` times in total (the tree is padded with pass-through
    levels when it is shallower, so that every tree of a layer has the same
    latency).  The returned root is combinational after the last register.
    With ``wrap``, every sum keeps only the low bits of that type (modular
    accumulation, as an hls4ml ``accum_t`` with WRAP does).
    """
    nodes = list(leaves) if leaves else [const_operand(0)]
    level = 0
    while len(nodes) > 1 or level < stages * levels_per_stage:
        if len(nodes) > 1:
            nxt = []
            for k in range(0, len(nodes) - 1, 2):
                a, b = nodes[k], nodes[k + 1]
                if wrap is not None:
                    s = Operand(_wrap(wrap)(a.value + b.value), wrap.min_code, wrap.max_code)
                else:
                    s = Operand(a.value + b.value, a.lo + b.lo, a.hi + b.hi)
                nxt.append(s)
            if len(nodes) % 2:
                nxt.append(nodes[-1])
            nodes = nxt
        level += 1
        if level % levels_per_stage == 0 and level <= stages * levels_per_stage:
            nodes = [_signal_for(m, n, f"{name}_s{level // levels_per_stage}_{k}", "sync")
                     for k, n in enumerate(nodes)]
    return nodes[0]


def select(values: list, index: Value, *, default=0):
    """``values[index]`` as a balanced tree of two-way muxes on the bits of ``index``.

    Every index past the end of ``values`` reads as ``default``.  Built from
    continuous expressions (no procedural case statement), so every simulator
    evaluates it from time zero.
    """
    width = max(len(index), (len(values) - 1).bit_length())
    padded = list(values) + [default] * ((1 << width) - len(values))

    def build(items, bit):
        if bit < 0:
            return items[0]
        half = len(items) // 2
        return Mux(index[bit], build(items[half:], bit - 1), build(items[:half], bit - 1))
    return build(padded, width - 1)


def tree_stages(depth: int, levels_per_stage: int) -> int:
    """Registers inside a tree of ``depth`` levels (the root is not registered)."""
    return max(0, -(-depth // levels_per_stage) - 1)


class Cast(wiring.Component):
    """Combinational cast of an integer code to a fixed-point type.

    Ports
    -----
    ``i``: In(shape of the source codes)
        a code with ``src_frac`` fractional bits.
    ``o``: Out(shape_of(dst))
        ``i`` rounded with ``dst``'s quantization mode, then brought into
        range with its overflow mode.

    Latency
    -------
    0: combinational.

    II
    --
    1.
    """

    def __init__(self, src_shape: Shape, src_frac: int, dst: FixedType):
        self.src_shape = Shape.cast(src_shape)
        self.src_frac = src_frac
        self.dst = dst
        super().__init__({"i": In(self.src_shape), "o": Out(shape_of(dst))})

    def elaborate(self, platform):
        m = Module()
        s = self.src_shape
        lo = -(1 << (s.width - 1)) if s.signed else 0
        hi = (1 << (s.width - 1)) - 1 if s.signed else (1 << s.width) - 1
        m.d.comb += self.o.eq(cast_operand(Operand(self.i, lo, hi), self.src_frac, self.dst).value)
        return m
