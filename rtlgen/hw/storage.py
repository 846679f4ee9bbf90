"""Parameter storage: register words, TMR words and the configuration bus map.

A stored parameter set (a dense or conv layer whose ``storage`` is
``register`` or ``tmr``, or a forest's thresholds or leaves; see
:mod:`rtlgen.ir.params`) keeps one register word per parameter (weight or
bias, see :meth:`rtlgen.ir.model.QDense.param_index`; threshold, leaf or
base score, see :meth:`rtlgen.ir.forest.QForest.param_sets`), reset to the
trained code and written through the configuration bus.  With ``tmr`` the ``tmr_bits`` most
significant bits of each word are held in three copies: a bitwise majority
voter feeds the datapath, any disagreement between the copies is a
*mismatch*, and on the clock edge that follows a mismatch the copy that
disagrees with the vote is rewritten with the voted value (scrubbing),
unless the bus writes the word in that cycle.  The remaining low bits are held once.

The configuration bus (word addresses, one word per cycle, see
:class:`BusLayout`) is decoded per layer by :class:`ParamBank`; the status
registers (sticky error flag, saturating error counter, clear) live in the
core top (:mod:`rtlgen.hw.config_bus`).

Register map (word addresses, ``ADDR_WIDTH`` bits):

=========== ====== ======================================================
``0x0000``  R      STATUS: bit 0 is the sticky error flag (a TMR mismatch
                   was seen since reset or the last clear)
``0x0001``  R      ERROR_COUNT: saturating count of the clock cycles in
                   which at least one TMR word was scrubbed
``0x0002``  W      CLEAR: any write clears the flag and the counter
``0x0010``  R/W    first parameter word; each set's groups in order (a
                   layer's weights, then its biases; a forest's
                   thresholds, then its leaves and base scores), each
                   group starting on a multiple of 16
=========== ====== ======================================================

A parameter word holds the code in its low ``W`` bits (two's complement
for signed types); write data above bit ``W`` is ignored and reads return
zeros there.  Reads of TMR words return the voted value.  Writes to
addresses that map to nothing are ignored and such addresses read as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..errors import RtlgenError
from ..ir.params import GroupNames
from ..numerics.fixed import FixedType
from .arith import select, shape_of
from .ports import ADDR_WIDTH, layer_config_members

__all__ = ["ADDR_WIDTH", "STATUS_ADDR", "ERROR_COUNT_ADDR", "CLEAR_ADDR", "FIRST_PARAM_ADDR",
           "SCRUB_CYCLES", "COUNT_CYCLES", "WordGroup", "LayerWords", "BusLayout", "bus_layout",
           "vote", "RegisterWord", "TmrWord", "ParamBank"]

STATUS_ADDR = 0x0000
ERROR_COUNT_ADDR = 0x0001
CLEAR_ADDR = 0x0002
FIRST_PARAM_ADDR = 0x0010
GROUP_ALIGN = 16
#: widest error counter (the counter is min(data width, this) bits wide)
MAX_COUNTER_WIDTH = 16
#: clock edges from a bit flip in one copy to the copy being rewritten
SCRUB_CYCLES = 1
#: clock edges from a bit flip to the flag and counter showing it
COUNT_CYCLES = 2


# ---------------------------------------------------------------------------
# the register map (pure Python, shared with rtlgen.emit.regmap)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class WordGroup(GroupNames):
    """``count`` consecutive parameter words of one type from ``base``."""
    kind: str            # a kind of rtlgen.ir.params.GROUP_KINDS ("weight", "bias", "threshold", ...)
    base: int
    type: FixedType
    codes: tuple         # trained codes, in word order (the reset values)
    protected: int       # triplicated most significant bits (0: plain register)

    @property
    def count(self) -> int:
        return len(self.codes)

    @property
    def end(self) -> int:
        return self.base + self.count


@dataclass(frozen=True)
class LayerWords:
    """The parameter words of one stored set (a layer, or a forest's thresholds or leaves)."""
    index: int           # position of the set in the model
    name: str
    op: str
    storage: str
    tmr_bits: int | None
    groups: tuple        # WordGroup, in address order

    def group(self, key: str) -> WordGroup:
        for g in self.groups:
            if g.key == key:
                return g
        raise KeyError(key)


@dataclass(frozen=True)
class BusLayout:
    """The configuration bus of a core: data width and every word's address."""
    data_width: int
    layers: list = field(default_factory=list)

    @property
    def counter_width(self) -> int:
        return min(self.data_width, MAX_COUNTER_WIDTH)

    @property
    def end(self) -> int:
        """One past the highest mapped address."""
        return max([g.end for lw in self.layers for g in lw.groups] + [FIRST_PARAM_ADDR])

    def for_layer(self, index: int) -> LayerWords | None:
        for lw in self.layers:
            if lw.index == index:
                return lw
        return None


def _align(addr: int) -> int:
    return -(-addr // GROUP_ALIGN) * GROUP_ALIGN


def _protected(storage: str, tmr_bits: int | None, t: FixedType) -> int:
    if storage != "tmr":
        return 0
    return t.width if tmr_bits is None else min(tmr_bits, t.width)


def bus_layout(model) -> BusLayout | None:
    """Addresses of every stored parameter of ``model`` (a QModel or a
    QForest; None when nothing is stored)."""
    sets = model.param_sets()
    if not sets:
        return None
    widest = max(g.type.width for ps in sets for g in ps.groups)
    data_width = max(8, -(-widest // 8) * 8)
    layers, addr = [], FIRST_PARAM_ADDR
    for ps in sets:
        groups = []
        for g in ps.groups:
            groups.append(WordGroup(g.kind, addr, g.type, tuple(g.codes), _protected(ps.storage, ps.tmr_bits, g.type)))
            addr = _align(addr + len(g.codes))
        if addr > 1 << ADDR_WIDTH:
            raise RtlgenError(
                f"{ps.name!r}: the stored parameters need {addr} word addresses, more than the "
                f"{1 << ADDR_WIDTH} of the {ADDR_WIDTH}-bit configuration bus; use storage: constant "
                "for some of them")
        layers.append(LayerWords(ps.index, ps.name, ps.op, ps.storage, ps.tmr_bits, tuple(groups)))
    return BusLayout(data_width, layers)


# ---------------------------------------------------------------------------
# storage words
# ---------------------------------------------------------------------------

def vote(a, b, c):
    """Bitwise majority of three values."""
    return (a & b) | (a & c) | (b & c)


def _to_bits(code: int, width: int) -> int:
    return int(code) & ((1 << width) - 1)


def _word(m: Module, name: str, t: FixedType, code: int, protected: int, we, wdata, regs: dict):
    """Add one stored word to ``m``; return (value with t's shape, mismatch or None).

    Signals: ``<name>`` (plain register), or ``<name>_c0``, ``_c1``, ``_c2``
    (the copies of the top ``protected`` bits) and ``<name>_lo`` (the rest);
    ``regs[name]`` receives them as ``{"copies": [...], "lo": signal or None}``
    (``copies`` is the one register of a plain word).
    """
    width = t.width
    bits = _to_bits(code, width)
    if protected == 0:
        reg = Signal(shape_of(t), name=name, init=int(code))
        with m.If(we):
            m.d.sync += reg.eq(wdata[:width])
        regs[name] = {"copies": [reg], "lo": None}
        return reg, None
    low = width - protected
    # "keep": synthesis must not merge the three copies (they have the same inputs)
    copies = [Signal(unsigned(protected), name=f"{name}_c{n}", init=bits >> low, attrs={"keep": 1})
              for n in range(3)]
    voted = Signal(unsigned(protected), name=f"{name}_v")
    m.d.comb += voted.eq(vote(*copies))
    # the copies disagree exactly when one of them differs from the vote
    differs = [Signal(name=f"{name}_d{n}") for n in range(3)]
    m.d.comb += [d.eq(c != voted) for d, c in zip(differs, copies)]
    mismatch = Signal(name=f"{name}_mm")
    m.d.comb += mismatch.eq(Cat(*differs).any())
    # each copy is rewritten only when it disagrees with the vote: besides
    # scrubbing just the bad copy, this gives the three registers different
    # enables, so that synthesis cannot merge them into one
    for c, d in zip(copies, differs):
        with m.If(we):
            m.d.sync += c.eq(wdata[low:width])
        with m.Elif(d):
            m.d.sync += c.eq(voted)
    if low:
        lo = Signal(unsigned(low), name=f"{name}_lo", init=bits & ((1 << low) - 1))
        with m.If(we):
            m.d.sync += lo.eq(wdata[:low])
        raw = Cat(lo, voted)
    else:
        lo, raw = None, voted
    regs[name] = {"copies": copies, "lo": lo}
    value = Signal(shape_of(t), name=f"{name}_q")
    m.d.comb += value.eq(raw.as_signed() if t.signed else raw)
    return value, mismatch


class RegisterWord(wiring.Component):
    """One parameter word in a plain register.

    Ports
    -----
    ``we``: In(1), ``wdata``: In(W)
        the word takes ``wdata`` on a clock edge where ``we`` is high.
    ``value``: Out(shape of ``t``)
        the stored code; reset (synchronous ``rst``) to ``code``.

    Latency
    -------
    1 cycle: a write shows on ``value`` after the clock edge.

    II
    --
    1: one write per cycle.
    """

    def __init__(self, t: FixedType, code: int):
        self.t, self.code = t, int(code)
        super().__init__({"we": In(1), "wdata": In(t.width), "value": Out(shape_of(t))})

    def elaborate(self, platform):
        m = Module()
        self.regs = {}
        value, _ = _word(m, "word", self.t, self.code, 0, self.we, self.wdata, self.regs)
        m.d.comb += self.value.eq(value)
        return m


class TmrWord(wiring.Component):
    """One parameter word whose top ``protected`` bits are triplicated.

    Internal registers ``word_c0``, ``word_c1``, ``word_c2`` (and
    ``word_lo``), reset to ``code``.

    Ports
    -----
    ``we``: In(1), ``wdata``: In(W)
        on a clock edge where ``we`` is high all copies (and the single low
        bits) take ``wdata``.
    ``value``: Out(shape of ``t``)
        the bitwise majority of the three copies above the low bits,
        combinational from the copies (a flipped copy never shows).
    ``mismatch``: Out(1)
        combinational: the copies disagree.  On the next clock edge without
        a write the disagreeing copy is rewritten with the voted value (scrub
        latency :data:`SCRUB_CYCLES` = 1 cycle).

    Latency
    -------
    1 cycle: a write shows on ``value`` after the clock edge.

    II
    --
    1: one write per cycle.
    """

    def __init__(self, t: FixedType, code: int, protected: int | None = None):
        self.t, self.code = t, int(code)
        self.protected = t.width if protected is None else int(protected)
        if not 1 <= self.protected <= t.width:
            raise ValueError(f"protected bits must be 1..{t.width}, got {protected}")
        super().__init__({"we": In(1), "wdata": In(t.width), "value": Out(shape_of(t)),
                          "mismatch": Out(1)})

    def elaborate(self, platform):
        m = Module()
        self.regs = {}
        value, mismatch = _word(m, "word", self.t, self.code, self.protected, self.we, self.wdata, self.regs)
        m.d.comb += [self.value.eq(value), self.mismatch.eq(mismatch)]
        return m


class ParamBank(wiring.Component):
    """The stored parameters of one set (a layer, or a forest's thresholds
    or leaves), on the configuration bus.

    Word signals are named ``<prefix><k>`` (``register``: ``w3``, ``b0``,
    ``t12``, ``l5``, ``base0``) or ``<prefix><k>_c0..2`` and
    ``<prefix><k>_lo`` (``tmr``).

    Ports
    -----
    ``cfg_addr``: In(16), ``cfg_wdata``: In(D), ``cfg_we``: In(1)
        the configuration bus: on a clock edge where ``cfg_we`` is high the
        word at ``cfg_addr`` (if it belongs to this set) takes ``cfg_wdata``.
    ``cfg_rdata``: Out(D)
        combinational: the (voted) word at ``cfg_addr``, 0 when the address
        is not one of this set's words.
    ``cfg_error``: Out(1)
        registered: some TMR word of the set was mismatched (and so
        scrubbed) on the previous clock edge.
    one port per group, named by its key (``weights``, ``bias``,
    ``thresholds``, ``leaves``, ``base``): Out(ArrayLayout(codes, count))
        the stored values, in word order, for the datapath.

    Latency
    -------
    1 cycle: a write shows on the group ports after the clock edge; reads
    (``cfg_rdata``) are combinational.

    II
    --
    1: one bus access per cycle.
    """

    def __init__(self, words: LayerWords, data_width: int):
        self.words = words
        self.data_width = data_width
        members = layer_config_members(data_width, ADDR_WIDTH)
        for g in words.groups:
            members[g.key] = Out(data.ArrayLayout(shape_of(g.type), max(1, g.count)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        # predecoded write enables: address bits above the group alignment
        # select a block, the low bits one line of it
        line_bits = (GROUP_ALIGN - 1).bit_length()
        line = Signal(GROUP_ALIGN, name="line")
        m.d.comb += line.eq(Const(1, GROUP_ALIGN) << self.cfg_addr[:line_bits])
        blocks: dict[int, Signal] = {}

        def enable(addr: int):
            blk = addr >> line_bits
            if blk not in blocks:
                sel = Signal(name=f"blk{blk}")
                m.d.comb += sel.eq(self.cfg_we & (self.cfg_addr[line_bits:] == blk))
                blocks[blk] = sel
            return blocks[blk] & line[addr & (GROUP_ALIGN - 1)]

        mismatches = []
        self.regs = {}
        for group in self.words.groups:
            port, prefix = getattr(self, group.key), group.prefix
            values = []
            for k, code in enumerate(group.codes):
                we = Signal(name=f"{prefix}{k}_we")
                m.d.comb += we.eq(enable(group.base + k))
                value, mm = _word(m, f"{prefix}{k}", group.type, code, group.protected, we, self.cfg_wdata,
                                  self.regs)
                m.d.comb += port[k].eq(value)
                values.append(value)
                if mm is not None:
                    mismatches.append(mm)
            # read: the word at addr, zero-extended to D bits
            if values:
                local = Signal(range(-(1 << ADDR_WIDTH), 1 << ADDR_WIDTH), name=f"{prefix}_local")
                m.d.comb += local.eq(self.cfg_addr - group.base)
                hit = (local >= 0) & (local < group.count)
                idx_bits = max(1, (group.count - 1).bit_length())
                raw = select([v.as_unsigned() for v in values], local[:idx_bits])
                with m.If(hit):
                    m.d.comb += self.cfg_rdata.eq(raw)
        if mismatches:
            m.d.sync += self.cfg_error.eq(Cat(*mismatches).any())
        return m
