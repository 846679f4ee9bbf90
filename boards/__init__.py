"""Board targets: an rtlgen core behind a UART host link on a real FPGA board.

Each board is a :class:`Board`: the `amaranth-boards` platform that holds
its pins and clock, the family and device nextpnr places on, the device's
resources, and how its LEDs show the self-test.  :class:`BoardTop`
(:mod:`.top`) is the top-level design that puts a core, its link and the
board's PLL together.  The flow that turns a build folder into a bitstream
is :mod:`rtlgen.flows.board`.

=============  =====================  ==========  ===========================
name           device                 oscillator  LEDs
=============  =====================  ==========  ===========================
icebreaker     iCE40 UP5K (SG48)      12 MHz      green: pass, red: fail
ulx3s-85f      ECP5 LFE5U-85F         25 MHz      0: pass, 1: fail, 2-7: count
ulx3s-12f      ECP5 LFE5U-12F         25 MHz      as ulx3s-85f
=============  =====================  ==========  ===========================
"""

from __future__ import annotations

from dataclasses import dataclass

from rtlgen.errors import RtlgenError

__all__ = ["Board", "BOARDS", "board_named"]


@dataclass(frozen=True)
class Board:
    """A supported board.

    ``platform`` names the amaranth-boards class (``module:Class``);
    ``family`` is ``ice40`` or ``ecp5``; ``nextpnr_device``/``package`` are
    nextpnr's options; ``resources`` maps a resource (``luts``, ``ffs``,
    ``dsp``, ``bram``) to the device's count; ``max_baud`` is the fastest
    rate of the board's USB-UART bridge; ``leds`` is ``"rg"`` (a red and a
    green LED) or ``"bar8"`` (eight LEDs).
    """
    name: str
    description: str
    platform: str
    family: str
    nextpnr_device: str
    package: str
    clock: str
    clock_mhz: float
    max_baud: int
    leds: str
    resources: dict
    programmer: tuple[str, ...]
    bitstream_suffix: str

    def platform_class(self):
        module, cls = self.platform.split(":")
        try:
            mod = __import__(module, fromlist=[cls])
        except ImportError:
            raise RtlgenError(f"board {self.name} needs the amaranth-boards package: "
                              "pip install amaranth-boards (or run `make setup`)") from None
        return getattr(mod, cls)


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("icebreaker", "iCEBreaker (iCE40 UP5K, 12 MHz, FTDI UART)",
          "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", "--up5k", "sg48",
          "clk12", 12.0, 3_000_000, "rg",
          {"luts": 5280, "ffs": 5280, "dsp": 8, "bram": 30}, ("iceprog",), ".bin"),
    Board("ulx3s-85f", "ULX3S 85F (ECP5 LFE5U-85F, 25 MHz, FTDI UART)",
          "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", "--85k", "CABGA381",
          "clk25", 25.0, 3_000_000, "bar8",
          {"luts": 83640, "ffs": 83640, "dsp": 156, "bram": 208}, ("openFPGALoader", "-b", "ulx3s"), ".bit"),
    Board("ulx3s-12f", "ULX3S 12F (ECP5 LFE5U-12F, 25 MHz, FTDI UART)",
          "amaranth_boards.ulx3s:ULX3S_12F_Platform", "ecp5", "--12k", "CABGA381",
          "clk25", 25.0, 3_000_000, "bar8",
          {"luts": 12288, "ffs": 12288, "dsp": 28, "bram": 56}, ("openFPGALoader", "-b", "ulx3s"), ".bit"),
)}


def board_named(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise RtlgenError(f"unknown board {name!r}: choose one of {', '.join(BOARDS)}") from None
