"""The host link's gateware (rtlgen.link.gateware) in the Amaranth simulator.

A bit-level host UART (:class:`test_uart.HostUart`) talks to a
:class:`CoreLink` around a tiny core; frames are made and read with
:mod:`rtlgen.link.protocol` and results compared with the golden model.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from rtlgen.emit.regmap import ConfigDriver, regmap_for
from rtlgen.frontends.python_api import mlp
from rtlgen.ir.config import apply_config
from rtlgen.kinds import kind_of
from rtlgen.link import protocol as P
from rtlgen.link.gateware import CoreLink, crc8_step

from helpers.core import CLOCK_PERIOD
from test_uart import HostUart

DIVISOR = 4
BYTE_CYCLES = 10 * DIVISOR
BASE = {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,3,RND,SAT>", "result": "fixed<10,4,RND,SAT>"}


def tiny_model(n_in=3, n_out=2, storage="constant", seed=1, input_type="fixed<6,2,RND,SAT>", **types):
    rng = np.random.default_rng(seed)
    model = mlp([rng.normal(0, 1, (n_in, n_out))], [rng.normal(0, 1, n_out)], activations="relu",
                name="link_mlp")
    return apply_config(model, {"input": input_type, "default": {**BASE, **types, "storage": storage}})


def random_inputs(q, n, seed):
    t = q.input_type
    return np.random.default_rng(seed).integers(t.min_code, t.max_code + 1, size=(n, q.n_in))


class Golden:
    """The core of a quantized model, and its vectors as link bytes and words."""

    def __init__(self, q):
        self.q, self.kind = q, kind_of(q)
        self.w_in, self.w_out = q.input_type.width, q.output_type.width
        self.n_out = q.n_out
        self.signed_out = q.output_type.signed

    @cached_property
    def core(self):
        return self.kind.core(self.q)

    def predict(self, x):
        return self.kind.predict_codes(self.q, np.asarray(x))

    def in_bytes(self, codes) -> bytes:
        return P.pack_vector(codes, self.w_in)

    def in_word(self, codes) -> int:
        return int.from_bytes(self.in_bytes(codes), "little")

    def out_word(self, codes) -> int:
        return int.from_bytes(P.pack_vector(codes, self.w_out), "little")

    def out_codes(self, payload: bytes) -> list[int]:
        return P.unpack_vector(payload, self.n_out, self.w_out, self.signed_out)

    def link(self, core=None, **kw):
        core = self.core if core is None else core
        return CoreLink(core, latency=self.core.latency, ii=self.core.ii, divisor=DIVISOR, **kw)


class HeldCore(wiring.Component):
    """A core whose input the testbench can hold (``hold`` high: ``in_ready`` low)."""

    def __init__(self, core):
        self.core = core
        super().__init__(wiring.Signature({**dict(core.signature.members.items()), "hold": In(1)}))

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = self.core
        m.d.comb += [core.in_valid.eq(self.in_valid & ~self.hold), self.in_ready.eq(core.in_ready & ~self.hold),
                     core.in_data.eq(self.in_data), self.out_valid.eq(core.out_valid),
                     self.out_data.eq(core.out_data)]
        if "cfg_wdata" in self.signature.members:
            m.d.comb += [core.cfg_addr.eq(self.cfg_addr), core.cfg_wdata.eq(self.cfg_wdata),
                         core.cfg_we.eq(self.cfg_we), self.cfg_rdata.eq(core.cfg_rdata)]
        return m


class Host:
    """Frames to and from a CoreLink over the bit-level UART."""

    def __init__(self, link):
        self.uart = HostUart(link.rx, link.tx, DIVISOR)
        self.decoder = P.FrameDecoder()
        self.frames: list[P.Frame] = []
        self._fed = 0

    def replies(self) -> list[P.Frame]:
        new = bytes(self.uart.received[self._fed:])
        self._fed += len(new)
        self.frames += self.decoder.feed(new)
        return self.frames

    async def send(self, ctx, cmd, payload=b""):
        await self.uart.send(ctx, P.encode_frame(cmd, payload))

    async def wait(self, ctx, n: int, max_bytes: int = 400) -> list[P.Frame]:
        """Wait until ``n`` frames have come in all (at most ``max_bytes`` byte times)."""
        for _ in range(max_bytes * 2):
            if len(self.replies()) >= n:
                return self.frames
            await ctx.tick().repeat(BYTE_CYCLES // 2)
        raise AssertionError(f"{len(self.frames)} reply frames, expected {n}: {self.frames}")

    async def quiet(self, ctx, byte_times: int = 40):
        """Wait and check that nothing more comes."""
        before = len(self.replies())
        await ctx.tick().repeat(byte_times * BYTE_CYCLES)
        assert len(self.replies()) == before, self.frames[before:]

    async def call(self, ctx, cmd, payload=b"") -> P.Frame:
        n = len(self.replies())
        await self.send(ctx, cmd, payload)
        return (await self.wait(ctx, n + 1))[n]

    async def status(self, ctx) -> P.Status:
        frame = await self.call(ctx, P.STATUS)
        assert frame.cmd == P.STATUS | P.REPLY
        return P.Status.unpack(frame.payload)


def run_link(link, bench):
    host = Host(link)
    sim = Simulator(link)
    sim.add_clock(CLOCK_PERIOD)
    sim.add_testbench(host.uart.receiver, background=True)

    async def main(ctx):
        ctx.set(link.rx, 1)
        await bench(ctx, host)
        await host.quiet(ctx, 30)
        assert host.decoder.bad_frames == 0 and host.uart.stop_errors == 0

    sim.add_testbench(main)
    sim.run()
    return host


@pytest.fixture(scope="module")
def tiny():
    return Golden(tiny_model())


def test_crc_step_matches_protocol():
    crc, byte = Signal(8), Signal(8)
    m = Module()
    out = Signal(8)
    m.d.comb += out.eq(crc8_step(crc, byte))
    sim = Simulator(m)

    async def bench(ctx):
        rng = np.random.default_rng(0)
        for c, b in [(0, 0), (0, 0xFF), (0xFF, 0), *rng.integers(0, 256, size=(200, 2))]:
            ctx.set(crc, int(c))
            ctx.set(byte, int(b))
            assert ctx.get(out) == P.crc8(bytes([int(b)]), int(c))

    sim.add_testbench(bench)
    sim.run()


def test_info(tiny):
    link = tiny.link(window=3)

    async def bench(ctx, host):
        frame = await host.call(ctx, P.INFO)
        assert frame.cmd == P.INFO | P.REPLY
        assert P.Info.unpack(frame.payload) == P.Info(3, 3, 3, tiny.core.latency, tiny.core.ii, 0, 0)
        assert ctx.get(link.selftest_state) == P.SELFTEST_NONE
        assert ctx.get(link.activity) and not ctx.get(link.busy)

    run_link(link, bench)


def test_infer_back_to_back_within_the_window(tiny):
    window = 2
    link = tiny.link(window=window)
    x = random_inputs(tiny.q, 10, seed=4)
    x[0], x[1] = tiny.q.input_type.max_code, tiny.q.input_type.min_code

    async def bench(ctx, host):
        sent = 0
        while sent < len(x):
            if sent - len(host.replies()) < window:
                await host.send(ctx, P.INFER, tiny.in_bytes(x[sent]))
                sent += 1
            else:
                await ctx.tick().repeat(DIVISOR)
        frames = await host.wait(ctx, len(x))
        assert all(f.cmd == P.INFER | P.REPLY for f in frames), frames
        got = [tiny.out_codes(f.payload) for f in frames]
        assert np.array_equal(np.array(got), tiny.predict(x))
        status = await host.status(ctx)
        assert status == P.Status(P.SELFTEST_NONE, 0, 0, 0, 0, 0, 0, 0, len(x))

    run_link(link, bench)


def test_errors_each_get_one_reply_and_are_counted(tiny):
    link = tiny.link()
    x = random_inputs(tiny.q, 2, seed=5)

    async def bench(ctx, host):
        # bad CRC
        good = P.encode_frame(P.INFER, tiny.in_bytes(x[0]))
        n = len(host.replies())
        await host.uart.send(ctx, good[:-1] + bytes([good[-1] ^ 0x10]))
        assert (await host.wait(ctx, n + 1))[n].error == (P.E_CRC, P.INFER)
        # unknown command, with a payload to skip (which holds SYNC bytes)
        assert (await host.call(ctx, 0x33, b"\xa5\xa5\x01")).error == (P.E_COMMAND, 0x33)
        # the configuration commands of a core without a bus
        assert (await host.call(ctx, P.CFG_READ, b"\x10\x00\x01")).error == (P.E_COMMAND, P.CFG_READ)
        # a length that does not fit: answered after the LEN bytes, without the rest
        for cmd, length in [(P.INFO, 1), (P.STATUS, 300), (P.INFER, 2), (P.INFER, 4)]:
            n = len(host.replies())
            body = bytes([cmd, length & 0xFF, length >> 8])
            await host.uart.send(ctx, bytes([P.SYNC]) + body)
            assert (await host.wait(ctx, n + 1, max_bytes=12))[n].error == (P.E_LENGTH, cmd)
        # a frame that stops: dropped after TIMEOUT_BYTES byte times, then a good frame works
        n = len(host.replies())
        await host.uart.send(ctx, good[:5])
        await ctx.tick().repeat((P.TIMEOUT_BYTES - 4) * BYTE_CYCLES)
        assert len(host.replies()) == n
        frames = await host.wait(ctx, n + 1, max_bytes=12)
        assert frames[n].error == (P.E_TIMEOUT, P.INFER)
        result = await host.call(ctx, P.INFER, tiny.in_bytes(x[1]))
        assert result.cmd == P.INFER | P.REPLY
        assert tiny.out_codes(result.payload) == list(tiny.predict(x[1:2])[0])
        # stray bytes between frames are skipped
        await host.uart.send(ctx, b"\x00\x13\x81")
        assert (await host.call(ctx, P.INFO)).cmd == P.INFO | P.REPLY
        status = await host.status(ctx)
        assert status == P.Status(P.SELFTEST_NONE, 0, 0, bad_crc=1, bad_command=2, bad_length=4, overruns=0,
                                  timeouts=1, results=1)

    host = run_link(link, bench)
    # exactly one reply per frame: 3 errors, 4 lengths, timeout, result, INFO, STATUS
    assert len(host.frames) == 11


def test_overrun_drops_exactly_the_excess(tiny):
    window, extra = 3, 2
    held = HeldCore(tiny.core)
    link = tiny.link(core=held, window=window)
    x = random_inputs(tiny.q, window + extra, seed=6)

    async def bench(ctx, host):
        ctx.set(held.hold, 1)
        for v in x:
            await host.send(ctx, P.INFER, tiny.in_bytes(v))
        frames = await host.wait(ctx, extra)
        assert [f.error for f in frames] == [(P.E_OVERRUN, P.INFER)] * extra
        await host.quiet(ctx, 10)
        ctx.set(held.hold, 0)
        frames = await host.wait(ctx, extra + window)
        got = [tiny.out_codes(f.payload) for f in frames[extra:]]
        assert np.array_equal(np.array(got), tiny.predict(x[:window]))
        # replies of other kinds go out while results wait
        ctx.set(held.hold, 1)
        for v in x[:window]:
            await host.send(ctx, P.INFER, tiny.in_bytes(v))
        await host.send(ctx, P.INFO)
        await host.send(ctx, P.STATUS)
        frames = await host.wait(ctx, extra + window + 2)
        assert [f.cmd for f in frames[-2:]] == [P.INFO | P.REPLY, P.STATUS | P.REPLY]
        assert P.Status.unpack(frames[-1].payload).overruns == extra
        ctx.set(held.hold, 0)
        frames = await host.wait(ctx, extra + 2 * window + 2)
        got = [tiny.out_codes(f.payload) for f in frames[-window:]]
        assert np.array_equal(np.array(got), tiny.predict(x[:window]))
        assert (await host.status(ctx)).results == 2 * window

    run_link(link, bench)


def selftest_vectors(g: Golden, n: int, seed: int):
    x = random_inputs(g.q, n, seed)
    return x, [g.in_word(v) for v in x], [g.out_word(y) for y in g.predict(x)]


def test_selftest_passes_while_infer_vectors_wait(tiny):
    held = HeldCore(tiny.core)
    _, inputs, expected = selftest_vectors(tiny, 7, seed=7)
    link = tiny.link(core=held, selftest_inputs=inputs, selftest_expected=expected)
    x = random_inputs(tiny.q, 2, seed=8)

    async def bench(ctx, host):
        # the core is held: the self-test cannot finish, INFER vectors wait behind it
        ctx.set(held.hold, 1)
        await ctx.tick()
        assert ctx.get(link.selftest_state) == P.SELFTEST_RUNNING
        for v in x:
            await host.send(ctx, P.INFER, tiny.in_bytes(v))
        status = await host.status(ctx)
        assert (status.selftest, status.selftest_done) == (P.SELFTEST_RUNNING, 0)
        assert len(host.frames) == 1
        ctx.set(held.hold, 0)
        frames = await host.wait(ctx, 3)
        assert np.array_equal(np.array([tiny.out_codes(f.payload) for f in frames[1:]]), tiny.predict(x))
        assert ctx.get(link.selftest_state) == P.SELFTEST_PASS and ctx.get(link.mismatches) == 0
        status = await host.status(ctx)
        assert (status.selftest, status.mismatches, status.selftest_done) == (P.SELFTEST_PASS, 0, 7)
        info = P.Info.unpack((await host.call(ctx, P.INFO)).payload)
        assert info.selftest_vectors == 7

    run_link(link, bench)


def test_selftest_fails_with_the_count_of_bad_words(tiny):
    _, inputs, expected = selftest_vectors(tiny, 9, seed=9)
    expected[4] ^= 1
    expected[8] ^= 1 << (tiny.w_out * tiny.n_out - 1)
    link = tiny.link(selftest_inputs=inputs, selftest_expected=expected)
    x = random_inputs(tiny.q, 1, seed=10)

    async def bench(ctx, host):
        await ctx.tick().repeat(40)   # 9 vectors at full rate, then the latency
        assert ctx.get(link.selftest_state) == P.SELFTEST_FAIL and ctx.get(link.mismatches) == 2
        status = await host.status(ctx)
        assert (status.selftest, status.mismatches, status.selftest_done) == (P.SELFTEST_FAIL, 2, 9)
        result = await host.call(ctx, P.INFER, tiny.in_bytes(x[0]))
        assert tiny.out_codes(result.payload) == list(tiny.predict(x)[0])

    run_link(link, bench)


def new_param_codes(q, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for layer in q.layers:
        if getattr(layer, "stored", False):
            w, b = layer.param_codes()
            wt, bt = layer.weight_type, layer.bias_type
            out[layer.name] = (rng.integers(wt.min_code, wt.max_code + 1, size=w.shape),
                               rng.integers(bt.min_code, bt.max_code + 1, size=b.shape))
    return out


def runs(writes):
    """(first address, words) of each run of consecutive addresses."""
    out = []
    for addr, word in writes:
        if out and out[-1][0] + len(out[-1][1]) == addr:
            out[-1][1].append(word)
        else:
            out.append((addr, [word]))
    return out


def test_cfg_write_read_round_trip_and_new_results():
    # a 12-bit bias makes the bus 16 bits wide: 2 bytes per word
    g = Golden(tiny_model(storage="register", seed=3, bias="fixed<12,5,RND,SAT>"))
    driver = ConfigDriver(regmap_for(g.q))
    assert driver.data_width == 16
    q2 = driver.model_with(g.q, new_param_codes(g.q, seed=12))
    link = g.link()
    x = random_inputs(g.q, 3, seed=13)
    assert not np.array_equal(g.predict(x), Golden(q2).predict(x))

    def words(data: bytes):
        return [int.from_bytes(data[k:k + 2], "little") for k in range(0, len(data), 2)]

    async def read_all(ctx, host, writes):
        got = []
        for addr, expect in runs(writes):
            frame = await host.call(ctx, P.CFG_READ, addr.to_bytes(2, "little") + bytes([len(expect)]))
            assert frame.cmd == P.CFG_READ | P.REPLY
            got.append(words(frame.payload))
        return got

    async def bench(ctx, host):
        info = P.Info.unpack((await host.call(ctx, P.INFO)).payload)
        assert info.bus_bytes == 2
        old = driver.writes(g.q)
        assert await read_all(ctx, host, old) == [w for _, w in runs(old)]
        new = driver.writes(q2)
        for addr, ws in runs(new):
            payload = addr.to_bytes(2, "little") + b"".join(w.to_bytes(2, "little") for w in ws)
            frame = await host.call(ctx, P.CFG_WRITE, payload)
            assert frame == P.Frame(P.CFG_WRITE | P.REPLY, b"")
        assert await read_all(ctx, host, new) == [w for _, w in runs(new)]
        for v, y in zip(x, Golden(q2).predict(x)):
            assert g.out_codes((await host.call(ctx, P.INFER, g.in_bytes(v))).payload) == list(y)
        # lengths that do not fit the configuration commands
        for cmd, payload in [(P.CFG_WRITE, b"\x10\x00\x01"), (P.CFG_WRITE, b"\x10\x00"),
                             (P.CFG_READ, b"\x10\x00"), (P.CFG_READ, b"\x10\x00\x01\x00")]:
            assert (await host.call(ctx, cmd, payload)).error == (P.E_LENGTH, cmd)
        status = await host.status(ctx)
        assert (status.bad_length, status.bad_crc, status.results) == (4, 0, len(x))

    run_link(link, bench)


@pytest.mark.parametrize("shape", ["byte", "wide"])
def test_one_byte_and_wide_vectors(shape):
    if shape == "byte":
        g = Golden(tiny_model(1, 1, input_type="fixed<8,3,RND,SAT>", result="fixed<8,4,RND,SAT>"))
        assert (g.w_in, g.w_out) == (8, 8)
    else:
        g = Golden(tiny_model(24, 16, seed=2))
        assert g.w_in * 24 > 128 and g.w_out * 16 > 128
    _, inputs, expected = selftest_vectors(g, 3, seed=14)
    link = g.link(window=1, selftest_inputs=inputs, selftest_expected=expected)
    x = random_inputs(g.q, 2, seed=15)

    async def bench(ctx, host):
        info = P.Info.unpack((await host.call(ctx, P.INFO)).payload)
        assert (info.in_bytes, info.out_bytes, info.window) == (
            P.vector_bytes(g.q.n_in, g.w_in), P.vector_bytes(g.n_out, g.w_out), 1)
        for v, y in zip(x, g.predict(x)):
            assert g.out_codes((await host.call(ctx, P.INFER, g.in_bytes(v))).payload) == list(y)
        status = await host.status(ctx)
        assert (status.selftest, status.mismatches, status.selftest_done) == (P.SELFTEST_PASS, 0, 3)

    run_link(link, bench)


def test_converts_to_verilog():
    g = Golden(tiny_model(storage="register", seed=3))
    _, inputs, expected = selftest_vectors(g, 4, seed=16)
    text = verilog.convert(g.link(selftest_inputs=inputs, selftest_expected=expected), name="link_top")
    assert "module link_top" in text and "input_rom" in text


def test_bad_parameters_are_refused(tiny):
    with pytest.raises(ValueError, match="window"):
        tiny.link(window=0)
    with pytest.raises(ValueError, match="both"):
        tiny.link(selftest_inputs=[1])
    with pytest.raises(ValueError, match="at least 4"):
        CoreLink(tiny.core, latency=1, ii=1, divisor=3)
    with pytest.raises(ValueError, match="input words per expected result"):
        tiny.link(selftest_inputs=[1, 2], selftest_expected=[3])
