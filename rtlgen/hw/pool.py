"""Max pooling on a flattened feature map."""

from __future__ import annotations

from amaranth.hdl import Mux

from ..ir.conv import QMaxPool
from .arith import Operand
from .layer import OneCycleLayer

__all__ = ["MaxPoolLayer"]


class MaxPoolLayer(OneCycleLayer):
    """``y[c, o] = cast_result(max of the window's codes)``.

    A :class:`~rtlgen.hw.layer.OneCycleLayer`: no stored parameters, no
    multipliers.  Every output is a balanced tree of comparators over its
    window (the taps inside the input only) followed by the registered
    cast.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, n_in))
        the feature map, flattened in C,H,W order, read in the cycle of
        ``i.valid``.
    ``o``: Out(CodeStreamSignature(result_type, n_out))
        the pooled map in the same order; holds its value until the next
        ``o.valid``.

    Latency
    -------
    1 cycle: the comparator trees and the cast are combinational, then
    the output register.

    II
    --
    1, without back-pressure.
    """

    def __init__(self, layer: QMaxPool):
        super().__init__(layer, layer.n_in, layer.n_out)

    def operands(self, m):
        t_in = self.layer.in_type
        for window in self.layer.windows():
            nodes = [self.i.payload[k] for k in window]
            while len(nodes) > 1:
                nxt = [Mux(a > b, a, b) for a, b in zip(nodes[0::2], nodes[1::2])]
                if len(nodes) % 2:
                    nxt.append(nodes[-1])
                nodes = nxt
            yield Operand(nodes[0], t_in.min_code, t_in.max_code)
