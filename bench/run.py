"""Benchmarks (``make bench``): figures are printed, never asserted.

Each figure is reported with a baseline measured in the same run:

* build time of the 16-64-32-32-5 jet MLP at R = 1, 2, 4 (baseline: the
  time to load and quantize the model, i.e. everything but hardware
  generation);
* the same for the ECON-T-style CNN encoder (models/econt_encoder.onnx with
  its configuration, R = 1), with its latency in cycles and multiplier count,
  and again with its conv streamed (baseline: the parallel build);
* the CICADA-style encoder (models/cicada_encoder.onnx, convs streamed):
  latency, II per image and multipliers (baseline: the multiplier count of
  the same model all parallel);
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

from rtlgen.kinds import save_build
from rtlgen.frontends import load_model
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config, load_config
from rtlgen.ir.model import QDense
from rtlgen.numerics.fixed import quantize, to_float

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "jet_mlp.onnx"
CONFIG = ROOT / "models" / "jet_mlp.yaml"
ECONT = ROOT / "models" / "econt_encoder.onnx"
ECONT_CONFIG = ROOT / "models" / "econt_encoder.yaml"
CICADA = ROOT / "models" / "cicada_encoder.onnx"
CICADA_CONFIG = ROOT / "models" / "cicada_encoder.yaml"


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
        if ECONT.is_file() and ECONT_CONFIG.is_file():
            q, t_front = timed(lambda: apply_config(load_model(ECONT), ECONT_CONFIG))
            manifest, t_build = timed(save_build, q, Path(tmp) / "econt")
            rows.append(("build", "ECON-T encoder R=1", f"{t_build:.2f} s",
                         f"front end + quantize {t_front * 1e3:.1f} ms; latency {manifest['latency']} "
                         f"cycles, II {manifest['ii']}, {manifest['multipliers']} multipliers"))
            # the same encoder with a streamed conv (baseline: the parallel build above)
            cfg_e = load_config(ECONT_CONFIG)
            cfg_s = dict(cfg_e, default=dict(cfg_e.get("default", {}), io="stream"))
            q = apply_config(load_model(ECONT), cfg_s)
            m_s, t_s = timed(save_build, q, Path(tmp) / "econt_stream")
            rows.append(("build", "ECON-T encoder, io stream", f"{t_s:.2f} s",
                         f"latency {m_s['latency']} cycles from the last pixel, II {m_s['ii']} cycles "
                         f"per image, {m_s['multipliers']} multipliers ({t_s / t_build:.2f}x the "
                         f"parallel build time, {m_s['multipliers'] / manifest['multipliers']:.2f}x "
                         "its multipliers)"))
        if CICADA.is_file() and CICADA_CONFIG.is_file():
            q = apply_config(load_model(CICADA), CICADA_CONFIG)
            m_c, t_c = timed(save_build, q, Path(tmp) / "cicada")
            cfg_c = load_config(CICADA_CONFIG)
            par = apply_config(load_model(CICADA), dict(cfg_c, layers={
                k: {kk: vv for kk, vv in v.items() if kk != "io"} for k, v in cfg_c["layers"].items()}))
            rows.append(("build", "CICADA 18x14, conv io stream", f"{t_c:.2f} s",
                         f"latency {m_c['latency']} cycles from the last pixel, II {m_c['ii']} cycles "
                         f"per image, {m_c['multipliers']} multipliers (all-parallel baseline: "
                         f"{sum(layer.multipliers for layer in par.layers if isinstance(layer, QDense))} "
                         "multipliers, not built)"))

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
