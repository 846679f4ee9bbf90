"""Command-line subcommands ``rtlgen board build|program|run``.

:func:`add_board_command` adds them to the ``rtlgen`` parser; each handler
returns 0 and raises :class:`~rtlgen.errors.RtlgenError` on user errors
(printed by ``rtlgen.cli.main``, exit status 2).
"""

from __future__ import annotations

import argparse

import numpy as np

from . import progress
from .errors import RtlgenError
from .flows.board import board_build, board_program, board_run
from .npyio import check_output, load_array, save_array

__all__ = ["add_board_command"]

BOARD_NAMES = ("icebreaker", "ulx3s-85f", "ulx3s-12f")


def _progress(text: str) -> None:
    progress.note(text)


def cmd_board_build(args) -> int:
    report = board_build(args.outdir, args.board, args.output, clock_mhz=args.clock_mhz,
                         self_test=args.self_test, baud=args.baud, window=args.window, tools=args.tools,
                         seed=args.seed, progress=_progress)
    util = ", ".join(f"{name} {u['used']}/{u['available']} ({u['percent']}%)"
                     for name, u in report["utilization"].items()
                     if u["used"] and name in ("ICESTORM_LC", "ICESTORM_DSP", "ICESTORM_RAM", "ICESTORM_SPRAM",
                                               "TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD"))
    print(f"wrote {args.output}/{report['bitstream']} for the {report['board']}: Fmax {report['fmax_mhz']:.1f} MHz "
          f"at a {report['clock_mhz']:g} MHz core clock, UART {report['baud']} baud; {util}")
    return 0


def cmd_board_program(args) -> int:
    print(board_program(args.outdir, progress=_progress))
    return 0


def cmd_board_run(args) -> int:
    check_output(args.output, protected=(args.input,))
    from .kinds import kind_for_build

    kind = kind_for_build(args.outdir)
    _, qmodel = kind.load_build(args.outdir)
    codes = kind.input_codes(qmodel, load_array(args.input), args.raw)
    kind, qmodel, results, golden, stats, status = board_run(args.outdir, args.port, codes, progress=_progress,
                                                             baud=args.baud)
    save_array(args.output, kind.output_values(qmodel, results, args.raw), protected=(args.input,))
    differs = np.any(np.asarray(results, dtype=object) != np.asarray(golden, dtype=object), axis=1)
    mismatches = int(np.sum(differs))
    print(f"ran {len(codes)} vectors on the board at {args.port}: {mismatches} mismatches against the golden "
          f"model, {stats.per_second:.0f} inferences/s over the link")
    if mismatches:
        first = int(np.argmax(differs))
        raise RtlgenError(f"{mismatches} of {len(codes)} results differ from the golden model (first: vector "
                          f"{first}, board {list(results[first])}, golden {list(golden[first])})")
    return 0


def _baud(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a baud rate") from None
    if not 300 <= value <= 50_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a baud rate (300 to 50000000)")
    return value


def add_board_command(sub, positive_float, positive_int, tools) -> list[argparse.ArgumentParser]:
    """Add ``board`` (with ``build``, ``program``, ``run``) to an argparse subparsers object; returns the
    parsers of those three."""
    board = sub.add_parser("board", help="bitstreams for FPGA boards, programming, and running vectors "
                                         "through the UART link")
    bsub = board.add_subparsers(dest="board_command", required=True)

    p = bsub.add_parser("build", help="bitstream of a built core behind the UART link for a board")
    p.add_argument("outdir", help="build folder (from 'rtlgen build')")
    p.add_argument("--board", "-b", required=True, choices=BOARD_NAMES)
    p.add_argument("--clock-mhz", type=positive_float,
                   help="core clock; other than the board's oscillator it comes from the PLL")
    p.add_argument("--self-test", type=int, default=0, metavar="N",
                   help="embed N test vectors and their golden results, checked at power-up (LEDs, STATUS)")
    p.add_argument("--baud", type=_baud, help="UART baud rate (default: the fastest standard rate the board "
                                              "and the clock allow)")
    p.add_argument("--window", type=positive_int, default=2, help="input samples the link queues (default 2)")
    p.add_argument("--seed", type=int, default=1, help="seed of the self-test vectors and of nextpnr (default 1)")
    p.add_argument("--tools", choices=tools, default="auto",
                   help="native tools on PATH, YoWASP (pip) builds, or auto: native first (default)")
    p.add_argument("-o", "--output", required=True, help="board folder to write")
    p.set_defaults(func=cmd_board_build)

    p = bsub.add_parser("program", help="program the board with a board folder's bitstream")
    p.add_argument("outdir", help="board folder (from 'rtlgen board build')")
    p.set_defaults(func=cmd_board_program)

    p = bsub.add_parser("run", help="stream vectors through the board and check them against the golden model")
    p.add_argument("outdir", help="board folder (from 'rtlgen board build')")
    p.add_argument("input", help="IN.npy: float inputs [N, n_in] (integer codes with --raw)")
    p.add_argument("--port", "-p", required=True, help="serial port of the board (e.g. /dev/ttyUSB1)")
    p.add_argument("-o", "--output", required=True, help="OUT.npy to write (what the board produced)")
    p.add_argument("--raw", action="store_true", help="inputs and outputs are integer codes")
    p.add_argument("--baud", type=_baud, help="baud rate (default: the one the bitstream was built for)")
    p.set_defaults(func=cmd_board_run)
    return list(bsub.choices.values())
