"""The ``forest`` core kind: boosted decision trees and random forests (xgboost, LightGBM,
scikit-learn, conifer)."""

from __future__ import annotations

import numpy as np

from ..analysis import forest_sensitivity
from ..emit.build import ManifestSection
from ..emit.regmap import regmap_for
from ..frontends.trees import FOREST_SUFFIXES, load_forest
from ..golden.forest import check_codes, outputs_as_values, predict_codes, quantize_inputs
from ..hw.forest import ForestCore
from ..hw.size import check_forest_fits
from ..ir.config import load_config
from ..ir.forest import QForest
from ..ir.forest_config import quantize_forest
from ..errors import RtlgenError
from .base import KindBase

__all__ = ["ForestKind"]


class ForestKind(KindBase):
    """Decision forests: manifest kind ``bdt``."""

    name = "forest"
    manifest_kinds = ("bdt",)
    model_formats = FOREST_SUFFIXES
    model_type = QForest

    def quantized_model(self, model_path, config):
        _need_config(config)
        return quantize_forest(load_forest(model_path), load_config(config))

    # -- the build ---------------------------------------------------------

    def fit(self, qmodel) -> str:
        check_forest_fits(qmodel)
        nodes = sum(len(tree.feature) for tree in qmodel.trees)
        return f"the forest core ({len(qmodel.trees):,} trees, {nodes:,} nodes)"

    def core(self, qmodel):
        return ForestCore(qmodel)

    def manifest_section(self, qmodel, core) -> ManifestSection:
        qf = qmodel
        depths = [t.depth() for t in qf.trees]
        forest = {"library": qf.library, "objective": qf.objective, "task": qf.task,
                  "decision": qf.decision, "trees": len(qf.trees), "max_depth": max(depths or [0]),
                  "leaves": sum(len(t.leaves()) for t in qf.trees), "comparators": core.comparators,
                  "score": str(qf.score_type), "base": str(qf.base_type), "result": str(qf.result_type),
                  "pipeline": qf.pipeline, "levels": core.n_levels, "reuse_factor": qf.reuse_factor,
                  "table_bits": qf.table_bits,
                  "threshold_storage": qf.threshold_storage, "leaf_storage": qf.leaf_storage,
                  "units": [[{"kind": u.kind, "trees": u.trees} for u in ulist] for ulist in core.units]}
        return ManifestSection(
            kind="bdt", multipliers=0, layers=[], summary={"forest": forest},
            input={"types": [str(t) for t in qf.input_types]},
            output={"classes": qf.n_outputs, "class_index": qf.n_outputs if qf.class_output else None},
            regmap=regmap_for(qf))

    def build_figures(self, manifest: dict) -> str:
        f = manifest["forest"]
        kinds = [u["kind"] for units in f["units"] for u in units]
        stored = [f"{name} {f[name + '_storage']}" for name in ("threshold", "leaf")
                  if f[name + "_storage"] != "constant"]
        return (f"{f['trees']} trees, {f['comparators']} comparators, "
                f"{kinds.count('table')} leaf-sum tables, {kinds.count('mux')} multiplexer trees"
                + (f"; {', '.join(stored)} storage on a configuration bus (regmap.md)" if stored else ""))

    # -- inputs, golden model, outputs -------------------------------------

    def input_codes(self, qmodel, values, raw: bool) -> np.ndarray:
        return check_codes(qmodel, values) if raw else quantize_inputs(qmodel, values)

    def predict_codes(self, qmodel, codes) -> np.ndarray:
        return predict_codes(qmodel, codes)

    def output_values(self, qmodel, codes, raw: bool) -> np.ndarray:
        return np.asarray(codes) if raw else outputs_as_values(qmodel, codes)

    def sensitivity_model(self, model_path, config):
        """The quantized forest, both sets analysed as stored whatever the configured storage, and the
        module that analyses its bit-flip sensitivity (``tmr-analysis``)."""
        _need_config(config)
        cfg = forest_sensitivity.stored_config(load_config(config))
        return quantize_forest(load_forest(model_path), cfg), forest_sensitivity


def _need_config(config) -> None:
    if config is None:
        raise RtlgenError("a decision forest needs a configuration (--config/-c): its input, threshold "
                          "and score types come from there")
