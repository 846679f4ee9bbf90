"""Hand-made decision trees and standardized data sets for the forest tests.

Trees use the array layout of :class:`rtlgen.ir.forest.Tree` (node 0 is the
root; ``feature == -1`` marks a leaf).  The random builders draw from the
given generator in a fixed order, so a seed always gives the same tree.
"""

from __future__ import annotations

import numpy as np

from rtlgen.ir.forest import Tree


def standardized(loader):
    """``(x, y)`` of a scikit-learn dataset loader, each feature scaled to mean 0, deviation 1."""
    x, y = loader(return_X_y=True)
    return (x - x.mean(0)) / x.std(0), y


def leaf_tree(value: float, output: int) -> Tree:
    """A tree of one leaf: adds *value* to output *output*."""
    return Tree(np.array([-1]), np.array([0.0]), np.array([-1]), np.array([-1]), np.array([value]), output)


def full_tree(rng, n_features: int, depth: int, output: int, spread: float = 1.0) -> Tree:
    """A full binary tree of *depth* levels: random features, thresholds
    (normal, times *spread*) and leaf values."""
    n = 2 ** (depth + 1) - 1
    inner = np.arange(n) < 2 ** depth - 1
    return Tree(np.where(inner, rng.integers(n_features, size=n), -1), rng.normal(size=n) * spread,
                np.where(inner, 2 * np.arange(n) + 1, -1), np.where(inner, 2 * np.arange(n) + 2, -1),
                np.where(inner, 0.0, rng.normal(size=n)), output)


def chain_tree(rng, n_features: int, depth: int, output: int) -> Tree:
    """A tree that splits, at every level, into a leaf and a deeper subtree
    (alternating sides), ``depth`` levels deep."""
    feature, threshold, left, right, value = [], [], [], [], []

    def node():
        feature.append(-1)
        threshold.append(0.0)
        left.append(-1)
        right.append(-1)
        value.append(0.0)
        return len(feature) - 1

    cur = node()
    for level in range(depth):
        leaf, deeper = node(), node()
        feature[cur] = int(rng.integers(n_features))
        threshold[cur] = float(rng.normal())
        left[cur], right[cur] = (leaf, deeper) if level % 2 else (deeper, leaf)
        value[leaf] = float(rng.normal())
        cur = deeper
    value[cur] = float(rng.normal())
    return Tree(np.array(feature), np.array(threshold), np.array(left), np.array(right),
                np.array(value), output)


def tree_from_spec(spec, output: int) -> Tree:
    """A tree from nested tuples: (feature, threshold, left, right) or a leaf value."""
    feature, threshold, left, right, value = [], [], [], [], []

    def emit(node):
        idx = len(feature)
        feature.append(-1)
        threshold.append(0.0)
        left.append(-1)
        right.append(-1)
        value.append(0.0)
        if isinstance(node, tuple):
            f, t, lo, hi = node
            feature[idx], threshold[idx] = f, t
            left[idx] = emit(lo)
            right[idx] = emit(hi)
        else:
            value[idx] = node
        return idx

    emit(spec)
    return Tree(np.array(feature), np.array(threshold), np.array(left), np.array(right), np.array(value), output)
