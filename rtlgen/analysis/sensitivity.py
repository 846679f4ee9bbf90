"""Bit-flip sensitivity of stored weights, for selective TMR (``tmr_bits``).

With ``storage: register`` or ``tmr`` every weight and bias of a layer is a
register word of its type's width ``W`` (two's complement for signed
types).  A single-event upset flips one bit of one word.  This module
measures, on the bit-exact golden model, what every such flip does to the
model's output, and from that recommends how many of the most significant
bits of each word to triplicate.

What is flipped
---------------
The stored parameters: for a Dense layer every entry of the weight matrix
``[n_in, n_out]`` (zero entries too: a stored layer keeps every position)
and every bias; for a Conv layer every kernel tap ``[C_out, C_in, k...]``
and every per-channel bias.  One kernel register feeds every output
position of its channel, so a kernel flip is applied to the kernel and the
layer is re-unrolled (:func:`rtlgen.ir.conv.conv_matrix`).  AveragePool
layers hold no trained parameters and are skipped.  Bit ``b`` is numbered
from the LSB (0) to the sign bit (``W - 1``); the flipped word is read back
as a code of the same type (:func:`~rtlgen.analysis.flips.flip_bits`).

What is measured
----------------
For every (parameter, bit) the model runs on a sample of input vectors
with that one bit flipped and is compared with the unflipped model:
``max_error`` is the largest absolute difference of any output code over
the sample, ``changed`` the number of sample vectors whose output changes
at all.  The sample is at most ``max_samples`` rows (default
:data:`DEFAULT_SAMPLES`) drawn without replacement with a seeded generator
(:func:`~rtlgen.analysis.flips.sample_rows`); the measurement is exact for those vectors, and a
flip whose effect shows on no sampled vector counts as harmless.

The computation is vectorized: for each output (Dense) or output channel
(Conv) all flips of the parameters feeding it are evaluated as the
outputs of one wider probe layer run by the golden model (so any
accumulator type and rounding is honoured), and only the rows whose layer
output changed are propagated through the rest of the network.

Recommendation
--------------
For a threshold ``T`` (output codes) the recommended ``tmr_bits`` of a
layer is the smallest ``N`` such that, with the ``min(N, W)`` most
significant bits of every weight and bias word triplicated, no remaining
single-copy bit has ``max_error > T``
(:func:`rtlgen.analysis.report.recommend`).  The report gives the residual
vulnerability (single-copy bits, how many of them change some output,
their worst error) and the flip-flop count against full TMR: a triplicated
bit costs three flip-flops, a single one one, so the saving is twice the
number of single-copy bits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import prod
from typing import Optional

import numpy as np

from ..errors import RtlgenError
from ..golden.network import check_codes, predict_codes, predict_trace
from ..ir.conv import QConv, conv_matrix
from ..ir.model import QDense, QModel
from ..numerics.fixed import FixedType
from .flips import DEFAULT_SAMPLES, WIDE_BITS, flip_bits, sample_inputs, sample_rows
from .report import (Recommendation, format_table, markdown_document, per_bit, recommend, recommendation_figures,
                     report_document, summary_rows)

__all__ = ["DEFAULT_SAMPLES", "flip_bits", "sample_rows", "LayerSensitivity", "Recommendation", "analyze",
           "recommend", "report_dict", "report_markdown", "config_snippet", "table_rows", "format_table"]

#: largest probe output evaluated at once (rows x columns)
_PROBE_ELEMENTS = 1 << 22
#: rows propagated through the rest of the network at once
_TAIL_ROWS = 1 << 16


def _stored_layer(layer) -> bool:
    return isinstance(layer, QDense) and not (isinstance(layer, QConv) and layer.op == "avgpool")


@dataclass
class LayerSensitivity:
    """Flip results of one layer.

    ``weight_error``/``weight_changed`` have the shape of the stored
    weights (``[n_in, n_out]`` for Dense, ``[C_out, C_in, k...]`` for Conv)
    plus a last axis of bits (0 = LSB); ``bias_error``/``bias_changed``
    have shape ``[n_bias, W_bias]``.  Errors are absolute output code
    differences; ``changed`` counts sample vectors whose output changed.
    """
    index: int
    name: str
    op: str
    weight_type: FixedType
    bias_type: FixedType
    weight_error: np.ndarray
    weight_changed: np.ndarray
    bias_error: np.ndarray
    bias_changed: np.ndarray
    samples: int

    @property
    def n_weights(self) -> int:
        return prod(self.weight_error.shape[:-1])

    @property
    def n_biases(self) -> int:
        return int(self.bias_error.shape[0])

    def flat(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(error, changed) of ``kind`` (``weight`` or ``bias``) as [n_params, W] arrays."""
        err = self.weight_error if kind == "weight" else self.bias_error
        chg = self.weight_changed if kind == "weight" else self.bias_changed
        return err.reshape(-1, err.shape[-1]), chg.reshape(-1, chg.shape[-1])


# ---------------------------------------------------------------------------
# the flip experiment
# ---------------------------------------------------------------------------

class _Blocks:
    """A layer's parameters grouped by the outputs they feed.

    Block ``g`` is output ``g`` of a Dense layer or output channel ``g`` of
    a Conv layer; ``kernels[g]`` are the weights feeding it, ``bias[g]`` its
    bias, ``cols(g)`` the layer outputs it drives and ``matrix(k)`` the
    dense ``[n_in, V * block]`` matrix of ``V`` stacked variants of a block.
    """

    def __init__(self, layer: QDense):
        self.layer = layer
        if isinstance(layer, QConv):
            if layer.kernel_codes is None or layer.bias_codes is None:
                raise RtlgenError(f"layer {layer.name!r}: the quantized kernel is not known (a model "
                                  "saved before kernels were kept); rebuild it from the ONNX file")
            self.kernels = np.asarray(layer.kernel_codes)
            self.bias = np.asarray(layer.bias_codes)
            self.block = layer.n_out // self.kernels.shape[0]
            unrolled = conv_matrix(self.kernels, layer.in_shape, layer.stride, layer.pads)
            if unrolled.shape != np.shape(layer.weights) or np.any(unrolled != np.asarray(layer.weights)):
                raise RtlgenError(f"layer {layer.name!r}: the kernel codes do not unroll to the layer's "
                                  "weight matrix")
        else:
            self.kernels = np.asarray(layer.weights).T
            self.bias = np.asarray(layer.bias)
            self.block = 1

    @property
    def count(self) -> int:
        return int(self.kernels.shape[0])

    def cols(self, g: int) -> slice:
        return slice(g * self.block, (g + 1) * self.block)

    def matrix(self, variants: np.ndarray) -> np.ndarray:
        if isinstance(self.layer, QConv):
            return conv_matrix(variants, self.layer.in_shape, self.layer.stride, self.layer.pads)
        return variants.T


def _variants(kernel: np.ndarray, bias, wt: FixedType, bt: FixedType):
    """Every single-bit flip of one block: V kernels and V biases (weights first, bit-minor)."""
    k = kernel.size
    n_w = k * wt.width
    v = n_w + bt.width
    flat = np.repeat(kernel.reshape(1, -1), v, axis=0)
    p_idx = np.repeat(np.arange(k), wt.width)
    b_idx = np.tile(np.arange(wt.width), k)
    flat[np.arange(n_w), p_idx] = flip_bits(kernel.reshape(-1)[p_idx], b_idx, wt)
    biases = np.empty(v, dtype=object if bt.width > WIDE_BITS or np.asarray(bias).dtype == object else np.int64)
    biases[:] = bias
    biases[n_w:] = flip_bits(np.asarray([bias] * bt.width), np.arange(bt.width), bt)
    return flat.reshape((v,) + kernel.shape), biases


def _error_dtype(t: FixedType):
    return object if t.width >= WIDE_BITS else np.int64


def _tail_errors(tail: QModel, final: np.ndarray, perturbed: np.ndarray, rows: np.ndarray):
    """Per perturbed row: the largest absolute output code difference."""
    out = predict_codes(tail, perturbed)
    diff = np.abs(out - final[rows])
    return diff.max(axis=1)


def _layer_sensitivity(index: int, layer: QDense, x_in: np.ndarray, y: np.ndarray, final: np.ndarray,
                       tail: QModel, out_type: FixedType) -> LayerSensitivity:
    blocks = _Blocks(layer)
    wt, bt = layer.weight_type, layer.bias_type
    n = x_in.shape[0]
    k = prod(blocks.kernels.shape[1:])
    n_w = k * wt.width
    edt = _error_dtype(out_type)
    w_err = np.zeros((blocks.count, k, wt.width), dtype=edt)
    w_chg = np.zeros((blocks.count, k, wt.width), dtype=np.int64)
    b_err = np.zeros((blocks.count, bt.width), dtype=edt)
    b_chg = np.zeros((blocks.count, bt.width), dtype=np.int64)
    probe_in = QModel(f"{layer.name} probe", layer.in_type, layer.n_in, [])
    for g in range(blocks.count):
        kernels, biases = _variants(blocks.kernels[g], blocks.bias[g], wt, bt)
        cols = blocks.cols(g)
        base = y[:, cols]
        v_total = len(biases)
        err = np.zeros(v_total, dtype=edt)
        chg = np.zeros(v_total, dtype=np.int64)
        step = max(1, _PROBE_ELEMENTS // max(1, n * blocks.block))
        for a in range(0, v_total, step):
            b = min(v_total, a + step)
            probe = QDense(name=f"{layer.name} probe", in_type=layer.in_type, weight_type=wt, bias_type=bt,
                           result_type=layer.result_type, weights=blocks.matrix(kernels[a:b]),
                           bias=np.repeat(biases[a:b], blocks.block), accum_type=layer.accum_type)
            probe_in.layers = [probe]
            out = predict_codes(probe_in, x_in).reshape(n, b - a, blocks.block)
            rows, vs = np.nonzero(np.any(out != base[:, None, :], axis=2))
            for c in range(0, len(rows), _TAIL_ROWS):
                r, v = rows[c:c + _TAIL_ROWS], vs[c:c + _TAIL_ROWS]
                perturbed = y[r].copy()
                perturbed[:, cols] = out[r, v]
                row_err = _tail_errors(tail, final, perturbed, r)
                np.maximum.at(err, a + v, row_err.astype(edt) if edt is not object else row_err)
                np.add.at(chg, a + v, (row_err != 0).astype(np.int64))
        w_err[g] = err[:n_w].reshape(k, wt.width)
        w_chg[g] = chg[:n_w].reshape(k, wt.width)
        b_err[g] = err[n_w:]
        b_chg[g] = chg[n_w:]
    kshape = blocks.kernels.shape[1:]
    w_err = w_err.reshape((blocks.count,) + kshape + (wt.width,))
    w_chg = w_chg.reshape((blocks.count,) + kshape + (wt.width,))
    if not isinstance(layer, QConv):      # back to the [n_in, n_out] layout of the weights
        w_err, w_chg = np.swapaxes(w_err, 0, 1), np.swapaxes(w_chg, 0, 1)
    return LayerSensitivity(index=index, name=layer.name, op=getattr(layer, "op", "dense"),
                            weight_type=wt, bias_type=bt, weight_error=np.ascontiguousarray(w_err),
                            weight_changed=np.ascontiguousarray(w_chg), bias_error=b_err,
                            bias_changed=b_chg, samples=n)


def analyze(qmodel: QModel, x_codes, *, max_samples: Optional[int] = DEFAULT_SAMPLES, seed: int = 0,
            layers: Optional[list] = None) -> list[LayerSensitivity]:
    """Flip every bit of every stored parameter; see the module documentation.

    ``x_codes`` are input codes ``[N, n_in]``; at most ``max_samples`` of
    them are used (``None``: all).  ``layers`` restricts the analysis to
    those layer names.  Returns one :class:`LayerSensitivity` per layer with
    weights, in model order.
    """
    if not qmodel.is_chain:
        raise RtlgenError(f"model {qmodel.name!r} has residual adds or concatenations; the bit-flip analysis "
                          "follows a chain of layers only (the fault campaign, rtlgen faults, covers any core)")
    x = sample_inputs(check_codes(qmodel, x_codes), max_samples, seed)
    candidates = [(k, layer) for k, layer in enumerate(qmodel.layers) if _stored_layer(layer)]
    if layers is not None:
        unknown = sorted(set(layers) - {layer.name for _, layer in candidates})
        if unknown:
            raise RtlgenError(f"no layer with weights named {unknown[0]!r}; layers with weights: "
                              f"{', '.join(layer.name for _, layer in candidates)}")
        candidates = [(k, layer) for k, layer in candidates if layer.name in layers]
    if not candidates:
        raise RtlgenError(f"model {qmodel.name!r} has no layer with weights to analyse")
    trace = predict_trace(qmodel, x)
    final = trace[-1]
    out = []
    for k, layer in candidates:
        x_in = x if k == 0 else trace[k - 1]
        tail = QModel(f"{qmodel.name} after {layer.name}", layer.result_type, layer.n_out,
                      qmodel.layers[k + 1:])
        out.append(_layer_sensitivity(k, layer, x_in, trace[k], final, tail, qmodel.output_type))
    return out


# ---------------------------------------------------------------------------
# recommendation and reports
# ---------------------------------------------------------------------------

def _layer_entry(s: LayerSensitivity, rec: Recommendation, threshold: int) -> dict:
    w_err, w_chg = s.flat("weight")
    b_err, b_chg = s.flat("bias")
    return {
        "index": s.index, "name": s.name, "op": s.op,
        "weights": {"type": str(s.weight_type), "width": s.weight_type.width, "count": s.n_weights,
                    "shape": list(s.weight_error.shape[:-1]),
                    "per_bit": per_bit(w_err, w_chg, s.samples, threshold)},
        "bias": {"type": str(s.bias_type), "width": s.bias_type.width, "count": s.n_biases,
                 "per_bit": per_bit(b_err, b_chg, s.samples, threshold)},
        "recommendation": {"tmr_bits": rec.tmr_bits, "weight_protected_bits": rec.weight_protected,
                           "bias_protected_bits": rec.bias_protected, **recommendation_figures(rec)},
    }


def report_dict(sens: list, threshold: int, *, model: str = "", output_type: Optional[FixedType] = None,
                samples_total: Optional[int] = None, seed: int = 0) -> dict:
    """The analysis and the recommendation as JSON-ready data (one entry per layer under ``layers``)."""
    return report_document(sens, threshold, lambda s, rec: _layer_entry(s, rec, threshold), key="layers",
                           head={"model": model}, output_type=output_type, samples_total=samples_total,
                           seed=seed)


def config_snippet(report: dict) -> str:
    """YAML ``layers:`` overrides with the recommended storage of every analysed layer."""
    lines = [f"# selective TMR for errors <= {report['threshold']} output codes "
             f"({report['samples']} sample vectors)", "layers:"]
    for layer in report["layers"]:
        n = layer["recommendation"]["tmr_bits"]
        setting = "{storage: register}" if n == 0 else f"{{storage: tmr, tmr_bits: {n}}}"
        lines.append(f"  {json.dumps(layer['name'])}: {setting}")
    return "\n".join(lines) + "\n"


def table_rows(report: dict) -> list[list[str]]:
    """Header and one row per layer of the summary table."""
    return summary_rows(["layer", "params", "W/B bits"],
                        [([layer["name"], str(layer["weights"]["count"] + layer["bias"]["count"]),
                           f"{layer['weights']['width']}/{layer['bias']['width']}"], layer["recommendation"])
                         for layer in report["layers"]], report["total"])


def report_markdown(report: dict) -> str:
    """A readable report: summary table, per-bit worst errors, config snippet."""
    bits = [(layer["name"], kind, layer[kind]["per_bit"]) for layer in report["layers"]
            for kind in ("weights", "bias")]
    return markdown_document(report, table_rows(report), bits, config_snippet(report))
