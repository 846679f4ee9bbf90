"""Pieces of the cocotb benches in this folder: settings, source, monitor, scoreboard.

``test_core.py`` (the generic bench of every core) is composed from these;
``test_config_bus.py`` shares the vector packing, the reset and the pin
sampling.  Each piece does one job:

:class:`BenchConfig`
    the manifest, the vectors and the expected codes named by the
    ``RTLGEN_*`` environment variables, checked against the ports.
:class:`CoreSource`
    drives ``in_valid``/``in_data`` from a list of words, holding each word
    until ``in_ready`` takes it; idle cycles come from an injected generator
    (:func:`random_idle` by default).
:class:`CoreMonitor`
    samples ``out_valid``/``out_data`` and keeps every output word with the
    cycle it appeared in.
:class:`Scoreboard`
    checks the handshake (latency of every output, ``ii`` between accepts,
    no spurious outputs, stalls), compares the outputs with the expected
    codes and writes the summary, the report and the failure message.
:class:`CoreTB`
    clock, reset and the per-cycle loop that steps the monitor, the source
    and the scoreboard at each falling edge.

Signals are sampled and driven at the falling clock edge.  The monitor
samples before the source drives, in one coroutine: the order of the reads
and writes, and so the result, is the same on every simulator.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

CLOCK_PERIOD_NS = 10
RESET_CYCLES = 4
#: cycles without an accept (while a vector is offered) before giving up
STALL_LIMIT_MIN = 1000
#: protocol errors kept in full; the rest are only counted
MAX_ERRORS_KEPT = 20
#: seconds between two rewrites of the RTLGEN_PROGRESS file
PROGRESS_INTERVAL = 0.5
#: the level each configuration input rests at while a bench does not use it
CONFIG_IDLE = {"cfg_we": 0, "cfg_addr": 0, "cfg_wdata": 0, "scl_i": 1, "sda_i": 1}

log = logging.getLogger("cocotb.rtlgen")


# ---------------------------------------------------------------------------
# codes and pins
# ---------------------------------------------------------------------------

class ElementFormat:
    """Width, count and signedness of one side's vector elements; packs and unpacks words."""

    def __init__(self, spec: Mapping, side: str = "vector") -> None:
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
        """Element ``i`` at bits ``[i*W, (i+1)*W)``, two's complement."""
        w, mask = self.width, self.mask
        value = 0
        for i, c in enumerate(codes):
            value |= (int(c) & mask) << (i * w)
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


def load_codes(path: str, elem: ElementFormat, what: str) -> list[list[int]]:
    """Rows of Python ints from an ``.npy`` file, each code checked against *elem*."""
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


def save_codes(path: str, rows: list[list[int]], elem: ElementFormat) -> None:
    """Write *rows* as ``[N, count]`` int64 (object when an element may not fit)."""
    if elem.fits_int64():
        arr = np.array(rows, dtype=np.int64).reshape(len(rows), elem.count)
    else:
        arr = np.empty((len(rows), elem.count), dtype=object)
        for r, row in enumerate(rows):
            arr[r, :] = row
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=not elem.fits_int64())


def fmt_codes(codes: list[int], limit: int = 64) -> str:
    if len(codes) <= limit:
        return "[" + ", ".join(map(str, codes)) + "]"
    return "[" + ", ".join(map(str, codes[:limit])) + f", ... ({len(codes)} elements)]"


def is_one(handle) -> bool:
    return str(handle.value) == "1"


async def hold_reset(dut, cycles: int, idle: Mapping[str, int]) -> None:
    """Hold ``rst`` high for *cycles* falling edges with ``in_valid`` low and the
    ports in *idle* at their levels; ``rst`` is low on return (at a falling edge)."""
    falling = FallingEdge(dut.clk)
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.in_data.value = 0
    for name, level in idle.items():
        getattr(dut, name).value = level
    for _ in range(cycles):
        await falling
    dut.rst.value = 0


class ProgressFile:
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


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------

@dataclass
class BenchConfig:
    """What the generic bench runs: read from the ``RTLGEN_*`` variables (see ``test_core.py``)."""

    manifest: dict
    inp: ElementFormat
    outp: ElementFormat
    latency: int
    ii: int
    vectors: list[list[int]]
    expected: list[list[int]] | None
    out_path: str
    report_path: str | None
    seed: int
    gap: float
    progress_path: str | None
    #: the elements of one accept: a whole vector, or one pixel of a streamed core
    port_in: ElementFormat
    #: pixels per vector of a streamed core (manifest ``io: stream``), else None
    pixels: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> BenchConfig:
        manifest = json.loads(Path(env["RTLGEN_MANIFEST"]).read_text())
        inp = ElementFormat(manifest["input"], "input")
        outp = ElementFormat(manifest["output"], "output")
        latency = int(manifest["latency"])
        ii = int(manifest.get("ii", 1))
        if latency < 1 or ii < 1:
            raise ValueError(f"manifest latency ({latency}) and ii ({ii}) must be >= 1")

        vectors = load_codes(env["RTLGEN_IN"], inp, "input")
        out_path = env["RTLGEN_OUT"]
        exp_path = env.get("RTLGEN_EXPECTED") or None
        expected = load_codes(exp_path, outp, "expected") if exp_path else None
        if expected is not None and len(expected) != len(vectors):
            raise ValueError(
                f"{len(expected)} expected vectors for {len(vectors)} input vectors"
            )
        report_path = env.get("RTLGEN_REPORT") or None
        seed = int(env.get("RTLGEN_SEED", "1"))
        gap = float(env.get("RTLGEN_GAP", "0.3"))
        if not 0.0 <= gap < 1.0:
            raise ValueError(f"RTLGEN_GAP must be in [0, 1), got {gap}")

        port_in, pixels = _pixel_format(manifest, inp)
        return cls(manifest, inp, outp, latency, ii, vectors, expected, out_path, report_path, seed, gap,
                   env.get("RTLGEN_PROGRESS"), port_in, pixels)

    def check_ports(self, dut) -> None:
        """``in_data`` and ``out_data`` must be as wide as the manifest implies."""
        for handle, bits, name in ((dut.in_data, self.port_in.bits, "in_data"),
                                   (dut.out_data, self.outp.bits, "out_data")):
            if len(handle) != bits:
                raise ValueError(
                    f"port {name} is {len(handle)} bits wide, but the manifest implies "
                    f"{bits} bits"
                )

    def idle_ports(self) -> dict[str, int]:
        """The configuration inputs of this core (bus or I2C pins), at rest."""
        ports = self.manifest.get("ports", {})
        return {name: level for name, level in CONFIG_IDLE.items() if name in ports}

    def input_words(self) -> tuple[list[int], list[bool]]:
        """Words offered on ``in_data``, and whether each one completes a vector."""
        if self.pixels is None:
            return [self.inp.pack(v) for v in self.vectors], [True] * len(self.vectors)
        channels, pixels = self.port_in.count, self.pixels
        words, completes = [], []
        for v in self.vectors:
            for p in range(pixels):
                words.append(self.port_in.pack([v[c * pixels + p] for c in range(channels)]))
                completes.append(p == pixels - 1)
        return words, completes


def _pixel_format(manifest: dict, inp: ElementFormat) -> tuple[ElementFormat, int | None]:
    """The elements of one accept and, for a streamed core, the pixels per vector."""
    stream_spec = manifest.get("stream") if manifest.get("io") == "stream" else None
    if stream_spec is None:
        return inp, None
    # one pixel (all channels) per accept; the vector is C,H,W flat
    channels, pixels = int(stream_spec["channels"]), int(stream_spec["pixels"])
    if channels * pixels != inp.count:
        raise ValueError(f"manifest stream: {channels} channels x {pixels} pixels "
                         f"!= input count {inp.count}")
    return ElementFormat({**manifest["input"], "count": channels}, "input pixel"), pixels


# ---------------------------------------------------------------------------
# source, monitor, scoreboard
# ---------------------------------------------------------------------------

def random_idle(seed: int, gap: float) -> Iterator[bool]:
    """Idle decisions for :class:`CoreSource`: True with probability *gap*, seeded."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < gap


class CoreSource:
    """Offers *words* on ``in_data`` with ``in_valid`` high, each until ``in_ready`` takes it.

    When no word is offered, the next one is offered unless ``next(idle)``
    says to idle this cycle; once offered, a word stays until accepted.
    """

    def __init__(self, dut, words: list[int], completes: list[bool], idle: Iterator[bool]) -> None:
        self.in_valid, self.in_ready, self.in_data = dut.in_valid, dut.in_ready, dut.in_data
        self.words, self.completes, self.idle = words, completes, idle
        self.index = 0             # the word offered, or the next one to offer
        self.offering = False
        self.valid_high = False
        self.offered_at = 0

    @property
    def done(self) -> bool:
        """Every word was accepted."""
        return self.index >= len(self.words) and not self.offering

    def step(self, cycle: int) -> bool:
        """Drive ``in_*`` for *cycle*; True if the rising edge takes the last word of a vector."""
        if not self.offering and self.index < len(self.words) and not next(self.idle):
            self.in_data.value = self.words[self.index]
            self.offering = True
            self.offered_at = cycle
        self._drive_valid(self.offering)
        if not (self.offering and is_one(self.in_ready)):
            return False
        completes = self.completes[self.index]
        self.index += 1
        self.offering = False
        return completes

    def waiting(self, cycle: int) -> int:
        """Cycles the current word has waited for ``in_ready`` (0 when none is offered)."""
        return cycle - self.offered_at if self.offering else 0

    def release(self) -> None:
        """Drop ``in_valid`` (the bench stops offering)."""
        self._drive_valid(False)

    def _drive_valid(self, high: bool) -> None:
        if high != self.valid_high:
            self.in_valid.value = 1 if high else 0
            self.valid_high = high


class CoreMonitor:
    """Samples ``out_valid``/``out_data``; keeps each output word and the cycle it came in."""

    def __init__(self, dut, progress: ProgressFile | None = None) -> None:
        self.out_valid, self.out_data = dut.out_valid, dut.out_data
        self.progress = progress
        self.words: list[int] = []
        self.cycles: list[int] = []

    def sample(self, cycle: int):
        """``None`` if ``out_valid`` is low, else ``(word, bad)``: *bad* is the
        ``out_data`` value when it has X/Z bits (the word is then 0)."""
        if not is_one(self.out_valid):
            return None
        value = self.out_data.value
        try:
            word, bad = value.to_unsigned(), None
        except ValueError:
            word, bad = 0, value
        self.words.append(word)
        self.cycles.append(cycle)
        if self.progress is not None:
            self.progress.report(len(self.words))
        return word, bad

    def close(self) -> None:
        if self.progress is not None:
            self.progress.report(len(self.words), final=True)


class ErrorLog:
    """Protocol errors: all counted, the first MAX_ERRORS_KEPT kept and logged."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.count = 0

    def add(self, msg: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_ERRORS_KEPT:
            self.kept.append(msg)
            log.error("%s", msg)


class Scoreboard:
    """Checks the handshake as it happens and the outputs at the end.

    :meth:`accept` and :meth:`output` are called in cycle order (accepts of a
    cycle after its output); :meth:`finish` after the last cycle; then
    :meth:`compare` with the unpacked outputs.
    """

    def __init__(self, latency: int, ii: int, vectors: list[list[int]], expected: list[list[int]] | None,
                 count: int) -> None:
        self.latency, self.ii = latency, ii
        self.vectors, self.expected, self.count = vectors, expected, count
        self.errors = ErrorLog()
        self.accepts: list[int] = []       # cycle of each accepted vector, in order
        self.last_accept = -(1 << 30)
        self.min_spacing: int | None = None
        self.outputs = 0
        self.latencies: set[int] = set()
        self.mismatches = 0
        self.first_mismatch: dict | None = None

    def accept(self, cycle: int) -> None:
        """The rising edge of *cycle* took the last word of a vector."""
        spacing = cycle - self.last_accept
        if spacing < self.ii:
            self.errors.add(
                f"in_ready allowed vectors to complete at cycles {self.last_accept} "
                f"and {cycle} ({spacing} apart), manifest ii is {self.ii}"
            )
        if self.accepts:
            self.min_spacing = spacing if self.min_spacing is None else min(self.min_spacing, spacing)
        self.accepts.append(cycle)
        self.last_accept = cycle

    def output(self, cycle: int, bad=None) -> None:
        """``out_valid`` was high in *cycle*; *bad* is an ``out_data`` value with X/Z bits."""
        k = self.outputs
        self.outputs += 1
        if bad is not None:
            self.errors.add(f"cycle {cycle}: out_valid is high but out_data has X/Z bits: {bad}")
        if k >= len(self.accepts):
            self.errors.add(
                f"cycle {cycle}: spurious out_valid (output #{k}, but only "
                f"{len(self.accepts)} inputs accepted so far)"
            )
            return
        lat = cycle - self.accepts[k]
        self.latencies.add(lat)
        if lat != self.latency:
            self.errors.add(
                f"vector {k}: accepted at cycle {self.accepts[k]}, out_valid at "
                f"cycle {cycle}: latency {lat}, manifest says {self.latency}"
            )

    def stall(self, cycle: int, word: int, limit: int) -> None:
        self.errors.add(
            f"in_ready stayed low for {limit} cycles while vector "
            f"{word} was offered (cycle {cycle})"
        )

    def finish(self, cycle: int) -> None:
        """The bench stopped at *cycle*: every accepted vector must have had its output."""
        for k in range(self.outputs, len(self.accepts)):
            self.errors.add(
                f"vector {k}: accepted at cycle {self.accepts[k]} but no out_valid by cycle "
                f"{cycle} (manifest latency {self.latency})"
            )
        n = len(self.vectors)
        if len(self.accepts) < n and self.errors.count == 0:
            self.errors.add(f"only {len(self.accepts)} of {n} vectors were accepted")

    def compare(self, got: list[list[int]]) -> None:
        """Count the vectors whose output differs from the expected codes; keep the first."""
        if self.expected is None:
            return
        for k, row in enumerate(self.expected):
            have = got[k] if k < len(got) else None
            if have == row:
                continue
            self.mismatches += 1
            if self.first_mismatch is None:
                diffs = [] if have is None else [i for i in range(self.count) if have[i] != row[i]]
                self.first_mismatch = {"index": k, "input": self.vectors[k], "expected": row, "got": have,
                                       "elements": diffs}

    def summary(self, top: str, n_got: int, cycles: int) -> str:
        measured = sorted(self.latencies)
        return (
            f"rtlgen core {top}: {len(self.vectors)} vectors, {n_got} outputs, "
            f"mismatches {self.mismatches if self.expected is not None else 'n/a'}, "
            f"latency {measured[0] if len(measured) == 1 else measured} "
            f"(manifest {self.latency}), ii {self.ii} (min accept spacing "
            f"{self.min_spacing if self.min_spacing is not None else 'n/a'}), "
            f"{cycles} cycles, protocol errors {self.errors.count}"
        )

    def messages(self) -> list[str]:
        """What failed: the first mismatch, then the protocol errors (empty when all passed)."""
        messages: list[str] = []
        fm = self.first_mismatch
        if fm is not None:
            got_txt = "no output" if fm["got"] is None else fmt_codes(fm["got"])
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
                f"first mismatch at vector {fm['index']}: input codes {fmt_codes(fm['input'])}, "
                f"expected {fmt_codes(fm['expected'])}, got {got_txt}{where}; "
                f"{self.mismatches} of {len(self.vectors)} vectors mismatched"
            )
        errors = self.errors
        if errors.count:
            more = f" (+{errors.count - len(errors.kept)} more)" if errors.count > len(errors.kept) else ""
            messages.append(
                f"{errors.count} protocol error(s), first: " + "; ".join(errors.kept[:3]) + more
            )
        return messages

    def report(self, top, n_got: int, cycles: int, summary: str, messages: list[str]) -> dict:
        """The machine-readable summary that ``rtlgen.flows.sim`` reads (``RTLGEN_REPORT``)."""
        return {
            "top": top,
            "vectors": len(self.vectors),
            "outputs": n_got,
            "accepted": len(self.accepts),
            "mismatches": self.mismatches if self.expected is not None else None,
            "first_mismatch": self.first_mismatch,
            "latency_manifest": self.latency,
            "latency_measured": sorted(self.latencies),
            "ii_manifest": self.ii,
            "min_accept_spacing": self.min_spacing,
            "cycles": cycles,
            "protocol_errors": self.errors.count,
            "errors": self.errors.kept,
            "message": " | ".join(messages),
            "summary": summary,
        }


# ---------------------------------------------------------------------------
# the bench
# ---------------------------------------------------------------------------

class CoreTB:
    """One core under test: a source, a monitor and a scoreboard stepped once per cycle.

    *idle* replaces the seeded random idle cycles of the source
    (e.g. ``itertools.repeat(False)`` for back-to-back vectors).
    """

    def __init__(self, dut, config: BenchConfig, idle: Iterator[bool] | None = None) -> None:
        self.dut, self.config = dut, config
        words, completes = config.input_words()
        self.source = CoreSource(dut, words, completes,
                                 random_idle(config.seed, config.gap) if idle is None else idle)
        self.monitor = CoreMonitor(dut, ProgressFile(config.progress_path))
        self.scoreboard = Scoreboard(config.latency, config.ii, config.vectors, config.expected,
                                     config.outp.count)
        self.stall_limit = max(STALL_LIMIT_MIN, 16 * config.ii + config.latency)
        self.cycles = 0

    async def reset(self) -> None:
        Clock(self.dut.clk, CLOCK_PERIOD_NS, unit="ns").start(start_high=False)
        await hold_reset(self.dut, RESET_CYCLES, self.config.idle_ports())

    async def run(self) -> None:
        """Offer every word, then wait for the last result plus a margin for spurious outputs.

        Cycle ``c`` is decided at falling edge ``c`` and sampled at the
        following rising edge.
        """
        falling = FallingEdge(self.dut.clk)
        source, monitor, board = self.source, self.monitor, self.scoreboard
        latency, ii = self.config.latency, self.config.ii
        cycle = 0
        end: int | None = None
        while True:
            sampled = monitor.sample(cycle)
            if sampled is not None:
                board.output(cycle, sampled[1])
            if end is None:
                if source.step(cycle):
                    board.accept(cycle)
                elif source.waiting(cycle) > self.stall_limit:
                    board.stall(cycle, source.index, self.stall_limit)
                    end = cycle + latency + 8      # give up, once the outputs in flight are out
                if end is None and source.done:
                    # drain: wait for the last result plus a margin for spurious outputs
                    end = max(cycle, board.last_accept) + latency + max(ii, 4) + 4
            else:
                source.release()
            if end is not None and cycle >= end:
                break
            cycle += 1
            await falling
        source.release()
        monitor.close()
        board.finish(cycle)
        self.cycles = cycle

    def outputs(self) -> list[list[int]]:
        """The output vectors received, unpacked."""
        return [self.config.outp.unpack(w) for w in self.monitor.words]

    def conclude(self) -> list[str]:
        """Write the outputs and the report, log the summary; return the failure messages."""
        config, board = self.config, self.scoreboard
        got = self.outputs()
        save_codes(config.out_path, got, config.outp)
        board.compare(got)
        summary = board.summary(config.manifest.get("top", "?"), len(got), self.cycles)
        log.info("%s", summary)
        messages = board.messages()
        if config.report_path:
            report = board.report(config.manifest.get("top"), len(got), self.cycles, summary, messages)
            Path(config.report_path).write_text(json.dumps(report, indent=1) + "\n")
        return messages
