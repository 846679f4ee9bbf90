"""Two independent views of a stream section's timing, to check :func:`rtlgen.hw.stream.stream_timing`.

``measure_timing``
    runs frames at full input rate through a :class:`~rtlgen.hw.stream.StreamFront`
    in Amaranth's simulator and reads the latency and frame period off the
    generated hardware itself.
``single_stage_timing``
    the closed form for a section of one stage, where the walker never
    waits for its input and its output is always taken.
"""

from __future__ import annotations

from amaranth.sim import Simulator

from rtlgen.hw.stream import StageSchedule, StreamFront, StreamTiming

__all__ = ["measure_timing", "single_stage_timing"]


def measure_timing(front: StreamFront, frames: int = 3) -> StreamTiming:
    """Run ``frames`` frames back to back at full input rate through ``front``.

    ``latency``: from the cycle whose edge accepts a frame's last pixel to
    the cycle of its ``x_valid``; ``frame_cycles``: between the last-pixel
    accepts of consecutive frames.  Both must be the same for every frame.
    """
    per_frame = front.pixels_in
    accepts: list[int] = []
    outputs: list[int] = []
    budget = frames * (sum(st.geom.padded_height * st.geom.padded_width * (st.reuse + 1) + 64
                           for st in front.stages) + front.frame_gap) + 1000 + 4 * per_frame

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
    assert len(outputs) == frames, f"{len(outputs)} of {frames} frames in {budget} cycles"
    lasts = [accepts[(f + 1) * per_frame - 1] for f in range(frames)]
    latencies = {outputs[f] - lasts[f] for f in range(frames)}
    periods = {b - a for a, b in zip(lasts, lasts[1:])}
    assert len(latencies) == 1 and len(periods) == 1, \
        f"not periodic: latencies {sorted(latencies)}, frame periods {sorted(periods)}"
    return StreamTiming(latencies.pop(), periods.pop())


def single_stage_timing(stage: StageSchedule, frame_gap: int = 1) -> StreamTiming:
    """The timing of a one-stage section, in closed form.

    The frame starts at cycle 0.  The walker steps once a cycle through the
    padded frame (row by row) and waits ``reuse - 1`` cycles after every
    window corner, so position ``p`` is stepped at ``p + (reuse - 1) *
    (corners before p)``.  The last window's result is on ``o.valid``
    ``delay`` cycles after its corner step and is collected then; the frame
    is released once that has happened and the walker has stepped its last
    position, and ``x_valid`` follows one cycle later.  The next frame
    starts ``frame_gap`` cycles after the release (the busy flag and the gap
    counter), and not before the walker is back at the origin with its
    pause over; it then repeats the first frame exactly (nothing is left in
    flight).
    """
    g = stage.geom
    rows = [r for r in range(g.padded_height) if g.window_rows() >> r & 1]
    cols = [c for c in range(g.padded_width) if g.window_cols() >> c & 1]
    width = g.padded_width
    corners = sorted(r * width + c for r in rows for c in cols)

    def step_time(p: int) -> int:
        return p + (stage.reuse - 1) * sum(1 for q in corners if q < p)

    last_input = (g.pad_top + g.height - 1) * width + g.pad_left + g.width - 1
    last_position = g.padded_height * width - 1
    release = max(step_time(corners[-1]) + stage.delay, step_time(last_position))
    pause = stage.reuse - 1 if corners[-1] == last_position else 0
    next_start = max(release + frame_gap, step_time(last_position) + 1 + pause)
    return StreamTiming(release + 1 - step_time(last_input), next_start)
