"""Generic cocotb testbench for any core described by an rtlgen ``manifest.json``.

The bench is configured only through environment variables (``rtlgen.flows.sim``
sets them; they can also be set by hand to run it from any cocotb flow):

``RTLGEN_MANIFEST``  path to the core's ``manifest.json`` (required)
``RTLGEN_IN``        ``.npy`` of input codes, shape ``[N, input.count]``,
                     int64 or object (Python int) elements (required)
``RTLGEN_OUT``       ``.npy`` path where the produced output codes are written,
                     shape ``[N, output.count]``, int64 (object if an element
                     is wider than 64 bits) (required)
``RTLGEN_EXPECTED``  optional ``.npy`` of expected output codes; every vector is
                     compared and the first mismatch is reported
``RTLGEN_REPORT``    optional ``.json`` path for a machine-readable summary
``RTLGEN_SEED``      seed of the random ``in_valid`` gaps (default 1)
``RTLGEN_GAP``       probability in [0, 1) of leaving ``in_valid`` low in a
                     cycle when a vector could be offered (default 0.3)
``RTLGEN_PROGRESS``  optional path of a small text file that the bench
                     rewrites, about twice a second, with the number of
                     results received so far (``rtlgen sim`` shows it)

Interface contract checked here (see the manifest's ``ports``): ``clk``,
synchronous active-high ``rst``, ``in_valid``/``in_ready``/``in_data`` and
``out_valid``/``out_data``.  Element ``i`` of a vector sits at bits
``[i*W, (i+1)*W)``, two's complement when signed.  An input is accepted on a
rising edge where ``in_valid && in_ready``; the result appears exactly
``latency`` edges later with ``out_valid`` high for one cycle; two accepts are
at least ``ii`` cycles apart.  ``in_ready`` must not depend combinationally on
``in_valid`` (the usual ready/valid rule).

Streamed cores (manifest ``io: stream``) take one pixel per accept: the
bench splits every vector (flat C,H,W) into its pixels in raster order,
pixel ``p`` carrying elements ``c*pixels + p``; latency and ii then count
from the accept of a vector's last pixel.

All signals are sampled and driven at the falling clock edge, which is
race-free on every simulator.  Once offered, a vector stays on ``in_data``
with ``in_valid`` high until it is accepted.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

CLOCK_PERIOD_NS = 10
RESET_CYCLES = 4
#: cycles without an accept (while a vector is offered) before giving up
STALL_LIMIT_MIN = 1000
#: protocol errors kept in full; the rest are only counted
MAX_ERRORS_KEPT = 20

log = logging.getLogger("cocotb.rtlgen")

#: seconds between two rewrites of the RTLGEN_PROGRESS file
PROGRESS_INTERVAL = 0.5


class _ProgressFile:
    """The count of results received, rewritten (atomically) at most every PROGRESS_INTERVAL s."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.last = time.monotonic()

    def report(self, count: int, final: bool = False) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(f"{count}\n")
            os.replace(tmp, self.path)
        except OSError:
            self.path = None   # progress is a nicety: never fail the simulation over it


class _Elem:
    """Width, count and signedness of one side's vector elements."""

    def __init__(self, spec: dict, side: str) -> None:
        try:
            self.count = int(spec["count"])
            self.width = int(spec["width"])
            self.signed = bool(spec.get("signed", False))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"manifest '{side}' needs integer count/width: {e}") from None
        if self.count < 1 or self.width < 1:
            raise ValueError(f"manifest '{side}': count and width must be >= 1")
        self.type = spec.get("type", "")
        self.mask = (1 << self.width) - 1
        self.lo = -(1 << (self.width - 1)) if self.signed else 0
        self.hi = (1 << (self.width - 1)) - 1 if self.signed else self.mask
        self.bits = self.count * self.width

    def pack(self, codes) -> int:
        w, mask = self.width, self.mask
        value = 0
        for i, c in enumerate(codes):
            value |= (c & mask) << (i * w)
        return value

    def unpack(self, value: int) -> list[int]:
        w, mask = self.width, self.mask
        out = [(value >> (i * w)) & mask for i in range(self.count)]
        if self.signed:
            top = 1 << (w - 1)
            full = 1 << w
            out = [v - full if v & top else v for v in out]
        return out

    def fits_int64(self) -> bool:
        return self.width <= 64 if self.signed else self.width <= 63


def _load_codes(path: str, elem: _Elem, what: str) -> list[list[int]]:
    arr = np.load(path, allow_pickle=True)
    if arr.ndim == 1 and elem.count == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != elem.count:
        raise ValueError(
            f"{what} codes in {path} have shape {arr.shape}, expected [N, {elem.count}]"
        )
    rows = [[int(x) for x in row] for row in arr.tolist()]
    for n, row in enumerate(rows):
        for i, c in enumerate(row):
            if not elem.lo <= c <= elem.hi:
                raise ValueError(
                    f"{what} vector {n} element {i}: code {c} does not fit "
                    f"{'signed' if elem.signed else 'unsigned'} {elem.width} bits "
                    f"[{elem.lo}, {elem.hi}]"
                )
    return rows


def _fmt(codes: list[int], limit: int = 64) -> str:
    if len(codes) <= limit:
        return "[" + ", ".join(map(str, codes)) + "]"
    return "[" + ", ".join(map(str, codes[:limit])) + f", ... ({len(codes)} elements)]"


def _is_one(handle) -> bool:
    return str(handle.value) == "1"


@cocotb.test()
async def run_vectors(dut):
    """Stream every input vector through the core and check protocol and results."""
    manifest_path = os.environ["RTLGEN_MANIFEST"]
    manifest = json.loads(Path(manifest_path).read_text())
    inp = _Elem(manifest["input"], "input")
    outp = _Elem(manifest["output"], "output")
    latency = int(manifest["latency"])
    ii = int(manifest.get("ii", 1))
    if latency < 1 or ii < 1:
        raise ValueError(f"manifest latency ({latency}) and ii ({ii}) must be >= 1")

    vectors = _load_codes(os.environ["RTLGEN_IN"], inp, "input")
    out_path = os.environ["RTLGEN_OUT"]
    exp_path = os.environ.get("RTLGEN_EXPECTED") or None
    expected = _load_codes(exp_path, outp, "expected") if exp_path else None
    if expected is not None and len(expected) != len(vectors):
        raise ValueError(
            f"{len(expected)} expected vectors for {len(vectors)} input vectors"
        )
    report_path = os.environ.get("RTLGEN_REPORT") or None
    seed = int(os.environ.get("RTLGEN_SEED", "1"))
    gap = float(os.environ.get("RTLGEN_GAP", "0.3"))
    if not 0.0 <= gap < 1.0:
        raise ValueError(f"RTLGEN_GAP must be in [0, 1), got {gap}")
    rng = random.Random(seed)
    progress_file = _ProgressFile(os.environ.get("RTLGEN_PROGRESS"))

    clk, rst = dut.clk, dut.rst
    in_valid, in_ready, in_data = dut.in_valid, dut.in_ready, dut.in_data
    out_valid, out_data = dut.out_valid, dut.out_data
    stream_spec = manifest.get("stream") if manifest.get("io") == "stream" else None
    port_in = inp
    if stream_spec is not None:
        # one pixel (all channels) per accept; the vector is C,H,W flat
        channels, pixels = int(stream_spec["channels"]), int(stream_spec["pixels"])
        if channels * pixels != inp.count:
            raise ValueError(f"manifest stream: {channels} channels x {pixels} pixels "
                             f"!= input count {inp.count}")
        port_in = _Elem({**manifest["input"], "count": channels}, "input pixel")
    for handle, bits, name in ((in_data, port_in.bits, "in_data"), (out_data, outp.bits, "out_data")):
        if len(handle) != bits:
            raise ValueError(
                f"port {name} is {len(handle)} bits wide, but the manifest implies "
                f"{bits} bits"
            )

    # words offered on in_data, and whether each one completes a vector
    if stream_spec is None:
        packed = [inp.pack(v) for v in vectors]
        completes = [True] * len(packed)
    else:
        packed, completes = [], []
        for v in vectors:
            for p in range(pixels):
                packed.append(port_in.pack([v[c * pixels + p] for c in range(channels)]))
                completes.append(p == pixels - 1)
    n_words = len(packed)
    n = len(vectors)

    Clock(clk, CLOCK_PERIOD_NS, unit="ns").start(start_high=False)
    falling = FallingEdge(clk)
    rst.value = 1
    in_valid.value = 0
    in_data.value = 0
    # a core with stored parameters: keep its configuration bus (or I2C pins) idle
    for name, idle in (("cfg_we", 0), ("cfg_addr", 0), ("cfg_wdata", 0), ("scl_i", 1), ("sda_i", 1)):
        if name in manifest.get("ports", {}):
            getattr(dut, name).value = idle
    for _ in range(RESET_CYCLES):
        await falling
    rst.value = 0

    errors: list[str] = []
    n_errors = 0

    def error(msg: str) -> None:
        nonlocal n_errors
        n_errors += 1
        if len(errors) < MAX_ERRORS_KEPT:
            errors.append(msg)
            log.error("%s", msg)

    accepts: list[int] = []  # cycle of each accept, in order
    raw_out: list[int] = []  # raw out_data of each out_valid cycle
    out_cycles: list[int] = []
    latencies: set[int] = set()
    min_spacing: int | None = None
    stall_limit = max(STALL_LIMIT_MIN, 16 * ii + latency)

    nxt = 0  # index of the next vector to offer
    offering = False
    valid_high = False
    last_accept = -(1 << 30)
    waiting_since = 0
    cycle = 0  # cycle c is decided at falling edge c, sampled at the following rising edge
    end_cycle: int | None = None
    while True:
        # Outputs: what is on out_* now is what rising edge `cycle` samples.
        if _is_one(out_valid):
            k = len(raw_out)
            try:
                raw = out_data.value.to_unsigned()
            except ValueError:
                error(f"cycle {cycle}: out_valid is high but out_data has X/Z bits: {out_data.value}")
                raw = 0
            raw_out.append(raw)
            out_cycles.append(cycle)
            progress_file.report(len(raw_out))
            if k >= len(accepts):
                error(
                    f"cycle {cycle}: spurious out_valid (output #{k}, but only "
                    f"{len(accepts)} inputs accepted so far)"
                )
            else:
                lat = cycle - accepts[k]
                latencies.add(lat)
                if lat != latency:
                    error(
                        f"vector {k}: accepted at cycle {accepts[k]}, out_valid at "
                        f"cycle {cycle}: latency {lat}, manifest says {latency}"
                    )

        # Inputs.
        if end_cycle is None:
            if not offering and nxt < n_words and rng.random() >= gap:
                in_data.value = packed[nxt]
                offering = True
                waiting_since = cycle
            if offering != valid_high:
                in_valid.value = 1 if offering else 0
                valid_high = offering
            if offering:
                if _is_one(in_ready):
                    if completes[nxt]:
                        spacing = cycle - last_accept
                        if spacing < ii:
                            error(
                                f"in_ready allowed vectors to complete at cycles {last_accept} "
                                f"and {cycle} ({spacing} apart), manifest ii is {ii}"
                            )
                        if accepts:
                            min_spacing = spacing if min_spacing is None else min(min_spacing, spacing)
                        accepts.append(cycle)
                        last_accept = cycle
                    nxt += 1
                    offering = False
                elif cycle - waiting_since > stall_limit:
                    error(
                        f"in_ready stayed low for {stall_limit} cycles while vector "
                        f"{nxt} was offered (cycle {cycle})"
                    )
                    end_cycle = cycle + latency + 8
            if nxt >= n_words and not offering and end_cycle is None:
                # drain: wait for the last result plus a margin for spurious outputs
                end_cycle = max(cycle, last_accept) + latency + max(ii, 4) + 4
        elif valid_high:
            in_valid.value = 0
            valid_high = False

        if end_cycle is not None and cycle >= end_cycle:
            break
        cycle += 1
        await falling

    if valid_high:
        in_valid.value = 0
    progress_file.report(len(raw_out), final=True)

    for k in range(len(raw_out), len(accepts)):
        error(
            f"vector {k}: accepted at cycle {accepts[k]} but no out_valid by cycle "
            f"{cycle} (manifest latency {latency})"
        )
    if len(accepts) < n and n_errors == 0:
        error(f"only {len(accepts)} of {n} vectors were accepted")

    got = [outp.unpack(r) for r in raw_out]
    if outp.fits_int64():
        out_arr = np.array(got, dtype=np.int64).reshape(len(got), outp.count)
    else:
        out_arr = np.empty((len(got), outp.count), dtype=object)
        for r, row in enumerate(got):
            out_arr[r, :] = row
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as f:
        np.save(f, out_arr, allow_pickle=not outp.fits_int64())

    mismatches = 0
    first_mismatch: dict | None = None
    if expected is not None:
        for k, row in enumerate(expected):
            have = got[k] if k < len(got) else None
            if have != row:
                mismatches += 1
                if first_mismatch is None:
                    diffs = (
                        []
                        if have is None
                        else [i for i in range(outp.count) if have[i] != row[i]]
                    )
                    first_mismatch = {
                        "index": k,
                        "input": vectors[k],
                        "expected": row,
                        "got": have,
                        "elements": diffs,
                    }

    measured = sorted(latencies)
    summary = (
        f"rtlgen core {manifest.get('top', '?')}: {n} vectors, {len(got)} outputs, "
        f"mismatches {mismatches if expected is not None else 'n/a'}, "
        f"latency {measured[0] if len(measured) == 1 else measured} "
        f"(manifest {latency}), ii {ii} (min accept spacing "
        f"{min_spacing if min_spacing is not None else 'n/a'}), "
        f"{cycle} cycles, protocol errors {n_errors}"
    )
    log.info("%s", summary)

    messages: list[str] = []
    if first_mismatch is not None:
        fm = first_mismatch
        got_txt = "no output" if fm["got"] is None else _fmt(fm["got"])
        where = (
            ""
            if not fm["elements"]
            else " (differing elements "
            + ", ".join(
                f"{i}: {fm['expected'][i]} != {fm['got'][i]}" for i in fm["elements"][:8]
            )
            + (", ..." if len(fm["elements"]) > 8 else "")
            + ")"
        )
        messages.append(
            f"first mismatch at vector {fm['index']}: input codes {_fmt(fm['input'])}, "
            f"expected {_fmt(fm['expected'])}, got {got_txt}{where}; "
            f"{mismatches} of {n} vectors mismatched"
        )
    if n_errors:
        more = f" (+{n_errors - len(errors)} more)" if n_errors > len(errors) else ""
        messages.append(
            f"{n_errors} protocol error(s), first: " + "; ".join(errors[:3]) + more
        )

    if report_path:
        report = {
            "top": manifest.get("top"),
            "vectors": n,
            "outputs": len(got),
            "accepted": len(accepts),
            "mismatches": mismatches if expected is not None else None,
            "first_mismatch": first_mismatch,
            "latency_manifest": latency,
            "latency_measured": measured,
            "ii_manifest": ii,
            "min_accept_spacing": min_spacing,
            "cycles": cycle,
            "protocol_errors": n_errors,
            "errors": errors,
            "message": " | ".join(messages),
            "summary": summary,
        }
        Path(report_path).write_text(json.dumps(report, indent=1) + "\n")

    assert not messages, " | ".join(messages)
