"""The activation kinds of the golden model against float references written from their
documented semantics (README "Semantics"), on every input code of the input type."""

from __future__ import annotations

import numpy as np
import pytest

from rtlgen.errors import RtlgenError
from rtlgen.golden.network import predict_codes
from rtlgen.ir.config import apply_config
from rtlgen.ir.model import Activation, FloatModel
from rtlgen.numerics.fixed import quantize, to_float

IN = "fixed<8,3,TRN,WRAP>"


def run(kind, own: dict, n: int = 4, **params):
    model = FloatModel("m", n, [Activation("act", kind, n, **params)])
    q = apply_config(model, {"input": IN, "layers": {"act": own}})
    codes = np.arange(-128, 128, dtype=np.int64)
    x = np.stack([np.roll(codes, k) for k in range(n)], axis=1)
    return q, to_float(x, q.input_type), to_float(predict_codes(q, x), q.output_type)


@pytest.mark.parametrize("slope,slope_type", [(0.1, "fixed<8,0,RND,SAT>"), (-0.75, "fixed<4,1,RND,SAT>"),
                                              (3.0, "fixed<4,3,TRN,SAT>")])
def test_leaky_relu(slope, slope_type):
    q, x, y = run("leaky_relu", {"weight": slope_type, "result": "fixed<9,4,RND_CONV,SAT>"},
                  slope=np.array([slope]))
    a = to_float(quantize(np.array([slope]), slope_type), q.layers[0].slope_type)[0]
    assert np.array_equal(y, to_float(quantize(np.where(x < 0, a * x, x), q.output_type), q.output_type))


def test_prelu_per_channel_and_exact_slopes_without_a_type():
    slopes = np.array([0.25, -0.5, 1.5, 0.0])
    q, x, y = run("prelu", {"result": "fixed<10,5,RND,SAT>"}, slope=slopes)
    assert q.layers[0].slope_type.frac == 2          # exact: 0.25 needs 2 fraction bits
    assert np.array_equal(y, to_float(quantize(np.where(x < 0, slopes * x, x), q.output_type), q.output_type))
    with pytest.raises(RtlgenError, match="slope 0.1 is not a fixed-point number"):
        run("prelu", {}, slope=np.array([0.1, 0.2, 0.3, 0.4]))


@pytest.mark.parametrize("bounds", [(-1.25, 2.0), (0.0, 6.0), (-np.inf, 0.03125), (0.5, np.inf)])
def test_clip(bounds):
    q, x, y = run("clip", {"result": "fixed<9,4,RND,SAT>"}, bounds=bounds)
    assert np.array_equal(y, to_float(quantize(np.clip(x, *bounds), q.output_type), q.output_type))


@pytest.mark.parametrize("kind,fn", [("sigmoid", lambda v: 1 / (1 + np.exp(-v))), ("tanh", np.tanh)])
@pytest.mark.parametrize("size,span", [(1024, 8.0), (64, 4.0), (16, 0.5)])
def test_tables(kind, fn, size, span):
    result = "ufixed<10,0,RND,SAT>" if kind == "sigmoid" else "fixed<10,1,RND_CONV,SAT>"
    q, x, y = run(kind, {"result": result, "table_size": size, "table_range": span})
    index = np.clip(np.floor((x + span) * size / (2 * span)), 0, size - 1)
    expected = to_float(quantize(fn(-span + index * (2 * span / size)), q.output_type), q.output_type)
    assert np.array_equal(y, expected)
    assert np.abs(y - fn(x))[np.abs(x) < span - 2 * span / size].max() < 2 * span / size + 2.0 ** -9


def test_activation_configuration_errors():
    with pytest.raises(RtlgenError, match="a sigmoid table needs a result type"):
        run("sigmoid", {})
    with pytest.raises(RtlgenError, match="table_size must be a power of two"):
        run("tanh", {"result": "fixed<8,1>", "table_size": 1000})
    with pytest.raises(RtlgenError, match=r"key\(s\) \['table_size'\] do not apply"):
        run("clip", {"table_size": 64}, bounds=(0.0, 1.0))


def _softmax_model(n: int, own: dict):
    from rtlgen.ir.model import Dense
    model = FloatModel("m", n, [Dense("id", np.eye(n), np.zeros(n)), Activation("soft", "softmax", n)])
    return apply_config(model, {"input": IN, "default": {"weight": "fixed<2,2>", "bias": "fixed<2,2>"},
                                "layers": {"id": {"result": IN}, "soft": own}})


@pytest.mark.parametrize("size,span,inv_size", [(1024, 8.0, 1024), (64, 4.0, 32)])
def test_softmax_steps(size, span, inv_size):
    """The documented steps, in floating point: distance to the largest, exp table (right end of each
    step), sum, reciprocal table, product, cast; and close to the float softmax."""
    own = {"result": "ufixed<12,0,RND,SAT>", "table_size": size, "table_range": span, "inv_table_size": inv_size,
           "exp": "ufixed<14,1,RND,SAT>", "inv": "ufixed<14,1,RND,SAT>"}
    q = _softmax_model(5, own)
    rng = np.random.default_rng(size)
    x = np.vstack([rng.integers(-128, 128, (300, 5)), np.full((1, 5), 7), [[127, -128, 127, 0, 5]]])
    y = to_float(predict_codes(q, x), q.output_type)
    v = to_float(x, q.input_type)
    e_t, i_t = "ufixed<14,1,RND,SAT>", "ufixed<14,1,RND,SAT>"
    k = np.minimum(np.floor((v.max(1, keepdims=True) - v) / (span / size)), size - 1)
    e = to_float(quantize(np.exp(-k * span / size), e_t), q.layers[1].exp_type)
    j = np.minimum(np.floor(e.sum(1, keepdims=True) / (8 / inv_size)), inv_size - 1)
    r = to_float(quantize(1 / np.maximum(j * 8 / inv_size, 1), i_t), q.layers[1].inv_type)
    assert np.array_equal(y, to_float(quantize(e * r, q.output_type), q.output_type))
    soft = np.exp(v - v.max(1, keepdims=True))
    assert np.abs(y - soft / soft.sum(1, keepdims=True)).max() < 0.02 + 8 / inv_size   # a reciprocal step


def test_argmax_lowest_index_wins_ties():
    q = _softmax_model(6, {"argmax": True})
    assert q.layers[1].op == "argmax" and str(q.output_type) == "ufixed<3,3,TRN,WRAP>"
    rng = np.random.default_rng(1)
    x = np.vstack([rng.integers(-4, 4, (500, 6)), np.full((1, 6), -128)])
    assert np.array_equal(predict_codes(q, x)[:, 0], np.argmax(x, axis=1))
    with pytest.raises(RtlgenError, match=r"the argmax outputs the class index .* \['table_size'\] do not apply"):
        _softmax_model(6, {"argmax": True, "table_size": 64})
    with pytest.raises(RtlgenError, match="a softmax needs a result type"):
        _softmax_model(6, {})


@pytest.mark.parametrize("result", [None, "ufixed<8,4,RND,SAT>", "ufixed<12,2,RND_CONV,SAT>"])
def test_square(result):
    q, x, y = run("square", {"result": result} if result else {})
    if result is None:     # exact: every square of the input type, at twice its fraction bits
        assert q.output_type.frac == 2 * q.input_type.frac and np.array_equal(y, x * x)
    else:
        assert np.array_equal(y, to_float(quantize(x * x, q.output_type), q.output_type))


def test_a_slope_lost_to_quantization_is_a_warning():
    from rtlgen.errors import RtlgenWarning
    with pytest.warns(RtlgenWarning, match=r"the slope 0.01 quantizes to zero in fixed<8,3,TRN,WRAP>"):
        run("leaky_relu", {"weight": "fixed<8,3>"}, slope=np.array([0.01]))
