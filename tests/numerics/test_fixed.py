"""Property tests of the fixed-point numerics against an exact rational reference."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rtlgen.errors import RtlgenError
from rtlgen.numerics.fixed import (
    FixedType, Overflow, Quant, parse_type, quantize, requantize, rounding_offset, to_float, bits_for_range,
    trailing_zeros)


def ref_round(value: Fraction, quant: Quant) -> int:
    """Round an exact rational to an integer, written from the definitions."""
    fl = math.floor(value)
    rem = value - fl
    half = Fraction(1, 2)
    if quant is Quant.TRN:
        return fl
    if quant is Quant.TRN_ZERO:
        return fl if value >= 0 else math.ceil(value)
    if rem != half:
        return fl + (1 if rem > half else 0)
    # exact tie
    return {
        Quant.RND: fl + 1,
        Quant.RND_ZERO: fl + 1 if value < 0 else fl,
        Quant.RND_MIN_INF: fl,
        Quant.RND_INF: fl if value < 0 else fl + 1,
        Quant.RND_CONV: fl if fl % 2 == 0 else fl + 1,
    }[quant]


def ref_cast(value: Fraction, t: FixedType) -> int:
    code = ref_round(value * Fraction(2) ** t.frac, t.quant)
    lo, hi = t.min_code, t.max_code
    if lo <= code <= hi and not (t.overflow is Overflow.SAT_SYM and t.signed and code == lo):
        return code
    if t.overflow is Overflow.WRAP:
        low = code % (1 << t.width)
        return low - (1 << t.width) if t.signed and low > hi else low
    if t.overflow is Overflow.SAT_ZERO:
        return 0
    if t.overflow is Overflow.SAT_SYM and t.signed:
        return hi if code > hi else -hi
    return hi if code > hi else lo


types = st.builds(
    FixedType,
    width=st.integers(2, 70),
    integer=st.integers(-8, 80),
    signed=st.booleans(),
    quant=st.sampled_from(list(Quant)),
    overflow=st.sampled_from(list(Overflow)),
)


@settings(max_examples=400, deadline=None)
@given(t=types, values=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64,
                                          min_value=-1e30, max_value=1e30), min_size=1, max_size=8))
def test_quantize_matches_exact_reference(t, values):
    got = quantize(np.array(values), t)
    want = [ref_cast(Fraction(v), t) for v in values]
    assert [int(g) for g in got] == want


@settings(max_examples=400, deadline=None)
@given(t=types, src_frac=st.integers(-10, 90),
       codes=st.lists(st.integers(-(1 << 100), 1 << 100) | st.integers(-300, 300), min_size=1, max_size=8))
def test_requantize_matches_exact_reference(t, src_frac, codes):
    arr = np.array(codes, dtype=object)
    got = requantize(arr, src_frac, t)
    want = [ref_cast(Fraction(c) * Fraction(2) ** -src_frac, t) for c in codes]
    assert [int(g) for g in got] == want


@settings(max_examples=200, deadline=None)
@given(t=types, src_frac=st.integers(-4, 20),
       codes=st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=8))
def test_requantize_int64_path_agrees_with_object_path(t, src_frac, codes):
    a = requantize(np.array(codes, dtype=np.int64), src_frac, t)
    b = requantize(np.array(codes, dtype=object), src_frac, t)
    assert [int(x) for x in a] == [int(x) for x in b]


@pytest.mark.parametrize("quant,ties", [
    (Quant.RND, [2, -1, 1]), (Quant.RND_ZERO, [1, -1, 0]), (Quant.RND_MIN_INF, [1, -2, 0]),
    (Quant.RND_INF, [2, -2, 1]), (Quant.RND_CONV, [2, -2, 0]), (Quant.TRN, [1, -2, 0]),
    (Quant.TRN_ZERO, [1, -1, 0]),
])
def test_rounding_ties_by_definition(quant, ties):
    # 1.5, -1.5 and 0.5 are exact ties for an integer type.
    t = FixedType(8, 8, True, quant, Overflow.WRAP)
    assert list(quantize(np.array([1.5, -1.5, 0.5]), t)) == ties


def test_overflow_modes_at_boundaries():
    vals = np.array([7.0, 8.0, -8.0, -9.0, 19.0, -19.0])
    assert list(quantize(vals, parse_type("fixed<4,4,RND,SAT>"))) == [7, 7, -8, -8, 7, -8]
    assert list(quantize(vals, parse_type("fixed<4,4,RND,SAT_SYM>"))) == [7, 7, -7, -7, 7, -7]
    assert list(quantize(vals, parse_type("fixed<4,4,RND,SAT_ZERO>"))) == [7, 0, -8, 0, 0, 0]
    assert list(quantize(vals, parse_type("fixed<4,4,RND,WRAP>"))) == [7, -8, -8, 7, 3, -3]
    assert list(quantize(vals, parse_type("ufixed<4,4,RND,SAT>"))) == [7, 8, 0, 0, 15, 0]


def test_parse_aliases_and_fields():
    t = parse_type("ap_fixed<9, 2, AP_RND_CONV, AP_SAT>")
    assert (t.width, t.integer, t.frac, t.signed, t.quant, t.overflow) == (9, 2, 7, True, Quant.RND_CONV, Overflow.SAT)
    assert parse_type("ufixed<8,0>") == FixedType(8, 0, False, Quant.TRN, Overflow.WRAP)
    assert parse_type("ap_uint<5>") == FixedType(5, 5, False)
    assert parse_type(str(t)) == t
    assert parse_type("fixed<4,-2>").frac == 6
    assert parse_type("fixed<4,10>").frac == -6


@pytest.mark.parametrize("bad", ["fixed<8>", "fixed<8,3,RNDX>", "fixed<8,3,RND,SATT>", "float32",
                                 "fixed<0,0>", "fixed<a,3>", "fixed<8,3,RND,SAT,2>", 12])
def test_malformed_types_raise_user_error(bad):
    with pytest.raises(RtlgenError):
        parse_type(bad)


def test_nan_is_rejected_and_inf_saturates():
    with pytest.raises(RtlgenError, match="NaN"):
        quantize(np.array([np.nan]), "fixed<8,3,RND,SAT>")
    assert list(quantize(np.array([np.inf, -np.inf]), "fixed<8,3,RND,SAT>")) == [127, -128]
    with pytest.raises(RtlgenError, match="inf"):
        quantize(np.array([np.inf]), "fixed<8,3>")


@given(lo=st.integers(-(1 << 80), 1 << 80), span=st.integers(0, 1 << 80))
def test_bits_for_range_is_minimal(lo, span):
    hi = lo + span
    w, s = bits_for_range(lo, hi)
    tmin, tmax = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if s else (0, (1 << w) - 1)
    assert tmin <= lo and hi <= tmax
    if w > 1:
        w2 = w - 1
        smin, smax = (-(1 << (w2 - 1)), (1 << (w2 - 1)) - 1) if s else (0, (1 << w2) - 1)
        assert lo < smin or hi > smax


@given(values=st.lists(st.integers(-(1 << 70), 1 << 70), max_size=6))
def test_trailing_zeros_is_the_largest_shared_power_of_two(values):
    tz = trailing_zeros(values)
    assert all(v % (1 << tz) == 0 for v in values)
    if any(values):
        assert any(v % (1 << (tz + 1)) for v in values)
    else:
        assert tz == 0


def test_to_float_is_exact():
    t = parse_type("fixed<16,6>")
    codes = np.array([-32768, -1, 0, 1, 32767])
    assert list(to_float(codes, t)) == [float(t.value_of(int(c))) for c in codes]


@pytest.mark.parametrize("quant", list(Quant))
def test_values_that_underflow_the_scaling_round_correctly(quant):
    t = FixedType(2, 55, False, quant, Overflow.WRAP)   # 2**53 per code step
    vals = [-2.2250738585072014e-308, 5e-324, -5e-324]
    assert [int(c) for c in quantize(np.array(vals), t)] == [ref_cast(Fraction(v), t) for v in vals]


@given(st.integers(-100_000, 100_000), st.integers(0, 12), st.sampled_from(list(Quant)))
def test_a_sum_that_adds_the_rounding_offset_only_truncates(x, shift, quant):
    offset = rounding_offset(quant, shift)
    if offset is None:
        assert shift > 0 and quant in (Quant.TRN_ZERO, Quant.RND_ZERO, Quant.RND_INF, Quant.RND_CONV)
        return
    assert (x + offset) >> shift == ref_round(Fraction(x, 1 << shift), quant)
