"""The adder of one shift-and-add node, and what synthesis makes of a layer of them.

``shift_adder`` computes ``(a << sa) +/- (b << sb)`` in the node's exact
width with the low bits wired through and, where an operand would be exactly
another adder's sum, a constant zero below both operands.  It is checked exhaustively in Amaranth's
simulator over operand ranges that use the zero column (operands held in
signals wider than their values, so the result is no wider than an operand),
every shift placement, addition and subtraction, signed and unsigned.  The
layer test runs Yosys' coarse synthesis on a shift-and-add core and checks
that ``alumacc`` made no multi-operand sum: every node stays its own adder.
"""

from __future__ import annotations

import itertools
import re
import subprocess

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from rtlgen.flows.synth import find_tool
from rtlgen.frontends.python_api import mlp
from rtlgen.hw.arith import range_shape
from rtlgen.hw.network import Network
from rtlgen.hw.shift_add import AdderInput, shift_adder
from rtlgen.ir.config import apply_config
from rtlgen.numerics.adder_graph import Node

#: (signal shape, lowest value, highest value) of an operand
OPERANDS = [(signed(4), -8, 7), (signed(7), -8, 7), (unsigned(4), 0, 15), (unsigned(6), 0, 9),
            (signed(6), -3, 12), (signed(12), -5, 6)]
SHIFTS = [(0, 0), (0, 2), (3, 0), (0, 5)]


def _configs():
    for (sa_shape, alo, ahi), (sb_shape, blo, bhi) in itertools.product(OPERANDS, repeat=2):
        for (a_shift, b_shift), subtract in itertools.product(SHIFTS, (False, True)):
            sign = -1 if subtract else 1
            ends = [(x << a_shift) + sign * (y << b_shift) for x in (alo, ahi) for y in (blo, bhi)]
            k = b_shift if subtract else max(a_shift, b_shift)
            for offsets in ((None, None), (k, 0), (0, k)):
                yield (sa_shape, alo, ahi, sb_shape, blo, bhi, a_shift, b_shift, subtract, min(ends),
                       max(ends), offsets)


CONFIGS = list(_configs())


def _field(value: int, shape) -> int:
    return value & ((1 << shape.width) - 1)


def _signed_field(bits: int, shape) -> int:
    if shape.signed and bits >> (shape.width - 1):
        return bits - (1 << shape.width)
    return bits


def test_shift_adder_is_exact_on_every_operand_pair():
    # every configuration reads its operands from one wide input word and writes one wide output
    # word, so a step of the bench is one settle of the whole design
    m = Module()
    duts, in_bits, out_bits = [], 0, 0
    for sa, alo, ahi, sb, blo, bhi, a_shift, b_shift, subtract, lo, hi, (oa, ob) in CONFIGS:
        a, b = Signal(sa), Signal(sb)
        y = Signal(range_shape(lo, hi))
        m.d.comb += y.eq(shift_adder(AdderInput(a, a_shift, oa), AdderInput(b, b_shift, ob), subtract, len(y)))
        pairs = [(x, z) for x in range(alo, ahi + 1) for z in range(blo, bhi + 1)]
        duts.append((a, b, y, in_bits, out_bits, pairs))
        in_bits += len(a) + len(b)
        out_bits += len(y)
    word_in, word_out = Signal(in_bits), Signal(out_bits)
    for a, b, y, at_in, at_out, _ in duts:
        m.d.comb += [a.eq(word_in[at_in:at_in + len(a)]), b.eq(word_in[at_in + len(a):at_in + len(a) + len(b)]),
                     word_out[at_out:at_out + len(y)].eq(y)]
    steps = max(len(d[-1]) for d in duts)
    bad = []

    async def bench(ctx):
        for i in range(steps):
            word = 0
            for a, b, _, at_in, _, pairs in duts:
                x, z = pairs[i % len(pairs)]
                word |= (_field(x, a.shape()) | _field(z, b.shape()) << len(a)) << at_in
            ctx.set(word_in, word)
            out = ctx.get(word_out)
            for n, (_, _, y, _, at_out, pairs) in enumerate(duts):
                x, z = pairs[i % len(pairs)]
                _, _, _, _, _, _, a_shift, b_shift, subtract, _, _, _ = CONFIGS[n]
                want = (x << a_shift) + (-1 if subtract else 1) * (z << b_shift)
                got = _signed_field(out >> at_out & ((1 << len(y)) - 1), y.shape())
                if got != want:
                    bad.append((CONFIGS[n], x, z, got, want))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert len(duts) == len(CONFIGS) and steps == 256
    assert not bad, f"{len(bad)} wrong sums, first: {bad[:3]}"


@pytest.mark.parametrize("node,offset", [
    (Node("add", 0, 0, a=0, a_shift=0, b=1, b_shift=3, sign=1), 3),
    (Node("add", 0, 0, a=0, a_shift=3, b=1, b_shift=0, sign=1), 3),
    (Node("add", 0, 0, a=0, a_shift=0, b=1, b_shift=2, sign=-1), 2),
    (Node("add", 0, 0, a=0, a_shift=2, b=1, b_shift=0, sign=-1), 0),
])
def test_passthrough_counts_the_bits_below_the_adder(node, offset):
    assert node.passthrough == offset


def test_yosys_keeps_every_adder_of_a_layer_apart(tmp_path):
    """No multi-operand sum ($macc) after Yosys' alumacc, and at least one $alu per adder."""
    # deep stages (6 adder levels) give chains of single-use adders in one stage, which Yosys merges
    # unless the zero column keeps them apart
    rng = np.random.default_rng(4)
    q = mlp([rng.integers(-31, 32, size=(8, 8)) / 8.0, rng.integers(-31, 32, size=(8, 4)) / 8.0],
            [rng.normal(0, 1, 8), rng.normal(0, 1, 4)], activations="relu", name="sa_apart")
    q = apply_config(q, {"input": "fixed<10,4,RND,SAT>",
                         "default": {"weight": "fixed<7,3,RND,SAT>", "bias": "fixed<7,3,RND,SAT>",
                                     "result": "fixed<12,5,RND,SAT>", "adder_levels": 6}})
    net = Network(q)
    adders = sum(hw.figures.get("adders", 0) for hw in net.layers)
    assert adders > 100
    (tmp_path / "core.il").write_text(rtlil.convert(net, name="core"))
    yosys = find_tool("yosys")
    proc = subprocess.run([*yosys.argv, "-q", "-p", "read_rtlil core.il; synth -flatten -top core -run begin:fine; "
                           "tee -o stat.txt stat"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stat = (tmp_path / "stat.txt").read_text()
    cells = {name: int(n) for name, n in re.findall(r"^\s+(\$\w+)\s+(\d+)\s*$", stat, re.M)}
    assert cells.get("$macc", 0) == 0, stat
    assert cells.get("$alu", 0) >= adders, stat
