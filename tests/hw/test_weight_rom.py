"""Dense and conv layers that read their constant weights from a ROM (``weight_rom: bram``).

The ROM cores are run against the golden model in Amaranth's simulator
(reuse factors 2, 3, 4 and full; signed and unsigned inputs and weights;
zero weights, a zero column and a zero matrix; a CNN with parallel conv and
average-pool layers) and on Icarus/Verilator through the cocotb bench, which
also checks the latency and II; they keep the latency of the multiplexer
(``lut``) build.  Native Yosys maps the ROM to SB_RAM40_4K (iCE40) and
DP16KD (ECP5) cells, and the ``lut`` build has none.  The configuration
rejects ``bram`` where it does not apply.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from rtlgen.errors import RtlgenError
from rtlgen.flows.lint import lint_build
from rtlgen.frontends import load_model
from rtlgen.frontends.python_api import mlp
from rtlgen.golden.network import predict_codes
from rtlgen.hw.dense import DenseLayer, DenseSchedule, WeightRom
from rtlgen.hw.network import Network, hold_ii
from rtlgen.hw.shift_add import FusedActivation
from rtlgen.ir.config import ROM_MIN_REUSE, apply_config
from rtlgen.ir.model import QModel
from rtlgen.kinds import save_build

from helpers.core import infer, run
from helpers.paths import FIXTURES
from helpers.sims import on_simulators, rtl_sim

# the latency checks elaborate networks only to read their figures
pytestmark = [pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable"),
              pytest.mark.usefixtures("collect_unelaborated")]

DENSE = {"weight": "fixed<7,3,RND,SAT>", "bias": "fixed<7,3,RND,SAT>", "result": "fixed<12,5,RND,SAT>"}


def _weights(n_in, n_out, seed, zeros=0.3):
    """Random weights of 3 fraction bits with zeros, +-1 and the extremes mixed in."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-63, 64, size=(n_in, n_out)).astype(float)
    specials = np.array([1, -1, 63, -64, 32, -32])
    mask = rng.random(w.shape) < 0.2
    w[mask] = rng.choice(specials, size=int(mask.sum()))
    w[rng.random(w.shape) < zeros] = 0
    return w / 8.0


def _mlp(sizes, seed, **kw):
    rng = np.random.default_rng(seed)
    return mlp([_weights(a, b, seed + k, **kw) for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))],
               [rng.normal(0, 1, b) for b in sizes[1:]], activations="relu", name=f"rom{seed}")


def _vectors(t, n_in, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(t.min_code, t.max_code + 1, size=(n, n_in))
    x[0], x[1], x[2] = t.max_code, t.min_code, 0
    x[3] = np.where(np.arange(n_in) % 2, t.max_code, t.min_code)
    return x


def _simulate(q, n=24, seed=0):
    """Run ``q``'s core in Amaranth's simulator (a vector every II); assert it equals the golden model."""
    net = Network(q)
    x = _vectors(q.input_type, q.n_in, n, seed)
    got = []

    async def bench(ctx):
        got.append(await infer(ctx, net, x))
    run(net, bench)
    assert np.array_equal(got[0], predict_codes(q, x))
    return net


def _with(cfg, **layer):
    return {**cfg, "default": {**cfg["default"], **layer}}


def _roms(net):
    return [hw for hw in net.layers if isinstance(hw, DenseLayer) and hw.rom is not None]


# --------------------------------------------------------------------------
# Amaranth simulator against the golden model


TYPES = {
    "signed": ("fixed<9,3,RND,SAT>", DENSE),
    "unsigned_input": ("ufixed<8,2,TRN,SAT>", {**DENSE, "result": "fixed<9,4,RND_CONV,SAT_SYM>"}),
    "unsigned_weights": ("fixed<8,3,RND,SAT>", {**DENSE, "weight": "ufixed<7,3,RND,SAT>"}),
    "wrapping_accum": ("fixed<8,3,TRN,WRAP>", {**DENSE, "accum": "fixed<10,4,TRN,WRAP>",
                                               "result": "fixed<7,2,TRN,WRAP>"}),
}


@pytest.mark.parametrize("reuse", [2, 3, 4, "full"])
@pytest.mark.parametrize("types", list(TYPES))
def test_rom_layer_matches_golden_with_lut_latency(reuse, types):
    t_in, dense = TYPES[types]
    model = _mlp([9, 7, 4], seed=len(types) + 3)
    cfg = {"input": t_in, "default": {**dense, "reuse_factor": reuse}}
    q_rom = apply_config(model, _with(cfg, weight_rom="bram"))
    q_lut = apply_config(model, _with(cfg, weight_rom="lut"))
    assert [layer.weight_rom for layer in q_rom.layers if hasattr(layer, "weight_rom")] == ["bram", "bram"]
    net = _simulate(q_rom)
    roms = _roms(net)
    assert len(roms) == 2
    for hw in roms:
        assert hw.rom.depth == hw.layer.reuse_factor and hw.figures["bram_bits"] == hw.rom.bits > 0
        indexed = sum(off is not None for off in hw.rom.index_offsets)
        extra = sum(shape.width for _, shape in hw.rom.extra.values())
        assert hw.rom.width == sum(s.width for s in hw.rom.shapes) + indexed * hw.rom.index_width + extra
        # one multiplier (full reuse): the serial form, whose ROM also says where each product goes
        assert hw.serial == (hw.multipliers == 1) and bool(extra) == hw.serial
    lut = Network(q_lut)
    assert not _roms(lut)
    # the same latency, except that a serial layer (one multiplier) does the ReLU after it in its
    # own output stage: that activation's cycle is saved
    fused = [k for k, hw in enumerate(net.layers) if isinstance(hw, FusedActivation)]
    assert fused == [k + 1 for k, hw in enumerate(net.layers[:-1]) if getattr(hw, "serial", False)]
    # and a serial layer that is not the last writes its outputs as they are done: the network
    # keeps vectors apart until the next layer has read them
    assert net.latency == lut.latency - len(fused)
    assert net.ii == max(lut.ii, hold_ii(net.layers))
    early = [hw for hw in net.layers[:-2] if getattr(hw, "serial", False)]
    assert all(not hw.staged for hw in early) and all(hw.staged for hw in net.layers[-2:] if hasattr(hw, "staged"))
    assert [hw.latency for k, hw in enumerate(net.layers) if k not in fused] == \
        [hw.latency for k, hw in enumerate(lut.layers) if k not in fused]


def test_rom_rows_hold_each_phase_in_order():
    w = np.array([[3, 0, -2], [-4, 5, 0], [0, 0, 1], [7, -8, 6]], dtype=np.int64)
    q = apply_config(mlp([w / 8.0], [np.zeros(3)], activations="linear"),   # codes = w (3 fraction bits)
                     {"input": "fixed<8,3,RND,SAT>", "default": {**DENSE, "weight": "fixed<8,5,RND,SAT>",
                                                                 "reuse_factor": 3, "weight_rom": "bram"}})
    hw = DenseLayer(q.layers[0])
    codes = [int(q.layers[0].weights[s.i, s.j]) for slots in hw.schedule.slots for s in slots]
    assert codes == [3, -4, 7, 5, -8, -2, 1, 6]          # nonzero, by output then input
    rom = hw.rom
    # [3, -4, 7] and [5, -8, -2] signed 4 bits; [1, 6] and an idle phase (0) unsigned 3 bits
    assert rom.depth == 3 and [(s.width, s.signed) for s in rom.shapes] == [(4, True), (4, True), (3, False)]
    # 3 phases for 4 inputs: no input index fields
    assert rom.offsets == [0, 4, 8] and rom.index_offsets == [None, None, None]
    assert rom.width == 11 and rom.bits == 33
    for mult, slots in enumerate(hw.schedule.slots):
        shape, off = rom.shapes[mult], rom.offsets[mult]
        for phase in range(3):
            bits = (rom.rows[phase] >> off) & ((1 << shape.width) - 1)
            value = bits - (1 << shape.width) if shape.signed and bits >> (shape.width - 1) else bits
            mine = [s for s in slots if s.phase == phase]
            assert value == (int(q.layers[0].weights[mine[0].i, mine[0].j]) if mine else 0)

    # a 2-input layer at R = 8 (4 phases per input): each multiplier reads its input's index
    w = np.array([[1, -2, 3, 0, 5], [-1, 4, 0, 6, 7]], dtype=np.int64)
    q = apply_config(mlp([w / 8.0], [np.zeros(5)], activations="linear"),
                     {"input": "fixed<8,3,RND,SAT>", "default": {**DENSE, "weight": "fixed<8,5,RND,SAT>",
                                                                 "reuse_factor": 6, "weight_rom": "bram"}})
    hw = DenseLayer(q.layers[0])
    rom = hw.rom
    assert len(hw.schedule.slots) == 2 and rom.index_width == 1
    assert rom.index_offsets[0] is not None        # 6 phases > 2 x 2 inputs
    for mult, slots in enumerate(hw.schedule.slots):
        if rom.index_offsets[mult] is None:
            continue
        for s in slots:
            assert (rom.rows[s.phase] >> rom.index_offsets[mult]) & 1 == s.i


@pytest.mark.parametrize("reuse", [2, 5, "full"])
def test_zero_weights_zero_column_and_zero_matrix(reuse):
    w = _weights(8, 6, seed=11, zeros=0.6)
    w[:, 2] = 0                           # an output fed by its bias only
    w[3, :] = 0                           # an input nobody reads
    model = mlp([w, np.zeros((6, 3))], [np.linspace(-1, 1, 6), np.array([0.5, -0.25, 1.0])],
                activations="relu")
    cfg = {"input": "fixed<8,3,RND,SAT>", "default": {**DENSE, "reuse_factor": reuse},
           "layers": {"dense_1": {"reuse_factor": 1, "weight_rom": "auto"}}}
    q = apply_config(model, _with(cfg, weight_rom="bram"))
    net = _simulate(q)
    hw0 = net.layers[0]
    assert hw0.rom is not None and hw0.rom.depth == hw0.layer.reuse_factor
    # the all-zero layer has no multiplier, so no ROM either
    hw1 = [hw for hw in net.layers if isinstance(hw, DenseLayer)][1]
    assert hw1.multipliers == 0 and hw1.rom is None and hw1.figures == {"bram_bits": 0}


def test_conv_and_average_pool_read_a_rom():
    q = apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), _CNN)
    convs = [layer for layer in q.layers if getattr(layer, "op", None) in ("conv", "avgpool", "dense")]
    assert {layer.op for layer in convs} == {"conv", "avgpool", "dense"}
    assert all(layer.weight_rom == "bram" for layer in convs)
    net = _simulate(q, n=8)
    assert {hw.layer.op for hw in _roms(net)} == {"conv", "avgpool", "dense"}


def test_auto_takes_bram_from_the_threshold_reuse():
    model = _mlp([8, ROM_MIN_REUSE + 8, 3], seed=5, zeros=0.0)
    cfg = {"input": "fixed<8,3,RND,SAT>", "default": DENSE,
           "layers": {"dense_0": {"reuse_factor": ROM_MIN_REUSE}, "dense_1": {"reuse_factor": ROM_MIN_REUSE - 1}}}
    q = apply_config(model, cfg)
    assert [layer.weight_rom for layer in q.layers if hasattr(layer, "weight_rom")] == ["bram", "lut"]
    q = apply_config(model, _with(cfg, weight_rom="lut"))
    assert all(getattr(layer, "weight_rom", "lut") == "lut" for layer in q.layers)
    # a stored layer, a shift_add layer and a reuse factor of 1 stay with logic under auto
    q = apply_config(model, {**cfg, "default": {**DENSE, "storage": "register"}})
    assert all(getattr(layer, "weight_rom", "lut") == "lut" for layer in q.layers)
    q = apply_config(model, {**cfg, "layers": {}})
    assert all(getattr(layer, "weight_rom", "lut") == "lut" for layer in q.layers)


def test_model_json_and_manifest_carry_the_rom(tmp_path):
    model = _mlp([6, 5, 3], seed=9)
    q = apply_config(model, {"input": "fixed<8,3,RND,SAT>", "default": {**DENSE, "reuse_factor": 4},
                             "layers": {"dense_0": {"weight_rom": "bram"}}})
    d = q.to_dict()
    assert d["layers"][0]["weight_rom"] == "bram" and "weight_rom" not in d["layers"][2]
    back = QModel.from_dict(json.loads(json.dumps(d)))
    assert [getattr(layer, "weight_rom", None) for layer in back.layers] == ["bram", None, "lut"]
    manifest = save_build(q, tmp_path / "core")
    dense = [e for e in manifest["layers"] if e.get("op") == "dense"]
    assert [e["weight_rom"] for e in dense] == ["bram", "lut"]
    layer = q.layers[0]
    rom_bits = WeightRom(DenseSchedule(layer.structure(), layer.reuse_factor), layer.weights).bits
    assert [e["bram_bits"] for e in dense] == [rom_bits, 0] and rom_bits > 0


# --------------------------------------------------------------------------
# configuration errors


def _config_error(cfg, model=None):
    with pytest.raises(RtlgenError) as err:
        apply_config(model or _mlp([6, 5, 3], seed=1), cfg)
    return str(err.value)


@pytest.mark.parametrize("layer,words", [
    ({"storage": "register", "reuse_factor": 4}, ["dense_0", "storage 'register'", "weight_rom: lut",
                                                  "storage: constant"]),
    ({"storage": "tmr", "reuse_factor": 4}, ["dense_0", "storage 'tmr'"]),
    ({"arithmetic": "shift_add"}, ["dense_0", "arithmetic 'shift_add'", "arithmetic: multipliers"]),
    ({"reuse_factor": 1}, ["dense_0", "reuse_factor 1", "raise reuse_factor"]),
])
def test_bram_where_it_does_not_apply(layer, words):
    msg = _config_error({"input": "fixed<8,3,RND,SAT>", "default": DENSE,
                         "layers": {"dense_0": {**layer, "weight_rom": "bram"}}})
    assert "weight_rom: bram does not apply" in msg
    for word in words:
        assert word in msg


def test_bram_on_a_streamed_conv_is_refused():
    cfg = {**_CNN, "default": {**_CNN["default"], "weight_rom": "lut", "io": "stream"},
           "layers": {"/0/Conv": {"weight_rom": "bram"}}}
    msg = _config_error(cfg, load_model(FIXTURES / "cnn2d_torchscript.onnx"))
    assert "'/0/Conv'" in msg and "io: parallel" in msg


@pytest.mark.parametrize("value", ["BRAM", "rom", 1, True, None])
def test_bad_weight_rom_value(value):
    msg = _config_error({"input": "fixed<8,3,RND,SAT>", "default": {**DENSE, "reuse_factor": 2},
                         "layers": {"dense_0": {"weight_rom": value}}})
    assert "dense_0" in msg and "weight_rom must be one of auto, lut, bram" in msg


def test_weight_rom_is_not_a_key_of_other_layers():
    msg = _config_error({"input": "fixed<8,3,RND,SAT>", "default": DENSE,
                         "layers": {"relu_0": {"weight_rom": "bram"}}})
    assert "relu_0" in msg and "weight_rom" in msg


def test_hardware_refuses_a_stored_rom_layer():
    q = apply_config(_mlp([6, 5, 3], seed=1), {"input": "fixed<8,3,RND,SAT>",
                                                "default": {**DENSE, "reuse_factor": 2}})
    bad = replace(q.layers[0], storage="register", weight_rom="bram")
    with pytest.raises(ValueError, match="constant weights"):
        DenseLayer(bad, words=object())


# --------------------------------------------------------------------------
# RTL (cocotb bench on Icarus / Verilator) against the golden model

_CNN = {"input": "fixed<6,2,RND,SAT>",
        "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,4,RND,SAT>",
                    "result": "fixed<9,4,RND_CONV,SAT>", "reuse_factor": 4, "weight_rom": "bram"}}

RTL_CASES = {
    "mlp_r4": lambda: apply_config(_mlp([10, 12, 6, 3], seed=21), {
        "input": "fixed<9,3,RND,SAT>", "default": {**DENSE, "reuse_factor": 4, "weight_rom": "bram"},
        "layers": {"relu_0": {"result": "ufixed<8,3,RND,SAT>"}}}),
    "mlp_unsigned_full": lambda: apply_config(_mlp([7, 5, 4], seed=22, zeros=0.5), {
        "input": "ufixed<8,2,TRN,SAT>",
        "default": {**DENSE, "result": "fixed<7,2,RND_CONV,WRAP>", "reuse_factor": "full",
                    "weight_rom": "bram"}}),
    "cnn_parallel_r4": lambda: apply_config(load_model(FIXTURES / "cnn2d_torchscript.onnx"), _CNN),
}


@pytest.fixture(scope="module")
def built(build_cache):
    def make(case, outdir):
        q = RTL_CASES[case]()
        manifest = save_build(q, outdir)
        assert lint_build(outdir) == []      # Verilator -Wall, only the listed waivers
        return q, outdir, manifest
    return build_cache(make)


@pytest.mark.sim
@pytest.mark.parametrize("case,simulator", on_simulators(list(RTL_CASES), verilator=("mlp_r4",),
                                                         long=("cnn_parallel_r4",)))
def test_rom_rtl_equals_golden(built, case, simulator, tmp_path):
    q, outdir, manifest = built(case)
    trained = [e for e in manifest["layers"] if e.get("op") in ("dense", "conv", "avgpool")]
    assert trained and all(e["weight_rom"] == "bram" and e["bram_bits"] > 0 for e in trained)
    assert manifest["latency"] == Network(q).latency
    x = _vectors(q.input_type, q.n_in, 40, seed=len(case))
    expected = predict_codes(q, x)
    got = rtl_sim(outdir, x, simulator=simulator, expected=expected, work_dir=tmp_path / "sim")
    assert np.array_equal(got, expected)


# --------------------------------------------------------------------------
# synthesis: the ROM is block RAM


@pytest.fixture(scope="module")
def synth_cores(tmp_path_factory):
    model = _mlp([8, 6], seed=31, zeros=0.0)
    cfg = {"input": "fixed<8,3,RND,SAT>", "default": {**DENSE, "reuse_factor": 16}}
    out = {}
    for rom in ("lut", "bram"):
        out[rom] = tmp_path_factory.mktemp(rom) / "core"
        save_build(apply_config(model, _with(cfg, weight_rom=rom)), out[rom])
    return out


@pytest.mark.skipif(shutil.which("yosys") is None, reason="needs a native yosys on PATH")
@pytest.mark.parametrize("target,cell", [("ice40", "SB_RAM40_4K"), ("ecp5", "DP16KD")])
def test_rom_maps_to_block_ram(synth_cores, target, cell):
    from rtlgen.flows.synth import synth
    bram = synth(synth_cores["bram"], target, tools="native")
    lut = synth(synth_cores["lut"], target, tools="native")
    assert bram["cells_by_type"].get(cell, 0) >= 1 and bram["resources"]["bram"] >= 1
    assert lut["cells_by_type"].get(cell, 0) == 0 and lut["resources"]["bram"] == 0
    assert bram["resources"]["luts"] < lut["resources"]["luts"]
