"""The network top: input register, layers in a chain (or a DAG with delay-balanced branches), II throttle."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from ..errors import RtlgenError
from ..ir.model import QModel
from .activation import ActivationLayer
from .softmax import ArgmaxLayer, SoftmaxLayer
from .config_bus import attach_config_bus, core_signature
from .dense import DenseLayer
from .layer import LayerHardware
from .merge import CodeDelay, MergeLayer
from .pool import MaxPoolLayer
from .ports import CodeStream, CodeStreamSignature
from .shift_add import FusedActivation, ShiftAddDense
from .storage import BusLayout, bus_layout
from .throttle import IIThrottle

__all__ = ["Network", "make_layer", "make_layers", "layer_instance"]


def _dense(layer, bus: BusLayout | None, index: int | None):
    if layer.arithmetic == "shift_add":
        return ShiftAddDense(layer)
    if not layer.stored:
        return DenseLayer(layer)
    if bus is None:
        raise RtlgenError(f"layer {layer.name!r}: storage {layer.storage!r} is supported in "
                          "parallel cores only; use storage: constant here")
    return DenseLayer(layer, bus.for_layer(index), bus.data_width)


#: the hardware of each layer op (``layer.op``): (layer, bus layout or None, index in the model)
#: -> component.  A convolution or average pool is a dense layer over its unrolled matrix.
LAYER_HARDWARE = {
    "dense": _dense, "conv": _dense, "avgpool": _dense,
    "maxpool": lambda layer, bus, index: MaxPoolLayer(layer),
    "activation": lambda layer, bus, index: ActivationLayer(layer),
    "softmax": lambda layer, bus, index: SoftmaxLayer(layer),
    "argmax": lambda layer, bus, index: ArgmaxLayer(layer),
    "add": lambda layer, bus, index: MergeLayer(layer),
    "concat": lambda layer, bus, index: MergeLayer(layer),
}


def make_layer(layer, bus: BusLayout | None = None, index: int | None = None) -> LayerHardware:
    """The hardware component for one quantized IR layer (``index`` in the model, for its bus words)."""
    make = LAYER_HARDWARE.get(getattr(layer, "op", None))
    if make is None:
        raise TypeError(f"no hardware for {type(layer).__name__}")
    return make(layer, bus, index)


def make_layers(layers: list, bus: BusLayout | None = None, *, early_writes: bool = False,
                graph=None, input_holds: bool = False) -> list[LayerHardware]:
    """The hardware of every layer; an activation right after a shift-and-add layer, or after a
    dense layer in the serial form (one multiplier reading a weight ROM, whose one output cast
    serves every output), is done in that layer's output stage (it becomes a
    :class:`FusedActivation`).

    ``early_writes``: a serial dense layer that is not the last may write each output as it is
    done, without staging registers (``staged=False``); the caller then keeps vectors at least
    :func:`hold_ii` apart, so that the layer reading those outputs has finished with them.

    A shift-and-add layer has an output register without enable (``hold=False``) when its input
    holds from one ``valid`` to the next (then so does its output: the pipeline has no enable, and
    its output is the result of the input ``latency`` cycles before), or, failing that, when its
    reader has II 1 (it reads the output only in the cycle of ``valid``).  ``input_holds``: whether
    the layers' input holds (the core's input register does).  An input is taken to hold only when
    it is that input or a shift-and-add layer's output that holds (through a fused activation).

    ``graph`` (a :class:`~rtlgen.ir.model.LayerGraph`, None for a chain): a layer fuses its
    activation, writes early or drops its hold for its reader only when the next layer is its one
    reader and reads only it."""
    def sole_reader(k: int) -> bool:
        return graph is None or (graph.readers(k) == [k + 1] and graph.inputs_of(k + 1) == (k,))

    out: list[LayerHardware] = []
    for k, layer in enumerate(layers):
        after = layers[k + 1] if k + 1 < len(layers) else None
        fuses = getattr(after, "op", None) == "activation" and after.fusable and sole_reader(k)
        if out and getattr(out[-1], "activation", None) is layer:
            out.append(FusedActivation(layer, into=out[-1].layer.name))
        elif getattr(layer, "arithmetic", None) == "shift_add" and fuses:
            out.append(ShiftAddDense(layer, activation=after))
        else:
            hw = make_layer(layer, bus, k)
            if isinstance(hw, DenseLayer) and hw.serial:
                last = k == len(layers) - 1 or (fuses and k + 1 == len(layers) - 1)
                staged = not (early_writes and not last and sole_reader(k))
                if fuses or not staged:
                    hw._MustUse__silence = True      # replaced by its serial variant, never elaborated
                    hw = DenseLayer(layer, activation=after if fuses else None, staged=staged)
            out.append(hw)
    # which outputs hold from one valid to the next (-1: the layers' input); a shift-and-add layer
    # fed by one of them holds its output without an enable, and one whose one reader has II 1 (it
    # reads its input only in the cycle of i.valid) needs no hold
    holds = {-1: input_holds}
    for k, hw in enumerate(out):
        sources = (k - 1,) if graph is None else tuple(graph.inputs_of(k))
        fed_held = len(sources) == 1 and holds[sources[0]]
        if isinstance(hw, ShiftAddDense):
            reader = _reader(out, k)
            if fed_held or (reader is not None and out[reader].ii == 1
                            and all(sole_reader(j) for j in range(k, reader))):
                hw.hold = False
            holds[k] = fed_held or hw.hold
        else:
            holds[k] = isinstance(hw, FusedActivation) and fed_held
    return out


def _reader(layers: list[LayerHardware], k: int) -> int | None:
    """The index of the layer after ``k`` past a fused activation; None after the last."""
    return next((j for j in range(k + 1, len(layers)) if not isinstance(layers[j], FusedActivation)), None)


def hold_ii(layers: list[LayerHardware]) -> int:
    """The fewest cycles between vectors for which every unstaged serial layer's outputs stay put
    while the next layer (past a fused activation) reads them: that layer's latency plus the
    reader's II."""
    ii = 1
    for k, hw in enumerate(layers):
        if isinstance(hw, DenseLayer) and not hw.staged:
            reader = _reader(layers, k)
            ii = max(ii, hw.latency + (layers[reader].ii if reader is not None else 0))
    return ii


class Network(wiring.Component):
    """A fixed-latency inference core for a quantized model.

    The submodule ``throttle`` (:class:`~rtlgen.hw.throttle.IIThrottle`)
    admits the input vectors, an input register (``x_valid``, ``x_data``)
    holds the accepted one, and the layers (:func:`make_layer`, each a
    :class:`~rtlgen.hw.layer.LayerHardware`, submodules named by
    :func:`layer_instance`) follow in a chain of ``wiring.connect`` from
    the register to ``out_valid``/``out_data``.  In a model that is not a
    chain (:class:`~rtlgen.ir.model.LayerGraph`) every layer is connected to
    the layers it reads, and each input of an add or concat that arrives
    before the others passes a :class:`~rtlgen.hw.merge.CodeDelay` of the
    difference (``self.delays``), so that all arrive in the same cycle.
    When some layer stores its parameters (``storage`` ``register`` or ``tmr``) the core has a
    configuration bus (map in :mod:`rtlgen.hw.storage`; ``self.bus`` is its
    :class:`BusLayout`) that also holds the status registers
    (:mod:`rtlgen.hw.config_bus`); with the model's ``i2c`` option an
    :class:`~rtlgen.hw.i2c.I2CTarget` (submodule ``i2c``, ``self.i2c``)
    masters it.  ``rst`` is a synchronous, active-high reset of the control
    state and of the stored parameters (back to the trained codes).

    Ports
    -----
    The :class:`~rtlgen.hw.ports.CoreSignature` (``self.signature``) of the
    model's input and output types:

    ``in_valid``: In(1), ``in_ready``: Out(1)
        an input vector is accepted on a clock edge where both are high.
        ``in_ready`` is low for ``ii - 1`` cycles after each accepted vector
        and high otherwise (always high when ``ii == 1``).
    ``in_data``: In(ArrayLayout(input codes, n_in))
        element ``k`` at bits ``[k*W, (k+1)*W)``, two's complement when the
        input type is signed.
    ``out_valid``: Out(1), ``out_data``: Out(ArrayLayout(output codes, n_out))
        ``out_valid`` is high for one cycle exactly ``latency`` cycles after
        the edge that accepted the corresponding input; ``out_data`` holds
        its value until the next ``out_valid``.  There is no output
        back-pressure: the consumer must take every result (trigger style).
    ``cfg_addr``: In(16), ``cfg_wdata``: In(D), ``cfg_we``: In(1)
        with a bus and without ``i2c``: one word written per cycle where
        ``cfg_we`` is high.
    ``cfg_rdata``: Out(D)
        with a bus and without ``i2c``; registered: the word at the address
        presented on the previous cycle.
    ``scl_i``: In(1), ``sda_i``: In(1), ``sda_oe``: Out(1)
        with ``i2c``: the I2C pins (idle high; ``sda_oe`` 1 pulls SDA low).

    Latency
    -------
    ``self.latency`` = 1 (input register) + the sum of the layers'
    latencies (in a DAG: along the longest path to the last layer).

    II
    --
    ``self.ii`` = the largest II of the layers (their reuse factors), or more when a serial
    layer writes its outputs as they are done (:func:`hold_ii`).
    """

    def __init__(self, model: QModel):
        self.model = model
        self.bus = bus_layout(model)
        self.layers: list[LayerHardware] = make_layers(model.layers, self.bus, early_writes=True,
                                                       graph=None if model.is_chain else model,
                                                       input_holds=True)
        # the cycle (after the accepting edge) where each layer's output is valid; -1: the input register
        ready_at = {-1: 1}
        #: the cycles by which each input of each layer is delayed to meet the others: {(k, port): n}
        self.delays: dict = {}
        for k, layer in enumerate(self.layers):
            sources = model.inputs_of(k)
            start = max(ready_at[s] for s in sources)
            for port, s in enumerate(sources):
                if start > ready_at[s]:
                    self.delays[(k, port)] = start - ready_at[s]
            ready_at[k] = start + layer.latency
        self.latency = ready_at[len(self.layers) - 1] if self.layers else 1
        self.ii = max([layer.ii for layer in self.layers] + [hold_ii(self.layers)])
        signature, self.i2c = core_signature(model.input_type, model.n_in, model.output_type, model.n_out,
                                             self.bus, model.i2c)
        super().__init__(signature)

    def instance_name(self, k: int) -> str:
        """The Verilog instance name of layer ``k`` inside the core."""
        return layer_instance(k, self.model.layers[k].name)

    def elaborate(self, platform):
        m = Module()
        throttle = m.submodules.throttle = IIThrottle(self.ii)
        m.d.comb += [throttle.valid.eq(self.in_valid), self.in_ready.eq(throttle.ready)]

        x_valid = Signal(name="x_valid")
        x_data = Signal.like(self.in_data, name="x_data")
        m.d.sync += x_valid.eq(throttle.accept)
        with m.If(throttle.accept):
            m.d.sync += x_data.eq(self.in_data)

        outputs = {-1: CodeStream.over(CodeStreamSignature(self.model.input_type, self.model.n_in),
                                       valid=x_valid, payload=x_data)}
        for k, layer in enumerate(self.layers):
            m.submodules[self.instance_name(k)] = layer
            ports = getattr(layer, "input_ports", ("i",))
            for port, (name, s) in enumerate(zip(ports, self.model.inputs_of(k))):
                source = outputs[s]
                if (k, port) in self.delays:
                    delay = CodeDelay(source.signature, self.delays[(k, port)])
                    m.submodules[f"{self.instance_name(k)}_{name}_delay"] = delay
                    wiring.connect(m, source, delay.i)
                    source = delay.o
                wiring.connect(m, source, getattr(layer, name))
            outputs[k] = layer.o
        wiring.connect(m, wiring.flipped(self.signature.output(self)), outputs[len(self.layers) - 1])
        if self.bus is not None:
            banks = [layer for layer in self.layers if layer.bank is not None]
            attach_config_bus(m, self, self.bus, self.i2c, banks)
        return m


def layer_instance(k: int, name: str) -> str:
    """The Verilog instance name of layer ``k`` (named ``name``) inside a :class:`Network`."""
    return f"layer{k}_{_ident(name)}"


def _ident(name: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    return out or "layer"
