"""The configuration bus of a core with stored parameters.

* :class:`AmaranthBus` drives ``cfg_*`` from an Amaranth testbench (the bus
  object :class:`rtlgen.emit.regmap.ConfigDriver` talks to);
* :func:`program_and_infer` runs the usual sequence: infer, read back,
  program, read back, infer, read the status;
* :func:`bus_core_maker` builds, lints and plans a core for the cocotb bench
  of the bus (``sims/test_config_bus.py``), and :func:`check_bus_bench`
  asserts what every run of that bench must show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from rtlgen.emit.regmap import ConfigDriver
from rtlgen.flows.faults import make_plan
from rtlgen.flows.lint import lint_build

from .core import infer, run


class AmaranthBus:
    """The configuration bus of a Network, driven from an Amaranth testbench."""

    def __init__(self, ctx, net):
        self.ctx, self.net = ctx, net

    async def write(self, addr, word):
        self.ctx.set(self.net.cfg_addr, addr)
        self.ctx.set(self.net.cfg_wdata, word)
        self.ctx.set(self.net.cfg_we, 1)
        await self.ctx.tick()
        self.ctx.set(self.net.cfg_we, 0)

    async def read(self, addr):
        self.ctx.set(self.net.cfg_addr, addr)
        await self.ctx.tick()
        return self.ctx.get(self.net.cfg_rdata)


def program_and_infer(core, driver: ConfigDriver, reprogrammed, x) -> dict:
    """Infer ``x`` after reset, read the parameters back, program those of
    ``reprogrammed``, read them back, infer again and read the status."""
    got = {}

    async def bench(ctx):
        bus = AmaranthBus(ctx, core)
        got["reset_out"] = await infer(ctx, core, x)
        got["reset_params"] = await driver.read_params(bus)
        await driver.program(bus, reprogrammed)
        got["params"] = await driver.read_params(bus)
        got["out"] = await infer(ctx, core, x)
        got["status"] = await driver.status(bus)

    run(core, bench)
    return got


def bus_core_maker(cases: Mapping[str, Callable], save, vectors=None):
    """A ``make(case, outdir)`` for :class:`helpers.builds.BuildCache` that
    builds, lints and plans one case: (model, build folder, register map,
    plan).  ``cases[case]()`` gives the model, ``save(model, outdir)`` writes
    the build and ``vectors(model)`` gives the plan's input codes."""

    def make(case: str, outdir: Path):
        model = cases[case]()
        save(model, outdir)
        assert lint_build(outdir) == []
        regmap = json.loads((outdir / "regmap.json").read_text())
        extra = {} if vectors is None else {"vectors": vectors(model)}
        return model, outdir, regmap, make_plan(model, regmap, **extra)
    return make


def check_bus_bench(res: dict, plan: dict, regmap: dict) -> None:
    """What every run of sims/test_config_bus.py must show: reset values,
    exact reprogramming, ignored unmapped writes, and an exhaustive campaign
    where every single flip is rewritten after 1 edge, counted after 2 and
    never reaches an output, every double flip is flagged, and no
    unprotected flip is detected."""
    assert res["tests"] == 4
    assert res["reset_readback"]["bad"] == [] and res["reset_readback"]["words"] == len(regmap["words"])
    assert res["program_infer"]["mismatches"] == 0 and res["program_infer"]["outputs"] == len(plan["vectors"])
    assert res["program_infer"]["after_reset_mismatches"] == 0
    assert res["unmapped_writes"]["changed_words"] == []
    faults = plan["faults"]
    single = res["fault_campaign"]["single"]
    assert faults["single_selection"] == "exhaustive"
    n = sum(3 * layer[key]["protected_bits"] * layer[key]["count"] for layer in regmap["layers"]
            if layer["storage"] == "tmr" for key in layer["groups"])
    assert single["injected"] == n == len(faults["single"]) > 0
    assert single["corrected"] == single["detected"] == single["error_count_read"] == n
    assert single["scrub_cycles"] == {"1": n} and single["count_cycles"] == {"2": n}
    assert single["output_mismatches"] == 0 and single["inferences_checked"] > len(plan["vectors"])
    double = res["fault_campaign"]["double"]
    assert double["detected"] == double["injected"] == double["voted_wrong_value"] > 0
    assert res["fault_campaign"]["unprotected"]["detected"] == 0
