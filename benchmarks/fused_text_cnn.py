"""Kim's text CNN with its convolutions fused into one, for speed.

`text_cnn_kim` runs one Conv1D per region size (3, 4 and 5 words, 100
filters each): three small matrix products. Here one Conv1D with
`max(region_sizes)` taps and all 300 filters does the work in one larger
product, which keeps the CPU's vector units busier:

- the kernel `(5, embedding_dim, 300)` is multiplied by a fixed 0/1 tap
  mask, so a filter of region size k only ever uses (and only ever gets
  gradients for) its first k taps;
- the sentence is padded on the right with `max - min` zero vectors, so
  the fused map has the `sequence_length - min + 1` positions of the
  narrowest region;
- positions where a filter of size k would read past the sentence are
  zeroed after the ReLU; as ReLU outputs are >= 0, 1-max pooling then
  returns exactly the maximum over the valid positions.

The model computes the same function as `text_cnn_kim` with the same
weights (`copy_kim_weights` and the tests check it); it spends
`max / mean(region_sizes)` times the convolution FLOPs (5/4 for 3, 4, 5),
but the useful FLOPs it reports are the unfused ones.
"""

import keras
import numpy as np

from kerasdl import layers as kerasdl_layers


class FusedRegionConv1D(keras.layers.Layer):
    """Several region sizes of a text CNN as one masked Conv1D.

    Args:
        region_sizes: Words each group of filters spans, e.g. `(3, 4, 5)`.
        filters: Filters per region size.
        hand_written_activations: kerasdl's ReLU (hand-written gradient)
            if `True`, else `keras.ops.relu`.
        **kwargs: Base layer arguments.

    Input shape:
        `(batch, sequence_length, embedding_dim)`.

    Output shape:
        `(batch, len(region_sizes) * filters)`: the 1-max pooled ReLU
        feature maps, grouped by region size in the given order.

    Example:

    >>> layer = FusedRegionConv1D((3, 4, 5), filters=2)
    >>> layer(np.zeros((1, 7, 8), "float32")).shape
    (1, 6)
    """

    def __init__(
        self, region_sizes, filters, hand_written_activations=True, **kwargs
    ):
        super().__init__(**kwargs)
        sizes = tuple(region_sizes)
        if not sizes or not all(
            isinstance(size, int) and size >= 1 for size in sizes
        ):
            raise ValueError(
                "Argument `region_sizes` must be a non-empty tuple of "
                f"positive integers. Received: region_sizes={region_sizes!r}"
            )
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(
                "Argument `filters` must be a positive integer. "
                f"Received: filters={filters!r}"
            )
        self.region_sizes = sizes
        self.filters = filters
        self.hand_written_activations = hand_written_activations

    def _group_masks(self, sequence_length):
        """The 0/1 tap mask and position mask, as float32 NumPy arrays."""
        widest, narrowest = max(self.region_sizes), min(self.region_sizes)
        positions = sequence_length - narrowest + 1
        taps = np.zeros((widest, 1, self.units), "float32")
        valid = np.zeros((positions, self.units), "float32")
        for group, size in enumerate(self.region_sizes):
            columns = slice(group * self.filters, (group + 1) * self.filters)
            # A size-k filter uses taps 0..k-1 ...
            taps[:size, :, columns] = 1.0
            # ... and has sequence_length - k + 1 valid positions.
            valid[: sequence_length - size + 1, columns] = 1.0
        return taps, valid

    @property
    def units(self):
        return len(self.region_sizes) * self.filters

    def build(self, input_shape):
        sequence_length, channels = int(input_shape[1]), int(input_shape[2])
        if sequence_length < max(self.region_sizes):
            raise ValueError(
                "The sentence must be at least as long as the widest "
                f"region, {max(self.region_sizes)}. Received: "
                f"input_shape={input_shape}"
            )
        widest = max(self.region_sizes)
        self.kernel = self.add_weight(
            shape=(widest, channels, self.units),
            initializer="zeros",
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.units,), initializer="zeros", name="bias"
        )
        self.kernel.assign(self._initial_kernel(channels))
        taps, valid = self._group_masks(sequence_length)
        self.tap_mask = keras.ops.convert_to_tensor(taps)
        self.position_mask = keras.ops.convert_to_tensor(valid)

    def _initial_kernel(self, channels):
        """Glorot-uniform per group, as each separate Conv1D would get."""
        widest = max(self.region_sizes)
        groups = []
        for size in self.region_sizes:
            initializer = keras.initializers.GlorotUniform()
            kernel = keras.ops.convert_to_numpy(
                initializer((size, channels, self.filters))
            )
            padding = np.zeros(
                (widest - size, channels, self.filters), "float32"
            )
            groups.append(np.concatenate([kernel, padding], axis=0))
        return np.concatenate(groups, axis=-1)

    def call(self, inputs):
        widest, narrowest = max(self.region_sizes), min(self.region_sizes)
        # (batch, sequence_length + widest - narrowest, embedding_dim)
        padded = keras.ops.pad(
            inputs, [[0, 0], [0, widest - narrowest], [0, 0]]
        )
        kernel = self.kernel * self.tap_mask
        # (batch, sequence_length - narrowest + 1, units)
        maps = keras.ops.conv(padded, kernel, padding="valid") + self.bias
        if self.hand_written_activations:
            maps = kerasdl_layers.relu(maps)
        else:
            maps = keras.ops.relu(maps)
        # Zero where a filter reads past the sentence; ReLU values are >= 0,
        # so the max below ignores those positions. (batch, units)
        return keras.ops.max(maps * self.position_mask, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def flops_per_example(self, input_shape):
        """The unfused (useful) forward FLOPs: `benchmarks.flops` reads it."""
        sequence_length, channels = int(input_shape[1]), int(input_shape[2])
        terms = [
            2 * (sequence_length - size + 1) * size * channels * self.filters
            for size in self.region_sizes
        ]
        formula = " + ".join(
            f"2 * {sequence_length - size + 1} * {size} * {channels} * "
            f"{self.filters}"
            for size in self.region_sizes
        )
        return sum(terms), formula + " (useful; fused spends more)"

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "region_sizes": self.region_sizes,
                "filters": self.filters,
                "hand_written_activations": self.hand_written_activations,
            }
        )
        return config


def build_fused_text_cnn(
    vocabulary_size,
    sequence_length,
    embedding_dim=300,
    region_sizes=(3, 4, 5),
    filters=100,
    num_classes=6,
    dropout=0.5,
    max_norm=3.0,
    hand_written_activations=True,
):
    """Kim's CNN-rand with `FusedRegionConv1D`; layers named as the zoo's.

    Args:
        vocabulary_size: Token ids run from 0 (padding) to this minus 1.
        sequence_length: Tokens per sentence.
        embedding_dim: Size of a word vector.
        region_sizes: Words each group of filters spans.
        filters: Filters per region size.
        num_classes: Classes of the softmax.
        dropout: Dropout rate on the pooled features.
        max_norm: Largest L2 norm of each class's weight vector, or `None`.
        hand_written_activations: kerasdl's ReLU if `True`.

    Returns:
        A functional `keras.Model`, `(batch, sequence_length)` int ids to
        `(batch, num_classes)` probabilities.

    Example:

    >>> model = build_fused_text_cnn(100, 37)
    >>> model.output.shape
    (None, 6)
    """
    inputs = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    # (batch, sequence_length, embedding_dim)
    sentence_matrix = keras.layers.Embedding(
        vocabulary_size, embedding_dim, name="token_embedding"
    )(inputs)
    # (batch, len(region_sizes) * filters)
    features = FusedRegionConv1D(
        tuple(region_sizes),
        filters,
        hand_written_activations=hand_written_activations,
        name="fused_regions",
    )(sentence_matrix)
    if dropout > 0:
        features = keras.layers.Dropout(dropout, name="dropout")(features)
    constraint = (
        None if max_norm is None else keras.constraints.MaxNorm(max_norm)
    )
    logits = keras.layers.Dense(
        num_classes, kernel_constraint=constraint, name="logits"
    )(features)
    outputs = keras.layers.Activation(
        "softmax", dtype="float32", name="softmax"
    )(logits)
    return keras.Model(inputs, outputs, name="text_cnn_kim_fused")


def copy_kim_weights(kim_model, fused_model):
    """Copies a `text_cnn_kim` model's weights into the fused model.

    Args:
        kim_model: A model from `zoo.build("text_cnn_kim", ...)`.
        fused_model: A `build_fused_text_cnn` model of the same sizes.
    """
    fused = fused_model.get_layer("fused_regions")
    widest = max(fused.region_sizes)
    kernels, biases = [], []
    for size in fused.region_sizes:
        kernel, bias = kim_model.get_layer(f"conv_region_{size}").get_weights()
        # (size, embedding_dim, filters) -> (widest, embedding_dim, filters)
        padding = np.zeros((widest - size, *kernel.shape[1:]), kernel.dtype)
        kernels.append(np.concatenate([kernel, padding], axis=0))
        biases.append(bias)
    fused.set_weights([np.concatenate(kernels, -1), np.concatenate(biases)])
    for name in ("token_embedding", "logits"):
        fused_model.get_layer(name).set_weights(
            kim_model.get_layer(name).get_weights()
        )
