"""Element-wise activation layers."""

from __future__ import annotations

from amaranth.hdl import Mux, signed, unsigned
from amaranth.lib.memory import Memory

from ..ir.model import TABLE_ACTIVATIONS, QActivation
from ..numerics.fixed import bits_for_range
from .arith import Operand, cast_operand
from .layer import OneCycleLayer

__all__ = ["ActivationLayer", "fused_activation"]


def fused_activation(y: Operand, frac: int, act: QActivation) -> Operand:
    """``act`` (relu or linear) applied to ``y`` (``frac`` fraction bits) and cast to its result type:
    what a layer that does its following activation in its own output stage computes."""
    if act.kind == "relu" and y.lo < 0:
        # the sign bit, not `< 0`: Yosys (0.23) maps a comparison with 0 to a subtractor
        y = Operand(Mux(y.value[-1], 0, y.value), max(0, y.lo), max(0, y.hi))
    return cast_operand(y, frac, act.result_type)


class ActivationLayer(OneCycleLayer):
    """An element-wise activation: ``y = cast_result(pre(x))`` with ``pre`` of
    :class:`~rtlgen.ir.model.QActivation` (``relu``, ``linear``,
    ``leaky_relu``/``prelu``: a constant multiply on the negative side,
    ``clip``: two comparisons, ``sigmoid``/``tanh``: a ROM of the table,
    read combinationally, one read port per element; ``square``: a
    multiplier per element).

    A :class:`~rtlgen.hw.layer.OneCycleLayer`: no stored parameters, and no
    multipliers but for ``square`` (a slope is a constant).

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, size))
        the input vector, read in the cycle of ``i.valid``.
    ``o``: Out(CodeStreamSignature(result_type, size))
        element ``k`` is the activation of input element ``k``; holds its
        value until the next ``o.valid``.

    Latency
    -------
    1 cycle: the activation and the cast are combinational, then the output
    register.

    II
    --
    1, without back-pressure.
    """

    def __init__(self, layer: QActivation):
        super().__init__(layer, layer.size, layer.size)

    @property
    def operand_frac(self) -> int:
        return self.layer.pre_frac

    @property
    def multipliers(self) -> int:
        """A square is a multiplier per element; the other kinds have none (a slope is a constant)."""
        return self.layer.size if self.layer.kind == "square" else 0

    def operands(self, m):
        layer = self.layer
        t_in = layer.in_type
        table = None
        if layer.kind in TABLE_ACTIVATIONS:
            codes = [int(c) for c in layer.table_codes()]
            width, is_signed = bits_for_range(min(codes), max(codes))
            shape = signed(width) if is_signed else unsigned(width)
            table = Memory(shape=shape, depth=layer.table_size, init=codes)
            m.submodules.table = table
        for k in range(layer.size):
            x = self.i.payload[k]
            lo, hi = layer.pre_range(t_in.min_code, t_in.max_code)
            if layer.kind == "relu" and t_in.signed:
                # the sign bit, not `< 0`: Yosys (0.23) maps a comparison with 0 to a subtractor
                yield Operand(Mux(x[-1], 0, x), lo, hi)
            elif layer.kind in ("leaky_relu", "prelu"):
                sx, sp = layer.shifts()
                a = layer.slope_of(k)
                negative = x[-1] if t_in.signed else 0
                yield Operand(Mux(negative, (x * a) << sp, x << sx), lo, hi)
            elif layer.kind == "clip":
                sx, _ = layer.shifts()
                b_lo, b_hi = layer.bounds
                v = x << sx
                v = Mux(v < b_lo, b_lo, v)
                yield Operand(Mux(v > b_hi, b_hi, v), lo, hi)
            elif layer.kind == "square":
                yield Operand(x * x, lo, hi)
            elif table is not None:
                port = table.read_port(domain="comb")
                index = layer.table_index(x, Mux)
                m.d.comb += port.addr.eq(index)
                yield Operand(port.data, lo, hi)
            else:
                yield Operand(x, lo, hi)
