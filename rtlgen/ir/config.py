"""Precision configuration: turns a float IR into the quantized IR.

The configuration is a YAML or JSON mapping::

    input: fixed<9,2,RND,SAT>          # element type of the input vector
    default:                           # applies to every layer unless overridden
      weight: fixed<8,3,RND,SAT>
      bias: fixed<8,3,RND,SAT>
      result: fixed<16,6,RND,SAT>
      reuse_factor: 1
    layers:                            # overrides keyed by layer (ONNX node) name
      "/0/Gemm": {reuse_factor: 4, result: fixed<12,4,RND,SAT>}

Per-layer keys:

``weight``, ``bias``
    types the weights and biases are quantized to (dense layers).
``result``
    type of the layer's output (every layer).
``accum``
    optional accumulator type (WRAP overflow only): products and bias are
    cast to it and the sum wraps in it, as hls4ml's Latency strategy does.
    Without it the sum is exact.
``reuse_factor``
    1 .. number of nonzero weights, or ``full`` (one multiplier).  Each
    multiplier is used R times per inference; II = R.
``adder_levels``
    adder-tree levels between pipeline registers (default 2, at least 1)
    when the configuration has no ``clock_mhz``.
``adder_depth_slack``
    adder levels (default 0) that a ``shift_add`` layer's graph may add
    above the depth of its plain adder trees, to use fewer adders: more
    room for shared pairs, and outputs computed from another output plus a
    difference (:func:`rtlgen.numerics.adder_graph.adder_graph`).  It may
    cost register ranks, and so cycles of latency.
``share_columns``
    ``all`` (default) or N >= 1: a ``shift_add`` layer's outputs in groups
    of N, each summed by a graph of its own that shares subexpressions only
    within the group: more adders, fewer nets that span the layer.
``arithmetic``
    ``auto`` (default), ``shift_add`` or ``multipliers``.  ``shift_add``
    builds the layer's constant matrix-vector product without multipliers,
    as one graph of adders shared across the matrix
    (:mod:`rtlgen.ir.arithmetic`); it needs constant weights, reuse factor
    1 and no ``accum`` type.  ``auto`` takes ``shift_add`` wherever it
    applies (:func:`rtlgen.ir.arithmetic.choose`), else ``multipliers``.
``weight_rom``
    ``auto`` (default), ``lut`` or ``bram``: where a multiplier shared over
    R > 1 weights (``reuse_factor``) reads the weight of the current phase.
    ``lut`` selects it from the R constants with multiplexers in logic;
    ``bram`` reads it from a ROM that synthesis maps to block RAM (iCE40
    SB_RAM40_4K, ECP5 DP16KD), one row of every multiplier's weight per
    phase (:class:`rtlgen.hw.dense.WeightRom`), with the same latency and
    II.  ``bram`` needs constant weights (``storage: constant``),
    ``arithmetic: multipliers``, ``reuse_factor`` > 1 and ``io: parallel``.
    ``auto`` takes ``bram`` where it applies and ``reuse_factor`` is at
    least :data:`ROM_MIN_REUSE`, else ``lut``.
``io``
    ``parallel`` (default): the whole input vector is one word and every
    output is computed at once.  ``stream`` (Conv and pooling layers): the
    image enters one pixel (all channels) per cycle, line buffers form the
    windows and one window is computed per ``reuse_factor`` cycles (see
    :mod:`rtlgen.hw.stream`).  Streamed layers must be the leading layers of
    the model; activations take the mode of the layer before them.

``storage``
    ``constant`` (default: weights folded into the logic), ``register``
    (one register word per parameter, reset to the trained code, written
    through the configuration bus) or ``tmr`` (three voted, scrubbed copies;
    see :mod:`rtlgen.hw.storage`).  Dense and Conv layers only.
``tmr_bits``
    with ``storage: tmr``: only the N most significant bits of each word
    are triplicated (1 .. the widest of the weight and bias widths; default
    the whole word).

LeakyReLU/PReLU activations take ``weight`` (the slope's type; without it
an exactly representable slope is kept exact), Sigmoid/Tanh take
``table_size`` and ``table_range`` (see
:class:`~rtlgen.ir.model.QActivation`), Softmax takes those and ``exp``,
``inv``, ``inv_table_size`` and ``argmax`` (:mod:`rtlgen.ir.softmax`).  A layer left without a ``result``
type gets the exact one (:func:`rtlgen.numerics.fixed.exact_type`).

Conv and AveragePool layers take the dense keys (an average pool's
``weight`` type holds ``1/n``; its bias is zero, and its storage is always
constant); MaxPool takes ``result`` and ``io``; Add and Concat
(:mod:`rtlgen.ir.merge`) take ``result`` only (they are never streamed).

Top-level ``i2c: {address: 0x42, clk_hz: 10e6, filter_cycles: 3}`` puts an
I2C target (:mod:`rtlgen.hw.i2c`) in front of the configuration bus.
Top-level ``clock_mhz: 150`` (with ``target: ecp5``, ``ice40-hx8k`` or
``ice40-up5k``; default ``ecp5``) places the registers of the ``shift_add``
layers by the target's delay model (:mod:`rtlgen.numerics.pipeline`): the
fewest register ranks whose estimated paths fit the clock period, instead
of one rank every ``adder_levels`` levels.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from ..errors import RtlgenError, RtlgenWarning
from ..numerics.fixed import Overflow, exact_type, parse_type, quantize
from .config_file import config_name, key_list, read_config_file
from .conv import Conv, Pool, QConv, QMaxPool, pool_matrix
from .arithmetic import ARITHMETICS, choose, shift_add_problem
from .params import check_storage, check_tmr_bits
from ..numerics.pipeline import TIMING_TARGETS
from .model import TABLE_DEFAULTS, Activation, Dense, FloatModel, QActivation, QDense, QModel
from .merge import Merge, QMerge
from .softmax import QArgmax, QSoftmax, index_type

DENSE_KEYS = {"weight", "bias", "result", "accum", "reuse_factor", "adder_levels", "adder_depth_slack",
              "share_columns", "io",
              "storage", "tmr_bits", "arithmetic", "weight_rom"}
ACTIVATION_KEYS = {"result", "io"}
MERGE_KEYS = {"result"}                          # add, concat
#: further keys of the activations that have parameters
SLOPE_KEYS = {"weight"}                          # leaky_relu, prelu: the slope's type
TABLE_KEYS = {"table_size", "table_range"}       # sigmoid, tanh
GRAPH_KEYS = ("adder_depth_slack", "share_columns")   # the adder graph of a shift_add layer
SOFTMAX_KEYS = TABLE_KEYS | {"exp", "inv", "inv_table_size", "argmax"}
DEFAULT_KEYS = DENSE_KEYS | TABLE_KEYS
MAX_ADDER_DEPTH_SLACK = 8    # adder_depth_slack: 0 to this many extra adder levels
#: the intermediate types of a softmax when the configuration gives none (hls4ml's table types
#: are ap_fixed<18,8>; here the exp values lie in (0, 1] and the reciprocals in (0, 1])
SOFTMAX_EXP_TYPE = "ufixed<18,1,RND,SAT>"
SOFTMAX_INV_TYPE = "ufixed<18,1,RND,SAT>"
#: the most fractional bits an exact slope or clip bound found in a model may need
EXACT_PARAM_FRAC = 16
IO_MODES = ("parallel", "stream")
TOP_KEYS = {"input", "default", "layers", "name", "i2c", "clock_mhz", "target"}
#: what a layer gets without an ``arithmetic`` key
DEFAULT_ARITHMETIC = "auto"
WEIGHT_ROMS = ("auto", "lut", "bram")
#: what a layer gets without a ``weight_rom`` key
DEFAULT_WEIGHT_ROM = "auto"
#: The least reuse factor at which ``weight_rom: auto`` reads the weights from
#: block RAM.  A multiplexer of R constants costs about R/8 4-input LUTs per
#: weight bit on iCE40 (no wide-mux primitive) and next to nothing for
#: R <= 4, while one block RAM delivers 16 bits per cycle (iCE40; up to 36 on
#: ECP5) whatever its depth, so an EBR saves about 2R LUTs.  Measured with
#: Yosys synth_ice40 on a 16x8 layer of 8-bit weights, LUTs saved per
#: SB_RAM40_4K used: R=4: 1, R=8: 14, R=16: 33, R=32: 67, R=64: 142.  rtlgen
#: cores use no block RAM otherwise (line buffers are registers), so from
#: R = 32 on (67+ LUTs per EBR) it is a clear gain on the small devices this
#: is for; below, ``bram`` or ``lut`` can be asked for explicitly.
ROM_MIN_REUSE = 32
I2C_KEYS = {"address", "clk_hz", "filter_cycles"}


def load_config(source) -> dict:
    """Read a configuration from a path (YAML or JSON) or accept a dict.

    The file must be UTF-8 text.  YAML is read strictly: a key given twice in
    one mapping is an error, and so is a type such as ``fixed<12,4,RND,SAT>``
    written unquoted inside a flow mapping ``{...}``, where YAML splits it at
    its commas (:mod:`rtlgen.ir.config_file`).
    """
    if isinstance(source, dict):
        return source
    return read_config_file(source)


def _type(value, where: str):
    try:
        return parse_type(value)
    except RtlgenError as exc:
        raise RtlgenError(f"{where}: {exc}") from None


def _reuse(value, nonzero: int, where: str, what: str = "nonzero weights") -> int:
    upper = max(1, nonzero)
    if isinstance(value, str) and value.strip().lower() in ("full", "max"):
        return upper
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RtlgenError(f"{where}: reuse_factor must be an integer from 1 to {upper} or 'full', got {value!r}")
    if not 1 <= int(value) <= upper:
        raise RtlgenError(
            f"{where}: reuse_factor {value} is out of range: use 1 to {upper} "
            f"(the layer has {nonzero} {what}) or 'full'")
    return int(value)


def _levels_key(merged: dict, key: str, default: int, lo: int, hi: int | None, where: str) -> int:
    """A count of adder levels, ``merged[key]`` (``default`` when absent), from ``lo`` to ``hi`` (None: no bound)."""
    value = merged.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"from {lo} to {hi}"
        raise RtlgenError(f"{where}: {key} must be an integer {bound} (adder levels), got {value!r}")
    return value


def _share_columns(merged: dict, where: str) -> int | None:
    """``share_columns``: outputs per shift-and-add sharing group, or None (``all``, the default)."""
    value = merged.get("share_columns", "all")
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RtlgenError(f"{where}: share_columns must be an integer >= 1 (outputs per group of a "
                          f"shift_add graph) or all, got {value!r}")
    return value


class _StreamPrefix:
    """Checks that ``io: stream`` layers form the leading part of the model.

    Streamed layers are the input stage: Conv and pooling layers (with the
    activations that follow them) from the first layer on.  A Dense layer
    never streams (a ``default`` io of ``stream`` does not apply to it).
    """

    def __init__(self):
        self.streaming = True      # still inside the leading streamed part
        self.any = False           # some layer streams
        self.last_parallel = None  # name of the first layer that does not stream

    def mode(self, layer, io: str, explicit: bool, where: str) -> str:
        spatial = isinstance(layer, (Conv, Pool))
        if isinstance(layer, Activation):
            mode = "stream" if self.streaming and self.any else "parallel"
            if mode == "stream" and layer.kind in ("softmax", "argmax"):
                raise RtlgenError(f"{where}: a {layer.kind} needs the whole vector, and the layer before it "
                                  "streams (io: stream); put a parallel layer before it")
            if explicit and io != mode:
                raise RtlgenError(f"{where}: an activation takes the io mode of the layer before it "
                                  f"({mode}); remove its 'io' key")
            return mode
        if not spatial:
            if explicit and io == "stream":
                raise RtlgenError(f"{where}: io 'stream' applies to Conv and pooling layers only; "
                                  "use io: parallel for this layer")
            io = "parallel"
        if io == "stream":
            if not self.streaming:
                raise RtlgenError(
                    f"{where}: io 'stream' layers must come first (they form the input stage), but "
                    f"layer {self.last_parallel!r} before it is parallel: stream every Conv/pooling "
                    "layer up to this one, or use io: parallel here")
            if len(layer.in_shape) not in (2, 3):
                raise RtlgenError(f"{where}: io 'stream' needs a [C, L] or [C, H, W] feature map input")
            self.any = True
        elif self.streaming:
            self.streaming = False
            self.last_parallel = layer.name
        return io


def _window_nonzero(matrix: np.ndarray, layer, where: str, merged: dict) -> int:
    """Nonzero weights of one window of a streamed average pool."""
    if any(layer.pads) and not layer.count_include_pad:
        # the divisor changes at the borders: the window sum is multiplied
        # once by its position's q(1/n), which is exact only for an exact sum
        if merged.get("accum") is not None:
            raise RtlgenError(f"{where}: a streamed AveragePool whose divisor changes at the borders "
                              "(padding with count_include_pad=0) needs an exact sum: remove its accum "
                              "type, or use io: parallel")
        if merged.get("reuse_factor", 1) not in (1, "full"):
            raise RtlgenError(f"{where}: a streamed AveragePool whose divisor changes at the borders "
                              "takes reuse_factor 1 (one multiplier per channel)")
        if not matrix.any():
            raise RtlgenError(f"{where}: every 1/n quantizes to zero in the weight type: widen "
                              f"layers.{layer.name}.weight")
        return 1
    nonzero = np.unique(matrix[matrix != 0])
    if len(nonzero) != 1:
        raise RtlgenError(f"{where}: 1/n quantizes to zero in the weight type: widen layers."
                          f"{layer.name}.weight")
    return int(layer.in_shape[0] * np.prod(layer.kernel))


def _storage(merged: dict, own: dict, layer, io: str, weight_type, bias_type, where: str):
    """The layer's (storage, tmr_bits) from its merged configuration."""
    trained = isinstance(layer, (Dense, Conv))
    storage = check_storage(merged.get("storage", "constant") if trained else own.get("storage", "constant"),
                            where)
    if storage != "constant" and not trained:
        raise RtlgenError(f"{where}: an AveragePool has no trained parameters to store; "
                          "remove its 'storage' key (it is always constant)")
    if storage != "constant" and io == "stream":
        raise RtlgenError(f"{where}: storage {storage!r} needs io: parallel; use storage: constant "
                          "for a streamed layer")
    tmr_bits = merged.get("tmr_bits") if storage == "tmr" else own.get("tmr_bits")
    return storage, check_tmr_bits(tmr_bits, storage, max(weight_type.width, bias_type.width), where)


def i2c_option(value, has_bus: bool, what: str = "dense/conv layer") -> dict | None:
    """The ``i2c`` option: an I2C target in front of the configuration bus."""
    if value is None:
        return None
    if not isinstance(value, dict) or "address" not in value or set(value) - I2C_KEYS:
        raise RtlgenError(f"config 'i2c' must be a mapping with 'address' (7-bit, 0x08..0x77) and optional "
                          f"'clk_hz' and 'filter_cycles'; allowed keys: {sorted(I2C_KEYS)}")
    if not has_bus:
        raise RtlgenError(f"config 'i2c' needs a configuration bus: set storage: register or tmr on some "
                          f"{what}")
    address, clk_hz, filt = value["address"], value.get("clk_hz", 10e6), value.get("filter_cycles", 3)
    if isinstance(clk_hz, str):        # YAML 1.1 reads 40e6 (no dot) as a string
        try:
            clk_hz = float(clk_hz)
        except ValueError:
            pass
    if isinstance(address, bool) or not isinstance(address, int) or not 0x08 <= address <= 0x77:
        raise RtlgenError(f"config 'i2c': address must be a 7-bit I2C address from 0x08 to 0x77, got {address!r}")
    if isinstance(clk_hz, bool) or not isinstance(clk_hz, (int, float)) or not 0 < clk_hz <= 100e9:
        raise RtlgenError(f"config 'i2c': clk_hz must be the core clock frequency in Hz (e.g. 40e6), got {clk_hz!r}")
    if isinstance(filt, bool) or not isinstance(filt, int) or filt < 1:
        raise RtlgenError(f"config 'i2c': filter_cycles must be an integer >= 1, got {filt!r}")
    return {"address": address, "clk_hz": float(clk_hz), "filter_cycles": filt}


def _warn_if_all_zero(layer, codes: np.ndarray, weight_type, storage, where: str) -> None:
    """Warn when every weight of a layer that has nonzero weights quantizes to zero (constant storage)."""
    trained = np.abs(np.asarray(layer.weight, dtype=np.float64))
    if storage != "constant" or np.any(codes) or not np.any(trained):
        return
    warnings.warn(f"{where}: every weight quantizes to zero in {weight_type} (largest |w| = "
                  f"{float(trained.max()):.3g}, step {2.0 ** -weight_type.frac:.3g}), so the layer has no "
                  f"multiplier and outputs its bias only: give layers.{layer.name}.weight more fractional bits",
                  RtlgenWarning, stacklevel=2)


def _quantize_param(values: np.ndarray, typ, where: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise RtlgenError(f"{where} contains a NaN or inf value at index {tuple(int(i) for i in bad)}: "
                          "retrain or clean the model")
    return quantize(values, typ)


def _nonnegative_input(layers: list, sources: tuple) -> int | None:
    """0 when a layer reads a ReLU whose signed result cannot wrap below zero (its input codes are
    then 0 and up, narrower than its type's), else None."""
    src = sources[0]
    if src < 0 or not isinstance(layers[src], QActivation) or layers[src].kind != "relu":
        return None
    t = layers[src].result_type
    return 0 if t.signed and t.overflow is not Overflow.WRAP else None


def _timing(cfg: dict):
    """The top-level clock target: (clock_mhz or None, delay-model target)."""
    clock = cfg.get("clock_mhz")
    target = cfg.get("target")
    if clock is None:
        if target is not None:
            raise RtlgenError("config: target chooses the delay model of clock_mhz, which is not set: "
                              "add clock_mhz (e.g. clock_mhz: 150) or remove target")
        return None, "ecp5"
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not 1 <= clock <= 2000:
        raise RtlgenError(f"config: clock_mhz must be a number from 1 to 2000 (MHz), got {clock!r}")
    target = "ecp5" if target is None else target
    if target not in TIMING_TARGETS:
        raise RtlgenError(f"config: target must be one of {', '.join(TIMING_TARGETS)} (the delay model "
                          f"of clock_mhz), got {target!r}")
    return float(clock), target


def _arithmetic(q: QDense, merged: dict, where: str) -> str:
    """The layer's resolved arithmetic (``auto`` chosen by cost)."""
    arith = merged.get("arithmetic", DEFAULT_ARITHMETIC)
    if arith not in ARITHMETICS:
        raise RtlgenError(f"{where}: arithmetic must be one of {', '.join(ARITHMETICS)}, got {arith!r}")
    if arith == "shift_add":
        problem = shift_add_problem(q)
        if problem is not None:
            raise RtlgenError(f"{where}: arithmetic: shift_add does not apply: {problem}")
        return arith
    return choose(q) if arith == "auto" else arith


def _rom_problem(q: QDense, chosen_arithmetic: bool = False) -> str | None:
    """Why ``q``'s weights cannot be read from a ROM (None when they can).

    ``chosen_arithmetic``: the configuration asked for ``arithmetic: auto``
    (a ``shift_add`` then only reflects reuse factor 1, the reason given)."""
    if q.stored:
        return (f"storage {q.storage!r} keeps the weights in registers written on the configuration "
                "bus, not in a ROM: use weight_rom: lut (or auto), or storage: constant")
    if getattr(q, "io", "parallel") == "stream":
        return ("a streamed layer's window keeps its weights in logic: use weight_rom: lut (or auto), "
                "or io: parallel")
    if q.arithmetic != "multipliers" and not chosen_arithmetic:
        return (f"arithmetic {q.arithmetic!r} has no multipliers to feed with weights: use "
                "weight_rom: lut (or auto), or arithmetic: multipliers with a reuse_factor above 1")
    if q.reuse_factor == 1:
        return ("with reuse_factor 1 each multiplier has one constant weight and nothing to read "
                f"from a ROM: raise reuse_factor (block RAM pays off from about {ROM_MIN_REUSE}), "
                "or use weight_rom: lut (or auto)")
    return None


def _weight_rom(q: QDense, merged: dict, where: str) -> str:
    """The layer's resolved weight source, ``lut`` or ``bram`` (``auto`` chosen by reuse factor)."""
    value = merged.get("weight_rom", DEFAULT_WEIGHT_ROM)
    if not isinstance(value, str) or value not in WEIGHT_ROMS:
        raise RtlgenError(f"{where}: weight_rom must be one of {', '.join(WEIGHT_ROMS)}, got {value!r}")
    problem = _rom_problem(q, merged.get("arithmetic", DEFAULT_ARITHMETIC) == "auto")
    if value == "bram":
        if problem is not None:
            raise RtlgenError(f"{where}: weight_rom: bram does not apply: {problem}")
        return "bram"
    if value == "auto" and problem is None and q.reuse_factor >= ROM_MIN_REUSE:
        return "bram"
    return "lut"


def _exact_result(in_type, weight_type, bias_type, w: np.ndarray, b: np.ndarray, accum_type):
    """The type that holds every sum of a dense layer exactly (its result when nothing sets one)."""
    if accum_type is not None:
        return accum_type
    frac = max(in_type.frac + weight_type.frac, bias_type.frac)
    w = np.asarray(w, dtype=object) * (1 << (frac - in_type.frac - weight_type.frac))
    b = np.asarray(b, dtype=object) * (1 << (frac - bias_type.frac))
    lo = (np.where(w > 0, w * in_type.min_code, w * in_type.max_code).sum(axis=0) + b) if w.size else b
    hi = (np.where(w > 0, w * in_type.max_code, w * in_type.min_code).sum(axis=0) + b) if w.size else b
    return exact_type(min(lo, default=0), max(hi, default=0), frac)


def _model_bias_type(layer, in_type, weight_type, where: str):
    """The bias type of a layer whose weights the model quantizes but whose bias it does not:
    the grid of the products when the bias lies on it, else an error (nothing is rounded unasked)."""
    bias = np.asarray(layer.bias, dtype=np.float64)
    if not np.any(bias):
        return weight_type
    frac = in_type.frac + weight_type.frac
    scaled = np.ldexp(bias, frac)
    if np.all(scaled == np.trunc(scaled)) and np.all(np.abs(scaled) < 2.0 ** 52):
        return exact_type(int(scaled.min()), int(scaled.max()), frac)
    raise RtlgenError(f"{where}: the model quantizes the weights but not the bias, and the bias values are "
                      f"not on the grid of the products (2^-{frac}); quantize the bias in the model "
                      f"(Brevitas: bias_quant=Int16Bias or a *FixedPoint bias quantizer) or give its type "
                      f"in the config (layers.{layer.name}.bias or default.bias)")


def _activation_keys(layer) -> set:
    kind = getattr(layer, "kind", None)
    if kind in ("leaky_relu", "prelu"):
        return SLOPE_KEYS
    if kind in TABLE_DEFAULTS:
        return TABLE_KEYS
    if kind == "softmax":
        return SOFTMAX_KEYS
    return set()


def _exact_param_type(values: np.ndarray, where: str, what: str):
    """The narrowest type holding ``values`` exactly, with at most :data:`EXACT_PARAM_FRAC` fraction bits."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    for frac in range(EXACT_PARAM_FRAC + 1):
        scaled = np.ldexp(values, frac)
        if np.all(scaled == np.trunc(scaled)):
            return exact_type(int(scaled.min()), int(scaled.max()), frac)
    raise RtlgenError(f"{where}: the {what} {values[0]:.6g} is not a fixed-point number with at most "
                      f"{EXACT_PARAM_FRAC} fraction bits: give its type in the config "
                      "(the 'weight' key of this layer or of default)")


def _power_of_two(value, where: str, key: str, lo, hi) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
    if ok:
        mantissa, _ = np.frexp(float(value))
        ok = mantissa == 0.5
    if not ok:
        raise RtlgenError(f"{where}: {key} must be a power of two from {lo} to {hi}, got {value!r}")
    return float(value)


def _activation(layer, merged: dict, own: dict, size: int, in_type, result_type, where: str):
    """The quantized activation: slopes, clip bounds and tables fixed (see :class:`QActivation`)."""
    kind = layer.kind
    if kind in ("softmax", "argmax"):
        return _classifier(layer, merged, own, size, in_type, result_type, where)
    q = QActivation(name=layer.name, kind=kind, size=size, in_type=in_type, result_type=result_type or in_type)
    if kind in ("leaky_relu", "prelu"):
        slope = np.asarray(layer.slope, dtype=np.float64).reshape(-1)
        if "weight" in merged:
            slope_type = _type(merged["weight"], f"{where} weight")
        else:
            slope_type = _exact_param_type(slope, where, "slope")
        codes = _quantize_param(slope, slope_type, f"{where} slope")
        lost = (codes == 0) & (slope != 0)
        if lost.any():
            warnings.warn(f"{where}: the slope {slope[lost][0]:.6g} quantizes to zero in {slope_type}, so the "
                          f"layer acts as a ReLU there: give layers.{layer.name}.weight more fraction bits",
                          RtlgenWarning, stacklevel=2)
        if size % len(codes):
            raise RtlgenError(f"{where}: {len(codes)} slopes do not divide the {size} elements into channels")
        q = replace(q, slope_type=slope_type, slope_codes=tuple(int(c) for c in codes))
    elif kind == "clip":
        lo, hi = (float(v) for v in layer.bounds)
        finite = [v for v in (lo, hi) if np.isfinite(v)]
        frac = max([in_type.frac] + [_exact_param_type(np.array([v]), where, "clip bound").frac for v in finite])
        shift = frac - in_type.frac
        b_lo = int(np.ldexp(lo, frac)) if np.isfinite(lo) else in_type.min_code << shift
        b_hi = int(np.ldexp(hi, frac)) if np.isfinite(hi) else in_type.max_code << shift
        if b_lo > b_hi:
            raise RtlgenError(f"{where}: the clip bounds {lo:g} > {hi:g}")
        q = replace(q, bounds=(b_lo, b_hi), bound_frac=frac)
    elif kind in TABLE_DEFAULTS:
        if result_type is None:
            raise RtlgenError(f"{where}: a {kind} table needs a result type: set layers.{layer.name}.result "
                              "(e.g. ufixed<8,0,RND,SAT> for sigmoid, fixed<8,1,RND,SAT> for tanh), or "
                              "quantize its output in the model")
        size_default, range_default = TABLE_DEFAULTS[kind]
        table_size = int(_power_of_two(merged.get("table_size", size_default), where, "table_size", 2, 1 << 16))
        table_range = _power_of_two(merged.get("table_range", range_default), where, "table_range", 2.0 ** -8,
                                    2.0 ** 16)
        q = replace(q, table_size=table_size, table_range=table_range)
    if result_type is None:   # exact: the narrowest type of every value before the cast
        lo, hi = q.pre_range(in_type.min_code, in_type.max_code)
        q = replace(q, result_type=exact_type(lo, hi, q.pre_frac))
    return q


def _classifier(layer, merged: dict, own: dict, size: int, in_type, result_type, where: str):
    """A softmax (its tables) or an argmax (``argmax: true`` on a softmax, or an ONNX ArgMax)."""
    argmax = merged.get("argmax", False)
    if not isinstance(argmax, bool):
        raise RtlgenError(f"{where}: argmax must be true or false, got {argmax!r}")
    if layer.kind == "argmax" or argmax:
        extra = {"result", "exp", "inv", "table_size", "table_range", "inv_table_size"} & set(own)
        if extra:
            raise RtlgenError(f"{where}: the argmax outputs the class index ({index_type(size)}), so "
                              f"{key_list(extra)} do not apply; remove them")
        return QArgmax(name=layer.name, size=size, in_type=in_type, result_type=index_type(size))
    if result_type is None:
        raise RtlgenError(f"{where}: a softmax needs a result type: set layers.{layer.name}.result (e.g. "
                          "ufixed<16,0,RND,SAT>), or quantize its output in the model; or set argmax: true "
                          "for the class index")
    exp_type = _type(merged.get("exp", SOFTMAX_EXP_TYPE), f"{where} exp")
    inv_type = _type(merged.get("inv", SOFTMAX_INV_TYPE), f"{where} inv")
    for t, key in ((exp_type, "exp"), (inv_type, "inv")):
        if t.max_value < 1:
            raise RtlgenError(f"{where}: the {key} type {t} cannot hold 1.0; give it at least one integer bit")
    table_size = int(_power_of_two(merged.get("table_size", 1024), where, "table_size", 2, 1 << 16))
    table_range = _power_of_two(merged.get("table_range", 8.0), where, "table_range", 2.0 ** -8, 2.0 ** 16)
    inv_size = int(_power_of_two(merged.get("inv_table_size", 1024), where, "inv_table_size", 2, 1 << 16))
    return QSoftmax(name=layer.name, size=size, in_type=in_type, result_type=result_type, exp_type=exp_type,
                    inv_type=inv_type, table_size=table_size, table_range=table_range, inv_table_size=inv_size)


def _merge(layer, in_types: list, sizes: list, result_type, where: str) -> QMerge:
    """The quantized add or concat of inputs of ``in_types`` and ``sizes`` (exact result when unset)."""
    if layer.kind == "add" and len(set(sizes)) > 1:
        raise RtlgenError(f"{where}: adds vectors of {' and '.join(str(n) for n in sizes)} elements; "
                          "the inputs of an add must have the same size")
    if list(sizes) != [int(n) for n in layer.sizes]:
        raise RtlgenError(f"{where}: expects inputs of {list(layer.sizes)} elements but gets {list(sizes)}")
    in_types = tuple(in_types)
    if result_type is None:
        result_type = QMerge.exact_result(layer.kind, in_types)
    return QMerge(name=layer.name, op=layer.kind, in_types=in_types, sizes=tuple(int(n) for n in sizes),
                  result_type=result_type)


def _model_types(layer) -> dict:
    """The types the model's own quantizers give ``layer``, as configuration entries."""
    return {key: str(t) for key, t in getattr(layer, "types", {}).items()}


def apply_config(model: FloatModel, config=None) -> QModel:
    """Quantize ``model`` under ``config``; every problem is an RtlgenError.

    The types of a quantization-aware model's quantizers (``layer.types``,
    ``model.input_type``) take the place of ``default`` entries: a
    ``layers`` entry overrides them, ``default`` only fills what the model
    leaves open.  A result type that neither sets is exact: the narrowest
    type holding every value the layer can produce (no rounding, no
    overflow).  ``config`` may be None when the model quantizes its input.
    """
    cfg = load_config(config if config is not None else {})
    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise RtlgenError(f"config: unknown top-level key(s) {key_list(unknown)}; allowed: {sorted(TOP_KEYS)}")
    if "input" in cfg:
        input_type = _type(cfg["input"], "config 'input'")
    elif getattr(model, "input_type", None) is not None:
        input_type = model.input_type
    else:
        raise RtlgenError("config: missing 'input' (the element type of the input vector, e.g. fixed<9,2,RND,SAT>); "
                          "the model does not quantize its input itself (no quantizer node on its input)")
    default = cfg.get("default") or {}
    overrides = cfg.get("layers") or {}
    if not isinstance(default, dict) or not isinstance(overrides, dict):
        raise RtlgenError("config: 'default' and 'layers' must be mappings")
    bad_default = set(default) - DEFAULT_KEYS
    if bad_default:
        raise RtlgenError(f"config 'default': unknown key(s) {key_list(bad_default)}; allowed: {sorted(DEFAULT_KEYS)}")
    for key in ("weight", "bias", "result", "accum"):
        if default.get(key) is not None:
            _type(default[key], f"config 'default' {key}")     # named here, not at the first layer using it
    names = model.layer_names()
    for key in overrides:
        if key not in names:
            raise RtlgenError(
                f"config 'layers' names {key!r}, which is not a layer of the model; "
                f"the layers are: {', '.join(names)}")

    clock_mhz, target = _timing(cfg)
    model.check_sources()
    layers = []
    out_types, out_sizes = {-1: input_type}, {-1: model.n_in}   # of every layer's output (-1: the input)
    stream_state = _StreamPrefix()
    for k, layer in enumerate(model.layers):
        sources = model.inputs_of(k)
        in_type, size = out_types[sources[0]], out_sizes[sources[0]]
        own = overrides.get(layer.name) or {}
        if not isinstance(own, dict):
            raise RtlgenError(f"config 'layers' entry {layer.name!r} must be a mapping")
        is_dense = isinstance(layer, (Dense, Conv)) or (isinstance(layer, Pool) and layer.kind == "avg")
        if isinstance(layer, Merge):
            allowed = MERGE_KEYS
        else:
            allowed = DENSE_KEYS if is_dense else ACTIVATION_KEYS | _activation_keys(layer)
        extra = set(own) - allowed
        if extra:
            raise RtlgenError(
                f"config for layer {layer.name!r}: key(s) {key_list(extra)} do not apply to this "
                f"layer; allowed: {sorted(allowed)}")
        from_model = _model_types(layer)
        merged = {**default, **from_model, **own}
        where = f"layer {layer.name!r}"
        result_type = _type(merged["result"], f"{where} result") if "result" in merged else None
        io = merged.get("io", "parallel")
        if io not in IO_MODES:
            raise RtlgenError(f"{where}: io must be 'parallel' or 'stream', got {io!r}")
        io = stream_state.mode(layer, io, "io" in own, where)
        if isinstance(layer, Merge):
            q = _merge(layer, [out_types[j] for j in sources], [out_sizes[j] for j in sources], result_type,
                       where)
        elif isinstance(layer, Pool) and layer.kind == "max":
            if layer.n_in != size:
                raise RtlgenError(f"{where}: expects {layer.n_in} inputs but the previous layer gives {size}")
            q = QMaxPool(name=layer.name, in_type=in_type, result_type=result_type or in_type,
                         in_shape=tuple(layer.in_shape), kernel=tuple(layer.kernel),
                         stride=tuple(layer.stride), pads=tuple(layer.pads), io=io)
            if not all(q.windows()):
                raise RtlgenError(f"{where}: a pooling window lies entirely in the padding; "
                                  "use pads smaller than the kernel")
        elif is_dense:
            if layer.n_in != size:
                raise RtlgenError(f"{where}: expects {layer.n_in} inputs but the previous layer gives {size}")
            # a layer without a bias (all zeros: none in the model) needs no bias type; zero fits any
            no_bias = isinstance(layer, Pool) or not np.any(layer.bias)
            needed = ("weight",) if no_bias or "weight" in from_model else ("weight", "bias")
            if isinstance(layer, Pool) and "weight" not in merged:   # 1/n exact when it is short
                factors = np.unique(pool_matrix(layer.in_shape, layer.kernel, layer.stride, layer.pads,
                                                layer.count_include_pad))
                merged["weight"] = str(_exact_param_type(factors[factors != 0], where, "window factor 1/n"))
            for key in needed:
                if key not in merged:
                    raise RtlgenError(f"config: no '{key}' type for {where}: set default.{key} or layers.{layer.name}.{key}")
            weight_type = _type(merged["weight"], f"{where} weight")
            if "bias" in merged:
                bias_type = _type(merged["bias"], f"{where} bias")
            elif "weight" in from_model and "weight" not in own:
                bias_type = _model_bias_type(layer, in_type, weight_type, where)
            else:
                bias_type = weight_type
            accum_type = None
            if merged.get("accum") is not None:
                accum_type = _type(merged["accum"], f"{where} accum")
                if accum_type.overflow is not Overflow.WRAP:
                    raise RtlgenError(f"{where}: the accum type must use WRAP overflow, got {accum_type}")
            if isinstance(layer, Conv):
                # quantize the kernel, then unroll it (padding taps are exact zeros)
                kernel_codes = _quantize_param(layer.weight, weight_type, f"{where} weights")
                bias_codes = _quantize_param(layer.bias, bias_type, f"{where} bias")
                w = layer.matrix(kernel_codes)
                b = layer.bias_vector(bias_codes)
            elif isinstance(layer, Pool):
                w = _quantize_param(pool_matrix(layer.in_shape, layer.kernel, layer.stride, layer.pads,
                                                layer.count_include_pad), weight_type, f"{where} weights")
                b = np.zeros(layer.n_out, dtype=np.int64)
            else:
                w = _quantize_param(layer.weight, weight_type, f"{where} weights")
                b = _quantize_param(layer.bias, bias_type, f"{where} bias")
            nonzero = int(np.count_nonzero(w))
            if not isinstance(layer, Pool):
                _warn_if_all_zero(layer, w, weight_type, merged.get("storage", "constant"), where)
            if io == "stream":   # the reuse factor applies to one window
                nonzero = int(np.count_nonzero(kernel_codes)) if isinstance(layer, Conv) else \
                    _window_nonzero(w, layer, where, merged)
            storage, tmr_bits = _storage(merged, own, layer, io, weight_type, bias_type, where)
            what = "nonzero weights"
            if storage != "constant":   # every structural position is multiplied
                what = "weight positions"
                nonzero = int(np.count_nonzero(layer.matrix(np.ones_like(kernel_codes)))) \
                    if isinstance(layer, Conv) else int(w.size)
            reuse = _reuse(merged.get("reuse_factor", 1), nonzero, where, what)
            if result_type is None:
                result_type = _exact_result(in_type, weight_type, bias_type, w, b, accum_type)
            levels = _levels_key(merged, "adder_levels", 2, 1, None, where)
            slack = _levels_key(merged, "adder_depth_slack", 0, 0, MAX_ADDER_DEPTH_SLACK, where)
            share = _share_columns(merged, where)
            common = dict(name=layer.name, in_type=in_type, weight_type=weight_type, bias_type=bias_type,
                          result_type=result_type, weights=w, bias=b, reuse_factor=reuse,
                          accum_type=accum_type, adder_levels=levels, adder_depth_slack=slack,
                          share_columns=share)
            if storage != "constant":
                common.update(storage=storage, tmr_bits=tmr_bits)
            if isinstance(layer, Conv):
                q = QConv(**common, in_shape=tuple(layer.in_shape), out_shape=layer.out_shape,
                          kernel=layer.kernel, stride=tuple(layer.stride), pads=tuple(layer.pads),
                          kernel_codes=kernel_codes, bias_codes=bias_codes, io=io)
            elif isinstance(layer, Pool):
                q = QConv(**common, in_shape=tuple(layer.in_shape), out_shape=layer.out_shape,
                          kernel=tuple(layer.kernel), stride=tuple(layer.stride), pads=tuple(layer.pads),
                          count_include_pad=layer.count_include_pad, op="avgpool", io=io)
            else:
                q = QDense(**common)
            q = replace(q, arithmetic=_arithmetic(q, merged, where), clock_mhz=clock_mhz, timing_target=target,
                        in_lo=_nonnegative_input(layers, sources))
            q = replace(q, weight_rom=_weight_rom(q, merged, where))
            idle = [key for key in GRAPH_KEYS if key in own]
            # (auto leaves a layer whose weights all quantize to zero with multipliers: it has its warning)
            if idle and q.arithmetic != "shift_add" and (merged.get("arithmetic") == "multipliers"
                                                         or shift_add_problem(q) is not None):
                raise RtlgenError(f"{where}: {key_list(idle)} shape the adder graph of a shift_add layer, and this "
                                  f"layer is built with {q.arithmetic}: remove {'it' if len(idle) == 1 else 'them'}, "
                                  "or set arithmetic: shift_add (constant weights, reuse factor 1)")
        elif isinstance(layer, Activation):
            q = _activation(layer, merged, own, size, in_type, result_type, where)
        else:  # pragma: no cover - front ends only produce the above
            raise RtlgenError(f"{where}: unsupported layer type {type(layer).__name__}")
        layers.append(q)
        out_types[k], out_sizes[k] = q.result_type, q.n_out
    stored = [q for q in layers if getattr(q, "storage", "constant") != "constant"]
    if stream_state.any and stored:
        raise RtlgenError(f"layer {stored[0].name!r}: storage {stored[0].storage!r} needs the configuration bus of "
                          "a parallel core, and this model streams its first layers (io: stream): use storage: "
                          "constant here, or io: parallel for every layer")
    if stream_state.any and not model.is_chain:
        raise RtlgenError(f"config: io: stream builds a chain of layers, and model {model.name!r} has "
                          "residual adds or concatenations: use io: parallel")
    if default.get("io") == "stream" and not stream_state.any:
        raise RtlgenError(f"config 'default': io: stream applies to the leading Conv/pooling layers, and no "
                          f"layer of model {model.name!r} can stream (its first layer is "
                          f"{model.layers[0].name!r}): remove it, or use io: parallel")
    if default.get("tmr_bits") is not None and not any(getattr(q, "storage", None) == "tmr" for q in layers):
        raise RtlgenError("config 'default': tmr_bits applies only to layers with storage: tmr, and no layer "
                          "has it: set storage: tmr (in default or per layer) or remove tmr_bits")
    graphs = any(getattr(q, "arithmetic", None) == "shift_add" for q in layers)
    idle = [key for key in GRAPH_KEYS if key in default]
    if idle and not graphs:
        raise RtlgenError(f"config 'default': {key_list(idle)} shape the adder graphs of shift_add layers, and "
                          f"no layer of model {model.name!r} is built with shift_add: remove "
                          f"{'it' if len(idle) == 1 else 'them'}, or set arithmetic: shift_add (or auto) where "
                          "the layers allow it")
    idle = [key for key in sorted(TABLE_KEYS) if key in default]
    if idle and not any(isinstance(q, QSoftmax) or (isinstance(q, QActivation) and q.kind in TABLE_DEFAULTS)
                        for q in layers):
        raise RtlgenError(f"config 'default': {key_list(idle)} set the lookup tables of sigmoid, tanh and "
                          f"softmax layers, and model {model.name!r} has none: remove "
                          f"{'it' if len(idle) == 1 else 'them'}")
    if clock_mhz is not None and not graphs:
        raise RtlgenError("config: clock_mhz places the registers of shift_add layers, and no layer of "
                          f"model {model.name!r} is built with shift_add: remove clock_mhz, or set "
                          "arithmetic: shift_add (or auto) where the layers allow it")
    name = config_name(cfg, model.name)
    i2c = i2c_option(cfg.get("i2c"), any(getattr(layer, "stored", False) for layer in layers))
    return QModel(name=name, input_type=input_type, n_in=model.n_in, layers=layers,
                  input_shape=getattr(model, "input_shape", None), i2c=i2c,
                  sources=None if model.is_chain else [tuple(s) for s in model.sources])
