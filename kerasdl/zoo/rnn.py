"""Simple (Elman) recurrent networks: a classifier and a language model.

A simple RNN reads one word vector x_t at a time and updates a hidden state
`h_t = tanh(x_t W + h_{t-1} U + b)`. It has no cell state (that is the
LSTM's addition): h_t is all it remembers. The classifier reads the final
h_T as the sentence vector; the language model predicts the next token from
every h_t, and its trained encoder can then embed sentences for a
classifier (`sentence_encoder`, `sentence_classifier`).
"""

import keras

from kerasdl import layers
from kerasdl.zoo import _blocks
from kerasdl.zoo import _checks
from kerasdl.zoo.registry import register

RNN_LAYER_NAME = "rnn"

_ELMAN_SOURCE = "Elman (1990), Finding Structure in Time, §3 (simple RNN)"
_LANGUAGE_MODEL_SOURCE = (
    "Mikolov et al. (2010), Recurrent neural network based language "
    "model, §2; sentence vectors from its hidden state as in Dai & Le "
    "(2015), Semi-supervised Sequence Learning, §2"
)
_NO_CELL_STATE_NOTE = (
    "A simple RNN has no cell state (unlike an LSTM): the hidden state h_t "
    "({units} values) is its only memory, and the final h_T is the "
    "sentence vector. The output layer has num_classes = {num_classes} "
    "units, not {units}."
)


@keras.saving.register_keras_serializable(package="kerasdl")
def hand_written_tanh(x):
    """`kerasdl.layers.tanh` (hand-written gradient) as a named function.

    `keras.layers.SimpleRNN(activation=...)` stores its activation by name
    in the config; registering this function under its own name keeps a
    reloaded model on the hand-written gradient instead of Keras' `tanh`.
    """
    return layers.tanh(x)


def _recurrent_layer(units, hand_written, return_sequences):
    """The SimpleRNN layer, with kerasdl's or Keras' tanh."""
    activation = hand_written_tanh if hand_written else "tanh"
    return keras.layers.SimpleRNN(
        units,
        activation=activation,
        return_sequences=return_sequences,
        name=RNN_LAYER_NAME,
    )


@register(
    task="text_classification", source=_ELMAN_SOURCE, note=_NO_CELL_STATE_NOTE
)
def simple_rnn(
    vocabulary_size=None,
    sequence_length=10,
    embedding_dim=300,
    units=50,
    num_classes=4,
    embeddings=None,
    trainable_embeddings=True,
    hand_written_activations=True,
):
    """A simple RNN sentence classifier.

    Word vectors x_t in R^300 update a hidden state h_t in R^50 through an
    input kernel (300 x 50), a recurrent kernel (50 x 50) and a bias (50);
    the final h_T feeds a 4-way softmax. With float inputs it has exactly
    17,754 parameters: 15,000 + 2,500 + 50 in the RNN, 50 * 4 + 4 in the
    classifier. With token ids, id 0 is masked: the RNN skips padding, so
    h_T is the state after the last real word.

    Args:
        vocabulary_size: `None` for float sentence matrices
            `(batch, sequence_length, embedding_dim)`; an int for token ids
            `(batch, sequence_length)` (0 = padding, 1 = out-of-vocabulary).
        sequence_length: Tokens per sentence.
        embedding_dim: Size of a word vector x_t.
        units: Size of the hidden state h_t.
        num_classes: Classes of the softmax.
        embeddings: Optional pretrained matrix `(vocabulary_size,
            embedding_dim)`.
        trainable_embeddings: If `False`, the word vectors stay fixed.
        hand_written_activations: If `True`, the RNN uses
            `kerasdl.layers.tanh` (hand-written gradient); else Keras' tanh.

    Returns:
        A built functional `keras.Model` giving `(batch, num_classes)`
        probabilities.

    Raises:
        ValueError: If an argument has an invalid value.

    Example:

    >>> from kerasdl import zoo
    >>> zoo.build("simple_rnn").count_params()
    17754
    """
    args = _blocks.check_text_arguments(
        vocabulary_size,
        sequence_length,
        embedding_dim,
        num_classes,
        embeddings,
        trainable_embeddings,
        hand_written_activations,
    )
    units = _checks.positive_int("units", units)

    inputs, sentence_matrix, embedding_layer = _blocks.sentence_inputs(
        args["vocabulary_size"],
        args["sequence_length"],
        args["embedding_dim"],
        trainable_embeddings=args["trainable_embeddings"],
        mask_zero=True,
    )
    rnn = _recurrent_layer(units, args["hand_written_activations"], False)
    # (batch, units): h_T, the state after the last unmasked step.
    sentence_vector = rnn(sentence_matrix)
    outputs = _blocks.softmax_head(sentence_vector, args["num_classes"])
    model = keras.Model(inputs, outputs, name="simple_rnn")

    if embedding_layer is not None:
        _blocks.load_embeddings(embedding_layer, args["embeddings"])
    return model


@register(task="language_model", source=_LANGUAGE_MODEL_SOURCE)
def rnn_language_model(
    vocabulary_size=5000,
    sequence_length=32,
    embedding_dim=128,
    units=50,
    embeddings=None,
    trainable_embeddings=True,
    hand_written_activations=True,
):
    """A simple RNN language model: the next token at every position.

    Token ids go through an Embedding (id 0 masked as padding), a
    SimpleRNN that returns h_t at every step, and a Dense softmax over the
    vocabulary. Train it on `(ids[:, :-1], ids[:, 1:])` pairs. The
    Embedding is named `"token_embedding"` and the RNN `"rnn"`, which
    `sentence_encoder` relies on.

    Args:
        vocabulary_size: Token ids run from 0 (padding) and 1
            (out-of-vocabulary) to `vocabulary_size - 1`.
        sequence_length: Tokens per input sequence.
        embedding_dim: Size of a token vector.
        units: Size of the hidden state h_t.
        embeddings: Optional pretrained matrix `(vocabulary_size,
            embedding_dim)`.
        trainable_embeddings: If `False`, the token vectors stay fixed.
        hand_written_activations: kerasdl's tanh if `True`, else Keras'.

    Returns:
        A built functional `keras.Model`, `(batch, sequence_length)` ids to
        `(batch, sequence_length, vocabulary_size)` probabilities.

    Raises:
        ValueError: If an argument has an invalid value.

    Example:

    >>> from kerasdl import zoo
    >>> model = zoo.build("rnn_language_model", vocabulary_size=100)
    >>> model.output.shape
    (None, 32, 100)
    """
    args = _blocks.check_text_arguments(
        vocabulary_size,
        sequence_length,
        embedding_dim,
        None,
        embeddings,
        trainable_embeddings,
        hand_written_activations,
        allow_float_inputs=False,
    )
    units = _checks.positive_int("units", units)

    inputs, token_vectors, embedding_layer = _blocks.sentence_inputs(
        args["vocabulary_size"],
        args["sequence_length"],
        args["embedding_dim"],
        trainable_embeddings=args["trainable_embeddings"],
        mask_zero=True,
    )
    rnn = _recurrent_layer(units, args["hand_written_activations"], True)
    # (batch, sequence_length, units): h_t at every position.
    hidden_states = rnn(token_vectors)
    # (batch, sequence_length, vocabulary_size)
    outputs = _blocks.softmax_head(
        hidden_states, args["vocabulary_size"], "next_token_"
    )
    model = keras.Model(inputs, outputs, name="rnn_language_model")

    _blocks.load_embeddings(embedding_layer, args["embeddings"])
    return model


def _language_model_layers(language_model):
    """Returns the Embedding and SimpleRNN layers of a language model."""
    try:
        embedding = language_model.get_layer(_blocks.EMBEDDING_LAYER_NAME)
        rnn = language_model.get_layer(RNN_LAYER_NAME)
    except ValueError:
        embedding = rnn = None
    if not isinstance(embedding, keras.layers.Embedding) or not isinstance(
        rnn, keras.layers.SimpleRNN
    ):
        raise ValueError(
            "Argument `language_model` must be a model built by "
            "`zoo.build('rnn_language_model')`, with an Embedding named "
            f"{_blocks.EMBEDDING_LAYER_NAME!r} and a SimpleRNN named "
            f"{RNN_LAYER_NAME!r}. Received: language_model={language_model!r}"
        )
    return embedding, rnn


def sentence_encoder(language_model):
    """Returns a model mapping token ids to the language model's final h_T.

    The encoder shares the language model's Embedding and recurrent cell
    (the same weight variables, not copies): training one changes the
    other. Padding (id 0) is masked, so h_T is the hidden state after the
    last real token, the same value as the language model's hidden state
    at that position.

    Args:
        language_model: A model built by `zoo.build("rnn_language_model")`.

    Returns:
        A functional `keras.Model`, `(batch, sequence_length)` int ids to
        `(batch, units)` sentence vectors.

    Raises:
        ValueError: If `language_model` lacks the Embedding or the RNN.

    Example:

    >>> from kerasdl import zoo
    >>> lm = zoo.build("rnn_language_model", vocabulary_size=100)
    >>> zoo.sentence_encoder(lm).output.shape
    (None, 50)
    """
    embedding, rnn = _language_model_layers(language_model)
    inputs = keras.Input(
        language_model.inputs[0].shape[1:], dtype="int32", name="token_ids"
    )
    # A second RNN wrapper around the language model's own cell: the same
    # W, U, b, but it returns only the last state. (batch, units)
    final_state = keras.layers.RNN(rnn.cell, name="final_hidden_state")
    outputs = final_state(embedding(inputs))
    return keras.Model(inputs, outputs, name="sentence_encoder")


def sentence_classifier(language_model, num_classes, trainable=False):
    """Returns a sentence classifier on top of a language model's encoder.

    The classifier is `sentence_encoder(language_model)` followed by a
    Dense softmax. With `trainable=False` the encoder is frozen (only the
    new output layer learns): the sentence vectors stay the ones the
    language model learnt. With `trainable=True` it is fine-tuned.
    Because the layers are shared, this sets `trainable` on the language
    model's Embedding and RNN too, as `base_model.trainable = False` does
    in Keras' transfer-learning recipe.

    Args:
        language_model: A model built by `zoo.build("rnn_language_model")`.
        num_classes: Classes of the softmax.
        trainable: Whether the encoder's weights are trained.

    Returns:
        A functional `keras.Model`, `(batch, sequence_length)` int ids to
        `(batch, num_classes)` probabilities.

    Raises:
        ValueError: If `num_classes < 2` or `language_model` is not a
            language model from the zoo.
        TypeError: If `trainable` is not a bool.

    Example:

    >>> from kerasdl import zoo
    >>> lm = zoo.build("rnn_language_model", vocabulary_size=100)
    >>> classifier = zoo.sentence_classifier(lm, num_classes=2)
    >>> len(classifier.trainable_weights)
    2
    """
    num_classes = _checks.num_classes(num_classes)
    trainable = _checks.boolean("trainable", trainable)
    encoder = sentence_encoder(language_model)
    encoder.trainable = trainable

    inputs = keras.Input(
        encoder.inputs[0].shape[1:], dtype="int32", name="token_ids"
    )
    # training=False keeps a frozen encoder in inference mode, the Keras
    # convention for frozen bases (it matters for dropout or batch norm).
    sentence_vectors = encoder(inputs, training=None if trainable else False)
    outputs = _blocks.softmax_head(sentence_vectors, num_classes)
    return keras.Model(inputs, outputs, name="sentence_classifier")
