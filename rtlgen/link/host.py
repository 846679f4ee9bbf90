"""The host side of the link: stream samples to a board and read its results.

:class:`BoardLink` speaks :mod:`rtlgen.link.protocol` over any byte stream
with pyserial's interface (a serial port, a pseudo-terminal bridged to a
simulation, ``loop://``).  :meth:`BoardLink.infer` keeps at most the
device's ``window`` ``INFER`` frames unanswered, so no vector is dropped
at any baud rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ..errors import RtlgenError
from . import protocol as P

__all__ = ["BoardLink", "LinkStats", "open_port"]

#: seconds without a byte from the board before a request is given up
REPLY_TIMEOUT = 2.0


def open_port(port: str, baud: int):
    """A pyserial port (a device path or a pyserial URL such as ``loop://``)."""
    try:
        import serial
    except ImportError:
        raise RtlgenError("rtlgen board run needs pyserial: pip install pyserial (or run `make setup`)") from None
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=0.05, write_timeout=REPLY_TIMEOUT)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise RtlgenError(f"cannot open the serial port {port}: {exc}; check --port (e.g. /dev/ttyUSB1 for "
                          "an FTDI bridge's second channel) and that this user may open it") from None


@dataclass
class LinkStats:
    samples: int
    seconds: float
    errors: list[tuple[int, int]]

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


class BoardLink:
    """Requests to one board over ``port`` (an object with ``read``/``write``/``flush``)."""

    def __init__(self, port, reply_timeout: float = REPLY_TIMEOUT):
        self.port = port
        self.reply_timeout = reply_timeout
        self._decoder = P.FrameDecoder()
        self._frames: list[P.Frame] = []

    def _read_frame(self) -> P.Frame:
        deadline = time.monotonic() + self.reply_timeout
        while not self._frames:
            data = self.port.read(4096)
            if data:
                self._frames.extend(self._decoder.feed(data))
                deadline = time.monotonic() + self.reply_timeout
            elif time.monotonic() > deadline:
                raise RtlgenError(f"the board sent no reply for {self.reply_timeout:g} s: is the bitstream "
                                  "loaded, the port right and the baud rate the board's?")
        return self._frames.pop(0)

    def request(self, cmd: int, payload: bytes = b"") -> P.Frame:
        """Send one request and return its reply (an error reply raises)."""
        self.port.write(P.encode_frame(cmd, payload))
        self.port.flush()
        frame = self._read_frame()
        if frame.error is not None:
            code, rejected = frame.error
            raise RtlgenError(f"the board rejected command 0x{rejected:02x}: {P.ERROR_NAMES.get(code, code)}")
        if frame.cmd != cmd | P.REPLY:
            raise RtlgenError(f"the board answered command 0x{cmd:02x} with 0x{frame.cmd:02x}")
        return frame

    def info(self) -> P.Info:
        try:
            return P.Info.unpack(self.request(P.INFO).payload)
        except ValueError as exc:
            raise RtlgenError(f"the board's INFO reply is not understood: {exc}") from None

    def status(self) -> P.Status:
        return P.Status.unpack(self.request(P.STATUS).payload)

    def cfg_write(self, addr: int, words: list[int], bus_bytes: int) -> None:
        self.request(P.CFG_WRITE, addr.to_bytes(2, "little")
                     + b"".join(int(w).to_bytes(bus_bytes, "little") for w in words))

    def cfg_read(self, addr: int, count: int, bus_bytes: int) -> list[int]:
        data = self.request(P.CFG_READ, addr.to_bytes(2, "little") + bytes([count])).payload
        return [int.from_bytes(data[k * bus_bytes:(k + 1) * bus_bytes], "little") for k in range(count)]

    def infer(self, payloads: list[bytes], window: int,
              on_result: Callable[[int], None] | None = None) -> tuple[list[bytes], LinkStats]:
        """Send every payload as an ``INFER`` frame, at most ``window`` unanswered; the result payloads
        in order.  ``on_result(k)`` is called as result ``k`` arrives."""
        results: list[bytes] = []
        errors: list[tuple[int, int]] = []
        sent = 0
        start = time.monotonic()
        frames = [P.encode_frame(P.INFER, p) for p in payloads]
        while len(results) + len(errors) < len(frames):
            burst = []
            while sent < len(frames) and sent - len(results) - len(errors) < window:
                burst.append(frames[sent])
                sent += 1
            if burst:
                self.port.write(b"".join(burst))
                self.port.flush()
            frame = self._read_frame()
            if frame.error is not None:
                errors.append(frame.error)
                continue
            if frame.cmd != P.INFER | P.REPLY:
                raise RtlgenError(f"the board answered an INFER with 0x{frame.cmd:02x}")
            results.append(frame.payload)
            if on_result is not None:
                on_result(len(results))
        return results, LinkStats(len(results), time.monotonic() - start, errors)
