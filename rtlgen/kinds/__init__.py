"""Core kinds: one object per kind of model that rtlgen turns into a core.

A :class:`CoreKind` gathers what the command line, the build writer and
the flows need to know about one kind of model — how to recognise and load
its model files, quantize it under a configuration, build its hardware and
describe it in the manifest, read its build folders back, turn inputs into
codes, run its golden model and show its outputs — so that they ask the
registry instead of testing the model's type.  Two kinds are registered:
``network`` (MLPs and CNNs, :mod:`rtlgen.kinds.network`) and ``forest``
(decision forests, :mod:`rtlgen.kinds.forest`); what they do alike is
:class:`rtlgen.kinds.base.KindBase`.

Adding a kind: write a module with a class that implements the protocol
below (deriving from :class:`~rtlgen.kinds.base.KindBase`), and add an
instance to :data:`KINDS`.  A model file goes to the kind that lists its
suffix in :attr:`CoreKind.model_formats`; a build folder to the kind that
lists its manifest's ``kind`` in :attr:`CoreKind.manifest_kinds`; a
quantized model to the kind whose :attr:`CoreKind.model_type` it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from ..emit.build import MANIFEST, ManifestSection
from ..errors import RtlgenError
from .forest import ForestKind
from .network import NetworkKind

__all__ = ["CoreKind", "KINDS", "kind_for_model_file", "kind_for_build", "kind_named", "kind_of",
           "build_core", "save_build", "load_build"]


class CoreKind(Protocol):
    """What rtlgen needs to know about one kind of model.

    Hooks (``KindBase`` provides the ones marked *shared*):

    * recognising and loading: :attr:`name`, :attr:`manifest_kinds`, :attr:`model_formats`,
      :attr:`model_type`, :meth:`accepts_model_file` (*shared*), :meth:`quantized_model`;
    * the build (asked by :mod:`rtlgen.emit.build`): :meth:`fit`, :meth:`core`,
      :meth:`manifest_section`; and :meth:`build_core`, :meth:`save_build` (*shared*);
    * what ``rtlgen build`` prints: :meth:`build_message` (*shared*), from :meth:`build_figures`;
    * build folders: :meth:`load_build` (*shared*);
    * inputs, golden model, outputs: :meth:`input_codes`, :meth:`predict_codes`,
      :meth:`output_values`;
    * ``tmr-analysis``: :meth:`sensitivity_model`.
    """

    #: short name (``network``, ``forest``)
    name: str
    #: the manifest ``kind`` values of this kind's build folders
    manifest_kinds: tuple[str, ...]
    #: model file suffix (lower case) -> description of the format
    model_formats: dict[str, str]
    #: the quantized model class (``to_dict``, ``from_dict``, the parameter protocol of
    #: :mod:`rtlgen.ir.params`)
    model_type: type

    def accepts_model_file(self, path) -> bool:
        """Whether ``path`` (by its suffix) is a model file of this kind."""

    def quantized_model(self, model_path, config):
        """Load the model file and quantize it under ``config`` (a path or a mapping)."""

    def fit(self, qmodel) -> str:
        """Refuse (:class:`RtlgenError`) a model whose build would exhaust the memory; else name
        what is elaborated, for the progress line (``the core (5 layers, ...)``)."""

    def core(self, qmodel):
        """The hardware component of the core (with ``latency`` and ``ii``)."""

    def manifest_section(self, qmodel, core) -> ManifestSection:
        """The kind's part of the manifest: its ``kind``, multipliers, layer or forest summary, how
        the input arrives, extra input/output fields and the register map of a configuration bus."""

    def build_core(self, qmodel, top: str | None = None) -> tuple[str, dict]:
        """Generate (verilog text, manifest) without writing anything."""

    def save_build(self, qmodel, outdir, top: str | None = None) -> dict:
        """Generate the core and write its build folder; return the manifest."""

    def build_message(self, manifest: dict, outdir) -> str:
        """The one line ``rtlgen build`` prints about a written core."""

    def build_figures(self, manifest: dict) -> str:
        """The part of that line after the latency and II (multipliers; trees, comparators...)."""

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


KINDS: tuple[CoreKind, ...] = (NetworkKind(), ForestKind())


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
    formats = ", ".join(f"{suffix} ({desc})" for kind in KINDS for suffix, desc in kind.model_formats.items())
    suffix = Path(str(path)).suffix
    shown = f"'{suffix}'" if suffix else "no suffix"
    raise RtlgenError(f"model file {path}: unsupported format ({shown}); supported formats: {formats}")


def kind_for_build(outdir) -> CoreKind:
    """The kind of a build folder, from its manifest (a folder without one is the network kind's
    to report on)."""
    try:
        manifest_kind = json.loads((Path(outdir) / MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return kind_named("network")
    for kind in KINDS:
        if manifest_kind in kind.manifest_kinds:
            return kind
    if manifest_kind is None:
        return kind_named("network")
    raise RtlgenError(f"build folder {outdir} holds a core of kind {manifest_kind!r}, which this rtlgen does "
                      "not know: rebuild it with 'rtlgen build'")


def kind_of(qmodel) -> CoreKind:
    """The kind of a quantized model (an instance of its :attr:`~CoreKind.model_type`)."""
    for kind in KINDS:
        if isinstance(qmodel, kind.model_type):
            return kind
    raise TypeError(f"no core kind builds a {type(qmodel).__name__}")


def build_core(qmodel, top: str | None = None) -> tuple[str, dict]:
    """(verilog text, manifest) of the core of a quantized model of any kind; nothing is written."""
    return kind_of(qmodel).build_core(qmodel, top)


def save_build(qmodel, outdir, top: str | None = None) -> dict:
    """Generate the core of a quantized model of any kind and write its build folder; return the manifest."""
    return kind_of(qmodel).save_build(qmodel, outdir, top)


def load_build(outdir) -> tuple[dict, object]:
    """Read a build folder of any kind: (manifest, quantized model)."""
    return kind_for_build(outdir).load_build(outdir)
