"""Bit-flip sensitivity of decision forests (rtlgen.analysis.forest_sensitivity) and
``rtlgen tmr-analysis`` with a forest model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rtlgen.analysis.forest_sensitivity import (GroupSensitivity, SetSensitivity, analyze, config_snippet,
                                                recommend_set, report_dict, stored_config)
from rtlgen.cli import main
from rtlgen.errors import RtlgenError
from rtlgen.frontends.trees import load_forest
from rtlgen.golden.forest import predict_codes, quantize_inputs
from rtlgen.ir.forest import Forest
from rtlgen.ir.forest_config import quantize_forest
from rtlgen.numerics.fixed import parse_type

from helpers.flips import flip_by_string
from helpers.forests import leaf_tree, standardized, tree_from_spec


def handmade_multiclass():
    """Three classes, two features: full and lopsided trees, single leaves, a threshold
    outside the input range (a clamped cut) and sums that saturate the result type."""
    trees = [
        tree_from_spec((0, 0.3, (1, -1.0, 1.5, -0.75), (1, 1.2, 0.5, 2.5)), 0),
        tree_from_spec((1, 0.0, -2.0, (0, -1.4, 0.25, (0, 2.1, 1.0, -1.25))), 0),
        leaf_tree(0.75, 1),
        tree_from_spec((0, -0.6, (0, -9.0, 3.0, -3.0), 1.75), 1),
        tree_from_spec((1, 1.6, (0, 0.9, -0.5, 0.0), -2.5), 2),
        tree_from_spec((0, 1.1, 2.25, (1, -2.2, 0.5, -1.5)), 2),
    ]
    return Forest("handmade3", 2, 3, trees, [0.1, -0.6, 0.4], "le_f64")


def handmade_binary():
    """One output with class_output (class = result above zero)."""
    trees = [tree_from_spec((0, 0.2, (1, -0.4, -1.5, 0.75), 1.25), 0),
             tree_from_spec((1, 0.5, (0, -1.1, 0.5, -0.25), (0, 1.3, 2.0, -2.75)), 0),
             leaf_tree(-0.5, 0)]
    return Forest("handmade1", 2, 1, trees, [0.2], "le_f64")


CONFIGS = {
    "multiclass": (handmade_multiclass, {"input": "fixed<5,2,RND,SAT>", "score": "fixed<6,2,RND,SAT>",
                                         "base": "fixed<8,3,RND,SAT>", "result": "fixed<5,2,RND,SAT>",
                                         "class_output": True}),
    "multiclass_stored": (handmade_multiclass, {"input": "fixed<5,2,RND,SAT>", "score": "fixed<6,2,RND,SAT>",
                                                "result": "fixed<6,2,TRN,SAT>", "class_output": True,
                                                "storage": {"thresholds": "tmr", "leaves": "register"},
                                                "tmr_bits": {"thresholds": 2}}),
    "binary": (handmade_binary, {"input": "fixed<5,2,RND,SAT>", "score": "fixed<5,1,RND,SAT>",
                                 "result": "fixed<4,1,RND,SAT>", "class_output": True}),
}


def all_codes(qf):
    """Every input vector of two 5-bit features."""
    t = qf.input_type
    r = np.arange(t.min_code, t.max_code + 1)
    return np.stack(np.meshgrid(r, r, indexing="ij"), axis=-1).reshape(-1, 2)


def brute_force(qf, x):
    """{kind: (error [words, W], changed [words, W])} by flipping each word in a copy of the forest."""
    ref = predict_codes(qf, x)
    cuts = [c for t in qf.trees for f, c in zip(t.feature, t.cut) if f >= 0]
    leaves = [v for t in qf.trees for f, v in zip(t.feature, t.value) if f < 0]
    base = list(qf.base)

    def replaced(words, i, v):
        out = list(words)
        out[i] = v
        return out

    kinds = {"threshold": (qf.threshold_type, cuts, lambda i, v: {"thresholds": (replaced(cuts, i, v),)}),
             "leaf": (qf.score_type, leaves, lambda i, v: {"leaves": (replaced(leaves, i, v), base)}),
             "base": (qf.base_type, base, lambda i, v: {"leaves": (leaves, replaced(base, i, v))})}
    result = {}
    for kind, (t, words, codes_of) in kinds.items():
        err = np.zeros((len(words), t.width), dtype=np.int64)
        chg = np.zeros((len(words), t.width), dtype=np.int64)
        for i, w in enumerate(words):
            for b in range(t.width):
                out = predict_codes(qf.with_param_codes(codes_of(i, flip_by_string(int(w), b, t))), x)
                d = np.abs(out - ref).max(axis=1)
                err[i, b], chg[i, b] = d.max(), np.count_nonzero(d)
        result[kind] = (err, chg)
    return result


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_every_flip_matches_brute_force(case):
    make, cfg = CONFIGS[case]
    qf = quantize_forest(make(), cfg)
    x = all_codes(qf)
    sens = analyze(qf, x, max_samples=None)
    assert [s.name for s in sens] == ["thresholds", "leaves"]
    got = {g.kind: g for s in sens for g in s.groups}
    expected = brute_force(qf, x)
    for kind, (err, chg) in expected.items():
        assert np.array_equal(got[kind].error, err), kind
        assert np.array_equal(got[kind].changed, chg), kind
    # the case is not trivial: flips change outputs, and some saturate the result
    assert all(e.max() > 0 for e, _ in expected.values())
    ref = predict_codes(qf, x)[:, :qf.n_outputs]
    assert (ref == qf.result_type.max_code).any() or (ref == qf.result_type.min_code).any()


def test_sampled_rows_are_the_documented_sample():
    make, cfg = CONFIGS["multiclass"]
    qf = quantize_forest(make(), cfg)
    x = all_codes(qf)
    from rtlgen.analysis.sensitivity import sample_rows
    a = analyze(qf, x, max_samples=50, seed=3)
    b = analyze(qf, x[sample_rows(len(x), 50, seed=3)], max_samples=None)
    assert a[0].samples == 50
    for sa, sb in zip(a, b):
        for ga, gb in zip(sa.groups, sb.groups):
            assert np.array_equal(ga.error, gb.error) and np.array_equal(ga.changed, gb.changed)


def test_bad_inputs_are_errors():
    make, cfg = CONFIGS["binary"]
    qf = quantize_forest(make(), cfg)
    with pytest.raises(RtlgenError, match="expects 2 input features"):
        analyze(qf, np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(RtlgenError, match="no input vectors"):
        analyze(qf, np.zeros((0, 2), dtype=np.int64))
    with pytest.raises(RtlgenError, match="max_samples"):
        analyze(qf, np.zeros((4, 2), dtype=np.int64), max_samples=0)


# ---------------------------------------------------------------------------
# recommendation
# ---------------------------------------------------------------------------

def _group(kind, spec, err):
    err = np.asarray(err, dtype=np.int64)
    return GroupSensitivity(kind, parse_type(spec), err, (err != 0).astype(np.int64))


def known_sets():
    """Thresholds: 6-bit words; word 0 bit 5 (MSB) error 10, bit 4 error 5, the rest 1 or 0.
    Leaves: 4-bit leaf words whose bit 0 errs by 2; 6-bit base words whose bit 2 errs by 3."""
    t_err = np.zeros((3, 6))
    t_err[:, :4] = 1
    t_err[0, 5], t_err[0, 4] = 10, 5
    l_err = np.zeros((5, 4))
    l_err[:, 0] = 2
    b_err = np.zeros((2, 6))
    b_err[1, 2] = 3
    return [SetSensitivity(0, "thresholds", [_group("threshold", "fixed<6,3>", t_err)], 20),
            SetSensitivity(1, "leaves", [_group("leaf", "fixed<4,1>", l_err),
                                         _group("base", "fixed<6,2>", b_err)], 20)]


@pytest.mark.parametrize("threshold,bits", [(0, (6, 4)), (1, (2, 4)), (2, (2, 4)), (3, (2, 0)),
                                            (5, (1, 0)), (9, (1, 0)), (10, (0, 0))])
def test_recommendation_on_known_errors(threshold, bits):
    # thresholds (W = 6): T = 0 protects every erring bit (0..5); below 5 bit 4 of word 0 must be
    # triplicated (N = 2), below 10 bit 5 (N = 1).  leaves: the leaf bit 0 (error 2) is single
    # unless N >= 4 = W_leaf, the base bit 2 (error 3) unless N >= 6 - 2 = 4.
    thresholds, leaves = known_sets()
    assert (recommend_set(thresholds, threshold).tmr_bits, recommend_set(leaves, threshold).tmr_bits) == bits


def test_recommendation_residual_and_flip_flops():
    thresholds, leaves = known_sets()
    r = recommend_set(leaves, 2)
    # N = 4: every bit of a 4-bit leaf word and bits 2..5 of a 6-bit base word are triplicated
    assert r.tmr_bits == 4
    assert r.total_bits == 5 * 4 + 2 * 6
    assert r.unprotected_bits == 2 * 2
    assert r.residual_changing_bits == 0 and r.residual_worst_error == 0
    assert r.full_tmr_ffs == 3 * 32 and r.selective_ffs == 3 * 28 + 4
    r = recommend_set(thresholds, 1)
    # N = 2: bits 0..3 of the three words are single, all of them err by 1
    assert (r.unprotected_bits, r.residual_changing_bits, r.residual_worst_error) == (12, 12, 1)
    assert r.saved_ffs == 2 * 12


def test_report_and_config_snippet_are_valid_forest_config():
    sens = known_sets()
    rep = report_dict(sens, 5, model="m", samples_total=40)
    json.dumps(rep)
    assert [s["name"] for s in rep["sets"]] == ["thresholds", "leaves"]
    assert [g["kind"] for g in rep["sets"][1]["groups"]] == ["leaf", "base"]
    assert rep["sets"][0]["recommendation"]["tmr_bits"] == 1
    assert rep["sets"][1]["recommendation"]["protected_bits"] == {"leaf": 0, "base": 0}
    assert rep["total"]["bits"] == 3 * 6 + 32
    snippet = yaml.safe_load(config_snippet(rep))
    assert snippet == {"storage": {"thresholds": "tmr", "leaves": "register"}, "tmr_bits": {"thresholds": 1}}
    qf = quantize_forest(handmade_binary(), {"input": "fixed<5,2,RND,SAT>", "score": "fixed<5,1,RND,SAT>",
                                             **snippet})
    assert (qf.threshold_storage, qf.threshold_tmr_bits, qf.leaf_storage) == ("tmr", 1, "register")
    assert yaml.safe_load(config_snippet(report_dict(sens, 10))) == {"storage": "register"}
    both = yaml.safe_load(config_snippet(report_dict(sens, 0)))
    assert both == {"storage": {"thresholds": "tmr", "leaves": "tmr"},
                    "tmr_bits": {"thresholds": 6, "leaves": 4}}


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(2, 8), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.integers(0, 40), st.integers(0, 40))
def test_recommendation_is_smallest_and_monotone(w_leaf, w_base, n_words, seed, t1, t2):
    rng = np.random.default_rng(seed)
    leaf = rng.integers(0, 40, size=(n_words, w_leaf)) * (rng.random((n_words, w_leaf)) < 0.5)
    base = rng.integers(0, 40, size=(2, w_base)) * (rng.random((2, w_base)) < 0.5)
    s = SetSensitivity(1, "leaves", [_group("leaf", f"fixed<{w_leaf},1>", leaf),
                                     _group("base", f"fixed<{w_base},1>", base)], 10)
    lo, hi = sorted((t1, t2))
    r_lo, r_hi = recommend_set(s, lo), recommend_set(s, hi)
    assert r_hi.tmr_bits <= r_lo.tmr_bits

    def worst_single(n):
        parts = [leaf[:, :w_leaf - min(n, w_leaf)], base[:, :w_base - min(n, w_base)]]
        return max([int(p.max()) for p in parts if p.size] + [0])

    n = r_lo.tmr_bits
    assert worst_single(n) <= lo and r_lo.residual_worst_error == worst_single(n)
    assert n == 0 or worst_single(n - 1) > lo


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40))
def test_raising_the_threshold_never_raises_the_bits_of_a_real_forest(t1, t2):
    make, cfg = CONFIGS["multiclass"]
    qf = quantize_forest(make(), cfg)
    sens = _real_sens(qf)
    lo, hi = sorted((t1, t2))
    for s in sens:
        assert recommend_set(s, hi).tmr_bits <= recommend_set(s, lo).tmr_bits


_CACHE = {}


def _real_sens(qf):
    if qf.name not in _CACHE:
        _CACHE[qf.name] = analyze(qf, all_codes(qf), max_samples=None)
    return _CACHE[qf.name]


def test_stored_config_stores_both_sets():
    assert stored_config({"input": "a"})["storage"] == {"thresholds": "register", "leaves": "register"}
    cfg = {"storage": {"thresholds": "tmr"}, "tmr_bits": {"thresholds": 2}}
    assert stored_config(cfg) == {"storage": {"thresholds": "tmr", "leaves": "register"},
                                  "tmr_bits": {"thresholds": 2}}
    assert stored_config({"storage": "tmr", "tmr_bits": 3})["storage"] == {"thresholds": "tmr", "leaves": "tmr"}


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------

xgb = pytest.importorskip("xgboost")


@pytest.fixture(scope="module")
def xgb_files(tmp_path_factory):
    from sklearn.datasets import load_breast_cancer
    d = tmp_path_factory.mktemp("forest")
    x, y = standardized(load_breast_cancer)
    xgb.XGBClassifier(n_estimators=12, max_depth=3, random_state=0).fit(x, y).save_model(d / "xgb.json")
    cfg = {"input": "fixed<8,3,RND,SAT>", "score": "fixed<10,3,RND,SAT>", "class_output": True}
    (d / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    np.save(d / "x.npy", x)
    return d, cfg, x


def test_cli_round_trip(xgb_files, tmp_path, capsys):
    d, cfg, x = xgb_files
    out = tmp_path / "out"
    rc = main(["tmr-analysis", str(d / "xgb.json"), "-c", str(d / "cfg.yaml"), "-d", str(d / "x.npy"),
               "-t", "2", "-n", "100", "-o", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert (out / "sensitivity.json").exists() and (out / "sensitivity.md").exists()
    report = json.loads((out / "sensitivity.json").read_text())
    assert report["samples"] == 100 and report["samples_total"] == len(x) and report["threshold"] == 2
    # the configuration stores nothing, yet both sets are analysed as a stored core would hold them
    qf = quantize_forest(load_forest(d / "xgb.json"), stored_config(cfg))
    n_cuts = sum(f >= 0 for t in qf.trees for f in t.feature)
    assert [s["name"] for s in report["sets"]] == ["thresholds", "leaves"]
    assert report["sets"][0]["groups"][0]["count"] == n_cuts
    expected = report_dict(analyze(qf, quantize_inputs(qf, x), max_samples=100), 2, model=qf.name,
                           output_type=qf.output_type, samples_total=len(x))
    assert report == json.loads(json.dumps(expected))
    snippet = config_snippet(report)
    assert snippet in printed and "tmr-analysis:" in printed
    assert snippet.strip() in (out / "sensitivity.md").read_text()
    merged = {**cfg, **yaml.safe_load(snippet)}
    quantize_forest(load_forest(d / "xgb.json"), merged)       # the snippet is a valid forest config

    # the same vectors as integer codes with --raw give the same report
    np.save(tmp_path / "codes.npy", quantize_inputs(qf, x))
    rc = main(["tmr-analysis", str(d / "xgb.json"), "-c", str(d / "cfg.yaml"), "-d", str(tmp_path / "codes.npy"),
               "--raw", "-t", "2", "-n", "100", "-o", str(tmp_path / "raw")])
    assert rc == 0
    assert json.loads((tmp_path / "raw" / "sensitivity.json").read_text()) == report


@pytest.mark.parametrize("case", ["negative threshold", "bad shape", "raw floats"])
def test_cli_errors_exit_2(xgb_files, tmp_path, capsys, case):
    d, _, x = xgb_files
    data, args = d / "x.npy", []
    if case == "negative threshold":
        args = ["--threshold", "-1"]
    elif case == "bad shape":
        data = tmp_path / "bad.npy"
        np.save(data, x[:, :5])
    else:
        args = ["--raw"]
    out = tmp_path / "out"
    rc = main(["tmr-analysis", str(d / "xgb.json"), "-c", str(d / "cfg.yaml"), "-d", str(data),
               "-o", str(out)] + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("rtlgen: error: ")
    if case == "negative threshold":
        assert "--threshold must be at least 0" in err
    elif case == "bad shape":
        assert "expects 30 input features" in err
    assert not (out / "sensitivity.json").exists()
