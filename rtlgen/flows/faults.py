"""Configuration-bus and fault-injection simulation of a core with stored parameters.

:func:`make_plan` prepares what ``sims/test_config_bus.py`` needs: input
vectors with their golden outputs, a reprogramming with new parameters (and
the golden outputs under them), unmapped addresses to write garbage to, and
the fault list: every (word, copy, bit) of the triplicated bits when there
are at most ``max_single`` of them, else a random sample of that size (the
plan records which); a sample of double flips (the same bit in two
copies) and of flips in unprotected low bits.

:func:`run_config_bench` runs the bench on Icarus or Verilator (built with
``--public-flat-rw`` so that the copies' registers can be written) and
returns the figures it recorded; :func:`run_campaign` does both for a build
folder (``rtlgen faults``) and :func:`summary_lines` words the figures.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..emit.regmap import ConfigDriver
from ..errors import RtlgenError
from ..kinds import kind_of, load_build
from ..numerics.fixed import parse_type
from .. import progress
from . import tools
from .cluster import dask_client, gather_as_done, job, job_folder, pack_folder, unpacked_folder
from .sim import (SIMS_DIR, TIMESCALE, _environ, _one_line, _results_failures, prepare_runner,
                  _sys_path_first, _tail, read_manifest)

__all__ = ["BENCH_MODULE", "make_plan", "fault_list", "random_params", "run_config_bench", "summary_lines",
           "run_campaign", "split_plan", "merge_results"]

BENCH_MODULE = "test_config_bus"
VERILATOR_ARGS = ("-Wno-fatal", "--public-flat-rw", "-CFLAGS", "-O0")


def fault_list(regmap: dict, max_single: int = 2000, max_double: int = 64, max_unprotected: int = 64,
               seed: int = 1) -> dict:
    """The flips to inject: exhaustive up to the limits, else a seeded random sample."""
    rng = np.random.default_rng(seed)
    single, double, unprotected = [], [], []
    for layer in regmap["layers"]:
        if layer["storage"] != "tmr":
            continue
        for key in layer["groups"]:
            g = layer[key]
            low = g["width"] - g["protected_bits"]
            for k in range(g["count"]):
                signal = f"{layer['instance']}.{g['prefix']}{k}"
                for bit in range(g["protected_bits"]):
                    double.append([signal, [0, 1], bit])
                    for copy in range(3):
                        single.append([signal, copy, bit])
                for bit in range(low):
                    unprotected.append([signal, bit])

    def pick(items, limit):
        if len(items) <= limit:
            return items, "exhaustive"
        idx = sorted(rng.choice(len(items), size=limit, replace=False))
        return [items[i] for i in idx], f"random sample of {limit} of {len(items)} (seed {seed})"

    total_single = len(single)
    single, how = pick(single, max_single)
    for entry in double:    # vary which two copies are hit
        entry[1] = [[0, 1], [1, 2], [0, 2]][int(rng.integers(3))]
    double, how_double = pick(double, max_double)
    unprotected, how_un = pick(unprotected, max_unprotected)
    return {"single": single, "double": double, "unprotected": unprotected,
            "single_total": total_single, "single_selection": how, "double_selection": how_double,
            "unprotected_selection": how_un, "max_scrub_cycles": int(regmap["scrub_cycles"])}


def random_params(regmap: dict, seed: int) -> dict:
    """Random codes for every stored word, in the driver's form
    ({set: (codes of each group)}), drawn uniformly from each group's type
    (thresholds: from the input range, where they change decisions)."""
    driver = ConfigDriver(regmap)
    rng = np.random.default_rng(seed)
    out = {}
    for name, entry in driver.layers.items():
        groups = []
        for key in entry["groups"]:
            t = parse_type(entry[key]["type"])
            lo, hi = t.min_code, t.max_code + 1
            if entry[key]["kind"] == "threshold":    # cuts in [min input code, max input code + 1]
                lo, hi = lo // 2, hi // 2 + 1
            groups.append(rng.integers(lo, hi, size=entry[key]["count"]))
        out[name] = tuple(groups)
    return out


def make_plan(model, regmap: dict, n_vectors: int = 24, seed: int = 1, vectors=None, **fault_limits) -> dict:
    """Everything the config-bus bench checks, with golden outputs.

    ``model`` is the core's quantized model (of any kind); ``vectors``
    (input codes) default to the extreme codes and random ones."""
    driver = ConfigDriver(regmap)
    predict_codes = kind_of(model).predict_codes
    t = model.input_type
    if vectors is None:
        rng = np.random.default_rng(seed)
        x = rng.integers(t.min_code, t.max_code + 1, size=(n_vectors, model.n_in))
        x[0], x[1] = t.max_code, t.min_code
    else:
        x = np.asarray(vectors, dtype=np.int64)
    reprogrammed = driver.model_with(model, random_params(regmap, seed + 1))
    writes = driver.writes(reprogrammed)
    mapped = {a for a, _ in writes} | {0, 1, 2}
    end = int(regmap["end_addr"])
    candidates = list(range(3, end + 32)) + [0x8000, 0xFFFE, 0xFFFF]
    unmapped = [a for a in candidates if a not in mapped]
    return {
        "vectors": x.tolist(),
        "expected": predict_codes(model, x).tolist(),
        "program": {"writes": [[int(a), int(w)] for a, w in writes],
                    "readback": {str(a): int(w) for a, w in writes},
                    "expected": predict_codes(reprogrammed, x).tolist()},
        "unmapped": unmapped,
        "faults": fault_list(regmap, seed=seed, **fault_limits),
    }


def run_config_bench(outdir, plan: dict, simulator: str = "icarus", work_dir=None,
                     testcase: list[str] | None = None) -> dict:
    """Run ``sims/test_config_bus.py`` on the core in ``outdir``; return its figures.

    Raises :class:`RtlgenError` naming the failing checks (and the log).
    """
    outdir = Path(outdir).resolve()
    manifest = read_manifest(outdir)
    if "config_bus" not in manifest:
        raise RtlgenError(f"{outdir}: the core has no configuration bus (every layer has storage: constant)")
    top = str(manifest["top"])
    tools.ensure_simulator(simulator)

    temporary = work_dir is None
    wdir = Path(tempfile.mkdtemp(prefix=f"rtlgen-cfg-{top}-{simulator}-")) if temporary else Path(work_dir)
    wdir = wdir.resolve()
    try:
        wdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtlgenError(f"cannot create the work dir {wdir}: {exc.strerror or exc}") from None
    try:
        results = _bench_in(wdir, outdir, manifest, plan, simulator, testcase)
    except RtlgenError:
        raise  # a failure: the message names the work dir, kept for a look
    except BaseException:  # Ctrl-C, SIGTERM or an unexpected error: the tools are stopped already
        if temporary:
            shutil.rmtree(wdir, ignore_errors=True)
        raise
    if temporary:
        shutil.rmtree(wdir, ignore_errors=True)
    return results


def _bench_in(wdir: Path, outdir: Path, manifest: dict, plan: dict, simulator: str, testcase) -> dict:
    """The part of :func:`run_config_bench` that works in *wdir*."""
    # imported late: cocotb-tools is slow to import and only a bench run needs it
    from cocotb_tools.runner import get_runner

    top = str(manifest["top"])
    plan_path, results_path = wdir / "plan.json", wdir / "results.json"
    results_xml = wdir / f"results_{simulator}.xml"
    build_log, sim_log = wdir / f"build_{simulator}.log", wdir / f"sim_{simulator}.log"
    for stale in (results_path, results_xml):
        stale.unlink(missing_ok=True)
    plan_path.write_text(json.dumps(plan) + "\n")
    env = {"RTLGEN_MANIFEST": str(outdir / "manifest.json"), "RTLGEN_PLAN": str(plan_path),
           "RTLGEN_RESULTS": str(results_path)}
    runner = get_runner(simulator)
    prepare_runner(runner, wdir / "tmp")
    runner.log.setLevel(logging.WARNING)
    build_env = tools.verilator_build_env() if simulator == "verilator" else {}
    try:
        with _environ(build_env):
            runner.build(sources=[outdir / manifest["verilog"]], hdl_toplevel=top,
                         build_dir=wdir / f"sim_build_{simulator}",
                         build_args=list(VERILATOR_ARGS) if simulator == "verilator" else [],
                         always=True, timescale=TIMESCALE, log_file=build_log)
    except (RuntimeError, SystemExit, OSError, ValueError) as e:
        raise RtlgenError(f"{simulator} failed to build {top} ({_one_line(e)}); log: {build_log}; work dir {wdir}",
                          detail=f"--- last lines of {build_log} ---\n{_tail(build_log)}") from None
    error = None
    with _environ(env), _sys_path_first(SIMS_DIR):
        try:
            runner.test(test_module=BENCH_MODULE, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                        build_dir=wdir / f"sim_build_{simulator}", test_dir=wdir,
                        results_xml=str(results_xml), extra_env=env, timescale=TIMESCALE,
                        testcase=testcase, log_file=sim_log)
        except SystemExit as e:
            error = f"simulator exited with status {e.code}"
        except (RuntimeError, OSError) as e:
            error = str(e)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    outcome = _results_failures(results_xml)
    if error is not None or outcome is None or outcome[0] == 0 or outcome[1]:
        why = "; ".join(outcome[1]) if outcome and outcome[1] else (error or "no test ran")
        raise RtlgenError(f"{simulator} config-bus bench of {top} failed: {_one_line(why)} (log {sim_log}; "
                          f"work dir {wdir})",
                          detail=(why + "\n" if "\n" in why else "")
                          + f"--- last lines of {sim_log} ---\n{_tail(sim_log)}")
    results["tests"] = outcome[0]
    return results


def summary_lines(plan: dict, res: dict) -> list[str]:
    """The campaign's figures in words (one line per part)."""
    camp = res["fault_campaign"]
    single, double, unprot = camp["single"], camp["double"], camp["unprotected"]
    f = plan["faults"]
    return [
        f"single flips: {single['injected']} injected ({f['single_selection']}), {single['corrected']} "
        f"corrected, {single['detected']} detected, scrub cycles {single['scrub_cycles']}, count cycles "
        f"{single['count_cycles']}, {single['inferences_checked']} inferences checked, "
        f"{single['output_mismatches']} output mismatches, error count read {single['error_count_read']}",
        f"double flips (same bit, two copies): {double['injected']} injected ({f['double_selection']}), "
        f"{double['detected']} detected, {double['corrected']} corrected, {double['voted_wrong_value']} voted "
        f"the flipped value, {double['restored_by_rewrite']} repaired by a bus rewrite",
        f"unprotected low bits: {unprot['injected']} injected ({f['unprotected_selection']}), "
        f"{unprot['detected']} detected, {unprot['persisted']} persisted until rewritten",
        f"reprogramming: {res['program_infer']['writes']} writes, {res['program_infer']['mismatches']} "
        f"output mismatches; unmapped writes: {res['unmapped_writes']['addresses']} addresses, "
        f"{len(res['unmapped_writes']['changed_words'])} words changed",
    ]


def split_plan(plan: dict, parts: int) -> list[tuple[dict, list[str] | None]]:
    """Cut a plan into ``parts`` benches (plan, testcases): the first runs every test, the others only
    the fault campaign, each on its share of the single, double and unprotected flips."""
    faults = plan["faults"]
    n = max(len(faults["single"]), len(faults["double"]), len(faults["unprotected"]))
    parts = max(1, min(int(parts), n))
    if parts == 1:
        return [(plan, None)]
    out = []
    for k in range(parts):
        share = {key: faults[key][k::parts] for key in ("single", "double", "unprotected")}
        out.append(({**plan, "faults": {**faults, **share}}, None if k == 0 else ["fault_campaign"]))
    return out


def _add_hist(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, v in b.items():
        out[key] = out.get(key, 0) + v
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def merge_results(results: list[dict]) -> dict:
    """The figures of a split campaign (:func:`split_plan`) as one bench would give them."""
    merged = dict(results[0])
    camps = [r["fault_campaign"] for r in results if "single" in r.get("fault_campaign", {})]
    if len(camps) <= 1:
        return merged
    single = dict(camps[0]["single"])
    for c in camps[1:]:
        s = c["single"]
        for key in ("injected", "corrected", "detected", "error_count_read", "inferences_checked",
                    "output_mismatches"):
            single[key] += s[key]
        for key in ("scrub_cycles", "count_cycles"):
            single[key] = _add_hist(single[key], s[key])
        single["error_flag_read"] = bool(single["error_flag_read"]) or bool(s["error_flag_read"])
        single["first_mismatch"] = single["first_mismatch"] or s["first_mismatch"]
        for key in ("not_scrubbed", "not_counted"):
            single[key] = (single[key] + s[key])[:10]
        if s["status_after_clear"] != [False, 0]:
            single["status_after_clear"] = s["status_after_clear"]
    double = dict(camps[0]["double"])
    unprotected = dict(camps[0]["unprotected"])
    for c in camps[1:]:
        for key in ("injected", "detected", "corrected", "voted_wrong_value", "restored_by_rewrite",
                    "error_count_read"):
            double[key] += c["double"][key]
        double["error_flag_read"] = bool(double["error_flag_read"]) or bool(c["double"]["error_flag_read"])
        for key in ("injected", "detected", "persisted"):
            unprotected[key] += c["unprotected"][key]
    merged["fault_campaign"] = {**camps[0], "single": single, "double": double, "unprotected": unprotected,
                                "final_mismatches": sum(c["final_mismatches"] for c in camps),
                                "benches": len(camps)}
    return merged


@job
def _bench_job(files: dict, plan: dict, simulator: str, testcase) -> dict:
    with unpacked_folder(files, prefix="rtlgen-faults-core-") as outdir, job_folder("rtlgen-faults-job-") as work:
        return run_config_bench(outdir, plan, simulator, work_dir=work, testcase=testcase)


def run_campaign(outdir, simulator: str = "icarus", *, n_vectors: int = 24, seed: int = 1,
                 max_single: int = 2000, max_double: int = 64, max_unprotected: int = 64,
                 work_dir=None, jobs: int = 2, scheduler: str | None = None) -> tuple[dict, dict]:
    """Plan and run the configuration-bus bench and fault campaign on a build folder; (plan, results).

    The fault list is cut into one bench per worker (:func:`split_plan`), run as Dask jobs on a
    local cluster of ``jobs`` processes or on the cluster at ``scheduler``, and the figures merged.
    With ``jobs=1`` and no scheduler (or with ``work_dir``) it runs here, in one bench."""
    outdir = Path(outdir)
    manifest, model = load_build(outdir)
    if "config_bus" not in manifest:
        raise RtlgenError(f"{outdir}: the core has no configuration bus: build it with storage: register or "
                          "tmr on some layer (or a forest's thresholds/leaves)")
    if manifest["config_bus"].get("i2c"):
        raise RtlgenError(f"{outdir}: the core's bus is behind its I2C target; the campaign drives the "
                          "cfg_* ports: build it without the i2c option for the campaign")
    regmap = ConfigDriver.from_build(outdir).regmap
    plan = make_plan(model, regmap, n_vectors=n_vectors, seed=seed, max_single=max_single,
                     max_double=max_double, max_unprotected=max_unprotected)
    if work_dir is not None or (jobs <= 1 and not scheduler):
        return plan, run_config_bench(outdir, plan, simulator, work_dir=work_dir)
    tools.ensure_simulator(simulator)
    files = pack_folder(outdir)
    with dask_client(scheduler, jobs, "rtlgen faults") as client:
        workers = sum(client.nthreads().values()) or 1
        parts = split_plan(plan, workers)
        futures = [client.submit(_bench_job, files, part, simulator, testcase, pure=False) for part, testcase in parts]
        results: list = [None] * len(futures)
        bar = progress.counter(f"faults: {len(parts)} benches on {workers} Dask workers", total=len(parts),
                               unit="benches")
        ok = False
        try:
            def keep(k: int, r: dict) -> None:
                results[k] = r
                bar.update(1)
            gather_as_done(client, futures, keep)
            ok = True
        finally:
            bar.close(ok=ok)
    return plan, merge_results(results)
