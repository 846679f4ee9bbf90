"""Shift-and-add graphs are kept in rtlgen's disk cache (``RTLGEN_CACHE``) by layer contents."""

from __future__ import annotations

import numpy as np
import pytest

from rtlgen.frontends.python_api import mlp
from rtlgen.ir import arithmetic
from rtlgen.ir.config import apply_config

CONFIG = {"input": "fixed<8,3,RND,SAT>",
          "default": {"weight": "fixed<6,2,RND,SAT>", "bias": "fixed<8,3,RND,SAT>",
                      "result": "fixed<12,5,RND,SAT>", "arithmetic": "shift_add"}}


def _layer(seed: int, n_in: int = 6, n_out: int = 5):
    rng = np.random.default_rng(seed)
    model = apply_config(mlp([rng.normal(0, 1, (n_in, n_out))], [rng.normal(0, 1, n_out)]), CONFIG)
    return model.layers[0]


def _same(a, b) -> bool:
    return a.nodes == b.nodes and a.outputs == b.outputs


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTLGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(arithmetic, "_GRAPHS", {})
    return tmp_path / "cache" / "adder-graphs"


def test_a_graph_searched_once_is_read_from_disk(fresh_cache, monkeypatch):
    layer = _layer(1)
    first = arithmetic.dense_graph(layer)
    assert len(list(fresh_cache.glob("*.pickle"))) == 1
    monkeypatch.setattr(arithmetic, "_GRAPHS", {})           # a new process: memory is empty

    def no_search(*args, **kwargs):
        raise AssertionError("the graph was searched again")

    monkeypatch.setattr(arithmetic, "adder_graph", no_search)
    assert _same(arithmetic.dense_graph(layer), first)


def test_other_weights_get_their_own_graph(fresh_cache):
    a, b = arithmetic.dense_graph(_layer(1)), arithmetic.dense_graph(_layer(2))
    assert not _same(a, b)
    assert len(list(fresh_cache.glob("*.pickle"))) == 2
    # the graph read back is the one of these weights: it computes their product exactly
    layer = _layer(2)
    x = np.random.default_rng(0).integers(layer.in_type.min_code, layer.in_type.max_code + 1, (20, layer.n_in))
    frac = arithmetic.sum_frac(layer)
    w = np.asarray(layer.weights, dtype=object) << (frac - layer.in_type.frac - layer.weight_type.frac)
    bias = np.asarray(layer.bias, dtype=object) << (frac - layer.bias_type.frac)
    rounding = arithmetic.folded_rounding(layer)          # RND: half of the dropped LSB
    assert rounding == 1 << (frac - layer.result_type.frac - 1)
    assert np.array_equal(b.evaluate(x), x.astype(object) @ w + bias + rounding)


def test_a_damaged_entry_is_searched_again(fresh_cache, monkeypatch):
    layer = _layer(3)
    first = arithmetic.dense_graph(layer)
    (entry,) = fresh_cache.glob("*.pickle")
    entry.write_bytes(b"not a pickle")
    monkeypatch.setattr(arithmetic, "_GRAPHS", {})
    assert _same(arithmetic.dense_graph(layer), first)
    assert entry.read_bytes() != b"not a pickle"


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RTLGEN_CACHE", str(tmp_path / "file"))     # not a folder: nothing can be written
    monkeypatch.setattr(arithmetic, "_GRAPHS", {})
    layer = _layer(4)
    assert arithmetic.dense_graph(layer).adders > 0
