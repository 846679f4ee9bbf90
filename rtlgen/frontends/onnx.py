"""ONNX front end: dense, convolutional and activation layers, in a chain or a DAG, to the float IR.

:func:`load_onnx` reads the ONNX written by ``torch.onnx.export`` (both the
TorchScript exporter, ``dynamo=False``, and the ``torch.export`` based one,
``dynamo=True``) for an ``nn.Sequential`` of ``Linear``, ``ReLU``,
``Flatten`` and ``Identity`` modules, and hand-written graphs of the same
shape.

Supported graphs have one input of shape ``[batch, n]`` (``batch`` may be
symbolic) or ``[n]``, one output, and nodes from the input to the output:
a chain, or branches that join again in an ``Add`` or a ``Concat``.  The
nodes are read in the graph's (topological) order; every node computed
from the input must lead to the output.  These operators are understood:

``Gemm``
    ``alpha * A @ B' + beta * C`` with the data as ``A`` (``transA = 0``), a
    constant ``B`` (``transB`` 0 or 1) and an optional constant ``C`` that
    broadcasts over the batch; becomes one :class:`~rtlgen.ir.model.Dense`.
``MatMul``
    data times a constant ``[n_in, n_out]`` matrix; a dense layer with a
    zero bias.
``Add``
    of a constant directly after a ``Gemm``/``MatMul``, a ``Conv`` (one
    value per channel) or a ``Mul`` by a constant: folded into that layer's
    bias (so ``MatMul`` + ``Add`` is one dense layer named after the
    ``MatMul`` node).
``Mul`` by a constant
    one value, or one per channel (per feature of a flat vector): a
    per-channel layer as for a ``BatchNormalization`` below (Brevitas'
    ``BatchNorm2dToQuantScaleBias`` exports as such a ``Mul`` and ``Add``).
``Relu``, ``LeakyRelu``, ``PRelu``, ``Clip``, ``Sigmoid``, ``Tanh``
    an :class:`~rtlgen.ir.model.Activation` of kind ``relu``, ``leaky_relu``
    (its ``alpha``), ``prelu`` (a constant slope: one, or one per channel),
    ``clip`` (constant ``min``/``max`` inputs, or attributes before opset
    11), ``sigmoid``, ``tanh``.
``Mul(x, x)``, ``Pow(x, 2)``
    an ``Activation`` of kind ``square``.
``ReduceSum``
    over the features of a flat vector: a :class:`~rtlgen.ir.model.Dense`
    of ones into one output (weights and bias typed exactly).
``Softmax``, ``ArgMax``
    over the features (the last axis) of a flat vector: an ``Activation``
    of kind ``softmax`` or ``argmax`` (:mod:`rtlgen.ir.softmax`).
``Flatten``, ``Identity``, ``Reshape`` to ``[batch, -1]``/``[1, n]``, ``Cast`` between float types
    no-ops on a flat vector.

Convolutional models take an input ``[batch, C, H, W]`` or ``[batch, C, L]``
(fixed C, H, W, L), which the core receives flattened in C,H,W order:

``Conv``
    a :class:`~rtlgen.ir.conv.Conv` (1-D or 2-D, any kernel and stride,
    explicit ``pads`` or ``auto_pad`` ``NOTSET``/``VALID``/``SAME_UPPER``/
    ``SAME_LOWER``, optional bias); ``dilations`` must be 1.  A grouped or
    depthwise convolution (``group`` > 1) becomes the full kernel with zeros
    outside each output channel's group.
``MaxPool``, ``AveragePool``
    a :class:`~rtlgen.ir.conv.Pool` (same padding rules, ``ceil_mode`` 0,
    ``dilations`` 1, one output; ``count_include_pad`` is kept).
``BatchNormalization``
    (inference form) directly after a ``Conv`` or ``Gemm``/``MatMul``:
    folded into that layer's weights and bias.  Anywhere else, or after a
    layer whose weights or result the model quantizes, a per-channel
    multiply-add layer of its own (a diagonal dense layer, or a 1x1
    convolution with one tap per channel on a feature map).
``Pad``
    constant mode with the value 0 (absent or 0), pads given as an input
    (opset 11 and later) or as an attribute (earlier opsets), padding only
    the spatial axes, directly before a ``Conv`` or an ``AveragePool``:
    folded into that node's pads (the pool then counts the padding in its
    window size, as ONNX does for the zeros of a ``Pad``).  All-zero pads are
    a no-op anywhere.  Other modes (``reflect``, ``edge``, ``wrap``), nonzero
    values, negative pads (cropping), padding of the batch or channel axis
    and a ``Pad`` before any other operator (``MaxPool`` included: ONNX
    pooling padding never wins, zeros can) are errors.
``Flatten`` (axis 1), ``Reshape`` to ``[batch, -1]``
    turn the feature map into the flat vector (no hardware: the order is
    already C,H,W).

Where branches join (:mod:`rtlgen.ir.merge`; the model's ``sources`` say
which layers each layer reads):

``Add`` of two computed tensors
    of the same shape (a residual connection): a :class:`~rtlgen.ir.merge.Merge`
    of kind ``add``.
``Concat`` of computed tensors
    along axis 1 (the features of a flat vector, the channels of feature
    maps of equal spatial size): a ``Merge`` of kind ``concat``.

A tensor that feeds several nodes is never changed by one of them: a
``BatchNormalization`` after it is a layer of its own (not folded into the
layer that computed it), a quantizer after it becomes a ``linear`` layer of
its own, and adding a constant to it is an error.

Quantization-aware models (QONNX ``Quant``/``BipolarQuant``/``Trunc``, ONNX
``QuantizeLinear``/``DequantizeLinear``): a quantizer on a weight or bias
gives that layer's ``weight``/``bias`` type, one on the data path the input
type or the result type of the layer before it (or, if that layer has one
already, a ``linear`` activation casting to it); see
:mod:`rtlgen.frontends.quantizers`.  The layers keep these in ``types``.

Weights (and a ``Pad``'s pads) come from initializers or ``Constant`` nodes
(constant sub-graphs of ``Identity``, ``Cast``, ``Transpose``, ``Reshape``,
``Flatten``, ``Squeeze``, ``Unsqueeze``, ``ConstantOfShape``, ``Concat`` and
``Slice`` are evaluated).  Tensors stored as external
data are read from beside the model file.

Layer names are the ONNX node names (a node without a name is called
``<OpType>_<index>``, its position in the graph); they key the per-layer
configuration.  Every problem raises :class:`~rtlgen.errors.RtlgenError`
naming the node and its operator.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import RtlgenError
from ..ir.conv import Conv, Pool
from ..ir.merge import Merge
from ..ir.model import Activation, Dense, FloatModel
from ..numerics.fixed import FixedType
from .quantizers import QUANT_OPS, apply_quantizer, read_quantizer

__all__ = ["load_onnx", "SUPPORTED_OPS"]

#: Operators allowed on the data path.
#: element-wise activations other than Relu, and the activation kind each becomes
_ACTIVATION_OPS = {"LeakyRelu": "leaky_relu", "PRelu": "prelu", "Clip": "clip", "Sigmoid": "sigmoid",
                   "Tanh": "tanh", "Softmax": "softmax", "ArgMax": "argmax"}
SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Relu", "Flatten", "Identity", "Reshape", "Cast", "Constant",
                 "Conv", "MaxPool", "AveragePool", "BatchNormalization", "Pad", "Mul", "Pow", "ReduceSum") \
    + tuple(_ACTIVATION_OPS) + QUANT_OPS
_SPATIAL_OPS = ("Conv", "MaxPool", "AveragePool")

#: Operators evaluated when all their inputs are constants (weight preprocessing).
_CONST_OPS = ("Constant", "Identity", "Cast", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
              "ConstantOfShape", "Concat", "Slice") + QUANT_OPS
#: Constant operators that keep the values (and so the quantizer type) of their first input.
_TYPE_KEEPING_OPS = ("Identity", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
#: Operators that may sit between a folded ``Pad`` and its Conv/AveragePool.
_PAD_PASS_OPS = ("Identity", "Cast", "Pad")


def _onnx():
    try:   # imported late: onnx is slow to import and only reading an ONNX model needs it
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise RtlgenError("reading ONNX models needs the 'onnx' package: pip install onnx") from None
    return onnx


def _float_types(onnx) -> set:
    tp = onnx.TensorProto
    return {tp.FLOAT, tp.DOUBLE, tp.FLOAT16, tp.BFLOAT16}


def _read_model(source):
    """Return ``(ModelProto, default name)``; errors name the file."""
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        return source, (source.graph.name or "model")
    if not isinstance(source, (str, Path)):
        raise RtlgenError(f"expected an ONNX file path or an onnx.ModelProto, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise RtlgenError(f"cannot read model file {path}: no such file")
    if not path.is_file():
        raise RtlgenError(f"cannot read model file {path}: not a regular file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except OSError as exc:
        raise RtlgenError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise RtlgenError(f"model file {path} is not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.HasField("graph") or not (len(model.graph.node) or len(model.graph.input)):
        raise RtlgenError(f"model file {path} is not a valid ONNX model: it holds no graph")
    try:   # onnx, imported late (see _onnx)
        from onnx.external_data_helper import load_external_data_for_model
        load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise RtlgenError(
            f"model file {path}: cannot read its external weight data ({type(exc).__name__}: {exc}); "
            "keep the data file next to the .onnx file") from None
    return model, path.stem


class _Graph:
    """Index of one ONNX graph: producers, consumers and constant folding."""

    def __init__(self, graph, onnx):
        self.onnx = onnx
        from onnx import numpy_helper  # imported late (see _onnx)
        self.numpy_helper = numpy_helper
        self.graph = graph
        self.names = self._node_names(graph)
        self.producer = {}
        self.consumers = {}
        for index, node in enumerate(graph.node):
            for out in node.output:
                if out:
                    self.producer[out] = index
            for inp in node.input:
                if inp:
                    self.consumers.setdefault(inp, []).append(index)
        self.initializers = {t.name: t for t in graph.initializer}
        self.data_tensors = set()
        self._const_cache = {}
        self._visiting = set()
        #: the fixed-point type of each constant a quantizer node produced
        self.const_types = {}

    @staticmethod
    def _node_names(graph) -> list:
        names, used = [], set()
        explicit = {node.name for node in graph.node if node.name}
        for index, node in enumerate(graph.node):
            base = node.name or f"{node.op_type}_{index}"
            name = base
            k = 1
            # a generated name must not steal an explicit one; duplicates get a suffix
            while name in used or (not node.name and name in explicit):
                name = f"{base}_{k}"
                k += 1
            used.add(name)
            names.append(name)
        return names

    def mark_data(self, source: str) -> None:
        """Record every tensor computed from ``source`` (the graph input)."""
        todo = [source]
        while todo:
            name = todo.pop()
            if name in self.data_tensors:
                continue
            self.data_tensors.add(name)
            for index in self.consumers.get(name, []):
                todo.extend(o for o in self.graph.node[index].output if o)

    def leads_to(self, output: str) -> set:
        """The data tensors from which ``output`` is computed (``output`` included)."""
        live, todo = set(), [output]
        while todo:
            name = todo.pop()
            if name in live or name not in self.data_tensors:
                continue
            live.add(name)
            index = self.producer.get(name)
            if index is not None:
                todo.extend(t for t in self.graph.node[index].input if t)
        return live

    def where(self, index: int) -> str:
        node = self.graph.node[index]
        return f"node {self.names[index]!r} ({node.op_type})"

    # -- constants -----------------------------------------------------------

    def is_const(self, name: str) -> bool:
        if not name:
            return False
        if name in self.initializers:
            return True
        index = self.producer.get(name)
        if index is None:
            return False
        node = self.graph.node[index]
        if node.op_type not in _CONST_OPS or name in self._visiting:
            return False
        self._visiting.add(name)
        try:
            return all(self.is_const(i) for i in node.input if i)
        finally:
            self._visiting.discard(name)

    def const(self, name: str, user: str) -> np.ndarray:
        """The value of a constant tensor, as float64 (or int64 for shapes)."""
        if name in self._const_cache:
            return self._const_cache[name]
        if name in self.initializers:
            value = self._tensor(self.initializers[name], f"initializer {name!r} used by {user}")
        else:
            index = self.producer.get(name)
            if index is None:
                raise RtlgenError(
                    f"{user}: input {name!r} must be a constant (an initializer or a Constant node) "
                    "but it is a graph input; rtlgen supports one data input")
            node = self.graph.node[index]
            if node.op_type not in _CONST_OPS:
                raise RtlgenError(
                    f"{user}: its input {name!r} comes from {self.where(index)}, which is not supported "
                    f"for computing weights; supported ops: {', '.join(SUPPORTED_OPS)}")
            if name in self._visiting:
                raise RtlgenError(f"{user}: the graph has a cycle through {name!r}")
            self._visiting.add(name)
            try:
                value = self._eval(index)
            finally:
                self._visiting.discard(name)
        self._const_cache[name] = value
        return value

    def const_type(self, name: str):
        """The quantizer type of a constant tensor (through value-keeping ops), or None."""
        seen = set()
        while name and name not in seen:
            seen.add(name)
            if name in self.const_types:
                return self.const_types[name]
            index = self.producer.get(name)
            if index is None:
                return None
            node = self.graph.node[index]
            if node.op_type == "Cast" and self._attr(node, "to") in _float_types(self.onnx):
                name = node.input[0]
            elif node.op_type in _TYPE_KEEPING_OPS:
                name = node.input[0]
            else:
                return None
        return None

    def _tensor(self, tensor, what: str) -> np.ndarray:
        try:
            arr = self.numpy_helper.to_array(tensor)
        except Exception as exc:
            raise RtlgenError(f"cannot read {what}: {type(exc).__name__}: {exc}") from None
        return _as_number_array(arr, what)

    def _attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def _eval(self, index: int) -> np.ndarray:
        node = self.graph.node[index]
        where = self.where(index)
        op = node.op_type
        if op == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return self._tensor(a.t, where)
                if a.name in ("value_float", "value_int"):
                    return np.asarray(self.onnx.helper.get_attribute_value(a),
                                      dtype=np.float64 if a.name == "value_float" else np.int64)
                if a.name in ("value_floats", "value_ints"):
                    return np.asarray(list(self.onnx.helper.get_attribute_value(a)),
                                      dtype=np.float64 if a.name == "value_floats" else np.int64)
            raise RtlgenError(f"{where}: only Constant nodes holding a tensor or numbers are supported")
        if op in QUANT_OPS:
            return self._eval_quant(index)
        args = [self.const(i, where) if i else None for i in node.input]
        try:
            if op == "Identity":
                return args[0]
            if op == "Cast":
                if self._attr(node, "to") in _float_types(self.onnx):
                    return np.asarray(args[0], dtype=np.float64)
                if self._attr(node, "to") == self.onnx.TensorProto.BOOL:
                    return (np.asarray(args[0]) != 0).astype(np.int64)
                x = np.asarray(args[0])
                return x.astype(np.int64) if np.issubdtype(x.dtype, np.integer) else np.trunc(x).astype(np.int64)
            if op == "ConstantOfShape":
                shape = [int(v) for v in np.asarray(args[0]).reshape(-1)]
                value = self._attr(node, "value")
                fill = (_as_number_array(self.numpy_helper.to_array(value), where).reshape(-1)
                        if value is not None else np.zeros(1))
                return np.full(shape, fill[0], dtype=fill.dtype)
            if op == "Concat":
                return np.concatenate([a for a in args if a is not None], axis=int(self._attr(node, "axis")))
            if op == "Slice":
                return self._slice(node, args)
            if op == "Transpose":
                perm = self._attr(node, "perm")
                return np.transpose(args[0], None if perm is None else list(perm))
            if op == "Reshape":
                shape = [int(s) for s in np.asarray(args[1]).reshape(-1)]
                if not self._attr(node, "allowzero", 0):
                    shape = [args[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
                return np.reshape(args[0], shape)
            if op == "Flatten":
                axis = int(self._attr(node, "axis", 1))
                x = args[0]
                axis = axis + x.ndim if axis < 0 else axis
                return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
            if op in ("Squeeze", "Unsqueeze"):
                axes = self._attr(node, "axes")
                if axes is None and len(args) > 1 and args[1] is not None:
                    axes = [int(a) for a in np.asarray(args[1]).reshape(-1)]
                if op == "Squeeze":
                    return np.squeeze(args[0], axis=None if axes is None else tuple(axes))
                x = args[0]
                out_rank = x.ndim + len(axes)
                for a in sorted(a + out_rank if a < 0 else a for a in axes):
                    x = np.expand_dims(x, a)
                return x
        except RtlgenError:
            raise
        except Exception as exc:
            raise RtlgenError(f"{where}: cannot evaluate this constant expression ({exc})") from None
        raise AssertionError(op)  # pragma: no cover

    def _eval_quant(self, index: int) -> np.ndarray:
        """A quantizer node on a constant: the exact quantized values (their type is recorded)."""
        node = self.graph.node[index]
        where = self.where(index)
        q = read_quantizer(self, index, lambda name: self.const(name, where))
        x = self.const(node.input[0], where)
        if node.op_type == "DequantizeLinear":
            codes = np.asarray(x, dtype=np.float64)
            axis = self._attr(node, "axis", 1)
            if q.exponents.ndim == 1 and q.exponents.size > 1:    # per-axis scale
                shape = [1] * codes.ndim
                shape[axis + codes.ndim if axis < 0 else axis] = q.exponents.size
                q.exponents = q.exponents.reshape(shape)
            values = codes * np.power(2.0, np.broadcast_to(q.exponents, codes.shape))
            self.const_types[node.output[0]] = q.tensor_type()
            return values
        values, typ = apply_quantizer(q, x)
        if node.op_type == "QuantizeLinear":     # integer codes; the DequantizeLinear after it gives the values
            return values * np.power(2.0, -np.broadcast_to(q.exponents, values.shape))
        self.const_types[node.output[0]] = typ
        return values

    def _slice(self, node, args) -> np.ndarray:
        x = args[0]
        if len(args) > 1:   # opset 10 and later: starts, ends, axes, steps as inputs
            def ints(k):
                return None if len(args) <= k or args[k] is None else \
                    [int(v) for v in np.asarray(args[k]).reshape(-1)]
            starts, ends, axes, steps = ints(1), ints(2), ints(3), ints(4)
        else:
            starts, ends, axes = (self._attr(node, "starts"), self._attr(node, "ends"),
                                  self._attr(node, "axes"))
            steps = None
        axes = list(range(len(starts))) if axes is None else list(axes)
        steps = [1] * len(starts) if steps is None else steps
        index = [slice(None)] * x.ndim
        for a, b, e, st in zip(axes, starts, ends, steps):
            index[a + x.ndim if a < 0 else a] = slice(int(b), int(e), int(st))
        return x[tuple(index)]


def _as_number_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64)
    try:
        return arr.astype(np.float64)   # float16/bfloat16 extension types
    except (TypeError, ValueError):
        raise RtlgenError(f"{what}: unsupported tensor element type {arr.dtype}") from None


def _dims(value_info) -> list:
    """Static dims as ints, symbolic/unknown dims as None."""
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in t.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else None)
    return dims


def _check_finite(arr: np.ndarray, where: str, what: str) -> None:
    if not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise RtlgenError(f"{where}: the {what} contains a NaN or inf value at index {bad}; "
                          "retrain or clean the model")


class _Walker:
    """Follows the data path and builds the layer list."""

    def __init__(self, g: _Graph, n: int, rank: int, batch, shape=None):
        self.g = g
        self.n = n            # elements of the flat feature vector
        self.rank = rank      # 1 for [n], 2 for [batch, n]
        self.batch = batch    # static batch size, or None
        self.shape = shape    # (C, H, W) / (C, L) while the data is a feature map, else None
        self.layers = []
        self.sources = []       # per layer: the layers it reads (-1: the input), see LayerGraph
        self.last_dense = None  # the Dense (or Conv) whose output is the current tensor
        self.pending_pad = None  # (Pad node index, spatial pads) waiting for its Conv/AveragePool
        self.input_type = None  # the type of a quantizer on the graph input
        self.pending_q = None   # (QuantizeLinear node index, its Quantizer) waiting for its DequantizeLinear
        self.source = -1        # the layer whose output the current tensor is (-1: the input)
        self.shared = False     # other nodes read that output too: nothing may change its producer

    #: what the walker knows about the current tensor (saved per tensor, restored to walk on from it)
    STATE = ("n", "rank", "batch", "shape", "last_dense", "pending_pad", "pending_q", "source", "shared")

    def save(self) -> dict:
        return {key: getattr(self, key) for key in self.STATE}

    def load(self, state: dict, fanout: bool, tensor: str) -> None:
        """Walk on from ``tensor`` (its saved ``state``); ``fanout``: other nodes read it too.  A tensor
        that is the same layer output as a shared one (through Identity, Flatten, ...) is shared too."""
        for key in self.STATE:
            setattr(self, key, state[key])
        self.shared = self.shared or fanout
        if self.shared:
            self.last_dense = None   # folding a bias or a BatchNorm would change the other readers' input
            if self.pending_pad is not None:
                self._unfoldable_pad(f"its output {tensor!r} feeds several nodes")
            if self.pending_q is not None:
                raise RtlgenError(f"{self.g.where(self.pending_q[0])}: its output {tensor!r} feeds several "
                                  "nodes; a QuantizeLinear on the data path must be followed by its "
                                  "DequantizeLinear only")

    def walk(self, index: int, cur: str) -> None:
        """:meth:`step` through node ``index`` from the tensor ``cur``, recording what the new layers read."""
        before = len(self.layers)
        self.step(index, cur)
        for k in range(before, len(self.layers)):
            self.sources.append((self.source,) if k == before else (k - 1,))
        if len(self.layers) > before:
            self.source = len(self.layers) - 1
            self.shared = False

    def merge(self, index: int, inputs: list, states: dict) -> None:
        """An ``Add`` of two computed tensors or a ``Concat`` of computed tensors (:mod:`rtlgen.ir.merge`)."""
        g = self.g
        node = g.graph.node[index]
        op = node.op_type
        where = g.where(index)
        name = g.names[index]
        const = [t for t in node.input if t and t not in g.data_tensors]
        if const:
            raise RtlgenError(f"{where} joins computed tensors with the constant {const[0]!r}; not supported")
        ins = [states[t] for t in node.input if t]
        for t, st in zip(node.input, ins):
            if st["pending_pad"] is not None or st["pending_q"] is not None:
                self.load(st, True, t)   # raises: names the Pad or QuantizeLinear
        first = ins[0]
        flat = [st["shape"] is None for st in ins]
        if any(flat) and not all(flat):
            raise RtlgenError(f"{where} joins a feature map with a flat vector; flatten both first")
        if op == "Add":
            if len(ins) != 2:
                raise RtlgenError(f"{where}: Add needs exactly two inputs")
            if any(st["n"] != first["n"] or st["shape"] != first["shape"] for st in ins):
                shapes = " and ".join(str(list(st["shape"])) if st["shape"] else f"[{st['n']}]" for st in ins)
                raise RtlgenError(f"{where} adds tensors of shapes {shapes}; a residual add needs equal shapes "
                                  "(no broadcasting)")
            n, shape = first["n"], first["shape"]
        else:
            axis = int(g._attr(node, "axis", 1))
            rank = len(first["shape"]) + 1 if first["shape"] is not None else first["rank"]
            axis = axis + rank if axis < 0 else axis
            feature_axis = 1 if rank >= 2 else 0
            if axis != feature_axis:
                raise RtlgenError(f"{where}: Concat along axis {g._attr(node, 'axis', 1)} is not supported; "
                                  "only the channel/feature axis (1) is")
            if first["shape"] is not None and any(st["shape"][1:] != first["shape"][1:] for st in ins):
                shapes = ", ".join(str(list(st["shape"])) for st in ins)
                raise RtlgenError(f"{where} concatenates feature maps {shapes} of different sizes")
            n = sum(st["n"] for st in ins)
            shape = None if first["shape"] is None else \
                (sum(st["shape"][0] for st in ins),) + tuple(first["shape"][1:])
        self.layers.append(Merge(name=name, kind=op.lower(), sizes=tuple(st["n"] for st in ins), shape=shape))
        self.sources.append(tuple(st["source"] for st in ins))
        self.load({**first, "n": n, "shape": shape, "last_dense": None, "source": len(self.layers) - 1,
                   "shared": False}, False, node.output[0])

    def data_and_consts(self, index: int, cur: str):
        node = self.g.graph.node[index]
        where = self.g.where(index)
        positions = [k for k, name in enumerate(node.input) if name == cur]
        others = [name for name in node.input if name and name != cur and not self.g.is_const(name)]
        for name in others:
            if name not in self.g.data_tensors:
                self.g.const(name, where)   # raises: names the node that computes it
        if others:
            raise RtlgenError(
                f"{where} combines the data path with other computed tensors ({', '.join(others)}); "
                "branches may join only in an Add or a Concat")
        if len(positions) == 2 and node.op_type == "Mul" and len(node.input) == 2:
            return 0     # x * x: a square (see _square)
        if len(positions) != 1:
            raise RtlgenError(f"{where} uses the data tensor {cur!r} more than once; not supported")
        return positions[0]

    def step(self, index: int, cur: str) -> None:
        g = self.g
        node = g.graph.node[index]
        op = node.op_type
        where = g.where(index)
        name = g.names[index]
        if op not in SUPPORTED_OPS or op == "Constant":
            raise RtlgenError(
                f"{where} is not supported: rtlgen handles "
                f"{', '.join(o for o in SUPPORTED_OPS if o != 'Constant')} (plus Constant weights, and Add or "
                "Concat of two computed tensors where branches join)")
        pos = self.data_and_consts(index, cur)
        if len([o for o in node.output if o]) != 1:
            raise RtlgenError(f"{where}: expected exactly one output, found {len(node.output)}")
        if self.pending_pad is not None and op not in ("Conv", "AveragePool") + _PAD_PASS_OPS:
            self._unfoldable_pad(f"it is followed by {where}", op)
        if self.pending_q is not None and op != "DequantizeLinear":
            raise RtlgenError(f"{g.where(self.pending_q[0])} is followed by {where}; rtlgen reads a "
                              "QuantizeLinear on the data path only directly followed by its DequantizeLinear")
        if op in QUANT_OPS:
            if pos != 0:
                raise RtlgenError(f"{where}: the data tensor must be its first input")
            self._quantizer(index)
            return
        if op == "Pad":
            if pos != 0:
                raise RtlgenError(f"{where}: the data tensor must be its first input")
            self._pad(index)
            return
        if op in _SPATIAL_OPS or op == "BatchNormalization":
            if pos != 0:
                raise RtlgenError(f"{where}: the data tensor must be its first input")
            if op == "BatchNormalization":
                self._batchnorm(index)
            else:
                self._spatial(index)
            return
        if self.shape is not None and op in ("Gemm", "MatMul"):
            raise RtlgenError(f"{where}: {op} on a feature map of shape {list(self.shape)} is not "
                              "supported; flatten it first (nn.Flatten)")
        if op == "Mul" and node.input[0] != node.input[1]:
            self._scale(index, pos)
            return
        if op in ("Gemm", "MatMul"):
            self._dense(index, pos)
            return
        if op == "Add":
            self._add(index, pos)
            return
        if pos != 0:
            raise RtlgenError(f"{where}: the data tensor must be its first input")
        if op == "Relu":
            self.layers.append(Activation(name=name, kind="relu", size=self.n))
            self.last_dense = None
        elif op in _ACTIVATION_OPS:
            self._activation(index, _ACTIVATION_OPS[op])
        elif op in ("Mul", "Pow"):
            self._square(index)
        elif op == "ReduceSum":
            self._reduce_sum(index)
        elif op == "Identity":
            pass
        elif op == "Cast":
            to = g._attr(node, "to")
            if to not in _float_types(g.onnx):
                target = g.onnx.TensorProto.DataType.Name(to) if to is not None else "?"
                raise RtlgenError(f"{where}: casts to {target} are not supported; only float-to-float "
                                  "casts (no-ops here) are accepted")
        elif op == "Flatten" and self.shape is not None:
            axis = int(g._attr(node, "axis", 1))
            if axis not in (1, 1 - self.rank):
                raise RtlgenError(f"{where}: Flatten with axis={axis} on a feature map is not "
                                  "supported; only axis=1 ([batch, C*H*W]) is")
            self._to_flat()
        elif op == "Reshape" and self.shape is not None:
            self._reshape_map(index)
        elif op == "Flatten":
            axis = int(g._attr(node, "axis", 1))
            axis = axis + self.rank if axis < 0 else axis
            if self.rank == 2 and axis == 1:
                pass
            elif self.rank == 1 and axis == 0:
                self.rank = 2
                self.batch = 1
            else:
                raise RtlgenError(f"{where}: Flatten with axis={g._attr(node, 'axis', 1)} would change "
                                  f"the feature vector of {self.n} elements; only flattening to "
                                  "[batch, features] is supported")
        elif op == "Reshape":
            self._reshape(index)
        else:  # pragma: no cover
            raise AssertionError(op)

    def _activation(self, index: int, kind: str) -> None:
        """LeakyRelu, PRelu, Clip, Sigmoid, Tanh: an :class:`Activation` with its float parameters."""
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        layer = Activation(name=g.names[index], kind=kind, size=self.n)
        if kind == "leaky_relu":
            layer.slope = np.array([float(g._attr(node, "alpha", 0.01))])
        elif kind == "prelu":
            if len(node.input) < 2 or not node.input[1]:
                raise RtlgenError(f"{where}: missing slope input")
            slope = np.asarray(g.const(node.input[1], where), dtype=np.float64)
            _check_finite(slope, where, "slope")
            channels = self.shape[0] if self.shape is not None else self.n
            flat = slope.reshape(-1)
            if flat.size not in (1, channels) or (self.shape is not None and flat.size == channels
                                                  and slope.ndim > 1 and slope.shape[1:] != (1,) * (slope.ndim - 1)):
                raise RtlgenError(f"{where}: a slope of shape {list(slope.shape)} is not supported; use one "
                                  f"slope or one per channel ({channels})")
            layer.slope = flat
        elif kind == "clip":
            if len(node.input) > 1:   # opset 11 and later: min and max are (optional) inputs
                bounds = [float(np.asarray(g.const(node.input[k], where)).reshape(-1)[0])
                          if len(node.input) > k and node.input[k] else None for k in (1, 2)]
            else:
                bounds = [g._attr(node, "min"), g._attr(node, "max")]
            lo = -np.inf if bounds[0] is None else float(bounds[0])
            hi = np.inf if bounds[1] is None else float(bounds[1])
            if np.isnan(lo) or np.isnan(hi) or lo > hi:
                raise RtlgenError(f"{where}: clip bounds min={lo:g}, max={hi:g} are not an interval")
            layer.bounds = (lo, hi)
        elif kind in ("softmax", "argmax"):
            if self.shape is not None:
                raise RtlgenError(f"{where}: a {node.op_type} on a feature map is not supported; flatten it first")
            axis = int(g._attr(node, "axis", -1 if kind == "softmax" else 0))
            if axis not in (self.rank - 1, -1) or (kind == "argmax" and int(g._attr(node, "select_last_index", 0))):
                raise RtlgenError(f"{where}: only a {node.op_type} over the features (axis -1) is supported"
                                  + ("" if kind == "softmax" else ", with select_last_index=0"))
        self.layers.append(layer)
        self.last_dense = None
        if kind == "argmax":
            self.n = 1

    def _square(self, index: int) -> None:
        """``Mul(x, x)`` or ``Pow(x, 2)``: an activation of kind ``square``."""
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        if node.op_type == "Pow":
            exponent = np.asarray(g.const(node.input[1], where), dtype=np.float64).reshape(-1)
            if exponent.size != 1 or exponent[0] != 2:
                raise RtlgenError(f"{where}: only the exponent 2 (a square) is supported, got {exponent.tolist()}")
        self.layers.append(Activation(name=g.names[index], kind="square", size=self.n))
        self.last_dense = None

    def _reduce_sum(self, index: int) -> None:
        """``ReduceSum`` over the features: a dense layer of ones into one output (exact weights)."""
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        if self.shape is not None:
            raise RtlgenError(f"{where}: a ReduceSum of a feature map is not supported; flatten it first")
        axes = g._attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(a) for a in np.asarray(g.const(node.input[1], where)).reshape(-1)]
        if axes is None or [a + self.rank if a < 0 else a for a in axes] != [self.rank - 1]:
            raise RtlgenError(f"{where}: only a ReduceSum over the features (the last axis) is supported, "
                              f"got axes={axes}")
        ones = FixedType(1, 1, False)
        self.layers.append(Dense(name=g.names[index], weight=np.ones((self.n, 1)), bias=np.zeros(1),
                                 types={"weight": ones, "bias": ones}))
        self.last_dense = None
        self.n = 1

    def _quantizer(self, index: int) -> None:
        """A quantizer on the data path: the type of the current tensor."""
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        q = read_quantizer(g, index, lambda name: g.const(name, where))
        if q.bipolar:
            raise RtlgenError(f"{where}: a sign quantizer (BipolarQuant, or a signed 1-bit Quant) on the data "
                              "path is not supported; it is supported on weights; use at least 2 bits for "
                              "activations")
        if not q.per_tensor:
            raise RtlgenError(f"{where}: a per-channel scale on the data path is not supported; use a "
                              "per-tensor scale for activations and inputs")
        if node.op_type == "QuantizeLinear":
            self.pending_q = (index, q)
            return
        if node.op_type == "DequantizeLinear":
            if self.pending_q is None:
                raise RtlgenError(f"{where}: a DequantizeLinear on the data path needs the QuantizeLinear "
                                  "with the same scale and zero point directly before it")
            q_index, first = self.pending_q
            self.pending_q = None
            if (first.bits, first.signed) != (q.bits, q.signed) or \
                    not np.array_equal(np.unique(first.exponents), np.unique(q.exponents)):
                raise RtlgenError(f"{where}: its scale or integer type differs from that of "
                                  f"{g.where(q_index)}; a QuantizeLinear/DequantizeLinear pair must use "
                                  "the same scale, zero point and type")
        self._set_type(g.names[index], q.tensor_type())

    def _set_type(self, name: str, typ) -> None:
        """The current tensor is cast to ``typ``: the model's input type, the result type of the
        layer that computed the tensor, or (when that has one already) a cast of its own."""
        if self.source < 0 and self.input_type is None and not self.shared:
            self.input_type = typ
        elif self.source >= 0 and not self.shared and "result" not in self.layers[self.source].types:
            self.layers[self.source].types["result"] = typ
        else:
            self.layers.append(Activation(name=name, kind="linear", size=self.n, types={"result": typ}))
        self.last_dense = None

    def _to_flat(self) -> None:
        self.shape = None
        self.rank = 2
        self.last_dense = None

    def _reshape_map(self, index: int) -> None:
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        if len(node.input) < 2 or not g.is_const(node.input[1]):
            raise RtlgenError(f"{where}: the target shape must be a constant; use nn.Flatten")
        shape = [int(s) for s in np.asarray(g.const(node.input[1], where)).reshape(-1)]
        allowzero = int(g._attr(node, "allowzero", 0))
        ok = (len(shape) == 2 and shape[1] in (-1, self.n) and shape != [-1, -1]
              and (shape[0] in (-1, 1) or (shape[0] == 0 and not allowzero)
                   or (self.batch is not None and shape[0] == self.batch)))
        if not ok:
            raise RtlgenError(f"{where}: reshape of the feature map {list(self.shape)} to {shape} is "
                              f"not supported; only flattening to [batch, -1] or [-1, {self.n}] is")
        self._to_flat()

    def _geometry(self, index: int, kernel, extra=None) -> tuple:
        """(stride, pads) of a Conv/MaxPool/AveragePool node; errors name the node.

        ``extra`` are the spatial pads of a ``Pad`` folded into the node: the
        node's own padding is computed on the padded input and ``extra`` is
        added to it.
        """
        g = self.g
        node = g.graph.node[index]
        op = node.op_type
        where = g.where(index)
        d = len(self.shape) - 1
        kernel = tuple(int(k) for k in kernel)
        if len(kernel) != d:
            raise RtlgenError(f"{where}: shape mismatch: a {len(kernel)}-D kernel {list(kernel)} on a "
                              f"feature map of shape {list(self.shape)} ({d}-D)")
        dil = g._attr(node, "dilations")
        if dil is not None and any(int(v) != 1 for v in dil):
            raise RtlgenError(f"{where}: dilations {list(dil)} are not supported; only 1")
        if op != "Conv" and int(g._attr(node, "ceil_mode", 0)) != 0:
            raise RtlgenError(f"{where}: ceil_mode=1 is not supported; export with ceil_mode=False")
        strides = g._attr(node, "strides")
        stride = tuple(int(v) for v in strides) if strides is not None else (1,) * d
        if len(stride) != d or any(v < 1 for v in stride):
            raise RtlgenError(f"{where}: strides {list(stride)} do not match the {d}-D kernel")
        auto_pad = g._attr(node, "auto_pad", "NOTSET")
        if isinstance(auto_pad, bytes):
            auto_pad = auto_pad.decode()
        spatial = self.shape[1:]
        if extra is not None:
            spatial = tuple(s + extra[k] + extra[d + k] for k, s in enumerate(spatial))
        if auto_pad in ("NOTSET", ""):
            pads_attr = g._attr(node, "pads")
            pads = tuple(int(v) for v in pads_attr) if pads_attr is not None else (0,) * (2 * d)
            if len(pads) != 2 * d or any(v < 0 for v in pads):
                raise RtlgenError(f"{where}: pads {list(pads)} are not supported; expected {2 * d} "
                                  "non-negative values")
        elif auto_pad == "VALID":
            pads = (0,) * (2 * d)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for k in range(d):
                out = -(-spatial[k] // stride[k])
                total = max(0, (out - 1) * stride[k] + kernel[k] - spatial[k])
                small = total // 2
                begin.append(small if auto_pad == "SAME_UPPER" else total - small)
                end.append(total - begin[-1])
            pads = tuple(begin + end)
        else:
            raise RtlgenError(f"{where}: auto_pad={auto_pad!r} is not supported; use NOTSET, VALID, "
                              "SAME_UPPER or SAME_LOWER")
        for k in range(d):
            if spatial[k] + pads[k] + pads[d + k] < kernel[k]:
                padded = "" if extra is None else f" (padded by the Pad before it to {list(spatial)})"
                raise RtlgenError(
                    f"{where}: shape mismatch: kernel {list(kernel)} does not fit the input "
                    f"{list(self.shape)}{padded} with pads {list(pads)}")
            if op != "Conv" and (pads[k] >= kernel[k] or pads[d + k] >= kernel[k]):
                raise RtlgenError(f"{where}: pads {list(pads)} must be smaller than the kernel "
                                  f"{list(kernel)} (a window would lie in the padding only)")
        if extra is not None:
            pads = tuple(p + e for p, e in zip(pads, extra))
        return stride, pads

    def _spatial(self, index: int) -> None:
        g = self.g
        node = g.graph.node[index]
        op = node.op_type
        where = g.where(index)
        name = g.names[index]
        if self.shape is None:
            raise RtlgenError(f"{where} is not supported on a flat vector of {self.n} features: {op} "
                              "needs a feature map input [batch, C, H, W] or [batch, C, L]")
        extra = None
        if self.pending_pad is not None:
            pad_index, extra = self.pending_pad
            if op == "MaxPool":
                self._unfoldable_pad(f"it is followed by {where}", op)
            own = g._attr(node, "pads")
            auto_pad = g._attr(node, "auto_pad", "NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
            if (op == "AveragePool" and not int(g._attr(node, "count_include_pad", 0))
                    and ((own is not None and any(int(v) for v in own))
                         or auto_pad not in ("NOTSET", "", "VALID"))):
                raise RtlgenError(
                    f"{g.where(pad_index)} cannot be folded into {where}: the pool has padding of its "
                    "own with count_include_pad=0, so its windows would count the Pad's zeros but not "
                    "its own padding; export the pool with count_include_pad=True, or put all the "
                    "padding in the Pad or all of it in the pool")
            self.pending_pad = None
        if op == "Conv":
            if len(node.input) < 2 or not node.input[1]:
                raise RtlgenError(f"{where}: missing weight input")
            w = g.const(node.input[1], where).astype(np.float64)
            _check_finite(w, where, f"weight tensor {node.input[1]!r}")
            if w.ndim != len(self.shape) + 1:
                raise RtlgenError(f"{where}: shape mismatch: weight of shape {list(w.shape)} on a "
                                  f"feature map of shape {list(self.shape)}")
            w = self._ungroup(index, w)
            if w.shape[1] != self.shape[0]:
                raise RtlgenError(f"{where}: shape mismatch: the weight expects {w.shape[1]} input "
                                  f"channels but the input has {self.shape[0]} (shape {list(self.shape)})")
            ks = g._attr(node, "kernel_shape")
            if ks is not None and tuple(int(k) for k in ks) != tuple(w.shape[2:]):
                raise RtlgenError(f"{where}: shape mismatch: kernel_shape {list(ks)} but the weight "
                                  f"has shape {list(w.shape)}")
            stride, pads = self._geometry(index, w.shape[2:], extra)
            bias = np.zeros(w.shape[0])
            if len(node.input) > 2 and node.input[2]:
                bias = g.const(node.input[2], where).astype(np.float64).reshape(-1)
                _check_finite(bias, where, f"bias tensor {node.input[2]!r}")
                if bias.shape != (w.shape[0],):
                    raise RtlgenError(f"{where}: shape mismatch: bias of {bias.size} values for "
                                      f"{w.shape[0]} output channels")
            types = {key: g.const_type(node.input[k]) for key, k in (("weight", 1), ("bias", 2))
                     if len(node.input) > k and g.const_type(node.input[k]) is not None}
            layer = Conv(name=name, weight=np.ascontiguousarray(w), bias=bias, in_shape=tuple(self.shape),
                         stride=stride, pads=pads, types=types)
            self.last_dense = layer
        else:
            ks = g._attr(node, "kernel_shape")
            if ks is None:
                raise RtlgenError(f"{where}: missing kernel_shape")
            kernel = tuple(int(k) for k in ks)
            stride, pads = self._geometry(index, kernel, extra)
            count_include_pad = bool(int(g._attr(node, "count_include_pad", 0)))
            if extra is not None:
                d = len(kernel)
                if any(pads[k] >= kernel[k] or pads[d + k] >= kernel[k] for k in range(d)):
                    raise RtlgenError(
                        f"{g.where(pad_index)}: folded into {where} it gives the pads {list(pads)}, "
                        f"not all smaller than the kernel {list(kernel)}, so a pooling window would lie "
                        "in the padding only; not supported: pad less")
                # the Pad's zeros are inputs of the pool: every window counts them
                count_include_pad = True
            layer = Pool(name=name, kind="max" if op == "MaxPool" else "avg", in_shape=tuple(self.shape),
                         kernel=kernel, stride=stride, pads=pads, count_include_pad=count_include_pad)
            self.last_dense = None
        self.layers.append(layer)
        self.shape = tuple(int(v) for v in layer.out_shape)
        self.n = layer.n_out

    def _ungroup(self, index: int, w: np.ndarray) -> np.ndarray:
        """The full ``[C_out, C_in, k...]`` kernel of a grouped (e.g. depthwise) convolution: each output
        channel's taps on the input channels outside its group are zeros, which cost nothing."""
        g = self.g
        where = g.where(index)
        groups = int(g._attr(g.graph.node[index], "group", 1))
        c_in, c_out = self.shape[0], w.shape[0]
        if groups == 1:
            return w
        if groups < 1 or c_in % groups or c_out % groups or w.shape[1] * groups != c_in:
            raise RtlgenError(f"{where}: shape mismatch: group={groups} with {c_in} input channels, "
                              f"{c_out} output channels and a weight of shape {list(w.shape)}")
        per_in, per_out = c_in // groups, c_out // groups
        full = np.zeros((c_out, c_in) + w.shape[2:], dtype=w.dtype)
        for co in range(c_out):
            start = (co // per_out) * per_in
            full[co, start:start + per_in] = w[co]
        return full

    def _unfoldable_pad(self, reason: str, op=None) -> None:
        index = self.pending_pad[0]
        where = self.g.where(index)
        if op == "MaxPool":
            raise RtlgenError(
                f"{where} cannot be folded: {reason}, and zero padding before a MaxPool is not the "
                "same as the pool's own padding (the Pad's zeros can win the max, ONNX pooling padding "
                "never does); use the pool's padding argument instead of the Pad, or remove the Pad")
        raise RtlgenError(
            f"{where} cannot be folded: {reason}; a zero Pad is only supported directly before a "
            "Conv or an AveragePool, whose padding it becomes; move the padding into that layer "
            "(e.g. the padding argument of nn.Conv2d) or remove the Pad")

    def _pad(self, index: int) -> None:
        """Check a Pad node and record its spatial pads for the next Conv/AveragePool."""
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        mode = g._attr(node, "mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            raise RtlgenError(
                f"{where}: mode={mode!r} padding is not supported; only constant zero padding, which "
                "is folded into the following Conv or AveragePool; use zero padding (nn.ZeroPad2d, "
                "F.pad with mode='constant', or padding_mode='zeros')")
        rank = len(self.shape) + 1 if self.shape is not None else self.rank
        if len(node.input) > 1 and node.input[1]:
            raw = g.const(node.input[1], where)
        else:
            raw = g._attr(node, "pads", g._attr(node, "paddings"))
            if raw is None:
                raise RtlgenError(f"{where}: missing pads (neither a pads input nor a pads attribute)")
        raw = np.asarray(raw).reshape(-1)
        if raw.size and not np.all(np.asarray(raw, dtype=np.float64) == np.trunc(raw)):
            raise RtlgenError(f"{where}: pads {raw.tolist()} must be integers")
        pads = [int(v) for v in raw]
        axes = list(range(rank))
        if len(node.input) > 3 and node.input[3]:
            axes = [int(a) for a in np.asarray(g.const(node.input[3], where)).reshape(-1)]
            axes = [a + rank if a < 0 else a for a in axes]
            if any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
                raise RtlgenError(f"{where}: axes {axes} are not distinct axes of a rank-{rank} tensor")
        if len(pads) != 2 * len(axes):
            raise RtlgenError(f"{where}: shape mismatch: {len(pads)} pads for {len(axes)} axes of a "
                              f"rank-{rank} input; expected {2 * len(axes)} values")
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a] = pads[k]
            full[rank + a] = pads[len(axes) + k]
        if len(node.input) > 2 and node.input[2]:
            value = np.asarray(g.const(node.input[2], where), dtype=np.float64).reshape(-1)
            if value.size != 1:
                raise RtlgenError(f"{where}: constant_value must be a scalar, got {value.size} values")
            value = float(value[0])
        else:
            value = float(g._attr(node, "value", 0.0))
        if value != 0.0:
            raise RtlgenError(
                f"{where}: padding with the value {value:g} is not supported; only zero padding, which "
                "is folded into the following Conv or AveragePool; pad with 0 or remove the Pad")
        if any(v < 0 for v in full):
            raise RtlgenError(
                f"{where}: negative pads {full} (cropping) are not supported; crop the input before it "
                "reaches the model, or use non-negative pads")
        if not any(full):
            return
        if self.shape is None:
            raise RtlgenError(
                f"{where}: padding a flat vector of {self.n} features is not supported; a Pad is only "
                "folded on a feature map [batch, C, H, W] or [batch, C, L] directly before a Conv or "
                "an AveragePool; remove the Pad")
        if full[0] or full[rank] or full[1] or full[rank + 1]:
            raise RtlgenError(
                f"{where}: pads {full} pad the batch or channel axis; only the spatial axes (the last "
                f"{rank - 2}) can be padded; set the batch and channel pads to 0")
        spatial = tuple(full[2:rank] + full[rank + 2:])
        if self.pending_pad is not None:   # Pad after Pad: the paddings add up
            spatial = tuple(a + b for a, b in zip(self.pending_pad[1], spatial))
            index = self.pending_pad[0]
        self.pending_pad = (index, spatial)
        self.last_dense = None

    def _batchnorm(self, index: int) -> None:
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        if int(g._attr(node, "training_mode", 0)) != 0:
            raise RtlgenError(f"{where}: training_mode=1 is not supported; export the model in eval mode")
        if len(node.input) != 5 or not all(node.input):
            raise RtlgenError(f"{where}: expected the inputs X, scale, B, mean, var")
        gamma, beta, mean, var = (g.const(node.input[k], where).astype(np.float64).reshape(-1)
                                  for k in range(1, 5))
        eps = float(g._attr(node, "epsilon", 1e-5))
        layer = self.last_dense
        if layer is None or layer.types:
            # nothing to fold into, or weights fixed by the model's quantizers: a layer of its own
            self._standalone_batchnorm(index, gamma, beta, mean, var, eps)
            return
        channels = layer.weight.shape[0] if isinstance(layer, Conv) else layer.n_out
        if not all(v.shape == (channels,) for v in (gamma, beta, mean, var)):
            raise RtlgenError(f"{where}: shape mismatch: its parameters must hold {channels} values "
                              f"(one per channel of {layer.name!r})")
        for v, what in ((gamma, "scale"), (beta, "bias"), (mean, "mean"), (var, "variance")):
            _check_finite(v, where, what)
        if np.any(var + eps <= 0):
            raise RtlgenError(f"{where}: variance + epsilon must be positive")
        scale = gamma / np.sqrt(var + eps)
        if isinstance(layer, Conv):
            layer.weight = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
        else:
            layer.weight = layer.weight * scale[None, :]
        layer.bias = (layer.bias - mean) * scale + beta

    def _standalone_batchnorm(self, index, gamma, beta, mean, var, eps) -> None:
        """A BatchNormalization that is not folded: a per-channel multiply-add layer (a dense layer
        with a diagonal matrix, or a 1x1 convolution with one tap per channel on a feature map)."""
        g = self.g
        where = g.where(index)
        channels = self.shape[0] if self.shape is not None else self.n
        if not all(v.shape == (channels,) for v in (gamma, beta, mean, var)):
            raise RtlgenError(f"{where}: shape mismatch: its parameters must hold {channels} values "
                              "(one per channel of its input)")
        for v, what in ((gamma, "scale"), (beta, "bias"), (mean, "mean"), (var, "variance")):
            _check_finite(v, where, what)
        if np.any(var + eps <= 0):
            raise RtlgenError(f"{where}: variance + epsilon must be positive")
        scale = gamma / np.sqrt(var + eps)
        self._per_channel(g.names[index], scale, beta - mean * scale)
        self.last_dense = None

    def _per_channel(self, name: str, scale: np.ndarray, shift: np.ndarray, types=None):
        """Append a per-channel multiply-add layer: a dense layer with a diagonal matrix on a flat
        vector, a 1x1 convolution with one tap per channel on a feature map."""
        channels = len(scale)
        if self.shape is None:
            layer = Dense(name=name, weight=np.diag(scale), bias=shift, types=dict(types or {}))
        else:
            d = len(self.shape) - 1
            kernel = np.zeros((channels, channels) + (1,) * d)
            kernel[np.arange(channels), np.arange(channels)] = scale.reshape((channels,) + (1,) * d)
            layer = Conv(name=name, weight=kernel, bias=shift, in_shape=tuple(self.shape),
                         stride=(1,) * d, pads=(0,) * (2 * d), types=dict(types or {}))
        self.layers.append(layer)
        return layer

    def _channel_vector(self, c: np.ndarray, where: str, what: str) -> np.ndarray:
        """A constant that broadcasts over the data without changing its shape, as one value per
        channel (per element of a flat vector); an error when it varies within a channel."""
        full = (1, self.n) if self.shape is None else (1,) + tuple(self.shape)
        try:
            shape = np.broadcast_shapes(full, c.shape)
        except ValueError:
            shape = None
        if shape != full:
            raise RtlgenError(f"{where}: the {what} of shape {list(c.shape)} does not broadcast to the data "
                              f"{list(full)} without changing its shape")
        values = np.broadcast_to(c, full)[0].astype(np.float64)
        if self.shape is None:
            return values.reshape(-1)
        per_channel = values.reshape(values.shape[0], -1)
        if np.any(per_channel != per_channel[:, :1]):
            raise RtlgenError(f"{where}: the {what} varies within a channel; only one value per channel "
                              "(or one in all) is supported on a feature map")
        return per_channel[:, 0].copy()

    def _scale(self, index: int, pos: int) -> None:
        """``Mul`` of the data by a constant (one value, or one per channel, as Brevitas'
        ``BatchNorm2dToQuantScaleBias`` exports): a per-channel layer, whose bias a following ``Add``
        of a constant becomes."""
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        const_name = node.input[1 - pos]
        c = g.const(const_name, where).astype(np.float64)
        _check_finite(c, where, f"factor {const_name!r}")
        scale = self._channel_vector(c, where, "factor")
        typ = g.const_type(const_name)
        layer = self._per_channel(g.names[index], scale, np.zeros(len(scale)),
                                  {"weight": typ} if typ is not None else None)
        self.last_dense = layer

    def _reshape(self, index: int) -> None:
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        if len(node.input) < 2 or not g.is_const(node.input[1]):
            raise RtlgenError(f"{where}: the target shape must be a constant; export with a fixed "
                              "shape such as x.reshape(-1, n) or use nn.Flatten")
        shape = [int(s) for s in np.asarray(g.const(node.input[1], where)).reshape(-1)]
        allowzero = int(g._attr(node, "allowzero", 0))
        n = self.n

        def feat_ok(s):
            return s in (n, -1)

        ok = False
        if len(shape) == 2 and feat_ok(shape[1]):
            first = shape[0]
            if first in (-1, 1) or (first == 0 and not allowzero and self.rank == 2):
                ok = True
            elif self.batch is not None and first == self.batch and self.rank == 2:
                ok = True
            if shape == [-1, -1]:
                ok = False
            if ok:
                if self.rank == 1:
                    self.batch = 1
                self.rank = 2
        elif len(shape) == 1 and feat_ok(shape[0]) and (self.rank == 1 or self.batch == 1):
            ok = True
            self.rank = 1
        if not ok:
            raise RtlgenError(f"{where}: reshape to {shape} is not supported on a vector of {n} "
                              f"features; only [batch, -1], [-1, {n}] or [1, {n}] are accepted")

    def _dense(self, index: int, pos: int) -> None:
        g = self.g
        node = g.graph.node[index]
        op = node.op_type
        where = g.where(index)
        if pos != 0:
            raise RtlgenError(f"{where}: the data must be the first input (A) of {op}; "
                              "a constant times the data is not supported")
        if len(node.input) < 2 or not node.input[1]:
            raise RtlgenError(f"{where}: missing weight input")
        b = g.const(node.input[1], where)
        if b.ndim != 2:
            raise RtlgenError(f"{where}: the weight must be a 2-D matrix, got shape {list(b.shape)}")
        b = b.astype(np.float64)
        _check_finite(b, where, f"weight tensor {node.input[1]!r}")
        bias = None
        if op == "Gemm":
            if int(g._attr(node, "transA", 0)) != 0:
                raise RtlgenError(f"{where}: transA=1 is not supported (the data would be transposed)")
            if self.rank != 2:
                raise RtlgenError(f"{where}: Gemm needs a [batch, features] input, got a 1-D vector")
            alpha = float(g._attr(node, "alpha", 1.0))
            beta = float(g._attr(node, "beta", 1.0))
            weight = (b.T if int(g._attr(node, "transB", 0)) else b) * alpha
            if len(node.input) > 2 and node.input[2]:
                c = g.const(node.input[2], where).astype(np.float64)
                _check_finite(c, where, f"bias tensor {node.input[2]!r}")
                bias = self._broadcast_bias(c, weight.shape[1], where) * beta
        else:
            weight = b
        if weight.shape[0] != self.n:
            raise RtlgenError(
                f"{where}: shape mismatch: the weight expects {weight.shape[0]} inputs but the "
                f"previous layer gives {self.n} (weight shape {list(b.shape)})")
        if bias is None:
            bias = np.zeros(weight.shape[1], dtype=np.float64)
        _check_finite(weight, where, "weight")
        _check_finite(bias, where, "bias")
        # a quantizer's type holds the weights and bias as the model gives them (alpha/beta 1)
        types = {}
        scaled = op == "Gemm" and (float(g._attr(node, "alpha", 1.0)) != 1.0 or float(g._attr(node, "beta", 1.0)) != 1.0)
        if g.const_type(node.input[1]) is not None and not scaled:
            types["weight"] = g.const_type(node.input[1])
        if op == "Gemm" and len(node.input) > 2 and g.const_type(node.input[2]) is not None and not scaled:
            types["bias"] = g.const_type(node.input[2])
        dense = Dense(name=g.names[index], weight=np.ascontiguousarray(weight), bias=bias, types=types)
        self.layers.append(dense)
        self.last_dense = dense
        self.n = dense.n_out

    @staticmethod
    def _broadcast_bias(c: np.ndarray, n_out: int, where: str) -> np.ndarray:
        try:
            shape = np.broadcast_shapes((1, n_out), c.shape)
        except ValueError:
            shape = None
        if shape != (1, n_out):
            raise RtlgenError(f"{where}: bias of shape {list(c.shape)} does not broadcast to "
                              f"[batch, {n_out}]")
        return np.broadcast_to(c, (1, n_out)).reshape(n_out).astype(np.float64)

    def _add(self, index: int, pos: int) -> None:
        g = self.g
        node = g.graph.node[index]
        where = g.where(index)
        if len(node.input) != 2:
            raise RtlgenError(f"{where}: Add needs exactly two inputs")
        if self.shared:
            raise RtlgenError(f"{where}: adds a constant to a tensor that also feeds other nodes; put the "
                              "constant in the bias of the layer that computes the tensor")
        if not isinstance(self.last_dense, (Dense, Conv)):
            raise RtlgenError(
                f"{where}: adding a constant is only supported directly after a dense layer "
                "(Gemm or MatMul), a convolution or a Mul by a constant, where it becomes the bias")
        const_name = node.input[1 - pos]
        c = g.const(const_name, where).astype(np.float64)
        _check_finite(c, where, f"bias tensor {const_name!r}")
        dense = self.last_dense
        if isinstance(dense, Conv):
            bias = self._channel_vector(c, where, "bias")
        else:
            bias = self._broadcast_bias(c, dense.n_out, where)
        _check_finite(bias, where, "bias")
        added = g.const_type(const_name)
        if added is not None and "bias" not in dense.types and not np.any(dense.bias):
            dense.types["bias"] = added
        else:
            dense.types.pop("bias", None)
        dense.bias = dense.bias + bias


#: the ops whose inputs after the first are weights or biases
_PARAM_OPS = ("Gemm", "MatMul", "Conv", "BatchNormalization", "PRelu")


def load_onnx(source, name=None) -> FloatModel:
    """Read an ONNX model (a path or an ``onnx.ModelProto``) into the float IR.

    ``name`` defaults to the file stem (the graph name for a ModelProto).
    """
    onnx = _onnx()
    model, default_name = _read_model(source)
    label = f"model file {source}" if isinstance(source, (str, Path)) else "ONNX model"
    graph = model.graph
    g = _Graph(graph, onnx)

    inputs = [vi for vi in graph.input if vi.name not in g.initializers]
    if len(inputs) != 1:
        listed = ", ".join(repr(vi.name) for vi in inputs) or "none"
        # weights left as graph inputs: the model was exported without them
        params = [vi.name for vi in inputs
                  if any(vi.name in node.input[1:] for node in graph.node if node.op_type in _PARAM_OPS)]
        hint = ""
        if params:
            hint = (f"; {', '.join(map(repr, params))} feed the weights or biases of a layer: export the "
                    "model with its parameters (torch.onnx.export(..., export_params=True), the default)")
        raise RtlgenError(f"{label}: expected exactly one graph input, found {len(inputs)} ({listed}); "
                          "rtlgen supports models with one flat input vector" + hint)
    if len(graph.output) != 1:
        listed = ", ".join(repr(vi.name) for vi in graph.output) or "none"
        raise RtlgenError(f"{label}: expected exactly one graph output, found {len(graph.output)} ({listed})")
    inp = inputs[0]
    out_name = graph.output[0].name
    elem = inp.type.tensor_type.elem_type if inp.type.HasField("tensor_type") else None
    if elem not in _float_types(onnx):
        kind = onnx.TensorProto.DataType.Name(elem) if elem else "not a tensor"
        raise RtlgenError(f"{label}: input {inp.name!r} must be a float tensor, got {kind}")
    dims = _dims(inp)
    shape = None
    if dims is not None and len(dims) in (3, 4):
        if any(d is None or d < 1 for d in dims[1:]):
            raise RtlgenError(f"{label}: input {inp.name!r} has shape {_show(dims)}; a feature map "
                              "input needs fixed channel and spatial sizes [batch, C, H, W] or [batch, C, L]")
        shape = tuple(dims[1:])
        n_in = int(np.prod(shape))
    elif dims is None or len(dims) not in (1, 2) or dims[-1] is None or dims[-1] < 1:
        raise RtlgenError(
            f"{label}: input {inp.name!r} has shape {_show(dims)}; expected [batch, n] or [n] with a "
            "fixed number n of features, or a feature map [batch, C, H, W] / [batch, C, L]")
    else:
        n_in = dims[-1]
    g.mark_data(inp.name)
    walker = _Walker(g, n_in, len(dims), dims[0] if len(dims) >= 2 else None, shape)
    if g.consumers.get(out_name):
        listed = ", ".join(g.where(i) for i in g.consumers[out_name])
        raise RtlgenError(f"{label}: the graph output {out_name!r} also feeds {listed}; not supported")
    live = g.leads_to(out_name)
    if inp.name not in live:
        raise RtlgenError(f"{label}: the graph output {out_name!r} does not depend on the input {inp.name!r}")

    # the nodes on the data path, in the graph's (topological) order; a tensor's state is saved
    # when it is computed and restored for each node that reads it
    states = {inp.name: walker.save()}
    for index, node in enumerate(graph.node):
        data_in = [t for t in node.input if t in g.data_tensors]
        if not data_in:
            continue   # a constant subgraph (weights)
        out = next((o for o in node.output if o in live), None)
        if out is None:
            listed = ", ".join(repr(o) for o in node.output if o)
            raise RtlgenError(f"{label}: the data path stops at {g.where(index)}: its output {listed} does not "
                              f"lead to the graph output {out_name!r}; remove the unused branch")
        missing = [t for t in data_in if t not in states]
        if missing:
            raise RtlgenError(f"{label}: {g.where(index)} reads {missing[0]!r} before any node computes it; "
                              "the nodes must be in topological order")
        if node.op_type in ("Add", "Concat") and len(data_in) >= 2:
            walker.merge(index, data_in, states)
        else:
            cur = data_in[0]
            walker.load(states[cur], len(set(g.consumers.get(cur, []))) > 1, cur)
            walker.walk(index, cur)
        states[out] = walker.save()
    walker.load(states[out_name], False, out_name)
    if walker.pending_pad is not None:
        walker._unfoldable_pad(f"its output reaches the graph output {out_name!r} without a Conv or "
                               "AveragePool after it")
    if walker.layers and walker.source != len(walker.layers) - 1:  # pragma: no cover - every layer leads to the output
        raise RtlgenError(f"{label}: the graph output {out_name!r} is not computed by the last layer")

    out_dims = _dims(graph.output[0])
    if walker.shape is not None:
        if out_dims and all(d is not None for d in out_dims[1:]) and \
                tuple(out_dims[1:]) != tuple(walker.shape):
            raise RtlgenError(f"{label}: the graph output {out_name!r} is declared with shape "
                              f"{_show(out_dims)} but the layers produce {list(walker.shape)} per sample")
    elif out_dims and out_dims[-1] is not None and out_dims[-1] != walker.n:
        raise RtlgenError(f"{label}: the graph output {out_name!r} is declared with {out_dims[-1]} "
                          f"features but the layers produce {walker.n}")
    if not walker.layers:
        raise RtlgenError(f"{label}: the graph has no dense or activation layer")
    if walker.pending_q is not None:
        raise RtlgenError(f"{g.where(walker.pending_q[0])}: a QuantizeLinear on the data path must be "
                          "followed by its DequantizeLinear")
    model = FloatModel(name=name or default_name, n_in=n_in, layers=walker.layers, input_shape=shape,
                       input_type=walker.input_type, sources=walker.sources)
    return model if not model.is_chain else replace(model, sources=None)


def _show(dims) -> str:
    if dims is None:
        return "unknown"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
