"""The network top: input register, layers in a chain, II throttle."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from ..ir.conv import QMaxPool
from ..ir.model import QActivation, QDense, QModel
from .activation import ActivationLayer
from .ports import core_members
from .dense import DenseLayer
from .pool import MaxPoolLayer

__all__ = ["Network", "make_layer"]


def make_layer(layer):
    """The hardware component for one quantized IR layer."""
    if isinstance(layer, QMaxPool):
        return MaxPoolLayer(layer)
    if isinstance(layer, QDense):
        return DenseLayer(layer)
    if isinstance(layer, QActivation):
        return ActivationLayer(layer)
    raise TypeError(f"no hardware for {type(layer).__name__}")


class Network(wiring.Component):
    """A fixed-latency inference core for a quantized model.

    Ports
    -----
    ``in_valid``: In(1), ``in_ready``: Out(1)
        an input vector is accepted on a clock edge where both are high.
        ``in_ready`` is low for ``ii - 1`` cycles after each accepted vector
        and high otherwise (always high when ``ii == 1``).
    ``in_data``: In(ArrayLayout(input codes, n_in))
        element ``k`` at bits ``[k*W, (k+1)*W)``, two's complement when the
        input type is signed.
    ``out_valid``: Out(1), ``out_data``: Out(ArrayLayout(output codes, n_out))
        ``out_valid`` is high for one cycle exactly ``latency`` cycles after
        the edge that accepted the corresponding input; ``out_data`` holds
        its value until the next ``out_valid``.  There is no output
        back-pressure: the consumer must take every result (trigger style).

    Latency ``self.latency`` = 1 (input register) + the sum of the layers'
    latencies; II ``self.ii`` = the largest reuse factor.  ``rst`` is a
    synchronous, active-high reset of the control state.
    """

    def __init__(self, model: QModel):
        self.model = model
        self.layers = [make_layer(layer) for layer in model.layers]
        self.latency = 1 + sum(layer.latency for layer in self.layers)
        self.ii = max([layer.ii for layer in self.layers] or [1])
        super().__init__(core_members(model.input_type, model.n_in, model.output_type, model.n_out))

    def elaborate(self, platform):
        m = Module()
        accept = Signal()
        m.d.comb += accept.eq(self.in_valid & self.in_ready)
        if self.ii == 1:
            m.d.comb += self.in_ready.eq(1)
        else:
            cooldown = Signal(range(self.ii), name="cooldown")
            m.d.comb += self.in_ready.eq(cooldown == 0)
            with m.If(accept):
                m.d.sync += cooldown.eq(self.ii - 1)
            with m.Elif(cooldown != 0):
                m.d.sync += cooldown.eq(cooldown - 1)

        x_valid = Signal(name="x_valid")
        x_data = Signal.like(self.in_data, name="x_data")
        m.d.sync += x_valid.eq(accept)
        with m.If(accept):
            m.d.sync += x_data.eq(self.in_data)

        valid, payload = x_valid, x_data
        for k, layer in enumerate(self.layers):
            m.submodules[f"layer{k}_{_ident(layer.layer.name)}"] = layer
            m.d.comb += [layer.i.valid.eq(valid), layer.i.payload.eq(payload)]
            valid, payload = layer.o.valid, layer.o.payload
        m.d.comb += [self.out_valid.eq(valid), self.out_data.eq(payload)]
        return m


def _ident(name: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    return out or "layer"
