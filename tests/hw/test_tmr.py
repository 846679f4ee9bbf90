"""Stored parameters (register, TMR) and the configuration bus.

Amaranth-simulator checks of the storage words and of whole cores
(reset values, programming and read-back through the bus, unmapped
writes, scrubbing), configuration errors, and the cocotb benches
(``sims/test_config_bus.py``: write/read-back/inference and the fault
injection campaign) on Icarus and Verilator.
"""

from __future__ import annotations

import json
from math import prod

import numpy as np
import pytest

from rtlgen.cli import main as cli_main
from rtlgen.kinds import save_build
from rtlgen.emit.regmap import ConfigDriver, regmap_for
from rtlgen.emit.verilog import network_verilog
from rtlgen.errors import RtlgenError
from rtlgen.flows.faults import run_config_bench
from rtlgen.flows.lint import lint_build
from rtlgen.flows.sim import run_sim
from rtlgen.frontends.python_api import mlp
from rtlgen.golden.network import predict_codes
from rtlgen.hw.network import Network
from rtlgen.hw.storage import (CLEAR_ADDR, ERROR_COUNT_ADDR, STATUS_ADDR, RegisterWord, TmrWord,
                               bus_layout)
from rtlgen.ir.config import apply_config
from rtlgen.ir.conv import Conv
from rtlgen.ir.model import Activation, Dense, FloatModel, QModel
from rtlgen.numerics.fixed import parse_type

from helpers.bus import AmaranthBus, check_bus_bench, program_and_infer
from helpers.core import infer, run
from helpers.i2c import I2CMaster
from helpers.paths import ROOT
from helpers.sims import SIMULATORS, on_simulators

BASE = {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,3,RND,SAT>", "result": "fixed<10,4,RND,SAT>"}


def small_mlp(storage="tmr", reuse=1, tmr_bits=None, accum=None, seed=3):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0, 1, (4, 5)), rng.normal(0, 1, (5, 3))]
    ws[0][rng.random(ws[0].shape) < 0.35] = 0.0   # trained zeros must stay programmable
    model = mlp(ws, [rng.normal(0, 1, 5), rng.normal(0, 1, 3)], activations="relu", name="tmr_mlp")
    default = {**BASE, "reuse_factor": reuse, "storage": storage}
    if tmr_bits is not None:
        default["tmr_bits"] = tmr_bits
    if accum:
        default["accum"] = accum
    return apply_config(model, {"input": "fixed<7,3,RND,SAT>", "default": default})


def small_cnn(storage="tmr", reuse=1, seed=5):
    rng = np.random.default_rng(seed)
    conv = Conv("conv", rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), (1, 5, 5), (2, 2), (1, 1, 1, 1))
    dense = Dense("fc", rng.normal(size=(conv.n_out, 3)), rng.normal(size=3))
    layers = [conv, Activation("relu", "relu", conv.n_out), dense]
    fm = FloatModel("tmr_cnn", prod(conv.in_shape), layers, input_shape=conv.in_shape)
    return apply_config(fm, {"input": "fixed<6,2,RND,SAT>",
                             "default": {**BASE, "reuse_factor": reuse, "storage": storage},
                             "layers": {"fc": {"storage": "register"}}})


def random_codes(model: QModel, seed: int) -> dict:
    """New parameter codes for every stored layer (zeros where trained weights are not)."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer in model.layers:
        if getattr(layer, "stored", False):
            w, b = layer.param_codes()
            wt, bt = layer.weight_type, layer.bias_type
            nw = rng.integers(wt.min_code, wt.max_code + 1, size=w.shape)
            nw[w != 0] = np.where(rng.random(int(np.count_nonzero(w))) < 0.3, 0, nw[w != 0])
            out[layer.name] = (nw, rng.integers(bt.min_code, bt.max_code + 1, size=b.shape))
    return out


def inputs(model: QModel, n: int, seed: int) -> np.ndarray:
    t = model.input_type
    rng = np.random.default_rng(seed)
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, model.n_in))
    x[0], x[1] = t.max_code, t.min_code
    return x


# ---------------------------------------------------------------------------
# Amaranth simulator
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["register", "tmr"])
@pytest.mark.parametrize("maker,reuse", [(small_mlp, 1), (small_mlp, 3), (small_mlp, "full"), (small_cnn, 1),
                                         (small_cnn, 4)])
def test_program_readback_infer_amaranth(maker, reuse, storage):
    q = maker(storage=storage, reuse=reuse)
    net = Network(q)
    driver = ConfigDriver(regmap_for(q))
    new_codes = random_codes(q, seed=11)
    q2 = driver.model_with(q, new_codes)
    x = inputs(q, 12, seed=2)
    got = program_and_infer(net, driver, q2, x)
    assert np.array_equal(got["reset_out"], predict_codes(q, x))
    for layer in q.layers:
        if getattr(layer, "stored", False):
            w, b = layer.param_codes()
            assert np.array_equal(got["reset_params"][layer.name][0], w)
            assert np.array_equal(got["reset_params"][layer.name][1], b)
            assert np.array_equal(got["params"][layer.name][0], new_codes[layer.name][0])
            assert np.array_equal(got["params"][layer.name][1], new_codes[layer.name][1])
    expected = predict_codes(q2, x)
    assert not np.array_equal(expected, predict_codes(q, x))   # the new weights matter
    assert np.array_equal(got["out"], expected)
    assert got["status"] == (False, 0)


def test_accumulator_type_with_stored_bias():
    q = small_mlp(storage="register", reuse=2, accum="fixed<12,5,RND,WRAP>")
    net = Network(q)
    driver = ConfigDriver(regmap_for(q))
    q2 = driver.model_with(q, random_codes(q, seed=4))
    x = inputs(q, 10, seed=9)
    got = {}

    async def bench(ctx):
        await driver.program(AmaranthBus(ctx, net), q2)
        got["out"] = await infer(ctx, net, x)

    run(net, bench)
    assert np.array_equal(got["out"], predict_codes(q2, x))


def test_unmapped_writes_are_ignored_amaranth():
    q = small_mlp(storage="tmr")
    net = Network(q)
    driver = ConfigDriver(regmap_for(q))
    mapped = set(driver.addresses()) | {CLEAR_ADDR}
    end = regmap_for(q)["end_addr"]
    unmapped = [a for a in list(range(0, end + 40)) + [0x7FFF, 0xFFFF] if a not in mapped]
    x = inputs(q, 6, seed=1)
    got = {}

    async def bench(ctx):
        bus = AmaranthBus(ctx, net)
        for a in unmapped:
            await bus.write(a, 0xA5)
        got["params"] = await driver.read_params(bus)
        got["reads"] = [await bus.read(a) for a in unmapped if a not in (STATUS_ADDR, ERROR_COUNT_ADDR)]
        got["out"] = await infer(ctx, net, x)

    run(net, bench)
    for layer in q.layers:
        if getattr(layer, "stored", False):
            w, b = layer.param_codes()
            assert np.array_equal(got["params"][layer.name][0], w)
            assert np.array_equal(got["params"][layer.name][1], b)
    assert set(got["reads"]) == {0}
    assert np.array_equal(got["out"], predict_codes(q, x))


def test_scrub_counter_flag_and_clear_amaranth():
    """Flip a copy: the datapath never sees it, the copy is rewritten on the
    next edge, flag and counter follow; a double flip is detected, not corrected."""
    q = small_mlp(storage="tmr", tmr_bits=4)
    net = Network(q)
    x = inputs(q, 4, seed=3)
    got = {}

    async def bench(ctx):
        bank = net.layers[0].bank
        bus = AmaranthBus(ctx, net)
        regs = bank.regs["w3"]
        good = ctx.get(regs["copies"][1])
        ctx.set(regs["copies"][1], good ^ 0b0100)
        got["mm_before_edge"] = ctx.get(bank.weights[3])
        await ctx.tick()
        got["after_one_edge"] = [ctx.get(c) for c in regs["copies"]]
        await ctx.tick()
        got["status"] = await ConfigDriver(regmap_for(q)).status(bus)
        await bus.write(CLEAR_ADDR, 0)
        got["cleared"] = await ConfigDriver(regmap_for(q)).status(bus)
        got["out"] = await infer(ctx, net, x)
        # same bit in two copies: the vote follows the majority (wrong), flagged
        ctx.set(regs["copies"][0], good ^ 0b1000)
        ctx.set(regs["copies"][2], good ^ 0b1000)
        await ctx.tick()
        got["double"] = [ctx.get(c) for c in regs["copies"]]
        await ctx.tick()
        got["double_status"] = await ConfigDriver(regmap_for(q)).status(bus)
        got["good"] = good

    run(net, bench)
    w3 = int(q.layers[0].param_codes()[0][3])
    assert got["mm_before_edge"] == w3
    assert got["after_one_edge"] == [got["good"]] * 3
    assert got["status"] == (True, 1)
    assert got["cleared"] == (False, 0)
    assert np.array_equal(got["out"], predict_codes(q, x))
    assert got["double"] == [got["good"] ^ 0b1000] * 3
    assert got["double_status"] == (True, 1)


@pytest.mark.parametrize("protected", [None, 3])
def test_tmr_word_unit(protected):
    t = parse_type("fixed<6,2>")
    dut = TmrWord(t, -7, protected)
    seen = {}

    async def bench(ctx):
        copies = dut.regs["word"]["copies"]
        seen["reset"] = ctx.get(dut.value)
        ctx.set(copies[2], ctx.get(copies[2]) ^ 1)
        seen["value_during"] = ctx.get(dut.value)
        seen["mismatch"] = ctx.get(dut.mismatch)
        await ctx.tick()
        seen["mismatch_after"] = ctx.get(dut.mismatch)
        seen["copies"] = [ctx.get(c) for c in copies]
        ctx.set(dut.wdata, 0b011011)
        ctx.set(dut.we, 1)
        await ctx.tick()
        ctx.set(dut.we, 0)
        seen["written"] = ctx.get(dut.value)

    run(dut, bench)
    assert seen["reset"] == -7 and seen["value_during"] == -7
    assert seen["mismatch"] == 1 and seen["mismatch_after"] == 0
    assert len(set(seen["copies"])) == 1
    assert seen["written"] == 0b011011


def test_register_word_unit():
    dut = RegisterWord(parse_type("ufixed<5,1>"), 19)
    seen = {}

    async def bench(ctx):
        seen["reset"] = ctx.get(dut.value)
        ctx.set(dut.wdata, 4)
        await ctx.tick()
        seen["no_we"] = ctx.get(dut.value)
        ctx.set(dut.we, 1)
        await ctx.tick()
        seen["written"] = ctx.get(dut.value)

    run(dut, bench)
    assert seen == {"reset": 19, "no_we": 19, "written": 4}


# ---------------------------------------------------------------------------
# configuration, layout, driver
# ---------------------------------------------------------------------------

def test_constant_storage_has_no_bus():
    q = small_mlp(storage="constant")
    assert bus_layout(q) is None and regmap_for(q) is None
    text = network_verilog(Network(q), "top")
    assert "cfg_addr" not in text and "in_valid" in text


def test_structure_counts_every_position():
    q = small_mlp(storage="register")
    assert q.layers[0].positions == 20 and q.layers[0].nonzero < 20
    c = small_cnn(storage="register").layers[0]
    windex, bindex = c.param_index()
    # 3x3 kernel, stride 2, pad 1 on 5x5: corner windows lose the padding taps
    assert windex.max() == 17 and c.positions == int(np.count_nonzero(windex >= 0)) < 9 * 2 * 9
    assert list(bindex) == [0] * 9 + [1] * 9


def test_model_json_round_trip_keeps_storage():
    q = small_cnn(storage="tmr")
    q2 = QModel.from_dict(json.loads(json.dumps(q.to_dict())))
    assert [getattr(l, "storage", None) for l in q2.layers] == ["tmr", None, "register"]
    assert regmap_for(q2) == regmap_for(q)


def test_driver_words_round_trip():
    q = small_mlp(storage="tmr")
    driver = ConfigDriver(regmap_for(q))
    writes = driver.writes(q)
    codes = driver.codes_from_words(dict(writes))
    w, b = q.layers[0].param_codes()
    assert np.array_equal(codes["dense_0"][0], w) and np.array_equal(codes["dense_0"][1], b)
    assert driver.encode(-1, "fixed<6,2>") == 0b111111
    assert driver.word_bytes(0x1234 & 0xFF) == b"\x34"
    assert len({a for a, _ in writes}) == len(writes)


@pytest.mark.parametrize("cfg,message", [
    ({"storage": "flash"}, "storage must be one of constant, register, tmr"),
    ({"storage": "tmr", "tmr_bits": 0}, "tmr_bits must be an integer from 1 to 8"),
    ({"storage": "tmr", "tmr_bits": 9}, "tmr_bits must be an integer from 1 to 8"),
    ({"storage": "register", "tmr_bits": 3}, "tmr_bits applies only with storage: tmr"),
    ({"storage": "tmr", "reuse_factor": 21}, "20 weight positions"),
])
def test_bad_storage_config(cfg, message):
    model = mlp([np.ones((4, 5))], [np.zeros(5)], activations="relu", name="m")
    with pytest.raises(RtlgenError, match=message) as info:
        apply_config(model, {"input": "fixed<7,3>", "default": BASE,
                             "layers": {"dense_0": cfg}})
    assert "dense_0" in str(info.value)


def test_cli_build_writes_regmap_and_bad_storage_exits_2(tmp_path, capsys):
    root = ROOT
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((root / "models" / "econt_encoder.yaml").read_text().replace(
        "layers: {}", 'layers: {"/dense/Gemm": {storage: bogus}}'))
    out = tmp_path / "core"
    rc = cli_main(["build", str(root / "models" / "econt_encoder.onnx"), "-c", str(cfg), "-o", str(out)])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "/dense/Gemm" in err and "storage must be one of" in err
    cfg.write_text((root / "models" / "econt_encoder.yaml").read_text().replace(
        "layers: {}", 'layers: {"/conv/Conv": {storage: tmr, tmr_bits: 3},'
                      ' "/dense/Gemm": {arithmetic: multipliers, reuse_factor: 16}}'))
    rc = cli_main(["build", str(root / "models" / "econt_encoder.onnx"), "-c", str(cfg), "-o", str(out)])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    regmap = json.loads((out / "regmap.json").read_text())
    assert manifest["ports"]["cfg_wdata"] == regmap["data_width"] == 8
    assert manifest["config_bus"]["layers"][0]["weights"]["count"] == 72
    assert len(regmap["words"]) == 72 + 8 and (out / "regmap.md").is_file()


# ---------------------------------------------------------------------------
# cocotb on Icarus and Verilator
# ---------------------------------------------------------------------------

SIM_CASES = {
    # every (word, copy, bit) of the triplicated top 4 bits: 43 words x 4 bits x 3 copies
    "mlp_tmr4": lambda: small_mlp(storage="tmr", tmr_bits=4),
    # TMR conv kernel (every tap reachable from the unrolled matrix), register dense, II 2
    "cnn_tmr_r2": lambda: small_cnn(storage="tmr", reuse=2),
}


@pytest.fixture(scope="module")
def sim_built(bus_cores):
    return bus_cores(SIM_CASES, save_build)


@pytest.mark.sim
# in make test the fault campaign and the bus meet Verilator in test_bdt_storage (a forest's TMR
# words), and this TMR MLP (its bus idle) runs on Verilator in test_batch_sim; the MLP's Verilator
# campaign and its generic bench are in make test-long
@pytest.mark.parametrize("case,simulator", on_simulators(list(SIM_CASES)))
def test_config_bus_and_faults_cocotb(sim_built, case, simulator, tmp_path):
    q, outdir, regmap, plan = sim_built(case)
    res = run_config_bench(outdir, plan, simulator, work_dir=tmp_path / "sim")
    check_bus_bench(res, plan, regmap)


@pytest.mark.sim
@pytest.mark.parametrize("simulator", [pytest.param(s, marks=[pytest.mark.long] if s == "verilator" else [])
                                       for s in SIMULATORS])
def test_generic_bench_runs_a_core_with_a_bus(sim_built, simulator, tmp_path):
    """sims/test_core.py keeps the bus idle: the trained parameters infer exactly."""
    q, outdir, _, plan = sim_built("mlp_tmr4")
    x = inputs(q, 40, seed=8)
    expected = predict_codes(q, x)
    got = run_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


# ---------------------------------------------------------------------------
# I2C in front of the bus
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bias,data_width", [("fixed<8,3,RND,SAT>", 8), ("fixed<12,3,RND,SAT>", 16)])
def test_i2c_write_and_read_back_one_word(bias, data_width):
    cfg_i2c = {"address": 0x42, "clk_hz": 4e6}
    model = mlp([np.ones((4, 5))], [np.zeros(5)], activations="relu", name="m")
    q = apply_config(model, {"input": "fixed<7,3,RND,SAT>", "i2c": cfg_i2c,
                             "default": {**BASE, "bias": bias, "storage": "tmr"}})
    net = Network(q)
    assert {"scl_i", "sda_i", "sda_oe"} <= set(net.signature.members) and "cfg_addr" not in net.signature.members
    regmap = regmap_for(q)
    assert regmap["data_width"] == data_width
    driver = ConfigDriver(regmap)
    word = regmap["words"][7]
    new_code = -5
    data = driver.i2c_payload(word["addr"], [driver.encode(new_code, word["type"])])
    got = {}

    async def bench(ctx):
        i2c = I2CMaster(ctx, net)
        await i2c.idle()
        got["write_acks"] = await i2c.write(0x42, data)
        got["stored"] = ctx.get(net.layers[0].bank.weights[word["index"]])
        await i2c.start()
        acks = [await i2c.send(0x42 << 1)] + [await i2c.send(b) for b in data[:2]]
        await i2c.start()
        acks.append(await i2c.send((0x42 << 1) | 1))
        n = data_width // 8
        got["read"] = driver.word_from_bytes([await i2c.receive(ack=k < n - 1) for k in range(n)])
        await i2c.stop()
        got["read_acks"] = acks

    run(net, bench)
    assert all(got["write_acks"]) and all(got["read_acks"])
    assert got["stored"] == new_code
    assert driver.decode(got["read"], word["type"]) == new_code


@pytest.mark.sim
def test_i2c_core_builds_lints_and_infers_with_idle_pins(tmp_path):
    model = mlp([np.ones((4, 5)), np.ones((5, 2))], [np.zeros(5), np.ones(2)], activations="relu", name="m")
    # 10-bit biases: 16-bit bus words, two bytes per word on I2C
    q = apply_config(model, {"input": "fixed<7,3,RND,SAT>", "i2c": {"address": 0x42, "clk_hz": 4e6},
                             "default": {**BASE, "bias": "fixed<10,3,RND,SAT>", "storage": "tmr"}})
    outdir = tmp_path / "core"
    manifest = save_build(q, outdir)
    assert {"scl_i", "sda_i", "sda_oe"} <= set(manifest["ports"]) and "cfg_addr" not in manifest["ports"]
    assert manifest["config_bus"]["i2c"]["address"] == 0x42 and manifest["config_bus"]["data_width"] == 16
    assert QModel.from_dict(json.loads((outdir / "model.json").read_text())).i2c == q.i2c
    assert lint_build(outdir) == []
    x = inputs(q, 20, seed=4)
    expected = predict_codes(q, x)
    assert np.array_equal(run_sim(outdir, x, simulator="icarus", expected=expected, work_dir=tmp_path / "s"),
                          expected)


@pytest.mark.parametrize("i2c,message", [
    ({"address": 0x02}, "address must be a 7-bit I2C address"),
    ({"clk_hz": 1e6}, "must be a mapping with 'address'"),
    ({"address": 0x42, "speed": 1}, "allowed keys"),
])
def test_bad_i2c_config(i2c, message):
    model = mlp([np.ones((4, 5))], [np.zeros(5)], activations="relu", name="m")
    with pytest.raises(RtlgenError, match=message):
        apply_config(model, {"input": "fixed<7,3>", "i2c": i2c, "default": {**BASE, "storage": "tmr"}})
    with pytest.raises(RtlgenError, match="needs a configuration bus"):
        apply_config(model, {"input": "fixed<7,3>", "i2c": {"address": 0x42}, "default": BASE})


@pytest.mark.parametrize("protected", [6, 2])
def test_synthesis_keeps_three_copies(protected, tmp_path):
    """Yosys must not merge the copies (they share data, reset value and write enable)."""
    import shutil
    import subprocess

    from amaranth.back import verilog
    yosys = shutil.which("yosys")
    if yosys is None:
        pytest.skip("no native yosys")
    (tmp_path / "w.v").write_text(verilog.convert(TmrWord(parse_type("fixed<6,2>"), -7, protected),
                                                  name="w", emit_src=False))
    subprocess.run([yosys, "-q", "-p", "read_verilog w.v; synth -flatten -top w; tee -q -o stat.json stat -json"],
                   cwd=tmp_path, check=True, timeout=120)
    cells = json.loads((tmp_path / "stat.json").read_text())["modules"]["\\w"]["num_cells_by_type"]
    ffs = sum(n for kind, n in cells.items() if "DFF" in kind.upper())
    assert ffs == 3 * protected + (6 - protected)


@pytest.mark.parametrize("i2c", [False, True])
def test_pnr_wrapper_connects_the_bus(tmp_path, i2c):
    """The place-and-route pin wrapper drives every bus input and observes cfg_rdata."""
    from rtlgen.flows.lint import lint
    from rtlgen.flows.synth import pnr_wrapper
    q = small_mlp("tmr", tmr_bits=3)
    if i2c:
        q = apply_config(FloatModel("m", q.n_in, [Dense("d", np.ones((q.n_in, 2)) / 4, np.zeros(2))]),
                         {"input": "fixed<6,2,RND,SAT>", "i2c": {"address": 0x42, "clk_hz": 10e6},
                          "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                                      "result": "fixed<9,4,RND,SAT>", "storage": "register"}})
    manifest = save_build(q, tmp_path / "core")
    text = pnr_wrapper(manifest, name="pnr_top")
    assert (".scl_i(scl_i)" in text) == i2c and (".cfg_we(cfg_we)" in text) == (not i2c)
    (tmp_path / "pnr_top.v").write_text(text)
    # lint the wrapper with the core: a missing or mis-sized connection is a PINMISSING/WIDTH finding
    combined = tmp_path / "pnr_top_all.v"
    combined.write_text(text + (tmp_path / "core" / manifest["verilog"]).read_text())
    assert lint(combined, "pnr_top", logdir=tmp_path / "lint") == []
