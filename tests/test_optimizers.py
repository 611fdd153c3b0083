"""Tests of kerasdl/optimizers.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdl.optimizers import DenseGradientAdadelta

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
    """Zeiler (2012) in float64 NumPy, learning rate 1."""
    accumulated_gradient = np.zeros_like(weights)
    accumulated_update = np.zeros_like(weights)
    for _ in range(steps):
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
