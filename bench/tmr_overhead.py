"""Cost of reprogrammable and TMR-protected weights: figures are printed, never asserted.

Builds one model with every layer's ``storage`` set to ``constant``,
``register`` and ``tmr`` (and ``tmr`` with ``--tmr-bits N`` when given),
synthesizes each core with Yosys (``rtlgen synth``, target ``generic`` by
default) and prints cells, flip-flops and the ratio to ``constant``; the
table also goes to ``--json``.

Models: ``econt`` (models/econt_encoder.onnx + .yaml, the ECON-T-style
encoder), ``jet`` (models/jet_mlp.onnx + .yaml), ``small`` (a 16-8-5 MLP
with random weights and the jet precisions, quick), ``bdt`` (an xgboost
forest of 20 trees of depth 3 on scikit-learn's breast-cancer data,
``fixed<8,3>`` inputs and ``fixed<10,3>`` scores; ``storage`` applies to
its thresholds and leaves).

The ratios are against the first variant built (``constant`` unless
``--variants`` leaves it out).  The ECON-T encoder at reuse factor 1
(2805 constant multipliers, 3016 variable ones with stored weights) is
heavy for generic synthesis: its ``register`` core needed more than 17 GB
in ABC; ``--reuse 8`` keeps every stored word and divides the multipliers.

Usage: ``python bench/tmr_overhead.py [--model econt] [--target generic]
[--tmr-bits 3] [--reuse R] [--variants constant,tmr] [--jobs N] [--workdir DIR]
[--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtlgen.kinds import save_build  # noqa: E402
from rtlgen.flows.synth import synth  # noqa: E402
from rtlgen.ir.config import apply_config, load_config  # noqa: E402

MODELS = {"econt": ("econt_encoder.onnx", "econt_encoder.yaml"), "jet": ("jet_mlp.onnx", "jet_mlp.yaml")}


def _float_model(name: str):
    if name == "small":
        from rtlgen.frontends.python_api import mlp
        rng = np.random.default_rng(7)
        sizes = (16, 8, 5)
        return mlp([rng.uniform(-1.5, 1.5, (a, b)) for a, b in zip(sizes[:-1], sizes[1:])],
                   [rng.uniform(-1, 1, b) for b in sizes[1:]], name="small_mlp"), ROOT / "models" / "jet_mlp.yaml"
    from rtlgen.frontends import load_model
    onnx, yaml = MODELS[name]
    return load_model(ROOT / "models" / onnx), ROOT / "models" / yaml


BDT_CONFIG = {"input": "fixed<8,3,RND,SAT>", "score": "fixed<10,3,RND,SAT>", "pipeline": "per_level"}


def _forest():
    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer

    from rtlgen.frontends.trees import load_forest
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return load_forest(xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y))


def build(model_name: str, storage: str, tmr_bits, reuse, outdir):
    """Quantize ``model_name`` with every stored set on ``storage``, write its build; (model, manifest)."""
    if model_name == "bdt":
        from rtlgen.ir.forest_config import quantize_forest
        cfg = dict(BDT_CONFIG, storage=storage)
        if tmr_bits is not None:
            cfg["tmr_bits"] = tmr_bits
        if reuse is not None:
            cfg["reuse_factor"] = reuse
        qf = quantize_forest(_forest(), cfg)
        return qf, save_build(qf, outdir)
    fm, cfg_path = _float_model(model_name)
    q = apply_config(fm, _config(load_config(cfg_path), storage, tmr_bits, reuse))
    return q, save_build(q, outdir)


def _config(base: dict, storage: str, tmr_bits: int | None, reuse) -> dict:
    default = dict(base.get("default") or {}, storage=storage)
    if reuse is not None:
        default["reuse_factor"] = reuse
    if tmr_bits is not None:
        default["tmr_bits"] = tmr_bits
    return dict(base, default=default, layers={})


def _one(args) -> dict:
    model_name, variant, storage, tmr_bits, reuse, target, workdir = args
    outdir = Path(workdir) / f"{model_name}_{variant}"
    t0 = time.perf_counter()
    _, manifest = build(model_name, storage, tmr_bits, reuse, outdir)
    t_build = time.perf_counter() - t0
    report = synth(outdir, target=target)
    res = report.get("resources", report)
    words = sum(layer[key]["count"] for layer in manifest.get("config_bus", {}).get("layers", [])
                for key in layer["groups"])
    return {"variant": variant, "storage": storage, "tmr_bits": tmr_bits, "words": words,
            "multipliers": manifest["multipliers"], "latency": manifest["latency"],
            "data_width": manifest.get("config_bus", {}).get("data_width"),
            "cells": res.get("cells"), "ffs": res.get("ffs"), "luts": res.get("luts"),
            "build_s": round(t_build, 1), "synth_s": report.get("runtime_s"),
            "tool": (report.get("tool") or {}).get("version"), "report": str(outdir / "synth" / target / "report.json")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="econt", choices=["econt", "jet", "small", "bdt"])
    p.add_argument("--target", default="generic")
    p.add_argument("--tmr-bits", type=int, default=None, help="also build tmr with this many triplicated bits")
    p.add_argument("--reuse", default=None, help="reuse factor for every layer (default: the model's config)")
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of constant,register,tmr,tmrN (default: all)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    reuse = None if args.reuse is None else (args.reuse if args.reuse == "full" else int(args.reuse))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rtlgen-tmr-bench-"))
    variants = [("constant", "constant", None), ("register", "register", None), ("tmr", "tmr", None)]
    if args.tmr_bits is not None:
        variants.append((f"tmr{args.tmr_bits}", "tmr", args.tmr_bits))
    if args.variants:
        wanted = args.variants.split(",")
        variants = [v for v in variants if v[0] in wanted]
    jobs = [(args.model, v, s, b, reuse, args.target, str(workdir)) for v, s, b in variants]
    print(f"model {args.model}, target {args.target}, work dir {workdir}", flush=True)
    print("| storage | stored words | D | multipliers | cells | x constant | FFs | x constant | synth s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    rows = []

    def show(r):
        base = rows[0]
        cr = r["cells"] / base["cells"] if base["cells"] else float("nan")
        fr = r["ffs"] / base["ffs"] if base["ffs"] else float("nan")
        print(f"| {r['variant']} | {r['words']} | {r['data_width'] or '-'} | {r['multipliers']} | {r['cells']} | "
              f"{cr:.2f} | {r['ffs']} | {fr:.2f} | {r['synth_s']} |", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"model": args.model, "target": args.target,
                                                   "tool": rows[0]["tool"], "rows": rows}, indent=1) + "\n")

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for r in pool.map(_one, jobs):
                rows.append(r)
                show(r)
    else:
        for j in jobs:
            rows.append(_one(j))
            show(rows[-1])
    print(f"Yosys: {rows[0]['tool']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
