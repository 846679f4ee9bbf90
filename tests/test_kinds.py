"""The core-kind registry and the self-describing IR layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtlgen.errors import RtlgenError
from rtlgen.frontends import load_model
from rtlgen.ir.config import apply_config
from rtlgen.ir.model import LAYER_TYPES, QModel
from rtlgen.kinds import KINDS, kind_for_build, kind_for_model_file

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
CNN_CONFIG = {
    "input": "ufixed<8,1,RND,SAT>",
    "default": {"weight": "fixed<6,0,RND,SAT>", "bias": "fixed<8,2,RND,SAT>", "result": "fixed<12,4,RND,SAT>"},
}


@pytest.mark.parametrize("name, kind", [("m.onnx", "network"), ("m.ONNX", "network"), ("m.json", "forest"),
                                        ("m.ubj", "forest"), ("m.txt", "forest"), ("m.joblib", "forest"),
                                        ("m.pkl", "forest")])
def test_model_files_go_to_their_kind(name, kind):
    assert kind_for_model_file(name).name == kind


@pytest.mark.parametrize("name", ["m", "m.yaml", "m.h5"])
def test_unknown_model_file_formats_list_every_format(name):
    with pytest.raises(RtlgenError, match=r"unsupported format.*\.onnx.*\.json.*\.txt.*\.joblib"):
        kind_for_model_file(name)


def test_build_folders_go_to_the_kind_of_their_manifest(tmp_path):
    for manifest_kind, kind in (("mlp", "network"), ("cnn", "network"), ("bdt", "forest")):
        (tmp_path / "manifest.json").write_text(json.dumps({"kind": manifest_kind}))
        assert kind_for_build(tmp_path).name == kind
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "transformer"}))
    with pytest.raises(RtlgenError, match="kind 'transformer'"):
        kind_for_build(tmp_path)


def test_every_manifest_kind_has_one_core_kind():
    names = [m for kind in KINDS for m in kind.manifest_kinds]
    assert sorted(names) == sorted(set(names)) == ["bdt", "cnn", "mlp"]


def _cnn(storage: dict) -> QModel:
    cfg = {**CNN_CONFIG, "default": {**CNN_CONFIG["default"], **storage}}
    return apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), cfg)


@pytest.mark.parametrize("storage", [{}, {"storage": "tmr", "tmr_bits": 3, "reuse_factor": "full"}])
def test_quantized_models_serialize_every_layer_type_and_read_back_the_same(storage):
    qmodel = _cnn(storage)
    data = qmodel.to_dict()
    ops = {layer["op"] for layer in data["layers"]}
    assert {"conv", "dense", "activation"} <= ops and ops <= set(LAYER_TYPES)
    again = QModel.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data
    assert [type(a) for a in again.layers] == [type(b) for b in qmodel.layers]


def test_conv_parameter_words_are_kernel_taps_and_dense_words_are_matrix_entries():
    qmodel = _cnn({"storage": "register", "reuse_factor": "full"})
    conv = next(layer for layer in qmodel.layers if layer.op == "conv")
    dense = next(layer for layer in qmodel.layers if layer.op == "dense")
    w_conv, b_conv = conv.param_codes()
    assert w_conv.size == np.asarray(conv.kernel_codes).size and b_conv.size == conv.kernel_codes.shape[0]
    windex, _ = conv.param_index()
    used = windex[windex >= 0]
    assert set(used.tolist()) <= set(range(w_conv.size))
    # the unrolled matrix entry behind each word holds that word's code
    assert np.array_equal(np.asarray(conv.weights)[windex >= 0], w_conv[used])
    w_dense, _ = dense.param_codes()
    assert w_dense.size == dense.n_in * dense.n_out
    # new codes round-trip through with_params in both layer types
    for layer in (conv, dense):
        w, b = layer.param_codes()
        changed = layer.with_params(-w, b)
        assert np.array_equal(changed.param_codes()[0], -w)
