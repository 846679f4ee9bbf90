"""Simulation throughput of the two engines of ``rtlgen sim`` (``make bench-sim``), in one run.

For the jet MLP, the ECON-T-style encoder and a 100-tree xgboost forest:

* the cocotb bench on Verilator (the baseline), on ``--cocotb`` vectors;
* the batch engine (a compiled Verilator testbench, ``rtlgen.flows.batch_sim``)
  on ``--batch`` vectors, in one process and split over a local Dask cluster
  of ``--jobs`` workers (``rtlgen.flows.split_sim``, as ``rtlgen sim`` does);
* on Icarus: the cocotb bench on ``--cocotb`` vectors against the Verilog
  batch testbench on ``--icarus-batch`` vectors;

each after its simulator build (timed apart), with the outputs compared to
the golden model.  Printed: vectors per minute of each and the ratios
batch / cocotb.  Figures are measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rtlgen.flows.batch_sim import run_batch
from rtlgen.flows.sim import run_sim
from rtlgen.flows.split_sim import run_split
from rtlgen.frontends import load_model
from rtlgen.frontends.trees import load_forest
from rtlgen.golden import forest as forest_golden
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config, load_config
from rtlgen.ir.forest_config import quantize_forest
from rtlgen.kinds import save_build

ROOT = Path(__file__).resolve().parent.parent


def _forest_model(folder: Path) -> Path:
    """A 100-tree xgboost regressor (depth 4) on 16 synthetic features."""
    import xgboost
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16))
    y = x[:, 0] * x[:, 1] + np.sin(x[:, 2]) + 0.5 * x[:, 3]
    path = folder / "forest100.json"
    xgboost.XGBRegressor(n_estimators=100, max_depth=4, random_state=0).fit(x, y).save_model(path)
    return path


def models(folder: Path) -> dict:
    out = {
        "jet_mlp": apply_config(load_model(ROOT / "models" / "jet_mlp.onnx"),
                                load_config(ROOT / "models" / "jet_mlp.yaml")),
        "econt_encoder": apply_config(load_model(ROOT / "models" / "econt_encoder.onnx"),
                                      load_config(ROOT / "models" / "econt_encoder.yaml")),
    }
    out["forest_100"] = quantize_forest(load_forest(_forest_model(folder)),
                                        {"input": "fixed<10,4,RND,SAT>", "score": "fixed<16,6,RND,SAT>"})
    return out


def golden_of(q):
    return forest_golden.predict_codes if hasattr(q, "trees") else predict_codes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cocotb", type=int, default=2000, help="vectors on the cocotb bench (default 2000)")
    parser.add_argument("--batch", type=int, default=1_000_000, help="vectors on the batch engine (default 1e6)")
    parser.add_argument("--icarus-batch", type=int, default=20_000,
                        help="vectors on the Icarus batch testbench (default 20,000)")
    parser.add_argument("--jobs", type=int, default=2, help="Dask workers of the split run (default 2)")
    parser.add_argument("--models", default="jet_mlp,econt_encoder,forest_100")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtlgen-bench-sim-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("RTLGEN_CACHE", str(tmp / "cache"))   # the build is part of the figures
        chosen = models(tmp)
        for name in args.models.split(","):
            q = chosen[name]
            outdir = tmp / name
            save_build(q, outdir)
            t = q.input_type
            n_in = q.n_in if hasattr(q, "n_in") else q.n_features
            x = np.random.default_rng(1).integers(t.min_code, t.max_code + 1, (args.batch, n_in))
            t0 = time.perf_counter()
            expected = golden_of(q)(q, x)
            golden_s = time.perf_counter() - t0
            # cocotb: the first run builds the simulator, the second (same work dir) reuses it
            work = tmp / f"{name}_cocotb"
            t0 = time.perf_counter()
            run_sim(outdir, x[:10], simulator="verilator", expected=expected[:10], work_dir=work)
            cocotb_build = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_sim(outdir, x[:args.cocotb], simulator="verilator", expected=expected[:args.cocotb], work_dir=work,
                    gap=0.0)
            cocotb_s = time.perf_counter() - t0
            _, first = run_batch(outdir, x[:10], expected[:10])
            t0 = time.perf_counter()
            _, figures = run_batch(outdir, x, expected)
            batch_s = time.perf_counter() - t0      # end to end: packing, the run, unpacking, the comparison
            row = {"model": name, "cocotb_vectors": args.cocotb, "cocotb_s": cocotb_s,
                   "cocotb_build_s": cocotb_build, "cocotb_per_min": 60 * args.cocotb / cocotb_s,
                   "batch_vectors": args.batch, "batch_s": batch_s, "batch_build_s": first["build_seconds"],
                   "batch_sim_s": figures["seconds"], "batch_per_min": 60 * args.batch / batch_s,
                   "golden_s": golden_s, "mismatches": figures["mismatches"]}
            row["ratio"] = row["batch_per_min"] / row["cocotb_per_min"]
            # the same vectors split over a local Dask cluster (its start included)
            t0 = time.perf_counter()
            out, split = run_split(outdir, x, engine="batch", simulator="verilator", gap=0.0, jobs=args.jobs)
            row.update(split_s=time.perf_counter() - t0, split_chunks=split["chunks"],
                       split_mismatches=int(np.sum(np.any(out != expected, axis=1))))
            row["split_per_min"] = 60 * args.batch / row["split_s"]
            # Icarus: the cocotb bench against the Verilog batch testbench
            n_ib = min(args.icarus_batch, args.batch)
            work = tmp / f"{name}_cocotb_icarus"
            run_sim(outdir, x[:10], simulator="icarus", expected=expected[:10], work_dir=work)
            t0 = time.perf_counter()
            run_sim(outdir, x[:args.cocotb], simulator="icarus", expected=expected[:args.cocotb], work_dir=work,
                    gap=0.0)
            row["icarus_cocotb_per_min"] = 60 * args.cocotb / (time.perf_counter() - t0)
            run_batch(outdir, x[:10], expected[:10], simulator="icarus")
            t0 = time.perf_counter()
            _, ib = run_batch(outdir, x[:n_ib], expected[:n_ib], simulator="icarus")
            row.update(icarus_batch_vectors=n_ib, icarus_batch_per_min=60 * n_ib / (time.perf_counter() - t0))
            row["icarus_ratio"] = row["icarus_batch_per_min"] / row["icarus_cocotb_per_min"]
            rows.append(row)
            print(f"{name}: cocotb {row['cocotb_per_min']:,.0f} vectors/min ({args.cocotb:,} in {cocotb_s:.1f} s, "
                  f"build {cocotb_build:.1f} s); batch {row['batch_per_min']:,.0f} vectors/min ({args.batch:,} in "
                  f"{batch_s:.1f} s end to end, {figures['seconds']:.1f} s simulating, build "
                  f"{first['build_seconds']:.1f} s); ratio {row['ratio']:.0f}x; golden {golden_s:.1f} s; "
                  f"{figures['mismatches']} mismatches; split over {args.jobs} Dask workers "
                  f"{row['split_per_min']:,.0f} vectors/min ({row['split_chunks']} chunks, {row['split_mismatches']} "
                  f"mismatches); Icarus: cocotb {row['icarus_cocotb_per_min']:,.0f}, batch "
                  f"{row['icarus_batch_per_min']:,.0f} vectors/min ({row['icarus_ratio']:.0f}x)", flush=True)
    print()
    print("Verilator:")
    print()
    print(f"| model | cocotb vectors/min | batch vectors/min | batch / cocotb | batch on {args.jobs} Dask workers "
          "| batch build s | cocotb build s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['cocotb_per_min']:,.0f} | {r['batch_per_min']:,.0f} | {r['ratio']:.0f}x | "
              f"{r['split_per_min']:,.0f} | {r['batch_build_s']:.1f} | {r['cocotb_build_s']:.1f} |")
    print()
    print("Icarus:")
    print()
    print("| model | cocotb vectors/min | batch vectors/min | batch / cocotb |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['icarus_cocotb_per_min']:,.0f} | {r['icarus_batch_per_min']:,.0f} | "
              f"{r['icarus_ratio']:.0f}x |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
