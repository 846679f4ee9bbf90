"""Where the registers of an adder graph go: delay models and stage planning.

A :class:`DelayModel` estimates the delay of a register-to-register path
through ripple-carry adders on one FPGA family::

    t_fixed + t_spread * sqrt(adders in the layer)
            + sum over the adders on the path of (t_level + t_level_bit * width)
            + t_bit * width of the last (widest) adder

``t_level`` is a LUT level and its routing, ``t_level_bit`` the growth of
that cost with the adder's width (wider trees spread out), ``t_bit`` the
carry chain of the widest adder.  The constants of each target are a
least-squares fit (minimising the relative error) to nextpnr place-and-route
results of adder trees 1 to 6 levels deep and 8 to 32 bits wide between
registers, best of two seeds per point (``bench/calibrate_delay.py`` measures
them again); the fit is within 6.3 % of every measured point, and the
planner keeps :data:`MARGIN` in hand.

Those trees are compact: every register feeds one adder next to it.  In a
real layer the registers of a rank feed adders spread over many columns,
and the route out of the register is longer, the more so the larger the
layer (its adders cover an area that grows with their count, so the route
grows with its square root).  ``t_spread`` is that extra route, fitted to
shift-and-add layers placed and routed whole (see :data:`DELAY_MODELS`;
``bench/calibrate_spread.py`` measures them again).

:func:`plan_stages` assigns every node of an
:class:`~rtlgen.numerics.adder_graph.AdderGraph` a pipeline stage such that
every stage's paths fit the clock period with the fewest register ranks
(a node is never split).  Without a clock target the plan counts adder
levels instead: a register every ``adder_levels`` levels, as the multiplier
cores do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .adder_graph import AdderGraph

__all__ = ["DelayModel", "DELAY_MODELS", "TIMING_TARGETS", "MARGIN", "StagePlan", "plan_stages",
           "level_model", "longest_path"]

#: the share of the clock period kept free for the model's error and seed-to-seed variation
MARGIN = 0.08


@dataclass(frozen=True)
class DelayModel:
    """Register-to-register delay (ns) of a path through adders (see the module docstring)."""
    t_fixed: float
    t_level: float
    t_bit: float = 0.0
    t_level_bit: float = 0.0
    t_spread: float = 0.0

    def start(self, adders: int) -> float:
        """Where every path of a stage starts: the register, and its route into a layer of ``adders``."""
        return self.t_fixed + self.t_spread * math.sqrt(adders)

    def adder(self, width: int) -> float:
        """The delay one adder of ``width`` result bits adds to a path (its level)."""
        return self.t_level + self.t_level_bit * width

    def carry(self, width: int) -> float:
        """The carry chain of the path's last adder (``width`` bits)."""
        return self.t_bit * width

    def cast(self, width: int, rounds: bool) -> float:
        """The delay of the output cast (a rounding adder when it rounds, then the saturation select)."""
        return (self.adder(width) + self.carry(width) if rounds else 0.0) + self.t_level


#: delay models by target (the ``target`` key of a configuration; ns), fitted to nextpnr on
#: ECP5 LFE5U-85F (speed grade 6), iCE40 HX8K and iCE40 UP5K.  The ECP5 ``t_spread`` is fitted to
#: the critical adder paths of slices of the jet MLP's 64x32 layer (nextpnr-ecp5 0.11.1, seed 1):
#: beyond the tree fit they took 0.99 ns (2 outputs, 97 adders), 1.60 ns (4 outputs, 191 adders)
#: and 2.15 and 2.34 ns (8 outputs, 374 adders, one and two adders per stage).  The iCE40
#: ``t_spread`` is the least-squares fit of ``bench/calibrate_spread.py`` (whole routed path minus
#: the model's, nextpnr-ice40 0.4, seed 1) on the slices that fit: on the HX8K 1 to 3 outputs (49
#: to 146 adders, residuals 1.7 to 3.2 ns, the fit within 0.8 ns of each), on the UP5K only the
#: 1-output slice (49 adders, 4.0 and 6.8 ns at two and one adders per stage: one size, so the
#: square-root growth is assumed there, but no layer much larger fits that device).
DELAY_MODELS: dict[str, DelayModel] = {
    "ecp5": DelayModel(t_fixed=0.422, t_level=2.043, t_bit=0.0262, t_level_bit=0.0083, t_spread=0.115),
    "ice40-hx8k": DelayModel(t_fixed=0.168, t_level=1.463, t_bit=0.1287, t_level_bit=0.0164, t_spread=0.244),
    "ice40-up5k": DelayModel(t_fixed=0.420, t_level=4.014, t_bit=0.316, t_level_bit=0.0273, t_spread=0.772),
}
TIMING_TARGETS = tuple(DELAY_MODELS)


def level_model() -> DelayModel:
    """The model that counts adder levels (one unit per adder, nothing else)."""
    return DelayModel(t_fixed=0.0, t_level=1.0, t_bit=0.0)


@dataclass(frozen=True)
class StagePlan:
    """The stage of every node and of the outputs.

    ``stage[k]`` is the pipeline stage that computes node ``k`` (0: from the
    input register); ``ranks`` the registers between the input and the
    output register (the output stage); ``arrival[k]`` the estimated path
    delay to node ``k`` within its stage.
    """
    stage: list[int]
    arrival: list[float]
    ranks: int

    def registers(self, graph: AdderGraph) -> int:
        """Flip-flops of the pipeline registers (the bits of every value crossing a rank)."""
        last_use = {}
        for k, n in enumerate(graph.nodes):
            if n.kind == "add":
                for u in (n.a, n.b):
                    last_use[u] = max(last_use.get(u, 0), self.stage[k])
        for k, _ in graph.outputs:
            last_use[k] = self.ranks
        return sum((last_use[k] - self.stage[k]) * graph.nodes[k].width
                   for k in last_use if graph.nodes[k].kind != "const" and last_use[k] > self.stage[k])


def plan_stages(graph: AdderGraph, model: DelayModel, budget: float, cast_delay: float = 0.0) -> StagePlan:
    """The fewest register ranks such that each stage's paths fit ``budget``.

    ``cast_delay`` is the logic after the last adder that shares the output
    stage (the output cast and an activation fused into it).  Every node
    first gets its earliest stage (which fixes the ranks); then every node
    is moved as late as the same ranks allow, and of the two plans the one
    with fewer pipeline flip-flops is kept (late nodes carry the narrow
    inputs through the ranks instead of many wide partial sums).
    """
    early = _earliest(graph, model, budget, cast_delay)
    late = _latest(graph, model, budget, cast_delay, early)
    if late is not None and late.registers(graph) < early.registers(graph):
        return late
    return early


def longest_path(graph: AdderGraph, stage: list[int], ranks: int, model: DelayModel,
                 cast_delay: float = 0.0) -> float:
    """The model's longest register-to-register path (ns) when node ``k`` is computed in ``stage[k]``.

    It ends at a pipeline register (the carry chain of the adder before it)
    or, for an output computed in the output stage, after ``cast_delay``.
    """
    arrival, _ = _arrivals(graph, stage, model)
    worst = model.start(graph.adders) + cast_delay   # an output register fed by an earlier stage's rank
    for k, n in enumerate(graph.nodes):
        if n.kind == "add":
            worst = max(worst, arrival[k] + model.carry(n.width))
    for k, _ in graph.outputs:
        if graph.nodes[k].kind == "add" and stage[k] == ranks:
            worst = max(worst, arrival[k] + max(cast_delay, model.carry(graph.nodes[k].width)))
    return worst


def _arrivals(graph: AdderGraph, stage: list[int], model: DelayModel) -> tuple[list[float], list[float]]:
    """When each node's value is ready within its stage, and when its adder starts (ns)."""
    t0 = model.start(graph.adders)
    arrival: list[float] = []
    start: list[float] = []
    for k, n in enumerate(graph.nodes):
        if n.kind != "add":
            arrival.append(t0)
            start.append(t0)
            continue
        start.append(max(arrival[u] if graph.nodes[u].kind == "add" and stage[u] == stage[k] else t0
                         for u in (n.a, n.b)))
        arrival.append(start[k] + model.adder(n.width))
    return arrival, start


def _earliest(graph: AdderGraph, model: DelayModel, budget: float, cast_delay: float) -> StagePlan:
    t0 = model.start(graph.adders)
    stage: list[int] = []
    arrival: list[float] = []
    for n in graph.nodes:
        if n.kind != "add":
            stage.append(0)
            arrival.append(t0)
            continue
        ops = (n.a, n.b)
        s = max(stage[u] for u in ops)
        start = max(arrival[u] if stage[u] == s else t0 for u in ops)
        t = start + model.adder(n.width)
        if t + model.carry(n.width) > budget and start > t0:
            s, t = s + 1, t0 + model.adder(n.width)
        stage.append(s)
        arrival.append(t)
    ranks = 0
    for k, _ in graph.outputs:
        tail = max(cast_delay, model.carry(graph.nodes[k].width))
        s = stage[k] + (1 if arrival[k] + tail > budget and arrival[k] > t0 else 0)
        ranks = max(ranks, s)
    return StagePlan(stage, arrival, ranks)


def _latest(graph: AdderGraph, model: DelayModel, budget: float, cast_delay: float,
            early: StagePlan) -> StagePlan | None:
    """Every adder in the latest stage that still meets ``budget`` with ``early.ranks`` ranks."""
    n = len(graph.nodes)
    consumers: list[list[int]] = [[] for _ in range(n)]
    for k, node in enumerate(graph.nodes):
        if node.kind == "add":
            consumers[node.a].append(k)
            consumers[node.b].append(k)
    outputs = {k for k, _ in graph.outputs}
    t0 = model.start(graph.adders)
    stage = [0] * n
    required = [0.0] * n          # when the node's value must be ready within its stage
    for k in range(n - 1, -1, -1):
        node = graph.nodes[k]
        if node.kind != "add":
            continue
        latest = early.ranks
        need = budget - max(cast_delay, model.carry(node.width)) if k in outputs else budget - model.carry(node.width)
        for c in consumers[k]:
            if stage[c] < latest:
                latest, need = stage[c], budget - model.carry(node.width)
            if stage[c] == latest:
                need = min(need, required[c] - model.adder(graph.nodes[c].width))
        if k in outputs and latest == early.ranks:
            need = min(need, budget - max(cast_delay, model.carry(node.width)))
        own = model.adder(node.width)
        if need - own < t0 and latest > 0:
            latest, need = latest - 1, budget - model.carry(node.width)
        if latest < early.stage[k]:
            return None           # (cannot happen for a feasible earliest plan; kept as a guard)
        stage[k], required[k] = latest, need
    arrival, start = _arrivals(graph, stage, model)
    if any(node.kind == "add" and arrival[k] + model.carry(node.width) > budget + 1e-9 and start[k] > t0
           for k, node in enumerate(graph.nodes)):
        return None               # the late plan would miss the budget: keep the early one
    return StagePlan(stage, arrival, early.ranks)
