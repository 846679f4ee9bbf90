"""Max pooling on a flattened feature map."""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring

from ..ir.conv import QMaxPool
from .ports import layer_members
from .arith import Operand, cast_operand

__all__ = ["MaxPoolLayer"]


class MaxPoolLayer(wiring.Component):
    """``y[c, o] = cast_result(max of the window's codes)``.

    Ports
    -----
    ``i``: In(stream.Signature(ArrayLayout(in codes, n_in), always_ready=True))
        the feature map, flattened in C,H,W order.
    ``o``: Out(stream.Signature(ArrayLayout(result codes, n_out), always_ready=True))
        registered; holds its value until the next ``o.valid``.

    Every output is a balanced tree of comparators over its window (the
    taps inside the input only) followed by the registered cast.  Latency 1
    cycle, II 1, no multipliers.
    """

    latency = 1
    ii = 1
    multipliers = 0

    def __init__(self, layer: QMaxPool):
        self.layer = layer
        super().__init__(layer_members(layer.in_type, layer.n_in, layer.result_type, layer.n_out))

    def elaborate(self, platform):
        m = Module()
        t_in, t_out = self.layer.in_type, self.layer.result_type
        m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(self.i.valid):
            for j, window in enumerate(self.layer.windows()):
                nodes = [self.i.payload[k] for k in window]
                while len(nodes) > 1:
                    nxt = [Mux(a > b, a, b) for a, b in zip(nodes[0::2], nodes[1::2])]
                    if len(nodes) % 2:
                        nxt.append(nodes[-1])
                    nodes = nxt
                op = Operand(nodes[0], t_in.min_code, t_in.max_code)
                m.d.sync += self.o.payload[j].eq(cast_operand(op, t_in.frac, t_out).value)
        return m
