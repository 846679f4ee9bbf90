"""Benchmarks (``make bench``): figures are printed, never asserted.

Each figure is reported with a baseline measured in the same run:

* build time of the 16-64-32-32-5 jet MLP at R = 1, 2, 4 (baseline: the
  time to load and quantize the model, i.e. everything but hardware
  generation);
* golden-model throughput in inferences/s (baseline: a plain float64
  numpy forward pass of the same network, which is not bit-exact);
* RTL simulation throughput in vectors/s on Icarus and Verilator,
  including the simulator build (baseline: Icarus).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rtlgen.emit.build import save_build
from rtlgen.frontends import load_model
from rtlgen.golden.mlp import predict_codes
from rtlgen.ir.config import apply_config, load_config
from rtlgen.ir.model import QDense
from rtlgen.numerics.fixed import quantize, to_float

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "jet_mlp.onnx"
CONFIG = ROOT / "models" / "jet_mlp.yaml"


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def float_forward(q, x, block=4096):
    """Plain float64 forward pass, in row blocks (like the golden model)."""
    if len(x) > block:
        return np.vstack([float_forward(q, x[k:k + block], block) for k in range(0, len(x), block)])
    for layer in q.layers:
        if isinstance(layer, QDense):
            w = to_float(layer.weights, layer.weight_type)
            x = x @ w + to_float(layer.bias, layer.bias_type)
        elif layer.kind == "relu":
            x = np.maximum(x, 0.0)
    return x


def main() -> int:
    rows = []
    cfg = load_config(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        for reuse in (1, 2, 4):
            c = dict(cfg, default=dict(cfg.get("default", {}), reuse_factor=reuse))
            q, t_front = timed(lambda: apply_config(load_model(MODEL), c))
            manifest, t_build = timed(save_build, q, Path(tmp) / f"r{reuse}")
            rows.append(("build", f"jet MLP R={reuse}", f"{t_build:.2f} s",
                         f"front end + quantize {t_front * 1e3:.1f} ms; latency {manifest['latency']}, "
                         f"II {manifest['ii']}, {manifest['multipliers']} multipliers"))

        q = apply_config(load_model(MODEL), cfg)
        n = 1_000_000
        rng = np.random.default_rng(0)
        x = rng.normal(0, 1, size=(n, q.n_in))
        codes = quantize(x, q.input_type)
        predict_codes(q, codes[:1000])  # warm-up
        _, t_gold = timed(predict_codes, q, codes)
        xf = to_float(codes, q.input_type)
        _, t_float = timed(float_forward, q, xf)
        rows.append(("golden", f"{n} inferences", f"{n / t_gold:,.0f} inf/s",
                     f"float64 numpy forward (baseline) {n / t_float:,.0f} inf/s; ratio {t_float / t_gold:.2f}"))

        from rtlgen.flows.sim import run_sim
        n_sim = 2000
        core = Path(tmp) / "r1"
        sim_codes = codes[:n_sim]
        expected = predict_codes(q, sim_codes)
        rates, firsts = {}, {}
        for simulator in ("icarus", "verilator"):
            work = Path(tmp) / f"sim_{simulator}"
            # first call builds the simulation model; the second reuses it
            _, firsts[simulator] = timed(run_sim, core, sim_codes, simulator=simulator,
                                         expected=expected, work_dir=work)
            _, t_sim = timed(run_sim, core, sim_codes, simulator=simulator, expected=expected, work_dir=work)
            rates[simulator] = n_sim / t_sim
        for simulator, rate in rates.items():
            rows.append(("sim", f"{simulator}, {n_sim} vectors", f"{rate:,.0f} vectors/s",
                         f"{rate / rates['icarus']:.2f}x Icarus (baseline); first call incl. "
                         f"simulator build {firsts[simulator]:.1f} s"))

    width = max(len(r[1]) for r in rows)
    print(f"{'what':<8} {'case':<{width}}  {'figure':>18}  baseline / notes")
    for what, case, fig, note in rows:
        print(f"{what:<8} {case:<{width}}  {fig:>18}  {note}")
    out = ROOT / "build" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps([dict(zip(("what", "case", "figure", "notes"), r)) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
