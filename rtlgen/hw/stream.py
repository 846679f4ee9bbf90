"""Streamed input stage: pixels in raster order, line buffers, one window at a time.

The leading Conv/pooling layers of a model configured with ``io: stream``
(and the activations after them) form the *stream section*.  The image
enters one pixel (all channels) per accepted cycle, row by row, left to
right.  Each streamed layer is a :class:`WindowStage`:

* a walker steps through the layer's *padded* input frame
  (``(H + pad_top + pad_bottom) x (W + pad_left + pad_right)`` positions);
  at a padding position it shifts in the pad code without consuming
  anything, at an input position it takes the next pixel from its input;
* a line buffer (a shift register of ``(Kh - 1) * padded_width + Kw``
  pixels) holds the newest rows, so after every step whose position is
  the bottom-right corner of an output window the whole window sits at
  fixed taps;
* that window goes to the layer's per-window compute unit (a
  :class:`~rtlgen.hw.dense.DenseLayer` holding the kernel as a
  ``[C_in * Kh * Kw, C_out]`` matrix, a max-pool comparator tree, or an
  :class:`AvgPoolWindow` when an average pool's divisor changes at the
  borders) and the activations after it; one window per ``reuse_factor``
  cycles.

The output pixels of a stage are the input pixels of the next one.  A
stage whose output is not taken holds it and freezes (clock enable) with
everything upstream of it; when the walker of the first stage needs a
pixel and ``in_valid`` is low, the whole section freezes.  So the section
evolves identically, cycle for cycle, whatever the gaps in ``in_valid``:
it is a fixed schedule that only pauses.  A new frame starts only when the
previous one has left the section, hence the latency from the accept of a
frame's last pixel to its result is a constant, and so is the number of
cycles per frame at full input rate (the II per image).  Both follow from
the section's geometry and schedule alone (:func:`stream_timing`, a
cycle-level model of the control in plain Python; nothing is simulated
when a core is built).

The collector of :class:`StreamFront` gathers the last stage's output
pixels into the flat C,H,W vector; the remaining (parallel) layers take it
from there (:class:`StreamNetwork`).

Exactness: the window compute sees the same products as the unrolled
parallel layer; padding taps hold the code 0 (convolution, average pool
with ``count_include_pad``) or the smallest input code (max pool, so
padding never wins), which is what the golden model's window semantics
give.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod

import numpy as np
from amaranth.hdl import Const, EnableInserter, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import RtlgenError
from ..ir.conv import QConv, QMaxPool, conv_matrix
from ..ir.model import QActivation, QDense, QModel
from ..numerics.fixed import product_range
from .activation import ActivationLayer
from .arith import Operand, cast_operand, range_shape, select, shape_of
from .dense import DenseLayer
from .network import _ident, layer_instance, make_layers
from .shift_add import FusedActivation, ShiftAddDense
from .pool import MaxPoolLayer
from .ports import CoreSignature, layer_members

__all__ = ["stream_prefix", "StreamGeometry", "StageSchedule", "WindowStage", "StreamFront", "StreamNetwork",
           "StreamTiming", "stream_timing"]


def stream_prefix(model: QModel) -> int:
    """Number of leading layers that are streamed (0 for a parallel model)."""
    n = 0
    for layer in model.layers:
        if isinstance(layer, (QConv, QMaxPool)) and layer.io == "stream":
            n += 1
        elif isinstance(layer, QActivation) and n:
            n += 1
        else:
            break
    return n


@dataclass(frozen=True)
class StreamGeometry:
    """A streamed layer's frame geometry, 1-D maps taken as one row (H = 1)."""
    channels: int
    height: int
    width: int
    kh: int
    kw: int
    sh: int
    sw: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    out_height: int
    out_width: int

    @classmethod
    def of(cls, layer) -> "StreamGeometry":
        shape, kernel, stride, pads = layer.in_shape, layer.kernel, layer.stride, layer.pads
        out = layer.out_shape
        if len(shape) == 2:   # [C, L]
            return cls(shape[0], 1, shape[1], 1, kernel[0], 1, stride[0], 0, pads[0], 0, pads[1],
                       1, out[1])
        return cls(shape[0], shape[1], shape[2], kernel[0], kernel[1], stride[0], stride[1],
                   pads[0], pads[1], pads[2], pads[3], out[1], out[2])

    @property
    def padded_height(self) -> int:
        return self.height + self.pad_top + self.pad_bottom

    @property
    def padded_width(self) -> int:
        return self.width + self.pad_left + self.pad_right

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def out_pixels(self) -> int:
        return self.out_height * self.out_width

    @property
    def buffer_pixels(self) -> int:
        """Line-buffer length: every pixel a window can still need."""
        return (self.kh - 1) * self.padded_width + self.kw

    def window_rows(self) -> int:
        """Bit r set when padded row r is the bottom row of an output window."""
        return _corner_mask(self.padded_height, self.kh, self.sh, self.out_height)

    def window_cols(self) -> int:
        return _corner_mask(self.padded_width, self.kw, self.sw, self.out_width)


def _corner_mask(size: int, k: int, s: int, n_out: int) -> int:
    mask = 0
    for o in range(n_out):
        mask |= 1 << (o * s + k - 1)
    assert mask < (1 << size)
    return mask


def _window_layer(layer) -> object:
    """The IR of one window's computation (C_in*Kh*Kw inputs -> C_out outputs)."""
    c_in, kernel = layer.in_shape[0], tuple(layer.kernel)
    win_shape = (c_in,) + kernel
    ones = (1,) * len(kernel)
    zeros = (0,) * (2 * len(kernel))
    if isinstance(layer, QMaxPool):
        return QMaxPool(name=layer.name, in_type=layer.in_type, result_type=layer.result_type,
                        in_shape=win_shape, kernel=kernel, stride=ones, pads=zeros)
    if layer.op == "conv":
        weights = conv_matrix(np.asarray(layer.kernel_codes), win_shape, ones, zeros)
        bias = np.asarray(layer.bias_codes).reshape(-1)
    else:   # average pool: the same 1/n code on every tap of its channel
        code = np.unique(layer.weights[layer.weights != 0])
        weights = np.zeros((c_in * prod(kernel), c_in), dtype=np.int64)
        for c in range(c_in):
            weights[c * prod(kernel):(c + 1) * prod(kernel), c] = int(code[0])
        bias = np.zeros(c_in, dtype=np.int64)
    return QDense(name=layer.name, in_type=layer.in_type, weight_type=layer.weight_type,
                  bias_type=layer.bias_type, result_type=layer.result_type,
                  weights=np.asarray(weights), bias=bias, reuse_factor=layer.reuse_factor,
                  accum_type=layer.accum_type, adder_levels=layer.adder_levels,
                  adder_depth_slack=layer.adder_depth_slack, share_columns=layer.share_columns,
                  arithmetic=layer.arithmetic,
                  clock_mhz=layer.clock_mhz, timing_target=layer.timing_target, in_lo=layer.in_lo)


class AvgPoolWindow(wiring.Component):
    """Average pool of one window whose divisor depends on its position.

    ``y[c] = cast_result(code * sum_t x[c, t])``, where ``code`` is the
    window's ``q(1/n)`` (``n`` its taps inside the input): the same exact
    value as the golden model's ``sum_t x[c, t] * code``.

    Ports
    -----
    ``i``: In(CodeStreamSignature(in type, C * taps))
        the window in (channel, tap) order; padding taps hold 0.
    ``code``: In(weight code shape)
        the window's ``q(1/n)`` code, read with ``i.valid``.
    ``o``: Out(CodeStreamSignature(result type, C))

    Latency 2 (window sums, then product and cast), II 1, one multiplier
    per channel, no parameter bank (the codes are constants): a
    :class:`~rtlgen.hw.layer.LayerHardware`.
    """

    latency = 2
    ii = 1
    bank = None

    def __init__(self, layer: QConv, codes: list[int]):
        self.layer = layer
        self.channels = layer.in_shape[0]
        self.taps = prod(layer.kernel)
        self.code_lo, self.code_hi = min(codes), max(codes)
        self.multipliers = self.channels
        self.figures = {}
        super().__init__({
            **layer_members(layer.in_type, self.channels * self.taps, layer.result_type, self.channels),
            "code": In(shape_of(layer.weight_type)),
        })

    def elaborate(self, platform):
        m = Module()
        t_in, layer = self.layer.in_type, self.layer
        lo, hi = self.taps * t_in.min_code, self.taps * t_in.max_code
        valid = Signal(name="sum_valid")
        code = Signal.like(self.code, name="sum_code")
        m.d.sync += valid.eq(self.i.valid)
        with m.If(self.i.valid):
            m.d.sync += code.eq(self.code)
        sums = []
        for c in range(self.channels):
            total = Signal(range_shape(lo, hi), name=f"sum{c}")
            with m.If(self.i.valid):
                m.d.sync += total.eq(sum(self.i.payload[c * self.taps + t] for t in range(self.taps)))
            sums.append(total)
        m.d.sync += self.o.valid.eq(valid)
        p_lo, p_hi = product_range(lo, hi, self.code_lo, self.code_hi)
        with m.If(valid):
            for c, total in enumerate(sums):
                prod_op = Operand(total * code, p_lo, p_hi)
                m.d.sync += self.o.payload[c].eq(
                    cast_operand(prod_op, t_in.frac + layer.weight_type.frac, layer.result_type).value)
        return m


def _divisor_codes(layer: QConv, geom: "StreamGeometry"):
    """Per padded corner row/column: a class index; per class pair: the q(1/n) code."""
    def inside(o, s, pad, k, size):
        return sum(1 for t in range(k) if 0 <= o * s - pad + t < size)

    g = geom
    n_osp = g.out_pixels
    rows = {o * g.sh + g.kh - 1: inside(o, g.sh, g.pad_top, g.kh, g.height) for o in range(g.out_height)}
    cols = {o * g.sw + g.kw - 1: inside(o, g.sw, g.pad_left, g.kw, g.width) for o in range(g.out_width)}
    row_kinds = sorted(set(rows.values()))
    col_kinds = sorted(set(cols.values()))
    codes = {}
    weights = np.asarray(layer.weights)
    for oy in range(g.out_height):
        for ox in range(g.out_width):
            column = weights[:, oy * g.out_width + ox]   # channel 0's output at this position
            nz = column[column != 0]
            key = (rows[oy * g.sh + g.kh - 1], cols[ox * g.sw + g.kw - 1])
            codes[key] = int(nz[0]) if len(nz) else 0
    assert n_osp == g.out_height * g.out_width
    table = [codes.get((a, b), 0) for a in row_kinds for b in col_kinds]
    row_index = [row_kinds.index(rows[r]) if r in rows else 0 for r in range(g.padded_height)]
    col_index = [col_kinds.index(cols[c]) if c in cols else 0 for c in range(g.padded_width)]
    return row_index, col_index, len(col_kinds), table


def _pixel(t, channels: int) -> data.ArrayLayout:
    return data.ArrayLayout(shape_of(t), channels)


class WindowStage(wiring.Component):
    """One streamed layer: padded-frame walker, line buffer, window compute, activations.

    Ports
    -----
    ``i``: In(stream.Signature(ArrayLayout(in codes, C_in)))
        input pixels in raster order; ``i.ready`` is high when the walker
        is at an input (not padding) position and may step.  It does not
        depend on ``i.valid``.
    ``o``: Out(stream.Signature(ArrayLayout(result codes, C_out), always_ready=True))
        output pixels in raster order; ``o.valid``/``o.payload`` are
        registers that hold while the stage is frozen.
    ``start_ok``: In(1)
        the walker may start a frame (step at the frame's first position).
    ``frame_step``: Out(1)
        the walker would step at the first position of a frame this cycle.
    ``frame_end``: Out(1)
        the walker would step at the last position of a frame this cycle.

    Every register of the stage is meant to sit behind the stage's clock
    enable (see :class:`StreamFront`).  Per window the compute takes
    ``reuse_factor`` cycles (during which the walker pauses); the compute
    latency is the layer's (:attr:`compute`).  :attr:`schedule` gives the
    numbers that fix the stage's timing.
    """

    def __init__(self, layer, activations: list):
        if getattr(layer, "storage", "constant") != "constant":
            raise RtlgenError(f"layer {layer.name!r}: a streamed layer keeps constant weights, "
                              f"storage {layer.storage!r} needs io: parallel")
        self.layer = layer
        self.geom = StreamGeometry.of(layer)
        self.reuse = layer.reuse_factor if isinstance(layer, QConv) else 1
        g = self.geom
        self.divisors = None
        acts = [replace(a, size=self.compute_out) for a in activations]
        if isinstance(layer, QConv) and layer.varying_divisor:
            self.divisors = _divisor_codes(layer, g)
            self.compute = AvgPoolWindow(layer, self.divisors[3])
        elif isinstance(layer, QMaxPool):
            self.compute = MaxPoolLayer(_window_layer(layer))
        elif layer.arithmetic == "shift_add":   # the first activation rides in its last stage
            self.compute = ShiftAddDense(_window_layer(layer),
                                         activation=acts[0] if acts and acts[0].fusable else None)
        else:
            self.compute = DenseLayer(_window_layer(layer))
        self.activations = [FusedActivation(a, into=layer.name)
                            if isinstance(self.compute, ShiftAddDense) and self.compute.activation is a
                            else ActivationLayer(a) for a in acts]
        out_t = activations[-1].result_type if activations else layer.result_type
        self.out_type = out_t
        self.pad_code = layer.in_type.min_code if isinstance(layer, QMaxPool) else 0
        super().__init__({
            "i": In(stream.Signature(_pixel(layer.in_type, g.channels))),
            "o": Out(stream.Signature(_pixel(out_t, self.compute_out), always_ready=True)),
            "start_ok": In(1),
            "frame_step": Out(1),
            "frame_end": Out(1),
        })

    @property
    def compute_out(self) -> int:
        return self.layer.out_shape[0]

    @property
    def multipliers(self) -> int:
        return self.compute.multipliers

    @property
    def schedule(self) -> StageSchedule:
        """The stage's timing in numbers: geometry, reuse, and the enabled cycles from a
        corner step to ``o.valid`` (window register, compute, activations)."""
        return StageSchedule(self.geom, self.reuse,
                             1 + self.compute.latency + sum(act.latency for act in self.activations))

    def elaborate(self, platform):
        m = Module()
        g = self.geom
        hp, wp, r_fac = g.padded_height, g.padded_width, self.reuse
        row = Signal(range(max(hp, 2)), name="row")
        col = Signal(range(max(wp, 2)), name="col")
        at_pad = Const(0, 1)
        for cond in ((g.pad_top, lambda: row < g.pad_top), (g.pad_bottom, lambda: row >= g.pad_top + g.height),
                     (g.pad_left, lambda: col < g.pad_left), (g.pad_right, lambda: col >= g.pad_left + g.width)):
            if cond[0]:
                at_pad = at_pad | cond[1]()
        is_pad = Signal(name="is_pad")
        m.d.comb += is_pad.eq(at_pad)

        origin = Signal(name="origin")
        m.d.comb += origin.eq((row == 0) & (col == 0))
        step_ok = Signal(name="step_ok")
        if r_fac > 1:
            pause = Signal(range(r_fac), name="pause")
            m.d.comb += step_ok.eq((pause == 0) & (~origin | self.start_ok))
        else:
            m.d.comb += step_ok.eq(~origin | self.start_ok)
        m.d.comb += self.i.ready.eq(~is_pad & step_ok)
        step = Signal(name="step")
        m.d.comb += [step.eq(step_ok & (is_pad | self.i.valid)),
                     self.frame_step.eq(step & origin),
                     self.frame_end.eq(step & (row == hp - 1) & (col == wp - 1))]

        corner = Signal(name="corner")
        rows, cols = g.window_rows(), g.window_cols()
        m.d.comb += corner.eq(select([Const((rows >> r) & 1, 1) for r in range(hp)], row) &
                              select([Const((cols >> c) & 1, 1) for c in range(wp)], col))

        # line buffer: lb[0] is the newest pixel
        pix = _pixel(self.layer.in_type, g.channels)
        lb = [Signal(pix, name=f"lb{n}") for n in range(g.buffer_pixels)]
        width = self.layer.in_type.width
        pad_bits = 0
        for c in range(g.channels):
            pad_bits |= (self.pad_code & ((1 << width) - 1)) << (c * width)
        with m.If(step):
            m.d.sync += lb[0].eq(Mux(is_pad, Const(pad_bits, pix.size), self.i.payload.as_value()))
            for n in range(1, len(lb)):
                m.d.sync += lb[n].eq(lb[n - 1])
            last_col = col == wp - 1
            m.d.sync += col.eq(Mux(last_col, 0, col + 1))
            with m.If(last_col):
                m.d.sync += row.eq(Mux(row == hp - 1, 0, row + 1))
            if r_fac > 1:
                with m.If(corner):
                    m.d.sync += pause.eq(r_fac - 1)
        if r_fac > 1:
            with m.Elif(pause != 0):
                m.d.sync += pause.eq(pause - 1)

        # the window after a corner step, in (channel, ky, kx) order
        win_valid = Signal(name="win_valid")
        m.d.sync += win_valid.eq(step & corner)
        m.submodules.compute = compute = self.compute
        m.d.comb += compute.i.valid.eq(win_valid)
        if self.divisors is not None:   # the window's q(1/n), chosen by its corner position
            row_index, col_index, n_cols, table = self.divisors
            kind = (select([Const(k, range(max(row_index) + 2)) for k in row_index], row) * n_cols +
                    select([Const(k, range(max(col_index) + 2)) for k in col_index], col))
            win_code = Signal.like(compute.code, name="win_code")
            with m.If(step & corner):
                m.d.sync += win_code.eq(select([Const(v, compute.code.shape()) for v in table], kind))
            m.d.comb += compute.code.eq(win_code)
        k = 0
        for c in range(g.channels):
            for ky in range(g.kh):
                for kx in range(g.kw):
                    tap = lb[(g.kh - 1 - ky) * wp + (g.kw - 1 - kx)]
                    m.d.comb += compute.i.payload[k].eq(tap[c])
                    k += 1
        # by hand, not wiring.connect (see StreamNetwork.elaborate)
        src = compute.o
        for n, act in enumerate(self.activations):
            m.submodules[f"act{n}"] = act
            m.d.comb += [act.i.valid.eq(src.valid), act.i.payload.eq(src.payload)]
            src = act.o
        m.d.comb += [self.o.valid.eq(src.valid), self.o.payload.eq(src.payload)]
        return m


class StreamFront(wiring.Component):
    """The stream section and the collector of its last output frame.

    Ports
    -----
    ``in_valid``: In(1), ``in_ready``: Out(1), ``in_data``: In(ArrayLayout(input codes, C))
        one input pixel per accept (``in_valid & in_ready`` on a clock
        edge), raster order; ``in_ready`` does not depend on ``in_valid``.
    ``x_valid``: Out(1), ``x_data``: Out(ArrayLayout(codes, C_out * H_out * W_out))
        one cycle per frame: the last stage's output map, flat in C,H,W
        order.  ``x_data`` is written when the frame is collected, at or
        before its ``x_valid`` and at least ``frame_gap`` cycles after the
        previous one, so a consumer with II ``frame_gap`` sees it stable.

    ``frame_gap`` (>= 1): the minimum number of cycles between two
    ``x_valid`` (the II of the parallel layers that follow).  Timing:
    :meth:`timing` (see :func:`stream_timing`).
    """

    def __init__(self, layers: list, frame_gap: int = 1):
        self.stages: list[WindowStage] = []
        k = 0
        while k < len(layers):
            acts = []
            j = k + 1
            while j < len(layers) and isinstance(layers[j], QActivation):
                acts.append(layers[j])
                j += 1
            self.stages.append(WindowStage(layers[k], acts))
            k = j
        first, last = self.stages[0], self.stages[-1]
        self.in_type = first.layer.in_type
        self.out_type = last.out_type
        self.pixels_in = first.geom.pixels
        self.pixels_out = last.geom.out_pixels
        self.channels_out = last.compute_out
        self.frame_gap = frame_gap
        super().__init__({
            "in_valid": In(1), "in_ready": Out(1),
            "in_data": In(_pixel(self.in_type, first.geom.channels)),
            "x_valid": Out(1),
            "x_data": Out(_pixel(self.out_type, self.channels_out * self.pixels_out)),
        })

    def timing(self) -> StreamTiming:
        """The section's latency and cycles per frame, derived from its schedule."""
        return stream_timing([st.schedule for st in self.stages], self.frame_gap)

    def elaborate(self, platform):
        m = Module()
        stages = self.stages
        n = len(stages)
        # advance[k]: stage k may advance if the section runs (its output,
        # if any, is taken now)
        advance = [Signal(name=f"advance{k}") for k in range(n)]
        for k in reversed(range(n)):
            taken = Const(1, 1) if k == n - 1 else stages[k + 1].i.ready & advance[k + 1]
            m.d.comb += advance[k].eq(~stages[k].o.valid | taken)
        run = Signal(name="run")   # low: a pixel is needed and missing, the section pauses
        m.d.comb += run.eq(~(stages[0].i.ready & ~self.in_valid))
        for k, st in enumerate(stages):
            en = Signal(name=f"en{k}")
            m.d.comb += en.eq(run & advance[k])
            m.submodules[f"stage{k}_{_ident(st.layer.name)}"] = EnableInserter(en)(st)
        m.d.comb += [self.in_ready.eq(stages[0].i.ready & advance[0]),
                     stages[0].i.valid.eq(self.in_valid), stages[0].i.payload.eq(self.in_data)]
        # Not wiring.connect: a stage's output has no ready (the stage freezes
        # instead, through advance), while the next stage's input has one.
        for a, b in zip(stages, stages[1:]):
            m.d.comb += [b.i.valid.eq(a.o.valid), b.i.payload.eq(a.o.payload)]
        for st in stages[1:]:
            m.d.comb += st.start_ok.eq(1)

        # collector (paused with the section)
        last = stages[-1]
        p_out = self.pixels_out
        take = Signal(name="take")
        m.d.comb += take.eq(last.o.valid & run)
        held = [Signal.like(last.o.payload, name=f"px{q}") for q in range(p_out - 1)]
        count = Signal(range(max(p_out, 2)), name="px_count")
        done = Signal(name="frame_done")
        if p_out > 1:
            with m.If(take):
                m.d.sync += count.eq(Mux(count == p_out - 1, 0, count + 1))
                m.d.sync += held[0].eq(last.o.payload)
                for q in range(1, len(held)):
                    m.d.sync += held[q].eq(held[q - 1])
            m.d.comb += done.eq(take & (count == p_out - 1))
        else:
            m.d.comb += done.eq(take)
        # A frame leaves once it is collected and the first stage has walked
        # its whole input frame (rows or columns that no window uses can
        # arrive after the last output pixel).
        got_frame, got_input = Signal(name="got_frame"), Signal(name="got_input")
        input_end = Signal(name="input_end")
        release = Signal(name="release")
        m.d.comb += [input_end.eq(stages[0].frame_end & advance[0] & run),
                     release.eq((done | got_frame) & (input_end | got_input))]
        with m.If(release):
            m.d.sync += [got_frame.eq(0), got_input.eq(0)]
        with m.Else():
            with m.If(done):
                m.d.sync += got_frame.eq(1)
            with m.If(input_end):
                m.d.sync += got_input.eq(1)
        m.d.sync += self.x_valid.eq(release)
        with m.If(done):   # x_data changes only after the previous frame's release
            for p in range(p_out):
                pixel = last.o.payload if p == p_out - 1 else held[p_out - 2 - p]
                for c in range(self.channels_out):
                    m.d.sync += self.x_data[c * p_out + p].eq(pixel[c])

        # one frame in the section at a time, frames at least frame_gap apart
        busy = Signal(name="frame_busy")
        start_ok = ~busy
        with m.If(run):
            with m.If(stages[0].frame_step & advance[0]):
                m.d.sync += busy.eq(1)
            with m.If(release):
                m.d.sync += busy.eq(0)
        if self.frame_gap > 1:
            gap = Signal(range(self.frame_gap), name="frame_gap")
            with m.If(run):
                with m.If(release):
                    m.d.sync += gap.eq(self.frame_gap - 1)
                with m.Elif(gap != 0):
                    m.d.sync += gap.eq(gap - 1)
            start_ok = start_ok & (gap == 0)
        m.d.comb += stages[0].start_ok.eq(start_ok)
        return m


@dataclass(frozen=True)
class StreamTiming:
    """``latency``: cycles from the edge accepting a frame's last pixel to
    ``x_valid``; ``frame_cycles``: cycles between the last-pixel accepts of
    consecutive frames at full input rate (the II per image)."""
    latency: int
    frame_cycles: int


@dataclass(frozen=True)
class StageSchedule:
    """What fixes one :class:`WindowStage`'s timing (:attr:`WindowStage.schedule`).

    ``geom``: the padded frame the walker steps through, its padding and
    its window corners; ``reuse``: cycles per window (the walker pauses
    ``reuse - 1`` cycles after each corner step); ``delay``: enabled cycles
    from a corner step to the window's result on ``o.valid`` (the window
    register, the compute's latency, the activations' latencies).
    """
    geom: StreamGeometry
    reuse: int
    delay: int


def stream_timing(stages: list[StageSchedule], frame_gap: int = 1, frames: int = 3) -> StreamTiming:
    """The timing of a :class:`StreamFront` with these stages, from its schedule alone.

    A cycle-level model, in plain Python, of the section's control at full
    input rate (``in_valid`` always high, so ``run`` is always high): per
    stage the walker (row, column, reuse pause) and its valid bits in flight
    (a delay line of ``delay`` bits: a window's valid leaves it as the
    stage's ``o.valid``), all clocked by the stage's enable ``advance[k]``;
    and the section's ``advance``/``busy``/``frame_gap``/release logic and
    the collector's pixel count, each exactly as :meth:`StreamFront.elaborate`
    and :meth:`WindowStage.elaborate` build them.  Only valid bits are
    modelled: within a stage the compute's ``o.valid`` is its ``i.valid``
    ``latency`` enabled cycles later, since windows come at least
    ``reuse`` (its II) enabled cycles apart.

    Why a model and not a formula: with one stage the walker never waits,
    and the latency is a sum over its frame positions; with several, a
    stage whose output is not yet taken freezes whole (walker, pause and
    the bubbles in its pipeline) until the next stage's walker, itself held
    up by its padding positions, its reuse pauses and its own freezes,
    takes the pixel.  The step times then follow a max-plus recursion across
    the stages that has no closed form in the geometry.  (The tests check
    this model against the closed form for one stage, and against the
    generated hardware run in Amaranth's simulator.)

    Like a measurement on the hardware, ``frames`` frames are run back to
    back and the result must be periodic: the same latency for every frame,
    the same spacing between them (else an internal error).
    """
    section = _SectionControl(stages, frame_gap)
    per_frame = stages[0].geom.pixels
    budget = frames * (sum(st.geom.padded_height * st.geom.padded_width * (st.reuse + 1) + 64
                           for st in stages) + frame_gap) + 1000 + 4 * per_frame
    accepts: list[int] = []
    outputs: list[int] = []
    for cycle in range(budget):
        section.settle()
        if section.in_ready:
            accepts.append(cycle)
        if section.x_valid:
            outputs.append(cycle)
            if len(outputs) == frames:
                break
        section.clock()
    if len(outputs) < frames:
        raise RtlgenError(f"internal error: the stream section produced {len(outputs)} of {frames} "
                          f"frames in {budget} cycles")
    lasts = [accepts[(f + 1) * per_frame - 1] for f in range(frames)]
    latencies = {outputs[f] - lasts[f] for f in range(frames)}
    periods = {b - a for a, b in zip(lasts, lasts[1:])}
    if len(latencies) != 1 or len(periods) != 1:
        raise RtlgenError(f"internal error: the stream section's timing is not periodic "
                          f"(latencies {sorted(latencies)}, frame periods {sorted(periods)})")
    return StreamTiming(latencies.pop(), periods.pop())


class _SectionControl:
    """The control of a :class:`StreamFront` at full input rate, as :func:`stream_timing` follows it.

    :meth:`settle` computes the combinational signals of the current state,
    :meth:`clock` applies a clock edge; ``x_valid`` is the register.
    """

    def __init__(self, stages: list[StageSchedule], frame_gap: int):
        self.stages = [_StageControl(st) for st in stages]
        self.frame_gap = frame_gap
        self.p_out = stages[-1].geom.out_pixels
        # collector and section registers (reset values)
        self.count, self.got_frame, self.got_input, self.busy, self.gap = 0, False, False, False, 0
        self.x_valid = False

    def settle(self) -> None:
        stages = self.stages
        first, last = stages[0], stages[-1]
        first.start_ok = not self.busy and self.gap == 0
        for st in stages:
            st.settle()
        # advance[k]: stage k's output, if any, is taken now (the last stage's always is)
        advance = [True] * len(stages)
        for k in reversed(range(len(stages) - 1)):
            advance[k] = not stages[k].o_valid or (stages[k + 1].ready and advance[k + 1])
        in_valid = [True] + [st.o_valid for st in stages[:-1]]
        self.advance = advance
        self.steps = [st.step_ok and (st.is_pad or valid) for st, valid in zip(stages, in_valid)]
        self.in_ready = first.ready and advance[0]
        self.take = last.o_valid
        self.done = self.take and self.count == self.p_out - 1
        self.input_end = self.steps[0] and first.at_end and advance[0]
        self.release = (self.done or self.got_frame) and (self.input_end or self.got_input)
        self.frame_start = self.steps[0] and first.origin and advance[0]

    def clock(self) -> None:
        release = self.release
        self.x_valid = release
        if release:
            self.got_frame = self.got_input = False
        else:
            self.got_frame = self.got_frame or self.done
            self.got_input = self.got_input or self.input_end
        if self.take:
            self.count = 0 if self.count == self.p_out - 1 else self.count + 1
        if release:
            self.busy = False
        elif self.frame_start:
            self.busy = True
        if self.frame_gap > 1:
            if release:
                self.gap = self.frame_gap - 1
            elif self.gap:
                self.gap -= 1
        for st, enabled, step in zip(self.stages, self.advance, self.steps):
            if enabled:
                st.clock(step)


class _StageControl:
    """The control of one :class:`WindowStage` (walker, pause, valid bits in flight), as
    :class:`_SectionControl` follows it; every attribute set in :meth:`settle` is combinational."""

    def __init__(self, schedule: StageSchedule):
        g = schedule.geom
        rows, cols = g.window_rows(), g.window_cols()
        row_pad = [not g.pad_top <= r < g.pad_top + g.height for r in range(g.padded_height)]
        col_pad = [not g.pad_left <= c < g.pad_left + g.width for c in range(g.padded_width)]
        self.pad = [[rp or cp for cp in col_pad] for rp in row_pad]
        self.corner = [[bool(rows >> r & 1 and cols >> c & 1) for c in range(g.padded_width)]
                       for r in range(g.padded_height)]
        self.last_row, self.last_col = g.padded_height - 1, g.padded_width - 1
        self.reuse = schedule.reuse
        self.o_bit = 1 << (schedule.delay - 1)
        self.mask = (1 << schedule.delay) - 1
        self.row = self.col = self.pause = 0
        self.line = 0            # valid bits in flight: bit 0 the window register, o_bit o.valid
        self.start_ok = True     # only the first stage's is ever low

    def settle(self) -> None:
        """The combinational signals of the current state."""
        self.is_pad = self.pad[self.row][self.col]
        self.origin = self.row == 0 and self.col == 0
        self.at_end = self.row == self.last_row and self.col == self.last_col
        self.o_valid = bool(self.line & self.o_bit)
        self.step_ok = self.pause == 0 and (not self.origin or self.start_ok)
        self.ready = not self.is_pad and self.step_ok

    def clock(self, step: bool) -> None:
        """A clock edge with the stage enabled; ``step``: the walker steps."""
        corner = step and self.corner[self.row][self.col]
        self.line = (self.line << 1 | corner) & self.mask
        if step:
            if self.col == self.last_col:
                self.col = 0
                self.row = 0 if self.row == self.last_row else self.row + 1
            else:
                self.col += 1
            if corner:
                self.pause = self.reuse - 1
        elif self.pause:
            self.pause -= 1


class StreamNetwork(wiring.Component):
    """A core whose leading Conv/pooling layers are streamed.

    The submodule ``stream`` (:class:`StreamFront`) takes the pixels and
    gives each frame's last streamed map; the parallel layers
    (:func:`~rtlgen.hw.network.make_layers`, submodules named by
    :func:`~rtlgen.hw.network.layer_instance`) follow in a chain from its
    ``x_valid``/``x_data`` to ``out_valid``/``out_data``.

    Ports
    -----
    :class:`~rtlgen.hw.ports.CoreSignature` (``self.signature``) with an
    input vector of one pixel:

    ``in_valid``: In(1), ``in_ready``: Out(1), ``in_data``: In(ArrayLayout(input codes, C))
        one pixel (element ``c`` = channel ``c``) per edge where both
        valid and ready are high, pixels in raster order (row by row, left
        to right), frame after frame.  ``in_ready`` does not depend on
        ``in_valid``.
    ``out_valid``: Out(1), ``out_data``: Out(ArrayLayout(output codes, n_out))
        one cycle per frame, exactly ``latency`` cycles after the edge
        that accepted the frame's last pixel; ``out_data`` holds until the
        next ``out_valid``.  No output back-pressure.

    ``latency`` = the stream section's (derived from its schedule, see
    :func:`stream_timing`) + the parallel layers'; ``ii`` = cycles
    between the last pixels of consecutive frames at full input rate.
    """

    def __init__(self, model: QModel):
        if not model.is_chain:
            raise RtlgenError(f"model {model.name!r}: io: stream builds a chain of layers, and this model has "
                              "residual adds or concatenations: use io: parallel")
        split = stream_prefix(model)
        self.model = model
        self.parallel = make_layers(model.layers[split:])
        par_ii = max([hw.ii for hw in self.parallel] or [1])
        self.front = StreamFront(model.layers[:split], frame_gap=par_ii)
        # hardware per model layer (window compute for streamed layers)
        per_layer = []
        for st in self.front.stages:
            per_layer.append(st.compute)
            per_layer.extend(st.activations)
        self.layers = per_layer + self.parallel
        self.timing = self.front.timing()
        self.latency = self.timing.latency + sum(hw.latency for hw in self.parallel)
        self.ii = self.timing.frame_cycles
        first = self.front.stages[0]
        self.channels_in = first.geom.channels
        self.pixels_in = first.geom.pixels
        super().__init__(CoreSignature(model.input_type, self.channels_in, model.output_type, model.n_out))

    def elaborate(self, platform):
        m = Module()
        m.submodules.stream = front = self.front
        m.d.comb += [front.in_valid.eq(self.in_valid), self.in_ready.eq(front.in_ready),
                     front.in_data.eq(self.in_data)]
        # The chain is wired by hand: wiring.connect would assign each payload
        # before its valid (it takes members in name order), which changes the
        # numbering of the generated Verilog's names.
        valid, payload = front.x_valid, front.x_data
        for k, layer in enumerate(self.parallel):
            m.submodules[layer_instance(k, layer.layer.name)] = layer
            m.d.comb += [layer.i.valid.eq(valid), layer.i.payload.eq(payload)]
            valid, payload = layer.o.valid, layer.o.payload
        m.d.comb += [self.out_valid.eq(valid), self.out_data.eq(payload)]
        return m
