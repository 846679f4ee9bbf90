"""Element-wise activation layers."""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring

from ..ir.model import QActivation
from .ports import layer_members
from .arith import Operand, cast_operand

__all__ = ["ActivationLayer"]


class ActivationLayer(wiring.Component):
    """``relu``: ``y = cast_result(max(0, x))``; ``linear``: ``y = cast_result(x)``.

    Ports
    -----
    ``i``: In(stream.Signature(ArrayLayout(in codes, size), always_ready=True))
    ``o``: Out(stream.Signature(ArrayLayout(result codes, size), always_ready=True))
        registered; holds its value until the next ``o.valid``.

    Latency 1 cycle, II 1, no back-pressure.
    """

    latency = 1
    ii = 1
    multipliers = 0

    def __init__(self, layer: QActivation):
        self.layer = layer
        super().__init__(layer_members(layer.in_type, layer.size, layer.result_type, layer.size))

    def elaborate(self, platform):
        m = Module()
        t_in, t_out = self.layer.in_type, self.layer.result_type
        m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(self.i.valid):
            for k in range(self.layer.size):
                x = self.i.payload[k]
                if self.layer.kind == "relu":
                    op = Operand(Mux(x < 0, 0, x), max(0, t_in.min_code), max(0, t_in.max_code)) \
                        if t_in.signed else Operand(x, t_in.min_code, t_in.max_code)
                else:
                    op = Operand(x, t_in.min_code, t_in.max_code)
                m.d.sync += self.o.payload[k].eq(cast_operand(op, t_in.frac, t_out).value)
        return m
