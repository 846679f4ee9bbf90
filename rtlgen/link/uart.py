"""An 8N1 UART: receiver and transmitter of a byte stream.

Bit time: ``divisor`` clock cycles (>= 4).  A character is a start bit (0),
eight data bits, least significant first, and a stop bit (1); the line
idles high.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "UartRx", "UartTx"]

#: the least number of clock cycles per bit
MIN_DIVISOR = 4


def _check_divisor(component, divisor: int) -> int:
    divisor = int(divisor)
    if divisor < MIN_DIVISOR:
        component._MustUse__silence = True   # refused, so it is not an unused elaboratable
        raise ValueError(f"the UART needs at least {MIN_DIVISOR} clock cycles per bit, got {divisor}")
    return divisor


class UartRx(wiring.Component):
    """Receives 8N1 characters from a pin.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Ports
    -----
    ``rx``: In(1)
        the pin (asynchronous; idles high).  It passes a two-flip-flop
        synchronizer first.
    ``data``: Out(8)
        the last received byte; holds until the next one.
    ``valid``: Out(1)
        high for one cycle per received byte (no back-pressure).
    ``frame_error``: Out(1)
        high for one cycle when a character's stop bit reads 0; that
        character is dropped, and the receiver waits for the line to go
        high before it looks for the next start bit.

    Latency
    -------
    ``valid`` rises 3 cycles after the middle of the stop bit reaches the
    pin (2 synchronizer stages, 1 output register), i.e. about 9.5 bit
    times after the falling edge of the start bit.  A falling edge that is
    no longer low in the middle of the start bit is ignored (glitch).

    II
    --
    One character per 10 bit times; the receiver looks for the next start
    bit from the middle of the stop bit, so a transmitter a few percent
    faster or slower is tolerated.
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(self, divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(8), "valid": Out(1), "frame_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sync_stages = Signal(2, init=0b11, name="rx_sync_stages")
        m.d.sync += sync_stages.eq(Cat(self.rx, sync_stages[0]))
        line = sync_stages[1]

        timer = Signal(range(d), name="bit_timer")
        bit_index = Signal(range(8), name="bit_index")
        shift = Signal(8, name="rx_shift")

        m.d.sync += [self.valid.eq(0), self.frame_error.eq(0)]
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM(name="uart_rx"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.next = "IDLE"            # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bit_index.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(d - 1),
                                 bit_index.eq(bit_index + 1)]
                    with m.If(bit_index == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += [self.data.eq(shift), self.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Sends 8N1 characters on a pin.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Ports
    -----
    ``data``: In(8)
        the byte to send, read on the accepting edge.
    ``valid``: In(1)
        a byte is offered.
    ``ready``: Out(1)
        high while the transmitter is idle (and in the last cycle of a
        stop bit); the byte is taken on an edge where ``valid`` and
        ``ready`` are both high.
    ``tx``: Out(1)
        the pin (registered; idles high).

    Latency
    -------
    The start bit appears on ``tx`` on the accepting edge.

    II
    --
    One byte per ``10 * divisor`` cycles: back-to-back bytes leave without
    idle time between them.
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(self, divisor)
        super().__init__({"data": In(8), "valid": In(1), "ready": Out(1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        # start bit, 8 data bits, stop bit, shifted out LSB first
        frame = Signal(10, init=0x3FF, name="tx_frame")
        bits_left = Signal(range(11), name="bits_left")
        timer = Signal(range(d), name="bit_timer")

        # ready while idle and in the last cycle of a stop bit
        m.d.comb += [self.ready.eq((bits_left == 0) | ((bits_left == 1) & (timer == 0))),
                     self.tx.eq(frame[0])]
        with m.If(self.valid & self.ready):
            m.d.sync += [frame.eq(Cat(Const(0, 1), self.data, Const(1, 1))), bits_left.eq(10),
                         timer.eq(d - 1)]
        with m.Elif(bits_left == 0):
            pass
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), bits_left.eq(bits_left - 1),
                         timer.eq(d - 1)]
        return m
