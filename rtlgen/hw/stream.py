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
cycles per frame at full input rate (the II per image).  Both are measured
on the generated hardware itself, in Amaranth's simulator, when the core
is built (:func:`measure_timing`).

A :class:`FrameCollector` gathers the last stage's output pixels into the
flat C,H,W vector; the remaining (parallel) layers take it from there.

Exactness: the window compute sees the same products as the unrolled
parallel layer; padding taps hold the code 0 (convolution, average pool
with ``count_include_pad``) or the smallest input code (max pool, so
padding never wins), which is what the golden model's window semantics
give.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from .network import _ident, layer_instance, make_layer
from .pool import MaxPoolLayer

__all__ = ["stream_prefix", "StreamGeometry", "WindowStage", "StreamFront", "StreamNetwork", "StreamTiming",
           "measure_timing"]


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
                  accum_type=layer.accum_type, adder_levels=layer.adder_levels)


class AvgPoolWindow(wiring.Component):
    """Average pool of one window whose divisor depends on its position.

    ``y[c] = cast_result(code * sum_t x[c, t])``, where ``code`` is the
    window's ``q(1/n)`` (``n`` its taps inside the input): the same exact
    value as the golden model's ``sum_t x[c, t] * code``.

    Ports
    -----
    ``i``: In(stream.Signature(ArrayLayout(in codes, C * taps), always_ready=True))
        the window in (channel, tap) order; padding taps hold 0.
    ``code``: In(weight code shape)
        the window's ``q(1/n)`` code, read with ``i.valid``.
    ``o``: Out(stream.Signature(ArrayLayout(result codes, C), always_ready=True))

    Latency 2 (window sums, then product and cast), II 1, one multiplier
    per channel.
    """

    latency = 2
    ii = 1

    def __init__(self, layer: QConv, codes: list[int]):
        self.layer = layer
        self.channels = layer.in_shape[0]
        self.taps = prod(layer.kernel)
        self.code_lo, self.code_hi = min(codes), max(codes)
        self.multipliers = self.channels
        super().__init__({
            "i": In(stream.Signature(_pixel(layer.in_type, self.channels * self.taps), always_ready=True)),
            "code": In(shape_of(layer.weight_type)),
            "o": Out(stream.Signature(_pixel(layer.result_type, self.channels), always_ready=True)),
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
    latency is the layer's (:attr:`compute`).
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
        if isinstance(layer, QConv) and layer.varying_divisor:
            self.divisors = _divisor_codes(layer, g)
            self.compute = AvgPoolWindow(layer, self.divisors[3])
        else:
            self.compute = (MaxPoolLayer if isinstance(layer, QMaxPool) else DenseLayer)(_window_layer(layer))
        self.activations = [ActivationLayer(QActivation(name=a.name, kind=a.kind, size=self.compute_out,
                                                        in_type=a.in_type, result_type=a.result_type))
                            for a in activations]
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
    ``x_valid`` (the II of the parallel layers that follow).  Timing: see
    :func:`measure_timing`.
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


def measure_timing(front: StreamFront, frames: int = 3) -> StreamTiming:
    """Run ``frames`` frames at full input rate through ``front`` in Amaranth's simulator."""
    from amaranth.sim import Simulator

    per_frame = front.pixels_in
    accepts: list[int] = []
    outputs: list[int] = []
    g0 = front.stages[0].geom
    budget = frames * (sum(st.geom.padded_height * st.geom.padded_width * (st.reuse + 1) + 64
                           for st in front.stages) + front.frame_gap) + 1000 + 4 * g0.pixels

    async def bench(ctx):
        ctx.set(front.in_valid, 1)
        for cycle in range(budget):
            if ctx.get(front.in_ready):
                accepts.append(cycle)
            if ctx.get(front.x_valid):
                outputs.append(cycle)
                if len(outputs) == frames:
                    return
            await ctx.tick()

    sim = Simulator(front)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
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



class StreamNetwork(wiring.Component):
    """A core whose leading Conv/pooling layers are streamed.

    Ports
    -----
    ``in_valid``: In(1), ``in_ready``: Out(1), ``in_data``: In(ArrayLayout(input codes, C))
        one pixel (element ``c`` = channel ``c``) per edge where both
        valid and ready are high, pixels in raster order (row by row, left
        to right), frame after frame.  ``in_ready`` does not depend on
        ``in_valid``.
    ``out_valid``: Out(1), ``out_data``: Out(ArrayLayout(output codes, n_out))
        one cycle per frame, exactly ``latency`` cycles after the edge
        that accepted the frame's last pixel; ``out_data`` holds until the
        next ``out_valid``.  No output back-pressure.

    ``latency`` = the stream section's (measured, see
    :func:`measure_timing`) + the parallel layers'; ``ii`` = cycles
    between the last pixels of consecutive frames at full input rate.
    """

    def __init__(self, model: QModel):
        split = stream_prefix(model)
        self.model = model
        self.parallel = [make_layer(layer) for layer in model.layers[split:]]
        par_ii = max([hw.ii for hw in self.parallel] or [1])
        self.front = StreamFront(model.layers[:split], frame_gap=par_ii)
        # hardware per model layer (window compute for streamed layers)
        per_layer = []
        for st in self.front.stages:
            per_layer.append(st.compute)
            per_layer.extend(st.activations)
        self.layers = per_layer + self.parallel
        self.timing = measure_timing(self.front)
        self.latency = self.timing.latency + sum(hw.latency for hw in self.parallel)
        self.ii = self.timing.frame_cycles
        first = self.front.stages[0]
        self.channels_in = first.geom.channels
        self.pixels_in = first.geom.pixels
        super().__init__({
            "in_valid": In(1), "in_ready": Out(1),
            "in_data": In(_pixel(model.input_type, self.channels_in)),
            "out_valid": Out(1),
            "out_data": Out(_pixel(model.output_type, model.n_out)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.stream = front = self.front
        m.d.comb += [front.in_valid.eq(self.in_valid), self.in_ready.eq(front.in_ready),
                     front.in_data.eq(self.in_data)]
        valid, payload = front.x_valid, front.x_data
        for k, layer in enumerate(self.parallel):
            m.submodules[layer_instance(k, layer.layer.name)] = layer
            m.d.comb += [layer.i.valid.eq(valid), layer.i.payload.eq(payload)]
            valid, payload = layer.o.valid, layer.o.payload
        m.d.comb += [self.out_valid.eq(valid), self.out_data.eq(payload)]
        return m
