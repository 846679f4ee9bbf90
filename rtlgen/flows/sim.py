"""Run a built core on input vectors in an HDL simulator (Icarus or Verilator).

:func:`run_sim` takes an ``rtlgen build`` output directory (``<top>.v`` and
``manifest.json``), streams the input codes through the core with the generic
cocotb bench ``sims/test_core.py`` and returns the output codes the hardware
produced.  The bench also checks the handshake protocol (latency, initiation
interval, no spurious outputs) and, when ``expected`` is given, compares every
vector; any failure raises :class:`rtlgen.errors.RtlgenError` whose message
names the first failing vector and the log file.

Each call works in its own directory, so calls from several processes (for
example pytest-xdist workers) can run at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

import rtlgen
from rtlgen import progress
from rtlgen.errors import RtlgenError
from rtlgen.flows import tools

#: Module name of the generic bench in :data:`SIMS_DIR`.
TEST_MODULE = "test_core"
#: Folder holding ``test_core.py``.
SIMS_DIR = Path(rtlgen.__file__).resolve().parent.parent / "sims"

TIMESCALE = ("1ns", "1ps")

#: Extra Verilator arguments.  ``-Wno-fatal`` keeps lint warnings from
#: aborting the build (they still go to the build log).  ``-CFLAGS -O0``
#: compiles the C++ model and Verilator's runtime without optimisation (the
#: user flags come after verilated.mk's ``-Os``); see ``_verilator_build_args``.
VERILATOR_ARGS = ("-Wno-fatal", "-CFLAGS", "-O0")

_ENV_KEYS = (
    "RTLGEN_MANIFEST",
    "RTLGEN_IN",
    "RTLGEN_OUT",
    "RTLGEN_EXPECTED",
    "RTLGEN_REPORT",
    "RTLGEN_SEED",
    "RTLGEN_GAP",
    "RTLGEN_PROGRESS",
)

_REQUIRED_MANIFEST_KEYS = ("top", "verilog", "input", "output", "latency")


def read_manifest(outdir: str | os.PathLike) -> dict:
    """Load and sanity-check ``<outdir>/manifest.json``."""
    path = Path(outdir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise RtlgenError(
            f"{path} not found: run `rtlgen build` to create the core first"
        ) from None
    except json.JSONDecodeError as e:
        raise RtlgenError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise RtlgenError(f"{path}: expected a JSON object")
    missing = [k for k in _REQUIRED_MANIFEST_KEYS if k not in manifest]
    if missing:
        raise RtlgenError(f"{path} lacks key(s) {', '.join(missing)}")
    for side in ("input", "output"):
        spec = manifest[side]
        if not isinstance(spec, dict) or not all(k in spec for k in ("count", "width")):
            raise RtlgenError(f"{path}: '{side}' needs 'count' and 'width'")
    if int(manifest["latency"]) < 1 or int(manifest.get("ii", 1)) < 1:
        raise RtlgenError(f"{path}: 'latency' and 'ii' must be >= 1")
    fmt = manifest.get("format", 1)
    if fmt != 1:
        raise RtlgenError(f"{path}: manifest format {fmt} is not supported (expected 1)")
    verilog = Path(outdir) / manifest["verilog"]
    if not verilog.is_file():
        raise RtlgenError(f"{verilog} (named by {path}) does not exist")
    return manifest


def _codes_array(codes, spec: Mapping, what: str) -> np.ndarray:
    """Validate codes against one side of the manifest; return an int64/object array."""
    count, width = int(spec["count"]), int(spec["width"])
    signed = bool(spec.get("signed", False))
    arr = np.asarray(codes)
    if arr.ndim == 1 and count == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != count:
        raise RtlgenError(
            f"{what} codes have shape {arr.shape}, expected [N, {count}] "
            f"(one row of {count} codes per vector)"
        )
    if arr.dtype.kind not in "iuO" and not (arr.size == 0):
        raise RtlgenError(f"{what} codes must be integers, got dtype {arr.dtype}")
    lo = -(1 << (width - 1)) if signed else 0
    hi = (1 << (width - 1)) - 1 if signed else (1 << width) - 1
    fits64 = -(1 << 63) <= lo and hi < (1 << 63)
    if arr.dtype.kind == "O" or not fits64:
        rows = [[int(x) for x in row] for row in arr.tolist()]
        out = np.empty(arr.shape, dtype=np.int64 if fits64 else object)
        for r, row in enumerate(rows):
            out[r, :] = row
        flat = [x for row in rows for x in row]
    else:
        out = arr.astype(np.int64)
        flat = None
    if out.size:
        bad = None
        if flat is None:
            mask = (out < lo) | (out > hi)
            if mask.any():
                r, c = map(int, np.argwhere(mask)[0])
                bad = (r, c, int(out[r, c]))
        else:
            for i, x in enumerate(flat):
                if not lo <= x <= hi:
                    bad = (i // count, i % count, x)
                    break
        if bad is not None:
            r, c, x = bad
            raise RtlgenError(
                f"{what} vector {r} element {c}: code {x} does not fit "
                f"{'signed' if signed else 'unsigned'} {width} bits [{lo}, {hi}]"
            )
    return out


def _save_codes(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=arr.dtype == object)


@contextlib.contextmanager
def _environ(updates: Mapping[str, str | None]) -> Iterator[None]:
    """Temporarily set (or, for ``None``, remove) environment variables.

    cocotb's runner builds the simulator's environment from ``os.environ``
    *over* its ``extra_env`` argument, so a stale ``RTLGEN_*`` variable in the
    caller's environment would win; we set ours here for the duration.
    """
    saved = {k: os.environ.get(k) for k in updates}
    try:
        for k, v in updates.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _sys_path_first(entry: Path) -> Iterator[None]:
    """Put *entry* first on ``sys.path`` (the runner exports it as PYTHONPATH)."""
    saved = list(sys.path)
    sys.path.insert(0, str(entry))
    try:
        yield
    finally:
        sys.path[:] = saved


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def _vector_progress(count_path: Path, total: int, simulator: str) -> Iterator[None]:
    """Show the vectors simulated so far while the bench runs in its simulator process.

    The bench (``sims/test_core.py``) rewrites *count_path* with the number
    of results received about twice a second; a thread here polls it.
    """
    count_path.unlink(missing_ok=True)

    def done_so_far() -> int:
        try:
            return int(count_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    bar = progress.counter(f"simulating {total:,} vectors on {simulator}", total=total, unit="vectors")
    ok = False
    try:
        with progress.every(0.25, lambda: bar.set(done_so_far())):
            yield
        ok = True
    finally:
        bar.set(done_so_far())
        bar.close(ok=ok)


def _results_failures(results_xml: Path) -> tuple[int, list[str]] | None:
    """Number of test cases and failure messages in cocotb's results.xml."""
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return None
    cases = root.findall(".//testcase")
    failures = []
    for case in cases:
        for tag in ("failure", "error"):
            for el in case.findall(tag):
                msg = el.get("message") or (el.text or "").strip() or tag
                failures.append(f"{case.get('name', '?')}: {msg}")
    return len(cases), failures


def _verilator_build_args() -> list[str]:
    # Measured on the 2-core CI machine, build + run of 1000 vectors: the C++
    # compile of Verilator's runtime and the model dominates and the
    # simulation itself is bounded by the Python bench, not the model.
    # Small core: default -Os 7.4 s, -O0 6.3 s, -O1 8.8 s; 1280-bit core:
    # -Os 10.5 s, -O0 8.6 s.  RTLGEN_VERILATOR_ARGS (space separated)
    # replaces these flags, e.g. "-Wno-fatal -CFLAGS -O2" for long runs.
    override = os.environ.get("RTLGEN_VERILATOR_ARGS")
    if override is not None:
        return override.split()
    return list(VERILATOR_ARGS)


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _build_stamp(
    simulator: str, verilog: Path, top: str, build_args: list[str], build_env: Mapping[str, str]
) -> str:
    """Identity of a simulator build: the Verilog text, the top, the tools, the flags."""
    h = hashlib.sha256()
    h.update(verilog.read_bytes())
    key = {
        "simulator": simulator,
        "top": top,
        "args": build_args,
        "timescale": TIMESCALE,
        "cocotb": _dist_version("cocotb"),
        "verilator": _dist_version("verilator") if simulator == "verilator" else "",
        "tool_root": os.environ.get("VERILATOR_ROOT", "") if simulator == "verilator" else "",
        "env": {k: build_env.get(k, os.environ.get(k, "")) for k in ("CXXFLAGS", "CXX")},
    }
    h.update(json.dumps(key, sort_keys=True).encode())
    return h.hexdigest() + "\n"


def run_sim(
    outdir: str | os.PathLike,
    in_codes,
    simulator: str = "icarus",
    expected=None,
    work_dir: str | os.PathLike | None = None,
    seed: int = 1,
    gap: float = 0.3,
    verbose: bool = False,
) -> np.ndarray:
    """Simulate the core in *outdir* on *in_codes* and return the output codes.

    Args:
        outdir: directory with ``manifest.json`` and the Verilog it names.
        in_codes: integer array ``[N, input.count]`` of input codes (int64 or
            Python ints for elements wider than 63 bits).
        simulator: ``"icarus"`` or ``"verilator"``.
        expected: optional ``[N, output.count]`` expected output codes; a
            mismatch raises :class:`RtlgenError` naming the first bad vector.
        work_dir: build/run directory (kept).  Default: a fresh temporary
            directory, removed after a successful run and kept (its path is in
            the error message) after a failure, removed on Ctrl-C or SIGTERM
            (the simulator's processes are stopped first).  A Verilator build in
            *work_dir* is reused when the Verilog, top and flags are unchanged.
            One *work_dir* must not be used by two runs at the same time.
        seed: seed of the random ``in_valid`` gaps.
        gap: probability of idling ``in_valid`` for a cycle, in [0, 1).
        verbose: stream simulator output to stdout instead of log files.

    Returns:
        ``[N, output.count]`` array of output codes (int64, or object for
        elements wider than 64 bits).
    """
    outdir = Path(outdir).resolve()
    manifest = read_manifest(outdir)
    top = str(manifest["top"])
    if simulator not in tools.SIMULATORS:
        raise RtlgenError(
            f"unknown simulator {simulator!r}: choose one of {', '.join(tools.SIMULATORS)}"
        )
    if not 0.0 <= float(gap) < 1.0:
        raise RtlgenError(f"gap must be in [0, 1), got {gap}")
    if not (SIMS_DIR / f"{TEST_MODULE}.py").is_file():
        raise RtlgenError(
            f"the cocotb bench {SIMS_DIR / (TEST_MODULE + '.py')} is missing: run from an "
            "rtlgen checkout installed with `pip install -e .` (or `make setup`)"
        )
    ins = _codes_array(in_codes, manifest["input"], "input")
    exp = None
    if expected is not None:
        exp = _codes_array(expected, manifest["output"], "expected")
        if exp.shape[0] != ins.shape[0]:
            raise RtlgenError(
                f"{exp.shape[0]} expected vectors given for {ins.shape[0]} input vectors"
            )

    tools.ensure_simulator(simulator)

    temporary = work_dir is None
    if temporary:
        wdir = Path(tempfile.mkdtemp(prefix=f"rtlgen-sim-{top}-{simulator}-"))
    else:
        wdir = Path(work_dir).resolve()
        try:
            wdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RtlgenError(f"cannot create the work dir {wdir}: {exc.strerror or exc}") from None
    try:
        return _run_in(wdir, temporary, outdir, manifest, ins, exp, simulator, seed, gap, verbose)
    except RtlgenError:
        raise  # a build or simulation failure: its message names the work dir, kept for a look
    except BaseException:
        # Ctrl-C, SIGTERM (rtlgen.errors.Terminated) or an unexpected error: the
        # simulator's processes are already stopped (see prepare_runner)
        if temporary:
            shutil.rmtree(wdir, ignore_errors=True)
        raise


def _one_line(text: str, limit: int = 300) -> str:
    """The first line of *text*, cut to *limit* characters (``...`` marks a cut)."""
    lines = str(text).strip().splitlines() or [""]
    first = lines[0].strip()
    if len(first) > limit:
        first = first[:limit] + "..."
    elif len(lines) > 1:
        first += " ..."
    return first


#: The files of ``sims/`` whose ``assert`` statements pytest rewrites for
#: readable failures.  cocotb's default (``*.py``) has pytest rewrite, and
#: compile from source, every module the bench imports, numpy included, which
#: costs over a second at each simulator start.
BENCH_FILES = "test_core.py test_config_bus.py test_board_link.py core_tb.py"


def prepare_runner(runner, tmpdir: Path, fds: tuple[int, ...] = (), timeout: float | None = None) -> None:
    """Make *runner* start each tool in a process group of its own, killed on an exception.

    cocotb's runner starts iverilog, vvp, verilator, make (and through it
    the C++ compiler) with :func:`subprocess.run`, which on Ctrl-C or
    SIGTERM's :class:`~rtlgen.errors.Terminated` kills only its direct
    child: ``make``'s compilers would keep running.  This replaces the
    runner's command loop (``Runner._execute_cmds`` of cocotb-tools 0.1)
    with one that uses :func:`rtlgen.flows.tools.run_group`, and

    * sets ``TMPDIR`` to *tmpdir*, a folder in the work folder: a tool stopped
      that way leaves its temporary files (iverilog's preprocessor output,
      the compiler's) there, and they go with the work folder;
    * limits pytest's assertion rewriting to :data:`BENCH_FILES` unless
      ``COCOTB_REWRITE_ASSERTION_FILES`` is set;
    * lets the tools inherit the descriptors *fds* and run at most *timeout*
      seconds each.
    """
    if not callable(getattr(runner, "_execute_cmds", None)) or not hasattr(runner, "env"):
        if fds:
            raise RtlgenError("this cocotb-tools runner cannot pass a pseudo-terminal to the simulator")
        return  # another cocotb-tools: keep its own loop

    def _execute_cmds(cmds, cwd, stdout=None):
        tmpdir.mkdir(parents=True, exist_ok=True)
        env = {"COCOTB_REWRITE_ASSERTION_FILES": BENCH_FILES, **runner.env, "TMPDIR": str(tmpdir)}
        for cmd in cmds:
            runner.log.info("Running command %s in directory %s", " ".join(map(str, cmd)), cwd)
            stderr = None if stdout is None else subprocess.STDOUT
            try:
                result = tools.run_group(cmd, cwd=cwd, env=env, stdout=stdout, stderr=stderr, pass_fds=fds,
                                         timeout=timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{Path(str(cmd[0])).name} ran longer than {timeout:g} s") from None
            if result.returncode != 0:
                raise RuntimeError(f"Command failed with return code: {result.returncode}")

    runner._execute_cmds = _execute_cmds


def _run_in(wdir: Path, temporary: bool, outdir: Path, manifest: dict, ins: np.ndarray, exp, simulator: str,
            seed: int, gap: float, verbose: bool) -> np.ndarray:
    """The part of :func:`run_sim` that works in *wdir*."""
    # imported late: importing cocotb_tools is slow-ish and only needed here
    from cocotb_tools.runner import get_runner

    top = str(manifest["top"])
    verilog = outdir / manifest["verilog"]
    build_dir = wdir / f"sim_build_{simulator}"
    build_log = wdir / f"build_{simulator}.log"
    sim_log = wdir / f"sim_{simulator}.log"
    results_xml = wdir / f"results_{simulator}.xml"
    report_path = wdir / "report.json"
    in_path, out_path, exp_path = wdir / "in.npy", wdir / "out.npy", wdir / "expected.npy"
    for stale in (out_path, report_path, results_xml, exp_path):
        stale.unlink(missing_ok=True)
    _save_codes(in_path, ins)
    if exp is not None:
        _save_codes(exp_path, exp)

    env = {
        "RTLGEN_MANIFEST": str(outdir / "manifest.json"),
        "RTLGEN_IN": str(in_path),
        "RTLGEN_OUT": str(out_path),
        "RTLGEN_EXPECTED": str(exp_path) if exp is not None else None,
        "RTLGEN_REPORT": str(report_path),
        "RTLGEN_SEED": str(int(seed)),
        "RTLGEN_GAP": repr(float(gap)),
        "RTLGEN_PROGRESS": str(wdir / "progress.txt"),
    }
    assert set(env) == set(_ENV_KEYS)

    runner = get_runner(simulator)
    prepare_runner(runner, wdir / "tmp")
    if not verbose:
        runner.log.setLevel(logging.WARNING)
    build_args = _verilator_build_args() if simulator == "verilator" else []

    t0 = time.perf_counter()
    stamp_path = build_dir / "rtlgen_build.stamp"
    build_env = tools.verilator_build_env() if simulator == "verilator" else {}
    stamp = _build_stamp(simulator, verilog, top, build_args, build_env)
    reuse = (
        simulator == "verilator"
        and (build_dir / top).is_file()
        and stamp_path.is_file()
        and stamp_path.read_text() == stamp
    )
    if not reuse:
        stamp_path.unlink(missing_ok=True)
        try:
            with _environ(build_env), progress.stage(f"building the {simulator} simulation of {top}"):
                runner.build(
                    sources=[verilog],
                    hdl_toplevel=top,
                    build_dir=build_dir,
                    build_args=build_args,
                    always=True,
                    timescale=TIMESCALE,
                    log_file=None if verbose else build_log,
                )
        except (RuntimeError, SystemExit, OSError, ValueError) as e:
            raise RtlgenError(
                f"{simulator} failed to build {verilog} ({_one_line(e)}); "
                + ("see the output above" if verbose else f"log: {build_log}")
                + f"; work dir {wdir}",
                detail=None if verbose else f"--- last lines of {build_log} ---\n{_tail(build_log)}",
            ) from None
        stamp_path.write_text(stamp)
    t_build = time.perf_counter() - t0

    sim_error: str | None = None
    with _environ(env), _sys_path_first(SIMS_DIR), _vector_progress(Path(env["RTLGEN_PROGRESS"]), len(ins),
                                                                      simulator):
        try:
            runner.test(
                test_module=TEST_MODULE,
                hdl_toplevel=top,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=wdir,
                results_xml=str(results_xml),
                extra_env={k: v for k, v in env.items() if v is not None},
                seed=int(seed),
                timescale=TIMESCALE,
                log_file=None if verbose else sim_log,
            )
        except SystemExit as e:
            # the runner calls sys.exit() on a failing test when run under pytest
            sim_error = f"simulator exited with status {e.code}"
        except (RuntimeError, OSError) as e:
            sim_error = str(e)
    t_sim = time.perf_counter() - t0 - t_build

    report = None
    if report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except (OSError, json.JSONDecodeError):
            report = None
    results = _results_failures(results_xml)
    log_hint = "the output above" if verbose else str(sim_log)

    failed = sim_error is not None or results is None or results[0] == 0 or results[1]
    if failed or not out_path.is_file():
        if report is not None and report.get("message"):
            why = report["message"]
        elif results is not None and results[1]:
            why = "; ".join(results[1])
        elif results is None:
            why = f"the simulation ended abnormally (no {results_xml.name})"
        else:
            why = sim_error or "the bench produced no output"
        detail = []
        if "\n" in str(why).strip():
            detail.append(str(why).strip())
        if not verbose:
            detail.append(f"--- last lines of {sim_log} ---\n{_tail(sim_log)}")
        raise RtlgenError(
            f"{simulator} simulation of {top} failed: {_one_line(why)} (log: {log_hint}; "
            f"work dir {wdir})",
            detail="\n".join(detail) or None,
        )

    out = np.load(out_path, allow_pickle=True)
    logging.getLogger(__name__).info(
        "%s: %s (build %.1fs, run %.1fs)",
        simulator,
        report.get("summary") if report else f"{len(out)} vectors",
        t_build,
        t_sim,
    )
    if temporary:
        shutil.rmtree(wdir, ignore_errors=True)
    return out
