"""I2C masters for Amaranth testbenches of the I2C target and of cores behind it.

* :class:`I2CMaster` clocks bits interactively against a running core
  (``scl_i``/``sda_i``/``sda_oe`` ports), a fixed number of system clock
  cycles per SCL phase;
* :class:`Wave` builds a whole transaction in advance as a per-cycle
  waveform of SCL and of the master's SDA drive, with standard-mode
  :class:`Timing` converted to system clock cycles; :func:`write_txn` and
  :func:`read_txn` add the usual transactions to it.

The line is the wired AND of the master's SDA and the target (``sda_oe``
pulls it low).  Neither master supports clock stretching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class I2CMaster:
    """A bit-level standard-mode I2C master for an Amaranth testbench.

    ``half`` system clock cycles per SCL phase; the master changes SDA
    ``lag`` cycles after it drives SCL low.  The line is the wired AND of
    the master's SDA and the target (``sda_oe`` pulls it low).
    """

    def __init__(self, ctx, net, half=24, lag=6):
        self.ctx, self.net, self.half, self.lag = ctx, net, half, lag
        self.sda = 1
        self.busy = False     # inside a transaction (SCL high after the last bit)

    async def _hold(self, scl, sda, n, sample_at=None):
        sampled = None
        for k in range(n):
            self.ctx.set(self.net.scl_i, scl)
            self.ctx.set(self.net.sda_i, sda & (1 - self.ctx.get(self.net.sda_oe)))
            if k == sample_at:
                sampled = sda & (1 - self.ctx.get(self.net.sda_oe))
            await self.ctx.tick()
        self.sda = sda
        return sampled

    async def bit(self, value: int) -> int:
        """Clock one bit (1 releases SDA); returns the line level sampled mid-high."""
        await self._hold(0, self.sda, self.lag)
        await self._hold(0, value, self.half - self.lag)
        return await self._hold(1, value, self.half, sample_at=self.half // 2)

    async def idle(self, cycles: int = 20):
        """Release both lines for ``cycles`` system clock cycles."""
        self.ctx.set(self.net.scl_i, 1)
        self.ctx.set(self.net.sda_i, 1)
        for _ in range(cycles):
            await self.ctx.tick()

    async def write(self, address: int, payload: bytes) -> list[bool]:
        """One write transaction ``S A+W payload... P``; the ACK of every byte."""
        await self.start()
        acks = [await self.send(address << 1)] + [await self.send(b) for b in payload]
        await self.stop()
        return acks

    async def start(self):
        if self.busy:              # repeated start: SCL low, release SDA, SCL high
            await self._hold(0, self.sda, self.lag)
            await self._hold(0, 1, self.half - self.lag)
        await self._hold(1, 1, self.half)
        await self._hold(1, 0, self.half)
        self.sda, self.busy = 0, True

    async def stop(self):
        await self._hold(0, self.sda, self.lag)
        await self._hold(0, 0, self.half - self.lag)
        await self._hold(1, 0, self.half)
        await self._hold(1, 1, 2 * self.half)
        self.busy = False

    async def send(self, byte: int) -> bool:
        for k in range(7, -1, -1):
            await self.bit((byte >> k) & 1)
        return await self.bit(1) == 0        # ACK

    async def receive(self, ack: bool) -> int:
        value = 0
        for _ in range(8):
            value = (value << 1) | await self.bit(1)
        await self.bit(0 if ack else 1)
        return value


# ---------------------------------------------------------------------------
# waveform master
# ---------------------------------------------------------------------------

def cycles(ns: float, clk_hz: float) -> int:
    return max(1, math.ceil(ns * clk_hz / 1e9))


@dataclass
class Timing:
    """Standard-mode bus timing in system clock cycles."""
    clk_hz: float
    low: int = 0
    high: int = 0
    hd_sta: int = 0
    su_sta: int = 0
    su_sto: int = 0
    buf: int = 0
    #: cycles after SCL falls at which the master changes SDA (negative: before)
    sda_at: int = 1

    def __post_init__(self):
        c = self.clk_hz
        self.low = self.low or cycles(4700, c)
        self.high = self.high or cycles(4000, c)
        self.hd_sta = self.hd_sta or cycles(4000, c)
        self.su_sta = self.su_sta or cycles(4700, c)
        self.su_sto = self.su_sto or cycles(4000, c)
        self.buf = self.buf or cycles(4700, c)


@dataclass
class Wave:
    """Per-cycle SCL and master SDA, with the cycles where the master samples SDA."""
    timing: Timing
    scl: list = field(default_factory=list)
    sda_changes: list = field(default_factory=list)   # (cycle, level)
    samples: list = field(default_factory=list)       # (cycle, tag)
    busy: bool = False                                # between START and STOP

    @property
    def now(self) -> int:
        return len(self.scl)

    def _scl(self, level: int, n: int):
        self.scl.extend([level] * n)

    def _sda(self, level: int, at: int):
        self.sda_changes.append((at, level))

    def _setup_at(self) -> int:
        """When SDA is set up for a START or STOP: inside the SCL low phase."""
        return min(max(0, self.timing.sda_at), self.timing.low - 1)

    def idle(self, n: int):
        self._sda(1, self.now)
        self._scl(1, n)

    def start(self):
        """START from idle (SCL high) or repeated START (SCL low)."""
        t = self.timing
        if self.busy:      # repeated START: the last clock left SCL high, SDA maybe held low
            self._sda(1, self.now + self._setup_at())
            self._scl(0, t.low)
            self._scl(1, t.su_sta)
        self._sda(0, self.now)
        self._scl(1, t.hd_sta)
        self.busy = True

    def bit(self, level: int, tag=None):
        """One SCL clock with the master driving ``level`` (1 releases SDA)."""
        t = self.timing
        self._sda(level, self.now + t.sda_at)
        self._scl(0, t.low)
        if tag is not None:
            self.samples.append((self.now + t.high // 2, tag))
        self._scl(1, t.high)

    def byte(self, value: int, tag):
        for k in range(7, -1, -1):
            self.bit((value >> k) & 1)
        self.bit(1, tag)                       # released: the target may ACK

    def read_byte(self, ack: bool, tag):
        for k in range(8):
            self.bit(1, (tag, k))
        self.bit(0 if ack else 1)

    def stop(self):
        t = self.timing
        self._sda(0, self.now + self._setup_at())
        self._scl(0, t.low)
        self._scl(1, t.su_sto)
        self._sda(1, self.now)
        self._scl(1, t.buf)
        self.busy = False

    def sda(self) -> list:
        out, level = [], 1
        changes = sorted(self.sda_changes, key=lambda c: c[0])
        k = 0
        for cyc in range(self.now):
            while k < len(changes) and changes[k][0] <= cyc:
                level = changes[k][1]
                k += 1
            out.append(level)
        return out


def words_to_bytes(words, width):
    out = []
    for w in words:
        out += [(w >> (8 * k)) & 0xFF for k in range(width // 8 - 1, -1, -1)]
    return out


def write_txn(wave: Wave, addr7: int, payload: list, tag: str, extra_bits=()):
    """addr7+W then ``payload`` bytes (register address first), then partial bits."""
    wave.byte(addr7 << 1, (tag, "addr"))
    for k, b in enumerate(payload):
        wave.byte(b, (tag, k))
    for bit in extra_bits:
        wave.bit(bit)


def read_txn(wave: Wave, addr7: int, n: int, tag: str):
    wave.byte((addr7 << 1) | 1, (tag, "addr"))
    for k in range(n):
        wave.read_byte(k < n - 1, (tag, k))
