"""The top-level core for a quantized model: parallel or with a streamed input stage."""

from __future__ import annotations

from ..ir.model import QModel
from .network import Network
from .stream import StreamNetwork, stream_prefix

__all__ = ["make_core"]


def make_core(model: QModel):
    """:class:`StreamNetwork` when the model's leading layers stream, else :class:`Network`."""
    return StreamNetwork(model) if stream_prefix(model) else Network(model)
