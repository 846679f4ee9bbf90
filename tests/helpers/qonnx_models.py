"""Quantization-aware test models: QONNX graphs written node by node, Brevitas models trained
briefly on synthetic data and exported to QONNX, and the QONNX reference executor (the oracle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX_DOMAIN = "qonnx.custom_op.general"

__all__ = ["QonnxGraph", "qonnx_reference", "brevitas_mlp", "brevitas_cnn", "brevitas_residual"]


class QonnxGraph:
    """ONNX/QONNX nodes on one float input ``x`` of shape ``[1, *shape]``: a chain through the
    current tensor ``cur``, which :meth:`join` (or setting ``cur``) can branch and merge."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.nodes, self.inits = [], []
        self.cur = "x"
        self._k = 0

    def const(self, value, dtype=np.float32) -> str:
        self._k += 1
        name = f"c{self._k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def quant_of(self, tensor: str, scale, bits: int, signed=1, narrow=0, rounding="ROUND", zeropt=0.0) -> str:
        """A QONNX Quant node on ``tensor`` (an input name); returns its output name."""
        self._k += 1
        out = f"q{self._k}"
        self.nodes.append(helper.make_node(
            "Quant", [tensor, self.const(scale), self.const(zeropt), self.const(float(bits))], [out],
            domain=QONNX_DOMAIN, name=f"Quant_{self._k}", signed=signed, narrow=narrow, rounding_mode=rounding))
        return out

    def op(self, op_type: str, *inputs, name=None, domain="", **attrs) -> str:
        """A node whose first input is the current data tensor; it becomes the current tensor."""
        self._k += 1
        out = f"t{self._k}"
        self.nodes.append(helper.make_node(op_type, [self.cur, *inputs], [out], name=name or f"{op_type}_{self._k}",
                                           domain=domain, **attrs))
        self.cur = out
        return out

    def join(self, op_type: str, *tensors, **attrs) -> str:
        """A node joining computed tensors (``Add``, ``Concat``); it becomes the current tensor."""
        self._k += 1
        out = f"t{self._k}"
        self.nodes.append(helper.make_node(op_type, list(tensors), [out], name=f"{op_type}_{self._k}", **attrs))
        self.cur = out
        return out

    def quant(self, scale, bits: int, **kw) -> str:
        """A Quant on the data path."""
        self.cur = self.quant_of(self.cur, scale, bits, **kw)
        return self.cur

    def save(self, path: Path, n_out: int, out_elem=TensorProto.FLOAT) -> Path:
        graph = helper.make_graph(
            self.nodes, "qmodel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *self.shape])],
            [helper.make_tensor_value_info(self.cur, out_elem, [1, n_out])], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid(QONNX_DOMAIN, 2)])
        onnx.save(model, str(path))
        return Path(path)


def qonnx_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """The QONNX reference executor's outputs for the float inputs ``x`` ([N, ...]), one sample at a time."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    model = ModelWrapper(str(path)).transform(InferShapes())
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    batch = model.get_tensor_shape(iname)[0] or 1
    x = np.asarray(x, dtype=np.float32)
    outs = [execute_onnx(model, {iname: x[k:k + batch]})[oname] for k in range(0, len(x), batch)]
    return np.concatenate(outs).reshape(len(x), -1).astype(np.float64)


def _train(model, x, y, steps: int, seed: int):
    import torch
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    model.eval()


def _export(model, example, path: Path) -> Path:
    import warnings
    from brevitas.export import export_qonnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, example, export_path=str(path))
    return Path(path)


def brevitas_mlp(path: Path, seed: int = 0, steps: int = 20) -> Path:
    """A Brevitas MLP (8 -> 12 -> 6 -> 3): fixed-point input, per-tensor and per-channel weights,
    16-bit biases, an unsigned 6-bit ReLU, a standalone BatchNorm and a 10-bit output quantizer."""
    import torch
    import brevitas.nn as qnn
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPointMSE,
                                Int8WeightPerTensorFixedPoint, Int16Bias, Uint8ActPerTensorFixedPoint)
    torch.manual_seed(seed)
    bn = torch.nn.BatchNorm1d(12, eps=2.0 ** -10)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(8, 12, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=6,
                        bias_quant=Int16Bias, return_quant_tensor=True),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=6),
        bn,
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(12, 6, bias=True, weight_quant=Int8WeightPerChannelFixedPointMSE, bias_quant=Int16Bias,
                        return_quant_tensor=True),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=8, return_quant_tensor=True),
        qnn.QuantLinear(6, 3, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias,
                        return_quant_tensor=True),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=10),
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=gen)
    y = torch.stack([x[:, :3].sum(1), (x[:, 3:6] ** 2).mean(1), x[:, 6] * x[:, 7]], 1)
    _train(model, x, y, steps, seed)
    with torch.no_grad():   # dyadic batch-norm statistics: scale and shift are exact fixed-point values
        bn.running_var.copy_(torch.full((12,), 0.25 - 2.0 ** -10))     # var + eps = 1/4
        bn.running_mean.copy_(torch.round(bn.running_mean * 8) / 8)
        bn.weight.copy_(torch.round(bn.weight * 8) / 8)
        bn.bias.copy_(torch.round(bn.bias * 8) / 8)
    return _export(model, x[:1], path)


def brevitas_cnn(path: Path, seed: int = 0, steps: int = 15) -> Path:
    """A Brevitas CNN on 2x6x6 maps: a 3x3 conv with 5-bit weights, a quantized per-channel
    scale and bias (``BatchNorm2dToQuantScaleBias``: a Mul and an Add of constants), a depthwise
    3x3 conv (groups = channels), ReLU quantizers, a truncating 2x2 average pool (an AveragePool and
    a QONNX Trunc) and a dense output layer."""
    import torch
    import brevitas.nn as qnn
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias,
                                Uint8ActPerTensorFixedPoint)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, padding=1, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=5,
                        bias_quant=Int16Bias, return_quant_tensor=True),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=6, return_quant_tensor=True),
        qnn.BatchNorm2dToQuantScaleBias(4, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias,
                                        return_quant_tensor=True),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantConv2d(4, 4, 3, groups=4, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=6,
                        bias_quant=Int16Bias, return_quant_tensor=True),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=6, return_quant_tensor=True),
        qnn.TruncAvgPool2d(2, stride=2, bit_width=6, return_quant_tensor=True),
        torch.nn.Flatten(),
        qnn.QuantLinear(4 * 2 * 2, 3, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int16Bias,
                        return_quant_tensor=True),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=10),
    )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 2, 6, 6, generator=gen)
    y = torch.stack([x[:, 0].mean((1, 2)), x[:, 1, :3].mean((1, 2)), x[:, :, 1:5, 1:5].std((1, 2, 3))], 1)
    _train(model, x, y, steps, seed)
    return _export(model, x[:1], path)


def brevitas_residual(path: Path, seed: int = 0, steps: int = 15) -> Path:
    """A Brevitas residual block (8 -> 8 -> 8, the input added back, then the block's hidden
    activations concatenated before a dense output of 3): quantizers on both inputs of the add,
    one after it and one after the concatenation."""
    import torch
    import brevitas.nn as qnn
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias,
                                Uint8ActPerTensorFixedPoint)
    act, weight = Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=act)
            self.fc1 = qnn.QuantLinear(8, 8, bias=True, input_quant=act, weight_quant=weight, weight_bit_width=6,
                                       bias_quant=Int16Bias)
            self.relu = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=6)
            self.fc2 = qnn.QuantLinear(8, 8, bias=True, input_quant=Uint8ActPerTensorFixedPoint, weight_quant=weight,
                                       weight_bit_width=6, bias_quant=Int16Bias)
            self.branch_q = qnn.QuantIdentity(act_quant=act)
            self.sum_q = qnn.QuantIdentity(act_quant=act, bit_width=10)
            self.out = qnn.QuantLinear(16, 3, bias=True, input_quant=act, weight_quant=weight, bias_quant=Int16Bias)
            self.out_q = qnn.QuantIdentity(act_quant=act, bit_width=10)

        def forward(self, x):
            x = self.inp(x)
            h = self.relu(self.fc1(x))
            r = self.sum_q(self.branch_q(self.fc2(h)) + x)
            return self.out_q(self.out(torch.cat([r, h], dim=1)))

    torch.manual_seed(seed)
    model = Residual()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=gen)
    y = torch.stack([x[:, :3].sum(1), x[:, 3] * x[:, 4], x[:, 5:].mean(1)], 1)
    _train(model, x, y, steps, seed)
    return _export(model, x[:1], path)
