"""Threshold quantization of decision forests, checked exhaustively.

For small input types, every representable input code is pushed through
(1) the integer comparison ``code < c`` that rtlgen derives and (2) the
library's own comparison on the code's value, for thresholds placed on,
next to (one float32/float64 step either way), between and beyond the
codes; both must take the same branch everywhere.  Then whole models of
xgboost, scikit-learn and LightGBM with such thresholds (and integer leaf
values, so that every sum is exact) are evaluated on every input code, and
the golden model must equal the library's own prediction exactly.
"""

from __future__ import annotations

import json
import zlib
from fractions import Fraction

import numpy as np
import pytest

from rtlgen.golden.forest import predict_codes
from rtlgen.ir.forest import threshold_codes
from rtlgen.numerics.fixed import parse_type

TYPES = ["fixed<6,2,RND,SAT>", "ufixed<5,1,TRN,SAT>", "fixed<8,3,RND,SAT>", "fixed<7,-1,RND,SAT>",
         "ufixed<6,9,RND,SAT>", "fixed<9,9,TRN,SAT>", "fixed<12,1,RND,SAT>"]


def adversarial_thresholds(typ, rng, n_random=200):
    codes = np.arange(typ.min_code, typ.max_code + 1)
    v = codes * float(typ.lsb)
    lsb = float(typ.lsb)
    cands = [v, v + lsb / 2, v - lsb / 2, v + lsb / 3,
             np.nextafter(v, np.inf), np.nextafter(v, -np.inf),
             np.nextafter(v.astype(np.float32), np.float32(np.inf)).astype(np.float64),
             np.nextafter(v.astype(np.float32), np.float32(-np.inf)).astype(np.float64),
             np.array([float(typ.min_value) - lsb, float(typ.max_value) + lsb, -1e30, 1e30, 0.0, -0.0,
                       float(typ.min_value), float(typ.max_value)])]
    t = np.concatenate(cands)
    t = np.concatenate([t, rng.uniform(float(typ.min_value) - 2 * lsb, float(typ.max_value) + 2 * lsb, n_random)])
    return t


def library_goes_left(values: np.ndarray, t: float, decision: str) -> np.ndarray:
    """The library's comparison, written out independently."""
    if decision == "lt_f32":          # xgboost: float32 data, float32 split values, x < t
        return values.astype(np.float32) < np.float32(t)
    if decision == "le_f32":          # scikit-learn: X cast to float32, float64 threshold, x <= t
        return values.astype(np.float32).astype(np.float64) <= np.float64(t)
    return values <= np.float64(t)    # LightGBM: double data, double threshold, x <= t


@pytest.mark.parametrize("decision", ["lt_f32", "le_f32", "le_f64"])
@pytest.mark.parametrize("spec", TYPES)
def test_integer_comparison_matches_library_for_every_code(spec, decision):
    typ = parse_type(spec)
    rng = np.random.default_rng(zlib.crc32(f"{spec}{decision}".encode()))
    codes = np.arange(typ.min_code, typ.max_code + 1, dtype=np.int64)
    values = np.array([float(Fraction(int(c)) * typ.lsb) for c in codes])
    thresholds = adversarial_thresholds(typ, rng)
    cuts = threshold_codes(thresholds, typ, decision)
    assert cuts.min() >= typ.min_code and cuts.max() <= typ.max_code + 1
    for t, c in zip(thresholds, cuts):
        expect = library_goes_left(values, t, decision)
        got = codes < c
        assert np.array_equal(got, expect), (spec, decision, float(t), int(c))
    # constant decisions: thresholds beyond the range
    assert threshold_codes([1e30], typ, decision)[0] == typ.max_code + 1
    assert threshold_codes([-1e30], typ, decision)[0] == typ.min_code


def _grid(types, limit=5000, rng=None):
    """Every combination of codes (two features) or a large sample of them."""
    a = np.arange(types[0].min_code, types[0].max_code + 1)
    b = np.arange(types[1].min_code, types[1].max_code + 1)
    g = np.stack(np.meshgrid(a, b, indexing="ij"), axis=-1).reshape(-1, 2)
    return g


CFG_TYPES = [("fixed<6,2,RND,SAT>", "fixed<6,4,RND,SAT>"), ("ufixed<7,3,RND,SAT>", "ufixed<7,1,RND,SAT>")]


def _cfg(types):
    return {"input": types[0], "features": {1: types[1]}, "score": "fixed<16,14,RND,SAT>"}


def _values(codes, types):
    return np.stack([codes[:, f] * float(parse_type(types[f]).lsb) for f in range(2)], axis=1)


@pytest.mark.parametrize("types", CFG_TYPES)
def test_xgboost_model_exact_on_every_code(types, tmp_path):
    xgb = pytest.importorskip("xgboost")
    from rtlgen.frontends.trees import load_forest
    from rtlgen.ir.forest_config import quantize_forest
    tps = [parse_type(t) for t in types]
    codes = _grid(tps)
    x = _values(codes, types)
    rng = np.random.default_rng(3)
    y = np.sin(3 * x[:, 0]) + np.cos(2 * x[:, 1]) + rng.normal(0, 0.1, len(x))
    booster = xgb.train({"max_depth": 5, "eta": 0.5, "objective": "reg:squarederror"},
                        xgb.DMatrix(x, label=y), num_boost_round=4)
    doc = json.loads(bytes(booster.save_raw("json")))
    doc["learner"]["learner_model_param"]["base_score"] = "[5E-1]"
    leaf_id = 1
    for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
        for n, left in enumerate(tree["left_children"]):
            if left == -1:
                tree["split_conditions"][n] = float(leaf_id)
                leaf_id += 1
            else:
                f = tree["split_indices"][n]
                cands = adversarial_thresholds(tps[f], rng, n_random=0)
                tree["split_conditions"][n] = float(np.float32(rng.choice(cands)))
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    booster = xgb.Booster(model_file=str(path))
    ref = booster.predict(xgb.DMatrix(x.astype(np.float32)), output_margin=True)
    qf = quantize_forest(load_forest(path), _cfg(types))
    got = predict_codes(qf, codes)[:, 0] * float(qf.result_type.lsb)
    assert np.array_equal(got, ref.astype(np.float64))
    # the same model read back from UBJ
    booster.save_model(str(tmp_path / "m.ubj"))
    qf2 = quantize_forest(load_forest(tmp_path / "m.ubj"), _cfg(types))
    assert np.array_equal(predict_codes(qf2, codes), predict_codes(qf, codes))


@pytest.mark.parametrize("types", CFG_TYPES)
def test_sklearn_model_exact_on_every_code(types):
    pytest.importorskip("sklearn")
    from sklearn.ensemble import RandomForestRegressor
    from rtlgen.frontends.trees import from_sklearn
    from rtlgen.ir.forest_config import quantize_forest
    tps = [parse_type(t) for t in types]
    codes = _grid(tps)
    x = _values(codes, types)
    rng = np.random.default_rng(5)
    y = np.sin(3 * x[:, 0]) + np.cos(2 * x[:, 1])
    est = RandomForestRegressor(n_estimators=4, max_depth=6, random_state=0).fit(x, y)
    leaf_id = 1
    for e in est.estimators_:
        tr = e.tree_
        thr, val = tr.threshold, tr.value
        for n in range(tr.node_count):
            if tr.children_left[n] == -1:
                val[n, 0, 0] = 4.0 * leaf_id     # RF averages 4 trees: keep sums exact
                leaf_id += 1
            else:
                thr[n] = rng.choice(adversarial_thresholds(tps[tr.feature[n]], rng, n_random=0))
    ref = est.predict(x)
    qf = quantize_forest(from_sklearn(est), _cfg(types))
    got = predict_codes(qf, codes)[:, 0] * float(qf.result_type.lsb)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("types", CFG_TYPES)
def test_lightgbm_model_exact_on_every_code(types, tmp_path):
    lgb = pytest.importorskip("lightgbm")
    from rtlgen.frontends.trees import load_forest
    from rtlgen.ir.forest_config import quantize_forest
    tps = [parse_type(t) for t in types]
    codes = _grid(tps)
    x = _values(codes, types)
    rng = np.random.default_rng(7)
    y = np.sin(3 * x[:, 0]) + np.cos(2 * x[:, 1])
    booster = lgb.train({"objective": "regression", "num_leaves": 12, "verbose": -1, "min_data_in_leaf": 5},
                        lgb.Dataset(x, label=y), num_boost_round=4)
    lines = [ln for ln in booster.model_to_string().splitlines() if not ln.startswith("tree_sizes=")]
    out, leaf_id, feats = [], 1, []
    for line in lines:
        if line.startswith("split_feature="):
            feats = [int(v) for v in line.split("=", 1)[1].split()]
        if line.startswith("threshold="):
            ts = [repr(float(rng.choice(adversarial_thresholds(tps[f], rng, n_random=0)))) for f in feats]
            line = "threshold=" + " ".join(ts)
        elif line.startswith("leaf_value="):
            n = len(line.split("=", 1)[1].split())
            line = "leaf_value=" + " ".join(str(float(leaf_id + k)) for k in range(n))
            leaf_id += n
        out.append(line)
    path = tmp_path / "m.txt"
    path.write_text("\n".join(out) + "\n")
    ref = lgb.Booster(model_file=str(path)).predict(x, raw_score=True)
    qf = quantize_forest(load_forest(path), _cfg(types))
    got = predict_codes(qf, codes)[:, 0] * float(qf.result_type.lsb)
    assert np.array_equal(got, ref)
