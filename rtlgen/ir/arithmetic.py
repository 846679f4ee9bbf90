"""The arithmetic of a dense (or convolution) layer: multipliers or a shift-and-add graph.

A layer's ``arithmetic`` is ``multipliers`` (one multiplier per nonzero
weight, shared by the reuse factor) or ``shift_add`` (the constant
matrix-vector product as one adder graph, :mod:`rtlgen.numerics.adder_graph`,
with registers placed by :mod:`rtlgen.numerics.pipeline`).  The
configuration may also ask for ``auto``, resolved here per layer by
:func:`choose`.  Everything that needs a layer's graph, its figures or its
pipeline plan (the hardware, the size check, the manifest) asks this module,
so all of them see the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..numerics.adder_graph import AdderGraph, adder_graph, csd_digits
from ..numerics.fixed import Quant
from ..numerics.pipeline import DELAY_MODELS, StagePlan, level_model, plan_stages

__all__ = ["ARITHMETICS", "shift_add_problem", "choose", "dense_graph", "dense_plan", "sum_frac",
           "shift_add_figures", "multiplier_bits"]

ARITHMETICS = ("multipliers", "shift_add", "auto")


def sum_frac(layer) -> int:
    """Fractional bits of a dense layer's exact sum (products and bias aligned)."""
    prod = layer.in_type.frac + layer.weight_type.frac
    return layer.accum_type.frac if layer.accum_type is not None else max(prod, layer.bias_type.frac)


def shift_add_problem(layer) -> str | None:
    """Why ``layer`` cannot be built as a shift-and-add graph (None when it can)."""
    if layer.stored:
        return (f"storage {layer.storage!r} keeps the weights in registers, so they need real "
                "multipliers: use arithmetic: multipliers (or storage: constant)")
    if layer.reuse_factor != 1:
        return (f"shift_add builds every weight once, as adders (reuse_factor 1); reuse_factor "
                f"{layer.reuse_factor} shares multipliers: use arithmetic: multipliers for it, "
                "or reuse_factor: 1")
    if getattr(layer, "io", "parallel") == "stream" and getattr(layer, "varying_divisor", False):
        return ("a streamed average pool whose divisor varies at the borders multiplies every window "
                "by its own 1/n: use arithmetic: multipliers (or count_include_pad, or io: parallel)")
    if layer.accum_type is not None:
        return ("an accum type casts every product before the sum, and a shift_add graph sums exactly: "
                "remove accum or use arithmetic: multipliers")
    return None


def _key(layer) -> tuple:
    w = np.asarray(layer.weights)
    return (w.shape, w.astype(object).tobytes() if w.dtype == object else w.tobytes(),
            np.asarray(layer.bias).astype(np.int64).tobytes() if np.asarray(layer.bias).dtype != object
            else tuple(int(v) for v in layer.bias),
            str(layer.in_type), str(layer.weight_type), str(layer.bias_type))


def dense_graph(layer) -> AdderGraph:
    """The shift-and-add graph of a constant dense layer, at its sum's fractional bits."""
    frac = sum_frac(layer)
    weight_shift = frac - (layer.in_type.frac + layer.weight_type.frac)
    bias_shift = frac - layer.bias_type.frac
    return _cached(_key(layer), layer, weight_shift, bias_shift)


#: graphs by layer contents (the hardware, the size check and the manifest all ask for them)
_GRAPHS: dict = {}


def _cached(key, layer, weight_shift, bias_shift) -> AdderGraph:
    full = (key, weight_shift, bias_shift)
    graph = _GRAPHS.get(full)
    if graph is None:
        if len(_GRAPHS) > 32:
            _GRAPHS.clear()
        t = layer.in_type
        graph = adder_graph(np.asarray(layer.weights), [(t.min_code, t.max_code)] * layer.n_in,
                            np.asarray(layer.bias), bias_shift=bias_shift, weight_shift=weight_shift)
        _GRAPHS[full] = graph
    return graph


def cast_rounds(src_frac: int, dst) -> bool:
    """True when a cast from ``src_frac`` fractional bits to ``dst`` needs a rounding adder."""
    return src_frac > dst.frac and dst.quant not in (Quant.TRN,)


def dense_plan(layer, fused_activation: bool = False) -> StagePlan:
    """Where the registers of a shift-and-add layer go (its clock target, or ``adder_levels``)."""
    graph = dense_graph(layer)
    if layer.clock_mhz is None:
        return plan_stages(graph, level_model(), float(layer.adder_levels))
    model = DELAY_MODELS[layer.timing_target]
    cast = model.cast(layer.result_type.width, cast_rounds(sum_frac(layer), layer.result_type))
    if fused_activation:
        cast += model.t_level
    return plan_stages(graph, model, 1000.0 / layer.clock_mhz, cast)


def shift_add_figures(layer, plan: StagePlan | None = None) -> dict:
    """The manifest figures of a shift-and-add layer: adders, depth, register ranks, estimated LUTs."""
    graph = dense_graph(layer)
    plan = plan or dense_plan(layer)
    return {"adders": graph.adders, "adder_depth": graph.depth, "register_ranks": plan.ranks,
            "pipeline_ffs": plan.registers(graph), "est_luts": graph.adder_bits()}


def multiplier_bits(layer) -> int:
    """The LUT estimate of the multiplier form built from LUTs: an adder per extra signed
    digit of every weight and per node of each output's sum (bias included), each as wide
    as the input plus the weight."""
    width = layer.in_type.width + layer.weight_type.width
    weights = np.asarray(layer.weights)
    adders = 0
    for j in range(layer.n_out):
        terms = sum(len(csd_digits(int(v))) for v in weights[:, j] if int(v)) + (1 if int(layer.bias[j]) else 0)
        adders += max(0, terms - 1)
    return adders * width


def choose(layer) -> str:
    """``auto``: shift_add where it can be built and its estimated LUTs do not exceed the
    multiplier form's (built from LUTs, as on a device without enough DSP blocks)."""
    if shift_add_problem(layer) is not None or layer.nonzero == 0:
        return "multipliers"
    return "shift_add" if dense_graph(layer).adder_bits() <= multiplier_bits(layer) else "multipliers"
