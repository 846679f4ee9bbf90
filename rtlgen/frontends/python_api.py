"""Build float models from numpy arrays, without a model file.

Example::

    from rtlgen.frontends.python_api import mlp
    model = mlp([W1, W2], [b1, b2], activations="relu")   # W: [n_in, n_out]

gives the layers ``dense_0``, ``relu_0``, ``dense_1``: a ReLU after every
layer but the last.  Weight matrices are ``[n_in, n_out]`` (``y = x @ W + b``)
by default; pass ``layout="out_in"`` for PyTorch's ``nn.Linear.weight``
layout ``[n_out, n_in]``.

Every shape problem raises :class:`~rtlgen.errors.RtlgenError`.
"""

from __future__ import annotations

import numpy as np

from ..errors import RtlgenError
from ..ir.config_file import key_list
from ..ir.model import ACTIVATIONS, Activation, Dense, FloatModel

__all__ = ["mlp", "from_layers", "dense", "activation"]

LAYOUTS = ("in_out", "out_in")


def _matrix(w, layout: str, where: str) -> np.ndarray:
    if layout not in LAYOUTS:
        raise RtlgenError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    try:
        arr = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise RtlgenError(f"{where}: the weight must be a numeric 2-D array") from None
    if arr.ndim != 2 or 0 in arr.shape:
        raise RtlgenError(f"{where}: the weight must be a non-empty 2-D array "
                          f"({'[n_out, n_in]' if layout == 'out_in' else '[n_in, n_out]'}), "
                          f"got shape {list(arr.shape)}")
    if layout == "out_in":
        arr = arr.T
    return np.ascontiguousarray(arr)


def _vector(b, n_out: int, where: str) -> np.ndarray:
    if b is None:
        return np.zeros(n_out, dtype=np.float64)
    try:
        arr = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):
        raise RtlgenError(f"{where}: the bias must be a numeric 1-D array") from None
    if arr.ndim == 0:
        arr = np.full(n_out, float(arr))
    if arr.ndim != 1 or arr.shape[0] != n_out:
        raise RtlgenError(f"{where}: the bias must have shape [{n_out}] (one per output), "
                          f"got {list(arr.shape)}")
    return arr.copy()


def dense(weight, bias=None, name=None, layout: str = "in_out") -> Dense:
    """One dense layer; ``weight`` is ``[n_in, n_out]`` (or ``[n_out, n_in]`` with ``layout='out_in'``)."""
    where = f"layer {name!r}" if name else "dense layer"
    w = _matrix(weight, layout, where)
    return Dense(name=name or "", weight=w, bias=_vector(bias, w.shape[1], where))


def activation(kind: str, name=None, slope=None, bounds=None) -> Activation:
    """One element-wise activation (:data:`~rtlgen.ir.model.ACTIVATIONS`): ``leaky_relu`` and
    ``prelu`` take ``slope`` (one value, or one per channel), ``clip`` takes ``bounds=(lo, hi)``."""
    if not isinstance(kind, str) or kind.lower() not in ACTIVATIONS:
        raise RtlgenError(f"unknown activation {kind!r}: use one of {', '.join(ACTIVATIONS)}")
    kind = kind.lower()
    if kind in ("leaky_relu", "prelu") and slope is None:
        raise RtlgenError(f"activation {kind!r} needs its slope: activation({kind!r}, slope=...)")
    if kind == "clip" and bounds is None:
        raise RtlgenError("activation 'clip' needs its bounds: activation('clip', bounds=(lo, hi))")
    return Activation(name=name or "", kind=kind,
                      slope=None if slope is None else np.asarray(slope, dtype=np.float64).reshape(-1),
                      bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])))


def _finish(layers: list, n_in, name: str) -> FloatModel:
    """Name unnamed layers, check the chain and fill activation sizes."""
    if not layers:
        raise RtlgenError("a model needs at least one layer")
    dense_count = 0
    auto = []
    for layer in layers:
        if isinstance(layer, Dense):
            auto.append(f"dense_{dense_count}")
            dense_count += 1
        else:
            auto.append(f"{layer.kind}_{max(dense_count - 1, 0)}")
    used = {layer.name for layer in layers if layer.name}
    named = []
    for layer, base in zip(layers, auto):
        if not layer.name:
            cand, k = base, 1
            while cand in used:
                cand = f"{base}_{k}"
                k += 1
            layer.name = cand
            used.add(cand)
        named.append(layer.name)
    dupes = sorted({str(n) for n in named if named.count(n) > 1})
    if dupes:
        raise RtlgenError(f"layer names must be unique; repeated: {', '.join(dupes)}")

    first_dense = next((layer for layer in layers if isinstance(layer, Dense)), None)
    if n_in is None:
        if first_dense is None:
            raise RtlgenError("n_in is needed when the model has no dense layer")
        n_in = first_dense.n_in
    if isinstance(n_in, bool) or not isinstance(n_in, (int, np.integer)) or n_in < 1:
        raise RtlgenError(f"n_in must be a positive integer, got {n_in!r}")
    size = int(n_in)
    for layer in layers:
        if isinstance(layer, Dense):
            if layer.n_in != size:
                raise RtlgenError(f"layer {layer.name!r}: shape mismatch: the weight expects "
                                  f"{layer.n_in} inputs but the previous layer gives {size}")
            if not (np.isfinite(layer.weight).all() and np.isfinite(layer.bias).all()):
                raise RtlgenError(f"layer {layer.name!r}: the weights or bias contain NaN or inf")
            size = layer.n_out
        else:
            layer.size = size
    return FloatModel(name=name, n_in=int(n_in), layers=layers)


def mlp(weights, biases=None, activations="relu", n_in=None, name: str = "mlp",
        layout: str = "in_out") -> FloatModel:
    """A multi-layer perceptron from weight matrices and bias vectors.

    ``weights``
        list of 2-D arrays, ``[n_in, n_out]`` each (``[n_out, n_in]`` with
        ``layout="out_in"``).
    ``biases``
        list of 1-D arrays (``None`` entries, or ``biases=None``, mean zero).
    ``activations``
        ``"relu"`` or ``"linear"`` puts that activation after every layer
        but the last; ``None`` puts none; a list with one entry per layer
        (``"relu"``, ``"linear"`` or ``None``) places them explicitly.
    ``n_in``
        optional input size, checked against the first weight.

    Layers are named ``dense_<k>`` and ``<activation>_<k>`` after dense
    layer ``k``.
    """
    if isinstance(weights, np.ndarray) and weights.ndim == 2:
        weights = [weights]
    weights = list(weights)
    if not weights:
        raise RtlgenError("mlp() needs at least one weight matrix")
    count = len(weights)
    if biases is None:
        biases = [None] * count
    biases = list(biases)
    if len(biases) != count:
        raise RtlgenError(f"mlp(): {count} weight matrices but {len(biases)} biases")
    if activations is None or isinstance(activations, str):
        acts = [activations] * (count - 1) + [None]
    else:
        acts = list(activations)
        if len(acts) != count:
            raise RtlgenError(f"mlp(): 'activations' lists {len(acts)} entries for {count} layers")
    layers = []
    for k, (w, b, act) in enumerate(zip(weights, biases, acts)):
        layers.append(dense(w, b, name=f"dense_{k}", layout=layout))
        if act is not None:
            layers.append(activation(act, name=f"{str(act).lower()}_{k}"))
    return _finish(layers, n_in, name)


def from_layers(layers, n_in=None, name: str = "model", layout: str = "in_out") -> FloatModel:
    """A model from a list of layer descriptions, in order.

    Each item may be a :class:`~rtlgen.ir.model.Dense` or
    :class:`~rtlgen.ir.model.Activation`, an activation name (``"relu"``,
    ``"linear"``), a weight array, a ``(weight, bias)`` tuple, or a dict
    ``{"weight": W, "bias": b, "name": ...}`` / ``{"activation": "relu",
    "name": ...}``.  Weights follow ``layout``; unnamed layers get
    ``dense_<k>`` / ``<activation>_<k>`` names.
    """
    out = []
    for pos, item in enumerate(layers):
        if isinstance(item, Dense):
            out.append(dense(item.weight, item.bias, name=item.name or None))
        elif isinstance(item, Activation):
            out.append(activation(item.kind, name=item.name or None, slope=item.slope, bounds=item.bounds))
        elif isinstance(item, str):
            out.append(activation(item))
        elif isinstance(item, dict):
            extra = set(item) - {"weight", "bias", "name", "activation", "slope", "bounds"}
            if extra or ("weight" in item) == ("activation" in item):
                raise RtlgenError(f"layer {pos}: a dict needs either 'weight' (and optional 'bias', "
                                  f"'name') or 'activation' (and optional 'name'); got keys {key_list(item)}")
            if "weight" in item:
                out.append(dense(item["weight"], item.get("bias"), name=item.get("name"), layout=layout))
            else:
                out.append(activation(item["activation"], name=item.get("name"), slope=item.get("slope"),
                                      bounds=item.get("bounds")))
        elif isinstance(item, tuple):
            if not 1 <= len(item) <= 2:
                raise RtlgenError(f"layer {pos}: a tuple must be (weight,) or (weight, bias)")
            out.append(dense(item[0], item[1] if len(item) > 1 else None, layout=layout))
        else:
            try:
                arr = np.asarray(item, dtype=np.float64)
            except (TypeError, ValueError):
                arr = None
            if arr is None or arr.ndim != 2:
                raise RtlgenError(f"layer {pos}: cannot make a layer from {type(item).__name__}; "
                                  "give a weight matrix, (weight, bias), an activation name or a dict")
            out.append(dense(arr, None, layout=layout))
    return _finish(out, n_in, name)
