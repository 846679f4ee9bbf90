"""``rtlgen board build``: PLL settings, baud rates, a real iCE40 bitstream and its report, and the refusals."""

from __future__ import annotations

import json
import re
import tomllib

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx import TensorProto, helper, numpy_helper

from rtlgen.boards import BOARDS, board_named
from rtlgen.boards.pll import ecp5_pll, ice40_pll
from rtlgen.errors import RtlgenError
from rtlgen.flows.board import BAUD_TOLERANCE, MIN_DIVISOR, choose_baud

from helpers.cli import one_error_line, run_cli, write_config
from helpers.paths import ROOT


# ---------------------------------------------------------------- PLLs and baud rates

def _pll_or_nearest(search, f_in, f_out):
    """The setting, or None when the search refuses because even the nearest output is > 1 % off."""
    try:
        return search(f_in, f_out)
    except RtlgenError as exc:
        nearest = float(re.search(r"the nearest is ([\d.]+) MHz", str(exc)).group(1))
        assert abs(nearest - f_out) > 0.01 * f_out * 0.999
        return None


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=16.0, max_value=275.0))
def test_ice40_pll_settings_obey_the_data_sheet_limits(f_out):
    pll = _pll_or_nearest(ice40_pll, 12.0, f_out)
    if pll is None:
        return
    d = dict(pll.dividers)
    pfd = 12.0 / (d["DIVR"] + 1)
    vco = pfd * (d["DIVF"] + 1)
    assert 10 <= pfd <= 133 and 533 <= vco <= 1066 and 1 <= d["DIVQ"] <= 6
    assert pll.f_out == pytest.approx(vco / 2 ** d["DIVQ"])
    assert abs(pll.f_out - f_out) <= 0.01 * f_out


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=10.0, max_value=400.0))
def test_ecp5_pll_settings_obey_the_data_sheet_limits(f_out):
    pll = _pll_or_nearest(ecp5_pll, 25.0, f_out)
    if pll is None:
        return
    d = dict(pll.dividers)
    pfd = 25.0 / d["CLKI_DIV"]
    out = pfd * d["CLKFB_DIV"]
    assert 3.125 <= pfd <= 400 and 400 <= out * d["CLKOP_DIV"] <= 800
    assert pll.f_out == pytest.approx(out)
    assert abs(pll.f_out - f_out) <= 0.01 * f_out


def test_a_pll_frequency_out_of_range_is_refused_with_the_range():
    with pytest.raises(RtlgenError, match="16 to 275 MHz"):
        ice40_pll(12.0, 500.0)
    with pytest.raises(RtlgenError, match="3.125 to 400 MHz"):
        ecp5_pll(25.0, 1000.0)


@pytest.mark.parametrize("clock", [12.0, 25.0, 48.0, 50.0, 60.0, 100.0])
def test_the_chosen_baud_rate_is_made_within_tolerance(clock):
    baud, divisor = choose_baud(clock, 3_000_000)
    assert divisor >= MIN_DIVISOR
    assert abs(clock * 1e6 / divisor - baud) <= BAUD_TOLERANCE * baud


def test_the_fastest_rate_is_taken_and_a_given_rate_is_checked():
    assert choose_baud(12.0, 3_000_000) == (3_000_000, 4)
    assert choose_baud(25.0, 3_000_000) == (1_000_000, 25)
    with pytest.raises(RtlgenError, match="cannot be made from a 12 MHz clock"):
        choose_baud(12.0, 3_000_000, 5_000_000)


def test_unknown_board_is_named_with_the_choices():
    with pytest.raises(RtlgenError, match="icebreaker, ulx3s-85f, ulx3s-12f"):
        board_named("arty")


def test_every_board_uses_an_amaranth_boards_platform_with_a_uart():
    for board in BOARDS.values():
        platform = board.platform_class()()
        assert ("uart", 0) in platform.resources
        assert platform.default_clk == board.clock
        assert platform.default_clk_frequency == pytest.approx(board.clock_mhz * 1e6)


def test_every_package_folder_is_installed():
    """pyproject lists the packages (boards/ is mapped to rtlgen.boards): a new room must be listed."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"rtlgen"} | {"rtlgen." + p.parent.name for p in (ROOT / "rtlgen").glob("*/__init__.py")}
    assert found | {"rtlgen.boards"} == listed


# ---------------------------------------------------------------- real bitstreams

def small_mlp(path, sizes=(4, 3, 2), seed=5):
    """An ONNX MLP (Gemm + ReLU) of the given sizes with seeded weights."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        inits += [numpy_helper.from_array(rng.uniform(-1, 1, (b, a)).astype(np.float32), f"w{k}"),
                  numpy_helper.from_array(rng.uniform(-0.5, 0.5, b).astype(np.float32), f"b{k}")]
        out = f"z{k}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{k}", f"b{k}"], [out], name=f"dense{k}", transB=1))
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [out], [f"a{k}"], name=f"relu{k}"))
            out = f"a{k}"
        prev = out
    graph = helper.make_graph(nodes, "small_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", sizes[0]])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["n", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _tiny_build(tmp_path, model=None, **default):
    cfg = write_config(tmp_path / "tiny.yaml", {
        "input": "fixed<8,3,RND,SAT>",
        "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                    "result": "fixed<12,5,RND,SAT>", **default}})
    core = tmp_path / "core"
    res = run_cli("build", model or small_mlp(tmp_path / "small.onnx"), "-c", cfg, "-o", core, "-q")
    assert res.returncode == 0, res.stderr
    return core


@pytest.fixture(scope="module")
def tiny_core(tmp_path_factory):
    """One tiny build for the tests that only read it (refusals before any tool runs)."""
    return _tiny_build(tmp_path_factory.mktemp("tiny"))


def test_a_tiny_mlp_bitstream_for_the_icebreaker_with_its_report(tmp_path):
    core = _tiny_build(tmp_path)
    out = tmp_path / "board"
    res = run_cli("board", "build", core, "--board", "icebreaker", "--clock-mhz", "24", "--self-test", "8",
                  "-o", out, timeout=600)
    assert res.returncode == 0, res.stderr
    rep = json.loads((out / "board.json").read_text())
    assert rep["board"] == "icebreaker" and rep["clock_mhz"] == pytest.approx(24.0)
    assert rep["pll"] == {"DIVR": 0, "DIVF": 63, "DIVQ": 5, "FILTER_RANGE": 1}
    assert rep["meets_clock"] and rep["fmax_mhz"] >= 24.0
    lc = rep["utilization"]["ICESTORM_LC"]
    assert 0 < lc["used"] <= lc["available"] == 5280
    assert rep["utilization"]["ICESTORM_PLL"]["used"] == 1
    assert rep["self_test"] == 8 and rep["baud"] * rep["baud_divisor"] == pytest.approx(24e6, rel=0.02)
    bitstream = (out / rep["bitstream"]).read_bytes()
    assert len(bitstream) > 100_000      # a UP5K image is about 104 kB
    assert "Fmax" in res.stdout and "ICESTORM_LC" in res.stdout
    assert (out / "board_link.v").read_text().count("module board_link(") == 1
    # the folder is also a build folder: the core, its manifest and model, for 'board run'
    for name in ("manifest.json", "model.json", "board.md"):
        assert (out / name).is_file()


def test_a_core_with_more_multipliers_than_dsp_blocks_is_refused(tmp_path):
    core = _tiny_build(tmp_path, arithmetic="multipliers")     # 4x3 + 3x2 = 18 multipliers
    out = tmp_path / "board"
    line = one_error_line(run_cli("board", "build", core, "--board", "icebreaker", "-o", out, timeout=600))
    assert re.search(r"does not fit the icebreaker: .*\d+ DSP blocks \(the icebreaker has 8\)", line)
    assert "reuse_factor" in line and "shift_add" in line
    assert not out.exists()


@pytest.mark.long      # nextpnr works hard at a clock it cannot reach
def test_a_clock_the_core_cannot_meet_is_refused(tmp_path):
    core = _tiny_build(tmp_path)
    out = tmp_path / "board"
    line = one_error_line(run_cli("board", "build", core, "--board", "icebreaker", "--clock-mhz", "250",
                                  "-o", out, timeout=600))
    assert re.search(r"misses timing: Fmax [\d.]+ MHz < the 2[45]\d MHz core clock", line)
    assert "--clock-mhz" in line
    assert not out.exists()


def test_a_folder_rtlgen_did_not_write_is_refused(tmp_path, tiny_core):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    line = one_error_line(run_cli("board", "build", tiny_core, "--board", "icebreaker", "-o", out, timeout=600))
    assert "not an rtlgen build folder" in line
    assert (out / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize("args, words", [
    (["--board", "arty"], "invalid choice"),
    (["--board", "icebreaker", "--baud", "7"], "not a baud rate"),
    (["--board", "icebreaker", "--clock-mhz", "900"], "16 to 275 MHz"),
    (["--board", "icebreaker", "--self-test", "100000"], "0 to 4096"),
])
def test_bad_board_arguments_are_one_line(tmp_path, tiny_core, args, words):
    line = one_error_line(run_cli("board", "build", tiny_core, *args, "-o", tmp_path / "b"))
    assert words in line


def test_program_without_a_board_folder_and_without_a_programmer(tmp_path):
    line = one_error_line(run_cli("board", "program", tmp_path))
    assert "not a board folder" in line


def test_a_board_folder_without_a_bitstream_holds_the_link_model_and_cannot_be_programmed(tmp_path):
    from rtlgen.flows.board import board_build
    core = _tiny_build(tmp_path)
    out = tmp_path / "board"
    rep = board_build(core, "icebreaker", out, self_test=4, bitstream=False)
    assert rep["bitstream"] is None and rep["fmax_mhz"] is None and rep["self_test"] == 4
    assert json.loads((out / "board.json").read_text())["baud"] == rep["baud"] > 0
    assert "no bitstream" in (out / "board.md").read_text()
    assert (out / "board_link.v").read_text().count("module board_link(") == 1
    assert not list(out.glob("*.bin"))
    line = one_error_line(run_cli("board", "program", out))
    assert "simulation model only (no bitstream)" in line
