"""Build folders: Verilog, manifest and quantized model, written atomically.

A build folder holds

``<top>.v``
    the core, generated from the Amaranth description;
``manifest.json``
    top name, ports and widths, element types, latency, II and a summary
    of the core (per layer of a network, a ``forest`` section for a decision
    forest): what simulation, reports and users read;
``model.json``
    the quantized model (integer codes and types), from which ``rtlgen
    predict`` runs the bit-exact golden model;
``regmap.json``, ``regmap.md``
    only when the core stores parameters (``storage`` ``register`` or
    ``tmr``): the configuration bus register map (:mod:`rtlgen.emit.regmap`).

plus rtlgen's marker ``.rtlgen-build.json`` (the files it wrote, and the
results later commands wrote).  A new folder is written under a temporary
name and moved into place only when complete, so a failed build leaves
nothing behind; what a rebuild keeps and replaces is defined in
:mod:`rtlgen.emit.folder`.

One writer serves every kind of model.  What differs between kinds — the
memory check, the hardware component and the kind's part of the manifest
(:class:`ManifestSection`) — it asks of the ``kind`` passed in
(:class:`BuildHooks`, implemented by every :class:`rtlgen.kinds.CoreKind`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .. import progress
from ..errors import RtlgenError
from .folder import check_complete, commit_build
from .regmap import REGMAP_JSON, REGMAP_MD, bus_summary, regmap_for, regmap_markdown
from .verilog import elaborate, network_verilog

__all__ = ["ManifestSection", "BuildHooks", "generate_core", "save_core", "write_build", "read_build",
           "manifest_for", "top_name", "MANIFEST", "MODEL", "ELEMENT_LAYOUT"]

MANIFEST = "manifest.json"
MODEL = "model.json"
FORMAT = 1
#: how the elements of ``in_data``/``out_data`` are packed
ELEMENT_LAYOUT = "element k at bits [k*width, (k+1)*width)"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERILOG_KEYWORDS = {"module", "input", "output", "wire", "reg", "begin", "end", "always", "assign",
                     "initial", "case", "default", "if", "else", "for", "function", "task", "integer"}


@dataclass
class ManifestSection:
    """A kind's part of a manifest; the writer places it in the common skeleton.

    The manifest is ``format``, ``kind``, ``top``, ``verilog``, ``model``,
    ``ports``, ``input``, ``output``, ``latency``, ``ii``, ``multipliers``,
    the ``summary`` sections, ``layers``, the ``io`` sections and, when the
    core has a configuration bus, ``config_bus`` (its ports join ``ports``).
    """
    #: the manifest's ``kind`` (``mlp``, ``cnn``, ``bdt``)
    kind: str
    multipliers: int
    #: one summary per layer (none for a forest)
    layers: list
    #: sections placed before ``layers`` (a forest's ``forest``)
    summary: dict = field(default_factory=dict)
    #: sections placed after ``layers``: how the input arrives (a network's ``io``, ``stream``)
    io: dict = field(default_factory=dict)
    #: port widths other than the element counts give (a streamed input's ``in_data``)
    ports: dict = field(default_factory=dict)
    #: fields of ``input``/``output`` after type, count, width and signedness (``layout`` last
    #: unless given: :data:`ELEMENT_LAYOUT`)
    input: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    #: the register map of the core's configuration bus (None: the core has none)
    regmap: dict | None = None


class BuildHooks(Protocol):
    """What the writer asks of a model's kind (every :class:`rtlgen.kinds.CoreKind` answers)."""

    def fit(self, qmodel) -> str:
        """Refuse (:class:`RtlgenError`) a model whose build would exhaust the memory
        (:mod:`rtlgen.hw.size`); else name what is elaborated, for the progress line."""

    def core(self, qmodel):
        """The hardware component of the core (its ``latency`` and ``ii`` go to the manifest)."""

    def manifest_section(self, qmodel, core) -> ManifestSection:
        """The kind's part of the manifest of ``core``."""


def top_name(name: str) -> str:
    """A valid Verilog module name derived from ``name``."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "core"
    if ident[0].isdigit():
        ident = "m_" + ident
    if ident in _VERILOG_KEYWORDS:
        ident += "_core"
    return ident


def _elements(t, count: int, fields: dict) -> dict:
    """The manifest's ``input`` or ``output``: ``count`` elements of type ``t``, then ``fields``."""
    entry = {"type": str(t), "count": count, "width": t.width, "signed": t.signed, **fields}
    entry.setdefault("layout", ELEMENT_LAYOUT)
    return entry


def manifest_for(kind: BuildHooks, qmodel, core, top: str) -> dict:
    """The manifest of ``core``, the hardware of ``qmodel``, under the module name ``top``."""
    section = kind.manifest_section(qmodel, core)
    tin, tout = qmodel.input_type, qmodel.output_type
    manifest = {
        "format": FORMAT,
        "kind": section.kind,
        "top": top,
        "verilog": f"{top}.v",
        "model": MODEL,
        "ports": {"clk": 1, "rst": 1, "in_valid": 1, "in_ready": 1, "in_data": tin.width * qmodel.n_in,
                  "out_valid": 1, "out_data": tout.width * qmodel.n_out} | section.ports,
        "input": _elements(tin, qmodel.n_in, section.input),
        "output": _elements(tout, qmodel.n_out, section.output),
        "latency": core.latency,
        "ii": core.ii,
        "multipliers": section.multipliers,
        **section.summary,
        "layers": section.layers,
        **section.io,
    }
    add_config_bus(manifest, section.regmap)
    return manifest


def add_config_bus(manifest: dict, regmap: dict | None) -> None:
    """Add a core's configuration bus (ports and ``config_bus``) to its manifest."""
    if regmap is None:
        return
    d = regmap["data_width"]
    if regmap["i2c"] is not None:
        manifest["ports"].update(regmap["i2c"]["ports"])
    else:
        manifest["ports"].update({"cfg_addr": regmap["addr_width"], "cfg_wdata": d, "cfg_we": 1,
                                  "cfg_rdata": d})
    manifest["config_bus"] = bus_summary(regmap)


def regmap_files(manifest: dict, model) -> dict[str, str]:
    """``regmap.json`` and ``regmap.md`` of a core with a configuration bus (else nothing)."""
    if "config_bus" not in manifest:
        return {}
    regmap = regmap_for(model)
    return {REGMAP_JSON: json.dumps(regmap, indent=1) + "\n", REGMAP_MD: regmap_markdown(regmap, manifest["top"])}


def generate_core(kind: BuildHooks, qmodel, top: str | None = None) -> tuple[str, dict]:
    """Generate (verilog text, manifest) for a quantized model of ``kind``.

    Refuses (:class:`RtlgenError`) an invalid module name and a model whose
    build would need more memory than is available (``kind.fit``); reports
    the elaboration and the Verilog conversion on stderr
    (:mod:`rtlgen.progress`).
    """
    top = top or top_name(qmodel.name)
    if not _IDENT.match(top) or top in _VERILOG_KEYWORDS:
        raise RtlgenError(f"--name {top!r} is not a valid Verilog module name: use letters, digits and _")
    what = kind.fit(qmodel)
    with progress.stage(f"elaborating {what}"):
        core = kind.core(qmodel)
        fragment = elaborate(core)
    with progress.stage(f"converting {top} to Verilog"):
        verilog_text = network_verilog(core, top, fragment)
    return verilog_text, manifest_for(kind, qmodel, core, top)


def write_build(outdir, files: dict[str, str]) -> Path:
    """Write ``files`` (name -> text) as the build in the folder ``outdir``.

    The folder contract of :mod:`rtlgen.emit.folder` applies: a folder that
    rtlgen did not make is refused, files rtlgen did not write are kept, and
    results of a previous, different core are removed (and named on stderr).
    Returns the folder written (a symbolic link's target).
    """
    report = commit_build(outdir, files)
    if report.removed_results:
        print(f"rtlgen: note: removed the results of the previous core in {outdir}: "
              f"{', '.join(report.removed_results)} (they describe a core that changed)", file=sys.stderr)
    return report.folder


def save_core(kind: BuildHooks, qmodel, outdir, top: str | None = None) -> dict:
    """Generate the core of a quantized model of ``kind`` and write its build folder; return the manifest."""
    verilog_text, manifest = generate_core(kind, qmodel, top)
    files = {
        manifest["verilog"]: verilog_text,
        MANIFEST: json.dumps(manifest, indent=2) + "\n",
        MODEL: json.dumps(qmodel.to_dict()) + "\n",
        **regmap_files(manifest, qmodel),
    }
    write_build(outdir, files)
    return manifest


def _check_manifest(manifest) -> None:
    """Raise ValueError when the fields every command reads are missing or of the wrong type."""
    if not isinstance(manifest, dict):
        raise ValueError("manifest.json does not hold an object")
    for key in ("top", "verilog"):
        if not isinstance(manifest.get(key), str):
            raise ValueError(f"manifest.json '{key}' is not a text")
    for key in ("latency", "ii"):
        value = manifest.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"manifest.json '{key}' is {value!r}, not a cycle count")
    for side in ("input", "output"):
        spec = manifest.get(side)
        if not isinstance(spec, dict) or not all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
                                                 for k in ("count", "width")):
            raise ValueError(f"manifest.json '{side}' lacks its element count and width")


def read_build(outdir, model_from_dict) -> tuple[dict, object]:
    """Read a build folder's manifest and its quantized model (``model_from_dict(model.json's data)``)."""
    outdir = Path(outdir)
    mpath = outdir / MANIFEST
    if outdir.is_dir():
        check_complete(outdir)
    if not mpath.is_file():
        raise RtlgenError(f"{outdir} is not a build folder (no {MANIFEST}); run 'rtlgen build' first")
    try:
        manifest = json.loads(mpath.read_text())
        _check_manifest(manifest)
        model = model_from_dict(json.loads((outdir / manifest.get("model", MODEL)).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RtlgenError(f"build folder {outdir} is damaged ({exc}); rebuild it with 'rtlgen build'") from None
    return manifest, model
