"""Amaranth-simulator unit tests of the small hardware components."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from rtlgen.hw.arith import Cast, tree_depth, tree_stages
from rtlgen.hw.dense import DenseSchedule
from rtlgen.numerics.fixed import FixedType, Overflow, Quant, requantize


def run_cast_exhaustive(src_shape, src_frac, dst):
    dut = Cast(src_shape, src_frac, dst)
    lo = -(1 << (src_shape.width - 1)) if src_shape.signed else 0
    hi = (1 << (src_shape.width - 1)) - 1 if src_shape.signed else (1 << src_shape.width) - 1
    codes = np.arange(lo, hi + 1, dtype=np.int64)
    want = requantize(codes, src_frac, dst)
    got = []

    async def bench(ctx):
        for c in codes:
            ctx.set(dut.i, int(c))
            got.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return codes, want, np.array(got, dtype=np.int64)


CAST_CASES = [
    (signed(8), 4, FixedType(5, 2, True, q, o))
    for q, o in itertools.product(list(Quant), list(Overflow))
] + [
    (unsigned(7), 3, FixedType(4, 3, False, Quant.RND_CONV, Overflow.SAT)),
    (signed(6), 1, FixedType(8, 8, True, Quant.RND, Overflow.WRAP)),        # widening: shift left
    (signed(9), 0, FixedType(4, 6, True, Quant.RND_INF, Overflow.SAT_SYM)),  # negative frac target
    (signed(7), 6, FixedType(3, -1, False, Quant.TRN_ZERO, Overflow.SAT_ZERO)),
]


@pytest.mark.parametrize("src_shape,src_frac,dst", CAST_CASES, ids=lambda v: str(v))
def test_cast_matches_numerics_exhaustively(src_shape, src_frac, dst):
    codes, want, got = run_cast_exhaustive(src_shape, src_frac, dst)
    bad = np.nonzero(want != got)[0]
    assert bad.size == 0, f"code {codes[bad[0]]}: want {want[bad[0]]}, got {got[bad[0]]}"


@pytest.mark.parametrize("n,levels", [(1, 1), (2, 1), (5, 2), (64, 2), (65, 3)])
def test_tree_stage_count(n, levels):
    depth = tree_depth(n)
    assert 2 ** depth >= n and (depth == 0 or 2 ** (depth - 1) < n)
    assert tree_stages(depth, levels) == max(0, -(-depth // levels) - 1)


@pytest.mark.parametrize("reuse", [1, 2, 3, 4, 7, 13])
def test_dense_schedule_covers_every_weight_once(reuse):
    rng = np.random.default_rng(reuse)
    w = rng.integers(-3, 4, size=(6, 5))
    w[:, 2] = 0
    sched = DenseSchedule(w, reuse)
    seen = [(s.i, s.j) for slots in sched.slots for s in slots]
    assert sorted(seen) == sorted((i, j) for i in range(6) for j in range(5) if w[i, j] != 0)
    assert sched.n_mult == -(-np.count_nonzero(w) // reuse)
    assert all(len(slots) <= reuse and len({s.phase for s in slots}) == len(slots) for slots in sched.slots)
    assert sched.feeds[2] == []


@pytest.mark.parametrize("n_values,index_width", [(1, 2), (3, 2), (4, 2), (5, 3), (9, 4)])
def test_select_reads_default_past_the_end(n_values, index_width):
    from amaranth.hdl import Const, Module, Signal
    from rtlgen.hw.arith import select
    m = Module()
    index = Signal(index_width)
    out = Signal(signed(8))
    values = [Const(v, signed(8)) for v in range(-3, -3 + n_values)]
    m.d.comb += out.eq(select(values, index, default=Const(99, signed(8))))
    got = {}

    async def bench(ctx):
        for k in range(1 << index_width):
            ctx.set(index, k)
            got[k] = ctx.get(out)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == {k: (k - 3 if k < n_values else 99) for k in range(1 << index_width)}
