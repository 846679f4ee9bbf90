"""Build folders of decision-forest cores (manifest kind ``"bdt"``).

Same layout as an MLP build (:mod:`rtlgen.emit.build`): ``<top>.v``,
``manifest.json`` (ports, input/output element types, latency, II, a
``forest`` summary and, with stored thresholds or leaves, the
``config_bus``), ``model.json`` (the quantized forest) and ``regmap.json``
/ ``regmap.md`` when there is a configuration bus, written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import RtlgenError
from ..ir.forest import QForest
from .build import (_IDENT, _VERILOG_KEYWORDS, FORMAT, MANIFEST, MODEL, add_config_bus, read_build,
                    regmap_files, top_name, write_build)
from .regmap import regmap_for

__all__ = ["build_forest_core", "save_forest_build", "load_forest_build", "build_kind"]


def manifest_for_forest(qf: QForest, core, top: str) -> dict:
    tin, tout = qf.input_type, qf.result_type
    depths = [t.depth() for t in qf.trees]
    manifest = {
        "format": FORMAT,
        "kind": "bdt",
        "top": top,
        "verilog": f"{top}.v",
        "model": MODEL,
        "ports": {"clk": 1, "rst": 1, "in_valid": 1, "in_ready": 1,
                  "in_data": tin.width * qf.n_features, "out_valid": 1,
                  "out_data": tout.width * qf.n_out},
        "input": {"type": str(tin), "count": qf.n_features, "width": tin.width, "signed": tin.signed,
                  "types": [str(t) for t in qf.input_types],
                  "layout": "element k at bits [k*width, (k+1)*width)"},
        "output": {"type": str(tout), "count": qf.n_out, "width": tout.width, "signed": tout.signed,
                   "classes": qf.n_outputs, "class_index": qf.n_outputs if qf.class_output else None,
                   "layout": "element k at bits [k*width, (k+1)*width)"},
        "latency": core.latency,
        "ii": core.ii,
        "multipliers": 0,
        "forest": {"library": qf.library, "objective": qf.objective, "task": qf.task,
                   "decision": qf.decision, "trees": len(qf.trees), "max_depth": max(depths or [0]),
                   "leaves": sum(len(t.leaves()) for t in qf.trees), "comparators": core.comparators,
                   "score": str(qf.score_type), "base": str(qf.base_type), "result": str(qf.result_type),
                   "pipeline": qf.pipeline, "levels": core.n_levels, "reuse_factor": qf.reuse_factor,
                   "table_bits": qf.table_bits,
                   "threshold_storage": qf.threshold_storage, "leaf_storage": qf.leaf_storage,
                   "units": [[{"kind": u.kind, "trees": u.trees} for u in ulist] for ulist in core.units]},
        "layers": [],
    }
    add_config_bus(manifest, regmap_for(qf))
    return manifest


def build_forest_core(qf: QForest, top: str | None = None) -> tuple[str, dict]:
    """Generate (verilog text, manifest) for a quantized forest."""
    from ..hw.forest import ForestCore
    top = top or top_name(qf.name)
    if not _IDENT.match(top) or top in _VERILOG_KEYWORDS:
        raise RtlgenError(f"--name {top!r} is not a valid Verilog module name: use letters, digits and _")
    from .. import progress
    from ..hw.size import check_forest_fits
    from .verilog import elaborate, network_verilog
    nodes = sum(len(tree.feature) for tree in qf.trees)
    check_forest_fits(qf)   # refuses a forest whose build would exhaust the memory
    with progress.stage(f"elaborating the forest core ({len(qf.trees):,} trees, {nodes:,} nodes)"):
        core = ForestCore(qf)
        fragment = elaborate(core)
    with progress.stage(f"converting {top} to Verilog"):
        text = network_verilog(core, top, fragment)
    return text, manifest_for_forest(qf, core, top)


def save_forest_build(qf: QForest, outdir, top: str | None = None) -> dict:
    """Generate the core for ``qf`` and write its build folder."""
    text, manifest = build_forest_core(qf, top)
    write_build(outdir, {
        manifest["verilog"]: text,
        MANIFEST: json.dumps(manifest, indent=2) + "\n",
        MODEL: json.dumps(qf.to_dict()) + "\n",
        **regmap_files(manifest, qf),
    })
    return manifest


def build_kind(outdir) -> str | None:
    """The ``kind`` of a build folder's manifest (None when unreadable)."""
    try:
        return json.loads((Path(outdir) / MANIFEST).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def load_forest_build(outdir) -> tuple[dict, QForest]:
    return read_build(outdir, lambda manifest: QForest.from_dict)
