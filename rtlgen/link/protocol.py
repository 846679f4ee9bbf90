"""The host link's frame format: the one definition both sides use.

The gateware (:mod:`rtlgen.link.gateware`), the host program
(:mod:`rtlgen.link.host`) and the testbenches encode and decode frames with
this module only.

Frame
-----
Every frame, in both directions, is::

    SYNC (0xA5) | CMD | LEN (2 bytes, little-endian) | PAYLOAD (LEN bytes) | CRC

``CRC`` is CRC-8 (polynomial x^8 + x^2 + x + 1 = 0x07, initial value 0, no
reflection, no final XOR) over ``CMD``, both ``LEN`` bytes and the payload.

Commands (host -> device) and replies (device -> host)
------------------------------------------------------
Every request frame that the device receives intact gets exactly one reply:
its answer (``CMD | 0x80``) or an error frame (:data:`ERROR`).

``INFO`` (0x01, no payload) -> 0x81 with :class:`Info` (:data:`INFO_BYTES` bytes).

``INFER`` (0x02, payload: one input vector, ``in_bytes`` bytes) -> 0x82 with
the result vector (``out_bytes`` bytes).  Results come back in the order of
the ``INFER`` frames.  A vector is the core's ``in_data`` word, element ``k``
at bits ``[k*W, (k+1)*W)`` in two's complement, sent least significant byte
first and zero-padded to whole bytes (:func:`pack_vector`).

``STATUS`` (0x03, no payload) -> 0x83 with :class:`Status`.

``CFG_WRITE`` (0x04, payload: word address (2 bytes) then ``n >= 1`` words of
``bus_bytes`` bytes each) -> 0x84 with no payload, once every word is written
to consecutive addresses of the core's configuration bus.

``CFG_READ`` (0x05, payload: word address (2 bytes), count ``n`` (1 byte,
1..255)) -> 0x85 with ``n`` words of ``bus_bytes`` bytes.

``ERROR`` (0xEE): payload ``code`` (1 byte, :data:`ERROR_NAMES`) and the
command byte of the rejected frame (1 byte).

Flow control
------------
The device holds ``window`` input vectors (:class:`Info`).  A host keeps at
most ``window`` ``INFER`` frames without a reply; then no vector is ever
dropped, at any baud rate the UART runs at.  A device whose input queue is
full answers ``ERROR`` ``OVERRUN`` and drops that vector.  A frame that stops
for longer than the device's timeout (:data:`TIMEOUT_BYTES` byte times) is
dropped with ``ERROR`` ``TIMEOUT``; a bad CRC, an unknown command or a length
that does not fit the command are answered with their error codes once the
frame's last byte (by its ``LEN``) has arrived or, for a bad length, at once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["SYNC", "INFO", "INFER", "STATUS", "CFG_WRITE", "CFG_READ", "ERROR", "REPLY",
           "E_CRC", "E_COMMAND", "E_LENGTH", "E_OVERRUN", "E_TIMEOUT", "ERROR_NAMES",
           "TIMEOUT_BYTES", "MAGIC", "VERSION", "INFO_BYTES", "STATUS_BYTES",
           "SELFTEST_NONE", "SELFTEST_RUNNING", "SELFTEST_PASS", "SELFTEST_FAIL",
           "crc8", "encode_frame", "Frame", "FrameDecoder", "Info", "Status",
           "vector_bytes", "pack_vector", "unpack_vector", "SampleFormat"]

SYNC = 0xA5

INFO = 0x01
INFER = 0x02
STATUS = 0x03
CFG_WRITE = 0x04
CFG_READ = 0x05
ERROR = 0xEE
#: the reply command of a request command
REPLY = 0x80

E_CRC = 1
E_COMMAND = 2
E_LENGTH = 3
E_OVERRUN = 4
E_TIMEOUT = 5
ERROR_NAMES = {E_CRC: "bad CRC", E_COMMAND: "unknown command", E_LENGTH: "bad length",
               E_OVERRUN: "input queue full (overrun)", E_TIMEOUT: "frame timed out"}

#: a frame that pauses this many byte times between two of its bytes is dropped
TIMEOUT_BYTES = 64

MAGIC = b"RTLG"
VERSION = 1

SELFTEST_NONE = 0
SELFTEST_RUNNING = 1
SELFTEST_PASS = 2
SELFTEST_FAIL = 3


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8, polynomial 0x07, initial value ``crc``, MSB first."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame."""
    if not 0 <= cmd <= 0xFF:
        raise ValueError(f"command {cmd} is not a byte")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes is longer than 65535")
    body = bytes([cmd]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([SYNC]) + body + bytes([crc8(body)])


@dataclass(frozen=True)
class Frame:
    cmd: int
    payload: bytes

    @property
    def error(self) -> tuple[int, int] | None:
        """``(code, rejected command)`` of an error frame, else None."""
        if self.cmd != ERROR:
            return None
        return (self.payload[0] if self.payload else 0, self.payload[1] if len(self.payload) > 1 else 0)


class FrameDecoder:
    """Finds frames in a byte stream.

    :meth:`feed` takes any number of bytes and returns the complete frames
    with a good CRC.  Bytes before a ``SYNC`` are skipped; a frame with a bad
    CRC is counted in ``bad_frames`` and the search restarts at the byte after
    its ``SYNC``.  ``max_payload`` bounds ``LEN`` (a longer one is taken for a
    false ``SYNC``).
    """

    def __init__(self, max_payload: int = 0xFFFF):
        self._buf = bytearray()
        self.max_payload = max_payload
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while True:
            start = self._buf.find(bytes([SYNC]))
            if start < 0:
                self._buf.clear()
                return frames
            del self._buf[:start]
            if len(self._buf) < 4:
                return frames
            length = self._buf[2] | (self._buf[3] << 8)
            if length > self.max_payload:
                self.bad_frames += 1
                del self._buf[:1]
                continue
            if len(self._buf) < 5 + length:
                return frames
            body = bytes(self._buf[1:4 + length])
            if crc8(body) != self._buf[4 + length]:
                self.bad_frames += 1
                del self._buf[:1]
                continue
            frames.append(Frame(body[0], body[3:]))
            del self._buf[:5 + length]


_INFO = struct.Struct("<4sBHHBHHBH")
INFO_BYTES = _INFO.size


@dataclass(frozen=True)
class Info:
    """What the device says of its core (the ``INFO`` reply).

    ``in_bytes``/``out_bytes``: bytes of one input/result vector;
    ``window``: input vectors the device queues; ``latency``/``ii``: of the
    core, in core clock cycles; ``bus_bytes``: bytes of a configuration word
    (0: no configuration bus over the link); ``selftest_vectors``: vectors
    embedded for the self-test (0: none).
    """

    in_bytes: int
    out_bytes: int
    window: int
    latency: int
    ii: int
    bus_bytes: int
    selftest_vectors: int
    version: int = VERSION

    def pack(self) -> bytes:
        return _INFO.pack(MAGIC, self.version, self.in_bytes, self.out_bytes, self.window,
                          self.latency, self.ii, self.bus_bytes, self.selftest_vectors)

    @classmethod
    def unpack(cls, payload: bytes) -> "Info":
        if len(payload) != INFO_BYTES:
            raise ValueError(f"INFO reply of {len(payload)} bytes, expected {INFO_BYTES}")
        magic, version, ib, ob, window, latency, ii, bb, st = _INFO.unpack(payload)
        if magic != MAGIC:
            raise ValueError(f"INFO reply starts {magic!r}, not {MAGIC!r}: not an rtlgen board")
        return cls(ib, ob, window, latency, ii, bb, st, version)


_STATUS = struct.Struct("<BHHHHHHHI")
STATUS_BYTES = _STATUS.size


@dataclass(frozen=True)
class Status:
    """The ``STATUS`` reply: the self-test result and the link's error counters.

    ``selftest``: one of ``SELFTEST_*``; ``mismatches``: result vectors of the
    self-test that differed from the embedded golden ones; ``selftest_done``:
    vectors the self-test has compared; the ``E_*`` counters (saturating at
    65535); ``results``: results sent (wrapping at 2**32).
    """

    selftest: int
    mismatches: int
    selftest_done: int
    bad_crc: int
    bad_command: int
    bad_length: int
    overruns: int
    timeouts: int
    results: int

    def pack(self) -> bytes:
        return _STATUS.pack(self.selftest, self.mismatches, self.selftest_done, self.bad_crc,
                            self.bad_command, self.bad_length, self.overruns, self.timeouts,
                            self.results)

    @classmethod
    def unpack(cls, payload: bytes) -> "Status":
        if len(payload) != STATUS_BYTES:
            raise ValueError(f"STATUS reply of {len(payload)} bytes, expected {STATUS_BYTES}")
        return cls(*_STATUS.unpack(payload))


def vector_bytes(count: int, width: int) -> int:
    """Bytes of a vector of ``count`` codes of ``width`` bits."""
    return (count * width + 7) // 8


def pack_vector(codes, width: int) -> bytes:
    """The bytes of one vector: code ``k`` at bits ``[k*W, (k+1)*W)``, two's complement, LSB first."""
    mask = (1 << width) - 1
    value = 0
    codes = list(codes)
    for k, c in enumerate(codes):
        value |= (int(c) & mask) << (k * width)
    return value.to_bytes(vector_bytes(len(codes), width), "little")


def unpack_vector(data: bytes, count: int, width: int, signed: bool) -> list[int]:
    """The codes of one vector (inverse of :func:`pack_vector`)."""
    value = int.from_bytes(data, "little")
    mask = (1 << width) - 1
    codes = [(value >> (k * width)) & mask for k in range(count)]
    if signed:
        top = 1 << (width - 1)
        codes = [c - (1 << width) if c & top else c for c in codes]
    return codes


@dataclass(frozen=True)
class SampleFormat:
    """How one sample (the input of one result) and one result travel in ``INFER`` frames.

    A core takes a sample as ``words`` input words of ``word_codes`` codes
    (one word for a parallel core; one pixel of ``channels`` codes per word,
    in raster order, for a streamed one).  The ``INFER`` payload is the
    sample's words in order, each :func:`pack_vector`-packed to
    ``word_bytes`` bytes; the reply payload is the result vector.
    """

    in_width: int
    in_signed: bool
    word_codes: int
    words: int
    out_width: int
    out_signed: bool
    out_count: int

    @classmethod
    def from_manifest(cls, manifest: dict) -> "SampleFormat":
        inp, out = manifest["input"], manifest["output"]
        count = int(inp["count"])
        stream = manifest.get("stream") if manifest.get("io") == "stream" else None
        channels, pixels = (int(stream["channels"]), int(stream["pixels"])) if stream else (count, 1)
        if channels * pixels != count:
            raise ValueError(f"manifest: {channels} channels x {pixels} pixels is not {count} inputs")
        return cls(int(inp["width"]), bool(inp.get("signed", False)), channels, pixels,
                   int(out["width"]), bool(out.get("signed", False)), int(out["count"]))

    @property
    def word_bytes(self) -> int:
        return vector_bytes(self.word_codes, self.in_width)

    @property
    def in_bytes(self) -> int:
        """Bytes of an ``INFER`` payload."""
        return self.words * self.word_bytes

    @property
    def out_bytes(self) -> int:
        return vector_bytes(self.out_count, self.out_width)

    def word_codes_of(self, sample) -> list[list[int]]:
        """The codes of each input word of a flat (C, H, W) sample: word ``p`` holds ``sample[c*words + p]``."""
        sample = [int(v) for v in sample]
        if len(sample) != self.word_codes * self.words:
            raise ValueError(f"a sample has {self.word_codes * self.words} codes, got {len(sample)}")
        return [[sample[c * self.words + p] for c in range(self.word_codes)] for p in range(self.words)]

    def word_values(self, sample) -> list[int]:
        """The ``in_data`` values of a sample's words."""
        return [int.from_bytes(pack_vector(w, self.in_width), "little") for w in self.word_codes_of(sample)]

    def pack_sample(self, sample) -> bytes:
        return b"".join(pack_vector(w, self.in_width) for w in self.word_codes_of(sample))

    def result_value(self, result) -> int:
        """The ``out_data`` value of a result vector of codes."""
        return int.from_bytes(pack_vector(result, self.out_width), "little")

    def unpack_result(self, payload: bytes) -> list[int]:
        if len(payload) != self.out_bytes:
            raise ValueError(f"a result is {self.out_bytes} bytes, got {len(payload)}")
        return unpack_vector(payload, self.out_count, self.out_width, self.out_signed)
