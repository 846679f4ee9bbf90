"""Property tests of the shift-and-add graphs and their pipeline plans."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rtlgen.numerics.adder_graph import _add_term, _chains, _naf_weight, adder_graph, csd_digits
from rtlgen.numerics.fixed import bits_for_range
from rtlgen.numerics.pipeline import DELAY_MODELS, _earliest, level_model, longest_path, plan_stages


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
@given(matrices, st.booleans(), st.booleans(), st.integers(0, 3), st.integers(0, 3), st.integers(0, 2))
def test_graph_computes_the_product_with_exact_widths(m, signed_in, with_bias, wshift, bshift, slack):
    n_in, n_out, vals = m
    w = _matrix(vals, n_in, n_out)
    ranges = [(-512, 511) if signed_in else (0, 1023)] * n_in
    bias = np.arange(n_out, dtype=np.int64) * 37 - 50 if with_bias else None
    g = adder_graph(w, ranges, bias, weight_shift=wshift, bias_shift=bshift, depth_slack=slack)
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
@given(matrices, st.integers(1, 3))
def test_sharing_never_costs_adders_or_depth(m, slack):
    n_in, n_out, vals = m
    w = _matrix(vals, n_in, n_out)
    ranges = [(-128, 127)] * n_in
    plain = adder_graph(w, ranges, share=False)
    shared = adder_graph(w, ranges)
    assert shared.adder_bits() <= plain.adder_bits()
    assert shared.depth <= plain.depth
    # a depth slack never costs adder bits either, and stays within its levels
    deeper = adder_graph(w, ranges, depth_slack=slack)
    assert deeper.adder_bits() <= shared.adder_bits()
    assert deeper.depth <= plain.depth + slack


@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=20))
def test_vector_digit_count_is_the_csd_digit_count(values):
    # the chain search counts digits of many columns at once; csd_digits is the definition
    assert _naf_weight(np.array(values, dtype=np.int64)).tolist() == [len(csd_digits(v)) for v in values]


def test_sharing_finds_a_repeated_pattern():
    # column 0 is x0 + 2*x1, column 1 four times that plus x2: one shared adder and one more
    w = np.array([[1, 4], [2, 8], [0, 1]])
    assert adder_graph(w, [(-100, 100)] * 3).adders == 2
    # summed apart, the columns need 1 + 2 adders
    assert adder_graph(w, [(-100, 100)] * 3, share=False).adders == 3
    # column 1 three times column 0: 3a = (a << 2) - a, one adder after a, shared or not
    w = np.array([[1, 3], [2, 6]])
    assert adder_graph(w, [(-100, 100)] * 2).adders == 2


def test_a_depth_slack_builds_similar_outputs_from_one_another():
    # column 1 is column 0 plus x3, column 2 is 4*x7 minus column 0: with one level of slack,
    # each is one adder after column 0's sum
    rng = np.random.default_rng(5)
    c0 = rng.integers(-128, 128, 12)
    w = np.stack([c0, c0 + np.eye(12, dtype=np.int64)[3], 4 * np.eye(12, dtype=np.int64)[7] - c0], axis=1)
    ranges = [(-128, 127)] * 12
    assert _chains(w.astype(object), 1) == [None, (0, 1), (0, -1)]
    alone = adder_graph(w[:, :1], ranges)
    g = adder_graph(w, ranges, depth_slack=1)
    assert g.adders == alone.adders + 2
    assert g.depth == alone.depth + 1
    assert adder_graph(w, ranges).adders > g.adders + 5      # without the slack: pairs only
    x = rng.integers(-128, 128, (50, 12))
    assert (g.evaluate(x) == x.astype(object) @ w.astype(object)).all()


def test_chains_keep_to_their_links_and_an_outputs_term_merges():
    # four copies of a column: every other one is one link from the first, never two
    w = np.tile(np.array([[5], [-3], [7]], dtype=object), (1, 4))
    parents = _chains(w, 1)
    assert parents[0] is None and all(p == (0, 1) for p in parents[1:])
    # each column is the one before plus one more digit: the cheapest tree is one chain, which
    # the link limit cuts into paths from column 0 of at most `levels` links
    step = np.zeros((6, 4), dtype=object)
    step[5] = [0, 21, 85, 341]
    w = np.tile(np.array([[5], [-3], [7], [11], [13], [0]], dtype=object), (1, 4)) + step
    assert _chains(w, 3) == [None, (0, 1), (1, 1), (2, 1)]
    assert _chains(w, 2) == [None, (0, 1), (1, 1), (1, 1)]
    assert _chains(w, 1) == [None, (0, 1), (0, 1), (0, 1)]
    col = {(4, 0): 1}
    _add_term(col, 4, 0, 1)          # x + x = x << 1
    assert col == {(4, 1): 1}
    _add_term(col, 4, 1, -1)         # x - x = 0
    assert col == {}


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


def test_a_chain_of_two_links_takes_each_parents_own_constant():
    # with slack 2, output 2 is built from output 1 and output 1 from output 0; each link's constant
    # is its bias less its parent's bias, not less the parent's own difference
    w = np.array([[0, 0, 0], [0, 0, 0], [-3, 11, 11]])
    bias = [-50, -13, 24]
    g = adder_graph(w, [(0, 1023)] * 3, bias, depth_slack=2)
    x = np.array([[0, 0, 0], [5, 7, 1000], [1023, 1023, 1023]], dtype=object)
    assert (g.evaluate(x) == x @ w.astype(object) + np.array(bias, dtype=object)).all()


def test_a_constant_with_trailing_zeros_starts_its_adder_above_them():
    # y = x + 48 with 48 = 3 << 4: the adder wires bits 0-3 through from x and adds 3 above them
    g = adder_graph(np.array([[1]]), [(-128, 127)], [48])
    node = g.nodes[g.outputs[0][0]]
    assert g.adders == 1 and node.passthrough == 4
    assert g.adder_bits() == node.width - 4
    x = np.arange(-128, 128).astype(object).reshape(-1, 1)
    assert list(g.evaluate(x)[:, 0]) == [v + 48 for v in range(-128, 128)]


def _check_valid(g, plan, model, budget):
    """Operands come from the same or an earlier stage; every stage's paths fit the budget."""
    for k, node in enumerate(g.nodes):
        if node.kind != "add":
            continue
        assert max(plan.stage[node.a], plan.stage[node.b]) <= plan.stage[k] <= plan.ranks
        own = model.start(g.adders) + model.adder(node.width)
        # a path ends with the carry chain of its last adder; a lone adder may not fit
        assert plan.arrival[k] + model.carry(node.width) <= budget + 1e-9 or plan.arrival[k] == pytest.approx(own)
        start = max(plan.arrival[u] if plan.stage[u] == plan.stage[k] and g.nodes[u].kind == "add"
                    else model.start(g.adders) for u in (node.a, node.b))
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
    # the path estimate of the plan is its planner's own longest arrival, carry chain included
    t0 = model.start(g.adders)
    ends = [plan.arrival[k] + model.carry(n.width) for k, n in enumerate(g.nodes) if n.kind == "add"]
    assert longest_path(g, plan.stage, plan.ranks, model) == pytest.approx(max([t0, *ends]))
    for k, node in enumerate(g.nodes):
        # the earliest plan moves a node to a new stage only when the path in the earlier one is too long
        if node.kind == "add" and early.stage[k] > max(early.stage[node.a], early.stage[node.b]):
            start = max(early.arrival[u] if early.stage[u] == early.stage[k] - 1 else model.start(g.adders)
                        for u in (node.a, node.b))
            assert start + model.adder(node.width) + model.carry(node.width) > budget


@settings(max_examples=60, deadline=None)
@given(matrices, st.booleans(), st.integers(1, 4), st.integers(0, 1))
def test_sharing_groups_compute_the_product_and_keep_to_their_columns(m, with_bias, size, slack):
    n_in, n_out, vals = m
    w = _matrix(vals, n_in, n_out)
    ranges = [(-300, 200)] * n_in
    bias = np.arange(n_out, dtype=np.int64) * 29 - 40 if with_bias else None
    g = adder_graph(w, ranges, bias, weight_shift=1, bias_shift=2, depth_slack=slack, share_columns=size)
    rng = np.random.default_rng(n_in * 5 + n_out)
    x = np.vstack([rng.integers(-300, 201, size=(30, n_in)), np.full((1, n_in), -300), np.full((1, n_in), 200)])
    expected = (x.astype(object) @ w.astype(object)) * 2
    if bias is not None:
        expected = expected + np.array([int(b) << 2 for b in bias], dtype=object)
    assert (g.evaluate(x) == expected).all()
    # each group is the graph of its own columns, and no adder of one group reads another's
    parts = [adder_graph(w[:, j:j + size], ranges, None if bias is None else bias[j:j + size],
                         weight_shift=1, bias_shift=2, depth_slack=slack) for j in range(0, n_out, size)]
    if len(parts) == 1:
        assert g.group_adders == []
        return
    assert g.group_adders == [p.adders for p in parts]
    assert g.adders == sum(g.group_adders)
    reached = []                      # the adders each group's outputs read
    for p in range(len(parts)):
        seen, todo = set(), [k for j, (k, _) in enumerate(g.outputs) if j // size == p]
        while todo:
            k = todo.pop()
            if g.nodes[k].kind == "add" and k not in seen:
                seen.add(k)
                todo += [g.nodes[k].a, g.nodes[k].b]
        reached.append(seen)
    assert [len(r) for r in reached] == g.group_adders
    assert len(set().union(*reached)) == g.adders        # no adder serves two groups
