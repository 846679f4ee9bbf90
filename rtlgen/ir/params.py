"""Reprogrammable parameter sets: what a core keeps in registers.

A quantized model whose parameters are stored (``storage: register`` or
``tmr``) describes them as :class:`ParamSet` objects, one per layer of a
network (weights, biases) or per set of a forest (thresholds; leaves and
base scores).  Each set holds one or more :class:`ParamGroup` of words of
one fixed-point type, in word order.  The configuration bus map
(:mod:`rtlgen.hw.storage`), the hardware banks and the bus driver
(:mod:`rtlgen.emit.regmap`) all work from these, whatever the model kind.

Both :class:`~rtlgen.ir.model.QModel` and :class:`~rtlgen.ir.forest.QForest`
implement

``param_sets() -> list[ParamSet]``
    the stored sets, in bus order;
``with_param_codes({set name: (codes of group 0, codes of group 1, ...)})``
    a copy of the model holding other codes (for the golden model);
``word_places(param_set) -> [[place of each word] for each group]``
    where each word of a stored set sits in the model, as a dict the
    register map adds to the word's entry (a forest's ``tree``, ``node``
    and ``feature``, or ``class``; nothing for a network's words, which
    their index places).  ``param_set`` is a :class:`ParamSet` or any set
    with its ``name`` and ``groups`` of ``codes`` (the bus layout's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType

__all__ = ["STORAGE_MODES", "GROUP_KINDS", "GroupNames", "ParamGroup", "ParamSet", "check_storage", "check_tmr_bits"]

STORAGE_MODES = ("constant", "register", "tmr")

#: group kind -> (key in the register map and port name of its bank, word signal prefix)
GROUP_KINDS = {
    "weight": ("weights", "w"),
    "bias": ("bias", "b"),
    "threshold": ("thresholds", "t"),
    "leaf": ("leaves", "l"),
    "base": ("base", "base"),
}


class GroupNames:
    """The names of a group of ``self.kind`` (a key of :data:`GROUP_KINDS`)."""

    @property
    def key(self) -> str:
        """Its name in the register map and the port of its bank."""
        return GROUP_KINDS[self.kind][0]

    @property
    def prefix(self) -> str:
        """The prefix of its word signals (``<prefix><k>``)."""
        return GROUP_KINDS[self.kind][1]


@dataclass(frozen=True)
class ParamGroup(GroupNames):
    """``codes`` (trained, in word order) of parameters of type ``type``."""
    kind: str            # a key of GROUP_KINDS
    type: FixedType
    codes: tuple


@dataclass(frozen=True)
class ParamSet:
    """One stored set: a layer of a network, or the thresholds or leaves of a forest."""
    index: int           # position in the model (layer index; forest sets count from 0)
    name: str
    op: str              # "dense", "conv", "thresholds" or "leaves": names the word order
    storage: str         # "register" or "tmr"
    tmr_bits: int | None
    groups: tuple
    #: the set's array shapes as the register map names them (a dense layer's ``matrix_shape``
    #: [n_in, n_out], a conv layer's ``kernel_shape``; none for a forest's sets)
    shapes: dict = field(default_factory=dict)


def check_storage(value, where: str) -> str:
    """A validated storage mode."""
    if value not in STORAGE_MODES:
        raise RtlgenError(f"{where}: storage must be one of {', '.join(STORAGE_MODES)}, got {value!r}")
    return value


def check_tmr_bits(value, storage: str, widest: int, where: str) -> int | None:
    """A validated ``tmr_bits`` (None: every bit of a word is triplicated)."""
    if value is None:
        return None
    if storage != "tmr":
        raise RtlgenError(f"{where}: tmr_bits applies only with storage: tmr (the storage is "
                          f"{storage!r}); remove it or set storage: tmr")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= int(value) <= widest:
        raise RtlgenError(f"{where}: tmr_bits must be an integer from 1 to {widest} (the widest stored "
                          f"word), got {value!r}")
    return int(value)
