"""Helpers shared by the tests (importable as ``helpers.*``: ``tests/`` is on ``sys.path``).

``paths``    the repository, its example models and the test fixtures
``cli``      running ``rtlgen`` as a subprocess and reading its one-line errors
``core``     Amaranth testbenches: running one, streaming vectors through a core
``bus``      the configuration bus: Amaranth driver, programming, cocotb bench checks
``i2c``      I2C masters for Amaranth testbenches (interactive and waveform)
``builds``   a per-case cache of built cores (see the ``build_cache`` fixture)
``forests``  hand-made decision trees and standardized data sets
``flips``    a bit flip written independently of ``rtlgen.analysis``
``stream_timing``  a stream section's timing measured in simulation, and its closed form
``sims``     which cases run on Verilator in ``make test`` and which in ``make test-long``

Fixtures built on them are in ``tests/conftest.py``.
"""
