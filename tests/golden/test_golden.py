"""The golden model against an exact rational reference written from the
semantics in ``rtlgen/ir/model.py`` (loops and Fractions, no numpy maths).

Every arithmetic the golden model may pick (float32/float64 BLAS, int64,
Python integers, per-product accumulator casts; int32/int64/generic casts)
is exercised and checked both against the reference and against the forced
all-Python-integer mode.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rtlgen.errors import RtlgenError
from rtlgen.golden import predict, predict_codes, predict_trace
from rtlgen.golden.network import describe, dense_method
from rtlgen.ir.config import apply_config
from rtlgen.ir.model import QActivation, QDense, QModel
from rtlgen.numerics.fixed import FixedType, Overflow, Quant, parse_type, to_float

from helpers.paths import ROOT


# ---------------------------------------------------------------------------
# exact reference
# ---------------------------------------------------------------------------

def ref_round(v: Fraction, quant: Quant) -> int:
    fl = math.floor(v)
    rem = v - fl
    if quant is Quant.TRN:
        return fl
    if quant is Quant.TRN_ZERO:
        return fl if v >= 0 else math.ceil(v)
    if rem > Fraction(1, 2):
        return fl + 1
    if rem < Fraction(1, 2):
        return fl
    return {   # exact tie between fl and fl + 1
        Quant.RND: fl + 1,
        Quant.RND_ZERO: fl if v > 0 else fl + 1,
        Quant.RND_MIN_INF: fl,
        Quant.RND_INF: fl + 1 if v > 0 else fl,
        Quant.RND_CONV: fl if fl % 2 == 0 else fl + 1,
    }[quant]


def ref_cast(v: Fraction, t: FixedType) -> int:
    """Code of type ``t`` for the exact value ``v``."""
    code = ref_round(v * Fraction(2) ** t.frac, t.quant)
    lo = -(2 ** (t.width - 1)) if t.signed else 0
    hi = 2 ** (t.width - 1) - 1 if t.signed else 2 ** t.width - 1
    if lo <= code <= hi:
        if t.overflow is Overflow.SAT_SYM and t.signed and code == lo:
            return -hi
        return code
    if t.overflow is Overflow.WRAP:
        return (code - lo) % (2 ** t.width) + lo
    if t.overflow is Overflow.SAT:
        return hi if code > hi else lo
    if t.overflow is Overflow.SAT_ZERO:
        return 0
    if t.overflow is Overflow.SAT_SYM:
        return hi if code > hi else (-hi if t.signed else lo)
    raise AssertionError(t.overflow)


def val(code: int, t: FixedType) -> Fraction:
    return Fraction(int(code)) / Fraction(2) ** t.frac


def ref_predict(q: QModel, rows) -> list:
    out = []
    for row in rows:
        codes = [int(c) for c in row]
        typ = q.input_type
        for layer in q.layers:
            values = [val(c, typ) for c in codes]
            if isinstance(layer, QDense):
                new = []
                for j in range(layer.n_out):
                    b = val(layer.bias[j], layer.bias_type)
                    prods = [values[i] * val(layer.weights[i][j], layer.weight_type) for i in range(layer.n_in)]
                    if layer.accum_type is None:
                        new.append(ref_cast(sum(prods, Fraction(0)) + b, layer.result_type))
                    else:
                        a = layer.accum_type
                        acc = sum((val(ref_cast(p, a), a) for p in prods), Fraction(0)) + val(ref_cast(b, a), a)
                        acc = val(ref_cast(acc, a), a)   # wraps in the accumulator
                        new.append(ref_cast(acc, layer.result_type))
                codes = new
            elif layer.kind == "relu":
                codes = [ref_cast(max(Fraction(0), v), layer.result_type) for v in values]
            else:
                codes = [ref_cast(v, layer.result_type) for v in values]
            typ = layer.result_type
        out.append(codes)
    return out


def assert_matches(q: QModel, x, methods=None):
    """Golden (auto and forced Python ints) equals the reference, exactly."""
    got = predict_codes(q, x)
    forced = predict_codes(q, x, arithmetic="object")
    want = ref_predict(q, x)
    assert got.shape == (len(x), q.n_out)
    assert [[int(v) for v in r] for r in got] == want
    assert [[int(v) for v in r] for r in forced] == want
    if methods is not None:
        assert [d["sum"] for d in describe(q) if d["sum"]] == methods
    return got


# ---------------------------------------------------------------------------
# model builders
# ---------------------------------------------------------------------------

def T(spec: str) -> FixedType:
    return parse_type(spec)


def rand_codes(rng, t: FixedType, shape):
    lo, hi = t.min_code, t.max_code
    if hi - lo < 2 ** 62:
        return rng.integers(lo, hi + 1, size=shape, dtype=np.int64) if t.width <= 62 else \
            np.array([[lo + int(v) for v in r] for r in rng.integers(0, hi - lo + 1, size=shape)],
                     dtype=object).reshape(shape)
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = lo + int.from_bytes(rng.bytes((t.width + 7) // 8), "little") % (hi - lo + 1)
    return out


def dense(name, in_t, w_t, b_t, r_t, n_in, n_out, rng, accum=None, zero_frac=0.0):
    w = rand_codes(rng, w_t, (n_in, n_out))
    if zero_frac:
        w = np.where(rng.random((n_in, n_out)) < zero_frac, 0, w)
        if w.dtype != object and w_t.width > 62:
            w = w.astype(object)
    b = rand_codes(rng, b_t, (n_out,))
    return QDense(name=name, in_type=in_t, weight_type=w_t, bias_type=b_t, result_type=r_t,
                  weights=w, bias=b, accum_type=accum)


def edge_inputs(t: FixedType, n_in: int, rng, extra=8):
    rows = [[t.max_code] * n_in, [t.min_code] * n_in, [0] * n_in,
            [t.max_code if i % 2 else t.min_code for i in range(n_in)]]
    rnd = rand_codes(rng, t, (extra, n_in))
    rows += [[int(v) for v in r] for r in rnd]
    dtype = np.int64 if t.width <= 63 else object
    arr = np.empty((len(rows), n_in), dtype=dtype)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            arr[i, j] = v
    return arr


# ---------------------------------------------------------------------------
# each arithmetic path, checked against the reference
# ---------------------------------------------------------------------------

def two_layer(rng, in_t, w_t, b_t, r_t, act="relu", act_t=None, accum=None, sizes=(5, 4, 3)):
    a, b, c = sizes
    l1 = dense("d0", in_t, w_t, b_t, r_t, a, b, rng, accum=accum)
    act_t = act_t or r_t
    l2 = QActivation(name="a0", kind=act, size=b, in_type=r_t, result_type=act_t)
    l3 = dense("d1", act_t, w_t, b_t, r_t, b, c, rng, accum=accum)
    return QModel("m", in_t, a, [l1, l2, l3])


def test_float32_path():
    rng = np.random.default_rng(1)
    q = two_layer(rng, T("fixed<9,2,RND,SAT>"), T("fixed<8,3,RND,SAT>"), T("fixed<8,3,RND,SAT>"),
                  T("fixed<12,6,RND,SAT>"))
    assert_matches(q, edge_inputs(q.input_type, 5, rng, 40), methods=["float32", "float32"])


def test_float64_path():
    rng = np.random.default_rng(2)
    q = two_layer(rng, T("fixed<20,4,RND_CONV,SAT>"), T("fixed<16,2,TRN_ZERO,SAT>"),
                  T("fixed<16,6>"), T("fixed<24,8,RND_INF,SAT_SYM>"))
    assert_matches(q, edge_inputs(q.input_type, 5, rng, 40), methods=["float64", "float64"])


def test_int64_path():
    rng = np.random.default_rng(3)
    q = two_layer(rng, T("fixed<30,10,RND,WRAP>"), T("fixed<28,4,RND_ZERO,SAT>"),
                  T("fixed<20,8>"), T("fixed<30,12,RND_MIN_INF,SAT>"))
    assert_matches(q, edge_inputs(q.input_type, 5, rng, 40), methods=["int64", "int64"])


def test_object_path_wide_types():
    rng = np.random.default_rng(4)
    q = two_layer(rng, T("fixed<80,40,RND,SAT>"), T("fixed<70,10,RND_CONV,SAT>"),
                  T("fixed<90,45>"), T("fixed<100,50,RND,WRAP>"))
    got = assert_matches(q, edge_inputs(q.input_type, 5, rng, 20), methods=["object", "object"])
    assert got.dtype == object


def test_per_product_accumulator_path():
    rng = np.random.default_rng(5)
    # accum frac (6) < in frac (5) + weight frac (5): every product is rounded
    accum = T("fixed<12,6,RND,WRAP>")
    q = two_layer(rng, T("fixed<9,4,RND,SAT>"), T("fixed<8,3,RND,SAT>"), T("fixed<10,2,TRN,SAT>"),
                  T("fixed<10,5,RND_CONV,SAT>"), accum=accum)
    assert_matches(q, edge_inputs(q.input_type, 5, rng, 60), methods=["per_product", "per_product"])


def test_exact_accumulator_wraps():
    rng = np.random.default_rng(6)
    accum = T("fixed<10,4>")       # frac 6 >= 3 + 3: products exact, the sum wraps at 10 bits
    q = two_layer(rng, T("fixed<8,5>"), T("fixed<8,5>"), T("fixed<12,8,RND,SAT>"),
                  T("fixed<8,4,RND,SAT>"), accum=accum)
    x = edge_inputs(q.input_type, 5, rng, 60)
    assert_matches(q, x)
    assert describe(q)[0]["accum_cast"] == "generic"   # the wrap really can happen
    # and it does: some sums land outside the accumulator range
    exact = [[sum(int(x[r, i]) * int(q.layers[0].weights[i, j]) for i in range(5)) for j in range(4)]
             for r in range(len(x))]
    assert any(not -(2 ** 9) <= s <= 2 ** 9 - 1 for row in exact for s in row)


def test_wide_accumulator_is_identity():
    rng = np.random.default_rng(7)
    q = two_layer(rng, T("fixed<8,3>"), T("fixed<8,3>"), T("fixed<8,3>"), T("fixed<10,4,RND,SAT>"),
                  accum=T("fixed<40,20>"))
    assert_matches(q, edge_inputs(q.input_type, 5, rng, 30))
    assert describe(q)[0]["accum_cast"] == "identity"


def test_unsigned_types_and_linear_activation():
    rng = np.random.default_rng(8)
    q = two_layer(rng, T("ufixed<8,2,RND,SAT>"), T("fixed<6,1,RND,SAT>"), T("ufixed<6,3>"),
                  T("ufixed<10,4,RND,SAT_ZERO>"), act="linear", act_t=T("ufixed<6,3,TRN,WRAP>"))
    assert_matches(q, edge_inputs(q.input_type, 5, rng, 60))


def test_cast_modes_are_all_exercised():
    rng = np.random.default_rng(9)
    # int32 casts (small), int64 casts (40-bit result), generic (WRAP that can overflow, wide)
    small = two_layer(rng, T("fixed<9,2,RND,SAT>"), T("fixed<8,3,RND,SAT>"), T("fixed<8,3>"),
                      T("fixed<16,6,RND,SAT>"))
    mid = two_layer(rng, T("fixed<30,10,RND,SAT>"), T("fixed<30,10,RND,SAT>"), T("fixed<8,3>"),
                    T("fixed<40,22,RND,SAT>"))
    wrap = two_layer(rng, T("fixed<9,2>"), T("fixed<8,3>"), T("fixed<8,3>"), T("fixed<8,2,RND,WRAP>"))
    modes = set()
    for q in (small, mid, wrap):
        assert_matches(q, edge_inputs(q.input_type, 5, rng, 20))
        modes |= {d["cast"] for d in describe(q)}
    assert {"int32", "int64", "generic", "identity"} <= modes


def test_forced_object_mode_is_all_python_ints():
    rng = np.random.default_rng(10)
    q = two_layer(rng, T("fixed<9,2,RND,SAT>"), T("fixed<8,3,RND,SAT>"), T("fixed<8,3>"),
                  T("fixed<16,6,RND,SAT>"))
    info = describe(q, force_object=True)
    assert [d["sum"] for d in info if d["sum"]] == ["object", "object"]
    assert {d["cast"] for d in info} == {"generic"}
    with pytest.raises(RtlgenError, match="arithmetic must be"):
        predict_codes(q, np.zeros((1, 5), dtype=np.int64), arithmetic="fast")


def test_dense_method_reports_by_input_range():
    rng = np.random.default_rng(11)
    layer = dense("d", T("fixed<50,20>"), T("fixed<8,3>"), T("fixed<8,3>"), T("fixed<16,6>"), 4, 2, rng)
    layer.weights[0, 0] = -128          # |x @ w| can reach 2**49 * 128 * ... > 2**53
    assert dense_method(layer) == "int64"
    assert dense_method(layer, -2 ** 39, 2 ** 39) == "float64"
    assert dense_method(layer, -10, 10) == "float32"


# ---------------------------------------------------------------------------
# random models over many type combinations
# ---------------------------------------------------------------------------

@st.composite
def fixed_types(draw, max_width=20, wide=False, wrap_only=False):
    width = draw(st.integers(1, max_width) if not wide else st.integers(60, 96))
    signed = draw(st.booleans())
    if signed and width < 2:
        width = 2
    integer = draw(st.integers(-3, width + 3))
    quant = draw(st.sampled_from(list(Quant)))
    ovf = Overflow.WRAP if wrap_only else draw(st.sampled_from(list(Overflow)))
    return FixedType(width, integer, signed, quant, ovf)


@st.composite
def qmodels(draw):
    wide = draw(st.booleans()) and draw(st.booleans())       # ~1/4 of the models are wide
    tp = fixed_types(wide=wide) if wide else fixed_types()
    n = draw(st.integers(1, 4))
    in_t = draw(tp)
    layers = []
    typ, size = in_t, n
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    for k in range(draw(st.integers(1, 3))):
        n_out = draw(st.integers(1, 4))
        accum = draw(st.one_of(st.none(), fixed_types(max_width=24, wrap_only=True)))
        r_t = draw(tp)
        layer = dense(f"d{k}", typ, draw(tp), draw(tp), r_t, size, n_out, rng, accum=accum,
                      zero_frac=draw(st.sampled_from([0.0, 0.5])))
        layers.append(layer)
        typ, size = r_t, n_out
        if draw(st.booleans()):
            a_t = draw(tp)
            layers.append(QActivation(name=f"a{k}", kind=draw(st.sampled_from(["relu", "linear"])),
                                      size=size, in_type=typ, result_type=a_t))
            typ = a_t
    q = QModel("h", in_t, n, layers)
    x = edge_inputs(in_t, n, rng, extra=6)
    return q, x


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(qmodels())
def test_random_models_match_reference(case):
    q, x = case
    assert_matches(q, x)


# ---------------------------------------------------------------------------
# the jet model end to end
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jet():
    from rtlgen.frontends import load_model
    return apply_config(load_model(ROOT / "models" / "jet_mlp.onnx"), ROOT / "models" / "jet_mlp.yaml")


def test_jet_matches_reference(jet):
    rng = np.random.default_rng(12)
    x = edge_inputs(jet.input_type, 16, rng, extra=12)
    got = assert_matches(jet, x)
    assert got.dtype == np.int64
    # not a degenerate network: outputs differ between inputs
    assert len({tuple(r) for r in got.tolist()}) > len(x) // 2


def test_chunking_and_threads_do_not_change_results(jet):
    rng = np.random.default_rng(13)
    x = rng.integers(-256, 256, size=(1000, 16))
    base = predict_codes(jet, x)
    np.testing.assert_array_equal(predict_codes(jet, x, chunk_rows=7, threads=2), base)
    np.testing.assert_array_equal(predict_codes(jet, x, chunk_rows=1000, threads=1), base)
    np.testing.assert_array_equal(predict_codes(jet, x, arithmetic="object"), base)


def test_trace_ends_with_the_output(jet):
    rng = np.random.default_rng(14)
    x = rng.integers(-256, 256, size=(20, 16))
    trace = predict_trace(jet, x)
    assert [t.shape[1] for t in trace] == [64, 64, 32, 32, 32, 32, 5]
    np.testing.assert_array_equal(trace[-1], predict_codes(jet, x))
    assert (trace[1] >= 0).all() and (trace[0] < 0).any()   # the ReLU did something


# ---------------------------------------------------------------------------
# the float API and input validation
# ---------------------------------------------------------------------------

def identity_model(in_spec="fixed<8,3,RND,SAT>", n=3):
    t = T(in_spec)
    return QModel("id", t, n, [QActivation("lin", "linear", n, t, t)])


def test_predict_quantizes_inputs_like_the_type_says():
    q = identity_model()      # lsb 1/32, range [-4, 4 - 1/32]
    x = np.array([[1.5 / 32, -1.5 / 32, 100.0], [-100.0, 0.1, 2.5 / 32]])
    got = predict(q, x)
    # RND: ties toward +inf; SAT clamps
    np.testing.assert_array_equal(got, [[2 / 32, -1 / 32, 4 - 1 / 32], [-4.0, 3 / 32, 3 / 32]])
    assert got.dtype == np.float64


def test_predict_equals_codes_path(jet):
    rng = np.random.default_rng(15)
    xf = rng.uniform(-3, 3, size=(50, 16))
    got = predict(jet, xf)
    from rtlgen.numerics.fixed import quantize
    want = to_float(predict_codes(jet, quantize(xf, jet.input_type)), jet.output_type)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (50, 5)


def test_predict_single_vector_and_wide_output():
    t = T("fixed<80,40,RND,SAT>")
    q = QModel("w", t, 2, [QActivation("r", "relu", 2, t, t)])
    got = predict(q, np.array([1.25, -3.0]))
    np.testing.assert_array_equal(got, [1.25, 0.0])
    codes = predict_codes(q, np.array([2 ** 70, -5], dtype=object))
    assert codes.dtype == object and codes.tolist() == [2 ** 70, 0]


def test_predict_rejects_nan():
    with pytest.raises(RtlgenError, match=r"index \(1, 2\) is NaN"):
        predict(identity_model(), np.array([[0, 0, 0], [0, 0, np.nan]]))


def test_wrong_feature_count():
    with pytest.raises(RtlgenError, match=r"expects 3 input features per vector, got 4"):
        predict(identity_model(), np.zeros((2, 4)))
    with pytest.raises(RtlgenError, match=r"expects 3 input features per vector, got 2"):
        predict_codes(identity_model(), np.zeros((2, 2), dtype=np.int64))


def test_codes_out_of_range():
    q = identity_model()      # codes [-128, 127]
    with pytest.raises(RtlgenError, match=r"input code 128 at index \(1, 0\) is outside the range \[-128, 127\]"):
        predict_codes(q, np.array([[0, 0, 0], [128, 0, 0]]))
    with pytest.raises(RtlgenError, match=r"input code -129"):
        predict_codes(q, np.array([[0, -129, 0]], dtype=object))
    with pytest.raises(RtlgenError, match=r"outside the range \[0, 255\]"):
        predict_codes(identity_model("ufixed<8,3>"), np.array([[0, -1, 0]]))


def test_non_integer_codes_rejected():
    with pytest.raises(RtlgenError, match=r"must be integers.*predict\(\)"):
        predict_codes(identity_model(), np.zeros((1, 3)))
    with pytest.raises(RtlgenError, match=r"must be integers"):
        predict_codes(identity_model(), np.array([[1, 2.5, 3]], dtype=object))
    with pytest.raises(RtlgenError, match=r"shape \[N, 3\]"):
        predict_codes(identity_model(), np.zeros((1, 1, 3), dtype=np.int64))


def test_single_vector_codes():
    q = identity_model()
    out = predict_codes(q, [1, -2, 3])
    assert out.shape == (3,) and out.tolist() == [1, -2, 3]


def test_quantize_inputs():
    from rtlgen.golden import quantize_inputs
    q = identity_model()
    codes = quantize_inputs(q, [[1.5 / 32, -100.0, 0.0]])
    assert codes.tolist() == [[2, -128, 0]]
    with pytest.raises(RtlgenError, match=r"expects 3 input features per vector, got an array of shape \[1, 1, 3\]"):
        quantize_inputs(q, np.zeros((1, 1, 3)))
