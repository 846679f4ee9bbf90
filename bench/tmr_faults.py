"""Fault-injection campaign on a TMR core: figures are printed, never asserted.

Builds a model with every dense/conv layer (or a forest's thresholds and
leaves, ``--model bdt``) on ``storage: tmr`` and runs
``sims/test_config_bus.py`` (reset read-back, reprogramming with
inference, unmapped writes, and the campaign: single-bit flips of one copy
while inferences stream, double flips, flips of unprotected bits).  When
the triplicated bits give more than ``--max-single`` (word, copy, bit)
flips, a seeded random sample of that size is injected; the output says
which.

Usage: ``python bench/tmr_faults.py [--model econt|jet|small|bdt] [--simulator icarus]
[--tmr-bits N] [--max-single 300] [--seed 1] [--workdir DIR] [--json OUT.json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rtlgen.flows.faults import make_plan, run_config_bench, summary_lines  # noqa: E402
from tmr_overhead import build  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="econt", choices=["econt", "jet", "small", "bdt"])
    p.add_argument("--simulator", default="icarus", choices=["icarus", "verilator"])
    p.add_argument("--tmr-bits", type=int, default=None)
    p.add_argument("--max-single", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rtlgen-tmr-faults-"))
    outdir = workdir / "core"
    q, _ = build(args.model, "tmr", args.tmr_bits, None, outdir)
    regmap = json.loads((outdir / "regmap.json").read_text())
    plan = make_plan(q, regmap, n_vectors=16, seed=args.seed, max_single=args.max_single,
                     max_double=32, max_unprotected=32)
    t0 = time.perf_counter()
    res = run_config_bench(outdir, plan, args.simulator, work_dir=workdir / "sim")
    elapsed = time.perf_counter() - t0
    f = plan["faults"]
    print(f"model {args.model} (tmr, tmr_bits {args.tmr_bits or 'all'}), {len(regmap['words'])} words, "
          f"D {regmap['data_width']}, {args.simulator}, {elapsed:.0f} s")
    print("\n".join(summary_lines(plan, res)))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "simulator": args.simulator,
                                               "selection": f["single_selection"], "results": res},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
