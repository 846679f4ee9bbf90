"""An I2C target (slave) that masters the core's configuration bus.

Protocol (standard mode, 100 kHz; 7-bit target address ``A``; bus words of
``D`` bits, ``D`` a multiple of 8; every byte MSB first)::

    write:  S  A+W  [ACK]  RH [ACK]  RL [ACK]  d0 [ACK] d1 [ACK] ...  P
    read:   S  A+W  [ACK]  RH [ACK]  RL [ACK]  Sr  A+R [ACK]  d0 (ACK) d1 (ACK) ... dn (NACK)  P

``RH RL`` is the 16-bit word address (MSB byte first).  Data bytes are
grouped ``D/8`` at a time into one word, most significant byte first.  A
written word goes to the bus with one ``bus_we`` pulse after the
acknowledge clock of its last byte, and the address then increments (16
bits, wrapping).  A read fetches the word at the current address from the
bus and sends its bytes MSB first; after the last byte of each word the
address increments (a read that ends inside a word leaves the address at
that word).  A write phase may carry data words before the
repeated START of a combined read; the read then starts at the address
after the last complete word written.

What is acknowledged and what is ignored
----------------------------------------
* An address byte is ACKed when its 7 address bits equal ``A`` and either
  it is a write (R/W = 0) or it is a read and the word address is *valid*.
  Otherwise it is NACKed and the target ignores the bus until the next
  START or repeated START.  Another target's address also clears the
  valid flag.
* The word address becomes valid when both of its bytes have been ACKed.
  It stops being valid at a STOP, and when a new write phase (A+W) begins:
  so a read is ACKed only when it follows, through a repeated START, a
  write phase that sent both address bytes (the data words it may also
  carry are written normally).  A read without that preceding address is
  NACKed and the target does not drive SDA (the master reads 0xFF).
* Address bytes and data bytes of a write phase are always ACKed.  The
  master ACKs every read byte it wants more after and NACKs the last; after
  a NACK the target releases SDA and waits for STOP or repeated START.
* A STOP or a (repeated) START anywhere discards the bytes of an
  incomplete word and an incomplete word address: a word is written only
  after the acknowledge clock of its last byte, so no partial or mixed
  word ever reaches the bus.  A byte is complete only when its ACK clock
  has finished (SCL falling after the ninth clock).
* General call (address 0) and the other reserved addresses are not
  supported: ``A`` must lie in 0x08..0x77.
* The target never stretches the clock (it has no SCL output); the master
  must not expect clock stretching.  During a read the target holds SDA
  low for every 0 bit it sends, so the master ends a read with a NACK, as
  the I2C specification requires.

Pins and timing
---------------
``scl_i``/``sda_i`` are the pin levels, ``sda_oe`` pulls SDA low when 1
(open drain: a pad ties ``sda_oe`` to its output enable with output data 0).
Both inputs pass through a 2-flip-flop synchronizer and a glitch filter:
a level change is accepted only after ``filter_cycles`` consecutive equal
samples, so pulses shorter than ``filter_cycles - 1`` clock periods never
pass.  Data bits are sampled on the second clock cycle SCL is seen high.
START and STOP are recognised only when SDA changes while SCL is seen high
both two cycles before the change and ``hold_cycles`` cycles after it, with
``hold_cycles = ceil(300 ns * clk_hz) + 1``: this bridges the undefined
region of a falling SCL edge (the I2C specification lets SDA change up to
300 ns before SCL crosses a receiver's threshold) and never confuses data
set up 250 ns before SCL rises with a START or STOP.  The target changes SDA
``hold_cycles`` cycles after it sees SCL low: at least 300 ns after SCL
falls and at most ``filter_cycles + hold_cycles + 3`` clock periods after
it, which must not exceed the 3.45 us data-valid time of standard mode.
The constructor checks this budget: with the default filter
(``filter_cycles = 3``) the system clock must be at least 2.32 MHz, about
24 times a 100 kHz SCL (10 MHz, 100x, leaves ample margin).

Bus side (the core's configuration bus, ``sync`` domain): ``bus_addr`` is
the current word address (always driven), ``bus_wdata``/``bus_we`` write
one word in a cycle where ``bus_we`` is 1, ``bus_rdata`` must show the word
at the address presented on the previous clock (one cycle read latency).
The address is stable for many cycles before every read fetch.  The
ports, latency and II are those of :class:`I2CTarget`.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..errors import RtlgenError

__all__ = ["I2CLineFilter", "I2CConditions", "I2CTarget", "I2C_ADDR_WIDTH", "hold_cycles_for",
           "sda_delay_max"]

#: width of the word address sent in every write (two bytes)
I2C_ADDR_WIDTH = 16
#: standard mode: SDA may change this long before SCL is seen falling (ns)
_HOLD_NS = 300
#: standard mode: data valid at most this long after SCL falls (ns)
_VALID_NS = 3450


def hold_cycles_for(clk_hz: float) -> int:
    """Clock cycles that cover the 300 ns SDA hold region, plus one."""
    return math.ceil(_HOLD_NS * clk_hz / 1e9) + 1


def sda_delay_max(filter_cycles: int, hold_cycles: int) -> int:
    """Most clock cycles from SCL falling at the pin to ``sda_oe`` changing."""
    return filter_cycles + hold_cycles + 3


class I2CLineFilter(wiring.Component):
    """Synchronizer and glitch filter for one open-drain line.

    Ports
    -----
    ``pin``: In(1)
        asynchronous.
    ``level``: Out(1)
        registered, idles high; changes after the synchronized input has
        held the new level for ``filter_cycles`` consecutive cycles.

    Latency
    -------
    2 + ``filter_cycles`` cycles from a clean edge of ``pin`` to ``level``.

    II
    --
    1: the pin is sampled every cycle.
    """

    def __init__(self, filter_cycles: int):
        if filter_cycles < 1:
            raise RtlgenError(f"I2C glitch filter: filter_cycles must be at least 1, got {filter_cycles}")
        self.filter_cycles = filter_cycles
        super().__init__({"pin": In(1), "level": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        synced = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.pin, synced, init=1, stages=2)
        differ_run = Signal(range(self.filter_cycles + 1))
        with m.If(synced == self.level):
            m.d.sync += differ_run.eq(0)
        with m.Elif(differ_run == self.filter_cycles - 1):
            m.d.sync += [self.level.eq(synced), differ_run.eq(0)]
        with m.Else():
            m.d.sync += differ_run.eq(differ_run + 1)
        return m


class I2CConditions(wiring.Component):
    """Bus conditions and bit timing from the filtered SCL and SDA levels.

    Ports
    -----
    ``scl``: In(1), ``sda``: In(1)
        filtered levels.
    ``start``: Out(1)
        one-cycle strobe: START or repeated START.
    ``stop``: Out(1)
        one-cycle strobe: STOP.
    ``sample``: Out(1), ``bit``: Out(1)
        one-cycle strobe on the second cycle SCL is seen high; ``bit``
        carries SDA then.
    ``drive``: Out(1)
        one-cycle strobe once SCL has been seen low for ``hold_cycles + 1``
        cycles: the moment to change SDA.

    Latency
    -------
    ``start``/``stop`` fire ``hold_cycles`` cycles after the SDA edge,
    when SCL has stayed high from two cycles before the edge until then.
    All outputs are combinational from registers and the inputs.

    II
    --
    1: the lines are sampled every cycle.
    """

    def __init__(self, hold_cycles: int):
        if hold_cycles < 1:
            raise RtlgenError(f"I2C conditions: hold_cycles must be at least 1, got {hold_cycles}")
        self.hold_cycles = hold_cycles
        super().__init__({"scl": In(1), "sda": In(1), "start": Out(1), "stop": Out(1),
                          "sample": Out(1), "bit": Out(1), "drive": Out(1)})

    def elaborate(self, platform):
        m = Module()
        hold = self.hold_cycles
        high_run = Signal(range(3))          # previous consecutive cycles with SCL high (saturates at 2)
        low_run = Signal(range(hold + 2))    # previous consecutive cycles with SCL low (saturates)
        sda_prev = Signal(init=1)
        pending = Signal()                   # an SDA edge under SCL high waits for confirmation
        pending_rise = Signal()              # that edge was a rise (STOP) rather than a fall (START)
        countdown = Signal(range(hold + 1))

        m.d.sync += sda_prev.eq(self.sda)
        with m.If(self.scl):
            m.d.sync += [high_run.eq(high_run + (high_run != 2)), low_run.eq(0)]
        with m.Else():
            m.d.sync += [high_run.eq(0), low_run.eq(low_run + (low_run != hold + 1))]

        m.d.comb += [self.sample.eq(self.scl & (high_run == 1)), self.bit.eq(self.sda),
                     self.drive.eq(~self.scl & (low_run == hold))]

        edge = self.sda != sda_prev
        with m.If(~self.scl):
            m.d.sync += pending.eq(0)
        with m.Elif(edge & (high_run == 2)):
            m.d.sync += [pending.eq(1), pending_rise.eq(self.sda), countdown.eq(hold - 1)]
        with m.Elif(edge):
            m.d.sync += pending.eq(0)
        with m.Elif(pending):
            with m.If(countdown == 0):
                m.d.sync += pending.eq(0)
                m.d.comb += [self.start.eq(~pending_rise), self.stop.eq(pending_rise)]
            with m.Else():
                m.d.sync += countdown.eq(countdown - 1)
        return m


class _Phase(enum.Enum, shape=3):
    IDLE = 0       # not addressed: wait for START
    ADDRESS = 1    # receiving the address byte
    REG_HIGH = 2   # receiving the word address, MSB byte
    REG_LOW = 3    # receiving the word address, LSB byte
    WRITE = 4      # receiving data bytes
    READ = 5       # sending data bytes


class I2CTarget(wiring.Component):
    """I2C target at 7-bit ``address`` mastering a configuration bus of ``data_width``-bit words.

    The protocol, the acknowledge rules and the timing are those of the
    module documentation (:mod:`rtlgen.hw.i2c`).  ``clk_hz`` is the
    frequency of the ``sync`` clock (it sets ``hold_cycles``),
    ``filter_cycles`` the glitch filter length.

    Ports
    -----
    ``scl_i``: In(1), ``sda_i``: In(1)
        pin levels (asynchronous).
    ``sda_oe``: Out(1)
        registered: 1 pulls SDA low.
    ``bus_addr``: Out(16)
        registered: the current word address.
    ``bus_wdata``: Out(data_width), ``bus_we``: Out(1)
        registered: one word written in each cycle where ``bus_we`` is 1.
    ``bus_rdata``: In(data_width)
        the word at the address of the previous cycle.

    Latency
    -------
    A word reaches the bus 2 cycles after the target sees SCL fall at the
    end of the acknowledge clock of its last byte.

    II
    --
    None: not a streaming block; a word takes ``9 * data_width / 8`` SCL
    clocks on the wire.
    """

    def __init__(self, address: int, data_width: int, *, clk_hz: float = 10e6, filter_cycles: int = 3):
        if isinstance(address, bool) or not isinstance(address, int) or not 0x08 <= address <= 0x77:
            raise RtlgenError(f"I2C target address must be a 7-bit address from 0x08 to 0x77 (the others "
                              f"are reserved), got {address!r}")
        if isinstance(data_width, bool) or not isinstance(data_width, int) or data_width < 8 \
                or data_width % 8:
            raise RtlgenError(f"I2C bus data width must be a positive multiple of 8, got {data_width!r}")
        if not clk_hz > 0:
            raise RtlgenError(f"I2C target: clk_hz must be positive, got {clk_hz!r}")
        if isinstance(filter_cycles, bool) or not isinstance(filter_cycles, int) or filter_cycles < 1:
            raise RtlgenError(f"I2C target: filter_cycles must be an integer >= 1, got {filter_cycles!r}")
        self.address = address
        self.data_width = data_width
        self.clk_hz = clk_hz
        self.filter_cycles = filter_cycles
        self.hold_cycles = hold_cycles_for(clk_hz)
        self.sda_delay_max = sda_delay_max(filter_cycles, self.hold_cycles)
        if self.sda_delay_max * 1e9 / clk_hz > _VALID_NS:
            raise RtlgenError(
                f"I2C target: a {clk_hz / 1e6:g} MHz clock is too slow for standard mode: SDA would "
                f"change up to {self.sda_delay_max} cycles ({self.sda_delay_max * 1e6 / clk_hz:.2f} us) "
                f"after SCL falls, more than the {_VALID_NS / 1e3:g} us allowed; use a faster clock or "
                f"fewer filter_cycles")
        super().__init__({
            "scl_i": In(1), "sda_i": In(1), "sda_oe": Out(1),
            "bus_addr": Out(I2C_ADDR_WIDTH), "bus_wdata": Out(data_width), "bus_we": Out(1),
            "bus_rdata": In(data_width),
        })

    @property
    def bytes_per_word(self) -> int:
        return self.data_width // 8

    def elaborate(self, platform):
        m = Module()
        d = self.data_width
        m.submodules.scl_filter = scl_filter = I2CLineFilter(self.filter_cycles)
        m.submodules.sda_filter = sda_filter = I2CLineFilter(self.filter_cycles)
        m.submodules.conditions = cond = I2CConditions(self.hold_cycles)
        m.d.comb += [scl_filter.pin.eq(self.scl_i), sda_filter.pin.eq(self.sda_i),
                     cond.scl.eq(scl_filter.level), cond.sda.eq(sda_filter.level)]

        phase = Signal(_Phase)
        bit_pos = Signal(range(10))          # bits of the current 9-bit frame clocked so far
        received = Signal(max(d, 16))        # every received bit shifts in at the LSB
        is_read = Signal()
        master_ack = Signal()
        word_byte = Signal(range(max(self.bytes_per_word, 2)))
        last_byte = word_byte == self.bytes_per_word - 1
        pointer = Signal(I2C_ADDR_WIDTH)
        pointer_valid = Signal()
        send = Signal(d)                     # word being sent, current bit at the MSB

        m.d.comb += self.bus_addr.eq(pointer)
        m.d.sync += self.bus_we.eq(0)

        with m.If(cond.start):
            m.d.sync += [phase.eq(_Phase.ADDRESS), bit_pos.eq(0), self.sda_oe.eq(0), word_byte.eq(0)]
        with m.Elif(cond.stop):
            m.d.sync += [phase.eq(_Phase.IDLE), bit_pos.eq(0), self.sda_oe.eq(0), word_byte.eq(0),
                         pointer_valid.eq(0)]
        with m.Elif(cond.sample & (phase != _Phase.IDLE)):
            with m.If(bit_pos < 8):
                m.d.sync += [received.eq(Cat(cond.bit, received[:-1])), bit_pos.eq(bit_pos + 1)]
            with m.Elif(bit_pos == 8):
                m.d.sync += [master_ack.eq(~cond.bit), bit_pos.eq(9)]
                with m.If((phase == _Phase.READ) & last_byte):
                    m.d.sync += pointer.eq(pointer + 1)
        with m.Elif(cond.drive):
            ack = bit_pos == 8
            frame_done = bit_pos == 9
            with m.If(phase == _Phase.ADDRESS):
                with m.If(ack):
                    match = received[1:8] == self.address
                    with m.If(match & (~received[0] | pointer_valid)):
                        m.d.sync += [self.sda_oe.eq(1), is_read.eq(received[0])]
                    with m.Else():
                        m.d.sync += phase.eq(_Phase.IDLE)
                        with m.If(~match):
                            m.d.sync += pointer_valid.eq(0)
                with m.If(frame_done):
                    m.d.sync += [bit_pos.eq(0), word_byte.eq(0)]
                    with m.If(is_read):
                        m.d.sync += [phase.eq(_Phase.READ), send.eq(self.bus_rdata),
                                     self.sda_oe.eq(~self.bus_rdata[d - 1])]
                    with m.Else():
                        m.d.sync += [phase.eq(_Phase.REG_HIGH), pointer_valid.eq(0), self.sda_oe.eq(0)]
            with m.Elif((phase == _Phase.REG_HIGH) | (phase == _Phase.REG_LOW) | (phase == _Phase.WRITE)):
                with m.If(ack):
                    m.d.sync += self.sda_oe.eq(1)
                with m.If(frame_done):
                    m.d.sync += [bit_pos.eq(0), self.sda_oe.eq(0)]
                    with m.If(phase == _Phase.REG_HIGH):
                        m.d.sync += phase.eq(_Phase.REG_LOW)
                    with m.Elif(phase == _Phase.REG_LOW):
                        m.d.sync += [phase.eq(_Phase.WRITE), pointer.eq(received[:16]),
                                     pointer_valid.eq(1), word_byte.eq(0)]
                    with m.Elif(last_byte):
                        m.d.sync += [word_byte.eq(0), self.bus_we.eq(1), self.bus_wdata.eq(received[:d])]
                    with m.Else():
                        m.d.sync += word_byte.eq(word_byte + 1)
            with m.Elif(phase == _Phase.READ):
                with m.If((bit_pos >= 1) & (bit_pos <= 7)):
                    m.d.sync += [send.eq(send << 1), self.sda_oe.eq(~send[d - 2])]
                with m.If(ack):
                    m.d.sync += self.sda_oe.eq(0)
                with m.If(frame_done):
                    with m.If(~master_ack):
                        m.d.sync += [phase.eq(_Phase.IDLE), bit_pos.eq(0), self.sda_oe.eq(0)]
                    with m.Elif(last_byte):
                        m.d.sync += [bit_pos.eq(0), word_byte.eq(0), send.eq(self.bus_rdata),
                                     self.sda_oe.eq(~self.bus_rdata[d - 1])]
                    with m.Else():
                        m.d.sync += [bit_pos.eq(0), word_byte.eq(word_byte + 1), send.eq(send << 1),
                                     self.sda_oe.eq(~send[d - 2])]
        with m.If(self.bus_we):
            m.d.sync += pointer.eq(pointer + 1)
        return m
