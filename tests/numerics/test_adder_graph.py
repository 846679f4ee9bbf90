"""Property tests of the shift-and-add graphs and their pipeline plans."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rtlgen.numerics.adder_graph import adder_graph, csd_digits
from rtlgen.numerics.fixed import bits_for_range
from rtlgen.numerics.pipeline import DELAY_MODELS, _earliest, level_model, plan_stages


@given(st.integers(-(1 << 40), 1 << 40))
def test_csd_digits_sum_to_the_value_and_are_canonical(v):
    digits = csd_digits(v)
    assert sum(d << k for k, d in digits) == v
    shifts = [k for k, _ in digits]
    assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))    # no two adjacent nonzero digits
    assert all(d in (1, -1) for _, d in digits)
    # the canonical form has the fewest nonzero digits: never more than the binary ones
    assert len(digits) <= bin(abs(v)).count("1")


def _matrix(draw_ints, n_in, n_out):
    return np.array(draw_ints, dtype=np.int64).reshape(n_in, n_out)


matrices = st.integers(1, 6).flatmap(lambda n_in: st.integers(1, 6).flatmap(
    lambda n_out: st.tuples(st.just(n_in), st.just(n_out),
                            st.lists(st.one_of(st.integers(-130, 130),
                                               st.sampled_from([0, 1, -1, 64, -64, 128, -128, 127, -127])),
                                     min_size=n_in * n_out, max_size=n_in * n_out))))


def _corners(ranges, coef):
    """The input vectors that reach the smallest and largest value of a linear form."""
    lo = [r[0] if coef.get(i, 0) > 0 else r[1] for i, r in enumerate(ranges)]
    hi = [r[1] if coef.get(i, 0) > 0 else r[0] for i, r in enumerate(ranges)]
    return lo, hi


@settings(max_examples=150, deadline=None)
@given(matrices, st.booleans(), st.booleans(), st.integers(0, 3), st.integers(0, 3))
def test_graph_computes_the_product_with_exact_widths(m, signed_in, with_bias, wshift, bshift):
    n_in, n_out, vals = m
    w = _matrix(vals, n_in, n_out)
    ranges = [(-512, 511) if signed_in else (0, 1023)] * n_in
    bias = np.arange(n_out, dtype=np.int64) * 37 - 50 if with_bias else None
    g = adder_graph(w, ranges, bias, weight_shift=wshift, bias_shift=bshift)
    rng = np.random.default_rng(n_in * 7 + n_out)
    x = np.vstack([rng.integers(ranges[0][0], ranges[0][1] + 1, size=(40, n_in)),
                   np.full((1, n_in), ranges[0][0]), np.full((1, n_in), ranges[0][1])])
    expected = (x.astype(object) @ w.astype(object)) * (1 << wshift)
    if bias is not None:
        expected = expected + np.array([int(b) << bshift for b in bias], dtype=object)
    assert (g.evaluate(x) == expected).all()
    # every node's range is reached by some input vector: its width is the narrowest possible
    for k, node in enumerate(g.nodes):
        if node.kind != "add":
            continue
        lo_x, hi_x = _corners(ranges, g.coefficients[k])
        sub = type(g)(g.n_in, g.nodes[:k + 1], [(k, 0)])
        got = sub.evaluate(np.array([lo_x, hi_x], dtype=object))
        assert (int(got[0, 0]), int(got[1, 0])) == (node.lo, node.hi)
        assert bits_for_range(node.lo, node.hi)[0] == node.width


@settings(max_examples=60, deadline=None)
@given(matrices)
def test_sharing_never_costs_adders_or_depth(m):
    n_in, n_out, vals = m
    w = _matrix(vals, n_in, n_out)
    ranges = [(-128, 127)] * n_in
    plain = adder_graph(w, ranges, share=False)
    shared = adder_graph(w, ranges)
    assert shared.adder_bits() <= plain.adder_bits()
    assert shared.depth <= plain.depth


def test_sharing_finds_a_repeated_pattern():
    # column 0 is x0 + 2*x1, column 1 three times that: one shared adder and one more
    w = np.array([[1, 3], [2, 6]])
    g = adder_graph(w, [(-100, 100)] * 2)
    assert g.adders == 2
    # summed apart, the columns' signed digits (2 and 4) need 1 + 3 adders
    assert sum(len(csd_digits(int(v))) for v in w.reshape(-1)) - w.shape[1] == 4


def test_a_negative_pattern_is_added_not_negated():
    # 3x = (x << 2) - x in both columns: the shared node is 3x itself, not -3x and a negation
    g = adder_graph(np.array([[3, 3]]), [(-128, 127)])
    assert g.adders == 1


def test_plain_tree_is_balanced():
    w = np.ones((16, 1), dtype=np.int64)
    g = adder_graph(w, [(0, 15)] * 16, share=False)
    assert (g.adders, g.depth) == (15, 4)
    assert g.nodes[g.outputs[0][0]].hi == 16 * 15


def test_zero_columns_and_matrices_give_constants():
    g = adder_graph(np.zeros((3, 2), dtype=np.int64), [(-4, 3)] * 3, [5, 0])
    assert g.adders == 0
    assert [g.nodes[k].value << s for k, s in g.outputs] == [5, 0]


def _check_valid(g, plan, model, budget):
    """Operands come from the same or an earlier stage; every stage's paths fit the budget."""
    for k, node in enumerate(g.nodes):
        if node.kind != "add":
            continue
        assert max(plan.stage[node.a], plan.stage[node.b]) <= plan.stage[k] <= plan.ranks
        own = model.t_fixed + model.adder(node.width)
        # a path ends with the carry chain of its last adder; a lone adder may not fit
        assert plan.arrival[k] + model.carry(node.width) <= budget + 1e-9 or plan.arrival[k] == pytest.approx(own)
        start = max(plan.arrival[u] if plan.stage[u] == plan.stage[k] and g.nodes[u].kind == "add"
                    else model.t_fixed for u in (node.a, node.b))
        assert plan.arrival[k] == pytest.approx(start + model.adder(node.width))


@settings(max_examples=60, deadline=None)
@given(matrices, st.integers(1, 4))
def test_level_plan_registers_every_adder_levels(m, levels):
    n_in, n_out, vals = m
    g = adder_graph(_matrix(vals, n_in, n_out), [(-128, 127)] * n_in)
    plan = plan_stages(g, level_model(), float(levels))
    _check_valid(g, plan, level_model(), float(levels))
    assert plan.ranks == max(0, -(-g.depth // levels) - 1)


@settings(max_examples=60, deadline=None)
@given(matrices, st.sampled_from(sorted(DELAY_MODELS)), st.sampled_from([50.0, 150.0, 300.0]))
def test_timing_plan_fits_the_period_with_the_fewest_ranks(m, target, mhz):
    n_in, n_out, vals = m
    g = adder_graph(_matrix(vals, n_in, n_out), [(-2048, 2047)] * n_in)
    model, budget = DELAY_MODELS[target], 1000.0 / mhz
    plan = plan_stages(g, model, budget)
    _check_valid(g, plan, model, budget)
    early = _earliest(g, model, budget, 0.0)
    assert plan.ranks == early.ranks and plan.registers(g) <= early.registers(g)
    for k, node in enumerate(g.nodes):
        # the earliest plan moves a node to a new stage only when the path in the earlier one is too long
        if node.kind == "add" and early.stage[k] > max(early.stage[node.a], early.stage[node.b]):
            start = max(early.arrival[u] if early.stage[u] == early.stage[k] - 1 else model.t_fixed
                        for u in (node.a, node.b))
            assert start + model.adder(node.width) + model.carry(node.width) > budget
