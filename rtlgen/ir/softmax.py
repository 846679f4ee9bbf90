"""Classifier outputs: softmax from lookup tables, and argmax.

Softmax (``op == "softmax"``), the numerically stable form with two tables,
on a vector ``x`` of ``n`` codes (all integer arithmetic, exact but for the
table entries):

1. ``d_i = m - x_i >= 0`` with ``m = max(x)`` (codes of the input type);
2. ``e_i = exp_table[k_i]`` with ``k_i = min(d_i >> s, N - 1)`` where
   ``2**s`` input codes make one step ``R / N`` of the table
   (``N = table_size``, ``R = table_range``, powers of two), and
   ``exp_table[k] = q_exp(exp(-k * R / N))`` (so the largest element gets
   ``exp(0) = 1``), in the ``exp`` type;
3. ``S = sum_i e_i`` (exact), and ``r = inv_table[j]`` with
   ``j = min(S >> t, M - 1)`` where ``2**t`` codes of ``S`` make one step
   ``P / M`` of the reciprocal table (``M = inv_table_size``, ``P`` the
   least power of two >= ``n``, the largest sum), and
   ``inv_table[j] = q_inv(1 / max(j * P / M, 1))`` in the ``inv`` type
   (``S >= 1`` always: the largest element contributes 1);
4. ``y_i = cast_result(e_i * r)`` (the product exact).

The tables take the values at the left end of each step, as the element-wise
tables do; hls4ml's ``softmax`` (``stable`` implementation) has the same
structure with its own table parameters (``exp_table_t``, ``inv_table_t``,
``table_size``).

Argmax (``op == "argmax"``): the index of the largest input code (the lowest
index among equal ones), as one unsigned integer code of ``ceil(log2 n)``
bits (at least 1).  It is what ``argmax: true`` makes of a softmax (the
class index is the same), and what an ONNX ``ArgMax`` becomes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics.fixed import FixedType, parse_type, quantize
from .model import layer_type, table_index

__all__ = ["QSoftmax", "QArgmax", "index_type"]


def index_type(n: int) -> FixedType:
    """The type of a class index among ``n`` classes: an unsigned integer."""
    width = max(1, (int(n) - 1).bit_length())
    return FixedType(width, width, False)


def _log2(value) -> int:
    mantissa, exponent = np.frexp(float(value))
    assert mantissa == 0.5, value
    return int(exponent) - 1


@layer_type("softmax")
@dataclass
class QSoftmax:
    """A softmax over ``size`` inputs (see the module docstring)."""
    name: str
    size: int
    in_type: FixedType
    result_type: FixedType
    exp_type: FixedType
    inv_type: FixedType
    table_size: int = 1024
    table_range: float = 8.0
    inv_table_size: int = 1024
    op: str = "softmax"

    @property
    def n_in(self) -> int:
        return self.size

    @property
    def n_out(self) -> int:
        return self.size

    # -- the exp table ---------------------------------------------------------

    def exp_shift(self) -> int:
        """``s``: input codes per exp-table step are ``2**s`` (negative: a step is a fraction of a code)."""
        return _log2(self.table_range) - _log2(self.table_size) + self.in_type.frac

    def exp_table(self) -> np.ndarray:
        steps = np.arange(self.table_size) * (self.table_range / self.table_size)
        return quantize(np.exp(-steps), self.exp_type)

    def exp_index(self, d, where):
        """Table index of the distances ``d >= 0`` (numpy or Amaranth, see :func:`~rtlgen.ir.model.table_index`)."""
        return table_index(d, self.exp_shift(), self.table_size, where, nonnegative=True)

    # -- the reciprocal table --------------------------------------------------

    @property
    def max_sum(self) -> int:
        """``P``: the least power of two >= ``size`` (no sum of ``size`` values <= 1 exceeds it)."""
        return 1 << max(0, (self.size - 1).bit_length())

    def inv_shift(self) -> int:
        """``t``: codes of the sum (``exp`` fraction bits) per reciprocal-table step are ``2**t``."""
        return _log2(self.max_sum) - _log2(self.inv_table_size) + self.exp_type.frac

    def inv_table(self) -> np.ndarray:
        points = np.maximum(np.arange(self.inv_table_size) * (self.max_sum / self.inv_table_size), 1.0)
        return quantize(1.0 / points, self.inv_type)

    def inv_index(self, total, where):
        """Table index of the sum ``total`` of the exp entries (numpy or Amaranth)."""
        return table_index(total, self.inv_shift(), self.inv_table_size, where, nonnegative=True)

    @property
    def product_frac(self) -> int:
        return self.exp_type.frac + self.inv_type.frac

    def to_dict(self) -> dict:
        return {"op": "softmax", "name": self.name, "size": self.size, "in_type": str(self.in_type),
                "result_type": str(self.result_type), "exp_type": str(self.exp_type),
                "inv_type": str(self.inv_type), "table_size": self.table_size,
                "table_range": self.table_range, "inv_table_size": self.inv_table_size}

    @classmethod
    def from_dict(cls, d: dict) -> "QSoftmax":
        return cls(name=d["name"], size=int(d["size"]), in_type=parse_type(d["in_type"]),
                   result_type=parse_type(d["result_type"]), exp_type=parse_type(d["exp_type"]),
                   inv_type=parse_type(d["inv_type"]), table_size=int(d["table_size"]),
                   table_range=float(d["table_range"]), inv_table_size=int(d["inv_table_size"]))

    def summary(self, multipliers: int) -> dict:
        return {"op": "softmax", "multipliers": multipliers, "reuse_factor": 1, "exp": str(self.exp_type),
                "inv": str(self.inv_type), "table_size": self.table_size, "table_range": self.table_range,
                "inv_table_size": self.inv_table_size}


@layer_type("argmax")
@dataclass
class QArgmax:
    """The index of the largest of ``size`` inputs (see the module docstring)."""
    name: str
    size: int
    in_type: FixedType
    result_type: FixedType
    op: str = "argmax"

    @property
    def n_in(self) -> int:
        return self.size

    @property
    def n_out(self) -> int:
        return 1

    def to_dict(self) -> dict:
        return {"op": "argmax", "name": self.name, "size": self.size, "in_type": str(self.in_type),
                "result_type": str(self.result_type)}

    @classmethod
    def from_dict(cls, d: dict) -> "QArgmax":
        return cls(name=d["name"], size=int(d["size"]), in_type=parse_type(d["in_type"]),
                   result_type=parse_type(d["result_type"]))

    def summary(self, multipliers: int) -> dict:
        return {"op": "argmax", "multipliers": multipliers, "reuse_factor": 1}
