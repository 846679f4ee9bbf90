"""The input handshake of a core top: at most one vector every ``ii`` cycles."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["IIThrottle"]


class IIThrottle(wiring.Component):
    """Admits one input vector per initiation interval.

    Parameters
    ----------
    ii : int
        The initiation interval (>= 1): the least number of cycles between
        two accepted vectors.

    Ports
    -----
    ``valid``: In(1)
        a vector is offered (the core's ``in_valid``).
    ``ready``: Out(1)
        the vector would be taken (the core's ``in_ready``): low for
        ``ii - 1`` cycles after each accepted vector and high otherwise
        (always high when ``ii == 1``).  It does not depend on ``valid``.
    ``accept``: Out(1)
        combinational ``valid & ready``: the vector is taken on this edge.

    Latency
    -------
    0: ``accept`` is combinational; ``ready`` falls on the edge that
    accepts.

    II
    --
    ``ii``.  The countdown register (``cooldown``, ``ii > 1`` only) resets
    to 0 (ready) with the synchronous ``rst``.
    """

    def __init__(self, ii: int):
        if ii < 1:
            raise ValueError(f"the initiation interval must be at least 1, got {ii}")
        self.ii = int(ii)
        super().__init__({"valid": In(1), "ready": Out(1), "accept": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.accept.eq(self.valid & self.ready)
        if self.ii == 1:
            m.d.comb += self.ready.eq(1)
            return m
        cooldown = Signal(range(self.ii), name="cooldown")
        m.d.comb += self.ready.eq(cooldown == 0)
        with m.If(self.accept):
            m.d.sync += cooldown.eq(self.ii - 1)
        with m.Elif(cooldown != 0):
            m.d.sync += cooldown.eq(cooldown - 1)
        return m
