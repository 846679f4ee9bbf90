"""The protocol every layer component of a network core follows.

A network top (:class:`rtlgen.hw.network.Network`,
:class:`rtlgen.hw.stream.StreamNetwork`) chains its layers with
``wiring.connect(m, previous.o, layer.i)`` (a layer with several inputs names
its ports in ``input_ports``, and each is connected to the layer it reads),
sums their latencies, takes the largest II and connects every parameter bank
to the configuration bus; the build reports count the multipliers.  :class:`LayerHardware` states what
they use, and nothing more.  :class:`OneCycleLayer` is the base of the
layers that compute in one registered step.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

from amaranth.hdl import Module
from amaranth.lib import wiring

from .arith import Operand, cast_operand
from .ports import layer_members
from .storage import ParamBank

__all__ = ["LayerHardware", "OneCycleLayer"]


@runtime_checkable
class LayerHardware(Protocol):
    """The hardware of one IR layer, as a network top uses it.

    Members
    -------
    ``i``: In(:class:`~rtlgen.hw.ports.CodeStreamSignature`)
        the input vector; ``i.valid`` is high for one cycle per vector.
        The payload must stay unchanged for ``ii`` cycles after ``i.valid``.
    ``o``: Out(:class:`~rtlgen.hw.ports.CodeStreamSignature`)
        the result; ``o.valid`` is high for one cycle exactly ``latency``
        cycles after the matching ``i.valid``, and ``o.payload`` holds its
        value until the next ``o.valid`` (except a
        :class:`~rtlgen.hw.shift_add.ShiftAddDense` built with
        ``hold=False``: its payload holds only when its input holds, and
        otherwise is valid only with ``o.valid``, for a reader of II 1).
        No back-pressure (always ready).

    Attributes
    ----------
    ``layer``
        the IR layer the component implements.
    ``latency``: int
        cycles from ``i.valid`` to ``o.valid``.
    ``ii``: int
        the initiation interval: the least number of cycles between two
        ``i.valid``.
    ``multipliers``: int
        hardware multipliers the component instantiates (for reports).
    ``figures``: dict
        extra fields of the layer's manifest entry (the adder-graph figures
        of a shift-and-add layer); empty for the others.
    ``bank``: :class:`~rtlgen.hw.storage.ParamBank` or None
        the stored parameters on the configuration bus, None when the
        parameters are constants.  A layer with a bank also has the ports of
        :func:`rtlgen.hw.ports.layer_config_members`.
    """

    layer: Any
    latency: int
    ii: int
    multipliers: int
    figures: dict
    bank: ParamBank | None
    i: Any
    o: Any


class OneCycleLayer(wiring.Component):
    """Base of the layers whose every output is a combinational function of
    the input vector followed by one registered cast to the result type.

    A :class:`LayerHardware` without stored parameters or multipliers; a
    subclass gives :meth:`operands`.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, n_in))
        the input vector, read in the cycle of ``i.valid``.
    ``o``: Out(CodeStreamSignature(result_type, n_out))
        registered; holds its value until the next ``o.valid``.

    Latency
    -------
    1 cycle from ``i.valid`` to ``o.valid``.

    II
    --
    1; no back-pressure.
    """

    latency = 1
    ii = 1
    multipliers = 0
    bank = None

    @property
    def figures(self) -> dict:
        return {}

    def __init__(self, layer, n_in: int, n_out: int):
        self.layer = layer
        super().__init__(layer_members(layer.in_type, n_in, layer.result_type, n_out))

    @property
    def operand_frac(self) -> int:
        """Fractional bits of :meth:`operands` (the input's unless a subclass says otherwise)."""
        return self.layer.in_type.frac

    def operands(self, m: Module) -> Iterable[Operand]:
        """The value of every output before the cast (output ``k`` the
        ``k``-th), at :attr:`operand_frac` fractional bits; ``m`` takes any
        submodule they need."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        t_out = self.layer.result_type
        m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(self.i.valid):
            for k, op in enumerate(self.operands(m)):
                m.d.sync += self.o.payload[k].eq(cast_operand(op, self.operand_frac, t_out).value)
        return m
