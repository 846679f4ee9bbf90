"""Generic cocotb testbench for any core described by an rtlgen ``manifest.json``.

The bench is configured only through environment variables (``rtlgen.flows.sim``
sets them; they can also be set by hand to run it from any cocotb flow):

``RTLGEN_MANIFEST``  path to the core's ``manifest.json`` (required)
``RTLGEN_IN``        ``.npy`` of input codes, shape ``[N, input.count]``,
                     int64 or object (Python int) elements (required)
``RTLGEN_OUT``       ``.npy`` path where the produced output codes are written,
                     shape ``[N, output.count]``, int64 (object if an element
                     is wider than 64 bits) (required)
``RTLGEN_EXPECTED``  optional ``.npy`` of expected output codes; every vector is
                     compared and the first mismatch is reported
``RTLGEN_REPORT``    optional ``.json`` path for a machine-readable summary
``RTLGEN_SEED``      seed of the random ``in_valid`` gaps (default 1)
``RTLGEN_GAP``       probability in [0, 1) of leaving ``in_valid`` low in a
                     cycle when a vector could be offered (default 0.3)
``RTLGEN_PROGRESS``  optional path of a small text file that the bench
                     rewrites, about twice a second, with the number of
                     results received so far (``rtlgen sim`` shows it)

Interface contract checked here (see the manifest's ``ports``): ``clk``,
synchronous active-high ``rst``, ``in_valid``/``in_ready``/``in_data`` and
``out_valid``/``out_data``.  Element ``i`` of a vector sits at bits
``[i*W, (i+1)*W)``, two's complement when signed.  An input is accepted on a
rising edge where ``in_valid && in_ready``; the result appears exactly
``latency`` edges later with ``out_valid`` high for one cycle; two accepts are
at least ``ii`` cycles apart.  ``in_ready`` must not depend combinationally on
``in_valid`` (the usual ready/valid rule).

Streamed cores (manifest ``io: stream``) take one pixel per accept: the
bench splits every vector (flat C,H,W) into its pixels in raster order,
pixel ``p`` carrying elements ``c*pixels + p``; latency and ii then count
from the accept of a vector's last pixel.

All signals are sampled and driven at the falling clock edge, which is
race-free on every simulator.  Once offered, a vector stays on ``in_data``
with ``in_valid`` high until it is accepted.

The bench is composed from the pieces in ``core_tb.py``: the settings
(:class:`~core_tb.BenchConfig`), a source that offers the vectors, a monitor
that collects the outputs and a scoreboard that checks the handshake and
the codes and writes the report.
"""

from __future__ import annotations

import cocotb

from core_tb import BenchConfig, CoreTB


@cocotb.test()
async def run_vectors(dut):
    """Stream every input vector through the core and check protocol and results."""
    config = BenchConfig.from_env()
    config.check_ports(dut)
    tb = CoreTB(dut, config)
    await tb.reset()
    await tb.run()
    messages = tb.conclude()
    assert not messages, " | ".join(messages)
