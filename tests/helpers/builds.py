"""A per-case cache of built cores, each built once in a temporary folder of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class BuildCache:
    """``cache(case)`` returns ``make(case, outdir)``, called once per case.

    *outdir* is ``<a fresh temporary folder named for the case>/core`` (not
    created).  Cached per instance: a module fixture holding one shares its
    builds between the module's tests (and, under pytest-xdist, per worker).
    """

    def __init__(self, tmp_path_factory, make: Callable[[str, Path], object]) -> None:
        self.tmp_path_factory, self.make = tmp_path_factory, make
        self.built: dict[str, object] = {}

    def __call__(self, case: str):
        if case not in self.built:
            self.built[case] = self.make(case, self.tmp_path_factory.mktemp(case) / "core")
        return self.built[case]
