"""Optimizers that fix problems of Keras' own on sentence models."""

import keras


def _dense_gradient(gradient, variable):
    """An embedding's sparse gradient as a dense tensor of static shape."""
    # Imported here so that `import kerasdl` (which registers this class
    # for loading saved models) does not load TensorFlow under JAX.
    import tensorflow as tf

    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    rows = variable.shape[0] if variable is not None else None
    if rows is None:
        return tf.convert_to_tensor(gradient)
    # Rows outside the batch get zeros and repeated ids are summed; the
    # row count is a Python int, so XLA sees a compile-time constant.
    return tf.math.unsorted_segment_sum(
        gradient.values, gradient.indices, num_segments=rows
    )


@keras.saving.register_keras_serializable(package="kerasdl")
class DenseGradientAdadelta(keras.optimizers.Adadelta):
    """Adadelta that applies embedding gradients as dense tensors.

    Keras' Adadelta updates a sparse (`tf.IndexedSlices`) embedding
    gradient row by row. Two things go wrong with that: under
    `jit_compile=True` XLA cannot size the update, so compiling a text
    model with an `Embedding` fails or stalls; and for an id that occurs
    twice in a batch it accumulates the sum of the squared per-occurrence
    gradients, where Adadelta (Zeiler, 2012) squares the summed gradient.
    Densifying the gradient first fixes both, and matches Kim's (2014)
    Theano code, which updated the whole embedding matrix every step: rows
    outside the batch see a zero gradient and their accumulators decay.

    Takes the arguments of `keras.optimizers.Adadelta`.

    Example:

    >>> optimizer = DenseGradientAdadelta(learning_rate=1.0, rho=0.95)
    >>> optimizer.get_config()["rho"]
    0.95
    """

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables or [None] * len(grads)
        grads = [
            _dense_gradient(gradient, variable)
            for gradient, variable in zip(grads, variables)
        ]
        return super().apply(grads, trainable_variables)
