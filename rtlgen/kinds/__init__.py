"""Core kinds: one object per kind of model that rtlgen turns into a core.

A :class:`CoreKind` gathers what the command line and the flows need to
know about one kind of model — how to recognise and load its model files,
quantize it under a configuration, write and read its build folders, turn
inputs into codes, run its golden model and show its outputs — so that they
ask the registry instead of testing the model's type.  Two kinds are
registered: ``network`` (MLPs and CNNs, :mod:`rtlgen.kinds.network`) and
``forest`` (boosted decision trees, :mod:`rtlgen.kinds.forest`).

Adding a kind: write a module with a class that implements the protocol
below, and add an instance to :data:`KINDS`.  A model file goes to the
first kind whose :meth:`CoreKind.accepts_model_file` says yes (the network
kind, which takes ONNX files, is last); a build folder to the kind that
lists its manifest's ``kind`` in :attr:`CoreKind.manifest_kinds`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import RtlgenError
from .forest import ForestKind
from .network import NetworkKind

__all__ = ["CoreKind", "KINDS", "kind_for_model_file", "kind_for_build", "kind_named"]


class CoreKind(Protocol):
    """What rtlgen needs to know about one kind of model."""

    #: short name (``network``, ``forest``)
    name: str
    #: the manifest ``kind`` values of this kind's build folders
    manifest_kinds: tuple[str, ...]

    def accepts_model_file(self, path) -> bool:
        """Whether ``path`` (by its suffix) is a model file of this kind."""

    def quantized_model(self, model_path, config):
        """Load the model file and quantize it under ``config`` (a path or a mapping)."""

    def save_build(self, qmodel, outdir, top: str | None = None) -> dict:
        """Generate the core and write its build folder; return the manifest."""

    def build_message(self, manifest: dict, outdir) -> str:
        """The one line ``rtlgen build`` prints about a written core."""

    def load_build(self, outdir) -> tuple[dict, object]:
        """Read a build folder: (manifest, quantized model)."""

    def input_codes(self, qmodel, values: np.ndarray, raw: bool) -> np.ndarray:
        """Input codes from real values (``raw``: from codes, checked)."""

    def predict_codes(self, qmodel, codes: np.ndarray) -> np.ndarray:
        """The golden model: output codes of input codes."""

    def output_values(self, qmodel, codes: np.ndarray, raw: bool) -> np.ndarray:
        """What ``predict``/``sim`` write: the exact values of output codes (``raw``: the codes)."""

    def sensitivity_model(self, model_path, config):
        """(quantized model as ``tmr-analysis`` sees it, the analysis module with ``analyze``,
        ``report_dict``, ``report_markdown``, ``table_rows``, ``config_snippet``, ``format_table``)."""


KINDS: tuple[CoreKind, ...] = (ForestKind(), NetworkKind())


def kind_named(name: str) -> CoreKind:
    """The registered kind called ``name``."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)


def kind_for_model_file(path) -> CoreKind:
    """The kind of a model file, by its suffix; an unknown suffix is an error listing every format."""
    for kind in KINDS:
        if kind.accepts_model_file(path):
            return kind
    from ..frontends import SUPPORTED_FORMATS
    from ..frontends.trees import FOREST_SUFFIXES
    formats = ", ".join(f"{suffix} ({desc})" for suffix, desc in {**SUPPORTED_FORMATS, **FOREST_SUFFIXES}.items())
    suffix = Path(str(path)).suffix
    shown = f"'{suffix}'" if suffix else "no suffix"
    raise RtlgenError(f"model file {path}: unsupported format ({shown}); supported formats: {formats}")


def kind_for_build(outdir) -> CoreKind:
    """The kind of a build folder, from its manifest (a folder without one is the network kind's
    to report on)."""
    try:
        manifest_kind = json.loads((Path(outdir) / "manifest.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return kind_named("network")
    for kind in KINDS:
        if manifest_kind in kind.manifest_kinds:
            return kind
    if manifest_kind is None:
        return kind_named("network")
    raise RtlgenError(f"build folder {outdir} holds a core of kind {manifest_kind!r}, which this rtlgen does "
                      "not know: rebuild it with 'rtlgen build'")
