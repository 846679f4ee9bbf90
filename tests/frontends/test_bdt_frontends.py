"""Decision-forest front ends: the golden model against each library's own
raw scores on breast_cancer, iris and wine (within the stated quantization
error, identical predicted classes), and clear errors for what is not
supported."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rtlgen.errors import RtlgenError
from rtlgen.frontends.trees import from_conifer, from_sklearn, from_xgboost_json, load_forest
from rtlgen.golden.forest import predict, quantize_inputs
from rtlgen.ir.forest_config import quantize_forest

pytest.importorskip("sklearn")
xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

from sklearn import datasets  # noqa: E402
from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,  # noqa: E402
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor  # noqa: E402

from helpers.forests import standardized  # noqa: E402

CFG = {"input": "fixed<10,4,RND,SAT>", "score": "fixed<16,4,RND,SAT>"}


def _data(name):
    return standardized(getattr(datasets, f"load_{name}"))


def _raw_scores(model, x):
    if hasattr(model, "get_booster"):
        return model.get_booster().predict(xgb.DMatrix(x), output_margin=True)
    if hasattr(model, "booster_"):
        return model.booster_.predict(x, raw_score=True)
    if isinstance(model, (GradientBoostingClassifier,)):
        return model.decision_function(x)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(x)
    return model.predict(x)


def _library_class(model, x):
    return np.asarray(model.predict(x))


MODELS = {
    "xgb": lambda: xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0),
    "xgb_dart": lambda: xgb.XGBClassifier(n_estimators=10, max_depth=3, booster="dart", rate_drop=0.2,
                                          random_state=0),
    "lgbm": lambda: lgb.LGBMClassifier(n_estimators=15, num_leaves=8, verbose=-1, random_state=0),
    "gb": lambda: GradientBoostingClassifier(n_estimators=15, max_depth=3, learning_rate=0.3, random_state=0),
    "rf": lambda: RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0),
    "dt": lambda: DecisionTreeClassifier(max_depth=5, random_state=0),
}


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris", "wine"])
@pytest.mark.parametrize("kind", list(MODELS))
def test_golden_matches_library_scores_and_classes(kind, dataset):
    x, y = _data(dataset)
    model = MODELS[kind]().fit(x, y)
    qf = quantize_forest(load_forest(model), CFG)
    xq = quantize_inputs(qf, x) * float(qf.input_type.lsb)      # the values the core sees
    ref = np.asarray(_raw_scores(model, xq), dtype=np.float64).reshape(len(x), -1)
    got = predict(qf, xq)
    assert got.shape == ref.shape
    lsb = float(qf.score_type.lsb)
    for k in range(qf.n_outputs):
        n_k = sum(1 for t in qf.trees if t.output == k)
        bound = (n_k + 1) * lsb / 2 + 1e-6 * n_k * (1 + np.abs(ref[:, k]))
        assert np.all(np.abs(got[:, k] - ref[:, k]) <= bound), (kind, dataset, k)
    classes = model.classes_
    if qf.n_outputs == 1:
        pred = classes[(got[:, 0] > 0).astype(int)]
    else:
        pred = classes[np.argmax(got, axis=1)]
    assert np.array_equal(pred, _library_class(model, xq))


@pytest.mark.parametrize("make", [
    lambda: xgb.XGBRegressor(n_estimators=10, max_depth=4, random_state=0),
    lambda: lgb.LGBMRegressor(n_estimators=10, num_leaves=8, verbose=-1, random_state=0),
    lambda: GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0),
    lambda: RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0),
    lambda: DecisionTreeRegressor(max_depth=4, random_state=0),
], ids=["xgb", "lgbm", "gb", "rf", "dt"])
def test_regressors(make):
    x, y = datasets.load_diabetes(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    model = make().fit(x, y)
    qf = quantize_forest(load_forest(model), CFG)
    assert qf.task == "regressor"
    xq = quantize_inputs(qf, x) * float(qf.input_type.lsb)
    ref = np.asarray(model.predict(xq), dtype=np.float64)
    got = predict(qf, xq)[:, 0]
    n = len(qf.trees)
    assert np.all(np.abs(got - ref) <= (n + 1) * float(qf.score_type.lsb) / 2 + 1e-5 * n)


def test_xgboost_files_json_and_ubj_agree(tmp_path):
    x, y = _data("iris")
    model = xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(x, y)
    model.save_model(tmp_path / "m.json")
    model.save_model(tmp_path / "m.ubj")
    a, b, c = (quantize_forest(load_forest(src), CFG) for src in (tmp_path / "m.json", tmp_path / "m.ubj", model))
    assert a.to_dict()["trees"] == b.to_dict()["trees"] == c.to_dict()["trees"]
    assert a.base == b.base == c.base


def test_conifer_json():
    x, y = _data("iris")
    gb = GradientBoostingClassifier(n_estimators=6, max_depth=3, random_state=0).fit(x, y)
    trees = []
    for row in gb.estimators_:
        trees.append([{"feature": [int(f) for f in e.tree_.feature],
                       "threshold": [float(t) for t in e.tree_.threshold],
                       "children_left": [int(c) for c in e.tree_.children_left],
                       "children_right": [int(c) for c in e.tree_.children_right],
                       "value": [float(v) * gb.learning_rate for v in e.tree_.value[:, 0, 0]]} for e in row])
    init = gb._raw_predict_init(x[:1])[0].tolist()
    doc = {"max_depth": 3, "n_trees": 6, "n_classes": 3, "n_features": 4, "trees": trees,
           "init_predict": init, "norm": 1}
    forest = from_conifer(json.loads(json.dumps(doc)), "conifer_iris")
    qf = quantize_forest(forest, CFG)
    xq = quantize_inputs(qf, x) * float(qf.input_type.lsb)
    ref = gb.decision_function(xq)
    assert np.all(np.abs(predict(qf, xq) - ref) <= 8 * float(qf.score_type.lsb))


def _xgb_doc():
    x, y = _data("breast_cancer")
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(x, y)
    return json.loads(bytes(model.get_booster().save_raw("json")))


def test_xgboost_unsupported_features_name_tree_and_node():
    doc = _xgb_doc()
    doc["learner"]["gradient_booster"]["model"]["trees"][1]["split_type"][0] = 1
    with pytest.raises(RtlgenError, match=r"tree 1 node 0: categorical split"):
        from_xgboost_json(doc, "m")
    doc = _xgb_doc()
    doc["learner"]["objective"]["name"] = "rank:pairwise"
    with pytest.raises(RtlgenError, match=r"objective 'rank:pairwise' is not supported"):
        from_xgboost_json(doc, "m")
    doc = _xgb_doc()
    doc["learner"]["gradient_booster"]["model"]["trees"][2]["left_children"][0] = 99
    with pytest.raises(RtlgenError, match=r"tree 2 node 0 .*does not exist"):
        from_xgboost_json(doc, "m")
    doc = _xgb_doc()
    del doc["learner"]["gradient_booster"]["model"]["trees"]
    with pytest.raises(RtlgenError, match=r"damaged"):
        from_xgboost_json(doc, "m")


def test_xgboost_base_score_is_a_margin():
    doc = _xgb_doc()
    b = float(doc["learner"]["learner_model_param"]["base_score"].strip("[]"))
    forest = from_xgboost_json(doc, "m")
    assert math.isclose(forest.base[0], math.log(b / (1 - b)))


def test_lightgbm_zero_as_missing_is_rejected(tmp_path):
    x, y = _data("breast_cancer")
    model = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, zero_as_missing=True, verbose=-1).fit(x, y)
    path = tmp_path / "m.txt"
    model.booster_.save_model(str(path))
    with pytest.raises(RtlgenError, match=r"tree \d+ node \d+: zero-as-missing"):
        load_forest(path)


MISSING_MODELS = {
    "xgb": lambda: xgb.XGBClassifier(n_estimators=10, max_depth=3, random_state=0),
    "lgbm": lambda: lgb.LGBMClassifier(n_estimators=10, num_leaves=8, verbose=-1, random_state=0),
    "dt": lambda: DecisionTreeClassifier(max_depth=5, random_state=0),
}


@pytest.mark.parametrize("kind", list(MISSING_MODELS))
def test_models_trained_with_nan_ignore_default_directions(kind):
    """Default directions apply to NaN only; on (NaN-free) quantized inputs the
    golden model still follows the library."""
    x, y = _data("breast_cancer")
    x = x.copy()
    rng = np.random.default_rng(1)
    x[rng.random(x.shape) < 0.2] = np.nan
    try:
        model = MISSING_MODELS[kind]().fit(x, y)
    except ValueError as exc:       # a scikit-learn without missing-value support in trees
        pytest.skip(str(exc))
    qf = quantize_forest(load_forest(model), CFG)
    filled = np.where(np.isnan(x), rng.normal(size=x.shape), x)
    with pytest.raises(RtlgenError, match="NaN"):
        quantize_inputs(qf, x)
    xq = quantize_inputs(qf, filled) * float(qf.input_type.lsb)
    ref = np.asarray(_raw_scores(model, xq), dtype=np.float64).reshape(len(x), -1)
    got = predict(qf, xq)
    n = len(qf.trees)
    lsb = float(qf.score_type.lsb)
    assert np.all(np.abs(got - ref) <= (n + 1) * lsb / 2 + 1e-6 * n * (1 + np.abs(ref)))


def test_xgboost_missing_value_other_than_nan_is_rejected():
    x, y = _data("breast_cancer")
    model = xgb.XGBClassifier(n_estimators=2, max_depth=2, missing=0.0, random_state=0).fit(x, y)
    with pytest.raises(RtlgenError, match=r"missing=0\.0.*default branch"):
        load_forest(model)
    model.set_params(missing=np.nan)
    assert len(load_forest(model).trees) == 2


def test_sklearn_unsupported_estimators():
    from sklearn.linear_model import LogisticRegression
    x, y = _data("iris")
    with pytest.raises(RtlgenError, match="LogisticRegression is not supported"):
        from_sklearn(LogisticRegression(max_iter=200).fit(x, y))
    with pytest.raises(RtlgenError, match="not fitted"):
        from_sklearn(RandomForestClassifier())


def test_config_errors():
    x, y = _data("iris")
    forest = load_forest(DecisionTreeClassifier(max_depth=3).fit(x, y))
    with pytest.raises(RtlgenError, match="missing 'score'"):
        quantize_forest(forest, {"input": "fixed<8,3>"})
    with pytest.raises(RtlgenError, match="feature 9 does not exist"):
        quantize_forest(forest, {**CFG, "features": {9: "fixed<10,2>"}})
    with pytest.raises(RtlgenError, match="width and signedness"):
        quantize_forest(forest, {**CFG, "features": {1: "fixed<8,2>"}})
    with pytest.raises(RtlgenError, match="pipeline"):
        quantize_forest(forest, {**CFG, "pipeline": "fast"})
    with pytest.raises(RtlgenError, match="unknown key"):
        quantize_forest(forest, {**CFG, "weight": "fixed<8,3>"})
    with pytest.raises(RtlgenError, match="reuse_factor"):
        quantize_forest(forest, {**CFG, "reuse_factor": 2})


def test_thresholds_beyond_the_range_become_constant_decisions():
    x, y = _data("iris")
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(x * 100, y)   # thresholds far out of range
    qf = quantize_forest(load_forest(model), {"input": "fixed<6,2,RND,SAT>", "score": "fixed<10,2,RND,SAT>"})
    full = quantize_forest(load_forest(model), {"input": "fixed<20,10,RND,SAT>", "score": "fixed<10,2,RND,SAT>"})
    assert len(qf.trees[0].feature) < len(full.trees[0].feature)
