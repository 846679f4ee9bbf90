"""End-to-end checks of rtlgen.flows.sim with hand-written cores.

The cores follow the manifest contract of ``rtlgen build`` (clk, synchronous
rst, in_valid/in_ready/in_data, out_valid/out_data, fixed latency, initiation
interval enforced through in_ready) and compute ``y[i] = x[i] + 1`` with one
more output bit, so results are easy to predict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtlgen.errors import RtlgenError
from rtlgen.flows import tools
from rtlgen.flows.sim import run_sim

from helpers.sims import SIMULATORS, long_marked


def addone_verilog(top: str, count: int, width: int, latency: int, ii: int) -> str:
    """A core computing x+1 per signed element, `latency` cycles, one input per `ii` cycles."""
    ow = width + 1
    lines = [
        f"module {top} (",
        "    input wire clk,",
        "    input wire rst,",
        "    input wire in_valid,",
        "    output wire in_ready,",
        f"    input wire [{count * width - 1}:0] in_data,",
        "    output wire out_valid,",
        f"    output wire [{count * ow - 1}:0] out_data",
        ");",
        f"    reg [{latency - 1}:0] vld;",
    ]
    for s in range(latency):
        lines.append(f"    reg [{count * ow - 1}:0] st{s};")
    lines.append(f"    wire [{count * ow - 1}:0] sum;")
    for i in range(count):
        lo = i * width
        msb = lo + width - 1
        lines.append(
            f"    assign sum[{(i + 1) * ow - 1}:{i * ow}] = "
            f"{{in_data[{msb}], in_data[{msb}:{lo}]}} + {ow}'d1;"
        )
    lines.append("    wire accept = in_valid & in_ready;")
    if ii > 1:
        cw = max(1, (ii - 1).bit_length())
        lines += [
            f"    reg [{cw - 1}:0] hold;",
            "    assign in_ready = (hold == 0);",
            "    always @(posedge clk) begin",
            f"        if (rst) hold <= {cw}'d0;",
            f"        else if (accept) hold <= {cw}'d{ii - 1};",
            f"        else if (hold != 0) hold <= hold - {cw}'d1;",
            "    end",
        ]
    else:
        lines.append("    assign in_ready = 1'b1;")
    lines += [
        "    always @(posedge clk) begin",
        f"        if (rst) vld <= {latency}'d0;",
        "        else vld <= " + (f"{{vld[{latency - 2}:0], accept}};" if latency > 1 else "accept;"),
        "        if (accept) st0 <= sum;",
    ]
    for s in range(1, latency):
        lines.append(f"        st{s} <= st{s - 1};")
    lines += [
        "    end",
        f"    assign out_valid = vld[{latency - 1}];",
        f"    assign out_data = st{latency - 1};",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def write_core(
    outdir: Path,
    *,
    top: str = "addone",
    count: int = 3,
    width: int = 8,
    latency: int = 2,
    ii: int = 2,
    manifest_latency: int | None = None,
    manifest_ii: int | None = None,
) -> Path:
    """Write ``<top>.v`` and ``manifest.json`` into *outdir* and return it."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"{top}.v").write_text(addone_verilog(top, count, width, latency, ii))
    ow = width + 1
    manifest = {
        "format": 1,
        "kind": "test",
        "top": top,
        "verilog": f"{top}.v",
        "ports": {
            "clk": 1,
            "rst": 1,
            "in_valid": 1,
            "in_ready": 1,
            "in_data": count * width,
            "out_valid": 1,
            "out_data": count * ow,
        },
        "input": {"type": f"fixed<{width},{width},RND,SAT>", "count": count, "width": width, "signed": True},
        "output": {"type": f"fixed<{ow},{ow},RND,SAT>", "count": count, "width": ow, "signed": True},
        "latency": latency if manifest_latency is None else manifest_latency,
        "ii": ii if manifest_ii is None else manifest_ii,
        "layers": [],
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return outdir


def random_codes(rng: np.random.Generator, n: int, count: int, width: int) -> np.ndarray:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    x = rng.integers(lo, hi + 1, size=(n, count), dtype=np.int64)
    # edge codes up front: all-min, all-max, mixed
    x[0, :] = lo
    x[1, :] = hi
    x[2, :] = [lo if i % 2 else hi for i in range(count)]
    x[3, :] = -1
    x[4, :] = 0
    return x


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_addone_matches_and_mismatch_is_reported(tmp_path, simulator):
    core = write_core(tmp_path / "core")
    work = tmp_path / "work"
    x = random_codes(np.random.default_rng(7), 300, 3, 8)
    got = run_sim(core, x, simulator=simulator, expected=x + 1, work_dir=work, seed=3)
    assert got.dtype == np.int64
    assert got.shape == (300, 3)
    np.testing.assert_array_equal(got, x + 1)
    assert got[1].tolist() == [128, 128, 128]
    assert got[0].tolist() == [-127, -127, -127]
    report = json.loads((work / "report.json").read_text())
    assert report["latency_measured"] == [2]
    assert report["min_accept_spacing"] == 2
    assert report["mismatches"] == 0
    build_log = work / f"build_{simulator}.log"
    built_at = build_log.stat().st_mtime_ns

    # one wrong expected vector: the error names it (and the build is reused)
    x = x[:60]
    expected = x + 1
    expected[37, 1] += 5
    with pytest.raises(RtlgenError) as info:
        run_sim(core, x, simulator=simulator, expected=expected, work_dir=work, seed=4)
    msg = str(info.value)
    assert "first mismatch at vector 37:" in msg
    assert f"input codes {x[37].tolist()}" in msg
    assert f"expected {expected[37].tolist()}" in msg
    assert f"got {(x[37] + 1).tolist()}" in msg
    assert "1 of 60 vectors mismatched" in msg
    assert str(work) in msg
    # the outputs the hardware produced are still written
    np.testing.assert_array_equal(np.load(work / "out.npy"), x + 1)
    if simulator == "verilator":
        assert build_log.stat().st_mtime_ns == built_at


# the bench's latency and II checks are Python, the same on both simulators: their Verilator runs
# (a C++ build each) are in make test-long; the batch engine's checks meet Verilator in test_batch_sim
PROTOCOL_SIMULATORS = long_marked(SIMULATORS, long=("verilator",))


@pytest.mark.sim
@pytest.mark.parametrize("simulator", PROTOCOL_SIMULATORS)
def test_latency_violation_detected(tmp_path, simulator):
    core = write_core(tmp_path / "core", latency=3, manifest_latency=2)
    x = random_codes(np.random.default_rng(5), 20, 3, 8)
    with pytest.raises(RtlgenError) as info:
        run_sim(core, x, simulator=simulator, expected=x + 1, work_dir=tmp_path / "work")
    msg = str(info.value)
    assert "latency 3, manifest says 2" in msg
    assert "vector 0" in msg


@pytest.mark.sim
@pytest.mark.parametrize("simulator", PROTOCOL_SIMULATORS)
def test_ii_violation_detected(tmp_path, simulator):
    # the core accepts every cycle, but the manifest promises at most one input per 3 cycles
    core = write_core(tmp_path / "core", ii=1, manifest_ii=3)
    x = random_codes(np.random.default_rng(9), 40, 3, 8)
    with pytest.raises(RtlgenError, match=r"manifest ii is 3"):
        run_sim(core, x, simulator=simulator, work_dir=tmp_path / "work", gap=0.0)


@pytest.mark.sim
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_wide_vectors(tmp_path, simulator):
    # 80 x 16-bit = 1280-bit in_data, 1360-bit out_data, no initiation gap
    core = write_core(tmp_path / "core", top="wide_core", count=80, width=16, latency=1, ii=1)
    x = random_codes(np.random.default_rng(13), 50, 80, 16)
    got = run_sim(core, x, simulator=simulator, expected=x + 1, gap=0.5)
    np.testing.assert_array_equal(got, x + 1)


def test_bad_simulator_and_inputs(tmp_path):
    core = write_core(tmp_path / "core")
    x = np.zeros((4, 3), dtype=np.int64)
    with pytest.raises(RtlgenError, match="unknown simulator"):
        run_sim(core, x, simulator="modelsim")
    with pytest.raises(RtlgenError, match="unknown simulator"):
        tools.ensure_simulator("modelsim")
    with pytest.raises(RtlgenError, match=r"shape \(4, 2\)"):
        run_sim(core, np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(RtlgenError, match="element 2: code 128 does not fit"):
        run_sim(core, np.array([[0, 0, 128]]))
    with pytest.raises(RtlgenError, match="manifest.json not found"):
        run_sim(tmp_path / "nowhere", x)


def test_tools_found():
    exe = tools.ensure_verilator()
    assert exe.is_file()
    assert tools.verilator_version().startswith("Verilator 5.")
    env = tools.verilator_env()
    assert env["PATH"].split(":")[0] == str(exe.parent)
    assert tools.ensure_icarus().name == "iverilog"
