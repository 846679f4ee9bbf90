"""``rtlgen build|predict|sim`` for decision forests (build folders of kind ``"bdt"``).

:func:`is_forest_model` tells ``build`` which model files are forests (by
suffix); :func:`is_forest_build` tells ``predict`` and ``sim`` which build
folders hold a forest core.  The handlers take the same arguments as the
MLP ones in :mod:`rtlgen.cli`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["is_forest_model", "is_forest_build", "cmd_build_forest", "cmd_predict_forest", "cmd_sim_forest"]


def is_forest_model(path) -> bool:
    from .frontends.trees import FOREST_SUFFIXES
    return Path(str(path)).suffix.lower() in FOREST_SUFFIXES


def is_forest_build(outdir) -> bool:
    from .emit.forest_build import build_kind
    return build_kind(outdir) == "bdt"


def _codes(qf, arr: np.ndarray, raw: bool) -> np.ndarray:
    from .golden.forest import check_codes, quantize_inputs
    return check_codes(qf, arr) if raw else quantize_inputs(qf, arr)


def _outputs(qf, codes: np.ndarray, raw: bool) -> np.ndarray:
    from .golden.forest import outputs_as_values
    return np.asarray(codes) if raw else outputs_as_values(qf, codes)


def cmd_build_forest(args) -> int:
    from .emit.forest_build import save_forest_build
    from .frontends.trees import load_forest
    from .ir.config import load_config
    from .ir.forest import quantize_forest
    config = load_config(args.config)
    forest = load_forest(args.model)
    qf = quantize_forest(forest, config)
    manifest = save_forest_build(qf, args.output, top=args.name)
    f = manifest["forest"]
    kinds = [u["kind"] for units in f["units"] for u in units]
    stored = [f"{name} {f[name + '_storage']}" for name in ("threshold", "leaf") if f[name + "_storage"] != "constant"]
    print(f"wrote {Path(args.output) / manifest['verilog']}: latency {manifest['latency']} cycles, "
          f"II {manifest['ii']}, {f['trees']} trees, {f['comparators']} comparators, "
          f"{kinds.count('table')} leaf-sum tables, {kinds.count('mux')} multiplexer trees"
          + (f"; {', '.join(stored)} storage on a configuration bus (regmap.md)" if stored else ""))
    return 0


def cmd_predict_forest(args) -> int:
    from .cli import _load_npy, _save_npy
    from .emit.forest_build import load_forest_build
    from .golden.forest import predict_codes
    _, qf = load_forest_build(args.outdir)
    codes = _codes(qf, _load_npy(args.input), args.raw)
    _save_npy(args.output, _outputs(qf, predict_codes(qf, codes), args.raw))
    return 0


def cmd_sim_forest(args) -> int:
    from .cli import _load_npy, _save_npy
    from .emit.forest_build import load_forest_build
    from .flows.sim import run_sim
    from .golden.forest import predict_codes
    _, qf = load_forest_build(args.outdir)
    codes = _codes(qf, _load_npy(args.input), args.raw)
    expected = predict_codes(qf, codes)
    out = run_sim(args.outdir, codes, simulator=args.simulator, expected=expected if args.check else None)
    mismatches = int(np.sum(np.any(np.asarray(out) != np.asarray(expected), axis=1)))
    _save_npy(args.output, _outputs(qf, out, args.raw))
    print(f"simulated {len(codes)} vectors on {args.simulator}: {mismatches} mismatches against the golden model")
    return 0
