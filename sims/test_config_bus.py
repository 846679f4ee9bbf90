"""cocotb bench of the configuration bus and TMR storage of an rtlgen core.

Configured through environment variables (``rtlgen.flows.faults`` sets them):

``RTLGEN_MANIFEST``  the core's ``manifest.json`` (``regmap.json`` beside it)
``RTLGEN_PLAN``      JSON plan: ``vectors`` (input codes), ``expected``
                     (outputs with the trained parameters), ``program``
                     (``writes`` [[addr, word]...], ``expected`` outputs
                     after them, ``readback`` {addr: word}), ``unmapped``
                     (addresses to write garbage to), ``faults`` (``single``
                     and ``double`` lists of [signal, copy(s), bit],
                     ``unprotected`` [signal, bit], ``max_scrub_cycles``)
``RTLGEN_RESULTS``   JSON path the figures are written to

Tests (each starts from a reset, which restores the trained parameters):

``reset_readback``   every word reads back its trained code, status is clear
``program_infer``    the bus writes new parameters, reads them back (voted),
                     inferences match the golden model of the new
                     parameters; a reset restores the trained ones
``unmapped_writes``  writes to unmapped addresses change nothing
``fault_campaign``   while inferences stream: flip one bit of one copy at a
                     time (deposit on the copy's register) and check that
                     every output stays bit-exact, the copy is rewritten
                     within ``max_scrub_cycles`` edges, the error counter
                     counts each flip and the sticky flag is set; then flip
                     the same bit in two copies (not correctable: the vote
                     takes the flipped value, the flag and counter must show
                     it) and single unprotected low bits (undetectable by
                     design); every damaged word is rewritten by the driver.

The bus is driven and sampled at the falling clock edge.  The vector
packing, the reset and the pin sampling are those of the generic bench
(``core_tb.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from rtlgen.emit.regmap import ConfigDriver

from core_tb import CLOCK_PERIOD_NS, ElementFormat, hold_reset, is_one

#: the bus inputs, at rest
BUS_IDLE = {"cfg_we": 0, "cfg_addr": 0, "cfg_wdata": 0}
STATUS_ADDR, ERROR_COUNT_ADDR, CLEAR_ADDR = 0x0000, 0x0001, 0x0002


def _env():
    manifest_path = Path(os.environ["RTLGEN_MANIFEST"])
    manifest = json.loads(manifest_path.read_text())
    plan = json.loads(Path(os.environ["RTLGEN_PLAN"]).read_text())
    driver = ConfigDriver.from_build(manifest_path.parent)
    return manifest, plan, driver


def _record(key: str, value) -> None:
    path = Path(os.environ["RTLGEN_RESULTS"])
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1) + "\n")


class CocotbBus:
    """The core's configuration bus, driven at falling edges (one cycle per access)."""

    def __init__(self, dut):
        self.dut = dut
        self.falling = FallingEdge(dut.clk)

    async def write(self, addr: int, word: int) -> None:
        self.dut.cfg_addr.value = addr
        self.dut.cfg_wdata.value = word
        self.dut.cfg_we.value = 1
        await self.falling
        self.dut.cfg_we.value = 0

    async def read(self, addr: int) -> int:
        self.dut.cfg_addr.value = addr
        self.dut.cfg_we.value = 0
        await self.falling
        return self.dut.cfg_rdata.value.to_unsigned()


async def _reset(dut):
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start(start_high=False)
    await hold_reset(dut, 3, BUS_IDLE)
    await FallingEdge(dut.clk)


class Streamer:
    """Offers input vectors back to back (cycling) and checks every output."""

    def __init__(self, dut, manifest: dict, vectors, expected):
        self.dut = dut
        self.inp = ElementFormat(manifest["input"], "input")
        self.outp = ElementFormat(manifest["output"], "output")
        self.packed = [self.inp.pack(v) for v in vectors]
        self.expected = [list(map(int, e)) for e in expected]
        self.accepted = 0
        self.outputs = 0
        self.mismatches = 0
        self.first_mismatch = None
        self.running = False

    async def run(self, limit: int | None = None):
        """Stream until :meth:`stop` (or ``limit`` outputs), then drain."""
        dut, falling = self.dut, FallingEdge(self.dut.clk)
        self.running = True
        n = len(self.packed)
        while True:
            if is_one(dut.out_valid):
                got = self.outp.unpack(dut.out_data.value.to_unsigned())
                exp = self.expected[self.outputs % n]
                if got != exp:
                    self.mismatches += 1
                    if self.first_mismatch is None:
                        self.first_mismatch = {"output": self.outputs, "expected": exp, "got": got}
                self.outputs += 1
            want = self.running and (limit is None or self.accepted < limit)
            dut.in_valid.value = 1 if want else 0
            if want:
                dut.in_data.value = self.packed[self.accepted % n]
                if is_one(dut.in_ready):   # taken on the coming rising edge
                    self.accepted += 1
            elif self.outputs >= self.accepted:
                break
            await falling

    def stop(self):
        self.running = False


async def _stream_once(dut, manifest, vectors, expected) -> Streamer:
    s = Streamer(dut, manifest, vectors, expected)
    await s.run(limit=len(vectors))
    return s


def _changed_words(words: dict, driver) -> list:
    return [w["addr"] for w in driver.regmap["words"] if words[w["addr"]] != driver.encode(w["reset"], w["type"])]


@cocotb.test()
async def reset_readback(dut):
    manifest, plan, driver = _env()
    await _reset(dut)
    bus = CocotbBus(dut)
    codes = await driver.read_params(bus)
    bad = []
    for w in driver.regmap["words"]:
        got = codes[w["layer"]][w["group"]][w["index"]]
        if int(got) != w["reset"]:
            bad.append((w["addr"], int(got), w["reset"]))
    status = await driver.status(bus)
    _record("reset_readback", {"words": len(driver.regmap["words"]), "bad": bad[:10], "status": list(status)})
    assert not bad, f"words differ from their trained codes after reset: {bad[:5]}"
    assert status == (False, 0), f"status after reset is {status}"


@cocotb.test()
async def program_infer(dut):
    manifest, plan, driver = _env()
    await _reset(dut)
    bus = CocotbBus(dut)
    prog = plan["program"]
    for addr, word in prog["writes"]:
        await bus.write(addr, word)
    bad = []
    for addr, word in prog["readback"].items():
        got = await bus.read(int(addr))
        if got != word:
            bad.append((int(addr), got, word))
    s = await _stream_once(dut, manifest, plan["vectors"], prog["expected"])
    # back to the trained parameters
    await _reset(dut)
    s2 = await _stream_once(dut, manifest, plan["vectors"], plan["expected"])
    _record("program_infer", {"writes": len(prog["writes"]), "readback_bad": bad[:10],
                              "outputs": s.outputs, "mismatches": s.mismatches,
                              "first_mismatch": s.first_mismatch,
                              "after_reset_mismatches": s2.mismatches})
    assert not bad, f"read back differs from the written words: {bad[:5]}"
    assert s.outputs == len(plan["vectors"]) and s.mismatches == 0, \
        f"{s.mismatches} mismatches with the programmed parameters, first {s.first_mismatch}"
    assert s2.mismatches == 0, f"after reset: {s2.mismatches} mismatches, first {s2.first_mismatch}"


@cocotb.test()
async def unmapped_writes(dut):
    manifest, plan, driver = _env()
    await _reset(dut)
    bus = CocotbBus(dut)
    for k, addr in enumerate(plan["unmapped"]):
        await bus.write(addr, (0xA5C3 + 977 * k) & ((1 << driver.data_width) - 1))
    words = {}
    for addr in driver.addresses():
        words[addr] = await bus.read(addr)
    changed = _changed_words(words, driver)
    reads = [await bus.read(a) for a in plan["unmapped"] if a not in (STATUS_ADDR, ERROR_COUNT_ADDR)]
    s = await _stream_once(dut, manifest, plan["vectors"], plan["expected"])
    _record("unmapped_writes", {"addresses": len(plan["unmapped"]), "changed_words": changed[:10],
                                "nonzero_reads": sum(1 for r in reads if r), "mismatches": s.mismatches})
    assert not changed, f"unmapped writes changed words at {changed[:5]}"
    assert not any(reads), "an unmapped address reads as nonzero"
    assert s.mismatches == 0, f"{s.mismatches} mismatches after unmapped writes"


def _handle(dut, path: str):
    h = dut
    for part in path.split("."):
        h = getattr(h, part)
    return h


def _value(handle) -> int:
    return handle.value.to_unsigned()


@cocotb.test()
async def fault_campaign(dut):
    manifest, plan, driver = _env()
    faults = plan.get("faults") or {}
    if not faults.get("single") and not faults.get("double") and not faults.get("unprotected"):
        _record("fault_campaign", {"skipped": "no TMR words"})
        return
    await _reset(dut)
    bus = CocotbBus(dut)
    falling = FallingEdge(dut.clk)
    max_scrub = int(faults["max_scrub_cycles"])
    count_sig = dut.err_count
    words_by_signal = {w["signal"]: w for w in driver.regmap["words"]}

    # -- single flips while inferences stream ------------------------------
    streamer = Streamer(dut, manifest, plan["vectors"], plan["expected"])
    stream_task = cocotb.start_soon(streamer.run())
    scrub_hist: dict[int, int] = {}
    count_hist: dict[int, int] = {}
    not_scrubbed, not_counted = [], []
    corrected = detected = 0
    counter_max = (1 << int(driver.regmap["counter_width"])) - 1
    counted_before_clears = 0   # the counter saturates: read and clear it before it does
    for n, (signal, copy, bit) in enumerate(faults["single"]):
        for _ in range(n % 3):     # vary the phase against the inference stream
            await falling
        if _value(count_sig) >= counter_max - 1:
            counted_before_clears += (await driver.status(bus))[1]
            await driver.clear(bus)
        copies = [_handle(dut, f"{signal}_c{c}") for c in range(3)]
        before = [_value(c) for c in copies]
        count0 = _value(count_sig)
        copies[copy].value = before[copy] ^ (1 << bit)
        scrubbed_at = counted_at = None
        for cyc in range(1, max(max_scrub, 2) + 4):
            await falling
            if scrubbed_at is None and [_value(c) for c in copies] == before:
                scrubbed_at = cyc
            if counted_at is None and _value(count_sig) != count0:
                counted_at = cyc
            if scrubbed_at is not None and counted_at is not None:
                break
        if scrubbed_at is not None and scrubbed_at <= max_scrub:
            corrected += 1
            scrub_hist[scrubbed_at] = scrub_hist.get(scrubbed_at, 0) + 1
        else:
            not_scrubbed.append([signal, copy, bit])
        if counted_at is not None:
            detected += 1
            count_hist[counted_at] = count_hist.get(counted_at, 0) + 1
        else:
            not_counted.append([signal, copy, bit])
    for _ in range(2):
        await falling
    flag, count = await driver.status(bus)
    count += counted_before_clears
    streamer.stop()
    await stream_task
    single = {
        "injected": len(faults["single"]), "corrected": corrected, "detected": detected,
        "scrub_cycles": {str(k): v for k, v in sorted(scrub_hist.items())},
        "count_cycles": {str(k): v for k, v in sorted(count_hist.items())},
        "max_scrub_cycles_allowed": max_scrub,
        "error_count_read": count, "error_flag_read": flag,
        "inferences_checked": streamer.outputs, "output_mismatches": streamer.mismatches,
        "first_mismatch": streamer.first_mismatch,
        "not_scrubbed": not_scrubbed[:10], "not_counted": not_counted[:10],
    }
    await driver.clear(bus)
    cleared = await driver.status(bus)
    single["status_after_clear"] = list(cleared)

    # -- the same bit flipped in two copies -----------------------------------
    double_detected = double_wrong = double_restored = 0
    for signal, pair, bit in faults.get("double", []):
        copies = [_handle(dut, f"{signal}_c{c}") for c in range(3)]
        before = [_value(c) for c in copies]
        count0 = _value(count_sig)
        for c in pair:
            copies[c].value = before[c] ^ (1 << bit)
        for _ in range(3):
            await falling
        if _value(count_sig) != count0:
            double_detected += 1
        if all(_value(c) == before[0] ^ (1 << bit) for c in copies):
            double_wrong += 1      # the vote took the flipped bit and scrubbed the good copy with it
        w = words_by_signal[signal]
        word = driver.encode(w["reset"], w["type"])
        await bus.write(w["addr"], word)   # the driver repairs the word
        if await bus.read(w["addr"]) == word:
            double_restored += 1
    flag2, count2 = await driver.status(bus)
    double = {"injected": len(faults.get("double", [])), "detected": double_detected, "corrected": 0,
              "voted_wrong_value": double_wrong, "restored_by_rewrite": double_restored,
              "error_flag_read": flag2, "error_count_read": count2}

    # -- unprotected low bits (tmr_bits smaller than the word) ------------------
    await driver.clear(bus)
    un_detected = un_changed = 0
    for signal, bit in faults.get("unprotected", []):
        h = _handle(dut, f"{signal}_lo")
        before = _value(h)
        count0 = _value(count_sig)
        h.value = before ^ (1 << bit)
        for _ in range(3):
            await falling
        if _value(count_sig) != count0:
            un_detected += 1
        if _value(h) != before:
            un_changed += 1
        w = words_by_signal[signal]
        await bus.write(w["addr"], driver.encode(w["reset"], w["type"]))
    unprotected = {"injected": len(faults.get("unprotected", [])), "detected": un_detected,
                   "persisted": un_changed}

    # everything repaired: inference is exact again
    s = await _stream_once(dut, manifest, plan["vectors"], plan["expected"])
    _record("fault_campaign", {"single": single, "double": double, "unprotected": unprotected,
                               "final_mismatches": s.mismatches, "counter_max": counter_max})
    n_single = len(faults["single"])
    assert streamer.mismatches == 0, \
        f"{streamer.mismatches} outputs changed under single flips, first {streamer.first_mismatch}"
    assert corrected == n_single, f"{n_single - corrected} flips not scrubbed within {max_scrub}: {not_scrubbed[:5]}"
    assert detected == n_single, f"{n_single - detected} flips not counted: {not_counted[:5]}"
    assert count == n_single and flag, f"status read ({flag}, {count} in total) after {n_single} flips"
    assert cleared == (False, 0), f"status after clear: {cleared}"
    assert double_detected == double["injected"] and double_restored == double["injected"]
    assert not double["injected"] or flag2
    assert s.mismatches == 0, f"{s.mismatches} mismatches after the repairs"
