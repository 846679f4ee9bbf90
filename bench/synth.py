"""Synthesis benchmark: figures are printed, never asserted.

For the 16-64-32-32-5 jet MLP (models/jet_mlp.onnx with models/jet_mlp.yaml)
at reuse factors 1, 2 and 4, on the ecp5 and xilinx targets:

* Yosys resources (LUTs, FFs, carry cells, DSP blocks) and synthesis time;
* on ecp5, place and route with nextpnr on an ECP5-85k and its Fmax, when
  the core fits the device (otherwise the reason it does not).

Because the full jet MLP needs more DSP blocks than any ECP5 has at these
reuse factors, Fmax is also measured on a proxy: a 16-8-5 MLP with random
weights and the same precisions (``--no-proxy`` skips it).

Usage: ``python bench/synth.py [--jobs N] [--reuse 1,2,4] [--targets ecp5,xilinx]
[--workdir DIR] [--json OUT.json]``.  The full run takes tens of minutes
with a native Yosys; with the WebAssembly Yosys it is much slower.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtlgen.emit.build import save_build  # noqa: E402
from rtlgen.errors import RtlgenError  # noqa: E402
from rtlgen.flows.synth import synth  # noqa: E402
from rtlgen.ir.config import apply_config, load_config  # noqa: E402

MODEL = ROOT / "models" / "jet_mlp.onnx"
CONFIG = ROOT / "models" / "jet_mlp.yaml"
DEVICE = "85k"


def _with_reuse(cfg: dict, reuse: int) -> dict:
    return dict(cfg, default=dict(cfg.get("default") or {}, reuse_factor=reuse), layers={})


def _jet(reuse: int):
    from rtlgen.frontends import load_model
    return apply_config(load_model(MODEL), _with_reuse(load_config(CONFIG), reuse))


def _proxy(reuse: int):
    from rtlgen.frontends.python_api import mlp
    rng = np.random.default_rng(7)
    sizes = (16, 8, 5)
    weights = [rng.uniform(-1.5, 1.5, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.uniform(-1, 1, b) for b in sizes[1:]]
    model = mlp(weights, biases, name="proxy_mlp")
    return apply_config(model, _with_reuse(load_config(CONFIG), reuse))


def run_point(kind: str, reuse: int, target: str, workdir: str) -> dict:
    """Build and synthesize one variant (runs in a worker process)."""
    q = _jet(reuse) if kind == "jet" else _proxy(reuse)
    outdir = Path(workdir) / f"{kind}_r{reuse}_{target}"
    t0 = time.perf_counter()
    manifest = save_build(q, outdir)
    t_build = time.perf_counter() - t0
    row = {"model": kind, "reuse": reuse, "target": target, "latency": manifest["latency"],
           "ii": manifest["ii"], "multipliers": manifest["multipliers"], "build_s": round(t_build, 1)}
    pnr = target == "ecp5"
    try:
        rep = synth(outdir, target, pnr=pnr, device=DEVICE if pnr else None)
        row["pnr_error"] = None
    except RtlgenError as exc:
        from rtlgen.flows.synth import load_synth_report
        rep = load_synth_report(outdir, target)
        if rep is None:
            row["error"] = str(exc)
            return row
        row["pnr_error"] = str(exc).split("; see ")[0]
    res = rep["resources"]
    row.update({k: res[k] for k in ("luts", "ffs", "carry", "dsp", "bram", "cells")})
    row["synth_s"] = rep["runtime_s"]
    row["tool"] = rep["tool"]["version"] + f" ({rep['tool']['kind']})"
    pnr_rep = rep.get("pnr") or {}
    row["fmax_mhz"] = pnr_rep.get("fmax_mhz")
    row["pnr_s"] = pnr_rep.get("runtime_s")
    return row


def _fmt(v, spec=""):
    if v is None:
        return "-"
    return format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reuse", default="1,2,4")
    ap.add_argument("--targets", default="ecp5,xilinx")
    ap.add_argument("--workdir", help="keep the build folders here (default: a temporary folder)")
    ap.add_argument("--json", help="write the rows to this JSON file")
    ap.add_argument("--no-proxy", action="store_true", help="skip the 16-8-5 Fmax proxy")
    args = ap.parse_args(argv)
    reuses = [int(r) for r in args.reuse.split(",")]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    points = []
    if MODEL.is_file() and CONFIG.is_file():
        points += [("jet", r, t) for r in reuses for t in targets]
    else:
        print(f"{MODEL} or {CONFIG} is missing: only the proxy model is measured")
    if not args.no_proxy:
        points += [("proxy", r, "ecp5") for r in reuses]

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="rtlgen-bench-synth-")
        workdir = tmp.name
    Path(workdir).mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    try:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_point, k, r, t, workdir): (k, r, t) for k, r, t in points}
            for fut in as_completed(futures):
                k, r, t = futures[fut]
                row = fut.result()
                rows.append(row)
                status = row.get("error") or (f"{row['luts']} LUTs, {row['dsp']} DSP, "
                                              f"synth {row['synth_s']} s, Fmax {_fmt(row.get('fmax_mhz'))}")
                print(f"[{time.perf_counter() - t0:6.0f} s] {k} R={r} {t}: {status}", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    rows.sort(key=lambda row: (row["model"] != "jet", row["target"], row["reuse"]))
    print()
    print("| model | target | R | latency | II | mults | LUTs | FFs | carry | DSP | synth s | Fmax MHz | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        note = row.get("error") or row.get("pnr_error") or ""
        print(f"| {row['model']} | {row['target']} | {row['reuse']} | {row['latency']} | {row['ii']} | "
              f"{row['multipliers']} | {_fmt(row.get('luts'))} | {_fmt(row.get('ffs'))} | "
              f"{_fmt(row.get('carry'))} | {_fmt(row.get('dsp'))} | {_fmt(row.get('synth_s'))} | "
              f"{_fmt(row.get('fmax_mhz'))} | {note} |")
    tools = sorted({row["tool"] for row in rows if row.get("tool")})
    print(f"\ntools: {', '.join(tools)}; ECP5 place and route on the {DEVICE} "
          f"(serial pin wrapper); total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
