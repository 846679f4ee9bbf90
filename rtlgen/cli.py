"""Command-line interface: ``rtlgen build|predict|sim|lint|synth|report|sweep``.

User errors print one line ``rtlgen: error: ...`` on stderr, without a
traceback, and exit with status 2 (``-v`` adds the error's details).
Ctrl-C and SIGTERM stop the command cleanly (temporary files removed,
``rtlgen: interrupted``, status 130 or 143).  Progress goes to stderr
(``-q`` silences it); results go to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path

import numpy as np

from .errors import RtlgenError, RtlgenWarning, Terminated

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130        # 128 + SIGINT
EXIT_TERMINATED = 143         # 128 + SIGTERM


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _describe_non_npy(path: Path, head: bytes) -> str:
    """What a file that is not a .npy file seems to be, and what to do about it."""
    if head.startswith(_ZIP_MAGIC):
        try:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
        except Exception:   # noqa: BLE001 - any damaged zip: say what it looks like
            names = []
        if names:
            shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            return (f"{path} is a NumPy .npz archive (arrays: {shown}), not a .npy file: save the one "
                    f"array to use, e.g. np.save('x.npy', np.load('{path.name}')['{names[0]}'])")
        return f"{path} is a zip archive, not a NumPy .npy file: save the array with numpy.save"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        first = text.strip().splitlines()[0][:40]
        return (f"{path} is a text file (it starts with {first!r}), not a NumPy .npy file: convert it, "
                f"e.g. np.save('x.npy', np.loadtxt('{path.name}', delimiter=','))")
    return f"{path} is not a NumPy .npy file: save the array with numpy.save"


def _load_npy(path: str) -> np.ndarray:
    """Read one numeric array from a .npy file; anything else is a user error saying what the file is."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(256)
    except IsADirectoryError:
        raise RtlgenError(f"input {path} is a folder: give a .npy file") from None
    except OSError as exc:
        raise RtlgenError(f"cannot read input array {path}: {exc.strerror or exc}") from None
    if not head.startswith(_NPY_MAGIC):
        raise RtlgenError(_describe_non_npy(p, head))
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise RtlgenError(f"{path} holds Python objects (dtype object), not numbers: save a numeric "
                              "array (e.g. np.save(path, data.astype(np.float64)))") from None
        raise RtlgenError(f"cannot read input array {path}: the .npy file is damaged ({exc})") from None
    except (OSError, EOFError) as exc:
        raise RtlgenError(f"cannot read input array {path}: the .npy file is damaged ({exc})") from None
    if arr.dtype.kind not in "iuf":
        raise RtlgenError(f"{path} holds {arr.dtype} values ({_DTYPE_KINDS.get(arr.dtype.kind, 'not numbers')}); "
                          "inputs must be a numeric array: floats, or integer codes with --raw")
    return arr


_DTYPE_KINDS = {"U": "text", "S": "bytes", "b": "booleans", "c": "complex numbers", "V": "records",
                "M": "dates", "m": "time spans", "O": "Python objects"}


def _save_npy(path: str, arr: np.ndarray) -> None:
    """Write ``arr`` to exactly ``path`` (no suffix added), through a temporary file."""
    from .emit.atomic import temp_file_for
    p = Path(path)
    if p.is_dir():
        raise RtlgenError(f"-o {path} is a folder: give the file to write, e.g. {p / 'out.npy'}")
    if not p.parent.is_dir():
        raise RtlgenError(f"cannot write {path}: the folder {p.parent} does not exist")
    try:
        with temp_file_for(p, ".npy") as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=arr.dtype == object)
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


def _version() -> str:
    import platform

    from . import __version__
    try:
        from importlib.metadata import version
        amaranth = version("amaranth")
    except Exception:  # noqa: BLE001 - the version line must never fail
        amaranth = "?"
    return f"rtlgen {__version__} (Amaranth {amaranth}, Python {platform.python_version()})"


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """-q/-v, accepted before the command and after it (SUPPRESS keeps one from clearing the other)."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress messages on stderr (errors and warnings are still shown)")
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="details after an error (tool logs, parser messages, tracebacks of internal errors)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtlgen", description="Quantized models to verified fixed-point hardware.")
    parser.add_argument("-V", "--version", action="version", version=_version())
    _add_output_options(parser)
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
    for command in sub.choices.values():
        _add_output_options(command)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings about the user's model or configuration as one ``rtlgen: warning:`` line."""
    stream = file if file is not None else sys.stderr
    if issubclass(category, RtlgenWarning):
        text = f"rtlgen: warning: {message}\n"
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line)
    try:
        stream.write(text)
    except OSError:
        pass


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    """Run ``rtlgen``: 0 on success, 2 on a user error, 130 on Ctrl-C, 143 on SIGTERM, 1 on an internal error."""
    parser = make_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    from . import progress
    progress.configure(quiet=getattr(args, "quiet", False))
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", RtlgenWarning)
            warnings.showwarning = _show_warning
            return args.func(args)
    except RtlgenError as exc:
        print(f"rtlgen: error: {exc}", file=sys.stderr)
        if verbose and exc.detail:
            print(exc.detail.rstrip("\n"), file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("rtlgen: interrupted", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("rtlgen: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout went away (rtlgen report | head): not an error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback with -v
        print(f"rtlgen: internal error: {type(exc).__name__}: {exc} (this is a bug in rtlgen; "
              "run again with -v for the traceback and report it)", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return EXIT_INTERNAL_ERROR
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


if __name__ == "__main__":
    sys.exit(main())
