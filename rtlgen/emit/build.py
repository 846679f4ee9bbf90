"""Build folders: Verilog, manifest and quantized model, written atomically.

A build folder holds

``<top>.v``
    the core, generated from the Amaranth description;
``manifest.json``
    top name, ports and widths, element types, latency, II and a summary
    per layer (what simulation, reports and users read);
``model.json``
    the quantized model (integer weight codes and types), from which
    ``rtlgen predict`` runs the bit-exact golden model;
``regmap.json``, ``regmap.md``
    only when some layer stores its parameters (``storage`` ``register`` or
    ``tmr``): the configuration bus register map (:mod:`rtlgen.emit.regmap`).

plus rtlgen's marker ``.rtlgen-build.json`` (the files it wrote, and the
results later commands wrote).  A new folder is written under a temporary
name and moved into place only when complete, so a failed build leaves
nothing behind; what a rebuild keeps and replaces is defined in
:mod:`rtlgen.emit.folder`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..errors import RtlgenError
from ..hw.core import make_core
from ..hw.network import Network
from ..hw.stream import StreamNetwork
from ..ir.conv import QConv, QMaxPool
from ..ir.model import QActivation, QDense, QModel
from .folder import check_complete, commit_build
from .regmap import REGMAP_JSON, REGMAP_MD, bus_summary, regmap_for, regmap_markdown
from .verilog import network_verilog

__all__ = ["build_core", "write_build", "load_build", "manifest_for", "MANIFEST", "MODEL"]

MANIFEST = "manifest.json"
MODEL = "model.json"
FORMAT = 1
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERILOG_KEYWORDS = {"module", "input", "output", "wire", "reg", "begin", "end", "always", "assign",
                     "initial", "case", "default", "if", "else", "for", "function", "task", "integer"}


def top_name(name: str) -> str:
    """A valid Verilog module name derived from ``name``."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "core"
    if ident[0].isdigit():
        ident = "m_" + ident
    if ident in _VERILOG_KEYWORDS:
        ident += "_core"
    return ident


def _layer_entry(layer, hw) -> dict:
    entry = {"name": layer.name, "latency": hw.latency, "ii": hw.ii,
             "in_type": str(layer.in_type), "result": str(layer.result_type),
             "shape": [layer.n_in, layer.n_out]}
    if isinstance(layer, QDense):
        entry.update({
            "op": "dense", "weight": str(layer.weight_type), "bias": str(layer.bias_type),
            "accum": str(layer.accum_type) if layer.accum_type else None,
            "reuse_factor": layer.reuse_factor, "adder_levels": layer.adder_levels,
            "weights": layer.n_in * layer.n_out, "nonzero_weights": layer.nonzero,
            "multipliers": hw.multipliers,
        })
        if layer.stored:
            entry.update({"storage": layer.storage, "tmr_bits": layer.tmr_bits,
                          "weight_positions": layer.positions})
    elif isinstance(layer, QActivation):
        entry.update({"op": layer.kind, "multipliers": 0, "reuse_factor": 1})
    elif isinstance(layer, QMaxPool):
        entry.update({"op": "maxpool", "multipliers": 0, "reuse_factor": 1})
    if isinstance(layer, (QConv, QMaxPool)):
        entry.update({"op": layer.op, "io": layer.io, **layer.geometry()})
        if isinstance(layer, QConv):
            entry["count_include_pad"] = layer.count_include_pad
    return entry


def manifest_for(model: QModel, core: Network, top: str) -> dict:
    tin, tout = model.input_type, model.output_type
    manifest = {
        "format": FORMAT,
        "kind": "cnn" if any(isinstance(layer, (QConv, QMaxPool)) for layer in model.layers) else "mlp",
        "top": top,
        "verilog": f"{top}.v",
        "model": MODEL,
        "ports": {"clk": 1, "rst": 1, "in_valid": 1, "in_ready": 1,
                  "in_data": tin.width * model.n_in, "out_valid": 1,
                  "out_data": tout.width * model.n_out},
        "input": {"type": str(tin), "count": model.n_in, "width": tin.width, "signed": tin.signed,
                  "layout": "element k at bits [k*width, (k+1)*width)"},
        "output": {"type": str(tout), "count": model.n_out, "width": tout.width, "signed": tout.signed,
                   "layout": "element k at bits [k*width, (k+1)*width)"},
        "latency": core.latency,
        "ii": core.ii,
        "multipliers": sum(hw.multipliers for hw in core.layers),
        "layers": [_layer_entry(layer, hw) for layer, hw in zip(model.layers, core.layers)],
    }
    if model.input_shape is not None:
        order = "NCHW flattened C,H,W" if len(model.input_shape) == 3 else "NCL flattened C,L"
        manifest["input"].update({"shape": [int(v) for v in model.input_shape], "layout": order,
                                  "bits": "element k at bits [k*width, (k+1)*width)"})
    if isinstance(core, StreamNetwork):
        shape = [int(v) for v in model.input_shape]
        manifest["io"] = "stream"
        manifest["ports"]["in_data"] = tin.width * core.channels_in
        manifest["stream"] = {
            "channels": core.channels_in, "pixels": core.pixels_in,
            "frame": shape[1:],
            "order": "one pixel per accept, raster order (row by row, left to right); in_data "
                     "element c (bits [c*width, (c+1)*width)) is channel c, i.e. vector element "
                     "c*pixels + p of pixel p",
            "latency": "cycles from the edge that accepts a frame's last pixel to out_valid",
            "ii": "cycles per frame at full input rate (between the last pixels of consecutive frames)",
        }
    else:
        manifest["io"] = "parallel"
    add_config_bus(manifest, regmap_for(model) if isinstance(core, Network) else None)
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


def build_core(model: QModel, top: str | None = None) -> tuple[str, dict]:
    """Generate (verilog text, manifest) for a quantized model.

    Refuses (:class:`RtlgenError`) a model whose build would need more memory
    than is available (:func:`rtlgen.hw.size.check_fits`); reports the
    elaboration and the Verilog conversion on stderr (:mod:`rtlgen.progress`).
    """
    from .. import progress
    from ..hw.size import check_fits
    from .verilog import elaborate
    top = top or top_name(model.name)
    if not _IDENT.match(top) or top in _VERILOG_KEYWORDS:
        raise RtlgenError(f"--name {top!r} is not a valid Verilog module name: use letters, digits and _")
    size = check_fits(model)   # refuses a core whose build would exhaust the memory
    with progress.stage(f"elaborating the core ({size.describe()})"):
        core = make_core(model)
        fragment = elaborate(core)
    with progress.stage(f"converting {top} to Verilog"):
        verilog_text = network_verilog(core, top, fragment)
    return verilog_text, manifest_for(model, core, top)


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


def save_build(model: QModel, outdir, top: str | None = None) -> dict:
    """Generate the core for ``model`` and write its build folder."""
    verilog_text, manifest = build_core(model, top)
    files = {
        manifest["verilog"]: verilog_text,
        MANIFEST: json.dumps(manifest, indent=2) + "\n",
        MODEL: json.dumps(model.to_dict()) + "\n",
        **regmap_files(manifest, model),
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
    """Read a build folder's manifest and its model with ``model_from_dict(manifest)``."""
    outdir = Path(outdir)
    mpath = outdir / MANIFEST
    if outdir.is_dir():
        check_complete(outdir)
    if not mpath.is_file():
        raise RtlgenError(f"{outdir} is not a build folder (no {MANIFEST}); run 'rtlgen build' first")
    try:
        manifest = json.loads(mpath.read_text())
        _check_manifest(manifest)
        from_dict = model_from_dict(manifest)
        model = from_dict(json.loads((outdir / manifest.get("model", MODEL)).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RtlgenError(f"build folder {outdir} is damaged ({exc}); rebuild it with 'rtlgen build'") from None
    return manifest, model


def load_build(outdir) -> tuple[dict, object]:
    """Read a build folder's manifest and quantized model (network or forest)."""
    def pick(manifest):
        if manifest.get("kind") == "bdt":   # decision forest
            from ..ir.forest import QForest
            return QForest.from_dict
        return QModel.from_dict
    return read_build(outdir, pick)
