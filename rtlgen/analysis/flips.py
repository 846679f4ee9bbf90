"""The shared pieces of the bit-flip experiments: what a flipped word reads back as, and which
input vectors are used.

Both sensitivity analyses (:mod:`rtlgen.analysis.sensitivity` for
networks, :mod:`rtlgen.analysis.forest_sensitivity` for decision forests)
flip one bit of one stored word at a time (:func:`flip_bits`) and run the
golden model on a seeded sample of the data (:func:`sample_rows`, at most
:data:`DEFAULT_SAMPLES` rows by default).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType

__all__ = ["DEFAULT_SAMPLES", "WIDE_BITS", "flip_bits", "sample_rows", "sample_inputs"]

#: input vectors used by default (a seeded sample when the data set is larger)
DEFAULT_SAMPLES = 256
#: above this width codes are handled as Python integers
WIDE_BITS = 62


def flip_bits(codes, bits, t: FixedType) -> np.ndarray:
    """``codes`` of type ``t`` with bit ``bits`` of their ``W``-bit word inverted.

    The word is the two's complement (signed) or plain binary (unsigned)
    representation in ``t.width`` bits; the result is read back in the same
    type, so it is again a code of ``t``.  ``codes`` and ``bits``
    broadcast.
    """
    width = t.width
    bits_arr = np.asarray(bits)
    if bits_arr.size and (bits_arr.min() < 0 or bits_arr.max() >= width):
        raise RtlgenError(f"bit index out of range for {t}: bits are 0..{width - 1}")
    wide = width > WIDE_BITS or np.asarray(codes).dtype == object
    if wide:
        arr = np.asarray(codes, dtype=object)
        flip = np.vectorize(lambda b: 1 << int(b), otypes=[object])(bits_arr) if bits_arr.ndim else 1 << int(bits_arr)
    else:
        arr = np.asarray(codes, dtype=np.int64)
        flip = np.left_shift(np.int64(1), bits_arr.astype(np.int64))
    word = (arr & ((1 << width) - 1)) ^ flip
    if t.signed:
        word = word - ((word >> (width - 1)) & 1) * (1 << width)
    return word


def sample_rows(n: int, max_samples: Optional[int], seed: int = 0) -> np.ndarray:
    """Indices of the rows analysed: all ``n``, or a sorted seeded sample of ``max_samples``."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def sample_inputs(x: np.ndarray, max_samples: Optional[int], seed: int = 0) -> np.ndarray:
    """The rows of the (checked) input codes ``x`` an analysis uses (:func:`sample_rows`); refuses an
    empty data set and a ``max_samples`` below 1."""
    if x.shape[0] == 0:
        raise RtlgenError("the data set has no input vectors")
    if max_samples is not None and max_samples < 1:
        raise RtlgenError(f"max_samples must be at least 1, got {max_samples}")
    return x[sample_rows(x.shape[0], max_samples, seed)]
