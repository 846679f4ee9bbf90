"""Classifier output layers: softmax from two tables, and argmax (:mod:`rtlgen.ir.softmax`)."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..ir.softmax import QArgmax, QSoftmax
from ..numerics.fixed import bits_for_range
from .arith import Operand, cast_operand
from .layer import OneCycleLayer
from .ports import layer_members

__all__ = ["SoftmaxLayer", "ArgmaxLayer"]


def _pairwise(values: list, combine):
    """Reduce ``values`` with a balanced tree of ``combine`` (left operand: the lower indices)."""
    while len(values) > 1:
        nxt = [combine(a, b) for a, b in zip(values[0::2], values[1::2])]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def _rom(m: Module, name: str, codes) -> Memory:
    codes = [int(c) for c in codes]
    width, _ = bits_for_range(0, max(codes))
    rom = Memory(shape=unsigned(width), depth=len(codes), init=codes)
    m.submodules[name] = rom
    return rom


class SoftmaxLayer(wiring.Component):
    """Softmax of the input vector, in three registered steps.

    1. the largest input (a comparator tree), each element's distance to it
       and its exp-table entry (a ROM read per element);
    2. the sum of the entries (an adder tree) and its reciprocal-table entry;
    3. each entry times the reciprocal (``size`` multipliers), cast to the
       result type.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, size))
        the input vector, read in the cycle of ``i.valid``.
    ``o``: Out(CodeStreamSignature(result_type, size))
        the probabilities; hold their value until the next ``o.valid``.

    Latency
    -------
    3 cycles.

    II
    --
    1, without back-pressure.
    """

    latency = 3
    ii = 1
    bank = None

    def __init__(self, layer: QSoftmax):
        self.layer = layer
        super().__init__(layer_members(layer.in_type, layer.size, layer.result_type, layer.size))

    @property
    def multipliers(self) -> int:
        return self.layer.size

    @property
    def figures(self) -> dict:
        return {}

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        n = layer.size
        x = [self.i.payload[k] for k in range(n)]
        exp_table, inv_table = layer.exp_table(), layer.inv_table()

        # step 1: distances to the largest input, exp-table entries
        largest = _pairwise(x, lambda a, b: Mux(b > a, b, a))
        exp_rom = _rom(m, "exp_table", exp_table)
        e = [Signal(exp_rom.shape, name=f"exp_{k}") for k in range(n)]
        valid1 = Signal()
        m.d.sync += valid1.eq(self.i.valid)
        for k in range(n):
            port = exp_rom.read_port(domain="comb")
            m.d.comb += port.addr.eq(layer.exp_index(largest - x[k], Mux))
            m.d.sync += e[k].eq(port.data)

        # step 2: the sum and its reciprocal
        total = _pairwise(list(e), lambda a, b: a + b)
        inv_rom = _rom(m, "inv_table", inv_table)
        port = inv_rom.read_port(domain="comb")
        m.d.comb += port.addr.eq(layer.inv_index(total, Mux))
        recip = Signal(inv_rom.shape)
        e2 = [Signal(exp_rom.shape, name=f"exp_{k}_d") for k in range(n)]
        valid2 = Signal()
        m.d.sync += [recip.eq(port.data), valid2.eq(valid1)] + [b.eq(a) for a, b in zip(e, e2)]

        # step 3: products, cast
        hi = int(exp_table.max()) * int(inv_table.max())
        m.d.sync += self.o.valid.eq(valid2)
        for k in range(n):
            # held in a signed word: the cast's saturation then tests a sign that lint can see vary
            product = Signal(signed(hi.bit_length() + 1), name=f"product_{k}")
            m.d.comb += product.eq(e2[k] * recip)
            y = cast_operand(Operand(product, 0, hi), layer.product_frac, layer.result_type)
            with m.If(valid2):
                m.d.sync += self.o.payload[k].eq(y.value)
        return m


class ArgmaxLayer(OneCycleLayer):
    """The index of the largest input (the lowest index among equal ones): a tree of comparators
    carrying (value, index) pairs.

    A :class:`~rtlgen.hw.layer.OneCycleLayer`.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in_type, size))
        the input vector, read in the cycle of ``i.valid``.
    ``o``: Out(CodeStreamSignature(index type, 1))
        the class index, an unsigned integer; holds its value until the next ``o.valid``.

    Latency
    -------
    1 cycle.

    II
    --
    1, without back-pressure.
    """

    def __init__(self, layer: QArgmax):
        super().__init__(layer, layer.size, 1)

    @property
    def operand_frac(self) -> int:
        return 0

    def operands(self, m):
        width = self.layer.result_type.width
        pairs = [(self.i.payload[k], Const(k, unsigned(width))) for k in range(self.layer.size)]

        def better(a, b):      # b (higher indices) wins only when strictly larger
            take_b = b[0] > a[0]
            return Mux(take_b, b[0], a[0]), Mux(take_b, b[1], a[1])

        _, index = _pairwise(pairs, better)
        yield Operand(index, 0, self.layer.size - 1)
