"""Golden models: exact integer reference implementations of the quantized IR."""

from .network import check_codes, predict, predict_codes, predict_trace, quantize_inputs

__all__ = ["predict_codes", "predict", "predict_trace", "check_codes", "quantize_inputs"]
