"""``faults`` and ``sweep`` as Dask jobs: a fault campaign cut into benches adds up to the figures of
one bench, and a sweep runs on a scheduler given by address (``regress`` and split ``sim`` runs are
tested in test_regress.py and test_batch_sim.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.bus import check_bus_bench
from helpers.cli import run_cli, write_config
from helpers.onnx_models import matmul_mlp
from rtlgen.emit.regmap import ConfigDriver
from rtlgen.flows.faults import make_plan, merge_results, run_campaign, run_config_bench, split_plan
from rtlgen.frontends.python_api import mlp
from rtlgen.ir.config import apply_config
from rtlgen.kinds import save_build


def _tmr_mlp():
    rng = np.random.default_rng(3)
    model = mlp([rng.normal(0, 1, (4, 5)), rng.normal(0, 1, (5, 3))], [rng.normal(0, 1, 5), rng.normal(0, 1, 3)],
                activations="relu", name="tmr_mlp")
    return apply_config(model, {"input": "fixed<7,3,RND,SAT>",
                                "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                                            "result": "fixed<10,4,RND,SAT>", "storage": "tmr", "tmr_bits": 4}})


def test_split_plan_deals_every_fault_to_exactly_one_bench():
    faults = {"single": [[f"w{k}", k % 3, k % 5] for k in range(11)], "double": [["w0", [0, 1], 2]] * 3,
              "unprotected": [], "max_scrub_cycles": 1}
    plan = {"vectors": [[1]], "faults": faults}
    parts = split_plan(plan, 3)
    assert [testcase for _, testcase in parts] == [None, ["fault_campaign"], ["fault_campaign"]]
    dealt = sorted(map(str, sum((p["faults"]["single"] for p, _ in parts), [])))
    assert dealt == sorted(map(str, faults["single"]))
    assert sum(len(p["faults"]["double"]) for p, _ in parts) == 3
    assert split_plan(plan, 1) == [(plan, None)]
    assert len(split_plan({"faults": {"single": [1], "double": [], "unprotected": []}}, 8)) == 1


def test_merge_results_adds_the_benches_up():
    def bench(injected, scrub, mismatches, flag):
        return {"tests": 1, "fault_campaign": {
            "single": {"injected": injected, "corrected": injected, "detected": injected,
                       "error_count_read": injected, "inferences_checked": 10, "output_mismatches": mismatches,
                       "scrub_cycles": scrub, "count_cycles": {"2": injected}, "error_flag_read": flag,
                       "first_mismatch": None, "not_scrubbed": [], "not_counted": [],
                       "status_after_clear": [False, 0]},
            "double": {"injected": 2, "detected": 2, "corrected": 0, "voted_wrong_value": 2,
                       "restored_by_rewrite": 2, "error_count_read": 2, "error_flag_read": True},
            "unprotected": {"injected": 1, "detected": 0, "persisted": 1}, "final_mismatches": 0,
            "counter_max": 255}}
    merged = merge_results([{**bench(5, {"1": 5}, 0, True), "tests": 4}, bench(3, {"1": 2, "2": 1}, 1, False)])
    single = merged["fault_campaign"]["single"]
    assert merged["tests"] == 4 and merged["fault_campaign"]["benches"] == 2
    assert single["injected"] == single["error_count_read"] == 8 and single["scrub_cycles"] == {"1": 7, "2": 1}
    assert single["output_mismatches"] == 1 and single["error_flag_read"] and single["inferences_checked"] == 20
    assert merged["fault_campaign"]["double"]["injected"] == 4
    assert merged["fault_campaign"]["unprotected"] == {"injected": 2, "detected": 0, "persisted": 2}


@pytest.mark.sim
def test_faults_on_a_local_dask_cluster_equal_one_bench(tmp_path):
    q = _tmr_mlp()
    save_build(q, tmp_path / "core")
    regmap = ConfigDriver.from_build(tmp_path / "core").regmap
    plan, res = run_campaign(tmp_path / "core", "icarus", max_single=90, max_double=8, jobs=2)
    one = run_config_bench(tmp_path / "core", make_plan(q, regmap, max_single=90, max_double=8), "icarus")
    assert res["fault_campaign"]["benches"] == 2 and res["tests"] == 4
    for key in ("injected", "corrected", "detected", "error_count_read", "scrub_cycles", "count_cycles",
                "output_mismatches", "error_flag_read"):
        assert res["fault_campaign"]["single"][key] == one["fault_campaign"]["single"][key], key
    assert res["fault_campaign"]["single"]["injected"] == len(plan["faults"]["single"]) == 90
    assert res["fault_campaign"]["double"] == one["fault_campaign"]["double"]
    assert res["program_infer"] == one["program_infer"]


@pytest.mark.sim
@pytest.mark.long      # make test reaches a scheduler by address in test_regress
def test_cli_faults_and_sweep_on_a_scheduler_given_by_address(tmp_path):
    from dask.distributed import LocalCluster
    q = _tmr_mlp()
    save_build(q, tmp_path / "core")
    regmap = ConfigDriver.from_build(tmp_path / "core").regmap
    model = matmul_mlp(tmp_path / "two.onnx", n_out=2, seed=3, name="two")
    cfg = write_config(tmp_path / "small.yaml", {
        "input": "fixed<5,2,RND,SAT>",
        "default": {"weight": "fixed<4,1,RND,SAT>", "bias": "fixed<4,1,RND,SAT>", "result": "fixed<6,3,RND,SAT>"}})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        res = run_cli("faults", tmp_path / "core", "--scheduler", cluster.scheduler_address)
        assert res.returncode == 0, res.stderr
        sweep = run_cli("sweep", model, "-c", cfg, "--reuse", "1,2", "-o", tmp_path / "sw",
                        "--scheduler", cluster.scheduler_address)
        assert sweep.returncode == 0, sweep.stderr
    report = json.loads((tmp_path / "core" / "faults.json").read_text())
    check_bus_bench(report["results"], make_plan(q, regmap), regmap)
    assert report["results"]["fault_campaign"]["benches"] == 2
    assert "every check passed" in res.stdout
    assert f"on the Dask cluster at {cluster.scheduler_address}" in sweep.stderr
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert sorted(row["reuse"] for row in rows) == [1, 2] and all(not row["error"] for row in rows)
