"""Decision forests: the float IR, its configuration and the quantized IR.

A :class:`Forest` is what every tree front end produces: binary decision
trees whose internal nodes test one feature against a threshold and whose
leaves hold one additive score for one output (class).  The score of output
``k`` is ``base[k] + sum of the leaves reached in the trees of output k``
(learning rates are already folded into the leaf values, base scores are
margins).  The comparison the library makes at every node is recorded once
per forest in :attr:`Forest.decision`:

``lt_f32``  (xgboost)       go left when ``float32(x) < float32(t)``
``le_f32``  (scikit-learn)  go left when ``float32(x) <= t`` (t a float64)
``le_f64``  (LightGBM, conifer) go left when ``x <= t`` in float64

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

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType, Quant, Overflow, bits_for_range, parse_type, quantize
from .config_file import config_name, key_list

__all__ = ["Tree", "Forest", "QTree", "QForest", "DECISIONS", "threshold_codes", "quantize_forest",
           "FOREST_KEYS", "FOREST_SETS"]

DECISIONS = {
    "lt_f32": "float32(x) < float32(t) (xgboost)",
    "le_f32": "float32(x) <= t (scikit-learn)",
    "le_f64": "x <= t in float64 (LightGBM, conifer)",
}
FOREST_KEYS = {"input", "features", "score", "base", "result", "pipeline", "reuse_factor",
               "class_output", "table_bits", "name", "storage", "tmr_bits", "i2c"}
#: the stored sets of a forest, in bus order
FOREST_SETS = ("thresholds", "leaves")


@dataclass
class Tree:
    """One tree.  Node ``n`` is a leaf when ``feature[n] < 0``; then
    ``value[n]`` is its score.  Otherwise it goes to ``left[n]`` when the
    forest's decision holds for input ``feature[n]`` and ``threshold[n]``,
    else to ``right[n]``.  Node 0 is the root."""
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    output: int = 0

    @property
    def n_nodes(self) -> int:
        return len(self.feature)


@dataclass
class Forest:
    """A decision forest in floating point (what the front ends produce)."""
    name: str
    n_features: int
    n_outputs: int
    trees: list[Tree]
    base: list[float]
    decision: str
    task: str = "classifier"          # classifier or regressor
    library: str = ""
    objective: str = ""

    def validate(self) -> None:
        if self.decision not in DECISIONS:
            raise RtlgenError(f"forest {self.name!r}: unknown decision rule {self.decision!r}")
        if self.n_features < 1 or self.n_outputs < 1 or len(self.base) != self.n_outputs:
            raise RtlgenError(f"forest {self.name!r}: inconsistent feature/output counts")
        for t, tree in enumerate(self.trees):
            n = tree.n_nodes
            if n == 0:
                raise RtlgenError(f"tree {t} of {self.name!r} has no nodes: the model file is damaged")
            if not 0 <= tree.output < self.n_outputs:
                raise RtlgenError(f"tree {t} of {self.name!r} feeds output {tree.output}, "
                                  f"but the model has {self.n_outputs} outputs")
            seen = np.zeros(n, dtype=bool)
            stack = [0]
            while stack:
                node = stack.pop()
                if seen[node]:
                    raise RtlgenError(f"tree {t} node {node} of {self.name!r} is reached twice: "
                                      "the model file is damaged")
                seen[node] = True
                f = int(tree.feature[node])
                if f < 0:
                    if not np.isfinite(tree.value[node]):
                        raise RtlgenError(f"tree {t} leaf {node} of {self.name!r} has a NaN or inf "
                                          "value: retrain or clean the model")
                    continue
                if f >= self.n_features:
                    raise RtlgenError(f"tree {t} node {node} of {self.name!r} tests feature {f}, but the "
                                      f"model has {self.n_features} features")
                if np.isnan(tree.threshold[node]):
                    raise RtlgenError(f"tree {t} node {node} of {self.name!r} has a NaN threshold")
                for child in (int(tree.left[node]), int(tree.right[node])):
                    if not 0 <= child < n:
                        raise RtlgenError(f"tree {t} node {node} of {self.name!r} points to node "
                                          f"{child}, which does not exist: the model file is damaged")
                    stack.append(child)
        if not all(np.isfinite(b) for b in self.base):
            raise RtlgenError(f"forest {self.name!r}: the base score is NaN or inf")


# ---------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------

def _library_view(codes: np.ndarray, typ: FixedType, decision: str) -> np.ndarray:
    """The float64 value the library compares for each input code."""
    v = np.ldexp(codes.astype(np.float64), -typ.frac)        # exact: width <= 53
    if decision in ("lt_f32", "le_f32"):
        v = v.astype(np.float32).astype(np.float64)         # the library casts X to float32
    return v


def threshold_codes(thresholds, typ: FixedType, decision: str) -> np.ndarray:
    """Integer thresholds ``c`` such that ``code < c`` <=> the library goes left.

    For every code of ``typ`` the library's predicate on the code's value
    (``float32(v) < float32(t)``, ``float32(v) <= t`` or ``v <= t``) is
    monotone (true for small codes, false for large ones); ``c`` is the
    smallest code for which it is false, found by exact bisection over the
    codes.  ``c == typ.min_code`` means "always right", ``c == max_code + 1``
    "always left".
    """
    t = np.asarray(thresholds, dtype=np.float64)
    if decision == "lt_f32":
        t = t.astype(np.float32).astype(np.float64)

    def goes_left(codes):
        v = _library_view(codes, typ, decision)
        return v < t if decision == "lt_f32" else v <= t

    lo = np.full(t.shape, typ.min_code, dtype=np.int64)       # invariant: answer in [lo, hi]
    hi = np.full(t.shape, typ.max_code + 1, dtype=np.int64)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = lo + (hi - lo) // 2                              # mid < hi <= max_code + 1
        left = goes_left(np.minimum(mid, typ.max_code))
        lo = np.where(active & left, mid + 1, lo)
        hi = np.where(active & ~left, mid, hi)


# ---------------------------------------------------------------------------
# Quantized forest
# ---------------------------------------------------------------------------

@dataclass
class QTree:
    """A quantized tree: internal nodes go left when ``x[feature] < cut``
    (integer codes); leaves (``feature < 0``) hold score codes."""
    feature: list[int]
    cut: list[int]
    left: list[int]
    right: list[int]
    value: list[int]
    output: int

    def leaves(self):
        """(leaf node, [(node, goes_left)] path) for every leaf, depth first."""
        out = []
        stack = [(0, [])]
        while stack:
            node, path = stack.pop()
            if self.feature[node] < 0:
                out.append((node, path))
            else:
                stack.append((self.right[node], path + [(node, False)]))
                stack.append((self.left[node], path + [(node, True)]))
        return out

    def depth(self) -> int:
        return max(len(p) for _, p in self.leaves())


@dataclass
class QForest:
    name: str
    n_features: int
    n_outputs: int
    input_types: list[FixedType]
    score_type: FixedType
    base_type: FixedType
    result_type: FixedType
    base: list[int]                  # base codes (base_type)
    trees: list[QTree]
    pipeline: object = "per_level"   # "none", "per_level" or int
    class_output: bool = False
    reuse_factor: int = 1            # trees evaluated in this many groups (II)
    table_bits: int = 6              # path-code bits per leaf-sum table of the core
    task: str = "classifier"
    decision: str = ""
    library: str = ""
    objective: str = ""
    threshold_storage: str = "constant"   # constant | register | tmr (see rtlgen.ir.params)
    threshold_tmr_bits: int | None = None
    leaf_storage: str = "constant"        # leaves and base scores
    leaf_tmr_bits: int | None = None
    i2c: dict | None = None               # an I2C target in front of the configuration bus
    kind: str = field(default="bdt", init=False)

    @property
    def stored(self) -> bool:
        return self.threshold_storage != "constant" or self.leaf_storage != "constant"

    @property
    def threshold_type(self) -> FixedType:
        """Type of a stored threshold word: the input type with one more
        integer bit, holding every cut from ``min_code`` (always right) to
        ``max_code + 1`` (always left)."""
        t = self.input_type
        return FixedType(t.width + 1, t.integer + 1, t.signed)

    # -- stored parameters (see rtlgen.ir.params) ---------------------------

    def word_index(self, leaves: bool) -> list[dict]:
        """Per tree, ``{node: word number}`` of its internal nodes (the
        ``thresholds`` words) or of its leaves (the ``leaves`` words): tree
        by tree, each tree's nodes in node order."""
        out, n = [], 0
        for tree in self.trees:
            words = {}
            for node, f in enumerate(tree.feature):
                if (f < 0) == leaves:
                    words[node] = n
                    n += 1
            out.append(words)
        return out

    def param_sets(self) -> list:
        """The stored sets: ``thresholds`` (every internal node, tree by tree,
        in node order) and ``leaves`` (every leaf, tree by tree, in node
        order; then the base score of each class)."""
        from .params import ParamGroup, ParamSet
        out = []
        if self.threshold_storage != "constant":
            cuts = tuple(int(t.cut[n]) for t, words in zip(self.trees, self.word_index(False)) for n in words)
            out.append(ParamSet(0, "thresholds", "thresholds", self.threshold_storage, self.threshold_tmr_bits,
                                (ParamGroup("threshold", self.threshold_type, cuts),)))
        if self.leaf_storage != "constant":
            leaves = tuple(int(t.value[n]) for t, words in zip(self.trees, self.word_index(True)) for n in words)
            out.append(ParamSet(1, "leaves", "leaves", self.leaf_storage, self.leaf_tmr_bits,
                                (ParamGroup("leaf", self.score_type, leaves),
                                 ParamGroup("base", self.base_type, tuple(int(b) for b in self.base)))))
        return out

    def with_param_codes(self, codes: dict) -> "QForest":
        """A copy holding other thresholds (``codes["thresholds"] = (cuts,)``)
        and/or leaves (``codes["leaves"] = (leaf codes, base codes)``), in
        the word order of :meth:`param_sets`."""
        trees = [QTree(list(t.feature), list(t.cut), list(t.left), list(t.right), list(t.value), t.output)
                 for t in self.trees]
        base = list(self.base)
        if "thresholds" in codes:
            it = iter(int(c) for c in codes["thresholds"][0])
            for t in trees:
                t.cut = [next(it) if f >= 0 else c for f, c in zip(t.feature, t.cut)]
        if "leaves" in codes:
            leaves, new_base = codes["leaves"]
            it = iter(int(v) for v in leaves)
            for t in trees:
                t.value = [next(it) if f < 0 else v for f, v in zip(t.feature, t.value)]
            base = [int(b) for b in new_base]
        return replace(self, trees=trees, base=base)

    @property
    def input_type(self) -> FixedType:
        return self.input_types[0]

    @property
    def n_in(self) -> int:
        return self.n_features

    @property
    def n_out(self) -> int:
        return self.n_outputs + (1 if self.class_output else 0)

    @property
    def sum_frac(self) -> int:
        return max(self.score_type.frac, self.base_type.frac)

    @property
    def output_type(self) -> FixedType:
        """Type of every element of out_data (the class index, when present,
        is the integer code of the last element)."""
        return self.result_type

    def sum_range(self, k: int) -> tuple[int, int]:
        """Exact range of the per-class sum (base + leaves) at ``sum_frac``:
        of the trained leaves, or of every programmable code when the leaves
        are stored."""
        sb = self.sum_frac - self.base_type.frac
        ss = self.sum_frac - self.score_type.frac
        if self.leaf_storage != "constant":
            n = sum(1 for tree in self.trees if tree.output == k)
            s, b = self.score_type, self.base_type
            return (b.min_code << sb) + n * (s.min_code << ss), (b.max_code << sb) + n * (s.max_code << ss)
        lo = hi = self.base[k] << sb
        for tree in self.trees:
            if tree.output != k:
                continue
            vals = [tree.value[n] for n, _ in tree.leaves()]
            lo += min(vals) << ss
            hi += max(vals) << ss
        return lo, hi

    def to_dict(self) -> dict:
        return {
            "kind": "bdt", "name": self.name, "n_features": self.n_features, "n_outputs": self.n_outputs,
            "input_types": [str(t) for t in self.input_types], "score_type": str(self.score_type),
            "base_type": str(self.base_type), "result_type": str(self.result_type),
            "base": [int(b) for b in self.base], "pipeline": self.pipeline,
            "class_output": self.class_output, "reuse_factor": self.reuse_factor,
            "table_bits": self.table_bits, "task": self.task, "decision": self.decision,
            "library": self.library, "objective": self.objective,
            "threshold_storage": self.threshold_storage, "threshold_tmr_bits": self.threshold_tmr_bits,
            "leaf_storage": self.leaf_storage, "leaf_tmr_bits": self.leaf_tmr_bits, "i2c": self.i2c,
            "trees": [{"feature": t.feature, "cut": [int(c) for c in t.cut], "left": t.left,
                       "right": t.right, "value": [int(v) for v in t.value], "output": t.output}
                      for t in self.trees],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "QForest":
        return cls(name=d["name"], n_features=int(d["n_features"]), n_outputs=int(d["n_outputs"]),
                   input_types=[parse_type(t) for t in d["input_types"]],
                   score_type=parse_type(d["score_type"]), base_type=parse_type(d["base_type"]),
                   result_type=parse_type(d["result_type"]), base=[int(b) for b in d["base"]],
                   trees=[QTree(feature=list(t["feature"]), cut=list(t["cut"]), left=list(t["left"]),
                                right=list(t["right"]), value=list(t["value"]), output=int(t["output"]))
                          for t in d["trees"]],
                   pipeline=d.get("pipeline", "per_level"), class_output=bool(d.get("class_output")),
                   reuse_factor=int(d.get("reuse_factor", 1)), table_bits=int(d.get("table_bits", 6)),
                   task=d.get("task", "classifier"), decision=d.get("decision", ""),
                   library=d.get("library", ""), objective=d.get("objective", ""),
                   threshold_storage=d.get("threshold_storage", "constant"),
                   threshold_tmr_bits=d.get("threshold_tmr_bits"),
                   leaf_storage=d.get("leaf_storage", "constant"), leaf_tmr_bits=d.get("leaf_tmr_bits"),
                   i2c=d.get("i2c"))


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
    from .params import check_storage, check_tmr_bits

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
    from .config import load_config
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
    from .config import i2c_option
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
