"""Synthesis benchmark: figures are printed, never asserted.

For the 16-64-32-32-5 jet MLP (models/jet_mlp.onnx with models/jet_mlp.yaml)
at reuse factors 1, 2 and 4, and for the ECON-T-style encoder
(models/econt_encoder.onnx with models/econt_encoder.yaml) at reuse factor
1, on the ecp5 and xilinx targets (``--models`` picks the models):

* latency, II, multipliers and build time of the core;
* Yosys resources (LUTs, FFs, carry cells, DSP blocks) and synthesis time;
* on ecp5, place and route with nextpnr on an ECP5-85k and its Fmax, when
  the core fits the device (otherwise the reason it does not); ``--no-pnr``
  skips it.

Because the full jet MLP needs more DSP blocks than any ECP5 has at these
reuse factors, Fmax is also measured on a proxy: a 16-8-5 MLP with random
weights and the same precisions (``--no-proxy`` skips it).

Usage: ``python bench/synth.py [--jobs N] [--models jet,econt] [--reuse 1,2,4]
[--econt-reuse 1] [--targets ecp5,xilinx] [--no-pnr] [--no-proxy] [--workdir DIR]
[--json OUT.json]``.  The full run takes tens of minutes with a native Yosys;
with the WebAssembly Yosys it is much slower.  ``make bench-synth`` measures
the jet MLP, ``make bench-synth-econt`` the ECON-T encoder (ecp5, xilinx and
ice40, synthesis only).
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

from rtlgen.kinds import save_build  # noqa: E402
from rtlgen.errors import RtlgenError  # noqa: E402
from rtlgen.flows.synth import synth  # noqa: E402
from rtlgen.ir.config import apply_config, load_config  # noqa: E402

MODEL = ROOT / "models" / "jet_mlp.onnx"
CONFIG = ROOT / "models" / "jet_mlp.yaml"
#: benchmarked models: name -> (ONNX file, precision configuration)
MODELS = {"jet": (MODEL, CONFIG),
          "econt": (ROOT / "models" / "econt_encoder.onnx", ROOT / "models" / "econt_encoder.yaml")}
DEVICE = "85k"


def _with_reuse(cfg: dict, reuse: int) -> dict:
    return dict(cfg, default=dict(cfg.get("default") or {}, reuse_factor=reuse), layers={})


def _model(kind: str, reuse: int):
    from rtlgen.frontends import load_model
    model, config = MODELS[kind]
    return apply_config(load_model(model), _with_reuse(load_config(config), reuse))


def _proxy(reuse: int):
    from rtlgen.frontends.python_api import mlp
    rng = np.random.default_rng(7)
    sizes = (16, 8, 5)
    weights = [rng.uniform(-1.5, 1.5, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.uniform(-1, 1, b) for b in sizes[1:]]
    model = mlp(weights, biases, name="proxy_mlp")
    return apply_config(model, _with_reuse(load_config(CONFIG), reuse))


def run_point(kind: str, reuse: int, target: str, workdir: str, pnr: bool = True) -> dict:
    """Build and synthesize one variant (runs in a worker process)."""
    q = _proxy(reuse) if kind == "proxy" else _model(kind, reuse)
    outdir = Path(workdir) / f"{kind}_r{reuse}_{target}"
    t0 = time.perf_counter()
    manifest = save_build(q, outdir)
    t_build = time.perf_counter() - t0
    row = {"model": kind, "reuse": reuse, "target": target, "latency": manifest["latency"],
           "ii": manifest["ii"], "multipliers": manifest["multipliers"], "build_s": round(t_build, 1)}
    pnr = pnr and target == "ecp5"
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
    ap.add_argument("--models", default="jet", help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--reuse", default="1,2,4", help="reuse factors of the jet MLP")
    ap.add_argument("--econt-reuse", default="1", help="reuse factors of the ECON-T encoder")
    ap.add_argument("--targets", default="ecp5,xilinx")
    ap.add_argument("--workdir", help="keep the build folders here (default: a temporary folder)")
    ap.add_argument("--json", help="write the rows to this JSON file")
    ap.add_argument("--no-proxy", action="store_true", help="skip the 16-8-5 Fmax proxy")
    ap.add_argument("--no-pnr", action="store_true", help="synthesis only: no place and route on ecp5")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(MODELS)}")
    reuses = {"jet": [int(r) for r in args.reuse.split(",")],
              "econt": [int(r) for r in args.econt_reuse.split(",")]}
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    points = []
    for kind in models:
        model, config = MODELS[kind]
        if model.is_file() and config.is_file():
            points += [(kind, r, t) for r in reuses[kind] for t in targets]
        else:
            print(f"{model} or {config} is missing: the {kind} model is not measured")
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
            futures = {pool.submit(run_point, k, r, t, workdir, not args.no_pnr): (k, r, t)
                       for k, r, t in points}
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
    order = list(MODELS) + ["proxy"]
    rows.sort(key=lambda row: (order.index(row["model"]), row["target"], row["reuse"]))
    print()
    print("| model | target | R | latency | II | mults | build s | LUTs | FFs | carry | DSP | synth s | "
          "Fmax MHz | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        note = row.get("error") or row.get("pnr_error") or ""
        print(f"| {row['model']} | {row['target']} | {row['reuse']} | {row['latency']} | {row['ii']} | "
              f"{row['multipliers']} | {row['build_s']} | {_fmt(row.get('luts'))} | {_fmt(row.get('ffs'))} | "
              f"{_fmt(row.get('carry'))} | {_fmt(row.get('dsp'))} | {_fmt(row.get('synth_s'))} | "
              f"{_fmt(row.get('fmax_mhz'))} | {note} |")
    tools = sorted({row["tool"] for row in rows if row.get("tool")})
    pnr_note = "no place and route" if args.no_pnr else f"ECP5 place and route on the {DEVICE} (serial pin wrapper)"
    print(f"\ntools: {', '.join(tools)}; {pnr_note}; total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
