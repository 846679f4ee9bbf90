"""Layers with several inputs (add, concat) and the delay lines that align their inputs."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..ir.merge import QMerge
from .arith import Operand, cast_operand
from .ports import CodeStreamSignature

__all__ = ["MergeLayer", "CodeDelay", "merge_ports"]


def merge_ports(n: int) -> tuple:
    """The names of the input streams of a layer with ``n`` inputs: ``i``, ``i1``, ``i2``, ..."""
    return ("i",) + tuple(f"i{k}" for k in range(1, n))


class MergeLayer(wiring.Component):
    """An add or a concat of the vectors on its input streams (:mod:`rtlgen.ir.merge`).

    Add: every output element is the sum of the inputs' elements, each
    shifted left to the finest fraction (exact), cast to the result type.
    Concat: the inputs' elements, each cast to the result type, one input
    after the other.  No multipliers, no stored parameters.

    Ports
    -----
    ``i``, ``i1``, ... (:func:`merge_ports`): In(CodeStreamSignature(in_types[k], sizes[k]))
        the inputs; the network delivers them in the same cycle, and they are
        read in the cycle of ``i.valid`` (the other ``valid`` bits are equal
        and unused).
    ``o``: Out(CodeStreamSignature(result_type, n_out))
        registered; holds its value until the next ``o.valid``.

    Latency
    -------
    1 cycle.

    II
    --
    1; no back-pressure.
    """

    latency = 1
    ii = 1
    multipliers = 0
    bank = None

    def __init__(self, layer: QMerge):
        self.layer = layer
        self.input_ports = merge_ports(len(layer.in_types))
        members = {name: In(CodeStreamSignature(t, n))
                   for name, t, n in zip(self.input_ports, layer.in_types, layer.sizes)}
        members["o"] = Out(CodeStreamSignature(layer.result_type, layer.n_out))
        super().__init__(members)

    @property
    def figures(self) -> dict:
        return {}

    def _inputs(self):
        for name, t in zip(self.input_ports, self.layer.in_types):
            yield getattr(self, name).payload, t

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        t_out = layer.result_type
        outputs = []
        if layer.op == "add":
            lo, hi = layer.sum_range()
            for j in range(layer.n_out):
                total = sum(payload[j] << shift for (payload, _), shift in zip(self._inputs(), layer.shifts()))
                outputs.append(cast_operand(Operand(total, lo, hi), layer.frac, t_out))
        else:
            for payload, t in self._inputs():
                for j in range(len(payload)):
                    outputs.append(cast_operand(Operand(payload[j], t.min_code, t.max_code), t.frac, t_out))
        m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(self.i.valid):
            for k, y in enumerate(outputs):
                m.d.sync += self.o.payload[k].eq(y.value)
        return m


class CodeDelay(wiring.Component):
    """A stream of code vectors delayed by ``depth`` cycles: a shift register of
    ``depth`` ranks of (``valid``, ``payload``), every rank loaded every cycle.

    It aligns the shorter input of an add or concat with the longer one.  A
    vector held for ``R`` cycles at ``i`` is held for ``R`` cycles at ``o``.

    Ports
    -----
    ``i``: In(CodeStreamSignature(elem_type, count)), ``o``: Out(the same)

    Latency
    -------
    ``depth`` cycles (>= 1).

    II
    --
    1.
    """

    def __init__(self, signature: CodeStreamSignature, depth: int):
        if depth < 1:
            raise ValueError(f"a delay line needs depth >= 1, got {depth}")
        self.depth = int(depth)
        super().__init__({"i": In(signature), "o": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        valid, payload = self.i.valid, self.i.payload
        for rank in range(self.depth):
            last = rank == self.depth - 1
            next_valid = self.o.valid if last else Signal(name=f"valid{rank}")
            next_payload = self.o.payload if last else Signal.like(self.o.payload, name=f"payload{rank}")
            m.d.sync += [next_valid.eq(valid), next_payload.eq(payload)]
            valid, payload = next_valid, next_payload
        return m
