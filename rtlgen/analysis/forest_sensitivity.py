"""Bit-flip sensitivity of a decision forest's stored sets, for selective TMR.

With ``storage: register`` or ``tmr`` a forest keeps two sets of words in
registers (see :meth:`rtlgen.ir.forest.QForest.param_sets`):

``thresholds``
    one cut per internal node (tree by tree, node order), a word of
    :attr:`~rtlgen.ir.forest.QForest.threshold_type`;
``leaves``
    one score per leaf (tree by tree, node order) of the score type, and
    one base score per class of the base type.

A single-event upset flips one bit of one word.  This module measures, on
the bit-exact golden model (:mod:`rtlgen.golden.forest`), what every such
flip does to the outputs and recommends, per set, how many of the most
significant bits of each word to triplicate.  Both sets are analysed
whatever the storage of the forest says: the analysis is what chooses it.

What is flipped
---------------
Every bit ``b`` (0 = LSB, ``W - 1`` = sign bit) of every threshold, leaf
and base word, one at a time; the flipped word is read back as a code of
the same type (:func:`~rtlgen.analysis.flips.flip_bits`).  A flipped
threshold may lie outside the input range: that is a legal cut (the node
then always goes left or always right).

What is measured
----------------
For every (word, bit) the forest runs on a sample of input vectors with
that one bit flipped and is compared with the unflipped forest:
``max_error`` is the largest absolute difference of any output code over
the sample (with ``class_output`` the class index is one of the output
codes), ``changed`` the number of sample vectors whose output changes at
all.  The sample is the one of the network analysis
(:func:`~rtlgen.analysis.flips.sample_rows`, at most
:data:`~rtlgen.analysis.flips.DEFAULT_SAMPLES` rows by default); the
figures are exact for those vectors.

The computation is incremental.  A flip changes one word, so it changes
the leaf of one tree or the base of one class:

* a threshold flip moves a row to the other subtree of that node only when
  the row reaches the node and its feature code lies between the old and
  the new cut; the row then reaches the leaf of the other subtree;
* a leaf flip changes the rows that reach that leaf;
* a base flip shifts one class sum for every row.

The exact per-class sums before the cast (:func:`rtlgen.golden.forest.sums`)
are computed once; every flip that touches a row becomes one event (row,
class, change of the sum), the changed sums are cast to the result type
with the golden model's rounding and saturation (:func:`rtlgen.golden.forest.outputs_from_sums`) and
compared with the golden outputs.

Recommendation
--------------
The rule of :func:`rtlgen.analysis.report.recommend`, per set: for a
threshold ``T`` (output codes) the recommended ``tmr_bits`` of a set is the
smallest ``N`` such that, with the ``min(N, W)`` most significant bits of
every word of the set triplicated, no single-copy bit has
``max_error > T``; a set whose recommendation is 0 bits needs no TMR
(``storage: register``).  The residual vulnerability and the flip-flop
figures are those of :class:`~rtlgen.analysis.report.Recommendation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..golden.forest import check_codes, leaf_indices, outputs_from_sums, predict_codes, sums
from ..ir.forest import FOREST_SETS, QForest
from ..numerics.fixed import FixedType
from .flips import DEFAULT_SAMPLES, flip_bits, sample_inputs
from .report import (Recommendation, format_table, markdown_document, per_bit, recommend, recommendation_figures,
                     report_document, summary_rows)

__all__ = ["DEFAULT_SAMPLES", "GroupSensitivity", "SetSensitivity", "analyze", "recommend_set",
           "stored_config", "report_dict", "config_snippet", "table_rows", "format_table", "report_markdown"]

#: events (row, class, sum change) cast at once
_EVENT_CHUNK = 1 << 18


@dataclass
class GroupSensitivity:
    """Flip results of one group of words: ``error``/``changed`` are
    ``[n_words, W]`` (bit 0 = LSB), in the word order of
    :meth:`~rtlgen.ir.forest.QForest.param_sets`."""
    kind: str              # threshold, leaf or base
    type: FixedType
    error: np.ndarray
    changed: np.ndarray

    @property
    def count(self) -> int:
        return int(self.error.shape[0])


@dataclass
class SetSensitivity:
    """Flip results of one stored set (``thresholds`` or ``leaves``).

    It offers what :func:`~rtlgen.analysis.report.recommend` reads
    from a layer: the first group plays the part of the weights, the second
    (the base scores of ``leaves``; nothing for ``thresholds``) the part of
    the biases.
    """
    index: int
    name: str
    groups: list
    samples: int

    @property
    def weight_type(self) -> FixedType:
        return self.groups[0].type

    @property
    def bias_type(self) -> FixedType:
        return self.groups[1].type if len(self.groups) > 1 else self.groups[0].type

    def flat(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(error, changed) as [n_words, W]: ``weight`` = first group, ``bias`` = second (maybe empty)."""
        if kind == "weight":
            g = self.groups[0]
        elif len(self.groups) > 1:
            g = self.groups[1]
        else:
            w = self.groups[0].type.width
            return np.zeros((0, w), dtype=np.int64), np.zeros((0, w), dtype=np.int64)
        return g.error, g.changed


# ---------------------------------------------------------------------------
# the flip experiment
# ---------------------------------------------------------------------------

class _Events:
    """Sum changes caused by flips: variant ``var`` adds ``delta`` to class ``cls`` of row ``row``."""

    def __init__(self):
        self.parts = []

    def add(self, var, row, cls, delta) -> None:
        keep = np.asarray(delta) != 0          # a flip that leaves the sum alone changes nothing
        if keep.any():
            self.parts.append(tuple(np.asarray(a, dtype=np.int64)[keep] for a in (var, row, cls, delta)))

    def measure(self, qf: QForest, acc: np.ndarray, ref: np.ndarray, n_variants: int):
        """(max_error, changed) per variant: the events' sums cast and compared with ``ref``."""
        err = np.zeros(n_variants, dtype=np.int64)
        chg = np.zeros(n_variants, dtype=np.int64)
        if not self.parts:
            return err, chg
        var, row, cls, delta = (np.concatenate(a) for a in zip(*self.parts))
        for a in range(0, len(var), _EVENT_CHUNK):
            s = slice(a, a + _EVENT_CHUNK)
            r = row[s]
            changed_sums = acc[r]
            changed_sums[np.arange(len(r)), cls[s]] += delta[s]
            diff = np.abs(outputs_from_sums(qf, changed_sums) - ref[r]).max(axis=1)
            np.maximum.at(err, var[s], diff)
            chg += np.bincount(var[s], weights=(diff != 0), minlength=n_variants).astype(np.int64)
        return err, chg


def _walk(feat, cut, left, right, x, rows, start) -> np.ndarray:
    """The leaf reached from nodes ``start`` by rows ``rows`` of ``x`` (``x[f] < cut`` goes left)."""
    node = start.copy()
    while True:
        f = feat[node]
        inner = f >= 0
        if not inner.any():
            return node
        xv = x[rows, np.where(inner, f, 0)]
        node = np.where(inner, np.where(xv < cut[node], left[node], right[node]), node)


def _threshold_events(qf: QForest, x: np.ndarray, leaves: np.ndarray, ss: int, events: _Events) -> int:
    """Events of every threshold flip; returns the number of threshold words."""
    tt = qf.threshold_type
    width = tt.width
    bits = np.arange(width)
    n = x.shape[0]
    offset = 0
    for t, tree in enumerate(qf.trees):
        feat = np.asarray(tree.feature, dtype=np.int64)
        cut = np.asarray(tree.cut, dtype=np.int64)
        left, right = np.asarray(tree.left, dtype=np.int64), np.asarray(tree.right, dtype=np.int64)
        value = np.asarray(tree.value, dtype=np.int64)
        internal = np.flatnonzero(feat >= 0)
        if not internal.size:
            continue
        word = np.full(len(feat), -1, dtype=np.int64)
        word[internal] = offset + np.arange(internal.size)
        flipped_cuts = np.full((len(feat), width), 0, dtype=np.int64)
        flipped_cuts[internal] = flip_bits(cut[internal, None], bits[None, :], tt)
        # every (row, internal node on its path)
        rows_at, nodes_at = [], []
        node = np.zeros(n, dtype=np.int64)
        rows = np.arange(n)
        while rows.size:
            inner = feat[node] >= 0
            rows, node = rows[inner], node[inner]
            rows_at.append(rows)
            nodes_at.append(node)
            go_left = x[rows, feat[node]] < cut[node]
            node = np.where(go_left, left[node], right[node])
        rows_p, nodes_p = np.concatenate(rows_at), np.concatenate(nodes_at)
        xv = x[rows_p, feat[nodes_p]]
        went_left = xv < cut[nodes_p]
        other = _walk(feat, cut, left, right, x, rows_p, np.where(went_left, right[nodes_p], left[nodes_p]))
        delta = value[other] - value[leaves[rows_p, t]]
        useful = delta != 0
        rows_p, nodes_p, xv, went_left, delta = (a[useful] for a in (rows_p, nodes_p, xv, went_left, delta))
        turns = (xv[:, None] < flipped_cuts[nodes_p]) != went_left[:, None]    # [pairs, W]
        p, b = np.nonzero(turns)
        events.add(word[nodes_p[p]] * width + b, rows_p[p], np.full(p.size, tree.output), delta[p] << ss)
        offset += internal.size
    return offset


def _leaf_events(qf: QForest, leaves: np.ndarray, ss: int, events: _Events) -> int:
    """Events of every leaf flip; returns the number of leaf words."""
    st = qf.score_type
    width = st.width
    n = leaves.shape[0]
    offset = 0
    for t, tree in enumerate(qf.trees):
        feat = np.asarray(tree.feature, dtype=np.int64)
        value = np.asarray(tree.value, dtype=np.int64)
        leaf_nodes = np.flatnonzero(feat < 0)
        word = np.full(len(feat), -1, dtype=np.int64)
        word[leaf_nodes] = offset + np.arange(leaf_nodes.size)
        reached = leaves[:, t]
        v = value[reached]
        new = flip_bits(v[:, None], np.arange(width)[None, :], st)             # [N, W]
        var = word[reached][:, None] * width + np.arange(width)[None, :]
        rows = np.repeat(np.arange(n)[:, None], width, axis=1)
        events.add(var.ravel(), rows.ravel(), np.full(n * width, tree.output), ((new - v[:, None]) << ss).ravel())
        offset += leaf_nodes.size
    return offset


def _base_events(qf: QForest, n: int, sb: int, events: _Events) -> int:
    """Events of every base flip; returns the number of base words."""
    bt = qf.base_type
    width = bt.width
    for k, b in enumerate(qf.base):
        new = flip_bits(np.full(width, int(b), dtype=np.int64), np.arange(width), bt)
        delta = (new - int(b)) << sb
        var = np.repeat((k * width + np.arange(width))[None, :], n, axis=0)
        rows = np.repeat(np.arange(n)[:, None], width, axis=1)
        events.add(var.ravel(), rows.ravel(), np.full(n * width, k), np.tile(delta, n))
    return len(qf.base)


def analyze(qf: QForest, x_codes, *, max_samples: Optional[int] = DEFAULT_SAMPLES,
            seed: int = 0) -> list[SetSensitivity]:
    """Flip every bit of every threshold, leaf and base word; see the module documentation.

    ``x_codes`` are input codes ``[N, n_features]``; at most ``max_samples``
    of them are used (``None``: all), chosen by :func:`~rtlgen.analysis.flips.sample_rows`.
    Returns the ``thresholds`` set (group ``threshold``; no words when no
    tree has an internal node) and the ``leaves`` set (groups ``leaf`` and
    ``base``).
    """
    x = sample_inputs(check_codes(qf, x_codes), max_samples, seed)
    n = x.shape[0]
    leaves = leaf_indices(qf, x)
    acc = sums(qf, x)
    ref = predict_codes(qf, x)
    ss = qf.sum_frac - qf.score_type.frac
    sb = qf.sum_frac - qf.base_type.frac

    ev = _Events()
    n_cuts = _threshold_events(qf, x, leaves, ss, ev)
    t_err, t_chg = ev.measure(qf, acc, ref, n_cuts * qf.threshold_type.width)

    ev = _Events()
    n_leaves = _leaf_events(qf, leaves, ss, ev)
    l_err, l_chg = ev.measure(qf, acc, ref, n_leaves * qf.score_type.width)

    ev = _Events()
    n_base = _base_events(qf, n, sb, ev)
    b_err, b_chg = ev.measure(qf, acc, ref, n_base * qf.base_type.width)

    def group(kind, t, err, chg, count):
        return GroupSensitivity(kind, t, err.reshape(count, t.width), chg.reshape(count, t.width))

    return [SetSensitivity(0, "thresholds",
                           [group("threshold", qf.threshold_type, t_err, t_chg, n_cuts)], n),
            SetSensitivity(1, "leaves", [group("leaf", qf.score_type, l_err, l_chg, n_leaves),
                                         group("base", qf.base_type, b_err, b_chg, n_base)], n)]


def stored_config(config: dict) -> dict:
    """``config`` with every set of constant storage stored as ``register``.

    The analysis describes a core whose thresholds and leaves are both
    stored: such a core keeps every trained node (constant thresholds let
    the build prune nodes whose decision is fixed) and its default result
    type holds every programmable leaf.  Sets already stored keep their
    storage and ``tmr_bits``.
    """
    cfg = dict(config)
    storage = cfg.get("storage")
    per_set = dict(storage) if isinstance(storage, dict) else {name: storage for name in FOREST_SETS}
    for name in FOREST_SETS:
        if per_set.get(name) in (None, "constant"):
            per_set[name] = "register"
    cfg["storage"] = per_set
    return cfg


# ---------------------------------------------------------------------------
# recommendation and reports
# ---------------------------------------------------------------------------

def recommend_set(sens: SetSensitivity, threshold: int) -> Recommendation:
    """Smallest ``tmr_bits`` of a set leaving no single-copy bit with ``max_error > threshold``
    (the rule of :func:`rtlgen.analysis.report.recommend`)."""
    return recommend(sens, threshold)


def _set_entry(s: SetSensitivity, rec: Recommendation, threshold: int) -> dict:
    groups = [{"kind": g.kind, "type": str(g.type), "width": g.type.width, "count": g.count,
               "per_bit": per_bit(g.error, g.changed, s.samples, threshold)} for g in s.groups]
    protected = {g.kind: min(rec.tmr_bits, g.type.width) for g in s.groups}
    return {"index": s.index, "name": s.name, "groups": groups,
            "recommendation": {"tmr_bits": rec.tmr_bits, "protected_bits": protected, **recommendation_figures(rec)}}


def report_dict(sens: list, threshold: int, *, model: str = "", output_type: Optional[FixedType] = None,
                samples_total: Optional[int] = None, seed: int = 0) -> dict:
    """The analysis and the recommendation as JSON-ready data (one entry per set under ``sets``)."""
    return report_document(sens, threshold, lambda s, rec: _set_entry(s, rec, threshold), key="sets",
                           head={"model": model, "kind": "bdt"}, output_type=output_type,
                           samples_total=samples_total, seed=seed)


def config_snippet(report: dict) -> str:
    """YAML ``storage``/``tmr_bits`` of a forest configuration with the recommended storage of each set."""
    bits = {s["name"]: s["recommendation"]["tmr_bits"] for s in report["sets"]}
    lines = [f"# selective TMR for errors <= {report['threshold']} output codes "
             f"({report['samples']} sample vectors)"]
    if all(n == 0 for n in bits.values()):
        lines.append("storage: register")
    else:
        lines.append("storage: {" + ", ".join(f"{name}: {'tmr' if n else 'register'}"
                                              for name, n in bits.items()) + "}")
        lines.append("tmr_bits: {" + ", ".join(f"{name}: {n}" for name, n in bits.items() if n) + "}")
    return "\n".join(lines) + "\n"


def table_rows(report: dict) -> list[list[str]]:
    """Header and one row per set of the summary table."""
    return summary_rows(["set", "words", "word bits"],
                        [([s["name"], "/".join(str(g["count"]) for g in s["groups"]),
                           "/".join(str(g["width"]) for g in s["groups"])], s["recommendation"])
                         for s in report["sets"]], report["total"])


def report_markdown(report: dict) -> str:
    """A readable report: summary table, per-bit worst errors, config snippet."""
    bits = [(s["name"], g["kind"], g["per_bit"]) for s in report["sets"] for g in s["groups"]]
    return markdown_document(report, table_rows(report), bits, config_snippet(report), subject="the forest",
                             note=" Words and word bits list the groups of a set (leaves/base).")
