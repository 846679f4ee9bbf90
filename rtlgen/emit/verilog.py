"""Verilog emission of hardware components.

Emission is two steps, so that a caller can report them separately (they
can take minutes on a large core): :func:`elaborate` runs the
components' ``elaborate`` methods down the hierarchy, :func:`network_verilog`
turns the result into Verilog (Amaranth's netlist, RTLIL, then Yosys's
``write_verilog``; most of the time and memory go here).
"""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Fragment

from ..procs import stop_children_on_interrupt

__all__ = ["elaborate", "network_verilog"]


def elaborate(core) -> Fragment:
    """Elaborate a component (a :class:`~rtlgen.hw.network.Network`, a forest core...) to its fragment."""
    return Fragment.get(core, None)


class _Elaborated(Elaboratable):
    """A component already elaborated: its ports (signature and attributes) and its fragment."""

    def __init__(self, component, fragment: Fragment):
        self._component = component
        self._fragment = fragment

    @property
    def signature(self):
        return self._component.signature

    def __getattr__(self, name):
        # the port attributes (in_valid, in_data, ...) that signature.flatten() reads
        return getattr(self._component, name)

    def elaborate(self, platform):
        return self._fragment


def network_verilog(core, top: str, fragment: Fragment | None = None) -> str:
    """Verilog text of a core (a :class:`Network`, a forest core...) with its ports named as documented.

    ``fragment`` is the core's :func:`elaborate` result when the caller
    elaborated it already (each component elaborates only once).
    """
    source = core if fragment is None else _Elaborated(core, fragment)
    with stop_children_on_interrupt():      # Amaranth's Yosys is not stopped by an interrupt otherwise
        return verilog.convert(source, name=top, emit_src=False)
