"""Bit-flip sensitivity analysis (rtlgen.analysis.sensitivity) and ``rtlgen tmr-analysis``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from rtlgen.analysis.sensitivity import (LayerSensitivity, analyze, config_snippet, flip_bits, recommend,
                                         report_dict, sample_rows)
from rtlgen.cli import main
from rtlgen.errors import RtlgenError
from rtlgen.frontends import load_model
from rtlgen.frontends.python_api import mlp
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config, load_config
from rtlgen.ir.conv import QConv, conv_matrix
from rtlgen.numerics.fixed import FixedType, parse_type

from helpers.flips import flip_by_string
from helpers.paths import ECONT, ECONT_CFG, JET, JET_CFG


@pytest.mark.parametrize("spec", ["fixed<5,2>", "ufixed<4,1>", "fixed<1,1>", "fixed<70,10>"])
def test_flip_bits_matches_the_word_representation(spec):
    t = parse_type(spec)
    if t.width <= 8:
        codes = list(range(t.min_code, t.max_code + 1))
    else:
        codes = [t.min_code, -1, 0, 1, t.max_code, 123456789012345678901]
    for code in codes:
        for bit in range(t.width):
            got = flip_bits(np.array([code], dtype=object if t.width > 62 else np.int64), bit, t)[0]
            assert int(got) == flip_by_string(code, bit, t), (code, bit)
            assert t.min_code <= int(got) <= t.max_code
    with pytest.raises(RtlgenError, match="bit index"):
        flip_bits(0, t.width, t)


def test_sample_rows_is_a_seeded_subset():
    a = sample_rows(1000, 50, seed=3)
    assert len(a) == 50 and len(set(a.tolist())) == 50 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, sample_rows(1000, 50, seed=3))
    assert not np.array_equal(a, sample_rows(1000, 50, seed=4))
    assert np.array_equal(sample_rows(20, 50), np.arange(20))


# ---------------------------------------------------------------------------
# exactness: every reported flip against a direct recomputation
# ---------------------------------------------------------------------------

def direct_effect(qmodel, x, layer_index, kind, index, bit):
    """(max abs output difference, vectors changed) of one flip, recomputing the whole model."""
    model = copy.deepcopy(qmodel)
    layer = model.layers[layer_index]
    if isinstance(layer, QConv):
        kernel = np.array(layer.kernel_codes, copy=True)
        bias = np.array(layer.bias_codes, copy=True)
        if kind == "weight":
            kernel[index] = flip_by_string(int(kernel[index]), bit, layer.weight_type)
        else:
            bias[index] = flip_by_string(int(bias[index]), bit, layer.bias_type)
        layer.weights = conv_matrix(kernel, layer.in_shape, layer.stride, layer.pads)
        layer.bias = np.repeat(bias, layer.n_out // len(bias))
    elif kind == "weight":
        layer.weights = np.array(layer.weights, copy=True)
        layer.weights[index] = flip_by_string(int(layer.weights[index]), bit, layer.weight_type)
    else:
        layer.bias = np.array(layer.bias, copy=True)
        layer.bias[index] = flip_by_string(int(layer.bias[index]), bit, layer.bias_type)
    base = predict_codes(qmodel, x).astype(object)
    new = predict_codes(model, x).astype(object)
    diff = np.abs(new - base)
    return int(diff.max()), int(np.count_nonzero(diff.max(axis=1)))


def small_mlp(accum=None):
    rng = np.random.default_rng(5)
    fm = mlp([rng.normal(0, 0.6, (6, 5)), rng.normal(0, 0.6, (5, 3))],
             [rng.normal(0, 0.3, 5), rng.normal(0, 0.3, 3)])
    layer_cfg = {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<9,3,RND,SAT>",
                 "result": "fixed<10,4,RND,SAT>"}
    if accum:
        layer_cfg["accum"] = accum
    cfg = {"input": "fixed<7,2,RND,SAT>", "default": layer_cfg}
    return apply_config(fm, cfg)


def check_all_flips_or_sample(qmodel, x, sens, picks):
    for s in sens:
        layer = qmodel.layers[s.index]
        for kind in ("weight", "bias"):
            err = s.weight_error if kind == "weight" else s.bias_error
            chg = s.weight_changed if kind == "weight" else s.bias_changed
            shape = err.shape[:-1]
            indices = list(np.ndindex(*shape))
            if picks is not None and len(indices) * err.shape[-1] > picks:
                rng = np.random.default_rng(len(indices))
                chosen = [(indices[i], int(b)) for i, b in
                          zip(rng.integers(0, len(indices), picks), rng.integers(0, err.shape[-1], picks))]
                chosen += [(indices[0], err.shape[-1] - 1), (indices[-1], 0)]
            else:
                chosen = [(idx, b) for idx in indices for b in range(err.shape[-1])]
            for idx, bit in chosen:
                index = idx if kind == "weight" else idx[0]
                want = direct_effect(qmodel, x, s.index, kind, index, bit)
                got = (int(err[idx + (bit,)]), int(chg[idx + (bit,)]))
                assert got == want, (layer.name, kind, idx, bit)


@pytest.mark.parametrize("accum", [None, "fixed<9,3,RND,WRAP>"])
def test_every_flip_of_a_small_mlp_is_exact(accum):
    qmodel = small_mlp(accum)
    x = np.random.default_rng(2).integers(qmodel.input_type.min_code, qmodel.input_type.max_code + 1,
                                          (40, qmodel.n_in))
    sens = analyze(qmodel, x, max_samples=None)
    assert [s.name for s in sens] == ["dense_0", "dense_1"]
    assert sens[0].weight_error.shape == (6, 5, 6) and sens[0].bias_error.shape == (5, 9)
    check_all_flips_or_sample(qmodel, x, sens, picks=None)
    # some flips matter and the sign bit matters most often
    assert sens[0].weight_error.max() > 0
    assert sens[0].weight_changed[..., -1].sum() >= sens[0].weight_changed[..., 0].sum()


def test_conv_flips_change_the_kernel_everywhere():
    qmodel = apply_config(load_model(ECONT), load_config(ECONT_CFG))
    conv = qmodel.layers[0]
    assert isinstance(conv, QConv) and conv.kernel_codes is not None
    x = np.random.default_rng(7).integers(qmodel.input_type.min_code, qmodel.input_type.max_code + 1,
                                          (24, qmodel.n_in))
    sens = analyze(qmodel, x, max_samples=None)
    assert sens[0].weight_error.shape == tuple(conv.kernel_codes.shape) + (conv.weight_type.width,)
    assert sens[0].bias_error.shape == (conv.kernel_codes.shape[0], conv.bias_type.width)
    check_all_flips_or_sample(qmodel, x, sens, picks=25)


def test_sampling_uses_the_documented_rows():
    qmodel = small_mlp()
    x = np.random.default_rng(9).integers(-60, 60, (300, qmodel.n_in))
    sub = analyze(qmodel, x, max_samples=30, seed=11)
    same = analyze(qmodel, x[sample_rows(300, 30, seed=11)], max_samples=None)
    assert sub[0].samples == 30
    for a, b in zip(sub, same):
        assert np.array_equal(a.weight_error, b.weight_error)
        assert np.array_equal(a.bias_changed, b.bias_changed)


# ---------------------------------------------------------------------------
# the recommendation rule
# ---------------------------------------------------------------------------

def synthetic(ww, wb, rng, n_w=7, n_b=3):
    w_err = rng.integers(0, 50, (n_w, ww)) * rng.integers(0, 2, (n_w, ww))
    b_err = rng.integers(0, 50, (n_b, wb)) * rng.integers(0, 2, (n_b, wb))
    return LayerSensitivity(0, "l", "dense", FixedType(ww, 2), FixedType(wb, 2), w_err, w_err > 0,
                            b_err, b_err > 0, samples=10)


def single_bits(s, n):
    ww, wb = s.weight_type.width, s.bias_type.width
    w_rows = np.asarray(s.weight_error).reshape(-1, ww)
    return [int(e) for row in w_rows for b, e in enumerate(row) if b < ww - min(n, ww)] + \
           [int(e) for row in s.bias_error for b, e in enumerate(row) if b < wb - min(n, wb)]


@pytest.mark.parametrize("ww,wb", [(6, 6), (4, 9), (9, 4)])
def test_recommendation_is_the_smallest_safe_n(ww, wb):
    rng = np.random.default_rng(ww * 10 + wb)
    for trial in range(30):
        s = synthetic(ww, wb, rng)
        for threshold in (0, 10, 25, 49, 60):
            rec = recommend(s, threshold)
            left = single_bits(s, rec.tmr_bits)
            assert all(e <= threshold for e in left)
            if rec.tmr_bits > 0:
                assert any(e > threshold for e in single_bits(s, rec.tmr_bits - 1))
            assert rec.unprotected_bits == len(left)
            assert rec.residual_worst_error == max(left, default=0)
            assert rec.residual_changing_bits == sum(e != 0 for e in left)
            total = s.weight_error.size + s.bias_error.size
            assert rec.full_tmr_ffs == 3 * total
            assert rec.selective_ffs == 3 * (total - len(left)) + len(left)
            assert rec.weight_protected == min(rec.tmr_bits, ww)
    with pytest.raises(RtlgenError, match="threshold"):
        recommend(s, -1)


def test_recommendation_on_a_real_model():
    qmodel = small_mlp()
    x = np.random.default_rng(4).integers(-60, 60, (64, qmodel.n_in))
    sens = analyze(qmodel, x)
    for s in sens:
        for threshold in (0, 3, 40):
            rec = recommend(s, threshold)
            assert all(e <= threshold for e in single_bits(s, rec.tmr_bits))
            if rec.tmr_bits:
                assert any(e > threshold for e in single_bits(s, rec.tmr_bits - 1))
    report = report_dict(sens, 3, model="m")
    snippet = config_snippet(report)
    for layer in report["layers"]:
        n = layer["recommendation"]["tmr_bits"]
        want = "{storage: register}" if n == 0 else f"{{storage: tmr, tmr_bits: {n}}}"
        assert f'"{layer["name"]}": {want}' in snippet


def test_no_layer_with_weights_is_an_error():
    from rtlgen.ir.model import QActivation, QModel
    t = parse_type("fixed<8,3>")
    model = QModel("act", t, 4, [QActivation("r", "relu", 4, t, t)])
    with pytest.raises(RtlgenError, match="no layer with weights"):
        analyze(model, np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(RtlgenError, match="no input vectors"):
        analyze(small_mlp(), np.zeros((0, 6), dtype=np.int64))


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------

def test_cli_round_trip(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "x.npy"
    np.save(data, rng.normal(0, 1, (80, 16)))
    out = tmp_path / "out"
    rc = main(["tmr-analysis", str(JET), "--config", str(JET_CFG), "--data", str(data),
               "--threshold", "300", "--samples", "40", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "sensitivity.json").read_text())
    md = (out / "sensitivity.md").read_text()
    assert report["threshold"] == 300 and report["samples"] == 40 and report["samples_total"] == 80
    assert [layer["name"] for layer in report["layers"]] == ["/0/Gemm", "/2/Gemm", "/4/Gemm", "/6/Gemm"]
    # the same numbers from the Python API on the same codes
    qmodel = apply_config(load_model(JET), load_config(JET_CFG))
    from rtlgen.golden.network import quantize_inputs
    codes = quantize_inputs(qmodel, np.load(data))
    sens = analyze(qmodel, codes, max_samples=40, seed=0)
    for layer, s in zip(report["layers"], sens):
        rec = recommend(s, 300)
        assert layer["recommendation"]["tmr_bits"] == rec.tmr_bits
        assert layer["recommendation"]["saved_ffs"] == 2 * rec.unprotected_bits
        assert [p["max_error"] for p in layer["weights"]["per_bit"]] == \
            [int(s.weight_error[..., b].max()) for b in range(8)]
        assert f'"{layer["name"]}": {{storage: tmr, tmr_bits: {rec.tmr_bits}}}' in printed
        assert layer["name"] in md
    assert "layers:" in printed and "tmr_bits" in md

    # integer codes with --raw give the same report
    np.save(tmp_path / "codes.npy", codes)
    rc = main(["tmr-analysis", str(JET), "-c", str(JET_CFG), "-d", str(tmp_path / "codes.npy"), "--raw",
               "-t", "300", "-n", "40", "-o", str(tmp_path / "raw")])
    assert rc == 0
    assert json.loads((tmp_path / "raw" / "sensitivity.json").read_text()) == report


@pytest.mark.parametrize("case", ["missing data", "bad shape", "nan", "negative threshold", "forest",
                                  "missing model", "raw floats"])
def test_cli_errors_exit_2(tmp_path, capsys, case):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((5, 16)))
    model, args = str(JET), []
    if case == "missing data":
        data = tmp_path / "none.npy"
    elif case == "bad shape":
        np.save(data, np.zeros((5, 7)))
    elif case == "nan":
        np.save(data, np.full((5, 16), np.nan))
    elif case == "negative threshold":
        args = ["--threshold", "-3"]
    elif case == "forest":
        model = str(tmp_path / "forest.json")
        Path(model).write_text("{}")
    elif case == "missing model":
        model = str(tmp_path / "none.onnx")
    elif case == "raw floats":
        args = ["--raw"]
        np.save(data, np.full((5, 16), 0.5))
    out = tmp_path / "out"
    rc = main(["tmr-analysis", model, "--config", str(JET_CFG), "--data", str(data), "-o", str(out)] + args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("rtlgen: error: ")
    assert not (out / "sensitivity.json").exists()
