"""Place and route of one layer, rtlgen against da4ml on the same weights: figures are printed, never asserted.

For a one-layer variant of ``bench/synth.py`` (default ``jet_dense1``: the
jet MLP's 64x32 layer and its ReLU), this builds rtlgen's core with
``clock_mhz`` (the ECP5 delay model) and da4ml's core from the same build's
``model.json`` (da4ml 0.6.0 at ``--da4ml-cutoff``, as ``bench/arith.py``
does).  Each core goes into a wrapper with serial data pins (rtlgen's own
``pnr_wrapper`` for its core; the same shift register and signature
register around da4ml's, which has no handshake), both are synthesized by
the same Yosys (``synth_ecp5 -nodsp``) and placed and routed by the same
nextpnr-ecp5 with rtlgen's defaults (electrostatic placer, router1, clock on
pin G2, ``--freq`` at the clock target, seed 1) on the ECP5-85k.

Per side it prints the cells, the placer's Fmax estimate and either the
routed Fmax or, when ``--timeout`` stops nextpnr first, how far router1 got
(arcs still queued of all, iterations).  That tells whether a layer that
does not route is hard for rtlgen's netlist or for the open flow.

Usage: ``python bench/pnr_peer.py [--model jet_dense1] [--clock-mhz 150]
[--da4ml-cutoff 2] [--sides rtlgen,da4ml] [--timeout S] [--jobs N]
[--workdir DIR] [--json OUT.json]``.  ``make bench-pnr-peer`` runs the
default with a one-hour limit on each side's nextpnr (the two sides run side by side: about 70 minutes).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from rtlgen.flows.synth import (PNR_TOP, ROUTER1_LINE, classify_cells, find_tool, nextpnr_args,  # noqa: E402
                                parse_stat_text, pnr_results, pnr_wrapper)

DEVICE = "85k"
SIDES = ("rtlgen", "da4ml")
_ARCS = re.compile(r"^Info: Routing (\d+) arcs\.", re.M)
_FMAX = re.compile(r"^Info: Max frequency for clock '[^']*': ([\d.]+) MHz", re.M)


def peer_wrapper(top: str, in_bits: int, out_bits: int) -> str:
    """The pin wrapper of :func:`rtlgen.flows.synth.pnr_wrapper` around a core with ports
    ``clk``, ``model_inp`` and ``model_out`` (da4ml's)."""
    return f"""// Place-and-route wrapper for {top}: serial data pins.
module {PNR_TOP} (input wire clk, input wire sin, output wire sout);
  reg [{in_bits - 1}:0] in_sr = {in_bits}'d0;
  reg [{out_bits - 1}:0] out_sig = {out_bits}'d0;
  wire [{out_bits - 1}:0] out_data;
  always @(posedge clk) begin
    in_sr <= {{in_sr[{in_bits - 2}:0], sin}};
    out_sig <= {{out_sig[{out_bits - 2}:0], out_sig[{out_bits - 1}]}} ^ out_data;
  end
  assign sout = out_sig[{out_bits - 1}];
  {top} core (.clk(clk), .model_inp(in_sr), .model_out(out_data));
endmodule
"""


def _port_bits(verilog: str, port: str) -> int:
    m = re.search(rf"\[(\d+):0\]\s*{port}\b", verilog)
    if m is None:
        raise ValueError(f"no port {port} in da4ml's top module")
    return int(m[1]) + 1


def prepare(side: str, model: str, cutoff: float, work: Path) -> dict:
    """One side's core (rtlgen's: the build in ``work/rtlgen_build``; da4ml's: traced from its
    ``model.json``) and its wrapper; returns the Verilog files and the core's figures."""
    build = work / "rtlgen_build"
    manifest = json.loads((build / "manifest.json").read_text())
    pdir = work / side
    pdir.mkdir(parents=True, exist_ok=True)
    if side == "rtlgen":
        (pdir / "pnr_top.v").write_text(pnr_wrapper(manifest))
        files = [next(build.glob("*.v")), pdir / "pnr_top.v"]
        figures = {"latency": manifest["latency"],
                   "adders": sum(int(layer.get("adders") or 0) for layer in manifest["layers"])}
        return {"dir": pdir, "files": files, "figures": figures}
    from arith import da4ml_build
    d = da4ml_build(build / "model.json", cutoff, pdir / "core", "da_" + model)
    top_text = (Path(d["dir"]) / "src" / f"{d['top']}.v").read_text()
    (pdir / "pnr_top.v").write_text(peer_wrapper(d["top"], _port_bits(top_text, "model_inp"),
                                                 _port_bits(top_text, "model_out")))
    return {"dir": pdir, "files": [*map(Path, d["files"]), pdir / "pnr_top.v"],
            "figures": {"latency": d["latency"], "adders": d["adders"], "cutoff": cutoff}}


def run_side(side: str, model: str, clock_mhz: float, cutoff: float, work: str, timeout: float) -> dict:
    """Build, synthesize, place and route one side (runs in a worker process)."""
    work_dir = Path(work)
    row = {"side": side, "model": model, "clock_mhz": clock_mhz}
    t0 = time.perf_counter()
    prep = prepare(side, model, cutoff, work_dir)
    row.update(prep["figures"])
    pdir = prep["dir"]
    yosys = find_tool("yosys")
    script = ("read_verilog " + " ".join(str(f) for f in prep["files"]) + "\n"
              f"synth_ecp5 -top {PNR_TOP} -nodsp\ntee -q -o stat.txt stat\nwrite_json netlist.json\n")
    (pdir / "synth.ys").write_text(script)
    subprocess.run([*yosys.argv, "-q", "-l", "yosys.log", "synth.ys"], cwd=pdir, check=True,
                   capture_output=True)
    row["synth_s"] = round(time.perf_counter() - t0, 1)
    cells = classify_cells("ecp5", parse_stat_text((pdir / "stat.txt").read_text()))
    row.update({k: cells[k] for k in ("luts", "carry", "ffs", "dsp")})
    nextpnr = find_tool("nextpnr-ecp5")
    args = nextpnr_args(pdir, "ecp5", DEVICE, clock_mhz, 1, "static", "router1")
    row["nextpnr"] = f"{nextpnr.describe()['version']} ({nextpnr.kind}), static placer, router1"
    t1 = time.perf_counter()
    with open(pdir / "nextpnr.log", "w") as log:
        proc = subprocess.Popen([*nextpnr.argv, *args], cwd=pdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    row["pnr_s"] = round(time.perf_counter() - t1, 1)
    text = (pdir / "nextpnr.log").read_text(errors="replace")
    estimates = _FMAX.findall(text)
    row["placed_mhz"] = float(estimates[0]) if estimates else None
    if proc.returncode == 0:
        _, fmax, _ = pnr_results(pdir / "nextpnr_report.json", text)
        row["routed_mhz"] = round(fmax, 2) if fmax is not None else None
    else:
        row["routed_mhz"] = None
        arcs = _ARCS.findall(text)
        steps = ROUTER1_LINE.findall(text)
        row["arcs"] = int(arcs[-1]) if arcs else None
        if steps:
            row["router_iterations"], row["arcs_left"], row["router_s"] = (
                int(steps[-1][0]), int(steps[-1][1]), float(steps[-1][2]))
        row["stopped"] = "timeout" if proc.returncode < 0 else f"exit {proc.returncode}"
    return row


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(rows: list[dict]) -> str:
    out = ["| side | adders | latency | LUT4 | CCU2C | FFs | DSP | placed (MHz) | routed | nextpnr s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("routed_mhz") is not None:
            routed = f"{r['routed_mhz']} MHz"
        elif r.get("arcs_left") is not None:
            routed = (f"not routed ({r['stopped']}): {r['arcs_left']:,} of {r['arcs']:,} arcs left after "
                      f"{r['router_iterations']:,} router1 iterations")
        else:
            routed = f"not routed ({r.get('stopped', '?')}, before routing)"
        cells = " | ".join(_fmt(r.get(k)) for k in ("adders", "latency", "luts", "carry", "ffs", "dsp", "placed_mhz"))
        out.append(f"| {r['side']} | {cells} | {routed} | {_fmt(r.get('pnr_s'))} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="jet_dense1", help="a one-layer variant of bench/synth.py")
    ap.add_argument("--clock-mhz", type=float, default=150.0)
    ap.add_argument("--da4ml-cutoff", type=float, default=2.0, help="da4ml's latency_cutoff (adder units)")
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds nextpnr may take per side")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workdir", help="keep the build folders here (default: a temporary folder)")
    ap.add_argument("--json", help="write the rows to this JSON file")
    a = ap.parse_args(argv)
    from synth import VARIANTS
    if a.model not in VARIANTS or VARIANTS[a.model][2] is None:
        ap.error(f"--model must be a one-layer variant: "
                 f"{', '.join(k for k, v in VARIANTS.items() if v[2] is not None)}")
    sides = [s for s in a.sides.split(",") if s]
    if not sides or any(s not in SIDES for s in sides):
        ap.error(f"--sides takes {', '.join(SIDES)}")
    with tempfile.TemporaryDirectory(prefix="rtlgen_pnr_peer_") as tmp:
        work = Path(a.workdir) if a.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        # rtlgen's build first, once: da4ml's core is traced from its model.json
        from synth import _model
        from rtlgen.kinds import save_build
        save_build(_model(a.model, 1, a.clock_mhz), work / "rtlgen_build")
        print(f"{a.model}, clock {a.clock_mhz:g} MHz, ECP5-{DEVICE}, nextpnr limit {a.timeout:g} s per side",
              flush=True)
        with ProcessPoolExecutor(max_workers=max(1, min(a.jobs, len(sides)))) as ex:
            futures = [ex.submit(run_side, s, a.model, a.clock_mhz, a.da4ml_cutoff, str(work), a.timeout)
                       for s in sides]
            rows = [f.result() for f in futures]
    print(table(rows))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
