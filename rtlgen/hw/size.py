"""Up-front size estimate of a core, and refusal of one that cannot be built.

Elaborating a core and converting it to Verilog (Amaranth builds a netlist
object per operation, then RTLIL text, then Yosys writes Verilog) costs
memory in proportion to the hardware: a 256x256 dense layer peaks above
3 GB.  :func:`check_fits` estimates the peak before any of that starts and
raises :class:`~rtlgen.errors.RtlgenError` when it exceeds the memory
available, naming the layer and the reuse factor that would make it fit.

The estimate (bytes of peak resident memory of the building process)::

    BASE + sum over the dense and conv layers of
        width factor (input width + weight width, 1 at 9 + 8 bits) times
            PER_MULTIPLIER_R1 * multipliers                              (reuse_factor 1)
            PER_MULTIPLIER * multipliers + PER_POSITION * positions      (reuse_factor > 1)
    + PER_ELEMENT * elements   (max-pool comparators, activations, line-buffer registers)

    a shift-and-add layer (``arithmetic: shift_add``) costs
        width factor times PER_ADDER * adders (of its adder graph)

    forests: BASE + PER_FOREST_NODE * nodes (internal nodes and leaves)

``positions`` are the matrix entries that get a multiplier (nonzero
constant weights, or every stored weight); with a reuse factor R each of
the ``ceil(positions / R)`` multipliers has R-input multiplexers.

Measured (peak RSS, ``ru_maxrss``, of one process running
:func:`rtlgen.emit.build.generate_core` on one constant-weight dense layer with
random nonzero weights; inputs ``fixed<9,2>``, weights and biases
``fixed<8,3>``, results ``fixed<16,6>``; Amaranth 0.5.10 with its built-in
Yosys, Python 3.11, x86-64; times on a busy 2-core machine; MB and GB are
2**20 and 2**30 bytes, KB 2**10):

=========================  ===========  =========  ========  ======
layer                      multipliers  positions  peak RSS  time
=========================  ===========  =========  ========  ======
64x64, R=1                       4,096      4,096    240 MB    24 s
128x128, R=1                    16,384     16,384    830 MB   106 s
32x512, R=1                     16,384     16,384    850 MB   218 s
256x256, R=1                    65,536     65,536   3.10 GB   330 s
128x128, R=16                    1,024     16,384    312 MB    39 s
128x128, R=4                     4,096     16,384    466 MB    60 s
256x256, R=16                    4,096     65,536   1.05 GB   185 s
512x512, R=64                    4,096    262,144   3.49 GB   784 s
128x128, R=1, fixed<16,6>       16,384     16,384   1.03 GB   163 s
=========================  ===========  =========  ========  ======

Least-squares fits: the square R=1 layers, 45.8 MB + 48.9 KB per
multiplier (residuals under 0.7 %); the R>1 layers, 55.4 MB + 48.6 KB per
multiplier + 13.0 KB per position (residuals under 1.8 %).  Wider weights
cost more: 63.1 KB per multiplier with 16-bit weights, i.e. about
18.7 KB + 1.78 KB per bit of (input width + weight width).  The constants
below are these fits plus about 5 %; the shipped jet MLP (2,980
multipliers) is estimated at 246 MB and peaks at 221 MB.  ``PER_ELEMENT``
(max-pool comparators, activations, line-buffer registers) is not measured:
it is taken as one multiplexer position, and such elements are few.
``PER_FOREST_NODE`` (every node of every tree) is measured on xgboost
forests (see its comment).

Available memory: the smaller of ``MemAvailable`` in ``/proc/meminfo``
(else ``os.sysconf`` free pages) and the room left under a cgroup memory
limit (containers).  The environment variable ``RTLGEN_MEMORY_LIMIT_GB``
(a number of GB, 2**30 bytes) replaces it, e.g. to make the check
deterministic in tests or to allow swap on purpose; ``0`` or ``none``
disables the check.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RtlgenError
from ..ir.arithmetic import adder_estimate
from ..ir.conv import QConv, QMaxPool
from ..ir.model import QActivation, QDense

__all__ = ["LayerSize", "SizeEstimate", "estimate_model", "estimate_forest", "available_memory",
           "check_fits", "check_forest_fits", "MEMORY_LIMIT_ENV", "format_bytes"]

KIB = 1024
GIB = 1 << 30
MEMORY_LIMIT_ENV = "RTLGEN_MEMORY_LIMIT_GB"

#: the fits above, each raised by about 5 %
BASE = 64 * (1 << 20)
PER_MULTIPLIER_R1 = 51.5 * KIB
PER_MULTIPLIER = 51 * KIB
PER_POSITION = 13.7 * KIB
PER_ELEMENT = 13.7 * KIB
#: one adder of a shift-and-add graph (see the module docstring)
PER_ADDER = 40 * KIB
#: xgboost forests of depth 6 (make_classification data, constant storage): 200 trees,
#: 11,316 nodes: +66 MB over the loaded process (6.0 KB a node, 11 s); 800 trees,
#: 22,380 nodes: +174 MB (8.0 KB a node, 34 s).  A stored 200-tree forest was still
#: elaborating after 20 minutes at +110 MB (at least 8 KB a node).
PER_FOREST_NODE = 10 * KIB
#: the R=1 cost per multiplier is WIDTH_FIXED + WIDTH_PER_BIT * (input + weight width);
#: the measured layers had 9 + 8 = 17 bits (48.9 KB), 9 + 16 = 25 bits gave 63.1 KB
WIDTH_FIXED = 18.7
WIDTH_PER_BIT = 1.78
REFERENCE_PRODUCT_BITS = 17
#: an estimate above this is shown in the elaboration line
SHOW_ABOVE = 1 * GIB


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (or MB below one GB), binary units."""
    if n >= GIB:
        return f"{n / GIB:.1f} GB"
    return f"{n / (1 << 20):.0f} MB"


@dataclass
class LayerSize:
    """The estimated build cost of one layer."""
    name: str
    multipliers: int = 0
    positions: int = 0
    elements: int = 0
    reuse_factor: int = 1
    #: the largest reuse factor the layer takes (None: it has no reuse factor)
    reuse_limit: int | None = None
    #: input width + weight width: the width of a product before its range is known
    product_bits: int = REFERENCE_PRODUCT_BITS
    #: the adders of a shift-and-add layer (None: it has multipliers)
    adders: int | None = None

    @property
    def bytes(self) -> float:
        """Estimated memory of this layer's share of the build."""
        return self.bytes_at(self.reuse_factor)

    def bytes_at(self, reuse_factor: int) -> float:
        """The estimate of this layer were its reuse factor ``reuse_factor``."""
        if self.adders is not None and reuse_factor == self.reuse_factor:
            return PER_ADDER * self.adders * _width_factor(self.product_bits) + PER_ELEMENT * self.elements
        multipliers = _ceil_div(self.positions, reuse_factor) if reuse_factor != self.reuse_factor \
            else self.multipliers
        if reuse_factor <= 1:
            cost = PER_MULTIPLIER_R1 * multipliers
        else:
            cost = PER_MULTIPLIER * multipliers + PER_POSITION * self.positions
        return cost * _width_factor(self.product_bits) + PER_ELEMENT * self.elements


def _width_factor(product_bits: int) -> float:
    """How much a multiplier of ``product_bits`` costs relative to the measured (17-bit) ones."""
    return (WIDTH_FIXED + WIDTH_PER_BIT * product_bits) / (WIDTH_FIXED + WIDTH_PER_BIT * REFERENCE_PRODUCT_BITS)


@dataclass
class SizeEstimate:
    """The estimated build cost of a core: per layer and in total."""
    layers: list = field(default_factory=list)
    extra_bytes: float = 0.0

    @property
    def multipliers(self) -> int:
        return sum(layer.multipliers for layer in self.layers)

    @property
    def adders(self) -> int:
        return sum(layer.adders or 0 for layer in self.layers)

    @property
    def bytes(self) -> float:
        """Estimated peak memory of building the core, in bytes."""
        return BASE + self.extra_bytes + sum(layer.bytes for layer in self.layers)

    def describe(self) -> str:
        """``5 layers, 4,234 multipliers`` (and the memory when above :data:`SHOW_ABOVE`)."""
        text = f"{len(self.layers)} layer{'s' if len(self.layers) != 1 else ''}, {self.multipliers:,} multipliers"
        if self.adders:
            text += f", {self.adders:,} adders"
        if self.bytes > SHOW_ABOVE:
            text += f", about {format_bytes(self.bytes)} of memory"
        return text


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b) if a else 0


def layer_size(layer) -> LayerSize:
    """The :class:`LayerSize` of one quantized layer (dense, conv, pool, activation)."""
    name = getattr(layer, "name", "?")
    if isinstance(layer, QConv) and layer.io == "stream":
        c_in, taps = int(layer.in_shape[0]), math.prod(layer.kernel)
        if layer.op == "conv":
            positions = int((layer.kernel_codes != 0).sum()) if layer.kernel_codes is not None else layer.nonzero
        elif layer.varying_divisor:
            positions = c_in
        else:
            positions = c_in * taps
        r = max(1, int(layer.reuse_factor))
        return LayerSize(name, _ceil_div(positions, r), positions, _line_buffer(layer), r, layer.reuse_limit,
                         _product_bits(layer))
    if isinstance(layer, QDense):
        positions = layer.positions
        r = max(1, int(layer.reuse_factor))
        if layer.arithmetic == "shift_add":
            return LayerSize(name, 0, positions, 0, r, max(1, positions), _product_bits(layer),
                             adders=adder_estimate(layer))
        return LayerSize(name, _ceil_div(positions, r), positions, 0, r, max(1, positions), _product_bits(layer))
    if isinstance(layer, QMaxPool):
        comparators = layer.n_out * max(0, math.prod(layer.kernel) - 1)
        if layer.io == "stream":
            comparators = int(layer.in_shape[0]) * max(0, math.prod(layer.kernel) - 1) + _line_buffer(layer)
        return LayerSize(name, elements=comparators)
    if isinstance(layer, QActivation):
        return LayerSize(name, elements=int(layer.size))
    return LayerSize(name, elements=int(getattr(layer, "n_out", 0) or 0))


def _product_bits(layer) -> int:
    return int(layer.in_type.width) + int(layer.weight_type.width)


def _line_buffer(layer) -> int:
    """Pixels x channels held by a streamed layer's line buffer."""
    shape, kernel, pads = layer.in_shape, layer.kernel, layer.pads
    if len(shape) == 2:   # [C, L]: one row
        return int(shape[0]) * int(kernel[0])
    width = int(shape[2]) + int(pads[1]) + int(pads[3])
    return int(shape[0]) * ((int(kernel[0]) - 1) * width + int(kernel[1]))


def estimate_model(model) -> SizeEstimate:
    """The :class:`SizeEstimate` of building the core of a quantized model."""
    return SizeEstimate([layer_size(layer) for layer in model.layers])


def estimate_forest(qf) -> SizeEstimate:
    """The :class:`SizeEstimate` of building the core of a quantized forest."""
    nodes = sum(len(tree.feature) for tree in qf.trees)
    return SizeEstimate([], extra_bytes=PER_FOREST_NODE * nodes)


# -- available memory -------------------------------------------------------

def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (None: no limit)."""
    rooms = []
    limit = _read_int("/sys/fs/cgroup/memory.max")            # cgroup v2
    if limit is not None:
        rooms.append(limit - (_read_int("/sys/fs/cgroup/memory.current") or 0))
    limit = _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")   # cgroup v1
    if limit is not None and limit < (1 << 60):
        rooms.append(limit - (_read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes") or 0))
    return max(0, min(rooms)) if rooms else None


def _system_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * KIB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def available_memory() -> tuple[float | None, str]:
    """(bytes available for a build, where the figure comes from); None when unknown or disabled."""
    override = os.environ.get(MEMORY_LIMIT_ENV)
    if override is not None and override.strip():
        text = override.strip().lower()
        if text in ("0", "none", "off"):
            return None, f"{MEMORY_LIMIT_ENV}={override}"
        try:
            value = float(text)
        except ValueError:
            raise RtlgenError(f"{MEMORY_LIMIT_ENV}={override!r} is not a number of GB: "
                              "set it to e.g. 8, or to 0 to disable the memory check") from None
        if not value > 0:
            raise RtlgenError(f"{MEMORY_LIMIT_ENV}={override!r} must be a positive number of GB (0 disables)")
        return value * GIB, f"{MEMORY_LIMIT_ENV}={override}"
    figures = [v for v in (_system_available(), _cgroup_room()) if v is not None]
    if not figures:
        return None, "unknown"
    return float(min(figures)), "available"


# -- the checks ---------------------------------------------------------------

def _needed_reuse(estimate: SizeEstimate, worst: LayerSize, room: float) -> int | None:
    """The smallest reuse factor of ``worst`` that brings the estimate under ``room`` (None: none does)."""
    others = estimate.bytes - worst.bytes
    limit = worst.reuse_limit or 1
    lo = worst.reuse_factor + 1
    if lo > limit:
        return None

    def fits(reuse_factor: int) -> bool:
        return others + worst.bytes_at(reuse_factor) <= room

    if not fits(limit):
        return None
    hi = limit
    while lo < hi:   # the cost falls as the reuse factor grows
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def check_fits(model) -> SizeEstimate:
    """Estimate the memory of building ``model``'s core; refuse it when that exceeds what is available.

    Returns the :class:`SizeEstimate`.  Raises :class:`RtlgenError` (one
    line: the layer, its multipliers, the estimate, the memory available
    and the reuse factor that would fit) when the estimate is larger than
    :func:`available_memory`.
    """
    estimate = estimate_model(model)
    room, source = available_memory()
    if room is None or estimate.bytes <= room:
        return estimate
    worst = max(estimate.layers, key=lambda layer: layer.bytes)
    where = "available" if source == "available" else f"allowed by {source}"
    what = (f"{worst.adders:,} adders ({worst.positions:,} weights as shift_add)" if worst.adders is not None
            else f"{worst.multipliers:,} multipliers ({worst.positions:,} weights at reuse_factor "
                 f"{worst.reuse_factor})")
    head = (f"layer {worst.name!r}: {what} make the core need about {format_bytes(estimate.bytes)} of "
            f"memory to build, but {format_bytes(room)} is {where}")
    if worst.reuse_limit is None:
        raise RtlgenError(f"{head}: make the layer smaller, or build on a machine with more memory")
    needed = _needed_reuse(estimate, worst, room)
    if needed is None:
        raise RtlgenError(f"{head}; even the largest reuse_factor ({worst.reuse_limit}) does not fit: "
                          "make the layer smaller (prune weights), or build on a machine with more memory")
    if worst.adders is not None:
        raise RtlgenError(f"{head}: build layer {worst.name!r} with multipliers at reuse_factor {needed} or "
                          f"more to fit (config: layers: {{{json.dumps(worst.name)}: {{arithmetic: multipliers, "
                          f"reuse_factor: {needed}}}}})")
    raise RtlgenError(f"{head}: raise reuse_factor of layer {worst.name!r} to at least {needed} to fit "
                      f"(config: layers: {{{json.dumps(worst.name)}: {{reuse_factor: {needed}}}}})")


def check_forest_fits(qf) -> SizeEstimate:
    """As :func:`check_fits` for a quantized forest (no reuse factor helps much: fewer or shallower trees)."""
    estimate = estimate_forest(qf)
    room, source = available_memory()
    if room is None or estimate.bytes <= room:
        return estimate
    nodes = sum(len(tree.feature) for tree in qf.trees)
    where = "available" if source == "available" else f"allowed by {source}"
    raise RtlgenError(f"forest {qf.name!r}: {len(qf.trees):,} trees with {nodes:,} nodes make the core need "
                      f"about {format_bytes(estimate.bytes)} of memory to build, but {format_bytes(room)} is "
                      f"{where}: use fewer or shallower trees, or build on a machine with more memory")
