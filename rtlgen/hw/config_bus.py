"""The configuration bus of a core top: ports, status registers, read mux.

Shared by every core kind that stores parameters
(:class:`rtlgen.hw.network.Network`, :class:`rtlgen.hw.forest.ForestCore`):
:func:`config_bus_ports` gives the top's extra signature members (the bus
itself, or the I2C pins when an I2C target masters it) and
:func:`attach_config_bus` adds the status registers and connects the
parameter banks (anything with the ports of
:func:`rtlgen.hw.ports.layer_config_members`).

Status registers (map in :mod:`rtlgen.hw.storage`): a sticky error flag
and a saturating error counter (``min(D, 16)`` bits) that counts the cycles
in which some TMR word was scrubbed; both show a flip two clock edges after
it happened, and a write to CLEAR clears them (a clear wins over a count in
the same cycle).  ``cfg_rdata`` is registered: the word at the address of
the previous cycle.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from .ports import config_bus_members
from .storage import ADDR_WIDTH, CLEAR_ADDR, ERROR_COUNT_ADDR, STATUS_ADDR, BusLayout

__all__ = ["config_bus_ports", "attach_config_bus"]

I2C_PINS = {"scl_i": In(1), "sda_i": In(1), "sda_oe": Out(1)}


def config_bus_ports(bus: BusLayout, i2c: dict | None):
    """(signature members, I2C target or None) of a core top with ``bus``.

    ``i2c`` is the model's I2C option (``address``, ``clk_hz``,
    ``filter_cycles``) or None for the plain ``cfg_*`` ports."""
    if i2c is None:
        return config_bus_members(bus.data_width, ADDR_WIDTH), None
    from .i2c import I2CTarget
    target = I2CTarget(int(i2c["address"]), bus.data_width, clk_hz=float(i2c["clk_hz"]),
                       filter_cycles=int(i2c["filter_cycles"]))
    return dict(I2C_PINS), target


def attach_config_bus(m: Module, top, bus: BusLayout, i2c_target, banks: list) -> None:
    """Add the bus decoding of ``top`` (a component with the ports of
    :func:`config_bus_ports`) to ``m``, serving ``banks``."""
    d = bus.data_width
    if i2c_target is not None:
        i2c = m.submodules.i2c = i2c_target
        addr, wdata, we = Signal(ADDR_WIDTH, name="cfg_addr"), Signal(d, name="cfg_wdata"), Signal(name="cfg_we")
        rdata_reg = Signal(d, name="cfg_rdata")
        m.d.comb += [i2c.scl_i.eq(top.scl_i), i2c.sda_i.eq(top.sda_i), top.sda_oe.eq(i2c.sda_oe),
                     addr.eq(i2c.bus_addr), wdata.eq(i2c.bus_wdata), we.eq(i2c.bus_we),
                     i2c.bus_rdata.eq(rdata_reg)]
    else:
        addr, wdata, we, rdata_reg = top.cfg_addr, top.cfg_wdata, top.cfg_we, top.cfg_rdata
    for bank in banks:
        m.d.comb += [bank.cfg_addr.eq(addr), bank.cfg_wdata.eq(wdata), bank.cfg_we.eq(we)]
    width = bus.counter_width
    flag = Signal(name="err_flag")
    count = Signal(width, name="err_count")
    error = Signal(name="err_any")
    m.d.comb += error.eq(Cat(*[bank.cfg_error for bank in banks]).any())
    with m.If(we & (addr == CLEAR_ADDR)):
        m.d.sync += [flag.eq(0), count.eq(0)]
    with m.Elif(error):
        m.d.sync += [flag.eq(1), count.eq(Mux(count == (1 << width) - 1, count, count + 1))]
    rdata = Signal(d, name="cfg_rdata_next")
    m.d.comb += rdata.eq(reduce(operator.or_, [bank.cfg_rdata for bank in banks]))
    with m.If(addr == STATUS_ADDR):
        m.d.comb += rdata.eq(flag)
    with m.If(addr == ERROR_COUNT_ADDR):
        m.d.comb += rdata.eq(count)
    m.d.sync += rdata_reg.eq(rdata)
