"""Dense (fully connected) layer with a reuse factor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring

from ..ir.model import QDense
from ..numerics.fixed import product_range, requantize
from .ports import layer_config_members, layer_members
from .storage import LayerWords, ParamBank
from .arith import (Operand, adder_tree, cast_operand, const_operand, range_shape, select, shape_of,
                    tree_depth, tree_stages)

__all__ = ["DenseSchedule", "DenseLayer"]


@dataclass(frozen=True)
class Slot:
    """One use of a multiplier: ``x[i] * w[i, j]`` in phase ``phase``."""
    i: int
    j: int
    phase: int


class DenseSchedule:
    """How the weights of a dense layer map onto shared multipliers.

    ``weights`` marks (nonzero) the matrix entries that get a multiplier:
    the nonzero constant weights, or every stored weight position.  They
    are ordered by output, then input.  With reuse factor
    R, multiplier ``m`` computes weights ``m*R .. m*R+R-1`` of that order in
    phases ``0 .. R-1``; there are ``ceil(nonzero / R)`` multipliers.  Since
    consecutive weights mostly feed the same output, each multiplier feeds
    few outputs and each output sums few multipliers.
    """

    def __init__(self, weights: np.ndarray, reuse_factor: int):
        self.reuse = reuse_factor
        n_in, n_out = weights.shape
        order = [(i, j) for j in range(n_out) for i in range(n_in) if int(weights[i, j]) != 0]
        self.nonzero = len(order)
        self.n_mult = -(-self.nonzero // reuse_factor) if self.nonzero else 0
        self.slots: list[list[Slot]] = []
        for mult in range(self.n_mult):
            k0 = mult * reuse_factor
            self.slots.append([Slot(i, j, k - k0) for k, (i, j) in enumerate(order[k0:k0 + reuse_factor], k0)])
        # output j -> list of (multiplier, first phase, last phase)
        self.feeds: list[list[tuple[int, int, int]]] = [[] for _ in range(n_out)]
        for mult, slots in enumerate(self.slots):
            by_out: dict[int, list[int]] = {}
            for s in slots:
                by_out.setdefault(s.j, []).append(s.phase)
            for j, phases in by_out.items():
                self.feeds[j].append((mult, min(phases), max(phases)))

    def exclusive(self, mult: int) -> bool:
        """True when every phase of ``mult`` feeds one output (no mask needed)."""
        return len({s.j for s in self.slots[mult]}) == 1


class DenseLayer(wiring.Component):
    """A dense layer ``y = cast_result(x @ W + b)`` with exact sums.

    A :class:`~rtlgen.hw.layer.LayerHardware`.  Multipliers
    (``ceil(nonzero / R)`` of them, each used R times; zero weights generate
    nothing) feed a product register, a pipelined adder tree per output (a
    register every ``adder_levels`` levels), an accumulator over the R
    phases when R > 1, and a registered output cast.  Weights are
    constants, or with ``storage`` ``register``/``tmr`` the words of
    ``self.bank``, a :class:`~rtlgen.hw.storage.ParamBank` (submodule
    ``params``; None for constants); :meth:`weight_value` and
    :meth:`bias_operand` are the only places that provide them.  A stored
    layer has a multiplier position for every weight word that feeds the
    matrix entry (zero or not), with product widths from the weight type's
    range.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, n_in))
        the input vector.  The payload must stay unchanged for
        ``reuse_factor`` cycles after ``i.valid`` (every rtlgen layer holds
        its output until its next ``o.valid``, and the network never feeds a
        layer faster than its II).
    ``o``: Out(CodeStreamSignature(result_type, n_out))
        the result; ``o.payload`` holds its value until the next ``o.valid``.
    ``cfg_addr``: In(16), ``cfg_wdata``: In(D), ``cfg_we``: In(1)
        stored layers only: the configuration bus (see :mod:`rtlgen.hw.storage`).
    ``cfg_rdata``: Out(D)
        stored layers only; combinational: the layer's word at ``cfg_addr``,
        else 0.
    ``cfg_error``: Out(1)
        stored layers only; registered: a TMR word was scrubbed on the
        previous clock edge.

    Latency
    -------
    ``self.latency`` = ``(R - 1) + 1 + tree registers + (1 if R > 1) + 1``
    cycles from ``i.valid`` to ``o.valid`` (R the reuse factor).

    II
    --
    ``self.ii`` = R; no back-pressure.
    """

    def __init__(self, layer: QDense, words: LayerWords | None = None, data_width: int = 8):
        self.layer = layer
        self.bank = None
        if layer.stored:
            if words is None:
                raise ValueError(f"layer {layer.name!r} stores its parameters: pass its bus words")
            self.bank = ParamBank(words, data_width)
            self.windex, self.bindex = layer.param_index()
        self.schedule = DenseSchedule(layer.structure(), layer.reuse_factor)
        self.in_shape = shape_of(layer.in_type)
        self.out_shape = shape_of(layer.result_type)
        self.prod_frac = layer.in_type.frac + layer.weight_type.frac
        if layer.accum_type is not None:
            self.sum_frac = layer.accum_type.frac
        else:
            self.sum_frac = max(self.prod_frac, layer.bias_type.frac)
        leaves = max([len(f) + (1 if self._bias_leaf(j) else 0) for j, f in enumerate(self.schedule.feeds)] or [1])
        self.tree_stages = tree_stages(tree_depth(leaves), layer.adder_levels)
        r = layer.reuse_factor
        # product register + tree registers + (accumulator if R > 1) + output register
        self.latency = (r - 1) + 1 + self.tree_stages + (1 if r > 1 else 0) + 1
        self.ii = r
        members = layer_members(layer.in_type, layer.n_in, layer.result_type, layer.n_out)
        if self.bank is not None:
            members.update(layer_config_members(data_width))
        super().__init__(members)

    # -- numbers shared with reports ------------------------------------

    @property
    def multipliers(self) -> int:
        return self.schedule.n_mult

    @property
    def figures(self) -> dict:
        return {}

    def _bias_leaf(self, j: int) -> bool:
        return self.layer.reuse_factor == 1 and (self.bank is not None or self._bias_code(j) != 0)

    def _bias_code(self, j: int) -> int:
        """The bias of output j, aligned to the sum's fractional bits."""
        layer = self.layer
        b = int(layer.bias[j])
        if layer.accum_type is not None:
            return int(requantize(np.array([b], dtype=object), layer.bias_type.frac, layer.accum_type)[0])
        return b << (self.sum_frac - layer.bias_type.frac)

    def weight_value(self, i: int, j: int):
        """The weight ``w[i, j]`` as a hardware value (a constant or a stored word)."""
        if self.bank is not None:
            return self.bank.weights[int(self.windex[i, j])]
        w = int(self.layer.weights[i, j])
        return Const(w, range_shape(w, w))

    def bias_operand(self, j: int) -> Operand:
        """The bias of output j aligned to the sum's format, as an Operand."""
        if self.bank is None:
            return const_operand(self._bias_code(j))
        t = self.layer.bias_type
        op = Operand(self.bank.bias[int(self.bindex[j])], t.min_code, t.max_code)
        if self.layer.accum_type is not None:
            return cast_operand(op, t.frac, self.layer.accum_type)
        return op.shifted(self.sum_frac - t.frac)

    # -- elaboration ------------------------------------------------------

    def _product_range(self, slot: Slot) -> tuple[int, int]:
        t = self.layer.in_type
        if self.bank is not None:
            wt = self.layer.weight_type
            return product_range(t.min_code, t.max_code, wt.min_code, wt.max_code)
        w = int(self.layer.weights[slot.i, slot.j])
        return product_range(t.min_code, t.max_code, w, w)

    def _leaf(self, prod: Operand) -> Operand:
        """Bring a product to the sum's format (shift, or cast to accum)."""
        acc = self.layer.accum_type
        if acc is None:
            return prod.shifted(self.sum_frac - self.prod_frac)
        return cast_operand(prod, self.prod_frac, acc)

    def elaborate(self, platform):
        m = Module()
        layer, sched, r = self.layer, self.schedule, self.layer.reuse_factor
        x = self.i.payload
        if self.bank is not None:
            bank = m.submodules.params = self.bank
            m.d.comb += [bank.cfg_addr.eq(self.cfg_addr), bank.cfg_wdata.eq(self.cfg_wdata),
                         bank.cfg_we.eq(self.cfg_we), self.cfg_rdata.eq(bank.cfg_rdata),
                         self.cfg_error.eq(bank.cfg_error)]

        # Phase sequencing (R > 1): phase 0 is the cycle of i.valid.
        if r > 1:
            count = Signal(range(r), name="phase_count")
            running = Signal(name="running")
            phase = Signal(range(r), name="phase")
            active = Signal(name="active")
            m.d.comb += [phase.eq(Mux(self.i.valid, 0, count)), active.eq(self.i.valid | running)]
            with m.If(active):
                m.d.sync += count.eq(Mux(phase == r - 1, 0, phase + 1))
                m.d.sync += running.eq(phase != r - 1)
        else:
            phase = Const(0, 1)
            active = self.i.valid

        # Product stage (registered).
        p_valid, p_first, p_last = Signal(name="p_valid"), Signal(name="p_first"), Signal(name="p_last")
        p_phase = Signal(range(max(r, 2)), name="p_phase")
        m.d.sync += [p_valid.eq(active), p_first.eq(active & (phase == 0)),
                     p_last.eq(active & (phase == r - 1)), p_phase.eq(phase)]
        products: list[Operand] = []
        for mult, slots in enumerate(sched.slots):
            ranges = [self._product_range(s) for s in slots]
            lo = min([0] + [a for a, _ in ranges]) if len(slots) < r else min(a for a, _ in ranges)
            hi = max([0] + [b for _, b in ranges]) if len(slots) < r else max(b for _, b in ranges)
            prod = Signal(range_shape(lo, hi), name=f"prod{mult}")
            if r == 1:
                s = slots[0]
                m.d.sync += prod.eq(x[s.i] * self.weight_value(s.i, s.j))
            else:
                wshape = shape_of(layer.weight_type)
                xs = Signal(self.in_shape, name=f"mx{mult}")
                ws = Signal(wshape, name=f"mw{mult}")
                m.d.comb += [xs.eq(select([x[s.i] for s in slots], phase)),
                             ws.eq(select([self.weight_value(s.i, s.j) for s in slots], phase))]
                m.d.sync += prod.eq(xs * ws)
            products.append(Operand(prod, lo, hi))

        # One adder tree per output over its (masked) products.
        roots: list[Operand] = []
        for j, feeds in enumerate(sched.feeds):
            leaves = []
            for mult, first, last in feeds:
                prod = products[mult]
                if r > 1 and not sched.exclusive(mult):
                    own = [s for s in sched.slots[mult] if s.j == j]
                    ranges = [self._product_range(s) for s in own]
                    lo = min([0] + [a for a, _ in ranges])
                    hi = max([0] + [b for _, b in ranges])
                    # (no comparison that is always true: it would be dead logic)
                    if first == last:
                        sel = p_phase == first
                    elif first == 0:
                        sel = p_phase <= last
                    elif last == r - 1:
                        sel = p_phase >= first
                    else:
                        sel = (p_phase >= first) & (p_phase <= last)
                    prod = Operand(Mux(sel, prod.value, 0), lo, hi)
                leaves.append(self._leaf(prod))
            if self._bias_leaf(j):
                leaves.append(self.bias_operand(j))
            roots.append(adder_tree(m, leaves, levels_per_stage=layer.adder_levels,
                                    stages=self.tree_stages, name=f"sum{j}",
                                    wrap=layer.accum_type))
        # Flags follow the tree registers.
        for stage in range(self.tree_stages):
            nv, nf, nl = (Signal(name=f"t{stage}_valid"), Signal(name=f"t{stage}_first"),
                          Signal(name=f"t{stage}_last"))
            m.d.sync += [nv.eq(p_valid), nf.eq(p_first), nl.eq(p_last)]
            p_valid, p_first, p_last = nv, nf, nl

        # Accumulate over phases (R > 1); the bias enters on the first phase.
        totals: list[Operand] = []
        if r > 1:
            done = Signal(name="acc_done")
            m.d.sync += done.eq(p_valid & p_last)
            for j, root in enumerate(roots):
                bias_op = self.bias_operand(j)
                # a constant bias enters as a plain integer
                bias = self._bias_code(j) if self.bank is None else bias_op.value
                acc_t = layer.accum_type
                if acc_t is not None:
                    lo, hi = acc_t.min_code, acc_t.max_code
                else:
                    # every partial sum lies between the sums of the
                    # negative and of the positive product bounds
                    neg = sum(min(0, self._product_range(s)[0]) for mult, _, _ in sched.feeds[j]
                              for s in sched.slots[mult] if s.j == j) << (self.sum_frac - self.prod_frac)
                    pos = sum(max(0, self._product_range(s)[1]) for mult, _, _ in sched.feeds[j]
                              for s in sched.slots[mult] if s.j == j) << (self.sum_frac - self.prod_frac)
                    lo, hi = min(bias_op.lo, bias_op.lo + neg), max(bias_op.hi, bias_op.hi + pos)
                acc = Signal(range_shape(lo, hi), name=f"acc{j}")
                start = Mux(p_first, bias, acc)
                nxt = start + root.value
                if acc_t is not None:
                    nxt = nxt[:acc_t.width].as_signed() if acc_t.signed else nxt[:acc_t.width]
                with m.If(p_valid):
                    m.d.sync += acc.eq(nxt)
                totals.append(Operand(acc, lo, hi))
            p_valid = done
        else:
            totals = roots

        # Registered output cast.
        m.d.sync += self.o.valid.eq(p_valid)
        with m.If(p_valid):
            for j, total in enumerate(totals):
                if layer.accum_type is not None:
                    src_frac = layer.accum_type.frac
                else:
                    src_frac = self.sum_frac
                m.d.sync += self.o.payload[j].eq(cast_operand(total, src_frac, layer.result_type).value)
        return m
