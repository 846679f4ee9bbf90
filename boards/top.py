"""The top-level design of a board: clock, reset, a core behind its UART link, LEDs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io

from rtlgen.link.protocol import SELFTEST_FAIL, SELFTEST_NONE, SELFTEST_PASS, SELFTEST_RUNNING

from . import Board
from .pll import PllSetting

if TYPE_CHECKING:
    from rtlgen.link.gateware import CoreLink

__all__ = ["BoardTop", "POR_CYCLES"]

#: core clock cycles the design stays in reset after the PLL locks (or after configuration)
POR_CYCLES = 1024


class BoardTop(Elaboratable):
    """A core, its :class:`rtlgen.link.gateware.CoreLink` and the board's pins.

    The core clock is the board's oscillator, or the output of the PLL
    ``pll`` when given.  The whole design is held in reset for
    :data:`POR_CYCLES` cycles after configuration and, with a PLL, until it
    locks; the self-test (if any) then runs once.

    Pins: the board's ``uart`` (rx, tx) and LEDs (see :mod:`boards`):
    ``rg``: green = self-test passed, red = failed, both blinking while it
    runs; ``bar8``: LED 0 = passed, LED 1 = failed, LEDs 2-7 = the count of
    mismatching vectors (saturating at 63).  With no self-test the LEDs show
    link activity.
    """

    def __init__(self, board: Board, link: "CoreLink", pll: PllSetting | None = None):
        self.board = board
        self.link = link
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.domains.por = cd_por = ClockDomain("por", reset_less=True)
        locked = Signal()
        pad = platform.request(self.board.clock, dir="-")
        if self.pll is not None and self.board.family == "ice40":
            # the iCE40 PLL takes its reference straight from the pad
            m.submodules.pll = self.pll.instance(pad.io, cd_por.clk, locked)
        else:
            clk = m.submodules.clk_buffer = io.Buffer("i", pad)
            if self.pll is None:
                m.d.comb += [cd_por.clk.eq(clk.i), locked.eq(1)]
            else:
                m.submodules.pll = self.pll.instance(clk.i, cd_por.clk, locked)
        if self.pll is not None:
            platform.add_clock_constraint(cd_por.clk, self.pll.f_out * 1e6)
        m.d.comb += cd_sync.clk.eq(cd_por.clk)

        count = Signal(range(POR_CYCLES + 1))
        with m.If(~locked):
            m.d.por += count.eq(0)
        with m.Elif(count != POR_CYCLES):
            m.d.por += count.eq(count + 1)
        m.d.comb += cd_sync.rst.eq(count != POR_CYCLES)

        link = m.submodules.link = self.link
        uart = platform.request("uart", 0, dir={"rx": "-", "tx": "-"})
        rx = m.submodules.uart_rx_buffer = io.Buffer("i", uart.rx)
        tx = m.submodules.uart_tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [link.rx.eq(rx.i), tx.o.eq(link.tx)]
        if ("uart_tx_enable", 0) in platform.resources:
            # ULX3S: the FTDI bridge's TX line is shared with the ESP32; enable ours
            enable = m.submodules.uart_tx_enable = io.Buffer("o", platform.request("uart_tx_enable", 0, dir="-"))
            m.d.comb += enable.o.eq(1)

        blink = Signal(24)
        m.d.sync += blink.eq(blink + 1)
        state = link.selftest_state
        running = state == SELFTEST_RUNNING
        passed = state == SELFTEST_PASS
        failed = state == SELFTEST_FAIL
        idle = state == SELFTEST_NONE
        def led(name, number=0):
            buffer = io.Buffer("o", platform.request(name, number, dir="-"))
            m.submodules[f"{name}_{number}"] = buffer
            return buffer

        if self.board.leds == "rg":
            green, red = led("led_g"), led("led_r")
            m.d.comb += [green.o.eq(passed | (running & blink[-1]) | (idle & link.activity)),
                         red.o.eq(failed | (running & blink[-1]))]
        else:
            leds = [led("led", k) for k in range(8)]
            shown = Signal(6)
            m.d.comb += shown.eq(link.mismatches.as_unsigned().bit_select(0, 6))
            with m.If(link.mismatches > 63):
                m.d.comb += shown.eq(63)
            m.d.comb += [leds[0].o.eq(passed | (idle & link.activity)), leds[1].o.eq(failed)]
            m.d.comb += [leds[k + 2].o.eq(shown[k] | (running & blink[-1])) for k in range(6)]
        return m
