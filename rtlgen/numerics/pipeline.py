"""Where the registers of an adder graph go: delay models and stage planning.

A :class:`DelayModel` estimates the delay of a register-to-register path
through adders on one FPGA family: ``t_fixed`` (clock to output, setup and
the first routing hop) plus, per adder on the path, ``t_level`` (a LUT
level and its routing) and ``t_bit`` per bit of the adder's carry chain.
The constants of each target are fitted to place-and-route results of
nextpnr (``bench/calibrate_delay.py`` measures them again).

:func:`plan_stages` assigns every node of an
:class:`~rtlgen.numerics.adder_graph.AdderGraph` the earliest pipeline stage
in which its path still fits the clock period; that gives the fewest
register ranks for the target (a node is never split).  Without a clock
target the plan counts adder levels instead: a register every
``adder_levels`` levels, as the multiplier cores do.
"""

from __future__ import annotations

from dataclasses import dataclass

from .adder_graph import AdderGraph

__all__ = ["DelayModel", "DELAY_MODELS", "TIMING_TARGETS", "StagePlan", "plan_stages", "level_model"]


@dataclass(frozen=True)
class DelayModel:
    """Register-to-register delay (ns) of a path through adders."""
    t_fixed: float
    t_level: float
    t_bit: float

    def adder(self, width: int) -> float:
        """The delay one adder of ``width`` result bits adds to a path."""
        return self.t_level + self.t_bit * width

    def cast(self, width: int, rounds: bool) -> float:
        """The delay of the output cast (a rounding adder when it rounds, then the saturation select)."""
        return (self.adder(width) if rounds else 0.0) + self.t_level


#: delay models by target (the ``target`` key of a configuration; ns)
DELAY_MODELS: dict[str, DelayModel] = {
    "ecp5": DelayModel(t_fixed=2.1, t_level=1.15, t_bit=0.055),
    "ice40": DelayModel(t_fixed=3.0, t_level=2.0, t_bit=0.14),
    "xilinx": DelayModel(t_fixed=1.2, t_level=0.65, t_bit=0.02),
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


def _earliest(graph: AdderGraph, model: DelayModel, budget: float, cast_delay: float) -> StagePlan:
    stage: list[int] = []
    arrival: list[float] = []
    for n in graph.nodes:
        if n.kind != "add":
            stage.append(0)
            arrival.append(model.t_fixed)
            continue
        ops = (n.a, n.b)
        s = max(stage[u] for u in ops)
        start = max(arrival[u] if stage[u] == s else model.t_fixed for u in ops)
        t = start + model.adder(n.width)
        if t > budget and start > model.t_fixed:
            s, t = s + 1, model.t_fixed + model.adder(n.width)
        stage.append(s)
        arrival.append(t)
    ranks = 0
    for k, _ in graph.outputs:
        s = stage[k] + (1 if arrival[k] + cast_delay > budget and arrival[k] > model.t_fixed else 0)
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
    stage = [0] * n
    required = [0.0] * n          # when the node's value must be ready within its stage
    for k in range(n - 1, -1, -1):
        node = graph.nodes[k]
        if node.kind != "add":
            continue
        latest = early.ranks
        need = budget - cast_delay if k in outputs else budget
        for c in consumers[k]:
            if stage[c] < latest:
                latest, need = stage[c], budget
            if stage[c] == latest:
                need = min(need, required[c] - model.adder(graph.nodes[c].width))
        if k in outputs and latest == early.ranks:
            need = min(need, budget - cast_delay)
        own = model.adder(node.width)
        if need - own < model.t_fixed and latest > 0:
            latest, need = latest - 1, budget
        if latest < early.stage[k]:
            return None           # (cannot happen for a feasible earliest plan; kept as a guard)
        stage[k], required[k] = latest, need
    arrival = [0.0] * n
    for k, node in enumerate(graph.nodes):
        if node.kind != "add":
            arrival[k] = model.t_fixed
            continue
        start = max(arrival[u] if (graph.nodes[u].kind == "add" and stage[u] == stage[k]) else model.t_fixed
                    for u in (node.a, node.b))
        arrival[k] = start + model.adder(node.width)
        if arrival[k] > budget + 1e-9 and start > model.t_fixed:
            return None           # the late plan would miss the budget: keep the early one
    return StagePlan(stage, arrival, early.ranks)
