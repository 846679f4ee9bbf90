"""Analyses of quantized models on the golden model (no hardware involved)."""

from .sensitivity import (LayerSensitivity, Recommendation, analyze, config_snippet, flip_bits,
                          recommend, report_dict, report_markdown, sample_rows)

__all__ = ["LayerSensitivity", "Recommendation", "analyze", "config_snippet", "flip_bits", "recommend",
           "report_dict", "report_markdown", "sample_rows"]
