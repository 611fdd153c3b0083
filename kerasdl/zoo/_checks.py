"""Argument checks shared by the zoo's builders.

Each check raises a `ValueError` (bad value) or `TypeError` (bad type) that
names the argument, says what was expected and ends with `Received:`.
"""

import numbers

import numpy as np

PADDINGS = ("valid", "same")

# Token id 0 is padding and 1 is out-of-vocabulary (the convention of
# `keras.layers.TextVectorization`), so a vocabulary needs at least one
# real token after them.
MIN_VOCABULARY_SIZE = 3


def is_integer(value):
    """Returns whether `value` is an integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name, value, minimum=1):
    """Returns `value` as an int, checking that it is >= `minimum`."""
    if not is_integer(value) or value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def num_classes(value):
    """Checks `num_classes`: a softmax needs at least two classes."""
    return positive_int("num_classes", value, minimum=2)


def vocabulary_size(value, allow_none=False):
    """Checks `vocabulary_size`; `None` (float inputs) where allowed."""
    if value is None and allow_none:
        return None
    if not is_integer(value) or value < MIN_VOCABULARY_SIZE:
        expected = f"an integer >= {MIN_VOCABULARY_SIZE} (ids 0 and 1 are "
        expected += "padding and out-of-vocabulary)"
        if allow_none:
            expected += ", or None for float sentence matrices"
        raise ValueError(
            f"Argument `vocabulary_size` must be {expected}. "
            f"Received: vocabulary_size={value!r}"
        )
    return int(value)


def rate(name, value):
    """Checks a dropout rate in [0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"Argument `{name}` must be a number in [0, 1). "
            f"Received: {name}={value!r}"
        )
    return float(value)


def boolean(name, value):
    """Checks that a flag is a bool (not, say, the string "False")."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"Argument `{name}` must be True or False. "
            f"Received: {name}={value!r}"
        )
    return bool(value)


def choice(name, value, choices):
    """Checks that `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {choices}. "
            f"Received: {name}={value!r}"
        )
    return value


def embeddings(matrix, vocabulary_size, embedding_dim):
    """Checks a pretrained embedding matrix; returns it as float32 NumPy.

    Args:
        matrix: `None` or an array of shape `(vocabulary_size,
            embedding_dim)`.
        vocabulary_size: The model's vocabulary size (`None` when the
            model takes float sentence matrices, which have no Embedding).
        embedding_dim: The model's embedding size.

    Returns:
        `None` or a float32 `np.ndarray`.
    """
    if matrix is None:
        return None
    if vocabulary_size is None:
        raise ValueError(
            "Argument `embeddings` needs a token-id model: pass "
            "`vocabulary_size` too (without it the model takes float "
            "sentence matrices and has no Embedding layer). Received: "
            "vocabulary_size=None"
        )
    matrix = np.asarray(matrix)
    expected = (vocabulary_size, embedding_dim)
    if matrix.shape != expected or not np.issubdtype(matrix.dtype, np.floating):
        raise ValueError(
            "Argument `embeddings` must be a float matrix of shape "
            f"(vocabulary_size, embedding_dim) = {expected}. Received: "
            f"embeddings with shape={matrix.shape}, dtype={matrix.dtype}"
        )
    return matrix.astype("float32")
