"""Analytic FLOP counts of zoo models, layer by layer.

A multiply-add counts as 2 FLOPs. Per example, forward pass:

==================  =========================================================
layer               forward FLOPs
==================  =========================================================
Dense               2 * d_in * units, at every position of a 3-D input
Conv1D              2 * L_out * kernel_size * C_in * filters
Conv2D              2 * H_out * W_out * k_h * k_w * C_in * C_out
Embedding           0: a row gather, no arithmetic
SimpleRNN           2 * T * (d_in * units + units * units)
==================  =========================================================

Biases, activations, pooling, dropout and the softmax are left out: they
are a few FLOPs per output value, against hundreds per value for the
layers above, and they are bound by memory, not arithmetic.

Training counts 3x the forward FLOPs: the forward pass, the gradient with
respect to the layer's input and the gradient with respect to its weights
each cost one forward's worth of multiply-adds (Kaplan et al. 2020, §2.1
use the same rule).
"""

import dataclasses

import keras
import numpy as np

TRAINING_MULTIPLIER = 3


@dataclasses.dataclass(frozen=True)
class LayerFlops:
    """The forward FLOPs of one layer for one example.

    Args:
        name: The layer's name.
        kind: The layer's class name.
        flops: Forward FLOPs per example.
        formula: The formula with its numbers, for a reader to check.
    """

    name: str
    kind: str
    flops: int
    formula: str


def _dense(layer, input_shape, output_shape):
    d_in, units = int(input_shape[-1]), int(output_shape[-1])
    positions = int(np.prod(input_shape[1:-1], dtype=np.int64))
    flops = 2 * d_in * units * positions
    where = f" * {positions} positions" if positions > 1 else ""
    return flops, f"2 * {d_in} * {units}{where}"


def _conv1d(layer, input_shape, output_shape):
    length, filters = int(output_shape[1]), int(output_shape[2])
    kernel_size, channels = int(layer.kernel_size[0]), int(input_shape[-1])
    flops = 2 * length * kernel_size * channels * filters
    return flops, f"2 * {length} * {kernel_size} * {channels} * {filters}"


def _conv2d(layer, input_shape, output_shape):
    height, width, filters = (int(size) for size in output_shape[1:])
    k_h, k_w = (int(size) for size in layer.kernel_size)
    channels = int(input_shape[-1])
    flops = 2 * height * width * k_h * k_w * channels * filters
    return flops, (
        f"2 * {height} * {width} * {k_h} * {k_w} * {channels} * {filters}"
    )


def _simple_rnn(layer, input_shape, output_shape):
    cell = layer.cell
    steps, d_in, units = int(input_shape[1]), int(input_shape[2]), cell.units
    flops = 2 * steps * (d_in * units + units * units)
    return flops, f"2 * {steps} * ({d_in} * {units} + {units} * {units})"


def _embedding(layer, input_shape, output_shape):
    return 0, "0 (row gather)"


def _rnn(layer, input_shape, output_shape):
    if isinstance(layer.cell, keras.layers.SimpleRNNCell):
        return _simple_rnn(layer, input_shape, output_shape)
    raise TypeError(
        "Only SimpleRNN cells are counted. Received: "
        f"cell={type(layer.cell).__name__}"
    )


# Checked in order: SimpleRNN is an RNN subclass.
_FORMULAS = (
    (keras.layers.Dense, _dense),
    (keras.layers.Conv1D, _conv1d),
    (keras.layers.Conv2D, _conv2d),
    (keras.layers.SimpleRNN, _simple_rnn),
    (keras.layers.RNN, _rnn),
    (keras.layers.Embedding, _embedding),
)


def _formula(layer):
    if hasattr(layer, "flops_per_example"):
        return lambda layer, shape_in, shape_out: layer.flops_per_example(
            shape_in
        )
    for kind, formula in _FORMULAS:
        if isinstance(layer, kind):
            return formula
    return None


def _leaf_layers(model):
    """Every layer with a formula, looking inside nested models."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if _formula(layer) is not None:
            yield layer


def _record_shapes(model, inputs):
    """Calls `model` once, recording each counted layer's in/out shapes.

    Wrapping `call` of the instances (not the classes) sees every layer of
    functional, subclassed and nested models alike, and the shapes of a
    layer shared by two models (the language model's encoder) too.
    """
    shapes = {}
    patched = []
    for layer in _leaf_layers(model):
        original = layer.call

        def recording(*args, _layer=layer, _original=original, **kwargs):
            outputs = _original(*args, **kwargs)
            first = (
                outputs[0] if isinstance(outputs, (list, tuple)) else outputs
            )
            shapes.setdefault(
                id(_layer), (_layer, tuple(args[0].shape), tuple(first.shape))
            )
            return outputs

        object.__setattr__(layer, "call", recording)
        patched.append(layer)
    try:
        model(inputs, training=False)
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")
    return list(shapes.values())


def count_flops(model, inputs) -> list[LayerFlops]:
    """Returns the forward FLOPs per example of every counted layer.

    Args:
        model: A built Keras model.
        inputs: One batch the model accepts (any batch size; only the
            shapes after the batch axis matter), e.g. from
            `kerasdl.zoo.random_batch(model, batch_size=1)[0]`.

    Returns:
        A list of `LayerFlops`, in the order the layers ran.

    Example:

    >>> from kerasdl import zoo
    >>> model = zoo.build("text_cnn")
    >>> inputs, _ = zoo.random_batch(model, batch_size=1)
    >>> sum(row.flops for row in count_flops(model, inputs))
    78030
    """
    rows = []
    for layer, input_shape, output_shape in _record_shapes(model, inputs):
        flops, formula = _formula(layer)(layer, input_shape, output_shape)
        rows.append(
            LayerFlops(layer.name, type(layer).__name__, int(flops), formula)
        )
    return rows


def training_flops_per_example(model, inputs) -> int:
    """Forward FLOPs per example times `TRAINING_MULTIPLIER` (3)."""
    forward = sum(row.flops for row in count_flops(model, inputs))
    return TRAINING_MULTIPLIER * forward
