"""Which simulator runs which case: ``make test`` and ``make test-long``; and how.

``make test`` runs the RTL cases on Icarus Verilog and a few on Verilator:
enough that each kind of core (MLP, CNN, streamed CNN, forest, stored
parameters) and each arithmetic feature meets both simulators.  The other
Verilator runs of the same cases, each of which compiles a C++ model, and
the slowest cases of a family (a larger core or longer frames of a feature
that a smaller case of the family also has) carry the ``long`` mark and run
in ``make test-long``.

:func:`rtl_sim` runs a differential case: on Icarus in the cocotb bench
(``sims/``), on Verilator in the batch engine's compiled testbench (same
port contract, random ``in_valid`` gaps, exact latency and II checks;
``rtlgen.flows.batch_sim``), so that every case meets both harnesses.  The
cocotb bench on Verilator is run by the protocol, configuration-bus, I2C
and board-link tests, and tests/flows/test_batch_sim.py checks that the two
harnesses agree on every core kind.
"""

from __future__ import annotations

import pytest

__all__ = ["SIMULATORS", "long_marked", "on_simulators", "rtl_sim"]

SIMULATORS = ("icarus", "verilator")


def on_simulators(cases, verilator: tuple = (), order: str = "case,simulator", long: tuple = ()) -> list:
    """``pytest.param`` sets for ``cases`` on both simulators: Verilator runs of cases not in
    ``verilator``, and both runs of the (slow) cases in ``long``, are marked ``long``.  ``order``
    names the parameters ("case,simulator" or "simulator,case")."""
    unknown = (set(verilator) | set(long)) - set(cases)
    assert not unknown, f"not cases: {sorted(unknown)}"
    out = []
    for case in cases:
        for sim in SIMULATORS:
            slow = case in long or (sim == "verilator" and case not in verilator)
            marks = [pytest.mark.long] if slow else []
            values = (case, sim) if order == "case,simulator" else (sim, case)
            out.append(pytest.param(*values, marks=marks))
    return out


def long_marked(cases, long: tuple) -> list:
    """``pytest.param`` for each of ``cases``, those in ``long`` marked ``long``."""
    unknown = set(long) - set(cases)
    assert not unknown, f"not cases: {sorted(unknown)}"
    return [pytest.param(case, marks=[pytest.mark.long] if case in long else []) for case in cases]


def rtl_sim(outdir, in_codes, simulator: str = "icarus", expected=None, work_dir=None, seed: int = 1,
            gap: float = 0.3):
    """The output codes of the core in ``outdir`` on ``simulator`` (see the module docstring); a
    mismatch with ``expected`` raises, naming the first differing vector."""
    from rtlgen.flows.batch_sim import run_batch
    from rtlgen.flows.sim import read_manifest, run_sim
    manifest = read_manifest(outdir)
    narrow = all(int(manifest[side]["width"]) <= 64 for side in ("input", "output"))
    if simulator == "verilator" and narrow:
        out, _ = run_batch(outdir, in_codes, expected, seed=seed, gap=gap, work_dir=work_dir)
        return out
    return run_sim(outdir, in_codes, simulator=simulator, expected=expected, work_dir=work_dir, seed=seed, gap=gap)
