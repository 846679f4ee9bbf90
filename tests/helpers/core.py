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
