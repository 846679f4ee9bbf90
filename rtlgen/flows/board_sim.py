"""Simulate a board folder's link: the cocotb bench ``sims/test_board_link.py`` on ``board_link.v``.

:func:`run_board_bench` runs the bench's groups (``frames``, ``selftest``,
``pty``) on Icarus Verilog or Verilator with cocotb's runner, in a work
folder of its own, and returns what the bench reported; a failure raises
:class:`~rtlgen.errors.RtlgenError` with the log's tail as its detail.

:func:`simulated_board` stands a simulated board behind a pseudo-terminal:
its slave side is a serial port for ``rtlgen board run --port``::

    with simulated_board("out/board", "icarus") as port:
        subprocess.run(["rtlgen", "board", "run", "out/board", "--port", port, "x.npy", "-o", "y.npy"])

The simulation runs in a subprocess (``python -m rtlgen.flows.board_sim``)
until the context exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tty
from collections.abc import Iterator, Sequence
from pathlib import Path

from rtlgen.errors import RtlgenError, Terminated
from rtlgen.flows import tools
from rtlgen.flows.board import load_board_report
from rtlgen.flows.sim import SIMS_DIR, TIMESCALE, _environ, _one_line, _results_failures, _sys_path_first, _tail, \
    _verilator_build_args, prepare_runner

__all__ = ["BENCH_MODULE", "GROUPS", "run_board_bench", "simulated_board"]

#: the bench's module name in :data:`rtlgen.flows.sim.SIMS_DIR`
BENCH_MODULE = "test_board_link"
GROUPS = ("frames", "selftest", "pty")
#: seconds simulated_board waits for the simulation to come out of reset (a Verilator build included)
READY_SECONDS = 300.0


def run_board_bench(board_dir, simulator: str = "icarus", groups: Sequence[str] = ("frames", "selftest"), *,
                    samples: int = 24, seed: int = 1, selftest_mismatches: int = 0, work_dir=None,
                    pty_fd: int | None = None, pty_seconds: float = 600.0, pty_cycles: int | None = None,
                    pty_ready=None, timeout: float | None = 1800.0, verbose: bool = False) -> dict:
    """Run the groups of ``sims/test_board_link.py`` on board folder ``board_dir``; return the bench's report.

    ``selftest_mismatches``: the self-test mismatches expected (a build with corrupted golden
    results); ``work_dir``: kept build/run folder (default: a temporary one, removed after a
    success and kept, named in the error, after a failure); ``pty_fd`` (group ``pty``): the
    pseudo-terminal master the simulator inherits; ``pty_ready``: a file the bench writes when
    the board is out of reset; ``timeout``: seconds each tool (build, simulation) may run.
    """
    board_dir = Path(board_dir).resolve()
    report = load_board_report(board_dir)
    link = report.get("link_verilog") or {}
    verilog = board_dir / link.get("file", "board_link.v")
    top = link.get("top", "board_link")
    if not verilog.is_file():
        raise RtlgenError(f"{verilog} is missing: build the board folder again with 'rtlgen board build'")
    if simulator not in tools.SIMULATORS:
        raise RtlgenError(f"unknown simulator {simulator!r}: choose one of {', '.join(tools.SIMULATORS)}")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise RtlgenError(f"bench groups {list(groups)}: choose from {', '.join(GROUPS)}")
    if "pty" in groups and pty_fd is None:
        raise RtlgenError("the pty group needs a pseudo-terminal (pty_fd)")
    if not (SIMS_DIR / f"{BENCH_MODULE}.py").is_file():
        raise RtlgenError(f"the cocotb bench {SIMS_DIR / (BENCH_MODULE + '.py')} is missing: run from an rtlgen "
                          "checkout installed with `pip install -e .`")
    tools.ensure_simulator(simulator)

    temporary = work_dir is None
    wdir = Path(tempfile.mkdtemp(prefix=f"rtlgen-board-sim-{simulator}-")) if temporary else Path(work_dir).resolve()
    wdir.mkdir(parents=True, exist_ok=True)
    try:
        result = _run_in(wdir, board_dir, verilog, top, simulator, list(groups), samples, seed,
                         selftest_mismatches, pty_fd, pty_seconds, pty_cycles, pty_ready, timeout, verbose)
    except RtlgenError:
        raise
    except BaseException:
        if temporary:
            shutil.rmtree(wdir, ignore_errors=True)
        raise
    if temporary:
        shutil.rmtree(wdir, ignore_errors=True)
    return result


def _run_in(wdir: Path, board_dir: Path, verilog: Path, top: str, simulator: str, groups: list[str], samples: int,
            seed: int, selftest_mismatches: int, pty_fd, pty_seconds: float, pty_cycles, pty_ready,
            timeout: float | None, verbose: bool) -> dict:
    from cocotb_tools.runner import get_runner

    build_dir = wdir / f"sim_build_{simulator}"
    build_log, sim_log = wdir / f"build_{simulator}.log", wdir / f"sim_{simulator}.log"
    results_xml, report_path = wdir / f"results_{simulator}.xml", wdir / "board_report.json"
    for stale in (results_xml, report_path):
        stale.unlink(missing_ok=True)
    env = {
        "RTLGEN_BOARD": str(board_dir),
        "RTLGEN_BOARD_TESTS": ",".join(groups),
        "RTLGEN_BOARD_SAMPLES": str(int(samples)),
        "RTLGEN_SEED": str(int(seed)),
        "RTLGEN_SELFTEST_MISMATCHES": str(int(selftest_mismatches)),
        "RTLGEN_BOARD_REPORT": str(report_path),
        "RTLGEN_PTY_FD": None if pty_fd is None else str(int(pty_fd)),
        "RTLGEN_PTY_SECONDS": repr(float(pty_seconds)),
        "RTLGEN_PTY_CYCLES": None if not pty_cycles else str(int(pty_cycles)),
        "RTLGEN_PTY_READY": None if pty_ready is None else str(pty_ready),
    }
    runner = get_runner(simulator)
    prepare_runner(runner, wdir / "tmp", () if pty_fd is None else (int(pty_fd),), timeout)
    if not verbose:
        runner.log.setLevel(logging.WARNING)
    build_args = _verilator_build_args() if simulator == "verilator" else []
    build_env = tools.verilator_build_env() if simulator == "verilator" else {}
    try:
        with _environ(build_env):
            runner.build(sources=[verilog], hdl_toplevel=top, build_dir=build_dir, build_args=build_args,
                         always=True, timescale=TIMESCALE, log_file=None if verbose else build_log)
    except (RuntimeError, SystemExit, OSError, ValueError) as e:
        raise RtlgenError(f"{simulator} failed to build {verilog} ({_one_line(e)}); log: {build_log}; "
                          f"work dir {wdir}", detail=f"--- last lines of {build_log} ---\n{_tail(build_log)}") from None

    sim_error = None
    with _environ(env), _sys_path_first(SIMS_DIR):
        try:
            runner.test(test_module=BENCH_MODULE, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                        build_dir=build_dir, test_dir=wdir, results_xml=str(results_xml),
                        extra_env={k: v for k, v in env.items() if v is not None}, seed=int(seed),
                        timescale=TIMESCALE, log_file=None if verbose else sim_log)
        except SystemExit as e:
            sim_error = f"simulator exited with status {e.code}"
        except (RuntimeError, OSError) as e:
            sim_error = str(e)
    results = _results_failures(results_xml)
    if sim_error is not None or results is None or results[0] == 0 or results[1]:
        if results is not None and results[1]:
            why = "; ".join(results[1])
        elif results is None:
            why = f"the simulation ended abnormally (no {results_xml.name})"
        else:
            why = sim_error or "no test ran"
        raise RtlgenError(f"{simulator} simulation of the board link in {board_dir} failed: {_one_line(why, 600)} "
                          f"(log: {sim_log}; work dir {wdir})",
                          detail=f"{why}\n--- last lines of {sim_log} ---\n{_tail(sim_log, 40)}")
    try:
        return json.loads(report_path.read_text()) if report_path.is_file() else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def simulated_board(out, simulator: str = "icarus", *, seconds: float = 600.0,
                    ready_seconds: float = READY_SECONDS) -> Iterator[str]:
    """A simulation of board folder ``out`` behind a pseudo-terminal; yields the path of its slave side.

    The simulation (a subprocess) bridges the pseudo-terminal to the link's UART until the
    context exits (then the slave side is closed, which ends the bridge) or ``seconds`` of
    wall-clock time have passed.  Raises :class:`RtlgenError` with the log's tail if the
    simulation does not come up.
    """
    out = Path(out).resolve()
    load_board_report(out)
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    scratch = Path(tempfile.mkdtemp(prefix="rtlgen-board-pty-"))
    ready, log_path = scratch / "ready", scratch / "bridge.log"
    argv = [sys.executable, "-m", "rtlgen.flows.board_sim", str(out), "--simulator", simulator,
            "--pty-fd", str(master), "--seconds", repr(float(seconds)), "--ready", str(ready)]
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, pass_fds=(master,), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    except BaseException:
        os.close(master)
        os.close(slave)
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    os.close(master)
    ok = False
    try:
        deadline = time.monotonic() + ready_seconds
        while not ready.is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                why = (f"ended (exit {proc.returncode})" if proc.returncode is not None
                       else f"was not ready after {ready_seconds:g} s")
                raise RtlgenError(f"the simulated board ({simulator}) {why}; log: {log_path}",
                                  detail=_tail(log_path, 40))
            time.sleep(0.05)
        yield path
        ok = True
    finally:
        os.close(slave)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            tools.kill_group(proc)
        if proc.returncode not in (0, None) and ok:
            detail = _tail(log_path, 40)
            shutil.rmtree(scratch, ignore_errors=True)
            raise RtlgenError(f"the simulated board ({simulator}) failed (exit {proc.returncode})", detail=detail)
        shutil.rmtree(scratch, ignore_errors=True)


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    """``python -m rtlgen.flows.board_sim OUT --pty-fd FD``: the bridge process of :func:`simulated_board`."""
    parser = argparse.ArgumentParser(prog="python -m rtlgen.flows.board_sim")
    parser.add_argument("out", help="board folder")
    parser.add_argument("--simulator", default="icarus", choices=tools.SIMULATORS)
    parser.add_argument("--pty-fd", type=int, required=True, help="inherited pseudo-terminal master")
    parser.add_argument("--seconds", type=float, default=600.0, help="wall-clock bound")
    parser.add_argument("--ready", help="file written when the board is out of reset")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        report = run_board_bench(args.out, args.simulator, ("pty",), pty_fd=args.pty_fd, pty_seconds=args.seconds,
                                 pty_ready=args.ready)
    except RtlgenError as exc:
        print(f"rtlgen: error: {exc}", file=sys.stderr)
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(json.dumps(report.get("pty", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
