"""rtlgen versus da4ml on identical integer weights: figures are printed, never asserted.

Compares rtlgen's constant matrix-vector hardware (built through the ``rtlgen
build`` CLI, as a user would) with da4ml's adder graphs (distributed
arithmetic, ``pip install da4ml==0.6.0``) on the same integer weight codes,
synthesized by the same native Yosys with identical scripts:

* ``xilinx``: ``read_verilog ...; synth_xilinx -flatten -noiopad -top TOP; stat -json``
* ``ecp5``:   ``read_verilog ...; synth_ecp5 -top TOP; stat -json``

(Yosys defaults otherwise: DSP inference stays on for both sides; da4ml
emits no multipliers.)  Cells are grouped with rtlgen's own
``rtlgen.flows.synth.classify_cells`` (LUTs exclude the LUTs inside carry
cells; ECP5 "carry" counts CCU2C cells).

Cases (``--cases``, comma separated):

``dense16x64_int8``
    one 16-in 64-out layer, int8 weight codes uniform in [-128, 127]
    (seed 0), 16-bit signed integer inputs, no bias, exact sum.
``dense16x64_w6z30``
    same shape, 6-bit signed codes with 30 % zeros (seed 0).
``jet``
    models/jet_mlp.onnx + models/jet_mlp.yaml (16-64-32-32-5, ReLU).
``econt``
    models/econt_encoder.onnx + models/econt_encoder.yaml (conv encoder).

rtlgen side: ``rtlgen build MODEL --config CFG -o DIR --name NAME`` (the
dense cases write a one-node ONNX Gemm and a YAML config first) with
``default: {arithmetic: ...}`` set from ``--arithmetic`` (and top-level
``clock_mhz`` from ``--clock-mhz``); ``--with-multipliers`` adds an
``arithmetic: multipliers`` column.  ``--arithmetic none`` writes no
``arithmetic`` key (the rtlgen default).  ``--adder-depth-slack 0,2`` builds
one rtlgen column per value (``default: {adder_depth_slack: N}``; 0 writes
no key).

da4ml side: the whole network is traced by da4ml from DIR/model.json of the
rtlgen build (the same integer weight and bias codes, the same input,
result and rounding/saturation types, ReLU between layers; a Conv layer is
the dense matrix rtlgen builds for it, the kernel at every window):
``FixedVariableArray.from_kif`` -> ``x @ W`` (da4ml's CMVM solver) ->
``+ b`` -> ``quantize``/``relu`` -> ``comb_trace`` -> ``VerilogModel(...,
latency_cutoff=LC).write()``.  Pipelining: with ``HWConfig(1, -1, LC)``
every adder has delay 1, so LC is the number of adder levels between
registers (``--da4ml-cutoff``, default 2 like rtlgen's default
``adder_levels``; da4ml's own CLI default is 5; 0 = combinational).  da4ml
has no notion of a clock frequency for pipelining (its clock period only
goes into the timing constraint files).  Before synthesis both sides are
checked bit for bit on random inputs (``rtlgen predict --raw`` against
da4ml's ``CombLogic.predict``); the "same function" column says so.

Usage::

    .venv/bin/python bench/arith.py [--cases dense16x64_int8,dense16x64_w6z30,jet,econt]
        [--targets xilinx,ecp5] [--arithmetic shift_add|multipliers|auto|none]
        [--clock-mhz MHZ] [--adder-depth-slack 0[,2,...]] [--with-multipliers] [--da4ml-cutoff 2[,5,...]]
        [--jobs 2] [--timeout 3600] [--workdir DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtlgen.flows.synth import classify_cells, parse_stat_text  # noqa: E402

VENV_BIN = Path(sys.executable).parent
RTLGEN = str(VENV_BIN / "rtlgen") if (VENV_BIN / "rtlgen").exists() else shutil.which("rtlgen") or "rtlgen"

CASES = {
    "dense16x64_int8": {"kind": "dense", "n_in": 16, "n_out": 64, "wbits": 8, "zeros": 0.0},
    "dense16x64_w6z30": {"kind": "dense", "n_in": 16, "n_out": 64, "wbits": 6, "zeros": 0.3},
    "jet": {"kind": "model", "onnx": ROOT / "models" / "jet_mlp.onnx", "yaml": ROOT / "models" / "jet_mlp.yaml"},
    "econt": {"kind": "model", "onnx": ROOT / "models" / "econt_encoder.onnx",
              "yaml": ROOT / "models" / "econt_encoder.yaml"},
}
INPUT_BITS = 16
TARGETS = {"xilinx": "synth_xilinx -flatten -noiopad -top {top}", "ecp5": "synth_ecp5 -top {top}"}
YOSYS = "/usr/bin/yosys" if Path("/usr/bin/yosys").exists() else (shutil.which("yosys") or "yosys")
N_CHECK = 2000


def log(msg: str) -> None:
    print(f"[arith {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# fixed-point types (rtlgen's type strings)


def parse_type(spec: str):
    """(signed, W, I, quant, overflow) of ``fixed<W,I,Q,O>`` / ``ufixed<...>``."""
    from rtlgen.numerics.fixed import parse_type as rparse
    t = rparse(spec)
    return t


def kif(t) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without sign, fraction bits)."""
    signed = bool(t.signed)
    w, i = int(t.width), int(t.integer)
    return (1 if signed else 0), (i - 1 if signed else i), w - i


def modes(t) -> tuple[str, str]:
    q = str(getattr(t.quant, "value", t.quant)).upper()
    o = str(getattr(t.overflow, "value", t.overflow)).upper()
    if q not in ("TRN", "RND"):
        raise ValueError(f"da4ml supports TRN/RND rounding only, not {q}")
    if o not in ("WRAP", "SAT", "SAT_SYM"):
        raise ValueError(f"da4ml supports WRAP/SAT/SAT_SYM overflow only, not {o}")
    return o, q


# --------------------------------------------------------------------------
# the dense cases: a one-node ONNX Gemm and its YAML config


def dense_weights(case: dict) -> np.ndarray:
    rng = np.random.default_rng(0)
    lo, hi = -(1 << (case["wbits"] - 1)), (1 << (case["wbits"] - 1)) - 1
    w = rng.integers(lo, hi + 1, (case["n_in"], case["n_out"]))
    if case["zeros"]:
        mask = rng.random(w.shape) < case["zeros"]
        w = np.where(mask, 0, w)
    return w.astype(np.int64)


def result_bits(w: np.ndarray, in_bits: int) -> int:
    """Signed width that holds every exact sum_i x_i w_ij for in_bits-bit signed x."""
    xmin, xmax = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    hi = np.where(w > 0, w * xmax, w * xmin).sum(axis=0).max()
    lo = np.where(w > 0, w * xmin, w * xmax).sum(axis=0).min()
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return int(bits)


def write_dense_model(name: str, case: dict, d: Path) -> tuple[Path, dict]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = dense_weights(case)
    n_in, n_out = w.shape
    wt = numpy_helper.from_array(np.ascontiguousarray(w.T.astype(np.float32)), "W")   # [out, in], transB=1
    node = helper.make_node("Gemm", ["x", "W"], ["y"], name="dense", transB=1)
    graph = helper.make_graph([node], name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
                              initializer=[wt])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = d / f"{name}.onnx"
    onnx.save(model, str(path))
    rb = result_bits(w, INPUT_BITS)
    cfg = {"input": f"fixed<{INPUT_BITS},{INPUT_BITS},TRN,WRAP>",
           "default": {"weight": f"fixed<{case['wbits']},{case['wbits']},RND,SAT>",
                       "bias": f"fixed<{case['wbits']},{case['wbits']},RND,SAT>",
                       "result": f"fixed<{rb},{rb},TRN,WRAP>", "reuse_factor": 1},
           "layers": {}}
    return path, cfg


def load_yaml(path: Path) -> dict:
    import yaml
    return yaml.safe_load(path.read_text()) or {}


def dump_yaml(cfg: dict, path: Path) -> None:
    # block style, every scalar quoted: types carry commas
    def emit(obj, ind=0):
        pad = "  " * ind
        out = []
        for k, v in obj.items():
            if isinstance(v, dict):
                if not v:
                    out.append(f"{pad}{json.dumps(str(k))}: {{}}")
                else:
                    out.append(f"{pad}{json.dumps(str(k))}:")
                    out += emit(v, ind + 1)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(f"{pad}{json.dumps(str(k))}: {v}")
            else:
                out.append(f"{pad}{json.dumps(str(k))}: {json.dumps(str(v))}")
        return out
    path.write_text("\n".join(emit(cfg)) + "\n")


# --------------------------------------------------------------------------
# Yosys


def yosys_synth(files: list[Path], top: str, target: str, wd: Path, timeout: float) -> dict:
    wd.mkdir(parents=True, exist_ok=True)
    cmd = TARGETS[target].format(top=top)
    script = ("read_verilog " + " ".join(str(f) for f in files) + "\n" + cmd + "\n"
              "tee -q -o stat.json stat -json\ntee -q -o stat.txt stat\n")
    (wd / "synth.ys").write_text(script)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([YOSYS, "-q", "-l", "yosys.log", "synth.ys"], cwd=wd, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"yosys timed out after {timeout:.0f} s"}
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"yosys failed ({wd / 'yosys.log'}): " + " | ".join(tail)}
    try:
        data = json.loads((wd / "stat.json").read_text())
        cells = (data.get("design") or {}).get("num_cells_by_type")
        if cells is None:
            mods = data.get("modules") or {}
            mod = mods.get("\\" + top) or mods.get(top) or (next(iter(mods.values())) if len(mods) == 1 else {})
            cells = mod.get("num_cells_by_type")
        if cells is None:
            raise ValueError
    except (OSError, ValueError, AttributeError):
        cells = parse_stat_text((wd / "stat.txt").read_text())
    res = classify_cells(target, {str(k): int(v) for k, v in cells.items()})
    return {"luts": res["luts"], "carry": res["carry"], "ffs": res["ffs"], "dsp": res["dsp"],
            "cells": res["cells"], "synth_s": round(dt, 1), "command": cmd}


# --------------------------------------------------------------------------
# rtlgen side


def rtlgen_build(model: Path, cfg: dict, out: Path, name: str, timeout: float) -> dict:
    cfg_path = out.parent / f"{out.name}.yaml"
    dump_yaml(cfg, cfg_path)
    if out.exists():
        shutil.rmtree(out)
    argv = [RTLGEN, "build", str(model), "--config", str(cfg_path), "-o", str(out), "--name", name, "-q"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"rtlgen build timed out after {timeout:.0f} s"}
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        return {"error": f"rtlgen build failed (status {proc.returncode}): {msg}"}
    man = json.loads((out / "manifest.json").read_text())
    depth = None
    levels = [l.get("adder_depth") for l in man.get("layers", []) if l.get("adder_depth") is not None]
    if levels:
        depth = sum(levels)
    adders = [l.get("adders") for l in man.get("layers", []) if l.get("adders") is not None]
    return {"dir": str(out), "verilog": str(out / man["verilog"]), "top": man["top"],
            "latency": man["latency"], "ii": man.get("ii"), "multipliers": man.get("multipliers"),
            "adder_depth": depth, "adders": sum(adders) if adders else None, "build_s": round(dt, 1)}


def rtlgen_predict_raw(build: Path, x_codes: np.ndarray, timeout: float) -> np.ndarray:
    inp = build.parent / f"{build.name}_check_in.npy"
    out = build.parent / f"{build.name}_check_out.npy"
    np.save(inp, x_codes.astype(np.int64))
    if out.exists():
        out.unlink()
    subprocess.run([RTLGEN, "predict", str(build), str(inp), "-o", str(out), "--raw", "-q"], check=True,
                   capture_output=True, text=True, timeout=timeout)
    return np.load(out)


# --------------------------------------------------------------------------
# da4ml side


def da4ml_trace(model_json: Path, cutoff: float):
    """Trace the network of rtlgen's model.json with da4ml; returns (inp, out) arrays."""
    from da4ml.trace import FixedVariableArray, HWConfig
    from da4ml.trace.ops import quantize, relu

    m = json.loads(model_json.read_text())
    hw = HWConfig(1, -1, cutoff if cutoff > 0 else -1)
    t_in = parse_type(m["input_type"])
    k, i, f = kif(t_in)
    n = int(m["n_in"])
    inp = FixedVariableArray.from_kif(np.full(n, k), np.full(n, i), np.full(n, f), hwconf=hw,
                                      solver_options={"hard_dc": 2})
    x = inp
    compared = []
    for layer in m["layers"]:
        op = layer["op"]
        if op in ("dense", "conv"):
            if layer.get("accum_type"):
                raise ValueError(f"{layer['name']}: accum types are not modelled on the da4ml side")
            wt, bt, rt = (parse_type(layer[key]) for key in ("weight_type", "bias_type", "result_type"))
            wf, bf = int(wt.width - wt.integer), int(bt.width - bt.integer)
            w = np.asarray(layer["weights"], dtype=np.float64) * 2.0 ** -wf
            b = np.asarray(layer.get("bias_codes") or layer.get("bias") or [0] * w.shape[1],
                           dtype=np.float64) * 2.0 ** -bf
            if b.shape[0] != w.shape[1]:   # conv: per-channel bias codes
                per = w.shape[1] // b.shape[0]
                b = np.repeat(b, per)
            y = x @ w
            if np.any(b != 0):
                y = y + b
            kk, ii, ff = kif(rt)
            o, q = modes(rt)
            x = quantize(y, kk, ii, ff, o, q)
            compared.append(f"{op} {w.shape[0]}x{w.shape[1]}")
        elif op == "activation":
            rt = parse_type(layer["result_type"])
            kk, ii, ff = kif(rt)
            o, q = modes(rt)
            if layer.get("kind") == "relu":
                x = quantize(relu(x), kk, ii, ff, o, q)
            elif layer.get("kind") in ("linear", "identity"):
                x = quantize(x, kk, ii, ff, o, q)
            else:
                raise ValueError(f"activation {layer.get('kind')} not modelled")
            compared.append(layer.get("kind"))
        else:
            raise ValueError(f"layer op {op!r} ({layer.get('name')}) not modelled on the da4ml side")
    return inp, x, m, compared


def adder_depth(comb) -> int:
    """Longest chain of adders/subtractors (opcodes 0/1) in a da4ml CombLogic."""
    depth = []
    for op in comb.ops:
        d = 0
        if op.opcode != -1:
            for p in (op.id0, op.id1):
                if p >= 0:
                    d = max(d, depth[p])
            if abs(op.opcode) == 6:
                d = max(d, depth[op.data & 0xFFFFFFFF])
            if op.opcode in (0, 1):
                d += 1
        depth.append(d)
    return max((depth[i] for i in comb.out_idxs if i >= 0), default=0)


def da4ml_build(model_json: Path, cutoff: float, out: Path, name: str) -> dict:
    from da4ml.codegen import VerilogModel
    from da4ml.trace import comb_trace

    t0 = time.perf_counter()
    inp, outv, m, compared = da4ml_trace(model_json, cutoff)
    comb = comb_trace(inp, outv)
    t_trace = time.perf_counter() - t0
    if out.exists():
        shutil.rmtree(out)
    vm = VerilogModel(comb, name, out, latency_cutoff=cutoff if cutoff > 0 else -1, print_latency=False)
    vm.write()
    meta = json.loads((out / "metadata.json").read_text())
    src = out / "src"
    # da4ml's metadata counts the stages after its input register; rtlgen's latency counts every
    # register from the input port to the output port (its input register included), so the
    # table counts the register ranks of da4ml's top module the same way
    top_text = (src / f"{name}.v").read_text()
    ranks = len(re.findall(r"^\s*\w+\s*<=", top_text, re.M))
    files = sorted(p for p in src.glob("*.v") if not p.name.endswith("_wrapper.v"))
    files += sorted(p for p in (src / "static").glob("*.v") if p.name != "lookup_table.v")
    return {"dir": str(out), "files": [str(p) for p in files], "top": name,
            "latency": ranks, "da4ml_latency": meta.get("latency", 0), "adder_depth": adder_depth(comb),
            "adders": sum(1 for op in comb.ops if op.opcode in (0, 1)),
            "est_luts": round(float(comb.cost)), "reg_bits": meta.get("reg_bits"),
            "build_s": round(time.perf_counter() - t0, 1), "trace_s": round(t_trace, 1),
            "compared": " -> ".join(compared), "comb": comb, "model": m}


def check_same(rt_dir: Path, comb, m: dict, timeout: float) -> str:
    """Compare rtlgen's golden model (raw codes) with da4ml's interpreter on random inputs."""
    t_in = parse_type(m["input_type"])
    n = int(m["n_in"])
    rng = np.random.default_rng(1)
    lo = -(1 << (t_in.width - 1)) if t_in.signed else 0
    hi = (1 << (t_in.width - 1)) - 1 if t_in.signed else (1 << t_in.width) - 1
    codes = rng.integers(lo, hi + 1, (N_CHECK, n))
    codes[0], codes[1] = lo, hi
    try:
        ref = rtlgen_predict_raw(rt_dir, codes, timeout)
    except subprocess.CalledProcessError as exc:
        return f"rtlgen predict failed: {(exc.stderr or '').strip()[-200:]}"
    fin = int(t_in.width - t_in.integer)
    got = comb.predict(codes.astype(np.float64) * 2.0 ** -fin)
    last = m["layers"][-1]
    rt = parse_type(last["result_type"])
    got_codes = np.round(np.asarray(got, dtype=np.float64) * 2.0 ** int(rt.width - rt.integer)).astype(np.int64)
    ref = np.asarray(ref).reshape(got_codes.shape).astype(np.int64)
    bad = int(np.sum(np.any(ref != got_codes, axis=1)))
    return "yes" if bad == 0 else f"NO: {bad}/{N_CHECK} vectors differ"


# --------------------------------------------------------------------------
# one case (runs in a worker process)


def run_case(case_name: str, args: dict) -> list[dict]:
    case = CASES[case_name]
    wd = Path(args["workdir"]) / case_name
    wd.mkdir(parents=True, exist_ok=True)
    timeout = args["timeout"]
    t_case = time.perf_counter()
    deadline = t_case + timeout

    def left() -> float:
        return max(1.0, deadline - time.perf_counter())

    rows: list[dict] = []
    if case["kind"] == "dense":
        model, base_cfg = write_dense_model(case_name, case, wd)
    else:
        model, base_cfg = case["onnx"], load_yaml(case["yaml"])
    variants = []   # (column label, arithmetic value or None, adder depth slack)
    arith0 = None if args["arithmetic"] == "none" else args["arithmetic"]
    for slack in args["slacks"]:
        variants.append((f"rtlgen[{args['arithmetic']}" + (f",slack={slack}]" if slack else "]"), arith0, slack))
    if args["with_multipliers"] and args["arithmetic"] != "multipliers":
        variants.append(("rtlgen[multipliers]", "multipliers", 0))
    rt_builds = {}
    for label, arith, slack in variants:
        cfg = json.loads(json.dumps(base_cfg))
        if arith is not None:
            cfg.setdefault("default", {})["arithmetic"] = arith
        if slack:
            cfg.setdefault("default", {})["adder_depth_slack"] = slack
        if args["clock_mhz"]:
            cfg["clock_mhz"] = args["clock_mhz"]
        tag = "rt_" + (arith or "default") + (f"_slack{slack}" if slack else "")
        log(f"{case_name}: rtlgen build ({label})")
        b = rtlgen_build(model, cfg, wd / tag, case_name.replace("-", "_"), left())
        if "error" in b:
            log(f"{case_name}: {label}: {b['error']}")
        else:
            log(f"{case_name}: {label}: latency {b['latency']}, built in {b['build_s']} s")
        rt_builds[label] = b
    ref_label = next((lb for lb, b in rt_builds.items() if "error" not in b), None)

    da_builds = {}
    if ref_label is None:
        for c in args["cutoffs"]:
            da_builds[f"da4ml[lc={c}]"] = {"error": "no rtlgen build to take the integer codes from"}
    elif args["da4ml_missing"]:
        for c in args["cutoffs"]:
            da_builds[f"da4ml[lc={c}]"] = {"error": args["da4ml_missing"]}
    else:
        mj = Path(rt_builds[ref_label]["dir"]) / "model.json"
        for c in args["cutoffs"]:
            label = f"da4ml[lc={c}]" if c > 0 else "da4ml[comb]"
            log(f"{case_name}: da4ml trace + Verilog ({label})")
            try:
                d = da4ml_build(mj, c, wd / f"da4ml_lc{c}", "da_" + case_name.replace("-", "_"))
                d["same"] = check_same(Path(rt_builds[ref_label]["dir"]), d.pop("comb"), d.pop("model"), left())
                log(f"{case_name}: {label}: latency {d['latency']}, adder depth {d['adder_depth']}, "
                    f"same function as {ref_label}: {d['same']} ({d['build_s']} s)")
            except Exception as exc:   # noqa: BLE001 - reported in the table
                d = {"error": f"da4ml: {type(exc).__name__}: {exc}"}
                log(f"{case_name}: {label}: {d['error']}\n{traceback.format_exc()}")
            da_builds[label] = d

    for target in args["targets"]:
        for label, b in list(rt_builds.items()) + list(da_builds.items()):
            row = {"case": case_name, "target": target, "side": label}
            row.update({k: v for k, v in b.items() if k not in ("files", "dir")})
            if "error" not in b:
                files = b["files"] if "files" in b else [b["verilog"]]
                log(f"{case_name}: yosys {target} {label}")
                syn = yosys_synth([Path(f) for f in files], b["top"], target,
                                  wd / f"synth_{target}_{label.replace('[', '_').replace(']', '').replace('=', '')}",
                                  left())
                row.update(syn)
                if "error" in syn:
                    log(f"{case_name}: {target} {label}: {syn['error']}")
                else:
                    log(f"{case_name}: {target} {label}: {syn['luts']} LUTs, {syn['carry']} carry, "
                        f"{syn['ffs']} FFs, {syn['dsp']} DSP ({syn['synth_s']} s)")
            rows.append(row)
    log(f"{case_name}: done in {time.perf_counter() - t_case:.0f} s")
    return rows


# --------------------------------------------------------------------------
# table


def fmt(v) -> str:
    return "-" if v is None else str(v)


def add_ratios(rows: list[dict]) -> None:
    """LUT ratio of every rtlgen row to the first da4ml row of its case and target."""
    for r in rows:
        for key in ("lut_ratio", "lut_eq_ratio", "ratio_vs"):
            r.pop(key, None)
        if "luts" in r:   # an ECP5 CCU2C holds two LUT4s besides its carry logic
            r["lut_eq"] = r["luts"] + (2 * r["carry"] if r["target"] == "ecp5" else 0)
    for r in rows:
        if not r["side"].startswith("rtlgen") or "luts" not in r:
            continue
        da = next((d for d in rows if d["case"] == r["case"] and d["target"] == r["target"]
                   and d["side"].startswith("da4ml") and d.get("luts")), None)
        if da is not None:
            r["ratio_vs"] = da["side"]
            r["lut_ratio"] = round(r["luts"] / da["luts"], 2)
            r["lut_eq_ratio"] = round(r["lut_eq"] / da["lut_eq"], 2)


def table(rows: list[dict]) -> str:
    head = ("| case | target | side | LUTs | carry | LUT-eq | FFs | DSP | adders | adder depth | latency | "
            "LUT ratio rtlgen/da4ml | LUT-eq ratio | same function | build s | synth s |")
    out = [head, "|" + "---|" * 16]
    for r in rows:
        if "error" in r and "luts" not in r:
            out.append(f"| {r['case']} | {r['target']} | {r['side']} | {r['error']} |" + " |" * 9)
            continue
        ratio = fmt(r.get("lut_ratio"))
        out.append(" | ".join([
            f"| {r['case']}", r["target"], r["side"], fmt(r.get("luts")), fmt(r.get("carry")), fmt(r.get("lut_eq")),
            fmt(r.get("ffs")), fmt(r.get("dsp")), fmt(r.get("adders")), fmt(r.get("adder_depth")), fmt(r.get("latency")),
            ratio, fmt(r.get("lut_eq_ratio")), fmt(r.get("same", "(ref)" if r["side"].startswith("rtlgen") else None)),
            fmt(r.get("build_s")), fmt(r.get("synth_s")) + " |"]))
    return "\n".join(out)


def header(a: dict, yv: str, total: float) -> str:
    return (f"rtlgen versus da4ml ({yv}; rtlgen arithmetic={a['arithmetic']}"
            + (f", clock_mhz={a['clock_mhz']}" if a.get("clock_mhz") else "")
            + f"; da4ml latency_cutoff={a['da4ml_cutoff']} adder levels/stage; wall {total:.0f} s)\n")


def footer(rows: list[dict]) -> str:
    out = []
    compared = {r["case"]: r.get("compared") for r in rows if r.get("compared")}
    if compared:
        out.append("\nda4ml traced (from rtlgen's model.json: same integer codes, types, rounding, saturation): "
                   + "; ".join(f"{c}: {v}" for c, v in compared.items()))
    out.append("\nLUTs exclude carry cells; LUT-eq adds the two LUT4s inside every ECP5 CCU2C (= LUTs on xilinx, whose "
               "CARRY4 holds no LUT). LUT ratio: rtlgen row / first da4ml row of the same case and target. "
               "latency: register ranks from the input port to the output port, the input register included "
               "(da4ml's own metadata counts one less). adders: add/sub nodes of "
               "the adder graph; adder depth: longest adder chain (summed over layers for rtlgen). "
               "same function: rtlgen predict --raw vs da4ml CombLogic.predict on "
               f"{N_CHECK} random input vectors.")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--targets", default="xilinx,ecp5")
    ap.add_argument("--arithmetic", default="shift_add",
                    help="rtlgen default: {arithmetic: X}: shift_add (default), multipliers, auto, "
                         "or none (no key written)")
    ap.add_argument("--clock-mhz", type=float, default=None, help="top-level clock_mhz of the rtlgen config")
    ap.add_argument("--adder-depth-slack", default="0",
                    help="comma list: one rtlgen build per adder_depth_slack value (default 0)")
    ap.add_argument("--with-multipliers", action="store_true", help="also build rtlgen with arithmetic: multipliers")
    ap.add_argument("--da4ml-cutoff", default="2",
                    help="da4ml adder levels per pipeline stage, comma list (0 = combinational)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per case (builds + synthesis)")
    ap.add_argument("--workdir", help="keep everything here (default: a temporary folder)")
    ap.add_argument("--json", help="write the rows to this JSON file")
    ap.add_argument("--render", metavar="JSON", help="only print the table of an earlier --json file")
    args = ap.parse_args(argv)
    if args.render:
        data = json.loads(Path(args.render).read_text())
        rows = data["rows"]
        add_ratios(rows)
        print(header(data["args"], data["yosys"], data["total_s"]))
        print(table(rows))
        print(footer(rows))
        return 0

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error(f"unknown case(s) {', '.join(bad)}: choose from {', '.join(CASES)}")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        ap.error(f"unknown target(s) {', '.join(bad)}: choose from {', '.join(TARGETS)}")
    if args.arithmetic not in ("shift_add", "multipliers", "auto", "none"):
        ap.error("--arithmetic must be shift_add, multipliers, auto or none")
    cutoffs = [float(c) if "." in c else int(c) for c in args.da4ml_cutoff.split(",") if c.strip()]
    slacks = [int(v) for v in args.adder_depth_slack.split(",") if v.strip()] or [0]
    if not shutil.which(YOSYS) and not Path(YOSYS).exists():
        print("bench/arith.py: yosys not found (apt-get install yosys)", file=sys.stderr)
        return 2

    da4ml_missing = None
    try:
        import da4ml  # noqa: F401
        ver = getattr(da4ml, "__version__", "?")
        if ver != "0.6.0":
            log(f"warning: da4ml {ver} installed; this script was written against 0.6.0")
    except ImportError:
        da4ml_missing = "da4ml is not installed: pip install da4ml==0.6.0"
        print(f"bench/arith.py: {da4ml_missing} (the da4ml columns are left empty)", file=sys.stderr)

    for c in cases:
        spec = CASES[c]
        if spec["kind"] == "model" and not (spec["onnx"].is_file() and spec["yaml"].is_file()):
            ap.error(f"{spec['onnx']} or {spec['yaml']} is missing")

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="rtlgen-bench-arith-")
        workdir = tmp.name
    workdir = str(Path(workdir).resolve())
    Path(workdir).mkdir(parents=True, exist_ok=True)
    opts = {"workdir": workdir, "timeout": args.timeout, "arithmetic": args.arithmetic,
            "clock_mhz": args.clock_mhz, "with_multipliers": args.with_multipliers, "cutoffs": cutoffs, "slacks": slacks,
            "targets": targets, "da4ml_missing": da4ml_missing}
    yv = subprocess.run([YOSYS, "-V"], capture_output=True, text=True).stdout.strip()
    log(f"{len(cases)} case(s), targets {', '.join(targets)}, {yv}, workdir {workdir}, jobs {args.jobs}")

    rows: list[dict] = []
    t0 = time.perf_counter()
    try:
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futs = {pool.submit(run_case, c, opts): c for c in cases}
            start = {f: time.perf_counter() for f in futs}
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=30, return_when=FIRST_COMPLETED)
                for f in done:
                    c = futs[f]
                    try:
                        rows += f.result()
                    except Exception as exc:   # noqa: BLE001
                        rows.append({"case": c, "target": "-", "side": "-", "error": f"{type(exc).__name__}: {exc}"})
                        log(f"{c}: failed: {exc}")
                # per-case timeouts are enforced inside the case (every tool call gets the time left);
                # this is the last resort for a case stuck in Python (da4ml's solver)
                for f in list(pending):
                    if time.perf_counter() - start[f] > args.timeout + 600:
                        log(f"{futs[f]}: over its time limit; abandoned")
                        rows.append({"case": futs[f], "target": "-", "side": "-", "error": "timed out"})
                        f.cancel()
                        pending.discard(f)
    except KeyboardInterrupt:
        log("interrupted")
    order = {c: i for i, c in enumerate(cases)}
    rows.sort(key=lambda r: (order.get(r["case"], 99), r["target"]))
    total = time.perf_counter() - t0

    add_ratios(rows)
    print(header(vars(args), yv, total))
    print(table(rows))
    print(footer(rows))
    if args.json:
        for r in rows:
            r.pop("comb", None)
            r.pop("model", None)
        Path(args.json).write_text(json.dumps({"rows": rows, "total_s": round(total, 1), "yosys": yv,
                                               "args": vars(args)}, indent=1, default=str))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
