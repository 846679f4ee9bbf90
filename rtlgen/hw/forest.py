"""The decision-forest core.

Datapath, one vector per clock cycle (II 1) unless a reuse factor is set:

1. input register (``in_data`` taken when ``in_valid && in_ready``);
2. comparisons: one comparator ``x[f] < c`` per distinct (feature, cut)
   pair of the whole forest, shared by every node that tests it;
3. leaf selection: per tree, a multiplexer tree that follows the tree's own
   shape (a leaf at depth d sits behind d multiplexers; nothing is padded
   to full depth);
4. per class, a balanced adder tree over the selected leaf codes and the
   constant base code (exact; widths from the value ranges);
5. one cast of each sum to the result type, the optional argmax, and the
   output register.

With ``reuse_factor`` R > 1 the trees of each class are split into R
groups (the j-th tree of a class in group j mod R); the input register holds
a vector for R cycles (II = R), each cycle one group's leaves go through
the adder trees (one input per group slot, chosen by the cycle), and an
accumulator per class, started with the base code, adds the R partial sums
before the cast.  Latency then grows by R.

The levels of steps 2-4 (comparison, selection, each adder level) are
separated by registers according to ``QForest.pipeline``: ``"none"`` (no
register between the input and output registers), ``"per_level"`` (one
after every level) or an integer N (one after every N levels).  Latency =
2 + the number of those registers.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring

from ..ir.forest import QForest
from .ports import core_members
from .arith import Operand, cast_operand, const_operand, range_shape, tree_depth
from .arith import select as select_by_index

__all__ = ["ForestCore", "forest_levels"]


def _slots(qf: QForest) -> list[list[list[int]]]:
    """slots[k][s][g]: the tree (index into qf.trees, or -1) that adder input
    s of class k takes in group g.  The j-th tree of class k is in group
    j % R, slot j // R."""
    r = qf.reuse_factor
    out = []
    for k in range(qf.n_outputs):
        mine = [t for t, tree in enumerate(qf.trees) if tree.output == k]
        n_slots = -(-len(mine) // r)
        out.append([[mine[s * r + g] if s * r + g < len(mine) else -1 for g in range(r)]
                    for s in range(n_slots)])
    return out


def forest_levels(qf: QForest) -> int:
    """Combinational levels between the input register and the output (or
    accumulator) register."""
    if qf.reuse_factor == 1:
        per_class = [1 + sum(1 for t in qf.trees if t.output == k) for k in range(qf.n_outputs)]
    else:
        per_class = [len(slots) for slots in _slots(qf)]
    return 2 + max(tree_depth(max(1, n)) for n in per_class)


def _register_after(qf: QForest, n_levels: int) -> list[bool]:
    out = []
    for i in range(n_levels):
        last = i == n_levels - 1
        if last or qf.pipeline == "none":
            out.append(False)
        elif qf.pipeline == "per_level":
            out.append(True)
        else:
            out.append((i + 1) % int(qf.pipeline) == 0)
    return out


class ForestCore(wiring.Component):
    """Fixed-latency core of a quantized decision forest (the port contract of
    :class:`rtlgen.hw.network.Network`: ``in_valid``/``in_ready``/``in_data``,
    ``out_valid``/``out_data``; II = reuse factor, no back-pressure).  ``out_data``
    element k is the result code of class k; with ``class_output`` the last
    element is the predicted class index."""

    def __init__(self, qf: QForest):
        self.qf = qf
        self.n_levels = forest_levels(qf)
        self.registers = _register_after(qf, self.n_levels)
        self.ii = qf.reuse_factor
        self.latency = 2 + sum(self.registers) + (self.ii - 1 + 1 if self.ii > 1 else 0)
        self.comparators = len({(f, c) for t in qf.trees for f, c in zip(t.feature, t.cut) if f >= 0})
        super().__init__(core_members(qf.input_type, qf.n_features, qf.result_type, qf.n_out))

    def elaborate(self, platform):
        qf = self.qf
        m = Module()
        r = self.ii
        accept = Signal()
        m.d.comb += accept.eq(self.in_valid & self.in_ready)
        valid = Signal(name="x_valid")
        x = Signal.like(self.in_data, name="x_data")
        with m.If(accept):
            m.d.sync += x.eq(self.in_data)
        phase = None
        if r == 1:
            m.d.comb += self.in_ready.eq(1)
            m.d.sync += valid.eq(accept)
        else:
            # the input register holds x for r cycles; group g is evaluated
            # in the g-th of them
            cooldown = Signal(range(r), name="cooldown")
            m.d.comb += self.in_ready.eq(cooldown == 0)
            with m.If(accept):
                m.d.sync += cooldown.eq(r - 1)
            with m.Elif(cooldown != 0):
                m.d.sync += cooldown.eq(cooldown - 1)
            phase = Signal(range(r), name="x_phase")
            with m.If(accept):
                m.d.sync += [valid.eq(1), phase.eq(0)]
            with m.Elif(valid & (phase == r - 1)):
                m.d.sync += [valid.eq(0), phase.eq(0)]
            with m.Elif(valid):
                m.d.sync += phase.eq(phase + 1)

        level = 0

        def stage(ops: list[Operand], what: str) -> list[Operand]:
            """Close one level: register its values if the pipeline says so."""
            nonlocal level, valid, phase
            reg = self.registers[level]
            level += 1
            if not reg:
                return ops
            out = []
            for k, op in enumerate(ops):
                if isinstance(op.value, Const):
                    out.append(op)
                    continue
                sig = Signal(range_shape(op.lo, op.hi), name=f"{what}_{k}")
                m.d.sync += sig.eq(op.value)
                out.append(Operand(sig, op.lo, op.hi))
            v = Signal(name=f"valid_l{level}")
            m.d.sync += v.eq(valid)
            valid = v
            if phase is not None:
                p = Signal.like(phase, name=f"phase_l{level}")
                m.d.sync += p.eq(phase)
                phase = p
            return out

        # comparisons, shared across the forest
        keys = sorted({(f, c) for t in qf.trees for f, c in zip(t.feature, t.cut) if f >= 0})
        bits = []
        for f, c in keys:
            s = Signal(name=f"cmp_f{f}_{'m' if c < 0 else ''}{abs(c)}")
            m.d.comb += s.eq(x[f] < c)
            bits.append(Operand(s, 0, 1))
        bits = stage(bits, "cmp")
        cmp = {key: op.value for key, op in zip(keys, bits)}

        # leaf selection, one mux per internal node
        # every leaf value is stored as its offset above the tree's smallest
        # leaf (unsigned, narrower); the offsets' sum goes into the base
        leaves = []
        offsets = [0] * qf.n_outputs
        for t, tree in enumerate(qf.trees):
            low = min(tree.value[n] for n, _ in tree.leaves())

            def select(node):
                if tree.feature[node] < 0:
                    v = tree.value[node] - low
                    return v, v, None
                lo_l, hi_l, val_l = select(tree.left[node])
                lo_r, hi_r, val_r = select(tree.right[node])
                lo, hi = min(lo_l, lo_r), max(hi_l, hi_r)
                shape = range_shape(lo, hi)
                a = Const(lo_l, shape) if val_l is None else val_l
                b = Const(lo_r, shape) if val_r is None else val_r
                return lo, hi, Mux(cmp[(tree.feature[node], tree.cut[node])], a, b)
            lo, hi, val = select(0)
            leaves.append(const_operand(lo) if val is None else Operand(val, lo, hi))
            offsets[tree.output] += low
        ss = qf.sum_frac - qf.score_type.frac
        sb = qf.sum_frac - qf.base_type.frac
        if r == 1:
            leaves = stage(leaves, "leaf")
            # per-class adder trees (base code as a constant leaf)
            nodes = []
            for k in range(qf.n_outputs):
                ops = [op.shifted(ss) for t, op in zip(qf.trees, leaves) if t.output == k]
                base = (qf.base[k] << sb) + (offsets[k] << ss)
                if base != 0 or not ops:
                    ops.append(const_operand(base))
                nodes.append(ops)
        else:
            # adder input s of class k takes, in group g, the leaf of its g-th tree
            slot_ops, counts = [], []
            for slots in _slots(qf):
                counts.append(len(slots))
                for group in slots:
                    ops = [leaves[t] if t >= 0 else const_operand(0) for t in group]
                    lo, hi = min(op.lo for op in ops), max(op.hi for op in ops)
                    shape = range_shape(lo, hi)
                    vals = [op.value if not isinstance(op.value, Const) else Const(op.lo, shape) for op in ops]
                    slot_ops.append(Operand(select_by_index(vals, phase), lo, hi))
            slot_ops = stage(slot_ops, "slot")
            nodes, pos = [], 0
            for n in counts:
                nodes.append([op.shifted(ss) for op in slot_ops[pos:pos + n]] or [const_operand(0)])
                pos += n
        while level < self.n_levels:
            for k, ops in enumerate(nodes):
                if len(ops) > 1:
                    nxt = [Operand(a.value + b.value, a.lo + b.lo, a.hi + b.hi)
                           for a, b in zip(ops[0::2], ops[1::2])]
                    if len(ops) % 2:
                        nxt.append(ops[-1])
                    nodes[k] = nxt
            flat = [op for ops in nodes for op in ops]
            counts = [len(ops) for ops in nodes]
            flat = stage(flat, f"sum_l{level}")
            nodes, pos = [], 0
            for n in counts:
                nodes.append(flat[pos:pos + n])
                pos += n

        if r > 1:
            # accumulate the r partial sums; the base (and the leaf offsets) start it
            sums, done = [], Signal(name="acc_done")
            for k, ops in enumerate(nodes):
                lo, hi = qf.sum_range(k)
                acc = Signal(range_shape(min(lo, 0), max(hi, 0)), name=f"acc_{k}")
                start = (qf.base[k] << sb) + (offsets[k] << ss)
                with m.If(valid):
                    m.d.sync += acc.eq(Mux(phase == 0, start + ops[0].value, acc + ops[0].value))
                sums.append([Operand(acc, lo, hi)])
            m.d.sync += done.eq(valid & (phase == r - 1))
            nodes, valid = sums, done
        results = [cast_operand(ops[0], qf.sum_frac, qf.result_type) for ops in nodes]
        out_vals = [r.value for r in results]
        if qf.class_output:
            if qf.n_outputs == 1:
                out_vals.append(Mux(results[0].value > 0, 1, 0))
            else:
                best_v, best_k = results[0].value, Const(0, range_shape(0, qf.n_outputs - 1))
                for k in range(1, qf.n_outputs):
                    better = results[k].value > best_v
                    best_v = Mux(better, results[k].value, best_v)
                    best_k = Mux(better, k, best_k)
                out_vals.append(best_k)
        m.d.sync += self.out_valid.eq(valid)
        with m.If(valid):
            for k, v in enumerate(out_vals):
                m.d.sync += self.out_data[k].eq(v)
        return m
