"""The gateware of the host link: a UART in front of an rtlgen core.

:class:`CoreLink` owns a core (:class:`rtlgen.hw.ports.CoreSignature`) and
answers the requests of :mod:`rtlgen.link.protocol` that arrive on its
``rx`` pin, on its ``tx`` pin.  It is made of:

* :class:`~rtlgen.link.uart.UartRx` / :class:`~rtlgen.link.uart.UartTx`;
* :class:`RequestParser`: frames from received bytes (CRC-8 one byte per
  cycle, length and command checks, timeout), input vectors, configuration
  writes and one reply request per intact frame;
* an input FIFO of ``window`` vectors, the core's input (shared with the
  self-test) and :class:`ResultCredits`, which admits a vector into the
  core only when the result FIFO (``window`` results) will have room for its
  result, since the core's output has no back-pressure;
* a reply queue (:data:`REPLY_QUEUE` requests) and :class:`ReplySender`,
  which serializes the replies (results from the result FIFO, ``INFO``,
  ``STATUS``, configuration acknowledgements and reads, errors) into frames;
* :class:`SelfTest` (optional): at reset, runs the embedded input vectors
  through the core at full rate and compares the results with the embedded
  golden ones;
* :class:`LinkCounters`: the error counters of the ``STATUS`` reply.

Configuration writes (``CFG_WRITE``) reach the core's bus as each word's
last byte arrives, before the frame's CRC is checked: a frame with a bad
CRC is answered ``ERROR`` ``CRC`` but the words before the corruption may
have been written (the host writes them again).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .uart import MIN_DIVISOR, UartRx, UartTx

__all__ = ["REPLY_QUEUE", "ACTIVITY_HOLD", "ReplyKind", "REPLY_LAYOUT", "crc8_step", "RequestParser", "ReplySender",
           "ResultCredits", "SelfTest", "LinkCounters", "CoreLink"]

#: replies other than results that may wait for the transmitter; a request
#: that finds the queue full gets no reply (a host that waits for its
#: replies never fills it)
REPLY_QUEUE = 16
#: cycles the ``activity`` output of :class:`CoreLink` stays high after ``busy``
ACTIVITY_HOLD = 1 << 20
#: width of the configuration bus's word address
CFG_ADDR_WIDTH = 16


class ReplyKind:
    """What the reply queue asks the sender for (results have their own FIFO)."""
    INFO = 0
    STATUS = 1
    CFG_ACK = 2
    CFG_READ = 3
    ERROR = 4


#: one reply request: its kind, an error's code and rejected command, a
#: configuration read's first word address and word count
REPLY_LAYOUT = data.StructLayout({"kind": 3, "code": 8, "cmd": 8, "addr": CFG_ADDR_WIDTH, "count": 8})


def _crc8_of_bits(value: int) -> int:
    """CRC-8 (initial 0) of the one byte ``value``: linear in the bits of ``value``."""
    return P.crc8(bytes([value]))


def crc8_step(crc, byte):
    """The CRC-8 (polynomial 0x07, MSB first) after ``byte``: an 8-bit expression
    of the 8-bit values ``crc`` and ``byte`` (:func:`rtlgen.link.protocol.crc8`).

    The step is linear over GF(2) in ``crc ^ byte``: output bit ``i`` is the
    XOR of the input bits ``j`` whose unit byte's CRC has bit ``i`` set."""
    mixed = Value.cast(crc) ^ Value.cast(byte)
    columns = [_crc8_of_bits(1 << j) for j in range(8)]
    bits = []
    for i in range(8):
        taps = [mixed[j] for j in range(8) if columns[j] >> i & 1]
        bit = taps[0]
        for tap in taps[1:]:
            bit = bit ^ tap
        bits.append(bit)
    return Cat(*bits)


def _bus_bytes(core) -> int:
    """Bytes of a configuration word of ``core`` (0: no ``cfg_*`` ports)."""
    members = core.signature.members
    if "cfg_wdata" not in members:
        return 0
    return (Value.cast(core.cfg_wdata).shape().width + 7) // 8


class RequestParser(wiring.Component):
    """Finds request frames in the received bytes and acts on them.

    Parameters
    ----------
    in_bytes : int
        Bytes of an input vector (the payload of ``INFER``).
    bus_bytes : int
        Bytes of a configuration word; 0 when the core has no bus (then
        ``CFG_WRITE`` and ``CFG_READ`` are unknown commands).
    bus_width : int
        Bits of a configuration word (``<= 8 * bus_bytes``).
    timeout_cycles : int
        Clock cycles without a byte after which a frame is dropped.

    Ports
    -----
    ``byte``: In(8), ``byte_valid``: In(1)
        the received bytes (one cycle per byte, no back-pressure).
    ``vector``: Out(8 * in_bytes), ``vector_push``: Out(1)
        an ``INFER`` frame's vector (byte ``k`` at bits ``[8k, 8k+8)``),
        offered for one cycle once its CRC is good and ``vector_room`` is
        high (the input FIFO's ``w_en``).
    ``vector_room``: In(1)
        the input FIFO takes a vector (``w_rdy``); when low the vector is
        dropped and answered ``ERROR`` ``OVERRUN``.
    ``reply``: Out(REPLY_LAYOUT), ``reply_valid``: Out(1)
        one reply request per intact frame that is not an accepted
        ``INFER`` (whose reply is its result), and one per timed-out frame;
        one cycle each (the reply queue's ``w_en``).
    ``cfg_addr``: Out(16), ``cfg_wdata``: Out(bus_width), ``cfg_we``: Out(1)
        (with a bus) one configuration write per cycle where ``cfg_we`` is
        high: each ``CFG_WRITE`` word, as its last byte arrives.
    ``in_frame``: Out(1)
        a frame has started and not ended.

    Latency
    -------
    The outputs are registered: a frame's reply request (or vector push)
    comes 1 cycle after its CRC byte, a bad length's 1 cycle after the
    second ``LEN`` byte, a word's write 1 cycle after its last byte.

    II
    --
    One byte per cycle.
    """

    def __init__(self, in_bytes: int, bus_bytes: int, bus_width: int, timeout_cycles: int):
        self.in_bytes, self.bus_bytes, self.bus_width = int(in_bytes), int(bus_bytes), int(bus_width)
        self.timeout_cycles = int(timeout_cycles)
        members = {"byte": In(8), "byte_valid": In(1),
                   "vector": Out(8 * self.in_bytes), "vector_push": Out(1), "vector_room": In(1),
                   "reply": Out(REPLY_LAYOUT), "reply_valid": Out(1), "in_frame": Out(1)}
        if self.bus_bytes:
            members.update({"cfg_addr": Out(CFG_ADDR_WIDTH), "cfg_wdata": Out(self.bus_width),
                            "cfg_we": Out(1)})
        super().__init__(members)

    def _fits(self, cmd, length):
        """(known command, length fits it) as expressions."""
        known = (cmd == P.INFO) | (cmd == P.STATUS) | (cmd == P.INFER)
        fits = (((cmd == P.INFO) | (cmd == P.STATUS)) & (length == 0)) | ((cmd == P.INFER) & (length == self.in_bytes))
        if self.bus_bytes:
            known |= (cmd == P.CFG_WRITE) | (cmd == P.CFG_READ)
            words = length - 2
            whole = (words[:16] % self.bus_bytes) == 0 if self.bus_bytes > 1 else Const(1)
            fits |= (cmd == P.CFG_WRITE) & (length >= 2 + self.bus_bytes) & whole
            fits |= (cmd == P.CFG_READ) & (length == 3)
        return known, fits

    def elaborate(self, platform):
        m = Module()
        byte, got = self.byte, self.byte_valid
        cmd = Signal(8, name="frame_cmd")
        length_lo = Signal(8, name="length_lo")
        remaining = Signal(16, name="payload_left")
        crc = Signal(8, name="crc")
        known = Signal(name="cmd_known")
        head_bytes = Signal(range(4), name="head_bytes")   # payload bytes seen, saturating at 3
        addr = Signal(CFG_ADDR_WIDTH, name="word_addr")
        count = Signal(8, name="word_count")
        idle = Signal(range(self.timeout_cycles + 1), name="idle_cycles")

        m.d.sync += [self.reply_valid.eq(0), self.vector_push.eq(0)]
        if self.bus_bytes:
            m.d.sync += self.cfg_we.eq(0)
            word = Signal(8 * self.bus_bytes, name="word_shift")
            word_byte = Signal(range(self.bus_bytes), name="word_byte")

        def reply(kind, code=0):
            fields = [self.reply_valid.eq(1), self.reply.kind.eq(kind), self.reply.code.eq(code),
                      self.reply.cmd.eq(cmd),
                      self.reply.addr.eq(addr), self.reply.count.eq(count)]
            m.d.sync += fields

        # a frame that stalls is dropped
        timed_out = Signal(name="timed_out")
        m.d.comb += timed_out.eq(~got & (idle == self.timeout_cycles - 1))
        with m.If(~self.in_frame | got | timed_out):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)

        def timeout():
            with m.If(timed_out):
                reply(ReplyKind.ERROR, P.E_TIMEOUT)
                m.next = "HUNT"

        crc_next = crc8_step(crc, byte)
        with m.If(got):
            m.d.sync += crc.eq(crc_next)

        with m.FSM(name="parser") as fsm:
            m.d.comb += self.in_frame.eq(~fsm.ongoing("HUNT"))
            with m.State("HUNT"):
                with m.If(got & (byte == P.SYNC)):
                    m.d.sync += [crc.eq(0), cmd.eq(0)]
                    m.next = "CMD"
            with m.State("CMD"):
                with m.If(got):
                    m.d.sync += cmd.eq(byte)
                    m.next = "LEN_LO"
                timeout()
            with m.State("LEN_LO"):
                with m.If(got):
                    m.d.sync += length_lo.eq(byte)
                    m.next = "LEN_HI"
                timeout()
            with m.State("LEN_HI"):
                length = Cat(length_lo, byte)
                is_known, fits = self._fits(cmd, length)
                with m.If(got):
                    m.d.sync += [known.eq(is_known), remaining.eq(length), head_bytes.eq(0)]
                    if self.bus_bytes:
                        m.d.sync += word_byte.eq(0)
                    with m.If(is_known & ~fits):
                        reply(ReplyKind.ERROR, P.E_LENGTH)
                        m.next = "HUNT"
                    with m.Elif(length == 0):
                        m.next = "CHECK"
                    with m.Else():
                        m.next = "PAYLOAD"
                timeout()
            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(head_bytes != 3):
                        m.d.sync += head_bytes.eq(head_bytes + 1)
                    with m.If(cmd == P.INFER):
                        m.d.sync += self.vector.eq(Cat(self.vector[8:], byte))
                    if self.bus_bytes:
                        with m.If((cmd == P.CFG_WRITE) | (cmd == P.CFG_READ)):
                            with m.If(head_bytes == 0):
                                m.d.sync += addr[:8].eq(byte)
                            with m.Elif(head_bytes == 1):
                                m.d.sync += addr[8:].eq(byte)
                            with m.Elif(cmd == P.CFG_READ):
                                m.d.sync += count.eq(byte)
                            with m.Else():
                                full = Cat(word[8:], byte)
                                m.d.sync += word.eq(full)
                                with m.If(word_byte == self.bus_bytes - 1):
                                    m.d.sync += [word_byte.eq(0), self.cfg_we.eq(1),
                                                 self.cfg_wdata.eq(full[:self.bus_width]),
                                                 self.cfg_addr.eq(addr), addr.eq(addr + 1)]
                                with m.Else():
                                    m.d.sync += word_byte.eq(word_byte + 1)
                    with m.If(remaining == 1):
                        m.next = "CHECK"
                timeout()
            with m.State("CHECK"):
                with m.If(got):
                    with m.If(byte != crc):
                        reply(ReplyKind.ERROR, P.E_CRC)
                    with m.Elif(~known):
                        reply(ReplyKind.ERROR, P.E_COMMAND)
                    with m.Elif(cmd == P.INFO):
                        reply(ReplyKind.INFO)
                    with m.Elif(cmd == P.STATUS):
                        reply(ReplyKind.STATUS)
                    with m.Elif(cmd == P.INFER):
                        with m.If(self.vector_room):
                            m.d.sync += self.vector_push.eq(1)
                        with m.Else():
                            reply(ReplyKind.ERROR, P.E_OVERRUN)
                    if self.bus_bytes:
                        with m.Elif(cmd == P.CFG_WRITE):
                            reply(ReplyKind.CFG_ACK)
                        with m.Elif(cmd == P.CFG_READ):
                            reply(ReplyKind.CFG_READ)
                    m.next = "HUNT"
                timeout()

        return m


class ReplySender(wiring.Component):
    """Serializes the replies into frames for the transmitter.

    Parameters
    ----------
    out_bytes : int
        Bytes of a result vector.
    bus_bytes : int
        Bytes of a configuration word (0: no bus, no ``cfg_*`` ports).
    bus_width : int
        Bits of a configuration word.
    info : bytes
        The payload of the ``INFO`` reply.

    Ports
    -----
    ``result``: In(8 * out_bytes), ``result_valid``: In(1), ``result_take``: Out(1)
        the head of the result FIFO (``r_data``, ``r_rdy``, ``r_en``).
    ``reply``: In(REPLY_LAYOUT), ``reply_valid``: In(1), ``reply_take``: Out(1)
        the head of the reply queue (``r_data``, ``r_rdy``, ``r_en``).
    ``status``: In(8 * STATUS_BYTES)
        the ``STATUS`` payload (byte ``k`` at bits ``[8k, 8k+8)``), read
        when a ``STATUS`` reply starts.
    ``cfg_addr``: Out(16), ``cfg_read``: Out(1), ``cfg_grant``: In(1), ``cfg_rdata``: In(bus_width)
        (with a bus) a configuration read: ``cfg_addr`` is on the bus in a
        cycle where ``cfg_read`` and ``cfg_grant`` are high, and the word is
        read from ``cfg_rdata`` on the next cycle.
    ``tx_data``: Out(8), ``tx_valid``: Out(1), ``tx_ready``: In(1)
        bytes to the transmitter.
    ``result_sent``: Out(1)
        one cycle when the last byte of a result frame is taken.
    ``busy``: Out(1)
        a frame is being sent.

    Latency
    -------
    A frame's first byte is offered 1 cycle after its reply or result was
    taken from its queue.

    II
    --
    One byte per accepting edge of the transmitter; a configuration word
    costs 2 cycles more (address, data).  When both a result and another
    reply wait, they alternate.
    """

    def __init__(self, out_bytes: int, bus_bytes: int, bus_width: int, info: bytes):
        self.out_bytes, self.bus_bytes, self.bus_width = int(out_bytes), int(bus_bytes), int(bus_width)
        self.info = bytes(info)
        members = {"result": In(8 * self.out_bytes), "result_valid": In(1), "result_take": Out(1),
                   "reply": In(REPLY_LAYOUT), "reply_valid": In(1), "reply_take": Out(1),
                   "status": In(8 * P.STATUS_BYTES),
                   "tx_data": Out(8), "tx_valid": Out(1), "tx_ready": In(1),
                   "result_sent": Out(1), "busy": Out(1)}
        if self.bus_bytes:
            members.update({"cfg_addr": Out(CFG_ADDR_WIDTH), "cfg_read": Out(1), "cfg_grant": In(1),
                            "cfg_rdata": In(self.bus_width)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        short_bytes = max(len(self.info), P.STATUS_BYTES, 2)
        cmd = Signal(8, name="reply_cmd")
        length = Signal(16, name="reply_length")
        remaining = Signal(16, name="payload_left")
        crc = Signal(8, name="crc")
        from_result = Signal(name="from_result")
        is_result = Signal(name="is_result")
        prefer_result = Signal(name="prefer_result")
        result_shift = Signal(8 * self.out_bytes, name="result_shift")
        short_shift = Signal(8 * short_bytes, name="short_shift")
        info = Const(int.from_bytes(self.info, "little"), 8 * short_bytes)
        from_bus = Signal(name="from_bus")
        if self.bus_bytes:
            word_addr = Signal(CFG_ADDR_WIDTH, name="word_addr")
            words_left = Signal(8, name="words_left")
            word_shift = Signal(8 * self.bus_bytes, name="word_shift")
            word_byte = Signal(range(self.bus_bytes), name="word_byte")
            m.d.comb += self.cfg_addr.eq(word_addr)

        take = self.tx_valid & self.tx_ready
        m.d.sync += self.result_sent.eq(0)
        with m.If(take):
            m.d.sync += crc.eq(crc8_step(crc, self.tx_data))

        with m.FSM(name="sender") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                m.d.sync += from_bus.eq(0)
                with m.If(self.result_valid & (prefer_result | ~self.reply_valid)):
                    m.d.comb += self.result_take.eq(1)
                    m.d.sync += [result_shift.eq(self.result), cmd.eq(P.INFER | P.REPLY),
                                 length.eq(self.out_bytes), from_result.eq(1), is_result.eq(1),
                                 prefer_result.eq(0)]
                    m.next = "SYNC"
                with m.Elif(self.reply_valid):
                    m.d.comb += self.reply_take.eq(1)
                    m.d.sync += [from_result.eq(0), is_result.eq(0), prefer_result.eq(1)]
                    kind = self.reply.kind
                    with m.If(kind == ReplyKind.INFO):
                        m.d.sync += [short_shift.eq(info), cmd.eq(P.INFO | P.REPLY), length.eq(len(self.info))]
                    with m.Elif(kind == ReplyKind.STATUS):
                        m.d.sync += [short_shift.eq(self.status), cmd.eq(P.STATUS | P.REPLY),
                                     length.eq(P.STATUS_BYTES)]
                    with m.Elif(kind == ReplyKind.CFG_ACK):
                        m.d.sync += [cmd.eq(P.CFG_WRITE | P.REPLY), length.eq(0)]
                    with m.Elif(kind == ReplyKind.CFG_READ):
                        m.d.sync += [cmd.eq(P.CFG_READ | P.REPLY), length.eq(self.reply.count * self.bus_bytes),
                                     from_bus.eq(1)]
                        if self.bus_bytes:
                            m.d.sync += [word_addr.eq(self.reply.addr), words_left.eq(self.reply.count)]
                    with m.Else():
                        m.d.sync += [short_shift.eq(Cat(self.reply.code, self.reply.cmd)), cmd.eq(P.ERROR),
                                     length.eq(2)]
                    m.next = "SYNC"

            def send(value, next_state):
                m.d.comb += [self.tx_data.eq(value), self.tx_valid.eq(1)]
                with m.If(self.tx_ready):
                    m.next = next_state

            with m.State("SYNC"):
                send(P.SYNC, "CMD")
                m.d.sync += crc.eq(0)
            with m.State("CMD"):
                send(cmd, "LEN_LO")
            with m.State("LEN_LO"):
                send(length[:8], "LEN_HI")
            with m.State("LEN_HI"):
                m.d.sync += remaining.eq(length)
                send(length[8:], "PAYLOAD")
                with m.If(self.tx_ready):
                    with m.If(length == 0):
                        m.next = "CRC"
                    if self.bus_bytes:
                        with m.Elif(from_bus):
                            m.next = "READ_ADDR"
            with m.State("PAYLOAD"):
                send(Mux(from_result, result_shift[:8], short_shift[:8]), "PAYLOAD")
                with m.If(self.tx_ready):
                    m.d.sync += [result_shift.eq(result_shift >> 8), short_shift.eq(short_shift >> 8),
                                 remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        m.next = "CRC"
            if self.bus_bytes:
                with m.State("READ_ADDR"):
                    m.d.comb += self.cfg_read.eq(1)
                    with m.If(self.cfg_grant):
                        m.next = "READ_DATA"
                with m.State("READ_DATA"):
                    m.d.sync += [word_shift.eq(self.cfg_rdata), word_byte.eq(0)]
                    m.next = "WORD"
                with m.State("WORD"):
                    send(word_shift[:8], "WORD")
                    with m.If(self.tx_ready):
                        m.d.sync += [word_shift.eq(word_shift >> 8), word_byte.eq(word_byte + 1)]
                        with m.If(word_byte == self.bus_bytes - 1):
                            m.d.sync += [word_addr.eq(word_addr + 1), words_left.eq(words_left - 1)]
                            with m.If(words_left == 1):
                                m.next = "CRC"
                            with m.Else():
                                m.next = "READ_ADDR"
            with m.State("CRC"):
                send(crc, "IDLE")
                with m.If(self.tx_ready):
                    m.d.sync += self.result_sent.eq(is_result)
        return m


class ResultCredits(wiring.Component):
    """Keeps the result FIFO from overflowing: counts the results that are
    in the core's pipeline or in the FIFO.

    Parameters
    ----------
    depth : int
        Results the result FIFO holds.

    Ports
    -----
    ``admit``: In(1)
        a vector enters the core on this edge (its result will come).
    ``release``: In(1)
        a result leaves the result FIFO on this edge.
    ``room``: Out(1)
        fewer than ``depth`` results are owed: the next vector may enter.
    ``owed``: Out(range(depth + 1))
        the count.

    Latency
    -------
    ``room`` follows the count, which is registered: 1 cycle.

    II
    --
    1.
    """

    def __init__(self, depth: int):
        self.depth = int(depth)
        super().__init__({"admit": In(1), "release": In(1), "room": Out(1),
                          "owed": Out(range(self.depth + 1))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.room.eq(self.owed < self.depth)
        with m.If(self.admit & ~self.release):
            m.d.sync += self.owed.eq(self.owed + 1)
        with m.Elif(self.release & ~self.admit):
            m.d.sync += self.owed.eq(self.owed - 1)
        return m


def _saturating_increment(m: Module, counter: Signal, enable) -> None:
    with m.If(enable & (counter != (1 << len(counter)) - 1)):
        m.d.sync += counter.eq(counter + 1)


class SelfTest(wiring.Component):
    """Runs embedded vectors through the core at reset and checks the results.

    Parameters
    ----------
    inputs : sequence of int
        The core's ``in_data`` words, in order (a ROM of ``in_width`` bits):
        ``words`` of them per result.
    expected : sequence of int
        The ``out_data`` word of each result (a ROM of ``out_width`` bits).
    in_width, out_width : int
        Bits of the core's ``in_data`` and ``out_data``.
    words : int
        Input words per result (the pixels of a streamed core; 1 otherwise).

    Ports
    -----
    ``feed_data``: Out(in_width), ``feed_valid``: Out(1)
        the next input vector, offered to the core (``in_data``, ``in_valid``).
    ``feed_ready``: In(1)
        the core's ``in_ready``: the vector is taken when both are high.
    ``result_data``: In(out_width), ``result_valid``: In(1)
        the core's ``out_data`` and ``out_valid`` while ``running``.
    ``running``: Out(1)
        not every result has been compared yet (the core's input belongs to
        the self-test).
    ``state``: Out(2)
        ``SELFTEST_RUNNING``, then ``SELFTEST_PASS`` or ``SELFTEST_FAIL``.
    ``mismatches``: Out(16)
        results that differed from the expected word (saturating).
    ``compared``: Out(16)
        results compared so far (saturating).

    Latency
    -------
    The first vector is offered 1 cycle after reset (the ROMs are read
    synchronously); a result is compared in the cycle it arrives and
    ``state`` changes on the next edge.

    II
    --
    One vector per cycle where ``feed_ready`` is high.
    """

    def __init__(self, inputs, expected, in_width: int, out_width: int, words: int = 1):
        try:
            self._check(inputs, expected, in_width, out_width, int(words))
        except ValueError:
            self._MustUse__silence = True   # refused, so it is not an unused elaboratable
            raise
        super().__init__({"feed_data": Out(self.in_width), "feed_valid": Out(1), "feed_ready": In(1),
                          "result_data": In(self.out_width), "result_valid": In(1),
                          "running": Out(1), "state": Out(2), "mismatches": Out(16), "compared": Out(16)})

    def _check(self, inputs, expected, in_width, out_width, words):
        """Keeps the words, or refuses them."""
        self.inputs = [int(v) for v in inputs]
        self.expected = [int(v) for v in expected]
        self.words = words
        if words < 1 or not self.expected or len(self.inputs) != words * len(self.expected):
            raise ValueError(f"a self-test needs {words} input words per expected result: got "
                             f"{len(self.inputs)} words and {len(self.expected)} results (at least one)")
        self.in_width, self.out_width = int(in_width), int(out_width)
        for name, words, width in (("input", self.inputs, self.in_width),
                                   ("expected", self.expected, self.out_width)):
            if any(not 0 <= w < (1 << width) for w in words):
                raise ValueError(f"a self-test {name} word does not fit {width} unsigned bits")

    def elaborate(self, platform):
        m = Module()
        n, n_words = len(self.expected), len(self.inputs)
        m.submodules.input_rom = input_rom = Memory(shape=unsigned(self.in_width), depth=n_words,
                                                    init=self.inputs)
        m.submodules.expected_rom = expected_rom = Memory(shape=unsigned(self.out_width), depth=n,
                                                          init=self.expected)
        input_port = input_rom.read_port()
        expected_port = expected_rom.read_port()

        primed = Signal(name="rom_primed")
        fed = Signal(range(n_words + 1), name="fed")
        checked = Signal(range(n + 1), name="checked")
        m.d.sync += primed.eq(1)

        taken = self.feed_valid & self.feed_ready
        m.d.comb += [self.feed_valid.eq(primed & (fed != n_words)), self.feed_data.eq(input_port.data),
                     input_port.addr.eq((fed + taken)[:len(input_port.addr)]),
                     expected_port.addr.eq((checked + self.result_valid)[:len(expected_port.addr)])]
        with m.If(taken):
            m.d.sync += fed.eq(fed + 1)

        arrived = self.result_valid & self.running
        with m.If(arrived):
            m.d.sync += checked.eq(checked + 1)
        _saturating_increment(m, self.compared, arrived)
        _saturating_increment(m, self.mismatches, arrived & (self.result_data != expected_port.data))

        m.d.comb += [self.running.eq(checked != n),
                     self.state.eq(Mux(self.running, P.SELFTEST_RUNNING,
                                       Mux(self.mismatches != 0, P.SELFTEST_FAIL, P.SELFTEST_PASS)))]
        return m


class LinkCounters(wiring.Component):
    """The counters of the ``STATUS`` reply.

    Ports
    -----
    ``reply``: In(REPLY_LAYOUT), ``reply_valid``: In(1)
        the reply requests of the parser; each ``ERROR`` counts under its code.
    ``result_sent``: In(1)
        a result frame was sent.
    ``bad_crc``, ``bad_command``, ``bad_length``, ``overruns``, ``timeouts``: Out(16)
        errors by code (saturating at 65535).
    ``results``: Out(32)
        results sent (wrapping).

    Latency
    -------
    1 cycle (registered counters).

    II
    --
    1.
    """

    _CODES = (("bad_crc", P.E_CRC), ("bad_command", P.E_COMMAND), ("bad_length", P.E_LENGTH),
              ("overruns", P.E_OVERRUN), ("timeouts", P.E_TIMEOUT))

    def __init__(self):
        members = {"reply": In(REPLY_LAYOUT), "reply_valid": In(1), "result_sent": In(1), "results": Out(32)}
        members.update({name: Out(16) for name, _ in self._CODES})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        error = self.reply_valid & (self.reply.kind == ReplyKind.ERROR)
        for name, code in self._CODES:
            _saturating_increment(m, getattr(self, name), error & (self.reply.code == code))
        with m.If(self.result_sent):
            m.d.sync += self.results.eq(self.results + 1)
        return m


class CoreLink(wiring.Component):
    """A core behind a UART host link (:mod:`rtlgen.link.protocol`).

    Parameters
    ----------
    core : wiring.Component
        The core (:class:`rtlgen.hw.ports.CoreSignature`), owned as the
        submodule ``core``.  Its ``cfg_*`` bus, if it has one, is served by
        ``CFG_WRITE`` and ``CFG_READ``.
    latency, ii : int
        The core's latency and initiation interval (reported by ``INFO``).
    divisor : int
        Clock cycles per UART bit (>= 4).
    window : int
        Input samples queued (1..255); the result FIFO holds as many results.
    words : int
        The core's input words per result: the pixels of a streamed core,
        1 for a parallel one.  An ``INFER`` payload is a sample: ``words``
        words of ``ceil(in_width / 8)`` bytes each.
    selftest_inputs, selftest_expected : sequences of int, optional
        The core's ``in_data`` words (``words`` per result) and their
        ``out_data`` words, run at reset (both or neither).

    Ports
    -----
    ``rx``: In(1)
        the UART receive pin (idles high; synchronized inside).
    ``tx``: Out(1)
        the UART transmit pin (registered; idles high).
    ``selftest_state``: Out(2)
        ``SELFTEST_NONE``, ``SELFTEST_RUNNING``, ``SELFTEST_PASS`` or
        ``SELFTEST_FAIL``.
    ``mismatches``: Out(16)
        self-test results that differed (saturating).
    ``busy``: Out(1)
        a frame is being received or sent, or a vector or result waits or is
        in the core.
    ``activity``: Out(1)
        ``busy``, held for :data:`ACTIVITY_HOLD` cycles after it falls (for
        an LED).
    ``frame_error``: Out(1)
        one cycle per received character whose stop bit was 0.

    Latency
    -------
    A result frame starts ``latency`` plus a few (about 6) cycles after the
    CRC byte of its ``INFER`` frame is received, when the transmitter is
    free; other replies about 3 cycles after.  Bytes take ``10 * divisor``
    cycles.

    II
    --
    Bound by the UART: one ``INFER`` per ``(in_bytes + 5)`` byte times in
    and one result per ``(out_bytes + 5)`` byte times out; at most
    ``window`` vectors wait.
    """

    def __init__(self, core, *, latency: int, ii: int, divisor: int, window: int = 4, words: int = 1,
                 selftest_inputs=None, selftest_expected=None):
        try:
            self._setup(core, latency, ii, divisor, window, words, selftest_inputs, selftest_expected)
        except ValueError:
            self._MustUse__silence = True   # refused, so it is not an unused elaboratable
            raise
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "selftest_state": Out(2),
                          "mismatches": Out(16), "busy": Out(1), "activity": Out(1),
                          "frame_error": Out(1)})

    def _setup(self, core, latency, ii, divisor, window, words, selftest_inputs, selftest_expected):
        if not 1 <= int(words) <= 0xFFFF:
            raise ValueError(f"a sample must be 1..65535 input words, got {words}")
        if not 1 <= int(window) <= 255:
            raise ValueError(f"the window must be 1..255 vectors, got {window}")
        if int(divisor) < MIN_DIVISOR:
            raise ValueError(f"the UART needs at least {MIN_DIVISOR} clock cycles per bit, got {divisor}")
        for name, value, low in (("latency", latency, 0), ("ii", ii, 1)):
            if not low <= int(value) <= 0xFFFF:
                raise ValueError(f"the core's {name} must be {low}..65535 cycles (INFO), got {value}")
        if (selftest_inputs is None) != (selftest_expected is None):
            raise ValueError("give both selftest_inputs and selftest_expected, or neither")
        self.core = core
        self.latency, self.ii, self.divisor, self.window = int(latency), int(ii), int(divisor), int(window)
        self.in_width = Value.cast(core.in_data).shape().width
        self.out_width = Value.cast(core.out_data).shape().width
        self.words = int(words)
        self.word_bytes = (self.in_width + 7) // 8
        self.in_bytes = self.words * self.word_bytes
        if self.in_bytes > 0xFFFF:
            raise ValueError(f"a sample of {self.in_bytes} bytes does not fit an INFER frame (65535)")
        self.out_bytes = (self.out_width + 7) // 8
        self.bus_bytes = _bus_bytes(core)
        self.bus_width = Value.cast(core.cfg_wdata).shape().width if self.bus_bytes else 0
        self.selftest = None
        if selftest_inputs is not None:
            self.selftest = SelfTest(selftest_inputs, selftest_expected, self.in_width, self.out_width,
                                     self.words)
        self.info = P.Info(self.in_bytes, self.out_bytes, self.window, self.latency, self.ii, self.bus_bytes,
                           len(self.selftest.expected) if self.selftest else 0)
        self.timeout_cycles = P.TIMEOUT_BYTES * 10 * self.divisor

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = self.core
        rx = m.submodules.uart_rx = UartRx(self.divisor)
        tx = m.submodules.uart_tx = UartTx(self.divisor)
        parser = m.submodules.parser = RequestParser(self.in_bytes, self.bus_bytes, self.bus_width,
                                                     self.timeout_cycles)
        in_fifo = m.submodules.in_fifo = SyncFIFOBuffered(width=self.words * self.in_width, depth=self.window)
        out_fifo = m.submodules.out_fifo = SyncFIFOBuffered(width=self.out_width, depth=self.window)
        reply_queue = m.submodules.reply_queue = SyncFIFOBuffered(width=REPLY_LAYOUT.size, depth=REPLY_QUEUE)
        credits = m.submodules.credits = ResultCredits(self.window)
        sender = m.submodules.sender = ReplySender(self.out_bytes, self.bus_bytes, self.bus_width,
                                                   self.info.pack())
        counters = m.submodules.counters = LinkCounters()

        # UART in -> parser -> input FIFO and reply queue
        m.d.comb += [rx.rx.eq(self.rx), self.frame_error.eq(rx.frame_error),
                     parser.byte.eq(rx.data), parser.byte_valid.eq(rx.valid),
                     parser.vector_room.eq(in_fifo.w_rdy),
                     in_fifo.w_data.eq(Cat(parser.vector[8 * k * self.word_bytes:][:self.in_width]
                                           for k in range(self.words))),
                     in_fifo.w_en.eq(parser.vector_push),
                     reply_queue.w_data.eq(parser.reply.as_value()), reply_queue.w_en.eq(parser.reply_valid),
                     counters.reply.eq(parser.reply), counters.reply_valid.eq(parser.reply_valid)]

        # the core's input: the self-test first, then the input FIFO
        if self.selftest is not None:
            selftest = m.submodules.selftest = self.selftest
            testing = selftest.running
            m.d.comb += [selftest.feed_ready.eq(core.in_ready),
                         selftest.result_data.eq(core.out_data), selftest.result_valid.eq(core.out_valid),
                         self.selftest_state.eq(selftest.state), self.mismatches.eq(selftest.mismatches)]
            selftest_feed_valid, selftest_feed_data = selftest.feed_valid, selftest.feed_data
            compared = selftest.compared
        else:
            testing = Const(0)
            selftest_feed_valid, selftest_feed_data = Const(0), Const(0, self.in_width)
            compared = Const(0, 16)
            m.d.comb += self.selftest_state.eq(P.SELFTEST_NONE)
        # a sample's words go in one by one; its result's place is reserved at the first
        word_index = Signal(range(self.words), name="word_index")
        first = word_index == 0
        last = word_index == self.words - 1
        offer = in_fifo.r_rdy & ~testing & (credits.room | ~first)
        taken = offer & core.in_ready
        with m.If(taken):
            m.d.sync += word_index.eq(Mux(last, 0, word_index + 1))
        word = in_fifo.r_data.word_select(word_index, self.in_width) if self.words > 1 else in_fifo.r_data
        m.d.comb += [core.in_valid.eq(Mux(testing, selftest_feed_valid, offer)),
                     core.in_data.eq(Mux(testing, selftest_feed_data, word)),
                     in_fifo.r_en.eq(taken & last), credits.admit.eq(taken & first),
                     out_fifo.w_data.eq(core.out_data), out_fifo.w_en.eq(core.out_valid & ~testing)]

        # configuration bus: writes from the parser win over the sender's reads
        if self.bus_bytes:
            m.d.comb += [core.cfg_we.eq(parser.cfg_we), core.cfg_wdata.eq(parser.cfg_wdata),
                         core.cfg_addr.eq(Mux(parser.cfg_we, parser.cfg_addr, sender.cfg_addr)),
                         sender.cfg_grant.eq(~parser.cfg_we), sender.cfg_rdata.eq(core.cfg_rdata)]

        # replies -> UART out
        status = Cat(self.selftest_state, Const(0, 6), self.mismatches, compared, counters.bad_crc,
                     counters.bad_command, counters.bad_length, counters.overruns, counters.timeouts,
                     counters.results)
        assert len(status) == 8 * P.STATUS_BYTES
        m.d.comb += [sender.result.eq(out_fifo.r_data), sender.result_valid.eq(out_fifo.r_rdy),
                     out_fifo.r_en.eq(sender.result_take), credits.release.eq(sender.result_take),
                     sender.reply.eq(reply_queue.r_data), sender.reply_valid.eq(reply_queue.r_rdy),
                     reply_queue.r_en.eq(sender.reply_take), sender.status.eq(status),
                     counters.result_sent.eq(sender.result_sent),
                     tx.data.eq(sender.tx_data), tx.valid.eq(sender.tx_valid), sender.tx_ready.eq(tx.ready),
                     self.tx.eq(tx.tx)]

        m.d.comb += self.busy.eq(parser.in_frame | sender.busy | ~tx.ready | in_fifo.r_rdy | out_fifo.r_rdy
                                 | reply_queue.r_rdy | (credits.owed != 0) | testing)
        hold = Signal(range(ACTIVITY_HOLD), name="activity_hold")
        with m.If(self.busy):
            m.d.sync += hold.eq(ACTIVITY_HOLD - 1)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        m.d.comb += self.activity.eq(self.busy | (hold != 0))
        return m
