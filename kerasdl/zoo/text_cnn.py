"""Convolutional sentence classifiers (Kim, 2014).

A sentence of `sequence_length` words is a matrix of word vectors,
`(sequence_length, embedding_dim)`. Each region size `k` gets a Conv1D of
`filters` filters that spans the full vector width and slides over `k`
words at a time, giving a feature map of `sequence_length - k + 1` values
per filter. 1-max pooling over time keeps the strongest value of each map,
so the sentence becomes one fixed-size vector whatever its length, which a
Dense softmax classifies.
"""

import numbers

import keras

from kerasdl.zoo import _blocks
from kerasdl.zoo import _checks
from kerasdl.zoo.registry import register

_KIM_SOURCE = (
    "Kim (2014), Convolutional Neural Networks for Sentence "
    "Classification, EMNLP, §2 (model) and §3.1 (hyperparameters)"
)


def _check_region_sizes(region_sizes, sequence_length):
    """Checks `region_sizes`: distinct, positive and <= sequence_length."""
    sizes = (
        tuple(region_sizes) if isinstance(region_sizes, (list, tuple)) else ()
    )
    if not sizes or not all(_checks.is_integer(k) and k >= 1 for k in sizes):
        raise ValueError(
            "Argument `region_sizes` must be a non-empty list of positive "
            f"integers. Received: region_sizes={region_sizes!r}"
        )
    if len(set(sizes)) != len(sizes):
        raise ValueError(
            "Argument `region_sizes` must not repeat a size (raise "
            "`filters` for more feature maps per size). Received: "
            f"region_sizes={region_sizes!r}"
        )
    if sequence_length < max(sizes):
        raise ValueError(
            "Argument `sequence_length` must be at least the largest region "
            f"size, {max(sizes)}, so that every filter fits in the sentence. "
            f"Received: sequence_length={sequence_length}"
        )
    return tuple(int(k) for k in sizes)


def _convolution_branch(sentence_matrix, region_size, filters, hand_written):
    """One region size: Conv1D, ReLU, 1-max pooling over time."""
    conv = keras.layers.Conv1D(
        filters, region_size, name=f"conv_region_{region_size}"
    )
    # (batch, sequence_length - region_size + 1, filters)
    feature_maps = conv(sentence_matrix)
    relu = _blocks.activation_layer(
        "relu", hand_written, f"relu_region_{region_size}"
    )
    feature_maps = relu(feature_maps)
    # (batch, filters): the largest value of each feature map.
    pool = keras.layers.GlobalMaxPooling1D(
        name=f"max_pool_region_{region_size}"
    )
    return pool(feature_maps)


def _build_text_cnn(
    name,
    vocabulary_size,
    sequence_length,
    embedding_dim,
    region_sizes,
    filters,
    num_classes,
    dropout,
    max_norm,
    embeddings,
    trainable_embeddings,
    hand_written_activations,
):
    """Builds a Kim-style text CNN as a functional `keras.Model`."""
    # --- Arguments ---
    args = _blocks.check_text_arguments(
        vocabulary_size,
        sequence_length,
        embedding_dim,
        num_classes,
        embeddings,
        trainable_embeddings,
        hand_written_activations,
    )
    region_sizes = _check_region_sizes(region_sizes, args["sequence_length"])
    filters = _checks.positive_int("filters", filters)
    dropout = _checks.rate("dropout", dropout)
    if max_norm is not None and (
        isinstance(max_norm, bool)
        or not isinstance(max_norm, numbers.Real)
        or not max_norm > 0
    ):
        raise ValueError(
            "Argument `max_norm` must be a positive number or None. "
            f"Received: max_norm={max_norm!r}"
        )

    # --- Layers and functional model ---
    inputs, sentence_matrix, embedding_layer = _blocks.sentence_inputs(
        args["vocabulary_size"],
        args["sequence_length"],
        args["embedding_dim"],
        trainable_embeddings=args["trainable_embeddings"],
    )
    pooled = [
        _convolution_branch(
            sentence_matrix,
            k,
            filters,
            args["hand_written_activations"],
        )
        for k in region_sizes
    ]
    # (batch, len(region_sizes) * filters); Concatenate needs two inputs.
    if len(pooled) == 1:
        features = keras.layers.Identity(name="sentence_features")(pooled[0])
    else:
        features = keras.layers.Concatenate(name="sentence_features")(pooled)
    if dropout > 0:
        features = keras.layers.Dropout(dropout, name="dropout")(features)
    outputs = _blocks.softmax_head(
        features, args["num_classes"], max_norm=max_norm
    )
    model = keras.Model(inputs, outputs, name=name)

    # --- Pretrained vectors ---
    if embedding_layer is not None:
        _blocks.load_embeddings(embedding_layer, args["embeddings"])
    return model


@register(
    task="text_classification",
    source=_KIM_SOURCE + "; the small 5-region specification",
)
def text_cnn(
    vocabulary_size=None,
    sequence_length=10,
    embedding_dim=300,
    region_sizes=(6, 5, 4, 3, 2),
    filters=1,
    num_classes=3,
    dropout=0.0,
    max_norm=None,
    embeddings=None,
    trainable_embeddings=True,
    hand_written_activations=True,
):
    """The small text CNN: five region sizes, one filter each.

    A 10-word sentence of 300-d vectors meets five Conv1D filters spanning
    6, 5, 4, 3 and 2 words, whose feature maps have 5, 6, 7, 8 and 9
    values; 1-max pooling keeps one scalar per map, and the 5-vector feeds
    a 3-way softmax. With float inputs it has 6,023 parameters:
    `(6 + 5 + 4 + 3 + 2) * 300 + 5` in the convolutions, `5 * 3 + 3` in
    the classifier.

    Args:
        vocabulary_size: `None` to take float sentence matrices
            `(batch, sequence_length, embedding_dim)`; an int to take token
            ids `(batch, sequence_length)` through an Embedding (0 =
            padding, 1 = out-of-vocabulary).
        sequence_length: Words per sentence (padded or cut to it).
        embedding_dim: Size of a word vector.
        region_sizes: Words each filter spans, one Conv1D per size.
        filters: Filters per region size.
        num_classes: Classes of the softmax.
        dropout: Dropout rate on the pooled features.
        max_norm: If set, the largest L2 norm of each class's weight vector
            in the output layer (Kim uses 3).
        embeddings: Optional pretrained matrix `(vocabulary_size,
            embedding_dim)` to initialise the Embedding.
        trainable_embeddings: If `False`, the word vectors stay fixed.
        hand_written_activations: If `True`, kerasdl's ReLU with its
            hand-written gradient; if `False`, Keras' built-in.

    Returns:
        A built functional `keras.Model` giving class probabilities
        `(batch, num_classes)`.

    Raises:
        ValueError: If an argument has an invalid value.

    Example:

    >>> from kerasdl import zoo
    >>> model = zoo.build("text_cnn")
    >>> model.output.shape, model.count_params()
    ((None, 3), 6023)
    """
    return _build_text_cnn(
        "text_cnn",
        vocabulary_size,
        sequence_length,
        embedding_dim,
        region_sizes,
        filters,
        num_classes,
        dropout,
        max_norm,
        embeddings,
        trainable_embeddings,
        hand_written_activations,
    )


@register(task="text_classification", source=_KIM_SOURCE)
def text_cnn_kim(
    vocabulary_size=20000,
    # The longest sentence of the benchmark files in shared/data/text has
    # 59 tokens (MR); SST has 56, TREC 37.
    sequence_length=64,
    embedding_dim=300,
    region_sizes=(3, 4, 5),
    filters=100,
    num_classes=6,
    dropout=0.5,
    max_norm=3.0,
    embeddings=None,
    trainable_embeddings=True,
    hand_written_activations=True,
):
    """Kim's (2014) CNN for sentence classification ("CNN-rand").

    Region sizes 3, 4 and 5 with 100 filters each, ReLU, 1-max pooling,
    dropout 0.5 on the 300 pooled features and a max-norm constraint of 3
    on each class's weight vector (Kim 2014, §3.1). Pass `embeddings` (e.g.
    word2vec vectors) with `trainable_embeddings=False` for "CNN-static".

    Args:
        vocabulary_size: Token ids run from 0 (padding) and 1
            (out-of-vocabulary) to `vocabulary_size - 1`; `None` takes float
            sentence matrices instead.
        sequence_length: Tokens per sentence; 64 covers every sentence of
            TREC, SST and MR.
        embedding_dim: Size of a word vector (300, as word2vec).
        region_sizes: Words each filter spans.
        filters: Filters per region size.
        num_classes: Classes (6 for TREC; 5 for SST-1, 2 for SST-2, MR).
        dropout: Dropout rate on the pooled features.
        max_norm: Largest L2 norm of each class's weight vector, or `None`.
        embeddings: Optional pretrained matrix `(vocabulary_size,
            embedding_dim)`.
        trainable_embeddings: If `False`, the word vectors stay fixed.
        hand_written_activations: kerasdl's ReLU if `True`, else Keras'.

    Returns:
        A built functional `keras.Model`, `(batch, sequence_length)` int
        token ids to `(batch, num_classes)` probabilities.

    Raises:
        ValueError: If an argument has an invalid value.

    Example:

    >>> from kerasdl import zoo
    >>> model = zoo.build("text_cnn_kim", vocabulary_size=100)
    >>> model.get_layer("sentence_features").output.shape
    (None, 300)
    """
    return _build_text_cnn(
        "text_cnn_kim",
        vocabulary_size,
        sequence_length,
        embedding_dim,
        region_sizes,
        filters,
        num_classes,
        dropout,
        max_norm,
        embeddings,
        trainable_embeddings,
        hand_written_activations,
    )
