"""The command line with decision forests: build/predict/sim from every model
file format, and bad input (corrupt or truncated files, unsupported
objectives, NaN inputs, wrong feature counts) giving one clear message, exit
code 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rtlgen.cli import main

pytest.importorskip("sklearn")
xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
joblib = pytest.importorskip("joblib")

from sklearn.datasets import load_breast_cancer, load_iris  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402

from helpers.cli import run_cli  # noqa: E402
from helpers.forests import standardized  # noqa: E402

CONFIG = {"input": "fixed<8,3,RND,SAT>", "score": "fixed<10,3,RND,SAT>", "pipeline": "per_level",
          "class_output": True}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    x, y = standardized(load_breast_cancer)
    m = xgb.XGBClassifier(n_estimators=8, max_depth=3, random_state=0).fit(x, y)
    m.save_model(d / "xgb.json")
    m.save_model(d / "xgb.ubj")
    xi, yi = standardized(load_iris)
    lgb.LGBMClassifier(n_estimators=5, num_leaves=6, verbose=-1).fit(xi, yi).booster_.save_model(str(d / "lgb.txt"))
    joblib.dump(GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(xi, yi), d / "gb.joblib")
    (d / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    np.save(d / "bc.npy", x[:50])
    np.save(d / "iris.npy", xi[:50])
    return d


def test_xgboost_json_build_predict_sim(files, tmp_path):
    out = tmp_path / "core"
    assert main(["build", str(files / "xgb.json"), "-c", str(files / "cfg.yaml"), "-o", str(out),
                 "--name", "bdt"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "bdt" and manifest["top"] == "bdt" and (out / "bdt.v").is_file()
    assert manifest["input"]["count"] == 30 and manifest["output"]["count"] == 2
    assert main(["predict", str(out), str(files / "bc.npy"), "-o", str(tmp_path / "gold.npy")]) == 0
    assert main(["sim", str(out), str(files / "bc.npy"), "-o", str(tmp_path / "rtl.npy")]) == 0
    gold, rtl = np.load(tmp_path / "gold.npy"), np.load(tmp_path / "rtl.npy")
    assert gold.shape == (50, 2) and np.array_equal(gold, rtl)
    # the class column agrees with xgboost's own prediction on the quantized inputs
    booster = xgb.Booster(model_file=str(files / "xgb.json"))
    from rtlgen.numerics.fixed import parse_type, quantize, to_float
    t = parse_type(CONFIG["input"])
    xq = to_float(quantize(np.load(files / "bc.npy"), t), t)
    p = booster.predict(xgb.DMatrix(xq))
    assert np.array_equal(gold[:, 1], (p > 0.5).astype(float))


@pytest.mark.parametrize("name,data", [("xgb.ubj", "bc.npy"), ("lgb.txt", "iris.npy"), ("gb.joblib", "iris.npy")])
def test_other_formats_build_and_predict(files, tmp_path, name, data):
    out = tmp_path / "core"
    assert main(["build", str(files / name), "-c", str(files / "cfg.yaml"), "-o", str(out)]) == 0
    assert main(["predict", str(out), str(files / data), "-o", str(tmp_path / "gold.npy")]) == 0
    from rtlgen.numerics.fixed import parse_type, quantize, to_float
    t = parse_type(CONFIG["input"])
    np.save(tmp_path / "codes.npy", quantize(np.load(files / data), t))
    assert main(["predict", str(out), str(tmp_path / "codes.npy"), "-o", str(tmp_path / "raw.npy"), "--raw"]) == 0
    gold, raw = np.load(tmp_path / "gold.npy"), np.load(tmp_path / "raw.npy")
    assert np.issubdtype(raw.dtype, np.integer) and raw.shape == gold.shape
    manifest = json.loads((out / "manifest.json").read_text())
    n_cls = manifest["output"]["classes"]
    assert np.array_equal(to_float(raw[:, :n_cls], parse_type(manifest["output"]["type"])), gold[:, :n_cls])
    assert np.array_equal(raw[:, n_cls], gold[:, n_cls])


def _assert_clean_failure(res, out, needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rtlgen: error: "), res.stderr
    for needle in needles:
        assert needle in res.stderr
    assert not out.exists()


def _truncate(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.mark.parametrize("what", ["json", "ubj", "txt", "joblib", "objective", "garbage_json"])
def test_bad_model_files_exit_2_without_output(files, tmp_path, what):
    if what in ("json", "ubj", "txt", "joblib"):
        src = {"json": "xgb.json", "ubj": "xgb.ubj", "txt": "lgb.txt", "joblib": "gb.joblib"}[what]
        model = _truncate(files / src, tmp_path / f"trunc.{src.split('.')[1]}")
        needles = ["trunc"]
    elif what == "objective":
        doc = json.loads((files / "xgb.json").read_text())
        doc["learner"]["objective"]["name"] = "survival:cox"
        model = tmp_path / "cox.json"
        model.write_text(json.dumps(doc))
        needles = ["survival:cox", "not supported"]
    else:
        model = tmp_path / "other.json"
        model.write_text(json.dumps({"hello": 1}))
        needles = ["neither an xgboost nor a conifer"]
    out = tmp_path / "core"
    _assert_clean_failure(run_cli("build", model, "-c", files / "cfg.yaml", "-o", out), out, needles)


def test_bad_inputs_exit_2_without_output(files, tmp_path):
    out = tmp_path / "core"
    assert main(["build", str(files / "xgb.json"), "-c", str(files / "cfg.yaml"), "-o", str(out)]) == 0
    x = np.load(files / "bc.npy")
    bad_nan = x.copy()
    bad_nan[3, 4] = np.nan
    cases = {"nan.npy": (bad_nan, [], ["NaN", "(3, 4)"]),
             "width.npy": (x[:, :29], [], ["30 input features"]),
             "codes.npy": (np.full((2, 30), 999, dtype=np.int64), ["--raw"], ["outside the range"])}
    for name, (arr, extra, needles) in cases.items():
        np.save(tmp_path / name, arr)
        for cmd in ("predict", "sim"):
            dest = tmp_path / f"{cmd}_{name}"
            res = run_cli(cmd, out, tmp_path / name, "-o", dest, *extra)
            _assert_clean_failure(res, dest, needles)
