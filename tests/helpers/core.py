"""Amaranth testbenches of a core: run one, stream vectors through the core.

A core here is anything with the top-level contract of
:class:`rtlgen.hw.network.Network` (``in_valid``/``in_ready``/``in_data``,
``out_valid``/``out_data``, ``latency``, ``ii``).
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

#: period of the simulated clock (s)
CLOCK_PERIOD = 1e-8


def run(dut, bench, period: float = CLOCK_PERIOD) -> None:
    """Simulate *dut* with a clock and the testbench coroutine ``bench(ctx)``."""
    sim = Simulator(dut)
    sim.add_clock(period)
    sim.add_testbench(bench)
    sim.run()


async def infer(ctx, net, x):
    """Stream ``x`` (one vector per II) and collect the outputs."""
    outputs, k, cycle = [], 0, 0
    while len(outputs) < len(x):
        offer = k < len(x)
        ctx.set(net.in_valid, offer)
        if offer:
            ctx.set(net.in_data, [int(v) for v in x[k]])
            if ctx.get(net.in_ready):
                k += 1
        if ctx.get(net.out_valid):
            outputs.append([int(v) for v in ctx.get(net.out_data)])
        await ctx.tick()
        cycle += 1
        assert cycle < 20 * (len(x) + net.latency) * net.ii
    ctx.set(net.in_valid, 0)
    return np.array(outputs, dtype=np.int64)


def timed_stream(net, x: np.ndarray, gap_every: int = 3):
    """Offer ``x`` with a gap every ``gap_every`` cycles; return (outputs, cycles of the accepting
    edges, cycles of the outputs)."""
    outputs, accepted_at, produced_at = [], [], []

    async def bench(ctx):
        k = cycle = 0
        while len(outputs) < len(x) and cycle < 50 * (len(x) + net.latency) * net.ii:
            offer = k < len(x) and cycle % gap_every != gap_every - 1
            ctx.set(net.in_valid, offer)
            if offer:
                ctx.set(net.in_data, [int(v) for v in x[k]])
            if offer and ctx.get(net.in_ready):
                accepted_at.append(cycle)
                k += 1
            if ctx.get(net.out_valid):
                outputs.append([int(v) for v in ctx.get(net.out_data)])
                produced_at.append(cycle)
            await ctx.tick()
            cycle += 1

    run(net, bench)
    return np.array(outputs, dtype=np.int64), np.array(accepted_at), np.array(produced_at)
