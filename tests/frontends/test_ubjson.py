"""The UBJSON reader of xgboost .ubj models, against xgboost's own JSON of the same model."""

import json

import numpy as np
import pytest
import xgboost as xgb

from rtlgen.frontends.ubjson import UBJSONError, read_ubjson


def _same(a, b, path=""):
    """Equal documents; numbers compared as xgboost stores them (float32)."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and a.keys() == b.keys(), path
        for k in b:
            _same(a[k], b[k], f"{path}/{k}")
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert np.float32(a) == np.float32(b), (path, a, b)
    else:
        assert a == b and type(a) is type(b), (path, a, b)


@pytest.mark.parametrize("objective", ["binary:logistic", "multi:softprob", "reg:squarederror"])
def test_ubj_reads_as_the_json_of_the_same_model(tmp_path, objective):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    if objective == "reg:squarederror":
        model = xgb.XGBRegressor(n_estimators=4, max_depth=3).fit(x, 2.0 * x[:, 1])
    else:
        y = rng.integers(0, 3, 200) if objective == "multi:softprob" else (x[:, 0] > 0).astype(int)
        model = xgb.XGBClassifier(n_estimators=4, max_depth=3, objective=objective).fit(x, y)
    model.save_model(tmp_path / "m.ubj")
    model.save_model(tmp_path / "m.json")
    data = (tmp_path / "m.ubj").read_bytes()
    _same(read_ubjson(data), json.loads((tmp_path / "m.json").read_text()))
    # every truncation is refused (xgboost's own reader can crash the process on some)
    for cut in range(0, len(data), 7):
        with pytest.raises(UBJSONError):
            read_ubjson(data[:cut])
    with pytest.raises(UBJSONError, match="bytes after the value"):
        read_ubjson(data + b"Z")


def test_markers():
    assert read_ubjson(b"[$i#U\x03\x01\xff\x02") == [1, -1, 2]
    assert read_ubjson(b"{U\x01aSU\x02hiU\x01bHU\x031.5U\x01c[TFZN]}") == {"a": "hi", "b": 1.5,
                                                                           "c": [True, False, None]}
    assert read_ubjson(b"{#U\x01U\x01kD?\xf0\x00\x00\x00\x00\x00\x00") == {"k": 1.0}
    assert read_ubjson(b"{U\x01ai\x05N}") == {"a": 5}        # a no-op before the end of an object
    with pytest.raises(UBJSONError, match="unknown UBJSON marker"):
        read_ubjson(b"[X]")
