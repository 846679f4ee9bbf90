"""The command line against bad input, existing folders, links, concurrency and signals.

Every test runs ``rtlgen`` as a separate process, as a user would, and checks
the exit status, what stderr says and which files exist afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.cli import one_error_line
from helpers.cli import run_cli as rtlgen
from helpers.paths import TINY

CONFIG = """\
input: fixed<9,2,RND,SAT>
default:
  weight: fixed<8,3,RND,SAT>
  bias: fixed<8,3,RND,SAT>
  result: fixed<16,6,RND,SAT>
"""
MARKER = ".rtlgen-build.json"


@pytest.fixture
def cfg(tmp_path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(CONFIG)
    return path


def build(cfg, out, *extra):
    return rtlgen("build", TINY, "--config", cfg, "-o", out, *extra)


def leftovers(folder: Path) -> list[str]:
    """Temporary, old or lock files that a command must not leave behind."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith((".tmp", ".rtlgen-lock")) or ".old." in p.name
                  or p.name.startswith(".rtlgen-tmp"))


# --- build folders ---------------------------------------------------------------------------

def test_folder_with_a_foreign_manifest_is_refused(tmp_path, cfg):
    ext = tmp_path / "extension"
    (ext / "src").mkdir(parents=True)
    files = {"manifest.json": '{"manifest_version": 3}', "README.md": "my extension", "src/main.js": "x"}
    for name, text in files.items():
        (ext / name).write_text(text)
    line = one_error_line(build(cfg, ext))
    assert "not an rtlgen build folder" in line and "manifest.json" in line
    assert {str(p.relative_to(ext)): p.read_text() for p in ext.rglob("*") if p.is_file()} == files
    assert leftovers(tmp_path) == []


def test_rebuild_keeps_user_files_and_invalidates_results_of_a_changed_core(tmp_path, cfg):
    out = tmp_path / "b"
    assert build(cfg, out).returncode == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["state"] == "complete" and "manifest.json" in marker["files"]
    user = {"notes.txt": "my notes", "model.onnx": TINY.read_bytes().hex(), "cfg.yaml": CONFIG}
    for name, text in user.items():
        (out / name).write_text(text)
    assert rtlgen("lint", out).returncode == 0
    assert (out / "lint" / "verilator.log").is_file()

    # the same core: every result stays valid and is kept
    res = build(cfg, out)
    assert res.returncode == 0 and "removed" not in res.stderr
    assert (out / "lint" / "verilator.log").is_file()

    # a different core: the results are removed, and said so; the user's files are untouched
    changed = tmp_path / "changed.yaml"
    changed.write_text(CONFIG.replace("16,6", "14,6"))
    res = build(changed, out)
    assert res.returncode == 0, res.stderr
    assert "removed the results of the previous core" in res.stderr and "lint" in res.stderr
    assert not (out / "lint").exists()
    for name, text in user.items():
        assert (out / name).read_text() == text
    assert json.loads((out / "manifest.json").read_text())["output"]["type"].startswith("fixed<14,6")
    assert leftovers(out) == [] and leftovers(tmp_path) == []


def test_rebuild_removes_its_own_stale_files_but_never_overwrites_a_users(tmp_path, cfg):
    out = tmp_path / "b"
    assert build(cfg, out, "--name", "first").returncode == 0
    assert build(cfg, out, "--name", "second").returncode == 0
    assert (out / "second.v").is_file() and not (out / "first.v").exists()
    (out / "third.v").write_text("// mine")
    line = one_error_line(build(cfg, out, "--name", "third"))
    assert "third.v" in line and "did not write" in line
    assert (out / "third.v").read_text() == "// mine" and (out / "second.v").is_file()


def test_symlinked_output_writes_the_target_and_keeps_the_link(tmp_path, cfg):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    for _ in range(2):
        res = build(cfg, link)
        assert res.returncode == 0, res.stderr
        assert link.is_symlink() and os.readlink(link) == str(target)
        assert (target / "manifest.json").is_file()
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "link", "real"]


def test_concurrent_builds_to_one_folder_all_finish_and_leave_nothing(tmp_path, cfg):
    out = tmp_path / "same"
    procs = [subprocess.Popen([sys.executable, "-m", "rtlgen.cli", "-q", "build", str(TINY), "--config",
                               str(cfg), "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert all(code == 0 for code, _ in results), results
    assert all("Traceback" not in err for _, err in results)
    assert leftovers(tmp_path) == [] and leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "manifest.json", "model.json", "tiny_torchscript.v"])
    assert rtlgen("predict", out, _inputs(tmp_path, out), "-o", tmp_path / "y.npy").returncode == 0


def test_build_folder_mode_follows_the_umask(tmp_path, cfg):
    out = tmp_path / "b"
    res = subprocess.run(f"umask 022 && exec {sys.executable} -m rtlgen.cli build {TINY} -c {cfg} -o {out}",
                         shell=True, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "manifest.json").stat().st_mode) == 0o644


def test_sigterm_during_build_leaves_nothing(tmp_path, cfg):
    # a layer large enough that elaboration takes several seconds
    big = tmp_path / "big.yaml"
    big.write_text(CONFIG)
    model = _big_model(tmp_path)
    out = tmp_path / "b"
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        proc = subprocess.Popen([sys.executable, "-m", "rtlgen.cli", "build", str(model), "-c", str(big),
                                 "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, err
        assert "rtlgen: interrupted" in err and "Traceback" not in err
        assert not out.exists() and leftovers(tmp_path) == []


# --- configuration files ---------------------------------------------------------------------

def test_flow_style_type_split_by_yaml_is_explained(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(CONFIG + 'layers:\n  "/0/Gemm": {reuse_factor: 4, result: fixed<12,4,RND,SAT>}\n')
    line = one_error_line(build(path, tmp_path / "b"))
    assert "line 7" in line and "fixed<12,4,RND,SAT>" in line and "quote it" in line and "block style" in line
    # the two fixes it names both work
    path.write_text(CONFIG + 'layers:\n  "/0/Gemm": {reuse_factor: 4, result: "fixed<12,4,RND,SAT>"}\n')
    assert build(path, tmp_path / "b").returncode == 0
    path.write_text(CONFIG + 'layers:\n  "/0/Gemm":\n    reuse_factor: 4\n    result: fixed<12,4,RND,SAT>\n')
    assert build(path, tmp_path / "b").returncode == 0


@pytest.mark.parametrize("text, needles", [
    (CONFIG + "4: x\nfoo: y\n", ["unknown top-level key", "4", "foo"]),        # mixed key types
    (CONFIG + "name: 123\n", ["'name'", "123"]),
    (CONFIG + "input: fixed<8,2>\n", ["'input' is given twice", "line 6"]),
    (CONFIG + "  io: stream\n", ["io: stream", "remove it"]),
    (CONFIG + "  tmr_bits: 3\n", ["tmr_bits", "storage: tmr"]),
    ("input: [fixed<8,2>\n  default: x\n", ["not valid YAML", "line 2"]),
    (CONFIG.replace("weight: fixed<8,3,RND,SAT>", "weight: fixed<x>"), ["config 'default' weight", "fixed<x>"]),
], ids=["mixed-keys", "name-int", "duplicate", "default-io-stream", "default-tmr-bits", "yaml-syntax",
        "default-type"])
def test_bad_config_gives_one_line(tmp_path, text, needles):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    line = one_error_line(build(path, tmp_path / "b"))
    for needle in needles:
        assert needle in line, line
    assert not (tmp_path / "b").exists()


def test_yaml_syntax_error_details_only_with_verbose(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("input: [fixed<8,2>\n  default: x\n")
    quiet = build(path, tmp_path / "b")
    one_error_line(quiet)
    assert len(quiet.stderr.strip().splitlines()) == 1
    verbose = rtlgen("build", TINY, "--config", path, "-o", tmp_path / "b", "-v")
    assert verbose.returncode == 2 and len(verbose.stderr.strip().splitlines()) > 1
    assert "in \"" in verbose.stderr          # the parser's own message, with its marks


def test_non_utf8_config(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(CONFIG.replace("input", "# r\xe9glage\ninput").encode("latin-1"))
    line = one_error_line(build(path, tmp_path / "b"))
    assert "not UTF-8" in line and "0xe9" in line


def test_name_that_is_not_text_is_refused_by_sweep_before_any_output(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + "name: 123\n")
    line = one_error_line(rtlgen("sweep", TINY, "-c", path, "--reuse", "1,2", "-o", tmp_path / "sw"))
    assert "'name'" in line
    assert not (tmp_path / "sw").exists()


def test_weights_that_all_quantize_to_zero_warn(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + 'layers:\n  "/2/Gemm": {weight: "fixed<4,4,RND,SAT>"}\n')
    res = build(path, tmp_path / "b")
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if line.startswith("rtlgen: warning:")]
    assert len(warning) == 1 and "'/2/Gemm'" in warning[0] and "quantizes to zero" in warning[0]
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["layers"][2]["multipliers"] == 0


# --- input and output arrays --------------------------------------------------------------------

def _inputs(tmp_path: Path, out: Path, n: int = 5) -> Path:
    count = json.loads((out / "manifest.json").read_text())["input"]["count"]
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(n, count)))
    return path


@pytest.fixture
def built(tmp_path, cfg) -> Path:
    out = tmp_path / "b"
    assert build(cfg, out).returncode == 0
    return out


def test_input_files_that_are_not_npy(tmp_path, built):
    csv = tmp_path / "x.npy"
    csv.write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n")
    line = one_error_line(rtlgen("predict", built, csv, "-o", tmp_path / "y.npy"))
    assert "text file" in line and "np.loadtxt" in line and "allow_pickle" not in line
    npz = tmp_path / "x.npz"
    np.savez(npz, train=np.zeros((2, 3)), test=np.ones((2, 3)))
    line = one_error_line(rtlgen("predict", built, npz, "-o", tmp_path / "y.npy"))
    assert ".npz archive" in line and "train" in line and "<U1" not in line
    strings = tmp_path / "s.npy"
    np.save(strings, np.array([["a", "b"]]))
    assert "text" in one_error_line(rtlgen("predict", built, strings, "-o", tmp_path / "y.npy"))
    objects = tmp_path / "o.npy"
    np.save(objects, np.array([[1, None]], dtype=object), allow_pickle=True)
    assert "Python objects" in one_error_line(rtlgen("predict", built, objects, "-o", tmp_path / "y.npy"))
    assert not (tmp_path / "y.npy").exists()


def test_predict_output_path_is_taken_literally(tmp_path, built):
    x = _inputs(tmp_path, built)
    folder = tmp_path / "results"
    folder.mkdir()
    line = one_error_line(rtlgen("predict", built, x, "-o", folder))
    assert "is a folder" in line
    assert list(folder.iterdir()) == [] and not (tmp_path / "results.npy").exists()
    res = rtlgen("predict", built, x, "-o", tmp_path / "golden")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "golden").shape[0] == 5 and not (tmp_path / "golden.npy").exists()


def test_version():
    for flag in ("--version", "-V"):
        res = rtlgen(flag)
        assert res.returncode == 0 and res.stdout.startswith("rtlgen ") and "Amaranth" in res.stdout


# --- helpers --------------------------------------------------------------------------------------

def _big_model(tmp_path: Path) -> Path:
    """An ONNX MLP whose build takes several seconds (to be interrupted)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, size=(96, 96)).astype(np.float32)
    b = rng.normal(0, 0.1, size=(96,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="/0/Gemm", transB=1)], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 96])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 96])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("argv, needle", [
    (["tmr-analysis", "m.onnx", "-c", "c.yaml", "-d", "x.npy", "--seed", "abc"], "invalid int value: 'abc'"),
    (["sim", "b", "x.npy", "-o", "y.npy", "--simulator", "modelsim"], "invalid choice: 'modelsim'"),
    (["bogus"], "invalid choice: 'bogus'"),
    ([], "required"),
], ids=["bad-int", "bad-choice", "bad-command", "no-command"])
def test_option_errors_are_one_line(argv, needle):
    res = rtlgen(*argv)
    line = one_error_line(res)
    assert needle in line and "--help" in line
    assert res.stderr.strip() == line          # no usage block
    # the program is named once; a subcommand's error names the subcommand
    assert not line.startswith("rtlgen: error: rtlgen")
    if argv and argv[0] in ("tmr-analysis", "sim"):
        assert line.startswith(f"rtlgen: error: {argv[0]}: ")


def test_i2c_clock_that_is_not_finite_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + "  storage: tmr\ni2c: {address: 0x42, clk_hz: .inf}\n")
    assert "clk_hz" in one_error_line(build(path, tmp_path / "b"))


def test_damaged_manifest_is_reported_by_every_reader(tmp_path, built):
    manifest = json.loads((built / "manifest.json").read_text())
    manifest["latency"] = "abc"
    (built / "manifest.json").write_text(json.dumps(manifest))
    x = _inputs(tmp_path, built)
    for argv in (["report", built], ["predict", built, x, "-o", tmp_path / "y.npy"],
                 ["sim", built, x, "-o", tmp_path / "y.npy"]):
        line = one_error_line(rtlgen(*argv))
        assert "damaged" in line and "'latency'" in line


def test_predict_replaces_only_new_files_or_earlier_npy_results(tmp_path, built):
    x = _inputs(tmp_path, built)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.npy"
    link.symlink_to(tmp_path / "elsewhere.npy")
    before = x.read_bytes()
    for target, needle in ((notes, "not a .npy file"), (fifo, "special file"), (link, "link"),
                           (x, "the input file"), (built / "manifest.json", "build folder"),
                           (f"{tmp_path / 'newdir'}/", "is a folder")):
        line = one_error_line(rtlgen("predict", built, x, "-o", target))
        assert needle in line, line
    assert notes.read_text() == "mine" and x.read_bytes() == before and link.is_symlink()
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "elsewhere.npy").exists()
    out = tmp_path / "y.npy"
    for _ in range(2):                       # a new file, then the earlier result replaced
        assert rtlgen("predict", built, x, "-o", out).returncode == 0
    assert np.load(out).shape[0] == 5
