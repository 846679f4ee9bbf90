"""Dense (fully connected) layer with a reuse factor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..ir.model import QActivation, QDense
from ..numerics.fixed import product_range, requantize
from .activation import fused_activation
from .ports import layer_config_members, layer_members
from .storage import LayerWords, ParamBank
from .arith import (Operand, adder_tree, cast_operand, const_operand, range_shape, select, shape_of,
                    tree_depth, tree_stages)

__all__ = ["DenseSchedule", "DenseLayer", "WeightRom"]


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


#: a multiplier reads its input's index from the weight ROM when it has more than this many
#: phases per layer input (an 8x6 layer at R = 16, 2 phases per input, is smaller with the
#: phase multiplexer on iCE40; the pruned jet MLP at full reuse, 45 phases per input, is
#: tens of thousands of LUTs smaller with the index)
INDEX_PHASES_PER_INPUT = 2


class WeightRom:
    """The constant weights of a time-multiplexed dense layer as one ROM.

    Row ``p`` (``0 .. R-1``) holds, side by side, the weight every
    multiplier uses in phase ``p``: multiplier ``m`` owns the bit field
    ``offsets[m] .. offsets[m] + shapes[m].width`` of every row, just wide
    enough for its own R weight codes (two's complement when one of them is
    negative).  After the weights, each multiplier that reads more than one
    input in more than :data:`INDEX_PHASES_PER_INPUT` times as many phases
    as the layer has inputs has a field (``index_offsets[m]``,
    ``index_width`` bits) with the index of the input it multiplies in that
    phase, so that its operand is an ``n_in``-way multiplexer instead of an
    R-way one over the phases (which, for a pruned layer at a large reuse
    factor, no longer repeats a short pattern that synthesis could fold).
    A multiplier with fewer than R weights (the last one) reads 0 in its
    idle phases, as the multiplexer of constants does.  :meth:`add_field`
    appends further per-phase fields (the serial form of
    :class:`DenseLayer` keeps the output, its first/last flags and its bias
    there).  One wide
    memory of depth R (rather than one per multiplier) lets synthesis split
    it across as few block RAMs as their width allows.
    """

    def __init__(self, schedule: DenseSchedule, weights: np.ndarray):
        r = schedule.reuse
        self.depth = r
        self.shapes = []
        self.offsets = []
        width = 0
        for slots in schedule.slots:
            codes = [int(weights[s.i, s.j]) for s in slots] + ([0] if len(slots) < r else [])
            shape = range_shape(min(codes), max(codes))
            self.offsets.append(width)
            self.shapes.append(shape)
            width += shape.width
        # then, for each multiplier with many more phases than inputs, the input's index
        self.index_offsets: list[int | None] = []
        n_in = weights.shape[0]
        index_width = max(1, (n_in - 1).bit_length())
        for slots in schedule.slots:
            if len({s.i for s in slots}) > 1 and len(slots) > INDEX_PHASES_PER_INPUT * n_in:
                self.index_offsets.append(width)
                width += index_width
            else:
                self.index_offsets.append(None)
        self.index_width = index_width
        self.width = width
        self.extra: dict[str, tuple[int, Shape]] = {}
        rows = [0] * r
        for slots, shape, off, ioff in zip(schedule.slots, self.shapes, self.offsets, self.index_offsets):
            mask = (1 << shape.width) - 1
            for s in slots:
                rows[s.phase] |= (int(weights[s.i, s.j]) & mask) << off
                if ioff is not None:
                    rows[s.phase] |= s.i << ioff
        self.rows = rows

    @property
    def bits(self) -> int:
        """Bits of ROM (depth times width)."""
        return self.depth * self.width

    def memory(self) -> Memory:
        """A fresh :class:`~amaranth.lib.memory.Memory` holding the rows.

        ``rom_style = "block"`` asks Yosys for block RAM (SB_RAM40_4K on
        iCE40, DP16KD on ECP5) even where a shallow ROM would otherwise go
        to logic or distributed RAM.
        """
        return Memory(shape=unsigned(self.width), depth=self.depth, init=self.rows,
                      attrs={"rom_style": "block"})

    def add_field(self, name: str, values: list[int], shape) -> None:
        """Append a field ``name`` of ``shape`` to every row; ``values[p]`` is its value in phase ``p``."""
        shape = Shape.cast(shape)
        if len(values) != self.depth:
            raise ValueError(f"field {name!r}: {len(values)} values for {self.depth} rows")
        mask = (1 << shape.width) - 1
        self.extra[name] = (self.width, shape)
        self.rows = [row | ((int(v) & mask) << self.width) for row, v in zip(self.rows, values)]
        self.width += shape.width

    def extra_field(self, data, name: str):
        """The field ``name`` (:meth:`add_field`) of the read data ``data``, as a value of its shape."""
        off, shape = self.extra[name]
        bits = data[off:off + shape.width]
        return bits.as_signed() if shape.signed else bits

    def input_index(self, data, mult: int):
        """The index of the input multiplier ``mult`` reads in the read data's phase, or None when it
        always reads the same input."""
        off = self.index_offsets[mult]
        return None if off is None else data[off:off + self.index_width]

    def field(self, data, mult: int):
        """Multiplier ``mult``'s weight in the read data ``data``, as a value of its shape."""
        shape, off = self.shapes[mult], self.offsets[mult]
        bits = data[off:off + shape.width]
        return bits.as_signed() if shape.signed else bits


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

    With ``weight_rom`` ``bram`` (constant weights, R > 1) the weights are
    not multiplexed constants but the rows of one ROM, a
    :class:`WeightRom` (submodule ``weight_rom``; ``self.rom``, None
    otherwise) with a synchronous read port: row ``p`` holds every
    multiplier's weight of phase ``p``.  The port is addressed with the
    phase of the *next* cycle (the next value of the phase counter, which
    rests at 0 between inputs), so the row of a phase is on the port's
    output in that phase and the latency is unchanged.  With one multiplier
    (``self.serial``: the whole layer at full reuse) the layer takes the
    *serial form*: the ROM also says which output each phase feeds, so one
    accumulator and one output cast (and a fused activation after it) serve
    every output in turn instead of one accumulator and cast per output;
    see :meth:`_serial_accumulate` for its staging.  The biases enter the
    accumulator as constants on the first phase (they are not
    multiplexed), so they stay in logic.

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

    The same with ``weight_rom`` ``bram``, provided the phase counter has
    seen a clock edge before the first ``i.valid`` (the network's input
    register guarantees it) and ``i.valid`` never comes while a vector is
    in progress (the II contract below).

    II
    --
    ``self.ii`` = R; no back-pressure.
    """

    def __init__(self, layer: QDense, words: LayerWords | None = None, data_width: int = 8,
                 activation: QActivation | None = None, staged: bool = True):
        self.layer = layer
        self.activation = activation
        self.staged = staged
        self.bank = None
        if layer.stored and getattr(layer, "weight_rom", "lut") == "bram":
            raise ValueError(f"layer {layer.name!r}: weight_rom 'bram' needs constant weights, "
                             f"not storage {layer.storage!r}")
        if layer.stored:
            if words is None:
                raise ValueError(f"layer {layer.name!r} stores its parameters: pass its bus words")
            self.bank = ParamBank(words, data_width)
            self.windex, self.bindex = layer.param_index()
        self.schedule = DenseSchedule(layer.structure(), layer.reuse_factor)
        self.rom = None
        if getattr(layer, "weight_rom", "lut") == "bram" and layer.reuse_factor > 1 and self.schedule.n_mult:
            self.rom = WeightRom(self.schedule, layer.weights)
        self.in_shape = shape_of(layer.in_type)
        self.out_shape = shape_of(layer.result_type)
        self.prod_frac = layer.in_type.frac + layer.weight_type.frac
        if layer.accum_type is not None:
            self.sum_frac = layer.accum_type.frac
        else:
            self.sum_frac = max(self.prod_frac, layer.bias_type.frac)
        # one multiplier with its weights in a ROM: one accumulator and one cast, output by output
        self.serial = self.rom is not None and self.schedule.n_mult == 1
        if self.serial:
            self._serial_fields()
        if not staged and not self.serial:
            raise ValueError(f"layer {layer.name!r}: only the serial form writes its outputs unstaged")
        if activation is not None and not self.serial:
            raise ValueError(f"layer {layer.name!r}: only the serial form (one multiplier reading a weight "
                             "ROM) does the following activation in its output stage")
        self.out_type = activation.result_type if activation is not None else layer.result_type
        leaves = max([len(f) + (1 if self._bias_leaf(j) else 0) for j, f in enumerate(self.schedule.feeds)] or [1])
        self.tree_stages = tree_stages(tree_depth(leaves), layer.adder_levels)
        r = layer.reuse_factor
        # product register + tree registers + (accumulator if R > 1) + output register
        self.latency = (r - 1) + 1 + self.tree_stages + (1 if r > 1 else 0) + 1
        self.ii = r
        members = layer_members(layer.in_type, layer.n_in, self.out_type, layer.n_out)
        if self.bank is not None:
            members.update(layer_config_members(data_width))
        super().__init__(members)

    def _serial_fields(self) -> None:
        """ROM fields of the serial form: per phase, the output it feeds, whether it is that output's
        first and last slot, and (on the first) the output's bias in the sum's format."""
        slots, r = self.schedule.slots[0], self.layer.reuse_factor
        n_out = self.layer.n_out
        out = [0] * r
        first = [0] * r
        last = [0] * r
        bias = [0] * r
        for k, s in enumerate(slots):
            out[s.phase] = s.j
            first[s.phase] = int(k == 0 or slots[k - 1].j != s.j)
            last[s.phase] = int(k == len(slots) - 1 or slots[k + 1].j != s.j)
            if first[s.phase]:
                bias[s.phase] = self._bias_code(s.j)
        self.rom.add_field("out", out, unsigned(max(1, (n_out - 1).bit_length())))
        self.rom.add_field("first", first, unsigned(1))
        self.rom.add_field("last", last, unsigned(1))
        self.rom.add_field("bias", bias, range_shape(min(bias), max(bias)))

    # -- numbers shared with reports ------------------------------------

    @property
    def multipliers(self) -> int:
        return self.schedule.n_mult

    @property
    def figures(self) -> dict:
        """``bram_bits``: bits of the weight ROM (0 without one); a fused activation's name."""
        out = {"bram_bits": self.rom.bits if self.rom is not None else 0}
        if self.activation is not None:
            out["fused_activation"] = self.activation.name
        return out

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

    def _serial_accumulate(self, m: Module, prod: Operand, rom_data, p_valid, p_last) -> None:
        """The serial form: the slots come output by output (the schedule's order), so one
        accumulator sums an output's products from its bias on, and at its last slot one cast
        writes it to a staging register; the staging registers go to ``o.payload`` together
        after the last phase, so the payload holds until the next ``o.valid``.  Unstaged
        (``staged=False``), each output goes to ``o.payload`` as it is done: the payload then
        holds for :func:`rtlgen.hw.network.hold_ii` cycles only, which the network's II keeps."""
        layer, rom = self.layer, self.rom
        slots = self.schedule.slots[0]
        # the ROM fields of the product's phase, registered beside the product
        f_out = Signal(rom.extra["out"][1], name="p_out")
        f_first, f_last = Signal(name="p_out_first"), Signal(name="p_out_last")
        f_bias = Signal(rom.extra["bias"][1], name="p_bias")
        m.d.sync += [f_out.eq(rom.extra_field(rom_data, "out")), f_first.eq(rom.extra_field(rom_data, "first")),
                     f_last.eq(rom.extra_field(rom_data, "last")), f_bias.eq(rom.extra_field(rom_data, "bias"))]
        leaf = self._leaf(prod)
        acc_t = layer.accum_type
        if acc_t is not None:
            lo, hi = acc_t.min_code, acc_t.max_code
        else:
            lo = hi = 0
            for j in {s.j for s in slots}:
                own = [self._product_range(s) for s in slots if s.j == j]
                shift = self.sum_frac - self.prod_frac
                b = self._bias_code(j)
                neg = sum(min(0, a) for a, _ in own) << shift
                pos = sum(max(0, c) for _, c in own) << shift
                lo, hi = min(lo, b, b + neg), max(hi, b, b + pos)
        acc = Signal(range_shape(lo, hi), name="acc")
        a_valid, a_last, a_out = Signal(name="acc_valid"), Signal(name="acc_last"), Signal.like(f_out, name="acc_out")
        nxt = Mux(f_first, f_bias, acc) + leaf.value
        if acc_t is not None:
            nxt = nxt[:acc_t.width].as_signed() if acc_t.signed else nxt[:acc_t.width]
        m.d.sync += [a_valid.eq(p_valid), a_last.eq(p_valid & f_last), a_out.eq(f_out)]
        with m.If(p_valid):
            m.d.sync += acc.eq(nxt)
        done = Signal(name="acc_done")
        m.d.sync += done.eq(p_valid & p_last)

        src_frac = acc_t.frac if acc_t is not None else self.sum_frac
        act = self.activation

        def result(total: Operand):
            y = cast_operand(total, src_frac, layer.result_type)
            return fused_activation(y, layer.result_type.frac, act) if act is not None else y

        out_shape = shape_of(self.out_type)
        cast = Signal(out_shape, name="cast")
        m.d.comb += cast.eq(result(Operand(acc, lo, hi)).value)
        fed = {s.j for s in slots}
        # the last output's cast is written on the edge after acc_done, with o.valid
        m.d.sync += self.o.valid.eq(done)
        if not self.staged:
            # each output is written as it is done (the network keeps the next vector back)
            for j in range(layer.n_out):
                if j in fed:
                    with m.If(a_last & (a_out == j)):
                        m.d.sync += self.o.payload[j].eq(cast)
                else:   # no weights: the output is its bias
                    m.d.sync += self.o.payload[j].eq(result(const_operand(self._bias_code(j))).value)
            return
        staged = [Signal(out_shape, name=f"staged{j}") for j in range(layer.n_out)]
        for j in range(layer.n_out):
            if j in fed:
                with m.If(a_last & (a_out == j)):
                    m.d.sync += staged[j].eq(cast)
            else:   # no weights: the output is its bias
                m.d.comb += staged[j].eq(result(const_operand(self._bias_code(j))).value)
        with m.If(done):
            for j in range(layer.n_out):
                value = cast if j == slots[-1].j else staged[j]
                m.d.sync += self.o.payload[j].eq(value)

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
            next_count = Signal(range(r), name="next_phase")
            m.d.comb += [phase.eq(Mux(self.i.valid, 0, count)), active.eq(self.i.valid | running),
                         next_count.eq(Mux(active, Mux(phase == r - 1, 0, phase + 1), count))]
            m.d.sync += count.eq(next_count)
            with m.If(active):
                m.d.sync += running.eq(phase != r - 1)
        else:
            phase = Const(0, 1)
            active = self.i.valid

        # Product stage (registered).
        p_valid, p_first, p_last = Signal(name="p_valid"), Signal(name="p_first"), Signal(name="p_last")
        p_phase = Signal(range(max(r, 2)), name="p_phase")
        m.d.sync += [p_valid.eq(active), p_first.eq(active & (phase == 0)),
                     p_last.eq(active & (phase == r - 1)), p_phase.eq(phase)]
        rom_data = None
        if self.rom is not None:
            rom = m.submodules.weight_rom = self.rom.memory()
            port = rom.read_port(domain="sync")
            # the row of the next cycle's phase: it is on port.data in that phase
            m.d.comb += port.addr.eq(next_count)
            rom_data = port.data
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
                xs = Signal(self.in_shape, name=f"mx{mult}")
                index = self.rom.input_index(rom_data, mult) if rom_data is not None else None
                if index is not None:
                    m.d.comb += xs.eq(select([x[i] for i in range(layer.n_in)], index))
                else:
                    m.d.comb += xs.eq(select([x[s.i] for s in slots], phase))
                if rom_data is not None:
                    ws = Signal(self.rom.shapes[mult], name=f"mw{mult}")
                    m.d.comb += ws.eq(self.rom.field(rom_data, mult))
                else:
                    ws = Signal(shape_of(layer.weight_type), name=f"mw{mult}")
                    m.d.comb += ws.eq(select([self.weight_value(s.i, s.j) for s in slots], phase))
                m.d.sync += prod.eq(xs * ws)
            products.append(Operand(prod, lo, hi))

        if self.serial:
            self._serial_accumulate(m, products[0], rom_data, p_valid, p_last)
            return m

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
