"""Measure the route into a real shift-and-add layer: the ``t_spread`` of a delay model.

``bench/calibrate_delay.py`` fits adder trees whose registers each feed one
adder placed next to them.  In a real layer a register feeds adders spread
over the device, and the route out of it is longer, the more so the larger
the layer.  This script builds slices of the jet MLP's 64x32 layer
(``models/jet_mlp.onnx``, node ``2``: its first ``rows`` outputs, with the
ReLU after it, 16-bit inputs, 8-bit weights) with ``arithmetic: shift_add``
and a register every ``adder_levels`` adders, places and routes each with
``rtlgen synth --pnr`` on the target's device (``ecp5``: ECP5-85k;
``ice40-hx8k``, ``ice40-up5k``) and compares the routed
critical path (``1000 / Fmax``) with the delay model's longest path of
the same plan (output cast included), taken without ``t_spread``.  The difference is fitted to
``t_spread * sqrt(adders)`` (least squares)::

    python bench/calibrate_spread.py [--target ecp5] [--rows 2,4,8] [--levels 1,2]
        [--workdir /tmp/spread] [--json OUT.json]

On ECP5 place and route takes 2 to 8 minutes per point with the YoWASP
nextpnr; a 16-row slice had not finished routing after 20 minutes.  The
iCE40 devices are small: the HX8K takes slices of up to 3 rows, the UP5K
only the 1-row slice (``--rows 1,2,3`` and ``--rows 1``).
Results are kept in ``--workdir``: a rerun only redoes missing points.
Figures are printed (and written to ``--json``); nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent
MODEL = ROOT / "models" / "jet_mlp.onnx"
LAYER = "2"          # the jet MLP's 64x32 layer (its largest)
#: delay-model target -> (rtlgen synth --target, --device)
DEVICES = {"ecp5": ("ecp5", "85k"), "ice40-hx8k": ("ice40", "hx8k"), "ice40-up5k": ("ice40", "up5k")}


def slice_model(rows: int, path: Path) -> None:
    """The first ``rows`` outputs of the jet's 64x32 layer and a ReLU, as an ONNX model."""
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(MODEL).graph.initializer}
    w, b = init[f"{LAYER}.weight"][:rows], init[f"{LAYER}.bias"][:rows]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="dense", transB=1),
         helper.make_node("Relu", ["h"], ["y"], name="relu")],
        f"slice{rows}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, rows])],
        [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(b.astype(np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def config(levels: int) -> dict:
    t = "fixed<8,3,RND,SAT>"
    return {"input": "fixed<16,6,RND,SAT>",
            "default": {"weight": t, "bias": t, "result": "fixed<16,6,RND,SAT>", "reuse_factor": 1,
                        "arithmetic": "shift_add", "adder_levels": levels}}


def model_paths(onnx_path: Path, cfg: dict, target: str) -> tuple[int, float]:
    """(adders, the model's longest path in ns without ``t_spread``) of the slice's plan.

    The path includes the output cast and the fused ReLU where they share a
    stage with the last adders (as they do with ``adder_levels``).
    """
    from rtlgen.frontends import load_model
    from rtlgen.ir.arithmetic import dense_graph, dense_plan, path_estimate
    from rtlgen.ir.config import apply_config
    from rtlgen.ir.model import QActivation, QDense
    from rtlgen.numerics.pipeline import DELAY_MODELS

    layers = apply_config(load_model(onnx_path), cfg).layers
    layer = next(l for l in layers if isinstance(l, QDense))
    relu = next(l for l in layers if isinstance(l, QActivation))
    model = dataclasses.replace(DELAY_MODELS[target], t_spread=0.0)
    return dense_graph(layer).adders, path_estimate(layer, relu, dense_plan(layer, relu), model)


def run_point(rows: int, levels: int, workdir: Path, target: str) -> dict:
    family, device = DEVICES[target]
    wd = workdir / f"{target}_r{rows}_l{levels}"
    wd.mkdir(parents=True, exist_ok=True)
    onnx_path, cfg_path, out = wd / "slice.onnx", wd / "config.yaml", wd / "build"
    cfg = config(levels)
    report = out / "synth" / family / "report.json"
    if not report.exists():
        slice_model(rows, onnx_path)
        cfg_path.write_text(yaml.safe_dump(cfg))
        rtlgen = str(VENV_BIN / "rtlgen")
        subprocess.run([rtlgen, "build", str(onnx_path), "--config", str(cfg_path), "-o", str(out)],
                       check=True)
        subprocess.run([rtlgen, "synth", str(out), "--target", family, "--pnr", "--device", device,
                        "--clock-mhz", "150"], check=True)
    pnr = json.loads(report.read_text())["pnr"]
    adders, est = model_paths(onnx_path, cfg, target)
    measured = 1000.0 / pnr["fmax_mhz"]
    return {"rows": rows, "adder_levels": levels, "adders": adders, "fmax_mhz": pnr["fmax_mhz"],
            "measured_ns": round(measured, 3), "model_ns": round(est, 3), "residual_ns": round(measured - est, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="ecp5", choices=sorted(DEVICES), help="the delay model to measure")
    ap.add_argument("--rows", default="2,4,8", help="comma-separated slice sizes (outputs of the 64x32 layer)")
    ap.add_argument("--levels", default="1,2", help="comma-separated adder_levels")
    ap.add_argument("--workdir", default="/tmp/spread")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    points = [run_point(int(r), int(lv), workdir, args.target)
              for r in args.rows.split(",") for lv in args.levels.split(",")]
    print("| rows | adder_levels | adders | Fmax (MHz) | measured (ns) | model without t_spread (ns) | residual (ns) |")
    print("|---|---|---|---|---|---|---|")
    for p in points:
        print(f"| {p['rows']} | {p['adder_levels']} | {p['adders']} | {p['fmax_mhz']:.1f} | {p['measured_ns']:.2f} "
              f"| {p['model_ns']:.2f} | {p['residual_ns']:.2f} |")
    root = np.array([math.sqrt(p["adders"]) for p in points])
    resid = np.array([p["residual_ns"] for p in points])
    t_spread = float(root @ resid / (root @ root))
    print(f"t_spread = {t_spread:.4f} ns per sqrt(adder); fit within "
          f"{max(abs(t_spread * root - resid)):.2f} ns of every point")
    if args.json:
        Path(args.json).write_text(json.dumps({"target": args.target, "points": points, "t_spread": t_spread},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
