"""Random batches shaped for any zoo model, for smoke tests and demos."""

import keras
import numpy as np


def _input_signature(model):
    """Returns `(shape without batch, dtype)` of the model's single input."""
    try:
        inputs = model.inputs
    except AttributeError:
        inputs = None
    if inputs:
        if len(inputs) != 1:
            raise ValueError(
                "Argument `model` must have a single input. "
                f"Received: model with {len(inputs)} inputs"
            )
        return tuple(inputs[0].shape[1:]), str(inputs[0].dtype)

    # A subclassed model (LeNet) knows its input from its build.
    input_shape = (model.get_build_config() or {}).get("input_shape")
    if input_shape is None:
        raise ValueError(
            "Argument `model` must be built with a known input shape. "
            f"Received: model={model.name}"
        )
    return tuple(input_shape[1:]), "float32"


def _output_shape(model, input_shape):
    try:
        outputs = model.outputs
    except AttributeError:
        outputs = None
    if outputs:
        return tuple(outputs[0].shape)
    return tuple(model.compute_output_shape((None, *input_shape)))


def _vocabulary_size(model):
    """The `input_dim` of the model's first Embedding layer.

    Searched depth-first, so an Embedding inside a nested layer (the
    encoder that `sentence_classifier` puts on a language model) counts.
    """
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        if isinstance(layer, keras.layers.Embedding):
            return int(layer.input_dim)
        pending[:0] = getattr(layer, "layers", [])
    raise ValueError(
        "Argument `model` takes int inputs but has no Embedding layer to "
        f"size the token ids. Received: model={model.name}"
    )


def random_batch(model, batch_size=4, seed=0):
    """Returns random `(inputs, targets)` that fit a built model.

    Float inputs are standard normal. Int inputs are token ids in
    `[2, vocabulary_size)`, with trailing padding (id 0) in every other row
    so that masking is exercised. Targets are class ids in
    `[0, output_shape[-1])`, shaped like the output without its last axis:
    `(batch,)` for a classifier, `(batch, sequence_length)` for a language
    model.

    Args:
        model: A built zoo model with one input.
        batch_size: Rows in the batch, `>= 1`.
        seed: Seed of the NumPy generator.

    Returns:
        `(inputs, targets)` as NumPy arrays.

    Raises:
        ValueError: If the model has several inputs or an unknown input
            shape.

    Example:

    >>> from kerasdl import zoo
    >>> inputs, targets = zoo.random_batch(zoo.build("text_cnn"))
    >>> inputs.shape, targets.shape
    ((4, 10, 300), (4,))
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or (batch_size < 1)
    ):
        raise ValueError(
            "Argument `batch_size` must be an integer >= 1. "
            f"Received: batch_size={batch_size!r}"
        )
    rng = np.random.default_rng(seed)
    shape, dtype = _input_signature(model)
    if "int" in dtype:
        vocabulary_size = _vocabulary_size(model)
        inputs = rng.integers(2, vocabulary_size, (batch_size, *shape))
        # Pad the second half of every other sentence: (batch, length).
        inputs[1::2, max(1, shape[0] // 2) :] = 0
        inputs = inputs.astype(dtype)
    else:
        inputs = rng.standard_normal((batch_size, *shape)).astype(dtype)

    output_shape = _output_shape(model, shape)
    targets = rng.integers(
        0, output_shape[-1], (batch_size, *output_shape[1:-1])
    )
    return inputs, targets.astype("int32")
