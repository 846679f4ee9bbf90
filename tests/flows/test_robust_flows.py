"""The flows under interruption and with missing tools (issue 11), through the command line.

* ``rtlgen sim`` stopped by Ctrl-C or SIGTERM removes its temporary work
  dir and leaves no simulator process behind;
* ``rtlgen sweep`` stopped likewise writes ``sweep.json``/``sweep.md``
  with status ``interrupted`` and the rows finished so far, and stops its
  workers and their tools;
* a reuse factor that no layer can use is refused before any work; one
  above only some layers' limits is said and recorded;
* missing ``perl``/``make``/``c++`` are named with the package to install;
* I2C clock budget messages use the right units;
* sim and lint failures are one line; the log tail is shown only with ``-v``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.onnx_models import matmul_mlp
from helpers.cli import assert_one_line_error, cli_argv, write_config
from helpers.cli import run_cli as run_rtlgen
from helpers.paths import JET, JET_CFG, TINY

CONFIG = {
    "input": "fixed<9,2,RND,SAT>",
    "default": {"weight": "fixed<8,3,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                "result": "fixed<16,6,RND,SAT>", "reuse_factor": 1},
}
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def run_cli(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """``rtlgen *args``, given two minutes unless said otherwise."""
    return run_rtlgen(*args, env=env, timeout=timeout)


class Running:
    """A CLI process whose stdout and stderr are read in the background."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(cli_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        self.threads = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, sink):
        for line in stream:
            sink.append(line)

    @property
    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_for(self, predicate, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                self.finish()
                pytest.fail(f"the command ended (exit {self.proc.returncode}) before {what}:\n{self.text}")
            time.sleep(0.05)
        self.proc.kill()
        self.finish()
        pytest.fail(f"timed out waiting for {what}:\n{self.text}")

    def finish(self, timeout: float = 60.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        for t in self.threads:
            t.join(timeout=5)
        return rc


def processes_mentioning(needle: str) -> list[str]:
    """Live processes whose command line or working folder contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if needle in cmdline or cwd.startswith(needle):
            found.append(f"{entry.name}: {cmdline.strip()} (cwd {cwd})")
    return found


def wait_gone(needle: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = processes_mentioning(needle)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def path_without(tmp_path: Path, *names: str) -> str:
    """A PATH with everything of /usr/bin and /bin except ``names``, and the venv's bin."""
    farm = tmp_path / ("bin-without-" + "-".join(n.replace("+", "p") for n in names))
    farm.mkdir()
    for folder in ("/usr/bin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            link = farm / entry.name
            if entry.name in names or (entry.name.startswith("perl5") and "perl" in names) or link.exists():
                continue
            link.symlink_to(entry.path)
    return os.pathsep.join([str(farm), str(Path(sys.executable).parent)])


@pytest.fixture(scope="module")
def tiny_core(tmp_path_factory) -> tuple[Path, Path]:
    """A small build and 30000 input vectors (tens of seconds of Icarus, far more than the tests wait)."""
    base = tmp_path_factory.mktemp("tiny")
    cfg = write_config(base / "cfg.yaml", CONFIG)
    res = run_cli("build", TINY, "--config", cfg, "-o", base / "core", "--name", "tiny")
    assert res.returncode == 0, res.stderr
    np.save(base / "in.npy", np.random.default_rng(1).normal(0, 2, size=(30000, 6)))
    return base / "core", base / "in.npy"


# ---------------------------------------------------------------------------
# 1. sim: Ctrl-C / SIGTERM remove the temporary work dir and stop the simulator


@pytest.mark.sim
@pytest.mark.parametrize("sig,jobs", [(signal.SIGINT, "2"), (signal.SIGTERM, "1")],
                         ids=["SIGINT-split", "SIGTERM-one-process"])
def test_interrupted_sim_cleans_up(tmp_path, tiny_core, sig, jobs):
    """30,000 vectors on cocotb: split over a local Dask cluster at --jobs 2, one simulator at 1."""
    core, vectors = tiny_core
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    run = Running(["sim", core, vectors, "-o", tmp_path / "out.npy", "--engine", "cocotb", "--jobs", jobs],
                  env=dict(os.environ, TMPDIR=str(tmpdir)))
    # the simulation has started: vvp runs in the work dir
    run.wait_for(lambda: list(tmpdir.glob("rtlgen-sim-*/sim_icarus.log")), "the simulation to start")
    run.wait_for(lambda: [p for p in processes_mentioning(str(tmpdir)) if "vvp" in p], "vvp to run")
    run.proc.send_signal(sig)
    rc = run.finish()
    assert rc == EXIT[sig], run.text
    assert "rtlgen: interrupted" in "".join(run.err)
    assert "Traceback" not in run.text
    assert wait_gone(str(tmpdir)) == []
    assert list(tmpdir.iterdir()) == []
    assert not (tmp_path / "out.npy").exists()


# ---------------------------------------------------------------------------
# 2 and 5. sweep: interrupted sweeps are recorded; out-of-range reuse factors


def two_layer_model(path: Path) -> Path:
    """4 -> 3 -> 2 MatMul+Add layers, every weight nonzero: reuse limits 12 and 6."""
    return matmul_mlp(path, n_out=2, seed=3, name="two")


SMALL = {"input": "fixed<5,2,RND,SAT>",
         "default": {"weight": "fixed<4,1,RND,SAT>", "bias": "fixed<4,1,RND,SAT>",
                     "result": "fixed<6,3,RND,SAT>", "reuse_factor": 1}}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_sweep_records_finished_rows(tmp_path, sig):
    model = two_layer_model(tmp_path / "two.onnx")
    cfg = write_config(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "sweep"
    # one worker: R=8 first (fc2 has 6 weights, so it gets 6), then R=1 and R=2
    run = Running(["sweep", model, "-c", cfg, "--reuse", "8,1,2", "-o", out, "-j", "1"])
    if sig == signal.SIGINT:
        run.wait_for(lambda: "R=8 done" in run.text, "the first variant to finish")
    # a worker is synthesizing (yosys runs in a temporary folder of the sweep folder)
    run.wait_for(lambda: [p for p in processes_mentioning(str(out / "r")) if "yosys" in p],
                 "yosys to run", timeout=90)
    run.proc.send_signal(sig)
    rc = run.finish()
    assert rc == EXIT[sig], run.text
    assert "rtlgen: interrupted" in "".join(run.err)
    assert "Traceback" not in run.text
    assert "R=8 is above the limit of 1 of 2 dense layers" in run.text and "fc2 R=6" in run.text

    summary = json.loads((out / "sweep.json").read_text())
    assert summary["status"] == "interrupted"
    md = (out / "sweep.md").read_text()
    assert f"Interrupted: {len(summary['rows'])} of 3 variants finished" in md
    if sig == signal.SIGINT:
        assert [row["reuse"] for row in summary["rows"]] == [8]
        row = summary["rows"][0]
        assert row["reuse_per_layer"] == {"fc1": 8, "fc2": 6}
        assert row["clamped"] == {"fc2": 6}
        assert row["resources"]["cells"] > 0 and not row.get("error")
        assert "| 8 |" in md and "at their limit: fc2 R=6" in md
    # the workers (forked: same command line) and their yosys are gone, and so are temporary folders
    assert wait_gone(str(out)) == []
    assert sorted(p.name for p in out.rglob("*.tmp")) == []
    assert not list(out.rglob("*.failed"))


def test_sweep_refuses_reuse_no_layer_can_use(tmp_path):
    out = tmp_path / "sweep"
    res = run_cli("sweep", JET, "-c", JET_CFG, "--reuse", "2,5000", "-o", out)
    line = assert_one_line_error(res)
    assert "--reuse 5000" in line and "above 1434" in line and "use 1 to 1434 or 'full'" in line
    assert not out.exists()                 # refused before any variant was built
    assert "elaborating" not in res.stderr


def test_sweep_checks_tools_before_workers_start(tmp_path):
    model = two_layer_model(tmp_path / "two.onnx")
    cfg = write_config(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "sweep"
    env = dict(os.environ, PATH=path_without(tmp_path, "yosys"))
    res = run_cli("sweep", model, "-c", cfg, "--reuse", "1,2", "-o", out, "--tools", "native", env=env)
    line = assert_one_line_error(res)
    assert "yosys is not on PATH" in line
    assert "worker failed" not in res.stderr + res.stdout
    assert not out.exists()


# ---------------------------------------------------------------------------
# 3. I2C: the clock budget message in microseconds


def test_i2c_slow_clock_message_units(tmp_path):
    cfg = dict(CONFIG, layers={"/0/Gemm": {"storage": "register"}}, i2c={"address": 0x42, "clk_hz": 1e5})
    res = run_cli("build", TINY, "--config", write_config(tmp_path / "cfg.yaml", cfg), "-o", tmp_path / "core")
    line = assert_one_line_error(res)
    # 8 cycles of a 100 kHz clock are 80 us, not 0.08
    assert "0.1 MHz clock is too slow" in line and "8 cycles (80.00 us)" in line
    assert "3.45 us allowed" in line
    assert not (tmp_path / "core").exists()


# ---------------------------------------------------------------------------
# 4. missing perl / make / c++ for Verilator


@pytest.mark.sim
def test_lint_and_verilator_sim_without_perl(tmp_path, tiny_core):
    core, _ = tiny_core
    env = dict(os.environ, PATH=path_without(tmp_path, "perl"))
    np.save(tmp_path / "in.npy", np.zeros((3, 6)))
    for args in (["lint", core], ["sim", core, tmp_path / "in.npy", "-o", tmp_path / "o.npy",
                                  "--simulator", "verilator"]):
        res = run_cli(*args, env=env)
        line = assert_one_line_error(res)
        assert "Verilator needs perl on PATH" in line, line
        assert "`apt-get install perl`" in line
        assert "reinstall" not in line and "pip install" not in line


@pytest.mark.sim
def test_verilator_compile_tools_named_and_lint_needs_none(tmp_path, tiny_core):
    core, _ = tiny_core
    env = dict(os.environ, PATH=path_without(tmp_path, "make", "c++"))
    np.save(tmp_path / "in.npy", np.zeros((3, 6)))
    res = run_cli("sim", core, tmp_path / "in.npy", "-o", tmp_path / "o.npy", "--simulator", "verilator",
                  env=env)
    line = assert_one_line_error(res)
    assert "Verilator needs make and c++ on PATH to compile simulations" in line
    assert "`apt-get install make g++`" in line
    # lint does not compile: it needs neither
    res = run_cli("lint", core, env=env)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------------
# 6. sim and lint failures: one line; the log tail only with -v


@pytest.mark.sim
def test_sim_and_lint_failures_are_one_line(tmp_path, tiny_core):
    core, _ = tiny_core
    broken = tmp_path / "broken"
    shutil.copytree(core, broken)
    with open(broken / "tiny.v", "a") as f:
        f.write("garbage here;\n")
    np.save(tmp_path / "in.npy", np.zeros((3, 6)))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    sim = ["sim", broken, tmp_path / "in.npy", "-o", tmp_path / "o.npy"]

    line = assert_one_line_error(run_cli(*sim, env=env))
    assert "icarus failed to build" in line and "--- last lines" not in line
    (kept,) = tmpdir.iterdir()                  # a failure keeps the work dir, named in the message
    assert f"work dir {kept}" in line and f"log: {kept / 'build_icarus.log'}" in line
    res = run_cli("-v", *sim, env=env)
    assert res.returncode == 2
    assert f"--- last lines of {tmpdir}" in res.stderr and "syntax error" in res.stderr

    line = assert_one_line_error(run_cli("lint", broken))
    assert "not waived, first: %Error" in line and "garbage" in line
    assert f"full log: {broken / 'lint' / 'verilator.log'}" in line
    res = run_cli("-v", "lint", broken)
    assert res.returncode == 2 and "\n%Error" in res.stderr
