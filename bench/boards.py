"""Bitstreams of the models shipped for the boards (``make bench-boards``).

For each (model, configuration, board, core clock) below: ``rtlgen build``,
then ``rtlgen board build --self-test N``, and a table of

* utilization of the device (logic cells, flip-flops, DSP blocks, block RAMs)
  in % and Fmax against the core clock, from nextpnr;
* inferences per second over the UART link: the link carries
  ``max(bytes in, bytes out)`` frame bytes per inference each way at 10
  bits a byte, so the link rate is ``baud / (10 * that)``, unless the core
  is slower (``clock / II``);
* inferences per second of the self-test, which runs the core at full rate:
  ``clock / II``;
* tool run times.

Figures are printed and written to ``--json``, never asserted.  The ECP5
place and route uses nextpnr-ecp5 (native if on PATH, else the YoWASP
build, which takes minutes on these designs).

    .venv/bin/python bench/boards.py [--only icebreaker|jet-6bit,axol1tl] [--json build/bench_boards.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rtlgen.cli import main as rtlgen

ROOT = Path(__file__).resolve().parent.parent
FRAME_OVERHEAD = 5       # SYNC, CMD, LEN (2), CRC

CASES = [
    # name, model, config, board, core clock MHz (None: the board's oscillator), self-test vectors
    ("jet-6bit", "jet_mlp.onnx", "jet_mlp_icebreaker.yaml", "icebreaker", None, 32),
    ("axol1tl", "axol1tl_encoder.onnx", "axol1tl_encoder_ulx3s.yaml", "ulx3s-85f", None, 32),
    # all shift-and-add: YoWASP nextpnr-ecp5 had not finished routing axol1tl-sa after an hour;
    # econt is larger (2,505 adders)
    ("axol1tl-sa", "axol1tl_encoder.onnx", "axol1tl_encoder.yaml", "ulx3s-85f", 50.0, 32),
    ("econt", "econt_encoder.onnx", "econt_encoder.yaml", "ulx3s-85f", None, 32),
]

KEEP = ("ICESTORM_LC", "ICESTORM_DSP", "ICESTORM_RAM", "TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD")


def run(*args: str) -> float:
    start = time.perf_counter()
    code = rtlgen(list(args))
    if code != 0:
        raise SystemExit(f"rtlgen {' '.join(args)} exited {code}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated case names or boards")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--work", help="work folder (default: a temporary one)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rtlgen-bench-boards-"))
    rows = []
    for name, model, config, board, clock, self_test in CASES:
        if only and name not in only and board not in only:
            continue
        core, out = work / f"{name}-core", work / f"{name}-{board}"
        build_s = run("build", str(ROOT / "models" / model), "-c", str(ROOT / "models" / config), "-o", str(core),
                      "-q")
        extra = ["--clock-mhz", f"{clock:g}"] if clock else []
        board_s = run("board", "build", str(core), "--board", board, "--self-test", str(self_test), *extra,
                      "-o", str(out))
        rep = json.loads((out / "board.json").read_text())
        clock_hz = rep["clock_mhz"] * 1e6
        ii = int(rep["core"]["ii"])
        frame_bytes = max(rep["sample"]["in_bytes"], rep["sample"]["out_bytes"]) + FRAME_OVERHEAD
        link_rate = min(rep["baud"] / (10 * frame_bytes), clock_hz / ii)
        rows.append({
            "case": name, "board": board, "clock_mhz": rep["clock_mhz"], "fmax_mhz": rep["fmax_mhz"],
            "meets_clock": rep["meets_clock"], "latency": rep["core"]["latency"], "ii": ii,
            "baud": rep["baud"], "link_inferences_per_s": round(link_rate),
            "selftest_inferences_per_s": round(clock_hz / ii),
            "utilization": {k: v for k, v in rep["utilization"].items() if k in KEEP},
            "build_s": round(build_s, 1), "board_build_s": round(board_s, 1), "tools": rep["runtime_s"],
        })
        print(json.dumps(rows[-1]), flush=True)

    print()
    print(f"{'case':10} {'board':11} {'clock':>7} {'Fmax':>7} {'lat':>5} {'II':>6} {'link inf/s':>11} "
          f"{'self-test inf/s':>16}  utilization")
    for r in rows:
        util = ", ".join(f"{k} {v['used']}/{v['available']} ({v['percent']}%)" for k, v in r["utilization"].items()
                         if v["used"])
        print(f"{r['case']:10} {r['board']:11} {r['clock_mhz']:7.2f} {r['fmax_mhz']:7.1f} {r['latency']:5} "
              f"{r['ii']:6} {r['link_inferences_per_s']:11} {r['selftest_inferences_per_s']:16}  {util}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
