"""Selective TMR from bit-flip results: the recommendation, and the report both analyses write.

A *flip result* is what an analysis measured for one stored set of words
(a network layer's :class:`~rtlgen.analysis.sensitivity.LayerSensitivity`,
a forest set's :class:`~rtlgen.analysis.forest_sensitivity.SetSensitivity`):
its ``name``, ``samples``, ``weight_type`` and ``bias_type``, and
``flat(kind) -> (error, changed)`` as [words, W] arrays (bit 0 = LSB) for
``weight`` (the first group of words) and ``bias`` (the second, maybe
empty).

Recommendation: for a threshold ``T`` (output codes) the recommended
``tmr_bits`` of a set is the smallest ``N`` such that, with the
``min(N, W)`` most significant bits of every word triplicated, no
remaining single-copy bit has ``max_error > T`` (:func:`recommend`).  A
triplicated bit costs three flip-flops, a single one one, so the saving
against full TMR is twice the number of single-copy bits.

The report (:func:`report_document`) is JSON-ready data; the summary table
(:func:`summary_rows`, :func:`format_table`) and the Markdown document
(:func:`markdown_document`) are made from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import RtlgenError
from ..numerics.fixed import FixedType

__all__ = ["Recommendation", "recommend", "per_bit", "recommendation_figures", "recommendation_totals",
           "report_document", "summary_rows", "format_table", "markdown_document"]

#: the summary table's columns after a set's own ones
SUMMARY_COLUMNS = ["tmr_bits", "single bits", "changing", "worst single", "FFs full TMR", "FFs selective",
                   "saving"]


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


def _unprotected(err: np.ndarray, width: int, n: int) -> np.ndarray:
    """The single-copy bit columns of [params, W] errors when the top ``min(n, W)`` are triplicated."""
    return err[:, :width - min(n, width)]


def recommend(sens, threshold: int) -> Recommendation:
    """Smallest ``tmr_bits`` leaving no single-copy bit with ``max_error > threshold``
    (``sens``: a flip result, see the module documentation)."""
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


def per_bit(err: np.ndarray, chg: np.ndarray, samples: int, threshold: int) -> list:
    """Per bit (0 = LSB) of [words, W] flip results: the worst error, how many words exceed the
    threshold or change some output, and the fraction of sample vectors changed."""
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


def report_document(sens: list, threshold: int, entry: Callable, *, key: str, head: dict,
                    output_type: Optional[FixedType], samples_total: Optional[int], seed: int) -> dict:
    """The report of flip results ``sens``: ``head`` (the model's name...), the threshold and the
    sample, under ``key`` one ``entry(result, its recommendation)`` per result, and the totals."""
    entries, recs = [], []
    for s in sens:
        rec = recommend(s, threshold)
        entries.append(entry(s, rec))
        recs.append(rec)
    return {**head, "output_type": str(output_type) if output_type else None,
            "threshold": int(threshold), "error_unit": "output codes",
            "samples": sens[0].samples if sens else 0, "samples_total": samples_total, "seed": seed,
            key: entries, "total": recommendation_totals(recs)}


def summary_rows(columns: list[str], entries: list[tuple[list[str], dict]], total: dict) -> list[list[str]]:
    """Header and rows of the summary table: per entry its own first ``columns`` cells and the cells
    of its recommendation, then the total row."""
    return ([columns + SUMMARY_COLUMNS] + [cells + _recommendation_cells(rec) for cells, rec in entries]
            + [_total_cells(total)])


def _recommendation_cells(r: dict) -> list[str]:
    """The summary-table cells of one recommendation, from ``tmr_bits`` on."""
    return [str(r["tmr_bits"]), str(r["unprotected_bits"]), str(r["residual_changing_bits"]),
            str(r["residual_worst_error"]), str(r["full_tmr_ffs"]), str(r["selective_ffs"]),
            f"{100 * r['saving']:.1f} %"]


def _total_cells(t: dict) -> list[str]:
    """The summary table's total row."""
    return ["total", "", "", "", str(t["unprotected_bits"]), "", "", str(t["full_tmr_ffs"]),
            str(t["selective_ffs"]), f"{100 * t['saving']:.1f} %"]


def format_table(rows: list[list[str]]) -> str:
    """The summary table as aligned text columns."""
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
