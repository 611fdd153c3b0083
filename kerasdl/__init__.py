"""kerasdl: a Keras 3 model zoo for the foundations of deep learning.

`from kerasdl import zoo` is the front door; `kerasdl.layers` holds the
activations with hand-written backward passes, `kerasdl.gradcheck` checks
any backward pass, and `kerasdl.dynamics` measures vanishing and exploding
gradients.
"""

__version__ = "0.1.0"

import importlib

from kerasdl import layers
from kerasdl import optimizers
from kerasdl import zoo

# Modules built on TensorFlow-only tools (GradientTape, tf.data,
# SavedModel) load on first use, so that `import kerasdl` stays light under
# `KERAS_BACKEND=jax`.
_LAZY_MODULES = (
    "data",
    "dynamics",
    "export",
    "gradcheck",
    "serving",
    "training",
)


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"kerasdl.{name}")
    raise AttributeError(f"module 'kerasdl' has no attribute {name!r}")


__all__ = ["layers", "optimizers", "zoo", *_LAZY_MODULES]
