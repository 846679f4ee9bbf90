"""The link's UART (rtlgen.link.uart) in the Amaranth simulator.

:class:`HostUart` is a bit-level model of the host's side of the line,
written from the 8N1 format and the bit time alone; ``test_gateware.py``
uses it too.
"""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from amaranth.sim import Simulator

from rtlgen.link.uart import UartRx, UartTx

from helpers.core import CLOCK_PERIOD


class HostUart:
    """The host's UART on a device's pins: ``device_rx`` (driven here) and
    ``device_tx`` (sampled here), ``divisor`` clock cycles per bit.

    :meth:`send` drives characters; :meth:`receiver` (a background
    testbench) collects every character on ``device_tx`` into
    ``received`` and counts bad stop bits in ``stop_errors``; ``times``
    holds the cycle of each start bit's falling edge.
    """

    def __init__(self, device_rx, device_tx, divisor: int):
        self.device_rx, self.device_tx, self.divisor = device_rx, device_tx, divisor
        self.received = bytearray()
        self.times: list[int] = []
        self.stop_errors = 0
        self.cycle = 0

    async def _bit(self, ctx, level: int, cycles: int | None = None):
        ctx.set(self.device_rx, level)
        await ctx.tick().repeat(self.divisor if cycles is None else cycles)

    async def send_char(self, ctx, value: int, stop: int = 1):
        bits = [0] + [(value >> k) & 1 for k in range(8)] + [stop]
        for bit in bits:
            await self._bit(ctx, bit)
        if not stop:
            await self._bit(ctx, 1)

    async def send(self, ctx, data: bytes):
        for value in data:
            await self.send_char(ctx, value)

    async def idle(self, ctx, cycles: int):
        await self._bit(ctx, 1, cycles)

    async def receiver(self, ctx):
        d = self.divisor
        while True:
            await ctx.tick()
            self.cycle += 1
            if ctx.get(self.device_tx):
                continue
            start = self.cycle
            # the falling edge was at this tick; sample every bit in its middle
            await ctx.tick().repeat(d // 2)
            self.cycle += d // 2
            if ctx.get(self.device_tx):
                continue
            value = 0
            for k in range(8):
                await ctx.tick().repeat(d)
                value |= ctx.get(self.device_tx) << k
            await ctx.tick().repeat(d)
            self.cycle += 9 * d
            if not ctx.get(self.device_tx):
                self.stop_errors += 1
            self.received.append(value)
            self.times.append(start)


def simulate(dut, bench, *background):
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    for process in background:
        sim.add_testbench(process, background=True)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_tx_sends_8n1_back_to_back(divisor):
    dut = UartTx(divisor)
    host = HostUart(None, dut.tx, divisor)
    data = bytes(random.Random(divisor).randrange(256) for _ in range(12)) + b"\x00\xff\x55"
    done = {}

    async def bench(ctx):
        assert ctx.get(dut.tx) == 1 and ctx.get(dut.ready) == 1
        sent = 0
        ctx.set(dut.valid, 1)
        while sent < len(data):
            ctx.set(dut.data, data[sent])
            if ctx.get(dut.ready):
                sent += 1
            await ctx.tick()
        ctx.set(dut.valid, 0)
        await ctx.tick().until(dut.ready)
        await ctx.tick().repeat(3 * divisor)
        done["ok"] = True

    simulate(dut, bench, host.receiver)
    assert done["ok"]
    assert bytes(host.received) == data
    assert host.stop_errors == 0
    # back to back: one character every 10 bit times, no idle time between them
    gaps = {b - a for a, b in pairwise(host.times)}
    assert gaps == {10 * divisor}


def test_tx_holds_line_high_when_idle():
    dut = UartTx(4)

    async def bench(ctx):
        for _ in range(50):
            assert ctx.get(dut.tx) == 1 and ctx.get(dut.ready) == 1
            await ctx.tick()

    simulate(dut, bench)


def rx_bench(divisor, actions):
    """Run UartRx with a host that performs ``actions(host, ctx)``; returns
    (received bytes, frame error pulses, cycles of each valid pulse)."""
    dut = UartRx(divisor)
    host = HostUart(dut.rx, None, divisor)
    got = {"data": bytearray(), "errors": 0, "when": []}

    async def monitor(ctx):
        cycle = 0
        async for _, _, valid, value, error in ctx.tick().sample(dut.valid, dut.data, dut.frame_error):
            cycle += 1
            if valid:
                got["data"].append(value)
                got["when"].append(cycle)
            got["errors"] += error

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        await actions(host, ctx)
        await ctx.tick().repeat(20 * divisor)

    simulate(dut, bench, monitor)
    return bytes(got["data"]), got["errors"], got["when"]


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_rx_receives_back_to_back(divisor):
    data = bytes(random.Random(divisor + 1).randrange(256) for _ in range(12)) + b"\x00\xff\xa5"

    async def actions(host, ctx):
        await host.send(ctx, data)

    got, errors, when = rx_bench(divisor, actions)
    assert got == data and errors == 0
    assert {b - a for a, b in pairwise(when)} == {10 * divisor}


def test_rx_rejects_a_bad_stop_bit_and_recovers():
    async def actions(host, ctx):
        await host.send(ctx, b"\x12")
        await host.send_char(ctx, 0x34, stop=0)
        # a break: the line stays low for a while
        await host._bit(ctx, 0, 30 * host.divisor)
        await host.idle(ctx, 3 * host.divisor)
        await host.send(ctx, b"\x56\x78")

    got, errors, _ = rx_bench(4, actions)
    assert got == b"\x12\x56\x78"
    assert errors == 2   # the bad stop bit and the break


def test_rx_ignores_a_glitch():
    async def actions(host, ctx):
        await host._bit(ctx, 0, 1)
        await host.idle(ctx, 20)
        await host.send(ctx, b"\x9a")

    got, errors, _ = rx_bench(8, actions)
    assert got == b"\x9a" and errors == 0


@pytest.mark.parametrize("host_divisor", [31, 33])
def test_rx_tolerates_a_host_clock_3_percent_off(host_divisor):
    data = b"\x00\xff\x3c\xc3"

    async def actions(host, ctx):
        host.divisor = host_divisor
        await host.send(ctx, data)

    got, errors, _ = rx_bench(32, actions)
    assert got == data and errors == 0


@pytest.mark.parametrize("make", [UartRx, UartTx])
def test_divisor_below_four_is_refused(make):
    with pytest.raises(ValueError, match="at least 4"):
        make(3)
