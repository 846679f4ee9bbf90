"""The configuration bus of a core top: ports, status registers, read mux.

Shared by the core tops (:class:`rtlgen.hw.network.Network`,
:class:`rtlgen.hw.forest.ForestCore`): :func:`core_signature` gives a top's
:class:`~rtlgen.hw.ports.CoreSignature` (with the bus itself, or the I2C
pins when an I2C target masters it) and :func:`attach_config_bus` adds the
status registers and connects the parameter banks (anything with the ports
of :func:`rtlgen.hw.ports.layer_config_members`).

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

from ..numerics.fixed import FixedType
from .i2c import I2CTarget
from .ports import CoreSignature
from .storage import ADDR_WIDTH, CLEAR_ADDR, ERROR_COUNT_ADDR, STATUS_ADDR, BusLayout

__all__ = ["core_signature", "attach_config_bus"]


def core_signature(in_type: FixedType, n_in: int, out_type: FixedType, n_out: int,
                   bus: BusLayout | None, i2c: dict | None) -> tuple[CoreSignature, I2CTarget | None]:
    """(signature, I2C target or None) of a core top that stores the parameters of ``bus``.

    ``bus`` None: the core stores nothing and has no configuration bus.
    ``i2c`` is the model's I2C option (``address``, ``clk_hz``,
    ``filter_cycles``) or None for the plain ``cfg_*`` ports."""
    if bus is None:
        return CoreSignature(in_type, n_in, out_type, n_out), None
    target = None
    if i2c is not None:
        target = I2CTarget(int(i2c["address"]), bus.data_width, clk_hz=float(i2c["clk_hz"]),
                           filter_cycles=int(i2c["filter_cycles"]))
    signature = CoreSignature(in_type, n_in, out_type, n_out, bus_width=bus.data_width,
                              i2c=target is not None)
    return signature, target


def attach_config_bus(m: Module, top, bus: BusLayout, i2c_target, banks: list) -> None:
    """Add the bus decoding of ``top`` (a component with the signature of
    :func:`core_signature`) to ``m``, serving ``banks``."""
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
