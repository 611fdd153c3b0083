"""Activation layers whose backward pass is written by hand.

Each layer wraps a function decorated with `keras.ops.custom_gradient`, so
the gradient that `tf.GradientTape` (or `jax.grad`) sees is the one written
here, not the one autodiff would derive. The gradient function sits right
under the forward computation and uses a numerically stable form: in
float32 the naive `y * (1 - y)` and `1 - tanh(x) ** 2` round to zero long
before the true derivative does (at x = 20 and x = 9 respectively).
"""

import keras
from keras import ops


def _upstream_from(args, upstream):
    """Returns the incoming gradient, whatever the backend's calling style.

    TensorFlow calls the gradient function with the upstream gradient as a
    positional argument; JAX and PyTorch pass it by keyword.
    """
    if upstream is None:
        (upstream,) = args
    return upstream


@ops.custom_gradient
def sigmoid(x):
    """Logistic sigmoid with a hand-written, stable backward pass."""
    y = ops.sigmoid(x)

    def grad(*args, upstream=None):
        upstream = _upstream_from(args, upstream)
        # d/dx sigmoid = s(x) * (1 - s(x)) = s(x) * s(-x); the second form
        # keeps s'(20) ~ 2.06e-9 in float32, where 1 - s(20) rounds to 0.
        # Recomputed from x (not the saved y) so that a second derivative
        # taken through this function sees its dependence on x.
        return upstream * (ops.sigmoid(x) * ops.sigmoid(-x))

    return y, grad


@ops.custom_gradient
def tanh(x):
    """Hyperbolic tangent with a hand-written, stable backward pass."""
    y = ops.tanh(x)

    def grad(*args, upstream=None):
        upstream = _upstream_from(args, upstream)
        # d/dx tanh = 1 - tanh(x)^2 = sech(x)^2 = 4 e / (1 + e)^2 with
        # e = exp(-2|x|); finite for any x and accurate where 1 - tanh^2
        # cancels to 0 (tanh'(9) ~ 6.09e-8 in float32).
        e = ops.exp(-2.0 * ops.abs(x))
        return upstream * (4.0 * e / ops.square(1.0 + e))

    return y, grad


@ops.custom_gradient
def relu(x):
    """Rectified linear unit with a hand-written backward pass."""
    y = ops.relu(x)

    def grad(*args, upstream=None):
        upstream = _upstream_from(args, upstream)
        # d/dx relu = [x > 0]; 0 at exactly x = 0, as in TF, PyTorch, JAX.
        return upstream * ops.cast(ops.greater(x, 0), upstream.dtype)

    return y, grad


class _HandWrittenActivation(keras.layers.Layer):
    """Shared plumbing: elementwise, shape-preserving, no weights."""

    _function = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return type(self)._function(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kerasdl")
class Sigmoid(_HandWrittenActivation):
    """Logistic sigmoid layer with a hand-written backward pass.

    Forward: `y = 1 / (1 + exp(-x))`. Backward:
    `dE/dx = dE/dy * sigmoid(x) * (1 - sigmoid(x))`, computed as
    `sigmoid(x) * sigmoid(-x)` so that it stays exact where float32 cannot
    hold `1 - sigmoid(x)`.

    Args:
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Input shape:
        Any shape.

    Output shape:
        Same as the input.

    Example:

    >>> import numpy as np
    >>> y = Sigmoid()(np.array([0.0, 20.0], dtype="float32"))
    >>> [round(float(v), 4) for v in y]
    [0.5, 1.0]
    """

    _function = staticmethod(sigmoid)


@keras.saving.register_keras_serializable(package="kerasdl")
class Tanh(_HandWrittenActivation):
    """Hyperbolic tangent layer with a hand-written backward pass.

    Backward: `dE/dx = dE/dy * (1 - tanh(x)^2)`, computed as
    `4 e / (1 + e)^2` with `e = exp(-2|x|)`, which never cancels to zero
    while the true derivative is representable.

    Args:
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Input shape:
        Any shape.

    Output shape:
        Same as the input.

    Example:

    >>> import numpy as np
    >>> y = Tanh()(np.array([0.0, 1.0], dtype="float32"))
    >>> [round(float(v), 4) for v in y]
    [0.0, 0.7616]
    """

    _function = staticmethod(tanh)


@keras.saving.register_keras_serializable(package="kerasdl")
class ReLU(_HandWrittenActivation):
    """Rectified linear unit layer with a hand-written backward pass.

    Backward: `dE/dx = dE/dy * [x > 0]`; the derivative at exactly 0 is 0,
    the convention of TensorFlow, PyTorch and JAX.

    Args:
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Input shape:
        Any shape.

    Output shape:
        Same as the input.

    Example:

    >>> import numpy as np
    >>> y = ReLU()(np.array([-1.0, 2.0], dtype="float32"))
    >>> [float(v) for v in y]
    [0.0, 2.0]
    """

    _function = staticmethod(relu)


ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


def get_activation(name, hand_written=True):
    """Returns a fresh activation layer by name.

    Args:
        name: One of `"sigmoid"`, `"tanh"`, `"relu"`.
        hand_written: If `True`, kerasdl's layer with the hand-written
            backward pass; if `False`, Keras' built-in
            `keras.layers.Activation(name)`, so the two can be compared.

    Returns:
        A `keras.layers.Layer`.

    Raises:
        ValueError: If `name` is not a known activation.

    Example:

    >>> get_activation("relu").__class__.__name__
    'ReLU'
    """
    if name not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation. Expected one of {sorted(ACTIVATIONS)}. "
            f"Received: name={name!r}"
        )
    if hand_written:
        return ACTIVATIONS[name]()
    return keras.layers.Activation(name)
