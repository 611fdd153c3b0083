"""Inference-only text CNNs with the embedding folded into the convolutions.

In a Kim-style text CNN the first convolution reads the embedding of each
word and nothing else. For region size k, filter bank W (k, d, f) and
embedding table E (V, d), the feature map at position t is

    conv[t] = sum_{j < k} E[ids[t + j]] @ W[j]  (+ bias),

and E[ids[t + j]] @ W[j] is row ids[t + j] of the product E @ W[j], which
does not depend on the sentence. Computing those products once, a table of
V rows and sum(k) * f columns, turns serving into one table lookup and a
few additions per position, with no matrix product over the embedding
width: the same probabilities (to float32 rounding) for a fraction of the
work. The cost is memory: the table has sum(k) * f / d times as many
values as the embedding (4x for Kim's 3 x 100 filters of sizes 3, 4, 5 and
300-d vectors; 1/15 for the 5-filter `text_cnn`).

The folded model is for serving only: it has no gradients, no dropout and
no trainable weights. `kerasdl.export.export_model(..., fold_embeddings=
True)` exports it; `fold_text_cnn` builds it from a trained zoo model.
"""

import logging

import keras
import numpy as np
import tensorflow as tf

from kerasdl import layers as kerasdl_layers
from kerasdl.zoo import _blocks

logger = logging.getLogger(__name__)

# How far the folded model's probabilities may differ from the Keras
# model's before `fold_text_cnn` refuses the fold (float32 rounding of a
# reordered sum stays far below).
TOLERANCE = 1e-4

_SUPPORTED_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Embedding,
    keras.layers.Conv1D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.Concatenate,
    keras.layers.Identity,
    keras.layers.Dropout,
    keras.layers.Dense,
    keras.layers.Activation,
)


def _not_foldable(model, reason):
    return ValueError(
        "Argument `model` must be a zoo text CNN (`text_cnn`, "
        "`text_cnn_kim`, or one built by `kerasdl.zoo` with their "
        "layers) to fold its embedding into its convolutions; "
        f"{reason}. Received: model={getattr(model, 'name', model)!r}"
    )


def _region_layers(model):
    """The Conv1D layers in the order their features are concatenated."""
    features = model.get_layer("sentence_features")
    node = features._inbound_nodes[0]
    convolutions = []
    for tensor in node.input_tensors:
        pool = tensor._keras_history.operation
        prefix = "max_pool_region_"
        if not pool.name.startswith(prefix):
            raise _not_foldable(model, f"{pool.name!r} is not a max pooling")
        convolutions.append(
            model.get_layer("conv_region_" + pool.name[len(prefix) :])
        )
    return convolutions


def _check_structure(model):
    if not isinstance(model, keras.Model):
        raise _not_foldable(model, "it is not a keras.Model")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Activation):
            activation = layer.get_config()["activation"]
            if activation not in ("relu", "softmax"):
                raise _not_foldable(
                    model, f"layer {layer.name!r} applies {activation!r}"
                )
        elif not isinstance(layer, _SUPPORTED_LAYERS + (kerasdl_layers.ReLU,)):
            raise _not_foldable(
                model,
                f"layer {layer.name!r} ({type(layer).__name__}) has no "
                "folded form",
            )
    names = {layer.name for layer in model.layers}
    if _blocks.EMBEDDING_LAYER_NAME not in names:
        raise _not_foldable(model, "it has no token embedding")
    if "sentence_features" not in names or "logits" not in names:
        raise _not_foldable(model, "it has no sentence_features/logits")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv1D):
            config = layer.get_config()
            plain = (
                config["padding"] == "valid"
                and tuple(config["strides"]) == (1,)
                and tuple(config["dilation_rate"]) == (1,)
                and config["activation"] == "linear"
                and config["groups"] == 1
            )
            if not plain:
                raise _not_foldable(
                    model,
                    f"convolution {layer.name!r} is not a plain valid, "
                    "stride-1, linear Conv1D",
                )


class FoldedTextCNN(tf.Module):
    """A zoo text CNN's inference with the embedding folded in.

    Built by `fold_text_cnn`. Calling it on int token ids
    `(batch, sequence_length)` returns the class probabilities
    `(batch, num_classes)` in float32, as `model(ids, training=False)`
    does.

    Args:
        table: `(vocabulary_size, sum(region_sizes) * filters)` float32:
            for each region (in order) and each of its taps j, the block
            `E @ W[j]`.
        regions: `[(region_size, column_offset, filters, bias), ...]`.
        logits_kernel: `(features, num_classes)` of the output layer.
        logits_bias: `(num_classes,)`.
        sequence_length: The ids' length.
        name: The module's name.
    """

    def __init__(
        self,
        table,
        regions,
        logits_kernel,
        logits_bias,
        sequence_length,
        name=None,
    ):
        super().__init__(name=name)
        # tf.Variables, so that a SavedModel stores them once as weights
        # rather than as constants inside every serving graph.
        self.table = tf.Variable(table, trainable=False, name="folded_table")
        self.regions = [
            (int(size), int(offset), int(filters))
            for size, offset, filters, _ in regions
        ]
        self.region_biases = [
            tf.Variable(bias, trainable=False, name=f"bias_region_{size}")
            for size, _, _, bias in regions
        ]
        self.logits_kernel = tf.Variable(
            logits_kernel, trainable=False, name="logits_kernel"
        )
        self.logits_bias = tf.Variable(
            logits_bias, trainable=False, name="logits_bias"
        )
        self.sequence_length = int(sequence_length)

    @property
    def vocabulary_size(self):
        return int(self.table.shape[0])

    def __call__(self, token_ids, training=False):
        del training  # inference only: there is no dropout to switch
        # (batch, sequence_length, table columns): every word's
        # contribution to every tap of every filter, looked up at once.
        rows = tf.gather(self.table, tf.cast(token_ids, tf.int32))
        length = self.sequence_length
        features = []
        for (size, offset, filters), bias in zip(
            self.regions, self.region_biases
        ):
            positions = length - size + 1
            # (batch, positions, filters): tap j of the filter at position
            # t reads word t + j.
            feature_map = rows[:, 0:positions, offset : offset + filters]
            for tap in range(1, size):
                start = offset + tap * filters
                feature_map += rows[
                    :, tap : tap + positions, start : start + filters
                ]
            # max_t relu(x_t + b) = relu(max_t x_t + b): pool first.
            pooled = tf.reduce_max(feature_map, axis=1)
            features.append(tf.nn.relu(pooled + bias))
        features = (
            features[0] if len(features) == 1 else tf.concat(features, -1)
        )
        logits = tf.matmul(features, self.logits_kernel) + self.logits_bias
        return tf.nn.softmax(logits)


def fold_text_cnn(model, check_batch=64, seed=0):
    """Folds a zoo text CNN's embedding into its convolutions.

    The products are taken in float64 and stored in float32. The folded
    model is then checked against `model` on `check_batch` random
    sentences; a difference above `TOLERANCE` raises instead of handing
    back a model that serves other answers.

    Args:
        model: A built `text_cnn`/`text_cnn_kim` (any sizes, trained or
            not, ReLU activations, hand-written or not).
        check_batch: Random sentences to compare on (0 skips the check).
        seed: Seeds those sentences.

    Returns:
        A `FoldedTextCNN`.

    Raises:
        ValueError: If `model` is not a foldable text CNN, or the folded
            model disagrees with it.

    Example:

    >>> from kerasdl import zoo
    >>> model = zoo.build("text_cnn", vocabulary_size=1000)
    >>> folded = fold_text_cnn(model)
    >>> tuple(folded(np.zeros((2, 10), "int64")).shape)
    (2, 3)
    """
    _check_structure(model)
    embedding = model.get_layer(_blocks.EMBEDDING_LAYER_NAME)
    table = np.asarray(
        keras.ops.convert_to_numpy(embedding.embeddings), np.float64
    )
    blocks, regions, offset = [], [], 0
    for convolution in _region_layers(model):
        kernel, bias = (
            np.asarray(keras.ops.convert_to_numpy(w), np.float64)
            for w in convolution.weights
        )
        size, _, filters = kernel.shape
        for tap in range(size):
            blocks.append(table @ kernel[tap])
        regions.append((size, offset, filters, bias.astype(np.float32)))
        offset += size * filters
    logits = model.get_layer("logits")
    logits_kernel, logits_bias = (
        keras.ops.convert_to_numpy(w).astype(np.float32) for w in logits.weights
    )
    sequence_length = int(model.inputs[0].shape[1])
    folded = FoldedTextCNN(
        np.concatenate(blocks, axis=1).astype(np.float32),
        regions,
        logits_kernel,
        logits_bias,
        sequence_length,
        name=f"folded_{model.name}",
    )
    if check_batch:
        _check_agreement(model, folded, check_batch, seed)
    logger.info(
        "Folded %s: table %s (%.1f MB)",
        model.name,
        tuple(folded.table.shape),
        folded.table.shape.num_elements() * 4 / 1e6,
    )
    return folded


def _check_agreement(model, folded, batch, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(
        0, folded.vocabulary_size, (batch, folded.sequence_length)
    ).astype("int32")
    want = keras.ops.convert_to_numpy(model(ids, training=False))
    got = folded(ids).numpy()
    difference = float(np.abs(got - want.astype(np.float32)).max())
    if not difference <= TOLERANCE:
        raise ValueError(
            "The folded model's probabilities differ from the model's by "
            f"{difference:.3g} (allowed {TOLERANCE}); the model does not "
            "have the text CNN structure the fold assumes. Received: "
            f"model={model.name!r}"
        )
