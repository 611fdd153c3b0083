"""Tests of the activation layers with hand-written backward passes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdl import layers
from kerasdl.layers import ReLU
from kerasdl.layers import Sigmoid
from kerasdl.layers import Tanh

# --- float64 numpy references ----------------------------------------------


def _sigmoid(x):
    # Two branches so that exp never overflows, even at |x| = 1e4.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_grad(x):
    return _sigmoid(x) * _sigmoid(-x)  # s' = s * (1 - s)


def _sigmoid_second(x):
    return _sigmoid_grad(x) * (1.0 - 2.0 * _sigmoid(x))  # s'' = s'(1 - 2s)


def _tanh_grad(x):
    with np.errstate(over="ignore"):  # cosh(1e4) = inf gives sech^2 = 0
        return 1.0 / np.cosh(x) ** 2


def _tanh_second(x):
    return -2.0 * np.tanh(x) * _tanh_grad(x)  # tanh'' = -2 tanh sech^2


def _relu_grad(x):
    return (x > 0).astype(np.float64)


REFERENCES = {
    # name: (layer class, forward, first derivative, second derivative)
    "sigmoid": (Sigmoid, _sigmoid, _sigmoid_grad, _sigmoid_second),
    "tanh": (Tanh, np.tanh, _tanh_grad, _tanh_second),
    "relu": (ReLU, lambda x: np.maximum(x, 0.0), _relu_grad, np.zeros_like),
}

ORDINARY = np.linspace(-6.0, 6.0, 49)
EXTREME = np.array([-1e4, -1e3, -20.0, -9.0, 9.0, 20.0, 1e3, 1e4])


def _forward_and_gradient(layer, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return y, tape.gradient(y, x)


def _close(actual, expected, rtol, atol=0.0):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol
    )


# --- Forward and first derivatives -----------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize(
    "points", [ORDINARY, EXTREME], ids=["ordinary", "extreme"]
)
def test_float32_forward_and_gradient_match_float64_references(name, points):
    layer_class, forward, derivative, _ = REFERENCES[name]
    y, grad = _forward_and_gradient(layer_class(), points.astype("float32"))
    assert y.dtype == "float32" and grad.dtype == "float32"
    # float32 holds about 7 digits; the derivatives keep them even where
    # they are tiny (4e-9 at x = 20), which the naive formulas do not.
    _close(y, forward(points), rtol=1e-6, atol=1e-7)
    _close(grad, derivative(points), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize(
    "layer_class, x, expected",
    [
        (Sigmoid, 20.0, 2.0611536e-9),  # e^-20 / (1 + e^-20)^2
        (Tanh, 9.0, 6.0919916e-8),  # 4 e^-18 / (1 + e^-18)^2
    ],
)
def test_tiny_derivatives_survive_in_float32(layer_class, x, expected):
    _, grad = _forward_and_gradient(layer_class(), np.float32([x]))
    reference = (_sigmoid_grad if layer_class is Sigmoid else _tanh_grad)(
        np.float64(x)
    )
    assert float(grad[0]) == pytest.approx(expected, rel=1e-4)
    assert float(grad[0]) == pytest.approx(reference, rel=1e-5)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_finite_forward_and_gradient_up_to_1e4(name):
    layer_class = REFERENCES[name][0]
    x = np.float32([-1e4, -1e2, -50.0, 50.0, 1e2, 1e4])
    y, grad = _forward_and_gradient(layer_class(), x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad))


def test_relu_gradient_at_zero_is_zero():
    _, grad = _forward_and_gradient(ReLU(), np.float32([-0.0, 0.0, 1e-30]))
    assert list(np.asarray(grad)) == [0.0, 0.0, 1.0]


def test_gradient_scales_the_upstream_gradient(rng):
    x = tf.constant(rng.standard_normal(5))
    upstream = tf.constant(rng.standard_normal(5))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = Sigmoid(dtype="float64")(x)
    grad = tape.gradient(y, x, output_gradients=upstream)
    _close(grad, upstream.numpy() * _sigmoid_grad(x.numpy()), rtol=1e-12)


# --- The hand-written gradient is the one used -----------------------------


def test_tanh_uses_the_hand_written_gradient_not_the_naive_one():
    x = np.float32([9.0])
    _, hand_written = _forward_and_gradient(Tanh(), x)
    # The naive float32 formula: tanh(9) rounds to 1 - 6e-8, the nearest
    # float32 below 1, so 1 - tanh^2 comes out twice too large (or 0).
    y = np.tanh(x).astype("float32")
    naive = np.float32(1.0) - y * y
    reference = _tanh_grad(9.0)
    assert float(hand_written[0]) == pytest.approx(reference, rel=1e-5)
    assert abs(float(naive[0]) - reference) > 0.5 * reference
    # Keras' built-in tanh differentiates through the naive formula.
    _, builtin = _forward_and_gradient(keras.layers.Activation("tanh"), x)
    assert abs(float(builtin[0]) - reference) > 0.5 * reference


def test_sigmoid_uses_the_hand_written_gradient_at_20():
    x = np.float32([20.0])
    y = np.float32(_sigmoid(20.0))
    naive = y * (np.float32(1.0) - y)
    assert naive == 0.0  # 1 - sigmoid(20) rounds to 0 in float32
    _, hand_written = _forward_and_gradient(Sigmoid(), x)
    assert float(hand_written[0]) > 0.0


# --- Second derivatives ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_second_derivative_matches_formula(name):
    layer_class, _, _, second = REFERENCES[name]
    # ReLU's second derivative is 0 away from the kink; skip x = 0.
    x = tf.constant(np.concatenate([ORDINARY[ORDINARY != 0], [-20.0, 20.0]]))
    layer = layer_class(dtype="float64")
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = layer(x)
        grad = inner.gradient(y, x)
    hessian_diagonal = outer.gradient(
        grad, x, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    _close(hessian_diagonal, second(x.numpy()), rtol=1e-9, atol=1e-15)


# --- dtype policies --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_float64_policy(name):
    layer_class, forward, derivative, _ = REFERENCES[name]
    keras.config.set_dtype_policy("float64")
    layer = layer_class()
    y, grad = _forward_and_gradient(layer, EXTREME)
    assert layer.compute_dtype == "float64"
    assert y.dtype == "float64"
    _close(y, forward(EXTREME), rtol=1e-14, atol=1e-300)
    _close(grad, derivative(EXTREME), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_mixed_float16_policy(name):
    layer_class, forward, derivative, _ = REFERENCES[name]
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = layer_class()
        y, grad = _forward_and_gradient(layer, ORDINARY.astype("float32"))
    finally:
        keras.config.set_dtype_policy("float32")
    assert layer.compute_dtype == "float16"
    assert y.dtype == "float16"
    # float16 keeps about 3 digits (unit roundoff 4.9e-4).
    _close(y, forward(ORDINARY), rtol=2e-3, atol=1e-3)
    _close(grad, derivative(ORDINARY), rtol=5e-3, atol=1e-3)
    assert keras.config.dtype_policy().name == "float32"


# --- Serialization and models ----------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_config_round_trip(name):
    layer_class = REFERENCES[name][0]
    layer = layer_class(name=f"my_{name}", dtype="float64")
    rebuilt = layer_class.from_config(layer.get_config())
    assert rebuilt.name == f"my_{name}"
    assert rebuilt.compute_dtype == "float64"

    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"kerasdl>{layer_class.__name__}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is layer_class
    assert restored.get_config() == layer.get_config()


def _assert_same_outputs_and_gradients(model, restored, x):
    x = tf.constant(x)
    outputs = []
    for m in (model, restored):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = m(x)
        outputs.append((y.numpy(), tape.gradient(y, x).numpy()))
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])


def test_sequential_model_saves_and_loads(tmp_path, rng):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5),
            Tanh(),
            keras.layers.Dense(3),
            ReLU(),
            keras.layers.Dense(1),
            Sigmoid(),
        ]
    )
    path = tmp_path / "sequential.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    kinds = [type(layer) for layer in restored.layers]
    assert kinds.count(Tanh) == kinds.count(ReLU) == kinds.count(Sigmoid) == 1
    _assert_same_outputs_and_gradients(
        model, restored, rng.standard_normal((2, 4)).astype("float32")
    )


def test_functional_model_saves_and_loads(tmp_path, rng):
    inputs = keras.Input((4,))
    hidden = layers.get_activation("relu")(keras.layers.Dense(6)(inputs))
    outputs = Sigmoid()(keras.layers.Dense(2)(hidden))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "functional.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert {ReLU, Sigmoid} <= {type(layer) for layer in restored.layers}
    _assert_same_outputs_and_gradients(
        model, restored, rng.standard_normal((3, 4)).astype("float32")
    )


# --- Compilation -----------------------------------------------------------


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_tf_function_matches_eager(name, jit_compile):
    layer = REFERENCES[name][0]()
    x = tf.constant(np.concatenate([ORDINARY, EXTREME]).astype("float32"))

    @tf.function(jit_compile=jit_compile)
    def forward_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        return y, tape.gradient(y, x)

    y, grad = forward_and_gradient(x)
    eager_y, eager_grad = _forward_and_gradient(layer, x)
    # XLA may fuse differently: allow a few float32 ulps.
    _close(y, eager_y.numpy(), rtol=1e-6, atol=1e-30)
    _close(grad, eager_grad.numpy(), rtol=1e-5, atol=1e-30)


# --- get_activation --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_get_activation(name):
    assert type(layers.get_activation(name)) is REFERENCES[name][0]
    builtin = layers.get_activation(name, hand_written=False)
    assert isinstance(builtin, keras.layers.Activation)


def test_get_activation_unknown_name():
    with pytest.raises(ValueError, match="Received: name='gelu'"):
        layers.get_activation("gelu")
