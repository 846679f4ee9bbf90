"""The port contracts of rtlgen components, as Amaranth signatures.

* A layer (the hardware of one IR layer, see
  :class:`rtlgen.hw.layer.LayerHardware`) takes an input stream ``i`` and
  gives an output stream ``o`` of code vectors: :class:`CodeStreamSignature`
  (:func:`layer_members`).
* A top-level core (:class:`rtlgen.hw.network.Network`,
  :class:`rtlgen.hw.stream.StreamNetwork`,
  :class:`rtlgen.hw.forest.ForestCore`) has the flat ports that the
  manifest describes: :class:`CoreSignature`, with the configuration bus
  (:func:`config_bus_members`) or the I2C pins (:func:`i2c_pin_members`)
  when it stores parameters.
* A layer or bank with stored parameters has the layer side of the
  configuration bus: :func:`layer_config_members`.
"""

from __future__ import annotations

from amaranth.hdl import Const
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..numerics.fixed import FixedType
from .arith import shape_of

__all__ = ["ADDR_WIDTH", "code_vector", "CodeStreamSignature", "CodeStream", "CoreSignature",
           "layer_members", "config_bus_members", "layer_config_members", "i2c_pin_members"]

#: width of the configuration bus's word address
ADDR_WIDTH = 16


def code_vector(t: FixedType, n: int) -> data.ArrayLayout:
    """The layout of ``n`` codes of type ``t``: element ``k`` at bits ``[k*W, (k+1)*W)``."""
    return data.ArrayLayout(shape_of(t), n)


class CodeStreamSignature(wiring.Signature):
    """Signature of a stream of code vectors without back-pressure.

    Parameters
    ----------
    elem_type : FixedType
        The type of every element.
    count : int
        The number of elements of a vector.

    Members
    -------
    payload : ``Out(code_vector(elem_type, count))``
        The vector (element ``k`` at bits ``[k*W, (k+1)*W)``).  It is taken
        in the cycle where ``valid`` is high; every rtlgen producer then
        holds it until its next ``valid``, so a sink with II ``R`` may read
        it over ``R`` cycles.
    valid : ``Out(1)``
        High for one cycle per vector.
    ready : ``In(1)``
        Always ``Const(1)``: the sink takes every vector.
    """

    def __init__(self, elem_type: FixedType, count: int):
        self._elem_type = elem_type
        self._count = int(count)
        super().__init__({"payload": Out(code_vector(elem_type, count)), "valid": Out(1), "ready": In(1)})

    @property
    def elem_type(self) -> FixedType:
        return self._elem_type

    @property
    def count(self) -> int:
        return self._count

    def __eq__(self, other):
        return (type(other) is type(self) and other.elem_type == self.elem_type
                and other.count == self.count)

    def create(self, *, path=None, src_loc_at=0):
        return CodeStream(self, path=path, src_loc_at=1 + src_loc_at)

    def __repr__(self):
        return f"CodeStreamSignature({self.elem_type}, {self.count})"


class CodeStream:
    """A stream of code vectors: the interface object of a :class:`CodeStreamSignature`.

    ``payload`` and ``valid`` are signals, ``ready`` is ``Const(1)``.
    """

    def __init__(self, signature: CodeStreamSignature, *, path=None, src_loc_at=0):
        members = signature.members.create(path=path, src_loc_at=1 + src_loc_at)
        self.signature = signature
        self.payload = members["payload"]
        self.valid = members["valid"]
        self.ready = Const(1)

    @classmethod
    def over(cls, signature: CodeStreamSignature, *, valid, payload) -> "CodeStream":
        """The stream that existing signals carry (a register inside a core,
        or the flat ports of a core), to pass to ``wiring.connect``."""
        stream = cls.__new__(cls)
        stream.signature, stream.payload, stream.valid, stream.ready = signature, payload, valid, Const(1)
        reasons: list[str] = []
        if not signature.is_compliant(stream, reasons=reasons, path=("stream",)):
            raise TypeError(f"signals do not match {signature!r}: " + "; ".join(reasons))
        return stream

    def __repr__(self):
        return f"CodeStream({self.signature!r}, payload={self.payload!r}, valid={self.valid!r})"


def layer_members(in_type: FixedType, n_in: int, out_type: FixedType, n_out: int) -> dict:
    """Signature members of a layer: ``i`` (``n_in`` codes of ``in_type``) and
    ``o`` (``n_out`` codes of ``out_type``) code streams."""
    return {"i": In(CodeStreamSignature(in_type, n_in)), "o": Out(CodeStreamSignature(out_type, n_out))}


def config_bus_members(data_width: int, addr_width: int = ADDR_WIDTH) -> dict:
    """The configuration bus of a top-level core (as the core sees it).

    ``cfg_addr`` word address, ``cfg_wdata``/``cfg_we`` one word written per
    cycle where ``cfg_we`` is high, ``cfg_rdata`` registered: the word at the
    address presented on the previous cycle.
    """
    return {"cfg_addr": In(addr_width), "cfg_wdata": In(data_width), "cfg_we": In(1),
            "cfg_rdata": Out(data_width)}


def layer_config_members(data_width: int, addr_width: int = ADDR_WIDTH) -> dict:
    """The configuration bus of a layer with stored parameters.

    As :func:`config_bus_members`, but ``cfg_rdata`` is combinational (0 when
    the address is not the layer's) and ``cfg_error`` flags a scrubbed TMR word.
    """
    return {"cfg_addr": In(addr_width), "cfg_wdata": In(data_width), "cfg_we": In(1),
            "cfg_rdata": Out(data_width), "cfg_error": Out(1)}


def i2c_pin_members() -> dict:
    """The I2C pins of a core whose configuration bus an I2C target masters:
    ``scl_i``, ``sda_i`` pin levels (idle high), ``sda_oe`` 1 pulls SDA low."""
    return {"scl_i": In(1), "sda_i": In(1), "sda_oe": Out(1)}


class CoreSignature(wiring.Signature):
    """Signature of a top-level core: the ports the manifest describes.

    Parameters
    ----------
    in_type, n_in : FixedType, int
        An input vector (one pixel of a streamed core) is ``n_in`` codes of
        ``in_type``.
    out_type, n_out : FixedType, int
        A result is ``n_out`` codes of ``out_type``.
    bus_width : int or None
        The data width ``D`` of the configuration bus; None when the core
        stores no parameters (and has no bus).
    i2c : bool
        With a bus: an I2C target masters it, and the core has the I2C
        pins instead of the ``cfg_*`` ports.

    Members
    -------
    in_valid : ``In(1)``
        A vector is offered on ``in_data``.  It is accepted on a clock edge
        where ``in_valid`` and ``in_ready`` are both high.
    in_ready : ``Out(1)``
        The core takes a vector on this edge.  It does not depend on
        ``in_valid``; the core states when it is low (its II).
    in_data : ``In(code_vector(in_type, n_in))``
        The input vector, read on the accepting edge.
    out_valid : ``Out(1)``
        High for one cycle exactly ``latency`` cycles after the edge that
        accepted the (last) input of the result.  There is no back-pressure:
        the consumer takes every result.
    out_data : ``Out(code_vector(out_type, n_out))``
        The result; holds its value until the next ``out_valid``.
    cfg_addr : ``In(16)``, cfg_wdata : ``In(D)``, cfg_we : ``In(1)``
        With a bus and without ``i2c``: one word written per clock edge
        where ``cfg_we`` is high (map in :mod:`rtlgen.hw.storage`).
    cfg_rdata : ``Out(D)``
        Registered: the word at the address presented on the previous cycle.
    scl_i : ``In(1)``, sda_i : ``In(1)``, sda_oe : ``Out(1)``
        With ``i2c``: the pin levels (idle high) and the SDA pull-down
        (:class:`rtlgen.hw.i2c.I2CTarget`).
    """

    def __init__(self, in_type: FixedType, n_in: int, out_type: FixedType, n_out: int, *,
                 bus_width: int | None = None, i2c: bool = False):
        if i2c and bus_width is None:
            raise ValueError("an I2C target needs a configuration bus: give bus_width")
        self._params = (in_type, int(n_in), out_type, int(n_out), bus_width, bool(i2c))
        members = {"in_valid": In(1), "in_ready": Out(1), "in_data": In(code_vector(in_type, n_in)),
                   "out_valid": Out(1), "out_data": Out(code_vector(out_type, n_out))}
        if i2c:
            members.update(i2c_pin_members())
        elif bus_width is not None:
            members.update(config_bus_members(bus_width))
        super().__init__(members)

    @property
    def in_type(self) -> FixedType:
        return self._params[0]

    @property
    def n_in(self) -> int:
        return self._params[1]

    @property
    def out_type(self) -> FixedType:
        return self._params[2]

    @property
    def n_out(self) -> int:
        return self._params[3]

    @property
    def bus_width(self) -> int | None:
        return self._params[4]

    @property
    def i2c(self) -> bool:
        return self._params[5]

    def output(self, core) -> CodeStream:
        """The ``out_valid``/``out_data`` ports of ``core`` as a code stream
        (connect a result to it with ``wiring.connect(m, flipped(...), result)``)."""
        return CodeStream.over(CodeStreamSignature(self.out_type, self.n_out),
                               valid=core.out_valid, payload=core.out_data)

    def __eq__(self, other):
        return type(other) is type(self) and other._params == self._params

    def __repr__(self):
        bus = "" if self.bus_width is None else f", bus_width={self.bus_width}"
        i2c = ", i2c=True" if self.i2c else ""
        return f"CoreSignature({self.in_type}, {self.n_in}, {self.out_type}, {self.n_out}{bus}{i2c})"
