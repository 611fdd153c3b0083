"""Tests of kerasdl.gradcheck: verdicts, worst elements, kinks, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdl import gradcheck
from kerasdl.gradcheck import GradientCheckError
from kerasdl.gradcheck import assert_gradients_close
from kerasdl.gradcheck import check_gradients
from kerasdl.layers import ReLU
from kerasdl.layers import Sigmoid
from kerasdl.layers import Tanh

# --- Deliberately wrong backward passes ------------------------------------

# Element (1, 2) of a (4, 5) input gets a gradient 1.5 times too large.
_WRONG_AT = np.zeros((4, 5))
_WRONG_AT[1, 2] = 0.5


@tf.custom_gradient
def sigmoid_wrong_at_one_element(x):
    y = tf.sigmoid(x)

    def grad(upstream):
        # d/dx sigmoid = s * (1 - s), scaled by 1.5 at element (1, 2) only.
        scale = 1.0 + tf.constant(_WRONG_AT, x.dtype)
        return upstream * y * (1.0 - y) * scale

    return y, grad


@tf.custom_gradient
def sigmoid_sign_flipped(x):
    y = tf.sigmoid(x)

    def grad(upstream):
        return upstream * y * (y - 1.0)  # wrong: -s * (1 - s)

    return y, grad


@tf.custom_gradient
def sigmoid_frozen_second_derivative(x):
    y = tf.sigmoid(x)

    def grad(upstream):
        # First derivative right, but stop_gradient makes the second
        # derivative 0 instead of s' * (1 - 2 s).
        return upstream * tf.stop_gradient(y * (1.0 - y))

    return y, grad


@tf.custom_gradient
def relu_wrong_at_zero(x):
    y = tf.nn.relu(x)

    def grad(upstream):
        # Wrong: 3 at x >= 0, outside the subgradient range [0, 1] at 0.
        return upstream * 3.0 * tf.cast(x >= 0, x.dtype)

    return y, grad


@tf.custom_gradient
def _matmul_with_wrong_kernel_gradient(inputs, kernel):
    outputs = tf.matmul(inputs, kernel)

    def grad(upstream):
        # dE/dx = upstream @ kernel^T (right); dE/dkernel = x^T @ upstream
        # times 1.1 (wrong).
        return (
            tf.matmul(upstream, kernel, transpose_b=True),
            1.1 * tf.matmul(inputs, upstream, transpose_a=True),
        )

    return outputs, grad


class WrongKernelDense(keras.layers.Layer):
    """A bias-free dense layer whose kernel gradient is 10% too large."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), name="kernel"
        )

    def call(self, inputs):
        # A tensor, not the variable: tf.custom_gradient would otherwise
        # demand a `variables` argument in `grad`.
        kernel = tf.identity(self.kernel)
        return _matmul_with_wrong_kernel_gradient(inputs, kernel)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class CastsToFloat32(keras.layers.Layer):
    """A layer that forces float32 whatever its policy: cannot up-cast."""

    def call(self, inputs):
        return keras.ops.cast(inputs, "float32") * 2.0


class SmallSubclassedModel(keras.Model):
    def __init__(self, units=5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, activation="tanh")
        self.head = keras.layers.Dense(2)

    def call(self, inputs):
        return self.head(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@pytest.fixture
def inputs(rng):
    return rng.standard_normal((4, 5)).astype("float32")


# --- Passing checks --------------------------------------------------------


@pytest.mark.parametrize("layer_class", [Sigmoid, Tanh, ReLU])
def test_activation_layers_pass(layer_class, rng):
    x = rng.standard_normal((10, 100)).astype("float32")
    result = check_gradients(layer_class(), x)
    assert result.ok, str(result)
    assert result.mode == "full"
    assert result.num_checked + result.num_kinks == 1000
    assert result.max_abs_error < 1e-7
    # The float32 hand-written gradient agrees with the float64 one.
    assert result.tensors[0].low_precision_rel_error < 1e-5


@pytest.mark.parametrize("layer_class", [Sigmoid, Tanh])
def test_activation_layers_pass_at_extreme_points(layer_class):
    x = np.array([-1e4, -20.0, -9.0, 0.0, 9.0, 20.0, 1e4], "float32")
    result = check_gradients(layer_class(), x)
    assert result.ok, str(result)
    assert result.num_kinks == 0


def test_dense_layer_passes_and_names_every_weight(inputs):
    layer = keras.layers.Dense(3, name="dense")
    result = check_gradients(layer, inputs)
    assert result.ok, str(result)
    names = [row.name for row in result.tensors]
    assert names == ["inputs", "dense/kernel", "dense/bias"]
    assert result.num_checked == 4 * 5 + 5 * 3 + 3
    # The layer under test is left in float32, with its weights unchanged.
    assert layer.kernel.dtype == "float32"


def test_wrt_selects_tensors(inputs):
    layer = keras.layers.Dense(3, name="dense")
    only_inputs = check_gradients(layer, inputs, wrt="inputs")
    only_weights = check_gradients(layer, inputs, wrt="weights")
    assert [r.name for r in only_inputs.tensors] == ["inputs"]
    assert [r.name for r in only_weights.tensors] == [
        "dense/kernel",
        "dense/bias",
    ]


def test_sequential_model_passes(inputs):
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8, activation="tanh"),
            Sigmoid(),
            keras.layers.Dense(2),
        ]
    )
    result = check_gradients(model, inputs)
    assert result.ok, str(result)
    assert len(result.tensors) == 5


def test_sequential_model_without_input_passes(inputs):
    model = keras.Sequential([keras.layers.Dense(3), Tanh()])
    model(inputs)
    assert check_gradients(model, inputs).ok


def test_functional_model_with_two_inputs_passes(inputs, rng):
    first = keras.Input((5,))
    second = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="sigmoid")(first)
    merged = keras.layers.Concatenate()([hidden, second])
    model = keras.Model([first, second], keras.layers.Dense(2)(merged))
    other = rng.standard_normal((4, 3)).astype("float32")
    result = check_gradients(model, [inputs, other])
    assert result.ok, str(result)
    assert [r.name for r in result.tensors][:2] == ["inputs[0]", "inputs[1]"]


def test_subclassed_model_passes(inputs):
    model = SmallSubclassedModel()
    model(inputs)
    result = check_gradients(model, inputs)
    assert result.ok, str(result)
    assert len(result.tensors) == 5


def test_integer_inputs_are_held_fixed():
    model = keras.Sequential(
        [
            keras.layers.Embedding(6, 4),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2),
        ]
    )
    token_ids = np.array([[1, 2, 2], [0, 5, 3]])
    result = check_gradients(model, token_ids)
    assert result.ok, str(result)
    assert [r.name for r in result.tensors][0].endswith("embeddings")
    assert all(not r.name.startswith("inputs") for r in result.tensors)


def test_callable_with_two_inputs(rng):
    x = rng.standard_normal(6)
    y = rng.standard_normal(6)
    result = check_gradients(lambda a, b: a * tf.sin(b), (x, y))
    assert result.ok
    assert [r.name for r in result.tensors] == ["inputs[0]", "inputs[1]"]
    # float64 inputs to a callable: nothing lower to compare with.
    assert result.tensors[0].low_precision_rel_error is None


def test_mixed_precision_layer_is_upcast(inputs):
    layer = keras.layers.Dense(3, dtype="mixed_float16")
    result = check_gradients(layer, inputs)
    assert result.ok, str(result)
    # Its own float16 gradient is far coarser than the float64 one.
    assert result.tensors[0].low_precision_rel_error > 1e-5


# --- Failing checks --------------------------------------------------------


def test_wrong_element_is_found(inputs):
    result = check_gradients(sigmoid_wrong_at_one_element, inputs)
    assert not result.ok
    assert result.num_failed == 1
    assert result.worst.tensor == "inputs"
    assert result.worst.index == (1, 2)
    assert result.worst.analytic == pytest.approx(
        1.5 * result.worst.numerical, rel=1e-6
    )
    assert "inputs[1, 2]" in str(result)
    assert "FAILED" in str(result)


def test_sign_flip_fails_everywhere(inputs):
    result = check_gradients(sigmoid_sign_flipped, inputs)
    assert not result.ok
    assert result.num_failed == inputs.size
    assert result.max_rel_error == pytest.approx(2.0)  # |-g - g| / |g|


def test_full_mode_finds_wrong_weight_gradient(inputs):
    model = keras.Sequential(
        [keras.Input((5,)), WrongKernelDense(3, name="wrong_kernel_dense")]
    )
    result = check_gradients(model, inputs)
    assert not result.ok
    assert result.worst.tensor.endswith("wrong_kernel_dense/kernel")
    by_name = {row.name: row for row in result.tensors}
    assert by_name["inputs"].ok


def test_fast_mode_catches_wrong_weight_gradient(inputs):
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(6, activation="tanh", name="dense"),
            WrongKernelDense(3, name="wrong_kernel_dense"),
        ],
        name="sequential",
    )
    result = check_gradients(model, inputs, fast=True, num_projections=4)
    assert not result.ok
    assert result.mode == "fast"
    assert result.worst.tensor.endswith("wrong_kernel_dense/kernel")
    assert result.worst.index is None
    assert result.worst.projection is not None
    by_name = {row.name: row for row in result.tensors}
    assert by_name["sequential/dense/kernel"].ok
    assert by_name[gradcheck.GLOBAL_PROJECTIONS].num_checked == 4
    assert "rerun with fast=False" in str(result)


def test_fast_mode_passes_on_correct_model(inputs):
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(6, activation="tanh")]
    )
    result = check_gradients(model, inputs, fast=True)
    assert result.ok, str(result)
    assert result.num_checked == 3 + 6


# --- Kinks -----------------------------------------------------------------


def test_relu_at_zero_and_near_zero_counts_kinks():
    # 0 exactly (twice), and points within step = 1e-5 of 0, on both sides.
    x = np.array([0.0, 0.0, 1e-6, -3e-6, 1.0, -2.0], "float32")
    result = check_gradients(ReLU(), x)
    assert result.ok, str(result)
    assert result.num_kinks == 4
    assert result.num_checked == 2
    assert "4 skipped as kinks" in str(result)


def test_abs_near_zero_is_a_kink():
    # At exactly 0 the central difference of |x| is 0, the gradient TF
    # gives, so it passes; at 3e-6, within step of 0, it is 0.3 not 1.
    result = check_gradients(tf.abs, np.array([0.0, 3e-6, 0.5, -0.5]))
    assert result.ok
    assert result.num_kinks == 1
    assert result.num_checked == 3


def test_kinks_do_not_hide_a_wrong_gradient():
    x = np.array([0.0, 1.0, -1.0])
    result = check_gradients(relu_wrong_at_zero, x)
    assert not result.ok
    assert result.num_kinks == 0
    assert result.num_failed == 2  # 3 at x = 0 and at x = 1


# --- Second order ----------------------------------------------------------


@pytest.mark.parametrize("layer_class", [Sigmoid, Tanh])
def test_second_order_passes(layer_class, rng):
    x = rng.standard_normal((5, 20)).astype("float32")
    result = check_gradients(layer_class(), x, second_order=True)
    assert result.ok, str(result)
    assert result.order == 2
    assert "second order" in str(result)


def test_second_order_catches_wrong_second_derivative(inputs):
    function = sigmoid_frozen_second_derivative
    assert check_gradients(function, inputs).ok
    result = check_gradients(function, inputs, second_order=True)
    assert not result.ok
    # With the second derivative frozen at 0, the analytic HVP is 0.
    assert result.worst.analytic == 0.0


def test_second_order_of_dense_model(inputs):
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(3, activation="sigmoid")]
    )
    result = check_gradients(model, inputs, second_order=True)
    assert result.ok, str(result)


# --- assert_gradients_close ------------------------------------------------


def test_assert_gradients_close_message(inputs):
    with pytest.raises(GradientCheckError) as caught:
        assert_gradients_close(sigmoid_wrong_at_one_element, inputs)
    message = str(caught.value)
    assert isinstance(caught.value, AssertionError)
    assert "1 of 20 elements" in message
    assert "inputs[1, 2]" in message
    assert "analytic=" in message and "numerical=" in message
    assert "abs err=" in message and "rel err=" in message
    assert "atol=1e-06" in message and "rtol=1e-05" in message


def test_assert_gradients_close_returns_passing_result(inputs):
    result = assert_gradients_close(Tanh(), inputs, atol=1e-7)
    assert result.ok
    assert result.atol == 1e-7


# --- Errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"wrt": "bias"}, "Received: wrt='bias'"),
        ({"step": 0.0}, "Received: step=0.0"),
        ({"step": -1e-3}, "Received: step=-0.001"),
        ({"atol": -1.0}, "Received: atol=-1.0"),
        ({"atol": 0.0, "rtol": 0.0}, "Received: atol=0.0, rtol=0.0"),
        ({"kink_tolerance": 0}, "Received: kink_tolerance=0"),
        ({"num_projections": 0}, "Received: num_projections=0"),
    ],
)
def test_argument_errors(kwargs, text, inputs):
    with pytest.raises(ValueError, match=text):
        check_gradients(Tanh(), inputs, **kwargs)


def test_target_must_be_callable(inputs):
    with pytest.raises(TypeError, match="Received: target=3"):
        check_gradients(3, inputs)


def test_inputs_must_be_numeric():
    with pytest.raises(TypeError, match=r"Received: inputs\[0\].dtype=str"):
        check_gradients(tf.identity, ["a", "b"])


def test_integer_inputs_alone_leave_nothing_to_check():
    with pytest.raises(ValueError, match="Expected something to differ"):
        check_gradients(lambda x: x * 2, np.array([1, 2, 3]))


def test_wrt_inputs_needs_a_float_input():
    layer = keras.layers.Embedding(5, 2)
    with pytest.raises(ValueError, match="at least one float input"):
        check_gradients(layer, np.array([[1, 2]]), wrt="inputs")


def test_wrt_weights_needs_weights(inputs):
    with pytest.raises(ValueError, match="trainable weights"):
        check_gradients(tf.sin, inputs, wrt="weights")


class WrapsALayer(keras.Model):
    """Takes a layer object in its constructor: no config to rebuild from."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, inputs):
        return self.inner(inputs)


def test_model_that_cannot_be_rebuilt(inputs):
    model = WrapsALayer(keras.layers.Dense(2))
    model(inputs)
    with pytest.raises(ValueError, match="Could not rebuild") as caught:
        check_gradients(model, inputs)
    assert "Received: target=<WrapsALayer" in str(caught.value)


def test_layer_that_cannot_be_upcast(inputs):
    with pytest.raises(ValueError, match="Could not up-cast"):
        check_gradients(CastsToFloat32(), inputs)


# --- Report ----------------------------------------------------------------


def test_report_table(inputs):
    result = check_gradients(keras.layers.Dense(2, name="dense"), inputs)
    text = str(result)
    lines = text.splitlines()
    assert lines[0] == "Gradient check (full mode, first order): PASSED"
    assert "32 elements checked, 0 failed, 0 skipped as kinks" in lines[1]
    header = next(line for line in lines if "max abs err" in line)
    assert header.split()[:3] == ["tensor", "shape", "checked"]
    assert any(line.split()[0] == "dense/kernel" for line in lines[3:])
    assert lines[-1].startswith("  worst: ")


# --- Command line ----------------------------------------------------------


def test_cli_passes_and_prints_a_table(capsys):
    from kerasdl.cli import main

    status = main(["gradcheck", "--size", "50", "--second-order"])
    output = capsys.readouterr().out
    assert status == 0
    assert "12 of 12 checks passed" in output
    header = output.splitlines()[0].split()
    assert header[:3] == ["layer", "order", "points"]
    relu_extreme = [
        line.split()
        for line in output.splitlines()
        if line.startswith("relu") and "extreme" in line
    ]
    # ReLU at 0 is counted as one kink, at first and second order.
    assert [row[6] for row in relu_extreme] == ["1", "1"]


def test_cli_fails_on_a_wrong_gradient(capsys, monkeypatch):
    from kerasdl import layers
    from kerasdl.cli import main

    class WrongSigmoid(keras.layers.Layer):
        def call(self, inputs):
            return sigmoid_sign_flipped(inputs)

    original = layers.get_activation
    monkeypatch.setattr(
        layers,
        "get_activation",
        lambda name: WrongSigmoid() if name == "sigmoid" else original(name),
    )
    status = main(["gradcheck", "--size", "20"])
    output = capsys.readouterr().out
    assert status == 1
    assert "FAIL at inputs[" in output
    assert "4 of 6 checks passed" in output


def test_cli_rejects_a_bad_size(capsys):
    from kerasdl.cli import main

    with pytest.raises(SystemExit):
        main(["gradcheck", "--size", "0"])
    assert "Received: --size=0" in capsys.readouterr().err


# --- Edge cases ------------------------------------------------------------


@tf.custom_gradient
def sine_with_nan_gradient(x):
    def grad(upstream):
        return upstream * float("nan")

    return tf.sin(x), grad


def test_nan_gradient_fails_even_with_atol_zero():
    result = check_gradients(
        sine_with_nan_gradient, np.array([0.1, 0.2]), atol=0.0
    )
    assert not result.ok
    assert result.num_failed == 2
    assert np.isnan(result.worst.analytic)


def test_scalar_input():
    result = check_gradients(tf.sin, np.float64(0.5))
    assert result.ok
    assert result.worst.index == ()
    assert result.worst.location() == "inputs"
    # E = w * sin(x) for the seeded w, so dE/dx = w * cos(x).
    weight = np.random.default_rng(0).standard_normal(())
    assert result.worst.analytic == pytest.approx(weight * np.cos(0.5))
