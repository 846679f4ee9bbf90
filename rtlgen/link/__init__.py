"""The host link: a UART between a host and an rtlgen core.

:mod:`~rtlgen.link.protocol` defines the frames; :mod:`~rtlgen.link.uart`
and :mod:`~rtlgen.link.gateware` are the device side (Amaranth).
"""

from .gateware import CoreLink
from .uart import UartRx, UartTx

__all__ = ["CoreLink", "UartRx", "UartTx"]
