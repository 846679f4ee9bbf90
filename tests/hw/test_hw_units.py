"""Amaranth-simulator unit tests of the small hardware components."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Const, Fragment, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from rtlgen.frontends.python_api import mlp
from rtlgen.hw.arith import Cast, Operand, cast_operand, select, shape_of, tree_depth, tree_stages
from rtlgen.hw.dense import DenseSchedule
from rtlgen.hw.layer import LayerHardware
from rtlgen.hw.network import Network
from rtlgen.hw.ports import CodeStream, CodeStreamSignature, CoreSignature
from rtlgen.hw.throttle import IIThrottle
from rtlgen.ir.config import apply_config
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
    # a source narrower than the wrapped target: its sign must reach the target's top bits
    (signed(3), 4, FixedType(7, 0, False, Quant.TRN_ZERO, Overflow.WRAP)),
    (signed(4), 0, FixedType(9, 9, False, Quant.TRN, Overflow.WRAP)),
    (signed(2), 1, FixedType(6, 4, True, Quant.RND, Overflow.WRAP)),
]


@pytest.mark.parametrize("src_shape,src_frac,dst", CAST_CASES, ids=lambda v: str(v))
def test_cast_matches_numerics_exhaustively(src_shape, src_frac, dst):
    codes, want, got = run_cast_exhaustive(src_shape, src_frac, dst)
    bad = np.nonzero(want != got)[0]
    assert bad.size == 0, f"code {codes[bad[0]]}: want {want[bad[0]]}, got {got[bad[0]]}"


# operands whose known range is narrower (or, for an unsigned signal, looser) than their signal:
# the overflow tests read the bits of the range's word, so every limit is crossed inside it
RANGED_CASTS = [
    (signed(12), lo, hi, FixedType(5, 5, sgn, Quant.TRN, o))
    for (lo, hi) in [(-40, 40), (-17, 15), (-16, 16), (-33, -2), (3, 70), (-20, 31), (0, 31)]
    for sgn in (True, False)
    for o in (Overflow.SAT, Overflow.SAT_ZERO, Overflow.SAT_SYM)
] + [(unsigned(5), -3, 31, FixedType(4, 4, True, Quant.TRN, Overflow.SAT_SYM)),
     (unsigned(3), -8, 20, FixedType(3, 3, False, Quant.TRN, Overflow.SAT))]


@pytest.mark.parametrize("shape,lo,hi,dst", RANGED_CASTS, ids=lambda v: str(v))
def test_cast_of_a_ranged_operand_matches_numerics(shape, lo, hi, dst):
    x = Signal(shape)
    y = Signal(shape_of(dst))
    m = Module()
    m.d.comb += y.eq(cast_operand(Operand(x, lo, hi), 0, dst).value)
    s_lo = -(1 << (shape.width - 1)) if shape.signed else 0
    s_hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    codes = np.arange(max(lo, s_lo), min(hi, s_hi) + 1, dtype=np.int64)
    want = requantize(codes, 0, dst)
    got = []

    async def bench(ctx):
        for c in codes:
            ctx.set(x, int(c))
            got.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    bad = np.nonzero(want != np.array(got, dtype=np.int64))[0]
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


def run_throttle(ii: int, offers: list[bool]):
    """(ready, accept) per cycle of an IIThrottle offered ``offers``; also
    checks that ``ready`` does not depend on ``valid`` in the same cycle."""
    dut = IIThrottle(ii)
    ready, accept = [], []
    # the harness counts cycles, so that there is a clock even when ii == 1
    # leaves the throttle without registers
    m = Module()
    m.submodules.dut = dut
    cycle = Signal(range(len(offers) + 1))
    m.d.sync += cycle.eq(cycle + 1)

    async def bench(ctx):
        for t, offer in enumerate(offers):
            assert ctx.get(cycle) == t
            ctx.set(dut.valid, 0)
            idle_ready = ctx.get(dut.ready)
            ctx.set(dut.valid, int(offer))
            ready.append(bool(ctx.get(dut.ready)))
            accept.append(bool(ctx.get(dut.accept)))
            assert ready[-1] == idle_ready, "in_ready depends on in_valid"
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return ready, accept


@pytest.mark.parametrize("ii", [1, 2, 3, 4, 7])
def test_throttle_ready_over_cycles(ii):
    rng = np.random.default_rng(ii)
    offers = [True] * (3 * ii) + [bool(v) for v in rng.random(80) < 0.5] + [False] * ii + [True] * (2 * ii)
    ready, accept = run_throttle(ii, offers)
    last = None     # cycle of the last accepted vector
    for t, offer in enumerate(offers):
        want = last is None or t - last >= ii
        assert ready[t] == want, f"ii={ii}, cycle {t}: ready {ready[t]}, want {want}"
        assert accept[t] == (offer and want), f"ii={ii}, cycle {t}"
        if accept[t]:
            last = t
    # offered every cycle, a vector is taken every ii cycles from the first
    assert [t for t in range(3 * ii) if accept[t]] == list(range(0, 3 * ii, ii))
    if ii == 1:
        assert all(ready)


T8 = FixedType(8, 3, True, Quant.RND, Overflow.SAT)
T6 = FixedType(6, 2, True, Quant.RND, Overflow.SAT)


def test_code_stream_signature_compares_by_type_and_count():
    sig = CodeStreamSignature(T8, 4)
    assert sig == CodeStreamSignature(T8, 4)
    assert sig != CodeStreamSignature(T8, 5)
    assert sig != CodeStreamSignature(T6, 4)
    assert sig.flip() == CodeStreamSignature(T8, 4).flip()
    assert repr(sig) == "CodeStreamSignature(fixed<8,3,RND,SAT>, 4)"
    assert list(sig.members) == ["payload", "valid", "ready"]
    stream = sig.create(path=("x",))
    assert isinstance(stream, CodeStream) and stream.signature is sig
    assert isinstance(stream.ready, Const) and stream.ready.value == 1
    assert len(stream.payload.as_value()) == 32 and stream.payload.as_value().name == "x__payload"


def test_code_stream_over_checks_the_signals():
    sig = CodeStreamSignature(T8, 4)
    payload = Signal(sig.members["payload"].shape, name="p")
    stream = CodeStream.over(sig, valid=Signal(name="v"), payload=payload)
    assert stream.payload is payload and sig.is_compliant(stream)
    with pytest.raises(TypeError, match="shape"):
        CodeStream.over(sig, valid=Signal(name="v"), payload=Signal(31))


def test_core_signature_members_and_equality():
    plain = CoreSignature(T6, 5, T8, 3)
    assert list(plain.members) == ["in_valid", "in_ready", "in_data", "out_valid", "out_data"]
    assert plain == CoreSignature(T6, 5, T8, 3) and plain != CoreSignature(T6, 5, T8, 4)
    bus = CoreSignature(T6, 5, T8, 3, bus_width=16)
    assert list(bus.members)[5:] == ["cfg_addr", "cfg_wdata", "cfg_we", "cfg_rdata"]
    assert bus.members["cfg_wdata"] == In(16) and bus.members["cfg_rdata"] == Out(16)
    i2c = CoreSignature(T6, 5, T8, 3, bus_width=16, i2c=True)
    assert list(i2c.members)[5:] == ["scl_i", "sda_i", "sda_oe"]
    assert bus != i2c and bus != plain and i2c != plain
    assert repr(i2c) == "CoreSignature(fixed<6,2,RND,SAT>, 5, fixed<8,3,RND,SAT>, 3, bus_width=16, i2c=True)"
    with pytest.raises(ValueError):
        CoreSignature(T6, 5, T8, 3, i2c=True)


def _small_network(storage="constant"):
    rng = np.random.default_rng(3)
    model = mlp([rng.normal(0, 1, (5, 4)), rng.normal(0, 1, (4, 3))], [rng.normal(0, 1, 4), rng.normal(0, 1, 3)],
                activations="relu")
    return apply_config(model, {"input": "fixed<6,2,RND,SAT>",
                                "default": {"weight": "fixed<5,2,RND,SAT>", "bias": "fixed<6,3,RND,SAT>",
                                            "result": "fixed<8,3,RND_CONV,SAT>", "storage": storage}})


@pytest.mark.parametrize("storage", ["constant", "register"])
def test_network_ports_are_typed(storage):
    q = _small_network(storage)
    net = Network(q)
    bus_width = None if storage == "constant" else net.bus.data_width
    assert net.signature == CoreSignature(q.input_type, q.n_in, q.output_type, q.n_out, bus_width=bus_width)
    for hw, layer in zip(net.layers, q.layers):
        assert isinstance(hw, LayerHardware) and hw.layer is layer
        assert (hw.bank is not None) == (storage != "constant" and layer.op == "dense")
        assert hw.i.signature == CodeStreamSignature(layer.in_type, hw.i.signature.count).flip()
        assert hw.o.signature.elem_type == layer.result_type
    for a, b in zip(net.layers, net.layers[1:]):
        assert a.o.signature == b.i.signature.flip()
    assert net.layers[0].i.signature.count == q.n_in and net.layers[-1].o.signature.count == q.n_out
    assert isinstance(wiring.flipped(net.signature.output(net)).valid, Signal)
    Fragment.get(net, None)     # the chain elaborates: every wiring.connect matches
