"""The core-kind registry and the self-describing IR layers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtlgen.emit.regmap import regmap_for
from rtlgen.errors import RtlgenError
from rtlgen.frontends import load_model, mlp
from rtlgen.ir.config import apply_config
from rtlgen.ir.forest import Forest, QForest, Tree
from rtlgen.ir.forest_config import quantize_forest
from rtlgen.ir.model import LAYER_TYPES, QModel
from rtlgen.kinds import KINDS, build_core, kind_for_build, kind_for_model_file, kind_of, load_build, save_build

from helpers.paths import FIXTURES, ROOT

REPO = ROOT
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


# ---------------------------------------------------------------------------
# one build writer, quantized models to their kind, the parameter protocol
# ---------------------------------------------------------------------------

SKELETON = ["format", "kind", "top", "verilog", "model", "ports", "input", "output", "latency", "ii",
            "multipliers"]


def _tiny_network(storage: str = "constant") -> QModel:
    rng = np.random.default_rng(3)
    model = mlp([rng.normal(size=(3, 4)), rng.normal(size=(4, 2))], name="tiny net")
    return apply_config(model, {"input": "fixed<8,3,RND,SAT>",
                                "default": {"weight": "fixed<6,1,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                                            "result": "fixed<12,5,RND,SAT>", "storage": storage}})


def _tiny_forest(storage: str = "constant") -> QForest:
    tree = Tree(np.array([0, 1, -1, -1, -1]), np.array([0.5, -0.25, 0.0, 0.0, 0.0]), np.array([1, 3, -1, -1, -1]),
                np.array([2, 4, -1, -1, -1]), np.array([0.0, 0.0, 0.75, -0.5, 0.25]), 0)
    forest = Forest("tiny forest", 2, 1, [tree], [0.125], "le_f64")
    return quantize_forest(forest, {"input": "fixed<7,3,RND,SAT>", "score": "fixed<9,3,RND,SAT>",
                                    "storage": storage})


def test_quantized_models_go_to_their_kind():
    assert kind_of(_tiny_network()).name == "network"
    assert kind_of(_tiny_forest()).name == "forest"
    with pytest.raises(TypeError):
        kind_of(object())


@pytest.mark.parametrize("make, kind, middle", [(_tiny_network, "mlp", ["layers", "io"]),
                                                (_tiny_forest, "bdt", ["forest", "layers"])])
@pytest.mark.parametrize("storage", ["constant", "register"])
def test_every_kind_writes_the_common_manifest_skeleton(make, kind, middle, storage):
    qmodel = make(storage)
    _, manifest = build_core(qmodel, "tiny_top")
    bus = ["config_bus"] if storage != "constant" else []
    assert list(manifest) == SKELETON + middle + bus
    assert manifest["kind"] == kind and manifest["top"] == "tiny_top" and manifest["verilog"] == "tiny_top.v"
    for side, count, t in (("input", qmodel.n_in, qmodel.input_type), ("output", qmodel.n_out, qmodel.output_type)):
        assert list(manifest[side])[:4] == ["type", "count", "width", "signed"]
        assert list(manifest[side])[-1] == "layout"
        assert manifest[side]["count"] == count and manifest[side]["width"] == t.width
    assert manifest["ports"]["in_data"] == qmodel.input_type.width * qmodel.n_in
    assert ("cfg_addr" in manifest["ports"]) == bool(bus)


def test_a_build_folder_reads_back_through_its_kind(tmp_path):
    for qmodel in (_tiny_network("register"), _tiny_forest("tmr")):
        manifest = save_build(qmodel, tmp_path / kind_of(qmodel).name)
        again_manifest, again = load_build(tmp_path / kind_of(qmodel).name)
        assert again_manifest == manifest and again.to_dict() == qmodel.to_dict()
        assert (tmp_path / kind_of(qmodel).name / "regmap.json").is_file()


def test_the_register_map_takes_shapes_and_word_places_from_the_model():
    net, forest = _tiny_network("register"), _tiny_forest("register")
    layers = regmap_for(net)["layers"]
    assert [layer["matrix_shape"] for layer in layers] == [[3, 4], [4, 2]]
    assert [ps.shapes for ps in net.param_sets()] == [{"matrix_shape": [3, 4]}, {"matrix_shape": [4, 2]}]
    words = regmap_for(forest)["words"]
    thresholds = [w for w in words if w["kind"] == "threshold"]
    assert [(w["tree"], w["node"], w["feature"]) for w in thresholds] == [(0, 0, 0), (0, 1, 1)]
    assert [w["class"] for w in words if w["kind"] == "base"] == [0]
    for model in (net, forest):
        for ps in model.param_sets():
            assert [len(p) for p in model.word_places(ps)] == [len(g.codes) for g in ps.groups]
