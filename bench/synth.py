"""Synthesis benchmark: figures are printed, never asserted.

For the 16-64-32-32-5 jet MLP (models/jet_mlp.onnx with models/jet_mlp.yaml)
at reuse factors 1, 2 and 4, and for the ECON-T-style encoder
(models/econt_encoder.onnx with models/econt_encoder.yaml) at reuse factor
1, on the ecp5 and xilinx targets (``--models`` picks the models):

* latency, II, multipliers and build time of the core;
* Yosys resources (LUTs, FFs, carry cells, DSP blocks) and synthesis time;
* on ecp5, place and route with nextpnr on an ECP5-85k (rtlgen's defaults:
  the electrostatic placer and router1) and its Fmax, when the core fits the
  device (otherwise the reason it does not); ``--no-pnr`` skips it.

Variants of the jet MLP are models of their own: ``jet6`` (6-bit weights,
``fixed<6,2,RND,SAT>``; otherwise the jet's precision), ``jet_dense0`` (the
jet's first dense layer, 16x64, and its ReLU alone) and ``jet_dense1`` (its
second, 64x32, and its ReLU: the largest layer); ``jet_dense0_g16`` and
``jet_dense1_g8`` are those layers with ``share_columns: 16`` and ``8`` (four
graphs each).  ``--clock-mhz MHZ`` builds
every model with ``clock_mhz: MHZ`` and ``target: ecp5`` (shift-and-add
layers pipelined by the ECP5 delay model) and places and routes at that
clock.

At reuse factor 1 the jet's dense layers are shift-and-add (no multipliers);
at 2 and 4 they keep multipliers, more than the ECP5 has DSP blocks, so
Fmax is also measured on a proxy: a 16-8-5 MLP with random weights and the
same precisions (``--no-proxy`` skips it).

Usage: ``python bench/synth.py [--jobs N] [--models jet,jet6,jet_dense0,jet_dense0_g16,jet_dense1,jet_dense1_g8,econt]
[--reuse 1,2,4] [--econt-reuse 1] [--targets ecp5,xilinx] [--clock-mhz MHZ]
[--no-pnr] [--no-proxy] [--timeout S] [--workdir DIR] [--json OUT.json]``.
The full run takes tens of minutes with a native Yosys; with the WebAssembly
Yosys it is much slower, and place and route of a whole model at 150 MHz
can take hours.  ``make bench-synth`` measures the jet MLP, ``make
bench-synth-econt`` the ECON-T encoder (ecp5, xilinx and ice40, synthesis
only), ``make bench-pnr`` builds the jet's largest layer and the 6-bit jet
for 150 MHz and places and routes them at 150 MHz.
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

from dataclasses import replace  # noqa: E402

from rtlgen.kinds import save_build  # noqa: E402
from rtlgen.errors import RtlgenError  # noqa: E402
from rtlgen.flows.synth import synth  # noqa: E402
from rtlgen.ir.config import apply_config, load_config  # noqa: E402

MODEL = ROOT / "models" / "jet_mlp.onnx"
CONFIG = ROOT / "models" / "jet_mlp.yaml"
#: benchmarked models: name -> (ONNX file, precision configuration)
MODELS = {"jet": (MODEL, CONFIG),
          "econt": (ROOT / "models" / "econt_encoder.onnx", ROOT / "models" / "econt_encoder.yaml")}
#: variants: name -> (model of MODELS, changes to the config's default types, the one dense layer kept)
VARIANTS = {"jet6": ("jet", {"weight": "fixed<6,2,RND,SAT>"}, None),
            "jet_dense0": ("jet", {}, 0),
            "jet_dense1": ("jet", {}, 1),
            "jet_dense0_g16": ("jet", {"share_columns": 16}, 0),
            "jet_dense1_g8": ("jet", {"share_columns": 8}, 1)}
DEVICE = "85k"


def _with_reuse(cfg: dict, reuse: int, clock_mhz: float | None = None, default: dict | None = None) -> dict:
    out = dict(cfg, default=dict(cfg.get("default") or {}, reuse_factor=reuse, **(default or {})), layers={})
    if clock_mhz is not None:
        out.update(clock_mhz=clock_mhz, target="ecp5")
    return out


def _model(kind: str, reuse: int, clock_mhz: float | None = None):
    from rtlgen.frontends import load_model
    base, default, dense = VARIANTS.get(kind, (kind, {}, None))
    model, config = MODELS[base]
    q = apply_config(load_model(model), _with_reuse(load_config(config), reuse, clock_mhz, default))
    if dense is not None:
        # that dense layer and what follows it up to the next dense layer, fed by its own input port
        starts = [k for k, layer in enumerate(q.layers) if layer.op == "dense"] + [len(q.layers)]
        first = q.layers[starts[dense]]
        q = replace(q, input_type=first.in_type, n_in=first.n_in, input_shape=None,
                    layers=q.layers[starts[dense]:starts[dense + 1]])
    return q if kind == base else replace(q, name=kind)


def _proxy(reuse: int, clock_mhz: float | None = None):
    from rtlgen.frontends.python_api import mlp
    rng = np.random.default_rng(7)
    sizes = (16, 8, 5)
    weights = [rng.uniform(-1.5, 1.5, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.uniform(-1, 1, b) for b in sizes[1:]]
    model = mlp(weights, biases, name="proxy_mlp")
    return apply_config(model, _with_reuse(load_config(CONFIG), reuse, clock_mhz))


def run_point(kind: str, reuse: int, target: str, workdir: str, pnr: bool = True,
              clock_mhz: float | None = None, timeout: float | None = None) -> dict:
    """Build and synthesize one variant (runs in a worker process)."""
    q = _proxy(reuse, clock_mhz) if kind == "proxy" else _model(kind, reuse, clock_mhz)
    clock = f"_c{clock_mhz:g}" if clock_mhz is not None else ""
    outdir = Path(workdir) / f"{kind}_r{reuse}{clock}_{target}"
    t0 = time.perf_counter()
    manifest = save_build(q, outdir)
    t_build = time.perf_counter() - t0
    row = {"model": kind, "reuse": reuse, "target": target, "clock_mhz": clock_mhz, "latency": manifest["latency"],
           "ii": manifest["ii"], "multipliers": manifest["multipliers"], "build_s": round(t_build, 1)}
    pnr = pnr and target == "ecp5"
    try:
        rep = synth(outdir, target, pnr=pnr, device=DEVICE if pnr else None,
                    clock_mhz=clock_mhz if pnr else None, timeout=timeout)
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
    row["pnr"] = f"{pnr_rep['placer']}, {pnr_rep['router']}" if pnr_rep.get("placer") else None
    return row


def _fmt(v, spec=""):
    if v is None:
        return "-"
    return format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--models", default="jet", help="comma-separated: " + ", ".join([*MODELS, *VARIANTS]))
    ap.add_argument("--reuse", default="1,2,4", help="reuse factors of the jet MLP")
    ap.add_argument("--econt-reuse", default="1", help="reuse factors of the ECON-T encoder")
    ap.add_argument("--targets", default="ecp5,xilinx")
    ap.add_argument("--workdir", help="keep the build folders here (default: a temporary folder)")
    ap.add_argument("--json", help="write the rows to this JSON file")
    ap.add_argument("--no-proxy", action="store_true", help="skip the 16-8-5 Fmax proxy")
    ap.add_argument("--no-pnr", action="store_true", help="synthesis only: no place and route on ecp5")
    ap.add_argument("--clock-mhz", type=float, help="build with this clock_mhz (ECP5 delay model); place and "
                    "route at it")
    ap.add_argument("--timeout", type=float, help="seconds each Yosys or nextpnr run may take")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS and m not in VARIANTS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join([*MODELS, *VARIANTS])}")
    reuses = {"jet": [int(r) for r in args.reuse.split(",")],
              "econt": [int(r) for r in args.econt_reuse.split(",")]}
    reuses.update({name: reuses[base] for name, (base, _, _) in VARIANTS.items()})
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    points = []
    for kind in models:
        model, config = MODELS[VARIANTS.get(kind, (kind,))[0]]
        if model.is_file() and config.is_file():
            points += [(kind, r, t) for r in reuses[kind] for t in targets]
        else:
            print(f"{model} or {config} is missing: the {kind} model is not measured")
    if not args.no_proxy:
        points += [("proxy", r, "ecp5") for r in reuses["jet"]]

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
            futures = {pool.submit(run_point, k, r, t, workdir, not args.no_pnr, args.clock_mhz, args.timeout):
                       (k, r, t)
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
    order = list(MODELS) + list(VARIANTS) + ["proxy"]
    rows.sort(key=lambda row: (order.index(row["model"]), row["target"], row["reuse"]))
    print()
    print("| model | target | R | clock_mhz | latency | II | mults | build s | LUTs | FFs | carry | DSP | synth s | "
          "placer, router | Fmax MHz | pnr s | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        note = row.get("error") or row.get("pnr_error") or ""
        print(f"| {row['model']} | {row['target']} | {row['reuse']} | {_fmt(row['clock_mhz'], 'g')} | "
              f"{row['latency']} | {row['ii']} | "
              f"{row['multipliers']} | {row['build_s']} | {_fmt(row.get('luts'))} | {_fmt(row.get('ffs'))} | "
              f"{_fmt(row.get('carry'))} | {_fmt(row.get('dsp'))} | {_fmt(row.get('synth_s'))} | "
              f"{_fmt(row.get('pnr'))} | {_fmt(row.get('fmax_mhz'))} | {_fmt(row.get('pnr_s'))} | {note} |")
    tools = sorted({row["tool"] for row in rows if row.get("tool")})
    pnr_note = "no place and route" if args.no_pnr else f"ECP5 place and route on the {DEVICE} (serial pin wrapper)"
    print(f"\ntools: {', '.join(tools)}; {pnr_note}; total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
