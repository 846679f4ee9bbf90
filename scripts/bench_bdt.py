"""Benchmark of a decision-forest core: latency and Yosys LUT/FF counts.

Trains a 20-tree, depth-3 xgboost classifier on scikit-learn's
breast_cancer data (standardized features), builds it with 8-bit inputs at
several pipeline settings (leaf-sum tables of 6 code bits, the default, and
multiplexer trees, ``table_bits: 0``), checks every core on Icarus against
the golden model and synthesizes it for Xilinx 7-series and ECP5 (LUTs /
flip-flops / carry cells).  Needs xgboost and scikit-learn (the ``test``
extra).

    .venv/bin/python scripts/bench_bdt.py [-o build/bench_bdt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="build/bench_bdt", help="work folder")
    parser.add_argument("--targets", default="xilinx,ecp5")
    args = parser.parse_args()

    import xgboost as xgb
    from sklearn.datasets import load_breast_cancer

    from rtlgen.kinds import save_build
    from rtlgen.flows.sim import run_sim
    from rtlgen.flows.synth import synth
    from rtlgen.frontends.trees import load_forest
    from rtlgen.golden.forest import predict_codes, quantize_inputs
    from rtlgen.ir.forest_config import quantize_forest

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    model.save_model(out / "bc20.json")
    forest = load_forest(out / "bc20.json")
    rows = []
    settings = [(pipeline, 6) for pipeline in ("per_level", 2, "none")] + \
        [(pipeline, 0) for pipeline in ("per_level", 2, "none")]
    for pipeline, table_bits in settings:
        cfg = {"input": "fixed<8,3,RND,SAT>", "score": "fixed<10,3,RND,SAT>", "pipeline": pipeline,
               "class_output": True, "table_bits": table_bits}
        qf = quantize_forest(forest, cfg)
        core = out / f"core_{pipeline}_t{table_bits}"
        manifest = save_build(qf, core)
        codes = quantize_inputs(qf, x)
        expected = predict_codes(qf, codes)
        run_sim(core, codes, simulator="icarus", expected=expected)
        accuracy = float(np.mean(expected[:, -1] == y))
        row = {"pipeline": pipeline, "table_bits": table_bits, "latency": manifest["latency"],
               "comparators": manifest["forest"]["comparators"], "accuracy": f"{accuracy:.4f}"}
        for target in args.targets.split(","):
            r = synth(core, target)["resources"]
            row[f"{target} LUT / FF / carry"] = f"{r['luts']} / {r['ffs']} / {r['carry']}"
        rows.append(row)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("| " + " | ".join("---" for _ in keys) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
