"""The batch engine (a compiled Verilator C++ testbench, or a Verilog one on Icarus): word packing,
every core kind against the golden model and the cocotb bench on both simulators, protocol checks,
the build cache, ``rtlgen sim --engine`` and runs split over Dask."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.cli import assert_one_line_error, run_cli
from helpers.forests import chain_tree, full_tree, leaf_tree
from helpers.sims import on_simulators
from rtlgen.cli import sim_engine
from rtlgen.errors import RtlgenError
from rtlgen.flows.batch_sim import (BATCH_MIN_VECTORS, cache_root, harness_source, pack_words, run_batch,
                                    unpack_words, verilog_harness_source)
from rtlgen.flows.split_sim import SPLIT_MIN_VECTORS, run_split, should_split
from rtlgen.flows.sim import run_sim
from rtlgen.frontends.python_api import mlp
from rtlgen.golden import forest as forest_golden
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config
from rtlgen.ir.conv import Conv
from rtlgen.ir.forest import Forest
from rtlgen.ir.forest_config import quantize_forest
from rtlgen.ir.model import Activation, Dense, FloatModel
from rtlgen.kinds import save_build


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_pack_and_unpack_are_inverse(data):
    width = data.draw(st.integers(1, 64))
    count = data.draw(st.integers(1, 9))
    signed = data.draw(st.booleans())
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, min((1 << width) - 1, (1 << 63) - 1))
    rows = data.draw(st.lists(st.lists(st.integers(lo, hi), min_size=count, max_size=count), min_size=1, max_size=5))
    codes = np.array(rows, dtype=np.int64)
    words = pack_words(codes, width)
    assert words.shape == (len(rows), max(1, -(-count * width // 32)))
    # the words hold element k at bits [k*width, (k+1)*width), two's complement
    for r, row in enumerate(rows):
        value = sum(int(c) << (32 * i) for i, c in enumerate(words[r]))
        assert value == sum((v & ((1 << width) - 1)) << (k * width) for k, v in enumerate(row))
    assert np.array_equal(unpack_words(words, width, count, signed), codes)


@pytest.mark.parametrize("width", [1, 31, 32, 33, 63, 64])
def test_extreme_codes_survive_packing(width):
    """The widest signed codes (63 bits: the sign must reach bit 63 of the int64) and unsigned ones."""
    signed = np.array([[-(1 << (width - 1)), (1 << (width - 1)) - 1, -1, 0]], dtype=np.int64)
    assert np.array_equal(unpack_words(pack_words(signed, width), width, 4, True), signed)
    top = (1 << width) - 1 if width < 64 else (1 << 63) - 1
    unsigned = np.array([[0, top, 1, top >> 1]], dtype=np.int64)
    assert np.array_equal(unpack_words(pack_words(unsigned, width), width, 4, False), unsigned)


def test_harness_reads_wide_ports_by_chunks():
    manifest = {"top": "wide", "ports": {"clk": 1, "rst": 1, "in_valid": 1, "in_ready": 1, "in_data": 100,
                                         "out_valid": 1, "out_data": 40, "cfg_we": 1, "scl_i": 1}}
    src = harness_source(manifest)
    assert "for (int i = 0; i < 4; ++i) top->in_data[i] = w[i];" in src
    assert "w[0] = (uint32_t)top->out_data; w[1] = (uint32_t)(top->out_data >> 32);" in src
    assert "top->cfg_we = 0;" in src and "top->scl_i = 1;" in src and "cfg_addr" not in src
    src = verilog_harness_source({**manifest, "latency": 7, "ii": 2})
    assert "localparam IW = 100, OW = 40, RING = 7;" in src
    assert "reg [0:0] cfg_we;" in src and "cfg_we = 0;" in src and "scl_i = 1;" in src and "cfg_addr" not in src
    assert ".cfg_we(cfg_we), .scl_i(scl_i));" in src


# -- every core kind: batch engine == golden model == cocotb bench ------------------------------------

def _tmr_mlp():
    rng = np.random.default_rng(1)
    model = mlp([rng.normal(0, 1, (5, 7)), rng.normal(0, 1, (7, 3))], [rng.normal(0, 1, 7), rng.normal(0, 1, 3)],
                activations="relu", name="tmr_mlp")
    cfg = {"input": "fixed<6,2,RND,SAT>", "default": {"weight": "fixed<5,1,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                                                      "result": "fixed<9,4,RND_CONV,SAT>"},
           "layers": {model.layers[0].name: {"storage": "tmr", "reuse_factor": 3}}}
    return apply_config(model, cfg)


def _stream_cnn():
    rng = np.random.default_rng(2)
    conv = Conv("c", rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), (2, 5, 5), (1, 1), (1, 1, 1, 1))
    dense = Dense("d", rng.normal(size=(conv.n_out, 4)), rng.normal(size=4))
    model = FloatModel("stream_cnn", 50, [conv, Activation("r", "relu"), dense], input_shape=(2, 5, 5))
    cfg = {"input": "fixed<6,2,RND,SAT>", "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,4,RND,SAT>",
                                                      "result": "fixed<9,4,RND_CONV,SAT>"},
           "layers": {"c": {"io": "stream", "reuse_factor": 2}}}
    return apply_config(model, cfg)


def _forest():
    rng = np.random.default_rng(5)
    trees = [chain_tree(rng, 6, 5, 0), full_tree(rng, 6, 3, 0), full_tree(rng, 6, 2, 1), leaf_tree(0.5, 1)]
    forest = Forest("forest", 6, 2, trees, [0.1, -0.2], "le_f64")
    return quantize_forest(forest, {"input": "fixed<7,3,RND,SAT>", "score": "fixed<9,3,RND,SAT>",
                                    "pipeline": "per_level", "reuse_factor": 2})


CORES = {"tmr_mlp": (_tmr_mlp, predict_codes), "stream_cnn": (_stream_cnn, predict_codes),
         "forest": (_forest, forest_golden.predict_codes)}


@pytest.fixture(scope="module")
def cores(build_cache):
    def make(case, outdir):
        make_model, golden = CORES[case]
        q = make_model()
        save_build(q, outdir)
        rng = np.random.default_rng(len(case))
        t = q.input_type
        x = rng.integers(t.min_code, t.max_code + 1, (3000, q.n_in))
        x[0], x[1] = t.min_code, t.max_code
        return outdir, x, golden(q, x)
    return build_cache(make)


@pytest.mark.sim
# the streamed CNN on the Verilator batch engine also runs in test_stream's Verilator case and in
# test_cli_sim_on_the_batch_engine; the forest's batch run here is on Icarus (on Verilator in
# make test-long), and a forest meets Verilator in test_bdt_rtl
@pytest.mark.parametrize("case,simulator", on_simulators(sorted(CORES), verilator=("tmr_mlp",)))
def test_batch_engine_equals_golden_and_the_cocotb_bench(cores, case, simulator, tmp_path):
    outdir, x, expected = cores(case)
    if simulator == "icarus":       # an event-driven simulator: fewer vectors (a streamed frame is 16 cycles)
        n = 50 if case == "stream_cnn" else 400
        x, expected = x[:n], expected[:n]
    out, figures = run_batch(outdir, x, expected, gap=0.3, seed=4, simulator=simulator)
    assert np.array_equal(out, expected)
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert figures["wrong_latency"] == 0 and figures["latency_min"] == figures["latency_max"] == manifest["latency"]
    assert figures["min_spacing"] >= manifest.get("ii", 1) and figures["accepted"] == len(x)
    if simulator == "icarus":   # the cocotb bench agrees (once per core)
        cocotb = run_sim(outdir, x[:40], simulator="icarus", expected=expected[:40], work_dir=tmp_path / "sim")
        assert np.array_equal(cocotb, out[:40])


@pytest.mark.sim
def test_icarus_batch_starts_every_process_of_the_core(tmp_path):
    """A weight ROM read on the first cycle after reset: its address comes from an ``always @*``
    block that only an event on ``rst`` starts (Icarus, IEEE 1800 declarations), so the testbench
    must give one, as the cocotb bench does; else the first output has unknown bits."""
    rng = np.random.default_rng(9)
    model = mlp([rng.normal(0, 1, (4, 3))], [rng.normal(0, 1, 3)], activations="relu", name="rom_first")
    q = apply_config(model, {"input": "fixed<6,2,RND,SAT>",
                             "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                                         "result": "fixed<10,4,RND,SAT>", "reuse_factor": "full",
                                         "weight_rom": "bram", "arithmetic": "multipliers"}})
    save_build(q, tmp_path / "core")
    t = q.input_type
    x = np.random.default_rng(3).integers(t.min_code, t.max_code + 1, (50, 4))
    out, _ = run_batch(tmp_path / "core", x, predict_codes(q, x), gap=0.0, simulator="icarus")
    assert np.array_equal(out, predict_codes(q, x))


@pytest.mark.sim
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_protocol_errors_and_mismatches_are_named(cores, simulator, tmp_path):
    outdir, x, expected = cores("tmr_mlp")
    n = 3000 if simulator == "verilator" else 300
    wrong = expected[:n].copy()
    wrong[7, 1] += 1
    with pytest.raises(RtlgenError, match=rf"1 of {n} vectors differ from the golden model; first: vector 7"):
        run_batch(outdir, x[:n], wrong, simulator=simulator)
    # a manifest that promises another latency: every result is late or early
    liar = tmp_path / "liar"
    shutil.copytree(outdir, liar)
    manifest = json.loads((liar / "manifest.json").read_text())
    manifest["latency"] += 1
    (liar / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RtlgenError, match=r"protocol error.*vector 0: accepted at cycle \d+, out_valid at cycle \d+: "
                                          r"latency \d+, manifest says \d+"):
        run_batch(liar, x[:50], simulator=simulator)



@pytest.mark.sim
@pytest.mark.parametrize("simulator,product", [("verilator", "Vsim"), ("icarus", "sim.vvp")])
def test_a_second_run_reuses_the_compiled_testbench(cores, simulator, product):
    outdir, x, expected = cores("forest")
    run_batch(outdir, x[:10], expected[:10], simulator=simulator)
    built = sorted(p for p in cache_root().iterdir() if p.name.startswith("forest-") and (p / product).is_file())
    assert len(built) == 1
    stamp = (built[0] / product).stat().st_mtime_ns
    run_batch(outdir, x[:20], expected[:20], simulator=simulator)
    again = sorted(p for p in cache_root().iterdir() if p.name.startswith("forest-") and (p / product).is_file())
    assert again == built and (built[0] / product).stat().st_mtime_ns == stamp


def test_engine_choice():
    assert sim_engine("auto", BATCH_MIN_VECTORS) == "batch"
    assert sim_engine("auto", BATCH_MIN_VECTORS - 1) == "cocotb"
    assert sim_engine("auto", 10 * BATCH_MIN_VECTORS) == "batch"
    assert sim_engine("cocotb", 10) == "cocotb"
    assert sim_engine("batch", 10) == "batch"
    assert not should_split("batch", SPLIT_MIN_VECTORS["batch"], 1, None)
    assert not should_split("batch", SPLIT_MIN_VECTORS["batch"] - 1, 2, None)
    assert should_split("batch", SPLIT_MIN_VECTORS["batch"], 2, None)
    assert should_split("cocotb", SPLIT_MIN_VECTORS["cocotb"], 1, "tcp://somewhere:8786")


@pytest.mark.sim
# make test runs regress, faults and sweep on Dask (test_regress, test_dask_flows, test_synth_lint)
@pytest.mark.long
def test_a_run_split_over_dask_equals_one_run(cores):
    """Chunks on a local cluster (batch, Verilator) come back in order, equal to the golden model."""
    outdir, x, expected = cores("stream_cnn")
    out, figures = run_split(outdir, x, engine="batch", simulator="verilator", gap=0.2, jobs=2, chunks=5)
    assert np.array_equal(out, expected) and figures["chunks"] == 5 and figures["workers"] == 2


@pytest.mark.sim
@pytest.mark.long   # a scheduler given by address also runs rtlgen faults and sweep in test_dask_flows
def test_cocotb_chunks_on_a_scheduler_given_by_address_equal_one_run(cores):
    """Chunks of the cocotb bench on Icarus, on a scheduler given by address, come back in order."""
    from dask.distributed import LocalCluster
    outdir, x, expected = cores("stream_cnn")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        out, figures = run_split(outdir, x[:90], engine="cocotb", simulator="icarus", gap=0.3,
                                 scheduler=cluster.scheduler_address)
    assert np.array_equal(out, expected[:90]) and figures["chunks"] == 2


@pytest.mark.sim
def test_cli_sim_on_the_batch_engine(cores, tmp_path):
    outdir, x, expected = cores("stream_cnn")
    np.save(tmp_path / "x.npy", x)
    res = run_cli("sim", outdir, tmp_path / "x.npy", "--raw", "--engine", "batch", "-o", tmp_path / "y.npy")
    assert res.returncode == 0, res.stderr
    assert "on verilator (batch engine" in res.stdout and "0 mismatches" in res.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), expected)
    np.save(tmp_path / "xi.npy", x[:200])
    res = run_cli("sim", outdir, tmp_path / "xi.npy", "--raw", "--engine", "batch", "--simulator", "icarus",
                  "-o", tmp_path / "yi.npy")
    assert res.returncode == 0, res.stderr
    assert "on icarus (batch engine" in res.stdout and "0 mismatches" in res.stdout
    assert np.array_equal(np.load(tmp_path / "yi.npy"), expected[:200])
    res = run_cli("sim", outdir, tmp_path / "x.npy", "--raw", "--engine", "batch", "--gap", "1.5",
                  "-o", tmp_path / "y2.npy")
    assert "--gap must be in [0, 1)" in assert_one_line_error(res)
