"""Element-wise activation layers."""

from __future__ import annotations

from amaranth.hdl import Mux

from ..ir.model import QActivation
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
    """``relu``: ``y = cast_result(max(0, x))``; ``linear``: ``y = cast_result(x)``.

    A :class:`~rtlgen.hw.layer.OneCycleLayer`: no stored parameters, no
    multipliers.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, size))
        the input vector, read in the cycle of ``i.valid``.
    ``o``: Out(CodeStreamSignature(result_type, size))
        element ``k`` is the activation of input element ``k``; holds its
        value until the next ``o.valid``.

    Latency
    -------
    1 cycle: the maximum and the cast are combinational, then the output
    register.

    II
    --
    1, without back-pressure.
    """

    def __init__(self, layer: QActivation):
        super().__init__(layer, layer.size, layer.size)

    def operands(self):
        t_in = self.layer.in_type
        for k in range(self.layer.size):
            x = self.i.payload[k]
            if self.layer.kind == "relu" and t_in.signed:
                # the sign bit, not `< 0`: Yosys (0.23) maps a comparison with 0 to a subtractor
                yield Operand(Mux(x[-1], 0, x), max(0, t_in.min_code), max(0, t_in.max_code))
            else:
                yield Operand(x, t_in.min_code, t_in.max_code)
