"""Bitstreams for boards: ``rtlgen board build`` and ``rtlgen board program``.

:func:`board_build` turns a build folder into a bitstream for one of the
boards of :mod:`rtlgen.boards`:

1. the core is elaborated again from the build's quantized model and put
   behind the UART host link (:class:`rtlgen.link.gateware.CoreLink`), with
   the self-test vectors and their golden results in ROMs when asked for,
   inside the board's top (:class:`rtlgen.boards.top.BoardTop`: PLL, reset,
   LEDs); the pins and clock constraints come from the board's
   amaranth-boards platform;
2. Yosys (``synth_ice40 -dsp`` / ``synth_ecp5``), then a check of its cell
   counts against the device, so that a core that cannot fit is refused
   before place and route;
3. nextpnr at the core clock (its ``--report`` gives Fmax and utilization),
   then icepack / ecppack.

Native tools on ``PATH`` are preferred, else the YoWASP wheels.  The output
folder gets the bitstream, ``board.json`` (what was built and the figures),
``board.md``, the tools' logs, ``board_link.v`` (the link and the core as
Verilog, without the board's PLL, reset and pins: ports ``clk``, ``rst``,
``rx``, ``tx``, ``selftest_state``, ``mismatches``, for simulation), and a copy of the build folder's core files so
that ``rtlgen board run`` can check results against the golden model.  It is
written by the build-folder contract of :mod:`rtlgen.emit.folder`: nothing
appears unless complete, and a folder rtlgen did not write is refused.  A
core that does not fit or misses the clock is refused (exit 2) with the
numbers and the knob to turn; nothing is written then.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from amaranth.back import verilog

from ..emit.folder import check_output_folder, commit_build
from ..errors import RtlgenError
from ..kinds import kind_for_build
from ..link.protocol import SampleFormat
from .synth import _STEP, _errors_in, _run, classify_cells, find_tool, parse_stat_json, pnr_results

__all__ = ["board_build", "board_program", "selftest_samples", "choose_baud", "BOARD_REPORT",
           "load_board_report", "BAUD_RATES"]

BOARD_REPORT = "board.json"
#: the link and core without the board's clock, reset and pins, for simulation
LINK_VERILOG = "board_link.v"
LINK_TOP = "board_link"
TOP = "top"
#: standard rates tried, fastest first, when no --baud is given
BAUD_RATES = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 921_600, 460_800, 230_400, 115_200)
#: largest relative error of the UART bit time accepted
BAUD_TOLERANCE = 0.015
#: fewest clock cycles per UART bit the receiver samples with
MIN_DIVISOR = 4

Progress = Callable[[str], None]

_RESOURCE_CELLS = {"luts": "LUTs", "dsp": "DSP blocks", "bram": "block RAMs", "ffs": "flip-flops"}


def _note(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def choose_baud(clock_mhz: float, max_baud: int, baud: int | None = None) -> tuple[int, int]:
    """``(baud, divisor)``: the given ``baud`` (checked) or the fastest standard one the clock makes."""
    f = clock_mhz * 1e6
    rates = [baud] if baud is not None else [b for b in BAUD_RATES if b <= max_baud]
    for rate in rates:
        divisor = round(f / rate)
        if divisor >= MIN_DIVISOR and abs(f / divisor - rate) <= BAUD_TOLERANCE * rate:
            return rate, divisor
    if baud is not None:
        raise RtlgenError(f"--baud {baud} cannot be made from a {clock_mhz:g} MHz clock (at least "
                          f"{MIN_DIVISOR} cycles per bit, within {BAUD_TOLERANCE:.0%}): choose another "
                          "--baud or --clock-mhz")
    raise RtlgenError(f"no standard baud rate up to {max_baud} fits a {clock_mhz:g} MHz clock: give --baud")


def selftest_samples(kind, qmodel, manifest: dict, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` input samples (codes: all minimum, all maximum, all zero, then seeded random ones) and
    their golden results."""
    inp = manifest["input"]
    width, signed, count = int(inp["width"]), bool(inp.get("signed", False)), int(inp["count"])
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    rng = np.random.default_rng(seed)
    rows = [np.full(count, lo), np.full(count, hi), np.zeros(count, dtype=np.int64)]
    if width <= 62:
        random = rng.integers(lo, hi, size=(max(n - 3, 0), count), endpoint=True)
    else:
        random = np.array([[int(rng.integers(0, 1 << 62)) << (width - 62) for _ in range(count)]
                           for _ in range(max(n - 3, 0))], dtype=object)
    codes = np.array(rows[:n] + list(random), dtype=object if width > 62 else np.int64)[:n]
    return codes, np.asarray(kind.predict_codes(qmodel, codes))


def _core_files(build: Path, manifest: dict) -> dict[str, bytes]:
    names = [manifest["verilog"], "manifest.json", manifest.get("model", "model.json")]
    names += [n for n in ("regmap.json", "regmap.md") if (build / n).is_file()]
    try:
        return {n: (build / n).read_bytes() for n in names}
    except OSError as exc:
        raise RtlgenError(f"build folder {build} is damaged ({exc}); rebuild it with 'rtlgen build'") from None


def _yosys_script(family: str) -> str:
    synth = f"synth_ice40 -dsp -top {TOP}" if family == "ice40" else f"synth_ecp5 -top {TOP}"
    return (f"read_rtlil {TOP}.il\n{synth}\n"
            f"tee -q -o stat.json stat -json\n"
            f"write_json {TOP}.json\n")


def _check_fit(board, resources: dict) -> None:
    over = [(key, resources.get(key, 0), cap) for key, cap in board.resources.items()
            if key in ("luts", "dsp", "bram") and resources.get(key, 0) > cap]
    if not over:
        return
    parts = [f"{used} {_RESOURCE_CELLS[key]} (the {board.name} has {cap})" for key, used, cap in over]
    keys = {key for key, _, _ in over}
    knobs = []
    if "dsp" in keys:
        knobs.append("a larger reuse_factor or arithmetic: shift_add (no DSPs)")
    if "luts" in keys:
        knobs.append("a larger reuse_factor with arithmetic: multipliers, narrower types, or a larger board")
    if "bram" in keys:
        knobs.append("fewer --self-test vectors or a smaller reuse_factor")
    raise RtlgenError(f"the core does not fit the {board.name}: Yosys maps it to {' and '.join(parts)}; "
                      f"use {'; '.join(knobs)}")


def _pnr_fail_reason(log_text: str) -> str | None:
    for line in log_text.splitlines():
        if "ERROR" in line and ("uses" in line or "Unable to place" in line or "exceeds" in line):
            return line.split("ERROR:", 1)[-1].strip()
    return None


def board_build(build_dir, board_name: str, out, *, clock_mhz: float | None = None, self_test: int = 0,
                baud: int | None = None, window: int = 2, tools: str = "auto", seed: int = 1,
                progress: Progress | None = None, corrupt: tuple[int, ...] = (),
                timeout: float | None = None, check_timing: bool = True, bitstream: bool = True) -> dict:
    """Build the bitstream of build folder ``build_dir`` for board ``board_name`` into ``out``.

    ``clock_mhz``: the core clock (default the board's oscillator; another
    one comes from the PLL); ``self_test``: vectors embedded for the
    power-up self-test (0: none); ``baud``: UART rate (default: the fastest
    standard rate the board's bridge and the clock allow); ``window``:
    input vectors the link queues; ``corrupt``: indices of self-test vectors
    whose golden result is deliberately altered (to see the self-test
    fail); ``bitstream=False``: no Yosys/nextpnr run, only the link's
    simulation model and ``board.json`` (for simulating the board, see
    :mod:`rtlgen.flows.board_sim`).  Returns the report written to
    ``OUT/board.json``.
    """
    from ..boards import board_named
    from ..boards.pll import ecp5_pll, ice40_pll
    from ..boards.top import BoardTop
    from ..link.gateware import CoreLink

    board = board_named(board_name)
    build = Path(build_dir)
    if not build.is_dir():
        raise RtlgenError(f"build folder {build} does not exist; run 'rtlgen build' first")
    if self_test < 0 or self_test > 4096:
        raise RtlgenError(f"--self-test {self_test}: embed 0 to 4096 vectors")
    if not 1 <= window <= 64:
        raise RtlgenError(f"--window {window}: the link queues 1 to 64 input vectors")
    kind = kind_for_build(build)
    manifest, qmodel = kind.load_build(build)
    files = _core_files(build, manifest)
    check_output_folder(out)

    clock_mhz = float(clock_mhz or board.clock_mhz)
    pll = None
    if abs(clock_mhz - board.clock_mhz) > 1e-9:
        pll = (ice40_pll if board.family == "ice40" else ecp5_pll)(board.clock_mhz, clock_mhz)
        clock_mhz = pll.f_out
    baud, divisor = choose_baud(clock_mhz, board.max_baud, baud)
    fmt = SampleFormat.from_manifest(manifest)

    st_in = st_out = None
    if self_test:
        codes, golden = selftest_samples(kind, qmodel, manifest, self_test, seed)
        st_in = [w for sample in codes for w in fmt.word_values(sample)]
        st_out = [fmt.result_value(r) for r in golden]
        for k in corrupt:
            st_out[k % len(st_out)] ^= 1

    def make_link():
        return CoreLink(kind.core(qmodel), words=fmt.words, latency=int(manifest["latency"]), ii=int(manifest["ii"]),
                        divisor=divisor, window=window, selftest_inputs=st_in, selftest_expected=st_out)

    if not bitstream:
        report = {**_link_facts(board, clock_mhz, pll, baud, divisor, window, self_test, seed, fmt, manifest),
                  "bitstream": None, "fmax_mhz": None, "meets_clock": None, "resources": None, "utilization": {}}
        _note(progress, f"board {board.name}: writing {LINK_VERILOG}, the simulation model of the link and core "
                        "(no bitstream)")
        files[LINK_VERILOG] = verilog.convert(make_link(), name=LINK_TOP)
        report.update(link_verilog={"file": LINK_VERILOG, "top": LINK_TOP}, build=str(build))
        files[BOARD_REPORT] = json.dumps(report, indent=2) + "\n"
        files["board.md"] = board_markdown(report)
        commit_build(out, files)
        return report

    top = BoardTop(board, make_link(), pll)

    yosys = find_tool("yosys", tools)
    nextpnr = find_tool(f"nextpnr-{board.family}", tools)
    packer = find_tool("icepack" if board.family == "ice40" else "ecppack", tools)
    for tool in (yosys, nextpnr, packer):
        if tool.kind == "yowasp":
            _note(progress, f"{tool.name}: using the YoWASP (WebAssembly) build; its first run on a "
                            "machine compiles it, which can take minutes")

    work = Path(tempfile.mkdtemp(prefix="rtlgen-board-"))
    try:
        report = _build_in(work, board, top, manifest, fmt, yosys, nextpnr, packer, clock_mhz, baud, divisor,
                           window, self_test, pll, seed, progress, timeout, check_timing)
        bitstream = TOP + board.bitstream_suffix
        files[bitstream] = (work / bitstream).read_bytes()
        for name in ("yosys.log", "nextpnr.log", "nextpnr_report.json", f"{TOP}.il"):
            if (work / name).is_file():
                files[name] = (work / name).read_bytes()
        report["bitstream"] = bitstream
        _note(progress, f"board {board.name}: writing {LINK_VERILOG}, the simulation model of the link and core")
        files[LINK_VERILOG] = verilog.convert(make_link(), name=LINK_TOP)
        report["link_verilog"] = {"file": LINK_VERILOG, "top": LINK_TOP}
        report["build"] = str(build)
        files[BOARD_REPORT] = json.dumps(report, indent=2) + "\n"
        files["board.md"] = board_markdown(report)
        commit_build(out, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _build_in(work: Path, board, top, manifest: dict, fmt: SampleFormat, yosys, nextpnr, packer,
              clock_mhz: float, baud: int, divisor: int, window: int, self_test: int, pll, seed: int,
              progress, timeout, check_timing: bool) -> dict:
    platform = board.platform_class()()
    _note(progress, f"board {board.name}: elaborating the core, its UART link ({baud} baud) and "
                    f"{'the PLL at ' + format(clock_mhz, 'g') + ' MHz' if pll else 'the board clock'}")
    plan = platform.build(top, name=TOP, do_build=False)
    plan.extract(work)
    constraints = f"{TOP}.pcf" if board.family == "ice40" else f"{TOP}.lpf"

    (work / "synth.ys").write_text(_yosys_script(board.family))
    _note(progress, f"board {board.name}: Yosys ({yosys.kind})")
    start = time.monotonic()
    rc = _run(yosys, ["-s", "synth.ys"], work, work / "yosys.log", progress, _STEP["yosys"], timeout)
    ysec = time.monotonic() - start
    if rc != 0:
        why = "timed out" if rc == -1 else f"failed (exit {rc})"
        detail = _errors_in(work / "yosys.log")
        raise RtlgenError(f"{yosys.name} ({yosys.kind}) {why} on the {board.name} design"
                          + (f": {detail}" if detail else ""),
                          detail=(work / "yosys.log").read_text(errors="replace")[-3000:])
    by_type = parse_stat_json((work / "stat.json").read_text(), TOP)
    resources = classify_cells(board.family, by_type)
    _check_fit(board, resources)

    args = [board.nextpnr_device, "--package", board.package, "--json", f"{TOP}.json",
            "--freq", f"{clock_mhz:g}", "--report", "nextpnr_report.json", "--timing-allow-fail",
            "--seed", str(seed)]
    if board.family == "ice40":
        args += ["--pcf", constraints, "--asc", f"{TOP}.asc"]
    else:
        args += ["--lpf", constraints, "--textcfg", f"{TOP}.config"]
    _note(progress, f"board {board.name}: nextpnr ({nextpnr.kind}) at {clock_mhz:g} MHz")
    start = time.monotonic()
    rc = _run(nextpnr, args, work, work / "nextpnr.log", progress, _STEP["nextpnr"], timeout)
    psec = time.monotonic() - start
    log_text = (work / "nextpnr.log").read_text(errors="replace")
    if rc != 0:
        reason = _pnr_fail_reason(log_text)
        if reason:
            raise RtlgenError(f"the core does not fit the {board.name}: nextpnr says \"{reason}\"; use a "
                              "larger reuse_factor, arithmetic: shift_add for DSPs, or a larger board",
                              detail=log_text[-3000:])
        why = "timed out" if rc == -1 else f"failed (exit {rc})"
        detail = _errors_in(work / "nextpnr.log")
        raise RtlgenError(f"{nextpnr.name} ({nextpnr.kind}) {why} on the {board.name} design"
                          + (f": {detail}" if detail else ""), detail=log_text[-3000:])
    clock, fmax, util = pnr_results(work / "nextpnr_report.json", log_text)
    if fmax is None:
        raise RtlgenError(f"{nextpnr.name} finished but reported no clock frequency; see its log",
                          detail=log_text[-3000:])
    if check_timing and fmax < clock_mhz:
        raise RtlgenError(f"the {board.name} design misses timing: Fmax {fmax:.1f} MHz < the {clock_mhz:g} MHz "
                          "core clock; use a lower --clock-mhz, or in the model's config a clock_mhz target "
                          "for the shift_add layers (more pipeline stages) or a larger reuse_factor")

    if board.family == "ice40":
        pack_args = [f"{TOP}.asc", f"{TOP}.bin"]
    else:
        pack_args = ["--input", f"{TOP}.config", "--bit", f"{TOP}.bit"]
    _note(progress, f"board {board.name}: {packer.name}")
    rc = _run(packer, pack_args, work, work / "pack.log", None, None, timeout)
    if rc != 0:
        raise RtlgenError(f"{packer.name} ({packer.kind}) failed (exit {rc}) on the {board.name} design",
                          detail=(work / "pack.log").read_text(errors="replace")[-2000:])
    _note(progress, f"board {board.name}: Fmax {fmax:.1f} MHz at a {clock_mhz:g} MHz core clock, "
                    f"{_util_line(util)}")
    return {
        **_link_facts(board, clock_mhz, pll, baud, divisor, window, self_test, seed, fmt, manifest),
        "fmax_mhz": round(fmax, 2),
        "fmax_clock": clock,
        "meets_clock": fmax >= clock_mhz,
        "resources": resources,
        "utilization": {k: {**v, "percent": round(100.0 * v["used"] / v["available"], 1) if v["available"] else 0.0}
                        for k, v in util.items()},
        "tools": {t.name: {"kind": t.kind, "path": t.path} for t in (yosys, nextpnr, packer)},
        "runtime_s": {"yosys": round(ysec, 1), "nextpnr": round(psec, 1)},
    }


def _link_facts(board, clock_mhz: float, pll, baud: int, divisor: int, window: int, self_test: int, seed: int,
                fmt: SampleFormat, manifest: dict) -> dict:
    """What ``board.json`` says of the board, the clock and the link, bitstream or not."""
    return {
        "format": 1,
        "board": board.name,
        "description": board.description,
        "family": board.family,
        "device": board.nextpnr_device.lstrip("-"),
        "board_clock_mhz": board.clock_mhz,
        "clock_mhz": clock_mhz,
        "pll": dict(pll.dividers) if pll else None,
        "baud": baud,
        "baud_divisor": divisor,
        "window": window,
        "self_test": self_test,
        "seed": seed,
        "sample": {"in_bytes": fmt.in_bytes, "out_bytes": fmt.out_bytes, "words": fmt.words},
        "core": {"top": manifest["top"], "latency": manifest["latency"], "ii": manifest["ii"]},
    }


def _util_line(util: dict) -> str:
    keep = [k for k in util if util[k]["used"] and k not in ("SB_IO", "TRELLIS_IO", "SB_GB", "DCCA", "GSR", "SB_PLL40_PAD", "EHXPLLL")]
    return ", ".join(f"{k} {util[k]['used']}/{util[k]['available']}" for k in keep)


def board_markdown(report: dict) -> str:
    lines = [f"# {report['description']}", "",
             f"- core `{report['core']['top']}`: latency {report['core']['latency']} cycles, II {report['core']['ii']}",
             f"- core clock {report['clock_mhz']:g} MHz (board oscillator {report['board_clock_mhz']:g} MHz"
             + (", PLL" if report["pll"] else "") + ")"
             + ("" if report.get("fmax_mhz") is None else f"; Fmax {report['fmax_mhz']:.1f} MHz "
                + ("(meets it)" if report["meets_clock"] else "(MISSES it)")),
             f"- UART {report['baud']} baud, {report['window']} vectors queued; "
             f"a sample is {report['sample']['in_bytes']} bytes in, {report['sample']['out_bytes']} bytes out",
             f"- self-test: {report['self_test']} vectors" if report["self_test"] else "- self-test: none",
             f"- bitstream `{report['bitstream']}`" if report.get("bitstream")
             else "- no bitstream: the link's simulation model only", "", "| resource | used | available | % |",
             "| --- | ---: | ---: | ---: |"]
    for name, u in (report.get("utilization") or {}).items():
        if u["used"]:
            lines.append(f"| {name} | {u['used']} | {u['available']} | {u['percent']} |")
    return "\n".join(lines) + "\n"


def load_board_report(out) -> dict:
    path = Path(out) / BOARD_REPORT
    if not path.is_file():
        raise RtlgenError(f"{out} is not a board folder (no {BOARD_REPORT}); run 'rtlgen board build' first")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RtlgenError(f"{path} is damaged ({exc}); run 'rtlgen board build' again") from None


def board_program(out, progress: Progress | None = None) -> str:
    """Program the board with the bitstream of board folder ``out`` (openFPGALoader or iceprog)."""
    from ..boards import board_named

    report = load_board_report(out)
    board = board_named(report["board"])
    if not report.get("bitstream"):
        raise RtlgenError(f"{out} has the link's simulation model only (no bitstream): run 'rtlgen board build' "
                          "for a bitstream")
    bitstream = Path(out) / report["bitstream"]
    if not bitstream.is_file():
        raise RtlgenError(f"{bitstream} is missing; run 'rtlgen board build' again")
    candidates = [board.programmer, ("openFPGALoader", "-b", "ice40_generic" if board.family == "ice40"
                                     else "ulx3s")]
    for argv in candidates:
        exe = shutil.which(argv[0])
        if exe is None:
            continue
        _note(progress, f"board {board.name}: {' '.join(argv)} {bitstream}")
        proc = _run_programmer([exe, *argv[1:], str(bitstream)])
        if proc[0] != 0:
            raise RtlgenError(f"{argv[0]} could not program the {board.name} (exit {proc[0]}): "
                              f"{proc[1].strip().splitlines()[-1] if proc[1].strip() else 'no output'}; "
                              "is the board plugged in, and may this user open its USB device?",
                              detail=proc[1])
        return f"programmed the {board.name} with {bitstream}"
    names = " or ".join(sorted({c[0] for c in candidates}))
    raise RtlgenError(f"no programmer found for the {board.name}: install {names} (Debian: apt-get install "
                      f"{'fpga-icestorm' if board.family == 'ice40' else 'openfpgaloader'}), or program "
                      f"{bitstream} with your own tool")


def _run_programmer(argv: list[str]) -> tuple[int, str]:
    import subprocess

    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return proc.returncode, proc.stdout + proc.stderr


def board_run(out, port: str, codes, *, progress: Progress | None = None, baud: int | None = None,
              link_port=None):
    """Stream the samples ``codes`` to the board programmed from board folder ``out`` over ``port``.

    Returns ``(kind, qmodel, results, golden, stats, status)``: the result codes the board sent,
    the golden model's, the link's throughput and the board's ``STATUS`` after the run.
    ``link_port`` is an already open pyserial-like port (then ``port`` only names it).
    """
    from ..link.host import BoardLink, open_port
    from ..link.protocol import SELFTEST_FAIL

    report = load_board_report(out)
    kind = kind_for_build(out)
    manifest, qmodel = kind.load_build(out)
    fmt = SampleFormat.from_manifest(manifest)
    golden = np.asarray(kind.predict_codes(qmodel, codes))
    serial_port = link_port if link_port is not None else open_port(port, int(baud or report["baud"]))
    try:
        link = BoardLink(serial_port)
        info = link.info()
        if (info.in_bytes, info.out_bytes) != (fmt.in_bytes, fmt.out_bytes):
            raise RtlgenError(f"the board on {port} runs another core: it takes {info.in_bytes} bytes and "
                              f"answers {info.out_bytes}, the core of {out} {fmt.in_bytes} and {fmt.out_bytes}; "
                              "program it with 'rtlgen board program'")
        before = link.status()
        if before.selftest == SELFTEST_FAIL:
            _note(progress, f"board: its power-up self-test FAILED ({before.mismatches} of "
                            f"{info.selftest_vectors} vectors differ)")
        total = len(codes)
        step = max(1, total // 20)

        def shown(k: int) -> None:
            if k % step == 0 or k == total:
                _note(progress, f"board: {k}/{total} results")

        payloads = [fmt.pack_sample(s) for s in codes]
        raw, stats = link.infer(payloads, info.window, shown)
        if stats.errors:
            from ..link.protocol import ERROR_NAMES
            code, _ = stats.errors[0]
            raise RtlgenError(f"the board rejected {len(stats.errors)} of {total} vectors (first: "
                              f"{ERROR_NAMES.get(code, code)}); check the cable and the baud rate")
        status = link.status()
    finally:
        if link_port is None:
            serial_port.close()
    results = np.array([fmt.unpack_result(r) for r in raw], dtype=object if fmt.out_width > 62 else np.int64)
    return kind, qmodel, results, golden, stats, status
