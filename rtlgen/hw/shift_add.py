"""Dense layers without multipliers: the constant matrix-vector product as a shared adder graph."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import wiring

from ..errors import RtlgenWarning
from ..ir.arithmetic import (dense_graph, dense_plan, output_cast_type, path_estimate, shift_add_figures,
                             shift_add_problem, sum_frac)
from ..ir.model import QActivation, QDense
from .activation import fused_activation
from .arith import Operand, cast_operand, range_shape
from .ports import layer_members

__all__ = ["ShiftAddDense", "FusedActivation"]


def _extend(v: Value, width: int) -> Value:
    """The low ``width`` bits of ``v`` extended with its sign, as an unsigned value."""
    v = Value.cast(v)
    if len(v) >= width:
        return v[:width]
    fill = v[-1].replicate(width - len(v)) if v.shape().signed else Const(0, width - len(v))
    return Cat(v, fill)


@dataclass(frozen=True)
class AdderInput:
    """One operand of :func:`shift_adder`: ``value << shift``.

    ``offset``: the operand's own ``Node.passthrough``
    (:mod:`rtlgen.numerics.adder_graph`) when it is the sum of another adder
    of the same pipeline stage (None otherwise).
    """
    value: Value
    shift: int = 0
    offset: int | None = None


def shift_adder(a: AdderInput, b: AdderInput, subtract: bool, width: int) -> Value:
    """The low ``width`` bits of ``a +/- b``, as one ripple adder.

    The node's exact range fits ``width`` bits, so the sum is computed modulo
    ``2**width`` on operands extended by hand, in unsigned arithmetic.  The
    low bits that pass through (``Node.passthrough``: below the shift of the
    addend, or of the subtrahend, that has zeros there) are wired from the
    other operand; the adder covers only the bits above them.

    Synthesis (Yosys ``alumacc``) merges an adder into its consumer when the
    consumer's operand is exactly that adder's result and nothing else reads
    it, and builds the merged sum as a carry-save tree: more LUTs than two
    carry chains, and not the ripple timing the pipeline planner assumes.
    When an operand would be exactly another adder's result, both operands
    get a constant zero below their lowest bit (the sum is taken above it), so
    that neither is a whole other adder and every node keeps its own chain.
    The zero column costs no logic: Yosys drops it after ``alumacc``.
    """
    if not subtract and a.shift > b.shift:
        a, b = b, a
    if a.shift >= width:
        wide_a = Const(0, width)
    else:
        wide_a = Cat(Const(0, a.shift), _extend(a.value, width - a.shift)) if a.shift else _extend(a.value, width)
    k = b.shift
    if k >= width:
        return wide_a
    n = width - k
    upper_a, upper_b = wide_a[k:], _extend(b.value, n)
    # synthesis trims the zeros that extend an unsigned operand, never a sign: a signed operand
    # narrower than the adder is never a whole other adder's result
    a_whole = a.shift == 0 and a.offset == k and (len(a.value) >= width or not a.value.shape().signed)
    b_whole = b.offset == 0 and (len(b.value) >= n or not b.value.shape().signed)
    pad = 1 if a_whole or b_whole else 0      # the zero column that keeps the chains apart
    upper_a, upper_b = Cat(Const(0, pad), upper_a), Cat(Const(0, pad), upper_b)
    upper = ((upper_a - upper_b) if subtract else (upper_a + upper_b))[pad:]
    return Cat(wide_a[:k], upper[:n]) if k else upper[:n]


class ShiftAddDense(wiring.Component):
    """A constant-weight dense layer ``y = cast_result(x @ W + b)`` built from adders.

    A :class:`~rtlgen.hw.layer.LayerHardware` with no multipliers.  The
    graph of :func:`rtlgen.ir.arithmetic.dense_graph` (signed-digit weights,
    subexpressions shared across the matrix, exact node widths) is cut into
    pipeline stages by :func:`rtlgen.ir.arithmetic.dense_plan`: the fewest
    register ranks that meet the layer's ``clock_mhz`` on its delay model, or
    a rank every ``adder_levels`` adder levels without a clock target.  The
    output cast (and, with ``activation``, a ReLU or linear activation and
    its cast) shares the last stage, before the output register.  With a
    clock target, ``path_ns`` is the model's longest path of the plan; a
    :class:`~rtlgen.errors.RtlgenWarning` says so when it exceeds the period.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, n_in))
        the input vector, read in the cycle of ``i.valid`` (the pipeline
        takes a new vector every cycle).
    ``o``: Out(CodeStreamSignature(result type, n_out))
        the result (the activation's result type when one is fused).  With
        ``hold`` (the default) the output register loads only with
        ``o.valid``, so the result holds until the next ``o.valid``.
        Without, it has no enable: like every pipeline register it loads
        each cycle, and ``o.payload`` is the result of ``i.payload`` as it
        was ``latency`` cycles before.  It then holds from one ``o.valid``
        to the next if ``i.payload`` holds from one ``i.valid`` to the next;
        otherwise it is good only in the cycle of ``o.valid`` (enough for a
        reader of II 1).  An enable reaches every output bit, and on a wide
        layer that one net limits the clock.

    Latency
    -------
    ``self.latency`` = register ranks + 1 (the output register).

    II
    --
    1; no back-pressure.
    """

    ii = 1
    multipliers = 0
    bank = None

    def __init__(self, layer: QDense, activation: QActivation | None = None, *, hold: bool = True):
        problem = shift_add_problem(layer)
        if problem is not None:
            raise ValueError(f"layer {layer.name!r}: {problem}")
        self.layer = layer
        self.activation = activation
        #: whether ``o.payload`` holds until the next ``o.valid`` (see Ports)
        self.hold = hold
        self.graph = dense_graph(layer)
        self.plan = dense_plan(layer, activation)
        #: the delay model's longest register-to-register path (ns), with a clock target
        self.path_ns = None
        if layer.clock_mhz is not None:
            self.path_ns = path_estimate(layer, activation, self.plan)
            if self.path_ns > 1000.0 / layer.clock_mhz:
                warnings.warn(f"layer {layer.name!r}: the {layer.timing_target} delay model estimates "
                              f"{1000.0 / self.path_ns:.0f} MHz for it, below clock_mhz {layer.clock_mhz:g}, "
                              f"even where a stage holds a single adder or only the output cast; lower clock_mhz",
                              RtlgenWarning, stacklevel=2)
        self.latency = self.plan.ranks + 1
        self.out_type = activation.result_type if activation is not None else layer.result_type
        super().__init__(layer_members(layer.in_type, layer.n_in, self.out_type, layer.n_out))

    @property
    def figures(self) -> dict:
        """The layer's adder-graph figures for the manifest and reports."""
        out = {"arithmetic": "shift_add", **shift_add_figures(self.layer, self.plan),
               "clock_mhz": self.layer.clock_mhz}
        if self.layer.clock_mhz is not None:
            out["timing_target"] = self.layer.timing_target
            out["est_fmax_mhz"] = round(1000.0 / self.path_ns, 1)
        if self.activation is not None:
            out["fused_activation"] = self.activation.name
        return out

    def elaborate(self, platform):
        m = Module()
        graph, plan = self.graph, self.plan
        node_value: dict[int, object] = {}
        staged: dict[tuple[int, int], object] = {}

        def at(k: int, stage: int):
            """Node ``k`` as seen in ``stage`` (through a register per rank it crosses)."""
            node = graph.nodes[k]
            if node.kind == "const":
                return Const(node.value, range_shape(node.lo, node.hi))
            if stage == plan.stage[k]:
                return node_value[k]
            key = (k, stage)
            if key not in staged:
                reg = Signal(range_shape(node.lo, node.hi), name=f"n{k}_r{stage}", reset_less=True)
                m.d.sync += reg.eq(at(k, stage - 1))
                staged[key] = reg
            return staged[key]

        def operand(k: int, shift: int, stage: int) -> AdderInput:
            """Node ``k`` as an adder input in ``stage``."""
            node = graph.nodes[k]
            same = node.kind == "add" and plan.stage[k] == stage
            return AdderInput(at(k, stage), shift, node.passthrough if same else None)

        for k, node in enumerate(graph.nodes):
            if node.kind == "input":
                node_value[k] = self.i.payload[node.index]
            elif node.kind == "add":
                s = plan.stage[k]
                sig = Signal(range_shape(node.lo, node.hi), name=f"n{k}")
                m.d.comb += sig.eq(shift_adder(operand(node.a, node.a_shift, s), operand(node.b, node.b_shift, s),
                                               node.sign < 0, len(sig)))
                node_value[k] = sig

        valid = self.i.valid
        for rank in range(1, plan.ranks + 1):
            nxt = Signal(name=f"valid_r{rank}")
            m.d.sync += nxt.eq(valid)
            valid = nxt

        layer, act = self.layer, self.activation
        frac, cast_type = sum_frac(layer), output_cast_type(layer)
        # (the registers that bring every output to the last stage are made here, outside the If)
        totals = [Operand(at(k, plan.ranks), graph.nodes[k].lo, graph.nodes[k].hi).shifted(shift)
                  for k, shift in graph.outputs]
        m.d.sync += self.o.valid.eq(valid)
        # data registers have no reset (only the valid bits do): a reset reaches every bit
        result = Signal(self.o.payload.shape(), name="result", reset_less=True)
        m.d.comb += self.o.payload.eq(result)
        writes = []
        for j, total in enumerate(totals):
            y = cast_operand(total, frac, cast_type)
            if act is not None:
                y = fused_activation(y, layer.result_type.frac, act)
            writes.append(result[j].eq(y.value))
        if self.hold:
            with m.If(valid):
                m.d.sync += writes
        else:
            m.d.sync += writes
        return m


class FusedActivation(wiring.Component):
    """The place of an activation whose work a :class:`ShiftAddDense` before it does.

    A :class:`~rtlgen.hw.layer.LayerHardware` that passes its input through.

    Ports
    -----
    ``i``: In(CodeStreamSignature(result_type, size)), ``o``: Out(same)
        ``o`` is ``i``, combinationally.

    Latency
    -------
    0.

    II
    --
    1.
    """

    latency = 0
    ii = 1
    multipliers = 0
    bank = None

    def __init__(self, layer: QActivation, into: str):
        self.layer = layer
        self.into = into
        super().__init__(layer_members(layer.result_type, layer.size, layer.result_type, layer.size))

    @property
    def figures(self) -> dict:
        return {"fused_into": self.into}

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m
