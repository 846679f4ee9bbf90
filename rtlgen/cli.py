"""Command-line interface: ``rtlgen build|predict|sim|lint|synth|report|sweep|board ...``.

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
import platform
import signal
import sys
import threading
import traceback
import warnings
from importlib.metadata import version

import numpy as np

from . import __version__, progress
from .cli_board import add_board_command
from .cli_flows import TOOLS, _positive_float, _positive_int, add_commands
from .errors import RtlgenError, RtlgenWarning, Terminated
from .flows.batch_sim import BATCH_MIN_VECTORS, run_batch
from .flows.sim import run_sim
from .flows.split_sim import SPLIT_MIN_VECTORS, run_split, should_split
from .kinds import kind_for_build, kind_for_model_file
from .npyio import check_output, load_array, save_array

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130        # 128 + SIGINT
EXIT_TERMINATED = 143         # 128 + SIGTERM


def cmd_build(args) -> int:
    kind = kind_for_model_file(args.model)
    qmodel = kind.quantized_model(args.model, args.config)
    manifest = kind.save_build(qmodel, args.output, top=args.name)
    print(kind.build_message(manifest, args.output))
    return 0


def _model_and_codes(args):
    """(kind, quantized model, input codes) of ``predict`` and ``sim``: the output checked first."""
    check_output(args.output, protected=(args.input,))
    kind = kind_for_build(args.outdir)
    _, qmodel = kind.load_build(args.outdir)
    return kind, qmodel, kind.input_codes(qmodel, load_array(args.input), args.raw)


def cmd_predict(args) -> int:
    kind, qmodel, codes = _model_and_codes(args)
    save_array(args.output, kind.output_values(qmodel, kind.predict_codes(qmodel, codes), args.raw),
               protected=(args.input,))
    return 0


def sim_engine(engine: str, n: int) -> str:
    """The engine ``rtlgen sim`` runs: ``batch`` (a compiled testbench) or ``cocotb`` (the Python bench)."""
    if engine == "auto":
        engine = "batch" if n >= BATCH_MIN_VECTORS else "cocotb"
    return engine


def cmd_sim(args) -> int:
    kind, qmodel, codes = _model_and_codes(args)
    expected = kind.predict_codes(qmodel, codes)
    engine = sim_engine(args.engine, len(codes))
    if args.gap is not None and not 0.0 <= args.gap < 1.0:
        raise RtlgenError(f"--gap must be in [0, 1), got {args.gap}")
    gap = args.gap if args.gap is not None else (0.0 if engine == "batch" else 0.3)
    simulator = args.simulator or ("verilator" if engine == "batch" else "icarus")
    if should_split(engine, len(codes), args.jobs, args.scheduler):
        out, figures = run_split(args.outdir, codes, engine=engine, simulator=simulator, gap=gap, jobs=args.jobs,
                                 scheduler=args.scheduler)
        where = (f"{simulator} ({engine} engine, {figures['chunks']} chunks on {figures['workers']} Dask workers, "
                 f"{figures['vectors_per_second']:,.0f} vectors/s)")
    elif engine == "batch":
        out, figures = run_batch(args.outdir, codes, expected if args.check else None, gap=gap, simulator=simulator)
        where = f"{simulator} (batch engine, {figures['vectors_per_second']:,.0f} vectors/s)"
    else:
        out = run_sim(args.outdir, codes, simulator=simulator, expected=expected if args.check else None, gap=gap)
        where = simulator
    differs = np.asarray(out, dtype=object) != np.asarray(expected, dtype=object)
    bad = np.nonzero(np.any(differs, axis=1))[0]
    mismatches = int(len(bad))
    if mismatches and args.check:
        k = int(bad[0])
        raise RtlgenError(f"simulation on {where}: {mismatches} of {len(codes)} vectors differ from the golden "
                          f"model; first: vector {k}, input {np.asarray(codes)[k].tolist()}, expected "
                          f"{np.asarray(expected)[k].tolist()}, got {np.asarray(out)[k].tolist()}")
    save_array(args.output, kind.output_values(qmodel, out, args.raw), protected=(args.input,))
    print(f"simulated {len(codes)} vectors on {where}: {mismatches} mismatches against the golden model")
    return 0


def _version() -> str:
    try:
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


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``rtlgen: error:`` line (status 2), like the others."""

    def error(self, message):
        # "rtlgen build" names its command; the top parser is rtlgen itself, named once already
        command = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(EXIT_USER_ERROR, f"rtlgen: error: {command}{message} (see '{self.prog} --help')\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rtlgen", description="Quantized models to verified fixed-point hardware.")
    parser.add_argument("-V", "--version", action="version", version=_version())
    _add_output_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="generate a core: OUTDIR/<name>.v and OUTDIR/manifest.json")
    p.add_argument("model", help="model file: .onnx; decision forests: xgboost .json/.ubj, LightGBM .txt, "
                                 "conifer .json, scikit-learn .joblib/.pkl (trusted files only)")
    p.add_argument("--config", "-c", help="precision configuration (YAML or JSON); optional for a "
                                          "quantization-aware ONNX model (QONNX), whose quantizers give the types")
    p.add_argument("-o", "--output", required=True, help="build folder to write")
    p.add_argument("--name", help="Verilog module name (default: from the model)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("predict", help="bit-exact golden model of a built core")
    p.add_argument("outdir", help="build folder")
    p.add_argument("input", help="IN.npy: float inputs [N, n_in] (integer codes with --raw)")
    p.add_argument("-o", "--output", required=True, help="OUT.npy to write")
    p.add_argument("--raw", action="store_true", help="inputs and outputs are integer codes")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("sim", help="run the generated RTL in a simulator (cocotb bench, or a compiled "
                                   "Verilator testbench for many vectors)")
    p.add_argument("outdir", help="build folder")
    p.add_argument("input", help="IN.npy: float inputs [N, n_in] (integer codes with --raw)")
    p.add_argument("-o", "--output", required=True, help="OUT.npy to write (what the hardware produced)")
    p.add_argument("--raw", action="store_true", help="inputs and outputs are integer codes")
    p.add_argument("--simulator", choices=["icarus", "verilator"],
                   help="simulator (default: verilator with the batch engine, icarus with cocotb)")
    p.add_argument("--engine", choices=["auto", "cocotb", "batch"], default="auto",
                   help=f"cocotb: the Python bench; batch: a compiled testbench (C++ on Verilator, Verilog on "
                        f"Icarus), no Python per cycle, built once per core and cached; auto (default): batch "
                        f"from {BATCH_MIN_VECTORS:,} vectors on")
    p.add_argument("--gap", type=float, help="probability of idling in_valid for a cycle, in [0, 1) "
                                             "(default: 0.3 with cocotb, 0 with batch)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="do not fail on a mismatch against the golden model (still counted)")
    p.add_argument("--jobs", "-j", type=_positive_int, default=2,
                   help=f"worker processes of the local Dask cluster that a large run is split over (from "
                        f"{SPLIT_MIN_VECTORS['batch']:,} vectors with batch, {SPLIT_MIN_VECTORS['cocotb']:,} with "
                        "cocotb; default 2; 1: no split)")
    p.add_argument("--scheduler", help="a Dask scheduler (tcp://HOST:PORT) to split a large run over")
    p.set_defaults(func=cmd_sim)

    add_commands(sub)
    nested = add_board_command(sub, _positive_float, _positive_int, TOOLS)
    for command in [*sub.choices.values(), *nested]:
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
