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
as a code of the same type (:func:`flip_bits`).

What is measured
----------------
For every (parameter, bit) the model runs on a sample of input vectors
with that one bit flipped and is compared with the unflipped model:
``max_error`` is the largest absolute difference of any output code over
the sample, ``changed`` the number of sample vectors whose output changes
at all.  The sample is at most ``max_samples`` rows (default
:data:`DEFAULT_SAMPLES`) drawn without replacement with a seeded generator
(:func:`sample_rows`); the measurement is exact for those vectors, and a
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
single-copy bit has ``max_error > T``.  The report gives the residual
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

__all__ = ["DEFAULT_SAMPLES", "flip_bits", "sample_rows", "LayerSensitivity", "Recommendation", "analyze",
           "recommend", "report_dict", "report_markdown", "config_snippet"]

#: input vectors used by default (a seeded sample when the data set is larger)
DEFAULT_SAMPLES = 256
#: largest probe output evaluated at once (rows x columns)
_PROBE_ELEMENTS = 1 << 22
#: rows propagated through the rest of the network at once
_TAIL_ROWS = 1 << 16
#: above this width codes are handled as Python integers
_INT_BITS = 62


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
    wide = width > _INT_BITS or np.asarray(codes).dtype == object
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


@dataclass
class Recommendation:
    """The smallest ``tmr_bits`` meeting a threshold, and what it leaves."""
    name: str
    threshold: int
    tmr_bits: int
    weight_protected: int          # triplicated bits per weight word
    bias_protected: int            # triplicated bits per bias word
    total_bits: int                # stored bits of the layer
    unprotected_bits: int          # bits held once
    residual_changing_bits: int    # single-copy bits whose flip changes some output
    residual_worst_error: int      # largest error of a single-copy bit flip
    full_tmr_ffs: int
    selective_ffs: int

    @property
    def saved_ffs(self) -> int:
        return self.full_tmr_ffs - self.selective_ffs

    @property
    def saving(self) -> float:
        return self.saved_ffs / self.full_tmr_ffs if self.full_tmr_ffs else 0.0


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
    biases = np.empty(v, dtype=object if bt.width > _INT_BITS or np.asarray(bias).dtype == object else np.int64)
    biases[:] = bias
    biases[n_w:] = flip_bits(np.asarray([bias] * bt.width), np.arange(bt.width), bt)
    return flat.reshape((v,) + kernel.shape), biases


def _error_dtype(t: FixedType):
    return object if t.width >= _INT_BITS else np.int64


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
    x = check_codes(qmodel, x_codes)
    if x.shape[0] == 0:
        raise RtlgenError("the data set has no input vectors")
    if max_samples is not None and max_samples < 1:
        raise RtlgenError(f"max_samples must be at least 1, got {max_samples}")
    x = x[sample_rows(x.shape[0], max_samples, seed)]
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

def _unprotected(err: np.ndarray, width: int, n: int) -> np.ndarray:
    """The single-copy bit columns of [params, W] errors when the top ``min(n, W)`` are triplicated."""
    return err[:, :width - min(n, width)]


def recommend(sens: LayerSensitivity, threshold: int) -> Recommendation:
    """Smallest ``tmr_bits`` leaving no single-copy bit with ``max_error > threshold``."""
    if threshold < 0:
        raise RtlgenError(f"threshold must be at least 0 output codes, got {threshold}")
    ww, wb = sens.weight_type.width, sens.bias_type.width
    w_err, _ = sens.flat("weight")
    b_err, _ = sens.flat("bias")
    total = w_err.size + b_err.size
    for n in range(0, max(ww, wb) + 1):
        rest = [_unprotected(w_err, ww, n), _unprotected(b_err, wb, n)]
        worst = max((int(r.max()) for r in rest if r.size), default=0)
        if worst <= threshold:
            break
    single = sum(r.size for r in rest)
    changing = sum(int(np.count_nonzero(r != 0)) for r in rest)
    protected = total - single
    return Recommendation(name=sens.name, threshold=int(threshold), tmr_bits=n,
                          weight_protected=min(n, ww), bias_protected=min(n, wb), total_bits=total,
                          unprotected_bits=single, residual_changing_bits=changing,
                          residual_worst_error=worst, full_tmr_ffs=3 * total,
                          selective_ffs=3 * protected + single)


def _per_bit(err: np.ndarray, chg: np.ndarray, samples: int, threshold: int) -> list:
    rows = []
    for b in range(err.shape[1]):
        col, ch = err[:, b], chg[:, b]
        rows.append({"bit": b, "max_error": int(col.max()) if col.size else 0,
                     "params_over_threshold": int(np.count_nonzero(col > threshold)),
                     "params_changing_output": int(np.count_nonzero(col != 0)),
                     "mean_changed_fraction": float(ch.mean() / samples) if ch.size else 0.0,
                     "max_changed_fraction": float(ch.max() / samples) if ch.size else 0.0})
    return rows


def recommendation_figures(rec: Recommendation) -> dict:
    """The stored bits, residual vulnerability and flip-flop figures of a recommendation (JSON-ready)."""
    return {"stored_bits": rec.total_bits, "unprotected_bits": rec.unprotected_bits,
            "residual_changing_bits": rec.residual_changing_bits,
            "residual_worst_error": rec.residual_worst_error, "full_tmr_ffs": rec.full_tmr_ffs,
            "selective_ffs": rec.selective_ffs, "saved_ffs": rec.saved_ffs, "saving": round(rec.saving, 4)}


def recommendation_totals(recs: list) -> dict:
    """Bits and flip-flops summed over several recommendations, and the saving."""
    totals = {"bits": sum(r.total_bits for r in recs), "unprotected_bits": sum(r.unprotected_bits for r in recs),
              "full_tmr_ffs": sum(r.full_tmr_ffs for r in recs), "selective_ffs": sum(r.selective_ffs for r in recs)}
    totals["saved_ffs"] = totals["full_tmr_ffs"] - totals["selective_ffs"]
    totals["saving"] = round(totals["saved_ffs"] / totals["full_tmr_ffs"], 4) if totals["full_tmr_ffs"] else 0.0
    return totals


def report_dict(sens: list, threshold: int, *, model: str = "", output_type: Optional[FixedType] = None,
                samples_total: Optional[int] = None, seed: int = 0) -> dict:
    """The analysis and the recommendation as JSON-ready data."""
    layers, recs = [], []
    for s in sens:
        rec = recommend(s, threshold)
        w_err, w_chg = s.flat("weight")
        b_err, b_chg = s.flat("bias")
        layers.append({
            "index": s.index, "name": s.name, "op": s.op,
            "weights": {"type": str(s.weight_type), "width": s.weight_type.width, "count": s.n_weights,
                        "shape": list(s.weight_error.shape[:-1]),
                        "per_bit": _per_bit(w_err, w_chg, s.samples, threshold)},
            "bias": {"type": str(s.bias_type), "width": s.bias_type.width, "count": s.n_biases,
                     "per_bit": _per_bit(b_err, b_chg, s.samples, threshold)},
            "recommendation": {"tmr_bits": rec.tmr_bits, "weight_protected_bits": rec.weight_protected,
                               "bias_protected_bits": rec.bias_protected, **recommendation_figures(rec)},
        })
        recs.append(rec)
    totals = recommendation_totals(recs)
    return {"model": model, "output_type": str(output_type) if output_type else None,
            "threshold": int(threshold), "error_unit": "output codes",
            "samples": sens[0].samples if sens else 0, "samples_total": samples_total, "seed": seed,
            "layers": layers, "total": totals}


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
    rows = [["layer", "params", "W/B bits", "tmr_bits", "single bits", "changing", "worst single",
             "FFs full TMR", "FFs selective", "saving"]]
    for layer in report["layers"]:
        r = layer["recommendation"]
        rows.append([layer["name"], str(layer["weights"]["count"] + layer["bias"]["count"]),
                     f"{layer['weights']['width']}/{layer['bias']['width']}"] + recommendation_cells(r))
    return rows + [total_cells(report["total"])]


def recommendation_cells(r: dict) -> list[str]:
    """The summary-table cells of one recommendation, from ``tmr_bits`` on."""
    return [str(r["tmr_bits"]), str(r["unprotected_bits"]), str(r["residual_changing_bits"]),
            str(r["residual_worst_error"]), str(r["full_tmr_ffs"]), str(r["selective_ffs"]),
            f"{100 * r['saving']:.1f} %"]


def total_cells(t: dict) -> list[str]:
    """The summary table's total row."""
    return ["total", "", "", "", str(t["unprotected_bits"]), "", "", str(t["full_tmr_ffs"]),
            str(t["selective_ffs"]), f"{100 * t['saving']:.1f} %"]


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def markdown_document(report: dict, summary: list[list[str]], per_bit: list[tuple], snippet: str, *,
                      subject: str = "the model", note: str = "") -> str:
    """The Markdown report shared by networks and forests: ``summary`` (header
    and rows), ``per_bit`` rows ``(name, kind, [per-bit entries])`` and the
    configuration ``snippet``."""
    md = [f"# Bit-flip sensitivity of {report['model'] or subject}", "",
          f"Threshold: {report['threshold']} output codes (output type {report['output_type']}); "
          f"{report['samples']} sample vectors"
          + (f" of {report['samples_total']}" if report.get("samples_total") else "") + ".",
          "Error = largest absolute output code change over the sample when one stored bit flips; "
          "single bits are held once (not triplicated) with the recommended `tmr_bits`." + note, ""]
    md.append("| " + " | ".join(summary[0]) + " |")
    md.append("|" + " --- |" * len(summary[0]))
    md += ["| " + " | ".join(r) + " |" for r in summary[1:]]
    md += ["", "## Worst error per bit (bit 0 = LSB)", ""]
    widest = max([len(bits) for _, _, bits in per_bit] + [1])
    head = [summary[0][0], "kind"] + [str(b) for b in range(widest)]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + " --- |" * len(head))
    for name, kind, bits in per_bit:
        cells = [str(p["max_error"]) for p in bits] + [""] * (widest - len(bits))
        md.append("| " + " | ".join([name, kind] + cells) + " |")
    md += ["", "## Configuration", "", "```yaml", snippet.rstrip(), "```", ""]
    return "\n".join(md)


def report_markdown(report: dict) -> str:
    """A readable report: summary table, per-bit worst errors, config snippet."""
    per_bit = [(layer["name"], kind, layer[kind]["per_bit"]) for layer in report["layers"]
               for kind in ("weights", "bias")]
    return markdown_document(report, table_rows(report), per_bit, config_snippet(report))
