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

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import cache
from ..numerics import adder_graph as adder_graph_module
from ..numerics.adder_graph import AdderGraph, adder_graph, csd_digits
from ..numerics.fixed import FixedType, Quant, rounding_offset
from ..numerics.pipeline import DELAY_MODELS, MARGIN, DelayModel, StagePlan, level_model, longest_path, plan_stages

__all__ = ["ARITHMETICS", "shift_add_problem", "choose", "dense_graph", "dense_plan", "sum_frac",
           "folded_rounding", "output_cast_type",
           "shift_add_figures", "signed_digits", "adder_estimate", "path_estimate"]

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


def folded_rounding(layer) -> int | None:
    """The rounding constant of the output cast that a shift-and-add layer adds with its bias
    (:func:`rtlgen.numerics.fixed.rounding_offset`: 0 when the cast drops no bits or
    truncates), or None when the cast rounds on its own (a mode that looks at the value)."""
    return rounding_offset(layer.result_type.quant, sum_frac(layer) - layer.result_type.frac)


def output_cast_type(layer) -> FixedType:
    """The type a shift-and-add layer's sums are cast to: the result type, truncating when
    the graph has added the rounding constant already."""
    if folded_rounding(layer) is None:
        return layer.result_type
    return replace(layer.result_type, quant=Quant.TRN)


def dense_graph(layer) -> AdderGraph:
    """The shift-and-add graph of a constant dense layer, at its sum's fractional bits.

    Each output's constant is its bias plus the output cast's rounding constant when that
    is a constant (:func:`folded_rounding`), so the cast after the graph only truncates."""
    frac = sum_frac(layer)
    weight_shift = frac - (layer.in_type.frac + layer.weight_type.frac)
    bias_shift = frac - layer.bias_type.frac
    offset = folded_rounding(layer) or 0
    constants = [(int(b) << bias_shift) + offset for b in np.asarray(layer.bias).reshape(-1)]
    return _cached(layer, weight_shift, constants)


#: graphs by layer contents (the hardware, the size check and the manifest all ask for them)
_GRAPHS: dict = {}
#: the adder-graph code, part of every cache key: a changed search never reads an old graph
_GRAPH_CODE = hashlib.sha256(Path(adder_graph_module.__file__).read_bytes()).hexdigest()


def _cached(layer, weight_shift: int, constants: list[int]) -> AdderGraph:
    """The graph of ``layer``: from memory, else from rtlgen's disk cache, else searched and kept in both.
    Both are keyed by a hash of what decides the graph: the weights, constants, input range, shift and
    code."""
    w = np.asarray(layer.weights)
    contents = (_GRAPH_CODE, weight_shift, w.shape, [int(v) for v in w.reshape(-1)], constants,
                layer.in_range, str(layer.weight_type), layer.adder_depth_slack, layer.share_columns)
    digest = hashlib.sha256(repr(contents).encode()).hexdigest()
    graph = _GRAPHS.get(digest)
    if graph is None:
        graph = cache.load("adder-graphs", digest)
        if not isinstance(graph, AdderGraph):
            graph = adder_graph(np.asarray(layer.weights), [layer.in_range] * layer.n_in,
                                np.array(constants, dtype=object), weight_shift=weight_shift,
                                depth_slack=layer.adder_depth_slack, share_columns=layer.share_columns)
            cache.store("adder-graphs", digest, graph)
        if len(_GRAPHS) > 32:
            _GRAPHS.clear()
        _GRAPHS[digest] = graph
    return graph


def _output_cast_rounds(layer) -> bool:
    """True when the output cast after the graph needs a rounding adder of its own."""
    return sum_frac(layer) > layer.result_type.frac and output_cast_type(layer).quant is not Quant.TRN


def _cast_delay(layer, model: DelayModel, activation) -> float:
    """The model's delay of the logic after the graph in the output stage.

    A fused ReLU adds nothing: its select takes the sign bit into the same
    LUTs as the saturation's.  An activation whose result type differs from
    the layer's adds a cast of its own.
    """
    cast = model.cast(layer.result_type.width, _output_cast_rounds(layer))
    if activation is not None and activation.result_type != layer.result_type:
        cast += model.t_level
    return cast


def dense_plan(layer, activation=None) -> StagePlan:
    """Where the registers of a shift-and-add layer go (its clock target, or ``adder_levels``).

    ``activation`` is the activation fused into the layer's output stage, if any.
    """
    graph = dense_graph(layer)
    if layer.clock_mhz is None:
        return plan_stages(graph, level_model(), float(layer.adder_levels))
    model = DELAY_MODELS[layer.timing_target]
    return plan_stages(graph, model, 1000.0 / layer.clock_mhz * (1.0 - MARGIN),
                       _cast_delay(layer, model, activation))


def path_estimate(layer, activation=None, plan: StagePlan | None = None,
                  model: DelayModel | None = None) -> float:
    """The longest register-to-register path (ns) of the layer's plan under ``model``.

    ``model`` defaults to the delay model of the layer's timing target.
    """
    graph = dense_graph(layer)
    plan = plan or dense_plan(layer, activation)
    model = model or DELAY_MODELS[layer.timing_target]
    return longest_path(graph, plan.stage, plan.ranks, model, _cast_delay(layer, model, activation))


def shift_add_figures(layer, plan: StagePlan | None = None) -> dict:
    """The manifest figures of a shift-and-add layer: adders, depth, register ranks, estimated LUTs."""
    graph = dense_graph(layer)
    plan = plan or dense_plan(layer)
    return {"adders": graph.adders, "adder_depth": graph.depth, "adder_depth_slack": layer.adder_depth_slack,
            "share_columns": layer.share_columns,
            "register_ranks": plan.ranks,
            "pipeline_ffs": plan.registers(graph), "est_luts": graph.adder_bits()}


def signed_digits(layer) -> int:
    """The nonzero signed digits of all the layer's weights (the terms before sharing)."""
    w = np.asarray(layer.weights)
    values, counts = np.unique(w[w != 0], return_counts=True)
    return int(sum(len(csd_digits(int(v))) * int(c) for v, c in zip(values, counts)))


#: layers with more signed digits than this get the adder count of the plain trees in the
#: size check (their graph is built only if the build goes on)
SIZE_CHECK_TERMS = 60_000


def adder_estimate(layer) -> int:
    """The adders of a shift-and-add layer: its graph's, or for a very large layer the
    bound of the plain trees (one adder per signed digit, less one per output)."""
    terms = signed_digits(layer)
    if terms <= SIZE_CHECK_TERMS:
        return dense_graph(layer).adders
    return max(0, terms + int(np.count_nonzero(layer.bias)) - layer.n_out)


def choose(layer) -> str:
    """``auto``: ``shift_add`` wherever it can be built, else ``multipliers``.

    The cost comparison is settled before any graph is built: a shift-and-add
    layer has at most one adder per signed digit of its weights (fewer once sums
    are shared), while a multiplier built from LUTs has one adder per signed digit
    of its constant too, plus the adder tree of every output; and it uses no DSP
    block.
    """
    if shift_add_problem(layer) is not None or layer.nonzero == 0:
        return "multipliers"
    return "shift_add"
