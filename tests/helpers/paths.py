"""Where things are: the repository, its example models and the test fixtures.

Tests use these instead of paths relative to their own file, so a test
module works from any folder under ``tests/``.
"""

from __future__ import annotations

from pathlib import Path

#: the repository (the folder holding ``pyproject.toml``)
ROOT = Path(__file__).resolve().parents[2]
#: the example models and their configurations
MODELS = ROOT / "models"
#: models and reference data made for the tests (``scripts/make_models.py``)
FIXTURES = ROOT / "tests" / "fixtures"

#: the small MLP fixture (6 inputs) written by the TorchScript ONNX exporter
TINY = FIXTURES / "tiny_torchscript.onnx"
JET = MODELS / "jet_mlp.onnx"
JET_CFG = MODELS / "jet_mlp.yaml"
ECONT = MODELS / "econt_encoder.onnx"
ECONT_CFG = MODELS / "econt_encoder.yaml"
