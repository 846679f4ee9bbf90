"""The board link in simulation: ``board_link.v`` of real board folders under the cocotb bench
``sims/test_board_link.py`` (UART models of cocotbext-uart), and ``rtlgen board run`` against a
simulated board behind a pseudo-terminal.

* frames (``INFO``, windowed ``INFER`` against the golden model, every error answered and the link
  working after it, an overrunning burst, the ``STATUS`` counters) and the power-up self-test, on
  Icarus Verilog and Verilator (``make test-long``): a signed-input MLP (self-test PASS) and an unsigned-input one with
  corrupted golden results (FAIL, exact count), their board folders from :func:`board_build` without
  a bitstream (the link's simulation model is the same; test_board_flow.py builds bitstreams);
* a streamed CNN core (several input words per sample) on Icarus (long: its bitstream takes a minute);
* ``rtlgen board run --port <pty>`` gives what ``rtlgen predict`` gives, and a board folder of
  another core is refused with one line (exit 2).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rtlgen.flows.board import board_build
from rtlgen.flows.board_sim import run_board_bench, simulated_board
from rtlgen.link.protocol import SELFTEST_FAIL, SELFTEST_PASS

from helpers.onnx_models import matmul_mlp
from helpers.cli import assert_one_line_error, run_cli, write_config
from helpers.sims import on_simulators

pytestmark = pytest.mark.sim

SELF_TEST = 8
CORRUPT = (1, 4)


def mlp_onnx(path, n_out: int, seed: int):
    """A 4 -> 3 -> ``n_out`` MatMul+Add MLP with a ReLU, every weight nonzero."""
    matmul_mlp(path, n_out, seed)


def conv_onnx(path):
    """Conv 1 -> 2 channels (3x3, no padding) on 1x4x4, ReLU, Flatten, Gemm 8 -> 2."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = {"w": rng.uniform(-0.8, 0.8, (2, 1, 3, 3)), "b": np.full(2, 0.125),
             "wg": rng.uniform(-0.5, 0.5, (2, 8)), "bg": np.zeros(2)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="dense", transB=1)]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


# unsigned input, as many result bytes as input bytes (3 and 3)
UNSIGNED = {"input": "ufixed<6,2,RND,SAT>",
            "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                        "result": "fixed<12,5,RND,SAT>", "reuse_factor": 1}}
# signed input; results (12 bytes) longer than inputs (4 bytes), so a burst overruns the link
SIGNED = {"input": "fixed<8,3,RND,SAT>",
          "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                      "result": "fixed<16,6,RND,SAT>", "reuse_factor": 1}}
STREAM = {"input": "fixed<6,2,RND,SAT>",
          "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<6,2,RND,SAT>",
                      "result": "fixed<10,4,RND,SAT>", "reuse_factor": 1},
          "layers": {"conv": {"io": "stream"}}}

CASES = {
    "mlp_signed": (lambda p: mlp_onnx(p, 6, 4), SIGNED),
    "mlp_unsigned_corrupt": (lambda p: mlp_onnx(p, 2, 3), UNSIGNED),
    "conv_stream": (conv_onnx, STREAM),
}
#: self-test results expected to differ, by case
MISMATCHES = {"mlp_unsigned_corrupt": len({k % SELF_TEST for k in CORRUPT})}


def make_core(case: str, core):
    """``rtlgen build`` of a case into ``core``."""
    folder = core.parent
    write_model, config = CASES[case]
    write_model(folder / "model.onnx")
    cfg = write_config(folder / "config.yaml", config)
    res = run_cli("build", folder / "model.onnx", "-c", cfg, "-o", core, "-q", timeout=300)
    assert res.returncode == 0, res.stderr


def make_board(case: str, core):
    """``rtlgen build`` then the board folder, without its bitstream (self-test results corrupted for
    ``*_corrupt`` cases)."""
    make_core(case, core)
    board = core.parent / "board"
    report = board_build(core, "icebreaker", board, self_test=SELF_TEST,
                         corrupt=CORRUPT if case.endswith("_corrupt") else (), bitstream=False)
    assert report["bitstream"] is None and (board / report["link_verilog"]["file"]).is_file()
    return board


@pytest.fixture(scope="module")
def boards(build_cache):
    return build_cache(make_board)


def check_frames(report: dict, selftest_state: int = SELFTEST_PASS, mismatches: int = 0) -> None:
    assert report["info"]["got"] == report["info"]["expected"]
    assert report["infer"]["mismatches"] == 0 and report["infer"]["samples"] > 0
    errors = report["errors"]
    assert errors["counts"]["bad_crc"] >= 1 and errors["counts"]["bad_command"] >= 1
    assert errors["counts"]["bad_length"] >= 4 and errors["counts"]["timeouts"] >= 1
    overrun = report["overrun"]
    assert overrun["results"] + overrun["overruns"] == overrun["burst"]
    if overrun["out_frame"] > overrun["in_frame"]:
        assert overrun["overruns"] > 0
    check_selftest(report, selftest_state, mismatches)


def check_selftest(report: dict, state: int, mismatches: int) -> None:
    st = report["selftest"]
    assert (st["state"], st["mismatches"]) == (state, mismatches)
    assert (st["status"]["selftest"], st["status"]["mismatches"]) == (state, mismatches)
    assert st["status"]["selftest_done"] == SELF_TEST


# the Verilator runs (a C++ build of the cocotb harness each) are in make test-long
@pytest.mark.parametrize("case,simulator", on_simulators(["mlp_signed", "mlp_unsigned_corrupt"]))
def test_frames_and_selftest(boards, case, simulator):
    """Every frame check, and the self-test: PASS, or FAIL with the count of corrupted golden results."""
    mismatches = MISMATCHES.get(case, 0)
    report = run_board_bench(boards(case), simulator, ("frames", "selftest"), samples=16, seed=3,
                             selftest_mismatches=mismatches)
    check_frames(report, SELFTEST_FAIL if mismatches else SELFTEST_PASS, mismatches)


@pytest.mark.long
def test_streamed_core_on_icarus(boards):
    board = boards("conv_stream")
    report = run_board_bench(board, "icarus", ("frames", "selftest"), samples=8)
    check_frames(report)


def test_board_run_over_a_pseudo_terminal(boards, tmp_path):
    board = boards("mlp_signed")
    x = np.random.default_rng(11).uniform(-4.5, 4.5, size=(40, 4))
    np.save(tmp_path / "x.npy", x)
    res = run_cli("predict", board, tmp_path / "x.npy", "-o", tmp_path / "golden.npy", "-q")
    assert res.returncode == 0, res.stderr
    # a board folder whose core is not the one on the board: the unsigned MLP's files in a copy
    make_core("mlp_unsigned_corrupt", tmp_path / "other_core")
    other = tmp_path / "other_board"
    shutil.copytree(board, other)
    manifest = json.loads((tmp_path / "other_core" / "manifest.json").read_text())
    for name in ("manifest.json", manifest["model"], manifest["verilog"]):
        shutil.copyfile(tmp_path / "other_core" / name, other / name)
    with simulated_board(board, "icarus", seconds=240) as port:
        res = run_cli("board", "run", board, "--port", port, tmp_path / "x.npy", "-o", tmp_path / "y.npy",
                      timeout=180)
        assert res.returncode == 0, res.stderr
        assert "ran 40 vectors" in res.stdout and ": 0 mismatches" in res.stdout, res.stdout
        assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "golden.npy"))
        res = run_cli("board", "run", other, "--port", port, tmp_path / "x.npy", "-o", tmp_path / "y2.npy", "-q",
                      timeout=180)
        line = assert_one_line_error(res)
        assert "runs another core" in line and "takes 4 bytes" in line, line
        assert not (tmp_path / "y2.npy").exists()
