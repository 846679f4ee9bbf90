"""Command-line subcommands of the implementation flows: ``lint``, ``synth``, ``faults``, ``report``,
``sweep``, ``tmr-analysis``.

:func:`add_commands` adds them to the ``rtlgen`` parser; each handler
returns 0 and raises :class:`~rtlgen.errors.RtlgenError` on user errors
(printed by ``rtlgen.cli.main``, exit status 2).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import progress
from .analysis.flips import DEFAULT_SAMPLES
from .emit.atomic import write_text_atomic
from .emit.folder import record_result
from .errors import RtlgenError
from .flows.faults import run_campaign, summary_lines
from .flows import regress
from .flows.lint import WAIVERS, lint_build
from .flows.report import report
from .flows.sweep import sweep, variant_label
from .flows.synth import PLACERS, ROUTERS, synth
from .kinds import kind_for_model_file
from .npyio import load_array

__all__ = ["add_commands", "cmd_lint", "cmd_synth", "cmd_faults", "cmd_report", "cmd_sweep", "cmd_tmr_analysis"]

TARGETS = ("generic", "ice40", "ecp5", "xilinx")
TOOLS = ("auto", "native", "yowasp")


def _progress(text: str) -> None:
    """Progress of a flow: a line on stderr (silenced by -q); stdout keeps the results."""
    progress.note(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 5000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a clock frequency in MHz")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def cmd_lint(args) -> int:
    t0 = time.perf_counter()
    lint_build(args.outdir)
    print(f"lint: verilator -Wall found nothing unwaived in {args.outdir} "
          f"({len(WAIVERS)} waiver rules, {time.perf_counter() - t0:.1f} s; log in {args.outdir}/lint/)")
    return 0


def cmd_synth(args) -> int:
    rep = synth(args.outdir, args.target, pnr=args.pnr, device=args.device, clock_mhz=args.clock_mhz,
                progress=_progress, dsp=args.dsp, tools=args.tools, placer=args.placer, router=args.router)
    r = rep["resources"]
    if args.target == "generic":
        figures = f"{r['gates']} gates, {r['ffs']} FFs"
    else:
        figures = f"{r['luts']} LUTs, {r['ffs']} FFs, {r['carry']} carry, {r['dsp']} DSP, {r['bram']} BRAM"
    print(f"synth {args.target}: {figures} ({r['cells']} cells) in {rep['runtime_s']:.1f} s with "
          f"{rep['tool']['version']}; report in {args.outdir}/synth/{args.target}/report.json")
    if rep.get("pnr"):
        p = rep["pnr"]
        print(f"pnr {args.target} {p['device']}: Fmax {p['fmax_mhz']:.1f} MHz "
              f"({'meets' if p['meets_clock'] else 'misses'} {p['clock_mhz']:g} MHz; "
              f"{p['placer']} placer, {p['router']})")
    return 0


def cmd_report(args) -> int:
    markdown, data = report(args.outdir)
    print(markdown)
    written = "report.md, report.json" + (", report.png" if data.get("png") else "")
    print(f"report: latency {data['latency_cycles']} cycles, II {data['ii']}, "
          f"{data['multipliers']} multipliers, synthesis results for "
          f"{', '.join(data['synth']) or 'no target'}; wrote {written} in {args.outdir}")
    if data.get("png_note"):
        print(data["png_note"])
    return 0


def cmd_sweep(args) -> int:
    summary = sweep(args.model, args.config, args.reuse, args.target, args.output, jobs=args.jobs,
                    pnr=args.pnr, device=args.device, clock_mhz=args.clock_mhz, dsp=args.dsp,
                    tools=args.tools, progress=_progress, arithmetic_list=args.arithmetic,
                    clock_list=args.clocks, slack_list=args.adder_depth_slack, scheduler=args.scheduler)
    front = [variant_label(row) for row in summary["rows"] if row.get("pareto_latency")]
    print(f"sweep: {len(summary['rows'])} variants in {summary['elapsed_s']:.0f} s; Pareto front "
          f"(cost against latency): {', '.join(front)}; wrote sweep.md, sweep.json"
          + (", pareto.png" if summary.get("png") else "") + f" in {args.output}")
    return 0


def cmd_tmr_analysis(args) -> int:
    if args.threshold < 0:
        raise RtlgenError(f"--threshold must be at least 0 output codes, got {args.threshold}")
    kind = kind_for_model_file(args.model)
    qmodel, analysis = kind.sensitivity_model(args.model, args.config)
    codes = kind.input_codes(qmodel, load_array(args.data), args.raw)
    t0 = time.perf_counter()
    sens = analysis.analyze(qmodel, codes, max_samples=args.samples, seed=args.seed)
    report = analysis.report_dict(sens, args.threshold, model=qmodel.name, output_type=qmodel.output_type,
                                  samples_total=int(len(codes)), seed=args.seed)
    markdown, table = analysis.report_markdown(report), analysis.table_rows(report)
    snippet, format_table = analysis.config_snippet(report), analysis.format_table
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "sensitivity.json", json.dumps(report, indent=1) + "\n")
        write_text_atomic(out / "sensitivity.md", markdown)
    except OSError as exc:
        raise RtlgenError(f"cannot write the sensitivity report in {out}: {exc.strerror or exc}") from None
    print(format_table(table))
    print()
    print(snippet, end="")
    print(f"tmr-analysis: {report['samples']} of {len(codes)} vectors, threshold {args.threshold} output "
          f"codes, {time.perf_counter() - t0:.1f} s; wrote sensitivity.json, sensitivity.md in {out}")
    return 0


def cmd_faults(args) -> int:
    t0 = time.perf_counter()
    _progress(f"faults: configuration bus and fault campaign of {args.outdir} on {args.simulator}")
    plan, res = run_campaign(args.outdir, args.simulator, n_vectors=args.vectors, seed=args.seed,
                             max_single=args.max_single, max_double=args.max_double,
                             max_unprotected=args.max_double, jobs=args.jobs, scheduler=args.scheduler)
    report = {"simulator": args.simulator, "seed": args.seed, "vectors": len(plan["vectors"]),
              "selection": {k: v for k, v in plan["faults"].items() if k.endswith("selection") or k.endswith("total")},
              "results": res}
    path = Path(args.outdir) / "faults.json"
    try:
        write_text_atomic(path, json.dumps(report, indent=1) + "\n")
    except OSError as exc:
        raise RtlgenError(f"cannot write {path}: {exc.strerror or exc}") from None
    record_result(args.outdir, "faults.json")
    print("\n".join(summary_lines(plan, res)))
    print(f"faults: every check passed in {time.perf_counter() - t0:.0f} s; wrote {path}")
    return 0


def _synth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", "-t", default="generic", metavar="{" + ",".join(TARGETS) + "}",
                   help="Yosys flow: generic gates, Lattice iCE40 / ECP5 or Xilinx 7-series (default: generic)")
    p.add_argument("--pnr", action="store_true", help="also place and route with nextpnr (ice40, ecp5)")
    p.add_argument("--device", help="FPGA for --pnr: ice40 up5k (default), up3k, hx8k, hx1k, lp8k; "
                                    "ecp5 85k (default), 45k, 25k, um-*, um5g-*")
    p.add_argument("--clock-mhz", type=_positive_float, help="target clock for --pnr (default: 48 on "
                                                             "ice40, 100 on ecp5)")
    p.add_argument("--no-dsp", dest="dsp", action="store_false", help="keep multipliers out of DSP blocks")
    p.add_argument("--tools", choices=TOOLS, default="auto",
                   help="native tools on PATH, YoWASP (pip) builds, or auto: native first (default)")


def cmd_regress(args) -> int:
    out = Path(args.output)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "results.jsonl").is_file())):
        raise RtlgenError(f"{out} exists and is not a regress folder (no results.jsonl): choose a new folder, "
                          "or the folder of the campaign to resume")
    simulator = args.simulator
    summary = regress.run_campaign(out, models=args.models, seed=args.seed, start=args.start, vectors=args.vectors,
                                   simulator=simulator, engine=args.engine, jobs=args.jobs, scheduler=args.scheduler)
    print(summary["markdown"], end="")
    print(f"regress: {args.models} models (seed {args.seed}, from case {args.start}), {summary['vectors']:,} vectors "
          f"on {simulator} ({args.engine}): {summary['failed']} failed, {summary['mismatches']} mismatching vectors, "
          f"{summary['seconds']} s; wrote results.jsonl, summary.md, summary.json in {out}")
    return 1 if summary["failed"] else 0


def _dask_options(p: argparse.ArgumentParser, what: str, jobs: int = 2) -> None:
    p.add_argument("--jobs", "-j", type=_positive_int, default=jobs,
                   help=f"worker processes of the local Dask cluster (default {jobs})")
    p.add_argument("--scheduler", help=f"a Dask scheduler (tcp://HOST:PORT) to run the {what} on instead of a "
                                       "local cluster (default: Dask's scheduler-address setting, if any)")


def add_commands(sub) -> None:
    """Add ``lint``, ``synth``, ``faults``, ``regress``, ``report``, ``sweep`` and ``tmr-analysis`` to an
    argparse subparsers object."""
    p = sub.add_parser("lint", help="Verilator lint (-Wall) of a built core")
    p.add_argument("outdir", help="build folder")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("synth", help="synthesize a built core with Yosys (and place and route with nextpnr)")
    p.add_argument("outdir", help="build folder; results go to OUTDIR/synth/<target>/")
    _synth_options(p)
    p.add_argument("--placer", choices=PLACERS, help="nextpnr placer for --pnr (default: heap on ice40, "
                                                     "static on ecp5)")
    p.add_argument("--router", choices=ROUTERS, help="nextpnr router for --pnr (default: router1)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("faults", help="configuration bus and TMR fault-injection campaign of a built core "
                                      "with stored parameters (cocotb)")
    p.add_argument("outdir", help="build folder (storage register or tmr); writes OUTDIR/faults.json")
    p.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus")
    p.add_argument("--max-single", type=_positive_int, default=2000,
                   help="single flips: every (word, copy, bit) up to this many, else a seeded sample of it "
                        "(default 2000)")
    p.add_argument("--max-double", type=_positive_int, default=64,
                   help="double flips and unprotected-bit flips sampled (default 64)")
    p.add_argument("--vectors", type=_positive_int, default=24, help="input vectors streamed (default 24)")
    p.add_argument("--seed", type=int, default=1, help="seed of the samples and vectors (default 1)")
    _dask_options(p, "benches (the fault list is cut into one bench per worker)")
    p.set_defaults(func=cmd_faults)

    p = sub.add_parser("regress", help="random valid models and configurations, each built, simulated and "
                                       "compared with the golden model (on Dask)")
    p.add_argument("-o", "--output", required=True,
                   help="campaign folder: results.jsonl (one line per case, appended as they finish), "
                        "summary.md/json, failures/case_<k>/ reproducers; run again to resume")
    p.add_argument("--models", "-n", type=_positive_int, default=20, help="cases to run (default 20)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed: case k is the same for a seed (default 0)")
    p.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    p.add_argument("--vectors", type=_positive_int, default=1000,
                   help="vectors per case: the edge vectors, then random ones (default 1000)")
    p.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                   help="simulator (default verilator)")
    p.add_argument("--engine", choices=("batch", "cocotb"), default="batch",
                   help="batch: a compiled testbench, no Python per cycle (default); cocotb: the Python bench")
    _dask_options(p, "cases")
    p.set_defaults(func=cmd_regress)

    p = sub.add_parser("report", help="resource and latency report: OUTDIR/report.md, .json, .png")
    p.add_argument("outdir", help="build folder")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sweep", help="build and synthesize a model at several reuse factors "
                                     "(arithmetics, clock targets)")
    p.add_argument("model", help="model file (.onnx)")
    p.add_argument("--config", "-c", help="precision configuration (YAML or JSON); optional for a "
                                          "quantization-aware ONNX model (QONNX)")
    p.add_argument("--reuse", "-r", default="1,2,4,8",
                   help="comma-separated reuse factors, integers or 'full' (default: 1,2,4,8)")
    p.add_argument("--arithmetic", "-a",
                   help="also sweep the dense layers' arithmetic: comma-separated multipliers, shift_add, auto "
                        "(default: as configured)")
    p.add_argument("--clocks", help="also sweep the clock target (the config's clock_mhz) of the shift_add "
                                    "layers: comma-separated MHz; with --pnr and no --clock-mhz each variant "
                                    "is placed and routed at its own")
    p.add_argument("--adder-depth-slack", metavar="LIST",
                   help="also sweep the dense layers' adder_depth_slack (extra adder levels a shift_add "
                        "graph may use to save adders): comma-separated, 0 to 8")
    p.add_argument("-o", "--output", required=True, help="sweep folder to write")
    _dask_options(p, "variants")
    _synth_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("tmr-analysis", help="bit-flip sensitivity of the stored weights (or forest thresholds "
                                           "and leaves) and the tmr_bits to protect")
    p.add_argument("model", help="model file: a network (.onnx) or a decision forest (xgboost .json/.ubj, "
                                 "LightGBM .txt, scikit-learn .pkl/.joblib, conifer .json); a forest is "
                                 "analysed with both sets stored")
    p.add_argument("--config", "-c", help="precision configuration (YAML or JSON); optional for a "
                                           "network whose quantizers give its types (QONNX)")
    p.add_argument("--data", "-d", required=True,
                   help="X.npy: float inputs [N, n_in] or [N, C, H, W], [N, n_features] for a forest "
                        "(integer codes with --raw)")
    p.add_argument("--raw", action="store_true", help="the inputs are integer codes")
    p.add_argument("--threshold", "-t", type=int, default=0,
                   help="largest tolerated output error of a single-copy bit flip, in output codes (default 0)")
    p.add_argument("--samples", "-n", type=_positive_int, default=DEFAULT_SAMPLES,
                   help=f"input vectors used, a seeded random sample of the data (default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("-o", "--output", default=".", help="folder for sensitivity.json and sensitivity.md "
                                                       "(default: the current folder)")
    p.set_defaults(func=cmd_tmr_analysis)

