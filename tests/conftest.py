"""Fixtures shared by the tests.

The helpers behind them live in ``tests/helpers/`` (imported as
``helpers.*``; ``tests/`` is on ``sys.path``, see ``pythonpath`` in
``pyproject.toml``).  Plain functions and classes (bus drivers, I2C
masters, tree builders...) are imported from there; what needs pytest's
temporary folders is a fixture here.
"""

from __future__ import annotations

import gc
import os
import signal
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from helpers.builds import BuildCache


#: test modules holding the longest tests (bitstreams, Dask clusters, first Verilator builds), run
#: first: pytest-xdist hands tests out in collection order, so the two workers then end on short
#: tests together rather than one waiting for the other's long last test
LONGEST_FIRST = (
    "tests/test_readme.py",
    "tests/boards/test_board_flow.py",
    "tests/flows/test_batch_sim.py",
    "tests/flows/test_regress.py",
    "tests/flows/test_dask_flows.py",
    "tests/flows/test_synth_lint.py",
    "tests/boards/test_board_sim.py",
    "tests/hw/test_merge.py",
    "tests/hw/test_tmr.py",
    "tests/flows/test_sim_flow.py",
)


def pytest_configure(config):
    # pytest started as a background job ignores SIGINT, and every rtlgen process it starts would
    # inherit that (and rightly keep ignoring it): the tests that interrupt rtlgen need it delivered
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    rank = {module: k for k, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))    # stable: modules keep their order


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """rtlgen's disk cache (the batch engine's compiled testbenches, adder graphs) is one folder per
    test session, shared by the xdist workers (entries are moved into place whole), not the user's."""
    os.environ["RTLGEN_CACHE"] = str(tmp_path_factory.getbasetemp().parent / "rtlgen_cache")


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory):
    """``build_cache(make)`` -> a :class:`helpers.builds.BuildCache`: ``get(case)``
    calls ``make(case, outdir)`` once per case, in a temporary folder of its own.

    Typically held by a module-scoped fixture so a module's tests share builds.
    """
    def new(make) -> BuildCache:
        return BuildCache(tmp_path_factory, make)
    return new


@pytest.fixture(scope="session")
def bus_cores(build_cache):
    """``bus_cores(cases, save, vectors=None)`` -> ``get(case)`` giving (model,
    build folder, register map, plan) of cores with a configuration bus, each
    built, linted and planned once (see :func:`helpers.bus.bus_core_maker`)."""
    # imported here: conftest.py loads for every test, and only these use rtlgen's flows
    from helpers.bus import bus_core_maker

    def new(cases, save, vectors=None) -> BuildCache:
        return build_cache(bus_core_maker(cases, save, vectors))
    return new


@pytest.fixture(scope="module")
def collect_unelaborated():
    """For modules that make components only to read their figures (and filter UnusedElaboratable):
    the leftovers are collected at the module's end, under the same filter, rather than warned about
    in whichever test the garbage collector next runs in."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()
