"""``rtlgen regress``: random valid models and configurations, built, simulated and compared.

Case ``k`` of a campaign with seed ``s`` is drawn from ``numpy``'s generator
seeded with ``(s, k)``, so it is the same on every machine and in every
order (:func:`random_case`).  A case is one of:

* ``mlp``: 1 to 3 dense layers with random activations between them
  (relu, linear, leaky_relu, clip), sometimes a residual add and a
  concatenation;
* ``cnn``: a convolution (random kernel, stride, pads), sometimes a
  max or average pool, then a dense layer; the convolution is streamed
  (``io: stream``) in some cases;
* ``forest``: random trees (full and chain shaped) on random features.

and random precision: signed and unsigned input types of every
quantization and overflow mode, weight/bias/result types, a WRAP ``accum``
type, reuse factors from 1 to ``full``, ``adder_levels``, ``arithmetic``
(``multipliers``, ``shift_add``, ``auto``; ``adder_depth_slack``), signed
ReLU results (a saturating one makes the next layer sum inputs from 0),
``storage`` (``constant``, ``register``, ``tmr``); forests: ``pipeline``, ``reuse_factor``,
``table_bits``, ``class_output``, stored sets.  Each case is quantized,
built, simulated on its edge vectors (every input at its lowest and highest
code, zeros, alternating extremes) and random ones, on the batch engine or
the cocotb bench, on Verilator or Icarus, and compared with the golden
model.

Campaigns run on Dask (:mod:`rtlgen.flows.cluster`): a ``LocalCluster`` with
one single-threaded worker process per job by default, or the cluster at
``scheduler`` (``tcp://HOST:PORT``).  Each finished case is appended to
``OUT/results.jsonl`` at once, so an interrupted campaign keeps what finished,
and running the same command again runs only the cases not in it.  A
failing case is kept in ``OUT/failures/case_<k>/`` with everything needed to
replay it: the build folder (Verilog, ``manifest.json``, ``model.json``), the
configuration, the input and expected codes, what the hardware gave and the
command (``replay.sh``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from rtlgen import progress
from rtlgen.errors import RtlgenError, RtlgenWarning
from rtlgen.flows.cluster import dask_client, gather_as_done, job, stopping

__all__ = ["random_case", "run_case", "run_campaign", "edge_codes", "summary_table"]

QUANTS = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOWS = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
KINDS = ("mlp", "cnn", "forest")


# ---------------------------------------------------------------------------
# random cases
# ---------------------------------------------------------------------------

def _type(rng, width_lo: int, width_hi: int, signed=None, modes: bool = True) -> str:
    width = int(rng.integers(width_lo, width_hi + 1))
    integer = int(rng.integers(-1, width + 2))
    signed = bool(rng.integers(0, 2)) if signed is None else signed
    name = "fixed" if signed else "ufixed"
    if not modes:
        return f"{name}<{width},{integer}>"
    return f"{name}<{width},{integer},{rng.choice(QUANTS)},{rng.choice(OVERFLOWS)}>"


def _weights(rng, shape, scale: float = 1.0) -> list:
    w = rng.normal(0.0, scale, shape)
    w[rng.random(shape) < rng.uniform(0.0, 0.5)] = 0.0
    return w.tolist()


def _activation(rng) -> dict:
    kind = str(rng.choice(["relu", "relu", "linear", "leaky_relu", "clip"]))
    out = {"kind": kind}
    if kind == "leaky_relu":
        out["slope"] = float(rng.choice([0.125, 0.25, 0.5, 0.1875]))
    if kind == "clip":
        out["bounds"] = [float(-rng.integers(0, 3)), float(rng.integers(1, 4))]
    return out


def _dense_options(rng, stored_ok: bool = True) -> dict:
    out = {"weight": _type(rng, 2, 8, signed=True), "bias": _type(rng, 3, 10, signed=True),
           "result": _type(rng, 4, 16), "adder_levels": int(rng.integers(1, 4))}
    arithmetic = str(rng.choice(["multipliers", "multipliers", "shift_add", "auto"]))
    storage = str(rng.choice(["constant", "constant", "register", "tmr"])) if stored_ok else "constant"
    if storage != "constant":
        arithmetic = "multipliers"
    out.update(arithmetic=arithmetic, storage=storage)
    if arithmetic != "multipliers" and rng.random() < 0.3:
        out["adder_depth_slack"] = int(rng.integers(1, 3))
    if arithmetic != "multipliers" and rng.random() < 0.3:
        out["share_columns"] = int(rng.integers(1, 4))
    if arithmetic == "multipliers":
        out["reuse_factor"] = "full" if rng.random() < 0.15 else int(rng.integers(1, 5))
        if rng.random() < 0.2:
            out["accum"] = _type(rng, 10, 20, signed=True, modes=False).replace(">", ",TRN,WRAP>")
    return out


def _chain_tree(rng, n_features: int, depth: int, output: int) -> dict:
    """A tree that splits, at every level, into a leaf and a deeper subtree (alternating sides)."""
    tree = {"feature": [], "threshold": [], "left": [], "right": [], "value": [], "output": output}

    def node() -> int:
        for key, blank in (("feature", -1), ("threshold", 0.0), ("left", -1), ("right", -1), ("value", 0.0)):
            tree[key].append(blank)
        return len(tree["feature"]) - 1

    cur = node()
    for level in range(depth):
        leaf, deeper = node(), node()
        tree["feature"][cur] = int(rng.integers(n_features))
        tree["threshold"][cur] = float(rng.normal() * 2)
        tree["left"][cur], tree["right"][cur] = (leaf, deeper) if level % 2 else (deeper, leaf)
        tree["value"][leaf] = float(rng.normal())
        cur = deeper
    tree["value"][cur] = float(rng.normal())
    return tree


def random_case(seed: int, index: int) -> dict:
    """Case ``index`` of the campaign ``seed``: a JSON-serializable description (see the module docstring)."""
    rng = np.random.default_rng([int(seed), int(index)])
    kind = str(rng.choice(KINDS, p=[0.5, 0.25, 0.25]))
    case = {"seed": int(seed), "index": int(index), "kind": kind, "name": f"case{index}"}
    if kind == "forest":
        n_features = int(rng.integers(1, 9))
        n_outputs = int(rng.integers(1, 4))
        trees = []
        for t in range(int(rng.integers(1, 9))):
            output = t % n_outputs
            if rng.random() < 0.5:
                depth = int(rng.integers(0, 4))
                n = 2 ** (depth + 1) - 1
                inner = (np.arange(n) < 2 ** depth - 1)
                trees.append({"feature": np.where(inner, rng.integers(n_features, size=n), -1).tolist(),
                              "threshold": (rng.normal(size=n) * 2).tolist(),
                              "left": np.where(inner, 2 * np.arange(n) + 1, -1).tolist(),
                              "right": np.where(inner, 2 * np.arange(n) + 2, -1).tolist(),
                              "value": np.where(inner, 0.0, rng.normal(size=n)).tolist(), "output": output})
            else:
                trees.append(_chain_tree(rng, n_features, int(rng.integers(1, 7)), output))
        stored = str(rng.choice(["constant", "constant", "register", "tmr"]))
        config = {"input": _type(rng, 4, 12), "score": _type(rng, 6, 16, signed=True),
                  "pipeline": str(rng.choice(["none", "per_level", "2"])),
                  "reuse_factor": int(rng.integers(1, 1 + max(sum(t["output"] == o for t in trees)
                                                              for o in range(n_outputs)))),
                  "class_output": bool(n_outputs > 1 and rng.random() < 0.5),
                  "table_bits": int(rng.choice([0, 4, 6])), "storage": stored}
        if config["pipeline"] == "2":
            config["pipeline"] = 2
        case.update(n_features=n_features, n_outputs=n_outputs, trees=trees, config=config,
                    decision=str(rng.choice(["lt_f32", "le_f32", "le_f64"])))
        return case
    layers, overrides = [], {}
    if kind == "cnn":
        c, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 7)), int(rng.integers(3, 7))
        k = (int(rng.integers(1, min(3, h) + 1)), int(rng.integers(1, min(3, w) + 1)))
        stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = [int(rng.integers(0, k[0])), int(rng.integers(0, k[1])), int(rng.integers(0, k[0])),
                int(rng.integers(0, k[1]))]
        c_out = int(rng.integers(1, 4))
        stream = bool(rng.random() < 0.4)
        layers.append({"op": "conv", "name": "conv", "weight": _weights(rng, (c_out, c, *k)),
                       "bias": rng.normal(size=c_out).tolist(), "in_shape": [c, h, w], "stride": list(stride),
                       "pads": pads})
        overrides["conv"] = _dense_options(rng, stored_ok=not stream)
        if stream:
            overrides["conv"].update(io="stream", arithmetic="multipliers", storage="constant")
            overrides["conv"].pop("accum", None)
            overrides["conv"].pop("adder_depth_slack", None)
            overrides["conv"].pop("share_columns", None)
        layers.append({"op": "activation", "name": "act0", **_activation(rng)})
        if rng.random() < 0.4:
            pool = str(rng.choice(["max", "avg"]))
            layers.append({"op": "pool", "name": "pool", "kind": pool, "kernel": [2, 2], "stride": [2, 2]})
            overrides["pool"] = {"io": "stream"} if stream else {}
            if pool == "avg":
                overrides["pool"]["weight"] = "fixed<8,1,RND,SAT>"
        layers.append({"op": "dense", "name": "fc", "n_out": int(rng.integers(1, 6)), "weight_scale": 0.5})
        overrides["fc"] = _dense_options(rng, stored_ok=not stream)    # a streamed core has no bus
        case.update(input_shape=[c, h, w], n_in=c * h * w)
    else:
        n_in = int(rng.integers(1, 13))
        n_layers = int(rng.integers(1, 4))
        size = n_in
        residual = n_layers >= 2 and rng.random() < 0.3
        for k in range(n_layers):
            n_out = size if residual and k == 1 else int(rng.integers(1, 11))
            layers.append({"op": "dense", "name": f"fc{k}", "n_out": n_out})
            overrides[f"fc{k}"] = _dense_options(rng)
            if k < n_layers - 1 or rng.random() < 0.5:
                layers.append({"op": "activation", "name": f"act{k}", **_activation(rng)})
                if layers[-1]["kind"] == "relu" and k < n_layers - 1 and rng.random() < 0.6:
                    # a signed result: a saturating one tells the next layer its inputs are >= 0
                    overrides[f"act{k}"] = {"result": _type(rng, 4, 12, signed=True)}
            size = n_out
            if residual and k == 1:
                # this block's output plus its input (what fc1 reads), then joined with that input
                layers.append({"op": "add", "name": "skip", "with_input_of": "fc1"})
                layers.append({"op": "concat", "name": "join", "with_input_of": "fc1"})
                overrides["skip"] = {"result": _type(rng, 6, 14)} if rng.random() < 0.5 else {}
        case.update(n_in=n_in)
    case.update(layers=layers, config={"input": _type(rng, 3, 10), "layers": overrides})
    return case


# ---------------------------------------------------------------------------
# a case: model, build, vectors
# ---------------------------------------------------------------------------

def _float_model(case: dict):
    """The float IR of a network case (weights drawn from its own generator)."""
    from rtlgen.ir.conv import Conv, Pool
    from rtlgen.ir.merge import Merge
    from rtlgen.ir.model import Activation, Dense, FloatModel
    rng = np.random.default_rng([case["seed"], case["index"], 1])
    layers, sources, sizes = [], [], {-1: case["n_in"]}
    shape = tuple(case["input_shape"]) if case.get("input_shape") else None
    size, last = case["n_in"], -1
    for spec in case["layers"]:
        op = spec["op"]
        src = (last,)
        if op == "conv":
            layer = Conv(spec["name"], np.array(spec["weight"]), np.array(spec["bias"]), tuple(spec["in_shape"]),
                         tuple(spec["stride"]), tuple(spec["pads"]))
            shape = tuple(layer.out_shape)
        elif op == "pool":
            layer = Pool(spec["name"], spec["kind"], shape, tuple(spec["kernel"]), tuple(spec["stride"]),
                         (0, 0, 1 if shape[1] % 2 else 0, 1 if shape[2] % 2 else 0))
            shape = tuple(layer.out_shape)
        elif op == "dense":
            layer = Dense(spec["name"], rng.normal(0, spec.get("weight_scale", 1.0), (size, spec["n_out"])),
                          rng.normal(0, 1, spec["n_out"]))
            shape = None
        elif op == "activation":
            layer = Activation(spec["name"], spec["kind"], size,
                               slope=np.array([spec["slope"]]) if "slope" in spec else None,
                               bounds=tuple(spec["bounds"]) if "bounds" in spec else None)
        else:   # add or concat of the last layer and the input of the layer named by with_input_of
            other = sources[[layer.name for layer in layers].index(spec["with_input_of"])][0]
            layer = Merge(spec["name"], op, (size, sizes[other]))
            src = (last, other)
        layers.append(layer)
        sources.append(src)
        last = len(layers) - 1
        size = size if op == "activation" else int(layer.n_out)
        sizes[last] = size
    return FloatModel(case["name"], case["n_in"], layers,
                      input_shape=tuple(case["input_shape"]) if case.get("input_shape") else None, sources=sources)


def quantized(case: dict):
    """The quantized model of a case (a network's QModel or a forest's QForest)."""
    if case["kind"] == "forest":
        from rtlgen.ir.forest import Forest, Tree
        from rtlgen.ir.forest_config import quantize_forest
        trees = [Tree(np.array(t["feature"]), np.array(t["threshold"], dtype=np.float64), np.array(t["left"]),
                      np.array(t["right"]), np.array(t["value"], dtype=np.float64), int(t["output"]))
                 for t in case["trees"]]
        forest = Forest(case["name"], case["n_features"], case["n_outputs"], trees,
                        [0.0] * case["n_outputs"], case["decision"])
        return quantize_forest(forest, dict(case["config"]))
    from rtlgen.ir.config import apply_config
    return apply_config(_float_model(case), json.loads(json.dumps(case["config"])))


def edge_codes(typ, n_in: int, n_random: int, rng) -> np.ndarray:
    """Every input at its lowest code, at its highest, zeros, the two alternations of the extremes,
    the codes next to zero, then ``n_random`` uniform random vectors."""
    lo, hi = typ.min_code, typ.max_code
    zero = min(max(0, lo), hi)
    alt = np.resize([lo, hi], n_in)
    rows = [np.full(n_in, lo), np.full(n_in, hi), np.full(n_in, zero), alt, alt[::-1],
            np.full(n_in, min(zero + 1, hi)), np.full(n_in, max(zero - 1, lo))]
    return np.vstack(rows + [rng.integers(lo, hi + 1, (n_random, n_in))]).astype(np.int64)


@job
def run_case(case: dict, vectors: int, simulator: str, out_root: str, keep_failures: bool = True,
             quiet: bool = True, engine: str = "batch") -> dict:
    """Quantize, build, simulate and compare one case; never raises (the result says what happened).
    ``simulator``: ``verilator`` or ``icarus``; ``engine``: ``batch`` (a compiled testbench) or
    ``cocotb`` (the Python bench).  ``quiet``: no progress lines (a Dask worker's would interleave)."""
    from rtlgen.kinds import kind_of, save_build
    if quiet:
        progress.configure(quiet=True)
    t0 = time.perf_counter()
    result = {"index": case["index"], "seed": case["seed"], "kind": case["kind"], "vectors": 0, "mismatches": 0,
              "status": "pass", "message": ""}
    work = Path(tempfile.mkdtemp(prefix=f"rtlgen-regress-{case['index']}-"))
    x = expected = got = None
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RtlgenWarning)   # e.g. all weights zero: still a valid case
                q = quantized(case)
        except RtlgenError as exc:      # a combination the configuration refuses: not a failure
            result.update(status="refused", message=str(exc))
            return result
        kind = kind_of(q)
        save_build(q, work / "build")
        manifest = json.loads((work / "build" / "manifest.json").read_text())
        result.update(latency=manifest["latency"], ii=manifest.get("ii", 1), summary=_describe(case, manifest))
        n_in = q.n_features if case["kind"] == "forest" else q.n_in
        x = edge_codes(q.input_type, n_in, max(0, vectors - 7), np.random.default_rng([case["seed"], case["index"], 2]))
        expected = kind.predict_codes(q, x)
        if engine == "batch":
            from rtlgen.flows.batch_sim import run_batch
            got, _ = run_batch(work / "build", x, None, gap=0.2, seed=case["index"], simulator=simulator)
        else:
            from rtlgen.flows.sim import run_sim
            got = run_sim(work / "build", x, simulator=simulator, work_dir=work / "sim", seed=case["index"])
        bad = np.any(np.asarray(got, dtype=object) != np.asarray(expected, dtype=object), axis=1)
        result.update(vectors=int(len(x)), mismatches=int(bad.sum()))
        if bad.any():
            k = int(np.argmax(bad))
            result.update(status="fail", message=f"vector {k}: input {x[k].tolist()}, expected "
                                                 f"{np.asarray(expected)[k].tolist()}, got {np.asarray(got)[k].tolist()}")
    except RtlgenError as exc:
        result.update(status="fail", message=str(exc).splitlines()[0][:500])
    except Exception as exc:  # noqa: BLE001 - an internal error of one case is reported, not raised
        result.update(status="error", message=f"{type(exc).__name__}: {exc}"[:500],
                      traceback=traceback.format_exc()[-2000:])
    finally:
        result["seconds"] = round(time.perf_counter() - t0, 2)
        if result["status"] in ("fail", "error") and keep_failures and not stopping():   # not when stopped
            _keep(case, result, work, Path(out_root), x, expected, got, simulator, engine)
        shutil.rmtree(work, ignore_errors=True)
    return result


def _describe(case: dict, manifest: dict) -> str:
    if case["kind"] == "forest":
        return f"{len(case['trees'])} trees, {case['n_features']} features"
    shape = "x".join(map(str, case["input_shape"])) if case.get("input_shape") else str(case["n_in"])
    ops = "-".join(layer.get("op") if layer.get("op") != "activation" else layer.get("kind") for layer in case["layers"])
    return f"{shape}: {ops}; latency {manifest['latency']}, II {manifest.get('ii', 1)}"


def _keep(case, result, work: Path, out_root: Path, x, expected, got, simulator: str, engine: str) -> None:
    folder = out_root / "failures" / f"case_{case['index']}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case.json").write_text(json.dumps(case, indent=1) + "\n")
    (folder / "config.json").write_text(json.dumps(case["config"], indent=1) + "\n")
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    if (work / "build").is_dir():
        shutil.copytree(work / "build", folder / "build")
    for name, arr in (("inputs", x), ("expected", expected), ("got", got)):
        if arr is not None:
            np.save(folder / f"{name}.npy", np.asarray(arr))
    engine = f"--engine {engine} --simulator {simulator}"
    (folder / "replay.sh").write_text(
        "#!/bin/sh\n# replays the failing case: the golden model against the RTL on the same codes\n"
        f"cd \"$(dirname \"$0\")\"\nrtlgen predict build inputs.npy --raw -o golden.npy\n"
        f"rtlgen sim build inputs.npy --raw -o rtl.npy {engine}\n"
        f"# the case again from its description: rtlgen regress --seed {case['seed']} --start {case['index']} "
        f"--models 1 -o again\n")


# ---------------------------------------------------------------------------
# a campaign on Dask
# ---------------------------------------------------------------------------

def _read_results(path: Path) -> dict:
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                done[int(r["index"])] = r
            except (ValueError, KeyError):
                continue    # a line cut short by an interruption
    return done


def run_campaign(out: Path, *, models: int, seed: int = 0, start: int = 0, vectors: int = 1000,
                 simulator: str = "verilator", engine: str = "batch", jobs: int = 2,
                 scheduler: str | None = None) -> dict:
    """Run cases ``start .. start + models - 1`` of campaign ``seed`` (see the module docstring);
    returns the summary (also written to ``OUT/summary.json`` and ``OUT/summary.md``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    done = {k: r for k, r in _read_results(results_path).items() if r.get("seed") == seed}
    todo = [k for k in range(start, start + models) if k not in done]
    t0 = time.perf_counter()
    if todo:
        with dask_client(scheduler, jobs, "rtlgen regress") as client:
            futures = [client.submit(run_case, random_case(seed, k), vectors, simulator, str(out), engine=engine,
                                     key=f"case-{seed}-{k}", pure=False) for k in todo]
            bar = progress.counter(f"regress: {len(todo)} models x {vectors} vectors ({len(done)} done before)",
                                   total=len(todo), unit="models")
            ok = False
            try:
                with open(results_path, "a") as sink:
                    def keep(k: int, r: dict) -> None:
                        done[r["index"]] = r
                        sink.write(json.dumps(r) + "\n")
                        sink.flush()
                        bar.update(1)
                    gather_as_done(client, futures, keep)
                ok = True
            finally:
                bar.close(ok=ok)
    chosen = [done[k] for k in range(start, start + models) if k in done]
    summary = summary_table(chosen)
    summary.update(seed=seed, models=models, start=start, vectors_per_case=vectors, simulator=simulator, engine=engine,
                   seconds=round(time.perf_counter() - t0, 1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(summary["markdown"])
    return summary


def summary_table(results: list) -> dict:
    """Counts by kind and status, the vectors compared, and a markdown table (failures listed)."""
    kinds = sorted({r["kind"] for r in results})
    statuses = ("pass", "fail", "error", "refused")
    counts = {k: {s: sum(1 for r in results if r["kind"] == k and r["status"] == s) for s in statuses} for k in kinds}
    lines = ["| kind | pass | fail | error | refused | vectors |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for k in kinds:
        vec = sum(r["vectors"] for r in results if r["kind"] == k)
        lines.append(f"| {k} | " + " | ".join(str(counts[k][s]) for s in statuses) + f" | {vec:,} |")
    bad = [r for r in results if r["status"] in ("fail", "error")]
    if bad:
        lines += ["", "Failures (reproducers in failures/case_<index>/):", ""]
        lines += [f"- case {r['index']} ({r['kind']}): {r['status']}: {r['message']}" for r in bad]
    return {"counts": counts, "failed": len(bad), "vectors": sum(r["vectors"] for r in results),
            "mismatches": sum(r["mismatches"] for r in results), "markdown": "\n".join(lines) + "\n"}
