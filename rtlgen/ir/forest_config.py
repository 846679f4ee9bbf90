"""The configuration of a decision forest, and its quantization into a :class:`~rtlgen.ir.forest.QForest`.

The configuration (YAML/JSON mapping)::

    input: fixed<8,3,RND,SAT>       # type of every input feature
    features: {3: fixed<8,5,RND,SAT>}   # per-feature overrides (same width/signedness)
    score: fixed<10,4,RND,SAT>      # leaf values
    base: fixed<12,4,RND,SAT>       # base scores (default: the score type)
    result: fixed<16,6,RND,SAT>     # per-class sum (default: wide enough to be exact)
    pipeline: per_level             # none | per_level | N (levels per register)
    reuse_factor: 1                 # evaluate the trees in R groups, one per cycle (II = R)
    class_output: false             # also emit the argmax class as an extra output element
    table_bits: 6                   # path-code bits per leaf-sum table (0: multiplexer trees)
    storage: tmr                    # constant | register | tmr, or per set:
                                    #   {thresholds: tmr, leaves: register}
    tmr_bits: 4                     # with tmr: triplicated top bits (or {thresholds: N, leaves: M})
    i2c: {address: 0x42}            # an I2C target in front of the configuration bus

With stored thresholds or leaves (``register`` or ``tmr``, see
:mod:`rtlgen.hw.storage`) the tree shapes and the features they test are
fixed by the build, and the values are reprogrammable through the
configuration bus.  Stored thresholds are words of :meth:`QForest.threshold_type`
(the input type with one more integer bit, so that "always left" and
"always right" are programmable too); a node whose trained threshold lies
outside the input range keeps its node (its cut is clamped to the range)
instead of being pruned, so that the core has the trained tree's shape.

:func:`quantize_forest` turns thresholds into integer comparisons on input
codes (``code < c``) that take the same branch as the library for every
representable code (see :func:`threshold_code`), and leaves into codes of
the score type.
"""

from __future__ import annotations

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType, Quant, Overflow, bits_for_range, parse_type, quantize
from .config import i2c_option, load_config
from .config_file import config_name, key_list
from .forest import FOREST_SETS, Forest, QForest, QTree, Tree, threshold_codes
from .params import check_storage, check_tmr_bits

__all__ = ["quantize_forest", "FOREST_KEYS"]

FOREST_KEYS = {"input", "features", "score", "base", "result", "pipeline", "reuse_factor",
               "class_output", "table_bits", "name", "storage", "tmr_bits", "i2c"}


def _type(value, where: str) -> FixedType:
    try:
        t = parse_type(value)
    except RtlgenError as exc:
        raise RtlgenError(f"{where}: {exc}") from None
    return t


def _pipeline(value):
    if isinstance(value, str) and value.strip().lower() in ("none", "per_level"):
        return value.strip().lower()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise RtlgenError(f"config 'pipeline' must be 'none', 'per_level' or an integer >= 1 "
                          f"(levels between registers), got {value!r}")
    return 1 if int(value) == 1 else int(value)


def _quantize_tree(tree: Tree, t_index: int, forest: Forest, in_types, score_type,
                   keep_shape: bool = False) -> QTree:
    """Quantize one tree, resolving constant decisions (unreachable subtrees
    go), or with ``keep_shape`` clamping their cuts to the input range."""
    feature, cut, left, right, value = [], [], [], [], []
    internal = [n for n in range(tree.n_nodes) if tree.feature[n] >= 0]
    cuts = {}
    for f in sorted({int(tree.feature[n]) for n in internal}):
        nodes = [n for n in internal if int(tree.feature[n]) == f]
        cs = threshold_codes([tree.threshold[n] for n in nodes], in_types[f], forest.decision)
        cuts.update({n: int(c) for n, c in zip(nodes, cs)})
    leaf_nodes = [n for n in range(tree.n_nodes) if tree.feature[n] < 0]
    leaf_codes = dict(zip(leaf_nodes, quantize(np.array([tree.value[n] for n in leaf_nodes]), score_type)
                          .tolist())) if leaf_nodes else {}

    def emit(node: int) -> int:
        while tree.feature[node] >= 0 and not keep_shape:
            typ = in_types[int(tree.feature[node])]
            c = cuts[node]
            if c <= typ.min_code:
                node = int(tree.right[node])
            elif c > typ.max_code:
                node = int(tree.left[node])
            else:
                break
        idx = len(feature)
        feature.append(-1)
        cut.append(0)
        left.append(-1)
        right.append(-1)
        value.append(0)
        if tree.feature[node] < 0:
            value[idx] = int(leaf_codes[node])
        else:
            typ = in_types[int(tree.feature[node])]
            feature[idx] = int(tree.feature[node])
            cut[idx] = min(max(cuts[node], typ.min_code), typ.max_code + 1)
            left[idx] = emit(int(tree.left[node]))
            right[idx] = emit(int(tree.right[node]))
        return idx

    emit(0)
    return QTree(feature, cut, left, right, value, tree.output)


def _forest_storage(cfg: dict, threshold_width: int, leaf_width: int):
    """((storage, tmr_bits) of the thresholds, (storage, tmr_bits) of the leaves).

    ``storage`` and ``tmr_bits`` are one value for both sets or a mapping
    per set; a single ``tmr_bits`` applies to the sets stored as ``tmr``."""

    def per_set(key):
        value = cfg.get(key)
        if not isinstance(value, dict):
            return {name: value for name in FOREST_SETS}
        unknown = set(value) - set(FOREST_SETS)
        if unknown:
            raise RtlgenError(f"config {key!r}: unknown set(s) {key_list(unknown)}; a forest stores "
                              f"{' and '.join(FOREST_SETS)}")
        return {name: value.get(name) for name in FOREST_SETS}

    storages, bits = per_set("storage"), per_set("tmr_bits")
    shared_bits = cfg.get("tmr_bits") is not None and not isinstance(cfg["tmr_bits"], dict)
    out = []
    for name, width in zip(FOREST_SETS, (threshold_width, leaf_width)):
        where = f"config: the forest's {name}"
        storage = check_storage("constant" if storages[name] is None else storages[name], where)
        n_bits = bits[name]
        if shared_bits and storage != "tmr":
            n_bits = None
        elif shared_bits:
            n_bits = check_tmr_bits(n_bits, storage, max(threshold_width, leaf_width), where)
            n_bits = min(n_bits, width)
        out.append((storage, check_tmr_bits(n_bits, storage, width, where)))
    if shared_bits and all(storage != "tmr" for storage, _ in out):
        raise RtlgenError("config 'tmr_bits' applies only with storage: tmr; remove it or set storage: tmr")
    return out


def quantize_forest(forest: Forest, config) -> QForest:
    """Quantize ``forest`` under ``config`` (a mapping or a YAML/JSON path)."""
    cfg = load_config(config)
    unknown = set(cfg) - FOREST_KEYS
    if unknown:
        raise RtlgenError(f"config: unknown key(s) {key_list(unknown)} for a decision forest; "
                          f"allowed: {sorted(FOREST_KEYS)}")
    for key in ("input", "score"):
        if key not in cfg:
            raise RtlgenError(f"config: missing {key!r} (e.g. {key}: fixed<8,3,RND,SAT>) for a decision forest")
    forest.validate()
    default_in = _type(cfg["input"], "config 'input'")
    in_types = [default_in] * forest.n_features
    feats = cfg.get("features") or {}
    if not isinstance(feats, dict):
        raise RtlgenError("config 'features' must map feature indices to types")
    for key, spec in feats.items():
        try:
            idx = int(key)
        except (TypeError, ValueError):
            raise RtlgenError(f"config 'features': key {key!r} is not a feature index") from None
        if not 0 <= idx < forest.n_features:
            raise RtlgenError(f"config 'features': feature {idx} does not exist "
                              f"(the model has {forest.n_features} features, 0..{forest.n_features - 1})")
        t = _type(spec, f"config 'features' {idx}")
        if t.width != default_in.width or t.signed != default_in.signed:
            raise RtlgenError(f"config 'features' {idx}: {t} must have the width and signedness of the "
                              f"input type {default_in} (every element of in_data has one width); "
                              "change its integer bits instead")
        in_types[idx] = t
    for t in set(in_types):
        if t.width > 53:
            raise RtlgenError(f"input type {t} is wider than 53 bits, which forests do not support")
    score_type = _type(cfg["score"], "config 'score'")
    base_type = _type(cfg["base"], "config 'base'") if cfg.get("base") is not None else score_type
    pipeline = _pipeline(cfg.get("pipeline", "per_level"))
    reuse = cfg.get("reuse_factor", 1)
    most = max([sum(1 for t in forest.trees if t.output == k) for k in range(forest.n_outputs)] + [1])
    if isinstance(reuse, bool) or not isinstance(reuse, (int, np.integer)) or not 1 <= int(reuse) <= most:
        raise RtlgenError(f"config 'reuse_factor' {reuse!r}: use an integer from 1 to {most} (the most "
                          "trees of one class); the trees are evaluated in that many groups, II = reuse_factor")
    table_bits = cfg.get("table_bits", 6)
    if isinstance(table_bits, bool) or not isinstance(table_bits, (int, np.integer)) \
            or not 0 <= int(table_bits) <= 8:
        raise RtlgenError(f"config 'table_bits' {table_bits!r}: use an integer from 0 to 8 (path-code bits "
                          "per leaf-sum table: 6 suits 6-input LUTs; 0 keeps multiplexer trees, "
                          "usually smaller on 4-input-LUT devices)")
    class_output = cfg.get("class_output", False)
    if not isinstance(class_output, bool):
        raise RtlgenError(f"config 'class_output' must be true or false, got {class_output!r}")
    if class_output and forest.task != "classifier":
        raise RtlgenError(f"config 'class_output': model {forest.name!r} is a regressor; drop class_output")
    (t_storage, t_bits), (l_storage, l_bits) = _forest_storage(cfg, in_types[0].width + 1,
                                                                max(score_type.width, base_type.width))
    stored = t_storage != "constant" or l_storage != "constant"
    i2c = i2c_option(cfg.get("i2c"), stored, "set of the forest (thresholds or leaves)")
    trees = [_quantize_tree(tree, t, forest, in_types, score_type, keep_shape=t_storage != "constant")
             for t, tree in enumerate(forest.trees)]
    base = [int(c) for c in quantize(np.asarray(forest.base, dtype=np.float64), base_type)]
    qf = QForest(name=config_name(cfg, forest.name), n_features=forest.n_features,
                 n_outputs=forest.n_outputs, input_types=in_types, score_type=score_type,
                 base_type=base_type, result_type=score_type, base=base, trees=trees,
                 pipeline=pipeline, class_output=class_output, reuse_factor=int(reuse),
                 table_bits=int(table_bits), task=forest.task,
                 decision=forest.decision, library=forest.library, objective=forest.objective,
                 threshold_storage=t_storage, threshold_tmr_bits=t_bits, leaf_storage=l_storage,
                 leaf_tmr_bits=l_bits, i2c=i2c)
    if cfg.get("result") is not None:
        qf.result_type = _type(cfg["result"], "config 'result'")
    else:
        lo = min(qf.sum_range(k)[0] for k in range(qf.n_outputs))
        hi = max(qf.sum_range(k)[1] for k in range(qf.n_outputs))
        width, _ = bits_for_range(min(lo, -1), hi)
        qf.result_type = FixedType(width, width - qf.sum_frac, True, Quant.TRN, Overflow.WRAP)
    if class_output and qf.n_outputs - 1 > qf.result_type.max_code:
        raise RtlgenError(f"config 'class_output': the result type {qf.result_type} cannot hold the class "
                          f"index {qf.n_outputs - 1}; widen 'result'")
    return qf
