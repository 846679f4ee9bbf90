"""Bit-exact golden model of a quantized decision forest.

For every vector of input codes: each tree is walked (``x[f] < cut`` goes
left), the reached leaf codes of the trees of class ``k`` and its base code
are summed exactly (at ``sum_frac`` fractional bits) and the sum is cast
once to the result type.  With ``class_output`` the index of the largest
result (the first on ties; for one output: 1 when it is above zero) is
appended as the last element.
"""

from __future__ import annotations

import numpy as np

from ..errors import RtlgenError
from ..ir.forest import QForest
from ..numerics.fixed import quantize, requantize, to_float

__all__ = ["check_codes", "quantize_inputs", "leaf_indices", "sums", "outputs_from_sums", "predict_codes", "predict",
           "outputs_as_values"]


def check_codes(qf: QForest, x_codes) -> np.ndarray:
    """Validate integer input codes [N, n_features]; return int64."""
    x = np.asarray(x_codes)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != qf.n_features:
        raise RtlgenError(f"forest {qf.name!r} expects {qf.n_features} input features per vector "
                          f"(shape [N, {qf.n_features}]), got shape {list(np.shape(x_codes))}")
    if x.dtype == object or not np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        raise RtlgenError(f"input codes must be integers, got dtype {x.dtype}; real values go without --raw")
    x = x.astype(np.int64)
    for f, t in enumerate(qf.input_types):
        bad = (x[:, f] < t.min_code) | (x[:, f] > t.max_code)
        if bad.any():
            r = int(np.argmax(bad))
            raise RtlgenError(f"input code {int(x[r, f])} at index ({r}, {f}) is outside the range "
                              f"[{t.min_code}, {t.max_code}] of the input type {t}")
    return x


def quantize_inputs(qf: QForest, values) -> np.ndarray:
    """Quantize float inputs [N, n_features] with each feature's type."""
    x = np.asarray(values)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise RtlgenError(f"inputs must be numbers, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != qf.n_features:
        raise RtlgenError(f"forest {qf.name!r} expects {qf.n_features} input features per vector "
                          f"(shape [N, {qf.n_features}]), got shape {list(np.shape(values))}")
    if np.isnan(x).any():
        idx = tuple(int(i) for i in np.argwhere(np.isnan(x))[0])
        raise RtlgenError(f"input value at index {idx} is NaN: clean the data first "
                          "(the cores have no missing-value path)")
    out = np.empty(x.shape, dtype=np.int64)
    for f, t in enumerate(qf.input_types):
        out[:, f] = quantize(x[:, f], t)
    return out


def leaf_indices(qf: QForest, x: np.ndarray) -> np.ndarray:
    """Node index of the leaf each tree reaches: [N, n_trees]."""
    n = x.shape[0]
    out = np.zeros((n, len(qf.trees)), dtype=np.int64)
    for t, tree in enumerate(qf.trees):
        feat = np.asarray(tree.feature)
        cut = np.asarray(tree.cut, dtype=np.int64)
        left, right = np.asarray(tree.left), np.asarray(tree.right)
        node = np.zeros(n, dtype=np.int64)
        while True:
            f = feat[node]
            inner = f >= 0
            if not inner.any():
                break
            xv = x[np.arange(n), np.where(inner, f, 0)]
            go_left = xv < cut[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        out[:, t] = node
    return out


def sums(qf: QForest, x: np.ndarray) -> np.ndarray:
    """Exact per-class sums (base + leaves) at ``sum_frac`` fractional bits: [N, n_outputs]."""
    leaves = leaf_indices(qf, x)
    sb = qf.sum_frac - qf.base_type.frac
    ss = qf.sum_frac - qf.score_type.frac
    acc = np.tile(np.array([b << sb for b in qf.base], dtype=np.int64), (x.shape[0], 1))
    for t, tree in enumerate(qf.trees):
        vals = np.asarray(tree.value, dtype=np.int64)[leaves[:, t]]
        acc[:, tree.output] += vals << ss
    return acc


def predict_codes(qf: QForest, x_codes) -> np.ndarray:
    """Output codes [N, n_out] for input codes (what the core computes)."""
    return outputs_from_sums(qf, sums(qf, check_codes(qf, x_codes)))


def outputs_from_sums(qf: QForest, acc: np.ndarray) -> np.ndarray:
    """Output codes [N, n_out] of exact per-class sums [N, n_outputs]: each sum
    cast to the result type, then with ``class_output`` the class index
    (the first largest; with one output: 1 when it is above zero)."""
    res = np.asarray(requantize(acc, qf.sum_frac, qf.result_type), dtype=np.int64)
    res = res.reshape(np.shape(acc)[0], qf.n_outputs)
    if not qf.class_output:
        return res
    if qf.n_outputs == 1:
        cls = (res[:, 0] > 0).astype(np.int64)
    else:
        cls = np.argmax(res, axis=1).astype(np.int64)
    return np.concatenate([res, cls[:, None]], axis=1)


def outputs_as_values(qf: QForest, codes: np.ndarray) -> np.ndarray:
    """Float values of output codes (the class element stays an integer)."""
    vals = to_float(np.asarray(codes)[:, :qf.n_outputs], qf.result_type)
    if qf.class_output:
        vals = np.concatenate([vals, np.asarray(codes)[:, qf.n_outputs:].astype(np.float64)], axis=1)
    return vals


def predict(qf: QForest, values) -> np.ndarray:
    """Float inputs in, float scores out (exact values of the result codes)."""
    return outputs_as_values(qf, predict_codes(qf, quantize_inputs(qf, values)))
