"""Decision-forest cores: generated RTL vs the golden model, bit for bit, on
Icarus Verilog and Verilator (binary, multi-class and regression forests;
every pipeline setting; the class output; a reuse factor; leaf-sum tables
and multiplexer trees; single-leaf, unbalanced and deep trees; up to 100
trees of depth 6 on both simulators)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.sims import rtl_sim
from rtlgen.kinds import save_build as save_forest_build
from rtlgen.flows.lint import lint_build
from rtlgen.frontends.trees import load_forest
from rtlgen.golden.forest import predict_codes, quantize_inputs
from rtlgen.errors import RtlgenError
from rtlgen.ir.forest import Forest
from rtlgen.ir.forest_config import quantize_forest

pytest.importorskip("sklearn")
xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402

from helpers.forests import chain_tree, full_tree, leaf_tree, standardized  # noqa: E402


def _edge_codes(qf, x, n_random=60, seed=0):
    codes = quantize_inputs(qf, x)
    rng = np.random.default_rng(seed)
    t = qf.input_type
    extra = [np.full(qf.n_features, t.max_code), np.full(qf.n_features, t.min_code),
             np.zeros(qf.n_features, dtype=np.int64)]
    rand = rng.integers(t.min_code, t.max_code + 1, size=(n_random, qf.n_features))
    return np.vstack([np.array(extra, dtype=np.int64), codes, rand])


def xgb_binary():
    x, y = standardized(load_breast_cancer)
    m = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    return m, x, {"input": "fixed<8,3,RND,SAT>", "score": "fixed<10,3,RND,SAT>",
                  "pipeline": "per_level", "class_output": True}


def gb_multiclass():
    x, y = standardized(load_iris)
    m = GradientBoostingClassifier(n_estimators=8, max_depth=3, random_state=0).fit(x, y)
    return m, x, {"input": "fixed<7,3,RND,SAT>", "score": "fixed<9,3,RND,SAT>",
                  "result": "fixed<8,4,RND,SAT>", "pipeline": "none", "class_output": True}


def lgb_regression():
    x, y = standardized(load_diabetes)
    m = lgb.LGBMRegressor(n_estimators=12, num_leaves=10, verbose=-1, random_state=0).fit(x, y)
    return m, x, {"input": "fixed<9,3,TRN,SAT>", "score": "fixed<14,9,RND,SAT>",
                  "base": "fixed<14,9,RND,SAT>", "pipeline": 2}


def rf_wine():
    x, y = standardized(load_wine)
    m = RandomForestClassifier(n_estimators=6, max_depth=4, random_state=0).fit(x, y)
    return m, x, {"input": "fixed<8,3,RND,SAT>", "features": {0: "fixed<8,2,RND,SAT>", 5: "fixed<8,4,TRN,SAT>"},
                  "score": "ufixed<8,0,RND,SAT>", "pipeline": 3, "class_output": True}


def xgb_large():
    x, y = standardized(load_breast_cancer)
    m = xgb.XGBClassifier(n_estimators=100, max_depth=6, min_child_weight=0, random_state=0).fit(x, y)
    return m, x, {"input": "fixed<8,3,RND,SAT>", "score": "fixed<10,3,RND,SAT>", "pipeline": "per_level"}


def xgb_reuse():
    x, y = standardized(load_iris)
    m = xgb.XGBClassifier(n_estimators=7, max_depth=3, random_state=0).fit(x, y)
    return m, x, {"input": "fixed<8,3,RND,SAT>", "score": "fixed<10,3,RND,SAT>", "pipeline": "per_level",
                  "reuse_factor": 3, "class_output": True}


def xgb_mux():
    m, x, cfg = xgb_binary()
    return m, x, {**cfg, "table_bits": 0, "pipeline": 2}


def handmade():
    """Three classes: single-leaf trees, chains deeper than a table (9 levels),
    full trees of depth 1 to 4, and a class whose trees are all single leaves."""
    rng = np.random.default_rng(5)
    n_features = 6
    trees = [leaf_tree(0.75, 0), chain_tree(rng, n_features, 9, 0), full_tree(rng, n_features, 2, 0),
             full_tree(rng, n_features, 4, 0), full_tree(rng, n_features, 1, 1), chain_tree(rng, n_features, 3, 1),
             leaf_tree(-0.5, 1), full_tree(rng, n_features, 3, 1), full_tree(rng, n_features, 2, 1),
             leaf_tree(0.25, 2), leaf_tree(-1.0, 2)]
    forest = Forest("handmade", n_features, 3, trees, [0.1, -0.2, 0.3], "le_f64")
    x = rng.normal(size=(200, n_features)) * 1.5
    return forest, x, {"input": "fixed<7,3,RND,SAT>", "score": "fixed<9,3,RND,SAT>", "pipeline": "per_level",
                       "class_output": True}


def handmade_reuse():
    forest, x, cfg = handmade()
    return forest, x, {**cfg, "reuse_factor": 2, "pipeline": "none", "table_bits": 4}


CASES = {"xgb_mux": xgb_mux, "handmade": handmade, "handmade_reuse": handmade_reuse,"xgb_reuse": xgb_reuse, "xgb_binary": xgb_binary, "gb_multiclass": gb_multiclass, "lgb_regression": lgb_regression,
         "rf_wine": rf_wine, "xgb_large": xgb_large}


@pytest.fixture(scope="module")
def built(build_cache):
    def make(case, outdir):
        model, x, cfg = CASES[case]()
        qf = quantize_forest(load_forest(model), cfg)
        manifest = save_forest_build(qf, outdir)
        assert lint_build(outdir) == []   # Verilator -Wall, only the listed waivers
        codes = _edge_codes(qf, x)
        return qf, outdir, manifest, codes, predict_codes(qf, codes)
    return build_cache(make)


@pytest.mark.sim
@pytest.mark.parametrize("simulator,case", [
    ("icarus", "xgb_binary"), pytest.param("verilator", "xgb_binary", marks=pytest.mark.long),
    ("icarus", "gb_multiclass"), pytest.param("verilator", "gb_multiclass", marks=pytest.mark.long),
    ("icarus", "lgb_regression"), pytest.param("verilator", "lgb_regression", marks=pytest.mark.long),
    ("icarus", "rf_wine"),
    pytest.param("icarus", "xgb_large", marks=pytest.mark.long),
    pytest.param("verilator", "xgb_large", marks=pytest.mark.long),
    ("icarus", "xgb_reuse"), pytest.param("verilator", "xgb_reuse", marks=pytest.mark.long),
    ("icarus", "xgb_mux"), ("verilator", "handmade"), ("icarus", "handmade_reuse"),
])
def test_forest_rtl_matches_golden(built, simulator, case, tmp_path):
    qf, outdir, manifest, codes, expected = built(case)
    got = rtl_sim(outdir, codes, simulator=simulator, expected=expected, work_dir=tmp_path / "sim", seed=3)
    assert np.array_equal(np.asarray(got), expected)
    assert manifest["kind"] == "bdt" and manifest["ii"] == qf.reuse_factor
    assert manifest["output"]["count"] == qf.n_outputs + (1 if qf.class_output else 0)


def test_pipeline_settings_set_latency():
    model, x, cfg = xgb_binary()
    forest = load_forest(model)
    lat = {}
    from rtlgen.kinds import build_core as build_forest_core
    for pipe in ("none", 1, 2, "per_level"):
        qf = quantize_forest(forest, {**cfg, "pipeline": pipe})
        _, manifest = build_forest_core(qf)
        lat[pipe] = manifest["latency"]
        levels = manifest["forest"]["levels"]
        step = {"none": levels, "per_level": 1}.get(pipe, pipe)
        assert manifest["latency"] == 2 + (levels - 1) // step
    assert lat["none"] == 2
    assert lat[1] == lat["per_level"] > lat[2] > lat["none"]


def test_units_cover_every_tree_once():
    forest, _, cfg = handmade()
    from rtlgen.hw.forest import forest_units
    for bits in (0, 3, 6, 8):
        qf = quantize_forest(forest, {**cfg, "table_bits": bits})
        units, consts = forest_units(qf)
        single = [t for t, tree in enumerate(qf.trees) if tree.depth() == 0]
        seen = sorted(t for ulist in units for u in ulist for t in u.trees)
        assert seen == sorted(set(range(len(qf.trees))) - set(single))
        for k, ulist in enumerate(units):
            assert consts[k] == sum(qf.trees[t].value[0] for t in single if qf.trees[t].output == k)
            for u in ulist:
                assert all(qf.trees[t].output == k for t in u.trees)
                if u.kind == "table":
                    assert sum(u.bits) <= bits and len(u.table) == 2 ** sum(u.bits)
                else:
                    assert len(u.trees) == 1 and u.bits[0] > bits


@pytest.mark.parametrize("bad", [-1, 9, "6", True, 2.5])
def test_table_bits_must_be_a_small_integer(bad):
    forest, _, cfg = handmade()
    with pytest.raises(RtlgenError, match="table_bits"):
        quantize_forest(forest, {**cfg, "table_bits": bad})
