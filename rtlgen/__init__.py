"""rtlgen: trained, quantized models to verified fixed-point hardware."""

from .errors import RtlgenError

__all__ = ["RtlgenError"]
__version__ = "0.1.0"
