"""Tests of kerasdl/optimizers.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdl import zoo
from kerasdl.optimizers import DenseGradientAdadelta
from kerasdl.optimizers import SparseAdadelta

RHO = 0.95
EPSILON = 1e-7


def _embedding_sum_model():
    # E = sum of the looked-up rows weighted by w: the gradient of each
    # row is w times how often its id occurs.
    inputs = keras.Input((3,), dtype="int32")
    vectors = keras.layers.Embedding(6, 2, name="embedding")(inputs)
    outputs = keras.layers.Flatten()(vectors)
    return keras.Model(inputs, outputs)


def _adadelta_reference(weights, gradient, steps):
    """Zeiler (2012) in float64 NumPy, the same gradient `steps` times."""
    return _dense_adadelta_steps(weights, [gradient] * steps)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_repeated_ids_follow_adadelta_on_the_summed_gradient(jit_compile):
    model = _embedding_sum_model()
    initial = model.get_weights()[0].astype(np.float64)
    ids = np.array([[1, 1, 4]], dtype="int32")  # id 1 occurs twice
    w = np.array([[0.5, -1.0, 2.0, 0.25, 1.5, -0.5]], dtype="float32")
    optimizer = DenseGradientAdadelta(
        learning_rate=1.0, rho=RHO, epsilon=EPSILON
    )

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            energy = tf.reduce_sum(model(ids) * w)
        gradients = tape.gradient(energy, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)

    for _ in range(3):
        step()

    gradient = np.zeros_like(initial)
    gradient[1] = w[0, 0:2] + w[0, 2:4]  # summed over both occurrences
    gradient[4] = w[0, 4:6]
    expected = _adadelta_reference(initial, gradient, steps=3)
    np.testing.assert_allclose(
        model.get_weights()[0], expected, rtol=1e-5, atol=1e-7
    )


def test_round_trips_through_keras_serialization():
    optimizer = DenseGradientAdadelta(learning_rate=0.5, rho=0.9)
    config = keras.optimizers.serialize(optimizer)
    rebuilt = keras.optimizers.deserialize(config)
    assert isinstance(rebuilt, DenseGradientAdadelta)
    assert rebuilt.get_config()["rho"] == pytest.approx(0.9)


def _dense_adadelta_steps(weights, gradients):
    """Zeiler (2012) in float64 NumPy, learning rate 1, one step per
    gradient: every row is updated (and its accumulators decay) each step.
    """
    accumulated_gradient = np.zeros_like(weights)
    accumulated_update = np.zeros_like(weights)
    for gradient in gradients:
        accumulated_gradient = RHO * accumulated_gradient + (1 - RHO) * (
            gradient**2
        )
        update = (
            -np.sqrt(accumulated_update + EPSILON)
            / np.sqrt(accumulated_gradient + EPSILON)
            * gradient
        )
        accumulated_update = RHO * accumulated_update + (1 - RHO) * (update**2)
        weights = weights + update
    return weights


def _row_gradients(ids, w, vocabulary):
    """The gradient of sum(w * embedding(ids)) for each table row."""
    # w: (1, 2 * ids) weights of the flattened rows.
    gradient = np.zeros((vocabulary, 2))
    for row, weight in zip(ids.ravel(), w.reshape(-1, 2)):
        gradient[row] += weight
    return gradient


# Batches of 3 ids from a table of 6 rows: rows 0 and 5 skip several
# steps, row 1 repeats within a batch.
SKIPPING_BATCHES = [[0, 1, 1], [2, 3, 2], [1, 4, 4], [1, 1, 1], [5, 0, 3]]


def _energy_weights(step):
    rng = np.random.default_rng(step)
    return rng.uniform(-2.0, 2.0, (1, 6)).astype("float32")


def test_embedding_gradients_are_sparse_on_tensorflow():
    # The premise of SparseAdadelta's row-wise path.
    model = _embedding_sum_model()
    with tf.GradientTape() as tape:
        energy = tf.reduce_sum(model(np.array([[0, 1, 1]], "int32")))
    gradient = tape.gradient(energy, model.trainable_variables)[0]
    assert isinstance(gradient, tf.IndexedSlices)


@pytest.mark.parametrize("dense_steps", [(), (2,)], ids=["sparse", "mixed"])
def test_sparse_adadelta_equals_dense_adadelta_on_skipped_rows(dense_steps):
    model = _embedding_sum_model()
    initial = model.get_weights()[0].astype(np.float64)
    optimizer = SparseAdadelta(learning_rate=1.0, rho=RHO, epsilon=EPSILON)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(ids, w, dense):
        with tf.GradientTape() as tape:
            energy = tf.reduce_sum(model(ids) * w)
        gradients = tape.gradient(energy, model.trainable_variables)
        if dense:  # a Python bool: one trace per kind
            gradients = [tf.convert_to_tensor(g) for g in gradients]
        optimizer.apply(gradients, model.trainable_variables)

    reference_gradients = []
    for number, batch in enumerate(SKIPPING_BATCHES):
        ids = np.array([batch], dtype="int32")
        w = _energy_weights(number)
        step(ids, w, number in dense_steps)
        reference_gradients.append(_row_gradients(ids, w, 6))

    expected = _dense_adadelta_steps(initial, reference_gradients)
    np.testing.assert_allclose(
        model.get_weights()[0], expected, rtol=1e-5, atol=1e-7
    )


def _train_text_cnn(optimizer, ids, labels, epochs, jit_compile=False):
    keras.utils.set_random_seed(3)
    model = zoo.build(
        "text_cnn_kim",
        vocabulary_size=40,
        sequence_length=8,
        embedding_dim=6,
        filters=4,
        num_classes=3,
        dropout=0.0,
    )
    model.compile(
        optimizer, "sparse_categorical_crossentropy", jit_compile=jit_compile
    )
    model.fit(
        ids, labels, batch_size=8, epochs=epochs, shuffle=False, verbose=0
    )
    return model


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_sparse_adadelta_trains_a_text_cnn_like_dense_adadelta(jit_compile):
    rng = np.random.default_rng(0)
    # A small vocabulary used unevenly: many rows skip many steps.
    ids = rng.zipf(1.5, (64, 8)).clip(1, 39).astype("int32")
    labels = rng.integers(0, 3, 64)
    sparse = _train_text_cnn(
        SparseAdadelta(1.0, rho=RHO, epsilon=EPSILON),
        ids,
        labels,
        3,
        jit_compile=jit_compile,
    )
    dense = _train_text_cnn(
        DenseGradientAdadelta(1.0, rho=RHO, epsilon=EPSILON), ids, labels, 3
    )
    for got, want in zip(sparse.get_weights(), dense.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # It did train: the weights moved.
    assert not np.allclose(
        sparse.get_weights()[0],
        _train_text_cnn(
            keras.optimizers.SGD(0.0), ids, labels, 1
        ).get_weights()[0],
    )


def test_sparse_adadelta_resumes_exactly_from_a_saved_model(tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.zipf(1.5, (64, 8)).clip(1, 39).astype("int32")
    labels = rng.integers(0, 3, 64)
    straight = _train_text_cnn(
        SparseAdadelta(1.0, rho=RHO, epsilon=EPSILON), ids, labels, 4
    )
    halfway = _train_text_cnn(
        SparseAdadelta(1.0, rho=RHO, epsilon=EPSILON), ids, labels, 2
    )
    path = tmp_path / "halfway.keras"
    halfway.save(path)
    resumed = keras.saving.load_model(path)
    assert isinstance(resumed.optimizer, SparseAdadelta)
    resumed.fit(ids, labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_sparse_adadelta_round_trips_through_keras_serialization():
    optimizer = SparseAdadelta(learning_rate=0.5, rho=0.9)
    rebuilt = keras.optimizers.deserialize(
        keras.optimizers.serialize(optimizer)
    )
    assert isinstance(rebuilt, SparseAdadelta)
    assert rebuilt.get_config()["rho"] == pytest.approx(0.9)
