"""Decision-forest front ends: xgboost, scikit-learn, LightGBM and conifer JSON.

Each reader returns a :class:`rtlgen.ir.forest.Forest` whose output ``k`` is
the library's raw score (margin) for class ``k``: base scores are converted
to margins, learning rates and tree weights are folded into the leaves.

==========================  ============================================
source                      reader
==========================  ============================================
xgboost ``.json``/``.ubj``  :func:`from_xgboost` (Booster, XGBModel, path)
LightGBM ``.txt``           :func:`from_lightgbm` (Booster, LGBMModel, path)
scikit-learn                :func:`from_sklearn` (estimator; ``.joblib``/
                            ``.pkl`` files from the CLI; unpickling runs
                            code: load only files you trust)
conifer ``.json``           :func:`from_conifer`
==========================  ============================================

xgboost, LightGBM and scikit-learn are imported only when needed.
Unsupported features (categorical splits, multi-output trees, linear
boosters, unknown objectives) raise :class:`RtlgenError` naming the tree
and node.

Missing values: the cores take fixed-point codes, which have no NaN, so a
node's default direction (xgboost ``default_left``, LightGBM ``missing_type``
NaN, scikit-learn ``missing_go_to_left``), which the libraries apply only to
NaN, never applies and is ignored.  Splits that treat ordinary values as
missing are refused: LightGBM zero-as-missing splits, and xgboost
scikit-learn wrappers set up with a ``missing`` value other than NaN (a
saved xgboost model does not record that value: a model used with
``DMatrix(missing=v)`` must be given inputs that never equal ``v``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import RtlgenError
from ..ir.forest import Forest, Tree
from .ubjson import read_ubjson

__all__ = ["load_forest", "from_xgboost", "from_xgboost_json", "from_sklearn", "from_lightgbm",
           "from_conifer", "FOREST_SUFFIXES"]

FOREST_SUFFIXES = {".json": "xgboost or conifer JSON", ".ubj": "xgboost UBJSON",
                   ".txt": "LightGBM text model", ".joblib": "scikit-learn (joblib, trusted input only)",
                   ".pkl": "scikit-learn (pickle, trusted input only)"}

# objective -> how xgboost's base_score (prediction space) becomes a margin
_XGB_LOGIT = {"binary:logistic", "reg:logistic"}
_XGB_LOG = {"count:poisson", "reg:gamma", "reg:tweedie"}
_XGB_IDENTITY = {"reg:squarederror", "reg:linear", "reg:absoluteerror", "reg:pseudohubererror",
                 "reg:squaredlogerror", "binary:logitraw", "multi:softmax", "multi:softprob",
                 "reg:quantileerror"}


def _tree(feature, threshold, left, right, value, output) -> Tree:
    return Tree(feature=np.asarray(feature, dtype=np.int64), threshold=np.asarray(threshold, dtype=np.float64),
                left=np.asarray(left, dtype=np.int64), right=np.asarray(right, dtype=np.int64),
                value=np.asarray(value, dtype=np.float64), output=int(output))


def _floats(text) -> list[float]:
    if isinstance(text, (int, float)):
        return [float(text)]
    s = str(text).strip()
    if s.startswith("["):
        s = s[1:-1]
    return [float(v) for v in s.split(",") if v.strip()]


# ---------------------------------------------------------------------------
# xgboost
# ---------------------------------------------------------------------------

def from_xgboost_json(doc: dict, name: str = "xgb") -> Forest:
    """Read xgboost's JSON model document (``Booster.save_raw('json')``)."""
    try:
        learner = doc["learner"]
        params = learner["learner_model_param"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        kind = booster["name"]
        if kind == "dart":
            model = booster["gbtree"]["model"]
            weights = [float(w) for w in booster.get("weight_drop", [])]
        elif kind == "gbtree":
            model = booster["model"]
            weights = []
        else:
            raise RtlgenError(f"xgboost model {name!r}: booster {kind!r} is not supported "
                              "(only tree boosters gbtree and dart)")
        n_features = int(params["num_feature"])
        n_class = int(params.get("num_class", 0))
        if int(params.get("num_target", 1)) > 1:
            raise RtlgenError(f"xgboost model {name!r}: multi-target models are not supported")
        base = _floats(params.get("base_score", "0.5"))
        trees_json = model["trees"]
        tree_info = [int(v) for v in model["tree_info"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise RtlgenError(f"xgboost model {name!r} is damaged or not an xgboost model: "
                          f"missing or bad field {exc}") from None
    n_out = max(1, n_class)
    if objective in _XGB_LOGIT:
        try:
            margins = [math.log(b / (1.0 - b)) for b in base]
        except (ValueError, ZeroDivisionError):
            raise RtlgenError(f"xgboost model {name!r}: base_score {base} is not a probability") from None
    elif objective in _XGB_LOG:
        margins = [math.log(b) if b > 0 else float("nan") for b in base]
    elif objective in _XGB_IDENTITY:
        margins = base
    else:
        raise RtlgenError(f"xgboost model {name!r}: objective {objective!r} is not supported; supported: "
                          f"{', '.join(sorted(_XGB_LOGIT | _XGB_LOG | _XGB_IDENTITY))}")
    if len(margins) == 1:
        margins = margins * n_out
    if len(margins) != n_out:
        raise RtlgenError(f"xgboost model {name!r}: {len(margins)} base scores for {n_out} outputs")
    if len(tree_info) != len(trees_json):
        raise RtlgenError(f"xgboost model {name!r} is damaged: {len(trees_json)} trees but "
                          f"{len(tree_info)} tree_info entries")
    trees = []
    for t, tj in enumerate(trees_json):
        try:
            if int(tj["tree_param"].get("size_leaf_vector", "1")) > 1:
                raise RtlgenError(f"xgboost model {name!r} tree {t}: vector leaves (multi_strategy="
                                  "multi_output_tree) are not supported; train with one_output_per_tree")
            left = [int(v) for v in tj["left_children"]]
            right = [int(v) for v in tj["right_children"]]
            feat = [int(v) for v in tj["split_indices"]]
            cond = [float(v) for v in tj["split_conditions"]]
            split_type = [int(v) for v in tj.get("split_type", [0] * len(left))]
        except (KeyError, TypeError, ValueError) as exc:
            raise RtlgenError(f"xgboost model {name!r} tree {t} is damaged: bad field {exc}") from None
        if not (len(left) == len(right) == len(feat) == len(cond)):
            raise RtlgenError(f"xgboost model {name!r} tree {t} is damaged: node arrays differ in length")
        scale = weights[t] if weights else 1.0
        feature, value = [], []
        for n in range(len(left)):
            if left[n] == -1:
                feature.append(-1)
                value.append(cond[n] * scale)
            else:
                if n < len(split_type) and split_type[n] != 0:
                    raise RtlgenError(f"xgboost model {name!r} tree {t} node {n}: categorical split on "
                                      f"feature {feat[n]} is not supported; one-hot encode the feature")
                feature.append(feat[n])
                value.append(0.0)
        if not 0 <= tree_info[t] < n_out:
            raise RtlgenError(f"xgboost model {name!r} tree {t} is damaged: class {tree_info[t]}")
        trees.append(_tree(feature, cond, left, right, value, tree_info[t]))
    task = "classifier" if objective.startswith(("binary:", "multi:")) else "regressor"
    forest = Forest(name=name, n_features=n_features, n_outputs=n_out, trees=trees, base=list(margins),
                    decision="lt_f32", task=task, library="xgboost", objective=objective)
    forest.validate()
    return forest


def _xgboost_booster_json(obj) -> dict:
    booster = obj.get_booster() if hasattr(obj, "get_booster") else obj
    return json.loads(bytes(booster.save_raw("json")))


def _read_document(path: Path):
    """The document of a ``.json`` or ``.ubj`` model file.  UBJSON is read here, not by xgboost,
    whose reader can crash the process on a truncated file."""
    ubj = path.suffix.lower() == ".ubj"
    try:
        return read_ubjson(path.read_bytes()) if ubj else json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:   # UBJSONError is a ValueError
        raise RtlgenError(f"model file {path} is not valid {'UBJSON' if ubj else 'JSON'} ({exc}): the file "
                          "is corrupt or truncated") from None


def from_xgboost(source, name: str | None = None) -> Forest:
    """xgboost Booster, scikit-learn wrapper, or a model file (.json / .ubj)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or path.stem
        if path.suffix.lower() in (".json", ".ubj"):
            doc = _read_document(path)
            if not isinstance(doc, dict):
                raise RtlgenError(f"model file {path} is not an xgboost model (no object at its top)")
            return from_xgboost_json(doc, name)
        try:   # optional: only binary xgboost models need it
            import xgboost
        except ImportError:
            raise RtlgenError(f"reading {path} needs the xgboost package: pip install xgboost") from None
        try:
            booster = xgboost.Booster(model_file=str(path))
            doc = _xgboost_booster_json(booster)
        except Exception as exc:  # xgboost.core.XGBoostError and friends
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RtlgenError(f"model file {path} is not a readable xgboost model (corrupt or truncated?): "
                              f"{first}") from None
        return from_xgboost_json(doc, name)
    missing = getattr(source, "missing", float("nan"))
    try:
        missing = float(missing)
    except (TypeError, ValueError):
        missing = float("nan")
    if not math.isnan(missing):
        raise RtlgenError(f"xgboost model {name or 'xgb'!r} is set up with missing={missing!r}: xgboost sends "
                          f"every input equal to {missing!r} down each node's default branch, which the "
                          "core (comparing every value against the threshold) does not do; use a model "
                          "with missing=nan (the default) and encode absent values yourself")
    return from_xgboost_json(_xgboost_booster_json(source), name or "xgb")


# ---------------------------------------------------------------------------
# scikit-learn
# ---------------------------------------------------------------------------

def _sk_tree(est, t_index: int, name: str):
    tr = est.tree_
    if tr.n_outputs != 1:
        raise RtlgenError(f"scikit-learn model {name!r} tree {t_index}: multi-output trees are not supported")
    left = np.asarray(tr.children_left, dtype=np.int64)
    right = np.asarray(tr.children_right, dtype=np.int64)
    leaf = left == -1
    feature = np.where(leaf, -1, np.asarray(tr.feature, dtype=np.int64))
    threshold = np.where(leaf, 0.0, np.asarray(tr.threshold, dtype=np.float64))
    return feature, threshold, left, right, np.asarray(tr.value, dtype=np.float64)[:, 0, :]


def from_sklearn(est, name: str | None = None) -> Forest:
    """GradientBoosting*, RandomForest*, ExtraTrees* and DecisionTree* estimators."""
    cls = type(est).__name__
    name = name or cls
    if not hasattr(est, "n_features_in_"):
        raise RtlgenError(f"scikit-learn {cls} {name!r} is not fitted (or not an estimator)")
    n_features = int(est.n_features_in_)
    trees: list[Tree] = []

    def proba_trees(estimators, scale):
        for t, e in enumerate(estimators):
            feature, threshold, left, right, value = _sk_tree(e, t, name)
            total = value.sum(axis=1, keepdims=True)
            frac = value / np.where(total == 0, 1.0, total)
            for k in range(frac.shape[1]):
                trees.append(_tree(feature, threshold, left, right, frac[:, k] * scale, k))

    def value_trees(estimators, scale, output=0):
        for t, e in enumerate(estimators):
            feature, threshold, left, right, value = _sk_tree(e, t, name)
            trees.append(_tree(feature, threshold, left, right, value[:, 0] * scale, output))

    if cls in ("DecisionTreeClassifier", "ExtraTreeClassifier", "RandomForestClassifier",
               "ExtraTreesClassifier"):
        ests = [est] if "Tree" in cls and "Trees" not in cls else list(est.estimators_)
        if getattr(est, "n_outputs_", 1) != 1:
            raise RtlgenError(f"scikit-learn {cls} {name!r}: multi-output models are not supported")
        proba_trees(ests, 1.0 / len(ests))
        n_out, base, task = int(est.n_classes_), [0.0] * int(est.n_classes_), "classifier"
    elif cls in ("DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor",
                 "ExtraTreesRegressor"):
        ests = [est] if "Tree" in cls and "Trees" not in cls else list(est.estimators_)
        if getattr(est, "n_outputs_", 1) != 1:
            raise RtlgenError(f"scikit-learn {cls} {name!r}: multi-output models are not supported")
        value_trees(ests, 1.0 / len(ests))
        n_out, base, task = 1, [0.0], "regressor"
    elif cls in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
        init = est.init_
        if not (init == "zero" or type(init).__name__ in ("DummyClassifier", "DummyRegressor")):
            raise RtlgenError(f"scikit-learn {cls} {name!r}: a custom init estimator "
                              f"({type(init).__name__}) is not supported; use init=None or 'zero'")
        grid = np.asarray(est.estimators_)
        n_out = grid.shape[1]
        base = [float(v) for v in np.asarray(est._raw_predict_init(np.zeros((1, n_features))))[0]]
        lr = float(est.learning_rate)
        for k in range(n_out):
            for t in range(grid.shape[0]):
                feature, threshold, left, right, value = _sk_tree(grid[t, k], t, name)
                trees.append(_tree(feature, threshold, left, right, value[:, 0] * lr, k))
        task = "classifier" if cls.endswith("Classifier") else "regressor"
    else:
        raise RtlgenError(f"scikit-learn model {name!r}: {cls} is not supported; supported: "
                          "GradientBoosting*, RandomForest*, ExtraTrees*, DecisionTree*")
    forest = Forest(name=name, n_features=n_features, n_outputs=n_out, trees=trees, base=base,
                    decision="le_f32", task=task, library="sklearn", objective=cls)
    forest.validate()
    return forest


def _load_joblib(path: Path, name: str) -> Forest:
    try:   # optional: only scikit-learn models need it
        import joblib
    except ImportError:
        raise RtlgenError(f"reading {path} needs the joblib package: pip install joblib") from None
    try:
        est = joblib.load(path)
    except Exception as exc:  # corrupt pickles raise all kinds of errors
        raise RtlgenError(f"model file {path} cannot be unpickled (corrupt or truncated?): "
                          f"{type(exc).__name__}: {exc}") from None
    if hasattr(est, "get_booster"):
        return from_xgboost(est, name)
    if hasattr(est, "booster_"):
        return from_lightgbm(est, name)
    if type(est).__module__.startswith("sklearn."):
        return from_sklearn(est, name)
    raise RtlgenError(f"model file {path} holds a {type(est).__name__}, not a supported tree model")


# ---------------------------------------------------------------------------
# LightGBM
# ---------------------------------------------------------------------------

def _lightgbm_text(source) -> str:
    if isinstance(source, (str, Path)):
        try:
            return Path(source).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise RtlgenError(f"cannot read LightGBM model file {source}: {exc}") from None
    booster = source.booster_ if hasattr(source, "booster_") else source
    return booster.model_to_string()


def _parse_lightgbm_text(text: str, name: str):
    """Header fields and per-tree fields of LightGBM's text model format."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    current = header
    ended = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("end of trees"):
            ended = True
            break
        if line.startswith("Tree="):
            current = {"Tree": line[5:]}
            trees.append(current)
            continue
        if "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    if not ended or header.get("version") is None or "max_feature_idx" not in header:
        raise RtlgenError(f"LightGBM model {name!r} is not a complete LightGBM text model (no header or "
                          "no 'end of trees'): the file is corrupt or truncated")
    return header, trees


def from_lightgbm(source, name: str | None = None) -> Forest:
    """LightGBM Booster, scikit-learn wrapper, or a text model file (read
    without LightGBM itself; decisions ``x <= t`` in float64)."""
    if name is None:
        name = Path(source).stem if isinstance(source, (str, Path)) else "lgbm"
    header, blocks = _parse_lightgbm_text(_lightgbm_text(source), name)
    try:
        n_features = int(header["max_feature_idx"]) + 1
        per_iter = int(header.get("num_tree_per_iteration", header.get("num_class", "1")))
        objective = header.get("objective", "").split(" ")[0]
        average = "average_output" in header
    except ValueError as exc:
        raise RtlgenError(f"LightGBM model {name!r} is damaged: {exc}") from None
    supported = {"binary", "multiclass", "multiclassova", "regression", "regression_l1", "huber", "fair",
                 "quantile", "mape", "cross_entropy", "xentropy"}
    if objective not in supported:
        raise RtlgenError(f"LightGBM model {name!r}: objective {objective!r} is not supported; "
                          f"supported: {', '.join(sorted(supported))}")
    n_iter = max(1, len(blocks) // max(1, per_iter))
    trees = []
    for t, blk in enumerate(blocks):
        where = f"LightGBM model {name!r} tree {t}"
        try:
            n_leaves = int(blk["num_leaves"])
            leaf_value = [float(v) for v in blk["leaf_value"].split()]
            if n_leaves > 1:
                if int(blk.get("num_cat", "0")) > 0:
                    dtypes = [int(v) for v in blk["decision_type"].split()]
                    node = next((n for n, d in enumerate(dtypes) if d & 1), 0)
                    raise RtlgenError(f"{where} node {node}: categorical split is not supported; "
                                      "encode the feature numerically")
                sf = [int(v) for v in blk["split_feature"].split()]
                thr = [float(v) for v in blk["threshold"].split()]
                dtypes = [int(v) for v in blk["decision_type"].split()]
                lc = [int(v) for v in blk["left_child"].split()]
                rc = [int(v) for v in blk["right_child"].split()]
            else:
                sf = thr = dtypes = lc = rc = []
        except KeyError as exc:
            raise RtlgenError(f"{where} is damaged: missing field {exc} (corrupt or truncated file?)") from None
        except ValueError as exc:
            raise RtlgenError(f"{where} is damaged: {exc} (corrupt or truncated file?)") from None
        n_inner = n_leaves - 1
        if len(leaf_value) != n_leaves or not (len(sf) == len(thr) == len(dtypes) == len(lc) == len(rc) == n_inner):
            raise RtlgenError(f"{where} is damaged: node arrays do not match num_leaves={n_leaves}")
        for n, d in enumerate(dtypes):
            if d & 1:
                raise RtlgenError(f"{where} node {n}: categorical split on feature {sf[n]} is not supported; "
                                  "encode the feature numerically")
            if (d >> 2) & 3 == 1:
                raise RtlgenError(f"{where} node {n}: zero-as-missing split on feature {sf[n]} is not "
                                  "supported; train with zero_as_missing=false")
        # internal nodes 0..n_inner-1, leaves n_inner + leaf index
        feature = sf + [-1] * n_leaves
        threshold = thr + [0.0] * n_leaves
        scale = 1.0 / n_iter if average else 1.0
        value = [0.0] * n_inner + [v * scale for v in leaf_value]

        def child(c):
            return c if c >= 0 else n_inner + (~c)
        left = [child(c) for c in lc] + [-1] * n_leaves
        right = [child(c) for c in rc] + [-1] * n_leaves
        trees.append(_tree(feature, threshold, left, right, value, t % per_iter))
    task = "classifier" if objective in ("binary", "multiclass", "multiclassova") else "regressor"
    forest = Forest(name=name, n_features=n_features, n_outputs=per_iter, trees=trees, base=[0.0] * per_iter,
                    decision="le_f64", task=task, library="lightgbm", objective=objective)
    forest.validate()
    return forest


# ---------------------------------------------------------------------------
# conifer JSON
# ---------------------------------------------------------------------------

def from_conifer(doc: dict, name: str = "conifer") -> Forest:
    """conifer's JSON model: ``trees[i][k]`` is tree i of class k with
    ``feature``, ``threshold``, ``children_left``, ``children_right``,
    ``value``; the score is ``init_predict[k] + norm * sum(leaf values)``,
    decisions are ``x <= threshold``."""
    try:
        n_features = int(doc["n_features"])
        grid = doc["trees"]
        n_out = len(grid[0]) if grid else max(1, int(doc.get("n_classes", 1)))
        init = [float(v) for v in np.atleast_1d(doc.get("init_predict", [0.0] * n_out))]
        norm = float(doc.get("norm", 1.0))
        trees = []
        for i, row in enumerate(grid):
            if len(row) != n_out:
                raise RtlgenError(f"conifer model {name!r} estimator {i} has {len(row)} trees, expected {n_out}")
            for k, tj in enumerate(row):
                left = [int(v) for v in tj["children_left"]]
                right = [int(v) for v in tj["children_right"]]
                feat = [int(f) if left[n] != -1 else -1 for n, f in enumerate(tj["feature"])]
                thr = [float(v) for v in tj["threshold"]]
                val = [float(v) * norm for v in tj["value"]]
                if not (len(left) == len(right) == len(feat) == len(thr) == len(val)):
                    raise RtlgenError(f"conifer model {name!r} tree {i} class {k}: node arrays differ in length")
                trees.append(_tree(feat, thr, left, right, val, k))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise RtlgenError(f"conifer model {name!r} is damaged: bad field {exc}") from None
    if len(init) == 1 and n_out > 1:
        init = init * n_out
    forest = Forest(name=name, n_features=n_features, n_outputs=n_out, trees=trees, base=init,
                    decision="le_f64", task="classifier" if n_out > 1 or doc.get("n_classes", 1) > 1 else "regressor",
                    library="conifer", objective="conifer")
    forest.validate()
    return forest


# ---------------------------------------------------------------------------

def load_forest(source, name: str | None = None) -> Forest:
    """A Forest from a model file (by suffix) or an in-memory model object."""
    if isinstance(source, Forest):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise RtlgenError(f"cannot read model file {path}: no such file")
        suffix = path.suffix.lower()
        name = name or path.stem
        if suffix == ".json":
            doc = _read_document(path)
            if isinstance(doc, dict) and "learner" in doc:
                return from_xgboost_json(doc, name)
            if isinstance(doc, dict) and "trees" in doc and "n_features" in doc:
                return from_conifer(doc, name)
            raise RtlgenError(f"model file {path} is JSON but neither an xgboost nor a conifer model")
        if suffix == ".ubj":
            return from_xgboost(path, name)
        if suffix == ".txt":
            return from_lightgbm(path, name)
        if suffix in (".joblib", ".pkl"):
            return _load_joblib(path, name)
        raise RtlgenError(f"model file {path}: unsupported forest format; supported: "
                          + ", ".join(f"{s} ({d})" for s, d in FOREST_SUFFIXES.items()))
    mod = type(source).__module__
    if mod.startswith("xgboost"):
        return from_xgboost(source, name)
    if mod.startswith("lightgbm"):
        return from_lightgbm(source, name)
    if mod.startswith("sklearn"):
        return from_sklearn(source, name)
    raise RtlgenError(f"cannot read a decision forest from a {type(source).__name__}")
