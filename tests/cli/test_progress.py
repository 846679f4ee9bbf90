"""Progress on stderr (rtlgen.progress) and the up-front memory estimate (rtlgen.hw.size):
terminal and plain output, throttling, quiet mode, nothing on stdout, the stages
of ``rtlgen build``, and a layer too large for the memory refused at once with
the reuse factor that would fit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from rtlgen import progress
from rtlgen.errors import RtlgenError
from rtlgen.frontends.python_api import mlp
from rtlgen.hw import size
from rtlgen.ir.config import apply_config

from helpers.cli import run_cli
from helpers.paths import ROOT, TINY

CONFIG = {"input": "fixed<9,2,RND,SAT>",
          "default": {"weight": "fixed<8,3,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                      "result": "fixed<16,6,RND,SAT>", "reuse_factor": 1}}


class FakeStderr(io.StringIO):
    """A stderr that says whether it is a terminal."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress, "_now", fake)
    monkeypatch.setenv("COLUMNS", "200")
    yield fake
    progress.configure(quiet=False)


def _stderr(monkeypatch, tty: bool) -> FakeStderr:
    fake = FakeStderr(tty)
    monkeypatch.setattr(sys, "stderr", fake)
    return fake


# -- the reporter ---------------------------------------------------------------

def test_plain_stage_announces_and_reports_its_time(monkeypatch, clock, capsys):
    err = _stderr(monkeypatch, tty=False)
    with progress.stage("elaborating the core (1 layer, 5 multipliers)"):
        clock.advance(3.24)
    with progress.stage("converting x to Verilog"):
        clock.advance(0.2)   # quick: no "done" line
    assert err.getvalue().splitlines() == [
        "rtlgen: elaborating the core (1 layer, 5 multipliers)",
        "rtlgen: elaborating the core (1 layer, 5 multipliers): done in 3.2 s",
        "rtlgen: converting x to Verilog",
    ]
    assert "\r" not in err.getvalue()
    assert capsys.readouterr().out == ""


def test_tty_stage_is_one_line_completed_in_place(monkeypatch, clock, capsys):
    err = _stderr(monkeypatch, tty=True)
    with progress.stage("converting x to Verilog"):
        clock.advance(75)
    text = err.getvalue()
    assert text.startswith("\rrtlgen: converting x to Verilog ...")
    assert text.endswith("\rrtlgen: converting x to Verilog: done in 1 min 15 s\n")
    assert text.count("\n") == 1
    assert capsys.readouterr().out == ""


def test_stage_that_fails_ends_its_line_and_reports_no_time(monkeypatch, clock):
    err = _stderr(monkeypatch, tty=True)
    with pytest.raises(RtlgenError):
        with progress.stage("building the icarus simulation of x"):
            clock.advance(5)
            raise RtlgenError("boom")
    assert err.getvalue().endswith("...\n") and "done" not in err.getvalue()


def test_quiet_prints_nothing(monkeypatch, clock, capsys):
    for tty in (False, True):
        err = _stderr(monkeypatch, tty=tty)
        progress.configure(quiet=True)
        assert progress.is_quiet()
        with progress.stage("elaborating"):
            clock.advance(10)
        with progress.counter("simulating 10 vectors on icarus", total=10) as bar:
            for _ in range(10):
                clock.advance(1)
                bar.update()
        assert bar.done == 10
        progress.note("a note")
        assert err.getvalue() == ""
    progress.configure(quiet=False)
    assert not progress.is_quiet()
    assert capsys.readouterr() == ("", "")


def test_plain_counter_prints_a_line_every_few_seconds_at_most(monkeypatch, clock, capsys):
    err = _stderr(monkeypatch, tty=False)
    with progress.counter("simulating 1,000 vectors on icarus", total=1000, unit="vectors") as bar:
        for _ in range(1000):      # 1000 updates over 12 s
            clock.advance(0.012)
            bar.update(1)
    lines = err.getvalue().splitlines()
    assert lines[0] == "rtlgen: simulating 1,000 vectors on icarus"
    assert 3 <= len(lines) <= 2 + int(12 / progress.PLAIN_INTERVAL)
    assert all(line.startswith("rtlgen: simulating 1,000 vectors on icarus: ") for line in lines[1:])
    assert lines[-1].endswith("1,000/1,000 (100%) in 12.0 s (83 vectors/s)")
    # the lines in between say how long the rest takes at the rate so far (1000 updates in 12 s)
    done = int(lines[1].split(": ")[2].split("/")[0].replace(",", ""))
    assert lines[1].endswith(f", {(1000 - done) * 0.012:.1f} s left")
    assert capsys.readouterr().out == ""


def test_tty_counter_redraws_at_most_ten_times_a_second(monkeypatch, clock):
    err = _stderr(monkeypatch, tty=True)
    bar = progress.counter("simulating 5,000 vectors on verilator", total=5000, unit="vectors")
    for _ in range(5000):          # 5000 updates over 2 s
        clock.advance(0.0004)
        bar.update()
    bar.close()
    text = err.getvalue()
    redraws = text.count("\r")
    assert 3 <= redraws <= 2 + 2 / progress.TTY_INTERVAL + 1
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "[############]" in text and "5,000/5,000" in text
    first = text.split("\r")[1]
    assert first.startswith("rtlgen: simulating 5,000 vectors on verilator   0% [............] 0/5,000")


def test_tty_line_fits_the_terminal_and_set_never_goes_back(monkeypatch, clock):
    monkeypatch.setenv("COLUMNS", "40")
    err = _stderr(monkeypatch, tty=True)
    with progress.counter("simulating 100 vectors on icarus", total=100) as bar:
        clock.advance(1)
        bar.set(60)
        clock.advance(1)
        bar.set(30)             # an older count: ignored
        assert bar.done == 60
        bar.set(100)
    for segment in err.getvalue().replace("\n", "\r").split("\r"):
        assert len(segment.rstrip()) <= 39


# -- the memory estimate ----------------------------------------------------------

def _dense_model(n_in: int, n_out: int, reuse=1, arithmetic="multipliers"):
    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 1.0, size=(n_in, n_out)) * rng.choice([-1, 1], size=(n_in, n_out))
    cfg = {"input": CONFIG["input"], "default": {**CONFIG["default"], "reuse_factor": reuse,
                                                 "arithmetic": arithmetic}}
    return apply_config(mlp([w], [np.zeros(n_out)], name="big"), cfg)


@pytest.mark.long     # searches the adder graph of every shipped model's layers
def test_shipped_models_are_small_and_fit(monkeypatch):
    from rtlgen.frontends import load_model
    from rtlgen.ir.config import load_config
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "1")
    for config in sorted((ROOT / "models").glob("*.yaml")):
        model = next(p for p in (ROOT / "models").glob("*.onnx") if config.stem.startswith(p.stem))
        estimate = size.check_fits(apply_config(load_model(model), load_config(config)))
        assert 0 < estimate.multipliers + estimate.adders < 10_000 and estimate.bytes < 0.5 * size.GIB
        assert "GB" not in estimate.describe()


def test_refusal_names_the_layer_the_memory_and_the_reuse_factor_that_fits(monkeypatch):
    model = _dense_model(600, 600)
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "8")
    with pytest.raises(RtlgenError) as info:
        size.check_fits(model)
    message = str(info.value)
    assert "\n" not in message
    assert "layer 'dense_0': 360,000 multipliers" in message
    assert "of memory to build, but 8.0 GB is allowed by RTLGEN_MEMORY_LIMIT_GB=8" in message
    needed = int(message.split("to at least ")[1].split()[0])
    assert "raise reuse_factor of layer 'dense_0' to at least" in message
    assert f'layers: {{"dense_0": {{reuse_factor: {needed}}}}}' in message
    # the knob is exact: that reuse factor fits, the one below does not
    layer = model.layers[0]
    model.layers[0] = replace(layer, reuse_factor=needed)
    assert size.check_fits(model).bytes <= 8 * size.GIB
    model.layers[0] = replace(layer, reuse_factor=needed - 1)
    with pytest.raises(RtlgenError):
        size.check_fits(model)


def test_shift_add_refusal_names_the_adders_and_the_multipliers_that_fit(monkeypatch):
    model = _dense_model(600, 600, arithmetic="shift_add")
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "8")
    with pytest.raises(RtlgenError) as info:
        size.check_fits(model)
    message = str(info.value)
    assert "layer 'dense_0': " in message and " adders (360,000 weights as shift_add)" in message
    needed = int(message.split("multipliers at reuse_factor ")[1].split()[0])
    assert f'layers: {{"dense_0": {{arithmetic: multipliers, reuse_factor: {needed}}}}}' in message
    layer = model.layers[0]
    model.layers[0] = replace(layer, arithmetic="multipliers", reuse_factor=needed)
    assert size.check_fits(model).bytes <= 8 * size.GIB


def test_refusal_when_no_reuse_factor_can_help(monkeypatch):
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "0.3")
    with pytest.raises(RtlgenError, match=r"even the largest reuse_factor \(40000\) does not fit"):
        size.check_fits(_dense_model(200, 200))


def test_large_estimate_is_shown_and_limit_can_be_disabled(monkeypatch):
    model = _dense_model(200, 200)
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "0")
    estimate = size.check_fits(model)          # 40,000 multipliers: about 2 GB, not checked
    assert estimate.multipliers == 40_000 and 1.5 * size.GIB < estimate.bytes < 3 * size.GIB
    assert estimate.describe() == f"1 layer, 40,000 multipliers, about {estimate.bytes / size.GIB:.1f} GB of memory"
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(RtlgenError, match="RTLGEN_MEMORY_LIMIT_GB='lots' is not a number of GB"):
        size.check_fits(model)


def test_forest_refusal_names_the_trees_and_nodes(monkeypatch):
    from types import SimpleNamespace
    forest = SimpleNamespace(name="bdt", trees=[SimpleNamespace(feature=np.zeros(1001))] * 2000)
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "1")
    with pytest.raises(RtlgenError, match=r"forest 'bdt': 2,000 trees with 2,002,000 nodes .* GB of memory"):
        size.check_forest_fits(forest)
    monkeypatch.setenv(size.MEMORY_LIMIT_ENV, "1000")
    assert size.check_forest_fits(forest).bytes > 1 * size.GIB


def test_available_memory_comes_from_the_system_without_override(monkeypatch):
    monkeypatch.delenv(size.MEMORY_LIMIT_ENV, raising=False)
    room, source = size.available_memory()
    assert source == "available" and room is not None and room > 0


# -- the command line ------------------------------------------------------------

def _run_cli(*args, env=None, timeout=None) -> subprocess.CompletedProcess:
    """``rtlgen *args`` with *env* added to this process's environment."""
    return run_cli(*args, env={**os.environ, **(env or {})}, timeout=timeout)


def test_build_reports_its_stages_on_stderr_and_one_line_on_stdout(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    proc = _run_cli("build", TINY, "-c", cfg, "-o", tmp_path / "core", "--name", "tiny")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 1 and out[0].startswith("wrote ") and "multipliers" in out[0]
    err = proc.stderr.splitlines()
    assert any(line.startswith("rtlgen: elaborating the core (3 layers, ") and line.endswith((" multipliers)", " adders)"))
               for line in err), proc.stderr
    assert "rtlgen: converting tiny to Verilog" in err
    assert all(line.startswith("rtlgen: ") for line in err)

    quiet = _run_cli("-q", "build", TINY, "-c", cfg, "-o", tmp_path / "quiet", "--name", "tiny")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert quiet.stdout == proc.stdout.replace(str(tmp_path / "core"), str(tmp_path / "quiet"))


def _big_onnx(path: Path, n: int) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save
    rng = np.random.default_rng(1)
    w = (rng.uniform(0.2, 1.0, size=(n, n)) * rng.choice([-1, 1], size=(n, n))).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="huge")], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "w")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_build_refuses_a_layer_too_large_for_the_memory_at_once(tmp_path):
    model = _big_onnx(tmp_path / "big.onnx", 600)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    proc = _run_cli("build", model, "-c", cfg, "-o", tmp_path / "core", env={size.MEMORY_LIMIT_ENV: "8"},
                    timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1                      # the one error line: no elaboration was announced
    assert err[0].startswith("rtlgen: error: layer 'huge': ") and "adders (360,000 weights as shift_add)" in err[0]
    assert "build layer 'huge' with multipliers at reuse_factor" in err[0]
    assert not (tmp_path / "core").exists()
