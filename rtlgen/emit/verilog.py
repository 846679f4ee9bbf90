"""Verilog emission of hardware components."""

from __future__ import annotations

from amaranth.back import verilog

from ..hw.network import Network

__all__ = ["network_verilog"]


def network_verilog(core: Network, top: str) -> str:
    """Verilog text of a :class:`Network` with its ports named as documented."""
    return verilog.convert(core, name=top, emit_src=False)
