"""Which simulator runs which case: ``make test`` and ``make test-long``.

``make test`` runs every RTL case on Icarus Verilog and a few on Verilator:
enough that each kind of core (MLP, CNN, streamed CNN, forest, stored
parameters) and each arithmetic feature meets both simulators.  The other
Verilator runs of the same cases, each of which compiles a C++ model, carry
the ``long`` mark and run in ``make test-long``.
"""

from __future__ import annotations

import pytest

__all__ = ["SIMULATORS", "on_simulators"]

SIMULATORS = ("icarus", "verilator")


def on_simulators(cases, verilator: tuple = (), order: str = "case,simulator") -> list:
    """``pytest.param`` sets for ``cases`` on both simulators: Verilator runs of cases not in
    ``verilator`` are marked ``long``.  ``order`` names the parameters ("case,simulator" or
    "simulator,case")."""
    unknown = set(verilator) - set(cases)
    assert not unknown, f"not cases: {sorted(unknown)}"
    out = []
    for case in cases:
        for sim in SIMULATORS:
            marks = [pytest.mark.long] if sim == "verilator" and case not in verilator else []
            values = (case, sim) if order == "case,simulator" else (sim, case)
            out.append(pytest.param(*values, marks=marks))
    return out
