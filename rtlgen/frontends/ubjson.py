"""UBJSON (the xgboost ``.ubj`` model format) read in Python."""

from __future__ import annotations

import struct

__all__ = ["UBJSONError", "read_ubjson"]


class UBJSONError(ValueError):
    """The bytes are not one complete UBJSON value."""


#: fixed-size number markers: struct format (big-endian)
_NUMBERS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q", b"d": ">f", b"D": ">d"}


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise UBJSONError(f"the data ends at byte {len(self.data)}, inside a value that needs "
                              f"{n} bytes from byte {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def marker(self) -> bytes:
        m = self.take(1)
        while m == b"N":            # no-op
            m = self.take(1)
        return m

    def at_end(self, end: bytes) -> bool:
        """Whether the next marker (past no-ops) closes the container; if so, it is consumed."""
        while self.data[self.pos:self.pos + 1] == b"N":
            self.pos += 1
        if self.data[self.pos:self.pos + 1] == end:
            self.pos += 1
            return True
        return False

    def count(self) -> int:
        m = self.marker()
        if m not in (b"i", b"U", b"I", b"l", b"L"):
            raise UBJSONError(f"a length at byte {self.pos - 1} has type {m!r}, not an integer type")
        n = self.value(m)
        if n < 0:
            raise UBJSONError(f"negative length {n} at byte {self.pos}")
        return n

    def string(self) -> str:
        raw = self.take(self.count())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UBJSONError(f"a string is not UTF-8 ({exc})") from None

    def value(self, m: bytes):
        fmt = _NUMBERS.get(m)
        if fmt is not None:
            return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        if m == b"Z":
            return None
        if m == b"T":
            return True
        if m == b"F":
            return False
        if m == b"C":
            return self.take(1).decode("latin-1")
        if m == b"S":
            return self.string()
        if m == b"H":
            text = self.string()
            try:
                return int(text)
            except ValueError:
                return float(text)
        if m == b"[":
            return self.container(b"]", False)
        if m == b"{":
            return self.container(b"}", True)
        raise UBJSONError(f"unknown UBJSON marker {m!r} at byte {self.pos - 1}")

    def container(self, end: bytes, keyed: bool):
        kind = size = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            kind = self.take(1)
            if self.marker() != b"#":
                raise UBJSONError(f"a typed container at byte {self.pos - 1} has no count")
            size = self.count()
        elif self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            size = self.count()
        if size is not None:
            fmt = _NUMBERS.get(kind) if kind is not None and not keyed else None
            if fmt is not None:                  # a typed number array: one read
                raw = self.take(struct.calcsize(fmt) * size)
                return list(struct.unpack(f">{size}{fmt[1]}", raw))
            if keyed:
                return {self.string(): self.value(kind or self.marker()) for _ in range(size)}
            return [self.value(kind or self.marker()) for _ in range(size)]
        out: dict | list = {} if keyed else []
        while not self.at_end(end):
            if keyed:
                key = self.string()
                out[key] = self.value(self.marker())
            else:
                out.append(self.value(self.marker()))
        return out


def read_ubjson(data: bytes):
    """The value encoded by ``data`` (one UBJSON value, nothing after it)."""
    reader = _Reader(bytes(data))
    out = reader.value(reader.marker())
    if reader.pos != len(reader.data):
        raise UBJSONError(f"{len(reader.data) - reader.pos} bytes after the value")
    return out
