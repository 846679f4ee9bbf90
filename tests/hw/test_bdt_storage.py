"""Stored (register/TMR) thresholds and leaves of decision-forest cores.

Amaranth-simulator checks of whole forest cores (reset values, programming
and read-back through the configuration bus, inference against the golden
model of the programmed forest, scrubbing, I2C), the configuration and its
errors, the register map, and the cocotb bench of the bus with its fault
campaign (``sims/test_config_bus.py``) on Icarus and Verilator.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtlgen.cli import main as cli_main
from rtlgen.kinds import save_build as save_forest_build
from rtlgen.emit.regmap import ConfigDriver, regmap_for
from rtlgen.errors import RtlgenError
from rtlgen.flows.faults import random_params, run_config_bench
from rtlgen.flows.lint import lint_build
from rtlgen.flows.sim import run_sim
from rtlgen.golden.forest import predict_codes
from rtlgen.hw.forest import ForestCore
from rtlgen.hw.storage import CLEAR_ADDR, STATUS_ADDR
from rtlgen.ir.forest import Forest, QForest
from rtlgen.ir.forest_config import quantize_forest
from rtlgen.numerics.fixed import bits_for_range

from helpers.bus import AmaranthBus, check_bus_bench, program_and_infer
from helpers.core import infer, run
from helpers.forests import full_tree, leaf_tree
from helpers.i2c import I2CMaster
from helpers.sims import on_simulators

CFG = {"input": "fixed<7,3,RND,SAT>", "score": "fixed<9,3,RND,SAT>", "pipeline": "per_level",
       "class_output": True}


def small_forest(seed=7) -> Forest:
    """Two classes: full trees of depth 1-3 and a single-leaf tree."""
    rng = np.random.default_rng(seed)
    trees = [full_tree(rng, 5, 2, 0, spread=1.5), full_tree(rng, 5, 3, 1, spread=1.5),
             full_tree(rng, 5, 1, 0, spread=1.5), leaf_tree(0.5, 1), full_tree(rng, 5, 2, 1, spread=1.5)]
    return Forest("small", 5, 2, trees, [0.25, -0.5], "le_f64")


def edge_inputs(qf: QForest, n: int, seed: int) -> np.ndarray:
    t = qf.input_type
    rng = np.random.default_rng(seed)
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, qf.n_features))
    x[0], x[1], x[2] = t.max_code, t.min_code, 0
    return x


def forest(storage, **cfg) -> QForest:
    return quantize_forest(small_forest(), {**CFG, "storage": storage, **cfg})


# ---------------------------------------------------------------------------
# Amaranth simulator: program, read back, infer
# ---------------------------------------------------------------------------

CASES = {
    "tmr_both": dict(storage="tmr"),
    "tmr_thresholds_tables": dict(storage={"thresholds": "tmr"}),
    "register_leaves_reuse2": dict(storage={"leaves": "register"}, reuse_factor=2),
    "mixed_tmr_bits_none": dict(storage={"thresholds": "register", "leaves": "tmr"}, tmr_bits={"leaves": 4},
                                pipeline="none"),
    "tmr_both_reuse3_mux": dict(storage="tmr", tmr_bits=5, reuse_factor=3, table_bits=0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_program_readback_infer_amaranth(case):
    qf = forest(**CASES[case])
    core = ForestCore(qf)
    regmap = regmap_for(qf)
    driver = ConfigDriver(regmap)
    new = random_params(regmap, seed=3)
    qf2 = driver.model_with(qf, new)
    x = edge_inputs(qf, 40, seed=1)
    got = program_and_infer(core, driver, qf2, x)
    assert np.array_equal(got["reset_out"], predict_codes(qf, x))
    for ps in qf.param_sets():
        for k, group in enumerate(ps.groups):
            assert list(got["reset_params"][ps.name][k]) == list(group.codes)
            assert np.array_equal(got["params"][ps.name][k], new[ps.name][k])
    expected = predict_codes(qf2, x)
    assert not np.array_equal(expected, predict_codes(qf, x))   # the new values matter
    assert np.array_equal(got["out"], expected)
    assert got["status"] == (False, 0)


def test_extreme_programmed_values_are_exact():
    """Every leaf and base at its type's extreme, thresholds at both ends of
    their range (always left / always right): the wider default result type
    and the adder widths hold every programmable sum exactly."""
    qf = forest("register")
    driver = ConfigDriver(regmap_for(qf))
    x = edge_inputs(qf, 30, seed=2)
    s, b, t = qf.score_type, qf.base_type, qf.input_type
    for leaf, base, cut in ((s.max_code, b.max_code, t.max_code + 1), (s.min_code, b.min_code, t.min_code)):
        sets = {ps.name: ps for ps in qf.param_sets()}
        codes = {"thresholds": (np.full(len(sets["thresholds"].groups[0].codes), cut),),
                 "leaves": (np.full(len(sets["leaves"].groups[0].codes), leaf), np.full(qf.n_outputs, base))}
        qf2 = driver.model_with(qf, codes)
        core = ForestCore(qf)
        got = {}

        async def bench(ctx):
            await driver.program(AmaranthBus(ctx, core), qf2)
            got["out"] = await infer(ctx, core, x)

        run(core, bench)
        expected = predict_codes(qf2, x)
        assert np.array_equal(got["out"], expected)
        for k in range(qf.n_outputs):       # no saturation: the sum is exact
            lo, hi = qf2.sum_range(k)
            assert qf.result_type.min_code <= lo and hi <= qf.result_type.max_code


def test_scrub_threshold_and_leaf_words_amaranth():
    qf = forest("tmr", tmr_bits=6)
    core = ForestCore(qf)
    driver = ConfigDriver(regmap_for(qf))
    x = edge_inputs(qf, 12, seed=4)
    got = {}

    async def bench(ctx):
        bus = AmaranthBus(ctx, core)
        for bank, name in ((core.banks["thresholds"], "t2"), (core.banks["leaves"], "l5")):
            copies = bank.regs[name]["copies"]
            good = ctx.get(copies[0])
            ctx.set(copies[2], good ^ 0b100)
            await ctx.tick()
            got.setdefault("scrubbed", []).append([ctx.get(c) for c in copies] == [good] * 3)
        await ctx.tick()
        got["status"] = await driver.status(bus)
        await bus.write(CLEAR_ADDR, 0)
        got["cleared"] = await driver.status(bus)
        got["out"] = await infer(ctx, core, x)

    run(core, bench)
    assert got["scrubbed"] == [True, True]
    assert got["status"] == (True, 2) and got["cleared"] == (False, 0)
    assert np.array_equal(got["out"], predict_codes(qf, x))


def test_i2c_programs_a_forest_threshold():
    qf = forest({"thresholds": "tmr"}, i2c={"address": 0x31, "clk_hz": 4e6})
    core = ForestCore(qf)
    assert {"scl_i", "sda_i", "sda_oe"} <= set(core.signature.members)
    driver = ConfigDriver(regmap_for(qf))
    word = next(w for w in driver.regmap["words"] if w["kind"] == "threshold" and w["index"] == 3)
    data = driver.i2c_payload(word["addr"], [driver.encode(-17, word["type"])])
    got = {}

    async def bench(ctx):
        i2c = I2CMaster(ctx, core)
        await i2c.idle()
        got["acks"] = await i2c.write(0x31, data)
        got["stored"] = ctx.get(core.banks["thresholds"].thresholds[3])

    run(core, bench)
    assert all(got["acks"]) and got["stored"] == -17


# ---------------------------------------------------------------------------
# configuration, register map
# ---------------------------------------------------------------------------

def test_stored_thresholds_keep_the_trained_shape():
    """A threshold outside the input range prunes its node in a constant core
    but keeps it (clamped: always left/right) when thresholds are stored."""
    f = small_forest()
    f.trees[0].threshold[0] = 100.0          # above fixed<7,3>'s range: always left
    const = quantize_forest(f, CFG)
    stored = quantize_forest(f, {**CFG, "storage": {"thresholds": "register"}})
    assert len(stored.trees[0].feature) == f.trees[0].n_nodes
    assert len(const.trees[0].feature) < f.trees[0].n_nodes
    assert stored.trees[0].cut[0] == stored.input_type.max_code + 1
    x = edge_inputs(const, 200, seed=5)
    assert np.array_equal(predict_codes(const, x), predict_codes(stored, x))


def test_stored_leaves_widen_the_default_result_type():
    const, stored = forest("constant"), forest({"leaves": "register"})
    s, b = stored.score_type, stored.base_type
    n1 = sum(1 for t in stored.trees if t.output == 1)
    lo = b.min_code + n1 * s.min_code      # score and base share their fraction bits here
    hi = b.max_code + n1 * s.max_code
    assert stored.sum_range(1) == (lo, hi)
    assert stored.result_type.width == bits_for_range(min(lo, -1), hi)[0] > const.result_type.width


@pytest.mark.parametrize("cfg,message", [
    ({"storage": "flash"}, "storage must be one of constant, register, tmr"),
    ({"storage": {"nodes": "tmr"}}, "unknown set"),
    ({"storage": "register", "tmr_bits": 3}, "tmr_bits.*applies only with storage: tmr"),
    ({"storage": {"thresholds": "tmr"}, "tmr_bits": {"thresholds": 9}}, "from 1 to 8"),
    ({"storage": {"leaves": "register"}, "tmr_bits": {"leaves": 2}}, "applies only with storage: tmr"),
    ({"i2c": {"address": 0x31}}, "needs a configuration bus"),
])
def test_bad_forest_storage_config(cfg, message):
    with pytest.raises(RtlgenError, match=message):
        quantize_forest(small_forest(), {**CFG, **cfg})


def test_shared_tmr_bits_apply_per_set_width():
    qf = forest("tmr", tmr_bits=10, score="fixed<10,3,RND,SAT>")
    assert (qf.threshold_tmr_bits, qf.leaf_tmr_bits) == (8, 10)    # thresholds are 8-bit words
    groups = {g["kind"]: g for layer in regmap_for(qf)["layers"] for g in
              (layer[key] for key in layer["groups"])}
    assert groups["threshold"]["protected_bits"] == 8 and groups["leaf"]["protected_bits"] == 10


def test_regmap_words_name_their_tree_node_and_feature():
    qf = forest("tmr")
    regmap = regmap_for(qf)
    assert [layer["name"] for layer in regmap["layers"]] == ["thresholds", "leaves"]
    assert regmap["layers"][1]["groups"] == ["leaves", "base"]
    internal = [(t, n) for t, tree in enumerate(qf.trees) for n, f in enumerate(tree.feature) if f >= 0]
    words = [w for w in regmap["words"] if w["kind"] == "threshold"]
    assert [(w["tree"], w["node"]) for w in words] == internal
    for w in words:
        tree = qf.trees[w["tree"]]
        assert w["feature"] == tree.feature[w["node"]] and w["reset"] == tree.cut[w["node"]]
        assert w["signal"] == f"thresholds_bank.t{w['index']}"
    leaves = [w for w in regmap["words"] if w["kind"] == "leaf"]
    assert [w["reset"] for w in leaves] == [qf.trees[w["tree"]].value[w["node"]] for w in leaves]
    assert [w["reset"] for w in regmap["words"] if w["kind"] == "base"] == qf.base
    addrs = [w["addr"] for w in regmap["words"]]
    assert len(set(addrs)) == len(addrs) and min(addrs) >= 0x10
    q2 = QForest.from_dict(json.loads(json.dumps(qf.to_dict())))
    assert regmap_for(q2) == regmap


def test_constant_forest_has_no_bus():
    from rtlgen.kinds import build_core as build_forest_core
    qf = forest("constant")
    text, manifest = build_forest_core(qf, "top")
    assert regmap_for(qf) is None and "cfg_addr" not in text and "config_bus" not in manifest


def test_cli_build_forest_with_storage_and_bad_storage(tmp_path, capsys):
    import pickle
    from sklearn.ensemble import GradientBoostingClassifier
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = tmp_path / "gb.pkl"
    model.write_bytes(pickle.dumps(GradientBoostingClassifier(n_estimators=4, max_depth=2).fit(x, y)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("input: fixed<8,3,RND,SAT>\nscore: fixed<10,3,RND,SAT>\nstorage: {thresholds: tmr, "
                   "leaves: bogus}\n")
    out = tmp_path / "core"
    assert cli_main(["build", str(model), "-c", str(cfg), "-o", str(out)]) == 2 and not out.exists()
    assert "leaves" in capsys.readouterr().err
    cfg.write_text("input: fixed<8,3,RND,SAT>\nscore: fixed<10,3,RND,SAT>\nstorage: tmr\ntmr_bits: 4\n")
    assert cli_main(["build", str(model), "-c", str(cfg), "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    regmap = json.loads((out / "regmap.json").read_text())
    assert manifest["ports"]["cfg_wdata"] == regmap["data_width"] == 16      # 10-bit leaves
    assert manifest["config_bus"]["layers"][0]["thresholds"]["protected_bits"] == 4
    assert (out / "regmap.md").read_text().count("| `thresholds` |") >= 1
    assert lint_build(out) == []


# ---------------------------------------------------------------------------
# cocotb on Icarus and Verilator
# ---------------------------------------------------------------------------

SIM_CASES = {
    # every (word, copy, bit) of the triplicated top 3 bits of both sets
    "tmr3_both": lambda: forest("tmr", tmr_bits=3),
    # full-width TMR thresholds over leaf-sum tables, register leaves, II 2
    "tmr_thresholds_r2": lambda: forest({"thresholds": "tmr", "leaves": "register"}, reuse_factor=2),
}


@pytest.fixture(scope="module")
def sim_built(bus_cores):
    return bus_cores(SIM_CASES, save_forest_build, vectors=lambda qf: edge_inputs(qf, 24, seed=6))


@pytest.mark.sim
@pytest.mark.parametrize("case,simulator", on_simulators(list(SIM_CASES), verilator=("tmr3_both",)))
def test_forest_config_bus_and_faults_cocotb(sim_built, case, simulator, tmp_path):
    qf, outdir, regmap, plan = sim_built(case)
    assert plan["program"]["expected"] != plan["expected"]       # the reprogramming changes outputs
    res = run_config_bench(outdir, plan, simulator, work_dir=tmp_path / "sim")
    check_bus_bench(res, plan, regmap)
    assert res["fault_campaign"]["unprotected"]["injected"] == (0 if case == "tmr_thresholds_r2" else 64)


@pytest.mark.sim
def test_generic_bench_runs_a_forest_with_a_bus(sim_built, tmp_path):
    """sims/test_core.py keeps the bus idle: the trained forest infers exactly."""
    qf, outdir, _, _ = sim_built("tmr3_both")
    x = edge_inputs(qf, 60, seed=9)
    expected = predict_codes(qf, x)
    got = run_sim(outdir, x, simulator="icarus", expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


@pytest.mark.sim
def test_cli_faults_runs_the_campaign_and_refuses_cores_without_a_bus(tmp_path, capsys):
    qf = forest("tmr", tmr_bits=2)
    save_forest_build(qf, tmp_path / "core")
    assert cli_main(["faults", str(tmp_path / "core"), "--max-single", "50", "--vectors", "8"]) == 0
    report = json.loads((tmp_path / "core" / "faults.json").read_text())
    single = report["results"]["fault_campaign"]["single"]
    total = sum(3 * 2 * len(g.codes) for ps in qf.param_sets() for g in ps.groups)
    assert report["selection"]["single_selection"] == f"random sample of 50 of {total} (seed 1)"
    assert single["injected"] == single["corrected"] == single["detected"] == 50
    assert single["output_mismatches"] == 0
    assert "50 corrected" in capsys.readouterr().out
    save_forest_build(forest("constant"), tmp_path / "plain")
    assert cli_main(["faults", str(tmp_path / "plain")]) == 2
    assert "no configuration bus" in capsys.readouterr().err
    save_forest_build(forest("register", i2c={"address": 0x31}), tmp_path / "i2c")
    assert cli_main(["faults", str(tmp_path / "i2c")]) == 2
    assert "I2C" in capsys.readouterr().err


def test_status_address_is_not_a_parameter():
    regmap = regmap_for(forest("tmr"))
    assert STATUS_ADDR not in {w["addr"] for w in regmap["words"]}
