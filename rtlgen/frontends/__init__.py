"""Front ends: model files and Python objects to the float IR.

:func:`load_model` picks the reader by file suffix.  Supported formats:

``.onnx``
    ONNX (:func:`rtlgen.frontends.onnx.load_onnx`).

A :class:`~rtlgen.ir.model.FloatModel` or an ``onnx.ModelProto`` is accepted
as is.  Decision forests (xgboost, LightGBM, scikit-learn, conifer) are read
by :func:`load_forest` (:mod:`rtlgen.frontends.trees`).  Networks can also be built from numpy arrays with
:mod:`rtlgen.frontends.python_api`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import RtlgenError
from ..ir.model import FloatModel
from .onnx import load_onnx as _load_onnx
from .python_api import from_layers, mlp
from .trees import load_forest as _load_forest

__all__ = ["load_model", "load_onnx", "load_forest", "mlp", "from_layers", "SUPPORTED_FORMATS"]

#: file suffix -> description
SUPPORTED_FORMATS = {".onnx": "ONNX"}


def load_onnx(source, name=None) -> FloatModel:
    """Read an ONNX model; see :func:`rtlgen.frontends.onnx.load_onnx`."""
    return _load_onnx(source, name=name)


def load_forest(source, name=None):
    """Read a decision forest; see :func:`rtlgen.frontends.trees.load_forest`."""
    return _load_forest(source, name=name)


def _formats() -> str:
    return ", ".join(f"{suffix} ({desc})" for suffix, desc in SUPPORTED_FORMATS.items())


def load_model(path_or_obj, name=None) -> FloatModel:
    """Load a model from a file path (by suffix) or accept an in-memory model.

    ``name`` overrides the model name (default: the file stem).
    """
    if isinstance(path_or_obj, FloatModel):
        if name:
            return replace(path_or_obj, name=name, layers=list(path_or_obj.layers))
        return path_or_obj
    if isinstance(path_or_obj, (str, Path)):
        path = Path(path_or_obj)
        suffix = path.suffix.lower()
        if not path.exists():
            raise RtlgenError(f"cannot read model file {path}: no such file")
        if not path.is_file():
            raise RtlgenError(f"cannot read model file {path}: not a regular file")
        if suffix == ".onnx":
            return load_onnx(path, name=name)
        shown = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise RtlgenError(f"model file {path}: unsupported format ({shown}); supported formats: {_formats()}")
    try:   # imported late: onnx is slow to import and only an in-memory ModelProto needs it here
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        onnx = None
    if onnx is not None and isinstance(path_or_obj, onnx.ModelProto):
        return load_onnx(path_or_obj, name=name)
    raise RtlgenError(f"cannot load a model from a {type(path_or_obj).__name__}: pass a file path "
                      f"(supported formats: {_formats()}), an onnx.ModelProto or a FloatModel")
