"""``rtlgen regress``: seeded random cases, a small campaign on a Dask LocalCluster (and on a
scheduler given by address), resuming, and the reproducer of a failing case."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers.cli import assert_one_line_error, run_cli
from rtlgen.flows import regress
from rtlgen.kinds.network import NetworkKind


@pytest.mark.filterwarnings("ignore::rtlgen.errors.RtlgenWarning")
def test_cases_are_seeded_and_valid():
    assert regress.random_case(3, 5) == regress.random_case(3, 5)
    cases = [regress.random_case(0, k) for k in range(60)]
    assert len({json.dumps(c, sort_keys=True) for c in cases}) == 60
    assert {c["kind"] for c in cases} == {"mlp", "cnn", "forest"}
    # the generator covers what the campaign promises: stored weights, streaming, residuals, every mode
    configs = json.dumps([c["config"] for c in cases])
    for needle in ('"storage": "tmr"', '"io": "stream"', '"arithmetic": "shift_add"', "WRAP", "SAT_SYM", "RND_CONV",
                   '"reuse_factor": "full"', "ufixed"):
        assert needle in configs, needle
    assert any(layer["op"] == "add" for c in cases if c["kind"] == "mlp" for layer in c["layers"])
    refused = 0
    for c in cases:
        try:
            regress.quantized(c)
        except regress.RtlgenError:
            refused += 1
    assert refused <= 12


def test_edge_codes_start_with_the_extremes():
    from rtlgen.numerics.fixed import parse_type
    t = parse_type("ufixed<4,2>")
    x = regress.edge_codes(t, 3, 5, np.random.default_rng(0))
    assert x.shape == (12, 3) and x[0].tolist() == [0, 0, 0] and x[1].tolist() == [15, 15, 15]
    assert x[3].tolist() == [0, 15, 0] and x.min() >= 0 and x.max() <= 15


@pytest.mark.sim
def test_a_small_campaign_on_a_local_dask_cluster_resumes(tmp_path):
    out = tmp_path / "campaign"
    res = run_cli("regress", "-o", out, "--models", "6", "--vectors", "120", "--simulator", "icarus", "--jobs", "2")
    assert res.returncode == 0, res.stderr + res.stdout
    lines = (out / "results.jsonl").read_text().splitlines()
    results = [json.loads(line) for line in lines]
    assert sorted(r["index"] for r in results) == list(range(6))
    assert all(r["status"] in ("pass", "refused") for r in results)
    passed = [r for r in results if r["status"] == "pass"]
    assert len(passed) >= 4 and all(r["vectors"] == 120 and r["mismatches"] == 0 for r in passed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["vectors"] == 120 * len(passed)
    assert "| kind | pass | fail | error | refused | vectors |" in res.stdout
    # again with one more case: only that one runs
    res = run_cli("regress", "-o", out, "--models", "7", "--vectors", "120", "--simulator", "icarus", "--jobs", "1")
    assert res.returncode == 0, res.stderr
    again = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(again) == 7 and again[6]["index"] == 6


@pytest.mark.sim
def test_a_campaign_on_a_scheduler_given_by_address(tmp_path):
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        res = run_cli("regress", "-o", tmp_path / "c", "--models", "2", "--start", "20", "--vectors", "40",
                      "--simulator", "icarus", "--scheduler", cluster.scheduler_address)
    assert res.returncode == 0, res.stderr
    assert sorted(json.loads(line)["index"] for line in (tmp_path / "c" / "results.jsonl").read_text().splitlines()) \
        == [20, 21]


def test_an_unreachable_scheduler_and_a_foreign_folder_are_one_line_errors(tmp_path):
    res = run_cli("regress", "-o", tmp_path / "c", "--models", "1", "--scheduler", "tcp://127.0.0.1:9",
                  env={**os.environ, "DASK_RTLGEN__SCHEDULER_TIMEOUT": "2s"})
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in assert_one_line_error(res)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    res = run_cli("regress", "-o", tmp_path / "mine", "--models", "1")
    assert "is not a regress folder" in assert_one_line_error(res)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.sim
def test_a_failing_case_leaves_a_reproducer(tmp_path, monkeypatch):
    """A golden model that disagrees with the RTL (here: one output code off) is reported with the
    first differing vector, and the case folder replays it."""
    real = NetworkKind.predict_codes

    def off_by_one(self, qmodel, codes):
        out = np.array(real(self, qmodel, codes))
        out[3, 0] += 1
        return out

    monkeypatch.setattr(NetworkKind, "predict_codes", off_by_one)
    case = next(regress.random_case(0, k) for k in range(40) if regress.random_case(0, k)["kind"] == "mlp")
    result = regress.run_case(case, 60, "icarus", str(tmp_path))
    assert result["status"] == "fail" and result["mismatches"] == 1 and result["message"].startswith("vector 3:")
    folder = tmp_path / "failures" / f"case_{case['index']}"
    for name in ("case.json", "config.json", "result.json", "inputs.npy", "expected.npy", "got.npy", "replay.sh",
                 "build/manifest.json", "build/model.json"):
        assert (folder / name).is_file(), name
    monkeypatch.undo()
    res = run_cli("sim", folder / "build", folder / "inputs.npy", "--raw", "-o", tmp_path / "rtl.npy")
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "rtl.npy"), np.load(folder / "got.npy"))
    assert "rtlgen sim build inputs.npy --raw" in (folder / "replay.sh").read_text()
