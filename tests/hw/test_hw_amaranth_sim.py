"""The dense/activation/network components in Amaranth's own simulator.

Fast checks of the generators, before any Verilog is written: outputs equal
the golden model, each result appears exactly ``latency`` cycles after its
input, and ``in_ready`` enforces the II.
"""

import numpy as np
import pytest

from helpers.core import timed_stream as simulate
from rtlgen.frontends.python_api import mlp
from rtlgen.golden.network import predict_codes
from rtlgen.hw.network import Network
from rtlgen.ir.config import apply_config


@pytest.mark.parametrize("reuse", [1, 2, 3, 5, "full"])
@pytest.mark.parametrize("accum", [None, "fixed<11,4,RND,WRAP>"])
def test_network_in_amaranth_simulator(reuse, accum):
    rng = np.random.default_rng(7)
    ws = [rng.normal(0, 1, (5, 6)), rng.normal(0, 1, (6, 3))]
    ws[0][rng.random(ws[0].shape) < 0.3] = 0
    model = mlp(ws, [rng.normal(0, 1, 6), rng.normal(0, 1, 3)], activations="relu")
    default = {"weight": "fixed<5,2,RND,SAT>", "bias": "fixed<6,3,RND,SAT>",
               "result": "fixed<8,3,RND_CONV,SAT>", "reuse_factor": reuse}
    if accum:
        default["accum"] = accum
    q = apply_config(model, {"input": "fixed<6,2,RND,SAT>", "default": default})
    net = Network(q)
    t = q.input_type
    x = rng.integers(t.min_code, t.max_code + 1, size=(30, q.n_in))
    x[0], x[1] = t.max_code, t.min_code
    got, accepted, produced = simulate(net, x)
    assert np.array_equal(got, predict_codes(q, x))
    assert np.all(produced - accepted == net.latency)
    assert np.all(np.diff(accepted) >= net.ii)
    assert net.ii == max(layer.reuse_factor for layer in q.layers if layer.op == "dense")
