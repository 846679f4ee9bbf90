"""The I2C target in Amaranth's simulator against a bit-level I2C master.

The master (:class:`helpers.i2c.Wave`) builds each transaction as a
per-cycle waveform of SCL and of its own SDA drive; the line is the wired
AND of the master and the target (``sda_oe`` pulls it low).  Standard-mode
timing is converted to clock cycles of the simulated system clock.  A small register file model
answers the configuration bus with one cycle of read latency.  The target
never stretches the clock, and the master does not support it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from amaranth.back import verilog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtlgen.errors import RtlgenError
from rtlgen.hw.i2c import I2CTarget, hold_cycles_for, sda_delay_max

from helpers import core
from helpers.i2c import Timing, Wave, read_txn, words_to_bytes, write_txn

ADDR = 0x42
OTHER = 0x17
CLK_HZ = 4e6

# constructors that raise leave an unused elaboratable behind
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"),
              pytest.mark.usefixtures("collect_unelaborated")]


def word_init(addr: int, width: int) -> int:
    return (addr * 0x9E3779B1 + 0x5A) % (1 << width)


@dataclass
class Result:
    samples: dict
    writes: list
    mem: dict
    sda_delays: list      # clock edges from the first edge seeing SCL low to each sda_oe change


def run(dut: I2CTarget, wave: Wave, glitches=(), mem=None) -> Result:
    """Play ``wave``; check the target's SDA timing; return samples and bus writes.

    ``glitches`` are (cycle, 'scl' | 'sda', length) inversions of the pin.
    """
    scl = list(wave.scl)
    sda_m = wave.sda()
    flip = {"scl": set(), "sda": set()}
    for cyc, line, length in glitches:
        flip[line].update(range(cyc, cyc + length))
    sample_at = {}
    for cyc, tag in wave.samples:
        sample_at.setdefault(cyc, []).append(tag)
    mem = {} if mem is None else mem
    writes, samples, delays = [], {}, []
    width = dut.data_width
    clk_hz = dut.clk_hz
    delay_max = sda_delay_max(dut.filter_cycles, dut.hold_cycles)

    async def bench(ctx):
        oe = 0
        scl_fell = None      # first cycle the pin SCL is low
        prev_scl = 1
        for cyc in range(len(scl)):
            pin_scl = scl[cyc] ^ (cyc in flip["scl"])
            line = sda_m[cyc] & (1 - oe)
            pin_sda = line ^ (cyc in flip["sda"])
            if pin_scl == 0 and prev_scl == 1:
                scl_fell = cyc
            prev_scl = pin_scl
            for tag in sample_at.get(cyc, ()):
                samples[tag] = line
            ctx.set(dut.scl_i, pin_scl)
            ctx.set(dut.sda_i, pin_sda)
            addr, we, wdata = ctx.get(dut.bus_addr), ctx.get(dut.bus_we), ctx.get(dut.bus_wdata)
            await ctx.tick()
            if we:
                mem[addr] = wdata
                writes.append((addr, wdata))
            ctx.set(dut.bus_rdata, mem.get(addr, word_init(addr, width)))
            new_oe = ctx.get(dut.sda_oe)
            if new_oe != oe and not glitches:
                # SDA changes only while SCL is low, >= 300 ns after it fell, within the valid time
                assert scl[cyc] == 0 and (cyc + 1 >= len(scl) or scl[cyc + 1] == 0), \
                    f"the target changed SDA while SCL was high (cycle {cyc})"
                delay = cyc - scl_fell
                delays.append(delay)
                assert delay * 1e9 / clk_hz >= 300, f"SDA hold {delay} cycles < 300 ns (cycle {cyc})"
                assert delay + 1 <= delay_max, f"SDA changed {delay + 1} cycles after SCL fell"
                assert (delay + 1) * 1e9 / clk_hz <= 3450
            oe = new_oe

    core.run(dut, bench, period=1e-6)
    return Result(samples, writes, mem, delays)


# ---------------------------------------------------------------------------
# transaction helpers and the reference model
# ---------------------------------------------------------------------------

def acked(res: Result, tag) -> bool:
    return res.samples[tag] == 0


def read_bytes(res: Result, tag: str, n: int) -> list:
    return [sum(res.samples[((tag, k), j)] << (7 - j) for j in range(8)) for k in range(n)]


def reg(addr: int) -> list:
    return [addr >> 8, addr & 0xFF]


def target(width=16, **kw) -> I2CTarget:
    return I2CTarget(ADDR, width, clk_hz=kw.pop("clk_hz", CLK_HZ), **kw)


def started_wave() -> Wave:
    """A standard-mode waveform: 20 idle cycles, then a START."""
    w = Wave(Timing(CLK_HZ))
    w.idle(20)
    w.start()
    return w


# ---------------------------------------------------------------------------
# directed tests
# ---------------------------------------------------------------------------

def test_single_word_write():
    dut = target()
    w = started_wave()
    write_txn(w, ADDR, reg(0x0123) + [0xBE, 0xEF], "t")
    w.stop()
    res = run(dut, w)
    assert res.writes == [(0x0123, 0xBEEF)]
    assert all(acked(res, ("t", k)) for k in ("addr", 0, 1, 2, 3))


@pytest.mark.parametrize("width", [8, 16, 24])
def test_multi_word_write_auto_increments(width):
    dut = target(width)
    words = [word_init(100 + k, width) ^ 0xA5 for k in range(3)]
    w = started_wave()
    write_txn(w, ADDR, reg(0xFFFE) + words_to_bytes(words, width), "t")
    w.stop()
    res = run(dut, w)
    assert res.writes == [(0xFFFE, words[0]), (0xFFFF, words[1]), (0x0000, words[2])]


@pytest.mark.parametrize("width", [8, 16, 32])
def test_read_with_repeated_start(width):
    dut = target(width)
    mem = {0x40 + k: word_init(7 * k + 3, width) for k in range(3)}
    w = started_wave()
    write_txn(w, ADDR, reg(0x40), "w")
    w.start()
    n = 3 * width // 8
    read_txn(w, ADDR, n, "r")
    w.stop()
    res = run(dut, w, mem=mem)
    assert res.writes == []
    assert acked(res, ("r", "addr"))
    assert read_bytes(res, "r", n) == words_to_bytes([mem[0x40], mem[0x41], mem[0x42]], width)


def test_write_then_read_back_in_one_transaction():
    dut = target(16)
    w = started_wave()
    write_txn(w, ADDR, reg(0x10) + [0x12, 0x34, 0x56, 0x78], "w")
    w.stop()
    w.start()
    write_txn(w, ADDR, reg(0x10), "a")
    w.start()
    read_txn(w, ADDR, 4, "r")
    w.stop()
    res = run(dut, w)
    assert res.writes == [(0x10, 0x1234), (0x11, 0x5678)]
    assert read_bytes(res, "r", 4) == [0x12, 0x34, 0x56, 0x78]


def test_wrong_address_is_nacked_and_writes_nothing():
    dut = target()
    w = started_wave()
    write_txn(w, OTHER, reg(0x22) + [0xAA, 0x55], "t")
    w.stop()
    res = run(dut, w)
    assert res.writes == []
    assert not any(acked(res, ("t", k)) for k in ("addr", 0, 1, 2, 3))


@pytest.mark.parametrize("cut", ["stop", "restart"])
@pytest.mark.parametrize("extra", [0, 1, 7])
def test_partial_word_is_discarded(cut, extra):
    dut = target(16)
    w = started_wave()
    # one full word, then one byte (and some bits) of the next
    write_txn(w, ADDR, reg(0x30) + [0x11, 0x22, 0x33], "t", extra_bits=[1, 0, 1, 1, 0, 1, 0][:extra])
    if cut == "stop":
        w.stop()
    else:
        w.start()
        write_txn(w, OTHER, [0x00], "o")
        w.stop()
    res = run(dut, w)
    assert res.writes == [(0x30, 0x1122)]


@pytest.mark.parametrize("cut", ["stop", "restart"])
def test_next_write_after_a_partial_word_starts_a_fresh_word(cut):
    dut = target(16)
    w = started_wave()
    write_txn(w, ADDR, reg(0x30) + [0x11, 0x22, 0x33], "t")
    if cut == "stop":
        w.stop()
    w.start()
    write_txn(w, ADDR, reg(0x70) + [0x44, 0x55, 0x66], "u")
    w.stop()
    res = run(dut, w)
    assert res.writes == [(0x30, 0x1122), (0x70, 0x4455)]


def test_stop_mid_address_writes_nothing():
    dut = target(16)
    w = started_wave()
    write_txn(w, ADDR, [0x00], "t", extra_bits=[1, 1, 0])
    w.stop()
    w.start()
    write_txn(w, ADDR, [], "u")
    w.stop()
    res = run(dut, w)
    assert res.writes == []


def test_read_without_address_is_nacked():
    dut = target(16)
    w = started_wave()
    write_txn(w, ADDR, reg(0x50), "w")
    w.stop()                    # the address does not survive a STOP
    w.start()
    read_txn(w, ADDR, 2, "r")
    w.stop()
    res = run(dut, w, mem={0x50: 0x0000})
    assert not acked(res, ("r", "addr"))
    assert read_bytes(res, "r", 2) == [0xFF, 0xFF]


def test_glitches_shorter_than_the_filter_are_ignored():
    def scenario(filter_cycles):
        dut = target(16, filter_cycles=filter_cycles)
        t = Timing(CLK_HZ)
        w = Wave(t)
        w.idle(20)
        w.start()
        write_txn(w, ADDR, reg(0x60) + [0xC3, 0x3C], "t")
        w.stop()
        # SCL high/low spikes in the middle of low/high phases and SDA spikes
        # while SCL is high (a false START/STOP if they got through)
        glitches = []
        for cyc in range(40, len(w.scl) - 40, 97):
            if w.scl[cyc] and w.scl[cyc - 3] and w.scl[cyc + 3]:
                glitches.append((cyc, "sda", 2))
            elif w.scl[cyc] == 0 and w.scl[cyc - 3] == 0 and w.scl[cyc + 3] == 0:
                glitches.append((cyc, "scl", 2))
        assert len(glitches) > 10
        return run(dut, w, glitches=glitches).writes

    assert scenario(3) == [(0x60, 0xC33C)]
    assert scenario(1) != [(0x60, 0xC33C)]     # without the filter the same spikes corrupt it


@pytest.mark.parametrize("clk_hz", [2.4e6, 10e6, 27e6])
@pytest.mark.parametrize("sda_at", ["early", "late"])
def test_timing_corners(clk_hz, sda_at):
    """SDA changing up to hold_cycles - 1 cycles before SCL falls, or 1 cycle after SCL rises."""
    t = Timing(clk_hz)
    t.sda_at = -(hold_cycles_for(clk_hz) - 1) if sda_at == "early" else t.low + 1
    dut = target(16, clk_hz=clk_hz)
    w = Wave(t)
    w.idle(20)
    w.start()
    write_txn(w, ADDR, reg(0x0F0F) + [0x80, 0x01, 0x7F, 0xFE], "w")
    w.start()
    read_txn(w, ADDR, 2, "r")
    w.stop()
    res = run(dut, w)
    assert res.writes == [(0x0F0F, 0x8001), (0x0F10, 0x7FFE)]
    assert read_bytes(res, "r", 2) == words_to_bytes([word_init(0x0F11, 16)], 16)
    # the documented worst case is reached: the pin may fall just after the edge before
    assert max(res.sda_delays) + 1 == dut.sda_delay_max


def test_parameter_errors():
    with pytest.raises(RtlgenError, match="0x08 to 0x77"):
        I2CTarget(0x00, 16)
    with pytest.raises(RtlgenError, match="0x08 to 0x77"):
        I2CTarget(0x78, 16)
    with pytest.raises(RtlgenError, match="multiple of 8"):
        I2CTarget(0x42, 12)
    with pytest.raises(RtlgenError, match="too slow"):
        I2CTarget(0x42, 16, clk_hz=2e6)
    I2CTarget(0x42, 16, clk_hz=2.4e6)


@pytest.mark.parametrize("width", [8, 16, 24])
def test_verilog_converts_and_lints(tmp_path, width):
    from rtlgen.flows.lint import lint
    text = verilog.convert(I2CTarget(ADDR, width), name="i2c_target")
    path = tmp_path / "i2c_target.v"
    path.write_text(text)
    assert lint(path, "i2c_target", logdir=tmp_path / "lint") == []


# ---------------------------------------------------------------------------
# property: random (possibly truncated) transactions
# ---------------------------------------------------------------------------

PROP_CLK = 3e6
PROP_WIDTH = 16
BPW = PROP_WIDTH // 8

segment = st.one_of(
    st.tuples(st.just("write"), st.sampled_from([True, True, True, False]), st.sampled_from([0x0000, 0x0101, 0xFFFF]),
              st.integers(0, 7), st.lists(st.integers(0, 1), max_size=7)),
    st.tuples(st.just("read"), st.sampled_from([True, True, True, False]), st.just(0), st.integers(1, 5), st.just([])),
)


def model(segments, ends):
    """Expected ACKs, bus writes and read bytes under the documented rules."""
    mem, writes, acks, reads = {}, [], {}, {}
    ptr, valid = 0, False
    for k, ((kind, ours, regaddr, n, extra), end) in enumerate(zip(segments, ends)):
        tag = f"s{k}"
        if kind == "write":
            payload = reg(regaddr)[:min(n, 2)] + [(0x3C * (k + 1) + j * 0x51) & 0xFF for j in range(max(0, n - 2))]
            acks[tag] = [ours] * (1 + len(payload))
            valid = False
            if ours and len(payload) >= 2:
                ptr, valid = regaddr, True
                data = payload[2:]
                for j in range(len(data) // BPW):
                    word = 0
                    for b in data[j * BPW:(j + 1) * BPW]:
                        word = (word << 8) | b
                    writes.append((ptr, word))
                    mem[ptr] = word
                    ptr = (ptr + 1) & 0xFFFF
        else:
            payload = None
            ok = ours and valid
            acks[tag] = [ok]
            if ok:
                words = [mem.get((ptr + j) & 0xFFFF, word_init((ptr + j) & 0xFFFF, PROP_WIDTH))
                         for j in range(-(-n // BPW))]
                reads[tag] = words_to_bytes(words, PROP_WIDTH)[:n]
                ptr = (ptr + n // BPW) & 0xFFFF
            else:
                reads[tag] = [0xFF] * n
            if not ours:
                valid = False
        if end == "stop":
            valid = False
        segments[k] = (kind, ours, regaddr, n, extra, payload)
    return writes, acks, reads


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segs=st.lists(segment, min_size=1, max_size=4),
       ends=st.lists(st.sampled_from(["stop", "restart"]), min_size=4, max_size=4),
       sda_at=st.sampled_from(["early", "mid", "late"]))
def test_random_transactions_write_only_complete_addressed_words(segs, ends, sda_at):
    ends = ends[:len(segs) - 1] + ["stop"]
    segs = list(segs)
    writes, acks, reads = model(segs, ends)
    t = Timing(PROP_CLK)
    t.sda_at = {"early": -(hold_cycles_for(PROP_CLK) - 1), "mid": t.low // 2, "late": t.low + 1}[sda_at]
    w = Wave(t)
    w.idle(10)
    for k, (kind, ours, _regaddr, n, extra, payload) in enumerate(segs):
        tag = f"s{k}"
        w.start()
        if kind == "write":
            write_txn(w, ADDR if ours else OTHER, payload, tag, extra_bits=extra)
        else:
            read_txn(w, ADDR if ours else OTHER, n, tag)
        if ends[k] == "stop":
            w.stop()
    res = run(I2CTarget(ADDR, PROP_WIDTH, clk_hz=PROP_CLK), w)
    assert res.writes == writes
    for k, (kind, _ours, _r, n, _e, payload) in enumerate(segs):
        tag = f"s{k}"
        got = [acked(res, (tag, "addr"))]
        if kind == "write":
            got += [acked(res, (tag, j)) for j in range(len(payload))]
        else:
            assert read_bytes(res, tag, n) == reads[tag]
        assert got == acks[tag], tag
