"""Design-space sweep over the reuse factor, the arithmetic, the clock target and the adder depth slack.

:func:`sweep` builds one core per reuse factor R (every dense layer gets
``min(R, its nonzero weights)``, or one multiplier with ``full``), and
optionally per ``arithmetic`` (``multipliers``, ``shift_add``, ``auto``:
every dense layer gets it) and per clock target (the configuration's
``clock_mhz``, which places the registers of the shift-and-add layers; with
place and route and no ``clock_mhz`` option it is also the clock nextpnr
aims at), and optionally per ``adder_depth_slack`` (every dense layer gets
it; a variant without a shift-and-add layer is built once, with none),
synthesizes each for a target, and writes into the sweep folder

``r<R>/`` (``r<R>-<arithmetic>-<clock>mhz-s<slack>/`` when those are swept too)
    the build folder of each variant, with its ``synth/<target>/`` results;
``sweep.json``, ``sweep.md``
    one row per variant: latency, II, multipliers, resources, Fmax (with
    place and route) and whether the variant is on the Pareto front of
    cost against latency and against II;
``pareto.png``
    latency and II against cost (LUTs + DSP blocks on FPGA targets, cells
    on the generic target), Pareto front marked.

Variants are Dask jobs (:mod:`rtlgen.flows.cluster`): on a local cluster of
``jobs`` worker processes by default, or on the cluster whose scheduler is
``scheduler``.  Another executor can be passed: anything with
``submit(fn, *args)`` returning future-like objects with ``result()``.
Workers receive plain data (the quantized model as a dict), so they can
run on other machines that share the sweep folder.

A reuse factor above a layer's limit (its nonzero weights, or weight
positions with stored weights) gives that layer its limit; the progress
output says so and the row's ``reuse_per_layer`` records what each layer
got.  A reuse factor above every layer's limit is refused.  A shift-and-add
graph is built once per weight, so ``shift_add`` variants with R > 1 are
skipped (and said so).  On Ctrl-C or
SIGTERM the running variants are stopped (their temporary folders removed),
the queued ones cancelled, and ``sweep.json``/``sweep.md`` are written with
``"status": "interrupted"`` and the rows finished so far.
"""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import threading
import time
from contextlib import contextmanager
from concurrent.futures import Future, as_completed
from pathlib import Path
from typing import Callable

from ..emit.atomic import temp_file_for, write_text_atomic
from ..errors import RtlgenError
from ..frontends import load_model
from ..ir.arithmetic import ARITHMETICS
from ..ir.config import GRAPH_KEYS, MAX_ADDER_DEPTH_SLACK, apply_config, load_config
from ..ir.model import QDense
from ..kinds import kind_named
from .cluster import dask_client, job, stop_jobs
from .synth import _check_args, find_tool, load_synth_report, synth

__all__ = ["sweep", "variant_label", "pareto_front", "parse_reuse_list", "parse_arithmetic_list", "parse_clock_list",
           "parse_slack_list",
           "run_variant"]

SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"
PARETO_PNG = "pareto.png"

Progress = Callable[[str], None]


def _parse_list(value, option: str, one: Callable[[str, object], object], empty: str) -> list:
    """The values of a comma-separated option (or a list), duplicates dropped.

    ``one(text, item)``: the value of one stripped, lower-case, non-empty item, or raises
    :class:`RtlgenError`; ``empty``: the message when no item is left."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list = []
    for item in items:
        text = str(item).strip().lower()
        if text:
            v = one(text, item)
            if v not in out:
                out.append(v)
    if not out:
        raise RtlgenError(f"{option}: {empty}")
    return out


def _reuse(text: str, item):
    if text in ("full", "max"):
        return "full"
    try:
        r = int(text)
    except ValueError:
        raise RtlgenError(f"--reuse: {item!r} is not a reuse factor (a positive integer or 'full')") from None
    if r < 1:
        raise RtlgenError(f"--reuse: reuse factors must be >= 1, got {r}")
    return r


def _arithmetic(text: str, item) -> str:
    if text not in ARITHMETICS:
        raise RtlgenError(f"--arithmetic: {item!r} is not one of {', '.join(ARITHMETICS)}")
    return text


def _clock(text: str, item):
    try:
        mhz = float(text)
    except ValueError:
        raise RtlgenError(f"--clocks: {item!r} is not a clock frequency in MHz") from None
    if not 1 <= mhz <= 2000:
        raise RtlgenError(f"--clocks: clock targets must be from 1 to 2000 MHz, got {text}")
    return int(mhz) if mhz.is_integer() else mhz


def _slack(text: str, item) -> int:
    if not text.isdigit() or int(text) > MAX_ADDER_DEPTH_SLACK:
        raise RtlgenError(f"--adder-depth-slack: {item!r} is not a whole number of adder levels "
                          f"from 0 to {MAX_ADDER_DEPTH_SLACK}")
    return int(text)


def parse_reuse_list(value) -> list:
    """``"1,2,4,full"`` or a list -> ``[1, 2, 4, "full"]`` (duplicates dropped)."""
    return _parse_list(value, "--reuse", _reuse, "give at least one reuse factor, e.g. 1,2,4")


def parse_arithmetic_list(value) -> list:
    """``"multipliers,shift_add"`` or a list -> the arithmetic names (duplicates dropped)."""
    return _parse_list(value, "--arithmetic", _arithmetic, "give at least one of " + ", ".join(ARITHMETICS))


def parse_clock_list(value) -> list:
    """``"100,150"`` or a list -> clock targets in MHz (duplicates dropped)."""
    return _parse_list(value, "--clocks", _clock, "give at least one clock target in MHz, e.g. 100,150")


def parse_slack_list(value) -> list:
    """``"0,1,2"`` or a list -> adder depth slacks (0 to 8, duplicates dropped)."""
    return _parse_list(value, "--adder-depth-slack", _slack,
                       "give at least one number of adder levels, e.g. 0,1,2")


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Which points are not dominated (both coordinates minimized)."""
    flags = []
    for k, (a, b) in enumerate(points):
        dominated = any((c <= a and d <= b) and (c < a or d < b)
                        for j, (c, d) in enumerate(points) if j != k)
        flags.append(not dominated)
    return flags


def _cost(target: str, res: dict) -> tuple[int, str]:
    if target == "generic":
        return int(res.get("cells", 0)), "cells"
    return int(res.get("luts", 0)) + int(res.get("dsp", 0)), "LUTs + DSP"


@job
def run_variant(qmodel_dict: dict, variant: dict, outdir: str, target: str, pnr: bool, device,
                clock_mhz, dsp: bool, tools: str) -> dict:
    """Build and synthesize one variant (a Dask job).  Never raises for user errors.

    ``variant``: its row keys (``reuse``, and ``arithmetic``/``clock_mhz`` when swept)."""
    return _run_variant(qmodel_dict, variant, outdir, target, pnr, device, clock_mhz, dsp, tools)


def _run_variant(qmodel_dict: dict, variant: dict, outdir: str, target: str, pnr: bool, device,
                 clock_mhz, dsp: bool, tools: str) -> dict:
    kind = kind_named("network")     # the sweep varies the layers of a network
    row: dict = {**variant, "folder": Path(outdir).name, "error": None}
    try:
        t0 = time.perf_counter()
        manifest = kind.save_build(kind.model_type.from_dict(qmodel_dict), outdir)
        row.update({"latency": manifest["latency"], "ii": manifest["ii"],
                    "multipliers": manifest["multipliers"],
                    "reuse_per_layer": {layer["name"]: layer["reuse_factor"] for layer in manifest["layers"]
                                        if layer.get("op") in ("dense", "conv", "avgpool")},
                    "arithmetic_per_layer": {layer["name"]: layer.get("arithmetic") for layer in manifest["layers"]
                                             if layer.get("op") in ("dense", "conv", "avgpool")},
                    "build_s": round(time.perf_counter() - t0, 2)})
        try:
            rep = synth(outdir, target, pnr=pnr, device=device, clock_mhz=clock_mhz, dsp=dsp, tools=tools)
        except RtlgenError as exc:
            rep = load_synth_report(outdir, target) if pnr else None
            if rep is None or not (rep.get("pnr") or {}).get("error"):
                raise
            row["error"] = str(exc)  # place and route failed; synthesis figures are kept
        row.update({"resources": rep["resources"], "synth_s": rep["runtime_s"],
                    "tool": f"{rep['tool']['version']} ({rep['tool']['kind']})"})
        p = rep.get("pnr") or {}
        if p.get("fmax_mhz"):
            row.update({"fmax_mhz": p["fmax_mhz"], "device": p.get("device"),
                        "latency_ns": round(manifest["latency"] * 1000.0 / p["fmax_mhz"], 2)})
    except RtlgenError as exc:
        row["error"] = str(exc)
    return row


def _layer_limit(layer) -> int:
    """The largest reuse factor of a dense/conv layer (what ``reuse_factor: full`` gives it)."""
    if getattr(layer, "stored", False):
        return max(1, int(layer.positions))   # stored weights: every position is multiplied
    return max(1, int(getattr(layer, "reuse_limit", layer.nonzero)))


def _variant_config(cfg: dict, dense: dict[str, int], reuse, arithmetic: str | None = None,
                    clock_mhz=None, slack: int | None = None, graphs: frozenset = frozenset()) -> dict:
    """The configuration of one variant; ``slack`` goes to the layers named in ``graphs`` (those
    built with shift_add: on any other layer the key has no effect, which is refused)."""
    out = copy.deepcopy(cfg)
    layers = dict(out.get("layers") or {})
    multiplied = 0   # layers this variant builds with multipliers, whatever the configuration says
    for name, nonzero in dense.items():
        own = dict(layers.get(name) or {})
        own["reuse_factor"] = "full" if reuse == "full" else min(int(reuse), nonzero)
        if arithmetic is not None:
            own["arithmetic"] = arithmetic
        # a reuse factor above 1 shares multipliers (``full``: as many phases as nonzero weights)
        if arithmetic == "multipliers" or (nonzero if reuse == "full" else own["reuse_factor"]) > 1:
            multiplied += 1
            for key in GRAPH_KEYS:   # the configuration's adder-graph keys do not apply here
                own.pop(key, None)
        if slack is not None and name in graphs:
            own["adder_depth_slack"] = slack
        layers[name] = own
    out["layers"] = layers
    if dense and multiplied == len(dense) and isinstance(out.get("default"), dict):
        out["default"] = {k: v for k, v in out["default"].items() if k not in GRAPH_KEYS}
    if clock_mhz is not None:
        out["clock_mhz"] = clock_mhz
    return out


def _parts(variant: dict, label: bool) -> list[str]:
    """The variant's row keys as words of its label (``label``) or of its folder name."""
    parts = [str(variant["reuse"])]
    if "arithmetic" in variant:
        parts.append(variant["arithmetic"])
    if "clock_mhz" in variant:
        parts.append(f"{variant['clock_mhz']}" + (" MHz" if label else "mhz"))
    if "adder_depth_slack" in variant:
        parts.append(("slack " if label else "s") + str(variant["adder_depth_slack"]))
    return parts


def variant_label(variant: dict) -> str:
    """How a variant (or its row) is named in messages and tables: ``R=1 shift_add 150 MHz slack 2``."""
    return "R=" + " ".join(_parts(variant, label=True))


def _folder(variant: dict) -> str:
    """The variant's build folder in the sweep folder: ``r1-shift_add-150mhz-s2``."""
    return "r" + "-".join(_parts(variant, label=False))


def _has_shift_add(q) -> bool:
    return any(getattr(layer, "arithmetic", None) == "shift_add" for layer in q.layers)


def _variants(float_model, cfg: dict, dense: dict, reuses: list, arithmetics, clocks, slacks, progress):
    """The (row keys, quantized model) of every variant; combinations that cannot exist are skipped."""
    out = []
    skipped = []
    no_adders = []
    for r in reuses:
        for a in arithmetics or [None]:
            if a == "shift_add" and r != 1 and any(r == "full" or min(r, n) > 1 for n in dense.values()):
                skipped.append(f"R={r} {a}")
                continue
            for c in clocks or [None]:
                variant = {"reuse": r}
                if arithmetics:
                    variant["arithmetic"] = a
                if clocks:
                    variant["clock_mhz"] = c
                try:
                    q = apply_config(float_model, _variant_config(cfg, dense, r, a))
                    adders = _has_shift_add(q)
                    # (without a shift_add layer the clock target only drives place and route, and
                    # the slack changes nothing: such a variant is built once, without a slack)
                    if adders and (c is not None or slacks):
                        graphs = frozenset(layer.name for layer in q.layers
                                           if getattr(layer, "arithmetic", None) == "shift_add")
                        for s in slacks or [None]:
                            one = variant if s is None else {**variant, "adder_depth_slack": s}
                            out.append((one, apply_config(float_model,
                                                          _variant_config(cfg, dense, r, a, c, s, graphs))))
                        continue
                    if slacks and len(slacks) > 1:
                        no_adders.append(variant_label(variant))
                except RtlgenError as exc:
                    raise RtlgenError(f"sweep variant {variant_label(variant)}: {exc}") from None
                out.append((variant, q))
    if skipped and progress is not None:
        progress("sweep: skipped (a shift_add graph is built once per weight, reuse factor 1): "
                 + ", ".join(skipped))
    if no_adders and progress is not None:
        progress("sweep: built once, without an adder depth slack (no shift_add layer): " + ", ".join(no_adders))
    if not out:
        raise RtlgenError("sweep: no variant left: shift_add needs reuse factor 1 (add 1 to --reuse)")
    return out




def _prepare_outdir(outdir: Path) -> None:
    if outdir.exists():
        if not outdir.is_dir():
            raise RtlgenError(f"sweep folder {outdir} exists and is not a folder: choose another -o")
        if any(outdir.iterdir()) and not (outdir / SWEEP_JSON).is_file():
            raise RtlgenError(f"sweep folder {outdir} exists and is not an rtlgen sweep folder "
                              f"(no {SWEEP_JSON}): choose another -o or remove it")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtlgenError(f"cannot create the sweep folder {outdir}: {exc.strerror or exc}") from None


def _finished_in_order(futures: list):
    """The futures as they finish: Dask's and the standard library's; others in order."""
    if futures and all(callable(getattr(f, "add_done_callback", None)) and hasattr(f, "key") for f in futures):
        from dask.distributed import as_completed as dask_completed
        return dask_completed(futures)
    if futures and all(isinstance(f, Future) for f in futures):
        return as_completed(futures)
    return iter(futures)


def _collect(futures: list, progress: Progress | None, variants: list, rows: list) -> list[dict]:
    """Wait for the variants; ``rows[k]`` gets variant k's row as it finishes (kept on Ctrl-C)."""
    index = {id(f): k for k, f in enumerate(futures)}
    for fut in _finished_in_order(futures):
        k = index[id(fut)]
        try:
            row = fut.result()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a worker died or the executor failed
            row = {**variants[k], "folder": _folder(variants[k]), "error": f"worker failed: {exc!r}"}
        rows[k] = row
        if progress is not None:
            if row.get("resources") is not None:
                r = row["resources"]
                extra = f", Fmax {row['fmax_mhz']:.1f} MHz" if row.get("fmax_mhz") else ""
                msg = (f"latency {row['latency']}, II {row['ii']}, {r.get('luts', 0)} LUTs, "
                       f"{r.get('dsp', 0)} DSP, {r.get('cells', 0)} cells{extra}")
                if row.get("error"):
                    msg += f" (place and route failed: {row['error']})"
            else:
                msg = f"failed: {row['error']}"
            progress(f"sweep: {variant_label(variants[k])} done: {msg}")
    return [row for row in rows if row is not None]


def sweep(model, config, reuse_list, target: str, outdir, executor=None, jobs: int = 2, *,
          pnr: bool = False, device: str | None = None, clock_mhz: float | None = None,
          dsp: bool = True, tools: str = "auto", progress: Progress | None = None,
          arithmetic_list=None, clock_list=None, slack_list=None, scheduler: str | None = None) -> dict:
    """Build and synthesize ``model`` under ``config`` for each reuse factor
    (and each arithmetic of ``arithmetic_list``, clock target of ``clock_list``
    and adder depth slack of ``slack_list``).

    ``model``: a model file path or a FloatModel; ``config``: a path or a
    dict; ``reuse_list``: e.g. ``[1, 2, 4, "full"]`` or ``"1,2,4"``;
    ``arithmetic_list``: e.g. ``"multipliers,shift_add"``; ``clock_list``:
    e.g. ``"100,150"`` (MHz); ``slack_list``: e.g. ``"0,2"`` (adder levels).
    Returns the sweep summary (also written to ``OUTDIR/sweep.json``).
    Raises :class:`RtlgenError` after writing the summary if any variant
    failed.
    """
    _check_args(target, pnr, device, clock_mhz, tools)
    reuses = parse_reuse_list(reuse_list)
    arithmetics = parse_arithmetic_list(arithmetic_list) if arithmetic_list is not None else None
    clocks = parse_clock_list(clock_list) if clock_list is not None else None
    slacks = parse_slack_list(slack_list) if slack_list is not None else None
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise RtlgenError(f"--jobs must be a positive integer, got {jobs!r}")
    float_model = load_model(model)
    cfg = load_config(config) if config is not None else {}   # a QONNX model's quantizers give the types
    base = apply_config(float_model, cfg)
    dense = {layer.name: _layer_limit(layer) for layer in base.layers if isinstance(layer, QDense)}
    if not dense:
        raise RtlgenError("the model has no dense layer: there is no reuse factor to sweep")
    top_limit = max(dense.values())
    useless = [r for r in reuses if r != "full" and r > top_limit]
    if useless:
        widest = max(dense, key=dense.get)
        raise RtlgenError(f"--reuse {useless[0]}: no dense layer of {base.name} can use a reuse factor above "
                          f"{top_limit} (the limit of its largest layer, {widest}): use 1 to {top_limit} or "
                          "'full'")
    # the tools, before any worker starts (each would fail the same way)
    find_tool("yosys", tools)
    if pnr:
        find_tool(f"nextpnr-{target}", tools)
    clamped = {r: {name: limit for name, limit in dense.items() if r != "full" and r > limit} for r in reuses}
    variants = _variants(float_model, cfg, dense, reuses, arithmetics, clocks, slacks, progress)

    outdir = Path(outdir)
    _prepare_outdir(outdir)
    summary = {"format": 1, "model": base.name, "target": target, "pnr": pnr, "device": device,
               "status": "running", "reuse": reuses, "variants": len(variants), "rows": []}
    if arithmetics:
        summary["arithmetic"] = arithmetics
    if clocks:
        summary["clock_mhz"] = clocks
    if slacks:
        summary["adder_depth_slack"] = slacks
    write_text_atomic(outdir / SWEEP_JSON, json.dumps(summary, indent=2) + "\n")

    own = executor is None
    with contextlib.ExitStack() as cluster:
        if own:
            executor = cluster.enter_context(dask_client(scheduler, jobs, "rtlgen sweep"))
        if progress is not None:
            where = ("" if not own else f" on the Dask cluster at {scheduler}" if scheduler
                     else f" on {jobs} local Dask workers")
            progress(f"sweep: {len(variants)} variants of {base.name} for {target}"
                     + (" with place and route" if pnr else "") + where)
            for r in reuses:
                if clamped[r]:
                    progress(f"sweep: R={r} is above the limit of {len(clamped[r])} of {len(dense)} dense "
                             "layers, which get their limit: "
                             + ", ".join(f"{name} R={limit}" for name, limit in clamped[r].items()))
        t0 = time.perf_counter()
        keys = [v for v, _ in variants]
        futures: list = []
        slots: list = [None] * len(variants)
        extra = {"pure": False} if own else {}
        try:
            futures = [executor.submit(run_variant, q.to_dict(), v, str((outdir / _folder(v)).resolve()), target,
                                       pnr, device, clock_mhz if clock_mhz is not None else v.get("clock_mhz"),
                                       dsp, tools, **extra) for v, q in variants]
            _collect(futures, progress, keys, slots)
        except KeyboardInterrupt:
            with _signals_held():
                _abandon(executor, futures, own, slots)
                cluster.close()
                rows = [row for row in slots if row is not None]
                _finish(summary, rows, clamped, target, t0, outdir, "interrupted")
                if progress is not None:
                    progress(f"sweep: interrupted: {len(rows)} of {len(variants)} variants finished; wrote "
                             f"{SWEEP_JSON} and {SWEEP_MD} (status interrupted) in {outdir}")
            raise
    rows = [row for row in slots if row is not None]
    _finish(summary, rows, clamped, target, t0, outdir, "done")
    failed = [row for row in rows if row.get("error")]
    if failed:
        first = failed[0]
        raise RtlgenError(f"{len(failed)} of {len(rows)} sweep variants failed (see {outdir / SWEEP_MD}); "
                          f"{variant_label(first)}: {first['error']}")
    return summary


def _ignore(signum, frame) -> None:
    pass


@contextmanager
def _signals_held():
    """Ignore Ctrl-C and SIGTERM for the duration (the clean-up after the first one).

    With a handler that does nothing: Python reports a signal that arrives while the
    disposition changes to SIG_IGN as an error with a traceback.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _finished_ok(fut) -> bool:
    if isinstance(fut, Future):
        return fut.done() and not fut.cancelled() and fut.exception() is None
    status = getattr(fut, "status", None)
    return status == "finished" if status is not None else True


def _abandon(executor, futures: list, own: bool, slots: list) -> None:
    """Stop the sweep after Ctrl-C: keep finished rows, cancel the rest, stop our workers' variants
    (they remove their temporary folders)."""
    for k, fut in enumerate(futures):
        if slots[k] is None and _finished_ok(fut):
            try:
                slots[k] = fut.result()
            except Exception:  # noqa: BLE001 - a variant that failed to report is not a finished row
                pass
    if own:
        stop_jobs(executor, futures)
        return
    for fut in futures:
        if callable(getattr(fut, "cancel", None)):
            fut.cancel()


def _finish(summary: dict, rows: list[dict], clamped: dict, target: str, t0: float, outdir: Path,
            status: str) -> None:
    """Rank the rows and write ``sweep.json`` and ``sweep.md`` (and the plot when the sweep is done)."""
    for row in rows:
        extra = clamped.get(row.get("reuse")) or {}
        if extra:
            row["clamped"] = dict(extra)
    cost_label = _cost(target, {})[1]
    done = [row for row in rows if row.get("resources") is not None]
    for row in done:
        row["cost"] = _cost(target, row["resources"])[0]
    lat_front = pareto_front([(row["cost"], row["latency"]) for row in done])
    ii_front = pareto_front([(row["cost"], row["ii"]) for row in done])
    for row, a, b in zip(done, lat_front, ii_front):
        row["pareto_latency"] = a
        row["pareto_ii"] = b
    summary.update({"status": status, "rows": rows, "cost": cost_label,
                    "elapsed_s": round(time.perf_counter() - t0, 1)})
    summary["png"] = _plot(summary, outdir / PARETO_PNG) if status == "done" else None
    write_text_atomic(outdir / SWEEP_JSON, json.dumps(summary, indent=2) + "\n")
    write_text_atomic(outdir / SWEEP_MD, render_markdown(summary))


def render_markdown(summary: dict) -> str:
    lines = [f"# Sweep of {summary['model']} ({summary['target']})", ""]
    if summary.get("status") == "interrupted":
        lines += [f"Interrupted: {len(summary['rows'])} of {summary.get('variants', len(summary.get('reuse') or []))} variants "
                  "finished.", ""]
    lines += [
             f"Cost = {summary.get('cost', 'LUTs + DSP')}; * marks the Pareto front "
             "(cost against latency / against II).", "",
             "| variant | latency (cycles) | II | multipliers | LUTs | FFs | DSP | cells | cost | Fmax (MHz) "
             "| latency (ns) | front: latency | front: II | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def v(row, key, sub=None):
        val = row.get(key) if sub is None else (row.get(key) or {}).get(sub)
        return "-" if val is None else str(val)

    for row in summary["rows"]:
        lines.append(
            f"| {variant_label(row)} | {v(row, 'latency')} | {v(row, 'ii')} | {v(row, 'multipliers')} | "
            f"{v(row, 'resources', 'luts')} | {v(row, 'resources', 'ffs')} | {v(row, 'resources', 'dsp')} | "
            f"{v(row, 'resources', 'cells')} | {v(row, 'cost')} | {v(row, 'fmax_mhz')} | "
            f"{v(row, 'latency_ns')} | {'*' if row.get('pareto_latency') else ''} | "
            f"{'*' if row.get('pareto_ii') else ''} | {_note(row).replace('|', '/')} |")
    if summary.get("png"):
        lines += ["", f"![Pareto plot]({summary['png']})"]
    return "\n".join(lines) + "\n"


def _note(row: dict) -> str:
    notes = []
    if row.get("clamped"):
        notes.append("at their limit: " + ", ".join(f"{name} R={r}" for name, r in row["clamped"].items()))
    if row.get("error"):
        notes.append(str(row["error"]))
    return "; ".join(notes)


def _plot(summary: dict, path: Path) -> str | None:
    rows = [row for row in summary["rows"] if row.get("resources") is not None]
    if not rows:
        return None
    try:   # imported late: matplotlib is slow to import and only the picture needs it
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key, flag, label in ((axes[0], "latency", "pareto_latency", "latency (cycles)"),
                                 (axes[1], "ii", "pareto_ii", "II (cycles)")):
        xs = [row["cost"] for row in rows]
        ys = [row[key] for row in rows]
        ax.scatter(xs, ys, color="tab:gray", label="variant", zorder=2)
        front = sorted((row["cost"], row[key]) for row in rows if row.get(flag))
        if front:
            ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="tab:red",
                    label="Pareto front", zorder=3)
        for row in rows:
            ax.annotate(variant_label(row), (row["cost"], row[key]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_xlabel(summary.get("cost", "cost"))
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{summary['model']}: sweep ({summary['target']})")
    fig.tight_layout()
    try:
        with temp_file_for(path, ".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return PARETO_PNG
