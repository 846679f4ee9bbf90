"""Decision forests: the float IR and the quantized IR.

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

The configuration that quantizes a :class:`Forest` into a :class:`QForest`
is read by :mod:`rtlgen.ir.forest_config`.

With stored thresholds or leaves (``register`` or ``tmr``, see
:mod:`rtlgen.hw.storage`) the tree shapes and the features they test are
fixed by the build, and the values are reprogrammable through the
configuration bus.  Stored thresholds are words of :meth:`QForest.threshold_type`
(the input type with one more integer bit, so that "always left" and
"always right" are programmable too).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType, parse_type
from .params import ParamGroup, ParamSet

__all__ = ["Tree", "Forest", "QTree", "QForest", "DECISIONS", "threshold_codes", "FOREST_SETS"]

DECISIONS = {
    "lt_f32": "float32(x) < float32(t) (xgboost)",
    "le_f32": "float32(x) <= t (scikit-learn)",
    "le_f64": "x <= t in float64 (LightGBM, conifer)",
}
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

    def word_places(self, param_set) -> list:
        """Per group, where each word sits: a threshold's tree, node and feature; a leaf's tree and
        node; a base score's class."""
        if param_set.name == "thresholds":
            return [[{"tree": t, "node": n, "feature": self.trees[t].feature[n]}
                     for t, words in enumerate(self.word_index(False)) for n in words]]
        return [[{"tree": t, "node": n} for t, words in enumerate(self.word_index(True)) for n in words],
                [{"class": k} for k in range(self.n_outputs)]]

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
