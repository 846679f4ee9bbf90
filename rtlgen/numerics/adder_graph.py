"""Constant matrix-vector products as shared shift-and-add graphs.

:func:`adder_graph` turns ``y = x @ W + b`` with a constant integer matrix
``W`` ([n_in, n_out]) and integer inputs in known ranges into a graph of
two-input adders:

1. every weight is recoded in canonical signed digits (CSD: no two
   adjacent nonzero digits, the fewest nonzero digits of any signed-digit
   form), so column ``j`` is a sum of terms ``±x_i << k``;
2. common subexpressions are shared across the whole matrix: repeatedly,
   the pair of terms ``(x_a << k, ±x_b << (k + d))`` that occurs (up to a
   common shift) in the most columns becomes one adder ``x_a ± (x_b << d)``,
   and every occurrence is replaced by the new node (Hartley's method,
   applied to the matrix rather than to one weight at a time).  A pair is
   only replaced in a column while that column can still be summed in as
   few levels as the deepest plain column (see :func:`_share`), so sharing
   never makes the graph deeper;
3. the remaining terms of every column (and its bias, as a constant leaf
   shifted by its trailing zeros) are summed in the least depth their
   depths allow, adding the terms of smallest magnitude first wherever that
   depth permits (see :func:`_sum_column`).

Every node carries its exact value range, computed from its integer
coefficient on each input (the inputs vary independently, so the bounds
are attained); its word width (:func:`rtlgen.numerics.fixed.bits_for_range`)
is therefore exact, never wider than the values need.  The graph is pure
integer bookkeeping: :mod:`rtlgen.hw.shift_add` turns it into hardware and
the golden model does not need it (the sums are exact).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

import numpy as np

from .fixed import bits_for_range, trailing_zeros

__all__ = ["csd_digits", "tree_depth", "Node", "Term", "AdderGraph", "adder_graph"]

#: the most term pairs counted before the pair search narrows (keeps large layers fast)
PAIR_BUDGET = 1_500_000
#: the most term updates the sharing step makes; past it the remaining terms are summed
#: as they are (a deterministic bound on the build time of very large layers)
WORK_BUDGET = 6_000_000


def csd_digits(value: int) -> list[tuple[int, int]]:
    """The canonical signed-digit form of ``value``: ``[(shift, ±1), ...]``, low digit first.

    ``sum(sign << shift)`` equals ``value``; no two digits are adjacent.
    """
    value = int(value)
    digits = []
    k = 0
    while value:
        if value & 1:
            d = 2 - (value & 3)          # +1 when value % 4 == 1, -1 when value % 4 == 3
            digits.append((k, d))
            value -= d
        value >>= 1
        k += 1
    return digits


@dataclass(frozen=True)
class Node:
    """One value of the graph.

    ``kind`` is ``"input"`` (input ``index``), ``"const"`` (the integer
    ``value``) or ``"add"``: ``(a << a_shift) + sign * (b << b_shift)``
    with ``a``/``b`` node numbers (at most one of the shifts is nonzero).
    ``lo``/``hi`` is the exact range, ``depth`` the adders on the longest
    path from an input.
    """
    kind: str
    lo: int
    hi: int
    depth: int = 0
    index: int = 0
    value: int = 0
    a: int = 0
    a_shift: int = 0
    b: int = 0
    b_shift: int = 0
    sign: int = 1

    @property
    def width(self) -> int:
        return bits_for_range(self.lo, self.hi)[0]

    @property
    def is_signed(self) -> bool:
        return bits_for_range(self.lo, self.hi)[1]

    @property
    def passthrough(self) -> int:
        """The low bits of an add node that come from one operand unchanged (its adder starts
        above them): ``(a << s) + b`` and ``a - (b << s)`` take their low ``s`` bits from the
        other operand (the shifted one has zeros there, so no carry or borrow comes out of
        them); ``(a << s) - b`` has none."""
        return self.b_shift if self.sign < 0 else max(self.a_shift, self.b_shift)


@dataclass(frozen=True)
class Term:
    """``sign * (node << shift)``, one summand of a column."""
    node: int
    shift: int
    sign: int


@dataclass
class AdderGraph:
    """The result of :func:`adder_graph`.

    ``nodes[k]`` for ``k < n_in`` is input ``k``; ``outputs[j]`` is
    ``(node, shift)``: output ``j`` equals ``nodes[node] << shift`` (its
    sign is always positive).
    """
    n_in: int
    nodes: list[Node]
    outputs: list[tuple[int, int]]
    #: node number -> its coefficient on every input and its constant
    coefficients: list[dict] = field(repr=False, default_factory=list)
    #: the adders of every sharing group (:func:`adder_graph`'s ``share_columns``); empty for one graph
    group_adders: list[int] = field(default_factory=list)

    @property
    def adders(self) -> int:
        return sum(1 for n in self.nodes if n.kind == "add")

    @property
    def depth(self) -> int:
        return max([self.nodes[k].depth for k, _ in self.outputs] or [0])

    def adder_bits(self) -> int:
        """Sum of the adders' result widths less the low bits that pass through
        unchanged (:attr:`Node.passthrough`; a first-order LUT count on a
        carry-chain FPGA)."""
        return sum(max(1, n.width - n.passthrough) for n in self.nodes if n.kind == "add")

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """The outputs for integer inputs ``x`` [N, n_in] (object integers), node by node."""
        x = np.asarray(x, dtype=object)
        vals: list = []
        for n in self.nodes:
            if n.kind == "input":
                vals.append(x[:, n.index])
            elif n.kind == "const":
                vals.append(np.full(x.shape[0], n.value, dtype=object))
            else:
                vals.append((vals[n.a] << n.a_shift) + n.sign * (vals[n.b] << n.b_shift))
        out = np.zeros((x.shape[0], len(self.outputs)), dtype=object)
        for j, (k, s) in enumerate(self.outputs):
            out[:, j] = vals[k] << s
        return out


class _Builder:
    def __init__(self, ranges: list[tuple[int, int]]):
        self.ranges = ranges
        self.nodes: list[Node] = []
        self.coefs: list[dict] = []
        self.consts: dict[int, int] = {}
        self.adds: dict[tuple, int] = {}
        for i, (lo, hi) in enumerate(ranges):
            self.nodes.append(Node("input", int(lo), int(hi), index=i))
            self.coefs.append({i: 1})

    def _range(self, coef: dict) -> tuple[int, int]:
        lo = hi = coef.get(None, 0)
        for i, c in coef.items():
            if i is None:
                continue
            a, b = c * self.ranges[i][0], c * self.ranges[i][1]
            lo += min(a, b)
            hi += max(a, b)
        return lo, hi

    def const(self, value: int) -> int:
        value = int(value)
        if value not in self.consts:
            self.consts[value] = len(self.nodes)
            self.nodes.append(Node("const", value, value, value=value))
            self.coefs.append({None: value})
        return self.consts[value]

    def add(self, a: int, a_shift: int, b: int, b_shift: int, sign: int) -> int:
        key = (a, a_shift, b, b_shift, sign)
        if key in self.adds:
            return self.adds[key]
        coef = {k: c << a_shift for k, c in self.coefs[a].items()}
        for k, c in self.coefs[b].items():
            v = coef.get(k, 0) + sign * (c << b_shift)
            if v:
                coef[k] = v
            else:
                coef.pop(k, None)
        lo, hi = self._range(coef)
        depth = max(self.nodes[a].depth, self.nodes[b].depth) + 1
        self.adds[key] = len(self.nodes)
        self.nodes.append(Node("add", lo, hi, depth=depth, a=a, a_shift=a_shift, b=b, b_shift=b_shift,
                               sign=sign))
        self.coefs.append(coef)
        return self.adds[key]

    def depth(self, k: int) -> int:
        return self.nodes[k].depth


def _pair_key(t1: tuple, t2: tuple):
    """The shift-free pattern of two terms ``(node, shift, sign)`` and the term order."""
    (n1, s1, g1), (n2, s2, g2) = t1, t2
    if (n2, s2) < (n1, s1):
        (n1, s1, g1), (n2, s2, g2) = (n2, s2, g2), (n1, s1, g1)
    return (n1, n2, s2 - s1, g1 * g2)


class _Columns:
    """The columns as sets of terms, with the count of every pair pattern (:func:`_pair_key`).

    A pair is counted when its inputs are at most ``window`` apart (all pairs when ``window`` is
    None).  The loops below are :func:`_pair_key` written out: they run millions of times."""

    def __init__(self, columns: list[dict], window: int | None):
        self.cols = columns                  # column -> {(node, shift): sign}
        self.window = window
        self.count: dict[tuple, int] = {}
        self.work = 0
        self.node_cols: dict[int, set] = {}
        count = self.count
        get = count.get
        for c, col in enumerate(columns):
            terms = sorted((n, s, g) for (n, s), g in col.items())    # by (node, shift): key order known
            for n, _, _ in terms:
                self.node_cols.setdefault(n, set()).add(c)
            for x, (n1, s1, g1) in enumerate(terms):
                for n2, s2, g2 in terms[x + 1:]:
                    if window is not None and n2 - n1 > window:
                        break                # sorted by node: the rest are farther still
                    key = (n1, n2, s2 - s1, g1 * g2)
                    count[key] = get(key, 0) + 1

    def remove(self, c: int, term: tuple):
        col = self.cols[c]
        self.work += len(col)
        n0, s0, g0 = term
        del col[(n0, s0)]
        count = self.count
        window = self.window
        still = False
        for (n, s), g in col.items():
            if n == n0:
                still = True
            elif window is not None and abs(n - n0) > window:
                continue
            key = (n, n0, s0 - s, g * g0) if (n < n0 or (n == n0 and s < s0)) else (n0, n, s - s0, g0 * g)
            v = count.get(key, 0) - 1
            if v:
                count[key] = v
            else:
                count.pop(key, None)
        if not still:
            self.node_cols[n0].discard(c)

    def insert(self, c: int, term: tuple, push: list):
        """Add ``term`` to column ``c``, merging it with an equal (node, shift) term."""
        col = self.cols[c]
        self.work += len(col)
        n0, s0, g0 = term
        old = col.get((n0, s0))
        if old is not None:
            self.remove(c, (n0, s0, old))
            if old == g0:                     # x + x = x << 1
                self.insert(c, (n0, s0 + 1, g0), push)
            return                            # x - x = 0
        count = self.count
        window = self.window
        for (n, s), g in col.items():
            if window is not None and n != n0 and abs(n - n0) > window:
                continue
            key = (n, n0, s0 - s, g * g0) if (n < n0 or (n == n0 and s < s0)) else (n0, n, s - s0, g0 * g)
            v = count.get(key, 0) + 1
            count[key] = v
            if v >= 2:
                push.append(key)
        col[(n0, s0)] = g0
        self.node_cols.setdefault(n0, set()).add(c)


def tree_depth(n: int) -> int:
    """Adder levels of a balanced binary tree over ``n`` leaves."""
    d = 0
    while n > 1:
        n = (n + 1) // 2
        d += 1
    return d


def adder_graph(weights, ranges, bias=None, *, bias_shift: int = 0, weight_shift: int = 0,
                share: bool = True, depth_slack: int = 0, share_columns: int | None = None) -> AdderGraph:
    """The shift-and-add graph of ``y_j = sum_i (x_i * w_ij << weight_shift) + (b_j << bias_shift)``.

    ``weights``: integer matrix [n_in, n_out]; ``ranges``: the (lo, hi) of
    every input; ``bias``: n_out integers or None.  ``share=False`` skips the
    common-subexpression step (plain CSD adder trees, for comparison); with
    sharing, the plain trees are returned when they cost fewer adder bits.

    ``depth_slack``: adder levels the graph may add above the plain trees'
    depth to save adders.  They go to the sharing step (more room in every
    column) and to output chains (:func:`_chains`); of the graphs tried, the
    one of fewest adder bits within the depth is returned.

    ``share_columns``: the outputs are cut into groups of this many (in
    order), each summed by a graph of its own that shares subexpressions
    only within the group (None: one graph for all).  No sum then feeds
    outputs of two groups, so fewer nets span the layer, at the cost of the
    pairs the groups would have shared.
    """
    w = np.asarray(weights, dtype=object)
    b = [0] * w.shape[1] if bias is None else [int(v) << bias_shift
                                               for v in np.asarray(bias, dtype=object).reshape(-1)]
    if share_columns is not None and share_columns < w.shape[1]:
        parts = [adder_graph(w[:, j:j + share_columns], ranges, b[j:j + share_columns], share=share,
                             weight_shift=weight_shift, depth_slack=depth_slack)
                 for j in range(0, w.shape[1], share_columns)]
        return _joined(parts, len(ranges))
    plain = _build(w, ranges, b, weight_shift, None, 0)
    if not share:
        return plain
    # the depth of the deepest plain column, before any negation at its root: what sharing keeps to
    deepest = max([tree_depth(len(col) + (1 if c else 0)) for col, c in zip(_columns(w, weight_shift), b)]
                  or [0])
    tries = [(deepest, 0)] + [(deepest + depth_slack, levels) for levels in range(depth_slack + 1)
                              if depth_slack]
    shared = [_build(w, ranges, b, weight_shift, depth, levels) for depth, levels in tries]
    # the greedy search can lose on small matrices: never more adder bits than the plain trees
    # (a shared graph of as many bits wins if it is no deeper), nor, with a slack, more than the
    # graph without it (tried first, so it wins ties)
    return min([plain] + [g for g in shared if g.depth <= plain.depth + depth_slack],
               key=lambda g: (g.adder_bits(), g.depth, g is plain))


def _joined(parts: list[AdderGraph], n_in: int) -> AdderGraph:
    """One graph of the outputs of ``parts`` (graphs over the same ``n_in`` inputs), in order."""
    nodes = list(parts[0].nodes[:n_in])
    coefs = list(parts[0].coefficients[:n_in])
    outputs = []
    for part in parts:
        where = list(range(n_in))            # the part's node number -> the joined graph's
        for n, coef in zip(part.nodes[n_in:], part.coefficients[n_in:]):
            if n.kind == "add":
                n = replace(n, a=where[n.a], b=where[n.b])
            where.append(len(nodes))
            nodes.append(n)
            coefs.append(coef)
        outputs += [(where[k], s) for k, s in part.outputs]
    return AdderGraph(n_in, nodes, outputs, coefs, [p.adders for p in parts])


def _columns(w: np.ndarray, weight_shift: int) -> list[dict]:
    """Every column of ``w`` as its CSD terms: ``{(input, shift): sign}``."""
    cols = []
    for j in range(w.shape[1]):
        col: dict = {}
        for i in range(w.shape[0]):
            for k, d in csd_digits(int(w[i, j])):
                col[(i, k + weight_shift)] = d
        cols.append(col)
    return cols


def _build(w: np.ndarray, ranges, bias: list[int], weight_shift: int, depth: int | None,
           chain_levels: int) -> AdderGraph:
    """The plain trees (``depth`` None), or the shared graph within ``depth`` adder levels,
    its outputs in chains of up to ``chain_levels`` links (:func:`_chains`)."""
    n_out = w.shape[1]
    b = list(bias)
    parents = _chains(w, chain_levels) if chain_levels else [None] * n_out
    diff = w.copy()
    for j, p in enumerate(parents):
        if p is not None:   # y_j = sign * y_k + the rest
            k, sign = p
            diff[:, j] = w[:, j] - sign * w[:, k]
            b[j] = bias[j] - sign * bias[k]     # the parent's own constant, not its difference
    g = _Builder([(int(lo), int(hi)) for lo, hi in ranges])
    cols = _columns(diff, weight_shift)
    link = [_link(parents, j) for j in range(n_out)]
    if depth is not None:
        # a column at link L of a chain has room for top + L levels, and keeps the room of its
        # parent (one level less) free for the parent's term
        top = depth - chain_levels
        reserved = [(1 << (top + link[j] - 1)) if link[j] else 0 for j in range(n_out)]
        _share(g, cols, [(1 if b[j] else 0) + reserved[j] for j in range(n_out)],
               [1 << (top + link[j]) for j in range(n_out)])
    outputs: list = [None] * n_out
    for j in sorted(range(n_out), key=link.__getitem__):
        if parents[j] is not None:
            k, sign = parents[j]
            node, shift = outputs[k]
            _add_term(cols[j], node, shift, sign)
        outputs[j] = _sum_column(g, cols[j], b[j])
    return AdderGraph(w.shape[0], g.nodes, outputs, g.coefs)


def _link(parents: list, j: int) -> int:
    """How many links column ``j`` is from the start of its chain."""
    n = 0
    while parents[j] is not None:
        j, n = parents[j][0], n + 1
    return n


def _add_term(col: dict, node: int, shift: int, sign: int) -> None:
    """Add ``sign * (node << shift)`` to a column, merging it with an equal term."""
    old = col.pop((node, shift), None)
    if old is None:
        col[(node, shift)] = sign
    elif old == sign:                            # x + x = x << 1
        _add_term(col, node, shift + 1, sign)


def _naf_weight(values: np.ndarray) -> np.ndarray:
    """Nonzero CSD digits of every entry (the bits of ``3|v| xor |v|`` above bit 0)."""
    a = np.abs(values)
    return np.bitwise_count(((3 * a) ^ a) >> 1).astype(np.int64)


def _chains(w: np.ndarray, levels: int) -> list:
    """For every output ``j``, None or ``(k, sign)``: build ``y_j`` as ``sign * y_k`` plus
    the product with the difference column ``w_j - sign * w_k`` where that has fewer signed
    digits, by more than the adder it costs.  The choice is a spanning tree grown from the
    empty column (Prim's method, digit counts as distances), no path longer than ``levels``
    links.  Outputs that reuse another's sum are how similar columns share more than pairs
    of terms.  (Shifted columns, ``y_k << s``, were tried too: they save digits, but leave
    fewer common pairs for the sharing step, and more adders in the end.)"""
    n_out = w.shape[1]
    if levels < 1 or n_out < 2 or max((abs(int(v)) for v in w.flat), default=0) >= 1 << 60:
        return [None] * n_out
    m = np.array(w, dtype=np.int64)
    cost = _naf_weight(m).sum(axis=0)
    parents: list = [None] * n_out
    depth = [0] * n_out
    done = np.zeros(n_out, dtype=bool)
    for _ in range(n_out):
        j = int(np.argmin(np.where(done, np.iinfo(np.int64).max, cost)))
        done[j] = True
        if depth[j] >= levels:
            continue
        for sign in (1, -1):
            c = _naf_weight(m - sign * m[:, j:j + 1]).sum(axis=0) + 1
            for k in np.flatnonzero(~done & (c < cost)):
                cost[k] = c[k]
                parents[k] = (j, sign)
                depth[k] = depth[j] + 1
    return parents


def _share(g: _Builder, cols: list[dict], extra: list[int], room: list[int]) -> None:
    """Replace the most frequent term pairs by shared adders, keeping every column within its room.

    A column whose terms have depths ``d_i`` (and its constant, depth 0) sums in
    ``ceil(log2(sum 2**d_i))`` levels at best (:func:`_sum_column` reaches it), so a pair is
    replaced in a column only while that sum, with the column's ``extra`` weight (its constant,
    and the term it will get from another output), stays within ``room``: with the room of the
    deepest plain column, sharing never makes the graph deeper.
    """
    sizes = [len(col) for col in cols]
    weight = [n + k for n, k in zip(sizes, extra)]      # sum of 2**depth over a column's terms
    pairs = sum(n * (n - 1) // 2 for n in sizes)
    window = None
    if pairs > PAIR_BUDGET:   # count only pairs of nearby inputs (and of one input with itself)
        n_in = max([n for col in cols for n, _ in col] or [0]) + 1
        window = max(1, int(n_in * PAIR_BUDGET / pairs))
    state = _Columns(cols, window)
    heap = [(-v, abs(key[2]), key) for key, v in state.count.items() if v >= 2]
    heapq.heapify(heap)
    state.work = pairs if window is None else PAIR_BUDGET
    while heap and state.work < WORK_BUDGET:
        neg, _, key = heapq.heappop(heap)
        have = state.count.get(key, 0)
        if have < 2:
            continue
        if have != -neg:
            heapq.heappush(heap, (-have, abs(key[2]), key))
            continue
        n1, n2, d, sign = key
        d1, d2 = g.depth(n1), g.depth(n2)
        grow = (1 << (max(d1, d2) + 1)) - (1 << d1) - (1 << d2)   # what one replacement adds to a column
        matches = []                          # (column, shift of the n1 term, its sign): disjoint pairs
        for c in sorted(state.node_cols.get(n1, set()) & state.node_cols.get(n2, set())):
            col = cols[c]
            used = set()
            for (n, s), g1 in col.items():
                other = (n2, s + d)
                if n != n1 or (n, s) in used or other in used or other == (n, s) \
                        or col.get(other) != g1 * sign:
                    continue
                if weight[c] + grow > room[c]:
                    break                     # this column would get deeper than the plain trees
                used.update({(n, s), other})
                weight[c] += grow
                matches.append((c, s, g1))
        if len(matches) < 2:
            for c in {c for c, _, _ in matches}:
                weight[c] = _weight(g, cols[c], extra[c])
            continue
        # orient the new node so that most of its uses add it (a column of negative terms
        # only would need a negation at its root)
        flip = sign < 0 and 2 * sum(1 for _, _, g1 in matches if g1 < 0) > len(matches)
        if flip:
            node = g.add(n2, max(0, d), n1, max(0, -d), -1)
        else:
            node = g.add(n1, max(0, -d), n2, max(0, d), sign)
        push: list = []
        for c, s, g1 in matches:
            state.remove(c, (n1, s, g1))
            state.remove(c, (n2, s + d, g1 * sign))
            state.insert(c, (node, min(s, s + d), -g1 if flip else g1), push)
        for c in {c for c, _, _ in matches}:
            weight[c] = _weight(g, cols[c], extra[c])
        for k in push:
            v = state.count.get(k, 0)
            if v >= 2:
                heapq.heappush(heap, (-v, abs(k[2]), k))


def _weight(g: _Builder, col: dict, constant: int) -> int:
    return sum(1 << g.depth(n) for n, _ in col) + constant


def _magnitude(g: _Builder, node: int, shift: int) -> int:
    """Bits of the largest magnitude of ``node << shift``."""
    n = g.nodes[node]
    return max(abs(n.lo), abs(n.hi)).bit_length() + shift


def _sum_column(g: _Builder, col: dict, bias: int) -> tuple[int, int]:
    """Sum a column's terms (and its constant); the result as (node, shift).

    Terms of depths ``d_i`` sum in no fewer than ``T = ceil(log2(sum 2**d_i))``
    levels, and a pair may be added whenever the column can still finish in
    ``T`` levels after it (the sum of ``2**depth`` stays within ``2**T``).  Of
    those pairs, the two terms of smallest magnitude are added first (as a
    Huffman code does), so that small terms meet in narrow adders and each
    wide partial sum is carried by as few adders as possible.
    """
    terms = [(_magnitude(g, n, s), g.depth(n), n, s, sign) for (n, s), sign in col.items()]
    if bias:
        # the constant's trailing zeros as a shift: the adder that takes it wires those low bits through
        zeros = trailing_zeros([bias])
        leaf = g.const(bias >> zeros)
        terms.append((_magnitude(g, leaf, zeros), 0, leaf, zeros, 1))
    if not terms:
        return g.const(0), 0
    weight = sum(1 << t[1] for t in terms)
    room = 1 << (weight - 1).bit_length()
    while len(terms) > 1:
        terms.sort()
        best = None                                # (magnitude of the larger term, x, y)
        for x in range(len(terms) - 1):
            if best is not None and terms[x][0] >= best[0]:
                break
            for y in range(x + 1, len(terms)):
                d1, d2 = terms[x][1], terms[y][1]
                if weight - (1 << d1) - (1 << d2) + (2 << max(d1, d2)) <= room:
                    if best is None or terms[y][0] < best[0]:
                        best = (terms[y][0], x, y)
                    break
        _, x, y = best
        _, d1, n1, s1, g1 = terms[x]
        _, d2, n2, s2, g2 = terms[y]
        del terms[y], terms[x]
        weight += (2 << max(d1, d2)) - (1 << d1) - (1 << d2)
        if g1 < 0 and g2 > 0:
            n1, s1, g1, n2, s2, g2 = n2, s2, g2, n1, s1, g1
        m = min(s1, s2)
        node = g.add(n1, s1 - m, n2, s2 - m, g1 * g2)
        terms.append((_magnitude(g, node, m), g.depth(node), node, m, g1))
    _, _, node, shift, sign = terms[0]
    if sign < 0:
        node = g.add(g.const(0), 0, node, 0, -1)
    return node, shift
