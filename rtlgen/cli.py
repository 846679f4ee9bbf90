"""Command-line interface: ``rtlgen build|predict|sim|lint|synth|report|sweep``.

User errors print one line ``rtlgen: error: ...`` on stderr, without a
traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .errors import RtlgenError

EXIT_USER_ERROR = 2


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise RtlgenError(f"cannot read input array {path}: {exc}") from None


def _save_npy(path: str, arr: np.ndarray) -> None:
    try:
        if arr.dtype == object:
            np.save(path, arr, allow_pickle=True)
        else:
            np.save(path, arr)
    except OSError as exc:
        raise RtlgenError(f"cannot write {path}: {exc.strerror or exc}") from None


def _inputs_as_codes(model, arr: np.ndarray, raw: bool) -> np.ndarray:
    from .golden.mlp import check_codes
    from .numerics.fixed import quantize
    shape = getattr(model, "input_shape", None)
    if shape is not None and np.ndim(arr) == len(shape) + 1 and tuple(np.shape(arr)[1:]) == tuple(shape):
        arr = np.asarray(arr).reshape(len(arr), -1)   # [N, C, H, W] -> [N, C*H*W], C,H,W order
    if raw:
        return check_codes(model, arr)
    x = np.asarray(arr)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise RtlgenError(f"inputs must be numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim != 2 or x.shape[1] != model.n_in:
        raise RtlgenError(f"inputs must have shape [N, {model.n_in}] for model {model.name!r}, got {list(x.shape)}")
    if np.isnan(x).any():
        idx = tuple(int(i) for i in np.argwhere(np.isnan(x))[0])
        raise RtlgenError(f"input value at index {idx} is NaN: clean the data first")
    return quantize(x, model.input_type)


def _outputs(model, codes: np.ndarray, raw: bool) -> np.ndarray:
    from .numerics.fixed import to_float
    if raw:
        return codes
    return to_float(codes, model.output_type)


def cmd_build(args) -> int:
    from .cli_forest import cmd_build_forest, is_forest_model
    if is_forest_model(args.model):
        return cmd_build_forest(args)
    from .emit.build import save_build
    from .frontends import load_model
    from .ir.config import apply_config, load_config
    config = load_config(args.config)
    float_model = load_model(args.model)
    qmodel = apply_config(float_model, config)
    manifest = save_build(qmodel, args.output, top=args.name)
    print(f"wrote {Path(args.output) / manifest['verilog']}: latency {manifest['latency']} cycles, "
          f"II {manifest['ii']}, {manifest['multipliers']} multipliers")
    return 0


def cmd_predict(args) -> int:
    from .cli_forest import cmd_predict_forest, is_forest_build
    if is_forest_build(args.outdir):
        return cmd_predict_forest(args)
    from .emit.build import load_build
    from .golden.mlp import predict_codes
    _, model = load_build(args.outdir)
    codes = _inputs_as_codes(model, _load_npy(args.input), args.raw)
    _save_npy(args.output, _outputs(model, predict_codes(model, codes), args.raw))
    return 0


def cmd_sim(args) -> int:
    from .cli_forest import cmd_sim_forest, is_forest_build
    if is_forest_build(args.outdir):
        return cmd_sim_forest(args)
    from .emit.build import load_build
    from .flows.sim import run_sim
    from .golden.mlp import predict_codes
    _, model = load_build(args.outdir)
    codes = _inputs_as_codes(model, _load_npy(args.input), args.raw)
    expected = predict_codes(model, codes)
    out = run_sim(args.outdir, codes, simulator=args.simulator, expected=expected if args.check else None)
    mismatches = int(np.sum(np.any(np.asarray(out, dtype=object) != np.asarray(expected, dtype=object), axis=1)))
    _save_npy(args.output, _outputs(model, out, args.raw))
    print(f"simulated {len(codes)} vectors on {args.simulator}: {mismatches} mismatches against the golden model")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtlgen", description="Quantized models to verified fixed-point hardware.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="generate a core: OUTDIR/<name>.v and OUTDIR/manifest.json")
    p.add_argument("model", help="model file: .onnx; decision forests: xgboost .json/.ubj, LightGBM .txt, "
                                 "conifer .json, scikit-learn .joblib/.pkl (trusted files only)")
    p.add_argument("--config", "-c", required=True, help="precision configuration (YAML or JSON)")
    p.add_argument("-o", "--output", required=True, help="build folder to write")
    p.add_argument("--name", help="Verilog module name (default: from the model)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("predict", help="bit-exact golden model of a built core")
    p.add_argument("outdir", help="build folder")
    p.add_argument("input", help="IN.npy: float inputs [N, n_in] (integer codes with --raw)")
    p.add_argument("-o", "--output", required=True, help="OUT.npy to write")
    p.add_argument("--raw", action="store_true", help="inputs and outputs are integer codes")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("sim", help="run the generated RTL in cocotb")
    p.add_argument("outdir", help="build folder")
    p.add_argument("input", help="IN.npy: float inputs [N, n_in] (integer codes with --raw)")
    p.add_argument("-o", "--output", required=True, help="OUT.npy to write (what the hardware produced)")
    p.add_argument("--raw", action="store_true", help="inputs and outputs are integer codes")
    p.add_argument("--simulator", choices=["icarus", "verilator"], default="icarus")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="do not fail on a mismatch against the golden model (still counted)")
    p.set_defaults(func=cmd_sim)

    from .cli_flows import add_commands
    add_commands(sub)
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RtlgenError as exc:
        print(f"rtlgen: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rtlgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
