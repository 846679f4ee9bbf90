"""Model IR: float and quantized layers, models, forests and the precision configuration.

Importing the package registers every quantized layer class (``LAYER_TYPES``
in :mod:`rtlgen.ir.model`) by importing the modules that define them.
"""

from . import conv  # noqa: F401  (registers QConv and QMaxPool)
from . import softmax  # noqa: F401  (registers QSoftmax and QArgmax)
from . import merge  # noqa: F401  (registers QMerge)
