"""Bit flips written from the word's binary text, independently of ``rtlgen.analysis``."""

from __future__ import annotations

from rtlgen.numerics.fixed import FixedType


def flip_by_string(code: int, bit: int, t: FixedType) -> int:
    """Flip through the binary string of the word (independent of flip_bits)."""
    text = list(format(code % (1 << t.width), f"0{t.width}b"))
    pos = t.width - 1 - bit
    text[pos] = "1" if text[pos] == "0" else "0"
    value = int("".join(text), 2)
    if t.signed and text[0] == "1":
        value -= 1 << t.width
    return value
