"""The main job, end to end: ONNX model in, verified Verilog out.

Builds the jet-tagging-shaped MLP (16-64-32-32-5) shipped in models/,
runs the bit-exact golden model and the generated RTL on Verilator over
1000 input vectors, and reports mismatches, latency, II and multipliers.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from rtlgen.cli import main as rtlgen

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "demo"
N_VECTORS = 1000


def run(*args: str) -> None:
    print("$ rtlgen " + " ".join(shlex.quote(a) for a in args), flush=True)
    t0 = time.perf_counter()
    code = rtlgen(list(args))
    if code != 0:
        sys.exit(code)
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)


def main() -> int:
    BUILD.mkdir(parents=True, exist_ok=True)
    model, config = ROOT / "models" / "jet_mlp.onnx", ROOT / "models" / "jet_mlp.yaml"
    core = BUILD / "core"
    run("build", str(model), "--config", str(config), "-o", str(core), "--name", "jet_mlp")

    manifest = json.loads((core / "manifest.json").read_text())
    rng = np.random.default_rng(2024)
    n_in = manifest["input"]["count"]
    x = rng.normal(0.0, 1.0, size=(N_VECTORS, n_in))
    x[:4] = [[1e9] * n_in, [-1e9] * n_in, [0.0] * n_in, [0.5] * n_in]   # saturation and edge vectors
    np.save(BUILD / "inputs.npy", x)

    run("predict", str(core), str(BUILD / "inputs.npy"), "-o", str(BUILD / "golden.npy"))
    run("sim", str(core), str(BUILD / "inputs.npy"), "-o", str(BUILD / "rtl.npy"), "--simulator", "verilator")

    golden, rtl = np.load(BUILD / "golden.npy"), np.load(BUILD / "rtl.npy")
    mismatches = int(np.sum(np.any(golden != rtl, axis=1)))
    print()
    print(f"model        : {model.name} ({' -> '.join(str(l['shape'][0]) for l in manifest['layers'] if l['op'] == 'dense')}"
          f" -> {manifest['output']['count']})")
    print(f"vectors      : {N_VECTORS} on Verilator")
    print(f"result       : {mismatches} mismatches (RTL vs bit-exact golden model)")
    print(f"latency      : {manifest['latency']} cycles")
    print(f"II           : {manifest['ii']} cycle(s)")
    print(f"multipliers  : {manifest['multipliers']}")
    for layer in manifest["layers"]:
        extra = f", R={layer['reuse_factor']}, {layer['multipliers']} multipliers" if layer["op"] == "dense" else ""
        print(f"  {layer['name']:<12} {layer['op']:<6} {layer['shape'][0]:>3} -> {layer['shape'][1]:<3}"
              f" latency {layer['latency']}{extra}, result {layer['result']}")
    print(f"Verilog      : {core / manifest['verilog']}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
