"""The decision-forest core.

Datapath, one vector per clock cycle (II 1) unless a reuse factor is set:

1. decisions, at the input: one comparator ``x[f] < c`` per distinct
   (feature, cut) pair of the whole forest, shared by every node that tests
   it, computed from ``in_data``;
2. path codes, also at the input: every tree of depth D <= ``table_bits``
   turns its decisions into a D-bit code (bit j is the decision taken at
   depth j on the way to the leaf, 1 = left; 0 below the leaf).  The input
   register holds these codes (taken when ``in_valid && in_ready``), not the
   input vector; a deeper tree keeps the decision bits it tests instead;
3. units: the trees of a class are packed, in order, into groups whose codes
   total at most ``table_bits`` bits; a group is one constant table indexed
   by its codes that gives the sum of its trees' leaves (with the default 6,
   every output bit is one function of at most six bits: one LUT6).  A
   deeper tree is a unit of its own, a multiplexer tree of its own shape
   over its registered decisions.  Unit values are stored as offsets above
   their smallest value (unsigned), with common low zero bits dropped; the
   offsets, the base score and the trees that are a single leaf make one
   constant per class, folded into the class's first unit;
4. per class, a balanced adder tree over the unit values (exact; widths from
   the value ranges);
5. one cast of each sum to the result type, the optional argmax, and the
   output register.

With ``reuse_factor`` R > 1 the units of each class are split into R groups
(the j-th unit of a class in group j mod R); the input register holds the
codes for R cycles (II = R), each cycle one group's unit values go through
the adder trees (one input per group slot, chosen by the cycle), and an
accumulator per class, started with the class constant, adds the R partial
sums before the cast.  Latency then grows by R.

The levels of steps 3-4 (unit lookup, each adder level) are separated by
registers according to ``QForest.pipeline``: ``"none"`` (no register
between the input and output registers), ``"per_level"`` (one after every
level) or an integer N (one after every N levels).  Latency = 2 + the
number of those registers.

Stored parameters (``register``/``tmr``, see :mod:`rtlgen.hw.storage`):
with stored thresholds step 1 has one comparator per internal node, against
that node's threshold word (no sharing: every word is programmable on its
own); with stored leaves every tree is a multiplexer unit over its leaf
words (step 3 has no tables and no folded constants) and the class's base
score word is one more adder input (or starts the accumulator).  The
adder widths then cover every programmable leaf and base code.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring

from ..ir.forest import QForest, QTree
from ..numerics.fixed import trailing_zeros
from .arith import Operand, cast_operand, const_operand, range_shape, tree_depth
from .arith import select as select_by_index
from .config_bus import attach_config_bus, core_signature
from .storage import ParamBank, bus_layout
from .throttle import IIThrottle

__all__ = ["ForestCore", "forest_levels", "forest_units", "bank_instance"]


def bank_instance(set_name: str) -> str:
    """The Verilog instance name of a stored set's bank inside a :class:`ForestCore`."""
    return f"{set_name}_bank"


# ---------------------------------------------------------------------------
# Plan: path codes, units and their constant tables (pure Python)
# ---------------------------------------------------------------------------

def _walk(tree: QTree, code: int) -> int:
    """The leaf a path code leads to (bit j: the decision at depth j, 1 = left)."""
    node, depth = 0, 0
    while tree.feature[node] >= 0:
        node = tree.left[node] if (code >> depth) & 1 else tree.right[node]
        depth += 1
    return node


@dataclass
class Unit:
    """Trees of one class summed by one lookup: ``trees`` indexes qf.trees.

    ``table`` (kind ``"table"``) maps the concatenated path codes (the first
    tree in the low bits) to the sum of the trees' leaf codes; kind ``"mux"``
    is one tree deeper than ``table_bits``, selected by a multiplexer tree."""
    kind: str
    trees: list[int]
    output: int
    bits: list[int]
    table: list[int] | None = None


def forest_units(qf: QForest) -> tuple[list[list[Unit]], list[int]]:
    """(units per class, constant per class).  Constants are in leaf-code units
    and do not include the base score; trees that are one leaf go there.
    With stored leaves every tree is a multiplexer unit of its own."""
    units: list[list[Unit]] = [[] for _ in range(qf.n_outputs)]
    consts = [0] * qf.n_outputs
    stored_leaves = qf.leaf_storage != "constant"
    for k in range(qf.n_outputs):
        open_group: Unit | None = None
        for t, tree in enumerate(qf.trees):
            if tree.output != k:
                continue
            depth = tree.depth()
            if stored_leaves:
                units[k].append(Unit("mux", [t], k, [depth]))
                continue
            if depth == 0:
                consts[k] += tree.value[0]
                continue
            if depth > qf.table_bits:
                units[k].append(Unit("mux", [t], k, [depth]))
                continue
            if open_group is None or sum(open_group.bits) + depth > qf.table_bits:
                open_group = Unit("table", [], k, [])
                units[k].append(open_group)
            open_group.trees.append(t)
            open_group.bits.append(depth)
    for ulist in units:
        for u in ulist:
            if u.kind != "table":
                continue
            table = [0]
            shift = 0
            for t, d in zip(u.trees, u.bits):
                tree = qf.trees[t]
                leaf = [tree.value[_walk(tree, code)] for code in range(1 << d)]
                table = [table[low] + leaf[high] for high in range(1 << d) for low in range(1 << shift)]
                shift += d
            u.table = table
    return units, consts


def _slots(units: list[list[Unit]], r: int) -> list[list[list[int]]]:
    """slots[k][s][g]: the unit (index into units[k], or -1) that adder input s
    of class k takes in group g.  The j-th unit of class k is in group j % r,
    slot j // r."""
    out = []
    for ulist in units:
        n_slots = -(-len(ulist) // r)
        out.append([[s * r + g if s * r + g < len(ulist) else -1 for g in range(r)]
                    for s in range(n_slots)])
    return out


def forest_levels(qf: QForest) -> int:
    """Combinational levels between the input register and the output (or
    accumulator) register: the unit lookup and the adder levels."""
    units, _ = forest_units(qf)
    if qf.reuse_factor == 1:
        # stored leaves: the stored base score is one more adder input
        per_class = [len(u) + (qf.leaf_storage != "constant") for u in units]
    else:
        per_class = [len(slots) for slots in _slots(units, qf.reuse_factor)]
    return 1 + max(tree_depth(max(1, n)) for n in per_class)


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


def _lookup(table: list[int], shape, index):
    """``table[index]`` as one constant bit vector per output bit, shifted by
    ``index`` (one LUT per output bit when the index has at most six bits).
    A column whose last entry is 0 is stored inverted, so that every constant
    keeps its full width in the Verilog."""
    n = len(table)
    columns = []
    for b in range(shape.width):
        column = 0
        for code, v in enumerate(table):
            column |= ((v >> b) & 1) << code
        if column in (0, (1 << n) - 1):
            columns.append(Const(column & 1, 1))
        elif column >> (n - 1):
            columns.append((Const(column, n) >> index)[0])
        else:
            columns.append(~(Const(column ^ ((1 << n) - 1), n) >> index)[0])
    value = Cat(*columns)
    return value.as_signed() if shape.signed else value


# ---------------------------------------------------------------------------
# The core
# ---------------------------------------------------------------------------

class ForestCore(wiring.Component):
    """Fixed-latency core of a quantized decision forest.

    The datapath of the module documentation (:mod:`rtlgen.hw.forest`);
    the submodule ``throttle`` (:class:`~rtlgen.hw.throttle.IIThrottle`)
    admits the input vectors.  With R > 1 the core's own phase counter
    (``x_phase``, 0 .. R-1 over the R cycles the input register holds a
    vector) picks the group of units each cycle.  With stored thresholds or
    leaves (``QForest.threshold_storage`` / ``leaf_storage`` ``register``
    or ``tmr``) the core has the configuration bus of
    :mod:`rtlgen.hw.config_bus` and one
    :class:`~rtlgen.hw.storage.ParamBank` per stored set (submodules
    ``thresholds_bank`` and ``leaves_bank``, see :func:`bank_instance`).
    Stored thresholds give every internal node its own comparator against
    its threshold word; stored leaves make every tree a multiplexer over
    its leaf words, and the base scores words too.

    Ports
    -----
    The :class:`~rtlgen.hw.ports.CoreSignature` (``self.signature``) of
    the forest's input and result types, as for
    :class:`rtlgen.hw.network.Network`:

    ``in_valid``: In(1), ``in_ready``: Out(1)
        an input vector is accepted on a clock edge where both are high;
        ``in_ready`` is low for R - 1 cycles after each accepted vector.
    ``in_data``: In(ArrayLayout(input codes, n_features))
        feature ``i`` at element ``i``.
    ``out_valid``: Out(1), ``out_data``: Out(ArrayLayout(result codes, n_out))
        ``out_valid`` is high for one cycle exactly ``latency`` cycles after
        the accepting edge; element ``k`` is the result code of class ``k``,
        and with ``class_output`` the last element is the predicted class
        index.  ``out_data`` holds until the next ``out_valid``; no
        back-pressure.
    ``cfg_addr``, ``cfg_wdata``, ``cfg_we``, ``cfg_rdata``, or ``scl_i``, ``sda_i``, ``sda_oe``
        with stored parameters: the configuration bus or its I2C pins, as
        for :class:`rtlgen.hw.network.Network`.

    Latency
    -------
    ``self.latency`` = 2 + the registers between levels (+ R when R > 1)
    cycles; stored parameters do not change it.

    II
    --
    ``self.ii`` = the reuse factor R.
    """

    def __init__(self, qf: QForest):
        self.qf = qf
        self.units, self.consts = forest_units(qf)
        self.n_levels = forest_levels(qf)
        self.registers = _register_after(qf, self.n_levels)
        self.ii = qf.reuse_factor
        self.latency = 2 + sum(self.registers) + (self.ii if self.ii > 1 else 0)
        self.bus = bus_layout(qf)
        self.banks = {}
        if self.bus is not None:
            self.banks = {lw.name: ParamBank(lw, self.bus.data_width) for lw in self.bus.layers}
        self.stored_thresholds = "thresholds" in self.banks
        if self.stored_thresholds:
            self.comparators = sum(1 for t in qf.trees for f in t.feature if f >= 0)
        else:
            self.comparators = len({(f, c) for t in qf.trees for f, c in zip(t.feature, t.cut) if f >= 0})
        signature, self.i2c = core_signature(qf.input_type, qf.n_features, qf.result_type, qf.n_out,
                                             self.bus, qf.i2c)
        super().__init__(signature)

    def elaborate(self, platform):
        qf = self.qf
        m = Module()
        r = self.ii
        throttle = m.submodules.throttle = IIThrottle(r)
        m.d.comb += [throttle.valid.eq(self.in_valid), self.in_ready.eq(throttle.ready)]
        accept = throttle.accept
        valid = Signal(name="x_valid")
        phase = None
        if r == 1:
            m.d.sync += valid.eq(accept)
        else:
            # the input register holds the codes for r cycles; group g is
            # evaluated in the g-th of them
            phase = Signal(range(r), name="x_phase")
            with m.If(accept):
                m.d.sync += [valid.eq(1), phase.eq(0)]
            with m.Elif(valid & (phase == r - 1)):
                m.d.sync += [valid.eq(0), phase.eq(0)]
            with m.Elif(valid):
                m.d.sync += phase.eq(phase + 1)

        for name, bank in self.banks.items():
            m.submodules[bank_instance(name)] = bank
        if self.bus is not None:
            attach_config_bus(m, self, self.bus, self.i2c, list(self.banks.values()))

        # decisions on the input: with constant thresholds one comparator per
        # (feature, cut), shared across the forest; else one per node
        decide = {}
        if self.stored_thresholds:
            thresholds = self.banks["thresholds"].thresholds
            for t, words in enumerate(qf.word_index(leaves=False)):
                for node, word in words.items():
                    s = Signal(name=f"cmp_t{t}_n{node}")
                    m.d.comb += s.eq(self.in_data[qf.trees[t].feature[node]] < thresholds[word])
                    decide[(t, node)] = s
        else:
            keys = sorted({(f, c) for t in qf.trees for f, c in zip(t.feature, t.cut) if f >= 0})
            shared = {}
            for f, c in keys:
                s = Signal(name=f"cmp_f{f}_{'m' if c < 0 else ''}{abs(c)}")
                m.d.comb += s.eq(self.in_data[f] < c)
                shared[(f, c)] = s
            for t, tree in enumerate(qf.trees):
                for node, (f, c) in enumerate(zip(tree.feature, tree.cut)):
                    if f >= 0:
                        decide[(t, node)] = shared[(f, c)]

        def key_of(t: int, node: int):
            """Nodes with one key share one decision (and its register)."""
            tree = qf.trees[t]
            return (t, node) if self.stored_thresholds else (tree.feature[node], tree.cut[node])

        def registered(value, width, name):
            reg = Signal(width, name=name)
            with m.If(accept):
                m.d.sync += reg.eq(value)
            return reg

        # the input register: path codes (table units) or decisions (mux units)
        held_cmp = {}

        def held(t: int, node: int):
            key = key_of(t, node)
            if key not in held_cmp:
                a, b = key
                name = f"d_t{a}_n{b}" if self.stored_thresholds else f"d_f{a}_{'m' if b < 0 else ''}{abs(b)}"
                held_cmp[key] = registered(decide[(t, node)], 1, name)
            return held_cmp[key]

        def code_bit(t: int, j: int, node: int = 0, depth: int = 0):
            tree = qf.trees[t]
            if tree.feature[node] < 0:
                return None
            d = decide[(t, node)]
            if depth == j:
                return d
            a = code_bit(t, j, tree.left[node], depth + 1)
            b = code_bit(t, j, tree.right[node], depth + 1)
            if a is None and b is None:
                return None
            return Mux(d, 0 if a is None else a, 0 if b is None else b)

        # unit values at sum_frac: tables of entries, or leaf values of a mux tree
        if "leaves" in self.banks:
            values, starts = self._stored_leaf_values(held)
        else:
            values, starts = self._constant_leaf_values(qf, code_bit, held, registered)
        self._sum_and_output(m, values, starts, valid, phase)
        return m

    def _stored_leaf_values(self, held):
        """Per class, the unit operands (multiplexers over leaf words); the
        class start is the stored base score (an adder input when R = 1)."""
        qf, r = self.qf, self.ii
        bank = self.banks["leaves"]
        ss = qf.sum_frac - qf.score_type.frac
        sb = qf.sum_frac - qf.base_type.frac
        st, bt = qf.score_type, qf.base_type
        words = qf.word_index(leaves=True)
        values, starts = [], []
        for k, ulist in enumerate(self.units):
            ops = []
            for u in ulist:
                t = u.trees[0]
                tree = qf.trees[t]

                def select(node):
                    if tree.feature[node] < 0:
                        return bank.leaves[words[t][node]]
                    return Mux(held(t, node), select(tree.left[node]), select(tree.right[node]))
                ops.append(Operand(select(0), st.min_code, st.max_code).shifted(ss))
            base = Operand(bank.base[k], bt.min_code, bt.max_code).shifted(sb)
            if r == 1:
                ops.append(base)
            values.append(ops)
            starts.append(base.value)
        return values, starts

    def _constant_leaf_values(self, qf, code_bit, held, registered):
        """Per class, the unit operands (constant tables or multiplexer
        trees, offsets folded into one constant per class) and that constant."""
        r = self.ii
        ss = qf.sum_frac - qf.score_type.frac
        sb = qf.sum_frac - qf.base_type.frac
        plans = []
        starts = [(qf.base[k] << sb) + (self.consts[k] << ss) for k in range(qf.n_outputs)]
        for k, ulist in enumerate(self.units):
            row = []
            for u in ulist:
                if u.kind == "table":
                    entries = [e << ss for e in u.table]
                else:
                    tree = qf.trees[u.trees[0]]
                    entries = [tree.value[n] << ss for n, _ in tree.leaves()]
                lo = min(entries)
                starts[k] += lo
                row.append([e - lo for e in entries])
            plans.append(row)
        values: list[list[Operand]] = []
        for k, ulist in enumerate(self.units):
            ops = []
            for i, u in enumerate(ulist):
                # without an accumulator the class constant goes into the first unit
                fold = starts[k] if (i == 0 and r == 1) else 0
                stored = [e + fold for e in plans[k][i]]
                tz = trailing_zeros(stored)
                stored = [e >> tz for e in stored]
                lo, hi = min(stored), max(stored)
                shape = range_shape(lo, hi)
                if lo == hi:
                    ops.append(const_operand(lo << tz))
                    continue
                if u.kind == "table":
                    bits = []
                    for t, d in zip(u.trees, u.bits):
                        for j in range(d):
                            b = code_bit(t, j)
                            bits.append(Const(0, 1) if b is None else b)
                    index = registered(Cat(*bits), len(bits), f"code_c{k}_u{i}")
                    val = _lookup(stored, shape, index)
                else:
                    t = u.trees[0]
                    tree = qf.trees[t]
                    leaf_value = dict(zip([n for n, _ in tree.leaves()], stored))

                    def select(node):
                        if tree.feature[node] < 0:
                            return Const(leaf_value[node], shape)
                        return Mux(held(t, node), select(tree.left[node]), select(tree.right[node]))
                    val = select(0)
                ops.append(Operand(val, lo, hi).shifted(tz))
            if r == 1 and not ulist:
                ops.append(const_operand(starts[k]))
            values.append(ops)
        return values, starts

    def _sum_and_output(self, m, values, starts, valid, phase):
        """Adder trees (or the slots and accumulator when R > 1), the cast,
        the optional argmax and the output register."""
        qf, r = self.qf, self.ii
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

        if r == 1:
            flat = [op for ops in values for op in ops]
            counts = [len(ops) for ops in values]
            flat = stage(flat, "unit")
        else:
            # adder input s of class k takes, in group g, the value of its g-th unit
            flat, counts = [], []
            for k, slots in enumerate(_slots(self.units, r)):
                counts.append(len(slots))
                for group in slots:
                    ops = [values[k][u] if u >= 0 else const_operand(0) for u in group]
                    lo, hi = min(op.lo for op in ops), max(op.hi for op in ops)
                    shape = range_shape(lo, hi)
                    vals = [op.value if not isinstance(op.value, Const) else Const(op.lo, shape) for op in ops]
                    flat.append(Operand(select_by_index(vals, phase), lo, hi))
            flat = stage(flat, "slot")
        nodes, pos = [], 0
        for n in counts:
            nodes.append(flat[pos:pos + n] or [const_operand(0)])
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
            # accumulate the r partial sums; the class constant starts it
            sums, done = [], Signal(name="acc_done")
            for k, ops in enumerate(nodes):
                lo, hi = qf.sum_range(k)
                acc = Signal(range_shape(min(lo, 0), max(hi, 0)), name=f"acc_{k}")
                with m.If(valid):
                    m.d.sync += acc.eq(Mux(phase == 0, starts[k] + ops[0].value, acc + ops[0].value))
                sums.append([Operand(acc, lo, hi)])
            m.d.sync += done.eq(valid & (phase == r - 1))
            nodes, valid = sums, done
        results = [cast_operand(ops[0], qf.sum_frac, qf.result_type) for ops in nodes]
        out_vals = [res.value for res in results]
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
