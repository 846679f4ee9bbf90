"""cocotb bench of a board folder's link: ``board_link.v`` (UART host link + core).

The host side is the independent UART model of ``cocotbext.uart``
(``UartSource`` drives ``rx``, ``UartSink`` listens on ``tx``) at the bit
time the board was built for (``baud_divisor`` clock cycles), and frames are
made and checked with :mod:`rtlgen.link.protocol`.  The bench is configured
by environment variables (``rtlgen.flows.board_sim`` sets them):

``RTLGEN_BOARD``            the board folder (``board.json``, ``manifest.json``,
                            ``model.json``; required)
``RTLGEN_BOARD_TESTS``      comma-separated groups to run (default ``frames,selftest``):

    ``frames``    ``INFO`` against the manifest; random samples as ``INFER``
                  frames with at most ``window`` unanswered, against the
                  golden model; garbled bytes, a bad CRC, an unknown command,
                  bad lengths, a stalled frame (timeout) and an overrunning
                  burst, each answered with its error and followed by a good
                  ``INFER``; the ``STATUS`` counters against what was sent
    ``selftest``  the power-up self-test's state and mismatch count on the
                  pins and in ``STATUS``
    ``pty``       bridge a pseudo-terminal to the UART models (a host program
                  such as ``rtlgen board run`` talks to the simulated board)

``RTLGEN_BOARD_SAMPLES``    samples of the ``infer`` test (default 24)
``RTLGEN_SEED``             seed of the samples and garbled bytes (default 1)
``RTLGEN_SELFTEST_MISMATCHES``  self-test mismatches expected (default 0)
``RTLGEN_BOARD_REPORT``     optional ``.json`` written with what each test saw
``RTLGEN_PTY_FD``           (pty) file descriptor of the pseudo-terminal's master side
``RTLGEN_PTY_SECONDS``      (pty) wall-clock bound of the bridge (default 600)
``RTLGEN_PTY_CYCLES``       (pty) optional bound in clock cycles
``RTLGEN_PTY_READY``        (pty) optional file written once the board is out of reset

Every wait is bounded: a reply that does not come fails the test instead of
hanging the simulator.
"""

from __future__ import annotations

import json
import logging
import os
import random
import select
import time
from dataclasses import dataclass
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, SimTimeoutError, Timer, with_timeout
from cocotbext.uart import UartSink, UartSource

from rtlgen.flows.board import selftest_samples
from rtlgen.kinds import kind_for_build
from rtlgen.link import protocol as P

CLOCK_NS = 10
RESET_CYCLES = 4

GROUPS = {g.strip() for g in os.environ.get("RTLGEN_BOARD_TESTS", "frames,selftest").split(",") if g.strip()}


# ---------------------------------------------------------------------------
# settings and report
# ---------------------------------------------------------------------------

@dataclass
class Board:
    """What the bench knows of the board folder."""

    folder: Path
    report: dict
    manifest: dict
    kind: object
    qmodel: object
    fmt: P.SampleFormat
    divisor: int
    window: int
    self_test: int
    seed: int
    samples: int
    expect_mismatches: int

    @classmethod
    def from_env(cls) -> "Board":
        folder = Path(os.environ["RTLGEN_BOARD"])
        report = json.loads((folder / "board.json").read_text())
        kind = kind_for_build(folder)
        manifest, qmodel = kind.load_build(folder)
        return cls(folder, report, manifest, kind, qmodel, P.SampleFormat.from_manifest(manifest),
                   int(report["baud_divisor"]), int(report["window"]), int(report.get("self_test", 0)),
                   int(os.environ.get("RTLGEN_SEED", "1")), int(os.environ.get("RTLGEN_BOARD_SAMPLES", "24")),
                   int(os.environ.get("RTLGEN_SELFTEST_MISMATCHES", "0")))

    @property
    def bus_bytes(self) -> int:
        width = self.manifest.get("ports", {}).get("cfg_wdata")
        return (int(width) + 7) // 8 if width else 0

    @property
    def latency(self) -> int:
        return int(self.manifest["latency"])

    @property
    def ii(self) -> int:
        return int(self.manifest.get("ii", 1))

    def random_samples(self, n: int, rng: random.Random) -> list[list[int]]:
        inp = self.manifest["input"]
        width, signed = int(inp["width"]), bool(inp.get("signed", False))
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        count = int(inp["count"])
        return [[rng.randint(lo, hi) for _ in range(count)] for _ in range(n)]

    def golden(self, samples: list[list[int]]) -> list[list[int]]:
        import numpy as np

        codes = np.array(samples, dtype=object if int(self.manifest["input"]["width"]) > 62 else np.int64)
        return [[int(v) for v in row] for row in self.kind.predict_codes(self.qmodel, codes)]


class Report:
    """What the tests saw, merged into ``RTLGEN_BOARD_REPORT`` after each test."""

    def __init__(self) -> None:
        self.path = os.environ.get("RTLGEN_BOARD_REPORT")

    def add(self, test: str, **values) -> None:
        if not self.path:
            return
        path = Path(self.path)
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            data = {}
        data[test] = values
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")


REPORT = Report()


# ---------------------------------------------------------------------------
# the host end of the UART
# ---------------------------------------------------------------------------

def uart_baud(bit_ns: int) -> float:
    """A baud rate whose bit time cocotbext-uart rounds (``int(1e9 / baud)`` ns) to exactly ``bit_ns``."""
    baud = 1e9 / bit_ns
    while int(1e9 / baud) < bit_ns:
        baud = baud * (1 - 1e-12)
    return baud


class Host:
    """Frames to and from the board over the UART models; every wait bounded."""

    def __init__(self, dut, board: Board) -> None:
        self.dut, self.board = dut, board
        self.bit_ns = CLOCK_NS * board.divisor
        self.byte_ns = 10 * self.bit_ns
        baud = uart_baud(self.bit_ns)
        self.source = UartSource(dut.rx, baud=baud, bits=8, stop_bits=1)
        self.sink = UartSink(dut.tx, baud=baud, bits=8, stop_bits=1)
        for model in (self.source, self.sink):
            model.log.setLevel(logging.WARNING)   # not a line per byte
        fmt = board.fmt
        # a reply starts once what is queued ahead of it is sent and the core is through
        queued = (board.window * 2 + 3) * (max(fmt.in_bytes, fmt.out_bytes, P.STATUS_BYTES, P.INFO_BYTES) + 5)
        self.reply_ns = queued * self.byte_ns + 4 * (board.latency + board.ii * fmt.words + 16) * CLOCK_NS

    async def send(self, data: bytes) -> None:
        await self.source.write(bytes(data))

    async def sent(self) -> None:
        """Until the source has put every queued byte on the line."""
        await with_timeout(self.source.wait(), (self.source.count() + 2) * self.byte_ns * 2 + 1000, "ns")

    async def byte(self, timeout_ns: float) -> int | None:
        """The next byte from the board, or None if none comes within ``timeout_ns``."""
        if self.sink.empty():
            try:
                await with_timeout(self.sink.wait(), timeout_ns, "ns")
            except SimTimeoutError:
                return None
            if self.sink.empty():
                return None
        return self.sink.read_nowait(1)[0]

    async def frame(self, timeout_ns: float | None = None, what: str = "a reply", first: int | None = None) -> P.Frame:
        """The next frame, strictly: it must start right away with SYNC and have a good CRC.
        ``first``: its first byte, when already read."""
        if first is None:
            first = await self.byte(self.reply_ns if timeout_ns is None else timeout_ns)
        assert first is not None, f"no reply from the board while waiting for {what}"
        assert first == P.SYNC, f"{what}: the board sent 0x{first:02x} where a frame must start (0x{P.SYNC:02x})"
        head = bytearray()
        gap = 4 * self.byte_ns
        while len(head) < 3:
            b = await self.byte(gap)
            assert b is not None, f"{what}: the board stopped inside a frame header ({bytes(head).hex()})"
            head.append(b)
        length = head[1] | head[2] << 8
        body = bytearray(head)
        for _ in range(length + 1):
            b = await self.byte(gap)
            assert b is not None, f"{what}: the board stopped inside a frame ({len(body) - 3} of {length} bytes)"
            body.append(b)
        crc = body.pop()
        assert crc == P.crc8(bytes(body)), f"{what}: frame 0x{body[0]:02x} with a bad CRC from the board"
        return P.Frame(body[0], bytes(body[3:]))

    async def silence(self, byte_times: float) -> None:
        """Nothing at all comes from the board for ``byte_times``."""
        b = await self.byte(byte_times * self.byte_ns)
        assert b is None, f"the board sent 0x{b:02x} where no reply was due"
        assert not self.sink.active, "the board started a byte where no reply was due"

    async def request(self, cmd: int, payload: bytes = b"", what: str = "") -> P.Frame:
        await self.send(P.encode_frame(cmd, payload))
        return await self.frame(what=what or f"the reply to 0x{cmd:02x}")

    async def info(self) -> P.Info:
        frame = await self.request(P.INFO, what="the INFO reply")
        assert frame.cmd == P.INFO | P.REPLY, f"INFO answered with 0x{frame.cmd:02x} {frame.payload.hex()}"
        return P.Info.unpack(frame.payload)

    async def status(self) -> P.Status:
        frame = await self.request(P.STATUS, what="the STATUS reply")
        assert frame.cmd == P.STATUS | P.REPLY, f"STATUS answered with 0x{frame.cmd:02x} {frame.payload.hex()}"
        return P.Status.unpack(frame.payload)

    async def expect_error(self, code: int, cmd: int, what: str) -> P.Frame:
        frame = await self.frame(what=what)
        assert frame.error == (code, cmd), (
            f"{what}: expected ERROR ({P.ERROR_NAMES[code]}, command 0x{cmd:02x}), got frame 0x{frame.cmd:02x} "
            f"{frame.payload.hex()}")
        return frame

    async def infer(self, samples: list[list[int]], window: int) -> list[list[int]]:
        """Results of ``samples``, never more than ``window`` INFER frames unanswered."""
        fmt = self.board.fmt
        results: list[list[int]] = []
        sent = 0
        while len(results) < len(samples):
            burst = b""
            while sent < len(samples) and sent - len(results) < window:
                burst += P.encode_frame(P.INFER, fmt.pack_sample(samples[sent]))
                sent += 1
            if burst:
                await self.send(burst)
            frame = await self.frame(what=f"result {len(results)}")
            assert frame.cmd == P.INFER | P.REPLY, (
                f"INFER {len(results)} answered with 0x{frame.cmd:02x} {frame.payload.hex()} "
                f"({P.ERROR_NAMES.get(frame.error[0], '?') if frame.error else 'not an error'})")
            results.append(fmt.unpack_result(frame.payload))
        return results


async def start(dut, board: Board) -> Host:
    """Clock, UART models and a reset; returns at a falling edge after reset."""
    Clock(dut.clk, CLOCK_NS, unit="ns").start(start_high=False)
    dut.rst.value = 1
    host = Host(dut, board)
    for _ in range(RESET_CYCLES):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    host.sink.clear()
    return host


async def wait_selftest(dut, board: Board) -> int:
    """Cycles until ``selftest_state`` leaves RUNNING (bounded)."""
    bound = 64 + 8 * (board.latency + board.ii * board.fmt.words * max(board.self_test, 1))
    for cycle in range(bound):
        if int(dut.selftest_state.value) != P.SELFTEST_RUNNING:
            return cycle
        await FallingEdge(dut.clk)
    raise AssertionError(f"selftest_state still RUNNING {bound} cycles after reset")


def expected_selftest(board: Board) -> tuple[int, int, int]:
    """(state, mismatches, vectors compared) the self-test must end with."""
    if not board.self_test:
        return P.SELFTEST_NONE, 0, 0
    state = P.SELFTEST_FAIL if board.expect_mismatches else P.SELFTEST_PASS
    return state, board.expect_mismatches, board.self_test


# ---------------------------------------------------------------------------
# a reference of the request grammar, for garbled input
# ---------------------------------------------------------------------------

def parse_garbage(data: bytes, board: Board) -> tuple[list[tuple[int, int]], int | None] | None:
    """The error replies (code, command) that ``data`` must produce, per the protocol's frame rules,
    and the command byte of a frame left open at its end (None if none; 0 if only SYNC came).
    None if ``data`` happens to hold a good request (garbage should not)."""
    known = {P.INFO: 0, P.STATUS: 0, P.INFER: board.fmt.in_bytes}
    if board.bus_bytes:
        known.update({P.CFG_WRITE: None, P.CFG_READ: 3})

    def fits(cmd: int, length: int) -> bool:
        if cmd == P.CFG_WRITE:
            return length >= 2 + board.bus_bytes and (length - 2) % board.bus_bytes == 0
        return known[cmd] == length

    replies: list[tuple[int, int]] = []
    state, cmd, length, body = "hunt", 0, 0, bytearray()
    for b in data:
        if state == "hunt":
            if b == P.SYNC:
                state, cmd, body = "cmd", 0, bytearray()
        elif state == "cmd":
            cmd, state = b, "len_lo"
            body.append(b)
        elif state == "len_lo":
            length, state = b, "len_hi"
            body.append(b)
        elif state == "len_hi":
            length |= b << 8
            body.append(b)
            if cmd in known and not fits(cmd, length):
                replies.append((P.E_LENGTH, cmd))
                state = "hunt"
            else:
                state = "payload" if length else "check"
        elif state == "payload":
            body.append(b)
            if len(body) == 3 + length:
                state = "check"
        else:  # check
            if b != P.crc8(bytes(body)):
                replies.append((P.E_CRC, cmd))
            elif cmd not in known:
                replies.append((P.E_COMMAND, cmd))
            else:
                return None
            state = "hunt"
    return replies, (None if state == "hunt" else cmd)


def garbage(rng: random.Random, board: Board, n: int, syncs: int) -> tuple[bytes, list[tuple[int, int]], int | None]:
    """``n`` random bytes with ``syncs`` SYNC bytes (none if 0) and what they must produce."""
    while True:
        data = bytearray(rng.choice([b for b in range(256) if b != P.SYNC]) for _ in range(n))
        for pos in rng.sample(range(n), syncs):
            data[pos] = P.SYNC
        parsed = parse_garbage(bytes(data), board)
        if parsed is not None:
            return bytes(data), parsed[0], parsed[1]


def broken_frames(rng: random.Random, board: Board, n: int) -> tuple[bytes, list[tuple[int, int]], int | None]:
    """``n`` frame-shaped pieces of garbage (SYNC, a known or random command, a short length, random
    payload and CRC) and what they must produce."""
    commands = [P.INFO, P.STATUS, P.INFER, P.CFG_WRITE, P.CFG_READ]
    while True:
        data = bytearray()
        for _ in range(n):
            cmd = rng.choice(commands + [rng.randrange(256)])
            length = rng.randrange(min(board.fmt.in_bytes + 3, 256))
            data += bytes([P.SYNC, cmd, length, 0]) + without_sync(rng, length + 1)
        parsed = parse_garbage(bytes(data), board)
        if parsed is not None:
            return bytes(data), parsed[0], parsed[1]


def without_sync(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice([b for b in range(256) if b != P.SYNC]) for _ in range(n))


# ---------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------

@cocotb.test(skip="frames" not in GROUPS)
async def info_matches_manifest(dut):
    board = Board.from_env()
    host = await start(dut, board)
    info = await host.info()
    want = P.Info(board.fmt.in_bytes, board.fmt.out_bytes, board.window, board.latency, board.ii,
                  board.bus_bytes, board.self_test)
    REPORT.add("info", got=info.__dict__, expected=want.__dict__)
    assert info == want, f"INFO {info} differs from the board folder's {want}"
    await host.silence(8)


@cocotb.test(skip="frames" not in GROUPS)
async def infer_within_window(dut):
    board = Board.from_env()
    host = await start(dut, board)
    rng = random.Random(board.seed)
    samples = board.random_samples(board.samples, rng)
    inp = board.manifest["input"]
    width, signed = int(inp["width"]), bool(inp.get("signed", False))
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    count = int(inp["count"])
    samples[:2] = [[lo] * count, [hi] * count]
    golden = board.golden(samples)
    t0 = cocotb.utils.get_sim_time("ns")
    results = await host.infer(samples, board.window)
    elapsed = cocotb.utils.get_sim_time("ns") - t0
    bad = [k for k in range(len(samples)) if results[k] != golden[k]]
    REPORT.add("infer", samples=len(samples), mismatches=len(bad), sim_ns=elapsed)
    assert not bad, (f"{len(bad)} of {len(samples)} results differ; first: sample {bad[0]} {samples[bad[0]]}: "
                     f"board {results[bad[0]]}, golden {golden[bad[0]]}")
    status = await host.status()
    assert status.results == len(samples), f"STATUS counts {status.results} results, {len(samples)} were sent"
    await host.silence(8)


async def good_infer(host: Host, board: Board, rng: random.Random, after: str) -> None:
    sample = board.random_samples(1, rng)
    got = await host.infer(sample, 1)
    want = board.golden(sample)
    assert got == want, f"after {after}: INFER {sample[0]} gave {got[0]}, golden {want[0]}"


@cocotb.test(skip="frames" not in GROUPS)
async def errors_are_rejected_and_counted(dut):
    board = Board.from_env()
    host = await start(dut, board)
    rng = random.Random(board.seed + 1)
    fmt = board.fmt
    counts = {"bad_crc": 0, "bad_command": 0, "bad_length": 0, "timeouts": 0, "results": 0}
    name_of = {P.E_CRC: "bad_crc", P.E_COMMAND: "bad_command", P.E_LENGTH: "bad_length", P.E_TIMEOUT: "timeouts"}
    seen = []
    timeout_ns = (P.TIMEOUT_BYTES + 12) * host.byte_ns

    async def then_good(what: str) -> None:
        await good_infer(host, board, rng, what)
        counts["results"] += 1
        seen.append(what)

    # random bytes without SYNC: ignored, no reply at all
    await host.send(without_sync(rng, 40))
    await host.sent()
    await host.silence(P.TIMEOUT_BYTES + 8)
    await then_good("random bytes without SYNC")

    # random bytes with SYNCs: the replies the frame rules give, then a timeout of an open frame
    pieces = [garbage(rng, board, 40, 4), broken_frames(rng, board, 8)]
    for data, replies, open_cmd in pieces:
        await host.send(data)
        for code, cmd in replies:
            await host.expect_error(code, cmd, f"garbled bytes {data.hex()}")
            counts[name_of[code]] += 1
        if open_cmd is not None:
            await host.expect_error(P.E_TIMEOUT, open_cmd, f"the open frame at the end of garbled bytes {data.hex()}")
            counts["timeouts"] += 1
        await host.silence(4)
        await then_good(f"garbled bytes {data.hex()}")

    # a bad CRC: no result, ERROR CRC
    frame = bytearray(P.encode_frame(P.INFER, fmt.pack_sample(board.random_samples(1, rng)[0])))
    frame[-1] ^= 0x5A
    await host.send(frame)
    await host.expect_error(P.E_CRC, P.INFER, "an INFER with a bad CRC")
    counts["bad_crc"] += 1
    await host.silence(4)
    await then_good("a bad CRC")

    # an unknown command, with a payload and a good CRC
    await host.send(P.encode_frame(0x42, bytes([0x11, 0x22, 0x33])))
    await host.expect_error(P.E_COMMAND, 0x42, "an unknown command 0x42")
    counts["bad_command"] += 1
    await host.silence(4)
    await then_good("an unknown command")

    # bad lengths: answered at once (the rest of the frame holds no SYNC)
    for cmd, length in ((P.INFER, fmt.in_bytes + 1), (P.INFER, fmt.in_bytes - 1), (P.INFO, 1), (P.STATUS, 2)):
        if length < 0:
            continue
        while True:
            wrong = P.encode_frame(cmd, without_sync(rng, length))
            if P.SYNC not in wrong[1:]:
                break
        await host.send(wrong)
        await host.expect_error(P.E_LENGTH, cmd, f"command 0x{cmd:02x} with LEN {length}")
        counts["bad_length"] += 1
        await host.silence(4)
        await then_good(f"command 0x{cmd:02x} with a bad length")

    # an incomplete frame: dropped after TIMEOUT_BYTES byte times of silence, not before
    partial = P.encode_frame(P.INFER, fmt.pack_sample(board.random_samples(1, rng)[0]))[:-2]
    await host.send(partial)
    await host.sent()
    t_last = cocotb.utils.get_sim_time("ns")
    first = await host.byte(timeout_ns)
    assert first is not None, "no ERROR TIMEOUT for an incomplete INFER frame"
    waited = (cocotb.utils.get_sim_time("ns") - t_last) / host.byte_ns
    assert waited >= P.TIMEOUT_BYTES, f"an incomplete frame was dropped after {waited:.1f} byte times, before the timeout"
    rest = await host.frame(what="the ERROR TIMEOUT of an incomplete INFER", first=first)
    assert rest.error == (P.E_TIMEOUT, P.INFER), f"an incomplete INFER frame answered {rest}"
    counts["timeouts"] += 1
    await then_good("an incomplete frame")

    # a frame with a pause shorter than the timeout is still good
    sample = board.random_samples(1, rng)
    whole = P.encode_frame(P.INFER, fmt.pack_sample(sample[0]))
    await host.send(whole[:3])
    await host.sent()
    await Timer(P.TIMEOUT_BYTES // 2 * host.byte_ns, "ns")
    await host.send(whole[3:])
    frame = await host.frame(what="an INFER frame with a pause")
    assert frame.cmd == P.INFER | P.REPLY and fmt.unpack_result(frame.payload) == board.golden(sample)[0], (
        f"an INFER with a pause of {P.TIMEOUT_BYTES // 2} byte times answered {frame}")
    counts["results"] += 1

    status = await host.status()
    state, mismatches, done = expected_selftest(board)
    got = {k: getattr(status, k) for k in counts}
    REPORT.add("errors", counts=counts, status=status.__dict__, cases=seen)
    assert got == counts and status.overruns == 0, f"STATUS counters {status} differ from what was sent {counts}"
    assert (status.selftest, status.mismatches, status.selftest_done) == (state, mismatches, done), status
    await host.silence(8)


@cocotb.test(skip="frames" not in GROUPS)
async def overrun_burst(dut):
    """More INFER frames at once than the link holds: each gets exactly one reply (its result or
    ERROR OVERRUN), the results are those of the accepted vectors in order, and the link goes on."""
    board = Board.from_env()
    host = await start(dut, board)
    rng = random.Random(board.seed + 2)
    fmt = board.fmt
    in_frame, out_frame = fmt.in_bytes + 5, fmt.out_bytes + 5
    # the link can hold the input FIFO, the result FIFO, a vector in the core and a frame being sent
    holds = 2 * board.window + 2
    gain = 1.0 - in_frame / out_frame
    burst = int(holds / gain) + holds + 4 if gain > 0.05 else 2 * holds + 4
    samples = board.random_samples(burst, rng)
    golden = board.golden(samples)
    await host.send(b"".join(P.encode_frame(P.INFER, fmt.pack_sample(s)) for s in samples))
    results, errors, order = [], [], []
    for k in range(burst):
        frame = await host.frame(what=f"reply {k} of a burst of {burst} INFER frames")
        if frame.error is not None:
            assert frame.error == (P.E_OVERRUN, P.INFER), f"a burst of INFER frames answered {frame}"
            errors.append(frame.error)
            order.append("E")
        else:
            assert frame.cmd == P.INFER | P.REPLY, f"a burst of INFER frames answered {frame}"
            results.append(fmt.unpack_result(frame.payload))
            order.append("R")
    await host.silence(P.TIMEOUT_BYTES // 4)
    # the results are golden results of the burst, in order, the first `window` never dropped
    accepted, k = [], 0
    for r in results:
        while k < burst and golden[k] != r:
            k += 1
        assert k < burst, f"result {r} of a burst is not the golden result of a later vector of the burst"
        accepted.append(k)
        k += 1
    assert accepted[:board.window] == list(range(board.window)), (
        f"the first {board.window} vectors of a burst must be accepted; the results are of {accepted}")
    status = await host.status()
    REPORT.add("overrun", burst=burst, window=board.window, results=len(results), overruns=len(errors),
               accepted=accepted, order="".join(order), in_frame=in_frame, out_frame=out_frame,
               status=status.__dict__)
    assert (status.overruns, status.results) == (len(errors), len(results)), (
        f"STATUS {status}: {len(errors)} overruns and {len(results)} results were seen")
    if gain > 0.05:
        assert errors, f"a burst of {burst} INFER frames ({in_frame} bytes in, {out_frame} out) overran nothing"
    await good_infer(host, board, rng, "an overrun")


# ---------------------------------------------------------------------------
# self-test
# ---------------------------------------------------------------------------

@cocotb.test(skip="selftest" not in GROUPS)
async def selftest_result(dut):
    board = Board.from_env()
    host = await start(dut, board)
    state, mismatches, done = expected_selftest(board)
    first = int(dut.selftest_state.value)
    if board.self_test:
        assert first == P.SELFTEST_RUNNING, f"selftest_state {first} right after reset, not RUNNING"
    cycles = await wait_selftest(dut, board)
    pins = (int(dut.selftest_state.value), int(dut.mismatches.value))
    status = await host.status()
    REPORT.add("selftest", cycles=cycles, state=pins[0], mismatches=pins[1], status=status.__dict__,
               expected={"state": state, "mismatches": mismatches})
    assert pins == (state, mismatches), (
        f"self-test of {board.self_test} vectors: state {pins[0]} with {pins[1]} mismatches, expected state "
        f"{state} with {mismatches}")
    assert (status.selftest, status.mismatches, status.selftest_done) == (state, mismatches, done), (
        f"STATUS {status} differs from the pins (state {pins[0]}, {pins[1]} mismatches, {done} vectors)")
    if board.self_test:
        # the golden results the build embedded are those the core makes (bar the corrupted ones)
        codes, _ = selftest_samples(board.kind, board.qmodel, board.manifest, board.self_test, board.seed)
        some = [[int(v) for v in row] for row in codes[:2]]
        got = await host.infer(some, board.window)
        assert got == board.golden(some), f"self-test vectors through INFER gave {got}, golden {board.golden(some)}"
    await host.silence(8)


# ---------------------------------------------------------------------------
# pseudo-terminal bridge
# ---------------------------------------------------------------------------

@cocotb.test(skip="pty" not in GROUPS)
async def pty_bridge(dut):
    """Bytes from the pseudo-terminal go to ``rx``; bytes from ``tx`` go back, until the other side
    closes it or a bound is reached."""
    board = Board.from_env()
    fd = int(os.environ["RTLGEN_PTY_FD"])
    seconds = float(os.environ.get("RTLGEN_PTY_SECONDS", "600"))
    max_cycles = int(os.environ.get("RTLGEN_PTY_CYCLES", "0")) or None
    os.set_blocking(fd, False)
    host = await start(dut, board)
    await wait_selftest(dut, board)
    ready = os.environ.get("RTLGEN_PTY_READY")
    if ready:
        Path(ready).write_text("ready\n")
    poll_ns = host.byte_ns
    start_wall = time.monotonic()
    t0 = cocotb.utils.get_sim_time("ns")
    pending = b""
    stats = {"to_board": 0, "from_board": 0, "reason": ""}
    quiet = 0
    while True:
        if time.monotonic() - start_wall > seconds:
            stats["reason"] = f"wall-clock bound of {seconds:g} s"
            break
        if max_cycles and (cocotb.utils.get_sim_time("ns") - t0) / CLOCK_NS > max_cycles:
            stats["reason"] = f"bound of {max_cycles} cycles"
            break
        busy = not host.source.idle() or host.sink.active or not host.sink.empty() or bool(pending)
        if not busy and quiet > P.TIMEOUT_BYTES * 2:
            # nothing under way: wait for the host in wall-clock time instead of spinning the simulator
            select.select([fd], [], [], 0.002)
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            data = None
        except OSError:  # EIO: every slave descriptor is closed
            stats["reason"] = "the host side closed"
            break
        if data == b"":
            stats["reason"] = "the host side closed"
            break
        if data:
            host.source.write_nowait(data)
            stats["to_board"] += len(data)
        if not host.sink.empty():
            pending += bytes(host.sink.read_nowait())
        if pending:
            try:
                n = os.write(fd, pending)
            except BlockingIOError:
                n = 0
            except OSError:
                stats["reason"] = "the host side closed"
                break
            stats["from_board"] += n
            pending = pending[n:]
        quiet = 0 if (data or busy) else quiet + 1
        await Timer(poll_ns, "ns")
    stats["cycles"] = int((cocotb.utils.get_sim_time("ns") - t0) / CLOCK_NS)
    stats["seconds"] = round(time.monotonic() - start_wall, 3)
    REPORT.add("pty", **stats)
    cocotb.log.info("pty bridge: %s", stats)
