"""Building blocks shared by the zoo's builders."""

import keras

from kerasdl.layers import get_activation
from kerasdl.zoo import _checks

EMBEDDING_LAYER_NAME = "token_embedding"


def activation_layer(name, hand_written, layer_name):
    """Returns a named activation layer: kerasdl's or Keras' built-in.

    Args:
        name: `"relu"`, `"tanh"` or `"sigmoid"`.
        hand_written: If `True`, kerasdl's layer with the hand-written
            backward pass; if `False`, `keras.layers.Activation(name)`.
        layer_name: The layer's name in the model, e.g. `"relu_1"`.
    """
    layer = get_activation(name, hand_written=hand_written)
    # get_activation takes no layer name; a fresh layer may be renamed
    # until it is first called.
    layer.name = layer_name
    return layer


def softmax_dtype():
    """The dtype of the final softmax: float32, or float64 if global.

    Under `mixed_float16` the logits are float16, whose softmax and
    cross-entropy lose precision and overflow; the float32 layer casts
    them up. Under a float64 global policy (gradient checks rebuild models
    that way) it keeps float64.
    """
    if keras.config.dtype_policy().compute_dtype == "float64":
        return "float64"
    return "float32"


def softmax_head(features, num_classes, name_prefix="", max_norm=None):
    """Dense logits (optionally max-norm constrained), then a softmax.

    Args:
        features: The input tensor, `(..., features)`.
        num_classes: Output units.
        name_prefix: Prefix of the two layer names (`logits`, `softmax`).
        max_norm: If set, the largest L2 norm of each class's weight
            vector (`keras.constraints.MaxNorm`).

    Returns:
        Probabilities `(..., num_classes)` in `softmax_dtype()`.
    """
    constraint = None
    if max_norm is not None:
        constraint = keras.constraints.MaxNorm(max_norm)
    logits = keras.layers.Dense(
        num_classes, kernel_constraint=constraint, name=f"{name_prefix}logits"
    )(features)
    softmax = keras.layers.Activation(
        "softmax", dtype=softmax_dtype(), name=f"{name_prefix}softmax"
    )
    return softmax(logits)


def sentence_inputs(
    vocabulary_size,
    sequence_length,
    embedding_dim,
    embeddings=None,
    trainable_embeddings=True,
    mask_zero=False,
):
    """Returns the model input and the sentence matrix it leads to.

    With `vocabulary_size=None` the input is the float sentence matrix
    itself, `(batch, sequence_length, embedding_dim)`. Otherwise it is a
    batch of int token ids, `(batch, sequence_length)`, looked up in an
    Embedding (initialised from `embeddings` where given).

    Returns:
        `(inputs, sentence_matrix, embedding_layer)`; the layer is `None`
        for float inputs.
    """
    if vocabulary_size is None:
        inputs = keras.Input(
            (sequence_length, embedding_dim), name="sentence_matrix"
        )
        return inputs, inputs, None

    inputs = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    layer = keras.layers.Embedding(
        vocabulary_size,
        embedding_dim,
        mask_zero=mask_zero,
        trainable=trainable_embeddings,
        name=EMBEDDING_LAYER_NAME,
    )
    # (batch, sequence_length, embedding_dim)
    sentence_matrix = layer(inputs)
    return inputs, sentence_matrix, layer


def load_embeddings(layer, matrix):
    """Copies a checked pretrained matrix into a built Embedding layer.

    Assigning after the build (not through an initializer) keeps the big
    matrix out of the model's config; it travels with the weights.
    """
    if matrix is not None:
        layer.embeddings.assign(matrix)


def check_text_arguments(
    vocabulary_size,
    sequence_length,
    embedding_dim,
    num_classes,
    embeddings,
    trainable_embeddings,
    hand_written_activations,
    allow_float_inputs=True,
):
    """Checks the arguments every text model shares; returns them cleaned.

    Returns:
        A dict with the checked values under the same names.
    """
    vocabulary_size = _checks.vocabulary_size(
        vocabulary_size, allow_none=allow_float_inputs
    )
    embedding_dim = _checks.positive_int("embedding_dim", embedding_dim)
    return {
        "vocabulary_size": vocabulary_size,
        "sequence_length": _checks.positive_int(
            "sequence_length", sequence_length
        ),
        "embedding_dim": embedding_dim,
        "num_classes": (
            None if num_classes is None else _checks.num_classes(num_classes)
        ),
        "embeddings": _checks.embeddings(
            embeddings, vocabulary_size, embedding_dim
        ),
        "trainable_embeddings": _checks.boolean(
            "trainable_embeddings", trainable_embeddings
        ),
        "hand_written_activations": _checks.boolean(
            "hand_written_activations", hand_written_activations
        ),
    }
