"""Layers with several inputs: residual ``add`` and ``concat``.

A model whose layers are not a plain chain lists, for every layer, the
layers it reads (``sources`` of :class:`~rtlgen.ir.model.FloatModel` and
:class:`~rtlgen.ir.model.QModel`; index ``-1`` is the model input).  Layers
stay in topological order and the last one gives the model output.

Add (``op == "add"``), on inputs ``x_1 .. x_k`` of ``n`` codes each with
fractional bits ``F_1 .. F_k``:
    ``y_j = cast_result(sum_i x_ij << (F - F_i))`` with ``F = max F_i``;
    the sum is exact.  Unset, the result type is the exact type of that sum.
Concat (``op == "concat"``), on inputs of ``n_1 .. n_k`` codes:
    ``y = [cast_result(x_1), .., cast_result(x_k)]`` (element ``j`` of input
    ``i`` cast from ``F_i``).  Concatenating feature maps along their
    channels is the concatenation of their flat C,H,W vectors.  Unset, the
    result type is the narrowest that holds every input exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..numerics.fixed import FixedType, exact_type, parse_type
from .model import layer_type

__all__ = ["Merge", "QMerge", "MERGE_KINDS"]

MERGE_KINDS = ("add", "concat")


@dataclass
class Merge:
    """A float-IR add or concat of the vectors of ``sizes`` elements (see the module docstring).

    ``shape``: the [C, H, W] / [C, L] of the result when the inputs are feature maps.
    """
    name: str
    kind: str
    sizes: tuple
    types: dict = field(default_factory=dict)
    shape: tuple | None = None

    @property
    def n_in(self) -> int:
        return int(self.sizes[0]) if self.kind == "add" else int(sum(self.sizes))

    @property
    def n_out(self) -> int:
        return self.n_in


@layer_type(*MERGE_KINDS)
@dataclass
class QMerge:
    """An add or concat with its input and result types (see the module docstring)."""
    name: str
    op: str
    in_types: tuple
    sizes: tuple
    result_type: FixedType

    @property
    def in_type(self) -> FixedType:
        """The type of the first input (the manifest's ``in_type``)."""
        return self.in_types[0]

    @property
    def n_in(self) -> int:
        return int(self.sizes[0]) if self.op == "add" else int(sum(self.sizes))

    @property
    def n_out(self) -> int:
        return self.n_in

    @property
    def frac(self) -> int:
        """Fractional bits of an add's exact sum."""
        return max(t.frac for t in self.in_types)

    def shifts(self) -> list[int]:
        """The left shift that aligns each input of an add to :attr:`frac`."""
        return [self.frac - t.frac for t in self.in_types]

    def sum_range(self, ranges=None) -> tuple[int, int]:
        """The codes (at :attr:`frac`) an add's sum can take, for input codes within ``ranges``
        (one ``(lo, hi)`` per input; their types' ranges by default)."""
        ranges = ranges or [(t.min_code, t.max_code) for t in self.in_types]
        lo = sum(int(r[0]) << s for r, s in zip(ranges, self.shifts()))
        hi = sum(int(r[1]) << s for r, s in zip(ranges, self.shifts()))
        return lo, hi

    def offsets(self) -> list[int]:
        """The first output element of each input of a concat."""
        out, at = [], 0
        for n in self.sizes:
            out.append(at)
            at += int(n)
        return out

    @staticmethod
    def exact_result(op: str, in_types) -> FixedType:
        """The result type when nothing sets one: exact (no rounding, no overflow)."""
        frac = max(t.frac for t in in_types)
        if op == "add":
            lo = sum(t.min_code << (frac - t.frac) for t in in_types)
            hi = sum(t.max_code << (frac - t.frac) for t in in_types)
        else:
            if all(t == in_types[0] for t in in_types):
                return in_types[0]
            lo = min(t.min_code << (frac - t.frac) for t in in_types)
            hi = max(t.max_code << (frac - t.frac) for t in in_types)
        return exact_type(lo, hi, frac)

    def to_dict(self) -> dict:
        return {"op": self.op, "name": self.name, "in_types": [str(t) for t in self.in_types],
                "sizes": [int(n) for n in self.sizes], "result_type": str(self.result_type)}

    @classmethod
    def from_dict(cls, d: dict) -> "QMerge":
        return cls(name=d["name"], op=d["op"], in_types=tuple(parse_type(t) for t in d["in_types"]),
                   sizes=tuple(int(n) for n in d["sizes"]), result_type=parse_type(d["result_type"]))

    def summary(self, multipliers: int) -> dict:
        """The layer's own fields of its manifest entry."""
        return {"op": self.op, "multipliers": multipliers, "reuse_factor": 1,
                "in_types": [str(t) for t in self.in_types], "sizes": [int(n) for n in self.sizes]}
