"""The model intermediate representation.

Two levels:

* the *float* IR (:class:`FloatModel`) is what front ends produce: layers
  with real-valued weights, no precision yet;
* the *quantized* IR (:class:`QModel`) is the float IR with the
  configuration applied (:mod:`rtlgen.ir.config`): every layer knows its
  input, weight, bias, result (and optional accumulator) types, its integer
  weight codes and its reuse factor.  The golden model and the hardware
  generators both consume only the quantized IR.

Layer semantics (the contract both implement exactly):

Dense
    ``y_j = cast_result(sum_i x_i * w_ij + b_j)`` with ``w``/``b`` already
    quantized; the sum is exact.  With an ``accum`` type (WRAP only) every
    product and the bias are first cast to ``accum`` and the sum wraps in
    ``accum``, as hls4ml's Latency strategy does.
Activation
    ``relu``: ``y = cast_result(max(0, x))``; ``linear``: ``y = cast_result(x)``;
    ``leaky_relu``/``prelu``: ``y = cast_result(x >= 0 ? x : a * x)`` with the slope
    ``a`` (one, or one per channel) quantized to the layer's ``weight`` type, the
    product exact; ``clip``: ``y = cast_result(min(max(x, lo), hi))`` with exact
    bounds; ``sigmoid``/``tanh``: a table of ``table_size`` entries over
    ``[-table_range, table_range)`` (:meth:`QActivation.table_codes`);
    ``square``: ``y = cast_result(x * x)``, exact before the cast.
Conv, MaxPool, AveragePool
    on feature maps flattened in C,H,W order; see :mod:`rtlgen.ir.conv`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Optional, Union

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType, parse_type, quantize
from .params import ParamGroup, ParamSet

#: quantized layer classes by their serialized ``op`` (filled by :func:`layer_type`)
LAYER_TYPES: dict[str, type] = {}


def table_index(x, shift: int, size: int, where, nonnegative: bool = False):
    """The entry of a table of ``size`` entries that the integer ``x`` (>= 0 over the table) selects:
    ``x >> shift`` (``x << -shift`` for a negative shift), clamped to ``[0, size - 1]`` (only from
    above when ``x`` is ``nonnegative`` by construction).  ``x`` is a
    numpy array or an Amaranth value, ``where`` is ``np.where`` or ``Mux``; the golden model and the
    hardware of every table (activations, softmax) index through this one function."""
    y = x >> shift if shift >= 0 else x << -shift
    if not nonnegative:
        y = where(y < 0, 0, y)
    return where(y > size - 1, size - 1, y)


def layer_type(*ops: str):
    """Class decorator: the quantized layer class that (de)serializes layers of these ``op`` names."""
    def register(cls):
        for op in ops:
            LAYER_TYPES[op] = cls
        return cls
    return register

ACTIVATIONS = ("relu", "linear", "leaky_relu", "prelu", "clip", "sigmoid", "tanh", "square")
#: activations computed by a lookup table
TABLE_ACTIVATIONS = {"sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "tanh": np.tanh}
#: the table parameters a table activation gets when nothing sets them (as hls4ml's defaults)
TABLE_DEFAULTS = {"sigmoid": (1024, 8.0), "tanh": (1024, 4.0)}


# ---------------------------------------------------------------------------
# float IR
# ---------------------------------------------------------------------------

@dataclass
class Dense:
    """A fully connected layer: ``weight`` has shape [n_in, n_out].

    ``types`` holds the element types the model itself fixes (its
    quantizers, read by the front end), keyed like the per-layer
    configuration (``weight``, ``bias``, ``result``); the configuration
    overrides them (:func:`rtlgen.ir.config.apply_config`).
    """
    name: str
    weight: np.ndarray
    bias: np.ndarray
    types: dict = field(default_factory=dict)

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[1])


@dataclass
class Activation:
    """An element-wise activation (one of :data:`ACTIVATIONS`).

    ``slope``: the float slope of ``leaky_relu`` (one value) or ``prelu``
    (one per channel); ``bounds``: the float ``(lo, hi)`` of ``clip``.
    """
    name: str
    kind: str
    size: int = 0  # vector length; set by the front ends
    types: dict = field(default_factory=dict)   # ``result``, from the model's quantizer (see Dense)
    slope: Optional[np.ndarray] = None
    bounds: Optional[tuple] = None


FloatLayer = Union[Dense, Activation]


class LayerGraph:
    """Which layers each layer of a model reads (shared by :class:`FloatModel` and :class:`QModel`).

    ``sources`` is None for a chain (layer ``k`` reads layer ``k - 1``, layer
    0 the input); otherwise it holds, per layer, the tuple of the layers it
    reads, ``-1`` meaning the model input.  Layers are in topological order
    and the last gives the output; only ``add``/``concat`` layers
    (:mod:`rtlgen.ir.merge`) read more than one.
    """

    def inputs_of(self, k: int) -> tuple:
        """The layers that layer ``k`` reads (``-1``: the model input)."""
        return tuple(self.sources[k]) if self.sources is not None else (k - 1,)

    def readers(self, k: int) -> list:
        """The layers that read the output of layer ``k`` (``-1``: the model input), in order;
        a layer reading it twice is listed twice."""
        return [j for j in range(len(self.layers)) for s in self.inputs_of(j) if s == k]

    @property
    def is_chain(self) -> bool:
        return self.sources is None or all(tuple(s) == (k - 1,) for k, s in enumerate(self.sources))

    def check_sources(self) -> None:
        """Raise :class:`~rtlgen.errors.RtlgenError` unless ``sources`` is a valid DAG description."""
        if self.sources is None:
            return
        if len(self.sources) != len(self.layers):
            raise RtlgenError(f"model {self.name!r}: {len(self.sources)} source lists for {len(self.layers)} layers")
        for k, (layer, src) in enumerate(zip(self.layers, self.sources)):
            name = getattr(layer, "name", k)
            if not src or any(not -1 <= int(s) < k for s in src):
                raise RtlgenError(f"layer {name!r}: reads {list(src)}; a layer reads earlier layers "
                                  "(or -1, the input) only")
            if len(src) > 1 and getattr(layer, "op", getattr(layer, "kind", None)) not in ("add", "concat"):
                raise RtlgenError(f"layer {name!r}: only add and concat layers read several inputs")
        for k in range(len(self.layers) - 1):
            if not self.readers(k):
                raise RtlgenError(f"layer {getattr(self.layers[k], 'name', k)!r}: its output is not used; "
                                  "every layer but the last must feed a later one")


@dataclass
class FloatModel(LayerGraph):
    """Layers on a flat input vector of ``n_in`` elements: a chain, or a DAG (:class:`LayerGraph`)."""
    name: str
    n_in: int
    layers: list = field(default_factory=list)
    #: [C, H, W] or [C, L] when the input is a feature map (flattened in that order)
    input_shape: Optional[tuple] = None
    #: the input element type when the model quantizes its input itself (else the configuration's)
    input_type: Optional[FixedType] = None
    #: the layers each layer reads (see :class:`LayerGraph`); None for a chain
    sources: Optional[list] = None

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]


# ---------------------------------------------------------------------------
# quantized IR
# ---------------------------------------------------------------------------

@layer_type("dense")
@dataclass
class QDense:
    """A dense layer with its precision fixed.

    ``weights`` holds integer codes of ``weight_type`` with shape
    [n_in, n_out]; ``bias`` holds codes of ``bias_type``.

    ``storage`` says where the hardware keeps the parameters: ``constant``
    (folded into the logic; zero weights cost nothing), ``register`` (one
    register word per parameter, reset to the trained code and writable on
    the configuration bus) or ``tmr`` (as ``register``, with the
    ``tmr_bits`` most significant bits of every word triplicated, voted,
    checked and scrubbed; ``None`` means the whole word).  A parameter is a
    weight (a matrix entry of a dense layer, a kernel tap of a convolution)
    or a bias (per output, per output channel of a convolution);
    :meth:`param_index` maps the matrix onto them.
    """
    name: str
    in_type: FixedType
    weight_type: FixedType
    bias_type: FixedType
    result_type: FixedType
    weights: np.ndarray
    bias: np.ndarray
    reuse_factor: int = 1
    accum_type: Optional[FixedType] = None
    adder_levels: int = 2
    #: adder levels a ``shift_add`` graph may add above its plain trees to save adders
    adder_depth_slack: int = 0
    #: outputs per ``shift_add`` sharing group (None: the whole layer is one graph)
    share_columns: Optional[int] = None
    op: str = "dense"
    storage: str = "constant"
    tmr_bits: Optional[int] = None
    #: how the constant matrix-vector product is built: ``multipliers`` or ``shift_add``
    arithmetic: str = "multipliers"
    #: where a time-multiplexed multiplier (reuse_factor > 1, constant weights) reads its
    #: weights: ``lut`` (a multiplexer of constants) or ``bram`` (a ROM for block RAM)
    weight_rom: str = "lut"
    #: the clock target that places the registers of a ``shift_add`` layer (None: ``adder_levels``)
    clock_mhz: Optional[float] = None
    #: the delay model of that target (:data:`rtlgen.numerics.pipeline.DELAY_MODELS`)
    timing_target: str = "ecp5"
    #: the lowest input code the layer can see when it is above ``in_type``'s (0 after a
    #: ReLU whose result cannot wrap negative); None: ``in_type.min_code``
    in_lo: Optional[int] = None

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[1])

    @property
    def nonzero(self) -> int:
        """Number of weights that are not zero after quantization."""
        return int(np.count_nonzero(self.weights))

    @property
    def stored(self) -> bool:
        """True when the parameters live in registers (``register`` or ``tmr``)."""
        return self.storage != "constant"

    @property
    def positions(self) -> int:
        """Matrix entries that get a multiplier (see :meth:`structure`)."""
        return int(np.count_nonzero(self.structure()))

    @property
    def multipliers(self) -> int:
        """Multipliers the hardware instantiates: ceil(positions / R) (none with ``shift_add``)."""
        if self.arithmetic == "shift_add":
            return 0
        nz = self.positions
        return -(-nz // self.reuse_factor) if nz else 0

    def structure(self) -> np.ndarray:
        """Boolean [n_in, n_out]: the matrix entries the hardware multiplies.

        Constant weights: the nonzero ones.  Stored weights: every entry
        backed by a parameter word (all of a dense matrix; the taps of a
        convolution that fall inside the input), zero or not.
        """
        if not self.stored:
            return np.asarray(self.weights) != 0
        return self.param_index()[0] >= 0

    def param_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The parameter word behind each matrix entry and each bias.

        Returns ``(windex, bindex)``: ``windex`` [n_in, n_out] holds the
        weight word number (-1 where no parameter feeds the entry),
        ``bindex`` [n_out] the bias word number.  Word order of a dense
        layer: weight ``w[i, j]`` is word ``j*n_in + i`` and bias ``b[j]``
        word ``j`` (a convolution overrides this, :class:`~rtlgen.ir.conv.QConv`).
        """
        n_in, n_out = self.n_in, self.n_out
        windex = (np.arange(n_out)[None, :] * n_in + np.arange(n_in)[:, None]).astype(np.int64)
        return windex, np.arange(n_out)

    def param_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """The weight and bias codes in word order (see :meth:`param_index`)."""
        return np.asarray(self.weights).T.reshape(-1).copy(), np.asarray(self.bias).reshape(-1).copy()

    def with_params(self, weight_codes, bias_codes) -> "QDense":
        """A copy of this layer holding other parameter codes (in word order)."""
        weight_codes = np.asarray(weight_codes, dtype=np.int64).reshape(-1)
        bias_codes = np.asarray(bias_codes, dtype=np.int64).reshape(-1)
        return replace(self, weights=weight_codes.reshape(self.n_out, self.n_in).T.copy(),
                       bias=bias_codes.copy())

    # -- serialization (model.json) -------------------------------------

    def to_dict(self) -> dict:
        out = {
            "op": "dense", "name": self.name,
            "in_type": str(self.in_type), "weight_type": str(self.weight_type),
            "bias_type": str(self.bias_type), "result_type": str(self.result_type),
            "accum_type": str(self.accum_type) if self.accum_type else None,
            "reuse_factor": self.reuse_factor, "adder_levels": self.adder_levels,
            "weights": [[int(v) for v in row] for row in self.weights],
            "bias": [int(v) for v in self.bias],
        }
        if self.stored:
            out.update({"storage": self.storage, "tmr_bits": self.tmr_bits})
        if self.arithmetic != "multipliers":
            out["arithmetic"] = self.arithmetic
        if self.weight_rom != "lut":
            out["weight_rom"] = self.weight_rom
        if self.clock_mhz is not None:
            out.update({"clock_mhz": self.clock_mhz, "timing_target": self.timing_target})
        if self.in_lo is not None:
            out["in_lo"] = self.in_lo
        if self.adder_depth_slack:
            out["adder_depth_slack"] = self.adder_depth_slack
        if self.share_columns is not None:
            out["share_columns"] = self.share_columns
        return out

    @property
    def in_range(self) -> tuple[int, int]:
        """The codes the layer's inputs can take: ``in_type``'s, from ``in_lo`` when it is set."""
        lo = self.in_type.min_code if self.in_lo is None else self.in_lo
        return lo, self.in_type.max_code

    @classmethod
    def from_dict(cls, d: dict) -> "QDense":
        return cls(**dense_fields(d))

    def summary(self, multipliers: int) -> dict:
        """The layer's own fields of its manifest entry (``multipliers``: its hardware's count)."""
        out = {
            "op": self.op, "weight": str(self.weight_type), "bias": str(self.bias_type),
            "accum": str(self.accum_type) if self.accum_type else None,
            "reuse_factor": self.reuse_factor, "adder_levels": self.adder_levels,
            "weights": self.n_in * self.n_out, "nonzero_weights": self.nonzero,
            "multipliers": multipliers, "arithmetic": self.arithmetic, "weight_rom": self.weight_rom,
        }
        if self.stored:
            out.update({"storage": self.storage, "tmr_bits": self.tmr_bits, "weight_positions": self.positions})
        return out


@layer_type("activation")
@dataclass
class QActivation:
    """An element-wise activation with its result type (see the module docstring).

    Every kind is computed as an integer ``pre`` value at
    :attr:`pre_frac` fractional bits, then cast to ``result_type``:

    * ``relu``, ``linear``: ``pre`` is ``max(0, x)`` or ``x``;
    * ``leaky_relu``, ``prelu``: ``slope_codes`` (codes of ``slope_type``,
      one, or one per channel: element ``k`` of a vector of ``size`` takes
      slope ``k // (size // len(slope_codes))``); ``pre`` is ``x`` shifted to
      the product's fractional bits, or ``x * a`` for ``x < 0``;
    * ``clip``: ``bounds`` are the codes ``(lo, hi)`` at :attr:`pre_frac`;
    * ``square``: ``pre`` is ``x * x`` at twice the input's fraction bits;
    * ``sigmoid``, ``tanh``: ``pre`` is ``table_codes()[index(x)]``, already in
      result codes, with ``index(x) = clamp(floor((x + R) * N / (2R)), 0,
      N - 1)`` (``N = table_size``, ``R = table_range``, both powers of two)
      and entry ``i`` the function at ``-R + i * 2R / N`` (the left end of its
      interval, as hls4ml's tables), quantized to ``result_type``.
    """
    name: str
    kind: str
    size: int
    in_type: FixedType
    result_type: FixedType
    op: str = "activation"
    slope_type: Optional[FixedType] = None
    slope_codes: Optional[tuple] = None
    bounds: Optional[tuple] = None
    bound_frac: Optional[int] = None
    table_size: Optional[int] = None
    table_range: Optional[float] = None

    @property
    def n_in(self) -> int:
        return self.size

    @property
    def n_out(self) -> int:
        return self.size

    @property
    def fusable(self) -> bool:
        """True for the kinds a dense layer can do in its own output cast (relu, linear)."""
        return self.kind in ("relu", "linear")

    @property
    def pre_frac(self) -> int:
        """Fractional bits of the value before the cast."""
        if self.kind in ("leaky_relu", "prelu"):
            return self.in_type.frac + max(0, self.slope_type.frac)
        if self.kind == "clip":
            return max(self.in_type.frac, self._bound_frac)
        if self.kind in TABLE_ACTIVATIONS:
            return self.result_type.frac
        if self.kind == "square":
            return 2 * self.in_type.frac
        return self.in_type.frac

    @property
    def _bound_frac(self) -> int:
        return self.bound_frac if self.bound_frac is not None else self.in_type.frac

    def slope_of(self, k: int) -> int:
        """The slope code of element ``k``."""
        per = max(1, self.size // len(self.slope_codes))
        return int(self.slope_codes[min(k // per, len(self.slope_codes) - 1)])

    def shifts(self) -> tuple[int, int]:
        """(left shift of ``x``, left shift of the product ``x * a``) to :attr:`pre_frac`."""
        shift = self.pre_frac - self.in_type.frac
        slope_frac = self.slope_type.frac if self.slope_type is not None else 0
        return shift, self.pre_frac - self.in_type.frac - slope_frac

    def pre_range(self, lo: int, hi: int) -> tuple[int, int]:
        """The range of the value before the cast for input codes in ``[lo, hi]``."""
        kind = self.kind
        if kind == "relu":
            return max(lo, 0), max(hi, 0)
        if kind in ("leaky_relu", "prelu"):
            sx, sp = self.shifts()
            ends = [max(lo, 0) << sx, max(hi, 0) << sx] if hi >= 0 else []
            if lo < 0:
                neg_hi = min(hi, -1)
                ends += [(x * a) << sp for x in (lo, neg_hi) for a in (min(self.slope_codes), max(self.slope_codes))]
            return min(ends), max(ends)
        if kind == "clip":
            sx, _ = self.shifts()
            b_lo, b_hi = self.bounds
            return min(max(lo << sx, b_lo), b_hi), min(max(hi << sx, b_lo), b_hi)
        if kind in TABLE_ACTIVATIONS:
            table = self.table_codes()
            return int(table.min()), int(table.max())
        if kind == "square":
            return (0 if lo <= 0 <= hi else min(lo * lo, hi * hi)), max(lo * lo, hi * hi)
        return lo, hi

    # -- tables -------------------------------------------------------------

    def table_shift(self) -> int:
        """``index = (x + offset) >> shift`` (a left shift when negative), see :meth:`table_offset`."""
        span = Fraction(2 * self.table_range) * (Fraction(2) ** self.in_type.frac) / self.table_size
        return int(span.numerator).bit_length() - 1 if span >= 1 else -(int(span.denominator).bit_length() - 1)

    def table_offset(self) -> int:
        """The code of ``table_range`` in the input type: ``x + offset`` is >= 0 over the table."""
        return int(Fraction(self.table_range) * Fraction(2) ** self.in_type.frac)

    def table_codes(self) -> np.ndarray:
        """The table: result codes of the function at the left end of each index's interval."""
        fn = TABLE_ACTIVATIONS[self.kind]
        points = -self.table_range + np.arange(self.table_size) * (2.0 * self.table_range / self.table_size)
        return quantize(fn(points), self.result_type)

    def table_index(self, x, where):
        """The table index of input codes ``x`` (numpy or Amaranth: ``where`` is ``np.where``/``Mux``)."""
        return table_index(x + self.table_offset(), self.table_shift(), self.table_size, where)

    def to_dict(self) -> dict:
        out = {"op": "activation", "name": self.name, "kind": self.kind, "size": self.size,
               "in_type": str(self.in_type), "result_type": str(self.result_type)}
        if self.slope_codes is not None:
            out.update(slope_type=str(self.slope_type), slope_codes=[int(c) for c in self.slope_codes])
        if self.bounds is not None:
            out.update(bounds=[int(b) for b in self.bounds], bound_frac=self._bound_frac)
        if self.table_size is not None:
            out.update(table_size=self.table_size, table_range=self.table_range)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "QActivation":
        q = cls(name=d["name"], kind=d["kind"], size=int(d["size"]), in_type=parse_type(d["in_type"]),
                result_type=parse_type(d["result_type"]),
                slope_type=parse_type(d["slope_type"]) if d.get("slope_type") else None,
                slope_codes=tuple(int(c) for c in d["slope_codes"]) if d.get("slope_codes") else None,
                bounds=tuple(int(b) for b in d["bounds"]) if d.get("bounds") else None,
                table_size=int(d["table_size"]) if d.get("table_size") else None,
                table_range=float(d["table_range"]) if d.get("table_range") else None,
                bound_frac=int(d["bound_frac"]) if d.get("bound_frac") is not None else None)
        return q

    def summary(self, multipliers: int) -> dict:
        """The layer's own fields of its manifest entry."""
        out = {"op": self.kind, "multipliers": multipliers, "reuse_factor": 1}
        if self.slope_codes is not None:
            out["slope_type"] = str(self.slope_type)
        if self.table_size is not None:
            out.update(table_size=self.table_size, table_range=self.table_range)
        return out


QLayer = Union[QDense, QActivation]


@dataclass
class QModel(LayerGraph):
    """A quantized network: ``input_type`` elements in, layers in topological order (a chain
    unless ``sources`` says otherwise, see :class:`LayerGraph`)."""
    name: str
    input_type: FixedType
    n_in: int
    layers: list
    #: [C, H, W] or [C, L] when the input is a feature map (flattened in that order)
    input_shape: Optional[tuple] = None
    #: an I2C target in front of the configuration bus: {"address", "clk_hz", "filter_cycles"}
    i2c: Optional[dict] = None
    #: the layers each layer reads (see :class:`LayerGraph`); None for a chain
    sources: Optional[list] = None

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out if self.layers else self.n_in

    @property
    def output_type(self) -> FixedType:
        return self.layers[-1].result_type if self.layers else self.input_type

    # -- stored parameters (see rtlgen.ir.params) ---------------------------

    def param_sets(self) -> list:
        """The stored layers as :class:`~rtlgen.ir.params.ParamSet` (weights, then biases)."""
        out = []
        for k, layer in enumerate(self.layers):
            if isinstance(layer, QDense) and layer.stored:
                w, b = layer.param_codes()
                if layer.op == "conv":
                    op, shapes = "conv", {"kernel_shape": [int(v) for v in np.asarray(layer.kernel_codes).shape]}
                else:
                    op, shapes = "dense", {"matrix_shape": [layer.n_in, layer.n_out]}
                out.append(ParamSet(k, layer.name, op, layer.storage, layer.tmr_bits,
                                    (ParamGroup("weight", layer.weight_type, tuple(int(c) for c in w)),
                                     ParamGroup("bias", layer.bias_type, tuple(int(c) for c in b))),
                                    shapes))
        return out

    def word_places(self, param_set) -> list:
        """Nothing per word: a layer's words are placed by their index (see :meth:`QDense.param_index`)."""
        return [[{} for _ in group.codes] for group in param_set.groups]

    def with_param_codes(self, codes: dict) -> "QModel":
        """A copy whose stored layers named in ``codes`` hold ``(weight codes, bias codes)``."""
        layers = [layer.with_params(*codes[layer.name]) if layer.name in codes else layer
                  for layer in self.layers]
        return replace(self, layers=layers)

    # -- serialization (the build folder keeps the quantized model) --------

    def to_dict(self) -> dict:
        out = {"name": self.name, "input_type": str(self.input_type), "n_in": self.n_in,
               "layers": [layer.to_dict() for layer in self.layers]}
        if self.input_shape is not None:
            out["input_shape"] = [int(v) for v in self.input_shape]
        if self.i2c is not None:
            out["i2c"] = dict(self.i2c)
        if not self.is_chain:
            out["sources"] = [[int(s) for s in src] for src in self.sources]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "QModel":
        layers = []
        for ld in d["layers"]:
            kind = LAYER_TYPES.get(ld["op"])
            if kind is None:
                raise KeyError(f"unknown layer op {ld['op']!r}")
            layers.append(kind.from_dict(ld))
        shape = tuple(int(v) for v in d["input_shape"]) if d.get("input_shape") else None
        sources = [tuple(int(s) for s in src) for src in d["sources"]] if d.get("sources") else None
        model = cls(d["name"], parse_type(d["input_type"]), int(d["n_in"]), layers, shape, d.get("i2c"), sources)
        model.check_sources()
        return model


def _storage_fields(ld: dict) -> dict:
    tmr_bits = ld.get("tmr_bits")
    return {"storage": ld.get("storage", "constant"),
            "tmr_bits": int(tmr_bits) if tmr_bits is not None else None}


def dense_fields(ld: dict) -> dict:
    """The :class:`QDense` fields of a serialized dense, conv or average-pool layer."""
    return dict(
        name=ld["name"], in_type=parse_type(ld["in_type"]),
        weight_type=parse_type(ld["weight_type"]), bias_type=parse_type(ld["bias_type"]),
        result_type=parse_type(ld["result_type"]),
        accum_type=parse_type(ld["accum_type"]) if ld.get("accum_type") else None,
        weights=int_array(ld["weights"]), bias=int_array(ld["bias"]),
        reuse_factor=int(ld["reuse_factor"]), adder_levels=int(ld.get("adder_levels", 2)),
        adder_depth_slack=int(ld.get("adder_depth_slack", 0)),
        share_columns=int(ld["share_columns"]) if ld.get("share_columns") is not None else None,
        arithmetic=str(ld.get("arithmetic", "multipliers")),
        weight_rom=str(ld.get("weight_rom", "lut")),
        clock_mhz=float(ld["clock_mhz"]) if ld.get("clock_mhz") is not None else None,
        timing_target=str(ld.get("timing_target", "ecp5")),
        in_lo=int(ld["in_lo"]) if ld.get("in_lo") is not None else None,
        **_storage_fields(ld))


def int_array(values) -> np.ndarray:
    arr = np.array(values, dtype=object)
    try:
        return arr.astype(np.int64)
    except OverflowError:
        return arr
