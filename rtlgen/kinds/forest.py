"""The ``forest`` core kind: boosted decision trees and random forests (xgboost, LightGBM,
scikit-learn, conifer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..emit.forest_build import load_forest_build, save_forest_build
from ..frontends.trees import FOREST_SUFFIXES, load_forest
from ..golden.forest import check_codes, outputs_as_values, predict_codes, quantize_inputs
from ..ir.config import load_config
from ..ir.forest_config import quantize_forest

__all__ = ["ForestKind"]


class ForestKind:
    """Decision forests: manifest kind ``bdt``."""

    name = "forest"
    manifest_kinds = ("bdt",)

    def accepts_model_file(self, path) -> bool:
        return Path(str(path)).suffix.lower() in FOREST_SUFFIXES

    def quantized_model(self, model_path, config):
        cfg = load_config(config)
        return quantize_forest(load_forest(model_path), cfg)

    def save_build(self, qmodel, outdir, top=None) -> dict:
        return save_forest_build(qmodel, outdir, top=top)

    def build_message(self, manifest: dict, outdir) -> str:
        f = manifest["forest"]
        kinds = [u["kind"] for units in f["units"] for u in units]
        stored = [f"{name} {f[name + '_storage']}" for name in ("threshold", "leaf")
                  if f[name + "_storage"] != "constant"]
        return (f"wrote {Path(outdir) / manifest['verilog']}: latency {manifest['latency']} cycles, "
                f"II {manifest['ii']}, {f['trees']} trees, {f['comparators']} comparators, "
                f"{kinds.count('table')} leaf-sum tables, {kinds.count('mux')} multiplexer trees"
                + (f"; {', '.join(stored)} storage on a configuration bus (regmap.md)" if stored else ""))

    def load_build(self, outdir):
        return load_forest_build(outdir)

    def input_codes(self, qmodel, values, raw: bool) -> np.ndarray:
        return check_codes(qmodel, values) if raw else quantize_inputs(qmodel, values)

    def predict_codes(self, qmodel, codes) -> np.ndarray:
        return predict_codes(qmodel, codes)

    def output_values(self, qmodel, codes, raw: bool) -> np.ndarray:
        return np.asarray(codes) if raw else outputs_as_values(qmodel, codes)

    def sensitivity_model(self, model_path, config):
        """The quantized forest, both sets analysed as stored whatever the configured storage, and the
        module that analyses its bit-flip sensitivity (``tmr-analysis``)."""
        from ..analysis import forest_sensitivity
        cfg = forest_sensitivity.stored_config(load_config(config))
        return quantize_forest(load_forest(model_path), cfg), forest_sensitivity
