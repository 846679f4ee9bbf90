"""The two port conventions every rtlgen component uses."""

from __future__ import annotations

from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from ..numerics.fixed import FixedType
from .arith import shape_of

__all__ = ["layer_members", "core_members", "config_bus_members", "layer_config_members"]


def _vector(t: FixedType, n: int) -> data.ArrayLayout:
    return data.ArrayLayout(shape_of(t), n)


def layer_members(in_type: FixedType, n_in: int, out_type: FixedType, n_out: int) -> dict:
    """Signature members of a layer: ``i`` and ``o`` always-ready streams of code vectors."""
    return {"i": In(stream.Signature(_vector(in_type, n_in), always_ready=True)),
            "o": Out(stream.Signature(_vector(out_type, n_out), always_ready=True))}


def core_members(in_type: FixedType, n_in: int, out_type: FixedType, n_out: int) -> dict:
    """Signature members of a top-level core (the ports the manifest describes)."""
    return {"in_valid": In(1), "in_ready": Out(1), "in_data": In(_vector(in_type, n_in)),
            "out_valid": Out(1), "out_data": Out(_vector(out_type, n_out))}


def config_bus_members(data_width: int, addr_width: int = 16) -> dict:
    """The configuration bus of a top-level core (as the core sees it).

    ``cfg_addr`` word address, ``cfg_wdata``/``cfg_we`` one word written per
    cycle where ``cfg_we`` is high, ``cfg_rdata`` registered: the word at the
    address presented on the previous cycle.
    """
    return {"cfg_addr": In(addr_width), "cfg_wdata": In(data_width), "cfg_we": In(1),
            "cfg_rdata": Out(data_width)}


def layer_config_members(data_width: int, addr_width: int = 16) -> dict:
    """The configuration bus of a layer with stored parameters.

    As :func:`config_bus_members`, but ``cfg_rdata`` is combinational (0 when
    the address is not the layer's) and ``cfg_error`` flags a scrubbed TMR word.
    """
    return {"cfg_addr": In(addr_width), "cfg_wdata": In(data_width), "cfg_we": In(1),
            "cfg_rdata": Out(data_width), "cfg_error": Out(1)}
